"""Tests of hfl_lite.model: backbones, ImageNet loading, ROIs, attention, decoders, HFLNet."""
from __future__ import annotations

import copy
import math
import urllib.error
from dataclasses import replace

import pytest
import torch
import torchvision
from torch import nn

from hfl_lite.geometry.rotations import matrix_to_axis_angle, rot6d_to_matrix
from hfl_lite.model import (
    BACKBONE_KINDS,
    HAND_VARIANTS,
    OBJECT_VARIANTS,
    PAPER_VARIANTS,
    ROI_CONVENTIONS,
    AttentionBlock,
    HandDecoder,
    HandInteraction,
    HFLNet,
    ObjectDecoder,
    ObjectInteraction,
    ResNetTrunk,
    build_backbone,
    intersection_boxes,
    pool,
    soft_argmax,
)
from hfl_lite.model import hflnet as hflnet_module
from hfl_lite.presets import get_preset

CPU = get_preset("cpu")
PAPER = get_preset("paper")
# the paper's widths (so that the weight statistics have enough samples) at the CPU's resolution
PAPER_SIZED_CPU = replace(PAPER, name="paper-widths", image_size=CPU.image_size, roi_size=CPU.roi_size,
                          imagenet_backbone=False)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def boxes(rows, scale=1.0):
    return torch.tensor(rows, dtype=torch.float32) * scale


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return HFLNet(CPU)


@pytest.fixture(scope="module")
def batch():
    """Two images: overlapping hand/object boxes in the first, disjoint in the second."""
    torch.manual_seed(1)
    s = CPU.image_size
    images = torch.rand(2, 3, s, s)
    hand = boxes([[10, 20, 70, 90], [5, 5, 40, 40]])
    obj = boxes([[50, 40, 120, 110], [60, 70, 120, 125]])
    return images, hand, obj


def grads_of(params):
    return [p.grad for p in params]


def all_zero(grads):
    return all(g is None or torch.count_nonzero(g) == 0 for g in grads)


def any_nonzero(grads):
    return any(g is not None and torch.count_nonzero(g) > 0 for g in grads)


# ---------------------------------------------------------------- backbones


def test_paper_parameter_counts_match_table5():
    with torch.device("meta"):
        reference = torchvision.models.resnet50()
    reference_resnet = n_params(reference) - n_params(reference.fc)
    c = PAPER.fpn_channels
    # FPN by hand: 1x1 convs 2048/1024/512/256 -> C with bias, one 3x3 C -> C with bias.
    fpn = sum(cin * c + c for cin in (2048, 1024, 512, 256)) + 9 * c * c + c
    assert reference_resnet == 23_508_032 and fpn == 1_574_144
    with torch.device("meta"):  # counting needs no storage
        single = n_params(build_backbone("single", PAPER))
        hfl = n_params(build_backbone("hfl", PAPER))
        double = build_backbone("double", PAPER)
    assert single == 25_082_176 == reference_resnet + fpn
    assert hfl == 34_974_272
    assert abs(n_params(double) - 50.15e6) <= 0.02e6
    stem = n_params(double.hand.resnet.conv1) + n_params(double.hand.resnet.bn1)
    assert round((n_params(double) - stem) / 1e6, 2) == 50.15  # the paper's number: share conv1 + bn1


def test_paper_network_has_the_reference_code_parameter_count():
    """46,080,659 parameters, module by module as the reference network (chapters 4 and 6 print
    the same table); the hand decoder's encoder has 4 stages of 2 residual blocks."""
    with torch.device("meta"):
        model = HFLNet(PAPER, pretrained=False)
    per_module = {name: n_params(child) for name, child in model.named_children()}
    assert per_module == {"backbone": 34_974_272, "hand_interaction": 2_888_704, "object_interaction": 723_456,
                          "hand_decoder": 6_491_540, "object_decoder": 1_002_687}
    assert n_params(model) == 46_080_659
    encoder = model.hand_decoder.encoder
    assert [len(stage) - 1 for stage in encoder.stages] == [2, 2, 2, 2]  # blocks per stage, then the max-pool
    # one pre-activation bottleneck 256 -> 256 (three BN + conv pairs); the encoder has eight
    block = 2 * 256 + (256 * 128 + 128) + 2 * 128 + (9 * 128 * 128 + 128) + 2 * 128 + (128 * 256 + 256)
    assert n_params(encoder.stages) == 8 * block


