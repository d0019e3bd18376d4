"""Evaluation metrics of HFL-Net (paper Sec. 4.2), batched torch.

Units: every input is in **metres** (camera or object frame) or pixels; distances come out in
**millimetres**, as the paper reports them; F-scores are fractions in [0, 1] (the paper prints
them x100); thresholds are in metres; ``rep_px`` is in pixels.

Hand (per sample, ``[B]``):
    :func:`mpjpe` (root-aligned, Dex-YCB), :func:`pa_mpjpe`, :func:`pa_mpvpe` (Procrustes-aligned,
    HO3D and Dex-YCB), :func:`f_score` / :func:`f_scores` at 5 and 15 mm (HO3D).
Articulation (per sample, ``[B]``; not in the paper, but the measures that see the fingers):
    :func:`finger_angle_error` (degrees), :func:`articulation_mpjpe` (mm). After Procrustes
    alignment a hand in the mean pose already scores close to a good prediction's PA-MPJPE, so a
    network whose fingers never move can look fine on the paper's metrics; these two cannot.
Object (per sample, ``[B]``):
    :func:`add`, :func:`add_s` (mm), :func:`add_01d` (bool: ADD, or ADD-S for symmetric objects,
    below 10% of the diameter), :func:`rep_px`.
Object votes (per cell): :func:`vote_errors`, the pixel error of every cell's vote and the cell's
    distance from the point it votes for (the votes of cells near a point are the ones that
    should be good).
Whole evaluations: :class:`MetricTable` / :func:`evaluate_table`.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import torch

from .geometry.camera import project_points, transform_points
from .geometry.procrustes import procrustes_align
from .geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, relative_angle

__all__ = [
    "DEXYCB_SYMMETRIC_OBJECTS",
    "F_SCORE_THRESHOLDS",
    "mpjpe",
    "pa_mpjpe",
    "pa_mpvpe",
    "f_score",
    "f_scores",
    "finger_angle_error",
    "articulation_mpjpe",
    "add",
    "add_s",
    "add_01d",
    "rep_px",
    "vote_errors",
    "MetricTable",
    "evaluate_table",
]

# Objects whose pose is scored with ADD-S on Dex-YCB (paper Table 4, marked *).
DEXYCB_SYMMETRIC_OBJECTS: tuple[str, ...] = ("024_bowl", "036_wood_block", "052_extra_large_clamp", "061_foam_brick")
F_SCORE_THRESHOLDS: tuple[float, float] = (0.005, 0.015)  # metres: F@5 mm and F@15 mm
_MM = 1000.0


def _check_pair(pred, gt, name):
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"{name}: pred and gt must both be [B, N, 3], got {tuple(pred.shape)} and {tuple(gt.shape)}")


def mpjpe(pred: torch.Tensor, gt: torch.Tensor, root: int | None = 0) -> torch.Tensor:
    """Mean per-joint position error, root-aligned: ``[B]`` millimetres.

    ``pred, gt [B, J, 3]`` metres. Joint ``root`` (the wrist, 0) is subtracted from both sets
    first (as Dex-YCB's MPJPE); ``root=None`` compares the raw positions.
    """
    _check_pair(pred, gt, "mpjpe")
    if root is not None:
        pred = pred - pred[:, root:root + 1]
        gt = gt - gt[:, root:root + 1]
    return (pred - gt).norm(dim=-1).mean(-1) * _MM


def _official_align(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The official HO3D alignment (``align_w_scale``): scale, translation and an orthogonal
    matrix that may be a reflection. For a reasonable prediction the best orthogonal matrix is
    a rotation and this equals the proper similarity fit; a mirrored or very poor prediction
    can score lower than under a rotation-only fit, exactly as on the HO3D leaderboard."""
    return procrustes_align(pred, gt, allow_reflection=True)


def pa_mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean per-joint error after Procrustes alignment of ``pred`` to ``gt``, as HO3D scores it.

    ``pred, gt [B, J, 3]`` metres -> ``[B]`` millimetres. Alignment removes scale, rotation
    and translation with the official HO3D evaluation's convention, which allows a reflection
    (:func:`hfl_lite.geometry.procrustes_align` with ``allow_reflection=True``).
    """
    _check_pair(pred, gt, "pa_mpjpe")
    return (_official_align(pred, gt) - gt).norm(dim=-1).mean(-1) * _MM


def pa_mpvpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean per-vertex error after the official HO3D Procrustes alignment (see :func:`pa_mpjpe`).

    ``pred, gt [B, 778, 3]`` metres -> ``[B]`` millimetres.
    """
    _check_pair(pred, gt, "pa_mpvpe")
    return (_official_align(pred, gt) - gt).norm(dim=-1).mean(-1) * _MM


def _nearest_both_ways(a: torch.Tensor, b: torch.Tensor, budget: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest-point distances ``a -> b`` ``[B, P]`` and ``b -> a`` ``[B, Q]`` from one pass over
    the pairwise distances (chunks of ``a``, as in :func:`_nearest`)."""
    B, P, _ = a.shape
    Q = b.shape[1]
    chunk = max(1, budget // max(1, B * Q))
    a_to_b, b_to_a = [], torch.full((B, Q), float("inf"), dtype=a.dtype, device=a.device)
    for start in range(0, P, chunk):
        d = torch.cdist(a[:, start:start + chunk], b, compute_mode="donot_use_mm_for_euclid_dist")
        a_to_b.append(d.amin(-1))
        b_to_a = torch.minimum(b_to_a, d.amin(-2))
    return torch.cat(a_to_b, 1), b_to_a


def _nearest(a: torch.Tensor, b: torch.Tensor, b_mask: torch.Tensor | None = None, budget: int = 1 << 24) -> torch.Tensor:
    """Distance from every point of ``a [B, P, 3]`` to its nearest point of ``b [B, Q, 3]``
    (only points where ``b_mask [B, Q]`` is True count): ``[B, P]``. Works in chunks of ``a``
    so that no more than ``budget`` pairwise distances exist at once."""
    B, P, _ = a.shape
    Q = b.shape[1]
    chunk = max(1, budget // max(1, B * Q))
    out = []
    for start in range(0, P, chunk):
        d = torch.cdist(a[:, start:start + chunk], b, compute_mode="donot_use_mm_for_euclid_dist")  # exact, no cancellation
        if b_mask is not None:
            d = torch.where(b_mask.unsqueeze(1), d, torch.full_like(d, float("inf")))
        out.append(d.amin(-1))
    return torch.cat(out, 1)


def f_scores(pred_verts: torch.Tensor, gt_verts: torch.Tensor, thresholds: Sequence[float] = F_SCORE_THRESHOLDS,
             align: bool = True) -> torch.Tensor:
    """F-scores at several thresholds, as the HO3D evaluation computes them: ``[B, T]`` in [0, 1].

    With ``align`` (HO3D's protocol) ``pred`` is first Procrustes-aligned to ``gt`` as the official
    evaluation does it (reflections allowed, see :func:`pa_mpjpe`). Precision is
    the share of predicted points whose nearest ground-truth point is closer than the threshold,
    recall the share of ground-truth points whose nearest predicted point is; F = 2PR / (P + R)
    (0 when both are 0).

    Args:
        pred_verts: ``[B, V, 3]``; gt_verts: ``[B, V', 3]`` (metres; ``V' = V`` when aligning).
        thresholds: in metres (default 5 mm and 15 mm).
    """
    if pred_verts.ndim != 3 or gt_verts.ndim != 3 or pred_verts.shape[-1] != 3 or gt_verts.shape[-1] != 3:
        raise ValueError(f"f_scores: pred_verts and gt_verts must be [B, V, 3], got {tuple(pred_verts.shape)} and {tuple(gt_verts.shape)}")
    if align:
        _check_pair(pred_verts, gt_verts, "f_scores (align=True)")
        pred_verts = _official_align(pred_verts, gt_verts)
    d_pred, d_gt = _nearest_both_ways(pred_verts, gt_verts)
    th = torch.as_tensor(list(thresholds), dtype=d_pred.dtype, device=d_pred.device)
    precision = (d_pred.unsqueeze(-1) < th).to(d_pred.dtype).mean(1)  # [B, T]
    recall = (d_gt.unsqueeze(-1) < th).to(d_pred.dtype).mean(1)
    denom = precision + recall
    return torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(denom))


def f_score(pred_verts: torch.Tensor, gt_verts: torch.Tensor, threshold: float, align: bool = True) -> torch.Tensor:
    """F-score at one ``threshold`` (metres): ``[B]`` in [0, 1]. See :func:`f_scores`."""
    return f_scores(pred_verts, gt_verts, (threshold,), align=align)[:, 0]


def _joint_rotations(pose: torch.Tensor, name: str) -> torch.Tensor:
    """MANO joint rotations ``[B, 16, 3, 3]`` from matrices, or from axis-angles ``[B, 48]``."""
    if pose.ndim == 2 and pose.shape[-1] == 48:
        return axis_angle_to_matrix(pose.reshape(-1, 16, 3))
    if pose.ndim == 4 and pose.shape[1:] == (16, 3, 3):
        return pose
    raise ValueError(f"{name} must be [B, 16, 3, 3] rotation matrices or [B, 48] axis-angles, got {tuple(pose.shape)}")


def finger_angle_error(pred_pose: torch.Tensor, gt_pose: torch.Tensor) -> torch.Tensor:
    """Mean geodesic angle between the predicted and true local rotations of the 15 finger joints.

    ``pred_pose, gt_pose``: MANO poses, ``[B, 16, 3, 3]`` matrices or ``[B, 48]`` axis-angles
    (flat-hand-mean convention; joint 0, the global rotation, is left out). Returns ``[B]`` degrees.
    """
    pr, gr = _joint_rotations(pred_pose, "pred_pose"), _joint_rotations(gt_pose, "gt_pose")
    if pr.shape != gr.shape:
        raise ValueError(f"finger_angle_error: {tuple(pr.shape)} and {tuple(gr.shape)} poses")
    return torch.rad2deg(relative_angle(pr[:, 1:], gr[:, 1:].to(pr.dtype))).mean(-1)


def articulation_mpjpe(pred_pose: torch.Tensor, gt_pose: torch.Tensor, gt_shape: torch.Tensor,
                       mano_layer: torch.nn.Module) -> torch.Tensor:
    """Joint error of the predicted *finger* rotations alone: ``[B]`` millimetres.

    The predicted fingers are posed with the true global rotation and the true shape, and
    compared, joint by joint and root-aligned, with the true hand from the same MANO layer; so
    only the 15 finger rotations differ between the two hands.

    Args:
        pred_pose, gt_pose: ``[B, 16, 3, 3]`` or ``[B, 48]`` (as :func:`finger_angle_error`).
        gt_shape: ``[B, 10]`` true shape values.
        mano_layer: a right-hand ``hfl_lite.mano.ManoLayer(use_pca=False, flat_hand_mean=True)``
            (millimetre outputs).
    """
    pr = _joint_rotations(pred_pose, "pred_pose")
    gr = _joint_rotations(gt_pose, "gt_pose").to(pr.dtype)
    mixed = torch.cat([gr[:, :1], pr[:, 1:]], dim=1)
    dtype = next(mano_layer.buffers()).dtype
    shape = gt_shape.to(dtype)
    _, pred_joints = mano_layer(matrix_to_axis_angle(mixed).flatten(1).to(dtype), shape)
    _, gt_joints = mano_layer(matrix_to_axis_angle(gr).flatten(1).to(dtype), shape)
    return mpjpe(pred_joints / _MM, gt_joints / _MM).to(pr.dtype)


def _posed(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if points.ndim == 2:
        points = points.unsqueeze(0).expand(R.shape[0], -1, -1)
    if points.ndim != 3 or points.shape[0] != R.shape[0] or points.shape[-1] != 3:
        raise ValueError(f"object metrics: points must be [V, 3] or [B, V, 3] with B = {R.shape[0]}, got {tuple(points.shape)}")
    return transform_points(points, R, t)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean(-1)
    m = mask.to(x.dtype)
    return (x * m).sum(-1) / m.sum(-1).clamp_min(1)


def add(R_pred: torch.Tensor, t_pred: torch.Tensor, R_gt: torch.Tensor, t_gt: torch.Tensor, points: torch.Tensor,
        mask: torch.Tensor | None = None) -> torch.Tensor:
    """ADD: mean distance between the object's points under the predicted and the true pose.

    Args:
        R_pred, R_gt: ``[B, 3, 3]``; t_pred, t_gt: ``[B, 3]`` metres (``X_cam = R X + t``).
        points: ``[V, 3]`` or ``[B, V, 3]`` object-frame vertices, metres.
        mask: optional ``[B, V]`` bool marking real vertices in padded batches.

    Returns:
        ``[B]`` millimetres.
    """
    d = (_posed(points, R_pred, t_pred) - _posed(points, R_gt, t_gt)).norm(dim=-1)
    return _masked_mean(d, mask) * _MM


def add_s(R_pred: torch.Tensor, t_pred: torch.Tensor, R_gt: torch.Tensor, t_gt: torch.Tensor, points: torch.Tensor,
          mask: torch.Tensor | None = None) -> torch.Tensor:
    """ADD-S: for each point under the true pose, the distance to the *closest* point under the
    predicted pose, averaged (for symmetric objects). Same arguments as :func:`add`; ``[B]`` mm.
    Always ``add_s <= add``.
    """
    gt = _posed(points, R_gt, t_gt)
    pred = _posed(points, R_pred, t_pred)
    return _masked_mean(_nearest(gt, pred, mask), mask) * _MM


def add_01d(R_pred: torch.Tensor, t_pred: torch.Tensor, R_gt: torch.Tensor, t_gt: torch.Tensor, points: torch.Tensor,
            diameter, symmetric=False, mask: torch.Tensor | None = None) -> torch.Tensor:
    """ADD-0.1D per sample: ``[B]`` bool, True when the ADD (ADD-S where ``symmetric``) is below
    10% of the object's diameter. The paper's percentage is ``100 * result.float().mean()``.

    Args:
        diameter: metres, a number or ``[B]``.
        symmetric: bool or ``[B]`` bool (e.g. ``name in DEXYCB_SYMMETRIC_OBJECTS``).
        Others as in :func:`add`.
    """
    B = R_pred.shape[0]
    diameter = torch.as_tensor(diameter, dtype=R_pred.dtype, device=R_pred.device).expand(B)
    symmetric = torch.as_tensor(symmetric, dtype=torch.bool, device=R_pred.device).expand(B)
    err = add(R_pred, t_pred, R_gt, t_gt, points, mask)
    if bool(symmetric.any()):
        err = torch.where(symmetric, add_s(R_pred, t_pred, R_gt, t_gt, points, mask), err)
    return err < 0.1 * diameter * _MM


def rep_px(R_pred: torch.Tensor, t_pred: torch.Tensor, R_gt: torch.Tensor, t_gt: torch.Tensor, points: torch.Tensor,
           K: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean 2D reprojection error of the object's points, predicted vs true pose: ``[B]`` pixels.

    ``K [B, 3, 3]`` or ``[3, 3]`` intrinsics; others as in :func:`add`.
    """
    if K.ndim == 2:
        K = K.unsqueeze(0).expand(R_pred.shape[0], 3, 3)
    p = project_points(_posed(points, R_pred, t_pred), K)
    g = project_points(_posed(points, R_gt, t_gt), K)
    return _masked_mean((p - g).norm(dim=-1), mask)


def vote_errors(conf_logits: torch.Tensor, offset: torch.Tensor, obj_box: torch.Tensor,
                ctrl2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How far each cell's vote lands from the true control point, and how far the cell is from it.

    Args:
        conf_logits ``[B, K, R, R]``, offset ``[B, K, 2, R, R]``: the object decoder's outputs.
        obj_box: ``[B, 4]`` the boxes the network's ROI used (crop px).
        ctrl2d: ``[B, K, 2]`` the true projected control points (crop px).

    Returns:
        ``error [B, K, R*R]`` pixels between each vote (:func:`hfl_lite.geometry.decode_votes`)
        and its point, and ``cells [B, K, R*R]`` the Chebyshev distance, in cells, from each cell
        centre to the point (``cells <= 1``: the 3 x 3 cells around it). A cell that votes for
        itself (zero offset) misses by the distance from its centre to the point.
    """
    from .geometry.voting import cell_centres, decode_votes

    points, _ = decode_votes(conf_logits, offset, obj_box)
    error = (points - ctrl2d[:, :, None, :].to(points.dtype)).norm(dim=-1)
    R = conf_logits.shape[-1]
    size = (obj_box[:, 2:] - obj_box[:, :2]).to(points.dtype)
    point_cells = (ctrl2d.to(points.dtype) - obj_box[:, None, :2]) / size[:, None] * R  # [B, K, 2] in cells
    centres = cell_centres(R, points.dtype, points.device).reshape(1, 1, R * R, 2) * R
    cells = (centres - point_cells[:, :, None]).abs().amax(-1)
    return error, cells


def _as_batch(x, ndim: int) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.unsqueeze(0) if x.ndim == ndim - 1 else x


class MetricTable:
    """Accumulates per-sample results over a whole evaluation and summarises them.

    Hand results (mm, and F-scores), articulation results (finger angle in degrees,
    articulation MPJPE in mm) and object results (ADD, ADD-S in mm, ADD-0.1D hits,
    reprojection px, per object name) are stored per sample; :meth:`summary` averages them
    and :meth:`to_markdown` prints the paper's tables.

    Args:
        symmetric_objects: object names scored with ADD-S in ADD-0.1D; pass
            :data:`DEXYCB_SYMMETRIC_OBJECTS` for Dex-YCB, nothing for HO3D (the paper uses plain
            ADD there).
        mano_root: the MANO files the poses refer to, for :meth:`add_articulation` (``None``:
            the stand-in hand, see :mod:`hfl_lite.mano`).
    """

    HAND_KEYS = ("mpjpe", "pa_mpjpe", "pa_mpvpe", "f5", "f15", "finger_deg", "articulation_mpjpe")

    def __init__(self, symmetric_objects: Iterable[str] = (), mano_root=None):
        self.symmetric_objects = frozenset(symmetric_objects)
        self.mano_root = mano_root
        self.hand: dict[str, list[float]] = defaultdict(list)
        self.objects: list[dict] = []
        self._mano = None

    def add_hand(self, pred_joints: torch.Tensor, gt_joints: torch.Tensor,
                 pred_verts: torch.Tensor | None = None, gt_verts: torch.Tensor | None = None) -> None:
        """Add a batch of hands: joints ``[B, 21, 3]``, optional vertices ``[B, 778, 3]``, metres."""
        pj, gj = _as_batch(pred_joints, 3).detach().double().cpu(), _as_batch(gt_joints, 3).detach().double().cpu()
        self.hand["mpjpe"] += mpjpe(pj, gj).tolist()
        self.hand["pa_mpjpe"] += pa_mpjpe(pj, gj).tolist()
        if pred_verts is not None and gt_verts is not None:
            pv, gv = _as_batch(pred_verts, 3).detach().double().cpu(), _as_batch(gt_verts, 3).detach().double().cpu()
            self.hand["pa_mpvpe"] += pa_mpvpe(pv, gv).tolist()
            f = f_scores(pv, gv)
            self.hand["f5"] += f[:, 0].tolist()
            self.hand["f15"] += f[:, 1].tolist()

    def add_articulation(self, pred_pose: torch.Tensor, gt_pose: torch.Tensor, gt_shape: torch.Tensor) -> None:
        """Add a batch of finger articulations: poses ``[B, 16, 3, 3]`` or ``[B, 48]``, true shape
        ``[B, 10]`` (see :func:`finger_angle_error`, :func:`articulation_mpjpe`)."""
        if self._mano is None:
            from .mano import ManoLayer

            self._mano = ManoLayer(mano_root=self.mano_root, side="right", use_pca=False, flat_hand_mean=True,
                                   center_idx=0, dtype=torch.float64)
        pp = _as_batch(pred_pose, 2 if pred_pose.shape[-1] == 48 else 4).detach().double().cpu()
        gp = _as_batch(gt_pose, 2 if gt_pose.shape[-1] == 48 else 4).detach().double().cpu()
        gs = _as_batch(gt_shape, 2).detach().double().cpu()
        with torch.no_grad():
            self.hand["finger_deg"] += finger_angle_error(pp, gp).tolist()
            self.hand["articulation_mpjpe"] += articulation_mpjpe(pp, gp, gs, self._mano).tolist()

    def add_object(self, names: str | Sequence[str], R_pred: torch.Tensor, t_pred: torch.Tensor, R_gt: torch.Tensor,
                   t_gt: torch.Tensor, points: torch.Tensor, diameter, K: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None) -> None:
        """Add a batch of object poses (arguments as in :func:`add_01d`; ``names`` one per sample)."""
        names = [names] if isinstance(names, str) else list(names)
        Rp, tp = _as_batch(R_pred, 3).detach().double().cpu(), _as_batch(t_pred, 2).detach().double().cpu()
        Rg, tg = _as_batch(R_gt, 3).detach().double().cpu(), _as_batch(t_gt, 2).detach().double().cpu()
        if len(names) != Rp.shape[0]:
            raise ValueError(f"MetricTable.add_object: {len(names)} names for {Rp.shape[0]} poses")
        pts = torch.as_tensor(points).detach().double().cpu()
        mask = None if mask is None else torch.as_tensor(mask).cpu()
        sym = torch.tensor([n in self.symmetric_objects for n in names], dtype=torch.bool)
        diameter = torch.as_tensor(diameter, dtype=torch.float64).cpu().expand(Rp.shape[0])
        e_add = add(Rp, tp, Rg, tg, pts, mask)
        # ADD-S compares every point with every other: only for the symmetric objects that need it
        e_adds = add_s(Rp, tp, Rg, tg, pts, mask) if bool(sym.any()) else e_add
        hit = torch.where(sym, e_adds, e_add) < 0.1 * diameter * _MM
        rep = rep_px(Rp, tp, Rg, tg, pts, torch.as_tensor(K).double().cpu(), mask).tolist() if K is not None else [None] * len(names)
        for i, name in enumerate(names):
            self.objects.append(dict(name=name, add=float(e_add[i]), add_s=float(e_adds[i]) if sym[i] else None,
                                     hit=bool(hit[i]), symmetric=bool(sym[i]), rep_px=rep[i]))

    def summary(self) -> dict:
        """Plain dict: hand means (``*_mm``; F-scores ``f5_pct``/``f15_pct`` x100), sample counts,
        per-object ADD-0.1D percentages, their mean over objects (the paper's "average") and
        over samples."""
        out: dict = {"num_hand": len(self.hand["pa_mpjpe"]), "num_objects": len(self.objects)}
        for key in ("mpjpe", "pa_mpjpe", "pa_mpvpe", "articulation_mpjpe"):
            if self.hand[key]:
                out[f"{key}_mm"] = sum(self.hand[key]) / len(self.hand[key])
        if self.hand["finger_deg"]:
            out["finger_angle_deg"] = sum(self.hand["finger_deg"]) / len(self.hand["finger_deg"])
        for key in ("f5", "f15"):
            if self.hand[key]:
                out[f"{key}_pct"] = 100 * sum(self.hand[key]) / len(self.hand[key])
        if self.objects:
            per: dict[str, list[bool]] = defaultdict(list)
            for r in self.objects:
                per[r["name"]].append(r["hit"])
            out["add_01d_pct"] = {n: 100 * sum(h) / len(h) for n, h in sorted(per.items())}
            out["add_01d_count"] = {n: len(h) for n, h in sorted(per.items())}
            out["add_01d_mean_objects_pct"] = sum(out["add_01d_pct"].values()) / len(per)
            out["add_01d_mean_samples_pct"] = 100 * sum(r["hit"] for r in self.objects) / len(self.objects)
            out["add_mm"] = sum(r["add"] for r in self.objects) / len(self.objects)
            reps = [r["rep_px"] for r in self.objects if r["rep_px"] is not None]
            if reps:
                out["rep_px"] = sum(reps) / len(reps)
        return out

    def to_markdown(self) -> str:
        """The summary as Markdown tables (hand metrics; ADD-0.1D per object)."""
        s = self.summary()
        lines = []
        labels = [("mpjpe_mm", "MPJPE (mm)"), ("pa_mpjpe_mm", "PA-MPJPE (mm)"), ("pa_mpvpe_mm", "PA-MPVPE (mm)"),
                  ("f5_pct", "F@5mm (%)"), ("f15_pct", "F@15mm (%)"), ("finger_angle_deg", "finger angle error (deg)"),
                  ("articulation_mpjpe_mm", "articulation MPJPE (mm)")]
        rows = [(label, s[key]) for key, label in labels if key in s]
        if rows:
            lines += [f"| hand ({s['num_hand']} samples) | value |", "|---|---:|"]
            lines += [f"| {label} | {value:.2f} |" for label, value in rows]
        if "add_01d_pct" in s:
            if lines:
                lines.append("")
            lines += ["| object | samples | ADD-0.1D (%) |", "|---|---:|---:|"]
            for name, pct in s["add_01d_pct"].items():
                star = "*" if name in self.symmetric_objects else ""
                lines.append(f"| {name}{star} | {s['add_01d_count'][name]} | {pct:.1f} |")
            lines.append(f"| mean over objects | {s['num_objects']} | {s['add_01d_mean_objects_pct']:.1f} |")
            lines.append(f"| mean over samples | {s['num_objects']} | {s['add_01d_mean_samples_pct']:.1f} |")
            if self.symmetric_objects & set(s["add_01d_pct"]):
                lines.append("\n\\* symmetric: scored with ADD-S")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def evaluate_table(records: Iterable[Mapping], symmetric_objects: Iterable[str] = ()) -> MetricTable:
    """Build a :class:`MetricTable` from per-sample (or per-batch) records.

    Each record is a mapping with any of these keys (tensors or arrays; single samples may
    omit the batch dimension):

    * hand: ``pred_joints``, ``gt_joints`` ``[21, 3]`` m; optional ``pred_verts``, ``gt_verts`` ``[778, 3]`` m;
    * object: ``obj_name`` (str or list), ``pred_R``, ``pred_t``, ``gt_R``, ``gt_t``, ``obj_verts``
      ``[V, 3]`` m (object frame), ``obj_diameter`` m, optional ``K``.
    """
    table = MetricTable(symmetric_objects)
    for i, rec in enumerate(records):
        if "pred_joints" in rec:
            if "gt_joints" not in rec:
                raise KeyError(f"evaluate_table: record {i} has 'pred_joints' but no 'gt_joints'")
            table.add_hand(rec["pred_joints"], rec["gt_joints"], rec.get("pred_verts"), rec.get("gt_verts"))
        if "obj_name" in rec:
            missing = [k for k in ("pred_R", "pred_t", "gt_R", "gt_t", "obj_verts", "obj_diameter") if k not in rec]
            if missing:
                raise KeyError(f"evaluate_table: record {i} has 'obj_name' but lacks {missing}")
            table.add_object(rec["obj_name"], rec["pred_R"], rec["pred_t"], rec["gt_R"], rec["gt_t"], rec["obj_verts"],
                             rec["obj_diameter"], rec.get("K"))
    return table
