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

The held-out evaluation set (240 frames, 18 MB: too large to ship) is not a sample: it is made by
one deterministic command (:mod:`hfl_lite.synth.heldout`).
"""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

__all__ = ["SAMPLES_ENV", "SHIPPED_CHECKPOINT", "SamplesNotFoundError", "samples_root", "shipped_checkpoint"]

SAMPLES_ENV = "HFL_SAMPLES"
"""Environment variable naming a samples folder to use instead of the shipped one."""

SHIPPED_CHECKPOINT = Path("checkpoints") / "hfl_lite_cpu_ho3d_synthetic.pt"
"""The small synthetic-data checkpoint, relative to the samples folder."""

_FOLDER = "data_samples"


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

