"""Hand-object data: HO3D and Dex-YCB readers, the common sample, crop and augmentation.

    >>> from hfl_lite.data import HO3D, DexYCB
    >>> ds = HO3D("data_samples/ho3d", split="train")          # doctest: +SKIP
    >>> sample = ds[0]   # dict of tensors, see hfl_lite.data.sample

The datasets' format conventions (frames, joint orders, Dex-YCB's PCA hand, segmentation
values, the YCB object names, OBJ models) are in :mod:`hfl_lite.data.formats`;
:class:`hfl_lite.data.cache.MemoryCache` keeps prepared samples in memory for training without
augmentation. This package only reads: the synthetic sets that ``hfl_lite`` ships are made by
:mod:`hfl_lite.synth`, which nothing here imports.
"""
from __future__ import annotations

from .augment import DEXYCB_AUGMENT, HO3D_AUGMENT, AugmentConfig, AugmentParams, sample_params
from .crop import CropTransform, crop_square, make_crop_transform
from .dexycb import DexYCB
from .ho3d import HO3D
from .sample import DataError, FrameAnnotation, HandObjectDataset, build_sample, mirror_frame

__all__ = [
    "AugmentConfig", "AugmentParams", "CropTransform", "DEXYCB_AUGMENT", "DataError", "DexYCB", "FrameAnnotation",
    "HO3D", "HO3D_AUGMENT", "HandObjectDataset", "build_sample", "crop_square", "make_crop_transform",
    "mirror_frame", "sample_params",
]
