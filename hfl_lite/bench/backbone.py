"""The ``backbone`` section: HFL-Net's backbone beside torchvision's ResNet-50."""
from __future__ import annotations

import torch

from .settings import Settings, record
from .timing import count_flops, median_time

__all__ = ["bench_backbone"]


def bench_backbone(s: Settings, context: dict) -> list[dict]:
    """HFL-Net's backbone (paper widths) beside torchvision's ResNet-50 on the same input."""
    from torchvision.models import resnet50

    from hfl_lite.model import build_backbone

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
        record("backbone", f"HFL backbone (paper widths), {shape}", f"{flops_hfl / batch / 1e9:.2f} GFLOP/image",
               f"{times['hfl'] * 1e3:,.1f} ms/batch; {params['hfl'] / 1e6:.2f}M parameters; of which the two FPNs "
               f"{flops_fpn / batch / 1e9:.2f} GFLOP/image", gflop_per_image=flops_hfl / batch / 1e9,
               fpn_gflop_per_image=flops_fpn / batch / 1e9, ms_per_batch=times["hfl"] * 1e3, params=params["hfl"],
               size=size, batch=batch),
        record("backbone", f"torchvision ResNet-50, {shape}", f"{flops_r50 / batch / 1e9:.2f} GFLOP/image",
               f"{times['r50'] * 1e3:,.1f} ms/batch; {params['r50'] / 1e6:.2f}M parameters (with the classifier)",
               gflop_per_image=flops_r50 / batch / 1e9, ms_per_batch=times["r50"] * 1e3, params=params["r50"],
               size=size, batch=batch),
        record("backbone", "HFL backbone / ResNet-50", f"{flops_hfl / flops_r50:.2f}x FLOPs",
               f"{(flops_hfl - flops_fpn) / flops_r50:.2f}x without the FPNs (paper: about 1.5x); "
               f"{times['hfl'] / times['r50']:.2f}x time", flop_ratio=flops_hfl / flops_r50,
               flop_ratio_without_fpn=(flops_hfl - flops_fpn) / flops_r50, time_ratio=times["hfl"] / times["r50"]),
    ]
