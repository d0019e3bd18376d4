"""Evaluate HFL-Net on a dataset split: the paper's metric table, plus simple baselines.

Protocol (paper Sec. 4.2 and the reference evaluation):

* Hand. The network predicts root-relative joints and vertices; as in the reference evaluation
  the ground-truth root (wrist) is added before scoring. MPJPE is root-aligned, PA-MPJPE and
  PA-MPVPE follow a similarity Procrustes alignment, F@5/F@15 mm are computed on the aligned
  vertices (:class:`hfl_lite.metrics.MetricTable`). The *estimated translation* variant places
  the hand with :func:`hfl_lite.inference.estimate_hand_translation` instead and reports the
  camera-frame joint error ``mpjpe_est_trans_mm`` and the wrist error, its mean ``root_error_mm``
  and median ``root_error_median_mm``.
* Articulation (where the split has the MANO pose): the finger-angle error and the articulation
  MPJPE (:func:`hfl_lite.metrics.finger_angle_error`, :func:`hfl_lite.metrics.articulation_mpjpe`),
  the measures that show whether the fingers are predicted at all.
* Object. Votes -> RANSAC EPnP with the object's 21 control points
  (:func:`hfl_lite.geometry.voting.solve_pose_from_votes`); ADD-0.1D per object (ADD-S for
  Dex-YCB's symmetric objects), averaged over objects.

Reproducibility. The numbers do not depend on the machine's thread count: :func:`evaluate`
runs on a fixed number of CPU threads (``EVAL_THREADS``, 1), because float32 convolutions and
matrix products split their sums differently with more threads, and a difference in the last bit
can move a RANSAC inlier and with it a median; RANSAC draws from a generator seeded by ``seed``;
medians and means are taken in float64 in a fixed order. A CPU of another kind (other vector
instructions) or a GPU still rounds differently, so numbers from different kinds of hardware
agree only to rounding and RANSAC's response to it.

Baselines (:class:`MeanPoseBaseline`), which look at no image: the mean training hand pose
(MANO with every joint rotation and the shape averaged over the training set), placed at the
true root; and for each object its mean training pose in the crop's camera frame (the chordal
mean rotation and the mean translation).
"""
from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from hfl_lite.errors import UserError
from hfl_lite.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, project_to_rotation
from hfl_lite.metrics import DEXYCB_SYMMETRIC_OBJECTS, MetricTable, mpjpe
from hfl_lite.threads import cpu_threads

__all__ = ["EVAL_THREADS", "EvalResult", "MeanPoseBaseline", "evaluate", "flat_metrics", "symmetric_objects_for"]

EVAL_THREADS = 1  # CPU threads of an evaluation: a fixed number makes the numbers repeat (module docstring)


def symmetric_objects_for(dataset_name: str) -> tuple[str, ...]:
    """Objects scored with ADD-S: Dex-YCB's four symmetric objects; none for HO3D (paper)."""
    return DEXYCB_SYMMETRIC_OBJECTS if dataset_name.lower().replace("-", "") == "dexycb" else ()


def _chordal_mean(rotations: torch.Tensor) -> torch.Tensor:
    """The rotation closest (Frobenius) to the mean of ``rotations [N,3,3]``."""
    return project_to_rotation(rotations.double().mean(0))


