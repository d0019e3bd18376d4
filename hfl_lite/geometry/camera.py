"""Pinhole cameras and image boxes, batched torch.

Conventions: OpenCV camera frame (x right, y down, z forward), metres; pixel coordinates
``(u, v)`` with ``u`` along the image columns; intrinsics ``K = [[fx, s, cx], [0, fy, cy],
[0, 0, 1]]``; rigid transforms map object points to the camera as ``X_cam = R X_obj + t``.
Boxes are ``(x1, y1, x2, y2)`` in pixels. Every function broadcasts over leading dimensions
and keeps the input's dtype and device.
"""
from __future__ import annotations

import torch

__all__ = [
    "make_intrinsics",
    "transform_points",
    "project_points",
    "reprojection_errors",
    "tight_box",
    "enlarge_box",
    "box_intersection",
]


def make_intrinsics(fx, fy, cx, cy, dtype=torch.float32, device=None) -> torch.Tensor:
    """Intrinsics matrices ``[..., 3, 3]`` from focal lengths and principal point (pixels).

    Each argument is a number or a tensor; they broadcast together to the batch shape.
    """
    fx, fy, cx, cy = (torch.as_tensor(v, dtype=dtype, device=device) for v in (fx, fy, cx, cy))
    fx, fy, cx, cy = torch.broadcast_tensors(fx, fy, cx, cy)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [fx, zero, cx, zero, fy, cy, zero, zero, one]
    return torch.stack(rows, dim=-1).reshape(*fx.shape, 3, 3)


def transform_points(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rigid transform ``R X + t``: ``points [..., N, 3]``, ``R [..., 3, 3]``, ``t [..., 3]`` -> ``[..., N, 3]``."""
    if points.shape[-1] != 3:
        raise ValueError(f"transform_points: points must be [..., N, 3], got {tuple(points.shape)}")
    return points @ R.transpose(-1, -2) + t.unsqueeze(-2)


def project_points(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Perspective projection of camera-frame points (metres) to pixels.

    Args:
        points: ``[..., N, 3]`` in the camera frame.
        K: ``[..., 3, 3]`` intrinsics (pixels).
        eps: depths with ``|z| < eps`` are replaced by ``eps`` (keeping their sign) so the
            result stays finite; such points have no meaningful projection.

    Returns:
        ``[..., N, 2]`` pixel coordinates ``(u, v)``.
    """
    if points.shape[-1] != 3:
        raise ValueError(f"project_points: points must be [..., N, 3], got {tuple(points.shape)}")
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"project_points: K must be [..., 3, 3], got {tuple(K.shape)}")
    uvw = points @ K.transpose(-1, -2)
    z = uvw[..., 2:3]
    z = torch.where(z.abs() < eps, torch.full_like(z, eps) * torch.where(z < 0, -1.0, 1.0).to(z), z)
    return uvw[..., :2] / z


def reprojection_errors(points_3d: torch.Tensor, points_2d: torch.Tensor, K: torch.Tensor,
                        R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Pixel distance between observed points and object points projected with a pose.

    Args:
        points_3d: ``[..., N, 3]`` object frame (metres).
        points_2d: ``[..., N, 2]`` observations (pixels).
        K: ``[..., 3, 3]``; R: ``[..., 3, 3]``; t: ``[..., 3]`` (metres), ``X_cam = R X + t``.

    Returns:
        ``[..., N]`` reprojection errors in pixels.
    """
    return (project_points(transform_points(points_3d, R, t), K) - points_2d).norm(dim=-1)


def tight_box(points_2d: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Tightest ``(x1, y1, x2, y2)`` box around ``points_2d [..., N, 2]`` (pixels).

    ``mask [..., N]`` (bool) selects the points to enclose; a box over no points is all zeros.
    """
    if points_2d.shape[-1] != 2:
        raise ValueError(f"tight_box: points_2d must be [..., N, 2], got {tuple(points_2d.shape)}")
    if mask is None:
        lo, hi = points_2d.amin(dim=-2), points_2d.amax(dim=-2)
    else:
        m = mask.bool().unsqueeze(-1)
        inf = torch.finfo(points_2d.dtype).max
        lo = torch.where(m, points_2d, torch.full_like(points_2d, inf)).amin(dim=-2)
        hi = torch.where(m, points_2d, torch.full_like(points_2d, -inf)).amax(dim=-2)
        empty = ~m.any(dim=-2)
        lo = torch.where(empty, torch.zeros_like(lo), lo)
        hi = torch.where(empty, torch.zeros_like(hi), hi)
    return torch.cat([lo, hi], dim=-1)


def enlarge_box(box: torch.Tensor, factor: float = 1.1) -> torch.Tensor:
    """Scale ``(x1, y1, x2, y2)`` boxes ``[..., 4]`` by ``factor`` about their centres."""
    if box.shape[-1] != 4:
        raise ValueError(f"enlarge_box: box must be [..., 4], got {tuple(box.shape)}")
    centre = (box[..., :2] + box[..., 2:]) / 2
    half = (box[..., 2:] - box[..., :2]) / 2 * factor
    return torch.cat([centre - half, centre + half], dim=-1)


def box_intersection(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersection of ``(x1, y1, x2, y2)`` boxes ``a, b [..., 4]`` (HFL-Net's hand-object box).

    Returns ``(box [..., 4], overlaps [...] bool)``: the box is max of the top-left corners and
    min of the bottom-right corners; where the boxes do not overlap it is clamped to zero
    width/height at the top-left corner and ``overlaps`` is False.
    """
    if a.shape[-1] != 4 or b.shape[-1] != 4:
        raise ValueError(f"box_intersection: boxes must be [..., 4], got {tuple(a.shape)} and {tuple(b.shape)}")
    lo = torch.maximum(a[..., :2], b[..., :2])
    hi = torch.minimum(a[..., 2:], b[..., 2:])
    overlaps = (hi > lo).all(dim=-1)
    hi = torch.maximum(hi, lo)
    return torch.cat([lo, hi], dim=-1), overlaps
