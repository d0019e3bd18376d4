"""Procrustes alignment (Umeyama 1991): the similarity or rigid transform that best maps one
point set onto another in the (weighted) least-squares sense, batched torch.

Used by the hand metrics (PA-MPJPE, PA-MPVPE, F-score: similarity alignment) and by EPnP
(rigid alignment of object points to their camera-frame estimates).
"""
from __future__ import annotations

import torch

__all__ = ["fit_similarity", "procrustes_align"]


def fit_similarity(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None,
                   scale: bool = True, eps: float = 1e-12,
                   allow_reflection: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares ``s, R, t`` with ``dst ~ s R src + t``.

    Minimises ``sum_i w_i |s R src_i + t - dst_i|^2`` over rotations ``R`` (det +1), scales
    ``s > 0`` and translations ``t``.

    Args:
        src, dst: ``[..., N, 3]`` corresponding points (any unit; ``t`` comes out in it).
        weights: optional ``[..., N]`` non-negative weights (default: all ones).
        scale: fit the scale; with False, ``s = 1`` (a rigid fit, as EPnP needs).
        eps: guards the divisions for point sets with no spread or zero total weight.
        allow_reflection: minimise over all orthogonal ``R`` (det +1 or -1) instead of
            rotations only. A reflection wins only when it fits better than every rotation,
            i.e. for poor or mirrored predictions; the official HO3D evaluation
            (``align_w_scale``, SciPy's ``orthogonal_procrustes``) behaves this way.

    Returns:
        ``s [...]``, ``R [..., 3, 3]``, ``t [..., 3]``.
    """
    if src.shape[-1] != 3 or src.shape != dst.shape:
        raise ValueError(f"fit_similarity: src and dst must both be [..., N, 3], got {tuple(src.shape)} and {tuple(dst.shape)}")
    if weights is None:
        weights = torch.ones(src.shape[:-1], dtype=src.dtype, device=src.device)
    elif weights.shape != src.shape[:-1]:
        raise ValueError(f"fit_similarity: weights must be {tuple(src.shape[:-1])}, got {tuple(weights.shape)}")
    w = weights.to(src.dtype).unsqueeze(-1)  # [..., N, 1]
    total = w.sum(dim=-2).clamp_min(eps)  # [..., 1]
    mu_src = (w * src).sum(dim=-2) / total
    mu_dst = (w * dst).sum(dim=-2) / total
    a = src - mu_src.unsqueeze(-2)
    b = dst - mu_dst.unsqueeze(-2)
    cov = (w * b).transpose(-1, -2) @ a / total.unsqueeze(-1)  # [..., 3, 3], dst x src
    U, S, Vh = torch.linalg.svd(cov)
    if allow_reflection:
        sign = torch.ones(cov.shape[:-2], dtype=cov.dtype, device=cov.device)
    else:  # flip the weakest axis when U Vh would be a reflection
        sign = torch.sign(torch.linalg.det(U) * torch.linalg.det(Vh))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign], dim=-1)  # [..., 3]
    R = (U * d.unsqueeze(-2)) @ Vh
    if scale:
        var_src = (w * a * a).sum(dim=(-2, -1)) / total.squeeze(-1)
        s = (S * d).sum(dim=-1) / var_src.clamp_min(eps)
    else:
        s = torch.ones(src.shape[:-2], dtype=src.dtype, device=src.device)
    t = mu_dst - s.unsqueeze(-1) * (R @ mu_src.unsqueeze(-1)).squeeze(-1)
    return s, R, t


def procrustes_align(pred: torch.Tensor, gt: torch.Tensor, weights: torch.Tensor | None = None,
                     allow_reflection: bool = False) -> torch.Tensor:
    """``pred [..., N, 3]`` moved onto ``gt [..., N, 3]`` by the best similarity transform.

    This is the alignment behind PA-MPJPE / PA-MPVPE: it removes global scale, rotation and
    translation, so what remains is the error of the articulated shape alone. Same units as
    the inputs; ``weights [..., N]`` as in :func:`fit_similarity`. By default the transform
    is a proper similarity (a rotation); ``allow_reflection=True`` also admits a mirror image,
    as the official HO3D evaluation does (the metrics in :mod:`hfl_lite.metrics` use that).
    """
    s, R, t = fit_similarity(pred, gt, weights=weights, scale=True, allow_reflection=allow_reflection)
    return s[..., None, None] * pred @ R.transpose(-1, -2) + t.unsqueeze(-2)
