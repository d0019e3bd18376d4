"""Tests of hfl_lite.presets."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from hfl_lite.presets import ENV_VAR, PRESETS, Preset, get_preset, pick_device


def test_paper_preset_is_the_papers_settings():
    p = get_preset("paper")
    assert (p.image_size, p.fpn_channels, p.roi_size, p.backbone_width) == (256, 256, 32, 64)
    assert p.roi_size == p.image_size // 8 and p.hand_feature_size == 1024
    assert (p.batch_size, p.lr, p.weight_decay, p.lr_gamma) == (64, 1e-4, 5e-4, 0.7)
    assert p.schedule("HO3D") == p.schedule("ho3d") and (p.schedule("ho3d").epochs, p.schedule("ho3d").lr_step_epochs) == (70, 10)
    assert (p.schedule("Dex-YCB").epochs, p.schedule("dex_ycb").lr_step_epochs) == (40, 5)
    with pytest.raises(ValueError, match="ho3d"):
        p.schedule("freihand")


def test_cpu_preset_is_smaller_and_consistent():
    cpu, paper = get_preset("cpu"), get_preset("paper")
    assert set(f.name for f in dataclasses.fields(Preset)) >= {"image_size", "fpn_channels", "roi_size", "batch_size"}
    assert cpu.image_size < paper.image_size and cpu.fpn_channels < paper.fpn_channels
    assert cpu.roi_size == cpu.image_size // 8 and cpu.roi_size % 16 == 0


def test_preset_loss_weights_name_real_terms_and_the_paper_keeps_its_own():
    from hfl_lite.losses import LOSS_WEIGHTS, loss_weights

    assert get_preset("paper").loss_weights == () and loss_weights(get_preset("paper").loss_weights) == LOSS_WEIGHTS
    cpu = dict(get_preset("cpu").loss_weights)
    assert cpu and set(cpu) <= set(LOSS_WEIGHTS)
    assert loss_weights(get_preset("cpu").loss_weights) == {**LOSS_WEIGHTS, **cpu}


def test_get_preset_default_and_environment(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_preset().name == "cpu" and pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_preset().name == "paper" and pick_device() == torch.device("cuda")
    monkeypatch.setenv(ENV_VAR, "cpu")
    assert get_preset().name == "cpu"
    monkeypatch.setenv(ENV_VAR, "huge")
    with pytest.raises(ValueError, match=ENV_VAR):
        get_preset()


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="'cpu', 'paper'"):
        get_preset("tiny")
    assert get_preset(PRESETS["cpu"]) is PRESETS["cpu"]


def test_invalid_sizes_rejected():
    with pytest.raises(ValueError, match="roi_size"):
        dataclasses.replace(PRESETS["cpu"], roi_size=20)
    with pytest.raises(ValueError, match="image_size"):
        dataclasses.replace(PRESETS["cpu"], image_size=100)
