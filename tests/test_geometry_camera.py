"""Cameras, boxes, control points and Procrustes alignment against OpenCV / SciPy / hand-made cases."""
import cv2
import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from hfl_lite.geometry import (BOX_EDGES, box_intersection, control_points_from_bounds, control_points_from_vertices,
                               enlarge_box, fit_similarity, make_intrinsics, procrustes_align, project_points,
                               reprojection_errors, tight_box, transform_points)


def test_projection_matches_opencv():
    rng = np.random.default_rng(0)
    X = rng.uniform(-0.1, 0.1, (30, 3))
    rvec, tvec = rng.normal(size=3), np.array([0.02, -0.03, 0.6])
    K = np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]])  # (cv2.projectPoints ignores skew)
    ref, _ = cv2.projectPoints(X, rvec, tvec, K, None)
    R = torch.from_numpy(cv2.Rodrigues(rvec)[0])
    ours = project_points(transform_points(torch.from_numpy(X), R, torch.from_numpy(tvec)), torch.from_numpy(K))
    np.testing.assert_allclose(ours.numpy(), ref[:, 0], atol=1e-9)
    err = reprojection_errors(torch.from_numpy(X), torch.from_numpy(ref[:, 0]) + torch.tensor([3.0, 4.0], dtype=torch.float64),
                              torch.from_numpy(K), R, torch.from_numpy(tvec))
    np.testing.assert_allclose(err.numpy(), 5.0, atol=1e-9)


def test_make_intrinsics():
    K = make_intrinsics(torch.tensor([500.0, 600.0]), 510.0, 64.0, torch.tensor([60.0, 70.0]))
    assert K.shape == (2, 3, 3)
    assert K[1].tolist() == [[600.0, 0, 64.0], [0, 510.0, 70.0], [0, 0, 1]]


def test_boxes():
    pts = torch.tensor([[[10.0, 20.0], [30.0, 5.0], [15.0, 40.0]]])
    assert tight_box(pts).tolist() == [[10.0, 5.0, 30.0, 40.0]]
    assert tight_box(pts, torch.tensor([[True, False, True]])).tolist() == [[10.0, 20.0, 15.0, 40.0]]
    assert tight_box(pts, torch.zeros(1, 3, dtype=torch.bool)).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert enlarge_box(torch.tensor([0.0, 0.0, 10.0, 20.0]), 1.1).tolist() == pytest.approx([-0.5, -1.0, 10.5, 21.0])
    box, ok = box_intersection(torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]]), torch.tensor([[5.0, -5, 20, 8], [20, 20, 30, 30]]))
    assert box[0].tolist() == [5.0, 0.0, 10.0, 8.0] and ok.tolist() == [True, False]
    assert (box[1, 2:] - box[1, :2]).tolist() == [0.0, 0.0]


def test_control_points_layout():
    lo, hi = torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([1.0, 2.0, 3.0])
    c = control_points_from_bounds(lo, hi)
    assert c.shape == (21, 3)
    corners = c[:8]
    # all 8 distinct corners, bottom face (z min) first
    assert len({tuple(p) for p in corners.tolist()}) == 8
    assert (corners[:4, 2] == -3).all() and (corners[4:, 2] == 3).all()
    for m, (a, b) in enumerate(BOX_EDGES):
        assert torch.allclose(c[8 + m], (corners[a] + corners[b]) / 2)
        assert int((corners[a] != corners[b]).sum()) == 1  # a true edge: differs along one axis
    assert (c[8:12, 2] == -3).all() and (c[12:16, 2] == 3).all() and (c[16:20, 2] == 0).all()
    assert c[20].tolist() == [0.0, 0.0, 0.0]
    verts = torch.rand(2, 50, 3)
    np.testing.assert_allclose(control_points_from_vertices(verts)[:, 20], (verts.amin(1) + verts.amax(1)) / 2, atol=1e-7)


