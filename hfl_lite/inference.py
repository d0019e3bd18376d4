"""From one image to a hand mesh and an object pose: ``python -m hfl_lite infer`` and :func:`predict`.

HFL-Net predicts the hand root-relative (wrist at the origin) and the object through 2D votes.
To place both in the camera frame this module

* estimates the hand translation ``t`` from the predicted 2D joints and root-relative 3D joints
  by linear least squares (:func:`estimate_hand_translation`): for joint ``X_i`` seen at pixel
  ``(u_i, v_i)``, ``u_i = (K_0 . (X_i + t)) / (X_i,z + t_z)`` and likewise for ``v``; multiplied
  out these are two equations per joint that are *linear* in ``t`` (then refined by a few
  Gauss-Newton steps on the pixel error);
* solves the object pose with RANSAC EPnP on the voted control points
  (:func:`hfl_lite.geometry.voting.solve_pose_from_votes`).

The command crops the image exactly as the data pipeline does (:mod:`hfl_lite.data.crop`: the
union of the hand and object boxes, each enlarged 1.5x, made square, warped to the preset's
size), runs the network and writes ``result.json``, ``overlay.png`` and ``view.html``.

It refuses impossible input before running the network (:func:`check_request`: an image cut
short or smaller than ``MIN_IMAGE_SIDE_PX``, boxes mostly outside the image or smaller than
``MIN_BOX_SIDE_PX``, intrinsics that are no camera) and reports a result that cannot be right
(:func:`implausible`: behind the camera, farther than ``PLAUSIBLE_DEPTH_M`` allows, too few
confident votes) as *not found*: the reason is printed and written to ``result.json``, and the
exit status is ``NOT_FOUND_EXIT`` instead of 0.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from hfl_lite.data.augment import AugmentParams, apply_photometric
from hfl_lite.data.crop import CropTransform, crop_square, make_crop_transform
from hfl_lite.errors import UserError
from hfl_lite.geometry.camera import make_intrinsics, project_points, transform_points
from hfl_lite.geometry.control_points import BOX_EDGES
from hfl_lite.geometry.voting import solve_pose_from_votes
from hfl_lite.model import HFLNet
from hfl_lite.presets import pick_device
from hfl_lite.training.checkpoint import CheckpointError, describe_network, load_model_weights, load_weights_into

__all__ = ["FOCAL_RANGE", "MIN_BOX_INSIDE", "MIN_BOX_SIDE_PX", "MIN_IMAGE_SIDE_PX", "NOT_FOUND_EXIT",
           "PLAUSIBLE_DEPTH_M", "check_request", "crop_request", "default_intrinsics", "draw_overlay", "estimate_hand_translation",
           "implausible", "load_model", "main", "predict", "predict_image"]

MIN_IMAGE_SIDE_PX = 32  # smaller images hold no hand to speak of
MIN_BOX_SIDE_PX = 8.0  # a hand or object box narrower than this holds no usable detail
MIN_BOX_INSIDE = 0.5  # share of a box's area that must lie inside the image
FOCAL_RANGE = (0.05, 50.0)  # focal lengths in image sizes (fields of view of about 170 to 1 degrees)
PLAUSIBLE_DEPTH_M = (0.05, 10.0)  # a hand or object this close to or far from the camera is a failed estimate
NOT_FOUND_EXIT = 3  # `infer` exit status when the hand or the object was not found


def estimate_hand_translation(joints2d: torch.Tensor, joints3d_rel: torch.Tensor, K: torch.Tensor,
                              weights: torch.Tensor | None = None, refine_iters: int = 3) -> torch.Tensor:
    """Camera-frame translation of a root-relative hand from its 2D joints (least squares).

    joints2d:     ``[B,21,2]`` pixels (any number ``N`` of points works)
    joints3d_rel: ``[B,21,3]`` metres, root-relative, camera-aligned axes
    K:            ``[B,3,3]`` intrinsics of the image ``joints2d`` lives in
    weights:      optional ``[B,21]`` per-joint weights (e.g. confidences; 0 ignores a joint)
    refine_iters: Gauss-Newton steps on the pixel error after the linear solution (0: linear only)
    Returns ``t [B,3]`` metres such that ``joints3d_rel + t`` projects onto ``joints2d``.

    With ``k_r`` the rows of ``K``, the pixel ``p = (u, v)`` of ``P = X + t`` obeys
    ``(p_r k_2 - k_r) . (X + t) = 0`` for ``r = 0, 1``: two equations per joint, *linear* in
    ``t``, solved in closed form (3x3 normal equations, float64). Their residual is the pixel
    error times the joint's depth, so the few Gauss-Newton steps that follow move the solution to
    the minimiser of the (weighted) pixel error itself. Exact for noise-free input.
    """
    if joints2d.ndim != 3 or joints2d.shape[-1] != 2:
        raise ValueError(f"joints2d must be [B,N,2] pixels, got {tuple(joints2d.shape)}")
    if joints3d_rel.shape[:2] != joints2d.shape[:2] or joints3d_rel.shape[-1] != 3:
        raise ValueError(f"joints3d_rel must be [B,N,3] matching joints2d {tuple(joints2d.shape)}, got {tuple(joints3d_rel.shape)}")
    if K.shape != (joints2d.shape[0], 3, 3):
        raise ValueError(f"K must be [B,3,3] with B = {joints2d.shape[0]}, got {tuple(K.shape)}")
    B, N = joints2d.shape[:2]
    p, X, Kd = joints2d.double(), joints3d_rel.double(), K.double()
    w = torch.ones(B, N, dtype=torch.float64, device=p.device) if weights is None else weights.double().clamp_min(0)
    w2 = w.repeat_interleave(2, dim=1)  # one weight per equation

    def solve(A, b):  # weighted least squares, A [B,M,3], b [B,M]
        Aw = A * w2.unsqueeze(-1)
        return torch.linalg.solve(Aw.transpose(1, 2) @ A, (Aw.transpose(1, 2) @ b.unsqueeze(-1)).squeeze(-1))

    rows = p.unsqueeze(-1) * Kd[:, None, 2:3, :] - Kd[:, None, :2, :]  # [B,N,2,3]: p_r k_2 - k_r
    t = solve(rows.reshape(B, -1, 3), -(rows * X.unsqueeze(-2)).sum(-1).reshape(B, -1))
    for _ in range(refine_iters):
        P = X + t[:, None]
        proj = P @ Kd.transpose(1, 2)  # [B,N,3]: (k_0.P, k_1.P, P_z)
        z = proj[..., 2:3].clamp_min(1e-6)
        residual = (proj[..., :2] / z - p).reshape(B, -1)
        # d(k_r.P / P_z)/dt = k_r / P_z - (k_r.P) e_z / P_z^2
        J = Kd[:, None, :2, :] / z.unsqueeze(-1) - (proj[..., :2] / z ** 2).unsqueeze(-1) * Kd[:, None, 2:3, :]
        t = t - solve(J.reshape(B, -1, 3), residual)
    return t.to(joints2d.dtype)


def default_intrinsics(width: int, height: int) -> torch.Tensor:
    """A guess ``[3,3]`` for an unknown camera: ``fx = fy = max(width, height)`` pixels, principal
    point at the image centre ``((W-1)/2, (H-1)/2)``.

    This is a horizontal field of view of about 53 degrees for a landscape image and matches the
    cameras of HO3D and Dex-YCB (fx ~ 615 px at 640 x 480) within a few percent. A wrong focal
    length scales the estimated depths (hand and object distances) but barely changes the hand's
    shape or the object's rotation.
    """
    f = float(max(width, height))
    return make_intrinsics(f, f, (width - 1) / 2.0, (height - 1) / 2.0)


def load_model(checkpoint: str | os.PathLike, device: str | torch.device | None = None,
               mano_root: str | os.PathLike | None = None) -> tuple[HFLNet, dict[str, Any]]:
    """Rebuild the network recorded in a checkpoint (training or weights-only) and load its weights.

    mano_root: the MANO files the network was trained with (``None``: the stand-in hand, as for
    the shipped checkpoint). Returns ``(model in eval mode on device, meta)``; ``meta`` holds
    ``preset``, ``model_config`` (backbone and interaction variants) and whatever else the
    checkpoint records (``dataset``, ``epoch``, ``step``, ``loss_weights``, ...).
    """
    device = torch.device(device) if device is not None else pick_device()
    weights, meta = load_model_weights(checkpoint)
    if "preset" not in meta:
        raise CheckpointError(f"checkpoint {checkpoint} records no 'preset': it was not written by hfl_lite.training")
    config = dict(meta.get("model_config") or {})
    config.pop("preset", None)
    model = HFLNet(meta["preset"], pretrained=False, mano_root=mano_root, **config)
    load_weights_into(model, weights, checkpoint, describe_network(meta["preset"], config))
    return model.to(device).eval(), meta


@torch.no_grad()
def predict(model: HFLNet, images: torch.Tensor, hand_boxes: torch.Tensor, obj_boxes: torch.Tensor, K: torch.Tensor,
            obj_ctrl3d: torch.Tensor, ransac: bool = True, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Run HFL-Net on crops and place hand and object in the camera frame.

    images ``[B,3,S,S]`` in [0,1]; hand_boxes, obj_boxes ``[B,4]`` crop px; K ``[B,3,3]`` crop
    intrinsics; obj_ctrl3d ``[B,21,3]`` or ``[21,3]`` the object's control points (object frame, m).
    ransac: RANSAC EPnP (as the reference code) or plain EPnP; generator: RANSAC's random source.

    Returns the network's outputs (see ``HFLNet.forward``) plus
        hand_trans   [B,3]      estimated wrist position (m, camera frame)
        joints_cam   [B,21,3]   joints in the camera frame (m): ``joints + hand_trans``
        verts_cam    [B,778,3]  vertices likewise
        obj_rot [B,3,3], obj_trans [B,3]   object pose, ``X_cam = R X_obj + t`` (float64)
        obj_valid    [B] bool   False where EPnP fell back (too few confident votes)
    """
    model.eval()
    device = next(model.parameters()).device
    images, hand_boxes, obj_boxes, K = (x.to(device).float() for x in (images, hand_boxes, obj_boxes, K))
    out = model(images, hand_boxes, obj_boxes)
    trans = estimate_hand_translation(out["joints2d"].float(), out["joints"].float(), K)
    # the pose in float64: float32 sums in EPnP would add their own rounding to RANSAC's decisions
    pose = solve_pose_from_votes(out["obj_conf_logits"].double(), out["obj_offset"].double(), out["obj_boxes"].double(),
                                 K.double(), obj_ctrl3d.to(device).double(), ransac=ransac, generator=generator)
    return {
        **out,
        "hand_trans": trans,
        "joints_cam": out["joints"] + trans[:, None],
        "verts_cam": out["verts"] + trans[:, None],
        "obj_rot": pose.R,
        "obj_trans": pose.t,
        "obj_valid": pose.valid,
    }


