"""Loaders of HO3D and Dex-YCB, the crop and the augmentation (hfl_lite.data)."""
from __future__ import annotations

import logging
import math
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from hfl_lite.data import (DEXYCB_AUGMENT, HO3D, HO3D_AUGMENT, AugmentParams, DataError, DexYCB, build_sample,
                           make_crop_transform, sample_params)
from hfl_lite.data.augment import apply_photometric
from hfl_lite.data.dexycb import s0_rule
from hfl_lite.data.formats import YCB_IDS
from hfl_lite.geometry.camera import project_points, tight_box, transform_points
from hfl_lite.geometry.rotations import axis_angle_to_matrix
from hfl_lite.samples import samples_root
from hfl_lite.threads import cpu_threads

SIZE, ROI = 128, 16
MIRROR = np.diag([-1.0, 1.0, 1.0])


@pytest.fixture(autouse=True)
def _stand_in_hand_one_thread(monkeypatch):
    """The sets are made with the stand-in hand; small tensors run fastest on one thread."""
    monkeypatch.delenv("MANO_ROOT", raising=False)
    with cpu_threads(1):
        yield


# ---------------------------------------------------------------------------------------------
# crop and augmentation, against OpenCV and slow references
# ---------------------------------------------------------------------------------------------

def test_crop_affine_matches_opencv_rotation_for_square_pixels():
    K = torch.tensor([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]], dtype=torch.float64)
    centre, side, size, degrees = torch.tensor([300.0, 210.0], dtype=torch.float64), 160.0, 128, 37.0
    crop = make_crop_transform(K, centre, side, size, math.radians(degrees))
    # OpenCV: rotation about the centre (its positive angle turns the other way in y-down
    # pixels), scaled, then the centre moved to the middle of the crop.
    M = cv2.getRotationMatrix2D((300.0, 210.0), -degrees, size / side)
    M[:, 2] += (size - 1) / 2 - np.array([300.0, 210.0])
    np.testing.assert_allclose(crop.A[:2].numpy(), M, atol=1e-9)
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop.warp_image(image), cv2.warpAffine(image, M, (size, size)))


