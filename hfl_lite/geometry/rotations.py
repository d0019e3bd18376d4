"""Rotation conversions, batched over any leading dimensions.

All functions are pure torch, differentiable, and keep the input's dtype and device.
Angles are in radians. Conventions: axis-angle vectors ``r`` encode a rotation by
``|r|`` around ``r / |r|``; rotation matrices act on column vectors (``x' = R x``).
"""
from __future__ import annotations

import torch

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "rot6d_to_matrix",
    "matrix_to_rot6d",
    "project_to_rotation",
    "relative_angle",
    "skew",
]


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices ``[v]_x`` of vectors ``v [..., 3]`` -> ``[..., 3, 3]``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(r: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: axis-angle ``[..., 3]`` (radians) -> rotation matrices ``[..., 3, 3]``.

    Near zero angle the Taylor expansions of ``sin(t)/t`` and ``(1-cos t)/t^2`` are used so
    the result and its gradient stay finite at ``r = 0``.
    """
    if r.shape[-1] != 3:
        raise ValueError(f"axis_angle_to_matrix: expected [..., 3], got {tuple(r.shape)}")
    theta2 = (r * r).sum(-1, keepdim=True).unsqueeze(-1)  # [..., 1, 1]
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2_safe)
    K = skew(r)
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand(K.shape)
    return eye + a * K + b * (K @ K)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` -> axis-angle ``[..., 3]`` with angle in ``[0, pi]``.

    Goes through unit quaternions, which is stable near both 0 and pi.
    """
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"matrix_to_axis_angle: expected [..., 3, 3], got {tuple(R.shape)}")
    m = R.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # Four candidate quaternions (w, x, y, z); pick the best-conditioned one per matrix.
    cand = torch.stack(
        [
            torch.stack([1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], -1),
            torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1]], -1),
            torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
        ],
        dim=1,
    )  # [N, 4 candidates, 4]
    diag = torch.stack([1 + tr, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                        1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    best = diag.argmax(-1)
    q = cand[torch.arange(m.shape[0], device=R.device), best]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)  # w >= 0 -> angle in [0, pi]
    w, xyz = q[:, 0], q[:, 1:]
    s = xyz.norm(dim=-1)
    angle = 2 * torch.atan2(s, w)
    small = s < 1e-6
    # angle / sin(angle / 2) -> 2 as the angle -> 0
    factor = torch.where(small, 2 + angle * angle / 12, angle / torch.where(small, torch.ones_like(s), s))
    return (xyz * factor.unsqueeze(-1)).reshape(*R.shape[:-2], 3)


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """Continuous 6D representation (Zhou et al., CVPR 2019) ``[..., 6]`` -> ``[..., 3, 3]``.

    The 6 numbers are the first two columns of the matrix before Gram-Schmidt; the third
    column is their cross product.
    """
    if x.shape[-1] != 6:
        raise ValueError(f"rot6d_to_matrix: expected [..., 6], got {tuple(x.shape)}")
    a1, a2 = x[..., 0:3], x[..., 3:6]
    b1 = torch.nn.functional.normalize(a1, dim=-1, eps=1e-8)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=1e-8)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` -> 6D representation ``[..., 6]`` (first two columns)."""
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


class _ProjectToRotation(torch.autograd.Function):
    """Nearest rotation ``U diag(1, 1, det(U V^T)) V^T`` with the polar factor's gradient.

    ``torch.linalg.svd``'s own backward is undefined for repeated singular values, i.e. for
    every exact rotation; the polar factor's derivative only needs ``s_i + s_j != 0``.
    """

    @staticmethod
    def forward(ctx, m):
        u, s, vh = torch.linalg.svd(m)
        sign = torch.sign(torch.det(u @ vh))
        u = torch.cat([u[..., :2], u[..., 2:] * sign[..., None, None]], dim=-1)
        s = torch.cat([s[..., :2], s[..., 2:] * sign[..., None]], dim=-1)
        ctx.save_for_backward(u, s, vh)
        return u @ vh

    @staticmethod
    def backward(ctx, grad):
        u, s, vh = ctx.saved_tensors
        b = u.transpose(-1, -2) @ grad @ vh.transpose(-1, -2)
        denom = s[..., :, None] + s[..., None, :]
        inner = (b - b.transpose(-1, -2)) / torch.where(denom.abs() < 1e-12, torch.ones_like(denom), denom)
        return u @ inner @ vh


def project_to_rotation(m: torch.Tensor) -> torch.Tensor:
    """Nearest rotation matrices (SVD, reflections removed) ``[..., 3, 3] -> [..., 3, 3]``.

    As manopth's ``batch_rotprojs``, batched and differentiable (also at exact rotations). For
    inputs with a negative determinant it returns the nearest rotation (``U diag(1, 1, -1) V^T``)
    where manopth negates the last column of ``U V^T``.
    """
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"project_to_rotation: expected [..., 3, 3], got {tuple(m.shape)}")
    return _ProjectToRotation.apply(m)


def relative_angle(Ra: torch.Tensor, Rb: torch.Tensor) -> torch.Tensor:
    """Geodesic angle between rotations ``Ra, Rb [..., 3, 3]``: the angle of ``Ra^T Rb``, in
    radians in ``[0, pi]`` ``[...]``.

    Computed as ``atan2(|axis part|, cos part)`` of the relative rotation rather than ``arccos`` of
    the trace, which loses all precision for small angles.
    """
    if Ra.shape[-2:] != (3, 3) or Rb.shape[-2:] != (3, 3):
        raise ValueError(f"relative_angle: expected [..., 3, 3] rotations, got {tuple(Ra.shape)} and {tuple(Rb.shape)}")
    rel = Ra.transpose(-1, -2) @ Rb
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    axis = torch.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0], rel[..., 1, 0] - rel[..., 0, 1]], -1)
    return torch.atan2(axis.norm(dim=-1) / 2, cos)
