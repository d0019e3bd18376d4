"""``python -m hfl_lite bench``: speed measured against this machine's own limits.

Every figure is measured in the same process, side by side with the reference it is compared
to, so the ratios mean something on any machine: the model's achieved GFLOP/s against the
measured single-precision matmul peak, the plain model against its fast inference copy
(:func:`hfl_lite.model.optimize_for_inference`), the backbone against a plain ResNet-50,
batched EPnP against a loop over OpenCV. On CUDA the same code synchronises, warms up and
takes the median of several runs on the GPU. Results go to stdout as one table and to a JSON
file (default ``bench_results/bench.json``).

Sections (``--sections``, default all but ``book``, which ``--book`` adds):

    peak       fp32 matmul throughput (GFLOP/s), the yardstick of the others
    inference  HFLNet forward, plain and fast, images/s and GFLOP/s (paper preset, 256 x 256)
    train      one training step (forward, loss, backward, Adam) per preset: images/s, peak memory
    backbone   HFL-Net's backbone beside torchvision's ResNet-50 at the same input size
    epnp       batched EPnP against a loop over cv2.solvePnP (bench/epnp.py)
    voting     votes -> pose (top-10 voting + RANSAC EPnP) against the reference's loop
    data       DataLoader samples/s with 2 workers on data_samples/ho3d; --cache fill rate
    render     synthetic-scene renderer images/s (hfl_lite.data.render.bench_renderer)
    book       execution time of each chapter in _toc.yml and of the whole book (HFL_PRESET=cpu)

``--tiny`` shrinks every section (small sizes, one run each, the CPU preset for the network)
so that the whole command takes a minute or two on a small CPU; its figures only show that
everything runs. The book, the data samples and ``bench/`` are read from the repository
checkout that holds this package.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from .threads import cpu_threads

__all__ = ["SECTIONS", "PeakMemory", "Settings", "count_flops", "cpu_name", "make_settings", "main", "matmul_peak_gflops",
           "median_time", "run", "synchronize", "timed"]

SECTIONS = ("peak", "inference", "train", "backbone", "epnp", "voting", "data", "render", "book")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("bench_results") / "bench.json"


# ----------------------------------------------------------------------------- measuring


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


def matmul_peak_gflops(device: torch.device, n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Throughput (GFLOP/s) of an ``n x n`` matrix product in ``dtype`` on ``device``: the
    practical peak the other figures are compared with (median of ``repeats`` runs)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = median_time(lambda: a @ b, device, repeats, warmup=2)
    return 2 * n**3 / seconds / 1e9


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


# ----------------------------------------------------------------------------- settings


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


def make_settings(tiny: bool = False, device: str | torch.device | None = None, threads: int | None = None,
                  repeats: int | None = None, infer_batches: tuple[int, ...] | None = None) -> Settings:
    """The settings for a full run on ``device`` (default: CUDA when available), or ``tiny``
    ones that only check that every section works. ``repeats`` and ``infer_batches``
    override the defaults."""
    from .presets import get_preset, pick_device

    dev = torch.device(device) if device is not None else pick_device()
    cuda = dev.type == "cuda"
    if tiny:
        s = Settings(str(dev), True, 1, 5.0, 256, "cpu", (1, 2), (("cpu", 2),), 64, 1, (1, 16), (1, 4), 16, 8, 2, 2,
                     threads)
    else:
        train = (("paper", get_preset("paper").batch_size), ("cpu", get_preset("cpu").batch_size)) if cuda else \
            (("paper", 4), ("cpu", get_preset("cpu").batch_size))
        s = Settings(str(dev), False, 10 if cuda else 3, 30.0, 8192 if cuda else 2048, "paper", (1, 32), train,
                     256, 32 if cuda else 1, (1, 64, 1024), (1, 64, 256), 32, 48, 2, 20, threads)
    changes = {}
    if repeats is not None:
        changes["repeats"] = repeats
    if infer_batches is not None:
        changes["infer_batches"] = tuple(infer_batches)
    return Settings(**{**asdict(s), **changes}) if changes else s


# ----------------------------------------------------------------------------- sections


def _record(section: str, case: str, value: str, details: str = "", **numbers) -> dict:
    """One result: table text (``case``, ``value``, ``details``) plus the numbers behind it."""
    return {"section": section, "case": case, "value": value, "details": details, **numbers}


def _network_inputs(preset, batch: int, device: torch.device):
    """Random crops ``[B,3,S,S]`` in [0,1] and overlapping hand and object boxes ``[B,4]``."""
    S = preset.image_size
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, S, S, generator=g).to(device)
    hand = torch.tensor([0.15, 0.20, 0.65, 0.80]) * S
    obj = torch.tensor([0.40, 0.25, 0.90, 0.85]) * S
    return images, hand.expand(batch, 4).contiguous().to(device), obj.expand(batch, 4).contiguous().to(device)


def bench_peak(s: Settings, context: dict) -> list[dict]:
    """fp32 matmul throughput (and bf16 on a GPU); stored in ``context`` for the other sections."""
    dev = torch.device(s.device)
    gflops = matmul_peak_gflops(dev, s.peak_n, repeats=max(3, s.repeats))
    context["peak_gflops"] = gflops
    rows = [_record("peak", f"fp32 matmul {s.peak_n}x{s.peak_n}", f"{gflops:,.0f} GFLOP/s",
                    f"{torch.get_num_threads()} CPU threads" if dev.type == "cpu" else torch.cuda.get_device_name(dev),
                    gflops=gflops, n=s.peak_n, dtype="float32")]
    if dev.type == "cuda":
        bf16 = matmul_peak_gflops(dev, s.peak_n, repeats=max(3, s.repeats), dtype=torch.bfloat16)
        context["peak_gflops_bf16"] = bf16
        rows.append(_record("peak", f"bf16 matmul {s.peak_n}x{s.peak_n}", f"{bf16:,.0f} GFLOP/s", "tensor cores",
                            gflops=bf16, n=s.peak_n, dtype="bfloat16"))
    return rows


def _peak(context: dict, s: Settings, dtype: str = "fp32") -> float:
    key = "peak_gflops_bf16" if dtype == "bf16" else "peak_gflops"
    if key not in context:  # the peak section was not picked: measure it anyway
        bench_peak(s, context)
    return context[key]


def bench_inference(s: Settings, context: dict) -> list[dict]:
    """HFLNet forward at each batch size: plain (eval, no_grad) and fast copies side by side."""
    from .model import build_model, optimize_for_inference
    from .presets import get_preset

    dev = torch.device(s.device)
    preset = get_preset(s.infer_preset)
    model = build_model(preset).to(dev).eval()
    variants = {"plain": model, "fast": optimize_for_inference(model)}
    if dev.type == "cuda":
        variants["fast bf16"] = optimize_for_inference(model, autocast="bf16")
    flops_per_image = count_flops(model, *_network_inputs(preset, 1, dev))
    rows = []
    for batch in s.infer_batches:
        inputs = _network_inputs(preset, batch, dev)
        for name, net in variants.items():
            def forward(net=net):
                with torch.no_grad():
                    return net(*inputs)

            seconds = median_time(forward, dev, s.repeats, warmup=1, max_seconds=s.max_seconds)
            gflops = flops_per_image * batch / seconds / 1e9
            peak = _peak(context, s, "bf16" if "bf16" in name else "fp32")
            rows.append(_record(
                "inference", f"{preset.name} {preset.image_size}x{preset.image_size}, batch {batch}, {name}",
                f"{batch / seconds:,.2f} images/s",
                f"{seconds * 1e3:,.1f} ms/batch; {flops_per_image / 1e9:.2f} GFLOP/image; {gflops:,.1f} GFLOP/s = "
                f"{100 * gflops / peak:.1f}% of the {'bf16' if 'bf16' in name else 'fp32'} matmul peak",
                preset=preset.name, batch=batch, variant=name, images_per_s=batch / seconds, ms_per_batch=seconds * 1e3,
                gflop_per_image=flops_per_image / 1e9, gflops=gflops, fraction_of_peak=gflops / peak))
    return rows


def _training_batch(preset, batch: int, device: torch.device) -> dict:
    """``batch`` samples of data_samples/ho3d (repeated as needed) at the preset's sizes, collated."""
    from torch.utils.data import default_collate

    from .data import HO3D
    from .training.loop import move_to_device

    ds = HO3D(REPO / "data_samples" / "ho3d", split="train", image_size=preset.image_size, roi_size=preset.roi_size)
    samples = [ds[i % len(ds)] for i in range(min(batch, len(ds)))]
    return move_to_device(default_collate([samples[i % len(samples)] for i in range(batch)]), device)


