"""``python -m hfl_lite train`` and ``python -m hfl_lite eval``.

Train (one process, or one per GPU with ``torchrun --nproc_per_node N -m hfl_lite train ...``)::

    python -m hfl_lite train --dataset ho3d --root /data/HO3D_v2 --preset paper --out runs/ho3d
    python -m hfl_lite train ... --out runs/ho3d --resume          # continue where it stopped
    python -m hfl_lite train ... --out runs/ho3d --overwrite       # start a new run there
    python -m hfl_lite train ... --out runs/finetune --init-from runs/ho3d/last.pt   # fine-tune

Evaluate a checkpoint (the full metric table as JSON and Markdown; for HO3D also ``pred.zip``)::

    python -m hfl_lite eval --checkpoint runs/ho3d/last.pt --dataset ho3d --root /data/HO3D_v2 --split evaluation
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from hfl_lite.losses import LOSS_WEIGHTS, hfl_losses, loss_weights
from hfl_lite.model import BACKBONE_KINDS, HAND_VARIANTS, OBJECT_VARIANTS, PAPER_VARIANTS, ROI_CONVENTIONS, HFLNet
from hfl_lite.presets import get_preset

from .checkpoint import (check_same_network, describe_network, export_weights, load_checkpoint, load_model_weights,
                         load_matching_weights, load_weights_into)
from .distributed import barrier, cleanup_distributed, init_distributed
from .evaluate import MeanPoseBaseline, evaluate, flat_metrics
from .loop import NonFiniteLossError, TrainConfig, Trainer, seed_everything, stop_signals_handled_by
from .run_folder import check_run_folder

__all__ = ["HFLStep", "eval_main", "make_dataset", "train_main"]

DATASETS = ("ho3d", "dexycb")
EVAL_SPLITS = {"ho3d": "evaluation", "dexycb": "test"}


def make_dataset(name: str, root: str | os.PathLike, split: str, preset, augment: bool = False, seed: int | None = None,
                 mano_root: str | None = None, skip_bad: bool = False):
    """The ``hfl_lite.data`` reader for ``name`` ("ho3d" or "dexycb") at the preset's sizes.

    split: "train", or "evaluation"/"test" (each dataset's evaluation split, either name works).
    Raises :class:`~hfl_lite.data.DataError` when the split lists no frames.
    """
    from hfl_lite.data import HO3D, DexYCB

    name = name.lower().replace("-", "").replace("_", "")
    if name not in DATASETS:
        raise ValueError(f"--dataset must be one of {DATASETS}, got {name!r}")
    if split in ("evaluation", "test"):
        split = EVAL_SPLITS[name]
    cls = HO3D if name == "ho3d" else DexYCB
    dataset = cls(root, split=split, image_size=preset.image_size, roi_size=preset.roi_size, augment=augment,
                  skip_bad=skip_bad, mano_root=mano_root, seed=seed)
    dataset.require_frames()
    return dataset


class HFLStep:
    """``step_fn`` for :class:`~hfl_lite.training.loop.Trainer`: HFL-Net forward + :func:`hfl_losses`
    (``weights`` overrides :data:`hfl_lite.losses.LOSS_WEIGHTS` by term name; a preset's own
    weights come from :func:`hfl_lite.losses.loss_weights`)."""

    def __init__(self, weights: dict[str, float] | None = None):
        self.weights = dict(weights or {})

    def __call__(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        outputs = model(batch["image"], batch["hand_box"], batch["obj_box"])
        network = getattr(model, "module", model)  # DistributedDataParallel wraps the network
        return hfl_losses(outputs, batch, self.weights, mano=network.hand_decoder.mano)


def _loss_weight(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or name not in LOSS_WEIGHTS:
        raise argparse.ArgumentTypeError(f"expected TERM=VALUE with TERM one of {sorted(LOSS_WEIGHTS)}, got {text!r}")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--loss-weight {text!r}: {value!r} is not a number") from None


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hfl_lite train",
        description="Train HFL-Net on HO3D or Dex-YCB. Picks CUDA when present; under torchrun every process "
                    "takes one GPU (DistributedDataParallel). Writes RUN_DIR/last.pt (+ best.pt), log.jsonl, log.csv.",
    )
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, help="dataset folder (HO3D layout or Dex-YCB layout)")
    p.add_argument("--preset", choices=("cpu", "paper"), help="network sizes (default: paper on CUDA, cpu otherwise)")
    p.add_argument("--epochs", type=int, help="default: the preset's schedule for the dataset (HO3D 70, Dex-YCB 40)")
    p.add_argument("--batch-size", type=int, help="per process (default: the preset's, 64 for paper)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="folder for checkpoints and logs")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt (exactly, to the batch)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a RUN_DIR that holds one (its files are kept in RUN_DIR/previous until "
                        "the new run's first checkpoint); without --resume or --overwrite such a folder is refused")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start from these network weights (a training or exported checkpoint of the same preset and "
                        "variants) with a fresh optimiser, schedule and step count: fine-tuning; --resume of an "
                        "existing RUN_DIR/last.pt takes precedence")
    p.add_argument("--init-partial", action="store_true",
                   help="with --init-from: copy only the tensors whose names and shapes match (a checkpoint of an "
                        "earlier version of the network); the rest keep their fresh initialisation and are listed")
    p.add_argument("--trainable", nargs="+", metavar="MODULE", default=[],
                   help="train only these submodules of HFLNet (e.g. hand_decoder); the rest stays frozen, its "
                        "BatchNorm statistics included (default: the whole network)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total (counted across resumes)")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every N epochs (0: never)")
    p.add_argument("--eval-max-samples", type=int, help="evaluate on at most this many samples")
    p.add_argument("--eval-root", help="dataset folder whose evaluation split --eval-every scores (default: --root), "
                                       "e.g. a held-out set rendered apart from the training images")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: 4 on CUDA, 0 on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower on GPU)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (bf16, or fp16 with a gradient scaler); default: on for CUDA, off on the CPU")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="convolution weights in channels-last memory order (default: on; faster on CPU and GPU, "
                        "same results up to rounding)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="the paper's augmentation (default: on)")
    p.add_argument("--cache", action="store_true",
                   help="prepare every training sample once and keep it in memory (needs --no-augment; about "
                        "0.2 MB per sample at 128 px); the workers then only fill the cache")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the preset's, 1e-4)")
    p.add_argument("--weight-decay", type=float, help="Adam weight decay (default: the preset's, 5e-4)")
    p.add_argument("--lr-step", type=int, help="StepLR period in epochs (default: the dataset schedule's)")
    p.add_argument("--lr-gamma", type=float, help="StepLR factor (default: the preset's, 0.7)")
    p.add_argument("--max-nonfinite", type=int, default=20, help="stop after this many non-finite losses in a row")
    p.add_argument("--loss-weight", type=_loss_weight, action="append", default=[], metavar="TERM=VALUE",
                   help=f"override a loss weight (repeatable; on top of the preset's own, see hfl_lite.presets); "
                        f"terms and the paper's weights: {', '.join(f'{k}={v:g}' for k, v in LOSS_WEIGHTS.items())}")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="ImageNet ResNet-50 initialisation (default: the preset's, as HFLNet's: on for paper, off "
                        "for cpu, and off with --init-from)")
    p.add_argument("--weights-path", help="local torchvision resnet50 state dict (ImageNet weights without download)")
    p.add_argument("--backbone", default=PAPER_VARIANTS["backbone"], choices=BACKBONE_KINDS)
    p.add_argument("--hand-interaction", default=PAPER_VARIANTS["hand_interaction"], choices=HAND_VARIANTS)
    p.add_argument("--object-interaction", default=PAPER_VARIANTS["object_interaction"], choices=OBJECT_VARIANTS)
    p.add_argument("--roi-convention", default="reference", choices=list(ROI_CONVENTIONS),
                   help="ROIAlign convention (default: the reference code's; see hfl_lite.model.roi)")
    p.add_argument("--mano-root", help="folder with MANO_RIGHT.pkl (default: the stand-in hand)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--export", metavar="PATH", help="after training, also write a small weights-only (fp16) checkpoint here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@contextlib.contextmanager
def stop_cleanly_outside_training():
    """Turn Ctrl-C and SIGTERM into a one-line exit while no training step runs.

    Setting up (reading or ``--cache``-ing the data, building the model) and exporting can take
    minutes; a SIGTERM there used to end the process without a word, a Ctrl-C with a traceback.
    Nothing is lost either way: the training loop installs its own handlers (finish the step,
    save last.pt) while it runs and restores these afterwards.
    """
    def stop(signum, frame):
        raise SystemExit(f"python -m hfl_lite train: stopped by {signal.Signals(signum).name} outside the training "
                         "loop (no step in progress, nothing to save; checkpoints already written are kept)")

    with stop_signals_handled_by(stop):
        yield


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m hfl_lite train`` (see ``--help``). Returns the exit code."""
    args = _train_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    with stop_cleanly_outside_training():
        info = init_distributed(args.device)
        try:
            return _train(args, info)
        finally:
            cleanup_distributed()


def _train(args: argparse.Namespace, info) -> int:
    from hfl_lite.data.cache import MemoryCache

    check_run_folder(args.out, args.resume, args.overwrite)  # before minutes of setting up
    preset = get_preset(args.preset)
    schedule = preset.schedule(args.dataset)
    # None: HFLNet's default (the preset's); weights from --init-from replace every parameter,
    # so an ImageNet download would be wasted there
    pretrained = False if args.pretrained is None and args.init_from else args.pretrained
    workers = args.workers if args.workers is not None else (4 if info.device.type == "cuda" else 0)
    seed_everything(args.seed)
    train_set = make_dataset(args.dataset, args.root, "train", preset, augment=args.augment, seed=args.seed,
                             mano_root=args.mano_root, skip_bad=True)
    loader_workers = workers
    if args.cache:
        if args.augment:
            raise SystemExit("python -m hfl_lite train: --cache needs --no-augment (a cached sample would repeat "
                             "one augmentation draw in every epoch)")
        train_set = MemoryCache(train_set, workers=workers, progress=info.is_main and not args.no_progress)
        loader_workers = 0  # batches are slices of memory now; worker processes would only add copies
        if info.is_main:
            print(f"[hfl_lite] cached {len(train_set)} training samples in memory ({train_set.nbytes / 1e6:.0f} MB)",
                  flush=True)
    model_config = {"backbone": args.backbone, "hand_interaction": args.hand_interaction,
                    "object_interaction": args.object_interaction, "roi_convention": args.roi_convention}

    def build():
        return HFLNet(preset, pretrained=pretrained, weights_path=args.weights_path, mano_root=args.mano_root,
                      **model_config)

    # rank 0 first: a download of the ImageNet weights then happens once, into the shared cache
    model = build() if info.is_main else None
    barrier(info)
    if model is None:
        model = build()

    last = Path(args.out) / "last.pt"
    if args.init_from and args.resume and last.is_file():
        # resuming: the weights come from last.pt, and so does the lineage (the --init-from file
        # may have been overwritten since the run began, e.g. by this run's own --export)
        init_meta = {k: v for k, v in load_checkpoint(last).items() if k in ("init_from", "init_from_meta", "init_partial")}
    elif args.init_from:
        init_meta = _init_weights(model, args.init_from, preset.name, model_config, args.init_partial)
    else:
        init_meta = {}

    eval_fn = None
    if args.eval_every:
        eval_set = make_dataset(args.dataset, args.eval_root or args.root, "evaluation", preset, mano_root=args.mano_root)

        def evaluate_run(m):
            result = evaluate(m, eval_set, args.dataset, batch_size=args.batch_size or preset.batch_size,
                              workers=workers, max_samples=args.eval_max_samples, seed=args.seed)
            return flat_metrics(result.metrics)

        eval_fn = evaluate_run

    weights = loss_weights(preset.loss_weights, dict(args.loss_weight))  # the preset's, then the command line's
    config = TrainConfig(
        out_dir=args.out,
        epochs=args.epochs or schedule.epochs,
        batch_size=args.batch_size or preset.batch_size,
        lr=args.lr if args.lr is not None else preset.lr,
        weight_decay=args.weight_decay if args.weight_decay is not None else preset.weight_decay,
        lr_step_epochs=args.lr_step or schedule.lr_step_epochs,
        lr_gamma=args.lr_gamma if args.lr_gamma is not None else preset.lr_gamma,
        seed=args.seed,
        workers=loader_workers,
        amp=args.amp,
        deterministic=args.deterministic,
        channels_last=args.channels_last,
        max_steps=args.max_steps,
        eval_every=args.eval_every,
        best_metric="pa_mpjpe_mm" if args.eval_every else None,
        best_mode="min",
        max_nonfinite=args.max_nonfinite,
        progress=not args.no_progress,
        meta={"preset": preset.name, "dataset": args.dataset, "model_config": model_config,
              "loss_weights": weights, **({"trainable": list(args.trainable)} if args.trainable else {}), **init_meta},
        trainable=tuple(args.trainable),
    )
    trainer = Trainer(model, HFLStep(weights), train_set, config, eval_fn=eval_fn, dist=info,
                      find_unused_parameters={k: model_config[k] for k in PAPER_VARIANTS} != PAPER_VARIANTS)
    if info.is_main:
        print(f"[hfl_lite] training {args.dataset} from {args.root}: {len(train_set)} samples, preset {preset.name}, "
              f"{info.world_size} process(es) on {info.device}, batch {config.batch_size}/process, "
              f"{trainer.batches_per_epoch} steps/epoch, {config.epochs} epochs, "
              f"AMP {trainer.amp_dtype if trainer.amp_dtype else 'off'}", flush=True)
    try:
        result = trainer.fit(resume=args.resume, overwrite=args.overwrite)
    except NonFiniteLossError as err:
        if info.is_main:
            print(f"[hfl_lite] stopped: {err}", file=sys.stderr, flush=True)
        return 1
    if info.is_main:
        print(f"[hfl_lite] {result['status']} at epoch {result['epoch']}, step {result['step']}; "
              f"checkpoint {Path(args.out) / 'last.pt'}", flush=True)
        skipped = getattr(train_set, "skip_report", None)
        if skipped is not None and train_set.skipped:
            print(f"[hfl_lite] {skipped()}", flush=True)
        if args.export and result["status"] in ("completed", "max_steps"):
            path = export_weights(Path(args.out) / "last.pt", args.export)
            print(f"[hfl_lite] exported weights to {path} ({path.stat().st_size / 1e6:.1f} MB)", flush=True)
    return 130 if result["status"] == "interrupted" else 0


def _init_weights(model: torch.nn.Module, path: str, preset: str, model_config: dict[str, str],
                  partial: bool = False) -> dict[str, Any]:
    """Load the network weights of checkpoint ``path`` into ``model`` (for ``--init-from``).

    Refuses, naming the checkpoint, one recorded with another preset or other network variants
    (the weights would not fit). Returns the lineage stored in the new run's checkpoints:
    ``init_from`` (the path) and ``init_from_meta`` (the source's dataset, epoch, step and, when
    the source was itself fine-tuned, its own ``init_from`` and ``init_from_meta``: the whole chain).
    With ``partial``, only the tensors that match by name and shape are copied and the lineage
    adds ``init_partial``: the names of the tensors left fresh and of those dropped.
    """
    weights, meta = load_model_weights(path)
    check_same_network(path, meta, preset, model_config, "--init-from")
    lineage = {"init_from": str(path),
               "init_from_meta": {k: meta[k] for k in ("dataset", "epoch", "step", "init_from", "init_from_meta")
                                  if k in meta}}
    if not partial:
        load_weights_into(model, weights, path, describe_network(preset, model_config))
        return lineage
    report = load_matching_weights(model, weights)
    print(f"[hfl_lite] --init-partial: {len(weights) - len(report['dropped'])} tensors of {path} copied; "
          f"{len(report['fresh'])} left fresh, {len(report['dropped'])} unused", flush=True)
    return {**lineage, "init_partial": report}


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hfl_lite eval",
        description="Evaluate a checkpoint: hand MPJPE, PA-MPJPE, PA-MPVPE, F@5, F@15 (true root, and with the "
                    "estimated translation) and per-object ADD-0.1D (votes -> RANSAC EPnP). Writes metrics.json and "
                    "metrics.md to --out, and for HO3D the submission pred.zip.",
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True)
    p.add_argument("--split", default="evaluation", choices=("evaluation", "test", "train"),
                   help="'evaluation' and 'test' both mean the dataset's evaluation split")
    p.add_argument("--out", help="output folder (default: next to the checkpoint, eval_<dataset>_<split>)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--max-samples", type=int, help="evaluate only the first N samples")
    p.add_argument("--no-ransac", action="store_true", help="plain EPnP instead of RANSAC EPnP")
    p.add_argument("--seed", type=int, default=0, help="seed of the RANSAC sampling")
    p.add_argument("--baselines", action="store_true",
                   help="also score the mean training hand and per-object mean training pose (reads the train split)")
    p.add_argument("--baseline-root", help="dataset folder whose train split the baselines average (default: --root; "
                                           "e.g. the training images when --root is a held-out set)")
    p.add_argument("--submission", action=argparse.BooleanOptionalAction, default=True,
                   help="HO3D evaluation split: also write the challenge submission pred.zip (default: on)")
    p.add_argument("--mano-root", help="folder with MANO_RIGHT.pkl (default: the stand-in hand)")
    return p


