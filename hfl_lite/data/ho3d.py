"""HO3D reader (official v2/v3 layout) producing the common sample of :mod:`hfl_lite.data.sample`.

Layout (Hampali et al., CVPR 2020; the real dataset and the synthetic sets of ``hfl_lite``)::

    <root>/train.txt, <root>/evaluation.txt     one frame id "<sequence>/<frame>" per line
    <root>/<split>/<sequence>/rgb/<frame>.jpg   (or .png)
    <root>/<split>/<sequence>/seg/<frame>.png   object in the green channel, hand in blue;
                                                may be smaller than the image (nearest scaling);
                                                optional in the evaluation split
    <root>/<split>/<sequence>/meta/<frame>.pkl  camMat, handPose (48), handBeta (10),
                                                handTrans (3), handJoints3D (21x3), objRot (3),
                                                objTrans (3), objName, objCorners3DRest, and in
                                                the evaluation split handBoundingBox
    <root>/models/<objName>/textured_simple.obj (or the folder given as ``object_models``)

The meta pickles are read with :func:`hfl_lite.safe_pickle.safe_load`. HO3D stores 3D
quantities in the OpenGL camera frame (y up, z backwards); they are converted to OpenCV when
loading with ``F = diag(1, -1, -1)``: points ``X -> F X``, rotations ``R -> F R`` (F is a
rotation by 180 degrees about x), and MANO, which rotates the hand about its rest wrist
``J0``: global rotation ``R -> F R`` and translation ``t -> F (J0 + t) - J0``. ``camMat``
already acts on OpenCV coordinates. ``handJoints3D`` (MANO order, fingertips appended) is
reordered to manopth's order.

Evaluation split: the real HO3D hides the hand annotation; its meta files hold only
``handBoundingBox`` and the root joint (``handJoints3D`` of shape [3]), besides the object
pose. The crop and the sample's ``hand_box`` therefore come from ``handBoundingBox`` in this
split (as at test time in the real protocol), and ``root3d`` from the root joint. The
synthetic sets of ``hfl_lite`` also write the full annotation of each evaluation frame to
``<root>/evaluation_gt/<sequence>/meta/<frame>.pkl`` (train keys; see
:mod:`hfl_lite.synth.writers`): when that file exists the sample also gets the joints,
vertices and MANO values; with the real dataset it has none. Without a seg image (the real
evaluation split has none) there is no ``obj_mask``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from hfl_lite.geometry.rotations import axis_angle_to_matrix

from .augment import HO3D_AUGMENT
from .formats import GL_FLIP, HO3D_OBJECT_CHANNEL, HO3D_TO_MANOPTH, transform_mano
from .sample import (DataError, FrameAnnotation, HandObjectDataset, read_image,
                     require_key, validate_frame)

__all__ = ["HO3D", "SPLITS"]

SPLITS = ("train", "evaluation")
_OBJECT_KEYS = ("camMat", "objRot", "objTrans", "objName")


def _array(meta: dict, key: str, shape: tuple[int, ...], path: Path) -> torch.Tensor:
    """``meta[key]`` as a float64 tensor of ``shape``, or :class:`DataError` naming the problem."""
    raw = require_key(meta, key, path)
    try:
        value = torch.from_numpy(np.asarray(raw, dtype=np.float64).copy())
    except (TypeError, ValueError):
        raise DataError(path, f"key {key!r} is not numeric") from None
    if value.numel() != int(np.prod(shape)):
        raise DataError(path, f"key {key!r} must have {int(np.prod(shape))} values, got shape {tuple(value.shape)}")
    value = value.reshape(shape)
    if not torch.isfinite(value).all():
        raise DataError(path, f"key {key!r} contains NaN or infinite values")
    return value


class HO3D(HandObjectDataset):
    """HO3D frames as common samples (see the module docstring for layout and conventions).

    Args:
        root: the HO3D directory (``train.txt``, ``train/``, ...).
        split: "train" or "evaluation".
        image_size, roi_size: crop side S and mask side R (None: the active preset's).
        augment: False, True (HO3D ranges of the paper) or an ``AugmentConfig``.
        skip_bad: skip bad frames with a warning instead of raising ``DataError``.
        mano_root: folder with ``MANO_RIGHT.pkl`` (None: the stand-in hand).
        object_models: folder of ``<objName>/textured_simple.obj`` (None: ``<root>/models``), or a
            function ``name -> (verts, faces)`` such as :func:`hfl_lite.synth.objects.load_object`
            (see :class:`~hfl_lite.data.sample.ObjectCatalog`).
        seed: augmentation seed (see ``HandObjectDataset``).
    """

    name = "HO3D"
    default_augment = HO3D_AUGMENT

    def __init__(self, root, split: str = "train", image_size: int | None = None, roi_size: int | None = None,
                 augment=False, skip_bad: bool = False, mano_root=None, object_models=None,
                 seed: int | None = None):
        if split not in SPLITS:
            raise ValueError(f"HO3D: split must be one of {SPLITS}, got {split!r}")
        super().__init__(root, split, image_size, roi_size, augment, skip_bad, seed, mano_root, object_models)
        list_file = self.split_source = self.root / f"{split}.txt"
        if not list_file.is_file():
            raise DataError(list_file, "split list is missing: not an HO3D directory?")
        ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        malformed = [i for i in ids if len(i.split("/")) != 2]
        if malformed:
            raise DataError(list_file, f"ids must look like '<sequence>/<frame>', got {malformed[:3]}")
        self._set_ids(ids)

    def frame_paths(self, index: int) -> dict[str, Path]:
        """Paths of the image, segmentation and meta files of frame ``index`` (and, for the
        evaluation split, of the synthetic sets' ground-truth meta file ``gt``)."""
        sequence, frame = self.ids[index].split("/")
        folder = self.root / self.split / sequence
        rgb = folder / "rgb" / f"{frame}.jpg"
        if not rgb.is_file() and (folder / "rgb" / f"{frame}.png").is_file():
            rgb = folder / "rgb" / f"{frame}.png"
        return {"rgb": rgb, "seg": folder / "seg" / f"{frame}.png", "meta": folder / "meta" / f"{frame}.pkl",
                "gt": self.root / "evaluation_gt" / sequence / "meta" / f"{frame}.pkl"}

    def read_meta(self, path: Path) -> dict:
        """The meta pickle as a dict (restricted unpickler), or :class:`DataError`."""
        from hfl_lite.safe_pickle import safe_load

        if not path.is_file():
            raise DataError(path, "meta file is missing")
        try:
            meta = safe_load(path, what="HO3D meta file")
        except Exception as err:  # corrupt, truncated or unsafe pickles raise many kinds of errors
            raise DataError(path, f"cannot read the meta pickle ({type(err).__name__}: {err})") from None
        if not isinstance(meta, dict):
            raise DataError(path, f"meta pickle holds a {type(meta).__name__}, expected a dict")
        return meta

    def _read(self, index: int) -> FrameAnnotation:
        paths = self.frame_paths(index)
        meta_path = paths["meta"]
        meta = self.read_meta(meta_path)
        for key in _OBJECT_KEYS:
            require_key(meta, key, meta_path)
        image = read_image(paths["rgb"])
        obj_mask = None
        if self.split == "train" or paths["seg"].is_file():
            obj_mask = self._read_object_mask(paths["seg"], image.shape[:2])
        name = str(meta["objName"])
        ctrl3d, diameter, obj_id = self.objects.info(name)
        F = torch.from_numpy(GL_FLIP)
        fields = dict(
            sample_id=self.ids[index], source=str(meta_path), image=image, obj_mask=obj_mask,
            K=_array(meta, "camMat", (3, 3), meta_path),
            obj_rot=F @ axis_angle_to_matrix(_array(meta, "objRot", (3,), meta_path)),
            obj_trans=F @ _array(meta, "objTrans", (3,), meta_path),
            obj_ctrl3d=ctrl3d, obj_name=name, obj_id=obj_id, obj_diameter=diameter,
        )
        hand_meta, hand_path = meta, meta_path
        if self.split == "evaluation":
            fields.update(root3d=F @ _array(meta, "handJoints3D", (3,), meta_path),
                          hand_box=_array(meta, "handBoundingBox", (4,), meta_path))
            hand_path = paths["gt"]
            hand_meta = self.read_meta(hand_path) if hand_path.is_file() else None
        if hand_meta is not None:
            fields.update(self._hand(hand_meta, hand_path), hand_source=str(hand_path))
        frame = FrameAnnotation(**fields)
        validate_frame(frame)
        return frame

    def _hand(self, meta: dict, path: Path) -> dict:
        """The hand fields of a frame from a meta dict with the full hand keys (OpenGL -> OpenCV)."""
        F = torch.from_numpy(GL_FLIP)
        pose_gl, betas = _array(meta, "handPose", (48,), path), _array(meta, "handBeta", (10,), path)
        trans_gl = _array(meta, "handTrans", (3,), path)
        joints = _array(meta, "handJoints3D", (21, 3), path)[HO3D_TO_MANOPTH] @ F.T
        verts_gl, joints_gl, root_rest = self.hands.forward("right", pose_gl, betas, trans_gl)
        self.check_mano_joints(joints, joints_gl @ F.T, path)
        global_cv, trans_cv = transform_mano(pose_gl[:3].numpy(), trans_gl.numpy(), root_rest.numpy(), GL_FLIP)
        return dict(joints3d=joints, verts3d=verts_gl @ F.T,
                    mano_pose=torch.cat([torch.from_numpy(global_cv), pose_gl[3:]]), mano_shape=betas,
                    mano_trans=torch.from_numpy(trans_cv), mano_root_rest=root_rest)

    def _read_object_mask(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        """Object pixels ``[H, W]`` bool from the object's (green) channel of the seg image."""
        if not path.is_file():
            raise DataError(path, "segmentation image is missing")
        seg = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if seg is None:
            raise DataError(path, "segmentation image cannot be decoded (corrupt or not an image)")
        mask = seg[:, :, ::-1][:, :, HO3D_OBJECT_CHANNEL] > 127  # OpenCV reads BGR
        if mask.shape != shape:
            mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        return mask