def test_hfl_backbone_parameter_groups_partition_the_module():
    backbone = build_backbone("hfl", CPU)
    groups = backbone.parameter_groups()
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(list(backbone.parameters()))


@pytest.fixture(scope="module")
def torchvision_resnet50():
    torch.manual_seed(3)
    return torchvision.models.resnet50()


def test_trunk_matches_torchvision_resnet50_with_leaky_relu(torchvision_resnet50):
    reference = copy.deepcopy(torchvision_resnet50).eval()
    for module in list(reference.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, nn.LeakyReLU(0.01, inplace=True))
    trunk = ResNetTrunk(64).eval()
    assert set(trunk.state_dict()) == {k for k in reference.state_dict() if not k.startswith("fc.")}
    trunk.load_imagenet(reference.state_dict())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = reference.layer4(reference.layer3(reference.layer2(reference.layer1(
            reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))))
        assert torch.allclose(trunk(x)[3], expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["hfl", "single", "double"])
def test_backbone_shapes_cpu_preset(kind):
    s, c = CPU.image_size, CPU.fpn_channels
    p_h, p_o = build_backbone(kind, CPU)(torch.rand(2, 3, s, s))
    assert p_h.shape == p_o.shape == (2, c, s // 4, s // 4)
    assert (p_h is p_o) == (kind == "single")


def test_unknown_backbone_kind():
    with pytest.raises(ValueError, match="single"):
        build_backbone("triple", CPU)


# ---------------------------------------------------------------- ImageNet initialisation


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory, torchvision_resnet50):
    state = torchvision_resnet50.state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("kind", ["hfl", "double"])
