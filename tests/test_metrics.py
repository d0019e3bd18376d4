"""Metrics against closed-form cases and brute-force loop references."""
import math

import cv2
import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from hfl_lite.geometry import axis_angle_to_matrix
from hfl_lite.metrics import (DEXYCB_SYMMETRIC_OBJECTS, MetricTable, add, add_01d, add_s, articulation_mpjpe,
                              evaluate_table, f_score, f_scores, finger_angle_error, mpjpe, pa_mpjpe, pa_mpvpe, rep_px)


def rand_rot(b, seed):
    return torch.from_numpy(Rotation.random(b, random_state=seed).as_matrix())


def scipy_align(pred, gt):
    p0, g0 = pred - pred.mean(0), gt - gt.mean(0)
    Q, sigma = orthogonal_procrustes(p0, g0)
    return sigma / (p0 ** 2).sum() * p0 @ Q + gt.mean(0)


def test_mpjpe_closed_form():
    gt = torch.rand(2, 21, 3, dtype=torch.float64) * 0.1
    assert torch.allclose(mpjpe(gt + torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64), gt), torch.zeros(2, dtype=torch.float64))
    pred = gt.clone()
    pred[:, 5, 0] += 0.021  # 21 mm on one of 21 joints -> 1 mm
    assert torch.allclose(mpjpe(pred, gt), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(mpjpe(pred + 1.0, gt, root=None), (pred + 1.0 - gt).norm(dim=-1).mean(-1) * 1000)


def test_pa_errors_against_scipy():
    rng = np.random.default_rng(0)
    gt = rng.normal(scale=0.05, size=(4, 21, 3))
    pred = 1.3 * np.einsum("bij,bnj->bni", rand_rot(4, 0).numpy(), gt) + 0.2 + rng.normal(scale=0.004, size=gt.shape)
    ours = pa_mpjpe(torch.from_numpy(pred), torch.from_numpy(gt)).numpy()
    ref = [np.linalg.norm(scipy_align(pred[b], gt[b]) - gt[b], axis=1).mean() * 1000 for b in range(4)]
    np.testing.assert_allclose(ours, ref, rtol=1e-9)
    assert pa_mpvpe(torch.from_numpy(gt * 2 + 1), torch.from_numpy(gt)).max() < 1e-9


def official_align_w_scale(gt, pred):
    """The official HO3D evaluation's alignment (``align_w_scale``) written out with NumPy/SciPy:
    centre both sets, normalise each to unit Frobenius norm, fit an orthogonal matrix (which may
    be a reflection) and a scale, and move ``pred`` onto ``gt``."""
    t1, t2 = gt.mean(0), pred.mean(0)
    g, p = gt - t1, pred - t2
    s1, s2 = np.linalg.norm(g) + 1e-8, np.linalg.norm(p) + 1e-8
    R, s = orthogonal_procrustes(g / s1, p / s2)
    return (p / s2) @ R.T * s * s1 + t1


def test_pa_errors_follow_the_official_ho3d_alignment_with_reflections():
    """PA-MPJPE/PA-MPVPE/F-score align as HO3D's evaluation does, which admits a mirror image: a
    mirrored hand scores (almost) zero, and poor predictions score as on the leaderboard."""
    rng = np.random.default_rng(3)
    gt = rng.normal(scale=0.05, size=(5, 21, 3))
    mirrored = gt * np.array([-1.0, 1.0, 1.0]) + 0.3
    poor = gt + rng.normal(scale=0.03, size=gt.shape)  # 30 mm joint noise
    for pred in (mirrored, poor):
        ref = [np.linalg.norm(official_align_w_scale(gt[b], pred[b]) - gt[b], axis=1).mean() * 1000 for b in range(5)]
        np.testing.assert_allclose(pa_mpjpe(torch.from_numpy(pred), torch.from_numpy(gt)).numpy(), ref, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(pa_mpvpe(torch.from_numpy(pred), torch.from_numpy(gt)).numpy(), ref, rtol=1e-6, atol=1e-4)  # official adds 1e-8 to norms
    assert pa_mpjpe(torch.from_numpy(mirrored), torch.from_numpy(gt)).max() < 1e-6
    # the F-score's alignment is the same one: a mirrored mesh is a perfect match
    assert f_score(torch.from_numpy(mirrored), torch.from_numpy(gt), 0.005).min() == 1.0


def brute_f(pred, gt, th):
    d_p = np.array([min(np.linalg.norm(p - q) for q in gt) for p in pred])
    d_g = np.array([min(np.linalg.norm(q - p) for p in pred) for q in gt])
    P, R = (d_p < th).mean(), (d_g < th).mean()
    return 0.0 if P + R == 0 else 2 * P * R / (P + R)


def test_f_score_against_loops():
    rng = np.random.default_rng(1)
    gt = rng.normal(scale=0.03, size=(3, 60, 3))
    pred = 0.9 * np.einsum("bij,bnj->bni", rand_rot(3, 1).numpy(), gt) + 0.05 + rng.normal(scale=0.006, size=gt.shape)
    for th in (0.005, 0.015):
        unaligned = f_score(torch.from_numpy(pred), torch.from_numpy(gt), th, align=False).numpy()
        np.testing.assert_allclose(unaligned, [brute_f(pred[b], gt[b], th) for b in range(3)])
        aligned = f_score(torch.from_numpy(pred), torch.from_numpy(gt), th).numpy()
        np.testing.assert_allclose(aligned, [brute_f(scipy_align(pred[b], gt[b]), gt[b], th) for b in range(3)])
    both = f_scores(torch.from_numpy(pred), torch.from_numpy(gt))
    assert both.shape == (3, 2) and (both[:, 0] <= both[:, 1]).all()
    # different point counts without alignment; all far apart -> 0
    far = f_score(torch.zeros(1, 5, 3), torch.ones(1, 7, 3), 0.01, align=False)
    assert far.tolist() == [0.0]


def brute_add_s(pred_pts, gt_pts):
    return np.mean([min(np.linalg.norm(g - p) for p in pred_pts) for g in gt_pts]) * 1000


def test_add_and_add_s():
    rng = np.random.default_rng(2)
    pts = torch.from_numpy(rng.uniform(-0.05, 0.05, (80, 3)))
    R_gt, t_gt = rand_rot(5, 2), torch.from_numpy(rng.uniform(-0.1, 0.1, (5, 3)) + [0, 0, 0.6])
    # identical poses -> 0; pure translation by d -> ADD = d
    assert torch.allclose(add(R_gt, t_gt, R_gt, t_gt, pts), torch.zeros(5, dtype=torch.float64))
    shift = torch.tensor([0.003, 0.004, 0.0], dtype=torch.float64)
    assert torch.allclose(add(R_gt, t_gt + shift, R_gt, t_gt, pts), torch.full((5,), 5.0, dtype=torch.float64))
    # random perturbations: ADD-S matches a loop and never exceeds ADD
    R_p = axis_angle_to_matrix(torch.from_numpy(rng.normal(scale=0.05, size=(5, 3)))) @ R_gt
    t_p = t_gt + torch.from_numpy(rng.normal(scale=0.01, size=(5, 3)))
    e_add, e_adds = add(R_p, t_p, R_gt, t_gt, pts), add_s(R_p, t_p, R_gt, t_gt, pts)
    assert (e_adds <= e_add + 1e-9).all()
    for b in range(5):
        P = (pts @ R_p[b].T + t_p[b]).numpy()
        G = (pts @ R_gt[b].T + t_gt[b]).numpy()
        assert e_add[b] == pytest.approx(np.linalg.norm(P - G, axis=1).mean() * 1000)
        assert e_adds[b] == pytest.approx(brute_add_s(P, G))


def test_symmetric_object_add_01d():
    # a ring of points (alternately on two levels): turns of 90 and 180 degrees about its axis
    # map the point set onto itself
    ang = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    ring = torch.from_numpy(np.stack([0.05 * np.cos(ang), 0.05 * np.sin(ang), np.tile([-0.02, 0.02], 32)], 1))
    R_gt = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    t = torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64).expand(2, 3)
    flip = torch.from_numpy(Rotation.from_euler("z", [[np.pi / 2], [np.pi]]).as_matrix())
    assert add(flip, t, R_gt, t, ring).min() > 30  # plain ADD punishes the symmetric turn
    assert add_s(flip, t, R_gt, t, ring).max() < 1e-6
    diameter = 0.108
    assert add_01d(flip, t, R_gt, t, ring, diameter).tolist() == [False, False]
    assert add_01d(flip, t, R_gt, t, ring, diameter, symmetric=True).tolist() == [True, True]
    assert add_01d(flip, t, R_gt, t, ring, diameter, symmetric=torch.tensor([True, False])).tolist() == [True, False]
    # the threshold is 10% of the diameter: a shift of 0.09 D passes, 0.11 D fails
    shift = torch.tensor([[0.09 * diameter, 0, 0], [0.11 * diameter, 0, 0]], dtype=torch.float64)
    assert add_01d(R_gt, t + shift, R_gt, t, ring, diameter).tolist() == [True, False]
    assert set(DEXYCB_SYMMETRIC_OBJECTS) == {"024_bowl", "036_wood_block", "052_extra_large_clamp", "061_foam_brick"}


def test_padded_points_mask():
    pts = torch.rand(2, 10, 3, dtype=torch.float64) * 0.05
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    pts_padded = pts.clone()
    pts_padded[1, 6:] = 100.0  # padding values must not matter
    R, t = rand_rot(2, 4), torch.tensor([[0.0, 0, 0.5], [0.01, 0, 0.6]], dtype=torch.float64)
    R2 = rand_rot(2, 5)
    for metric in (add, add_s):
        full = metric(R2, t, R, t, pts_padded, mask)
        assert full[1] == pytest.approx(float(metric(R2[1:], t[1:], R[1:], t[1:], pts[1:, :6])))


def test_rep_px_against_opencv():
    rng = np.random.default_rng(5)
    pts = rng.uniform(-0.05, 0.05, (30, 3))
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    R_gt, R_p = rand_rot(2, 6), rand_rot(2, 7)
    t_gt = torch.tensor([[0.0, 0, 0.5], [0.05, 0, 0.7]], dtype=torch.float64)
    t_p = t_gt + 0.01
    ours = rep_px(R_p, t_p, R_gt, t_gt, torch.from_numpy(pts), torch.from_numpy(K))
    for b in range(2):
        a = cv2.projectPoints(pts, cv2.Rodrigues(R_p[b].numpy())[0], t_p[b].numpy(), K, None)[0][:, 0]
        g = cv2.projectPoints(pts, cv2.Rodrigues(R_gt[b].numpy())[0], t_gt[b].numpy(), K, None)[0][:, 0]
        assert float(ours[b]) == pytest.approx(np.linalg.norm(a - g, axis=1).mean(), rel=1e-7)


def test_metric_table():
    rng = np.random.default_rng(6)
    gt_j = torch.from_numpy(rng.normal(scale=0.04, size=(6, 21, 3)))
    pred_j = gt_j + torch.from_numpy(rng.normal(scale=0.005, size=(6, 21, 3)))
    gt_v = torch.from_numpy(rng.normal(scale=0.04, size=(6, 778, 3)))
    pred_v = gt_v + torch.from_numpy(rng.normal(scale=0.005, size=(6, 778, 3)))
    pts = torch.from_numpy(rng.uniform(-0.05, 0.05, (50, 3)))
    eye = torch.eye(3, dtype=torch.float64)
    t0 = torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
    records = []
    for i in range(6):
        name = ["024_bowl", "003_cracker_box"][i % 2]
        shift = torch.tensor([0.002 * i, 0, 0], dtype=torch.float64)  # 0..10 mm
        records.append(dict(pred_joints=pred_j[i], gt_joints=gt_j[i], pred_verts=pred_v[i], gt_verts=gt_v[i],
                            obj_name=name, pred_R=eye, pred_t=t0 + shift, gt_R=eye, gt_t=t0, obj_verts=pts,
                            obj_diameter=0.05))  # threshold 5 mm
    table = evaluate_table(records, symmetric_objects=DEXYCB_SYMMETRIC_OBJECTS)
    s = table.summary()
    assert s["num_hand"] == 6 and s["num_objects"] == 6
    assert s["pa_mpjpe_mm"] == pytest.approx(float(pa_mpjpe(pred_j, gt_j).mean()))
    assert s["mpjpe_mm"] == pytest.approx(float(mpjpe(pred_j, gt_j).mean()))
    assert s["f5_pct"] == pytest.approx(100 * float(f_score(pred_v, gt_v, 0.005).mean()))
    # shifts 0, 4, 8 mm for the bowl (2 of 3 pass), 2, 6, 10 mm for the box (1 of 3 passes)
    assert s["add_01d_pct"] == pytest.approx({"003_cracker_box": 100 / 3, "024_bowl": 200 / 3})
    assert s["add_01d_mean_objects_pct"] == pytest.approx(50.0)
    md = table.to_markdown()
    assert "| 024_bowl* | 3 | 66.7 |" in md and "PA-MPJPE" in md
    with pytest.raises(KeyError, match="gt_joints"):
        evaluate_table([dict(pred_joints=pred_j[0])])
    with pytest.raises(ValueError, match="pred and gt"):
        mpjpe(pred_j, gt_j[:, :20])


# ---------------------------------------------------------------- articulation


def test_finger_angle_error_known_angles():
    """Every finger joint turned by a known angle (about a random axis) gives that angle; the
    global rotation (joint 0) does not count; matrices and axis-angles agree."""
    rng = np.random.default_rng(7)
    gt = torch.from_numpy(rng.normal(scale=0.3, size=(3, 48)))
    angles = torch.tensor([5.0, 10.0, 40.0], dtype=torch.float64)
    axes = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(3, 15, 3))), dim=-1)
    turn = axis_angle_to_matrix(axes * torch.deg2rad(angles)[:, None, None])  # [3, 15, 3, 3]
    gt_rot = axis_angle_to_matrix(gt.view(3, 16, 3))
    pred_rot = gt_rot.clone()
    pred_rot[:, 1:] = gt_rot[:, 1:] @ turn
    pred_rot[:, 0] = rand_rot(3, 8)  # a wrong global rotation is not a finger error
    err = finger_angle_error(pred_rot, gt)
    np.testing.assert_allclose(err.numpy(), angles.numpy(), atol=1e-6)
    from hfl_lite.geometry import matrix_to_axis_angle
    np.testing.assert_allclose(finger_angle_error(matrix_to_axis_angle(pred_rot).reshape(3, 48), gt_rot).numpy(),
                               angles.numpy(), atol=1e-5)
    assert finger_angle_error(gt, gt).abs().max() < 1e-5  # tiny angles stay accurate (atan2, not arccos)
    with pytest.raises(ValueError, match="pred_pose"):
        finger_angle_error(torch.zeros(3, 45), gt)


