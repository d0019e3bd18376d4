"""Where the shipped samples are: one answer for every chapter, command, benchmark and test.

The samples are the repository's ``data_samples/`` folder: the stand-in hand, the synthetic
HO3D- and Dex-YCB-layout sets, the small trained checkpoint and the ablation results. They
travel with the package: a wheel (``pip install`` from the repository, as Colab's first cell
does) carries them as package data, ``hfl_lite/data_samples/``, mapped from the top-level
folder by ``pyproject.toml``. :func:`samples_root` looks, in order, at

1. the folder named by the environment variable ``HFL_SAMPLES`` (:data:`SAMPLES_ENV`), a folder
   laid out like ``data_samples/`` (e.g. a larger synthetic set of one's own);
2. the copy installed with the package (``importlib.resources``: ``hfl_lite/data_samples``);
3. ``data_samples/`` of the repository checkout that holds the package (running from a clone,
   ``PYTHONPATH`` or an editable install, where the folder stays where it is);

and raises :class:`SamplesNotFoundError`, naming every place it looked, when none exists.

    >>> from hfl_lite.samples import samples_root
    >>> HO3D(samples_root() / "ho3d", "train")            # doctest: +SKIP

The held-out evaluation set (240 frames, 18 MB: too large to ship) is not a sample but is made
by one deterministic command; :func:`heldout_root` renders it once into a cache folder.
"""
from __future__ import annotations

import importlib.resources
import os
import warnings
from pathlib import Path

__all__ = ["CACHE_ENV", "HELDOUT_FRAMES", "HELDOUT_SEED", "SAMPLES_ENV", "SHIPPED_CHECKPOINT", "SamplesNotFoundError",
           "heldout_command", "heldout_root", "render_heldout", "samples_root", "shipped_checkpoint"]

SAMPLES_ENV = "HFL_SAMPLES"
"""Environment variable naming a samples folder to use instead of the shipped one."""

SHIPPED_CHECKPOINT = Path("checkpoints") / "hfl_lite_cpu_ho3d_synthetic.pt"
"""The small synthetic-data checkpoint, relative to the samples folder."""

_FOLDER = "data_samples"

HELDOUT_SEED = 7
HELDOUT_FRAMES = 240
"""The held-out evaluation set: ``synth`` seed and frame count. No training set uses seed 7, so
its scenes (hands, grasps, objects, cameras) are unseen by every shipped network."""

CACHE_ENV = "HFL_CACHE"
"""Environment variable naming the folder for rendered sets (default ``~/.cache/hfl_lite``)."""


class SamplesNotFoundError(FileNotFoundError):
    """No samples folder: neither ``HFL_SAMPLES``, nor installed with the package, nor in a checkout."""


def _installed() -> Path:
    """``data_samples`` inside the installed package (a wheel puts it there)."""
    return Path(str(importlib.resources.files("hfl_lite") / _FOLDER))


def _checkout() -> Path:
    """``data_samples`` of the repository checkout holding this package (the package's parent)."""
    return Path(__file__).resolve().parent.parent / _FOLDER


def samples_root() -> Path:
    """The samples folder (``data_samples/``): see the module docstring for where it is looked for.

    Raises :class:`SamplesNotFoundError` when ``HFL_SAMPLES`` names a folder that does not
    exist, or when no samples folder is found.
    """
    override = os.environ.get(SAMPLES_ENV)
    if override:
        folder = Path(override).expanduser()
        if not folder.is_dir():
            raise SamplesNotFoundError(f"{SAMPLES_ENV}={override!r} is not a folder")
        return folder
    candidates = (_installed(), _checkout())
    for folder in candidates:
        if folder.is_dir():
            return folder
    looked = ", ".join(str(c) for c in candidates)
    raise SamplesNotFoundError(f"no samples folder: {SAMPLES_ENV} is not set, and neither the installed package nor "
                               f"a repository checkout holds {_FOLDER}/ (looked at {looked}); reinstall hfl_lite "
                               f"from the repository or set {SAMPLES_ENV} to a folder laid out like {_FOLDER}/")


def shipped_checkpoint() -> Path:
    """The shipped checkpoint (cpu preset, trained on synthetic data only), or
    :class:`SamplesNotFoundError` when the samples folder lacks it."""
    path = samples_root() / SHIPPED_CHECKPOINT
    if not path.is_file():
        raise SamplesNotFoundError(f"the shipped checkpoint {path} is missing")
    return path


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
    from hfl_lite.mano import StandinAssetWarning
    from hfl_lite.synth.generate import main as synth_main

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