def _box_tensor(values, name: str, width: int, height: int) -> torch.Tensor:
    """A box ``[4]`` float64 that is well-formed, large enough and mostly inside the image, or a
    :class:`~hfl_lite.errors.UserError` naming it."""
    box = torch.as_tensor(values, dtype=torch.float64)
    if box.shape != (4,) or not torch.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        raise UserError(f"{name} must be four numbers x1 y1 x2 y2 with x2 > x1 and y2 > y1, got "
                        f"{box.flatten().tolist()}")
    x1, y1, x2, y2 = box.tolist()
    if min(x2 - x1, y2 - y1) < MIN_BOX_SIDE_PX:
        raise UserError(f"{name} {[x1, y1, x2, y2]} is {x2 - x1:.3g} x {y2 - y1:.3g} px: a box needs at least "
                        f"{MIN_BOX_SIDE_PX:g} px on each side")
    inside = max(0.0, min(x2, width) - max(x1, 0.0)) * max(0.0, min(y2, height) - max(y1, 0.0))
    if inside < MIN_BOX_INSIDE * (x2 - x1) * (y2 - y1):
        raise UserError(f"{name} {[x1, y1, x2, y2]} lies {'entirely' if inside == 0 else 'mostly'} outside the "
                        f"{width} x {height} image (boxes are in image pixels, x1 y1 x2 y2)")
    return box


