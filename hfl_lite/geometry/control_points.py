"""The 21 object control points of HFL-Net: corners, edge midpoints and centre of a 3D box.

The box is the object's axis-aligned bounding box in its own frame (metres). Order (DESIGN.md):

* 0-7   corners: bottom face (``z = z_min``) then top face (``z = z_max``), each going
  ``(x_min, y_min) -> (x_max, y_min) -> (x_max, y_max) -> (x_min, y_max)``;
* 8-11  midpoints of the bottom edges 0-1, 1-2, 2-3, 3-0;
* 12-15 midpoints of the top edges 4-5, 5-6, 6-7, 7-4;
* 16-19 midpoints of the vertical edges 0-4, 1-5, 2-6, 3-7;
* 20    the box centre.
"""
from __future__ import annotations

import torch

__all__ = [
    "NUM_CONTROL_POINTS",
    "BOX_EDGES",
    "CONTROL_POINT_NAMES",
    "control_points_from_bounds",
    "control_points_from_vertices",
]

NUM_CONTROL_POINTS = 21

# The 12 box edges as pairs of corner indices, in the order of their midpoints (points 8-19).
BOX_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 0),
    (4, 5), (5, 6), (6, 7), (7, 4),
    (0, 4), (1, 5), (2, 6), (3, 7),
)

CONTROL_POINT_NAMES: tuple[str, ...] = (
    tuple(f"corner {i}" for i in range(8))
    + tuple(f"bottom edge {a}-{b}" for a, b in BOX_EDGES[0:4])
    + tuple(f"top edge {a}-{b}" for a, b in BOX_EDGES[4:8])
    + tuple(f"vertical edge {a}-{b}" for a, b in BOX_EDGES[8:12])
    + ("centre",)
)

# For each corner, which end of each axis it takes (0 = min, 1 = max).
_CORNER_SIDES = ((0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1))


def control_points_from_bounds(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Control points of the boxes ``[lo, hi]``: ``lo, hi [..., 3]`` (metres) -> ``[..., 21, 3]``."""
    if lo.shape[-1] != 3 or hi.shape != lo.shape:
        raise ValueError(f"control_points_from_bounds: lo and hi must both be [..., 3], got "
                         f"{tuple(lo.shape)} and {tuple(hi.shape)}")
    sides = torch.tensor(_CORNER_SIDES, dtype=lo.dtype, device=lo.device)  # [8, 3]
    corners = lo.unsqueeze(-2) + sides * (hi - lo).unsqueeze(-2)  # [..., 8, 3]
    a = torch.tensor([e[0] for e in BOX_EDGES], device=lo.device)
    b = torch.tensor([e[1] for e in BOX_EDGES], device=lo.device)
    mids = (corners[..., a, :] + corners[..., b, :]) / 2
    centre = ((lo + hi) / 2).unsqueeze(-2)
    return torch.cat([corners, mids, centre], dim=-2)


def control_points_from_vertices(vertices: torch.Tensor) -> torch.Tensor:
    """Control points of the axis-aligned bounding box of ``vertices [..., V, 3]`` -> ``[..., 21, 3]``."""
    if vertices.shape[-1] != 3 or vertices.shape[-2] < 1:
        raise ValueError(f"control_points_from_vertices: vertices must be [..., V>=1, 3], got {tuple(vertices.shape)}")
    return control_points_from_bounds(vertices.amin(dim=-2), vertices.amax(dim=-2))
