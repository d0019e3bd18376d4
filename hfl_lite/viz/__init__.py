"""Figures for the book and for users: offline-safe plotly display, 3D trace builders and
Grad-CAM heatmaps of the two streams."""
from .display import figure_html, in_book_build, show
from .gradcam import stream_gradcam
from .plotly3d import frustum3d, mesh3d, points3d, scene_layout, skeleton3d

__all__ = ["figure_html", "frustum3d", "in_book_build", "mesh3d", "points3d", "scene_layout", "show", "skeleton3d", "stream_gradcam"]