def _time_train_step(preset, initial: dict, data: dict, memory_format, s: Settings,
                     amp_dtype: torch.dtype | None = None) -> tuple[float, PeakMemory]:
    """Median seconds of one optimiser step of a fresh network with weights ``initial`` in
    ``memory_format`` (forward and loss under autocast to ``amp_dtype`` when given, as ``train``
    does on a GPU), and the peak memory it took (the network is freed on return)."""
    from .model import build_model
    from .training.cli import HFLStep

    dev = torch.device(s.device)
    model = build_model(preset)
    model.load_state_dict(initial)
    model = model.to(dev, memory_format=memory_format).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    loss_fn = HFLStep(preset.image_size)

    def step():
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = loss_fn(model, data)["total"]
        loss.backward()
        optimiser.step()
        return loss

    with PeakMemory(dev) as memory:
        seconds = median_time(step, dev, s.repeats, warmup=1, max_seconds=s.max_seconds)
    return seconds, memory


def bench_train(s: Settings, context: dict) -> list[dict]:
    """One optimiser step (forward, HFL-Net loss, backward, Adam) per (preset, batch size), with the
    convolution weights contiguous and channels-last (``train``'s default) side by side, from the
    same initial weights; on a GPU with bfloat16 also channels-last under bf16 autocast (``train``'s
    default there)."""
    from .model import build_model
    from .presets import get_preset
    from .training.loop import autocast_dtype

    dev = torch.device(s.device)
    what = "allocated tensors" if dev.type == "cuda" else "process resident memory"
    rows = []
    for name, batch in s.train:
        preset = get_preset(name)
        initial = build_model(preset).state_dict()
        data = _training_batch(preset, batch, dev)
        variants = [("contiguous", torch.contiguous_format, None), ("channels-last", torch.channels_last, None)]
        if autocast_dtype(dev) == torch.bfloat16:  # train's default precision on this device
            variants.append(("channels-last", torch.channels_last, torch.bfloat16))
        base = None
        for layout, memory_format, amp_dtype in variants:
            seconds, memory = _time_train_step(preset, initial, data, memory_format, s, amp_dtype)
            base = base or seconds  # the first variant: contiguous, fp32
            precision = "bf16 autocast" if amp_dtype is not None else "fp32"
            rows.append(_record(
                "train", f"{preset.name} {preset.image_size}x{preset.image_size}, batch {batch}, {layout} weights, {precision}",
                f"{batch / seconds:,.2f} images/s",
                f"{seconds * 1e3:,.0f} ms/step ({base / seconds:.2f}x contiguous fp32); peak {what} {memory.peak_mb:,.0f} MiB",
                preset=preset.name, batch=batch, layout=layout, precision=precision, images_per_s=batch / seconds,
                ms_per_step=seconds * 1e3, speedup_vs_contiguous=base / seconds, peak_memory_mb=memory.peak_mb,
                start_memory_mb=memory.start_mb, memory_kind=what))
    return rows


