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


def make_pair(b: int = 3, requires_grad: bool = False) -> tuple[dict, dict]:
    """A batch and network outputs for it; the network reports the boxes its ROIs used, here the
    batch's own boxes (the reference convention uses them unchanged)."""
    batch = make_batch(b)
    out = make_outputs(b, requires_grad=requires_grad)
    return batch, {**out, "hand_boxes": batch["hand_box"].clone(), "obj_boxes": batch["obj_box"].clone()}


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
    batch, out = make_pair()
    terms = object_loss_terms(out, batch)
    reg, conf = reference_object_terms(out, batch)
    assert terms["obj_offset"].item() == pytest.approx(reg, rel=1e-5)
    assert terms["obj_conf"].item() == pytest.approx(conf, rel=1e-5)


def test_hand_terms_match_functional_mse():
    batch, out = make_pair()
    terms = hand_loss_terms(out, batch)
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
        "hand_boxes": box, "obj_boxes": obox,
    }
    losses = hfl_losses(out, batch)
    for name, value in losses.items():
        assert value.item() == pytest.approx(0.0, abs=1e-6), name


def test_weights_total_and_overrides():
    batch, out = make_pair()
    raw = {**hand_loss_terms(out, batch), **object_loss_terms(out, batch)}
    losses = hfl_losses(out, batch)
    paper_terms = set(LOSS_WEIGHTS) - {"articulation3d"}  # off (weight 0) unless asked for: not computed
    assert set(losses) == paper_terms | {"total"}
    assert LOSS_WEIGHTS == {"joints2d": 100.0, "verts3d": 1e4, "joints3d": 1e4, "mano_pose": 10.0,
                            "mano_shape": 0.1, "obj_offset": 500.0, "obj_conf": 100.0, "articulation3d": 0.0}
    for name, w in ((n, LOSS_WEIGHTS[n]) for n in paper_terms):
        torch.testing.assert_close(losses[name], w * raw[name])
    torch.testing.assert_close(losses["total"], sum(losses[n] for n in paper_terms))
    no_conf = hfl_losses(out, batch, weights={"obj_conf": 0.0})
    torch.testing.assert_close(no_conf["total"], losses["total"] - losses["obj_conf"])
    with pytest.raises(KeyError, match="obj_conff"):
        hfl_losses(out, batch, weights={"obj_conff": 1.0})


def test_confidence_target_is_detached():
    batch, out = make_pair(requires_grad=True)
    object_loss_terms(out, batch)["obj_conf"].backward()
    assert out["obj_offset"].grad is None or out["obj_offset"].grad.abs().max() == 0
    assert out["obj_conf_logits"].grad.abs().max() > 0


def test_offsets_outside_the_mask_get_no_gradient():
    batch, out = make_pair(requires_grad=True)
    object_loss_terms(out, batch)["obj_offset"].backward()
    outside = batch["obj_mask"][:, None, None].expand_as(out["obj_offset"]) == 0
    assert out["obj_offset"].grad[outside].abs().max() == 0
    assert out["obj_offset"].grad[~outside].abs().min() > 0


def test_samples_without_annotations_are_masked_out():
    batch, out = make_pair(b=3)
    keep = [0, 2]
    sub_batch = {k: v[keep] for k, v in batch.items()}
    sub_out = {k: v[keep] for k, v in out.items()}
    expected = hfl_losses(sub_out, sub_batch)
    masked = dict(batch, hand_valid=torch.tensor([True, False, True]), obj_id=torch.tensor([0, -1, 2]))
    got = hfl_losses(out, masked)
    for name in set(LOSS_WEIGHTS) - {"articulation3d"}:
        torch.testing.assert_close(got[name], expected[name], msg=f"term {name}")

    hand_only = {k: v for k, v in batch.items() if k != "obj_mask"}
    assert set(hfl_losses(out, hand_only)) == {"joints2d", "verts3d", "joints3d", "mano_pose", "mano_shape", "total"}
    object_only = {k: v for k, v in batch.items() if k not in ("joints3d", "verts3d", "joints2d", "mano_pose", "mano_shape")}
    assert set(hfl_losses(out, object_only)) == {"obj_offset", "obj_conf", "total"}
    with pytest.raises(ValueError, match="neither a hand annotation"):
        hfl_losses(out, {k: v for k, v in object_only.items() if k != "obj_mask"})


