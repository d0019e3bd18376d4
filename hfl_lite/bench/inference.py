"""The ``inference`` section: HFLNet forward, plain and fast, against the measured matmul peak."""
from __future__ import annotations

import torch

from .peak import peak_gflops
from .settings import Settings, record
from .timing import count_flops, median_time

__all__ = ["bench_inference"]


def _network_inputs(preset, batch: int, device: torch.device):
    """Random crops ``[B,3,S,S]`` in [0,1] and overlapping hand and object boxes ``[B,4]``."""
    S = preset.image_size
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, S, S, generator=g).to(device)
    hand = torch.tensor([0.15, 0.20, 0.65, 0.80]) * S
    obj = torch.tensor([0.40, 0.25, 0.90, 0.85]) * S
    return images, hand.expand(batch, 4).contiguous().to(device), obj.expand(batch, 4).contiguous().to(device)


def bench_inference(s: Settings, context: dict) -> list[dict]:
    """HFLNet forward at each batch size: plain (eval, no_grad) and fast copies side by side."""
    from hfl_lite.model import build_model, optimize_for_inference
    from hfl_lite.presets import get_preset

    dev = torch.device(s.device)
    preset = get_preset(s.infer_preset)
    model = build_model(preset, pretrained=False).to(dev).eval()  # speed only: no ImageNet download
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
            peak = peak_gflops(context, s, "bf16" if "bf16" in name else "fp32")
            rows.append(record(
                "inference", f"{preset.name} {preset.image_size}x{preset.image_size}, batch {batch}, {name}",
                f"{batch / seconds:,.2f} images/s",
                f"{seconds * 1e3:,.1f} ms/batch; {flops_per_image / 1e9:.2f} GFLOP/image; {gflops:,.1f} GFLOP/s = "
                f"{100 * gflops / peak:.1f}% of the {'bf16' if 'bf16' in name else 'fp32'} matmul peak",
                preset=preset.name, batch=batch, variant=name, images_per_s=batch / seconds, ms_per_batch=seconds * 1e3,
                gflop_per_image=flops_per_image / 1e9, gflops=gflops, fraction_of_peak=gflops / peak))
    return rows
