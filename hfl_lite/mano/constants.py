"""MANO's conventions: asset keys and shapes, the kinematic tree, joint orders, fingertips.

Two joint orders meet in this package:

* MANO's own 16 joints (the order of ``J_regressor``, ``kintree_table`` and the pose
  vector): 0 wrist; 1-3 index; 4-6 middle; 7-9 little; 10-12 ring; 13-15 thumb
  (each finger from the palm outwards).
* manopth's 21 output joints: wrist, then thumb, index, middle, ring, little, each with
  four points from the palm to the fingertip. The fingertips are mesh vertices.
"""
from __future__ import annotations

N_VERTS = 778
N_FACES = 1538
N_JOINTS = 16
N_SHAPE = 10
N_POSE_FEATURES = 9 * (N_JOINTS - 1)  # (R_k - I) flattened for joints 1..15

#: Parent of each MANO joint (``kintree_table[0]``; the wrist is the root).
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)

MANO_JOINT_NAMES = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "little1", "little2", "little3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)

#: MANO joint ids of each finger, palm outwards.
FINGER_JOINTS = {
    "thumb": (13, 14, 15),
    "index": (1, 2, 3),
    "middle": (4, 5, 6),
    "ring": (10, 11, 12),
    "little": (7, 8, 9),
}

#: manopth's fingertip vertices (thumb, index, middle, ring, little) for the right hand;
#: the left hand reads the middle fingertip from vertex 445 instead of 444.
TIP_VERTS_RIGHT = (745, 317, 444, 556, 673)
TIP_VERTS_LEFT = (745, 317, 445, 556, 673)

#: 16 MANO joints + 5 tips (in TIP_VERTS order) -> manopth's 21-joint output order.
JOINT_REORDER = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)

#: Names of the 21 output joints (manopth order). Thumb points are the CMC, MCP and IP
#: joints (datasets often call all four fingers' points "MCP, PIP, DIP, tip").
JOINT_NAMES = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "little_mcp", "little_pip", "little_dip", "little_tip",
)

#: Parent of each of the 21 output joints (for drawing skeletons).
SKELETON_PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)

#: Keys the layer needs and their shapes (``None`` = any size on that axis).
REQUIRED_SHAPES = {
    "v_template": (N_VERTS, 3),
    "shapedirs": (N_VERTS, 3, N_SHAPE),
    "posedirs": (N_VERTS, 3, N_POSE_FEATURES),
    "J_regressor": (N_JOINTS, N_VERTS),
    "weights": (N_VERTS, N_JOINTS),
    "kintree_table": (2, N_JOINTS),
    "f": (N_FACES, 3),
    "hands_components": (45, 45),
    "hands_mean": (45,),
}

ASSET_FILES = {"right": "MANO_RIGHT.pkl", "left": "MANO_LEFT.pkl"}

#: Key that marks the project's stand-in asset (absent from MANO's files).
STANDIN_MARKER = "hfl_lite_standin"
