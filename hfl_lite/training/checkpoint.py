"""Checkpoints that survive a crash mid-write and load with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts: no pickled Python
objects, so it loads with PyTorch's restricted unpickler (``weights_only=True``). Random number
generator states are therefore stored as tensors (:func:`rng_state` / :func:`set_rng_state`).

Writes are atomic: the checkpoint goes to a temporary file in the same folder, is flushed and
``fsync``-ed, and only then renamed over the target with ``os.replace`` (atomic on POSIX and
Windows). A crash or Ctrl-C at any point leaves either the old file or the new one, never a torn
one.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["export_weights", "load_checkpoint", "load_model_weights", "rng_state", "save_checkpoint", "set_rng_state"]


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, ``os.replace``).

    state: a dict holding only tensors and primitive containers (what ``weights_only`` loads).
    Returns the path written. The folder is created when missing. On any error the temporary
    file is removed and the previous file at ``path`` (if any) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises ``FileNotFoundError`` naming the path when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


# entries of a training checkpoint that are weights or resumable state rather than metadata
_STATE_KEYS = frozenset({"model", "optimizer", "scheduler", "scaler", "rng"})


def load_model_weights(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model weights (float32) and the metadata of a training or weights-only checkpoint.

    Returns ``(state_dict, meta)``; ``meta`` holds ``preset`` and whatever else the checkpoint
    records besides weights and optimiser state (e.g. ``dataset``, ``epoch``, ``step``).
    Floating-point tensors stored in half precision (the shipped checkpoint) are cast to float32.
    """
    ckpt = load_checkpoint(path, map_location)
    if "model" not in ckpt:
        raise KeyError(f"checkpoint {path} has no 'model' entry (keys: {sorted(ckpt)})")
    weights = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    meta = {k: v for k, v in ckpt.items() if k not in _STATE_KEYS}
    return weights, meta


def export_weights(src: str | os.PathLike, dst: str | os.PathLike, half: bool = True) -> Path:
    """Write a small inference checkpoint: the model weights of training checkpoint ``src`` (in
    float16 when ``half``; :func:`load_model_weights` casts them back to float32) and its metadata,
    without optimiser, scheduler or generator states. Returns ``dst``."""
    ckpt = load_checkpoint(src)
    weights = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    keep = {k: v for k, v in ckpt.items() if k not in _STATE_KEYS}
    return save_checkpoint({**keep, "model": weights, "weights_only_export": True}, dst)


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's, torch's CPU and (when present) CUDA generators, as tensors.

    Python's Mersenne Twister state (625 words) and NumPy's (624 words + position) are stored as
    int64 tensors; torch's as its uint8 state tensors.
    """
    py_version, py_words, py_gauss = random.getstate()
    np_kind, np_words, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    if np_kind != "MT19937":
        raise ValueError(f"unsupported NumPy generator {np_kind!r}")
    state: dict[str, Any] = {
        "python": torch.tensor(list(py_words), dtype=torch.int64),
        "python_version": int(py_version),
        "python_gauss": None if py_gauss is None else float(py_gauss),
        "numpy": torch.from_numpy(np.asarray(np_words, dtype=np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state` (CUDA only when both sides have it)."""
    random.setstate((state["python_version"], tuple(int(w) for w in state["python"].tolist()), state["python_gauss"]))
    np.random.set_state(
        ("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"])
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            torch.cuda.set_rng_state(cuda_states[0])
