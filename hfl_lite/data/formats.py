"""The conventions of the HO3D and Dex-YCB file formats that a reader must know.

The readers (:mod:`hfl_lite.data.ho3d`, :mod:`hfl_lite.data.dexycb`, :mod:`hfl_lite.data.sample`)
take them from here, and so do the writers of the synthetic sets (:mod:`hfl_lite.synth.writers`),
which are exact inverses of the readers: the conventions live on the reading side, so reading
real data never loads the synthetic world.

* Camera frames: HO3D stores 3D values in the OpenGL camera frame, ``X_gl = GL_FLIP X_cv``;
  everything inside the package is in the OpenCV frame.
* MANO hands in another frame: :func:`transform_mano` (MANO rotates the hand about its rest
  wrist, so a change of frame also moves the translation).
* Joint orders: HO3D lists MANO's 16 joints then the five tips (:data:`HO3D_TO_MANOPTH`,
  :data:`MANOPTH_TO_HO3D`); everything inside the package uses manopth's order.
* Dex-YCB's 45 PCA hand coefficients: :func:`pose_to_pca`, :func:`pca_to_pose`.
* Segmentation values: HO3D's colour seg images (:data:`HO3D_OBJECT_CHANNEL`,
  :data:`HO3D_HAND_CHANNEL`) and Dex-YCB's label images (:data:`HAND_LABEL`, else the object's
  YCB id).
* Objects: the 21 YCB objects of Dex-YCB (:data:`OBJECT_NAMES`, :data:`YCB_IDS`,
  :data:`SYMMETRIC`) and their models ``<models>/<name>/textured_simple.obj`` (:func:`read_obj`,
  :func:`mesh_diameter`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hfl_lite.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from hfl_lite.mano.constants import JOINT_REORDER

__all__ = [
    "GL_FLIP",
    "HO3D_TO_MANOPTH",
    "MANOPTH_TO_HO3D",
    "HAND_LABEL",
    "HO3D_OBJECT_CHANNEL",
    "HO3D_HAND_CHANNEL",
    "OBJECT_NAMES",
    "YCB_IDS",
    "SYMMETRIC",
    "transform_mano",
    "pose_to_pca",
    "pca_to_pose",
    "read_obj",
    "mesh_diameter",
]

GL_FLIP = np.diag([1.0, -1.0, -1.0])
"""OpenCV <-> OpenGL camera frames: ``X_gl = GL_FLIP X_cv`` (a rotation by pi about x)."""

HO3D_TO_MANOPTH = list(JOINT_REORDER)  # HO3D's order: MANO's 16 joints, then the 5 tips
"""``joints_manopth = joints_ho3d[HO3D_TO_MANOPTH]``."""
MANOPTH_TO_HO3D = [int(i) for i in np.argsort(HO3D_TO_MANOPTH)]
"""``joints_ho3d = joints_manopth[MANOPTH_TO_HO3D]``."""

HAND_LABEL = 255
"""Label value of hand pixels in Dex-YCB's ``seg``; objects have their YCB id, background 0."""

HO3D_OBJECT_CHANNEL = 1
"""Channel of an HO3D seg image (RGB order: green) that marks the object's pixels."""
HO3D_HAND_CHANNEL = 2
"""Channel of an HO3D seg image (RGB order: blue) that marks the hand's pixels."""

OBJECT_NAMES: list[str] = [
    "002_master_chef_can", "003_cracker_box", "004_sugar_box", "005_tomato_soup_can",
    "006_mustard_bottle", "007_tuna_fish_can", "008_pudding_box", "009_gelatin_box",
    "010_potted_meat_can", "011_banana", "019_pitcher_base", "021_bleach_cleanser",
    "024_bowl", "025_mug", "035_power_drill", "036_wood_block", "037_scissors",
    "040_large_marker", "051_large_clamp", "052_extra_large_clamp", "061_foam_brick",
]
"""The 21 YCB objects of Dex-YCB, in Dex-YCB's order (HO3D's ten objects are among them)."""

YCB_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(OBJECT_NAMES)}
"""Dex-YCB object id (1..21, the value in ``meta.yml`` ``ycb_ids`` and in label ``seg``) by name."""

