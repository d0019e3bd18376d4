"""The common sample: from one frame's full-image annotations to HFL-Net's cropped input.

Both loaders (:mod:`hfl_lite.data.ho3d`, :mod:`hfl_lite.data.dexycb`) read their files into
a :class:`FrameAnnotation` (full image, OpenCV camera frame, metres, right hand) and call
:func:`build_sample`, which crops, augments and returns the sample dictionary.

The sample (tensors float32 unless said; crop pixels; metres; OpenCV camera frame of the crop):

==============  ============  =================================================================
key             shape         meaning
==============  ============  =================================================================
image           [3, S, S]     RGB crop in [0, 1], no mean/std normalisation
K               [3, 3]        intrinsics of the crop
crop_affine     [2, 3]        full-image pixels -> crop pixels (of the mirrored image for
                              left hands)
joints2d        [21, 2]       manopth joint order (wrist, thumb MCP..tip, index, ..., little)
joints3d        [21, 3]       camera frame
verts3d         [778, 3]      camera frame
mano_pose       [48]          axis-angle, global + 15 joints, flat_hand_mean=True, right hand
mano_shape      [10]
mano_trans      [3]           ``ManoLayer(mano_pose, mano_shape, mano_trans) / 1000`` = verts3d
                              (exactly for right hands; for mirrored left hands up to the
                              asymmetry between the left and right hand models)
root3d          [3]           the wrist (joint 0), camera frame
hand_box        [4]           x1,y1,x2,y2: tight box of joints2d enlarged 1.1x (HO3D
                              evaluation: the dataset's hand box, see below)
obj_box         [4]           tight box of obj_ctrl2d
obj_rot         [3, 3]        object -> camera rotation; obj_trans [3]: X_cam = R X_obj + t
obj_trans       [3]
obj_ctrl3d      [21, 3]       control points in the object frame (DESIGN.md order)
obj_ctrl2d      [21, 2]       their projections
obj_mask        [R, R]        object segmentation sampled over obj_box (0/1)
obj_id          [] int64      index into ``hfl_lite.data.formats.OBJECT_NAMES`` (-1: not there)
obj_name        str
obj_diameter    []            metres
is_left         [] bool       the frame showed a left hand, mirrored to a right one
sample_id       str           e.g. "SEQ/0000"
==============  ============  =================================================================

In the HO3D evaluation split the crop and ``hand_box`` come from the dataset's hand bounding
box (transformed by the crop), as at test time; frames without a hand annotation there (the
real dataset) have no ``joints2d``, ``joints3d``, ``verts3d`` and ``mano_*`` keys, and
``root3d`` comes from the dataset's root joint. Frames without a segmentation image (the
real HO3D evaluation split) have no ``obj_mask``.

Augmentation (``params``) moves, scales and turns the crop; the turn is a rotation of the
camera frame about its optical axis, applied alike to the 3D points, the MANO global rotation
and translation and the object pose, with ``K`` following (see :mod:`hfl_lite.data.crop`).

Mirrored (left-hand) frames: the image is flipped horizontally, ``K`` adjusted, every 3D
point has its x negated, MANO poses become ``(x, -y, -z)`` per joint, and the object pose
becomes ``(M R M, M t)`` with ``M = diag(-1, 1, 1)``: it poses the object model mirrored in
its own x axis; ``obj_ctrl3d`` is given mirrored (``M ctrl3d``, same index order).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from hfl_lite.errors import UserError
from hfl_lite.geometry.camera import enlarge_box, project_points, tight_box, transform_points
from hfl_lite.geometry.control_points import control_points_from_vertices
from hfl_lite.threads import cpu_threads

from .augment import AugmentConfig, AugmentParams, apply_photometric, sample_params
from .crop import crop_square, make_crop_transform
from .formats import YCB_IDS, mesh_diameter, read_obj, transform_mano

__all__ = ["DataError", "FrameAnnotation", "HAND_BOX_ENLARGE", "HandObjectDataset", "ManoHands", "ObjectCatalog",
           "PHYSICAL_LIMITS", "build_sample", "frame_boxes", "image_bytes_complete", "mirror_frame", "read_image", "require_key",
           "validate_frame"]

log = logging.getLogger("hfl_lite.data")

HAND_BOX_ENLARGE = 1.1
JOINT_MISMATCH_M = 0.002  # annotated vs MANO-layer joints: warn above this gap (metres)
MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
# Plausible annotations (metres, pixels): finite values far outside these are not a hand or an
# object in view but a broken file (a joint at 1e30 m, a hand 3 m long), and a frame holding one
# is a bad frame like an unreadable one.
PHYSICAL_LIMITS = {
    "max_distance_m": 10.0,  # from the camera: hands and objects of both datasets lie within about 1.5 m
    "hand_extent_m": 0.35,  # from the wrist to any joint or vertex (an adult hand: about 0.2 m)
    "max_image_offset": 10.0,  # 2D joints and boxes: at most this many image sizes outside the image
}


class DataError(UserError, ValueError):
    """A dataset file is missing, unreadable, or holds an invalid annotation.

    ``path`` names the file at fault and ``problem`` says what is wrong with it.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class FrameAnnotation:
    """One frame as read from disk, before cropping (OpenCV frame, metres, float64 tensors).

    image:      ``[H, W, 3]`` uint8 RGB
    obj_mask:   ``[H, W]`` bool, the grasped object's pixels (None: no segmentation)
    K:          ``[3, 3]`` intrinsics (pixels)
    obj_rot, obj_trans: ``[3, 3]``, ``[3]``: ``X_cam = R X_obj + t``
    obj_ctrl3d: ``[21, 3]`` control points, object frame
    joints3d:   ``[21, 3]`` manopth order, or None when the frame has no hand annotation
    joints2d:   ``[21, 2]`` pixels as annotated; None -> projected from ``joints3d``
    verts3d:    ``[778, 3]``; mano_pose ``[48]``; mano_shape ``[10]``; mano_trans ``[3]``
    mano_root_rest: ``[3]`` the wrist of the shaped hand in its rest pose, without translation
                (MANO rotates the hand about it; needed to rotate ``mano_trans``)
    root3d:     ``[3]`` the wrist (used when there are no joints)
    hand_box:   ``[4]`` a full-image hand box given by the dataset (HO3D evaluation); when set it
                defines the crop and the sample's ``hand_box`` instead of the joints
    source:     the annotation file, named in errors
    hand_source: the file the hand annotation came from when it is another one (HO3D evaluation:
                the ground-truth file of the synthetic sets), named in errors about the hand
    """

    sample_id: str
    source: str
    image: np.ndarray
    obj_mask: np.ndarray | None
    K: torch.Tensor
    obj_rot: torch.Tensor
    obj_trans: torch.Tensor
    obj_ctrl3d: torch.Tensor
    obj_name: str
    obj_id: int
    obj_diameter: float
    joints3d: torch.Tensor | None = None
    joints2d: torch.Tensor | None = None
    verts3d: torch.Tensor | None = None
    mano_pose: torch.Tensor | None = None
    mano_shape: torch.Tensor | None = None
    mano_trans: torch.Tensor | None = None
    mano_root_rest: torch.Tensor | None = None
    root3d: torch.Tensor | None = None
    hand_box: torch.Tensor | None = None
    is_left: bool = False
    hand_source: str | None = None

    @property
    def has_hand(self) -> bool:
        """True when the frame carries a full hand annotation (joints, MANO)."""
        return self.joints3d is not None


