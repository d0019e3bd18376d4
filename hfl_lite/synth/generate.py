"""``python -m hfl_lite synth``: render synthetic hand-object sets in the HO3D and Dex-YCB layouts.

    python -m hfl_lite synth --layout both --out data_samples --size small --seed 0 --overwrite

Each frame: a YCB-like object (:mod:`hfl_lite.synth.objects`) held by the stand-in hand in a
grasp made by :mod:`hfl_lite.synth.grasp`, seen from a random camera 0.4-0.8 m away (both
hand and object inside the image; :mod:`hfl_lite.synth.scene`), rendered at 640x480 by
:mod:`hfl_lite.synth.render` over a procedural background, and written by
:mod:`hfl_lite.synth.writers` (file formats and conventions are documented there).

Structure of the sets:

* HO3D: train sequences of the objects :data:`HO3D_TRAIN_OBJECTS`, evaluation sequences of
  :data:`HO3D_EVAL_OBJECTS` (HO3D's evaluated objects); one object, hand shape, skin tone and
  camera matrix per sequence; every frame a new grasp and viewpoint, chosen so that hand and
  object both show (:data:`MIN_VISIBLE_PIXELS`).
* Dex-YCB: sequences planned for the s0 split (:func:`hfl_lite.synth.writers.plan_dexycb`), each
  with a grasped object from :data:`DEXYCB_OBJECTS` (symmetric ones included) and one or two
  other objects standing near it, a right or (30 %) left hand, a rig of cameras fixed for the
  sequence; every frame a new grasp moved a little in the scene, seen by every camera.

Reproducible bit for bit: every frame draws from its own ``numpy`` generator seeded by
``(seed, layout, frame number)``; torch and OpenCV run single-threaded while generating;
the encoders have fixed settings and the files carry no timestamps.

``--workers N`` renders in N processes. Each worker also encodes and writes its frames' files
(JPEG, PNG, pickle or npz: about 26 ms of one core per HO3D frame, against about 130 ms of
rendering), and the main process only records them in order and writes the indexes: the files
are the same as with one worker, and the main process no longer caps the rate at about 35 frames
per second however many cores render.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from hfl_lite.atomic import check_output_folder, staged_folder
from hfl_lite.data.formats import HAND_LABEL, YCB_IDS, transform_mano
from hfl_lite.geometry.rotations import axis_angle_to_matrix
from hfl_lite.threads import cpu_threads

from . import objects
from .grasp import get_hand_model, sample_grasp
from .render import render_scene
from .scene import (HEIGHT, WIDTH, Scene, key_points, make_frame_meshes, random_intrinsics, sample_camera,
                    skin_colour)
from .writers import (DEXYCB_SERIALS, DEXYCB_SUBJECTS, DexYCBWriter, FrameGT, HandGT, HO3DFrameRecord, HO3DWriter,
                      ObjectGT, dexycb_sequence_name, plan_dexycb)

__all__ = [
    "HO3D_TRAIN_OBJECTS",
    "HO3D_EVAL_OBJECTS",
    "DEXYCB_OBJECTS",
    "SIZES",
    "generate_ho3d",
    "generate_dexycb",
    "main",
]

HO3D_TRAIN_OBJECTS = ("003_cracker_box", "006_mustard_bottle", "010_potted_meat_can", "021_bleach_cleanser")
HO3D_EVAL_OBJECTS = ("006_mustard_bottle", "010_potted_meat_can", "021_bleach_cleanser")
DEXYCB_OBJECTS = ("003_cracker_box", "006_mustard_bottle", "010_potted_meat_can", "021_bleach_cleanser",
                  "024_bowl", "061_foam_brick")
_HO3D_CODES = {"003_cracker_box": "CB", "006_mustard_bottle": "MB", "010_potted_meat_can": "PM",
               "021_bleach_cleanser": "BC"}
SIZES = {"small": (48, 16), "medium": (2000, 400), "large": (10000, 2000)}
"""``--size`` presets: (train images, evaluation images) per layout."""

MIN_VISIBLE_PIXELS = 600
"""HO3D frames show at least this many hand and object pixels (up to four viewpoints are tried)."""
_LAYOUT_CODE = {"ho3d": 1, "dexycb": 2}


def _rng(seed: int, layout: str, *index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _LAYOUT_CODE[layout], *map(int, index)]))


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------

def _frame_gt(scene: Scene, rgb: np.ndarray, label: np.ndarray, grasp_index: int = 0) -> FrameGT:
    """Ground truth of a rendered scene, in the camera frame; the grasped object is listed at
    ``grasp_index`` among the objects."""
    g = scene.grasp
    R_total, t_total = scene.object_to_camera()
    aa, trans = transform_mano(g.pose[:3], g.trans, g.root_rest, R_total, t_total)
    hand = HandGT(pose=np.concatenate([aa, g.pose[3:]]), betas=g.betas, trans=trans, root_rest=g.root_rest,
                  joints=g.joints @ R_total.T + t_total, verts=g.verts @ R_total.T + t_total, side=g.side)
    objs = [ObjectGT(g.object_name, R_total, t_total)]
    objs += [ObjectGT(name, scene.R @ Rw, scene.R @ tw + scene.t) for name, Rw, tw in scene.extras]
    if grasp_index:
        objs.insert(grasp_index, objs.pop(0))
    return FrameGT(K=scene.K, hand=hand, objects=objs, rgb=rgb, label=label, grasp_index=grasp_index)


def _render(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    meshes, K = make_frame_meshes(scene)
    out = render_scene(meshes, K, rng, height=HEIGHT, width=WIDTH)
    return out["rgb"], out["label"]


# --------------------------------------------------------------------------------------------
# HO3D
# --------------------------------------------------------------------------------------------

def _split_counts(total: int, parts: int) -> list[int]:
    return [total // parts + (k < total % parts) for k in range(parts)]


def _ho3d_plan(n_train: int, n_eval: int) -> list[tuple[str, str, str, int]]:
    """(split, sequence, object, frames) for every HO3D sequence."""
    plan = []
    splits = (("train", n_train, HO3D_TRAIN_OBJECTS, 0), ("evaluation", n_eval, HO3D_EVAL_OBJECTS, 10))
    for split, n, objs, first in splits:
        if n <= 0:
            continue
        per_object = max(1, math.ceil(n / (len(objs) * 500)))
        seqs = [(o, k) for k in range(per_object) for o in objs]
        for (obj, k), frames in zip(seqs, _split_counts(n, len(seqs))):
            if frames:
                plan.append((split, f"SY{_HO3D_CODES[obj]}{first + k}", obj, frames))
    return plan


def _ho3d_frame(task: tuple) -> HO3DFrameRecord:
    """Render one HO3D frame and write its files (runs in the workers, so that encoding the
    images does not serialise in the main process); returns the writer's record of it.

    task = (out, split, sequence, index in sequence, seed, sequence number, frame number, object,
    mano_root).
    """
    out, split, sequence, index, seed, q, frame_no, obj_name, mano_root = task
    seq_rng = _rng(seed, "ho3d", 0, q)
    K, betas, skin = random_intrinsics(seq_rng), seq_rng.normal(0.0, 0.7, size=10), skin_colour(seq_rng)
    rng = _rng(seed, "ho3d", 1, frame_no)
    grasp = sample_grasp(objects.get_object(obj_name), get_hand_model("right", mano_root), betas, rng)
    for _ in range(4):  # a viewpoint where neither hides the other completely
        R, t = sample_camera(rng, key_points(grasp), K)
        scene = Scene(grasp=grasp, R=R, t=t, K=K, skin=skin)
        rgb, label = _render(scene, rng)
        if min((label == HAND_LABEL).sum(), (label == YCB_IDS[obj_name]).sum()) >= MIN_VISIBLE_PIXELS:
            break
    return HO3DWriter(out).write_frame(split, sequence, index, _frame_gt(scene, rgb, label))


def generate_ho3d(out: str | Path, n_train: int, n_eval: int, seed: int = 0, mano_root=None, progress=None,
                  workers: int = 1) -> dict:
    """Render an HO3D-layout set into ``out``; returns image counts per split.

    ``progress``: callable(n) after each image; ``workers`` > 1 renders and writes the frames in
    that many processes (same files as one worker).
    """
    writer = HO3DWriter(out)
    tasks = []
    for q, (split, sequence, obj_name, frames) in enumerate(_ho3d_plan(n_train, n_eval)):
        for i in range(frames):
            tasks.append((out, split, sequence, i, seed, q, len(tasks), obj_name, mano_root))
    counts = {"train": 0, "evaluation": 0}
    with _pool(workers) as run:
        for rec in run(_ho3d_frame, tasks):
            writer.record(rec)
            counts[rec.split] += 1
            if progress:
                progress(1)
    writer.close()
    return counts


def _small_motion(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    aa = rng.normal(size=3)
    aa *= rng.uniform(0.0, math.radians(10)) / np.linalg.norm(aa)
    return axis_angle_to_matrix(torch.as_tensor(aa)).numpy(), rng.normal(0.0, 0.01, size=3)


def _place_extras(rng: np.random.Generator, grasped: str, hand_verts: np.ndarray, count: int) -> list:
    """Other objects 0.2-0.3 m from the grasped one, at least 5 cm clear of it and of the hand."""
    others = [n for n in DEXYCB_OBJECTS if n != grasped]
    chosen = [others[i] for i in rng.permutation(len(others))[:count]]
    occupied = np.concatenate([hand_verts, objects.get_object(grasped).verts])
    extras = []
    for name in chosen:
        m = objects.get_object(name)
        for _ in range(20):
            direction = rng.normal(size=3)
            t = direction / np.linalg.norm(direction) * rng.uniform(0.2, 0.3)
            aa = rng.normal(size=3)
            R = axis_angle_to_matrix(torch.as_tensor(aa / np.linalg.norm(aa) * rng.uniform(0, math.pi))).numpy()
            if m.sdf((occupied - t) @ R).min() > 0.05:
                extras.append((name, R, t))
                occupied = np.concatenate([occupied, m.verts @ R.T + t])
                break
    return extras


@dataclass
class _DexSequence:
    """A rendered and written Dex-YCB sequence: its meta.yml values, calibration, and the object
    names of every written image (for :meth:`DexYCBWriter.record`)."""

    meta: dict
    calib: str
    extrinsics: dict
    images: list


def _dexycb_sequence(task: tuple) -> _DexSequence:
    """Render one Dex-YCB sequence and write its frames' files (in the workers, as
    :func:`_ho3d_frame`); the main process writes the sequence's meta.yml and calibration.

    task = (out, seed, sequence number, plan item, serials, mano_root).
    """
    out, seed, q, item, serials, mano_root = task
    intrinsics = _dexycb_intrinsics(seed, serials)
    betas = _rng(seed, "dexycb", 1, item.subject).normal(0.0, 0.7, size=10)
    skin = skin_colour(_rng(seed, "dexycb", 2, item.subject))
    rng = _rng(seed, "dexycb", 3, q)
    sequence = dexycb_sequence_name(item.subject, item.position)
    side = "left" if rng.random() < 0.3 else "right"
    hand = get_hand_model(side, mano_root)
    grasped = DEXYCB_OBJECTS[q % len(DEXYCB_OBJECTS)]
    obj = objects.get_object(grasped)
    first = sample_grasp(obj, hand, betas, rng)
    extras = tuple(_place_extras(rng, grasped, first.verts, int(rng.integers(1, 3))))
    names = [grasped] + [e[0] for e in extras]
    grasp_index = int(rng.integers(0, len(names)))
    ycb_ids = [YCB_IDS[n] for n in names]
    ycb_ids.insert(grasp_index, ycb_ids.pop(0))
    spheres = [(te, objects.get_object(n).diameter / 2) for n, _, te in extras]
    rig = {s: sample_camera(rng, key_points(first), intrinsics[s], avoid=spheres) for s in serials}
    calib = f"{sequence[:8]}_140000_subject-{item.subject + 1:02d}_{side}"
    extr = f"{sequence[:8]}_{int(sequence[9:]) - 20000:06d}"  # the rig's calibration, two hours earlier
    meta = dict(subject=DEXYCB_SUBJECTS[item.subject], sequence=sequence, serials=list(serials),
                num_frames=item.num_frames, ycb_ids=ycb_ids, grasp_index=grasp_index, side=side, calib=calib,
                extrinsics=extr)
    writer = DexYCBWriter(out)
    pca = hand.layer.smpl_data["hands_mean"], hand.layer.smpl_data["hands_components"]
    images = []
    for f in range(item.num_frames):
        frng = _rng(seed, "dexycb", 4, q, f)
        grasp, Rm, tm = first, np.eye(3), np.zeros(3)
        if f > 0:  # a new grasp, moved a little, clear of the other objects
            Rm, tm = _small_motion(frng)
            for _ in range(3):
                trial = sample_grasp(obj, hand, betas, frng)
                hv = trial.verts @ Rm.T + tm
                if all(objects.get_object(n).sdf((hv - te) @ Re).min() > 0.005 for n, Re, te in extras):
                    grasp = trial
                    break
        for s in serials:
            R, t = rig[s]
            scene = Scene(grasp=grasp, R=R, t=t, K=intrinsics[s], skin=skin, extras=extras, obj_R=Rm, obj_t=tm)
            rgb, label = _render(scene, frng)
            names = writer.write_frame(meta["subject"], sequence, s, f, _frame_gt(scene, rgb, label, grasp_index), *pca)
            images.append(names)
    cam_to_scene = {s: np.concatenate([R.T, (-R.T @ t)[:, None]], 1) for s, (R, t) in rig.items()}
    return _DexSequence(meta=meta, calib=calib, extrinsics=cam_to_scene, images=images)


def _dexycb_intrinsics(seed: int, serials) -> dict:
    base = _rng(seed, "dexycb", 0)
    return {s: random_intrinsics(base) for s in serials}


def generate_dexycb(out: str | Path, n_train: int, n_eval: int, seed: int = 0, mano_root=None, progress=None,
                    n_cameras: int = 8, workers: int = 1) -> dict:
    """Render a Dex-YCB-layout set into ``out``; ``n_eval`` is the s0 test size. Returns image
    counts per s0 split. ``n_cameras`` < 8 uses the first serials only (quick tests);
    ``progress`` and ``workers`` as in :func:`generate_ho3d`."""
    if not 1 <= n_cameras <= len(DEXYCB_SERIALS):
        raise ValueError(f"generate_dexycb: n_cameras must be in 1..8, got {n_cameras}")
    writer = DexYCBWriter(out)
    serials = DEXYCB_SERIALS[:n_cameras]
    for s, K in _dexycb_intrinsics(seed, serials).items():
        writer.write_intrinsics(s, K)
    plan = plan_dexycb(n_train, n_eval, n_cameras=n_cameras)
    subject_betas = {p.subject: _rng(seed, "dexycb", 1, p.subject).normal(0.0, 0.7, size=10) for p in plan}
    tasks = [(out, seed, q, item, serials, mano_root) for q, item in enumerate(plan)]
    counts = {"train": 0, "val": 0, "test": 0}
    with _pool(workers) as run:
        for item, seq in zip(plan, run(_dexycb_sequence, tasks)):
            m = seq.meta
            writer.write_mano_calib(seq.calib, subject_betas[item.subject])
            writer.write_extrinsics(m["extrinsics"], seq.extrinsics)
            writer.begin_sequence(m["subject"], m["sequence"], m["serials"], m["num_frames"], m["ycb_ids"],
                                  m["grasp_index"], m["side"], seq.calib, m["extrinsics"])
            for names in seq.images:
                writer.record(names)
                counts[item.split] += 1
                if progress:
                    progress(1)
    writer.close()
    return counts


def _init_worker() -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


@contextlib.contextmanager
def _pool(workers: int):
    """Yields ``run(fn, tasks)``: an ordered iterator of results, in ``workers`` processes when > 1."""
    if workers <= 1:
        yield map
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        yield lambda fn, tasks: pool.imap(fn, tasks)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m hfl_lite synth``."""
    p = argparse.ArgumentParser(prog="python -m hfl_lite synth",
                                description="Render synthetic hand-object sets in the HO3D and Dex-YCB layouts "
                                            "(formats: hfl_lite/synth/writers.py).")
    p.add_argument("--layout", choices=("ho3d", "dexycb", "both"), default="both")
    p.add_argument("--out", required=True, help="output folder; with --layout both, OUT/ho3d and OUT/dexycb")
    p.add_argument("--size", choices=sorted(SIZES), help="preset image counts (train, evaluation), default small: "
                   + ", ".join(f"{k} {v}" for k, v in SIZES.items()) + "; --n-train / --n-eval override them")
    p.add_argument("--n-train", type=int, help="train images per layout (Dex-YCB: s0 train, rounded to whole frames)")
    p.add_argument("--n-eval", type=int, help="evaluation images (HO3D evaluation split; Dex-YCB s0 test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cameras", type=int, default=8, help="Dex-YCB cameras per sequence (8 as the real rig)")
    p.add_argument("--mano-root", default=None,
                   help="folder of MANO_RIGHT/LEFT.pkl (default: MANO_ROOT, else the stand-in)")
    p.add_argument("--workers", type=int, default=1, help="processes rendering in parallel (same output)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output folder (once the new one is complete)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    n_train, n_eval = SIZES[args.size] if args.size else SIZES["small"]
    n_train = args.n_train if args.n_train is not None else n_train
    n_eval = args.n_eval if args.n_eval is not None else n_eval
    if n_eval < 0 or n_train < 0 or n_train + n_eval < 1:
        p.error("--n-train and --n-eval must be >= 0, and at least one image is needed")
    if n_train < 1 and args.layout != "ho3d":
        p.error("--n-train must be >= 1 for the Dex-YCB layout (its s0 split needs training sequences); "
                "--n-train 0 makes an HO3D evaluation-only set")
    layouts = ("ho3d", "dexycb") if args.layout == "both" else (args.layout,)
    out = Path(args.out)
    folders = {layout: out / layout if args.layout == "both" else out for layout in layouts}
    for folder in folders.values():  # refused before any rendering
        check_output_folder(folder, "--out", overwrite=args.overwrite)
    from tqdm import tqdm

    # every layout renders into a temporary folder; all of them move into place once all succeeded
    with cpu_threads(1, opencv=True), contextlib.ExitStack() as staged:  # single-threaded floats repeat bit for bit
        for layout in layouts:
            folder = folders[layout]
            stage = staged.enter_context(staged_folder(folder, replace=True))
            start = time.perf_counter()
            with tqdm(desc=f"synth {layout}", unit="img", disable=args.no_progress, file=sys.stderr) as bar:
                if layout == "ho3d":
                    counts = generate_ho3d(stage, n_train, n_eval, args.seed, args.mano_root, bar.update,
                                           workers=args.workers)
                else:
                    counts = generate_dexycb(stage, n_train, n_eval, args.seed, args.mano_root, bar.update,
                                             n_cameras=args.cameras, workers=args.workers)
            took = time.perf_counter() - start
            total = sum(counts.values())
            print(f"synth {layout}: {counts} -> {folder} ({total} images in {took:.1f} s, {total / took:.1f} img/s)")
    return 0
