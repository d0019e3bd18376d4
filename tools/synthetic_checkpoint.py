"""The shipped checkpoint's recipe as one command: render, train every stage, export, evaluate.

    python tools/synthetic_checkpoint.py --out runs/synthetic                      # from random weights
    python tools/synthetic_checkpoint.py --out runs/synthetic --warm-start OLD.pt  # last stage only
    python tools/synthetic_checkpoint.py --out /tmp/tiny --tiny                    # every step, a few images

It runs, one after the other, the commands data_samples/checkpoints/README.md lists (printing each
before it runs): the held-out evaluation set (240 frames of seed 7, rendered apart from every
training image: ``hfl_lite.synth.heldout.heldout_command``), then for each stage ``synth`` of its own fresh images and ``train``
from the previous stage's weights (stage 1 from random weights), and at the end ``eval`` of the
last stage's weights on the held-out set with the mean-pose baselines. Everything goes under
``--out``:

    heldout/                           the held-out evaluation set
    data_stage1/  data_stage2/ ...     each stage's training images
    stage1/  stage2/ ...               the runs (last.pt, log.jsonl, log.csv)
    stage1.pt  stage2.pt ...           each stage's exported weights (float16); the last stage's
    hfl_lite_cpu_ho3d_synthetic.pt     are exported under the shipped file's name instead
    stage3_heldout.csv                 the last stage's held-out evaluation after every epoch
    eval/                              metrics.json, metrics.md

``--warm-start FILE`` skips every stage but the last and starts that one from ``FILE`` with
``train --init-partial``: the tensors of an earlier version of the network that still fit are
copied, the rest start fresh. The shipped file was made that way from the previous release (its
hand decoder had half the encoder blocks; see data_samples/checkpoints/README.md), because the
stages before the last want a GPU: stage 1 takes 2 min 45 s on an H200 and hours on a CPU.

Run it again after an interruption and it goes on: a rendered set is kept, a run with a
``last.pt`` resumes exactly, a finished step (exported weights, written metrics) is skipped.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import shlex
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from hfl_lite.synth.heldout import HELDOUT_FRAMES, heldout_command

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_NAME = "hfl_lite_cpu_ho3d_synthetic.pt"


class Stage(NamedTuple):
    images: int  # fresh training images rendered for this stage
    seed: int  # their synth seed
    options: list[str]  # train options on top of COMMON


# The recipe of the shipped file, stage by stage, as in data_samples/checkpoints/README.md.
# Stages 1-2 (the previous release's) teach the backbone to find the hand, with the paper's
# weights but 2D joints at 1e4, and weight decay; stage 3 trains only the hand decoder (the rest
# keeps stage 2's weights: in the recipe study every full fine-tune first made the object worse)
# with the cpu preset's loss weights on fresh scenes, scored on the held-out set every epoch.
PREVIOUS = ["--loss-weight", "joints2d=1e4", "--loss-weight", "mano_pose=10", "--loss-weight", "obj_offset=500",
            "--weight-decay", "5e-4", "--no-augment", "--cache"]
FULL = {
    "stage1": Stage(2000, 1, ["--batch-size", "256", "--epochs", "120", "--max-steps", "629", "--lr", "1e-3",
                              "--lr-step", "60", "--lr-gamma", "0.3", *PREVIOUS]),
    "stage2": Stage(10000, 2, ["--batch-size", "32", "--epochs", "14", "--lr", "3e-4", "--lr-step", "6",
                               "--lr-gamma", "0.3", *PREVIOUS]),
    "stage3": Stage(12000, 11, ["--batch-size", "32", "--epochs", "8", "--lr", "1e-3", "--lr-step", "3",
                                "--lr-gamma", "0.3", "--no-augment", "--trainable", "hand_decoder",
                                "--eval-every", "1"]),
}
TINY = {name: Stage(8, stage.seed, [*stage.options, "--batch-size", "4", "--epochs", "1", "--max-steps", "2"])
        for name, stage in FULL.items()}
TINY_HELDOUT = 4  # frames of the held-out set with --tiny (hfl_lite.synth.heldout.HELDOUT_FRAMES otherwise)
COMMON = ["--dataset", "ho3d", "--preset", "cpu", "--seed", "0", "--no-progress"]


def _run(args: list[str], threads: int | None = None) -> None:
    """``python -m hfl_lite ARGS`` in the repository, printed first; ``threads``: its torch threads."""
    command = [sys.executable, "-m", "hfl_lite", *args]
    print("$ python -m hfl_lite " + shlex.join(args), flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if threads:  # torch reads it at start-up
        env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run(command, cwd=ROOT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{Path(sys.argv[0]).name}: `python -m hfl_lite {args[0]}` failed (exit {done.returncode}); "
                         "fix the cause and run this again to go on from there")


def _render(folder: Path, images: int, seed: int, workers: int) -> None:
    if (folder / "train.txt").is_file():
        print(f"# {folder} is rendered already", flush=True)
        return
    _run(["synth", "--layout", "ho3d", "--out", str(folder), "--n-train", str(images), "--n-eval", "0",
          "--seed", str(seed), "--workers", str(workers), "--no-progress", "--overwrite"])


def _render_heldout(folder: Path, frames: int, workers: int) -> None:
    if (folder / "evaluation.txt").is_file():
        print(f"# {folder} is rendered already", flush=True)
        return
    _run([*heldout_command(folder, frames), "--workers", str(workers), "--no-progress", "--overwrite"])


def _train(run: Path, data: Path, export: Path, options: list[str], heldout: Path, init_from: Path | None = None,
           partial: bool = False) -> None:
    if export.is_file():
        print(f"# {export} exists: {run.name} is done", flush=True)
        return
    args = ["train", "--root", str(data), "--out", str(run), "--export", str(export), *COMMON, *options]
    if "--eval-every" in options:
        args += ["--eval-root", str(heldout)]
    if init_from is not None:
        args += ["--init-from", str(init_from), *(["--init-partial"] if partial else [])]
    if (run / "last.pt").is_file():
        args.append("--resume")
    _run(args)


def _heldout_curve(log: Path, out: Path) -> None:
    """The run's held-out evaluations (``eval`` events of ``log.jsonl``) as one CSV row per epoch."""
    rows = [r for r in map(json.loads, log.read_text().splitlines()) if r.get("event") == "eval"]
    if not rows:
        return
    fields = ["epoch", "step"] + sorted(k for k in rows[0] if k not in ("event", "epoch", "step", "time"))
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _ship(out: Path, last_stage: str, folder: Path) -> None:
    """Copy what data_samples/checkpoints holds from a finished recipe into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {CHECKPOINT_NAME: out / CHECKPOINT_NAME, "metrics.json": out / "eval" / "metrics.json",
             "metrics.md": out / "eval" / "metrics.md", f"{last_stage}_log.csv": out / last_stage / "log.csv",
             f"{last_stage}_heldout.csv": out / f"{last_stage}_heldout.csv"}
    for name, source in files.items():
        if source.is_file():
            shutil.copyfile(source, folder / name)
            print(f"# shipped {name}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/synthetic_checkpoint.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder for the data, runs, weights and evaluation")
    p.add_argument("--tiny", action="store_true", help="8 images and 2 steps per stage: checks every step quickly")
    p.add_argument("--warm-start", type=Path, metavar="CHECKPOINT",
                   help="run only the last stage, from the matching tensors of this checkpoint (train --init-partial)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="synth worker processes (default: all cores)")
    p.add_argument("--ship", type=Path, metavar="FOLDER",
                   help="at the end, copy the checkpoint, metrics and the last stage's logs into FOLDER "
                        "(data_samples/checkpoints to update the shipped ones)")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    if args.warm_start is not None and not args.warm_start.is_file():
        p.error(f"--warm-start: no file {args.warm_start}")
    recipe, heldout_frames = (TINY, TINY_HELDOUT) if args.tiny else (FULL, HELDOUT_FRAMES)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    heldout = out / "heldout"
    _render_heldout(heldout, heldout_frames, args.workers)
    stages = list(recipe)[-1:] if args.warm_start else list(recipe)
    for stage in stages:
        _render(out / f"data_{stage}", recipe[stage].images, recipe[stage].seed, args.workers)
    previous = args.warm_start.resolve() if args.warm_start else None
    for stage in stages:
        export = out / (CHECKPOINT_NAME if stage == stages[-1] else f"{stage}.pt")
        _train(out / stage, out / f"data_{stage}", export, recipe[stage].options, heldout, init_from=previous,
               partial=args.warm_start is not None and previous == args.warm_start.resolve())
        previous = export
    final = previous
    _heldout_curve(out / stages[-1] / "log.jsonl", out / f"{stages[-1]}_heldout.csv")
    if (out / "eval" / "metrics.json").is_file():
        print(f"# {out / 'eval'} holds the evaluation already", flush=True)
    else:
        _run(["eval", "--checkpoint", str(final), "--dataset", "ho3d", "--root", str(heldout),
              "--split", "evaluation", "--baselines", "--baseline-root", str(out / f"data_{stages[-1]}"),
              "--no-submission", "--out", str(out / "eval")])
    if args.ship is not None:
        _ship(out, stages[-1], args.ship)
    print(f"# done: {final}; metrics in {out / 'eval' / 'metrics.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