def check_request(width: int, height: int, hand_box, obj_box, K: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Refuse, before the network runs, input that cannot give a pose: an image smaller than
    ``MIN_IMAGE_SIDE_PX``, boxes ``(x1, y1, x2, y2)`` (image px) narrower than ``MIN_BOX_SIDE_PX``
    or less than half inside the image, intrinsics ``K [3,3]`` with a focal length that is not
    positive or outside ``FOCAL_RANGE`` image sizes, or a principal point outside the image.

    Raises :class:`~hfl_lite.errors.UserError` naming the input; returns the boxes as ``[4]``
    float64 tensors.
    """
    if min(width, height) < MIN_IMAGE_SIDE_PX:
        raise UserError(f"the image is {width} x {height} px: at least {MIN_IMAGE_SIDE_PX} px on each side are needed")
    boxes = _box_tensor(hand_box, "--hand-box", width, height), _box_tensor(obj_box, "--obj-box", width, height)
    if K is not None:
        K = torch.as_tensor(K, dtype=torch.float64)
        fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
        side = max(width, height)
        lo, hi = FOCAL_RANGE
        if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or not (lo * side <= fx <= hi * side
                                                                       and lo * side <= fy <= hi * side):
            raise UserError(f"--K {fx:g} {fy:g} {cx:g} {cy:g}: the focal lengths fx, fy must lie between "
                            f"{lo * side:g} and {hi * side:g} px for a {width} x {height} image "
                            "(omit --K to use a typical camera)")
        if not (0 <= cx <= width and 0 <= cy <= height):
            raise UserError(f"--K {fx:g} {fy:g} {cx:g} {cy:g}: the principal point (cx, cy) must lie inside the "
                            f"{width} x {height} image")
    return boxes


def crop_request(K: torch.Tensor, hand_box: torch.Tensor, obj_box: torch.Tensor, size: int
                 ) -> tuple[CropTransform, torch.Tensor, torch.Tensor]:
    """The network's crop of one image and the two boxes in it: the one specification of the crop
    that :func:`predict_image` uses and the browser page follows (``cropRequest`` in
    ``hfl_lite/web/pipeline.mjs``, tested against this function).

    K ``[3,3]`` the image's intrinsics; hand_box, obj_box ``[4]`` image pixels ``(x1, y1, x2, y2)``;
    size: the network's input side ``S``. The crop is the union of the two boxes, each enlarged
    ``hfl_lite.data.crop.CROP_ENLARGE`` times about its centre, made square about the union's centre
    and mapped onto ``S x S`` pixels without rotation (:func:`hfl_lite.data.crop.crop_square`,
    :func:`~hfl_lite.data.crop.make_crop_transform`), exactly as the data pipeline crops a frame.
    Returns ``(crop, hand box [4], object box [4])``, the boxes in crop pixels (float64).
    """
    hand_box, obj_box = (torch.as_tensor(b, dtype=torch.float64) for b in (hand_box, obj_box))
    centre, side = crop_square(hand_box, obj_box)
    crop = make_crop_transform(torch.as_tensor(K, dtype=torch.float64), centre, float(side), size)
    return crop, crop.box(hand_box), crop.box(obj_box)


def implausible(result: dict[str, Any]) -> dict[str, str | None]:
    """Why a :func:`predict_image` result cannot be right: ``{"hand": reason or None, "object":
    reason or None}``. A hand or object behind the camera, nearer or farther than
    ``PLAUSIBLE_DEPTH_M``, not finite, or (object) resting on too few confident votes is not found."""
    lo, hi = PLAUSIBLE_DEPTH_M

    def placed(name: str, points: torch.Tensor, centre: torch.Tensor) -> str | None:
        z = float(centre[2])
        if not torch.isfinite(points).all():
            return "its estimated position is not finite"
        if z <= 0 or bool((points[..., 2] <= 0).any()):
            return f"it would lie behind the camera ({name} z = {z:.3g} m)"
        if not lo <= z <= hi:
            return f"its {name} would lie {z:.3g} m from the camera, outside the plausible {lo:g} to {hi:g} m"
        return None

    hand = placed("wrist", result["joints_cam"][0].detach().cpu().double(), result["hand_trans"][0].cpu().double())
    t = result["obj_trans"][0].detach().cpu().double()
    obj = None if bool(result["obj_valid"][0]) else "too few confident votes (EPnP fell back to a default pose)"
    return {"hand": hand, "object": obj or placed("centre", t, t)}


def predict_image(model: HFLNet, image: np.ndarray, hand_box, obj_box, obj_ctrl3d: torch.Tensor,
                  K: torch.Tensor | None = None, generator: torch.Generator | None = None) -> dict[str, Any]:
    """One full RGB image ``[H,W,3]`` uint8 -> predictions in the image's camera frame.

    hand_box, obj_box: ``(x1, y1, x2, y2)`` full-image px. Like the training data, the hand box is
    the tight box of the hand's joints enlarged 1.1x and the object box the tight box of the
    object's projected control points (a tight box around the visible object is a fair stand-in).
    obj_ctrl3d ``[21,3]``; K ``[3,3]`` (None: :func:`default_intrinsics`).

    Returns :func:`predict`'s dict for the single image (batch dimension kept) plus ``K`` (full
    image), ``crop_K``, ``crop_affine [3,3]`` (full px -> crop px), ``crop_image [3,S,S]`` and
    ``joints2d_full [1,21,2]`` (the predicted 2D joints in full-image px). The crop is not
    rotated, so the crop's camera frame is the image's.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be [H,W,3] uint8 RGB, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    hand_box, obj_box = check_request(w, h, hand_box, obj_box, K)
    K = default_intrinsics(w, h) if K is None else torch.as_tensor(K, dtype=torch.float32)
    crop, crop_hand, crop_obj = crop_request(K, hand_box, obj_box, model.preset.image_size)
    crop_image = apply_photometric(crop.warp_image(image), AugmentParams())
    crop_K = crop.K.float()
    out = predict(model, crop_image[None], crop_hand.float()[None], crop_obj.float()[None],
                  crop_K[None], obj_ctrl3d.float(), generator=generator)
    full2d = crop.image_points(out["joints2d"])
    return {**out, "K": K, "crop_K": crop_K, "crop_affine": crop.A.float(), "crop_image": crop_image,
            "joints2d_full": full2d}


