"""CPU thread counts for one block of code, restored after it.

``synth`` renders single-threaded (float results then repeat bit for bit), a dataset sample is
many tiny tensor operations (for which intra-op threads cost far more than they save), and
``bench`` and ``ablate`` take a ``--threads`` option (``ablate`` runs on one CPU thread unless told
otherwise): all of them use :func:`cpu_threads`.
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["cpu_threads"]


@contextlib.contextmanager
def cpu_threads(n: int | None, opencv: bool = False):
    """Run the block with ``n`` torch intra-op threads, and OpenCV on ``n`` threads too when
    ``opencv``; ``None`` (or 0) leaves the settings alone. A setting that already has the value is
    not touched (datasets enter this for every sample they read)."""
    if not n:
        yield
        return
    import cv2

    before = (torch.get_num_threads(), cv2.getNumThreads() if opencv else None)
    if before[0] != n:
        torch.set_num_threads(n)
    if opencv and before[1] != n:
        cv2.setNumThreads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before[0]:
            torch.set_num_threads(before[0])
        if opencv and cv2.getNumThreads() != before[1]:
            cv2.setNumThreads(before[1])
