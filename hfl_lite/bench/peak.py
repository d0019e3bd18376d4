"""The ``peak`` section: single-precision matmul throughput, the yardstick of the others."""
from __future__ import annotations

import torch

from .settings import Settings, record
from .timing import median_time

__all__ = ["bench_peak", "matmul_peak_gflops", "peak_gflops"]


def matmul_peak_gflops(device: torch.device, n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Throughput (GFLOP/s) of an ``n x n`` matrix product in ``dtype`` on ``device``: the
    practical peak the other figures are compared with (median of ``repeats`` runs)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = median_time(lambda: a @ b, device, repeats, warmup=2)
    return 2 * n**3 / seconds / 1e9


def bench_peak(s: Settings, context: dict) -> list[dict]:
    """fp32 matmul throughput (and bf16 on a GPU); stored in ``context`` for the other sections."""
    dev = torch.device(s.device)
    gflops = matmul_peak_gflops(dev, s.peak_n, repeats=max(3, s.repeats))
    context["peak_gflops"] = gflops
    rows = [record("peak", f"fp32 matmul {s.peak_n}x{s.peak_n}", f"{gflops:,.0f} GFLOP/s",
                   f"{torch.get_num_threads()} CPU threads" if dev.type == "cpu" else torch.cuda.get_device_name(dev),
                   gflops=gflops, n=s.peak_n, dtype="float32")]
    if dev.type == "cuda":
        bf16 = matmul_peak_gflops(dev, s.peak_n, repeats=max(3, s.repeats), dtype=torch.bfloat16)
        context["peak_gflops_bf16"] = bf16
        rows.append(record("peak", f"bf16 matmul {s.peak_n}x{s.peak_n}", f"{bf16:,.0f} GFLOP/s", "tensor cores",
                           gflops=bf16, n=s.peak_n, dtype="bfloat16"))
    return rows


def peak_gflops(context: dict, s: Settings, dtype: str = "fp32") -> float:
    """The matmul peak of ``dtype`` ("fp32" or "bf16") in GFLOP/s, measured once per run."""
    key = "peak_gflops_bf16" if dtype == "bf16" else "peak_gflops"
    if key not in context:  # the peak section was not picked: measure it anyway
        bench_peak(s, context)
    return context[key]