# ---------------------------------------------------------------------------------- outputs
def draw_overlay(image: np.ndarray, result: dict[str, Any], faces: np.ndarray, parents: list[int],
                 obj_ctrl3d: torch.Tensor, hand_box=None, obj_box=None) -> np.ndarray:
    """Draw a :func:`predict_image` result onto its image.

    image ``[H,W,3]`` uint8 RGB; faces ``[F,3]`` of the hand mesh; parents: the 21 joints' parents
    (``hfl_lite.mano.SKELETON_PARENTS``); obj_ctrl3d ``[21,3]``; hand_box, obj_box: the input
    boxes to outline (optional). Returns ``[H,W,3]`` uint8 RGB: the hand mesh as a wire-frame, the
    skeleton (red), the object's 3D box under the predicted pose (green; red when EPnP fell back).
    Points behind the camera or projecting absurdly far away are left out.
    """
    K = result["K"].double()
    canvas = image.copy()
    mesh = canvas.copy()
    verts2d, verts_ok = _pixels(result["verts_cam"][0], K)
    tris = verts2d[faces]
    cv2.polylines(mesh, list(tris[verts_ok[faces].all(axis=1)]), True, (230, 170, 120), 1, cv2.LINE_AA)
    canvas = cv2.addWeighted(mesh, 0.6, canvas, 0.4, 0)
    joints2d, joints_ok = _pixels(result["joints_cam"][0], K)
    for child, parent in enumerate(parents):
        if parent >= 0 and joints_ok[parent] and joints_ok[child]:
            cv2.line(canvas, tuple(joints2d[parent]), tuple(joints2d[child]), (220, 40, 40), 2, cv2.LINE_AA)
    for p in joints2d[joints_ok]:
        cv2.circle(canvas, tuple(p), 3, (255, 255, 255), -1, cv2.LINE_AA)
    ctrl = transform_points(obj_ctrl3d.double(), result["obj_rot"][0].cpu().double(), result["obj_trans"][0].cpu().double())
    ctrl2d, ctrl_ok = _pixels(ctrl, K)
    colour = (60, 200, 60) if bool(result["obj_valid"][0]) else (200, 60, 60)
    for a, b in BOX_EDGES:
        if ctrl_ok[a] and ctrl_ok[b]:
            cv2.line(canvas, tuple(ctrl2d[a]), tuple(ctrl2d[b]), colour, 2, cv2.LINE_AA)
    for box, c in ((hand_box, (40, 160, 220)), (obj_box, (220, 160, 40))):
        if box is None:
            continue
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), c, 1, cv2.LINE_AA)
    return canvas


