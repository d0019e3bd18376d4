"""pyproject.toml and environment.yml must list the same packages with the same versions."""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("book", "test", "pinned")  # extras that `make` installs; `pinned` overrides core ranges


def _by_name(lines, where):
    out = {}
    for line in lines:
        req = Requirement(line)
        name = req.name.lower().replace("_", "-")
        if name in out and str(out[name].specifier) != str(req.specifier):
            raise AssertionError(f"{where}: {name} listed twice with different versions")
        out[name] = req
    return out


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    merged = _by_name(project["dependencies"], "pyproject dependencies")
    for group in GROUPS:
        for name, req in _by_name(extras[group], f"pyproject extra {group!r}").items():
            if group == "pinned" or name not in merged:
                merged[name] = req
            elif str(merged[name].specifier) != str(req.specifier):
                raise AssertionError(f"pyproject: {name} has different versions in two groups")
    return merged


def environment_requirements() -> dict[str, Requirement]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml must have exactly one pip: section"
    return _by_name(pip_sections[0], "environment.yml")


def test_same_packages_and_versions():
    py, env = pyproject_requirements(), environment_requirements()
    assert sorted(py) == sorted(env), (
        f"only in pyproject: {sorted(set(py) - set(env))}; only in environment.yml: {sorted(set(env) - set(py))}")
    for name in py:
        assert py[name].specifier == env[name].specifier, (
            f"{name}: pyproject says {py[name].specifier or 'any'}, environment.yml {env[name].specifier or 'any'}")


def test_pins_the_issue_asks_for():
    py = pyproject_requirements()
    assert str(py["torch"].specifier) == "==2.14.1"
    assert str(py["torchvision"].specifier) == "==0.29.1"
    assert py["jupyter-book"].specifier.contains("1.0.4") and not py["jupyter-book"].specifier.contains("2.0.0")


def test_environment_python_is_311():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]


@pytest.mark.parametrize("drifted", ["torch==2.13.0", "numpy>=1.20"])
def test_drift_is_detected(tmp_path, monkeypatch, drifted):
    """The check above is not vacuous: change one version and it fails."""
    text = (ROOT / "environment.yml").read_text()
    name = Requirement(drifted).name
    lines = [f"      - {drifted}" if l.strip().startswith(f"- {name}") and Requirement(l.strip()[2:]).name == name else l
             for l in text.splitlines()]
    (tmp_path / "environment.yml").write_text("\n".join(lines))
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError):
        test_same_packages_and_versions()
