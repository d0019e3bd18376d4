"""The CPU preset's small-compute recipe study (chapter 9's table) as one resumable command.

    python tools/recipe_study.py --out runs/recipe --warm-start OLD.pt   # every configuration
    python tools/recipe_study.py --out /tmp/recipe --tiny                # every step on a few images

Every configuration trains the ``cpu`` preset and is then scored on the same held-out set
(``hfl_lite.synth.heldout.heldout_command``: 240 frames of seed 7, rendered apart from every training
image) with the mean-pose baselines. Two starts, each with its own budget:

* ``scratch``: random weights, 1,000 steps of 32 (lr 1e-3, x0.3 after 700 steps);
* ``warm``: the matching tensors of ``--warm-start`` (``train --init-partial``; the previous
  shipped checkpoint, whose backbone already finds the hand), 200 steps of 32 at lr 3e-4.

The configurations differ in the data (a fixed set of 2,000 images seen for many epochs, or a
pool of 12,000 fresh images, seed 11, gone through about once), the paper's augmentation (on or
off), the loss weights (written out on top of the paper's, so that the preset's own recipe does
not leak in) and Adam's weight decay.

Everything goes under ``--out``: ``data_pool/``, ``data_fixed/`` (the first images of the pool,
linked, not copied), ``heldout/``, one run folder per configuration (``last.pt``, logs,
``eval/metrics.json``) and ``results.csv`` (one row per configuration plus the baseline; chapter 9
reads the committed copy, ``data_samples/checkpoints/recipe_study.csv``). Run it again after an
interruption and it goes on where it stopped: rendered sets are kept, a run with a ``last.pt``
resumes, a scored run is not scored again.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

from synthetic_checkpoint import _render, _render_heldout, _run  # tools/synthetic_checkpoint.py

POOL_SEED = 11
PAPER = ["joints2d=100", "mano_pose=10", "obj_offset=500"]  # the paper's values of the terms varied here
RECIPE = ["joints2d=1e3", "mano_pose=1e3", "obj_offset=5e3"]
# the previous shipped checkpoint's (2D joints at 1e4), with the per-joint MANO term raised
PREVIOUS_MANO = ["joints2d=1e4", "mano_pose=1000", "obj_offset=500"]


class Config(NamedTuple):
    start: str  # "scratch" or "warm"
    data: str  # "fixed" or "pool"
    augment: bool
    weights: list[str]  # --loss-weight values
    weight_decay: str
    trainable: tuple[str, ...] = ()  # train only these submodules (default: all)
    steps: int | None = None  # instead of the start's budget (0: the starting weights as they are)


# the order is the table's
CONFIGS = {
    "scratch, fixed, paper weights": Config("scratch", "fixed", False, PAPER, "5e-4"),
    "scratch, fresh+aug, mano_pose=1000, obj_offset=5000": Config(
        "scratch", "pool", True, ["joints2d=100", "mano_pose=1000", "obj_offset=5000"], "5e-4"),
    "warm, no step: the previous checkpoint, fresh hand encoder": Config("warm", "pool", False, RECIPE, "0", steps=0),
    "warm, fresh+aug, paper weights": Config("warm", "pool", True, PAPER, "5e-4"),
    "warm, fresh+aug, recipe weights": Config("warm", "pool", True, RECIPE, "0"),
    "warm, fresh, recipe weights": Config("warm", "pool", False, RECIPE, "0"),
    "warm, fresh, previous weights, mano_pose=1000": Config("warm", "pool", False, PREVIOUS_MANO, "5e-4"),
    "warm, fresh, recipe weights, hand decoder only": Config("warm", "pool", False, RECIPE, "0", ("hand_decoder",)),
}
BUDGETS = {"scratch": {"steps": 1000, "batch": 32, "lr": "1e-3", "lr_step_steps": 700},
           "warm": {"steps": 200, "batch": 32, "lr": "3e-4", "lr_step_steps": 10**6}}
FULL = {"pool_images": 12000, "fixed_images": 2000, "heldout": 240}
TINY = {"pool_images": 8, "fixed_images": 4, "heldout": 4}
TINY_BUDGET = {"steps": 2, "batch": 2, "lr": "1e-3", "lr_step_steps": 1}
METRICS = ("finger_angle_deg", "articulation_mpjpe_mm", "pa_mpjpe_mm", "mpjpe_mm", "root_error_median_mm",
           "rep_median_px", "add_median_mm", "add_01d_mean_objects_pct")


def _fixed_subset(pool: Path, folder: Path, images: int) -> None:
    """The first ``images`` training frames of ``pool`` as an HO3D folder of links (no copies)."""
    if (folder / "train.txt").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "models"):
        link = folder / name
        if not link.exists():
            link.symlink_to((pool / name).resolve(), target_is_directory=True)
    (folder / "evaluation.txt").write_text("")
    frames = (pool / "train.txt").read_text().split()[:images]
    (folder / "train.txt").write_text("\n".join(frames) + "\n")


def _train_options(config: Config, budget: dict, data: Path, warm_start: Path | None) -> list[str]:
    images = len((data / "train.txt").read_text().split())
    steps_per_epoch = max(1, images // budget["batch"])
    epochs = max(1, -(-budget["steps"] // steps_per_epoch))  # enough epochs to reach --max-steps
    lr_step = max(1, round(budget["lr_step_steps"] / steps_per_epoch))  # the schedule counts epochs
    options = ["--dataset", "ho3d", "--preset", "cpu", "--root", str(data), "--batch-size", str(budget["batch"]),
               "--epochs", str(epochs), "--max-steps", str(budget["steps"]), "--lr", budget["lr"],
               "--lr-step", str(lr_step), "--lr-gamma", "0.3", "--weight-decay", config.weight_decay,
               "--seed", "0", "--no-progress"]
    if config.augment:
        options += ["--augment", "--workers", "2"]
    else:  # the fixed set is seen many times: prepare it once; the pool is seen about once
        options += ["--no-augment", "--workers", "2", *(["--cache"] if config.data == "fixed" else [])]
    for w in config.weights:
        options += ["--loss-weight", w]
    if config.trainable:
        options += ["--trainable", *config.trainable]
    if config.start == "warm":
        options += ["--init-from", str(warm_start), "--init-partial"]
    return options


def _row(config: str, run: Path, budget: dict) -> dict:
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    seconds = sum(r.get("seconds", 0.0) for r in log if "step" in r and "seconds" in r)
    c = CONFIGS[config]
    row = {"config": config, "start": c.start, "data": c.data, "augment": c.augment, "loss_weights": " ".join(c.weights),
           "weight_decay": c.weight_decay, "trainable": " ".join(c.trainable) or "all",
           "steps": budget["steps"], "batch": budget["batch"],
           "train_minutes": round(seconds / 60, 1)}
    row.update({k: metrics["model"].get(k) for k in METRICS})
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/recipe_study.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder for the data, the runs and results.csv")
    p.add_argument("--warm-start", type=Path, metavar="CHECKPOINT",
                   help="the weights the warm configurations start from (needed by them)")
    p.add_argument("--tiny", action="store_true", help="a few images and 2 steps per configuration")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), help="a subset of the configurations (default: all)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="synth worker processes (default: all cores)")
    p.add_argument("--threads", type=int, help="torch threads of each training run (default: torch's own)")
    args = p.parse_args(argv)
    configs = args.configs or list(CONFIGS)
    if args.warm_start is None and any(CONFIGS[c].start == "warm" for c in configs):
        p.error("the warm configurations need --warm-start CHECKPOINT (or choose others with --configs)")
    if args.warm_start is not None and not args.warm_start.is_file():
        p.error(f"--warm-start: no file {args.warm_start}")
    sizes = TINY if args.tiny else FULL
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    pool, fixed, heldout = out / "data_pool", out / "data_fixed", out / "heldout"
    _render_heldout(heldout, sizes["heldout"], args.workers)
    _render(pool, sizes["pool_images"], POOL_SEED, args.workers)
    _fixed_subset(pool, fixed, sizes["fixed_images"])

    rows, baseline = [], None
    for config in configs:
        budget = TINY_BUDGET if args.tiny else BUDGETS[CONFIGS[config].start]
        if CONFIGS[config].steps is not None:
            budget = {**budget, "steps": CONFIGS[config].steps}
        run = out / "runs" / config.replace(", ", "_").replace("=", "-")
        data = fixed if CONFIGS[config].data == "fixed" else pool
        if not (run / "eval" / "metrics.json").is_file():
            if not (run / "done").is_file():
                options = _train_options(CONFIGS[config], budget, data, args.warm_start)
                # a run killed before its first checkpoint left only logs: start it again
                again = ["--resume"] if (run / "last.pt").is_file() else ["--overwrite"] if run.exists() else []
                _run(["train", *options, "--out", str(run), *again], args.threads)
                (run / "done").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
            # the baselines average the fixed set's 2,000 images (the whole pool would only take longer)
            _run(["eval", "--checkpoint", str(run / "last.pt"), "--dataset", "ho3d", "--root", str(heldout),
                  "--split", "evaluation", "--baselines", "--baseline-root", str(fixed), "--no-submission",
                  "--out", str(run / "eval")])
        rows.append(_row(config, run, budget))
        baseline = baseline or json.loads((run / "eval" / "metrics.json").read_text()).get("baseline_mean_pose")
    if baseline:
        rows.append({"config": "mean-pose baseline (no image)", **{k: baseline.get(k) for k in METRICS}})
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + [k for k in rows[-1] if k not in rows[0]])
        writer.writeheader()
        writer.writerows(rows)
    print(f"# wrote {out / 'results.csv'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