def test_targets_use_the_boxes_the_network_reports():
    """The 2D and vote targets are normalised to the boxes the ROIs used (``outputs["hand_boxes"]``,
    ``outputs["obj_boxes"]``, e.g. clamped to the crop under the "exact" convention), not to the
    batch's boxes."""
    batch, out = make_pair()
    used = torch.tensor([0.0, 10.0, 100.0, float(S)])
    batch["hand_box"][0] = torch.tensor([-20.0, 10.0, 100.0, S + 30.0])
    out["hand_boxes"][0] = used
    target = (batch["joints2d"][0] - used[:2]) / (used[2:] - used[:2])
    one = hand_loss_terms({k: v[:1] for k, v in out.items()}, {k: v[:1] for k, v in batch.items()})["joints2d"]
    torch.testing.assert_close(one, F.mse_loss(out["joints2d_norm"][0], target))
    shifted = dict(out, obj_boxes=out["obj_boxes"] + 7.0)
    reg, _ = reference_object_terms(shifted, dict(batch, obj_box=shifted["obj_boxes"]))
    assert object_loss_terms(shifted, batch)["obj_offset"].item() == pytest.approx(reg, rel=1e-5)
    assert object_loss_terms(shifted, batch)["obj_offset"].item() != pytest.approx(
        object_loss_terms(out, batch)["obj_offset"].item(), rel=1e-3)


@pytest.fixture(scope="module")
def mano_layer():
    import warnings

    from hfl_lite.mano import ManoLayer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ManoLayer(side="right", use_pca=False, flat_hand_mean=True, center_idx=0)


def test_articulation_term_trains_the_fingers_only(mano_layer):
    """``articulation3d`` poses the predicted finger rotations with the true global rotation and
    shape: zero for the right fingers under a wrong global rotation; its gradient reaches the 15
    finger rotations and not the global one; it is the joint MSE of that posed hand."""
    from hfl_lite.geometry.rotations import axis_angle_to_matrix as aa2m

    batch, out = make_pair()
    batch["mano_pose"] = batch["mano_pose"] * 0.6
    gt_rot = aa2m(batch["mano_pose"].view(-1, 16, 3))
    _, joints_mm = mano_layer(batch["mano_pose"], batch["mano_shape"])
    batch["joints3d"] = joints_mm / 1000 + batch["joints3d"][:, :1]  # consistent with MANO
    weights = {"articulation3d": 1e4}
    wrong_global = gt_rot.clone()
    wrong_global[:, 0] = aa2m(torch.tensor([[0.3, -1.0, 2.0]])).expand(3, 3, 3)
    right = hfl_losses(dict(out, mano_rotmat=wrong_global), batch, weights, mano=mano_layer)
    assert right["articulation3d"].item() < 1e-6 and right["joints3d"].item() > 1.0

    rot = out["mano_rotmat"].clone().requires_grad_(True)
    term = hfl_losses(dict(out, mano_rotmat=rot), batch, weights, mano=mano_layer)["articulation3d"]
    term.backward()
    assert rot.grad[:, 0].abs().max() == 0 and rot.grad[:, 1:].abs().max() > 0
    mixed = torch.cat([gt_rot[:, :1], rot.detach()[:, 1:]], 1)
    from hfl_lite.geometry.rotations import matrix_to_axis_angle
    _, posed = mano_layer(matrix_to_axis_angle(mixed).reshape(3, 48), batch["mano_shape"])
    expected = F.mse_loss(posed / 1000, batch["joints3d"] - batch["joints3d"][:, :1])
    torch.testing.assert_close(term, 1e4 * expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="MANO layer"):
        hfl_losses(out, batch, weights)


def test_loss_weights_merge_in_order():
    from hfl_lite.losses import loss_weights

    w = loss_weights({"mano_pose": 1000.0}, {"mano_pose": 5.0, "joints2d": 1.0}, None)
    assert w == {**LOSS_WEIGHTS, "mano_pose": 5.0, "joints2d": 1.0}
    with pytest.raises(KeyError, match="mano_poze"):
        loss_weights({"mano_poze": 1.0})
