"""The synthetic world (hfl_lite.synth): objects, grasps, renderer, writers and the ``synth`` command.

References are independent of the code under test: a per-pixel loop rasteriser, the MANO
layer itself, SciPy rotations, OpenCV projections and the official Dex-YCB s0 rule written out
here. The format conventions the writers share with the readers are tested in test_formats.py,
the readers reading back what the writers wrote in test_data.py.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from scipy.spatial.transform import Rotation

from hfl_lite.data.formats import MANOPTH_TO_HO3D
from hfl_lite.safe_pickle import safe_load
from hfl_lite.samples import samples_root
from hfl_lite.synth import generate, objects, writers
from hfl_lite.synth.grasp import get_hand_model, sample_grasp
from hfl_lite.synth.render import RenderMesh, rasterize, render_scene

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
F = np.diag([1.0, -1.0, -1.0])


def _layer(side="right", **kw):
    from hfl_lite.mano import ManoLayer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ManoLayer(mano_root=None, side=side, **kw)


# --------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, size", [
    ("021_bleach_cleanser", (0.098, 0.065, 0.250)), ("006_mustard_bottle", (0.095, 0.058, 0.190)),
    ("010_potted_meat_can", (0.097, 0.050, 0.082)), ("003_cracker_box", (0.158, 0.060, 0.210)),
    ("024_bowl", (0.159, 0.159, 0.053)), ("061_foam_brick", (0.050, 0.075, 0.050))])
def test_object_dimensions_and_frame(name, size):
    verts, faces = objects.load_object(name)
    assert verts.dtype == np.float32 and faces.dtype == np.int64 and faces.max() < len(verts)
    np.testing.assert_allclose(verts.max(0) - verts.min(0), size, atol=1e-3)
    np.testing.assert_allclose((verts.max(0) + verts.min(0)) / 2, 0.0, atol=1e-6)  # bbox-centred frame
    ctrl = objects.control_points(name)
    assert ctrl.shape == (21, 3)
    np.testing.assert_allclose(ctrl[20].numpy(), 0.0, atol=1e-6)
    hull = verts[np.unique(faces)]
    brute = max(np.linalg.norm(hull - v, axis=1).max() for v in hull[:: max(1, len(hull) // 400)])
    assert brute <= objects.object_diameter(name) + 1e-6


def test_object_sdf():
    box = objects.get_object("003_cracker_box")
    # an exact box: signed distances of a few points against the analytic value (sharp-ish box)
    pts = np.array([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0], [0.0, 0.0, 0.11], [0.0, 0.02, 0.0]])
    np.testing.assert_allclose(box.sdf(pts), [-0.030, 0.2 - 0.079, 0.11 - 0.105, -0.010], atol=1e-3)
    bowl = objects.get_object("024_bowl")
    assert bowl.sdf(np.array([[0.0, 0.0, 0.02]]))[0] > 0.01  # inside the bowl's hollow is outside the object


# --------------------------------------------------------------------------------------------
# Renderer
# --------------------------------------------------------------------------------------------

def _slow_raster(verts, faces, K, h, w):
    """Per-pixel loop: barycentrics by solving a 3x3 system, perspective-correct depth."""
    uv = verts @ K.T
    uv = uv[:, :2] / uv[:, 2:3]
    depth = np.full((h, w), np.inf)
    face = np.full((h, w), -1)
    margin = np.full((h, w), np.inf)  # smallest |barycentric| of the winner (edge proximity)
    for i in range(h):
        for j in range(w):
            for k, (a, b, c) in enumerate(faces):
                M = np.array([[uv[a, 0], uv[b, 0], uv[c, 0]], [uv[a, 1], uv[b, 1], uv[c, 1]], [1.0, 1.0, 1.0]])
                lam = np.linalg.solve(M, [j, i, 1.0])
                if (lam < 0).any():
                    continue
                z = 1.0 / (lam / verts[[a, b, c], 2]).sum()
                if z < depth[i, j]:
                    depth[i, j], face[i, j], margin[i, j] = z, k, lam.min()
    return depth, face, margin


def test_rasterize_matches_slow_loop():
    rng = np.random.default_rng(3)
    K = np.array([[30.0, 0.0, 15.5], [0.0, 30.0, 11.5], [0.0, 0.0, 1.0]])
    n = 8
    centres = np.c_[rng.uniform(-0.3, 0.3, (n, 2)), rng.uniform(0.8, 1.5, n)]
    verts = (centres[:, None] + rng.normal(0, 0.2, (n, 3, 3))).reshape(-1, 3)
    verts[:, 2] = np.abs(verts[:, 2]) + 0.3
    faces = np.arange(3 * n).reshape(n, 3)
    ras = rasterize(torch.tensor(verts, dtype=torch.float32), torch.tensor(faces), torch.tensor(K), 24, 32)
    depth, face, margin = _slow_raster(verts, faces, K, 24, 32)
    clear = margin > 1e-3  # pixels not on a triangle edge
    assert (face >= 0).sum() > 100
    np.testing.assert_array_equal(ras.face.numpy()[clear], face[clear])
    assert (ras.face.numpy()[face < 0] == -1).mean() > 0.98  # misses only at triangle edges
    hit = clear & (face >= 0)
    np.testing.assert_allclose(ras.depth.numpy()[hit], depth[hit], rtol=1e-4)


def test_render_scene_labels_depth_and_projection():
    obj = objects.get_object("010_potted_meat_can")
    R = Rotation.from_euler("xyz", [30, 40, 10], degrees=True).as_matrix()
    t = np.array([0.02, -0.01, 0.5])
    K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])
    mesh = RenderMesh(verts=obj.verts @ R.T + t, faces=obj.faces, normals=obj.normals @ R.T, label=9,
                      texture=obj.texture, local=obj.verts, vert_part=obj.vert_part)
    out = render_scene([mesh], K, np.random.default_rng(0))
    assert out["rgb"].shape == (480, 640, 3) and out["rgb"].dtype == np.uint8
    np.testing.assert_array_equal(out["label"] == 9, out["depth"] > 0)
    u, v = (K @ t / t[2])[:2]
    assert out["label"][int(round(v)), int(round(u))] == 9
    # silhouette against OpenCV's projection of the vertices: every vertex lands on the mask or its edge
    uv, _ = cv2.projectPoints(obj.verts.astype(np.float64), cv2.Rodrigues(R)[0], t, K, None)
    uv = np.rint(uv[:, 0]).astype(int)
    mask = cv2.dilate((out["label"] == 9).astype(np.uint8), np.ones((3, 3), np.uint8))
    assert mask[uv[:, 1], uv[:, 0]].all()
    # depth of the visible surface is between the nearest and farthest vertex depths
    z = (obj.verts @ R.T + t)[:, 2]
    d = out["depth"][out["depth"] > 0]
    assert z.min() - 1e-4 <= d.min() and d.max() <= z.max() + 1e-4


# --------------------------------------------------------------------------------------------
# Grasps
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, side", [("006_mustard_bottle", "right"), ("003_cracker_box", "left"),
                                        ("024_bowl", "right")])
def test_grasp_touches_without_penetrating(name, side):
    obj = objects.get_object(name)
    hand = get_hand_model(side)
    rng = np.random.default_rng(5)
    g1 = sample_grasp(obj, hand, rng.normal(0, 0.7, 10), np.random.default_rng(7))
    g2 = sample_grasp(obj, hand, g1.betas, np.random.default_rng(7))
    np.testing.assert_array_equal(g1.verts, g2.verts)  # deterministic from the generator
    sdf = obj.sdf(g1.verts)
    assert -sdf.min() <= 0.004  # at most 4 mm inside
    assert sdf.min() <= 0.004  # and touching
    assert g1.contacts >= 2
    # the layer reproduces the grasp from its parameters
    layer = _layer(side, use_pca=False, flat_hand_mean=True)
    v, j = layer(torch.tensor(g1.pose[None]).float(), torch.tensor(g1.betas[None]).float(),
                 torch.tensor(g1.trans[None]).float())
    np.testing.assert_allclose(v[0].numpy() / 1000, g1.verts, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Writers and the synth command
# --------------------------------------------------------------------------------------------

def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("synth")
    args = ["--layout", "both", "--n-train", "3", "--n-eval", "2", "--seed", "11", "--cameras", "2", "--no-progress"]
    assert generate.main(args + ["--out", str(base / "a")]) == 0
    return base, args


def test_synth_is_reproducible_bit_for_bit(generated):
    base, args = generated
    assert generate.main(args + ["--out", str(base / "b")]) == 0
    a, b = _hashes(base / "a"), _hashes(base / "b")
    assert len(a) > 30 and a == b


def test_synth_workers_write_the_same_files(generated):
    """With --workers the frames are rendered and their files written in worker processes; the
    result must not depend on it (the main process only records and writes the indexes)."""
    base, args = generated
    assert generate.main(args + ["--out", str(base / "parallel"), "--workers", "2"]) == 0
    a, b = _hashes(base / "a"), _hashes(base / "parallel")
    assert len(a) > 30 and a == b


def test_ho3d_files(generated):
    root = generated[0] / "a" / "ho3d"
    train = (root / "train.txt").read_text().split()
    evaluation = (root / "evaluation.txt").read_text().split()
    assert len(train) == 3 and len(evaluation) == 2
    layer = _layer(use_pca=False, flat_hand_mean=True)
    for sid in train + evaluation:
        seq, fid = sid.split("/")
        split = "train" if sid in train else "evaluation"
        meta = safe_load(root / split / seq / "meta" / f"{fid}.pkl")
        if split == "evaluation":
            assert meta["handPose"] is None and meta["handJoints3D"].shape == (3,)
            assert meta["handBoundingBox"].shape == (4,)
            root_joint = meta["handJoints3D"]
            meta = safe_load(root / "evaluation_gt" / seq / "meta" / f"{fid}.pkl")
            np.testing.assert_allclose(meta["handJoints3D"][0], root_joint)
        shapes = {"camMat": (3, 3), "handPose": (48,), "handBeta": (10,), "handTrans": (3,), "handJoints3D": (21, 3),
                  "objRot": (3, 1), "objTrans": (3,), "objCorners3D": (8, 3), "objCorners3DRest": (8, 3)}
        for key, shape in shapes.items():
            assert meta[key].shape == shape, key
        assert meta["objName"] in generate.HO3D_TRAIN_OBJECTS
        # MANO(handPose, handBeta) + handTrans reproduces handJoints3D (GL frame, HO3D order)
        _, j = layer(torch.tensor(meta["handPose"][None]), torch.tensor(meta["handBeta"][None]),
                     torch.tensor(meta["handTrans"][None]))
        ho3d_order = j[0].numpy()[MANOPTH_TO_HO3D] / 1000
        np.testing.assert_allclose(ho3d_order, meta["handJoints3D"], atol=2e-5)
        # the GL frame: flip to OpenCV, project with camMat -> on the rendered hand / object
        seg = cv2.imread(str(root / split / seq / "seg" / f"{fid}.png"))
        img = cv2.imread(str(root / split / seq / "rgb" / f"{fid}.jpg"))
        assert img.shape == seg.shape == (480, 640, 3)
        hand, obj = seg[..., 0] > 127, seg[..., 1] > 127
        K = meta["camMat"]
        uv, _ = cv2.projectPoints((meta["handJoints3D"] @ F.T).astype(np.float64), np.zeros(3), np.zeros(3), K, None)
        uv = np.rint(uv[:, 0]).astype(int)
        on = (hand | obj)[uv[:, 1], uv[:, 0]]
        assert on.mean() >= 0.9 and hand[uv[:, 1], uv[:, 0]].any()
        R = F @ Rotation.from_rotvec(meta["objRot"][:, 0]).as_matrix()
        t = F @ meta["objTrans"]
        np.testing.assert_allclose(meta["objCorners3D"] @ F.T, meta["objCorners3DRest"] @ R.T + t, atol=1e-5)
        u, v = np.rint((K @ t / t[2])[:2]).astype(int)
        assert obj[v, u] or hand[v, u]  # the object's centre: the object, or the hand in front of it


def test_dexycb_files_and_s0_split(generated):
    root = generated[0] / "a" / "dexycb"
    subjects = sorted(p.name for p in root.iterdir() if p.name.startswith("2020"))
    assert subjects == writers.DEXYCB_SUBJECTS[: len(subjects)]
    found = {"train": 0, "val": 0, "test": 0}
    layers = {}
    for s_index, subject in enumerate(subjects):
        for q_index, seq in enumerate(sorted(p.name for p in (root / subject).iterdir())):
            official = "train" if q_index % 5 != 4 else ("val" if s_index < 2 else "test")
            meta = yaml.safe_load((root / subject / seq / "meta.yml").read_text())
            side = meta["mano_sides"][0]
            calib = root / "calibration" / f"mano_{meta['mano_calib'][0]}" / "mano.yml"
            betas = yaml.safe_load(calib.read_text())["betas"]
            if side not in layers:
                layers[side] = _layer(side, use_pca=True, ncomps=45, flat_hand_mean=False)
            for serial in meta["serials"]:
                intr_file = root / "calibration" / "intrinsics" / f"{serial}_640x480.yml"
                intr = yaml.safe_load(intr_file.read_text())["color"]
                K = np.array([[intr["fx"], 0, intr["ppx"]], [0, intr["fy"], intr["ppy"]], [0, 0, 1.0]])
                for f in range(meta["num_frames"]):
                    found[official] += 1
                    lab = np.load(root / subject / seq / serial / f"labels_{f:06d}.npz")
                    assert lab["seg"].shape == (480, 640) and lab["seg"].dtype == np.uint8
                    assert set(np.unique(lab["seg"])) <= {0, 255, *meta["ycb_ids"]}
                    assert lab["pose_y"].shape == (len(meta["ycb_ids"]), 3, 4) and lab["pose_m"].shape == (1, 51)
                    j3, j2 = lab["joint_3d"][0], lab["joint_2d"][0]
                    uv, _ = cv2.projectPoints(j3.astype(np.float64), np.zeros(3), np.zeros(3), K, None)
                    np.testing.assert_allclose(j2, uv[:, 0], atol=0.05)
                    pm = torch.tensor(lab["pose_m"])
                    _, j = layers[side](pm[:, :48], torch.tensor([betas], dtype=torch.float32), pm[:, 48:])
                    np.testing.assert_allclose(j[0].numpy() / 1000, j3, atol=2e-5)
                    # the grasped object's centre is seen: the object or something in front of it
                    P = lab["pose_y"][meta["ycb_grasp_ind"]]
                    u, v = np.rint((K @ P[:, 3] / P[2, 3])[:2]).astype(int)
                    assert lab["seg"][v, u] != 0
    assert found["train"] > 0 and found["test"] > 0


def test_dexycb_plan_follows_s0():
    for n_train, n_test in [(48, 16), (8, 8), (400, 100), (5000, 1000), (16, 0)]:
        plan = writers.plan_dexycb(n_train, n_test)
        subjects = sorted({p.subject for p in plan})
        assert subjects == list(range(len(subjects)))
        images = {"train": 0, "val": 0, "test": 0}
        for p in plan:
            official = "train" if p.position % 5 != 4 else ("val" if p.subject < 2 else "test")
            assert p.split == official
            images[p.split] += 8 * p.num_frames
        assert n_train <= images["train"] <= max(n_train + 8, 48)
        assert n_test <= images["test"] <= n_test + 8 * len(subjects)
    plan = writers.plan_dexycb(48, 16)
    assert sum(8 * p.num_frames for p in plan if p.split == "train") == 48
    assert sum(8 * p.num_frames for p in plan if p.split == "test") == 16


def test_npz_writer_is_deterministic(tmp_path):
    arrays = {"seg": np.arange(12, dtype=np.uint8).reshape(3, 4), "pose_m": np.ones((1, 51), np.float32)}
    writers.write_npz(tmp_path / "a.npz", **arrays)
    writers.write_npz(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as z:
        np.testing.assert_array_equal(z["seg"], arrays["seg"])


def test_committed_samples():
    root = samples_root()
    assert len((root / "ho3d" / "train.txt").read_text().split()) == 48
    assert len((root / "ho3d" / "evaluation.txt").read_text().split()) == 16
    assert len(list((root / "ho3d").glob("train/*/rgb/*.jpg"))) == 48
    metas = sorted((root / "dexycb").glob("2020*/*/meta.yml"))
    sequences = [yaml.safe_load(m.read_text()) for m in metas]
    images = sum(len(q["serials"]) * q["num_frames"] for q in sequences)
    assert images == len(list((root / "dexycb").glob("2020*/*/*/color_*.jpg"))) == 64
    assert "python -m hfl_lite synth --layout both --out data_samples --size small --seed 0 --overwrite" in \
        (root / "README.md").read_text()
