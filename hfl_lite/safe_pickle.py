"""The project's restricted unpickler: the only way ``hfl_lite`` reads a pickle.

A pickle is a small program: every class or function it names is imported and called
while it loads, so ``pickle.load`` on a file from the internet can run any command.
:func:`safe_load` reads the pickles this project meets (MANO's ``MANO_RIGHT.pkl`` /
``MANO_LEFT.pkl``, HO3D's ``meta/*.pkl``, the project's own stand-in hand) and refuses
everything else. What it rebuilds:

* plain Python data (dicts, lists, tuples, strings, numbers, ``None``, sets);
* numpy arrays, dtypes and scalars, as written by numpy 1.x (``numpy.core``) or 2.x
  (``numpy._core``), with pickle protocols 0 to 5;
* scipy sparse matrices (CSC, CSR, COO), from ``scipy.sparse.csc`` (old scipy) or
  ``scipy.sparse._csc`` (new), rebuilt from their arrays;
* chumpy objects (``chumpy.ch.Ch`` and the chumpy operations MANO's files use), rebuilt
  as plain numpy arrays from their pickled state. chumpy itself is never imported (it does
  not install on Python 3.11 / numpy 2).

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) raises
:class:`UnsafePickleError` naming it and the file, before anything is called. Files are
read with ``encoding="latin1"`` so Python 2 pickles (MANO's) load.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct, scalar as _np_scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct, scalar as _np_scalar

__all__ = ["UnsafePickleError", "safe_load"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global (class or function) outside the restricted unpickler's list."""