def bench_backbone(s: Settings, context: dict) -> list[dict]:
    """HFL-Net's backbone (paper widths) beside torchvision's ResNet-50 on the same input."""
    from torchvision.models import resnet50

    from .model import build_backbone

    dev = torch.device(s.device)
    size, batch = s.backbone_size, s.backbone_batch
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    hfl = build_backbone("hfl", "paper").to(dev).eval()
    r50 = resnet50(weights=None).to(dev).eval()
    flops_hfl, per_module = count_flops(hfl, x, by_module=True)
    flops_fpn = sum(v for k, v in per_module.items() if k.count(".") == 1 and ".fpn_" in k)
    flops_r50 = count_flops(r50, x)
    times = {}
    for name, net in (("hfl", hfl), ("r50", r50)):
        def forward(net=net):
            with torch.no_grad():
                return net(x)

        times[name] = median_time(forward, dev, s.repeats, warmup=1, max_seconds=s.max_seconds)
    params = {name: sum(p.numel() for p in net.parameters()) for name, net in (("hfl", hfl), ("r50", r50))}
    shape = f"{batch}x3x{size}x{size}"
    return [
        _record("backbone", f"HFL backbone (paper widths), {shape}", f"{flops_hfl / batch / 1e9:.2f} GFLOP/image",
                f"{times['hfl'] * 1e3:,.1f} ms/batch; {params['hfl'] / 1e6:.2f}M parameters; of which the two FPNs "
                f"{flops_fpn / batch / 1e9:.2f} GFLOP/image", gflop_per_image=flops_hfl / batch / 1e9,
                fpn_gflop_per_image=flops_fpn / batch / 1e9, ms_per_batch=times["hfl"] * 1e3, params=params["hfl"],
                size=size, batch=batch),
        _record("backbone", f"torchvision ResNet-50, {shape}", f"{flops_r50 / batch / 1e9:.2f} GFLOP/image",
                f"{times['r50'] * 1e3:,.1f} ms/batch; {params['r50'] / 1e6:.2f}M parameters (with the classifier)",
                gflop_per_image=flops_r50 / batch / 1e9, ms_per_batch=times["r50"] * 1e3, params=params["r50"],
                size=size, batch=batch),
        _record("backbone", "HFL backbone / ResNet-50", f"{flops_hfl / flops_r50:.2f}x FLOPs",
                f"{(flops_hfl - flops_fpn) / flops_r50:.2f}x without the FPNs (paper: about 1.5x); "
                f"{times['hfl'] / times['r50']:.2f}x time", flop_ratio=flops_hfl / flops_r50,
                flop_ratio_without_fpn=(flops_hfl - flops_fpn) / flops_r50, time_ratio=times["hfl"] / times["r50"]),
    ]