def test_weights_file_lands_in_both_streams(resnet50_file, kind):
    path, state = resnet50_file
    backbone = build_backbone(kind, PAPER, weights_path=path)
    if kind == "hfl":
        hand, obj = backbone.resnet, backbone.resnet
        obj_layers = {"layer2": backbone.obj_layer2, "layer3": backbone.obj_layer3}
    else:
        hand, obj = backbone.hand.resnet, backbone.obj.resnet
        obj_layers = {"layer2": obj.layer2, "layer3": obj.layer3}
    assert torch.equal(hand.conv1.weight, state["conv1.weight"])
    assert torch.equal(obj.conv1.weight, state["conv1.weight"])
    assert torch.equal(hand.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    for name in ("layer2", "layer3"):
        for key, value in getattr(hand, name).state_dict().items():
            assert torch.equal(value, state[f"{name}.{key}"]), key
        for key, value in obj_layers[name].state_dict().items():
            assert torch.equal(value, state[f"{name}.{key}"]), key
    # The object copies are separate tensors, not aliases of the hand's.
    assert obj_layers["layer2"][0].conv1.weight.data_ptr() != hand.layer2[0].conv1.weight.data_ptr()


def test_offline_download_falls_back_or_raises(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.warns(UserWarning, match="Could not download.*random initialisation"), torch.device("meta"):
        backbone = build_backbone("single", PAPER, pretrained=True)
    assert n_params(backbone) == 25_082_176
    with pytest.raises(RuntimeError, match="weights_path"):
        build_backbone("single", PAPER, pretrained=True, allow_random_init=False)


def test_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_backbone("hfl", PAPER, weights_path=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="backbone_width"):
        build_backbone("hfl", CPU, weights_path=tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="bad.pth"), torch.device("meta"):
        build_backbone("single", PAPER, weights_path=bad)


# ---------------------------------------------------------------- ROIs


def test_intersection_boxes_against_loop():
    hand = boxes([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 20, 30], [0, 0, 10, 10]])
    obj = boxes([[5, 2, 15, 8], [10, 0, 20, 10], [0, 10, 8, 12], [20, 20, 30, 30]])
    inter, valid = intersection_boxes(hand, obj)
    for i in range(4):
        x1, y1 = max(hand[i, 0], obj[i, 0]), max(hand[i, 1], obj[i, 1])
        x2, y2 = min(hand[i, 2], obj[i, 2]), min(hand[i, 3], obj[i, 3])
        overlap = bool(x2 > x1 and y2 > y1)
        assert bool(valid[i]) == overlap
        if overlap:
            assert inter[i].tolist() == [x1, y1, x2, y2]
    assert valid.tolist() == [True, False, True, False]  # touching edges do not overlap


@pytest.mark.parametrize("convention", list(ROI_CONVENTIONS))
def test_roi_align_convention_bin_centres(convention):
    # A stride-4 map whose value is the feature x index: bilinear sampling is exact on it, so
    # pooled values reveal where the bins are centred (documented in hfl_lite.model.roi).
    # Feature cell k covers pixels [4k, 4k + 4), so the exact sample for pixel x reads x/4 - 0.5;
    # the reference's aligned=False reads x/4, i.e. 2 pixels (half a cell) further on.
    w = 32
    ramp = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(1, 1, w, w).contiguous()
    box = boxes([[30.0, 40.0, 70.0, 72.0]])
    r = 8
    pooled = pool(ramp, box, r, stride=4, aligned=ROI_CONVENTIONS[convention]["aligned"])[0, 0]
    centres_px = 30.0 + (torch.arange(r) + 0.5) * 40.0 / r
    shift = 0.5 if convention == "exact" else 0.0
    assert torch.allclose(pooled[0], centres_px / 4 - shift, atol=1e-5)


def test_intersection_features_zero_for_disjoint_boxes(net, batch):
    images, hand, obj = batch
    net.eval()
    with torch.no_grad():
        out = net(images, hand, obj, return_intermediates=True)
    assert out["inter_valid"].tolist() == [True, False]
    assert torch.count_nonzero(out["F_ho"][1]) == 0
    assert torch.count_nonzero(out["F_ho"][0]) > 0
    assert out["F_h"].shape == out["F_oh"].shape == out["F_o"].shape == (2, CPU.fpn_channels, CPU.roi_size, CPU.roi_size)


# ---------------------------------------------------------------- attention


def slow_attention_block(block: AttentionBlock, query, key_value):
    """Loop over images, heads and query tokens with plain tensor maths."""
    b, d, h, w = query.shape
    heads, dh = block.heads, d // block.heads

    def project(conv, x):
        return torch.einsum("oi,bin->bon", conv.weight[:, :, 0, 0], x.flatten(2)) + conv.bias[None, :, None]

    q, k, v = project(block.to_q, query), project(block.to_k, key_value), project(block.to_v, key_value)
    out = torch.empty(b, d, h * w)
    weights = torch.empty(b, heads, h * w, key_value.shape[2] * key_value.shape[3])
    for i in range(b):
        for head in range(heads):
            sl = slice(head * dh, (head + 1) * dh)
            for t in range(h * w):
                scores = (k[i, sl] * q[i, sl, t : t + 1]).sum(0) / math.sqrt(dh)
                p = torch.exp(scores - scores.max())
                p = p / p.sum()
                weights[i, head, t] = p
                out[i, sl, t] = (v[i, sl] * p).sum(1)
    z = query.flatten(2) + out  # [b, d, n]
    zt = z.transpose(1, 2)
    mu = zt.mean(-1, keepdim=True)
    var = zt.var(-1, unbiased=False, keepdim=True)
    normed = (zt - mu) / torch.sqrt(var + block.norm.eps) * block.norm.weight + block.norm.bias
    hidden = torch.nn.functional.gelu(normed @ block.mlp[0].weight.T + block.mlp[0].bias)
    zt = zt + hidden @ block.mlp[2].weight.T + block.mlp[2].bias
    return zt.transpose(1, 2).reshape(b, d, h, w), weights


@pytest.mark.parametrize("cross", [False, True])
def test_attention_block_against_slow_loop(cross):
    torch.manual_seed(4)
    block = AttentionBlock(16, heads=4)
    query = torch.randn(2, 16, 3, 3)
    key_value = torch.randn(2, 16, 3, 3) if cross else None
    with torch.no_grad():
        fast = block(query, key_value)
        fast2, weights = block(query, key_value, return_attention=True)
        expected, expected_weights = slow_attention_block(block, query, query if key_value is None else key_value)
    assert torch.allclose(fast, expected, atol=1e-5)
    assert torch.allclose(fast2, expected, atol=1e-5)
    assert torch.allclose(weights, expected_weights, atol=1e-6)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 9))