SYMMETRIC: frozenset[str] = frozenset({"024_bowl", "036_wood_block", "052_extra_large_clamp", "061_foam_brick"})
"""Objects evaluated with ADD-S (Dex-YCB's symmetric set)."""


def transform_mano(global_aa: np.ndarray, trans: np.ndarray, root_rest: np.ndarray, R: np.ndarray,
                   t: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Express a MANO hand in another frame ``X -> R X + t``.

    MANO rotates the hand about its rest wrist ``J0`` (the root joint of the shaped template,
    which depends on the betas only): ``verts = R_g (v - J0) + J0 + trans``, so the change of
    frame maps ``(R_g, trans)`` to ``(R R_g, R (J0 + trans) + t - J0)``; the 45 finger values
    are unchanged.

    Args:
        global_aa: ``[3]`` global axis-angle of the hand (radians).
        trans: ``[3]`` MANO translation (metres).
        root_rest: ``[3]`` rest wrist ``J0`` (metres) of the hand's shape: MANO rotates about it.
        R: ``[3, 3]`` rotation, ``t``: ``[3]`` translation (None: zero).

    Returns:
        ``(global_aa [3], trans [3])`` such that MANO with them gives ``R verts + t``.
        With ``R = GL_FLIP`` and ``t = None`` this converts OpenCV <-> OpenGL (it is its own inverse).
    """
    R = np.asarray(R, np.float64)
    t = np.zeros(3) if t is None else np.asarray(t, np.float64)
    J0 = np.asarray(root_rest, np.float64)
    R_global = axis_angle_to_matrix(torch.as_tensor(np.asarray(global_aa, np.float64))).numpy()
    new_aa = matrix_to_axis_angle(torch.as_tensor(R @ R_global)).numpy()
    new_trans = R @ (J0 + np.asarray(trans, np.float64)) + t - J0
    return new_aa, new_trans


def pose_to_pca(pose45: np.ndarray, hands_mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """45 joint axis-angles (flat-mean convention) -> 45 PCA coefficients of a MANO layer with
    ``flat_hand_mean=False`` (Dex-YCB's ``pose_m[3:48]``): solves
    ``pose45 = hands_mean + coeffs @ components`` exactly.

    ``hands_mean`` [45], ``components`` [45, 45] (rows are components), ``pose45`` [..., 45].
    """
    comps = np.asarray(components, np.float64)
    if comps.shape != (45, 45):
        raise ValueError(f"pose_to_pca: components must be [45, 45], got {comps.shape}")
    rhs = np.asarray(pose45, np.float64) - np.asarray(hands_mean, np.float64)
    return np.linalg.solve(comps.T, rhs.reshape(-1, 45).T).T.reshape(rhs.shape)


def pca_to_pose(coeffs: np.ndarray, hands_mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pose_to_pca`: ``hands_mean + coeffs @ components`` ([..., 45])."""
    return np.asarray(hands_mean, np.float64) + np.asarray(coeffs, np.float64) @ np.asarray(components, np.float64)


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read vertices ``[V, 3]`` float32 and triangle faces ``[F, 3]`` int64 (0-based) from an OBJ file.

    Accepts ``v`` lines with optional colours and ``f`` lines of the forms ``a``, ``a/b``,
    ``a/b/c`` and ``a//c``; polygons are split into fans. Positions are taken as they are
    (the YCB models of both datasets are in metres).
    """
    verts, faces = [], []
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                verts.append([float(x) for x in parts[1:4]])
            elif parts[0] == "f":
                idx = [int(tok.split("/")[0]) for tok in parts[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                faces += [[idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1)]
    if not verts or not faces:
        raise ValueError(f"read_obj: no vertices or faces in {path}")
    return np.asarray(verts, np.float32), np.asarray(faces, np.int64)


def mesh_diameter(verts: np.ndarray) -> float:
    """Largest distance between two of the points ``verts [V, 3]`` (metres; float64 arithmetic):
    the object diameter of ADD-0.1D."""
    from scipy.spatial import ConvexHull

    verts = np.asarray(verts, np.float64)
    hull = verts[ConvexHull(verts).vertices]  # the farthest pair lies on the convex hull
    return float(np.linalg.norm(hull[:, None, :] - hull[None, :, :], axis=-1).max())
