"""Shared fixtures: hfl_lite built as a wheel and installed, as a user installs it, into throw-away
virtual environments outside the repository.

Nothing is downloaded: the wheel is built with the build tools already installed here
(``--no-build-isolation``), and each environment sees the project's dependencies through a
``.pth`` file naming this interpreter's site-packages. Python does not process ``.pth`` files
inside a folder that a ``.pth`` line adds, so the editable ``hfl_lite`` installed there stays
invisible: the environment imports only the copy installed into it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
