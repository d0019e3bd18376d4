"""The HFL-Net input crop: a square around hand and object, warped to ``S x S`` pixels.

The crop box is the union of the hand box and the object box, each enlarged 1.5x about its
centre, made square about the union's centre (side = the longer side). Augmentation moves the
centre, scales the side and rotates the crop (:mod:`hfl_lite.data.augment`).

A rotation of the image is only consistent with the 3D annotations when the 3D points turn
too: the crop therefore rotates the camera frame by ``R_z(angle)`` about its optical axis and
maps full-image pixels to crop pixels with the affine map

    A(x) = s * Kl R2 Kl^-1 (x - c) + ((S - 1) / 2, (S - 1) / 2)

where ``Kl`` is the upper-left 2x2 block of the intrinsics, ``R2`` the 2x2 block of ``R_z``,
``c`` the crop centre and ``s = S / side``. The new intrinsics ``K' = A K R_z^T`` then have
the same form as ``K`` (upper-left block ``s Kl``), and for every camera-frame point ``X``:
``A(project(K, X)) = project(K', R_z X)``. With square pixels (``fx = fy``, no skew) the
image part is an ordinary rotation about the crop centre.

Pixel convention (OpenCV's): integer coordinates are pixel centres; the crop's edges
``c +- side/2`` map to ``-0.5`` and ``S - 0.5``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from hfl_lite.geometry.camera import enlarge_box

__all__ = ["CROP_ENLARGE", "CropTransform", "crop_square", "make_crop_transform", "rotation_z", "union_box"]

CROP_ENLARGE = 1.5  # hand and object boxes are each enlarged this much before their union


def union_box(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest ``(x1, y1, x2, y2)`` box holding both ``a`` and ``b`` (``[..., 4]`` pixels)."""
    return torch.cat([torch.minimum(a[..., :2], b[..., :2]), torch.maximum(a[..., 2:], b[..., 2:])], dim=-1)


def crop_square(hand_box: torch.Tensor, obj_box: torch.Tensor, factor: float = CROP_ENLARGE
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """HFL-Net's crop of a frame: ``(centre [..., 2], side [...])`` in full-image pixels.

    The union of ``hand_box`` and ``obj_box`` (``[..., 4]``), each first enlarged ``factor``
    times about its centre, made square about the union's centre.
    """
    box = union_box(enlarge_box(hand_box, factor), enlarge_box(obj_box, factor))
    centre = (box[..., :2] + box[..., 2:]) / 2
    side = (box[..., 2:] - box[..., :2]).amax(dim=-1)
    return centre, side


def rotation_z(angle: float, dtype=torch.float64) -> torch.Tensor:
    """Rotation ``[3, 3]`` by ``angle`` radians about the camera's optical (z) axis.

    In the OpenCV frame (y down) a positive angle turns the image clockwise.
    """
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)