@pytest.fixture(scope="module")
def right_layer():
    import warnings

    from hfl_lite.mano import ManoLayer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ManoLayer(side="right", use_pca=False, flat_hand_mean=True, center_idx=0, dtype=torch.float64)


def test_articulation_mpjpe_sees_only_the_fingers(right_layer):
    rng = np.random.default_rng(9)
    gt = torch.from_numpy(rng.normal(scale=0.3, size=(4, 48)))
    shape = torch.from_numpy(rng.normal(size=(4, 10)))
    # the same fingers under another global rotation: no articulation error, a large plain error
    other_global = gt.clone()
    other_global[:, :3] = torch.from_numpy(rng.normal(scale=1.0, size=(4, 3)))
    assert articulation_mpjpe(other_global, gt, shape, right_layer).abs().max() < 1e-9
    _, j_other = right_layer(other_global, shape)
    _, j_gt = right_layer(gt, shape)
    assert mpjpe(j_other / 1000, j_gt / 1000).min() > 5.0
    # other fingers under the true global rotation: exactly the root-aligned MPJPE of the two hands
    fingers = gt.clone()
    fingers[:, 3:] = torch.from_numpy(rng.normal(scale=0.3, size=(4, 45)))
    _, j_fingers = right_layer(fingers, shape)
    expected = mpjpe(j_fingers / 1000, j_gt / 1000)
    np.testing.assert_allclose(articulation_mpjpe(fingers, gt, shape, right_layer).numpy(), expected.numpy(), rtol=1e-9)
    # larger finger turns, larger error
    errors = [float(articulation_mpjpe(gt + torch.cat([torch.zeros(4, 3), s * (fingers - gt)[:, 3:]], 1), gt, shape,
                                       right_layer).mean()) for s in (0.25, 0.5, 1.0)]
    assert errors[0] < errors[1] < errors[2]


