"""Vote decoding, training targets and pose from votes."""
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from hfl_lite.geometry import (confidence_targets, control_points_from_bounds, decode_votes, offset_targets, project_points,
                               solve_pose_from_votes, tight_box, transform_points, vote_mean, vote_topk)

R_GRID = 8


def random_points_and_boxes(B=3, K=21, seed=0):
    g = torch.Generator().manual_seed(seed)
    box = torch.tensor([[30.0, 40.0, 110.0, 100.0], [5.0, 5.0, 60.0, 90.0], [0.0, 10.0, 128.0, 120.0]])[:B]
    pts = box[:, None, :2] + torch.rand(B, K, 2, generator=g) * (box[:, None, 2:] - box[:, None, :2])
    return pts, box


def patch_logits(pts, box, R=R_GRID, high=4.0, low=-4.0):
    """Confident (logit `high`) 3x3 patch of cells around each point's own cell, `low` elsewhere."""
    B, K, _ = pts.shape
    norm = (pts - box[:, None, :2]) / (box[:, None, 2:] - box[:, None, :2])
    col = (norm[..., 0] * R).long().clamp(0, R - 1)
    row = (norm[..., 1] * R).long().clamp(0, R - 1)
    i = torch.arange(R)
    near_r = (i.view(1, 1, R) - row.unsqueeze(-1)).abs() <= 1
    near_c = (i.view(1, 1, R) - col.unsqueeze(-1)).abs() <= 1
    mask = near_r.unsqueeze(-1) & near_c.unsqueeze(-2)  # [B, K, R, R]
    return torch.where(mask, torch.tensor(high), torch.tensor(low)), mask


def test_offset_targets_match_cellwise_formula():
    pts, box = random_points_and_boxes()
    off = offset_targets(pts, box, R_GRID)
    assert off.shape == (3, 21, 2, R_GRID, R_GRID)
    b, k, i, j = 1, 7, 2, 5
    w, h = box[b, 2] - box[b, 0], box[b, 3] - box[b, 1]
    u = (pts[b, k, 0] - box[b, 0]) / w
    v = (pts[b, k, 1] - box[b, 1]) / h
    assert torch.allclose(off[b, k, 0, i, j], 10 * (u - (j + 0.5) / R_GRID))
    assert torch.allclose(off[b, k, 1, i, j], 10 * (v - (i + 0.5) / R_GRID))


def test_decoding_inverts_targets_and_both_schemes_recover_points():
    pts, box = random_points_and_boxes()
    off = offset_targets(pts, box, R_GRID)
    logits, mask = patch_logits(pts, box)
    decoded, conf = decode_votes(logits, off, box)
    assert torch.allclose(decoded, pts.unsqueeze(2).expand_as(decoded), atol=1e-4)

    mean, weight = vote_mean(logits, off, box)
    assert torch.allclose(mean, pts, atol=1e-4)
    assert torch.allclose(weight, torch.sigmoid(torch.tensor(4.0)).expand(3, 21))

    votes = vote_topk(logits, off, box, rounds=10)
    assert votes.points_2d.shape == (3, 210, 2)
    n_conf = mask.flatten(2).sum(-1)  # confident cells per point (4, 6 or 9)
    for b in range(3):
        for k in range(21):
            entries = torch.arange(10) * 21 + k  # round-major
            assert (votes.point_index[b, entries] == k).all()
            assert votes.valid[b, entries].sum() == n_conf[b, k]
            assert torch.allclose(votes.points_2d[b, entries], pts[b, k].expand(10, 2), atol=1e-4)
    assert torch.equal(votes.weights > 0, votes.valid)


def test_topk_equals_rounds_of_argmax():
    """The reference procedure, written as a slow loop: 10 rounds of 'take the most confident
    remaining cell of each point if above 0.5', with distinct random confidences."""
    g = torch.Generator().manual_seed(3)
    B, K, R = 2, 21, 6
    logits = torch.randn(B, K, R, R, generator=g) * 2
    off = torch.randn(B, K, 2, R, R, generator=g)
    box = torch.tensor([[10.0, 20.0, 70.0, 60.0], [0.0, 0.0, 32.0, 48.0]])
    votes = vote_topk(logits, off, box, rounds=10, threshold=0.5)
    conf = torch.sigmoid(logits).reshape(B, K, R * R).clone()
    for b in range(B):
        remaining = conf[b].clone()
        for r in range(10):
            for k in range(K):
                c = int(remaining[k].argmax())
                value = float(remaining[k, c])
                remaining[k, c] = -1
                i, j = divmod(c, R)
                u = (j + 0.5) / R + float(off[b, k, 0, i, j]) / 10
                v = (i + 0.5) / R + float(off[b, k, 1, i, j]) / 10
                px = [float(box[b, 0]) + u * float(box[b, 2] - box[b, 0]), float(box[b, 1]) + v * float(box[b, 3] - box[b, 1])]
                e = r * K + k
                assert bool(votes.valid[b, e]) == (value > 0.5)
                assert np.allclose(votes.points_2d[b, e].tolist(), px, atol=1e-4)
                assert abs(float(votes.weights[b, e]) - (value if value > 0.5 else 0.0)) < 1e-6


def test_confidence_targets():
    pts, box = random_points_and_boxes()
    off = offset_targets(pts, box, R_GRID)
    assert torch.allclose(confidence_targets(off, pts, box), torch.ones(3, 21, R_GRID, R_GRID))
    shifted = off.clone()
    shifted[:, :, 0] += 10 * 0.3  # every vote 0.3 box widths too far right
    assert torch.allclose(confidence_targets(shifted, pts, box), torch.full((3, 21, R_GRID, R_GRID), np.exp(-0.3)), atol=1e-6)
    off.requires_grad_(True)
    assert not confidence_targets(off, pts, box).requires_grad


def test_pose_from_votes():
    B = 4
    rng = np.random.default_rng(0)
    R = torch.from_numpy(Rotation.random(B, random_state=0).as_matrix()).float()
    t = torch.tensor([[0.02, -0.01, 0.5], [-0.03, 0.02, 0.6], [0.0, 0.0, 0.4], [0.01, 0.01, 0.7]])
    ctrl3d = control_points_from_bounds(torch.tensor([-0.04, -0.03, -0.08]), torch.tensor([0.04, 0.03, 0.08]))
    K = torch.tensor([[300.0, 0, 64], [0, 300, 64], [0, 0, 1]]).expand(B, 3, 3)
    ctrl2d = project_points(transform_points(ctrl3d.expand(B, 21, 3), R, t), K)
    box = tight_box(ctrl2d)
    off = offset_targets(ctrl2d, box, R_GRID)
    off = off + 0.02 * torch.from_numpy(rng.standard_normal(off.shape)).float()  # ~0.1-0.2 px of vote noise
    logits, _ = patch_logits(ctrl2d, box)
    logits[3] = -5.0  # nothing confident for the last sample
    for scheme in ("topk", "mean"):
        for ransac in (True, False):
            kw = dict(generator=torch.Generator().manual_seed(0)) if ransac else {}
            pose = solve_pose_from_votes(logits, off, box, K, ctrl3d, scheme=scheme, ransac=ransac, **kw)
            assert pose.valid.tolist() == [True, True, True, False]
            rot_err = (pose.R[:3] - R[:3]).norm(dim=(1, 2))
            assert rot_err.max() < 0.02, (scheme, ransac, rot_err)
            assert ((pose.t[:3] - t[:3]).norm(dim=-1) / t[:3].norm(dim=-1)).max() < 0.02
            assert pose.t[3].tolist() == [0, 0, 1]