@dataclass(frozen=True)
class CropTransform:
    """One crop of one frame; every method maps full-frame quantities to the crop.

    Attributes (float64):
        A:    ``[3, 3]`` homogeneous affine map, full-image pixels -> crop pixels
        R:    ``[3, 3]`` rotation of the camera frame (about the optical axis)
        K:    ``[3, 3]`` intrinsics of the crop, ``A K_full R^T``
        size: side ``S`` of the crop in pixels
    """

    A: torch.Tensor
    R: torch.Tensor
    K: torch.Tensor
    size: int

    def points2d(self, points: torch.Tensor) -> torch.Tensor:
        """Full-image pixels ``[..., 2]`` -> crop pixels ``[..., 2]``."""
        A = self.A.to(points.dtype)
        return points @ A[:2, :2].T + A[:2, 2]

    def image_points(self, points: torch.Tensor) -> torch.Tensor:
        """Crop pixels ``[..., 2]`` -> full-image pixels ``[..., 2]`` (the inverse of :meth:`points2d`)."""
        A_inv = torch.linalg.inv(self.A).to(points.dtype).to(points.device)
        return points @ A_inv[:2, :2].T + A_inv[:2, 2]

    def points3d(self, points: torch.Tensor) -> torch.Tensor:
        """Camera-frame points ``[..., 3]`` (metres) -> the crop's rotated camera frame."""
        return points @ self.R.to(points.dtype).T

    def rotation(self, rot: torch.Tensor) -> torch.Tensor:
        """An object/hand -> camera rotation ``[..., 3, 3]`` -> object/hand -> crop camera."""
        return self.R.to(rot.dtype) @ rot

    def box(self, box: torch.Tensor) -> torch.Tensor:
        """Tight crop-pixel box ``[4]`` around the four transformed corners of ``box [4]``."""
        x1, y1, x2, y2 = box.unbind(-1)
        corners = torch.stack([torch.stack([x1, y1]), torch.stack([x2, y1]), torch.stack([x2, y2]),
                               torch.stack([x1, y2])])
        p = self.points2d(corners)
        return torch.cat([p.amin(dim=0), p.amax(dim=0)])

    def warp_image(self, image: np.ndarray) -> np.ndarray:
        """``image [H, W, C]`` (any dtype cv2 accepts) -> ``[S, S, C]``, bilinear, zeros outside."""
        return cv2.warpAffine(image, self.A[:2].numpy(), (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def sample_mask(self, mask: np.ndarray, box: torch.Tensor, resolution: int) -> torch.Tensor:
        """Sample a full-image mask over a crop-pixel box on a ``resolution``-square grid.

        Cell ``(i, j)`` takes the full-image pixel nearest to the point that maps to the cell
        centre ``(x1 + (j + 0.5) w / R, y1 + (i + 0.5) h / R)`` of ``box = (x1, y1, x2, y2)``;
        outside the image it is 0. Returns ``[R, R]`` float32 in {0, 1}.
        """
        x1, y1, x2, y2 = box.tolist()
        steps = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution
        xs, ys = x1 + steps * (x2 - x1), y1 + steps * (y2 - y1)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [R, R, 2] crop px
        A_inv = torch.linalg.inv(self.A)
        src = grid @ A_inv[:2, :2].T + A_inv[:2, 2]
        col, row = src.round().long().unbind(-1)
        h, w = mask.shape[:2]
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        values = torch.from_numpy(np.ascontiguousarray(mask > 0))[row.clamp(0, h - 1), col.clamp(0, w - 1)]
        return (values & inside).float()


def make_crop_transform(K: torch.Tensor, centre: torch.Tensor, side: float, size: int,
                        angle: float = 0.0) -> CropTransform:
    """The crop of side ``side`` (full-image pixels) about ``centre [2]``, rotated by ``angle``.

    Args:
        K: ``[3, 3]`` full-image intrinsics (pixels).
        centre: ``[2]`` crop centre in full-image pixels.
        side: crop side in full-image pixels (> 0).
        size: output side ``S`` in pixels.
        angle: rotation about the optical axis, radians (see :func:`rotation_z`).
    """
    if not side > 0:
        raise ValueError(f"make_crop_transform: side must be > 0, got {side}")
    K = K.to(torch.float64)
    R = rotation_z(angle)
    Kl = K[:2, :2]
    scale = size / float(side)
    lin = scale * Kl @ R[:2, :2] @ torch.linalg.inv(Kl)
    A = torch.eye(3, dtype=torch.float64)
    A[:2, :2] = lin
    A[:2, 2] = (size - 1) / 2 - lin @ centre.to(torch.float64)
    K_crop = torch.eye(3, dtype=torch.float64)
    K_crop[:2, :2] = scale * Kl  # what A K R^T equals exactly, without rounding noise
    K_crop[:2, 2] = (A @ K @ R.T)[:2, 2]
    return CropTransform(A=A, R=R, K=K_crop, size=int(size))
