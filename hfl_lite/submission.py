"""HO3D challenge submission: ``pred.zip`` holding ``pred.json`` = ``[joints_list, verts_list]``.

The official format (HO3D evaluation server): one entry per evaluation image, in the order of
``evaluation.txt``; joints ``[21, 3]`` and vertices ``[778, 3]`` in **metres**, in the
**OpenGL** camera frame (x right, y up, z backwards), joints in **HO3D's order**.

``hfl_lite`` works in the OpenCV frame (y down, z forward) with manopth's joint order, so the
writer flips y and z and reorders the joints. The two joint orders:

* manopth (ours): 0 wrist; thumb 1-4, index 5-8, middle 9-12, ring 13-16, little 17-20
  (each MCP, PIP, DIP, tip);
* HO3D (MANO's native order plus tips): 0 wrist; index 1-3, middle 4-6, little 7-9,
  ring 10-12, thumb 13-15 (MCP, PIP, DIP); tips 16 thumb, 17 index, 18 middle, 19 ring,
  20 little.

``ours = ho3d[MANOPTH_FROM_HO3D]`` and ``ho3d = ours[HO3D_FROM_MANOPTH]``.

The reference implementation mixed millimetres and metres in its submission; here a value
above 10 m in magnitude is refused as "probably millimetres".
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from hfl_lite.mano.constants import JOINT_REORDER

__all__ = [
    "MANOPTH_FROM_HO3D",
    "HO3D_FROM_MANOPTH",
    "MAX_ABS_METRES",
    "to_ho3d",
    "from_ho3d",
    "write_submission",
    "read_submission",
]

# manopth's reordering of "MANO joints + tips", which is exactly HO3D's order
MANOPTH_FROM_HO3D: tuple[int, ...] = tuple(JOINT_REORDER)
HO3D_FROM_MANOPTH: tuple[int, ...] = tuple(int(i) for i in np.argsort(MANOPTH_FROM_HO3D))
MAX_ABS_METRES = 10.0
_FLIP = np.array([1.0, -1.0, -1.0])  # OpenCV <-> OpenGL (its own inverse)


def _np(x, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    a = a.astype(np.float64)
    if a.ndim == len(shape_tail):
        a = a[None]
    if a.ndim != len(shape_tail) + 1 or a.shape[1:] != shape_tail:
        raise ValueError(f"submission: {name} must be [M, {', '.join(map(str, shape_tail))}], got {a.shape}")
    return a


def _check_metres(a: np.ndarray, name: str) -> None:
    if not np.isfinite(a).all():
        bad = int(np.argwhere(~np.isfinite(a).reshape(len(a), -1).all(1))[0, 0])
        raise ValueError(f"submission: {name} has non-finite values (first at entry {bad})")
    biggest = float(np.abs(a).max()) if a.size else 0.0
    if biggest > MAX_ABS_METRES:
        raise ValueError(f"submission: {name} has a coordinate of {biggest:.1f}, more than {MAX_ABS_METRES} m from the "
                         "camera: these look like millimetres; the HO3D submission must be in metres (divide by 1000)")


def to_ho3d(joints, verts) -> tuple[np.ndarray, np.ndarray]:
    """Ours -> HO3D: ``joints [M, 21, 3]``, ``verts [M, 778, 3]`` (metres, OpenCV frame, manopth
    order) -> the same in the OpenGL frame with HO3D's joint order (numpy float64).
    Raises ValueError for wrong shapes, non-finite values or values that look like millimetres."""
    j, v = _np(joints, "joints", (21, 3)), _np(verts, "verts", (778, 3))
    if len(j) != len(v):
        raise ValueError(f"submission: {len(j)} joint sets but {len(v)} vertex sets")
    _check_metres(j, "joints")
    _check_metres(v, "verts")
    return j[:, HO3D_FROM_MANOPTH] * _FLIP, v * _FLIP


def from_ho3d(joints, verts) -> tuple[np.ndarray, np.ndarray]:
    """HO3D -> ours: the inverse of :func:`to_ho3d` (OpenGL, HO3D order -> OpenCV, manopth order)."""
    j, v = _np(joints, "joints", (21, 3)), _np(verts, "verts", (778, 3))
    return j[:, MANOPTH_FROM_HO3D] * _FLIP, v * _FLIP


def write_submission(path, joints, verts, decimals: int = 6, expected_count: int | None = None) -> Path:
    """Write ``pred.zip`` (containing ``pred.json``) for the HO3D evaluation server.

    Args:
        path: the zip file to write (conventionally ``.../pred.zip``), or a directory to put
            ``pred.zip`` in.
        joints: ``[M, 21, 3]`` predicted joints, metres, OpenCV frame, manopth order, one per
            evaluation image in the order of ``evaluation.txt``.
        verts: ``[M, 778, 3]`` predicted vertices, metres, OpenCV frame.
        decimals: values are rounded to this many decimals of a metre (6: a micrometre).
        expected_count: if given, M must equal it (e.g. the length of ``evaluation.txt``).

    Returns:
        The path of the zip written.
    """
    j, v = to_ho3d(joints, verts)
    if expected_count is not None and len(j) != expected_count:
        raise ValueError(f"write_submission: {len(j)} predictions, but expected_count is {expected_count}")
    path = Path(path)
    if path.is_dir():
        path = path / "pred.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps([np.round(j, decimals).tolist(), np.round(v, decimals).tolist()])
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pred.json", payload)
    return path


def read_submission(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a ``pred.zip`` (or a bare ``pred.json``) back into our conventions.

    Returns ``joints [M, 21, 3]``, ``verts [M, 778, 3]``: metres, OpenCV frame, manopth order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_submission: no file {path}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if "pred.json" not in zf.namelist():
                raise ValueError(f"read_submission: {path} does not contain pred.json (has {zf.namelist()})")
            data = json.load(io.TextIOWrapper(zf.open("pred.json"), encoding="utf-8"))
    else:
        data = json.loads(path.read_text())
    if not (isinstance(data, list) and len(data) == 2):
        raise ValueError(f"read_submission: {path} must hold [joints_list, verts_list]")
    return from_ho3d(np.asarray(data[0], dtype=np.float64).reshape(-1, 21, 3),
                     np.asarray(data[1], dtype=np.float64).reshape(-1, 778, 3))