def test_paper_variants_are_the_network_defaults():
    """``PAPER_VARIANTS`` (``train``'s defaults) names HFLNet's own defaults and valid choices, and
    HFLNet records them in its config."""
    import inspect

    defaults = {k: v.default for k, v in inspect.signature(HFLNet).parameters.items() if k in PAPER_VARIANTS}
    assert defaults == PAPER_VARIANTS
    choices = {"backbone": BACKBONE_KINDS, "hand_interaction": HAND_VARIANTS, "object_interaction": OBJECT_VARIANTS}
    assert all(PAPER_VARIANTS[k] in choices[k] for k in PAPER_VARIANTS)
    assert {k: HFLNet("cpu").config[k] for k in PAPER_VARIANTS} == PAPER_VARIANTS


def test_unknown_interaction_variants():
    with pytest.raises(ValueError, match="concat_sa"):
        HandInteraction(8, "concat")
    with pytest.raises(ValueError, match="h2o"):
        ObjectInteraction(8, "hand")


# ---------------------------------------------------------------- decoders


def test_soft_argmax_against_loop():
    torch.manual_seed(5)
    maps = torch.randn(2, 3, 4, 5)
    beta = torch.tensor([0.5, 1.0, 3.0])
    coords, probs = soft_argmax(maps, beta)
    for b in range(2):
        for j in range(3):
            e = torch.exp(beta[j] * maps[b, j])
            p = e / e.sum()
            u = sum(p[r, c] * (c + 0.5) / 5 for r in range(4) for c in range(5))
            v = sum(p[r, c] * (r + 0.5) / 4 for r in range(4) for c in range(5))
            assert torch.allclose(coords[b, j], torch.stack([u, v]), atol=1e-6)
            assert torch.allclose(probs[b, j], p, atol=1e-6)
    peaked = torch.full((1, 1, 4, 4), -1e4)
    peaked[0, 0, 1, 3] = 0.0
    assert torch.allclose(soft_argmax(peaked)[0], torch.tensor([[[3.5 / 4, 1.5 / 4]]]))


def test_object_decoder_channel_layout():
    decoder = ObjectDecoder(8).eval()
    with torch.no_grad():
        decoder.out.weight.zero_()
        decoder.out.bias.copy_(torch.arange(63, dtype=torch.float32))
        out = decoder(torch.randn(1, 8, 4, 4))
    assert out["obj_conf_logits"].shape == (1, 21, 4, 4) and out["obj_offset"].shape == (1, 21, 2, 4, 4)
    k = torch.arange(21, dtype=torch.float32)
    assert torch.equal(out["obj_conf_logits"][0, :, 0, 0], k)
    assert torch.equal(out["obj_offset"][0, :, 0, 0, 0], 21 + k)
    assert torch.equal(out["obj_offset"][0, :, 1, 0, 0], 42 + k)


# ---------------------------------------------------------------- the full network