# --------------------------------------------------------------------------------------
# Safe replacements for the callables a pickle may name
# --------------------------------------------------------------------------------------
def _numpy_reconstruct(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` limited to plain ``ndarray``."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"numpy _reconstruct: only numpy.ndarray may be rebuilt, got {subtype!r}")
    return _np_reconstruct(subtype, shape, dtype)


def _numpy_frombuffer(buffer, dtype, shape, order):
    """``numpy.core.numeric._frombuffer`` (pickle protocol 5) without object arrays."""
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise pickle.UnpicklingError("numpy _frombuffer: object arrays cannot come from a raw buffer")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy()


def _numpy_scalar(dtype, *data):
    """``numpy.core.multiarray.scalar``: a numpy scalar from its dtype and raw bytes."""
    if not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError(f"numpy scalar: expected a dtype, got {type(dtype).__name__}")
    return _np_scalar(dtype, *data)


def _codecs_encode(text, encoding="utf-8"):
    """``_codecs.encode`` as Python 3 uses it to pickle ``bytes`` with protocols 0-2."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in {"latin1", "utf8"}:
        raise pickle.UnpicklingError(f"_codecs.encode: only str with latin1/utf-8 is allowed, got {encoding!r}")
    return text.encode(encoding)


def _safe_bytes_type(kind: type):
    """``bytes`` / ``bytearray`` as pickles call them (empty, or from bytes/ints), never ``bytes(n)``."""

    def build(*args):
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(f"{kind.__name__}(n) is not allowed in a pickle")
        return kind(*args)

    return build


class _Stub:
    """Inert object standing in for a chumpy or scipy class named by the pickle.

    It stores the constructor arguments and state the pickle hands it; :func:`_rebuild`
    later turns it into a numpy array or a scipy sparse matrix. It has no behaviour.
    """

    pickled_module = "?"
    pickled_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj._args = args
        obj._state = None
        return obj

    def __setstate__(self, state):
        self._state = state


class _ChumpyStub(_Stub):
    pass


class _SparseStub(_Stub):
    sparse_format = "?"
    sparse_kind = "matrix"


def _copyreg_reconstructor(cls, base, state):
    """``copyreg._reconstructor`` (pickle protocols 0-1) for the stub classes only."""
    if not (isinstance(cls, type) and issubclass(cls, _Stub)) or base is not object:
        raise pickle.UnpicklingError(f"copyreg._reconstructor: refusing to build {cls!r} from {base!r}")
    return cls.__new__(cls)


_STUB_CACHE: dict[tuple[str, str], type] = {}


def _stub_class(base: type, module: str, name: str, **attrs) -> type:
    """One inert stub class per (module, name) the pickles name."""
    key = (module, name)
    if key not in _STUB_CACHE:
        _STUB_CACHE[key] = type(name, (base,), {"pickled_module": module, "pickled_name": name, **attrs})
    return _STUB_CACHE[key]


_ALLOWED: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _numpy_reconstruct
    _ALLOWED[(_mod, "scalar")] = _numpy_scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _numpy_frombuffer
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = np.dtype
_ALLOWED[("_codecs", "encode")] = _codecs_encode
for _mod in ("builtins", "__builtin__"):
    _ALLOWED[(_mod, "set")] = set
    _ALLOWED[(_mod, "frozenset")] = frozenset
    _ALLOWED[(_mod, "complex")] = complex
    _ALLOWED[(_mod, "bytes")] = _safe_bytes_type(bytes)
    _ALLOWED[(_mod, "bytearray")] = _safe_bytes_type(bytearray)
    _ALLOWED[(_mod, "object")] = object
for _mod in ("copyreg", "copy_reg"):
    _ALLOWED[(_mod, "_reconstructor")] = _copyreg_reconstructor

_SPARSE_FORMATS = {"csc": "csc", "csr": "csr", "coo": "coo"}


def _sparse_class(module: str, name: str):
    """Stub class for ``scipy.sparse[._]{csc,csr,coo}.{fmt}_{matrix,array}``, else None."""
    parts = module.split(".")
    if len(parts) != 3 or parts[:2] != ["scipy", "sparse"]:
        return None
    fmt = parts[2].lstrip("_")
    if fmt not in _SPARSE_FORMATS or name not in (f"{fmt}_matrix", f"{fmt}_array"):
        return None
    return _stub_class(_SparseStub, module, name, sparse_format=fmt, sparse_kind=name.split("_")[1])


# --------------------------------------------------------------------------------------
# The unpickler
# --------------------------------------------------------------------------------------
class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, label: str):
        super().__init__(file, encoding="latin1")
        self._label = label

    def find_class(self, module: str, name: str):
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        sparse = _sparse_class(module, name)
        if sparse is not None:
            return sparse
        if (module == "chumpy" or module.startswith("chumpy.")) and name.isidentifier():
            return _stub_class(_ChumpyStub, module, name)
        raise UnsafePickleError(
            f"{self._label} refers to {module}.{name}, which the restricted unpickler does not allow "
            "(it only rebuilds numpy arrays, scipy sparse matrices, chumpy arrays and plain Python data). "
            "Do not load this file with pickle.load."
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._label} uses persistent ids, which the restricted unpickler does not allow")


# --------------------------------------------------------------------------------------
# Rebuilding stubs as numpy / scipy objects
# --------------------------------------------------------------------------------------
def _state_dict(stub: _Stub, label: str) -> dict:
    state = stub._state
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
        state = state[0]
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(
            f"{label}: cannot rebuild {stub.pickled_module}.{stub.pickled_name}: its pickled state is "
            f"{type(state).__name__}, not a dict")
    return state


def _sparse_value(stub: _SparseStub, label: str, memo: dict):
    import scipy.sparse as sp

    state = {k: _rebuild(v, label, memo) for k, v in _state_dict(stub, label).items()}
    shape = state.get("_shape", state.get("shape"))
    what = f"{label}: scipy {stub.pickled_name}"
    try:
        shape = tuple(int(s) for s in shape)
        if stub.sparse_format == "coo":
            if "coords" in state:
                row, col = state["coords"]
            else:
                row, col = state["row"], state["col"]
            args = (np.asarray(state["data"]), (np.asarray(row), np.asarray(col)))
        else:
            args = (np.asarray(state["data"]), np.asarray(state["indices"]), np.asarray(state["indptr"]))
    except (KeyError, TypeError, ValueError) as e:
        raise pickle.UnpicklingError(f"{what}: incomplete pickled state (keys {sorted(state)}): {e}") from e
    cls = getattr(sp, f"{stub.sparse_format}_{stub.sparse_kind}")
    return cls(args, shape=shape)


def _unary(fn):
    return lambda s, v: fn(v("x"))


def _binary(fn, a="a", b="b"):
    return lambda s, v: fn(v(a), v(b))


def _select(s, v):
    out = np.asarray(v("a")).ravel()[np.asarray(s["idxs"]).ravel()]
    return out.reshape(s["preferred_shape"]) if "preferred_shape" in s else out


def _concatenate(s, v):
    names = s.get("dterms") or sorted((k for k in s if k[:1] == "m" and k[1:].isdigit()), key=lambda k: int(k[1:]))
    return np.concatenate([np.asarray(v(n)) for n in names], axis=s.get("axis", 0))


def _atleast_nd(s, v):
    return {1: np.atleast_1d, 2: np.atleast_2d, 3: np.atleast_3d}[int(s["ndims"])](v("x"))


def _mat_vec_mult(s, v):
    mtx, vec = v("mtx"), np.asarray(v("vec"))
    out = np.asarray(mtx.dot(vec.reshape(-1, 1))).ravel()
    return out.reshape(-1, vec.shape[1]) if vec.ndim > 1 and vec.shape[1] > 1 else out


# How each chumpy class computes its value from its terms (chumpy's own term names).
_CHUMPY_OPS = {
    "Ch": lambda s, v: v("x"),
    "add": _binary(np.add),
    "subtract": _binary(np.subtract),
    "multiply": _binary(np.multiply),
    "dot": _binary(np.dot),
    "divide": _binary(np.divide, "x1", "x2"),
    "power": _binary(np.power, "x", "pow"),
    "negative": _unary(np.negative),
    "square": _unary(np.square),
    "sqrt": _unary(np.sqrt),
    "exp": _unary(np.exp),
    "log": _unary(np.log),
    "sin": _unary(np.sin),
    "cos": _unary(np.cos),
    "absolute": _unary(np.abs),
    "reciprocal": _unary(np.reciprocal),
    "sum": lambda s, v: np.sum(v("x"), axis=s.get("axis")),
    "mean": lambda s, v: np.mean(v("x"), axis=s.get("axis")),
    "Reshape": lambda s, v: np.reshape(v("a"), s["newshape"]),
    "transpose": lambda s, v: np.ascontiguousarray(np.transpose(v("a"), s.get("axes"))),
    "Select": _select,
    "Concatenate": _concatenate,
    "AtleastNd": _atleast_nd,
    "MatVecMult": _mat_vec_mult,
}


def _chumpy_value(stub: _ChumpyStub, label: str, memo: dict) -> np.ndarray:
    name = f"{stub.pickled_module}.{stub.pickled_name}"
    op = _CHUMPY_OPS.get(stub.pickled_name)
    if op is None:
        raise pickle.UnpicklingError(
            f"{label}: cannot rebuild the chumpy object {name} as an array (supported chumpy classes: "
            f"{', '.join(sorted(_CHUMPY_OPS))})")
    state = _state_dict(stub, label)

    def term(key):
        if key not in state:
            raise pickle.UnpicklingError(f"{label}: chumpy object {name} has no term {key!r} (has {sorted(state)})")
        value = _rebuild(state[key], label, memo)
        return value if hasattr(value, "tocsc") else np.asarray(value)

    try:
        return np.asarray(op(state, term))
    except pickle.UnpicklingError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise pickle.UnpicklingError(f"{label}: cannot rebuild the chumpy object {name}: {e}") from e


def _rebuild(obj, label: str, memo: dict):
    """Replace stubs by their numpy/scipy values throughout containers (shared objects once)."""
    if isinstance(obj, (str, bytes, int, float, complex, bool, type(None), np.generic)):
        return obj
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, _ChumpyStub):
        out = memo[key] = _chumpy_value(obj, label, memo)
    elif isinstance(obj, _SparseStub):
        out = memo[key] = _sparse_value(obj, label, memo)
    elif isinstance(obj, _Stub):
        raise pickle.UnpicklingError(f"{label}: unexpected object {obj.pickled_module}.{obj.pickled_name}")
    elif isinstance(obj, dict):
        out = memo[key] = {}
        for k, v in obj.items():
            out[_rebuild(k, label, memo)] = _rebuild(v, label, memo)
    elif isinstance(obj, list):
        out = memo[key] = []
        out.extend(_rebuild(v, label, memo) for v in obj)
    elif isinstance(obj, tuple):
        out = memo[key] = tuple(_rebuild(v, label, memo) for v in obj)
    elif isinstance(obj, (set, frozenset)):
        out = memo[key] = type(obj)(_rebuild(v, label, memo) for v in obj)
    elif isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        out = memo[key] = np.empty(obj.shape, dtype=object)
        for index, v in np.ndenumerate(obj):
            out[index] = _rebuild(v, label, memo)
    else:
        out = obj
    return out


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------
_READ_ERRORS = (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, struct.error,
                UnicodeDecodeError, RecursionError)


def safe_load(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO, *, what: str | None = None):
    """Load a pickle with the restricted unpickler (see the module docstring).

    Args:
        source: a path (``str`` / ``PathLike``), the pickle's bytes, or a binary file object.
        what: a short description used in error messages, e.g. ``"MANO asset"`` or
            ``"HO3D meta file"``.

    Returns:
        The unpickled object, with chumpy objects replaced by numpy arrays and scipy sparse
        matrices rebuilt from their arrays.

    Raises:
        UnsafePickleError: the pickle names a global outside the allowed list (nothing it
            names has been called); the message names the global and the file.
        FileNotFoundError / PermissionError / IsADirectoryError: the file cannot be opened.
        pickle.UnpicklingError: the data is not a readable pickle (truncated, corrupt) or a
            chumpy/scipy object cannot be rebuilt; the message names the file.
    """
    prefix = f"{what} " if what else ""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = f"{prefix}{str(path)!r}"
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise type(e)(e.errno, f"cannot read {label}: {e.strerror}", str(path)) from e
        stream = io.BytesIO(data)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        label = f"{what or 'pickle'} (in-memory bytes)"
        stream = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        name = getattr(source, "name", None)
        label = f"{prefix}{name!r}" if isinstance(name, str) else f"{what or 'pickle'} (file object)"
        stream = source
    else:
        raise TypeError(f"safe_load: source must be a path, bytes or a binary file object, got {type(source).__name__}")
    try:
        obj = _RestrictedUnpickler(stream, label).load()
    except UnsafePickleError:
        raise
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f"{label} is not a readable pickle: {e}") from e
    except _READ_ERRORS as e:
        raise pickle.UnpicklingError(f"{label} is not a readable pickle: {type(e).__name__}: {e}") from e
    return _rebuild(obj, label, {})
