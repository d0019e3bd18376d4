"""Finding and reading a MANO asset (``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``).

Where the layer looks, in order:

1. the ``mano_root`` argument, a folder holding the two files;
2. the environment variable ``MANO_ROOT`` (the same kind of folder);
3. the project's stand-in hand (not MANO): ``mano_standin/`` of the samples folder
   (:func:`hfl_lite.samples.samples_root`), or, when there is none, the same asset built in
   memory by :mod:`hfl_lite.mano.standin`.

A folder named in 1 or 2 that lacks the file is an error, never a silent fallback.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..safe_pickle import safe_load
from .constants import ASSET_FILES, N_JOINTS, N_VERTS, REQUIRED_SHAPES, STANDIN_MARKER

__all__ = ["ManoAsset", "StandinAssetWarning", "STANDIN_FOLDER", "find_mano_asset", "load_mano_pickle"]

logger = logging.getLogger(__name__)

#: The stand-in files' folder inside the samples folder.
STANDIN_FOLDER = "mano_standin"


class StandinAssetWarning(UserWarning):
    """Issued once per process when the stand-in hand is used instead of MANO."""


def _label(source) -> str:
    return f"MANO asset {str(source)!r}"


def _validate(data, source, dtype) -> dict:
    """Check keys and shapes of a raw asset dict and convert it (see :func:`load_mano_pickle`)."""
    label = _label(source)
    if not isinstance(data, dict):
        raise ValueError(f"{label}: expected a dict of arrays, got {type(data).__name__}")
    out = dict(data)
    for key, shape in REQUIRED_SHAPES.items():
        if key not in data:
            raise ValueError(f"{label} is missing the key {key!r} (expected an array of shape {shape})")
        value = data[key]
        if hasattr(value, "toarray"):  # scipy sparse (MANO's J_regressor)
            value = value.toarray()
        try:
            value = np.asarray(value, dtype=np.int64 if key in ("f", "kintree_table") else dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{label}: key {key!r} is not numeric ({type(data[key]).__name__}): {e}") from e
        if value.shape != shape:
            raise ValueError(f"{label}: key {key!r} has shape {value.shape}, expected {shape}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"{label}: key {key!r} holds NaN or infinite values")
        out[key] = value
    faces = out["f"]
    if faces.min() < 0 or faces.max() >= N_VERTS:
        raise ValueError(f"{label}: key 'f' has vertex indices outside [0, {N_VERTS})")
    parents = out["kintree_table"][0].copy()
    parents[0] = -1  # MANO stores the root's parent as 2**32 - 1
    if any(not 0 <= parents[k] < k for k in range(1, N_JOINTS)):
        raise ValueError(f"{label}: key 'kintree_table' does not list each joint after its parent: {parents.tolist()}")
    out["kintree_table"] = np.stack([parents, out["kintree_table"][1]])
    for key in ("J", "hands_coeffs"):
        if key in out and np.asarray(out[key]).dtype.kind in "fiu":
            out[key] = np.asarray(out[key], dtype=dtype)
    return out


def load_mano_pickle(path: str | os.PathLike, dtype=np.float32) -> dict:
    """Read a MANO asset file with the restricted unpickler and check it.

    Args:
        path: ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (MANO's, or the project's stand-in).
        dtype: floating dtype of the returned arrays (``np.float32`` or ``np.float64``).

    Returns:
        A dict of numpy arrays with MANO's keys: ``v_template [778,3]`` (m),
        ``shapedirs [778,3,10]``, ``posedirs [778,3,135]``, ``J_regressor [16,778]``
        (densified from MANO's sparse matrix), ``weights [778,16]``, ``kintree_table
        [2,16]`` (int64, root parent stored as -1), ``f [1538,3]`` (int64),
        ``hands_components [45,45]``, ``hands_mean [45]``; other keys pass through
        (``J``, ``hands_coeffs`` as ``dtype``; ``bs_style``, ``bs_type`` as they are). The
        stand-in also holds ``"hfl_lite_standin"`` (a description), which marks it.

    Raises:
        ValueError: a required key is missing, has the wrong shape (the message names the
            key, the expected and actual shapes and the file) or holds non-finite values.
        hfl_lite.safe_pickle.UnsafePickleError: the file names a global the restricted
            unpickler refuses. OSError / pickle.UnpicklingError: unreadable file.
    """
    return _validate(safe_load(path, what="MANO asset"), path, dtype)


@dataclass(frozen=True)
class ManoAsset:
    """A loaded asset: its arrays, ``kind`` ("mano" or "standin") and where it came from."""

    data: dict
    kind: str
    source: str


_ANNOUNCED: set = set()


def _announce(kind: str, source: str) -> None:
    """Log once per asset which one is used; warn once per process about the stand-in."""
    if (kind, source) in _ANNOUNCED:
        return
    first_standin = kind == "standin" and not any(k == "standin" for k, _ in _ANNOUNCED)
    _ANNOUNCED.add((kind, source))
    if kind == "standin":
        message = (f"hfl_lite.mano: using the project's STAND-IN hand ({source}), not MANO. Set MANO_ROOT "
                   "(or pass mano_root=) to a folder with MANO_RIGHT.pkl / MANO_LEFT.pkl to use the real model.")
        logger.info(message)
        if first_standin:
            warnings.warn(message, StandinAssetWarning, stacklevel=4)
    else:
        logger.info("hfl_lite.mano: using MANO from %s", source)


def _standin_file(name: str) -> Path | None:
    """The stand-in's file ``name`` in the samples folder, or None when there is none."""
    from ..samples import SamplesNotFoundError, samples_root

    try:
        path = samples_root() / STANDIN_FOLDER / name
    except SamplesNotFoundError:
        return None
    return path if path.is_file() else None


def find_mano_asset(mano_root: str | os.PathLike | None = None, side: str = "right", dtype=np.float32) -> ManoAsset:
    """Locate and load the asset for ``side`` (see the module docstring for the search order)."""
    if side not in ASSET_FILES:
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    name = ASSET_FILES[side]
    origin = "mano_root"
    if mano_root is None and os.environ.get("MANO_ROOT"):
        mano_root, origin = os.environ["MANO_ROOT"], "MANO_ROOT"
    if mano_root is not None:
        path = Path(mano_root).expanduser() / name
        if not path.is_file():
            raise FileNotFoundError(f"MANO asset {str(path)!r} not found ({origin}={str(mano_root)!r} must be a "
                                    f"folder holding {ASSET_FILES['right']} and {ASSET_FILES['left']})")
        data = load_mano_pickle(path, dtype=dtype)
        source = str(path)
    elif (standin := _standin_file(name)) is not None:
        source = str(standin)
        data = load_mano_pickle(source, dtype=dtype)
    else:
        from .standin import build_standin

        source = f"built in memory by hfl_lite.mano.standin ({name})"
        data = _validate(build_standin(side), source, dtype)
    kind = "standin" if STANDIN_MARKER in data else "mano"
    _announce(kind, source)
    return ManoAsset(data, kind, source)