def test_output_shapes_and_consistency_cpu_preset(net, batch):
    images, hand, obj = batch
    net.eval()
    with torch.no_grad():
        out = net(images, hand, obj)
    r = CPU.roi_size
    shapes = {
        "joints2d_norm": (2, 21, 2), "joints2d": (2, 21, 2), "mano_rot6d": (2, 16, 6),
        "mano_rotmat": (2, 16, 3, 3), "mano_pose": (2, 48), "mano_shape": (2, 10), "verts": (2, 778, 3),
        "joints": (2, 21, 3), "obj_conf_logits": (2, 21, r, r), "obj_offset": (2, 21, 2, r, r),
        "hand_boxes": (2, 4), "obj_boxes": (2, 4),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    assert torch.allclose(out["mano_rotmat"], rot6d_to_matrix(out["mano_rot6d"]))
    assert torch.allclose(out["mano_pose"], matrix_to_axis_angle(out["mano_rotmat"]).reshape(2, 48))
    assert torch.allclose(out["joints"][:, 0], torch.zeros(2, 3), atol=1e-6)  # root-relative
    assert out["verts"].abs().max() < 0.5  # metres, a hand is ~0.2 m
    size = hand[:, 2:] - hand[:, :2]
    assert torch.allclose(out["joints2d"], hand[:, None, :2] + out["joints2d_norm"] * size[:, None])


def test_paper_preset_forward_batch1():
    torch.manual_seed(0)
    model = HFLNet(PAPER, pretrained=False).eval()
    hand, obj = boxes([[40, 60, 150, 200]]), boxes([[100, 80, 230, 220]])
    with torch.no_grad():
        out = model(torch.rand(1, 3, 256, 256), hand, obj, return_intermediates=True)
    assert out["P_h"].shape == out["P_o"].shape == (1, 256, 64, 64)  # the paper's 256 x 64 x 64
    assert out["F_he"].shape == out["F_oe"].shape == (1, 256, 32, 32)
    assert out["joints2d"].shape == (1, 21, 2) and out["verts"].shape == (1, 778, 3)
    assert out["obj_conf_logits"].shape == (1, 21, 32, 32) and out["obj_offset"].shape == (1, 21, 2, 32, 32)


def hand_loss(out):
    return out["joints2d_norm"].sum() + out["verts"].sum() + out["mano_shape"].sum()


def object_loss(out):
    return out["obj_conf_logits"].sum() + out["obj_offset"].sum()


def test_gradients_reach_both_streams_and_shared_layer4(net, batch):
    images, hand, obj = batch
    net.train()
    net.zero_grad()
    (hand_loss(net(images, hand, obj)) + object_loss(net(images, hand, obj))).backward()
    bb = net.backbone
    for module in (bb.resnet.layer2, bb.resnet.layer3, bb.obj_layer2, bb.obj_layer3, bb.resnet.layer4, bb.resnet.layer1):
        assert any_nonzero(grads_of(module.parameters()))


@pytest.mark.parametrize("hand_variant", HAND_VARIANTS)
def test_hand_variants_forward_backward_and_detach(net, batch, hand_variant):
    images, hand, obj = batch
    net.hand_interaction = HandInteraction(CPU.fpn_channels, hand_variant, CPU.attention_heads)
    net.train()
    groups = net.backbone.parameter_groups()
    try:
        net.zero_grad()
        hand_loss(net(images, hand, obj)).backward()
        assert all_zero(grads_of(groups["object"]))  # F_oh / F_o are detached
        assert any_nonzero(grads_of(groups["hand"])) and any_nonzero(grads_of(groups["shared"]))
        if hand_variant != "none":
            assert any_nonzero(grads_of(net.hand_interaction.parameters()))
    finally:
        net.hand_interaction = HandInteraction(CPU.fpn_channels, "concat_sa", CPU.attention_heads)


@pytest.mark.parametrize("object_variant", OBJECT_VARIANTS)
def test_object_variants_forward_backward_and_detach(net, batch, object_variant):
    images, hand, obj = batch
    net.object_interaction = ObjectInteraction(CPU.fpn_channels, object_variant, CPU.attention_heads)
    net.train()
    groups = net.backbone.parameter_groups()
    try:
        net.zero_grad()
        object_loss(net(images, hand, obj)).backward()
        assert all_zero(grads_of(groups["hand"]))  # F_ho is detached
        assert any_nonzero(grads_of(groups["object"])) and any_nonzero(grads_of(groups["shared"]))
        if object_variant != "none":
            assert any_nonzero(grads_of(net.object_interaction.parameters()))
    finally:
        net.object_interaction = ObjectInteraction(CPU.fpn_channels, "h2o", CPU.attention_heads)


def test_single_and_double_backbones_in_hfl_net(batch):
    images, hand, obj = batch
    for kind in ("single", "double"):
        model = HFLNet(CPU, backbone=kind)
        model.zero_grad()
        out = model(images, hand, obj)
        (hand_loss(out) + object_loss(out)).backward()
        assert all(torch.isfinite(v).all() for v in out.values())


def test_bad_inputs(net, batch):
    images, hand, obj = batch
    s = CPU.image_size
    cases = [
        ((torch.rand(2, 1, s, s), hand, obj), "channels"),
        ((torch.rand(2, 3, s, s + 32), hand, obj), "images"),
        ((torch.rand(2, 3, 256, 256), hand, obj), "images"),
        ((images, hand[:1], obj), "hand_boxes"),
        ((images, boxes([[10, 10, 10, 50], [0, 0, 5, 5]]), obj), "hand_boxes"),
        ((images, hand, boxes([[10, 10, 50, 5], [0, 0, 5, 5]])), "obj_boxes"),
        ((images, boxes([[float("nan"), 0, 5, 5], [0, 0, 5, 5]]), obj), "hand_boxes"),
        ((images, hand, boxes([[0, 0, float("inf"), 5], [0, 0, 5, 5]])), "obj_boxes"),
        ((images, hand, boxes([[s + 5, 0, s + 50, 5], [0, 0, 5, 5]])), "obj_boxes"),
    ]
    for args, name in cases:
        with pytest.raises(ValueError, match=name):
            net(*args)


@pytest.mark.parametrize("convention", list(ROI_CONVENTIONS))
def test_edge_boxes_give_finite_outputs_and_gradients(convention):
    s = CPU.image_size
    torch.manual_seed(6)
    net = HFLNet(CPU, roi_convention=convention)
    images = torch.rand(4, 3, s, s)
    hand = boxes([[-30, -10, 40, 50], [0, 0, s, s], [60.0, 60.0, 60.5, 60.5], [100, 100, s + 40, s + 90]])
    obj = boxes([[40, 50, 90, 90], [0, 0, s, s], [60.2, 60.2, 61, 61], [0, 0, 20, 20]])
    net.train()
    net.zero_grad()
    out = net(images, hand, obj, return_intermediates=True)
    if convention == "exact":  # clamped to the image
        assert out["hand_boxes"][0].tolist() == [0, 0, 40, 50]
        assert out["hand_boxes"][3].tolist() == [100, 100, s, s]
    else:  # the reference uses the boxes as given
        assert torch.equal(out["hand_boxes"], hand) and torch.equal(out["obj_boxes"], obj)
    assert out["inter_valid"].tolist() == [False, True, True, False]  # box pair 0 only touches
    assert torch.allclose(out["joints2d"], out["hand_boxes"][:, None, :2]
                          + out["joints2d_norm"] * (out["hand_boxes"][:, None, 2:] - out["hand_boxes"][:, None, :2]))
    for key in ("joints2d", "verts", "joints", "obj_conf_logits", "obj_offset", "mano_pose"):
        assert torch.isfinite(out[key]).all(), key
    (hand_loss(out) + object_loss(out)).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())