def test_metric_table_reports_articulation():
    rng = np.random.default_rng(10)
    gt = torch.from_numpy(rng.normal(scale=0.3, size=(2, 48)))
    pred = gt.clone()
    pred[:, 3:] += 0.2
    table = MetricTable()
    table.add_articulation(axis_angle_to_matrix(pred.view(2, 16, 3)), gt, torch.zeros(2, 10, dtype=torch.float64))
    table.add_articulation(gt[0], gt[0], torch.zeros(10, dtype=torch.float64))  # a single sample, no batch dimension
    s = table.summary()
    expected = torch.cat([finger_angle_error(pred, gt), torch.zeros(1, dtype=torch.float64)]).mean()
    assert s["finger_angle_deg"] == pytest.approx(float(expected))
    assert s["articulation_mpjpe_mm"] > 0
    md = table.to_markdown()
    assert "finger angle error (deg)" in md and "articulation MPJPE (mm)" in md


def test_vote_errors_known_cases():
    from hfl_lite.geometry import offset_targets
    from hfl_lite.metrics import vote_errors

    R = 4
    box = torch.tensor([[10.0, 20.0, 50.0, 60.0]], dtype=torch.float64)  # 10 px cells
    ctrl = torch.tensor([[[27.0, 44.0], [10.0, 20.0]]], dtype=torch.float64)  # K = 2
    logits = torch.zeros(1, 2, R, R, dtype=torch.float64)
    perfect, cells = vote_errors(logits, offset_targets(ctrl, box, R), box, ctrl)
    assert perfect.abs().max() < 1e-9
    zero, _ = vote_errors(logits, torch.zeros(1, 2, 2, R, R, dtype=torch.float64), box, ctrl)
    # cell (row 2, col 1) is centred at (25, 45): 2.236 px from the first point, and in its cell
    assert zero[0, 0, 2 * R + 1].item() == pytest.approx(math.hypot(2.0, 1.0))
    # the point lies at (1.7, 2.4) in cell units, that cell's centre at (1.5, 2.5): 0.2 cells away
    assert cells[0, 0, 2 * R + 1].item() == pytest.approx(0.2)
    assert cells[0, 1, 0].item() == pytest.approx(0.5) and cells[0, 1, R * R - 1].item() == pytest.approx(3.5)
