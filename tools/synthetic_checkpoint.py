"""The shipped checkpoint's recipe as one command: render, train every stage, export, evaluate.

    python tools/synthetic_checkpoint.py --out runs/synthetic           # the full recipe
    python tools/synthetic_checkpoint.py --out /tmp/tiny --tiny         # every step, a few images

It runs, one after the other, the commands data_samples/checkpoints/README.md lists (printing each
before it runs): for each stage k = 1, 2, ... ``synth`` of its own fresh images (seed k), then
``train`` from the previous stage's weights (stage 1 from random weights), and at the end
``eval`` of the last stage's weights on data_samples/ho3d's evaluation split with the mean-pose
baselines. Everything goes under ``--out``:

    data_stage1/  data_stage2/ ...     the rendered images
    stage1/  stage2/ ...               the runs (last.pt, log.jsonl, log.csv)
    stage1.pt  stage2.pt ...           each stage's exported weights (float16); the last stage's
    hfl_lite_cpu_ho3d_synthetic.pt     are exported under the shipped file's name instead
    eval/                              metrics.json, metrics.md

Run it again after an interruption and it goes on: a rendered set is kept, a run with a
``last.pt`` resumes exactly, a finished step (exported weights, written metrics) is skipped. The
full recipe wants a CUDA GPU for stage 1 (2 min 45 s on an H200; hours on a CPU) and takes about
2.5 hours on a 2-core CPU for stage 2. A further fine-tune is one more entry in ``FULL``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_NAME = "hfl_lite_cpu_ho3d_synthetic.pt"

# (rendered images, train options) per stage, in order, as in data_samples/checkpoints/README.md;
# stage k renders with seed k and starts from stage k-1's weights
FULL = {
    "stage1": (2000, ["--batch-size", "256", "--epochs", "120", "--max-steps", "629", "--lr", "1e-3",
                      "--lr-step", "60", "--lr-gamma", "0.3"]),
    "stage2": (10000, ["--batch-size", "32", "--epochs", "14", "--lr", "3e-4", "--lr-step", "6", "--lr-gamma", "0.3"]),
}
TINY = {stage: (8, ["--batch-size", "4", "--epochs", "1", "--max-steps", "2", "--lr", "3e-4"]) for stage in FULL}
COMMON = ["--dataset", "ho3d", "--preset", "cpu", "--loss-weight", "joints2d=1e4", "--no-augment", "--cache",
          "--seed", "0", "--no-progress"]


def _run(args: list[str]) -> None:
    command = [sys.executable, "-m", "hfl_lite", *args]
    print("$ python -m hfl_lite " + shlex.join(args), flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(command, cwd=ROOT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"synthetic_checkpoint: `python -m hfl_lite {args[0]}` failed (exit {done.returncode}); "
                         "fix the cause and run this again to go on from there")


def _render(folder: Path, images: int, seed: int, workers: int) -> None:
    if (folder / "train.txt").is_file():
        print(f"# {folder} is rendered already", flush=True)
        return
    _run(["synth", "--layout", "ho3d", "--out", str(folder), "--n-train", str(images), "--n-eval", "0",
          "--seed", str(seed), "--workers", str(workers), "--no-progress", "--overwrite"])


def _train(run: Path, data: Path, export: Path, options: list[str], init_from: Path | None = None) -> None:
    if export.is_file():
        print(f"# {export} exists: {run.name} is done", flush=True)
        return
    args = ["train", "--root", str(data), "--out", str(run), "--export", str(export), *COMMON, *options]
    if init_from is not None:
        args += ["--init-from", str(init_from)]
    if (run / "last.pt").is_file():
        args.append("--resume")
    _run(args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/synthetic_checkpoint.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder for the data, runs, weights and evaluation")
    p.add_argument("--tiny", action="store_true", help="8 images and 2 steps per stage: checks every step quickly")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="synth worker processes (default: all cores)")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    recipe = TINY if args.tiny else FULL
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    stages = list(recipe)
    for seed, stage in enumerate(stages, start=1):
        _render(out / f"data_{stage}", recipe[stage][0], seed, args.workers)
    previous = None
    for stage in stages:
        export = out / (CHECKPOINT_NAME if stage == stages[-1] else f"{stage}.pt")
        _train(out / stage, out / f"data_{stage}", export, recipe[stage][1], init_from=previous)
        previous = export
    final = previous
    if (out / "eval" / "metrics.json").is_file():
        print(f"# {out / 'eval'} holds the evaluation already", flush=True)
    else:
        _run(["eval", "--checkpoint", str(final), "--dataset", "ho3d", "--root", str(ROOT / "data_samples" / "ho3d"),
              "--split", "evaluation", "--baselines", "--no-submission", "--out", str(out / "eval")])
    print(f"# done: {final}; metrics in {out / 'eval' / 'metrics.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
