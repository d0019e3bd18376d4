"""Training augmentation of HFL-Net (paper Sec. 4.1, reference code).

Geometric part, drawn per sample and applied by the crop (:mod:`hfl_lite.data.crop`) to the
image, the masks, the 2D and 3D points, the poses and the intrinsics alike:

* centre jitter: the crop centre moves by ``U(-0.1, 0.1) x side`` along x and along y;
* scale: the crop side is multiplied by ``N(1, 0.2)`` clipped to ``[0.8, 1.2]``;
* rotation about the optical axis: HO3D ``U(-180, 180)`` degrees; Dex-YCB with probability
  0.6 by ``30 deg x N(0, 1)`` clipped to ``+-60`` degrees, else none.

Photometric part, on the crop only: Gaussian blur of radius (sigma, pixels) ``U(0, 0.5)``,
then colour jitter with brightness, contrast and saturation factors ``U(0.5, 1.5)`` and a hue
shift ``U(-0.15, 0.15)`` (fraction of the hue circle), applied in a random order as
torchvision's ``ColorJitter`` does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF

__all__ = ["AugmentConfig", "AugmentParams", "DEXYCB_AUGMENT", "HO3D_AUGMENT", "apply_photometric",
           "sample_params"]


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation (see the module docstring).

    centre_jitter:   maximum centre shift as a fraction of the crop side
    scale_std, scale_range: the crop side factor ~ N(1, scale_std) clipped to scale_range
    rotation:        "uniform" (U(-rotation_max, rotation_max)) or "normal"
                     (rotation_std x N(0,1) clipped to +-rotation_max), degrees
    rotation_prob:   probability that a sample is rotated at all
    blur_max:        Gaussian blur sigma ~ U(0, blur_max) pixels
    brightness, contrast, saturation: factors ~ U(1 - value, 1 + value)
    hue:             hue shift ~ U(-hue, hue) (fraction of the hue circle, at most 0.5)
    """

    centre_jitter: float = 0.1
    scale_std: float = 0.2
    scale_range: tuple[float, float] = (0.8, 1.2)
    rotation: str = "uniform"
    rotation_max: float = 180.0
    rotation_std: float = 0.0
    rotation_prob: float = 1.0
    blur_max: float = 0.5
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.15

    def __post_init__(self):
        if self.rotation not in {"uniform", "normal"}:
            raise ValueError(f"AugmentConfig.rotation must be 'uniform' or 'normal', got {self.rotation!r}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"AugmentConfig.hue must lie in [0, 0.5], got {self.hue}")


HO3D_AUGMENT = AugmentConfig(rotation="uniform", rotation_max=180.0)
DEXYCB_AUGMENT = AugmentConfig(rotation="normal", rotation_std=30.0, rotation_max=60.0, rotation_prob=0.6)


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the augmentation.

    shift: (dx, dy) centre shift as fractions of the crop side; scale: side factor;
    angle: radians about the optical axis; blur: sigma in pixels (0 = none);
    brightness, contrast, saturation: factors (1 = unchanged); hue: shift in [-0.5, 0.5];
    order: the order in which the four colour operations apply (indices into
    ``("brightness", "contrast", "saturation", "hue")``).
    """

    shift: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    angle: float = 0.0
    blur: float = 0.0
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    order: tuple[int, ...] = (0, 1, 2, 3)


def sample_params(rng: np.random.Generator, config: AugmentConfig) -> AugmentParams:
    """Draw one :class:`AugmentParams` from ``config`` with the numpy generator ``rng``."""
    shift = tuple(float(v) for v in rng.uniform(-config.centre_jitter, config.centre_jitter, size=2))
    scale = float(np.clip(rng.normal(1.0, config.scale_std), *config.scale_range))
    angle = 0.0
    if rng.uniform() < config.rotation_prob:
        if config.rotation == "uniform":
            degrees = rng.uniform(-config.rotation_max, config.rotation_max)
        else:
            degrees = np.clip(config.rotation_std * rng.normal(), -config.rotation_max, config.rotation_max)
        angle = math.radians(float(degrees))
    return AugmentParams(
        shift=shift, scale=scale, angle=angle,
        blur=float(rng.uniform(0.0, config.blur_max)),
        brightness=float(rng.uniform(1 - config.brightness, 1 + config.brightness)),
        contrast=float(rng.uniform(1 - config.contrast, 1 + config.contrast)),
        saturation=float(rng.uniform(1 - config.saturation, 1 + config.saturation)),
        hue=float(rng.uniform(-config.hue, config.hue)),
        order=tuple(int(i) for i in rng.permutation(4)),
    )


_COLOUR_OPS = (
    lambda img, p: TF.adjust_brightness(img, p.brightness),
    lambda img, p: TF.adjust_contrast(img, p.contrast),
    lambda img, p: TF.adjust_saturation(img, p.saturation),
    lambda img, p: TF.adjust_hue(img, p.hue),
)
# The value of each colour operation's factor that leaves the image unchanged.
_NEUTRAL = (("brightness", 1.0), ("contrast", 1.0), ("saturation", 1.0), ("hue", 0.0))


def apply_photometric(image: np.ndarray, params: AugmentParams) -> torch.Tensor:
    """Blur and colour-jitter an RGB crop.

    Args:
        image: ``[S, S, 3]`` uint8 RGB.
        params: the draw; its geometric fields are ignored here.

    Returns:
        ``[3, S, S]`` float32 in [0, 1].
    """
    if params.blur > 1e-3:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=params.blur, sigmaY=params.blur)
    out = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    for index in params.order:
        # Skip neutral operations: the plain crop (AugmentParams()) then costs no RGB->HSV->RGB
        # round trip; brightness/contrast/saturation at 1 are exact identities on [0, 1] anyway.
        name, neutral = _NEUTRAL[index]
        if getattr(params, name) != neutral:
            out = _COLOUR_OPS[index](out, params)
    return out.clamp_(0.0, 1.0)