@pytest.mark.parametrize("angle", [0.0, 0.8, -2.9])
def test_crop_keeps_projection_consistent_with_non_square_pixels(angle):
    K = torch.tensor([[610.0, 0.7, 331.0], [0, 590.0, 228.0], [0, 0, 1]], dtype=torch.float64)
    X = torch.randn(40, 3, dtype=torch.float64) * 0.08 + torch.tensor([0.02, -0.03, 0.55], dtype=torch.float64)
    crop = make_crop_transform(K, torch.tensor([350.0, 200.0], dtype=torch.float64), 210.0, 96, angle)
    via_image = crop.points2d(project_points(X, K))
    via_3d = project_points(crop.points3d(X), crop.K)
    assert (via_image - via_3d).abs().max() < 1e-9
    R = crop.R
    assert torch.allclose(R @ R.T, torch.eye(3, dtype=torch.float64)) and R[2, 2] == 1
    assert crop.K[1, 0] == 0 and torch.equal(crop.K[2], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_mask_sampling_matches_a_slow_loop():
    rng = np.random.default_rng(1)
    mask = np.zeros((120, 160), bool)
    cv2.circle(mask.view(np.uint8), (70, 60), 30, 1, -1)
    mask |= rng.random(mask.shape) < 0.05
    K = torch.tensor([[200.0, 0, 80], [0, 200, 60], [0, 0, 1]], dtype=torch.float64)
    crop = make_crop_transform(K, torch.tensor([75.0, 58.0], dtype=torch.float64), 90.0, 64, 0.6)
    box = torch.tensor([10.3, 12.0, 50.7, 47.5], dtype=torch.float64)
    fast = crop.sample_mask(mask, box, 16).numpy()
    A_inv = np.linalg.inv(crop.A.numpy())
    slow = np.zeros((16, 16), np.float32)
    for i in range(16):
        for j in range(16):
            x = box[0].item() + (j + 0.5) * (box[2] - box[0]).item() / 16
            y = box[1].item() + (i + 0.5) * (box[3] - box[1]).item() / 16
            u, v, _ = A_inv @ np.array([x, y, 1.0])
            c, r = int(np.floor(u + 0.5)), int(np.floor(v + 0.5))
            slow[i, j] = float(0 <= r < 120 and 0 <= c < 160 and mask[r, c])
    np.testing.assert_array_equal(fast, slow)


def test_augmentation_draws_follow_the_paper():
    rng = np.random.default_rng(2)
    ho3d = [sample_params(rng, HO3D_AUGMENT) for _ in range(4000)]
    dex = [sample_params(rng, DEXYCB_AUGMENT) for _ in range(4000)]
    for draws in (ho3d, dex):
        scale = np.array([p.scale for p in draws])
        shift = np.array([p.shift for p in draws])
        assert scale.min() >= 0.8 and scale.max() <= 1.2 and abs(np.median(scale) - 1) < 0.02
        assert np.abs(shift).max() <= 0.1 and abs(shift.std() - 0.2 / math.sqrt(12)) < 0.005
        assert max(p.blur for p in draws) <= 0.5 and max(abs(p.hue) for p in draws) <= 0.15
        assert all(0.5 <= p.brightness <= 1.5 and 0.5 <= p.contrast <= 1.5 and 0.5 <= p.saturation <= 1.5
                   for p in draws)
    ho3d_deg = np.degrees([p.angle for p in ho3d])
    assert ho3d_deg.min() >= -180 and ho3d_deg.max() <= 180 and abs(np.abs(ho3d_deg).mean() - 90) < 5
    dex_deg = np.degrees([p.angle for p in dex])
    assert abs((dex_deg == 0).mean() - 0.4) < 0.03  # rotated with probability 0.6
    rotated = dex_deg[dex_deg != 0]
    assert np.abs(rotated).max() <= 60 and abs(np.median(np.abs(rotated)) - 30 * 0.6745) < 2.0


def test_photometric_identity_and_range():
    image = np.random.default_rng(3).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    out = apply_photometric(image, AugmentParams())
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.allclose(out, torch.from_numpy(image).permute(2, 0, 1).float() / 255, atol=1e-6)
    params = AugmentParams(blur=0.5, brightness=1.5, contrast=0.5, saturation=1.4, hue=0.15, order=(3, 1, 0, 2))
    jittered = apply_photometric(image, params)
    assert jittered.min() >= 0 and jittered.max() <= 1 and not torch.allclose(jittered, out)


def test_s0_split_rules_match_the_toolkit_counts():
    # Dex-YCB toolkit, setup s0: 10 subjects x 100 sequences; train keeps i % 5 != 4 of every
    # subject, val the others of subjects 0-1, test those of subjects 2-9.
    count = {split: sum(s0_rule(split, subject, sequence) for subject in range(10) for sequence in range(100))
             for split in ("train", "val", "test")}
    assert count == {"train": 800, "val": 40, "test": 160}
    assert s0_rule("val", 1, 4) and not s0_rule("val", 2, 4) and s0_rule("test", 9, 99) and not s0_rule("train", 0, 9)
    with pytest.raises(ValueError, match="split"):
        s0_rule("validation", 0, 4)


# ---------------------------------------------------------------------------------------------
# Small scenes written with the synth helper's writers (no rendering: random pixels, hull masks)
# ---------------------------------------------------------------------------------------------

K_TEST = np.array([[600.0, 0.0, 320.0], [0.0, 603.0, 236.0], [0.0, 0.0, 1.0]])


def _layer(side="right", **kw):
    from hfl_lite.mano import ManoLayer

    kw = {"use_pca": False, "flat_hand_mean": True, **kw}
    return ManoLayer(side=side, dtype=torch.float64, **kw)


def _frame_gt(rng, side, name, betas):
    """One frame's ground truth (OpenCV frame) with a random image and convex-hull labels."""
    from hfl_lite.data.formats import HAND_LABEL
    from hfl_lite.synth import objects
    from hfl_lite.synth.writers import FrameGT, HandGT, ObjectGT

    pose = np.concatenate([rng.normal(0, 1.0, 3), rng.normal(0, 0.2, 45)])
    verts, joints = (x[0].numpy() / 1000 for x in _layer(side)(torch.tensor(pose)[None], torch.tensor(betas)[None]))
    root_rest = joints[0].copy()
    trans = np.array([0.0, 0.0, 0.55]) + rng.normal(0, 0.03, 3) - root_rest
    hand = HandGT(pose=pose, betas=betas, trans=trans, root_rest=root_rest, joints=joints + trans,
                  verts=verts + trans, side=side)
    R = axis_angle_to_matrix(torch.tensor(rng.normal(0, 1.5, 3))).numpy()
    obj = ObjectGT(name=name, R=R, t=hand.joints[9] + np.array([0.0, 0.02, 0.06]) + rng.normal(0, 0.01, 3))
    label = np.zeros((480, 640), np.uint8)
    obj_verts = objects.load_object(name)[0].astype(np.float64) @ R.T + obj.t
    for points, value in ((obj_verts, YCB_IDS[name]), (hand.verts, HAND_LABEL)):
        uv = points @ K_TEST.T
        cv2.fillConvexPoly(label, cv2.convexHull(np.round(uv[:, :2] / uv[:, 2:]).astype(np.int32)), int(value))
    rgb = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return FrameGT(K=K_TEST, hand=hand, objects=[obj], rgb=rgb, label=label)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Tiny HO3D and Dex-YCB trees written by hfl_lite.synth.writers, with their ground truth.

    HO3D: 3 train and 2 evaluation frames. Dex-YCB: subject 0 right-handed and subject 1
    left-handed, five one-frame sequences each on one camera (s0: four train, one val), the
    grasped object first of two.
    """
    from hfl_lite.synth.writers import DEXYCB_SERIALS, DexYCBWriter, HO3DWriter, ObjectGT

    root = tmp_path_factory.mktemp("written")
    rng = np.random.default_rng(7)
    gt = {"ho3d": {}, "dexycb": {}}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MANO_ROOT", raising=False)
        ho3d = HO3DWriter(root / "ho3d")
        betas = rng.normal(0, 0.7, 10)
        for split, sequence, n in (("train", "MB1", 3), ("evaluation", "MBE", 2)):
            for i in range(n):
                frame = _frame_gt(rng, "right", "006_mustard_bottle", betas)
                gt["ho3d"][ho3d.add(split, sequence, i, frame)] = frame
        ho3d.close()
        dex = DexYCBWriter(root / "dexycb")
        serial = DEXYCB_SERIALS[0]
        dex.write_intrinsics(serial, K_TEST)
        ycb_ids = [YCB_IDS["010_potted_meat_can"], YCB_IDS["024_bowl"]]
        for s_index, (subject, side) in enumerate((("20200709-subject-01", "right"), ("20200813-subject-02", "left"))):
            pca = _layer(side, use_pca=True, ncomps=45, flat_hand_mean=False)
            betas = rng.normal(0, 0.7, 10)
            calib = f"{subject}_{side}"
            dex.write_mano_calib(calib, betas)
            for position in range(5):
                sequence = f"2020{7 + s_index:02d}09_14{position:02d}00"
                dex.begin_sequence(subject, sequence, [serial], 1, ycb_ids, 0, side, calib, "rig")
                frame = _frame_gt(rng, side, "010_potted_meat_can", betas)
                frame.objects.append(ObjectGT("024_bowl", np.eye(3), np.array([0.3, 0.0, 0.8])))
                dex.add(subject, sequence, serial, 0, frame, pca.th_hands_mean.numpy().reshape(45),
                        pca.th_selected_comps.numpy())
                gt["dexycb"][f"{subject}/{sequence}/{serial}/000000"] = frame
        dex.close()
    return root, gt


def _dataset(layout, root, split, **kw):
    cls = HO3D if layout == "ho3d" else DexYCB
    return cls(root, split, image_size=SIZE, roi_size=ROI, **kw)


def _homogeneous(affine):
    return np.vstack([affine.double().numpy(), [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("layout,split", [("ho3d", "train"), ("ho3d", "evaluation"), ("dexycb", "train"),
                                          ("dexycb", "val")])
def test_written_scenes_read_back_with_the_same_poses(written, layout, split):
    root, gt = written
    ds = _dataset(layout, root / layout, split)
    assert len(ds) > 0 and set(ds.ids) <= set(gt[layout])
    for i in range(len(ds)):
        frame, s = gt[layout][ds.ids[i]], ds[i]
        hand, obj = frame.hand, frame.grasped
        left = hand.side == "left"
        M = MIRROR if left else np.eye(3)
        assert bool(s["is_left"]) == left and s["sample_id"] == ds.ids[i]
        assert s["obj_name"] == obj.name and int(s["obj_id"]) == YCB_IDS[obj.name] - 1
        global_rot = axis_angle_to_matrix(torch.tensor(hand.pose[:3])).numpy()
        np.testing.assert_allclose(axis_angle_to_matrix(s["mano_pose"][:3].double()).numpy(), M @ global_rot @ M,
                                   atol=1e-6)
        finger_sign = np.tile([1.0, -1.0, -1.0] if left else [1.0, 1.0, 1.0], 15)
        np.testing.assert_allclose(s["mano_pose"][3:].numpy(), hand.pose[3:] * finger_sign, atol=1e-6)
        np.testing.assert_allclose(s["mano_shape"].numpy(), hand.betas, atol=1e-6)
        np.testing.assert_allclose(s["joints3d"].numpy(), hand.joints @ M, atol=1e-6)
        np.testing.assert_allclose(s["verts3d"].numpy(), hand.verts @ M, atol=1e-6)
        np.testing.assert_allclose(s["root3d"].numpy(), hand.joints[0] @ M, atol=1e-6)
        np.testing.assert_allclose(s["obj_rot"].numpy(), M @ obj.R @ M, atol=1e-6)
        np.testing.assert_allclose(s["obj_trans"].numpy(), M @ obj.t, atol=1e-6)
        if not left:
            np.testing.assert_allclose(s["mano_trans"].numpy(), hand.trans, atol=1e-6)
        # Without augmentation the crop does not rotate: K_crop = A K (K mirrored for left hands).
        K = frame.K
        if left:
            K = np.array([[-1.0, 0.0, 639.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ K @ MIRROR
        A = _homogeneous(s["crop_affine"])
        np.testing.assert_allclose(s["K"].numpy(), A @ K, rtol=1e-5, atol=1e-3)
        if layout == "ho3d" and split == "evaluation":  # crop and hand box from handBoundingBox
            from hfl_lite.synth.writers import hand_bounding_box

            x1, y1, x2, y2 = hand_bounding_box(frame)
            corners = A @ np.array([[x1, x2], [y1, y2], [1.0, 1.0]])
            np.testing.assert_allclose(s["hand_box"].numpy(), corners[:2].T.reshape(4), atol=1e-3)


def test_dexycb_pca_pose_matches_the_pca_layer(written):
    # Independent of the loader's conversion: Dex-YCB's own recipe, the 45-PCA layer.
    root, gt = written
    ds = _dataset("dexycb", root / "dexycb", "train")
    for i in range(len(ds)):
        subject, sequence, serial, _ = ds.ids[i].split("/")
        side = gt["dexycb"][ds.ids[i]].hand.side
        labels = np.load(root / "dexycb" / subject / sequence / serial / "labels_000000.npz")
        pose_m = torch.from_numpy(labels["pose_m"]).double()
        verts, _ = _layer(side, use_pca=True, ncomps=45, flat_hand_mean=False)(
            pose_m[:, :48], ds.betas(f"{subject}_{side}")[None], pose_m[:, 48:])
        verts = verts[0].numpy() / 1000
        np.testing.assert_allclose(ds[i]["verts3d"].numpy(), verts @ MIRROR if side == "left" else verts, atol=1e-6)


def test_dexycb_s0_on_written_tree(written, caplog):
    root, _ = written
    val = _dataset("dexycb", root / "dexycb", "val")
    assert [i.split("/")[1][-6:-2] for i in val.ids] == ["1404", "1404"]  # position 4 of subjects 0 and 1
    assert len(_dataset("dexycb", root / "dexycb", "train")) == 8
    with caplog.at_level(logging.WARNING, logger="hfl_lite.data"):
        assert len(_dataset("dexycb", root / "dexycb", "test")) == 0
    assert "has no frames" in caplog.text


def test_ho3d_evaluation_without_ground_truth_has_box_and_root_only(written, tmp_path):
    root, gt = written
    copy = tmp_path / "ho3d"
    shutil.copytree(root / "ho3d", copy)
    shutil.rmtree(copy / "evaluation_gt")
    s = _dataset("ho3d", copy, "evaluation")[0]
    assert not {"joints2d", "joints3d", "verts3d", "mano_pose", "mano_shape", "mano_trans"} & set(s)
    frame = gt["ho3d"][_dataset("ho3d", copy, "evaluation").ids[0]]
    np.testing.assert_allclose(s["root3d"].numpy(), frame.hand.joints[0], atol=1e-6)
    assert s["hand_box"].shape == (4,) and s["obj_mask"].shape == (ROI, ROI)


def test_object_models_come_from_the_root_or_a_mesh_function(written, tmp_path):
    """Without ``<root>/models`` the reader says which file it missed; a mesh function (the
    package's procedural objects) serves instead when passed, with the same control points."""
    from hfl_lite.synth.objects import load_object

    copy = tmp_path / "ho3d"
    shutil.copytree(written[0] / "ho3d", copy)
    from_files = _dataset("ho3d", copy, "train")[0]
    shutil.rmtree(copy / "models")
    with pytest.raises(DataError, match="model of object '006_mustard_bottle' is missing.*object_models="):
        _dataset("ho3d", copy, "train")[0]
    procedural = _dataset("ho3d", copy, "train", object_models=load_object)[0]
    np.testing.assert_allclose(procedural["obj_ctrl3d"].numpy(), from_files["obj_ctrl3d"].numpy(), atol=1e-5)
    assert float(procedural["obj_diameter"]) == pytest.approx(float(from_files["obj_diameter"]), abs=1e-5)
    procedural_set = _dataset("ho3d", copy, "train", object_models=load_object)
    with pytest.raises(DataError, match="no mesh for object 'not_an_object'"):
        procedural_set.objects.info("not_an_object")


# ---------------------------------------------------------------------------------------------
# Every sample of the shipped sets (hfl_lite.samples)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample_sets():
    return {"ho3d": samples_root() / "ho3d", "dexycb": samples_root() / "dexycb"}


def _check_sample(s: dict, frame, right_hand) -> bool:
    """Assert the geometric consistency of one sample; True when its object mask was checked."""
    K = s["K"].double()
    ctrl = project_points(transform_points(s["obj_ctrl3d"].double(), s["obj_rot"].double(), s["obj_trans"].double()), K)
    assert (ctrl - s["obj_ctrl2d"]).norm(dim=-1).max() < 0.5, s["sample_id"]
    assert torch.allclose(s["obj_box"], tight_box(s["obj_ctrl2d"])), s["sample_id"]
    R = s["obj_rot"].double()
    assert torch.allclose(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-5) and torch.det(R) > 0
    if "joints3d" in s:
        joints2d = s["joints2d"]
        assert (project_points(s["joints3d"].double(), K) - joints2d).norm(dim=-1).max() < 0.5, s["sample_id"]
        box = s["hand_box"]
        assert ((joints2d >= box[:2] - 1e-3) & (joints2d <= box[2:] + 1e-3)).all(), s["sample_id"]
        # The stand-in's left hand is the exact mirror of its right one, so this holds for
        # mirrored left hands too.
        verts, _ = right_hand(*(s[k].double()[None] for k in ("mano_pose", "mano_shape", "mano_trans")))
        assert (verts[0] / 1000 - s["verts3d"]).abs().max() < 1e-5, s["sample_id"]
    if "obj_mask" not in s:
        return False
    # Where the object centre is visible in the full image, the mask cell under it is set.
    centre = project_points(transform_points(frame.obj_ctrl3d[20:], frame.obj_rot, frame.obj_trans), frame.K)[0]
    A = s["crop_affine"].double()
    cell_full = float((s["obj_box"][2] - s["obj_box"][0]) / ROI) / math.sqrt(abs(float(torch.det(A[:, :2]))))
    r = int(math.ceil(cell_full)) + 1
    u, v = (int(round(float(c))) for c in centre)
    window = frame.obj_mask[max(v - r, 0):v + r + 1, max(u - r, 0):u + r + 1]
    if window.size < (2 * r + 1) ** 2 or not window.all():
        return False
    x1, y1, x2, y2 = s["obj_box"].tolist()
    cu, cv_ = s["obj_ctrl2d"][20].tolist()
    col, row = int((cu - x1) / (x2 - x1) * ROI), int((cv_ - y1) / (y2 - y1) * ROI)
    assert s["obj_mask"][min(row, ROI - 1), min(col, ROI - 1)] == 1, s["sample_id"]
    return True


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augmented"])
@pytest.mark.parametrize("layout,split", [("ho3d", "train"), ("ho3d", "evaluation"), ("dexycb", "train"),
                                          ("dexycb", "val"), ("dexycb", "test")])
def test_every_shipped_sample_is_consistent(sample_sets, layout, split, augment):
    ds = _dataset(layout, sample_sets[layout], split)
    if len(ds) == 0:
        pytest.skip(f"the {layout} set has no {split} frames")
    right_hand = _layer("right")
    masks = 0
    for i in range(len(ds)):
        frame = ds.read_frame(i)
        params = sample_params(np.random.default_rng([i, 1]), ds.default_augment) if augment else None
        sample = build_sample(frame, SIZE, ROI, params)
        assert sample["image"].shape == (3, SIZE, SIZE) and 0 <= sample["image"].min() <= sample["image"].max() <= 1
        masks += _check_sample(sample, frame, right_hand)
    assert masks > 0 or len(ds) < 4, "no sample had a visible object centre to check the mask against"


def test_dataloader_batches_samples(sample_sets):
    ds = _dataset("ho3d", sample_sets["ho3d"], "train", augment=True, seed=3)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, SIZE, SIZE) and batch["joints3d"].shape == (2, 21, 3)
    assert batch["obj_mask"].shape == (2, ROI, ROI) and len(batch["sample_id"]) == 2
    again = _dataset("ho3d", sample_sets["ho3d"], "train", augment=True, seed=3)[0]
    assert torch.equal(again["joints2d"], ds[0]["joints2d"])  # an integer seed fixes each index's draw
    ds.set_epoch(1)
    assert not torch.equal(again["joints2d"], ds[0]["joints2d"])


def _equal_samples(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


def test_memory_cache_holds_the_same_samples_in_private_memory(sample_sets):
    """Samples prepared by workers equal a direct read, and none of their tensors stays in shared
    memory: each shared tensor keeps a file descriptor open, and thousands of them once stopped a
    GPU run with "Too many open files". A soft limit just above what this process has open
    makes the old behaviour fail here."""
    import resource

    from hfl_lite.data.cache import MemoryCache

    ds = _dataset("ho3d", sample_sets["ho3d"], "train", augment=False)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_now = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, open_now + 200), hard))
    try:
        cache = MemoryCache(ds, workers=2, progress=False)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(cache) == len(ds) == 48
    tensors = [v for s in cache.samples for v in s.values() if isinstance(v, torch.Tensor)]
    assert len(tensors) > 200 and not any(t.is_shared() for t in tensors)
    for i in (0, 17, 47):
        assert _equal_samples(cache[i], torch.utils.data.default_convert(ds[i]))
    assert cache.nbytes == sum(t.numel() * t.element_size() for t in tensors)
    assert cache.split == "train" and cache.skipped == 0  # read through from the dataset


