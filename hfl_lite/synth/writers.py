"""Writers of synthetic frames in the real HO3D and Dex-YCB layouts (the loaders' contract).

Everything the synthesis produces is in the OpenCV camera frame (x right, y down, z forward),
metres; the writers convert to each dataset's conventions, which they take from the reading
side (:mod:`hfl_lite.data.formats`), and are exact inverses of the readers
:class:`hfl_lite.data.HO3D` and :class:`hfl_lite.data.DexYCB`.

Conventions shared by both layouts
----------------------------------
* Images 640x480 RGB, JPEG quality 90 (OpenCV's encoder, no metadata, no timestamps).
* Objects are the project's YCB-like stand-ins (:mod:`hfl_lite.synth.objects`), with their
  models written to ``<root>/models/<name>/textured_simple.obj`` (HO3D also ``points.xyz``;
  read them with :func:`hfl_lite.data.formats.read_obj`); object poses map the model's own
  frame (origin at its bounding-box centre) to the camera: ``X_cam = R X_obj + t``.
* Hands are the stand-in MANO hand (:class:`hfl_lite.mano.ManoLayer` with ``mano_root=None``,
  or the real MANO when ``MANO_ROOT`` / ``--mano-root`` is set while generating), moved between
  frames with :func:`hfl_lite.data.formats.transform_mano` (MANO rotates the hand about its
  rest wrist, so a change of frame also moves the translation).
* Every frame is rendered independently: frames of one sequence share the object, the hand's
  shape (subject) and the cameras (Dex-YCB) or camera matrix (HO3D), and differ in grasp and
  pose; HO3D frames each have their own viewpoint.

HO3D (v2/v3 layout)
-------------------
::

    <root>/train.txt, <root>/evaluation.txt       "<sequence>/<frame>" per line (frame = %04d)
    <root>/train/<seq>/rgb/<frame>.jpg
    <root>/train/<seq>/seg/<frame>.png            640x480 RGB: object (0,255,0), hand (0,0,255),
                                                  background black (object drawn where visible;
                                                  formats.HO3D_OBJECT_CHANNEL, HO3D_HAND_CHANNEL)
    <root>/train/<seq>/meta/<frame>.pkl           dict, pickle protocol 2, numpy arrays
    <root>/evaluation/<seq>/{rgb,seg,meta}/...    same, meta as HO3D's evaluation split (below)
    <root>/evaluation_gt/<seq>/meta/<frame>.pkl   full ground truth of the evaluation frames, same
                                                  keys as train meta (hfl_lite's own addition)
    <root>/evaluation_xyz.json, evaluation_verts.json   the same, in the HO3D challenge's form:
                                                  lists in evaluation.txt order of joints [21][3]
                                                  (HO3D order) and vertices [778][3], OpenGL, m
    <root>/models/<objName>/textured_simple.obj, points.xyz

Train meta keys (3D values in HO3D's OpenGL camera frame, ``X_gl = F X_cv``,
``F = diag(1, -1, -1)``; metres): ``camMat`` [3,3] float64 (acts on OpenCV coordinates),
``handPose`` [48] float32 (full axis-angle, flat hand mean, global rotation in the GL frame),
``handBeta`` [10], ``handTrans`` [3] (``MANO(handPose, handBeta) / 1000 + handTrans`` is the hand
in the GL frame), ``handJoints3D`` [21,3] (HO3D order: MANO's 16 joints then the tips thumb,
index, middle, ring, little; manopth order = ``handJoints3D[[0,13,14,15,16,1,2,3,17,4,5,6,18,
10,11,12,19,7,8,9,20]]``), ``objRot`` [3,1] (axis-angle of ``F R_cv``), ``objTrans`` [3]
(``F t_cv``), ``objName`` str, ``objCorners3DRest`` [8,3] (bounding-box corners in the object
frame, in the order of :mod:`hfl_lite.geometry.control_points`' first 8 points),
``objCorners3D`` [8,3] (the same corners in the GL camera frame).

Evaluation meta keys, as HO3D's evaluation split: ``camMat``, ``objRot``, ``objTrans``,
``objName``, ``objCorners3D``, ``objCorners3DRest``, ``handBoundingBox`` [4] float32
``(x1, y1, x2, y2)`` = tight box of the projected hand vertices (pixels, not enlarged, clipped to
the image), ``handJoints3D`` [3] = root joint only (GL), and ``handPose``, ``handBeta``,
``handTrans`` set to ``None``. The full annotation is in ``evaluation_gt/<seq>/meta/<frame>.pkl``
(the train keys plus ``handBoundingBox``).

Dex-YCB layout
--------------
::

    <root>/<subject>/<sequence>/meta.yml          serials (8), num_frames, ycb_ids, ycb_grasp_ind,
                                                  mano_sides ["right"|"left"], mano_calib [name],
                                                  extrinsics (name)
    <root>/<subject>/<sequence>/<serial>/color_%06d.jpg
    <root>/<subject>/<sequence>/<serial>/labels_%06d.npz   seg uint8 [480,640] (0 background,
                                                  255 hand (formats.HAND_LABEL), else the ycb id
                                                  of the visible object),
                                                  pose_y float32 [n_obj,3,4] ([R|t], in ycb_ids
                                                  order), pose_m float32 [1,51], joint_3d float32
                                                  [1,21,3] (m, manopth order), joint_2d float32 [1,21,2]
    <root>/calibration/intrinsics/<serial>_640x480.yml     color: {fx, fy, ppx, ppy}
    <root>/calibration/mano_<mano_calib>/mano.yml          betas: [10]
    <root>/calibration/extrinsics_<name>/extrinsics.yml    master: serial, extrinsics: {serial:
                                                  12 floats, row-major [R|t] camera -> scene frame}
    <root>/models/<ycb name>/textured_simple.obj

Everything in the OpenCV camera frame of the serial, metres. ``pose_m`` = global axis-angle (3),
45 PCA coefficients of the side's layer with ``flat_hand_mean=False`` (``pose45 = hands_mean +
coeffs @ components``, :func:`hfl_lite.data.formats.pose_to_pca`), translation (3);
``ManoLayer(side, use_pca=True, ncomps=45, flat_hand_mean=False)(pose_m[:, :48], betas,
pose_m[:, 48:])`` / 1000 gives the hand. Left hands occur (``mano_sides: [left]``, the stand-in's
left layer). Subjects are ``2020MMDD-subject-NN`` numbered from 01 without gaps, sequences
``YYYYMMDD_HHMMSS`` sorting in creation order, serials the eight of the real rig. The synthesis
places sequences so that the official s0 rules, applied to the sorted subject and sequence
folders, give the intended splits: train = sequences ``i % 5 != 4`` of every subject; val =
``i % 5 == 4`` of subjects 0, 1; test = ``i % 5 == 4`` of subjects 2..9 (see :func:`plan_dexycb`).
The npz files are written with fixed zip timestamps (bit-for-bit reproducible); depth images are
not written.
"""
from __future__ import annotations