_SHAPES = {
    "K": (3, 3), "obj_rot": (3, 3), "obj_trans": (3,), "obj_ctrl3d": (21, 3), "joints3d": (21, 3),
    "joints2d": (21, 2), "verts3d": (778, 3), "mano_pose": (48,), "mano_shape": (10,), "mano_trans": (3,),
    "mano_root_rest": (3,), "root3d": (3,), "hand_box": (4,),
}


def validate_frame(frame: FrameAnnotation) -> None:
    """Raise :class:`DataError` (naming ``frame.source``) when an annotation is unusable.

    Checks shapes, NaN/inf values, the image and mask sizes, the intrinsics, that the hand
    and the object lie in front of the camera, and that frames without hand joints at least
    have a hand box and a root joint.
    """
    src = frame.source
    if frame.image.ndim != 3 or frame.image.shape[2] != 3 or frame.image.dtype != np.uint8:
        raise DataError(src, f"image must be [H, W, 3] uint8 RGB, got {frame.image.shape} {frame.image.dtype}")
    if frame.obj_mask is not None and frame.obj_mask.shape != frame.image.shape[:2]:
        raise DataError(src, f"object mask is {frame.obj_mask.shape[:2]} but the image is {frame.image.shape[:2]}")
    for f in fields(frame):
        value = getattr(frame, f.name)
        if f.name not in _SHAPES or value is None:
            continue
        if tuple(value.shape) != _SHAPES[f.name]:
            raise DataError(src, f"{f.name} must have shape {_SHAPES[f.name]}, got {tuple(value.shape)}")
        if not torch.isfinite(value).all():
            raise DataError(src, f"{f.name} contains NaN or infinite values")
    if not np.isfinite(frame.obj_diameter) or frame.obj_diameter <= 0:
        raise DataError(src, f"object diameter must be a positive number, got {frame.obj_diameter}")
    K = frame.K
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not torch.equal(K[2], K.new_tensor([0.0, 0.0, 1.0])) or K[1, 0] != 0:
        raise DataError(src, "intrinsics are not a pinhole matrix [[fx,s,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0: "
                             f"{K.tolist()}")
    if frame.obj_trans[2] <= 0:
        raise DataError(src, f"object centre is not in front of the camera (z = {float(frame.obj_trans[2]):.4f} m); "
                             "is the annotation in the OpenCV frame?")
    if frame.has_hand:
        hand_src = frame.hand_source or src
        if (frame.joints3d[:, 2] <= 0).any():
            raise DataError(hand_src, "hand joints lie behind the camera (z <= 0); is the annotation in the OpenCV "
                                      "frame?")
        missing = [n for n in ("verts3d", "mano_pose", "mano_shape", "mano_trans", "mano_root_rest")
                   if getattr(frame, n) is None]
        if missing:
            raise DataError(hand_src, f"hand joints given without {', '.join(missing)}")
    elif frame.hand_box is None or frame.root3d is None:
        raise DataError(src, "frame has neither hand joints nor a hand bounding box and root joint")
    _check_physical_limits(frame)