class _MixedSamples(torch.utils.data.Dataset):
    """Samples a cache must keep as they are: shapes that vary, numpy arrays, strings, nested
    lists, and one sample without a key (so its chunk cannot be stacked)."""

    def __len__(self):
        return 70

    def __getitem__(self, i):
        sample = {"image": torch.full((3, 4, 4), float(i)), "points": torch.arange(i % 3 + 1.0),
                  "id": torch.tensor(i), "array": np.full(2, i, np.int16), "name": f"s{i}",
                  "nested": [torch.tensor([i, -i])]}
        if i == 66:
            del sample["points"]
        return sample


def test_memory_cache_chunks_return_every_sample_as_read():
    from hfl_lite.data.cache import CHUNK, MemoryCache

    ds = _MixedSamples()
    assert len(ds) > CHUNK  # two chunks: the first stacked, the second sent sample by sample
    cache = MemoryCache(ds, workers=1, progress=False)
    assert len(cache) == len(ds)
    for i in range(len(ds)):
        got, want = cache[i], torch.utils.data.default_convert(ds[i])
        assert list(got) == list(want), i
        for key, value in want.items():
            if isinstance(value, torch.Tensor):
                assert got[key].dtype == value.dtype and torch.equal(got[key], value), (i, key)
                assert got[key].is_contiguous() and not got[key].is_shared()
            elif key == "nested":
                assert torch.equal(got[key][0], value[0]) and not got[key][0].is_shared()
            else:
                assert got[key] == value
    # a stacked tensor's sample owns a compact storage, not a view of the whole chunk
    assert cache[0]["image"].untyped_storage().nbytes() == 3 * 4 * 4 * 4