def eval_main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m hfl_lite eval`` (see ``--help``). Returns the exit code."""
    from hfl_lite.atomic import check_output_folder, staged_folder
    from hfl_lite.inference import load_model

    args = _eval_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    split = EVAL_SPLITS[args.dataset] if args.split in ("evaluation", "test") else "train"
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / f"eval_{args.dataset}_{split}"
    check_output_folder(out, "--out")  # before the model and the data are read
    model, meta = load_model(args.checkpoint, args.device, args.mano_root)
    preset = model.preset
    dataset = make_dataset(args.dataset, args.root, split, preset, mano_root=args.mano_root)
    with staged_folder(out) as stage:  # out receives the files only when everything succeeded
        _evaluate_into(stage, out, args, model, meta, dataset, split)
    print(f"\nwrote {out / 'metrics.json'} and {out / 'metrics.md'}")
    return 0


def _hardware(device: torch.device) -> dict[str, str]:
    """What the numbers were computed on: the GPU's name, or the CPU's kind
    (:func:`hfl_lite.bench.timing.cpu_kind`), whose rounding they repeat exactly."""
    from hfl_lite.bench.timing import cpu_kind

    return {"gpu": torch.cuda.get_device_name(device)} if device.type == "cuda" else cpu_kind()


def _evaluate_into(stage: Path, out: Path, args: argparse.Namespace, model, meta: dict[str, Any], dataset,
                   split: str) -> None:
    """The body of ``eval``: score ``model`` and write the reports into ``stage`` (their paths as
    they will be, under ``out``)."""
    from hfl_lite.submission import write_submission

    preset = model.preset
    baseline = None
    if args.baselines:
        train_set = make_dataset(args.dataset, args.baseline_root or args.root, "train", preset, mano_root=args.mano_root)
        baseline = MeanPoseBaseline.fit(train_set, batch_size=args.batch_size, workers=args.workers, progress=True,
                                        mano_root=args.mano_root)
    result = evaluate(model, dataset, args.dataset, batch_size=args.batch_size, workers=args.workers,
                      baseline=baseline, ransac=not args.no_ransac, seed=args.seed, max_samples=args.max_samples,
                      progress=True)
    report = {
        "checkpoint": str(args.checkpoint),
        "dataset": args.dataset,
        "root": str(args.root),
        "split": split,
        "samples": len(result.predictions["sample_id"]),
        "preset": meta.get("preset"),
        "trained": {k: meta[k] for k in ("dataset", "epoch", "step", "updates", "model_config", "loss_weights") if k in meta},
        "ransac": not args.no_ransac,
        "seed": args.seed,
        "hardware": _hardware(next(model.parameters()).device),
        "model": result.metrics,
    }
    markdown = [f"## {args.dataset} {split}: {report['samples']} samples, checkpoint {args.checkpoint}", "",
                "### HFL-Net", "", result.table.to_markdown()]
    extra = [(k, label) for k, label in (("mpjpe_est_trans_mm", "MPJPE, estimated translation (mm)"),
                                         ("root_error_mm", "wrist position error, estimated translation (mm)"),
                                         ("root_error_median_mm", "wrist position error, estimated translation, median (mm)"),
                                         ("obj_pose_valid_pct", "object poses solved (%)")) if k in result.metrics]
    if extra:
        markdown += ["", "| camera frame | value |", "|---|---:|"]
        markdown += [f"| {label} | {result.metrics[k]:.2f} |" for k, label in extra]
    if result.baseline is not None:
        report["baseline_mean_pose"] = result.baseline
        report["baseline_root"] = str(args.baseline_root or args.root)
        markdown += ["", "### Baseline: mean training hand pose at the true root, mean training object pose", "",
                     result.baseline_table.to_markdown()]
    if args.submission and args.dataset == "ho3d" and split == "evaluation":
        write_submission(stage / "pred.zip", result.predictions["joints"], result.predictions["verts"],
                         expected_count=None if args.max_samples else len(dataset))
        report["submission"] = str(out / "pred.zip")
        markdown += ["", f"HO3D submission: `{out / 'pred.zip'}`"]
    (stage / "metrics.json").write_text(json.dumps(report, indent=1))
    (stage / "metrics.md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))
