"""A differentiable MANO layer: a drop-in for manopth's ``ManoLayer`` (written for hfl_lite).

Same constructor arguments and defaults, same inputs, outputs, units and joint order as
manopth, so code written for manopth runs unchanged:

    layer = ManoLayer(use_pca=False, flat_hand_mean=True, center_idx=0)
    verts, joints = layer(pose [B,48], betas [B,10])     # millimetres

The forward pass (MANO, Romero et al. 2017):

1. pose: the 45 finger numbers are PCA coefficients (``use_pca``, first ``ncomps`` rows of
   ``hands_components``) or axis-angles; ``hands_mean`` is added unless
   ``flat_hand_mean``; each joint's rotation ``R_k`` from Rodrigues' formula.
2. shape: ``v_shaped = v_template + shapedirs . betas``; joints ``J = J_regressor v_shaped``.
3. pose correctives: ``v_posed = v_shaped + posedirs . vec(R_k - I)`` over joints 1..15.
4. forward kinematics along ``kintree_table``: ``G_k = G_parent(k) [R_k | J_k - J_parent]``.
5. linear blend skinning: ``v = sum_k w_vk G_k [v_posed - J_k]``.
6. outputs: the 16 posed joints plus five fingertip vertices, reordered to manopth's
   order; ``trans`` added (or, with no non-zero ``trans``, joint ``center_idx``
   subtracted); everything times 1000 (millimetres).

Differences from manopth: buffers are not saved in ``state_dict`` (a checkpoint never
carries MANO's data, and loading one never replaces the asset); ``forward`` takes manopth's
keyword names (``th_pose_coeffs``, ``th_betas``, ``th_trans``) as well as shorter ones, but has
no ``root_palm``/``share_betas`` arguments; 'rotmat' poses may be ``[B,16,3,3]`` or
``[B,144]``; shapes are checked with clear errors.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ..geometry.rotations import axis_angle_to_matrix, project_to_rotation, rot6d_to_matrix
from .asset import find_mano_asset
from .constants import JOINT_REORDER, N_JOINTS, N_VERTS, TIP_VERTS_LEFT, TIP_VERTS_RIGHT

__all__ = ["ManoLayer", "project_to_rotation"]  # project_to_rotation: re-exported from geometry


def _robust_rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """manopth's ``robust_rot`` 6D decoding: both 3-vectors count equally. ``[B,6] -> [B,3,3]``."""
    a = nn.functional.normalize(x[..., :3], dim=-1, eps=1e-8)
    b = nn.functional.normalize(x[..., 3:], dim=-1, eps=1e-8)
    mid = nn.functional.normalize(a + b, dim=-1, eps=1e-8)
    orth = nn.functional.normalize(a - b, dim=-1, eps=1e-8)
    c1 = nn.functional.normalize(mid + orth, dim=-1, eps=1e-8)
    c2 = nn.functional.normalize(mid - orth, dim=-1, eps=1e-8)
    c3 = nn.functional.normalize(torch.cross(c1, c2, dim=-1), dim=-1, eps=1e-8)
    return torch.stack([c1, c2, c3], dim=-1)


def _one_of(name: str, value, manopth_value):
    """The argument ``name`` given either under its own name or under manopth's ``th_<name>``."""
    if value is not None and manopth_value is not None:
        raise TypeError(f"ManoLayer.forward: got both {name} and th_{name}; pass one of them")
    return manopth_value if value is None else value


