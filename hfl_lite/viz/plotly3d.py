"""Small builders of plotly 3D traces shared by the chapters (meshes, skeletons, frusta).

Inputs are numpy arrays or torch tensors in metres unless a docstring says otherwise.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def mesh3d(verts, faces, color: str = "#e0ac8b", name: str = "mesh", opacity: float = 1.0, **kw) -> go.Mesh3d:
    """Triangle mesh trace: ``verts [V,3]``, ``faces [F,3]`` (vertex indices)."""
    v, f = _np(verts), np.asarray(faces.detach().cpu() if hasattr(faces, "detach") else faces, dtype=np.int64)
    return go.Mesh3d(x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2], color=color,
                     opacity=opacity, name=name, flatshading=False, showlegend=True,
                     lighting=dict(ambient=0.45, diffuse=0.8, specular=0.2, roughness=0.6), **kw)


def points3d(points, color: str = "black", size: float = 4, name: str = "points", text=None) -> go.Scatter3d:
    """Marker trace for ``points [N,3]``; ``text`` (N labels) shows on hover."""
    p = _np(points)
    return go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name=name, text=text,
                        marker=dict(size=size, color=color))


def skeleton3d(joints, parents, color: str = "black", name: str = "skeleton") -> go.Scatter3d:
    """Bones as one line trace: ``joints [J,3]``, ``parents`` (length J, -1 for the root)."""
    j = _np(joints)
    xs, ys, zs = [], [], []
    for child, parent in enumerate(parents):
        if parent < 0:
            continue
        for axis, out in enumerate((xs, ys, zs)):
            out.extend([j[parent, axis], j[child, axis], None])
    return go.Scatter3d(x=xs, y=ys, z=zs, mode="lines+markers", name=name,
                        line=dict(color=color, width=5), marker=dict(size=3, color=color))


def frustum3d(K, width: int, height: int, depth: float = 0.1, color: str = "gray",
              name: str = "camera") -> go.Scatter3d:
    """Wire-frame of a pinhole camera at the origin (OpenCV frame) out to ``depth`` metres."""
    K = _np(K)
    corners_px = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    rays = np.c_[(corners_px[:, 0] - K[0, 2]) / K[0, 0], (corners_px[:, 1] - K[1, 2]) / K[1, 1], np.ones(4)]
    far = rays * depth
    xs, ys, zs = [], [], []
    for a, b in [(0, 1), (1, 2), (2, 3), (3, 0)]:
        for axis, out in enumerate((xs, ys, zs)):
            out.extend([far[a, axis], far[b, axis], None])
    for c in far:
        for axis, out in enumerate((xs, ys, zs)):
            out.extend([0.0, c[axis], None])
    return go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", name=name, line=dict(color=color, width=3))


def scene_layout(fig: go.Figure, title: str | None = None, opencv_camera: bool = True, height: int = 520) -> go.Figure:
    """Equal-aspect 3D axes; with ``opencv_camera`` the view looks along +z with y pointing down.

    The title sits on its own line under the plotly toolbar (which takes the figure's top right
    corner), so a long title never runs beneath the buttons.
    """
    scene = dict(aspectmode="data", xaxis_title="x (m)", yaxis_title="y (m)", zaxis_title="z (m)")
    if opencv_camera:
        scene["camera"] = dict(up=dict(x=0, y=-1, z=0), eye=dict(x=0.0, y=-0.4, z=-1.8))
    title_layout = dict(text=title, x=0.01, xanchor="left", yref="container", y=1, yanchor="top", pad=dict(t=34))
    fig.update_layout(scene=scene, title=title_layout if title else None, height=height,
                      margin=dict(l=0, r=0, t=70 if title else 30, b=0))
    return fig