def _pixels(points: torch.Tensor, K: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame points ``[N,3]`` -> rounded pixels ``[N,2]`` int32 and a mask ``[N]`` of those
    that can be drawn (in front of the camera, within 1e5 px)."""
    points = points.detach().cpu().double()
    px = project_points(points, K).numpy()
    ok = (points[:, 2] > 0).numpy() & np.isfinite(px).all(axis=1) & (np.abs(px) < 1e5).all(axis=1)
    return np.where(ok[:, None], px, 0).round().astype(np.int32), ok


def _write_view(path: Path, result: dict[str, Any], faces: np.ndarray, parents: list[int], obj_mesh, image_size) -> None:
    """Self-contained interactive 3D view (plotly.js inline) of the hand, the object and the camera."""
    import plotly.graph_objects as go

    from hfl_lite.viz import frustum3d, mesh3d, scene_layout, skeleton3d

    fig = go.Figure()
    fig.add_trace(mesh3d(result["verts_cam"][0], faces, name="hand (predicted)"))
    fig.add_trace(skeleton3d(result["joints_cam"][0], parents, color="#b22222", name="joints (predicted)"))
    if obj_mesh is not None:
        verts, ofaces = obj_mesh
        posed = transform_points(torch.as_tensor(verts, dtype=torch.float64),
                                 result["obj_rot"][0].cpu().double(), result["obj_trans"][0].cpu().double())
        fig.add_trace(mesh3d(posed, ofaces, color="#6fa8dc", name="object (predicted pose)", opacity=0.8))
    depth = float(result["hand_trans"][0, 2].clamp(0.05, 2.0)) * 0.5
    fig.add_trace(frustum3d(result["K"], image_size[0], image_size[1], depth=depth))
    scene_layout(fig, title="HFL-Net prediction (camera frame, metres)")
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


def _hand_faces_and_parents(model: HFLNet) -> tuple[np.ndarray, list[int]]:
    from hfl_lite.mano import SKELETON_PARENTS

    return model.hand_decoder.mano.faces.cpu().numpy().astype(np.int64), list(SKELETON_PARENTS)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m hfl_lite infer",
        description="Hand mesh and object pose for one image with a trained HFL-Net checkpoint. Writes "
                    "result.json (metres, OpenCV camera frame), overlay.png and view.html to --out.",
    )
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (last.pt/best.pt) or exported weights")
    parser.add_argument("--image", required=True, help="RGB image (any format OpenCV reads)")
    parser.add_argument("--hand-box", required=True, nargs=4, type=float, metavar=("X1", "Y1", "X2", "Y2"),
                        help="hand box in image pixels (tight box of the hand enlarged 1.1x)")
    parser.add_argument("--obj-box", required=True, nargs=4, type=float, metavar=("X1", "Y1", "X2", "Y2"),
                        help="object box in image pixels (tight box of the object)")
    parser.add_argument("--object", required=True, help="object name, e.g. 006_mustard_bottle (see hfl_lite.data.formats)")
    parser.add_argument("--K", nargs=4, type=float, metavar=("FX", "FY", "CX", "CY"),
                        help="intrinsics in pixels (default: f = max(width, height), principal point at the centre)")
    parser.add_argument("--models", help="folder of <name>/textured_simple.obj object models (default: the package's objects)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--mano-root", help="folder with MANO_RIGHT.pkl the checkpoint was trained with (default: stand-in)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the RANSAC sampling")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """``python -m hfl_lite infer``: see ``--help``. Returns 0, or ``NOT_FOUND_EXIT`` when the hand
    or the object was not found (:func:`implausible`; the outputs are written either way)."""
    args = _parse_args(list(sys.argv[1:] if argv is None else argv))
    from hfl_lite.atomic import check_output_folder, staged_folder
    from hfl_lite.data.sample import ObjectCatalog, read_image
    from hfl_lite.synth.objects import load_object

    # everything that can be checked is checked before the network runs
    out = check_output_folder(args.out, "--out")
    image_path = Path(args.image)
    image = read_image(image_path)
    K = None if args.K is None else make_intrinsics(*args.K)
    check_request(image.shape[1], image.shape[0], args.hand_box, args.obj_box, K)
    catalog = ObjectCatalog(Path(args.models) if args.models else load_object)
    ctrl3d = catalog.info(args.object)[0].float()
    obj_mesh = catalog.mesh(args.object)
    model, meta = load_model(args.checkpoint, args.device, args.mano_root)
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(args.seed)
    result = predict_image(model, image, args.hand_box, args.obj_box, ctrl3d, K, generator=generator)
    problems = implausible(result)
    faces, parents = _hand_faces_and_parents(model)

    def lst(x):
        return x.detach().cpu().double().numpy().round(6).tolist()

    report = {
        "units": "metres, OpenCV camera frame of the input image (x right, y down, z forward)",
        "image": str(image_path),
        "K": lst(result["K"]),
        "K_guessed": args.K is None,
        "checkpoint": str(args.checkpoint),
        "preset": meta["preset"],
        "hand": {
            "found": problems["hand"] is None,
            "problem": problems["hand"],
            "joints": lst(result["joints_cam"][0]),
            "verts": lst(result["verts_cam"][0]),
            "translation": lst(result["hand_trans"][0]),
            "translation_source": "least squares from the predicted 2D joints and root-relative 3D joints",
            "joints2d_px": lst(result["joints2d_full"][0]),
            "mano_pose_axis_angle": lst(result["mano_pose"][0]),
            "mano_shape": lst(result["mano_shape"][0]),
            "box_px": list(map(float, args.hand_box)),
        },
        "object": {
            "found": problems["object"] is None,
            "problem": problems["object"],
            "name": args.object,
            "R": lst(result["obj_rot"][0]),
            "t": lst(result["obj_trans"][0]),
            "pose_valid": bool(result["obj_valid"][0]),
            "box_px": list(map(float, args.obj_box)),
        },
    }
    with staged_folder(out) as stage:
        (stage / "result.json").write_text(json.dumps(report, indent=1))
        overlay = draw_overlay(image, result, faces, parents, ctrl3d, args.hand_box, args.obj_box)
        if not cv2.imwrite(str(stage / "overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {stage / 'overlay.png'}")
        _write_view(stage / "view.html", result, faces, parents, obj_mesh, (image.shape[1], image.shape[0]))
    t = result["hand_trans"][0].tolist()
    hand = (f"hand wrist at ({t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}) m" if problems["hand"] is None
            else f"hand NOT FOUND: {problems['hand']}")
    obj = (f"object {args.object} at {math.dist((0, 0, 0), result['obj_trans'][0].tolist()):.3f} m (pose found)"
           if problems["object"] is None else f"object {args.object} NOT FOUND: {problems['object']}")
    print(f"{hand}; {obj}")
    print(f"wrote {out / 'result.json'}, {out / 'overlay.png'}, {out / 'view.html'}")
    return 0 if problems["hand"] is None and problems["object"] is None else NOT_FOUND_EXIT
