"""The ``train`` section: one optimiser step per preset, contiguous and channels-last weights."""
from __future__ import annotations

import torch

from hfl_lite.samples import samples_root

from .settings import Settings, record
from .timing import PeakMemory, median_time

__all__ = ["bench_train"]


def _training_batch(preset, batch: int, device: torch.device) -> dict:
    """``batch`` samples of data_samples/ho3d (repeated as needed) at the preset's sizes, collated."""
    from torch.utils.data import default_collate

    from hfl_lite.data import HO3D
    from hfl_lite.training.loop import move_to_device

    ds = HO3D(samples_root() / "ho3d", split="train", image_size=preset.image_size, roi_size=preset.roi_size)
    samples = [ds[i % len(ds)] for i in range(min(batch, len(ds)))]
    return move_to_device(default_collate([samples[i % len(samples)] for i in range(batch)]), device)


def _time_train_step(preset, initial: dict, data: dict, memory_format, s: Settings,
                     amp_dtype: torch.dtype | None = None) -> tuple[float, PeakMemory]:
    """Median seconds of one optimiser step of a fresh network with weights ``initial`` in
    ``memory_format`` (forward and loss under autocast to ``amp_dtype`` when given, as ``train``
    does on a GPU), and the peak memory it took (the network is freed on return)."""
    from hfl_lite.losses import loss_weights
    from hfl_lite.model import build_model
    from hfl_lite.training.cli import HFLStep

    dev = torch.device(s.device)
    model = build_model(preset, pretrained=False)
    model.load_state_dict(initial)
    model = model.to(dev, memory_format=memory_format).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    loss_fn = HFLStep(loss_weights(preset.loss_weights))

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
    from hfl_lite.model import build_model
    from hfl_lite.presets import get_preset
    from hfl_lite.training.loop import autocast_dtype

    dev = torch.device(s.device)
    what = "allocated tensors" if dev.type == "cuda" else "process resident memory"
    rows = []
    for name, batch in s.train:
        preset = get_preset(name)
        initial = build_model(preset, pretrained=False).state_dict()
        data = _training_batch(preset, batch, dev)
        variants = [("contiguous", torch.contiguous_format, None), ("channels-last", torch.channels_last, None)]
        if autocast_dtype(dev) == torch.bfloat16:  # train's default precision on this device
            variants.append(("channels-last", torch.channels_last, torch.bfloat16))
        base = None
        for layout, memory_format, amp_dtype in variants:
            seconds, memory = _time_train_step(preset, initial, data, memory_format, s, amp_dtype)
            base = base or seconds  # the first variant: contiguous, fp32
            precision = "bf16 autocast" if amp_dtype is not None else "fp32"
            rows.append(record(
                "train", f"{preset.name} {preset.image_size}x{preset.image_size}, batch {batch}, {layout} weights, {precision}",
                f"{batch / seconds:,.2f} images/s",
                f"{seconds * 1e3:,.0f} ms/step ({base / seconds:.2f}x contiguous fp32); peak {what} {memory.peak_mb:,.0f} MiB",
                preset=preset.name, batch=batch, layout=layout, precision=precision, images_per_s=batch / seconds,
                ms_per_step=seconds * 1e3, speedup_vs_contiguous=base / seconds, peak_memory_mb=memory.peak_mb,
                start_memory_mb=memory.start_mb, memory_kind=what))
    return rows
