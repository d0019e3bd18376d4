"""Metrics against closed-form cases and brute-force loop references."""
import cv2
import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from hfl_lite.geometry import axis_angle_to_matrix
from hfl_lite.metrics import (DEXYCB_SYMMETRIC_OBJECTS, add, add_01d, add_s, evaluate_table, f_score, f_scores,
                              mpjpe, pa_mpjpe, pa_mpvpe, rep_px)


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