# ---------------------------------------------------------------- fidelity to the reference code


def test_encoder_reads_the_softmax_maps_that_the_soft_argmax_reads(net, batch):
    """The hand encoder's map input is each joint's spatial softmax (sums to one, the maps the
    soft-argmax reads), not the raw score maps."""
    images, hand, obj = batch
    seen = {}
    handle = net.hand_decoder.encoder.register_forward_pre_hook(lambda m, args: seen.update(probs=args[0]))
    try:
        net.eval()
        with torch.no_grad():
            out = net(images, hand, obj, return_intermediates=True)
    finally:
        handle.remove()
    probs = seen["probs"]
    assert probs.shape == (2, 21, CPU.roi_size, CPU.roi_size)
    assert torch.allclose(probs.sum(dim=(2, 3)), torch.ones(2, 21), atol=1e-5) and probs.min() >= 0
    expected_coords, expected_probs = soft_argmax(out["heatmaps"], net.hand_decoder.beta)
    assert torch.allclose(probs, expected_probs) and torch.allclose(out["heatmap_probs"], expected_probs)
    assert torch.allclose(out["joints2d_norm"], expected_coords)


def test_hand_decoder_uses_leaky_relu_with_the_reference_slope():
    decoder = HandDecoder(CPU.fpn_channels, CPU.roi_size, CPU.mano_hidden)
    activations = [m for m in decoder.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.ReLU6))]
    assert activations and all(type(m) is nn.LeakyReLU and m.negative_slope == 0.01 for m in activations)
    # one per bottleneck (3 each: hourglass 4 levels x 3 + 1 inner, head residual, 8 encoder blocks), the
    # head's 1x1 block and the fully connected layers
    assert len(activations) == 3 * (4 * 3 + 1 + 1 + 8) + 1 + len(CPU.mano_hidden)


