"""The fast inference path (hfl_lite.model.fast) against the plain model and a plain conv + BN."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from hfl_lite.model import build_model, fold_batchnorm, fold_conv_bn, optimize_for_inference


def randomise_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Give every batch norm non-trivial running statistics and affine parameters, so that
    folding them is not a no-op (fresh ones have mean 0, variance 1, gamma 1, beta 0)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
            if m.affine:
                m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.data.copy_(0.4 * torch.rand(n, generator=g) - 0.2)


@pytest.mark.parametrize("conv_bias", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_fold_conv_bn_matches_the_pair(conv_bias, affine):
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, stride=2, padding=1, bias=conv_bias)
    bn = nn.BatchNorm2d(7, eps=1e-3, affine=affine)
    randomise_batchnorm(bn)
    pair = nn.Sequential(conv, bn).eval()
    x = torch.randn(3, 5, 11, 13)
    with torch.no_grad():
        expected = pair(x)
        # the textbook formula, written out independently of the implementation
        manual = (conv(x) - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        if affine:
            manual = manual * bn.weight[:, None, None] + bn.bias[:, None, None]
        fused = fold_conv_bn(conv, bn)(x)
    torch.testing.assert_close(manual, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    assert fused.shape == expected.shape


def test_fold_conv_bn_rejects_bad_pairs():
    with pytest.raises(ValueError, match="running statistics"):
        fold_conv_bn(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
    with pytest.raises(ValueError, match="4 output channels"):
        fold_conv_bn(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5))
    with pytest.raises(TypeError, match="BatchNorm2d"):
        fold_conv_bn(nn.Conv2d(3, 4, 1), nn.ReLU())


def test_fold_batchnorm_in_sequential_and_residual_blocks():
    torch.manual_seed(1)
    downsample = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
    net = nn.Sequential(
        nn.BatchNorm2d(8),  # pre-activation style: no convolution before it, must stay
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        Bottleneck(8, 4, stride=2, downsample=downsample),  # conv1/bn1 .. conv3/bn3 and downsample
    )
    randomise_batchnorm(net)
    net.eval()
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        expected = net(x)
        assert fold_batchnorm(net) == 5
        got = net(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    remaining = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert remaining == [net[0]]


@pytest.mark.parametrize("preset, batch", [("paper", 1), ("cpu", 2)])
def test_fast_path_matches_plain_model(preset, batch):
    torch.manual_seed(0)
    model = build_model(preset)
    randomise_batchnorm(model)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())

    fast = optimize_for_inference(model)
    S = model.preset.image_size
    g = torch.Generator().manual_seed(1)
    images = torch.rand(batch, 3, S, S, generator=g)
    hand = (torch.tensor([[0.15, 0.20, 0.65, 0.80]]) * S).expand(batch, 4)
    obj = (torch.tensor([[0.40, 0.25, 0.90, 0.85]]) * S).expand(batch, 4)
    with torch.no_grad():
        plain = model(images, hand, obj)
    out = fast(images, hand, obj)

    assert out.keys() == plain.keys()
    for key, ref in plain.items():
        assert out[key].dtype == torch.float32 and out[key].shape == ref.shape, key
        scale = ref.abs().max().clamp_min(1e-6)
        assert (out[key] - ref).abs().max() <= 1e-4 * scale, f"{key}: fast path differs from the plain model"

    # the plain model is untouched; the copy has folded most batch norms and is channels-last
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == n_bn
    left = sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert 0 < left < n_bn / 4  # only the hourglass pre-activation ones remain
    assert fast.model.backbone.resnet.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.preset == model.preset and not fast.training


def test_fast_path_options():
    model = build_model("cpu").eval()
    with pytest.raises(ValueError, match="autocast"):
        optimize_for_inference(model, autocast="fp8")
    # without folding and channels-last it is the same network in inference mode
    fast = optimize_for_inference(model, channels_last=False, fold_bn=False)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules()) == sum(
        isinstance(m, nn.BatchNorm2d) for m in model.modules())
    images = torch.rand(1, 3, 128, 128)
    boxes = torch.tensor([[10.0, 10.0, 90.0, 100.0]])
    with torch.no_grad():
        plain = model(images, boxes, boxes)
    out = fast(images, boxes, boxes)
    assert all(torch.equal(out[k], plain[k]) for k in plain)
    assert not out["verts"].requires_grad
