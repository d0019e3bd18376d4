"""Replaying a fixed-shape tensor function as one CUDA graph.

A batched solver such as :func:`hfl_lite.geometry.epnp` is a few hundred small kernels; on a GPU
each launch costs a few microseconds of host time, so a small batch takes as long as a large one.
A CUDA graph records the launches once and replays them with one call. The recorded function
must have fixed input shapes, no data-dependent Python branch and no copy to the host (the
solver is written that way); its inputs and outputs live in static buffers that every replay
reuses: new inputs are copied in, the outputs copied out.

:class:`StaticReplay` does the buffer handling and replays either a captured CUDA graph or, where
there is no CUDA (and in the tests), the function itself on the static buffers: the same code
path apart from the capture, so the copying logic is tested on any machine.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable

import torch

__all__ = ["StaticReplay", "cached_replay"]


class StaticReplay:
    """``fn(*tensors)`` for fixed shapes, replayed from static buffers.

    Args:
        fn: a function of tensors returning a tensor or a tuple of tensors; no host
            synchronisation or data-dependent branch when ``graph`` is True.
        example: tensors with the shapes, dtypes and device of every later call.
        graph: capture ``fn`` as a CUDA graph (needs CUDA tensors); False replays ``fn`` eagerly
            on the static buffers.
        warmup: eager calls on a side stream before the capture (they let lazy initialisation,
            cached constants and the allocator settle, which a capture must not see).
    """

    def __init__(self, fn: Callable, example: tuple[torch.Tensor, ...], graph: bool, warmup: int = 2):
        self.fn = fn
        self.static_in = tuple(t.detach().clone() for t in example)
        self.graph = None
        if graph:
            if not all(t.is_cuda for t in example):
                raise ValueError("StaticReplay: graph=True needs CUDA tensors")
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(warmup):
                    fn(*self.static_in)
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_out = fn(*self.static_in)

    def __call__(self, *tensors: torch.Tensor):
        """The outputs of ``fn(*tensors)`` (copies, owned by the caller)."""
        if len(tensors) != len(self.static_in):
            raise ValueError(f"StaticReplay: expected {len(self.static_in)} tensors, got {len(tensors)}")
        for buffer, tensor in zip(self.static_in, tensors):
            if buffer.shape != tensor.shape or buffer.dtype != tensor.dtype or buffer.device != tensor.device:
                raise ValueError(f"StaticReplay: got a tensor {tuple(tensor.shape)} {tensor.dtype} on {tensor.device}, "
                                 f"recorded for {tuple(buffer.shape)} {buffer.dtype} on {buffer.device}")
            buffer.copy_(tensor)
        if self.graph is not None:
            self.graph.replay()
            out = self.static_out
        else:
            out = self.fn(*self.static_in)
        return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()


_CACHE: OrderedDict[Hashable, StaticReplay] = OrderedDict()
CACHE_SIZE = 8  # replays kept (each holds its buffers and, on a GPU, its graph's memory)


def cached_replay(key: Hashable, fn: Callable, example: tuple[torch.Tensor, ...], graph: bool) -> StaticReplay:
    """The :class:`StaticReplay` recorded for ``key`` (made from ``fn`` and ``example`` the first
    time); the least recently used of more than ``CACHE_SIZE`` is dropped."""
    replay = _CACHE.get(key)
    if replay is None:
        replay = _CACHE[key] = StaticReplay(fn, example, graph)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return replay
