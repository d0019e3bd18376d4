"""Geometry: rotations, cameras, Procrustes, control points, voting and EPnP (batched torch)."""
from .camera import box_intersection, enlarge_box, make_intrinsics, project_points, reprojection_errors, tight_box, transform_points
from .control_points import (BOX_EDGES, CONTROL_POINT_NAMES, NUM_CONTROL_POINTS, control_points_from_bounds,
                             control_points_from_vertices)
from .epnp import PoseResult, epnp, epnp_ransac, random_pnp_problems
from .procrustes import fit_similarity, procrustes_align
from .rotations import (axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, project_to_rotation,
                        relative_angle, rot6d_to_matrix, skew)
from .voting import (OFFSET_SCALE, Votes, cell_centres, confidence_targets, decode_votes, offset_targets,
                     solve_pose_from_votes, vote_mean, vote_topk)

__all__ = [
    "axis_angle_to_matrix", "matrix_to_axis_angle", "matrix_to_rot6d", "project_to_rotation", "relative_angle",
    "rot6d_to_matrix", "skew",
    "make_intrinsics", "transform_points", "project_points", "reprojection_errors", "tight_box", "enlarge_box",
    "box_intersection",
    "NUM_CONTROL_POINTS", "BOX_EDGES", "CONTROL_POINT_NAMES", "control_points_from_bounds", "control_points_from_vertices",
    "fit_similarity", "procrustes_align",
    "PoseResult", "epnp", "epnp_ransac", "random_pnp_problems",
    "OFFSET_SCALE", "Votes", "cell_centres", "decode_votes", "vote_topk", "vote_mean", "offset_targets",
    "confidence_targets", "solve_pose_from_votes",
]
