"""The CPU preset's small-compute recipe study (chapter 9's table) as one resumable command.

    python tools/recipe_study.py --out runs/recipe              # every configuration, about 3 hours on 2 cores
    python tools/recipe_study.py --out /tmp/recipe --tiny       # every step on a few images

Every configuration trains the ``cpu`` preset from random weights for the same number of steps
of the same batch size and learning-rate schedule, and is then scored on the same held-out set
(``synth --n-train 0 --n-eval 240 --seed 7``, rendered apart from every training image) with the
mean-pose baselines. The configurations differ in one thing at a time:

* data: a fixed set of 2,000 images seen for many epochs, against a pool of fresh images
  (``--pool-images``, seed 11) that the run goes through about once;
* augmentation: the paper's (crop jitter, scale, rotation, blur, colour) on or off;
* loss weights: the paper's, a strong MANO pose term (``mano_pose=1000``), the
  ``articulation3d`` term (finger rotations posed with the true global rotation), the 2D term
  raised to 1e4 (the previous shipped checkpoint's recipe), and a strong pose term together with
  a strong vote term (``obj_offset=5000``).

Everything goes under ``--out``: ``data_pool/``, ``data_fixed/`` (the first images of the pool,
linked, not copied), ``heldout/``, one run folder per configuration (``last.pt``, logs,
``eval/metrics.json``) and ``results.csv`` (one row per configuration plus the baseline; chapter 9
reads the committed copy in ``data_samples/recipe/``). Run it again after an interruption and it
goes on where it stopped: rendered sets are kept, a run with a ``last.pt`` resumes, a scored run
is not scored again.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = {"images": 240, "seed": 7}
POOL_SEED = 11

# name -> (data, augment, loss-weight overrides); the order is the table's
CONFIGS = {
    "fixed": ("fixed", False, []),
    "fresh": ("pool", False, []),
    "fresh+aug": ("pool", True, []),
    "fresh+aug, mano_pose=1000": ("pool", True, ["mano_pose=1000"]),
    "fresh+aug, articulation3d=1e4": ("pool", True, ["articulation3d=1e4"]),
    "fresh+aug, joints2d=1e4": ("pool", True, ["joints2d=1e4"]),
    "fresh+aug, mano_pose=1000, obj_offset=5000": ("pool", True, ["mano_pose=1000", "obj_offset=5000"]),
}
FULL = {"pool_images": 12000, "fixed_images": 2000, "steps": 1000, "batch": 32, "lr": "1e-3", "lr_step_steps": 700,
        "heldout": HELDOUT["images"]}
TINY = {"pool_images": 8, "fixed_images": 4, "steps": 2, "batch": 2, "lr": "1e-3", "lr_step_steps": 1, "heldout": 4}
METRICS = ("finger_angle_deg", "articulation_mpjpe_mm", "pa_mpjpe_mm", "mpjpe_mm", "root_error_median_mm",
           "rep_median_px", "add_median_mm", "add_01d_mean_objects_pct")


def _run(args: list[str], threads: int | None = None) -> None:
    command = [sys.executable, "-m", "hfl_lite", *args]
    print("$ python -m hfl_lite " + shlex.join(args), flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if threads:  # torch reads it at start-up
        env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run(command, cwd=ROOT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"recipe_study: `python -m hfl_lite {args[0]}` failed (exit {done.returncode}); "
                         "fix the cause and run this again to go on from there")


def _render(folder: Path, n_train: int, n_eval: int, seed: int, workers: int) -> None:
    if (folder / "train.txt").is_file():
        print(f"# {folder} is rendered already", flush=True)
        return
    _run(["synth", "--layout", "ho3d", "--out", str(folder), "--n-train", str(n_train), "--n-eval", str(n_eval),
          "--seed", str(seed), "--workers", str(workers), "--no-progress", "--overwrite"])


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


def _train_options(config: str, budget: dict, data: Path, heldout: Path) -> list[str]:
    _, augment, weights = CONFIGS[config]
    images = len((data / "train.txt").read_text().split())
    steps_per_epoch = max(1, images // budget["batch"])
    epochs = -(-budget["steps"] // steps_per_epoch)  # enough epochs to reach --max-steps
    lr_step = max(1, round(budget["lr_step_steps"] / steps_per_epoch))  # the schedule counts epochs
    options = ["--dataset", "ho3d", "--preset", "cpu", "--root", str(data), "--batch-size", str(budget["batch"]),
               "--epochs", str(epochs), "--max-steps", str(budget["steps"]), "--lr", budget["lr"],
               "--lr-step", str(lr_step), "--lr-gamma", "0.3", "--seed", "0", "--no-progress"]
    options += ["--augment", "--workers", "2"] if augment else ["--no-augment", "--cache", "--workers", "2"]
    for w in weights:
        options += ["--loss-weight", w]
    return options


def _row(config: str, run: Path, budget: dict) -> dict:
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    seconds = sum(r.get("seconds", 0.0) for r in log if "step" in r and "seconds" in r)
    data, augment, weights = CONFIGS[config]
    row = {"config": config, "data": data, "augment": augment, "loss_weights": " ".join(weights) or "paper",
           "steps": budget["steps"], "batch": budget["batch"], "train_minutes": round(seconds / 60, 1)}
    row.update({k: metrics["model"].get(k) for k in METRICS})
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/recipe_study.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder for the data, the runs and results.csv")
    p.add_argument("--tiny", action="store_true", help="a few images and 2 steps per configuration")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), help="a subset of the configurations (default: all)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="synth worker processes (default: all cores)")
    p.add_argument("--threads", type=int, help="torch threads of each training run (default: torch's own)")
    args = p.parse_args(argv)
    budget = TINY if args.tiny else FULL
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    pool, fixed, heldout = out / "data_pool", out / "data_fixed", out / "heldout"
    _render(heldout, 0, budget["heldout"], HELDOUT["seed"], args.workers)
    _render(pool, budget["pool_images"], 0, POOL_SEED, args.workers)
    _fixed_subset(pool, fixed, budget["fixed_images"])

    rows, baseline = [], None
    for config in args.configs or list(CONFIGS):
        run = out / "runs" / config.replace(", ", "_").replace("=", "-")
        data = fixed if CONFIGS[config][0] == "fixed" else pool
        if not (run / "eval" / "metrics.json").is_file():
            if not (run / "done").is_file():
                options = _train_options(config, budget, data, heldout)
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
