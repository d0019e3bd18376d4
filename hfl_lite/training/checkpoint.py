"""Checkpoints that survive a crash mid-write and load with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts: no pickled Python
objects, so it loads with PyTorch's restricted unpickler (``weights_only=True``). Random number
generator states are therefore stored as tensors (:func:`rng_state` / :func:`set_rng_state`).

Writes are atomic: the checkpoint goes to a temporary file in the same folder, is flushed and
``fsync``-ed, and only then renamed over the target with ``os.replace`` (atomic on POSIX and
Windows). A crash or Ctrl-C at any point leaves either the old file or the new one, never a torn
one.

Reading errors are :class:`CheckpointError` s in one sentence naming the file: missing, a folder,
truncated, refused by the safe loader, or holding the weights of another network
(:func:`check_same_network`, :func:`load_weights_into`).
"""
from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from hfl_lite.atomic import atomic_file
from hfl_lite.errors import UserError

__all__ = ["CheckpointError", "check_same_network", "describe_network", "export_weights", "load_checkpoint",
           "load_model_weights", "load_weights_into", "rng_state", "save_checkpoint", "set_rng_state"]


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`hfl_lite.atomic.atomic_file`: temporary
    file, fsync, ``os.replace``).

    state: a dict holding only tensors and primitive containers (what ``weights_only`` loads).
    Returns the path written. The folder is created when missing. On any error the temporary
    file is removed and the previous file at ``path`` (if any) is left untouched.
    """
    path = Path(path)
    with atomic_file(path) as f:
        torch.save(state, f)
    return path


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, refused by the safe loader, or that does not fit
    the network asked for; the message names the file and says what to do."""


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises :class:`CheckpointError` naming the path when it is missing, a folder, truncated or
    corrupt, or holds anything but tensors and plain containers (PyTorch's own advice to load
    such a file with ``weights_only=False`` is not passed on: that would run code from the file).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file (a run folder holds last.pt "
                              "and best.pt: name one of them)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        named = f" (it names {found.group(1)})" if found else ""
        raise CheckpointError(f"checkpoint {path} is refused by the safe loader: it holds Python objects other than "
                              f"tensors, numbers, strings, lists and dicts{named}, or is not a torch.save file; "
                              "hfl_lite never loads such a file (loading it could run code)") from None
    except Exception as err:  # torch raises EOFError, OSError, RuntimeError, KeyError... for a broken file
        raise CheckpointError(f"checkpoint {path} cannot be read: it is truncated or corrupt, or not a PyTorch "
                              f"checkpoint ({type(err).__name__}{': ' + _first_line(err) if _first_line(err) else ''})"
                              ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not the dict hfl_lite writes")
    return ckpt


def _first_line(err: BaseException) -> str:
    """The first line of an error message, without any advice to turn the safe loader off."""
    line = str(err).strip().split("\n", 1)[0].split(". ", 1)[0][:160]
    return "" if "weights_only" in line else line


# entries of a training checkpoint that are weights or resumable state rather than metadata
_STATE_KEYS = frozenset({"model", "optimizer", "scheduler", "scaler", "rng"})


def load_model_weights(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model weights (float32) and the metadata of a training or weights-only checkpoint.

    Returns ``(state_dict, meta)``; ``meta`` holds ``preset`` and whatever else the checkpoint
    records besides weights and optimiser state (e.g. ``dataset``, ``epoch``, ``step``).
    Floating-point tensors stored in half precision (the shipped checkpoint) are cast to float32.
    """
    ckpt = load_checkpoint(path, map_location)
    if not isinstance(ckpt.get("model"), Mapping):
        raise CheckpointError(f"checkpoint {path} has no 'model' weights (keys: {sorted(ckpt)}): not a checkpoint "
                              "written by hfl_lite")
    weights = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    meta = {k: v for k, v in ckpt.items() if k not in _STATE_KEYS}
    return weights, meta


def describe_network(preset: Any, model_config: Mapping[str, Any] | None) -> str:
    """``"preset 'cpu' with backbone 'hfl', hand_interaction 'concat_sa', ..."``: a network in words."""
    variants = ", ".join(f"{k} {v!r}" for k, v in (model_config or {}).items())
    return f"preset {preset!r}" + (f" with {variants}" if variants else "")


def check_same_network(path: str | os.PathLike, meta: Mapping[str, Any], preset: str,
                       model_config: Mapping[str, Any], role: str) -> None:
    """Refuse, in one sentence naming both, a checkpoint recorded with another preset or other
    network variants than the network being built.

    meta: the checkpoint's metadata (``preset``, ``model_config``; variants it does not record
    count as the defaults asked for); role: how the command names the file, e.g. ``"--resume:"``.
    """
    theirs = {**model_config, **(meta.get("model_config") or {})}
    if meta.get("preset") != preset or theirs != dict(model_config):
        raise CheckpointError(f"{role} {path} holds a network of {describe_network(meta.get('preset'), theirs)}, but "
                              f"this command builds {describe_network(preset, model_config)}: give the options the "
                              "checkpoint was made with")


def load_matching_weights(model: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
    """Copy into ``model`` the tensors of ``weights`` whose name and shape match one of its own.

    For warm starts across versions of the network (``train --init-partial``): the tensors it does
    not find keep ``model``'s fresh initialisation. Returns ``{"fresh": [...], "dropped": [...]}``,
    the names left fresh in ``model`` and the names of ``weights`` not used. Raises
    :class:`CheckpointError` when nothing matches (the file is for another network altogether).
    """
    own = model.state_dict()
    matching = {k: v for k, v in weights.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not matching:
        raise CheckpointError("--init-partial: no tensor of the checkpoint matches the network by name and shape")
    own.update({k: v.to(own[k].dtype) for k, v in matching.items()})
    model.load_state_dict(own)
    return {"fresh": [k for k in own if k not in matching], "dropped": [k for k in weights if k not in matching]}


def load_weights_into(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], path: str | os.PathLike,
                      network: str) -> None:
    """``model.load_state_dict(weights)``, or a :class:`CheckpointError` in one sentence (instead of
    one line per mismatching tensor) when the weights of checkpoint ``path`` do not fit ``model``,
    described as ``network`` (see :func:`describe_network`)."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    reshaped = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or reshaped:
        example = (f" (e.g. {reshaped[0]}: {list(weights[reshaped[0]].shape)} in the file, "
                   f"{list(own[reshaped[0]].shape)} in the network)" if reshaped else "")
        raise CheckpointError(f"checkpoint {path} does not fit the network of {network}: {len(reshaped)} of its "
                              f"{len(weights)} tensors have other shapes{example}, {len(missing)} are missing and "
                              f"{len(unexpected)} unexpected; it was made for another preset or by another version "
                              "of hfl_lite")
    model.load_state_dict(weights)


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
