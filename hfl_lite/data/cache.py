"""Hold every prepared sample of a dataset in memory, for training without augmentation.

Reading a frame (JPEG decode, crop, MANO vertices, object mask) costs about 20 ms of CPU per
sample; a small network on a GPU consumes batches faster than a few DataLoader workers make
them. Without augmentation each sample is the same in every epoch, so it can be prepared once:

    >>> from hfl_lite.data import HO3D
    >>> from hfl_lite.data.cache import MemoryCache
    >>> train = MemoryCache(HO3D("data_samples/ho3d", "train", augment=False), workers=4)  # doctest: +SKIP
    >>> train.nbytes / 1e6                     # about 0.2 MB per sample at 128 px crops  # doctest: +SKIP

The cache holds exactly what ``dataset[i]`` returns, so a run that trains on it sees the same
samples as one that reads them from disk. Memory is ``len(dataset)`` times one sample (images
are float32 ``[3,S,S]``: 0.2 MB at S = 128, 0.8 MB at S = 256, so the 66,000 HO3D training
frames at 256 px would need about 60 GB).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_convert
from tqdm.auto import tqdm

__all__ = ["MemoryCache"]


def _own(value: Any) -> Any:
    """A copy of ``value`` whose tensors live in this process's ordinary memory.

    Tensors that arrive from DataLoader workers sit in shared memory, each holding an open file
    descriptor for as long as it lives; a cache of thousands of samples would run out of them
    ("Too many open files"). Cloning releases the shared block.
    """
    if isinstance(value, torch.Tensor):
        return value.clone() if value.is_shared() else value
    if isinstance(value, dict):
        return {k: _own(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_own(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_own(v) for v in value)
    return value


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


CHUNK = 64
"""Samples a worker prepares and sends at once while a cache fills."""


def _stack_chunk(samples: list) -> dict | list:
    """Worker side: a chunk of dict samples with the same keys as columns: per key, in the
    samples' key order, one stacked tensor where every value is a tensor of one shape and dtype,
    else the list of values. Other chunks travel as the list of samples.

    Why: every tensor a worker sends travels through its own shared-memory block and file
    descriptor; receiving about 20 per sample cost the main process more time than preparing the
    sample did. One block per key and chunk lets the fill scale with the workers.
    """
    samples = [default_convert(x) for x in samples]  # numpy -> tensors, as batch_size=None loaders do
    keys = list(samples[0]) if isinstance(samples[0], dict) else None
    if not keys or any(not isinstance(x, dict) or list(x) != keys for x in samples):
        return samples
    columns = {}
    for key in keys:
        values = [x[key] for x in samples]
        first = values[0]
        same = all(isinstance(v, torch.Tensor) and v.shape == first.shape and v.dtype == first.dtype for v in values)
        columns[key] = torch.stack(values) if same else values
    return columns


def _unstack_chunk(chunk: dict | list) -> list:
    """Main side: the samples of a :func:`_stack_chunk` chunk, every tensor in this process's memory."""
    if isinstance(chunk, list):
        return [_own(x) for x in chunk]
    n = len(next(iter(chunk.values())))
    return [{k: v[i].clone() if isinstance(v, torch.Tensor) else _own(v[i]) for k, v in chunk.items()}
            for i in range(n)]


class MemoryCache(Dataset):
    """``dataset``'s samples, prepared once and kept in memory.

    dataset:  a map-style dataset whose samples do not change between reads; a dataset with an
              ``augment`` attribute that is set (e.g. ``HO3D(..., augment=True)``) is refused,
              because every epoch would repeat one augmentation draw
    workers:  DataLoader worker processes that prepare the samples (0: in this process)
    progress: show a progress bar while preparing

    ``cache[i]`` returns sample ``i`` (the stored dict itself: do not modify it in place);
    ``nbytes`` is the memory the tensors take. Attributes the wrapped dataset has and the cache
    does not (``skipped``, ``skip_report``, ``ids`` ...) are read through from it.
    """

    def __init__(self, dataset: Dataset, workers: int = 0, progress: bool = True):
        if getattr(dataset, "augment", None):
            raise ValueError(f"MemoryCache: {dataset!r} augments its samples; a cache would repeat one "
                             "augmentation draw in every epoch. Build it with augment=False (train --no-augment).")
        if workers < 0:
            raise ValueError(f"MemoryCache: workers must be >= 0, got {workers}")
        self.dataset = dataset
        # a private generator: the loader's worker seed must not draw from torch's global one,
        # or caching would change the weights a seeded run initialises next
        loader = DataLoader(dataset, batch_size=CHUNK, shuffle=False, num_workers=workers,
                            collate_fn=_stack_chunk, generator=torch.Generator())
        self.samples = []
        with tqdm(total=len(dataset), desc="caching samples", unit="sample", disable=not progress) as bar:
            for chunk in loader:
                self.samples += _unstack_chunk(chunk)
                bar.update(len(self.samples) - bar.n)
        self.nbytes = sum(_nbytes(s) for s in self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.samples[index]

    def __getattr__(self, name: str):
        # only called for names the cache itself lacks; "dataset" guards against recursion
        # before __init__ has set it (e.g. while unpickling in a worker)
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f"MemoryCache({self.dataset!r}, {len(self)} samples, {self.nbytes / 1e6:.0f} MB)"
