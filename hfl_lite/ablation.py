"""``python -m hfl_lite ablate``: the paper's ablations (Tables 5-8), trained with equal budgets.

The committed results in ``data_samples/ablation/`` (5 variants x 3 seeds, 150 steps of batch 8
per run; 80 minutes on a 2-core CPU shared with other jobs) come from two rendered sets:
``POOL``, the 12,000 training images of the shipped checkpoint's last stage, and ``HELDOUT``, the
240-frame held-out set that ``hfl_lite.synth.heldout.heldout_root()`` renders and caches::

    python -m hfl_lite synth --layout ho3d --out POOL --n-train 12000 --n-eval 0 --seed 11
    python -m hfl_lite synth --layout ho3d --out HELDOUT --n-train 0 --n-eval 240 --seed 7
    python -m hfl_lite ablate --root POOL --eval-root HELDOUT --steps 150 --seeds 0 1 2 \\
        --variants single-none-none double-none-none hfl-none-none single-concat_sa-h2o \\
        hfl-concat_sa-h2o --save-weights single-none-none hfl-none-none

A smoke test (all variants, 2 steps each; 20 seconds to a minute, into a new temporary folder)::

    python -m hfl_lite ablate --tiny

Every variant is an ``HFLNet`` configuration; the paper's four ablation tables share some rows
(Table 5's "Ours" is Table 7's "w/o inter.", Table 7's "H-to-O" is Table 8's "w/o enhance",
Table 6's "Ours" is Table 8's "Ours"), so eleven distinct networks cover all of them:

=========================  =========  ================  ==================  =====================
variant                    backbone   hand_interaction  object_interaction  paper rows
=========================  =========  ================  ==================  =====================
single-none-none           single     none              none                T5 Single-Stream
double-none-none           double     none              none                T5 Double-Stream
hfl-none-none              hfl        none              none                T5 Ours, T7 w/o inter.
single-concat_sa-h2o       single     concat_sa         h2o                 T6 Single-Stream
double-concat_sa-h2o       double     concat_sa         h2o                 T6 Double-Stream
hfl-concat_sa-h2o          hfl        concat_sa         h2o                 T6 Ours, T8 Ours
hfl-none-o2o               hfl        none              o2o                 T7 O-to-O
hfl-none-h2o               hfl        none              h2o                 T7 H-to-O, T8 w/o enh.
hfl-sa-h2o                 hfl        sa                h2o                 T8 SA
hfl-ca-h2o                 hfl        ca                h2o                 T8 CA
hfl-add_sa-h2o             hfl        add_sa            h2o                 T8 ADD+SA
=========================  =========  ================  ==================  =====================

Each (variant, seed) run seeds every generator with the seed, builds the network, trains it
with :class:`hfl_lite.training.Trainer` for ``--steps`` steps of ``--batch-size`` samples (Adam,
constant learning rate, no augmentation unless ``--augment``, the same sample order for every
variant of a seed; on the CPU one torch thread per run, see ``--threads``)
and scores it with :func:`hfl_lite.training.evaluate.evaluate` on the evaluation split: hand
PA-MPJPE / PA-MPVPE (mm) and ADD-0.1D (%) per object. ``--out`` receives

* ``results.csv``: one row per run (rewritten after every run), with the exact command line and
  the machine (platform, CPU, torch version, device, threads) on every row;
* ``summary.csv``: mean and sample standard deviation over the seeds, per variant;
* ``baseline.csv``: the mean-training-pose baseline on the same evaluation samples (a network
  that learnt something must beat it);
* ``weights/<variant>.pt`` for ``--save-weights``: the first seed's weights in float16
  (:func:`hfl_lite.training.checkpoint.export_weights`, loadable with
  :func:`hfl_lite.inference.load_model`).

On the real HO3D the evaluation split hides the hand, so the hand columns stay empty there
(the challenge server scores hands); the object columns are computed locally.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hfl_lite.bench.timing import cpu_name
from hfl_lite.presets import pick_device
from hfl_lite.samples import samples_root
from hfl_lite.threads import cpu_threads

__all__ = [
    "HAND_METRICS", "OBJECT_ERRORS", "PAPER_COLUMNS", "PAPER_OBJECTS", "PAPER_TABLES", "VARIANTS", "Variant",
    "machine_description", "main", "run_variant", "summarise",
]


@dataclass(frozen=True)
class Variant:
    """One network of the ablation: ``HFLNet(backbone=..., hand_interaction=..., object_interaction=...)``.

    rows: the paper rows it stands for, as ``(table number, row label)`` pairs.
    """

    backbone: str
    hand_interaction: str
    object_interaction: str
    rows: tuple[tuple[int, str], ...]

    @property
    def name(self) -> str:
        return f"{self.backbone}-{self.hand_interaction}-{self.object_interaction}"

    @property
    def model_config(self) -> dict[str, str]:
        return {"backbone": self.backbone, "hand_interaction": self.hand_interaction,
                "object_interaction": self.object_interaction}


_VARIANT_LIST = (
    Variant("single", "none", "none", ((5, "Single-Stream"),)),
    Variant("double", "none", "none", ((5, "Double-Stream"),)),
    Variant("hfl", "none", "none", ((5, "Ours"), (7, "w/o inter."))),
    Variant("single", "concat_sa", "h2o", ((6, "Single-Stream"),)),
    Variant("double", "concat_sa", "h2o", ((6, "Double-Stream"),)),
    Variant("hfl", "concat_sa", "h2o", ((6, "Ours"), (8, "Ours"))),
    Variant("hfl", "none", "o2o", ((7, "O-to-O"),)),
    Variant("hfl", "none", "h2o", ((7, "H-to-O"), (8, "w/o enhance"))),
    Variant("hfl", "sa", "h2o", ((8, "SA"),)),
    Variant("hfl", "ca", "h2o", ((8, "CA"),)),
    Variant("hfl", "add_sa", "h2o", ((8, "ADD+SA"),)),
)
VARIANTS: dict[str, Variant] = {v.name: v for v in _VARIANT_LIST}

# The paper's short object names (its table columns) -> HO3D object names.
PAPER_OBJECTS = {"cleanser": "021_bleach_cleanser", "bottle": "006_mustard_bottle", "can": "010_potted_meat_can"}

# The paper's Tables 5-8 (HO3D): row label -> (Joint PA-MPJPE mm, Mesh PA-MPVPE mm, ADD-0.1D % for
# cleanser, bottle, can, and their average).
PAPER_COLUMNS = ("joint_mm", "mesh_mm", "cleanser_pct", "bottle_pct", "can_pct", "average_pct")
PAPER_TABLES: dict[int, dict[str, Any]] = {
    5: {"caption": "Backbones, no interaction modules",
        "rows": {"Single-Stream": (10.4, 10.3, 80.1, 55.3, 46.2, 60.5),
                 "Double-Stream": (9.7, 9.6, 82.2, 74.1, 49.4, 68.6),
                 "Ours": (9.8, 9.7, 84.1, 70.3, 48.2, 67.5)}},
    6: {"caption": "Backbones with the interaction modules",
        "rows": {"Single-Stream": (10.2, 10.0, 86.2, 62.1, 42.3, 63.5),
                 "Double-Stream": (9.5, 9.4, 91.2, 73.3, 46.8, 70.4),
                 "Ours": (8.9, 8.7, 81.4, 87.5, 52.2, 73.3)}},
    7: {"caption": "Hand-to-object enhancement (HFL backbone, no object-to-hand enhancement)",
        "rows": {"w/o inter.": (9.8, 9.7, 84.1, 70.3, 48.2, 67.5),
                 "O-to-O": (9.6, 9.5, 92.3, 74.2, 42.3, 69.5),
                 "H-to-O": (9.6, 9.4, 92.1, 70.4, 51.2, 71.3)}},
    8: {"caption": "Object-to-hand enhancement (HFL backbone, H-to-O enhancement)",
        "rows": {"w/o enhance": (9.6, 9.4, 92.1, 70.4, 51.2, 71.3),
                 "SA": (9.5, 9.4, 91.2, 77.3, 51.0, 73.1),
                 "CA": (9.5, 9.4, 84.4, 82.1, 44.2, 70.2),
                 "ADD+SA": (9.3, 9.3, 87.2, 78.3, 52.1, 72.5),
                 "Ours": (8.9, 8.7, 81.4, 87.5, 52.2, 73.3)}},
}

HAND_METRICS = ("pa_mpjpe_mm", "pa_mpvpe_mm", "mpjpe_mm", "f5_pct", "f15_pct", "finger_angle_deg",
                "articulation_mpjpe_mm")
OBJECT_ERRORS = ("add_mm", "rep_px")
DEFAULT_OUT = "data_samples/ablation"
CACHE_LIMIT = 2000  # sets up to this many samples are decoded once and kept in memory
TINY = {"steps": 2, "batch_size": 2, "eval_samples": 4}
DEFAULT_STEPS = 48
DEFAULT_LR = 1e-3


class _Subset(torch.utils.data.Subset):
    """``Subset`` that keeps the ``objects`` catalogue of its dataset."""

    def __init__(self, dataset: Dataset, indices: list[int]):
        super().__init__(dataset, indices)
        self.objects = dataset.objects


def machine_description(device: torch.device) -> dict[str, str]:
    """``{"platform", "cpu", "torch", "device", "threads"}`` of this process, as strings for the
    results table (``threads``: torch's CPU threads)."""
    cpu = cpu_name()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    dev = str(device)
    if device.type == "cuda":
        dev = f"{dev} ({torch.cuda.get_device_name(device)})"
    return {"platform": platform.platform(), "cpu": f"{cpu}, {cores} cores usable",
            "torch": torch.__version__, "device": dev, "threads": str(torch.get_num_threads())}


def _last_losses(log_csv: Path, count: int = 5) -> float:
    """Mean ``total`` loss over the last ``count`` training steps logged in ``log_csv`` (NaN if none)."""
    if not log_csv.is_file():
        return math.nan
    with open(log_csv, newline="", encoding="utf-8") as f:
        totals = [float(r["total"]) for r in csv.DictReader(f)]
    return float(np.mean(totals[-count:])) if totals else math.nan


def run_variant(variant: Variant, seed: int, train_set: Dataset, eval_set: Dataset, steps: int, batch_size: int,
                lr: float, preset, device: torch.device, dataset_name: str = "ho3d", workers: int = 0,
                export_to: Path | None = None, baseline=None, pretrained: bool = False,
                weights_path: str | None = None) -> tuple[dict[str, float], dict[str, float] | None]:
    """Train ``variant`` for ``steps`` steps from seed ``seed`` and evaluate it.

    Returns ``(metrics, baseline_metrics)``: ``metrics`` holds ``params``, ``train_loss_last``
    (mean total loss of the last 5 steps), ``train_s``, ``eval_s`` and the flattened evaluation
    summary (:func:`hfl_lite.training.evaluate.flat_metrics`: ``pa_mpjpe_mm``,
    ``add_01d_pct/<object>``, ...); ``baseline_metrics`` likewise for a given
    :class:`~hfl_lite.training.evaluate.MeanPoseBaseline` (else ``None``).
    export_to: also write the trained weights there (float16, weights only).
    pretrained, weights_path: ImageNet initialisation of the backbone (paper preset; see ``HFLNet``).
    """
    from hfl_lite.losses import loss_weights
    from hfl_lite.model import HFLNet
    from hfl_lite.training import DistInfo, TrainConfig, Trainer, seed_everything
    from hfl_lite.training.checkpoint import export_weights
    from hfl_lite.training.cli import HFLStep
    from hfl_lite.training.evaluate import evaluate, flat_metrics

    seed_everything(seed)
    model = HFLNet(preset, pretrained=pretrained, weights_path=weights_path, **variant.model_config)
    batches_per_epoch = len(train_set) // batch_size
    if batches_per_epoch == 0:
        raise ValueError(f"--batch-size {batch_size} is larger than the training set ({len(train_set)} samples)")
    epochs = max(1, math.ceil(steps / batches_per_epoch))
    with tempfile.TemporaryDirectory(prefix="hfl_ablate_") as work:
        config = TrainConfig(
            out_dir=work, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=preset.weight_decay,
            lr_step_epochs=epochs, lr_gamma=1.0, seed=seed, workers=workers, max_steps=steps, progress=False,
            meta={"preset": preset.name, "dataset": dataset_name, "model_config": variant.model_config},
        )
        trainer = Trainer(model, HFLStep(loss_weights(preset.loss_weights)), train_set, config, dist=DistInfo(device=device),
                          find_unused_parameters=True)
        t0 = time.perf_counter()
        status = trainer.fit()["status"]
        if status == "interrupted":
            raise KeyboardInterrupt(f"training of {variant.name} (seed {seed}) was interrupted")
        train_s = time.perf_counter() - t0
        loss = _last_losses(Path(work) / "log.csv")
        if export_to is not None:
            export_weights(Path(work) / "last.pt", export_to)
    t0 = time.perf_counter()
    result = evaluate(model, eval_set, dataset_name, batch_size=16, device=device, seed=seed, baseline=baseline)
    eval_s = time.perf_counter() - t0
    metrics = {"params": float(sum(p.numel() for p in model.parameters())), "train_loss_last": loss,
               "train_s": train_s, "eval_s": eval_s, **flat_metrics(result.metrics)}
    return metrics, (flat_metrics(result.baseline) if result.baseline is not None else None)


def _metric_columns(object_names: list[str]) -> list[str]:
    """Hand metrics, ADD-0.1D per object and averaged over objects, then the finer object errors
    (mean ADD in mm, control-point reprojection error in px) that still move when ADD-0.1D is 0."""
    return [*HAND_METRICS, *(f"add_01d_pct/{n}" for n in object_names), "add_01d_mean_objects_pct",
            *OBJECT_ERRORS]


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write ``rows`` to the CSV file ``path`` atomically (temporary file + rename); floats with 6
    significant digits."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)


def summarise(rows: list[dict[str, Any]], metric_columns: list[str]) -> list[dict[str, Any]]:
    """Per variant (in order of first appearance): ``n_seeds`` and ``<metric>_mean`` /
    ``<metric>_std`` (sample standard deviation across seeds; NaN with one seed) of every
    metric column, plus the variant's description columns."""
    out = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == name]
        summary = {k: group[0][k] for k in ("variant", "backbone", "hand_interaction", "object_interaction",
                                             "paper_rows", "params")}
        summary["n_seeds"] = len(group)
        for col in [*metric_columns, "train_loss_last", "train_s"]:
            values = [float(r[col]) for r in group if col in r and not math.isnan(float(r[col]))]
            summary[f"{col}_mean"] = statistics.fmean(values) if values else math.nan
            summary[f"{col}_std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        out.append(summary)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hfl_lite ablate",
        description="Train and evaluate the backbone and interaction variants of the paper's Tables 5-8 with "
                    "identical budgets and seeds; write results.csv (one row per run), summary.csv "
                    "(mean and std over seeds) and baseline.csv to --out.",
    )
    p.add_argument("--steps", type=int, help=f"training steps per run (default {DEFAULT_STEPS}; --tiny: 2)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds; every variant runs once per seed (default: 0 1; --tiny: 0)")
    p.add_argument("--variants", nargs="+", metavar="VARIANT",
                   help=f"a subset of the variants (default: all): {', '.join(VARIANTS)}")
    p.add_argument("--out", help=f"output folder (default {DEFAULT_OUT}; --tiny: a new temporary folder)")
    p.add_argument("--tiny", action="store_true",
                   help="a tiny budget for CI: 2 steps of batch 2, 4 evaluation samples")
    p.add_argument("--dataset", default="ho3d", choices=("ho3d", "dexycb"))
    p.add_argument("--root", help="dataset folder (default: the shipped samples' set of --dataset, "
                                  "hfl_lite.samples.samples_root())")
    p.add_argument("--eval-root", help="dataset folder whose evaluation split scores the runs (default: --root), "
                                       "e.g. a held-out set rendered apart from the training images")
    p.add_argument("--preset", default="cpu", choices=("cpu", "paper"), help="network sizes (default cpu)")
    p.add_argument("--batch-size", type=int, help="samples per step (default 8; --tiny: 2)")
    p.add_argument("--lr", type=float, help=f"Adam learning rate, constant (default {DEFAULT_LR:g})")
    p.add_argument("--eval-samples", type=int,
                   help="evaluate on this many evaluation samples, evenly spaced (default: all; --tiny: 4)")
    p.add_argument("--save-weights", nargs="+", default=[], metavar="VARIANT",
                   help="also save these variants' weights (first seed, float16) to OUT/weights/VARIANT.pt")
    p.add_argument("--augment", action="store_true",
                   help="the paper's augmentation (default off; sets of any size are then read from disk every step)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="ImageNet ResNet-50 initialisation (paper preset only; default: on for paper, off for cpu)")
    p.add_argument("--weights-path", help="local torchvision resnet50 state dict (ImageNet weights without download)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0)")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: 1 on the CPU, where one thread per run is far faster than "
                        "several on a shared machine; torch's default with CUDA)")
    return p


