"""ResNet-50 layout with a width parameter, built from torchvision's ``Bottleneck``.

The stages follow the paper's naming (Sec. 3.1):

    stage-0  stem     conv1 7x7/2, bn1, LeakyReLU, maxpool 3x3/2    ->  w      ch, stride 4
    stage-1  layer1   3 bottlenecks                                  ->  4w     ch, stride 4   (C2)
    stage-2  layer2   4 bottlenecks, first with stride 2             ->  8w     ch, stride 8   (C3)
    stage-3  layer3   6 bottlenecks, first with stride 2             ->  16w    ch, stride 16  (C4)
    stage-4  layer4   3 bottlenecks, first with stride 2             ->  32w    ch, stride 32  (C5)

With ``width=64`` this is exactly torchvision's ``resnet50`` without ``avgpool``/``fc``: same
modules, same state-dict keys (``conv1.weight``, ``layer3.5.bn2.running_var``, ...), and
23,508,032 parameters, so ImageNet weights load into it. As in the reference code of HFL-Net,
every ReLU is a LeakyReLU (slope 0.01) and BatchNorm layers are trained normally (not frozen).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

__all__ = ["ResNetTrunk", "imagenet_state_dict", "LEAKY_SLOPE"]

LEAKY_SLOPE = 0.01
BLOCKS_PER_STAGE = (3, 4, 6, 3)


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` torchvision bottlenecks (``planes`` inner, ``4 planes`` out) with LeakyReLU."""
    downsample = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * Bottleneck.expansion),
        )
    layers = [Bottleneck(inplanes, planes, stride=stride, downsample=downsample)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(1, blocks)]
    for block in layers:
        block.relu = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    return nn.Sequential(*layers)


class ResNetTrunk(nn.Module):
    """ResNet-50 without the classifier; ``width`` scales every stage (64 = ResNet-50).

    Attributes ``conv1, bn1, relu, maxpool, layer1..layer4`` as in torchvision.
    ``forward(x [B,3,H,W])`` returns ``(C2, C3, C4, C5)`` with ``4w, 8w, 16w, 32w`` channels at
    strides 4, 8, 16, 32.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        if width < 1:
            raise ValueError(f"ResNetTrunk: width must be a positive integer, got {width}")
        self.width = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = width
        for index, (blocks, mult, stride) in enumerate(zip(BLOCKS_PER_STAGE, (1, 2, 4, 8), (1, 2, 2, 2)), start=1):
            setattr(self, f"layer{index}", _stage(inplanes, width * mult, blocks, stride))
            inplanes = width * mult * Bottleneck.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu", a=LEAKY_SLOPE)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def stage_channels(self) -> tuple[int, int, int, int]:
        """Output channels of layer1..layer4: ``(4w, 8w, 16w, 32w)``."""
        w = self.width * Bottleneck.expansion
        return (w, 2 * w, 4 * w, 8 * w)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Stage-0: ``[B,3,H,W] -> [B,w,H/4,W/4]``."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return c2, c3, c4, self.layer4(c4)

    def load_imagenet(self, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load a torchvision ``resnet50`` state dict (``fc.*`` keys are ignored).

        Raises ``ValueError`` naming ``source`` when keys or shapes do not match, e.g. for a
        slimmed trunk (``width != 64``).
        """
        state = {k.removeprefix("module."): v for k, v in state_dict.items()}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            raise ValueError(
                f"{source} is not a ResNet-50 state dict for this trunk (width {self.width}; ImageNet "
                f"weights need width 64): missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}, "
                f"wrong shape {wrong[:3]}{'...' if len(wrong) > 3 else ''}"
            )
        self.load_state_dict(state, strict=True)


def imagenet_state_dict(
    pretrained: bool = False, weights_path: str | Path | None = None, allow_random_init: bool = True
) -> dict[str, torch.Tensor] | None:
    """ImageNet ResNet-50 weights for :meth:`ResNetTrunk.load_imagenet`, or ``None``.

    weights_path:  a local file holding a torchvision ``resnet50`` state dict (read with
                   ``torch.load(weights_only=True)``), e.g. saved in Colab with
                   ``torch.save(torchvision.models.resnet50(weights="IMAGENET1K_V1").state_dict(), path)``.
                   Takes precedence over ``pretrained``. A missing file raises ``FileNotFoundError``.
    pretrained:    download torchvision's ``ResNet50_Weights.IMAGENET1K_V1`` (cached by torch.hub).
                   When the download fails (offline), a ``UserWarning`` says so and ``None`` is
                   returned (random initialisation) if ``allow_random_init``; otherwise
                   ``RuntimeError`` is raised.
    Returns ``None`` when neither is asked for.
    """
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"weights_path {str(path)!r} does not exist or is not a file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"weights_path {str(path)!r} does not hold a state dict (got {type(state).__name__})")
        return state
    if not pretrained:
        return None
    from torchvision.models import ResNet50_Weights

    url = ResNet50_Weights.IMAGENET1K_V1.url
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True)
    except (OSError, RuntimeError) as err:
        message = (
            f"Could not download the ImageNet ResNet-50 weights ({url}): {err}. "
            "Without network access, pass weights_path= a local torchvision resnet50 state dict."
        )
        if not allow_random_init:
            raise RuntimeError(message + " (allow_random_init=False, so stopping here)") from err
        warnings.warn(message + " Continuing from random initialisation.", UserWarning, stacklevel=3)
        return None
