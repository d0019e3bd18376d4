"""Fixtures shared by several test modules: a writable copy of the HO3D sample set, and
checkpoints made in the test session, so that the tests using them do not depend on the shipped
weights (which are retrained whenever the network changes)."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
HO3D_SAMPLE = ROOT / "data_samples" / "ho3d"


@pytest.fixture
def quiet_standin():
    """Silence the stand-in hand's announcement (a warning each time a MANO layer is built from it)."""
    from hfl_lite.mano import StandinAssetWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)
        yield


@pytest.fixture
def ho3d_copy(tmp_path) -> Path:
    """A copy of ``data_samples/ho3d`` that a test may damage."""
    return Path(shutil.copytree(HO3D_SAMPLE, tmp_path / "ho3d"))


@pytest.fixture(scope="session")
def fresh_checkpoint(tmp_path_factory) -> Path:
    """A freshly initialised cpu-preset HFL-Net (seed 0) written as ``train --export`` writes weights."""
    from hfl_lite.mano import StandinAssetWarning
    from hfl_lite.model import PAPER_VARIANTS, HFLNet
    from hfl_lite.training.checkpoint import export_weights, save_checkpoint

    folder = tmp_path_factory.mktemp("fresh_checkpoint")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)
        model = HFLNet("cpu")
    save_checkpoint({"model": model.state_dict(), "preset": "cpu", "model_config": dict(PAPER_VARIANTS), "step": 0},
                    folder / "init.pt")
    return export_weights(folder / "init.pt", folder / "fresh.pt")


@pytest.fixture(scope="session")
def tiny_trained_checkpoint(tmp_path_factory) -> Path:
    """``last.pt`` of one ``train`` step (cpu preset, batch 2, no augmentation) on the HO3D sample set."""
    from hfl_lite.mano import StandinAssetWarning
    from hfl_lite.training.cli import train_main

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    flags = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)
        assert train_main(["--dataset", "ho3d", "--root", str(HO3D_SAMPLE), "--preset", "cpu", "--batch-size", "2",
                           "--max-steps", "1", "--seed", "0", "--no-augment", "--deterministic", "--no-progress",
                           "--out", str(run)]) == 0
    # train set deterministic kernels for the whole process: put the flags back
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = flags[2], flags[3]
    return run / "last.pt"
