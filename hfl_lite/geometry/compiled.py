"""Running a batched tensor function through ``torch.compile``, with the eager function as fallback.

A batched solver such as :func:`hfl_lite.geometry.epnp` is a few thousand small tensor
operations; on a CPU each costs microseconds of dispatch however little arithmetic it does.
``torch.compile`` (TorchInductor) fuses them into a few loops of generated C++, compiled once
per process (two or three minutes on a 2-core CPU; TorchInductor keeps the result in its
on-disk cache, from which a later process loads it in seconds). The function must have no data-dependent Python
branch and no copy to the host (the solver is written that way). It is compiled with dynamic
sizes where the caller says so (the batch, the number of points): one compilation serves them
all, while the other sizes (coordinates, 3 x 3 matrices) are compiled in as constants. On a CPU
the code that allocates the buffers and calls the loops is generated in C++ as well
(TorchInductor's ``cpp_wrapper``). The call runs without gradients whatever the caller's mode
(Dynamo would compile once per mode).

The generated code allocates its intermediate buffers afresh on every call and frees them at
the end. glibc's allocator hands the top of its heap back to the system when more than a few
hundred kilobytes there are free, so that each call of a large batch found its memory unmapped
and paid a page fault per 4 KiB page: about 4,000 faults, half of the time, for the EPnP graph at
batch 1024. On glibc the first compiled call on a CPU therefore sets two of the allocator's
parameters for the process (``mallopt``): blocks under 32 MiB come from the heap, and the heap
keeps up to 256 MiB free before trimming. A process that set either itself (``mallopt``, or
the ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment variables) keeps its
setting: then nothing is changed.

Compiling needs TorchInductor's backend: on a CPU a C++ compiler, on a GPU Triton. Where it is
missing or compilation fails, :func:`call_compiled` warns once, naming the reason, and runs the
eager function from then on in this process.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import warnings
from typing import Callable

import torch

__all__ = ["call_compiled", "compile_unavailable", "keep_freed_memory"]

# why compiling is unusable in this process (None: not known to be); set by the first failure
_failure: str | None = None

# glibc's mallopt parameters (malloc.h) and the values set (see the module docstring)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 256 << 20


def compile_unavailable(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here, or None where it may: a compilation
    that already failed in this process, or, on a CPU, no C++ compiler to be found."""
    if _failure is not None:
        return _failure
    return _cpu_compiler_problem() if device.type == "cpu" else None


@functools.cache
def _cpu_compiler_problem() -> str | None:
    """Why TorchInductor finds no C++ compiler here, or None; looked up once per process (the
    lookup takes tens of microseconds, a tenth of a small compiled call)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # another torch version: let the compilation itself tell
        return None
    try:
        get_cpp_compiler()
    except Exception as error:  # noqa: BLE001 (torch raises its own types, varying by version)
        return f"no C++ compiler for TorchInductor ({_first_line(error)})"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


@functools.cache
def _compiled(fn: Callable, device_type: str) -> Callable:
    # on a CPU the generated code's caller in C++ too (TorchInductor's cpp_wrapper): in Python it
    # spent about half a microsecond on each of the graph's few hundred buffers and views
    return torch.compile(fn, fullgraph=True, options={"cpp_wrapper": True} if device_type == "cpu" else None)


@functools.cache
def keep_freed_memory() -> bool:
    """On glibc, keep freed memory in the heap for the next call (see the module docstring),
    once per process. Returns whether the allocator's parameters were set: False elsewhere than
    glibc, or where the process had chosen them through the environment."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def call_compiled(fn: Callable, tensors: tuple[torch.Tensor, ...], dynamic: tuple[tuple[int, ...], ...], *args,
                  batch_dims: tuple[int, ...] | None = None, **kwargs):
    """``fn(*tensors, *args, **kwargs)`` compiled (see the module docstring), or eager where
    compiling is unusable: then one warning names the reason.

    ``fn`` must be a module-level function (its compiled form is kept for the process) that
    returns a tensor or a tuple of tensors, batch first; ``tensors`` carry the batch in the
    dimensions ``batch_dims`` (one per tensor; default: the first of each), and ``dynamic``
    names, per tensor, the dimensions whose size may change from call to call (the batch among
    them).
    The tensors are made contiguous and a batch of one is solved as two copies of the problem:
    another layout, or a size of one (which ``torch.compile`` never treats as dynamic), would
    be compiled anew. The compiled call runs without gradients."""
    global _failure
    reason = compile_unavailable(tensors[0].device)
    if reason is not None:
        _warn(reason)
        return fn(*tensors, *args, **kwargs)
    if tensors[0].device.type == "cpu":
        keep_freed_memory()
    batch_dims = batch_dims or (0,) * len(tensors)
    single = tensors[0].shape[batch_dims[0]] == 1
    # new tensor objects (the dynamic marks stay off the caller's), contiguous
    batch = tuple((t.expand(*(2 if i == d else -1 for i in range(t.ndim))) if single else t).contiguous().detach()
                  for t, d in zip(tensors, batch_dims))
    for t, dims in zip(batch, dynamic):
        torch._dynamo.maybe_mark_dynamic(t, dims)
    try:
        with torch.no_grad():
            out = _compiled(fn, tensors[0].device.type)(*batch, *args, **kwargs)
    except Exception as error:  # noqa: BLE001 (backend errors come in many types; eager is the fallback)
        _failure = f"torch.compile failed ({_first_line(error)})"
        _warn(_failure)
        return fn(*tensors, *args, **kwargs)
    if not single:
        return out
    return out[:1] if isinstance(out, torch.Tensor) else tuple(t[:1] for t in out)


@functools.cache
def _warn(reason: str) -> None:
    warnings.warn(f"compiled solver unavailable, running eagerly: {reason}", RuntimeWarning, stacklevel=3)
