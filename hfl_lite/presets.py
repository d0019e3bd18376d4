"""Named sets of sizes and training settings: ``"paper"`` (the paper's) and ``"cpu"`` (small).

Both presets build the same classes; the CPU preset only shrinks widths and resolutions so that
one training step (forward, backward, Adam) at batch 16 takes about a second on a 2-core CPU.

    >>> from hfl_lite.presets import get_preset
    >>> get_preset("paper").image_size
    256

``get_preset()`` without a name reads the environment variable ``HFL_PRESET`` and otherwise
picks ``"paper"`` when CUDA is available and ``"cpu"`` when it is not.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["PRESETS", "Preset", "Schedule", "get_preset", "pick_device"]

ENV_VAR = "HFL_PRESET"


@dataclass(frozen=True)
class Schedule:
    """A training schedule for one dataset.

    epochs:          number of training epochs
    lr_step_epochs:  the learning rate is multiplied by ``Preset.lr_gamma`` every this many epochs
    """

    epochs: int
    lr_step_epochs: int


@dataclass(frozen=True)
class Preset:
    """Sizes of the network and settings of its training.

    Network
        image_size:        side S of the square input crop (pixels); images are [B,3,S,S]
        backbone_width:    ResNet-50 stem width (64 in ResNet-50); stage outputs are
                           4x, 8x, 16x, 32x this (256, 512, 1024, 2048 for 64)
        fpn_channels:      C, channels of the stride-4 FPN maps P_h and P_o, and of every head
        roi_size:          R, side of the ROIAlign output (paper: S/8); a multiple of 16 because
                           the hourglass and the hand encoder each halve it four times
        attention_heads:   heads of every attention block
        mano_hidden:       widths of the fully connected layers before the MANO pose/shape outputs
        imagenet_backbone: whether ``HFLNet``/``train`` start the backbone from ImageNet weights by
                           default (only possible for backbone_width 64, the paper's ResNet-50)
    Training (used by hfl_lite.training)
        loss_weights:      ``(term, weight)`` pairs that replace entries of
                           :data:`hfl_lite.losses.LOSS_WEIGHTS` (the paper's); empty for "paper",
                           the small-compute recipe for "cpu"
        batch_size, lr, weight_decay (Adam), lr_gamma (step decay factor),
        schedules:         per-dataset ``Schedule`` as ``(dataset name, Schedule)`` pairs;
                           read them with :meth:`schedule`
    """

    name: str
    image_size: int
    backbone_width: int
    fpn_channels: int
    roi_size: int
    attention_heads: int
    mano_hidden: tuple[int, ...]
    imagenet_backbone: bool
    loss_weights: tuple[tuple[str, float], ...]
    batch_size: int
    lr: float
    weight_decay: float
    lr_gamma: float
    schedules: tuple[tuple[str, Schedule], ...]

    def __post_init__(self):
        if self.image_size % 32 != 0:
            raise ValueError(f"Preset {self.name!r}: image_size must be a multiple of 32, got {self.image_size}")
        if self.roi_size % 16 != 0:
            raise ValueError(f"Preset {self.name!r}: roi_size must be a multiple of 16, got {self.roi_size}")
        if self.imagenet_backbone and self.backbone_width != 64:
            raise ValueError(f"Preset {self.name!r}: imagenet_backbone needs backbone_width 64 (ResNet-50), "
                             f"got {self.backbone_width}")
        if self.fpn_channels % (2 * self.attention_heads) != 0:
            raise ValueError(
                f"Preset {self.name!r}: fpn_channels ({self.fpn_channels}) must be divisible by "
                f"2 x attention_heads ({2 * self.attention_heads})"
            )

    @property
    def hand_feature_size(self) -> int:
        """Length of the vector the hand encoder flattens: C x (R/16)^2 (1024 in the paper)."""
        return self.fpn_channels * (self.roi_size // 16) ** 2

    def schedule(self, dataset: str) -> Schedule:
        """The training schedule for ``dataset`` ("ho3d" or "dexycb", case-insensitive)."""
        key = dataset.lower().replace("-", "").replace("_", "")
        table = dict(self.schedules)
        if key not in table:
            raise ValueError(f"Preset {self.name!r} has no schedule for dataset {dataset!r}; choices: {sorted(table)}")
        return table[key]


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        image_size=256,
        backbone_width=64,
        fpn_channels=256,
        roi_size=32,
        attention_heads=4,
        mano_hidden=(1024, 512),
        imagenet_backbone=True,
        loss_weights=(),
        batch_size=64,
        lr=1e-4,
        weight_decay=5e-4,
        lr_gamma=0.7,
        schedules=(("ho3d", Schedule(epochs=70, lr_step_epochs=10)), ("dexycb", Schedule(epochs=40, lr_step_epochs=5))),
    ),
    "cpu": Preset(
        name="cpu",
        image_size=128,
        backbone_width=16,
        fpn_channels=64,
        roi_size=16,
        attention_heads=4,
        mano_hidden=(256, 128),
        imagenet_backbone=False,
        # the small-compute recipe (book/09_training.ipynb): the per-joint MANO term and the votes
        # weighted up so fingers and object get a clean signal early, the 2D term kept strong
        # enough to place the wrist; no weight decay (it slowed a 16-image fit by a third)
        loss_weights=(("joints2d", 1e3), ("mano_pose", 1e3), ("obj_offset", 5e3)),
        batch_size=16,
        lr=1e-4,
        weight_decay=0.0,
        lr_gamma=0.7,
        schedules=(("ho3d", Schedule(epochs=70, lr_step_epochs=10)), ("dexycb", Schedule(epochs=40, lr_step_epochs=5))),
    ),
}


def get_preset(name: str | Preset | None = None) -> Preset:
    """Return the preset called ``name`` ("paper" or "cpu"); a ``Preset`` is returned unchanged.

    ``None`` reads the environment variable ``HFL_PRESET``; when it is unset or empty, returns
    "paper" if CUDA is available and "cpu" otherwise. Unknown names raise ``ValueError``.
    """
    if isinstance(name, Preset):
        return name
    source = "name"
    if name is None:
        name = os.environ.get(ENV_VAR) or None
        source = f"environment variable {ENV_VAR}"
    if name is None:
        name = "paper" if torch.cuda.is_available() else "cpu"
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r} (from {source}); choices: {sorted(PRESETS)}")
    return PRESETS[name]


def pick_device() -> torch.device:
    """``cuda`` when a GPU is available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
