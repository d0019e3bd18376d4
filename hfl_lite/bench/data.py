"""The ``data`` section: DataLoader throughput on the HO3D samples and the ``train --cache`` fill."""
from __future__ import annotations

import time

from hfl_lite.samples import samples_root

from .settings import Settings, record

__all__ = ["bench_data"]


def bench_data(s: Settings, context: dict) -> list[dict]:
    """DataLoader throughput on the samples' ho3d set (train split) at the inference preset's sizes:
    one untimed pass starts the workers, then one timed pass; then the same samples into a
    ``train --cache`` memory cache, with the main process's CPU time per sample."""
    from torch.utils.data import DataLoader, Subset

    from hfl_lite.data import HO3D
    from hfl_lite.data.cache import MemoryCache
    from hfl_lite.presets import get_preset

    preset = get_preset(s.infer_preset)
    ds = HO3D(samples_root() / "ho3d", split="train", image_size=preset.image_size, roi_size=preset.roi_size)
    ds = Subset(ds, range(min(s.data_samples, len(ds))))
    loader = DataLoader(ds, batch_size=min(8, len(ds)), num_workers=s.data_workers, persistent_workers=s.data_workers > 0)
    for _ in loader:
        pass
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch["image"])
    seconds = time.perf_counter() - start
    records = [record("data", f"HO3D samples {preset.image_size}x{preset.image_size}, {s.data_workers} workers",
                      f"{n / seconds:,.1f} samples/s", f"{n} samples in {seconds:.2f} s (batches of {loader.batch_size})",
                      samples_per_s=n / seconds, samples=n, workers=s.data_workers, image_size=preset.image_size)]
    # train --cache: workers prepare, the main process receives; its CPU time per sample bounds
    # the fill rate however many workers there are
    cpu0, start = time.process_time(), time.perf_counter()
    cache = MemoryCache(ds, workers=s.data_workers, progress=False)
    seconds, main_ms = time.perf_counter() - start, (time.process_time() - cpu0) / len(cache) * 1e3
    records.append(record("data", f"train --cache fill, {s.data_workers} workers", f"{len(cache) / seconds:,.1f} samples/s",
                          f"main process {main_ms:.1f} ms CPU per sample (ceiling {1e3 / main_ms:,.0f} samples/s)",
                          samples_per_s=len(cache) / seconds, samples=len(cache), workers=s.data_workers,
                          main_cpu_ms_per_sample=main_ms))
    return records