def test_heads_and_attention_start_from_the_reference_initialisation():
    """Convolutions N(0, 0.001), linear layers N(0, 0.01), biases 0 in the interaction modules and
    both decoders; the backbone keeps its own initialisation; no offset on the 6D pose output."""
    torch.manual_seed(7)
    model = HFLNet(PAPER_SIZED_CPU, pretrained=False)
    heads = (model.hand_interaction, model.object_interaction, model.hand_decoder, model.object_decoder)
    convs = [m for h in heads for m in h.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for h in heads for m in h.modules() if isinstance(m, nn.Linear)]
    assert len(convs) > 50 and len(linears) > 5
    conv_w = torch.cat([m.weight.flatten() for m in convs])
    linear_w = torch.cat([m.weight.flatten() for m in linears])
    assert conv_w.mean().abs() < 1e-5 and abs(float(conv_w.std()) - 0.001) < 2e-5
    assert linear_w.mean().abs() < 1e-4 and abs(float(linear_w.std()) - 0.01) < 2e-4
    for m in convs + linears:  # every layer, not only on average
        assert abs(float(m.weight.std()) - (0.01 if isinstance(m, nn.Linear) else 0.001)) < 0.35 * float(m.weight.std())
        assert m.bias is None or torch.count_nonzero(m.bias) == 0
    assert float(model.backbone.fpn_h.smooth.weight.std()) > 0.005  # PyTorch's default, untouched
    assert not any(name.startswith("identity") for name, _ in model.hand_decoder.named_buffers())
    # an attention block starts close to the identity (PyTorch's default initialisation: about 0.25)
    block = model.hand_interaction.block
    x = torch.randn(1, block.dim, 4, 4)
    with torch.no_grad():
        assert (block(x) - x).norm() < 0.1 * x.norm()


def test_pretrained_default_follows_the_preset(monkeypatch):
    """``HFLNet(pretrained=None)`` asks for ImageNet weights exactly when the preset says so
    (paper: yes, cpu: no), the same default ``train`` uses."""
    calls = []

    def fake_build_backbone(kind, preset, pretrained, weights_path, allow_random_init):
        calls.append(pretrained)
        return build_backbone(kind, CPU)

    monkeypatch.setattr(hflnet_module, "build_backbone", fake_build_backbone)
    for preset, expected in ((PAPER, True), (CPU, False)):
        with torch.device("meta"):
            HFLNet(preset)
        assert calls[-1] is expected and preset.imagenet_backbone is expected
        with torch.device("meta"):
            HFLNet(preset, pretrained=not expected)
        assert calls[-1] is (not expected)


def test_unknown_roi_convention():
    with pytest.raises(ValueError, match="roi_convention"):
        HFLNet(CPU, roi_convention="aligned")