def test_similarity_procrustes_matches_scipy():
    rng = np.random.default_rng(1)
    B, N = 6, 40
    src = rng.normal(size=(B, N, 3))
    R_true = Rotation.random(B, random_state=1).as_matrix()
    dst = 1.7 * np.einsum("bij,bnj->bni", R_true, src) + rng.normal(size=(B, 1, 3)) + 0.05 * rng.normal(size=(B, N, 3))
    s, R, t = fit_similarity(torch.from_numpy(src), torch.from_numpy(dst))
    aligned = procrustes_align(torch.from_numpy(src), torch.from_numpy(dst)).numpy()
    for b in range(B):
        a0, b0 = src[b] - src[b].mean(0), dst[b] - dst[b].mean(0)
        # SciPy: the orthogonal Q minimising |a0 Q - b0|; our R acts on column vectors: R = Q^T
        Q, sigma = orthogonal_procrustes(a0, b0)
        scale = sigma / (a0 ** 2).sum()
        ref = scale * a0 @ Q + dst[b].mean(0)
        np.testing.assert_allclose(R[b].numpy(), Q.T, atol=1e-9)
        np.testing.assert_allclose(float(s[b]), scale, rtol=1e-9)
        np.testing.assert_allclose(aligned[b], ref, atol=1e-9)


def test_procrustes_reflection_setting_against_scipy():
    """A mirrored point set is aligned exactly only when reflections are allowed; then the fit is
    SciPy's orthogonal Procrustes (no determinant constraint) with the least-squares scale."""
    rng = np.random.default_rng(5)
    src = rng.normal(size=(3, 30, 3))
    R_true = Rotation.random(3, random_state=5).as_matrix()
    dst = 0.8 * np.einsum("bij,bnj->bni", R_true, src * np.array([1.0, -1.0, 1.0])) + 0.4  # a mirror image
    proper = procrustes_align(torch.from_numpy(src), torch.from_numpy(dst)).numpy()
    free = procrustes_align(torch.from_numpy(src), torch.from_numpy(dst), allow_reflection=True).numpy()
    _, R_free, _ = fit_similarity(torch.from_numpy(src), torch.from_numpy(dst), allow_reflection=True)
    np.testing.assert_allclose(free, dst, atol=1e-9)
    np.testing.assert_allclose(torch.linalg.det(R_free).numpy(), -np.ones(3), atol=1e-9)
    assert np.linalg.norm(proper - dst, axis=-1).mean() > 0.1  # a rotation cannot undo a mirror
    for b in range(3):
        a0, b0 = src[b] - src[b].mean(0), dst[b] - dst[b].mean(0)
        Q, sigma = orthogonal_procrustes(a0, b0)
        np.testing.assert_allclose(free[b], sigma / (a0 ** 2).sum() * a0 @ Q + dst[b].mean(0), atol=1e-9)
    # for a proper (unmirrored) target both settings agree
    same = np.einsum("bij,bnj->bni", R_true, src) + 0.05 * rng.normal(size=src.shape)
    np.testing.assert_allclose(procrustes_align(torch.from_numpy(src), torch.from_numpy(same)).numpy(),
                               procrustes_align(torch.from_numpy(src), torch.from_numpy(same), allow_reflection=True).numpy(),
                               atol=1e-9)


def test_rigid_fit_is_exact_and_proper():
    rng = np.random.default_rng(2)
    src = torch.from_numpy(rng.normal(size=(4, 10, 3)))
    R_true = torch.from_numpy(Rotation.random(4, random_state=2).as_matrix())
    dst = transform_points(src, R_true, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).expand(4, 3))
    s, R, t = fit_similarity(src, dst, scale=False)
    assert torch.allclose(R, R_true, atol=1e-10) and torch.allclose(s, torch.ones(4, dtype=torch.float64))
    # a mirrored target still gives a proper rotation (det +1)
    _, R_m, _ = fit_similarity(src, dst * torch.tensor([-1.0, 1, 1], dtype=torch.float64))
    assert torch.allclose(torch.linalg.det(R_m), torch.ones(4, dtype=torch.float64))
    # weights: zero-weight points are ignored
    w = torch.ones(4, 10, dtype=torch.float64)
    w[:, :3] = 0
    noisy = dst.clone()
    noisy[:, :3] += 1.0
    _, R_w, t_w = fit_similarity(src, noisy, w, scale=False)
    assert torch.allclose(R_w, R_true, atol=1e-10)