@dataclass
class MeanPoseBaseline:
    """The mean training hand pose and, per object, the mean training object pose.

    Hand: every MANO joint rotation (the global one included) averaged over the training set
    (chordal mean: the rotation nearest to the mean matrix), the betas averaged, posed by the
    MANO layer: ``joints [21,3]``, ``verts [778,3]`` root-relative metres, camera-aligned axes.
    ``rotations [16,3,3]``: the mean joint rotations themselves (for the articulation metrics).
    Objects: per name, ``(R [3,3], t [3])`` the chordal mean rotation and mean translation in the
    crop's camera frame."""

    joints: torch.Tensor
    verts: torch.Tensor
    rotations: torch.Tensor
    object_poses: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def fit(cls, train_set: Dataset, batch_size: int = 32, workers: int = 0, progress: bool = False,
            mano_root=None) -> "MeanPoseBaseline":
        """Average over every sample of ``train_set`` (build it without augmentation);
        ``mano_root``: the MANO files of the set (``None``: the stand-in hand)."""
        from hfl_lite.mano import ManoLayer

        rot_sum, beta_sum, count = torch.zeros(16, 3, 3, dtype=torch.float64), torch.zeros(10, dtype=torch.float64), 0
        rots: dict[str, list[torch.Tensor]] = defaultdict(list)
        trans: dict[str, list[torch.Tensor]] = defaultdict(list)
        loader = DataLoader(train_set, batch_size=batch_size, num_workers=workers, generator=torch.Generator().manual_seed(0))
        for batch in tqdm(loader, desc="baseline (training means)", disable=not progress):
            pose = batch["mano_pose"].double()
            rot_sum += axis_angle_to_matrix(pose.reshape(-1, 16, 3)).sum(0)
            beta_sum += batch["mano_shape"].double().sum(0)
            count += pose.shape[0]
            for i, name in enumerate(batch["obj_name"]):
                rots[name].append(batch["obj_rot"][i].double())
                trans[name].append(batch["obj_trans"][i].double())
        if count == 0:
            raise ValueError("MeanPoseBaseline.fit: the training set is empty")
        mean_rot = project_to_rotation(rot_sum / count)
        layer = ManoLayer(mano_root=mano_root, side="right", use_pca=False, flat_hand_mean=True, center_idx=0)
        with torch.no_grad():
            verts_mm, joints_mm = layer(matrix_to_axis_angle(mean_rot).reshape(1, 48).float(), (beta_sum / count)[None].float())
        poses = {name: (_chordal_mean(torch.stack(rots[name])), torch.stack(trans[name]).mean(0)) for name in rots}
        return cls(joints_mm[0].double() / 1000, verts_mm[0].double() / 1000, mean_rot.double(), poses)

    def object_pose(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean pose of ``name``; an object never seen in training gets the mean over all objects."""
        if name in self.object_poses:
            return self.object_poses[name]
        Rs = torch.stack([r for r, _ in self.object_poses.values()])
        ts = torch.stack([t for _, t in self.object_poses.values()])
        return _chordal_mean(Rs), ts.mean(0)


@dataclass
class EvalResult:
    """``metrics``: the model's summary (see :meth:`hfl_lite.metrics.MetricTable.summary`, plus
    ``mpjpe_est_trans_mm``, ``root_error_mm``, ``root_error_median_mm``, ``obj_pose_valid_pct``,
    ``add_median_mm``, ``rep_median_px``); ``table``: its
    :class:`~hfl_lite.metrics.MetricTable`; ``baseline``/``baseline_table`` likewise (or None);
    ``predictions``: per-sample ``sample_id`` list and stacked ``joints``/``verts`` (metres,
    camera frame: the root-relative prediction plus the true root where known, else the
    estimated translation) and ``obj_rot``/``obj_trans``."""

    metrics: dict[str, Any]
    table: MetricTable
    baseline: dict[str, Any] | None
    baseline_table: MetricTable | None
    predictions: dict[str, Any]


def flat_metrics(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """One level of ``{name: number}`` from a summary (nested per-object dicts become
    ``"add_01d_pct/<object>"``)."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        if isinstance(value, Mapping):
            for sub, v in value.items():
                out[f"{prefix}{key}/{sub}"] = float(v)
        elif isinstance(value, (int, float)):
            out[f"{prefix}{key}"] = float(value)
    return out


def _on_fixed_threads(func):
    """Run ``func`` with ``threads`` CPU threads (a keyword of the wrapper; default
    ``EVAL_THREADS``; None keeps the caller's setting), restoring the setting afterwards."""
    @functools.wraps(func)
    def wrapper(*args, threads: int | None = EVAL_THREADS, **kwargs):
        with cpu_threads(threads):
            return func(*args, **kwargs)
    return wrapper


