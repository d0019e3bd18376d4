"""Dex-YCB reader (official layout) producing the common sample of :mod:`hfl_lite.data.sample`.

Layout (Chao et al., CVPR 2021; the real dataset and the synthetic sets of ``hfl_lite``)::

    <root>/<subject>/<sequence>/meta.yml                  ycb_ids, ycb_grasp_ind, mano_sides,
                                                         mano_calib, num_frames
    <root>/<subject>/<sequence>/<serial>/color_%06d.jpg
    <root>/<subject>/<sequence>/<serial>/labels_%06d.npz  seg [H,W] (0 background, 255 hand,
                                                         else the YCB id, 1..21 in the order
                                                         of ``formats.OBJECT_NAMES``), pose_y [n_obj,3,4],
                                                         pose_m [1,51], joint_3d [1,21,3],
                                                         joint_2d [1,21,2]
    <root>/calibration/intrinsics/<serial>_640x480.yml    color: fx, fy, ppx, ppy
    <root>/calibration/mano_<mano_calib>/mano.yml         betas (10)
    <root>/models/<ycb name>/textured_simple.obj

Everything is already in the OpenCV camera frame, in metres. ``pose_m`` is MANO with
``use_pca=True, ncomps=45, flat_hand_mean=False``: global axis-angle (3), 45 PCA coefficients,
translation (3); it is converted to the 48 axis-angle values of the ``flat_hand_mean=True``
convention (``hand = coeffs @ components + hands_mean``). ``joint_3d``/``joint_2d`` are the
annotated joints (manopth order); ``verts3d`` comes from the MANO layer. Left hands are
mirrored to right ones (see :func:`hfl_lite.data.sample.mirror_frame`).

Splits: the official setup ``s0`` ("seen subjects, camera views and grasped objects") of the
Dex-YCB toolkit, with subjects numbered by their sorted directory names and sequences by
their sorted names within each subject:

* train: every subject, sequences whose number ``i`` has ``i % 5 != 4``;
* val:   subjects 0 and 1, sequences with ``i % 5 == 4``;
* test:  subjects 2 to 9, sequences with ``i % 5 == 4``;

every camera of each sequence (``serials`` of its ``meta.yml``, else its serial folders) and
every frame (``num_frames`` of its ``meta.yml``, else the label files found), ordered subject,
sequence, camera, frame as the toolkit does. The real dataset has 10 subjects of 100
sequences; smaller sets keep the rules. Frames without a hand (``joint_3d`` all -1) count as bad frames (skip them with ``skip_bad``).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import yaml

from hfl_lite.geometry.camera import make_intrinsics

from .augment import DEXYCB_AUGMENT
from .formats import OBJECT_NAMES
from .sample import (DataError, FrameAnnotation, HandObjectDataset, mirror_frame,
                     read_image, require_key, validate_frame)

__all__ = ["DexYCB", "SPLITS", "s0_rule"]

SPLITS = ("train", "val", "test")
_COLOR = "color_{:06d}.jpg"
_LABELS = "labels_{:06d}.npz"
_LABEL_KEYS = ("seg", "pose_y", "pose_m", "joint_3d", "joint_2d")


def s0_rule(split: str, subject_index: int, sequence_index: int) -> bool:
    """Whether sequence ``sequence_index`` of subject ``subject_index`` belongs to s0 ``split``."""
    held_out = sequence_index % 5 == 4
    if split == "train":
        return not held_out
    if split == "val":
        return held_out and subject_index in (0, 1)
    if split == "test":
        return held_out and 2 <= subject_index <= 9
    raise ValueError(f"DexYCB: split must be one of {SPLITS}, got {split!r}")


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise DataError(path, "file is missing")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(path, f"not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise DataError(path, f"expected a mapping, got {type(data).__name__}")
    return data


class DexYCB(HandObjectDataset):
    """Dex-YCB frames as common samples (see the module docstring for layout and splits).

    Args:
        root: the Dex-YCB directory (subjects, ``calibration/``, ``models/``).
        split: "train", "val" or "test" of ``setup``.
        setup: only "s0" (the setup HFL-Net reports) is implemented.
        image_size, roi_size: crop side S and mask side R (None: the active preset's).
        augment: False, True (Dex-YCB ranges of the paper) or an ``AugmentConfig``.
        skip_bad: skip bad frames with a warning instead of raising ``DataError``.
        mano_root: folder with ``MANO_RIGHT.pkl``/``MANO_LEFT.pkl`` (None: the stand-in hand).
        object_models: folder of ``<ycb name>/textured_simple.obj`` (None: ``<root>/models``), or a
            function ``name -> (verts, faces)`` such as :func:`hfl_lite.synth.objects.load_object`
            (see :class:`~hfl_lite.data.sample.ObjectCatalog`).
        seed: augmentation seed (see ``HandObjectDataset``).
    """

    name = "Dex-YCB"
    default_augment = DEXYCB_AUGMENT

    def __init__(self, root, split: str = "train", setup: str = "s0", image_size: int | None = None,
                 roi_size: int | None = None, augment=False, skip_bad: bool = False, mano_root=None,
                 object_models=None, seed: int | None = None):
        if split not in SPLITS:
            raise ValueError(f"DexYCB: split must be one of {SPLITS}, got {split!r}")
        if setup != "s0":
            raise ValueError(f"DexYCB: only setup 's0' is implemented, got {setup!r}")
        super().__init__(root, split, image_size, roi_size, augment, skip_bad, seed, mano_root, object_models)
        self.setup = setup
        self._sequences: dict[str, dict] = {}
        self._meta_files: dict[str, dict] = {}  # each sequence's meta.yml as listed; checked on first use
        self._intrinsics: dict[str, torch.Tensor] = {}
        self._betas: dict[str, torch.Tensor] = {}
        self._set_ids(self._list_frames())

    # -- index ----------------------------------------------------------------------------
    def _list_frames(self) -> list[str]:
        subjects = sorted(p.name for p in self.root.iterdir()
                          if p.is_dir() and any(q.joinpath("meta.yml").is_file() for q in p.iterdir() if q.is_dir()))
        if not subjects:
            raise DataError(self.root, "no subject folder with <sequence>/meta.yml found: not a Dex-YCB directory")
        ids = []
        for s_index, subject in enumerate(subjects):
            sequences = sorted(p.name for p in (self.root / subject).iterdir() if p.is_dir())
            for q_index, sequence in enumerate(sequences):
                if not s0_rule(self.split, s_index, q_index):
                    continue
                seq_dir = self.root / subject / sequence
                meta = self._meta_files[f"{subject}/{sequence}"] = _read_yaml(seq_dir / "meta.yml")
                serials = meta.get("serials") or sorted(p.name for p in seq_dir.iterdir() if p.is_dir())
                serials = [str(v) for v in serials]
                if not serials:
                    raise DataError(seq_dir, "sequence has no camera (serial) folder")
                for serial in serials:
                    if "num_frames" in meta:
                        frames = range(int(meta["num_frames"]))
                    else:
                        frames = sorted(int(m.group(1)) for p in (seq_dir / serial).iterdir()
                                        if (m := re.fullmatch(r"labels_(\d+)\.npz", p.name)))
                    ids += [f"{subject}/{sequence}/{serial}/{f:06d}" for f in frames]
        return ids

    # -- per-sequence data (cached) ---------------------------------------------------
    def _sequence(self, subject: str, sequence: str) -> dict:
        key = f"{subject}/{sequence}"
        if key not in self._sequences:
            path = self.root / subject / sequence / "meta.yml"
            meta = self._meta_files[key]
            ycb_ids = [int(i) for i in require_key(meta, "ycb_ids", path)]
            grasp = int(require_key(meta, "ycb_grasp_ind", path))
            if not 0 <= grasp < len(ycb_ids):
                raise DataError(path, f"ycb_grasp_ind {grasp} is not an index into ycb_ids {ycb_ids}")
            side = str(require_key(meta, "mano_sides", path)[0])
            if side not in ("right", "left"):
                raise DataError(path, f"mano_sides[0] must be 'right' or 'left', got {side!r}")
            calib = str(require_key(meta, "mano_calib", path)[0])
            self._sequences[key] = dict(ycb_ids=ycb_ids, grasp=grasp, side=side, calib=calib)
        return self._sequences[key]

    def hand_side(self, index: int) -> str:
        """``"right"`` or ``"left"``: the hand of frame ``index`` as annotated (before mirroring)."""
        subject, sequence = self.ids[index].split("/")[:2]
        return self._sequence(subject, sequence)["side"]

    def intrinsics(self, serial: str) -> torch.Tensor:
        """``[3, 3]`` float64 colour intrinsics of camera ``serial`` (640x480)."""
        if serial not in self._intrinsics:
            path = self.root / "calibration" / "intrinsics" / f"{serial}_640x480.yml"
            color = require_key(_read_yaml(path), "color", path)
            try:
                values = [float(color[k]) for k in ("fx", "fy", "ppx", "ppy")]
            except (KeyError, TypeError, ValueError):
                raise DataError(path, "key 'color' must hold numbers fx, fy, ppx, ppy") from None
            self._intrinsics[serial] = make_intrinsics(*values, dtype=torch.float64)
        return self._intrinsics[serial]

    def betas(self, calib: str) -> torch.Tensor:
        """``[10]`` float64 MANO shape of calibration ``calib``."""
        if calib not in self._betas:
            path = self.root / "calibration" / f"mano_{calib}" / "mano.yml"
            betas = torch.tensor(np.asarray(require_key(_read_yaml(path), "betas", path), dtype=np.float64))
            if betas.shape != (10,):
                raise DataError(path, f"betas must hold 10 numbers, got shape {tuple(betas.shape)}")
            self._betas[calib] = betas
        return self._betas[calib]

    # -- one frame ------------------------------------------------------------------------
    def _read(self, index: int) -> FrameAnnotation:
        subject, sequence, serial, frame = self.ids[index].split("/")
        seq = self._sequence(subject, sequence)
        folder = self.root / subject / sequence / serial
        label_path = folder / _LABELS.format(int(frame))
        labels = self._read_labels(label_path)
        image = read_image(folder / _COLOR.format(int(frame)))
        ycb_id = seq["ycb_ids"][seq["grasp"]]
        if not 1 <= ycb_id <= len(OBJECT_NAMES):
            raise DataError(self.root / subject / sequence / "meta.yml", f"unknown YCB id {ycb_id} (expected 1..21)")
        name = OBJECT_NAMES[ycb_id - 1]
        ctrl3d, diameter, obj_id = self.objects.info(name)
        pose_y = labels["pose_y"]
        if pose_y.ndim != 3 or pose_y.shape[1:] != (3, 4) or pose_y.shape[0] != len(seq["ycb_ids"]):
            raise DataError(label_path, f"pose_y must be [{len(seq['ycb_ids'])}, 3, 4], got {pose_y.shape}")
        pose = torch.from_numpy(pose_y[seq["grasp"]].astype(np.float64))
        side = seq["side"]
        joints3d = torch.from_numpy(labels["joint_3d"].reshape(-1, 3).astype(np.float64))
        joints2d = torch.from_numpy(labels["joint_2d"].reshape(-1, 2).astype(np.float64))
        pose_m = torch.from_numpy(labels["pose_m"].reshape(-1).astype(np.float64))
        if joints3d.shape != (21, 3) or joints2d.shape != (21, 2) or pose_m.shape != (51,):
            got = ", ".join(str(labels[k].shape) for k in ("joint_3d", "joint_2d", "pose_m"))
            raise DataError(label_path, f"expected joint_3d [1,21,3], joint_2d [1,21,2], pose_m [1,51]; got {got}")
        if torch.isfinite(joints3d).all() and (joints3d == -1).all():
            raise DataError(label_path, "no hand in this frame (joint_3d is all -1)")
        betas = self.betas(seq["calib"])
        mano_pose = torch.cat([pose_m[:3], self.hands.pca_to_full(side, pose_m[3:48])])
        verts, joints_mano, root_rest = self.hands.forward(side, mano_pose, betas, pose_m[48:51])
        self.check_mano_joints(joints3d, joints_mano, label_path)
        frame_ann = FrameAnnotation(
            sample_id=self.ids[index], source=str(label_path), image=image,
            obj_mask=labels["seg"] == ycb_id, K=self.intrinsics(serial),
            obj_rot=pose[:, :3], obj_trans=pose[:, 3], obj_ctrl3d=ctrl3d, obj_name=name, obj_id=obj_id,
            obj_diameter=diameter, joints3d=joints3d, joints2d=joints2d, verts3d=verts, mano_pose=mano_pose,
            mano_shape=betas, mano_trans=pose_m[48:51], mano_root_rest=root_rest,
        )
        validate_frame(frame_ann)
        if side == "left":
            frame_ann = mirror_frame(frame_ann, self.hands.root_rest("right", betas))
        return frame_ann

    @staticmethod
    def _read_labels(path: Path) -> dict:
        if not path.is_file():
            raise DataError(path, "label file is missing")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in _LABEL_KEYS if k not in data.files]
                if missing:
                    raise DataError(path, f"key(s) {missing} missing (has {sorted(data.files)})")
                return {k: data[k] for k in _LABEL_KEYS}
        except DataError:
            raise
        except Exception as err:  # zipfile/pickle/ValueError: whatever a broken npz raises
            raise DataError(path, f"cannot read the label file ({type(err).__name__}: {err})") from None
