"""Measuring helpers shared by every benchmark section: timing, FLOPs, memory, the machine.

On CUDA every timed call ends with a device synchronisation, so the figures are the GPU's work,
not the launch; on a CPU shared with other work the process CPU time (``cpu_times``) is the
steadier figure.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import threading
import time
from typing import Callable

import torch

__all__ = ["PeakMemory", "count_flops", "cpu_kind", "cpu_name", "load_average", "median_time", "synchronize", "timed"]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1,
          max_seconds: float | None = None, cpu_times: list[float] | None = None) -> tuple[float, object]:
    """Median wall time of ``fn()`` in seconds and the result of its last call.

    ``warmup`` untimed calls first, then up to ``repeats`` timed ones, each ended by a device
    synchronisation; with ``max_seconds``, no new run starts once the timed runs have taken
    that long (at least one always runs). ``cpu_times``, if given, receives the process CPU
    time (all threads, seconds) of each timed run: on a machine shared with other work it
    drops less than the wall time.
    """
    out = None
    for _ in range(warmup):
        out = fn()
    synchronize(device)
    times = []
    for _ in range(max(1, repeats)):
        start, cpu_start = time.perf_counter(), time.process_time()
        out = fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - cpu_start)
        if max_seconds is not None and sum(times) >= max_seconds:
            break
    return statistics.median(times), out


def median_time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1,
                max_seconds: float | None = None) -> float:
    """Median wall time of ``fn()`` in seconds (see :func:`timed`)."""
    return timed(fn, device, repeats, warmup, max_seconds)[0]


def count_flops(module: torch.nn.Module, *inputs, by_module: bool = False):
    """Floating-point operations of one forward call, counted by ``torch.utils.flop_counter``
    (matrix products, convolutions, attention; a multiply-add counts as 2; element-wise
    operations are not counted). With ``by_module``, also ``{module path: flops}``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    total = counter.get_total_flops()
    if not by_module:
        return total
    return total, {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}


def _rss_mb() -> float:
    """Resident set size of this process (MiB), from /proc on Linux, else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux/BSD report KiB


class PeakMemory:
    """Context manager: peak memory (MiB) while the block runs, as ``peak_mb``.

    On a GPU the caching allocator's peak of allocated tensors (``torch.cuda``); on a CPU the
    process's resident set size, sampled every ``interval`` seconds by a background thread
    (so it includes the interpreter and everything already loaded; ``start_mb`` is the
    value when the block began).
    """

    def __init__(self, device: torch.device, interval: float = 0.005):
        self.device, self.interval = device, interval
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __enter__(self):
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mb = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self.start_mb = self.peak_mb = _rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, _rss_mb())
        return False


def _cpuinfo(field: str, default: str) -> str:
    """The first value of ``field`` in /proc/cpuinfo, or ``default`` where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(field)), default)
    except OSError:
        return default


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    return _cpuinfo("model name", platform.processor() or platform.machine())


def cpu_kind() -> dict[str, str]:
    """What decides how float32 results round on this CPU: its vendor (``vendor_id`` in
    /proc/cpuinfo, else the architecture), which picks the BLAS and convolution kernels, and the
    vector instructions torch uses (``torch.backends.cpu.get_cpu_capability()``). Two CPUs of
    one kind give the same numbers for the same program and thread count; across kinds they
    agree to rounding."""
    return {"vendor": _cpuinfo("vendor_id", platform.machine()), "vector": torch.backends.cpu.get_cpu_capability()}


def load_average() -> tuple[float, float, float] | None:
    """The system's 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return os.getloadavg()
    except OSError:
        return None