def _bench_module():
    """``bench/epnp.py`` of the repository checkout, imported as ``bench.epnp``."""
    if not (REPO / "bench" / "epnp.py").is_file():
        raise FileNotFoundError(f"{REPO / 'bench' / 'epnp.py'} is missing: the epnp and voting sections need the "
                                "repository checkout (bench/) beside the hfl_lite package")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import bench.epnp

    return bench.epnp


def _pnp_records(section: str, rows: list[dict]) -> list[dict]:
    def cpu(r):  # process CPU time is a steadier yardstick on a shared CPU, meaningless on a GPU
        return f" (CPU time: {r['cpu_speedup']:.2f}x)" if r["device"].startswith("cpu") else ""

    return [_record(section, f"{r['bench']}, batch {r['batch']}, {r['points']} points",
                    f"{r['speedup']:.2f}x the OpenCV loop",
                    f"torch {r['torch_ms']:,.2f} ms vs OpenCV {r['opencv_ms']:,.2f} ms{cpu(r)}; median rotation error "
                    f"{r['torch_rot_deg']:.3f} / {r['opencv_rot_deg']:.3f} deg, translation "
                    f"{r['torch_trans_rel']:.4f} / {r['opencv_trans_rel']:.4f} (torch / OpenCV)", **r) for r in rows]


def bench_epnp_section(s: Settings, context: dict) -> list[dict]:
    """Batched EPnP against a loop over ``cv2.solvePnP(..., SOLVEPNP_EPNP)`` (bench/epnp.py)."""
    rows = _bench_module().bench_epnp(batches=s.epnp_batches, repeats=max(1, s.repeats), device=s.device,
                                      threads=s.threads)
    return _pnp_records("epnp", rows)