def test_memory_cache_refuses_augmented_datasets(sample_sets):
    from hfl_lite.data.cache import MemoryCache

    with pytest.raises(ValueError, match="augment"):
        MemoryCache(_dataset("ho3d", sample_sets["ho3d"], "train", augment=True, seed=0), progress=False)


# ---------------------------------------------------------------------------------------------
# Bad input: errors naming the file and the problem; skip_bad
# ---------------------------------------------------------------------------------------------

def _edit_pickle(path, edit):
    from hfl_lite.synth.writers import write_pickle
    from hfl_lite.safe_pickle import safe_load

    meta = safe_load(path)
    edit(meta)
    write_pickle(path, meta)


def _edit_npz(path, edit):
    from hfl_lite.synth.writers import write_npz

    with np.load(path) as data:
        arrays = {k: data[k].copy() for k in data.files}
    edit(arrays)
    write_npz(path, **arrays)


def _nan_joint(meta):
    meta["handJoints3D"][3, 1] = np.nan


HO3D_BREAKS = {
    "missing image": ("train/MB1/rgb/0001.jpg", lambda p: p.unlink(), "image file is missing"),
    "corrupt image": ("train/MB1/rgb/0001.jpg", lambda p: p.write_bytes(b"\xff\xd8 not a jpeg"), "cannot be decoded"),
    "missing seg": ("train/MB1/seg/0001.png", lambda p: p.unlink(), "segmentation image is missing"),
    "truncated meta": ("train/MB1/meta/0001.pkl", lambda p: p.write_bytes(p.read_bytes()[:50]), "cannot read the meta"),
    "meta without a key": ("train/MB1/meta/0001.pkl", lambda p: _edit_pickle(p, lambda m: m.pop("handPose")),
                           "key 'handPose' is missing"),
    "NaN in joints": ("train/MB1/meta/0001.pkl", lambda p: _edit_pickle(p, _nan_joint), "'handJoints3D' contains NaN"),
}
DEX_FRAME = "20200709-subject-01/20200709_140100/836212060125"
DEX_BREAKS = {
    "missing labels": (f"{DEX_FRAME}/labels_000000.npz", lambda p: p.unlink(), "label file is missing"),
    "corrupt image": (f"{DEX_FRAME}/color_000000.jpg", lambda p: p.write_bytes(b"garbage"), "cannot be decoded"),
    "labels without a key": (f"{DEX_FRAME}/labels_000000.npz", lambda p: _edit_npz(p, lambda a: a.pop("pose_m")),
                             "['pose_m'] missing"),
    "NaN in object pose": (f"{DEX_FRAME}/labels_000000.npz",
                           lambda p: _edit_npz(p, lambda a: a["pose_y"].__setitem__((0, 1, 3), np.nan)),
                           "obj_trans contains NaN"),
    "frame without a hand": (f"{DEX_FRAME}/labels_000000.npz",
                             lambda p: _edit_npz(p, lambda a: a["joint_3d"].fill(-1.0)), "no hand in this frame"),
    "meta.yml without a key": ("20200709-subject-01/20200709_140100/meta.yml",
                               lambda p: p.write_text(p.read_text().replace("ycb_grasp_ind", "grasp")),
                               "key 'ycb_grasp_ind' is missing"),
}