@_on_fixed_threads
@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, dataset_name: str, batch_size: int = 16, workers: int = 0,
             device: torch.device | str | None = None, baseline: MeanPoseBaseline | None = None, ransac: bool = True,
             seed: int = 0, max_samples: int | None = None, progress: bool = False) -> EvalResult:
    """Run the model over ``dataset`` and score it (see the module docstring).

    dataset:      an ``hfl_lite.data`` split without augmentation; its ``objects`` catalogue gives
                  the object meshes for ADD
    dataset_name: "ho3d" or "dexycb" (chooses the symmetric objects)
    baseline:     also score a :class:`MeanPoseBaseline` on the same samples
    ransac, seed: RANSAC EPnP (seeded, so the numbers are reproducible) or plain EPnP
    max_samples:  score only the first this many samples
    threads:      (keyword) CPU threads while evaluating, ``EVAL_THREADS`` by default so that the
                  numbers do not depend on the machine's core count; None keeps the current setting
    """
    from hfl_lite.inference import predict

    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    if max_samples is not None:
        dataset_view: Dataset = Subset(dataset, range(min(max_samples, len(dataset))))
    else:
        dataset_view = dataset
    if len(dataset_view) == 0:
        raise UserError(f"evaluate: {dataset!r} has no samples: nothing to evaluate")
    catalog = getattr(dataset, "objects", None)
    if catalog is None:
        raise AttributeError(f"{type(dataset).__name__} has no 'objects' catalogue (needed for the object meshes)")
    meshes: dict[str, torch.Tensor] = {}

    def mesh(name: str) -> torch.Tensor:
        if name not in meshes:
            meshes[name] = torch.as_tensor(catalog.mesh(name)[0], dtype=torch.float64)
        return meshes[name]

    symmetric = symmetric_objects_for(dataset_name)
    mano_root = dataset.hands.mano_root if hasattr(dataset, "hands") else None  # the MANO files of the poses
    table = MetricTable(symmetric, mano_root)
    base_table = MetricTable(symmetric, mano_root) if baseline is not None else None
    extra: dict[str, list[float]] = defaultdict(list)
    preds: dict[str, list] = defaultdict(list)
    generator = torch.Generator(device=device).manual_seed(seed)
    # a private generator: evaluating must not draw from the global one (a training run's state)
    loader = DataLoader(dataset_view, batch_size=batch_size, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed))
    for batch in tqdm(loader, desc="evaluate", disable=not progress):
        out = predict(model, batch["image"], batch["hand_box"], batch["obj_box"], batch["K"], batch["obj_ctrl3d"],
                      ransac=ransac, generator=generator)
        out = {k: v.detach().double().cpu() for k, v in out.items() if isinstance(v, torch.Tensor)}
        b = out["joints"].shape[0]
        root = batch["root3d"].double()[:, None] if "root3d" in batch else out["hand_trans"][:, None]
        joints_abs, verts_abs = out["joints"] + root, out["verts"] + root
        preds["sample_id"] += list(batch["sample_id"])
        preds["joints"].append(joints_abs)
        preds["verts"].append(verts_abs)
        preds["obj_rot"].append(out["obj_rot"])
        preds["obj_trans"].append(out["obj_trans"])
        extra["obj_pose_valid"] += out["obj_valid"].float().tolist()
        if "joints3d" in batch:
            gt_j, gt_v = batch["joints3d"].double(), batch["verts3d"].double()
            table.add_hand(joints_abs, gt_j, verts_abs, gt_v)
            extra["mpjpe_est_trans"] += mpjpe(out["joints_cam"], gt_j, root=None).tolist()
            extra["root_error"] += ((out["hand_trans"] - gt_j[:, 0]).norm(dim=-1) * 1000).tolist()
            if base_table is not None:
                rel_j, rel_v = baseline.joints.expand(b, -1, -1), baseline.verts.expand(b, -1, -1)
                base_table.add_hand(rel_j + gt_j[:, :1], gt_j, rel_v + gt_j[:, :1], gt_v)
        if "mano_pose" in batch:
            table.add_articulation(out["mano_rotmat"], batch["mano_pose"], batch["mano_shape"])
            if base_table is not None:
                base_table.add_articulation(baseline.rotations.expand(b, -1, -1, -1), batch["mano_pose"], batch["mano_shape"])
        names = list(batch["obj_name"])
        for name in dict.fromkeys(names):
            idx = torch.tensor([i for i, n in enumerate(names) if n == name])
            diameter = batch["obj_diameter"][idx].double()
            gt_R, gt_t, K = batch["obj_rot"][idx].double(), batch["obj_trans"][idx].double(), batch["K"][idx].double()
            table.add_object([name] * len(idx), out["obj_rot"][idx], out["obj_trans"][idx], gt_R, gt_t, mesh(name),
                             diameter, K)
            if base_table is not None:
                R0, t0 = baseline.object_pose(name)
                base_table.add_object([name] * len(idx), R0.expand(len(idx), 3, 3), t0.expand(len(idx), 3), gt_R, gt_t,
                                      mesh(name), diameter, K)
    if was_training:
        model.train()

    metrics = table.summary()
    if extra["mpjpe_est_trans"]:
        metrics["mpjpe_est_trans_mm"] = sum(extra["mpjpe_est_trans"]) / len(extra["mpjpe_est_trans"])
        metrics["root_error_mm"] = sum(extra["root_error"]) / len(extra["root_error"])
        # a few hands placed far off in depth dominate the mean
        metrics["root_error_median_mm"] = float(torch.tensor(extra["root_error"], dtype=torch.float64).median())
    if extra["obj_pose_valid"]:
        metrics["obj_pose_valid_pct"] = 100 * sum(extra["obj_pose_valid"]) / len(extra["obj_pose_valid"])
    _add_medians(metrics, table)
    predictions = {
        "sample_id": preds["sample_id"],
        **{k: torch.cat(preds[k]) for k in ("joints", "verts", "obj_rot", "obj_trans") if preds[k]},
    }
    baseline_metrics = None
    if base_table is not None:
        baseline_metrics = base_table.summary()
        _add_medians(baseline_metrics, base_table)
    return EvalResult(metrics, table, baseline_metrics, base_table, predictions)


def _add_medians(metrics: dict[str, Any], table: MetricTable) -> None:
    """Medians next to the means: a few wild poses (EPnP on poor votes) dominate a mean ADD."""
    if table.objects:
        metrics["add_median_mm"] = float(torch.tensor([r["add"] for r in table.objects], dtype=torch.float64).median())
        reps = [r["rep_px"] for r in table.objects if r["rep_px"] is not None]
        if reps:
            metrics["rep_median_px"] = float(torch.tensor(reps, dtype=torch.float64).median())