def _check_physical_limits(frame: FrameAnnotation) -> None:
    """:data:`PHYSICAL_LIMITS`: everything within reach of the camera, the object's control points
    and the wrist in front of it, the hand no larger than a hand, 2D values near the image."""
    src, limits = frame.source, PHYSICAL_LIMITS
    hand_src = frame.hand_source or src
    far = limits["max_distance_m"]
    for name in ("obj_trans", "root3d", "joints3d", "verts3d", "mano_trans"):
        value = getattr(frame, name)
        distance = None if value is None else float(value.norm(dim=-1).max())
        if distance is not None and distance > far:
            raise DataError(src if name in ("obj_trans", "root3d") else hand_src,
                            f"{name} lies {distance:.3g} m from the camera, beyond the plausible {far:g} m: the "
                            "annotation is broken (or not in metres)")
    ctrl = transform_points(frame.obj_ctrl3d, frame.obj_rot, frame.obj_trans)
    if (ctrl[:, 2] <= 0).any():
        raise DataError(src, f"part of the object's bounding box lies behind the camera (z down to "
                             f"{float(ctrl[:, 2].min()):.3f} m): obj_rot/obj_trans are broken")
    if frame.root3d is not None and frame.root3d[2] <= 0:
        raise DataError(src, f"the wrist is not in front of the camera (z = {float(frame.root3d[2]):.4f} m)")
    if frame.has_hand:
        for name in ("joints3d", "verts3d"):
            extent = float((getattr(frame, name) - frame.joints3d[0]).norm(dim=-1).max())
            if extent > limits["hand_extent_m"]:
                raise DataError(hand_src, f"{name} reach {extent:.3g} m from the wrist, more than a hand's "
                                          f"{limits['hand_extent_m']:g} m: the hand annotation is broken")
    h, w = frame.image.shape[:2]
    span = limits["max_image_offset"] * max(h, w)
    for name in ("joints2d", "hand_box"):
        value = getattr(frame, name)
        offset = None if value is None else float(value.abs().max())
        if offset is not None and offset > span:
            raise DataError(hand_src if name == "joints2d" else src,
                            f"{name} lies {offset:.3g} px from the image origin, far outside the {w} x {h} image: "
                            "the annotation is broken")
    if frame.hand_box is not None:
        x1, y1, x2, y2 = frame.hand_box.tolist()
        if not (x2 - x1 >= 1 and y2 - y1 >= 1):
            raise DataError(src, f"hand box {frame.hand_box.tolist()} is empty or inverted (x2 <= x1 or y2 <= y1)")