@pytest.mark.parametrize("layout,kind", [("ho3d", k) for k in HO3D_BREAKS] + [("dexycb", k) for k in DEX_BREAKS])
def test_bad_input_raises_naming_file_and_problem_or_is_skipped(written, tmp_path, caplog, layout, kind):
    relative, breaker, problem = (HO3D_BREAKS if layout == "ho3d" else DEX_BREAKS)[kind]
    copy = tmp_path / layout
    shutil.copytree(written[0] / layout, copy)
    breaker(copy / relative)
    ds = _dataset(layout, copy, "train")
    bad = ds.ids.index("MB1/0001" if layout == "ho3d" else f"{DEX_FRAME}/000000")
    assert 0 < bad < len(ds) - 1
    with pytest.raises(DataError) as info:
        ds[bad]
    assert str(copy / relative) in str(info.value) and problem in str(info.value)
    assert isinstance(info.value, ValueError)
    ds[0], ds[bad + 1]  # the other frames still load

    skipping = _dataset(layout, copy, "train", skip_bad=True)
    with caplog.at_level(logging.WARNING, logger="hfl_lite.data"):
        sample = skipping[bad]
        again = skipping[bad]
    assert sample["sample_id"] == again["sample_id"] == skipping.ids[bad + 1]  # the next good frame
    warnings = [r for r in caplog.records if "skipping frame" in r.getMessage()]
    assert len(warnings) == 1 and str(copy / relative) in warnings[0].getMessage()
    assert skipping.skipped == 1
    assert f"skipped 1 of {len(skipping)} frames" in skipping.skip_report()


def test_skips_in_dataloader_workers_are_counted(written, tmp_path):
    copy = tmp_path / "ho3d"
    shutil.copytree(written[0] / "ho3d", copy)
    for frame in ("0000", "0002"):
        (copy / "train" / "MB1" / "rgb" / f"{frame}.jpg").write_bytes(b"broken")
    ds = _dataset("ho3d", copy, "train", skip_bad=True)
    seen = [sid for batch in torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2) for sid in batch["sample_id"]]
    assert seen == ["MB1/0001"] * 3
    assert ds.skipped == 2 and "skipped 2 of 3 frames" in ds.skip_report()


def test_all_bad_frames_raise_even_when_skipping(written, tmp_path):
    copy = tmp_path / "ho3d"
    shutil.copytree(written[0] / "ho3d", copy)
    shutil.rmtree(copy / "train" / "MB1" / "rgb")
    with pytest.raises(DataError, match="all 3 frames are bad"):
        _dataset("ho3d", copy, "train", skip_bad=True)[0]
