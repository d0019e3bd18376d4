"""Shared fixtures.

* hfl_lite built as a wheel and installed, as a user installs it, into throw-away virtual
  environments outside the repository. Nothing is downloaded: the wheel is built with the build
  tools already installed here (``--no-build-isolation``), and each environment sees the
  project's dependencies through a ``.pth`` file naming this interpreter's site-packages. Python
  does not process ``.pth`` files inside a folder that a ``.pth`` line adds, so the editable
  ``hfl_lite`` installed there stays invisible: the environment imports only the copy installed
  into it.
* A writable copy of the HO3D sample set, and checkpoints made in the test session, so that the
  tests using them do not depend on the shipped weights (which are retrained whenever the
  network changes).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from hfl_lite.samples import samples_root

REPO = Path(__file__).resolve().parents[1]
HO3D_SAMPLE = samples_root() / "ho3d"
# variables that would point a fresh environment back at this checkout or change what it finds
_LEAKS = ("PYTHONPATH", "HFL_SAMPLES", "HFL_COLAB_INSTALL", "MANO_ROOT", "VIRTUAL_ENV", "PYTHONHOME")


def _run(args: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@dataclass
class Venv:
    """A virtual environment: its ``python``, its ``site`` folder and the ``env`` to run it with."""

    root: Path
    python: Path
    site: Path
    env: dict

    def run(self, args: list[str], cwd: Path, timeout: float = 600, **env) -> subprocess.CompletedProcess:
        """``python *args`` in ``cwd``; fails the test, with the output, on a non-zero exit."""
        return _run([str(self.python), *map(str, args)], timeout, cwd=cwd, env={**self.env, **env})

    def pip_install(self, *args: str, cwd: Path) -> None:
        """``pip install`` without an index, ignoring the copy of hfl_lite the shared folder lists."""
        self.run(["-m", "pip", "install", "-q", "--no-index", "--no-deps", "--ignore-installed", *args], cwd)


@pytest.fixture(scope="session")
def hfl_wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built from a copy of what the build reads (the checkout stays clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("hfl_lite", "data_samples"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(tmp / "dist"), str(src)], cwd=tmp)
    wheels = sorted((tmp / "dist").glob("hfl_lite-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture
def make_venv(tmp_path_factory):
    """``make_venv()``: a new environment outside the repository with the dependencies of this one."""

    def make() -> Venv:
        root = tmp_path_factory.mktemp("venv") / "env"
        _run([sys.executable, "-m", "venv", "--without-pip", str(root)])
        python = root / "bin" / "python"
        site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         env={}).stdout.strip())
        (site / "hfl_shared_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        env = {k: v for k, v in os.environ.items() if k not in _LEAKS}
        env["PATH"] = os.pathsep.join([str(root / "bin"), env.get("PATH", "")])
        return Venv(root, python, site, env)

    return make



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


@pytest.fixture(scope="session")
def lively_checkpoint(tmp_path_factory) -> Path:
    """An untrained cpu-preset HFL-Net (seed 0) whose decoders keep PyTorch's default initialisation
    instead of the reference's near-zero one, written as ``train --export`` writes weights: its
    outputs spread as a trained network's do (confidence logits of order one, a hand of a hand's size,
    2D joints apart), so steps after the network are well posed on them, unlike on ``fresh_checkpoint``
    (all votes tied near 0.5, a tiny hand kilometres away)."""
    from torch import nn

    from hfl_lite.mano import StandinAssetWarning
    from hfl_lite.model import PAPER_VARIANTS, HFLNet
    from hfl_lite.training.checkpoint import export_weights, save_checkpoint

    folder = tmp_path_factory.mktemp("lively_checkpoint")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinAssetWarning)
        model = HFLNet("cpu")
    for module in [*model.hand_decoder.modules(), *model.object_decoder.modules()]:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.reset_parameters()
    save_checkpoint({"model": model.state_dict(), "preset": "cpu", "model_config": dict(PAPER_VARIANTS), "step": 0},
                    folder / "init.pt")
    return export_weights(folder / "init.pt", folder / "lively.pt")