class ManoLayer(nn.Module):
    """MANO as a torch module; outputs in millimetres (see the module docstring).

    Args:
        mano_root: folder with ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``; ``None`` -> env
            ``MANO_ROOT``, else the project's stand-in hand (see :mod:`hfl_lite.mano.asset`).
        side: ``"right"`` or ``"left"``.
        use_pca: pose the fingers with ``ncomps`` PCA coefficients instead of 45 axis-angles.
        ncomps: number of PCA components (1-45) when ``use_pca``.
        flat_hand_mean: if True, zero finger pose is the flat hand; else ``hands_mean``.
        center_idx: output joint (0-20) moved to the origin when no non-zero ``trans`` is
            given; ``None`` keeps the model's own frame.
        joint_rot_mode: ``"axisang"`` or ``"rotmat"`` (with ``use_pca=False``: 16 rotation
            matrices per hand, projected onto rotations; ``hands_mean`` is not used, as in
            manopth).
        root_rot_mode: ``"axisang"`` (3 numbers) or ``"rot6d"`` (6 numbers) for the global
            rotation.
        robust_rot: decode ``rot6d`` symmetrically in its two vectors (manopth's option).
        dtype: floating dtype of the buffers (manopth has float32 only).

    Attributes:
        asset_kind: ``"mano"`` or ``"standin"``; asset_source: file (or how it was built).
        faces: ``[1538, 3]`` int64 triangle indices (also ``th_faces``).
        parents: the 16 MANO joints' parents (root -1); side; tip_ids: fingertip vertices.
    """

    def __init__(self, mano_root: str | os.PathLike | None = None, side: str = "right", use_pca: bool = True,
                 ncomps: int = 6, flat_hand_mean: bool = True, center_idx: int | None = None,
                 joint_rot_mode: str = "axisang", root_rot_mode: str = "axisang", robust_rot: bool = False,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if joint_rot_mode not in ("axisang", "rotmat"):
            raise ValueError(f"joint_rot_mode must be 'axisang' or 'rotmat', got {joint_rot_mode!r}")
        if root_rot_mode not in ("axisang", "rot6d"):
            raise ValueError(f"root_rot_mode must be 'axisang' or 'rot6d', got {root_rot_mode!r}")
        if use_pca and not 1 <= int(ncomps) <= 45:
            raise ValueError(f"ncomps must be in 1..45 when use_pca=True, got {ncomps}")
        if center_idx is not None and not 0 <= center_idx < len(JOINT_REORDER):
            raise ValueError(f"center_idx must be None or an output joint 0..20, got {center_idx}")
        self.side = side
        self.use_pca = use_pca
        self.ncomps = int(ncomps) if use_pca else 45
        self.flat_hand_mean = flat_hand_mean
        self.center_idx = center_idx
        self.joint_rot_mode = joint_rot_mode
        self.root_rot_mode = root_rot_mode
        self.robust_rot = robust_rot
        self.rot = 3 if root_rot_mode == "axisang" else 6

        asset = find_mano_asset(mano_root, side, dtype=np.float64)
        self.asset_kind, self.asset_source = asset.kind, asset.source
        data = asset.data
        self.smpl_data = data
        self.kintree_table = data["kintree_table"]
        self.parents = [int(p) for p in data["kintree_table"][0]]
        self.kintree_parents = self.parents
        self.tip_ids = TIP_VERTS_RIGHT if side == "right" else TIP_VERTS_LEFT

        def buf(name, array, dt=dtype):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array)).to(dt), persistent=False)

        buf("th_betas", np.zeros((1, 10)))
        buf("th_v_template", data["v_template"][None])
        buf("th_shapedirs", data["shapedirs"])
        buf("th_posedirs", data["posedirs"])
        buf("th_J_regressor", data["J_regressor"])
        buf("th_weights", data["weights"])
        buf("th_faces", data["f"], torch.long)
        hands_mean = np.zeros(45) if flat_hand_mean else data["hands_mean"]
        buf("th_hands_mean", hands_mean[None])
        buf("th_comps", data["hands_components"])
        buf("th_selected_comps", data["hands_components"][: self.ncomps])
        self.register_buffer("th_hands_mean_rotmat", axis_angle_to_matrix(self.th_hands_mean.view(15, 3)),
                             persistent=False)

        # Joints grouped by depth in the tree; each level's parents lie in the level before.
        depth = [0] * N_JOINTS
        for k in range(1, N_JOINTS):
            depth[k] = depth[self.parents[k]] + 1
        # The index lists live in (non-persistent) buffers: a Python list used as an index is
        # turned into a new tensor, and copied to the GPU, on every call.
        levels = [[k for k in range(N_JOINTS) if depth[k] == d] for d in range(max(depth) + 1)]
        self._levels = []  # per level: buffer names of (joints, parents' positions in the level before, parents)
        for i, (prev, level) in enumerate(zip(levels[:-1], levels[1:])):
            names = (f"_level{i}_joints", f"_level{i}_parent_pos", f"_level{i}_parents")
            values = (level, [prev.index(self.parents[k]) for k in level], [self.parents[k] for k in level])
            for name, index in zip(names, values):
                self.register_buffer(name, torch.tensor(index), persistent=False)
            self._levels.append(names)
        order = [k for level in levels for k in level]
        self.register_buffer("_level_inverse", torch.tensor([order.index(k) for k in range(N_JOINTS)]), persistent=False)
        self.register_buffer("_level_roots", torch.tensor(levels[0]), persistent=False)
        self.register_buffer("_tip_index", torch.tensor(self.tip_ids), persistent=False)
        self.register_buffer("_joint_reorder", torch.tensor(JOINT_REORDER), persistent=False)

    @property
    def faces(self) -> torch.Tensor:
        """``[1538, 3]`` int64 vertex indices of the triangles."""
        return self.th_faces

    def extra_repr(self) -> str:
        return (f"side={self.side!r}, asset_kind={self.asset_kind!r}, use_pca={self.use_pca}, ncomps={self.ncomps}, "
                f"flat_hand_mean={self.flat_hand_mean}, center_idx={self.center_idx}, "
                f"joint_rot_mode={self.joint_rot_mode!r}, root_rot_mode={self.root_rot_mode!r}")

    # ------------------------------------------------------------------ pose decoding
    def _rotations(self, pose_coeffs: torch.Tensor) -> torch.Tensor:
        """Pose input -> ``[B, 16, 3, 3]`` joint rotations (root first, MANO joint order)."""
        batch = pose_coeffs.shape[0]
        if self.use_pca or self.joint_rot_mode == "axisang":
            expected = self.rot + self.ncomps
            if pose_coeffs.dim() != 2 or pose_coeffs.shape[1] != expected:
                what = f"{self.ncomps} PCA coefficients" if self.use_pca else "45 axis-angle numbers"
                raise ValueError(f"ManoLayer: pose_coeffs must be [B, {expected}] ({self.rot} for the global rotation "
                                 f"+ {what}), got {tuple(pose_coeffs.shape)}")
            hand = pose_coeffs[:, self.rot:]
            if self.use_pca:
                hand = hand @ self.th_selected_comps
            hand = self.th_hands_mean + hand
            fingers = axis_angle_to_matrix(hand.reshape(batch, 15, 3))
            if self.root_rot_mode == "axisang":
                root = axis_angle_to_matrix(pose_coeffs[:, :3])
            elif self.robust_rot:
                root = _robust_rot6d_to_matrix(pose_coeffs[:, :6])
            else:
                root = rot6d_to_matrix(pose_coeffs[:, :6])
            return torch.cat([root[:, None], fingers], dim=1)
        if pose_coeffs.shape[1:] not in ((16, 3, 3), (16 * 9,)):
            raise ValueError("ManoLayer(joint_rot_mode='rotmat'): pose_coeffs must be [B, 16, 3, 3] or [B, 144] "
                             f"rotation matrices, got {tuple(pose_coeffs.shape)}")
        return project_to_rotation(pose_coeffs.reshape(batch, 16, 3, 3))

    # ------------------------------------------------------------------ forward
    def forward(self, pose_coeffs: torch.Tensor | None = None, betas: torch.Tensor | None = None,
                trans: torch.Tensor | None = None, *, th_pose_coeffs: torch.Tensor | None = None,
                th_betas: torch.Tensor | None = None,
                th_trans: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose and shape the hand.

        Args:
            pose_coeffs: ``[B, rot + ncomps]`` (``use_pca``), ``[B, rot + 45]`` axis-angles, or
                ``[B, 16, 3, 3]`` / ``[B, 144]`` rotations ('rotmat'); ``rot`` is 3 (axis-angle)
                or 6 (rot6d) numbers for the global rotation. Radians.
            betas: ``[B, 10]`` (or ``[10]``, shared) shape values; ``None`` = mean shape (as
                manopth, a one-element tensor also means the mean shape).
            trans: ``[B, 3]`` translation in metres, added before the conversion to mm (as
                manopth, an all-zero tensor, e.g. its default ``torch.zeros(1)``, means none).
            th_pose_coeffs, th_betas, th_trans: manopth's names for the same three arguments,
                so that calls written for manopth (``layer(th_pose_coeffs=..., th_betas=...)``)
                run unchanged; giving both names of one argument raises ``TypeError``.

        Returns:
            verts ``[B, 778, 3]`` and joints ``[B, 21, 3]`` in millimetres (manopth's joint
            order: wrist, thumb, index, middle, ring, little; palm to fingertip).
        """
        pose_coeffs = _one_of("pose_coeffs", pose_coeffs, th_pose_coeffs)
        betas = _one_of("betas", betas, th_betas)
        trans = _one_of("trans", trans, th_trans)
        if pose_coeffs is None:
            raise TypeError("ManoLayer.forward: missing the pose (pose_coeffs, or manopth's th_pose_coeffs)")
        if not torch.is_tensor(pose_coeffs) or pose_coeffs.dim() < 2:
            got = tuple(pose_coeffs.shape) if torch.is_tensor(pose_coeffs) else type(pose_coeffs).__name__
            raise ValueError(f"ManoLayer: pose_coeffs must be a batched tensor [B, ...], got {got}")
        batch = pose_coeffs.shape[0]
        rotations = self._rotations(pose_coeffs)  # [B,16,3,3]

        if betas is None or betas.numel() == 1:
            v_shaped = self.th_v_template.expand(batch, N_VERTS, 3)
        else:
            if betas.shape[-1] != 10 or betas.dim() > 2 or (betas.dim() == 2 and betas.shape[0] not in (1, batch)):
                raise ValueError(f"ManoLayer: betas must be [B, 10] with B={batch} (or [10]), got {tuple(betas.shape)}")
            v_shaped = self.th_v_template + torch.einsum("vcs,bs->bvc", self.th_shapedirs, betas.reshape(-1, 10))
            v_shaped = v_shaped.expand(batch, N_VERTS, 3)
        joints = torch.einsum("jv,bvc->bjc", self.th_J_regressor, v_shaped)  # [B,16,3] rest pose

        eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
        features = (rotations[:, 1:] - eye).reshape(batch, -1)  # [B,135]
        posedirs = self.th_posedirs.reshape(N_VERTS * 3, -1)
        v_posed = v_shaped + nn.functional.linear(features, posedirs).reshape(batch, N_VERTS, 3)

        # Forward kinematics, one tree level at a time.
        world_r = [rotations[:, self._level_roots]]
        world_t = [joints[:, self._level_roots]]
        for names in self._levels:
            level, parent_pos, parents = (getattr(self, name) for name in names)
            r_parent, t_parent = world_r[-1][:, parent_pos], world_t[-1][:, parent_pos]
            offset = joints[:, level] - joints[:, parents]
            world_r.append(r_parent @ rotations[:, level])
            world_t.append(t_parent + (r_parent @ offset[..., None])[..., 0])
        world_r = torch.cat(world_r, 1)[:, self._level_inverse]  # [B,16,3,3]
        world_t = torch.cat(world_t, 1)[:, self._level_inverse]  # [B,16,3] posed joints

        # Linear blend skinning with the rest-pose joints removed from each transform.
        shift = world_t - (world_r @ joints[..., None])[..., 0]
        transforms = torch.cat([world_r, shift[..., None]], dim=-1).reshape(batch, N_JOINTS, 12)
        per_vertex = torch.einsum("vk,bkm->bvm", self.th_weights, transforms).reshape(batch, N_VERTS, 3, 4)
        verts = (per_vertex[..., :3] @ v_posed[..., None])[..., 0] + per_vertex[..., 3]

        out_joints = torch.cat([world_t, verts[:, self._tip_index]], dim=1)[:, self._joint_reorder]
        if trans is None or bool(torch.all(trans == 0)):
            if self.center_idx is not None:
                centre = out_joints[:, self.center_idx : self.center_idx + 1]
                out_joints = out_joints - centre
                verts = verts - centre
        else:
            if trans.shape[-1] != 3 or trans.reshape(-1, 3).shape[0] not in (1, batch):
                raise ValueError(f"ManoLayer: trans must be [B, 3] with B={batch}, got {tuple(trans.shape)}")
            offset = trans.reshape(-1, 1, 3)
            out_joints = out_joints + offset
            verts = verts + offset
        return verts * 1000.0, out_joints * 1000.0
