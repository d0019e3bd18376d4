"""MANO hand model: a manopth-compatible layer, asset loading and the project's stand-in hand.

    from hfl_lite.mano import ManoLayer
    layer = ManoLayer(use_pca=False, flat_hand_mean=True, center_idx=0)
    verts, joints = layer(pose, betas)          # [B,778,3], [B,21,3] millimetres
    layer.asset_kind                            # "mano" (MANO_ROOT set) or "standin"

Without MANO's files (``MANO_ROOT``) the layer uses the project's stand-in hand, an
openly made asset in MANO's format that is NOT MANO (see :mod:`hfl_lite.mano.standin`).
"""
from ..safe_pickle import UnsafePickleError
from .asset import STANDIN_FOLDER, ManoAsset, StandinAssetWarning, find_mano_asset, load_mano_pickle
from .constants import (
    FINGER_JOINTS,
    JOINT_NAMES,
    JOINT_REORDER,
    MANO_JOINT_NAMES,
    MANO_PARENTS,
    SKELETON_PARENTS,
    TIP_VERTS_LEFT,
    TIP_VERTS_RIGHT,
)
from .layer import ManoLayer, project_to_rotation

__all__ = [
    "FINGER_JOINTS", "JOINT_NAMES", "JOINT_REORDER", "MANO_JOINT_NAMES", "MANO_PARENTS", "ManoAsset", "ManoLayer",
    "SKELETON_PARENTS", "STANDIN_FOLDER", "StandinAssetWarning", "TIP_VERTS_LEFT", "TIP_VERTS_RIGHT",
    "UnsafePickleError", "find_mano_asset", "load_mano_pickle", "project_to_rotation",
]
