"""Figures for the book and for users: offline-safe plotly display and 3D trace builders."""
from .display import figure_html, in_book_build, show
from .plotly3d import frustum3d, mesh3d, points3d, scene_layout, skeleton3d

__all__ = ["figure_html", "frustum3d", "in_book_build", "mesh3d", "points3d", "scene_layout", "show", "skeleton3d"]