def bench_voting_section(s: Settings, context: dict) -> list[dict]:
    """Votes -> pose against the reference's per-sample loop (bench/epnp.py)."""
    rows = _bench_module().bench_voting(batches=s.voting_batches, grid=s.voting_grid, repeats=max(1, s.repeats),
                                        device=s.device, threads=s.threads)
    return _pnp_records("voting", rows)


def bench_data(s: Settings, context: dict) -> list[dict]:
    """DataLoader throughput on data_samples/ho3d (train split) at the inference preset's sizes:
    one untimed pass starts the workers, then one timed pass; then the same samples into a
    ``train --cache`` memory cache, with the main process's CPU time per sample."""
    from torch.utils.data import DataLoader, Subset

    from .data import HO3D
    from .data.cache import MemoryCache
    from .presets import get_preset

    preset = get_preset(s.infer_preset)
    ds = HO3D(REPO / "data_samples" / "ho3d", split="train", image_size=preset.image_size, roi_size=preset.roi_size)
    ds = Subset(ds, range(min(s.data_samples, len(ds))))
    loader = DataLoader(ds, batch_size=min(8, len(ds)), num_workers=s.data_workers, persistent_workers=s.data_workers > 0)
    for _ in loader:
        pass
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch["image"])
    seconds = time.perf_counter() - start
    records = [_record("data", f"HO3D samples {preset.image_size}x{preset.image_size}, {s.data_workers} workers",
                       f"{n / seconds:,.1f} samples/s", f"{n} samples in {seconds:.2f} s (batches of {loader.batch_size})",
                       samples_per_s=n / seconds, samples=n, workers=s.data_workers, image_size=preset.image_size)]
    # train --cache: workers prepare, the main process receives; its CPU time per sample bounds
    # the fill rate however many workers there are
    cpu0, start = time.process_time(), time.perf_counter()
    cache = MemoryCache(ds, workers=s.data_workers, progress=False)
    seconds, main_ms = time.perf_counter() - start, (time.process_time() - cpu0) / len(cache) * 1e3
    records.append(_record("data", f"train --cache fill, {s.data_workers} workers", f"{len(cache) / seconds:,.1f} samples/s",
                           f"main process {main_ms:.1f} ms CPU per sample (ceiling {1e3 / main_ms:,.0f} samples/s)",
                           samples_per_s=len(cache) / seconds, samples=len(cache), workers=s.data_workers,
                           main_cpu_ms_per_sample=main_ms))
    return records


def bench_render(s: Settings, context: dict) -> list[dict]:
    """The synthetic-scene renderer (hfl_lite.data.render.bench_renderer)."""
    from .data.render import bench_renderer

    r = bench_renderer(n=s.render_images, device=s.device)
    return [_record("render", f"640x480 grasp scenes ({r['mean_triangles']:,.0f} triangles)",
                    f"{r['images_per_s']:,.2f} images/s",
                    f"{r['ms_per_image']:,.1f} ms/image wall, {r['cpu_ms_per_image']:,.1f} ms/image CPU; "
                    f"{r['threads']} threads", **r)]


def _load_book_tools():
    """``tools/book.py`` of the repository checkout (it reads _toc.yml)."""
    path = REPO / "tools" / "book.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the book section needs the repository checkout")
    spec = importlib.util.spec_from_file_location("hfl_lite_book_tools", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_book(s: Settings, context: dict) -> list[dict]:
    """Execute every chapter of _toc.yml with nbclient (HFL_PRESET=cpu), each in its folder;
    the notebooks on disk are not changed."""
    import nbclient
    import nbformat

    rows, total = [], 0.0
    old = os.environ.get("HFL_PRESET")
    os.environ["HFL_PRESET"] = "cpu"
    try:
        for path in _load_book_tools().toc_notebooks():
            nb = nbformat.read(path, as_version=4)
            client = nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                                             resources={"metadata": {"path": str(path.parent)}})
            start, status = time.perf_counter(), "ok"
            try:
                client.execute()
            except Exception as err:  # report the failing chapter and go on with the others
                status = f"failed: {type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
            seconds = time.perf_counter() - start
            total += seconds
            rows.append(_record("book", path.stem, f"{seconds:,.1f} s", status, seconds=seconds, status=status,
                                notebook=str(path)))
    finally:
        if old is None:
            os.environ.pop("HFL_PRESET", None)
        else:
            os.environ["HFL_PRESET"] = old
    failed = sum(r["status"] != "ok" for r in rows)
    rows.append(_record("book", f"whole book ({len(rows)} chapters)", f"{total:,.1f} s",
                        f"{failed} failed" if failed else "all ran", seconds=total, chapters=len(rows), failed=failed))
    return rows


