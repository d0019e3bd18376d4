"""Sizes and repeats of every benchmark section, and the form of one result row."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

__all__ = ["Settings", "make_settings", "record"]


@dataclass(frozen=True)
class Settings:
    """Sizes and repeats of every section (see :func:`make_settings`)."""

    device: str
    tiny: bool
    repeats: int  # timed runs per figure (the median is reported)
    max_seconds: float  # no new timed run starts once a figure's runs took this long
    peak_n: int  # side of the matmul that measures the peak
    infer_preset: str
    infer_batches: tuple[int, ...]
    train: tuple[tuple[str, int], ...]  # (preset, batch size) per training-step figure
    backbone_size: int
    backbone_batch: int
    epnp_batches: tuple[int, ...]
    voting_batches: tuple[int, ...]
    voting_grid: int
    data_samples: int  # samples per timed DataLoader pass (at most the sample set's size)
    data_workers: int
    render_images: int
    threads: int | None  # torch CPU threads for the EPnP and voting sections (None: torch's setting)
    book_root: str | None = None  # checkout whose chapters the book section runs (None: the package's checkout)
    load_processes: int = 0  # busy processes competing with the EPnP section's second pass (0: none)
    compiled: bool = False  # the EPnP and voting sections also time the solver through torch.compile


def make_settings(tiny: bool = False, device: str | torch.device | None = None, threads: int | None = None,
                  repeats: int | None = None, infer_batches: tuple[int, ...] | None = None,
                  book_root: str | None = None, load_processes: int | None = None,
                  compiled: bool | None = None) -> Settings:
    """The settings for a full run on ``device`` (default: CUDA when available), or ``tiny``
    ones that only check that every section works. ``repeats`` and ``infer_batches``
    override the defaults; ``book_root`` is the checkout whose chapters the book section runs;
    ``load_processes`` the busy processes of the EPnP section's pass under load (default: one
    per CPU, as many as the machine has cores, on a CPU run; 0 on a GPU); ``compiled`` whether
    the EPnP and voting sections also time the compiled solver (default: on a full run, whose
    first call then compiles it, two or three minutes on a small CPU; off on a tiny one)."""
    from hfl_lite.presets import get_preset, pick_device

    dev = torch.device(device) if device is not None else pick_device()
    cuda = dev.type == "cuda"
    if tiny:
        s = Settings(str(dev), True, 1, 5.0, 256, "cpu", (1, 2), (("cpu", 2),), 64, 1, (1, 16), (1, 4), 16, 8, 2, 2,
                     threads)
    else:
        train = (("paper", get_preset("paper").batch_size), ("cpu", get_preset("cpu").batch_size)) if cuda else \
            (("paper", 4), ("cpu", get_preset("cpu").batch_size))
        s = Settings(str(dev), False, 10 if cuda else 3, 30.0, 8192 if cuda else 2048, "paper", (1, 32), train,
                     256, 32 if cuda else 1, (1, 64, 1024), (1, 64, 1024), 32, 48, 2, 20, threads)
    changes = {"load_processes": 0 if cuda else os.cpu_count() or 1,
               "compiled": not tiny if compiled is None else compiled}
    if load_processes is not None:
        changes["load_processes"] = load_processes
    if repeats is not None:
        changes["repeats"] = repeats
    if infer_batches is not None:
        changes["infer_batches"] = tuple(infer_batches)
    if book_root is not None:
        changes["book_root"] = str(book_root)
    return Settings(**{**asdict(s), **changes})


def record(section: str, case: str, value: str, details: str = "", **numbers) -> dict:
    """One result: table text (``case``, ``value``, ``details``) plus the numbers behind it."""
    return {"section": section, "case": case, "value": value, "details": details, **numbers}
