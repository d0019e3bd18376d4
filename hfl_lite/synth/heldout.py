"""The held-out evaluation set: 240 synthetic HO3D-layout frames no training set has seen.

Every number the README, chapter 10 and ``data_samples/checkpoints/metrics.json`` give is measured
on it. It is too large to ship (18 MB) and needs not be shipped: one deterministic command makes
it, the same frames bit for bit on every machine of a kind (rendering runs single-threaded)::

    python -m hfl_lite synth --layout ho3d --out OUT --n-train 0 --n-eval 240 --seed 7 \\
        --mano-root data_samples/mano_standin

:func:`heldout_root` renders it once (about half a minute on 2 cores) into a cache folder and
returns it from then on.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from hfl_lite.mano import StandinAssetWarning
from hfl_lite.samples import samples_root
from hfl_lite.synth.generate import main as synth_main

__all__ = ["CACHE_ENV", "HELDOUT_FRAMES", "HELDOUT_SEED", "heldout_command", "heldout_root", "render_heldout"]

HELDOUT_SEED = 7
HELDOUT_FRAMES = 240
"""The held-out evaluation set: ``synth`` seed and frame count. No training set uses seed 7, so
its scenes (hands, grasps, objects, cameras) are unseen by every shipped network."""

CACHE_ENV = "HFL_CACHE"
"""Environment variable naming the folder for rendered sets (default ``~/.cache/hfl_lite``)."""


def heldout_command(out: str | os.PathLike, frames: int = HELDOUT_FRAMES) -> list[str]:
    """``python -m hfl_lite synth`` arguments that render the held-out set into ``out``: HO3D
    layout, evaluation split only, seed :data:`HELDOUT_SEED`, the shipped stand-in hand (so
    that ``MANO_ROOT`` cannot change it)."""
    return ["synth", "--layout", "ho3d", "--out", str(out), "--n-train", "0", "--n-eval", str(frames),
            "--seed", str(HELDOUT_SEED), "--mano-root", str(samples_root() / "mano_standin")]


def render_heldout(out: str | os.PathLike, frames: int = HELDOUT_FRAMES, workers: int | None = None,
                   progress: bool = True) -> Path:
    """Render the held-out set into ``out`` (replacing an unfinished one; the folder appears only
    once complete). The same frames, bit for bit, on every run: about 30 s on 2 cores."""
    args = [*heldout_command(out, frames)[1:], "--workers", str(workers or os.cpu_count() or 1), "--overwrite"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)  # the stand-in is this set's definition
        if synth_main(args + ([] if progress else ["--no-progress"])) != 0:
            raise RuntimeError(f"rendering the held-out set into {out} failed")
    return Path(out)


def heldout_root(progress: bool = True) -> Path:
    """The held-out set (:data:`HELDOUT_FRAMES` frames), rendered on first use into
    ``$HFL_CACHE/heldout-ho3d-seed7-240`` (default cache ``~/.cache/hfl_lite``); every number the
    README, chapter 10 and ``checkpoints/metrics.json`` give is measured on it."""
    cache = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hfl_lite").expanduser()
    folder = cache / f"heldout-ho3d-seed{HELDOUT_SEED}-{HELDOUT_FRAMES}"
    if not (folder / "evaluation.txt").is_file():
        render_heldout(folder, progress=progress)
    return folder