RUNNERS: dict[str, Callable[[Settings, dict], list[dict]]] = {
    "peak": bench_peak, "inference": bench_inference, "train": bench_train, "backbone": bench_backbone,
    "epnp": bench_epnp_section, "voting": bench_voting_section, "data": bench_data, "render": bench_render,
    "book": bench_book,
}


# ----------------------------------------------------------------------------- the command


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return name


def _load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def _machine() -> dict:
    info = {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    load = _load_average()
    if load is not None:
        info["load_average"] = load
    return info


def run(sections: tuple[str, ...], settings: Settings, log=print) -> dict:
    """Run the ``sections`` in order; returns the JSON-ready result. A section that raises is
    recorded with its error and the others still run."""
    result = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "settings": asdict(settings), "machine": _machine()},
              "sections": {}}
    context: dict = {}
    for name in sections:
        log(f"[bench] {name} ...")
        start = time.perf_counter()
        try:
            records, error = RUNNERS[name](settings, context), None
        except Exception as err:  # keep going: one broken section should not hide the others
            records, error = [], f"{type(err).__name__}: {err}"
            log(traceback.format_exc())
        result["sections"][name] = {"records": records, "seconds": time.perf_counter() - start, "error": error}
    result["meta"]["load_average_end"] = _load_average()
    return result


def format_table(result: dict) -> str:
    """The results as one Markdown table."""
    lines = ["| section | case | result | details |", "|---|---|---:|---|"]
    for name, section in result["sections"].items():
        if section["error"]:
            lines.append(f"| {name} | (failed) | | {section['error']} |")
        for r in section["records"]:
            lines.append(f"| {name} | {r['case']} | {r['value']} | {r['details']} |")
    return "\n".join(lines)


def _sections(text: str | None, book: bool) -> tuple[str, ...]:
    if text is None:
        picked = [s for s in SECTIONS if s != "book"]
    else:
        picked = [s.strip() for s in text.split(",") if s.strip()]
        unknown = [s for s in picked if s not in SECTIONS]
        if unknown:
            raise SystemExit(f"hfl_lite bench: unknown section(s) {unknown} in --sections; choices: {', '.join(SECTIONS)}")
    if book and "book" not in picked:
        picked.append("book")
    return tuple(picked)


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batches wants comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--batches wants positive integers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hfl_lite bench", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="sections: " + ", ".join(SECTIONS))
    parser.add_argument("--tiny", action="store_true", help="small sizes and one run each (a check, ~1-2 min on a CPU)")
    parser.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file to write (default {DEFAULT_OUT})")
    parser.add_argument("--sections", default=None, help="comma-separated sections to run (default: all but book)")
    parser.add_argument("--book", action="store_true", help="also execute every chapter (takes minutes)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for the whole run")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure (median reported)")
    parser.add_argument("--batches", type=_batches, default=None, help="inference batch sizes, e.g. 1,32")
    args = parser.parse_args(argv)
    if args.device is not None and args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    sections = _sections(args.sections, args.book)
    settings = make_settings(args.tiny, args.device, threads=args.threads, repeats=args.repeats,
                             infer_batches=args.batches)
    with cpu_threads(args.threads):
        result = run(sections, settings, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    result["meta"]["command"] = "python -m hfl_lite bench " + " ".join(sys.argv[1:] if argv is None else argv)
    table = format_table(result)
    result["table"] = table
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table)
    print(f"\nwrote {args.out}")
    return 1 if any(section["error"] for section in result["sections"].values()) else 0
