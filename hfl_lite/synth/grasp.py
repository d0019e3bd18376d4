"""Plausible grasps of the YCB-like objects by the (stand-in) MANO hand, from a seed.

A grasp is made in the object's frame in four steps (:func:`sample_grasp`):

1. **Contact point**: a random point ``p`` of the object's surface, with outward normal ``n``.
2. **Hand orientation**: the palm faces ``-n``; the fingers run across the object's longest
   axis (so they wrap around bottles and boxes), turned by a random angle about ``n``.
3. **Palm placement**: the open hand slides along ``n`` until its vertices clear the surface
   by ``clearance`` (bisection on the object's signed distance).
4. **Finger closing**: every finger flexes (MCP, PIP and DIP together, about axes across the
   finger and the palm normal) until it first touches the surface: a batch of MANO forward
   passes at increasing flexion finds, per finger, the last level with at most ``tolerance``
   penetration, refined by a second batch. The thumb first turns into opposition, then
   flexes the same way. Fingers that touch nothing curl loosely.

Axes come from the asset's rest joints (wrist, fingers, thumb side and palm normal), so
the same code serves the right hand, the mirrored left hand, the stand-in and real MANO.
Poses use the full axis-angle convention (``use_pca=False``, ``flat_hand_mean=True``).
Everything is deterministic for a given ``numpy.random.Generator`` state.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from hfl_lite.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from hfl_lite.mano.constants import FINGER_JOINTS, JOINT_REORDER

from .objects import ObjectModel

__all__ = ["Grasp", "HandModel", "get_hand_model", "sample_grasp", "penetration_depth"]

_FINGERS = FINGER_JOINTS
# MANO joint -> its position in manopth's output order
_MANO_TO_OUT = {k: JOINT_REORDER.index(k) for k in range(16)}
# MANO joint -> the output joint (manopth order) just beyond it along its finger (its "child")
_CHILD_OUT = {k: _MANO_TO_OUT[k] + 1 for chain in _FINGERS.values() for k in chain}
_FLEX_SHARE = (0.8, 1.1, 0.7)  # MCP, PIP, DIP angle per unit of flexion level
_THUMB_SHARE = (0.35, 0.7, 0.8)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class HandModel:
    """A MANO layer of one side with the rest-pose frame and finger axes the grasps need.

    Attributes (rest pose, metres, hand's own frame): ``finger_dir`` (wrist -> middle finger),
    ``thumb_side``, ``palm_normal`` (out of the palm), ``palm_centre``, ``flex_axis`` [16, 3]
    (unit axis per finger joint; positive angles curl the finger towards the palm),
    ``opposition_axis`` (thumb CMC), ``vertex_finger`` [778] (0 palm, 1..5 thumb, index, middle,
    ring, little: the finger whose joints weigh most on the vertex).
    """

    def __init__(self, side: str = "right", mano_root=None):
        from hfl_lite.mano import ManoLayer

        self.side = side
        self.layer = ManoLayer(mano_root=mano_root, side=side, use_pca=False, flat_hand_mean=True)
        self.faces = self.layer.faces.numpy()
        with torch.no_grad():
            _, out = self.layer(torch.zeros(1, 48))
        out = out[0].double().numpy() / 1000.0
        J = np.stack([out[_MANO_TO_OUT[k]] for k in range(16)])  # rest joints, MANO order
        d = _unit(J[4] - J[0])
        s = J[1] - J[7]
        s = _unit(s - (s @ d) * d)
        n = np.cross(s, d) * (1.0 if side == "right" else -1.0)
        self.finger_dir, self.thumb_side, self.palm_normal = d, s, n
        self.palm_centre = J[[0, 1, 4, 7, 10]].mean(0)
        axes = np.zeros((16, 3))
        for name, chain in _FINGERS.items():
            for k in chain:
                bone = _unit(out[_CHILD_OUT[k]] - J[k])
                towards = n if name != "thumb" else _unit(0.7 * n - 0.3 * s)
                axes[k] = _unit(np.cross(bone, towards))
        self.flex_axis = axes
        self.opposition_axis = _unit(np.cross(s, n))
        weights = self.layer.th_weights.numpy()
        joint_finger = np.zeros(16, np.int64)
        for f, name in enumerate(("thumb", "index", "middle", "ring", "little"), start=1):
            joint_finger[list(_FINGERS[name])] = f
        self.vertex_finger = joint_finger[weights.argmax(1)]

    def forward(self, pose: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MANO without translation: ``pose [B, 48]``, ``betas [B, 10]`` -> verts [B, 778, 3],
        joints [B, 21, 3] (metres, float64, manopth order)."""
        with torch.no_grad():
            v, j = self.layer(torch.as_tensor(pose, dtype=torch.float32), torch.as_tensor(betas, dtype=torch.float32))
        return v.double().numpy() / 1000.0, j.double().numpy() / 1000.0

    def root_rest(self, betas: np.ndarray) -> np.ndarray:
        """Rest wrist ``J0`` [3] (metres) of a hand shape ``betas [10]``: MANO rotates about it."""
        _, j = self.forward(np.zeros((1, 48)), np.asarray(betas, np.float64).reshape(1, 10))
        return j[0, 0]

    def finger_pose(self, levels: np.ndarray, spread: np.ndarray, opposition: float,
                    jitter: np.ndarray | None = None) -> np.ndarray:
        """45 finger axis-angles from flexion ``levels [B, 5]`` (thumb, index, middle, ring, little;
        radians of MCP-equivalent flexion), ``spread [5]`` (abduction about the palm normal at
        each finger's first joint), thumb ``opposition`` (radians, reached when the thumb's level
        is 0.8) and optional ``jitter [45]``."""
        levels = np.atleast_2d(levels)
        batch = levels.shape[0]
        pose = np.zeros((batch, 16, 3))
        firsts = []
        for f, name in enumerate(("thumb", "index", "middle", "ring", "little")):
            share = _THUMB_SHARE if name == "thumb" else _FLEX_SHARE
            for k, w in zip(_FINGERS[name], share):
                pose[:, k] = (levels[:, f] * w)[:, None] * self.flex_axis[k]
            firsts.append(_FINGERS[name][0])
        # compose each finger's first-joint flexion with abduction (and the thumb's opposition)
        extra = np.repeat((np.asarray(spread, np.float64)[:, None] * self.palm_normal)[None], batch, 0)
        # the thumb turns into opposition as it closes (fully at half its range)
        extra[:, 0] += (opposition * np.clip(levels[:, 0] / 0.8, 0.0, 1.0))[:, None] * self.opposition_axis
        R_extra = axis_angle_to_matrix(torch.as_tensor(extra))  # [B, 5, 3, 3]
        R_flex = axis_angle_to_matrix(torch.as_tensor(pose[:, firsts]))  # [B, 5, 3, 3]
        pose[:, firsts] = matrix_to_axis_angle(R_extra @ R_flex).numpy()
        out = pose[:, 1:].reshape(-1, 45)
        if jitter is not None:
            out = out + jitter
        return out


@functools.lru_cache(maxsize=4)
def get_hand_model(side: str = "right", mano_root=None) -> HandModel:
    """Cached :class:`HandModel` of ``side``."""
    return HandModel(side, mano_root)


@dataclass
class Grasp:
    """A hand holding an object, in the object's frame (metres).

    pose [48] full axis-angle (global rotation first), betas [10], trans [3],
    root_rest [3] (``J0``), verts [778, 3], joints [21, 3] (manopth order), faces [1538, 3]
    (the hand mesh's triangles), side, penetration (m): deepest hand vertex inside the object;
    contacts: fingers touching.
    """

    object_name: str
    side: str
    pose: np.ndarray
    betas: np.ndarray
    trans: np.ndarray
    root_rest: np.ndarray
    verts: np.ndarray
    joints: np.ndarray
    faces: np.ndarray
    penetration: float
    contacts: int


def penetration_depth(obj: ObjectModel, points: np.ndarray) -> np.ndarray:
    """Depth (m, >= 0) of each point ``[..., 3]`` inside the object (0 outside)."""
    pts = np.asarray(points, np.float64)
    return np.maximum(-obj.sdf(pts.reshape(-1, 3)), 0.0).reshape(pts.shape[:-1])


def _frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Right-handed orthonormal basis (columns) with first axis ``a`` and second in span(a, b)."""
    a = _unit(a)
    b = _unit(b - (b @ a) * a)
    return np.stack([a, b, np.cross(a, b)], 1)


def sample_grasp(obj: ObjectModel, hand: HandModel, betas: np.ndarray, rng: np.random.Generator,
                 clearance: float = 0.002, tolerance: float = 0.002, max_level: float = 1.6,
                 tries: int = 8) -> Grasp:
    """A grasp of ``obj`` by ``hand`` (shape ``betas [10]``); see the module docstring.

    Args:
        clearance: gap (m) between the open hand and the surface before the fingers close.
        tolerance: penetration (m) a finger may reach while closing.
        max_level: largest flexion level (radians of MCP-equivalent flexion).
        tries: contact points tried at most. The first grasp with three or more touching
            fingers and at most ``2 * tolerance`` penetration is returned; failing that, the
            best tried (within ``2 * tolerance`` first, then most fingers touching, then least
            penetration).
    """
    betas = np.asarray(betas, np.float64).reshape(10)
    extents = obj.verts.max(0) - obj.verts.min(0)
    long_axis = np.eye(3)[int(np.argmax(extents))]
    J0 = hand.root_rest(betas)
    best = None
    pts, nrms = obj.sample_surface(tries, rng)
    for p, nrm in zip(pts, nrms):
        across = np.cross(long_axis, nrm)
        if np.linalg.norm(across) < 0.3:
            across = np.cross(nrm, rng.normal(size=3))
        across = _unit(across) * (1 if rng.random() < 0.5 else -1)
        ang = rng.uniform(-0.45, 0.45)
        d_t = np.cos(ang) * across + np.sin(ang) * np.cross(nrm, across)
        R_h = _frame(d_t, -nrm) @ _frame(hand.finger_dir, hand.palm_normal).T
        global_aa = matrix_to_axis_angle(torch.as_tensor(R_h)).numpy()
        spread = rng.normal(0.0, 0.08, size=5)
        opposition = rng.uniform(0.5, 1.1)
        jitter = rng.normal(0.0, 0.04, size=45)

        def pose_of(levels: np.ndarray) -> np.ndarray:
            fingers = hand.finger_pose(levels, spread, opposition, jitter)
            return np.concatenate([np.repeat(global_aa[None], len(fingers), 0), fingers], 1)

        # placement: slide the open hand along the normal until it clears the surface
        v0, _ = hand.forward(pose_of(np.zeros((1, 5))), betas[None])
        centre = R_h @ (hand.palm_centre - J0) + J0
        base = v0[0] - centre + p  # open hand with its palm centre on the contact point
        offsets = np.linspace(-0.05, 0.15, 41)
        for _ in range(2):  # coarse grid of offsets along the normal, then a finer one
            moved = base[None] + offsets[:, None, None] * nrm
            clear = obj.sdf(moved.reshape(-1, 3)).reshape(len(offsets), -1).min(1)
            first = int(np.argmax(clear >= clearance)) if (clear >= clearance).any() else len(offsets) - 1
            hi = offsets[first]
            offsets = np.linspace(offsets[max(first - 1, 0)], hi, 21)
        trans = p + hi * nrm - centre

        # finger closing: coarse levels for all fingers at once, then a refinement
        coarse = np.linspace(0.0, max_level, 17)
        v, _ = hand.forward(pose_of(np.repeat(coarse[:, None], 5, 1)), np.repeat(betas[None], len(coarse), 0))
        pen = penetration_depth(obj, v + trans)  # [17, 778]
        levels = np.zeros(5)
        touching = np.zeros(5, bool)
        lower, upper = np.zeros(5), np.zeros(5)
        for f in range(5):
            finger_pen = pen[:, hand.vertex_finger == f + 1].max(1)
            bad = np.nonzero(finger_pen > tolerance)[0]
            if len(bad) == 0:
                levels[f] = rng.uniform(0.3, 1.0) * max_level
            elif bad[0] == 0:
                levels[f] = 0.0
            else:
                touching[f] = True
                lower[f], upper[f] = coarse[bad[0] - 1], coarse[bad[0]]
        if touching.any():
            fine = np.linspace(0.0, 1.0, 9)[:, None] * (upper - lower) + lower  # [9, 5]
            trial = np.where(touching, fine, levels)
            v, _ = hand.forward(pose_of(trial), np.repeat(betas[None], len(fine), 0))
            pen = penetration_depth(obj, v + trans)
            for f in np.nonzero(touching)[0]:
                ok = np.nonzero(pen[:, hand.vertex_finger == f + 1].max(1) <= tolerance)[0]
                levels[f] = fine[ok[-1], f] if len(ok) else lower[f]
        pose = pose_of(levels[None])[0]
        verts, joints = hand.forward(pose[None], betas[None])
        verts, joints = verts[0] + trans, joints[0] + trans
        depth = float(penetration_depth(obj, verts).max())
        grasp = Grasp(object_name=obj.name, side=hand.side, pose=pose, betas=betas.copy(), trans=trans.copy(),
                      root_rest=J0, verts=verts, joints=joints, faces=hand.faces, penetration=depth,
                      contacts=int(touching.sum()))
        key = (grasp.penetration > 2 * tolerance, -grasp.contacts, grasp.penetration)
        if best is None or key < best[0]:
            best = (key, grasp)
        if grasp.contacts >= 3 and grasp.penetration <= 2 * tolerance:
            break
    return best[1]
