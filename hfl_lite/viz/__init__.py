"""Figures for the book and for users: offline-safe plotly display, 3D trace builders, Grad-CAM
heatmaps of the two streams, and the drawn test scene of the network chapters."""
from .display import figure_html, in_book_build, show, thin_line_traces
from .gradcam import stream_gradcam
from .plotly3d import frustum3d, mesh3d, points3d, scene_layout, skeleton3d
from .sketch import draw_box, grasp_sketch

__all__ = ["draw_box", "figure_html", "frustum3d", "grasp_sketch", "in_book_build", "mesh3d", "points3d",
           "scene_layout", "show", "skeleton3d", "stream_gradcam", "thin_line_traces"]