import io
import json
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from hfl_lite.data.formats import (GL_FLIP, HAND_LABEL, HO3D_HAND_CHANNEL, HO3D_OBJECT_CHANNEL, MANOPTH_TO_HO3D,
                                   YCB_IDS, pose_to_pca, transform_mano)
from hfl_lite.geometry.control_points import control_points_from_vertices
from hfl_lite.geometry.rotations import matrix_to_axis_angle

from . import objects

__all__ = [
    "DEXYCB_SERIALS",
    "DEXYCB_SUBJECTS",
    "HandGT",
    "ObjectGT",
    "FrameGT",
    "hand_bounding_box",
    "plan_dexycb",
    "HO3DFrameRecord",
    "HO3DWriter",
    "DexYCBWriter",
    "write_jpeg",
    "write_png",
    "write_pickle",
    "write_npz",
]

DEXYCB_SERIALS = ["836212060125", "839512060362", "840412060917", "841412060263",
                  "932122060857", "932122060861", "932122061900", "932122062010"]
"""Serial numbers of Dex-YCB's eight cameras (folder names)."""

JPEG_QUALITY = 90


# --------------------------------------------------------------------------------------------
# Ground truth of one frame (OpenCV camera frame, metres)
# --------------------------------------------------------------------------------------------

@dataclass
class HandGT:
    """The hand of a frame. ``pose`` [48] full axis-angle (flat hand mean; global rotation in the
    camera frame), ``betas`` [10], ``trans`` [3] m, ``root_rest`` [3] m (J0 of the shaped
    template), ``joints`` [21, 3] m (manopth order), ``verts`` [778, 3] m, ``side``."""

    pose: np.ndarray
    betas: np.ndarray
    trans: np.ndarray
    root_rest: np.ndarray
    joints: np.ndarray
    verts: np.ndarray
    side: str = "right"


