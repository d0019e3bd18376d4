"""Grad-CAM of the two streams (hfl_lite.viz.gradcam): shapes, agreement with a hand-written
Grad-CAM, hand versus object maps on a real synthetic sample, side effects, bad arguments."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hfl_lite.model import HFLNet
from hfl_lite.samples import samples_root
from hfl_lite.viz import stream_gradcam
from hfl_lite.viz.gradcam import STREAMS, stream_layer

KINDS = ("single", "hfl", "double")


def _default_init_heads(model: HFLNet) -> HFLNet:
    """PyTorch's default initialisation for the convolutions and linear layers of the heads.

    The reference initialisation (convolutions N(0, 0.001), linear layers N(0, 0.01)) makes the
    targets' gradients of a fresh network so small that pytorch-grad-cam's scaling of each map
    (divided by its maximum + 1e-7) flattens it to nearly zero; a trained network has no such
    problem. These tests check the maps' machinery, so they use heads of the usual scale.
    """
    for head in (model.hand_interaction, model.object_interaction, model.hand_decoder, model.object_decoder):
        for module in head.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.reset_parameters()
    return model


@pytest.fixture(scope="module")
def models() -> dict[str, HFLNet]:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in hand warning
        return {kind: _default_init_heads(HFLNet("cpu", backbone=kind)) for kind in KINDS}


@pytest.fixture(scope="module")
def apart_sample() -> dict:
    """The training sample of data_samples/ho3d whose hand and object box centres lie farthest apart."""
    from hfl_lite.data import HO3D

    ds = HO3D(samples_root() / "ho3d", split="train", image_size=128, roi_size=16)

    def centre_distance(s):
        return float(((s["hand_box"][:2] + s["hand_box"][2:]) / 2 - (s["obj_box"][:2] + s["obj_box"][2:]) / 2).norm())

    samples = [ds[i] for i in range(0, len(ds), 3)]
    return max(samples, key=centre_distance)


def _batch(sample: dict, n: int = 1):
    return (sample["image"][None].expand(n, -1, -1, -1), sample["hand_box"][None].expand(n, -1),
            sample["obj_box"][None].expand(n, -1))


def _check_maps(out: dict, n: int, what: str) -> None:
    assert out["heatmaps"].shape == (n, 128, 128) and out["heatmaps"].dtype == np.float32, what
    assert np.isfinite(out["heatmaps"]).all(), what
    assert out["heatmaps"].min() >= 0 and out["heatmaps"].max() <= 1, what
    assert out["heatmaps"].max() > 0.99, f"{what}: empty map"
    assert out["overlays"].shape == (n, 128, 128, 3) and out["overlays"].dtype == np.uint8, what
    assert out["scores"].shape == (n,) and np.isfinite(out["scores"]).all(), what


@pytest.mark.parametrize("kind", KINDS)
def test_maps_are_finite_and_image_sized(models, apart_sample, kind):
    # layer3 of every kind and stream is covered by the hand-versus-object test below
    for stream, layer in (("hand", "layer2"), ("object", "fpn")):
        out = stream_gradcam(models[kind], *_batch(apart_sample, 2), stream, layer)
        _check_maps(out, 2, f"{kind}/{stream}/{layer}")


def _reference_gradcam(model, sample, stream, layer):
    """Grad-CAM written out with a forward hook and torch.autograd.grad, scores by loops."""
    model.eval()
    module = stream_layer(model, stream, layer)
    saved = {}
    handle = module.register_forward_hook(lambda m, i, o: saved.__setitem__("a", o))
    try:
        images, hand_boxes, obj_boxes = _batch(sample)
        out = model(images, hand_boxes, obj_boxes, return_intermediates=True)
    finally:
        handle.remove()
    if stream == "hand":
        score = sum(out["heatmaps"][0, j].max() for j in range(21))
    else:
        score = sum(torch.sigmoid(out["obj_conf_logits"][0, j]).max() for j in range(21))
    (grad,) = torch.autograd.grad(score, saved["a"])
    score = score.detach()
    act = saved["a"].detach()[0]
    weights = grad[0].mean(dim=(1, 2))
    cam = torch.relu((weights[:, None, None] * act).sum(0))
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
    cam = F.interpolate(cam[None, None], size=(128, 128), mode="bilinear", align_corners=False)[0, 0]
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
    return cam.numpy(), score.item()


@pytest.mark.parametrize("kind,stream,layer", [("hfl", "object", "layer3"), ("single", "hand", "fpn"),
                                               ("double", "hand", "layer2")])
def test_matches_hand_written_gradcam(models, apart_sample, kind, stream, layer):
    expected, score = _reference_gradcam(models[kind], apart_sample, stream, layer)
    out = stream_gradcam(models[kind], *_batch(apart_sample), stream, layer, "gradcam")
    np.testing.assert_allclose(out["heatmaps"][0], expected, atol=2e-3)
    assert out["scores"][0] == pytest.approx(score, rel=1e-5)


def test_hand_and_object_maps_differ_where_hand_and_object_are_apart(models, apart_sample):
    batch = _batch(apart_sample)
    for kind in KINDS:
        hand, obj = (stream_gradcam(models[kind], *batch, s, "layer3") for s in STREAMS)
        _check_maps(hand, 1, f"{kind}/hand/layer3")
        _check_maps(obj, 1, f"{kind}/object/layer3")
        diff = np.abs(hand["heatmaps"] - obj["heatmaps"]).mean()
        assert diff > 0.05, f"{kind}/layer3: hand and object maps agree (mean difference {diff:.3f})"
    # EigenCAM ignores the targets, and the single backbone's streams share their activations:
    # its two maps coincide.
    single = [stream_gradcam(models["single"], *batch, s, "layer3", "eigencam")["heatmaps"] for s in STREAMS]
    np.testing.assert_array_equal(single[0], single[1])


def test_leaves_model_mode_and_gradients_untouched(models, apart_sample):
    model = models["hfl"]
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    try:
        with torch.no_grad():  # the call must work inside a caller's no_grad block
            out = stream_gradcam(model, *_batch(apart_sample), "hand", "layer2", "gradcam++")
        assert np.isfinite(out["heatmaps"]).all()
        assert model.training
        assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_bad_arguments(models, apart_sample):
    model, batch = models["hfl"], _batch(apart_sample)
    with pytest.raises(ValueError, match="stream"):
        stream_gradcam(model, *batch, stream="face")
    with pytest.raises(ValueError, match="layer"):
        stream_gradcam(model, *batch, layer="layer4")
    with pytest.raises(ValueError, match="method"):
        stream_gradcam(model, *batch, method="cam")
    with pytest.raises(ValueError, match="images"):
        stream_gradcam(model, batch[0][0], batch[1], batch[2])
    with pytest.raises(ValueError, match="hand_boxes"):
        stream_gradcam(model, batch[0], batch[1][:, :3], batch[2])
    with pytest.raises(ValueError, match="obj_boxes"):
        stream_gradcam(model, batch[0], batch[1], [[0, 0, 1, 1]])
    with pytest.raises(TypeError, match="backbone"):
        stream_layer(torch.nn.Linear(2, 2), "hand", "fpn")
