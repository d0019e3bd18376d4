"""Where the samples are (hfl_lite.samples): the override, the installed copy, the checkout, the error."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hfl_lite
from hfl_lite import samples
from hfl_lite.samples import SAMPLES_ENV, SamplesNotFoundError, samples_root, shipped_checkpoint


def test_a_checkout_finds_its_own_samples(monkeypatch):
    """Run from a clone (PYTHONPATH or an editable install): ``data_samples/`` beside the package."""
    monkeypatch.delenv(SAMPLES_ENV, raising=False)
    root = samples_root()
    assert root == Path(hfl_lite.__file__).resolve().parents[1] / "data_samples"
    assert (root / "ho3d" / "train.txt").is_file() and (root / "mano_standin" / "MANO_RIGHT.pkl").is_file()
    assert shipped_checkpoint() == root / "checkpoints" / "hfl_lite_cpu_ho3d_synthetic.pt"
    assert shipped_checkpoint().is_file()


def test_the_environment_variable_overrides_and_is_checked(monkeypatch, tmp_path):
    monkeypatch.setenv(SAMPLES_ENV, str(tmp_path))
    assert samples_root() == tmp_path
    with pytest.raises(SamplesNotFoundError, match="shipped checkpoint .* is missing"):
        shipped_checkpoint()
    monkeypatch.setenv(SAMPLES_ENV, str(tmp_path / "absent"))
    with pytest.raises(SamplesNotFoundError, match=f"{SAMPLES_ENV}=.*absent.* is not a folder"):
        samples_root()


def _where(site: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", SAMPLES_ENV)}
    code = "from hfl_lite.samples import samples_root; print(samples_root())"
    return subprocess.run([sys.executable, "-c", code], cwd=site, env={**env, "PYTHONPATH": str(site)},
                          capture_output=True, text=True, timeout=60)


def test_the_installed_copy_comes_first_then_the_checkout_then_an_error(tmp_path):
    """A package laid out as installed (``site/hfl_lite/data_samples``) and as in a checkout
    (``site/data_samples`` beside the package), each tried in a fresh interpreter."""
    site = tmp_path / "site"
    (site / "hfl_lite").mkdir(parents=True)
    (site / "hfl_lite" / "__init__.py").write_text("")
    shutil.copy2(samples.__file__, site / "hfl_lite" / "samples.py")
    installed, checkout = site / "hfl_lite" / "data_samples", site / "data_samples"
    installed.mkdir()
    checkout.mkdir()
    assert _where(site).stdout.strip() == str(installed)
    installed.rmdir()
    assert _where(site).stdout.strip() == str(checkout)
    checkout.rmdir()
    done = _where(site)
    assert done.returncode != 0 and "SamplesNotFoundError" in done.stderr
    assert str(installed) in done.stderr and str(checkout) in done.stderr and SAMPLES_ENV in done.stderr