def mirror_frame(frame: FrameAnnotation, mano_root_rest_right: torch.Tensor | None) -> FrameAnnotation:
    """Mirror a left-hand frame into a right-hand one (see the module docstring).

    Args:
        frame: a left-hand frame as annotated (the result has ``is_left=True``).
        mano_root_rest_right: ``[3]`` the right hand model's rest wrist for the same shape
            (None when the frame has no MANO annotation). The mirrored translation is
            ``M (J0_left + t_left) - J0_right``, which keeps the wrist where the mirror puts it.
    """
    width = frame.image.shape[1]
    flip_px = torch.tensor([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    M = MIRROR

    def pts3(x):
        return None if x is None else x * M.diagonal()

    def pts2(x):
        return None if x is None else torch.stack([width - 1.0 - x[..., 0], x[..., 1]], dim=-1)

    pose = None
    if frame.mano_pose is not None:
        pose = (frame.mano_pose.reshape(16, 3) * frame.mano_pose.new_tensor([1.0, -1.0, -1.0])).reshape(48)
    trans = None
    if frame.mano_trans is not None:
        if mano_root_rest_right is None:
            raise ValueError("mirror_frame: mano_root_rest_right is needed to mirror a MANO translation")
        trans = M @ (frame.mano_root_rest + frame.mano_trans) - mano_root_rest_right
    hand_box = None
    if frame.hand_box is not None:
        x1, y1, x2, y2 = frame.hand_box.unbind(-1)
        hand_box = torch.stack([width - 1.0 - x2, y1, width - 1.0 - x1, y2])
    return replace(
        frame,
        image=cv2.flip(frame.image, 1),
        obj_mask=None if frame.obj_mask is None else np.ascontiguousarray(frame.obj_mask[:, ::-1]),
        K=flip_px @ frame.K @ M,
        obj_rot=M @ frame.obj_rot @ M,
        obj_trans=M @ frame.obj_trans,
        obj_ctrl3d=pts3(frame.obj_ctrl3d),
        joints3d=pts3(frame.joints3d),
        joints2d=pts2(frame.joints2d),
        verts3d=pts3(frame.verts3d),
        mano_pose=pose,
        mano_trans=trans,
        mano_root_rest=mano_root_rest_right if frame.mano_root_rest is not None else None,
        root3d=pts3(frame.root3d),
        hand_box=hand_box,
        is_left=True,
    )


def frame_boxes(frame: FrameAnnotation) -> tuple[torch.Tensor, torch.Tensor]:
    """The full-image boxes ``(hand [4], object [4])`` (pixels, ``x1, y1, x2, y2``) that a frame is
    cropped around: the dataset's hand box where it gives one (HO3D evaluation), else the tight box
    of the 2D joints enlarged ``HAND_BOX_ENLARGE`` times; the tight box of the object's projected
    control points."""
    obj_box = tight_box(project_points(transform_points(frame.obj_ctrl3d, frame.obj_rot, frame.obj_trans), frame.K))
    if frame.hand_box is not None:
        return frame.hand_box, obj_box
    joints2d = frame.joints2d if frame.joints2d is not None else project_points(frame.joints3d, frame.K)
    return enlarge_box(tight_box(joints2d), HAND_BOX_ENLARGE), obj_box


def build_sample(frame: FrameAnnotation, image_size: int, roi_size: int,
                 params: AugmentParams | None = None) -> dict:
    """Crop (and, with ``params``, augment) one frame into the common sample.

    Args:
        frame: a validated, right-hand :class:`FrameAnnotation`.
        image_size: crop side ``S`` (pixels).
        roi_size: side ``R`` of ``obj_mask``.
        params: one augmentation draw, or None for the plain crop.

    Returns:
        The sample dictionary described in the module docstring.
    """
    params = params or AugmentParams()
    K = frame.K
    ctrl2d_full = project_points(transform_points(frame.obj_ctrl3d, frame.obj_rot, frame.obj_trans), K)
    if frame.has_hand:
        joints2d_full = frame.joints2d if frame.joints2d is not None else project_points(frame.joints3d, K)
    centre, side = crop_square(*frame_boxes(frame))
    centre = centre + side * centre.new_tensor(params.shift)
    crop = make_crop_transform(K, centre, float(side) * params.scale, image_size, params.angle)

    ctrl2d = crop.points2d(ctrl2d_full)
    obj_box = tight_box(ctrl2d)
    sample = {
        "image": apply_photometric(crop.warp_image(frame.image), params),
        "K": crop.K,
        "crop_affine": crop.A[:2],
        "obj_rot": crop.rotation(frame.obj_rot),
        "obj_trans": crop.points3d(frame.obj_trans),
        "obj_ctrl3d": frame.obj_ctrl3d,
        "obj_ctrl2d": ctrl2d,
        "obj_box": obj_box,
    }
    if frame.obj_mask is not None:
        sample["obj_mask"] = crop.sample_mask(frame.obj_mask, obj_box, roi_size)
    if frame.has_hand:
        global_aa, trans = transform_mano(frame.mano_pose[:3].numpy(), frame.mano_trans.numpy(),
                                          frame.mano_root_rest.numpy(), crop.R.numpy())
        sample.update(
            joints2d=crop.points2d(joints2d_full),
            joints3d=crop.points3d(frame.joints3d),
            verts3d=crop.points3d(frame.verts3d),
            mano_pose=torch.cat([torch.from_numpy(global_aa), frame.mano_pose[3:]]),
            mano_shape=frame.mano_shape,
            mano_trans=torch.from_numpy(trans),
            root3d=crop.points3d(frame.joints3d[0]),
        )
    else:
        sample["root3d"] = crop.points3d(frame.root3d)
    if frame.hand_box is None:
        sample["hand_box"] = enlarge_box(tight_box(sample["joints2d"]), HAND_BOX_ENLARGE)
    else:
        sample["hand_box"] = crop.box(frame.hand_box)
    out = {k: v.to(torch.float32) for k, v in sample.items()}
    out.update(
        obj_id=torch.tensor(frame.obj_id, dtype=torch.int64),
        obj_name=frame.obj_name,
        obj_diameter=torch.tensor(frame.obj_diameter, dtype=torch.float32),
        is_left=torch.tensor(bool(frame.is_left)),
        sample_id=frame.sample_id,
    )
    return out


def require_key(mapping: dict, key: str, path):
    """``mapping[key]``, or :class:`DataError` naming ``path`` when the key is absent or None."""
    if key not in mapping or mapping[key] is None:
        raise DataError(path, f"key {key!r} is missing")
    return mapping[key]


def image_bytes_complete(data: bytes) -> bool:
    """False for a JPEG or PNG whose image data begins but is cut short (else True).

    A JPEG cut short may still decode (libjpeg fills the rest with grey and only warns on
    stderr): its last start-of-scan marker ``FF DA`` is then followed by no end-of-image marker
    ``FF D9`` (``FF`` bytes inside the compressed data are always followed by ``00``, so neither
    marker occurs there by chance; a thumbnail in the header ends before the main image's scans).
    A PNG is cut short when no ``IEND`` chunk follows its last ``IDAT`` chunk. Files that never
    reach their image data are left to the decoder to refuse.
    """
    if data[:2] == b"\xff\xd8":
        scan = data.rfind(b"\xff\xda")
        return scan < 0 or data.rfind(b"\xff\xd9") > scan
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        idat = data.rfind(b"IDAT")
        return idat < 0 or data.rfind(b"IEND") > idat
    return True


def read_image(path: Path) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB, or :class:`DataError` naming a missing, undecodable or truncated
    file (:func:`image_bytes_complete`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file is missing")
    data = path.read_bytes()
    if not image_bytes_complete(data):
        raise DataError(path, "image file is truncated (its end marker is missing): copy or download it again")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise DataError(path, "image cannot be decoded (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class ObjectCatalog:
    """Control points, diameter and id of objects by name, from model files or a mesh function.

    Args:
        models: a folder of ``<name>/textured_simple.obj`` (the YCB layout both datasets use), or
            a function ``name -> (verts [V, 3] metres, faces [F, 3])``, e.g.
            :func:`hfl_lite.synth.objects.load_object` for the package's own procedural objects.
    """

    def __init__(self, models: str | Path | Callable[[str], tuple[np.ndarray, np.ndarray]]):
        self.models = models if callable(models) else Path(models)
        self._info: dict[str, tuple[torch.Tensor, float, int]] = {}
        self._meshes: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def mesh(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(verts [V, 3] float32 metres, faces [F, 3] int64)`` of object ``name`` (read once)."""
        if name not in self._meshes:
            self._meshes[name] = self._read_mesh(name)
        return self._meshes[name]

    def _read_mesh(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if callable(self.models):
            try:
                return self.models(name)
            except KeyError as err:
                raise DataError(name, f"no mesh for object {name!r} ({err})") from None
        path = self.models / name / "textured_simple.obj"
        if not path.is_file():
            raise DataError(path, f"model of object {name!r} is missing (object models are read from "
                                  f"{self.models}; pass object_models= to read them elsewhere)")
        try:
            return read_obj(path)
        except (OSError, ValueError, IndexError) as err:
            raise DataError(path, f"cannot read the object model ({err})") from None

    def info(self, name: str) -> tuple[torch.Tensor, float, int]:
        """``(control points [21, 3] float64 m, diameter m, index in OBJECT_NAMES or -1)``."""
        if name not in self._info:
            verts = self.mesh(name)[0].astype(np.float64)
            ctrl = control_points_from_vertices(torch.from_numpy(verts))
            self._info[name] = (ctrl, mesh_diameter(verts), YCB_IDS.get(name, 0) - 1)
        return self._info[name]


class ManoHands:
    """The MANO layers a loader needs, per side, made on first use.

    Poses use the full axis-angle convention of the sample (``use_pca=False``,
    ``flat_hand_mean=True``). ``mano_root`` is the folder of ``MANO_RIGHT.pkl`` and
    ``MANO_LEFT.pkl`` (None: the project's stand-in hand; see :mod:`hfl_lite.mano`).
    Inputs and outputs are float64 tensors in metres.
    """

    def __init__(self, mano_root=None):
        self.mano_root = mano_root
        self._layers: dict[tuple[str, bool], torch.nn.Module] = {}

    def layer(self, side: str, pca: bool = False) -> torch.nn.Module:
        """``ManoLayer`` of ``side``: full pose and flat mean, or (``pca``) Dex-YCB's 45-PCA form."""
        from hfl_lite.mano import ManoLayer

        key = (side, pca)
        if key not in self._layers:
            if pca:
                self._layers[key] = ManoLayer(mano_root=self.mano_root, side=side, use_pca=True, ncomps=45,
                                              flat_hand_mean=False, dtype=torch.float64)
            else:
                self._layers[key] = ManoLayer(mano_root=self.mano_root, side=side, use_pca=False,
                                              flat_hand_mean=True, dtype=torch.float64)
        return self._layers[key]

    @torch.no_grad()
    def forward(self, side: str, pose: torch.Tensor, betas: torch.Tensor, trans: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MANO of one hand: ``pose [48]``, ``betas [10]``, ``trans [3]`` (m).

        Returns ``(verts [778, 3], joints [21, 3], root_rest [3])`` in metres; ``root_rest``
        is the wrist before translation (MANO rotates the hand about it), so the wrist is
        ``root_rest + trans`` whatever the pose.
        """
        verts, joints = self.layer(side)(pose[None].double(), betas[None].double())
        verts, joints = verts[0] / 1000, joints[0] / 1000
        return verts + trans, joints + trans, joints[0]

    def root_rest(self, side: str, betas: torch.Tensor) -> torch.Tensor:
        """``[3]`` wrist of the shaped hand of ``side`` before translation (metres)."""
        zero = torch.zeros(3, dtype=torch.float64)
        return self.forward(side, torch.zeros(48, dtype=torch.float64), betas, zero)[2]

    def pca_to_full(self, side: str, coeffs: torch.Tensor) -> torch.Tensor:
        """Dex-YCB's 45 PCA coefficients (``flat_hand_mean=False``) -> 45 axis-angle values
        of the 15 finger joints in the flat-mean convention: ``coeffs @ components + mean``."""
        pca = self.layer(side, pca=True)
        return coeffs @ pca.th_selected_comps + pca.th_hands_mean.reshape(45)


class HandObjectDataset(torch.utils.data.Dataset):
    """Shared machinery of the HO3D and Dex-YCB loaders: crop sizes, augmentation, bad input.

    Subclasses list their frames with ``_set_ids`` and implement ``_read(index)`` (one frame
    from disk, raising :class:`DataError` for anything missing or wrong). ``hands``
    (:class:`ManoHands` of ``mano_root``) and ``objects`` (:class:`ObjectCatalog` of
    ``object_models``, default ``<root>/models``) serve them.

    Augmentation randomness: with ``seed=None`` each draw takes a seed from torch's global
    generator, which ``torch.manual_seed`` fixes and which ``DataLoader`` seeds differently
    per worker and per epoch; with an integer ``seed`` the draw of index ``i`` is fixed by
    ``(seed, epoch, i)`` (call :meth:`set_epoch` to vary it between epochs).

    Bad frames: by default the first one raises :class:`DataError`. With ``skip_bad=True``
    each bad frame logs one warning and is replaced by the next good frame; the bad indices
    are recorded in shared memory, so ``DataLoader`` workers report to the same record:
    :attr:`skipped` counts them and :meth:`skip_report` returns (and logs) a summary, e.g. at
    the end of an epoch.
    """

    name = "dataset"
    default_augment: AugmentConfig = AugmentConfig()

    def __init__(self, root, split: str, image_size: int | None, roi_size: int | None,
                 augment: bool | AugmentConfig, skip_bad: bool, seed: int | None, mano_root, object_models):
        from hfl_lite.presets import get_preset

        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{type(self).__name__}: root {str(self.root)!r} is not a directory")
        self.hands = ManoHands(mano_root)
        self.objects = ObjectCatalog(object_models if object_models is not None else self.root / "models")
        self.split = split
        preset = get_preset() if image_size is None or roi_size is None else None
        self.image_size = int(image_size if image_size is not None else preset.image_size)
        self.roi_size = int(roi_size if roi_size is not None else preset.roi_size)
        if augment is True:
            augment = self.default_augment
        self.augment: AugmentConfig | None = augment or None
        self.skip_bad = bool(skip_bad)
        self.seed = seed
        self.epoch = 0
        self.ids: list[str] = []
        self.split_source: Path = self.root  # what lists the split's frames (named when it lists none)
        self._bad = torch.zeros(0, dtype=torch.bool)
        self._reasons: dict[int, str] = {}
        self._warned_mismatch = False

    def check_mano_joints(self, annotated: torch.Tensor, from_mano: torch.Tensor, path) -> None:
        """Warn once when annotated joints and the MANO layer's joints disagree (wrong hand model?).

        ``annotated``, ``from_mano``: ``[21, 3]`` metres. The sample keeps the annotated joints
        and the layer's vertices either way.
        """
        gap = float((annotated - from_mano).norm(dim=-1).max())
        if gap > JOINT_MISMATCH_M and not self._warned_mismatch:
            self._warned_mismatch = True
            log.warning("%s: annotated joints and the joints of the MANO layer differ by up to %.1f mm; is "
                        "mano_root the hand model the annotation was made with (the stand-in hand is not "
                        "MANO)? Samples keep the annotated joints and the layer's vertices.", path, gap * 1000)

    def _set_ids(self, ids: list[str]) -> None:
        """Fix the frame list; the bad-frame record lives in shared memory for the workers."""
        if not ids:
            log.warning("%s: the %s split of %s has no frames", self.root, self.split, self.name)
        self.ids = list(ids)
        self._bad = torch.zeros(len(self.ids), dtype=torch.bool).share_memory_()

    def require_frames(self) -> None:
        """Raise :class:`DataError` naming the split's list when the split has no frames."""
        if not self.ids:
            raise DataError(self.split_source, f"the {self.split} split of {self.name} lists no frames: nothing to "
                                               "train on or evaluate (is this the right folder and split?)")

    # -- to be provided by the loaders ------------------------------------------------
    def _read(self, index: int) -> FrameAnnotation:
        """Frame ``index`` from disk, validated and mirrored to a right hand (see read_frame)."""
        raise NotImplementedError

    # -- public ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        aug = "augmented" if self.augment else "not augmented"
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, {len(self)} frames, "
                f"crop {self.image_size}px, mask {self.roi_size}px, {aug})")

    def set_epoch(self, epoch: int) -> None:
        """Vary the augmentation between epochs when ``seed`` is an integer."""
        self.epoch = int(epoch)

    def draw_params(self, index: int) -> AugmentParams | None:
        """The augmentation draw for ``index`` (None when augmentation is off)."""
        if self.augment is None:
            return None
        if self.seed is None:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        else:
            rng = np.random.default_rng([int(self.seed), self.epoch, int(index)])
        return sample_params(rng, self.augment)

    def read_frame(self, index: int) -> FrameAnnotation:
        """Frame ``index`` as read from disk (full image), validated and mirrored to a right
        hand; raises :class:`DataError` for a bad frame."""
        with cpu_threads(1):  # many tiny tensor operations: intra-op threads cost more than they save
            return self._read(index)

    def get(self, index: int, params: AugmentParams | None = None) -> dict:
        """Sample ``index`` with the given augmentation draw (None: plain crop); no skipping."""
        with cpu_threads(1):
            return build_sample(self._read(index), self.image_size, self.roi_size, params)

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {n} frames")
        index %= n
        if not self.skip_bad:
            return self.get(index, self.draw_params(index))
        bad = self._bad
        for step in range(n):
            i = (index + step) % n
            if bad[i]:
                continue
            try:
                return self.get(i, self.draw_params(i))
            except DataError as err:
                bad[i] = True
                self._reasons[i] = str(err)
                log.warning("%s %s: skipping frame %d (%s): %s", self.name, self.split, i, self.ids[i], err)
        raise DataError(self.root, f"{self.name} {self.split}: all {n} frames are bad (see the warnings above)")

    @property
    def skipped(self) -> int:
        """How many bad frames were found and skipped so far (all DataLoader workers)."""
        return int(self._bad.sum())

    def skip_report(self) -> str:
        """Summary of the skipped frames (also logged: a warning when there were any)."""
        count = self.skipped
        if count == 0:
            message = f"{self.name} {self.split}: no frame skipped"
            log.info(message)
            return message
        indices = torch.nonzero(self._bad).flatten().tolist()
        shown = ", ".join(self.ids[i] for i in indices[:10]) + (" ..." if count > 10 else "")
        message = (f"{self.name} {self.split}: skipped {count} of {len(self)} frames ({shown}); "
                   "each was replaced by the next good frame; reasons are in the warnings")
        log.warning(message)
        return message
