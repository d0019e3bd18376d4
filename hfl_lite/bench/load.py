"""A competing CPU load for benchmarks that must hold up on a busy machine.

:func:`competing_load` starts a few processes that each keep one core busy, for the duration of
a ``with`` block: a measurement inside it sees what another program on the machine would see
while, say, two training jobs run. The load is bounded in size (at most ``os.cpu_count()``
processes) and in time (every process stops by itself after ``max_seconds``, even if the
benchmark is killed), and it is always stopped when the block ends, normally or not.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

__all__ = ["competing_load"]

# what each process runs: a busy loop that ends by itself
_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextlib.contextmanager
def competing_load(processes: int, max_seconds: float = 120.0):
    """Run the block while ``processes`` busy processes compete for the CPU.

    Args:
        processes: how many (1 to ``os.cpu_count()``; 0 runs the block without load).
        max_seconds: each process ends by itself after this long (a bound, not the duration:
            the processes are stopped as soon as the block ends).

    Yields the list of :class:`subprocess.Popen` objects (empty without load).
    """
    limit = os.cpu_count() or 1
    if not 0 <= processes <= limit:
        raise ValueError(f"competing_load: processes must be in [0, {limit}] (the CPUs of this machine), got {processes}")
    if max_seconds <= 0:
        raise ValueError(f"competing_load: max_seconds must be positive, got {max_seconds}")
    busy = [subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=float(max_seconds))],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(processes)]
    try:
        if busy:
            time.sleep(0.3)  # let the interpreters start and begin spinning
        yield busy
    finally:
        for process in busy:
            process.terminate()
        for process in busy:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