@dataclass
class ObjectGT:
    """An object of a frame: YCB ``name`` and pose ``R`` [3, 3], ``t`` [3] m (``X_cam = R X + t``)."""

    name: str
    R: np.ndarray
    t: np.ndarray


@dataclass
class FrameGT:
    """One rendered frame: intrinsics ``K`` [3, 3], ``hand``, ``objects`` (the grasped one at
    ``grasp_index``), ``rgb`` uint8 [H, W, 3], ``label`` uint8 [H, W] (0 background,
    :data:`HAND_LABEL` hand, else the object's ycb id)."""

    K: np.ndarray
    hand: HandGT
    objects: list[ObjectGT]
    rgb: np.ndarray
    label: np.ndarray
    grasp_index: int = 0

    @property
    def grasped(self) -> ObjectGT:
        return self.objects[self.grasp_index]


# --------------------------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------------------------

def _R_to_aa(R: np.ndarray) -> np.ndarray:
    return matrix_to_axis_angle(torch.as_tensor(np.asarray(R, np.float64))).numpy()


def _project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    uvw = np.asarray(points, np.float64) @ np.asarray(K, np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]


def hand_bounding_box(frame: FrameGT) -> np.ndarray:
    """``(x1, y1, x2, y2)`` float32: tight box of the projected hand vertices, clipped to the image."""
    uv = _project(frame.hand.verts, frame.K)
    h, w = frame.label.shape
    box = np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
    return np.clip(box, [0, 0, 0, 0], [w - 1, h - 1, w - 1, h - 1]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Deterministic file writers
# --------------------------------------------------------------------------------------------

def write_jpeg(path: Path, rgb: np.ndarray, quality: int = JPEG_QUALITY) -> None:
    """RGB uint8 [H, W, 3] -> baseline JPEG (OpenCV encoder, fixed quality, no metadata)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError(f"write_jpeg: encoding failed for {path}")
    Path(path).write_bytes(buf.tobytes())


def write_png(path: Path, image: np.ndarray) -> None:
    """uint8 [H, W] or RGB [H, W, 3] -> PNG (OpenCV encoder, fixed compression)."""
    img = image[..., ::-1] if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OSError(f"write_png: encoding failed for {path}")
    Path(path).write_bytes(buf.tobytes())


def write_pickle(path: Path, data: dict) -> None:
    """A dict of numpy arrays, strings, numbers and None -> pickle protocol 2 (as HO3D's files)."""
    Path(path).write_bytes(pickle.dumps(data, protocol=2))


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _write_yaml(path: Path, data: dict) -> None:
    Path(path).write_text(yaml.safe_dump(data, default_flow_style=None, sort_keys=False))


def _corners_rest(name: str) -> np.ndarray:
    verts = torch.from_numpy(objects.get_object(name).verts.astype(np.float64))
    return control_points_from_vertices(verts)[:8].numpy()


# --------------------------------------------------------------------------------------------
# HO3D
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HO3DFrameRecord:
    """What the HO3D split lists need of one written frame: ``split``, ``frame_id``
    (``"<sequence>/<index:04d>"``), ``object_name``, and for evaluation frames the rounded
    ground truth ``xyz`` [21][3] and ``verts`` [778][3] (OpenGL frame, m) of the evaluation JSONs."""

    split: str
    frame_id: str
    object_name: str
    xyz: list | None = None
    verts: list | None = None


class HO3DWriter:
    """Writes frames in the HO3D layout under ``root`` (see the module docstring).

    Call :meth:`add` for every frame, then :meth:`close` (lists, evaluation JSONs, models).
    :meth:`add` is :meth:`write_frame` (the frame's own files; parallel workers may call it)
    followed by :meth:`record` (the split lists; in the writing process, in frame order).
    """

    SPLITS = ("train", "evaluation")

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.ids: dict[str, list[str]] = {s: [] for s in self.SPLITS}
        self.eval_xyz: list = []
        self.eval_verts: list = []
        self.names: set[str] = set()

    def meta(self, frame: FrameGT) -> dict:
        """The train-split meta dict of a frame (OpenGL frame, see the module docstring)."""
        hand, obj = frame.hand, frame.grasped
        F = GL_FLIP
        aa_gl, trans_gl = transform_mano(hand.pose[:3], hand.trans, hand.root_rest, F)
        R_gl, t_gl = F @ obj.R, F @ obj.t
        rest = _corners_rest(obj.name)
        return {
            "camMat": np.asarray(frame.K, np.float64),
            "handPose": np.concatenate([aa_gl, hand.pose[3:]]).astype(np.float32),
            "handBeta": np.asarray(hand.betas, np.float32),
            "handTrans": trans_gl.astype(np.float32),
            "handJoints3D": (np.asarray(hand.joints)[MANOPTH_TO_HO3D] @ F.T).astype(np.float32),
            "objRot": _R_to_aa(R_gl).reshape(3, 1).astype(np.float32),
            "objTrans": t_gl.astype(np.float32),
            "objName": obj.name,
            "objCorners3DRest": rest.astype(np.float32),
            "objCorners3D": ((rest @ R_gl.T) + t_gl).astype(np.float32),
        }

    def write_frame(self, split: str, sequence: str, index: int, frame: FrameGT) -> HO3DFrameRecord:
        """Write one frame's own files (rgb, seg, meta) and return what :meth:`record` needs.

        Touches no state of the writer, so worker processes can call it on writers of the same
        root in parallel; the process that calls :meth:`close` records the results in order.
        """
        if split not in self.SPLITS:
            raise ValueError(f"HO3DWriter: split must be one of {self.SPLITS}, got {split!r}")
        if frame.hand.side != "right":
            raise ValueError("HO3DWriter: HO3D has right hands only (frame.hand.side must be 'right')")
        fid = f"{index:04d}"
        folder = self.root / split / sequence
        for sub in ("rgb", "seg", "meta"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        write_jpeg(folder / "rgb" / f"{fid}.jpg", frame.rgb)
        seg = np.zeros(frame.label.shape + (3,), np.uint8)
        seg[frame.label == YCB_IDS[frame.grasped.name], HO3D_OBJECT_CHANNEL] = 255
        seg[frame.label == HAND_LABEL, HO3D_HAND_CHANNEL] = 255
        write_png(folder / "seg" / f"{fid}.png", seg)
        meta = self.meta(frame)
        xyz = verts = None
        if split == "train":
            write_pickle(folder / "meta" / f"{fid}.pkl", meta)
        else:
            meta["handBoundingBox"] = hand_bounding_box(frame)
            public = dict(meta)
            public.update(handJoints3D=meta["handJoints3D"][0].copy(), handPose=None, handBeta=None, handTrans=None)
            write_pickle(folder / "meta" / f"{fid}.pkl", public)
            gt = self.root / "evaluation_gt" / sequence / "meta"
            gt.mkdir(parents=True, exist_ok=True)
            write_pickle(gt / f"{fid}.pkl", meta)
            xyz = np.round(meta["handJoints3D"].astype(np.float64), 5).tolist()
            verts = np.round(np.asarray(frame.hand.verts, np.float64) @ GL_FLIP.T, 5).tolist()
        return HO3DFrameRecord(split, f"{sequence}/{fid}", frame.grasped.name, xyz, verts)

    def record(self, rec: HO3DFrameRecord) -> None:
        """Enter a frame written by :meth:`write_frame` in the split lists and evaluation JSONs."""
        if rec.split == "evaluation":
            self.eval_xyz.append(rec.xyz)
            self.eval_verts.append(rec.verts)
        self.names.add(rec.object_name)
        self.ids[rec.split].append(rec.frame_id)

    def add(self, split: str, sequence: str, index: int, frame: FrameGT) -> str:
        """Write one frame and record it; returns its id ``"<sequence>/<index:04d>"``."""
        rec = self.write_frame(split, sequence, index, frame)
        self.record(rec)
        return rec.frame_id

    def close(self) -> None:
        """Write ``train.txt``, ``evaluation.txt``, the evaluation JSONs and the object models."""
        self.root.mkdir(parents=True, exist_ok=True)
        for split in self.SPLITS:
            (self.root / f"{split}.txt").write_text("".join(f"{i}\n" for i in self.ids[split]))
        (self.root / "evaluation_xyz.json").write_text(json.dumps(self.eval_xyz, separators=(",", ":")))
        (self.root / "evaluation_verts.json").write_text(json.dumps(self.eval_verts, separators=(",", ":")))
        for name in sorted(self.names):
            objects.write_model(name, self.root / "models")


# --------------------------------------------------------------------------------------------
# Dex-YCB
# --------------------------------------------------------------------------------------------

@dataclass
class DexSequencePlan:
    """One planned Dex-YCB sequence: subject index (0-based), position in the subject's sorted
    sequences, split under s0 and number of frames."""

    subject: int
    position: int
    split: str
    num_frames: int


def _s0_split(subject: int, position: int) -> str:
    if position % 5 != 4:
        return "train"
    return "val" if subject < 2 else "test"


def plan_dexycb(n_train: int, n_test: int, n_cameras: int = 8, max_subjects: int = 10,
                max_sequences: int = 100) -> list[DexSequencePlan]:
    """Sequences so that s0 train / test hold about ``n_train`` / ``n_test`` images.

    Every sequence is seen by all ``n_cameras`` cameras, so images come in multiples of
    ``n_cameras`` per frame. Under s0 a sequence at position ``i`` of its subject is held out
    when ``i % 5 == 4`` (val for subjects 0-1, test for subjects 2-9), so each test sequence
    needs four train sequences before it in the same subject. Test sequences go to subjects
    2, 3, ... in blocks of five (four train, one test); the other train sequences go to
    subjects 0 and 1 alternately (a one-frame val sequence fills each fifth position), and
    past their capacity round-robin to the others. Subjects 0 and 1 always hold at least one
    sequence, so the subject folders are numbered without gaps. When the test set needs more
    images than a fifth of the train sequences can anchor, test sequences get more frames.
    Returns the plan sorted by subject and position.
    """
    if n_train < 1 or n_test < 0:
        raise ValueError(f"plan_dexycb: need n_train >= 1 and n_test >= 0, got {n_train}, {n_test}")
    shots_train = math.ceil(n_train / n_cameras)
    shots_test = math.ceil(n_test / n_cameras)
    capacity = (max_subjects * max_sequences * 4) // 5
    train_frames = max(1, math.ceil(shots_train / capacity))
    n_train_seq = math.ceil(shots_train / train_frames)
    n_test_seq = min(shots_test, n_train_seq // 4, (max_subjects - 2) * (max_sequences // 5))
    if shots_test > 0:
        n_test_seq = max(n_test_seq, 1)
        n_train_seq = max(n_train_seq, 4 * n_test_seq + 2)
    test_frames = [shots_test // n_test_seq + (k < shots_test % n_test_seq) for k in range(n_test_seq)]
    kinds: dict[int, list[str]] = {s: [] for s in range(max_subjects)}
    for k in range(n_test_seq):
        kinds[2 + k % (max_subjects - 2)] += ["train"] * 4 + ["test"]
    remaining = n_train_seq - 4 * n_test_seq
    order = [0, 1] * max_sequences + [s for _ in range(max_sequences) for s in range(2, max_subjects)]
    for s in order:
        if remaining == 0:
            break
        if len(kinds[s]) >= max_sequences:
            continue
        if len(kinds[s]) % 5 == 4:
            kinds[s].append(_s0_split(s, 4))
        if len(kinds[s]) < max_sequences:
            kinds[s].append("train")
            remaining -= 1
    if remaining:
        raise ValueError(f"plan_dexycb: {n_train} train images need more than "
                         f"{max_subjects} x {max_sequences} sequences")
    plan, test_k = [], 0
    for s, ks in kinds.items():
        for pos, kind in enumerate(ks):
            if kind != _s0_split(s, pos):
                raise AssertionError(f"plan_dexycb: subject {s} position {pos} planned {kind}")
            if kind == "test":
                frames, test_k = test_frames[test_k], test_k + 1
            else:
                frames = train_frames if kind == "train" else 1
            plan.append(DexSequencePlan(subject=s, position=pos, split=kind, num_frames=frames))
    return plan


DEXYCB_SUBJECTS = ["20200709-subject-01", "20200813-subject-02", "20200820-subject-03", "20200903-subject-04",
                   "20200908-subject-05", "20200918-subject-06", "20200928-subject-07", "20201002-subject-08",
                   "20201015-subject-09", "20201022-subject-10"]
"""Dex-YCB's subject folder names (sorted = subject index)."""


def dexycb_sequence_name(subject: int, position: int) -> str:
    """Folder name of a sequence: ``YYYYMMDD_HHMMSS``, sorting in ``position`` order."""
    date = DEXYCB_SUBJECTS[subject].split("-")[0]
    seconds = 14 * 3600 + 60 * position
    return f"{date}_{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


class DexYCBWriter:
    """Writes frames in the Dex-YCB layout under ``root`` (see the module docstring).

    Per sequence: :meth:`begin_sequence` (meta.yml), then :meth:`add` (or :meth:`write_frame`
    in a worker and :meth:`record` here) for each (serial, frame);
    per subject and side :meth:`write_mano_calib`; per camera :meth:`write_intrinsics`; at the
    end :meth:`close` (models).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.names: set[str] = set()

    def write_intrinsics(self, serial: str, K: np.ndarray) -> None:
        """``calibration/intrinsics/<serial>_640x480.yml`` from ``K [3, 3]`` (pixels)."""
        folder = self.root / "calibration" / "intrinsics"
        folder.mkdir(parents=True, exist_ok=True)
        K = np.asarray(K, np.float64)
        _write_yaml(folder / f"{serial}_640x480.yml",
                    {"color": {"fx": round(float(K[0, 0]), 4), "fy": round(float(K[1, 1]), 4),
                               "ppx": round(float(K[0, 2]), 4), "ppy": round(float(K[1, 2]), 4)}})

    def write_mano_calib(self, calib: str, betas: np.ndarray) -> None:
        """``calibration/mano_<calib>/mano.yml`` with the hand shape ``betas [10]``."""
        folder = self.root / "calibration" / f"mano_{calib}"
        folder.mkdir(parents=True, exist_ok=True)
        _write_yaml(folder / "mano.yml", {"betas": [round(float(b), 6) for b in betas]})

    def write_extrinsics(self, name: str, cam_to_scene: dict[str, np.ndarray]) -> None:
        """``calibration/extrinsics_<name>/extrinsics.yml``: per serial the ``[3, 4]`` camera ->
        scene transform (metres); the first serial is the master."""
        folder = self.root / "calibration" / f"extrinsics_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        ext = {s: [round(float(x), 6) for x in np.asarray(T, np.float64)[:3, :4].reshape(-1)]
               for s, T in cam_to_scene.items()}
        _write_yaml(folder / "extrinsics.yml", {"master": next(iter(cam_to_scene)), "extrinsics": ext})

    def begin_sequence(self, subject: str, sequence: str, serials: list[str], num_frames: int,
                       ycb_ids: list[int], grasp_index: int, side: str, calib: str, extrinsics: str) -> Path:
        """Create ``<subject>/<sequence>/`` with its ``meta.yml``; returns the folder."""
        if side not in ("right", "left"):
            raise ValueError(f"DexYCBWriter.begin_sequence: side must be 'right' or 'left', got {side!r}")
        folder = self.root / subject / sequence
        folder.mkdir(parents=True, exist_ok=True)
        _write_yaml(folder / "meta.yml", {
            "serials": list(serials), "num_frames": int(num_frames), "ycb_ids": [int(i) for i in ycb_ids],
            "ycb_grasp_ind": int(grasp_index), "mano_sides": [side], "mano_calib": [calib],
            "extrinsics": extrinsics})
        return folder

    def write_frame(self, subject: str, sequence: str, serial: str, index: int, frame: FrameGT,
                    hands_mean: np.ndarray, components: np.ndarray) -> tuple[str, ...]:
        """Write ``color_%06d.jpg`` and ``labels_%06d.npz`` of one camera and frame; returns the
        frame's object names for :meth:`record`.

        ``hands_mean`` [45] and ``components`` [45, 45]: the PCA basis of the hand's side.
        Touches no state of the writer (safe in parallel worker processes, as
        :meth:`HO3DWriter.write_frame`).
        """
        folder = self.root / subject / sequence / serial
        folder.mkdir(parents=True, exist_ok=True)
        write_jpeg(folder / f"color_{index:06d}.jpg", frame.rgb)
        hand = frame.hand
        coeffs = pose_to_pca(hand.pose[3:], hands_mean, components)
        pose_m = np.concatenate([hand.pose[:3], coeffs, hand.trans])[None].astype(np.float32)
        pose_y = np.stack([np.concatenate([o.R, np.asarray(o.t).reshape(3, 1)], 1) for o in frame.objects])
        joints = np.asarray(hand.joints, np.float64)
        write_npz(folder / f"labels_{index:06d}.npz", seg=frame.label.astype(np.uint8),
                  pose_y=pose_y.astype(np.float32), pose_m=pose_m,
                  joint_3d=joints[None].astype(np.float32), joint_2d=_project(joints, frame.K)[None].astype(np.float32))
        return tuple(o.name for o in frame.objects)

    def record(self, object_names) -> None:
        """Note objects whose models :meth:`close` must write."""
        self.names.update(object_names)

    def add(self, subject: str, sequence: str, serial: str, index: int, frame: FrameGT,
            hands_mean: np.ndarray, components: np.ndarray) -> None:
        """:meth:`write_frame` and :meth:`record` in one call."""
        self.record(self.write_frame(subject, sequence, serial, index, frame, hands_mean, components))

    def close(self) -> None:
        """Write the object models (``textured_simple.obj`` only)."""
        for name in sorted(self.names):
            objects.write_model(name, self.root / "models", points=False)