def _check_variants(names: list[str], option: str) -> None:
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"{option}: unknown variant(s) {unknown}; choices: {list(VARIANTS)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m hfl_lite ablate`` (see ``--help`` and the module docstring).

    Returns 0, or 130 when interrupted (Ctrl-C/SIGTERM; the finished runs are kept)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    device = torch.device(args.device) if args.device else pick_device()
    # one thread per run on the CPU by default; the caller's setting comes back afterwards
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else None)
    with cpu_threads(threads):
        return _ablate(args, device, "python -m hfl_lite ablate " + shlex.join(argv))


def _ablate(args: argparse.Namespace, device: torch.device, command: str) -> int:
    from hfl_lite.data.cache import MemoryCache
    from hfl_lite.presets import get_preset
    from hfl_lite.training.cli import make_dataset
    from hfl_lite.training.evaluate import MeanPoseBaseline

    steps = args.steps if args.steps is not None else (TINY["steps"] if args.tiny else DEFAULT_STEPS)
    batch_size = args.batch_size if args.batch_size is not None else (TINY["batch_size"] if args.tiny else 8)
    eval_samples = args.eval_samples if args.eval_samples is not None else (TINY["eval_samples"] if args.tiny else None)
    seeds = args.seeds if args.seeds is not None else ([0] if args.tiny else [0, 1])
    lr = args.lr if args.lr is not None else DEFAULT_LR
    names = args.variants or list(VARIANTS)
    _check_variants(names, "--variants")
    _check_variants(args.save_weights, "--save-weights")
    for option, value in (("--steps", steps), ("--batch-size", batch_size), ("--eval-samples", eval_samples or 1)):
        if value < 1:
            raise SystemExit(f"{option} must be >= 1, got {value}")
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds must be distinct, got {seeds}")
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="hfl_ablate_tiny_")) if args.tiny
                                           else Path(DEFAULT_OUT))
    out.mkdir(parents=True, exist_ok=True)
    preset = get_preset(args.preset)
    pretrained = args.pretrained if args.pretrained is not None else preset.imagenet_backbone
    machine = machine_description(device)

    root = args.root if args.root is not None else samples_root() / args.dataset
    train_full = make_dataset(args.dataset, root, "train", preset, augment=args.augment, seed=seeds[0])
    eval_full = make_dataset(args.dataset, args.eval_root or root, "evaluation", preset)
    eval_idx = list(range(len(eval_full)))
    if eval_samples is not None and eval_samples < len(eval_full):
        eval_idx = sorted({int(i) for i in np.linspace(0, len(eval_full) - 1, eval_samples).round()})
    small_train = len(train_full) <= CACHE_LIMIT and not args.augment
    train_set = MemoryCache(train_full, progress=False) if small_train else train_full
    eval_set = _Subset(eval_full, eval_idx)
    if len(eval_idx) <= CACHE_LIMIT:
        eval_set = MemoryCache(eval_set, progress=False)
    object_names = sorted({s["obj_name"] for s in eval_set.samples}) if isinstance(eval_set, MemoryCache) \
        else sorted(PAPER_OBJECTS.values())
    metric_columns = _metric_columns(object_names)
    id_columns = ["variant", "backbone", "hand_interaction", "object_interaction", "paper_rows", "seed", "steps",
                  "batch_size", "lr", "augment", "pretrained", "preset", "dataset", "train_samples", "eval_samples",
                  "params"]
    columns = [*id_columns, "train_loss_last", *metric_columns, "train_s", "eval_s", *machine, "command"]
    print(f"[hfl_lite ablate] {len(names)} variant(s) x {len(seeds)} seed(s), {steps} steps of batch {batch_size}, "
          f"lr {lr:g}, preset {preset.name}, {len(train_set)} training / {len(eval_set)} evaluation samples, "
          f"device {machine['device']}, {machine['threads']} thread(s); writing {out}", flush=True)

    baseline = MeanPoseBaseline.fit(train_set, batch_size=batch_size)
    baseline_metrics = None
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    runs = [(name, seed) for seed in seeds for name in names]
    status = 0
    try:
        for k, (name, seed) in enumerate(runs, 1):
            variant = VARIANTS[name]
            export = out / "weights" / f"{name}.pt" if name in args.save_weights and seed == seeds[0] else None
            if export is not None:
                export.parent.mkdir(parents=True, exist_ok=True)
            metrics, base = run_variant(variant, seed, train_set, eval_set, steps, batch_size, lr, preset, device,
                                        args.dataset, args.workers, export,
                                        baseline if baseline_metrics is None else None, pretrained, args.weights_path)
            baseline_metrics = baseline_metrics or base
            row = {"variant": name, **variant.model_config,
                   "paper_rows": "; ".join(f"T{t} {label}" for t, label in variant.rows), "seed": seed,
                   "steps": steps, "batch_size": batch_size, "lr": lr, "augment": args.augment,
                   "pretrained": pretrained, "preset": preset.name, "dataset": args.dataset,
                   "train_samples": len(train_set), "eval_samples": len(eval_set),
                   **{c: metrics.get(c, math.nan) for c in ["train_loss_last", *metric_columns, "train_s", "eval_s"]},
                   "params": int(metrics["params"]), **machine, "command": command}
            rows.append(row)
            _write_csv(out / "results.csv", rows, columns)
            print(f"[hfl_lite ablate] {k}/{len(runs)} {name} seed {seed}: loss {row['train_loss_last']:.4g}, "
                  f"PA-MPJPE {row['pa_mpjpe_mm']:.2f} mm, ADD-0.1D {row['add_01d_mean_objects_pct']:.1f} %, "
                  f"train {row['train_s']:.0f} s, eval {row['eval_s']:.0f} s", flush=True)
    except KeyboardInterrupt:
        print(f"[hfl_lite ablate] interrupted after {len(rows)} of {len(runs)} runs", file=sys.stderr, flush=True)
        status = 130
    if rows:
        summary = summarise(rows, metric_columns)
        _write_csv(out / "summary.csv", summary, list(summary[0]))
    if baseline_metrics is not None:
        base_row = {"variant": "mean training pose", "eval_samples": len(eval_set),
                    **{c: baseline_metrics.get(c, math.nan) for c in metric_columns}}
        _write_csv(out / "baseline.csv", [base_row], ["variant", "eval_samples", *metric_columns])
    total = time.perf_counter() - started
    print(f"[hfl_lite ablate] {len(rows)} runs in {total / 60:.1f} min; wrote {out / 'results.csv'}, "
          f"{out / 'summary.csv'} and {out / 'baseline.csv'}", flush=True)
    return status
