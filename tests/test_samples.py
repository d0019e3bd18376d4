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


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_heldout_set_is_rendered_the_same_whatever_the_workers_and_mano_root(tmp_path, monkeypatch):
    from hfl_lite.synth.heldout import HELDOUT_SEED, heldout_command, heldout_root, render_heldout

    a = render_heldout(tmp_path / "a", frames=3, workers=1, progress=False)
    monkeypatch.setenv("MANO_ROOT", str(tmp_path / "no_such_mano"))  # the held-out set ignores it
    b = render_heldout(tmp_path / "b", frames=3, workers=2, progress=False)
    files = _files(a)
    assert files == _files(b)
    assert len((a / "evaluation.txt").read_text().split()) == 3 and (a / "train.txt").read_text().split() == []
    assert sum(name.endswith(".jpg") for name in files) == 3
    assert heldout_command("X")[heldout_command("X").index("--seed") + 1] == str(HELDOUT_SEED)

    # heldout_root renders into the cache once and then only returns the folder
    monkeypatch.setenv("HFL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("hfl_lite.synth.heldout.HELDOUT_FRAMES", 3)
    monkeypatch.setattr("hfl_lite.synth.heldout.render_heldout",
                        lambda folder, progress: render_heldout(folder, frames=3, workers=1, progress=progress))
    folder = heldout_root(progress=False)
    assert folder.parent == tmp_path / "cache" and _files(folder) == files
    monkeypatch.setattr("hfl_lite.synth.heldout.render_heldout", lambda *a, **k: pytest.fail("rendered twice"))
    assert heldout_root(progress=False) == folder
