"""Multi-process training with ``torchrun``: process-group set-up and small helpers.

``torchrun --nproc_per_node N -m hfl_lite train ...`` starts N processes and gives each the
environment variables ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. :func:`init_distributed`
reads them, joins the process group (NCCL on CUDA, Gloo on CPU) and pins each process to its
GPU. Without those variables everything here degrades to a single process: ``world_size`` 1,
``barrier`` does nothing, ``is_main`` is true.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_gather_objects", "barrier", "cleanup_distributed", "init_distributed"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its host,
    and the ``device`` it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when a process group with more than one process is running."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from exc


def init_distributed(device: str | torch.device | None = None) -> DistInfo:
    """Join the process group described by ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (set by torchrun).

    device: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU; a given
    device is used as is (``"cpu"`` forces Gloo even on a GPU machine). The backend is NCCL for
    CUDA devices and Gloo for the CPU. With ``WORLD_SIZE`` unset or 1 no group is created.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device is None:
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # generous timeout: rank 0 evaluates alone while the others wait at the next collective
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=timedelta(minutes=60))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op for a single process)."""
    if info.distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``[obj from rank 0, obj from rank 1, ...]`` (just ``[obj]`` for a single process)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
