"""HFL-Net's loss against a slow, loop-based transcription of the reference code's formulas."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hfl_lite.geometry.rotations import axis_angle_to_matrix
from hfl_lite.losses import LOSS_WEIGHTS, hand_loss_terms, hfl_losses, object_loss_terms

S, R = 128, 4  # crop side, ROI grid (small so that the loop references stay fast)


def make_batch(b: int = 3, seed: int = 0) -> dict:
    """A batch of plausible ground truth (crop px, metres)."""
    g = torch.Generator().manual_seed(seed)
    joints3d = torch.randn(b, 21, 3, generator=g) * 0.03 + torch.tensor([0.0, 0.0, 0.5])
    verts3d = torch.randn(b, 778, 3, generator=g) * 0.04 + joints3d[:, :1]
    joints2d = torch.rand(b, 21, 2, generator=g) * 60 + 30
    hand_box = torch.cat([joints2d.amin(1) - 5, joints2d.amax(1) + 5], dim=1)
    ctrl2d = torch.rand(b, 21, 2, generator=g) * 50 + 40
    obj_box = torch.cat([ctrl2d.amin(1), ctrl2d.amax(1)], dim=1)
    return {
        "joints2d": joints2d, "hand_box": hand_box, "joints3d": joints3d, "verts3d": verts3d,
        "mano_pose": torch.randn(b, 48, generator=g) * 0.5, "mano_shape": torch.randn(b, 10, generator=g),
        "obj_ctrl2d": ctrl2d, "obj_box": obj_box,
        "obj_mask": (torch.rand(b, R, R, generator=g) > 0.4).float(),
        "obj_id": torch.arange(b),
    }


def make_outputs(b: int = 3, seed: int = 1, requires_grad: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {
        "joints2d_norm": torch.rand(b, 21, 2, generator=g),
        "verts": torch.randn(b, 778, 3, generator=g) * 0.04,
        "joints": torch.randn(b, 21, 3, generator=g) * 0.03,
        "mano_rotmat": axis_angle_to_matrix(torch.randn(b, 16, 3, generator=g)),
        "mano_shape": torch.randn(b, 10, generator=g),
        "obj_conf_logits": torch.randn(b, 21, R, R, generator=g),
        "obj_offset": torch.randn(b, 21, 2, R, R, generator=g) * 3,
    }
    return {k: v.requires_grad_(requires_grad) for k, v in out.items()}


def reference_object_terms(out: dict, batch: dict) -> tuple[float, float]:
    """The reference code's object loss, one cell at a time: the voted location of cell (i, j)
    for point k is the cell centre plus offset/10 (box-normalised), the target is the true point
    normalised to the box; L1 on x and y masked by the object mask, each averaged over all
    B x 21 x R x R cells and summed; confidence L1 to exp(-distance) * mask, averaged likewise."""
    b = batch["obj_box"].shape[0]
    reg, conf = 0.0, 0.0
    for n in range(b):
        x1, y1, x2, y2 = batch["obj_box"][n].tolist()
        for k in range(21):
            gu = (batch["obj_ctrl2d"][n, k, 0].item() - x1) / (x2 - x1)
            gv = (batch["obj_ctrl2d"][n, k, 1].item() - y1) / (y2 - y1)
            for i in range(R):
                for j in range(R):
                    m = batch["obj_mask"][n, i, j].item()
                    pu = (j + 0.5) / R + out["obj_offset"][n, k, 0, i, j].item() / 10
                    pv = (i + 0.5) / R + out["obj_offset"][n, k, 1, i, j].item() / 10
                    du, dv = (pu - gu) * m, (pv - gv) * m
                    reg += abs(du) + abs(dv)
                    target = math.exp(-math.hypot(du, dv)) * m
                    c = 1 / (1 + math.exp(-out["obj_conf_logits"][n, k, i, j].item()))
                    conf += abs(c - target)
    cells = b * 21 * R * R
    return reg / cells, conf / cells


def test_object_terms_match_loop_reference():
    batch, out = make_batch(), make_outputs()
    terms = object_loss_terms(out, batch, S)
    reg, conf = reference_object_terms(out, batch)
    assert terms["obj_offset"].item() == pytest.approx(reg, rel=1e-5)
    assert terms["obj_conf"].item() == pytest.approx(conf, rel=1e-5)


def test_hand_terms_match_functional_mse():
    batch, out = make_batch(), make_outputs()
    terms = hand_loss_terms(out, batch, S)
    box = batch["hand_box"]
    target2d = (batch["joints2d"] - box[:, None, :2]) / (box[:, None, 2:] - box[:, None, :2])
    root = batch["joints3d"][:, :1]
    expected = {
        "joints2d": F.mse_loss(out["joints2d_norm"], target2d),
        "verts3d": F.mse_loss(out["verts"], batch["verts3d"] - root),
        "joints3d": F.mse_loss(out["joints"], batch["joints3d"] - root),
        "mano_pose": F.mse_loss(out["mano_rotmat"], axis_angle_to_matrix(batch["mano_pose"].view(-1, 16, 3))),
        "mano_shape": F.mse_loss(out["mano_shape"], batch["mano_shape"]),
    }
    assert set(terms) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value, msg=f"term {name}")


def test_perfect_prediction_gives_zero_loss():
    batch = make_batch()
    box = batch["hand_box"]
    root = batch["joints3d"][:, :1]
    ctrl, obox = batch["obj_ctrl2d"], batch["obj_box"]
    centres = (torch.arange(R) + 0.5) / R
    norm = (ctrl - obox[:, None, :2]) / (obox[:, None, 2:] - obox[:, None, :2])  # [B,21,2]
    offset = torch.stack([10 * (norm[..., 0, None, None] - centres[None, :]).expand(-1, -1, R, R),
                          10 * (norm[..., 1, None, None] - centres[:, None]).expand(-1, -1, R, R)], dim=2)
    mask = batch["obj_mask"][:, None].expand(-1, 21, -1, -1)
    out = {
        "joints2d_norm": (batch["joints2d"] - box[:, None, :2]) / (box[:, None, 2:] - box[:, None, :2]),
        "verts": batch["verts3d"] - root, "joints": batch["joints3d"] - root,
        "mano_rotmat": axis_angle_to_matrix(batch["mano_pose"].view(-1, 16, 3)), "mano_shape": batch["mano_shape"],
        "obj_offset": offset, "obj_conf_logits": torch.where(mask > 0, 30.0, -30.0),
    }
    losses = hfl_losses(out, batch, S)
    for name, value in losses.items():
        assert value.item() == pytest.approx(0.0, abs=1e-6), name


def test_weights_total_and_overrides():
    batch, out = make_batch(), make_outputs()
    raw = {**hand_loss_terms(out, batch, S), **object_loss_terms(out, batch, S)}
    losses = hfl_losses(out, batch, S)
    assert set(losses) == set(LOSS_WEIGHTS) | {"total"}
    assert LOSS_WEIGHTS == {"joints2d": 100.0, "verts3d": 1e4, "joints3d": 1e4, "mano_pose": 10.0,
                            "mano_shape": 0.1, "obj_offset": 500.0, "obj_conf": 100.0}
    for name, w in LOSS_WEIGHTS.items():
        torch.testing.assert_close(losses[name], w * raw[name])
    torch.testing.assert_close(losses["total"], sum(losses[n] for n in LOSS_WEIGHTS))
    no_conf = hfl_losses(out, batch, S, weights={"obj_conf": 0.0})
    torch.testing.assert_close(no_conf["total"], losses["total"] - losses["obj_conf"])
    with pytest.raises(KeyError, match="obj_conff"):
        hfl_losses(out, batch, S, weights={"obj_conff": 1.0})


def test_confidence_target_is_detached():
    batch, out = make_batch(), make_outputs(requires_grad=True)
    object_loss_terms(out, batch, S)["obj_conf"].backward()
    assert out["obj_offset"].grad is None or out["obj_offset"].grad.abs().max() == 0
    assert out["obj_conf_logits"].grad.abs().max() > 0


def test_offsets_outside_the_mask_get_no_gradient():
    batch, out = make_batch(), make_outputs(requires_grad=True)
    object_loss_terms(out, batch, S)["obj_offset"].backward()
    outside = batch["obj_mask"][:, None, None].expand_as(out["obj_offset"]) == 0
    assert out["obj_offset"].grad[outside].abs().max() == 0
    assert out["obj_offset"].grad[~outside].abs().min() > 0


def test_samples_without_annotations_are_masked_out():
    batch, out = make_batch(b=3), make_outputs(b=3)
    keep = [0, 2]
    sub_batch = {k: v[keep] for k, v in batch.items()}
    sub_out = {k: v[keep] for k, v in out.items()}
    expected = hfl_losses(sub_out, sub_batch, S)
    masked = dict(batch, hand_valid=torch.tensor([True, False, True]), obj_id=torch.tensor([0, -1, 2]))
    got = hfl_losses(out, masked, S)
    for name in LOSS_WEIGHTS:
        torch.testing.assert_close(got[name], expected[name], msg=f"term {name}")

    hand_only = {k: v for k, v in batch.items() if k != "obj_mask"}
    assert set(hfl_losses(out, hand_only, S)) == {"joints2d", "verts3d", "joints3d", "mano_pose", "mano_shape", "total"}
    object_only = {k: v for k, v in batch.items() if k not in ("joints3d", "verts3d", "joints2d", "mano_pose", "mano_shape")}
    assert set(hfl_losses(out, object_only, S)) == {"obj_offset", "obj_conf", "total"}
    with pytest.raises(ValueError, match="neither a hand annotation"):
        hfl_losses(out, {k: v for k, v in object_only.items() if k != "obj_mask"}, S)


def test_2d_target_uses_the_box_clamped_to_the_image():
    batch, out = make_batch(), make_outputs()
    batch["hand_box"][0] = torch.tensor([-20.0, 10.0, 100.0, S + 30.0])
    clamped = torch.tensor([0.0, 10.0, 100.0, float(S)])
    target = (batch["joints2d"][0] - clamped[:2]) / (clamped[2:] - clamped[:2])
    one = hand_loss_terms({k: v[:1] for k, v in out.items()}, {k: v[:1] for k, v in batch.items()}, S)["joints2d"]
    torch.testing.assert_close(one, F.mse_loss(out["joints2d_norm"][0], target))
