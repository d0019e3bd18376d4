"""hfl_lite installed as users install it, outside the repository: the wheel carries the package and
the samples, and the commands run from an empty folder (fixtures in conftest.py)."""
from __future__ import annotations

import json
import tomllib
import zipfile
from pathlib import Path

import pytest

from hfl_lite.data import HO3D
from hfl_lite.geometry.camera import enlarge_box, project_points, tight_box, transform_points
from hfl_lite.samples import samples_root

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

WHERE = "import hfl_lite, hfl_lite.samples as s; print(hfl_lite.__file__); print(s.samples_root())"


def test_pyproject_lists_every_subpackage_and_maps_the_samples():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "hfl_lite").rglob("__init__.py")}
    assert set(config["packages"]) == found | {"hfl_lite.data_samples"}
    assert config["package-dir"] == {"hfl_lite.data_samples": "data_samples"}
    assert config["package-data"]["hfl_lite.data_samples"] == ["**/*"]


def test_the_wheel_holds_the_package_and_every_sample(hfl_wheel):
    with zipfile.ZipFile(hfl_wheel) as wheel:
        names = set(wheel.namelist())
    shipped = {f"hfl_lite/data_samples/{p.relative_to(samples_root()).as_posix()}"
               for p in samples_root().rglob("*") if p.is_file()}
    assert len(shipped) > 300 and shipped <= names
    assert "hfl_lite/data_samples/checkpoints/hfl_lite_cpu_ho3d_synthetic.pt" in names
    assert {"hfl_lite/bench/epnp.py", "hfl_lite/bench/cli.py", "hfl_lite/synth/render.py", "hfl_lite/data/formats.py",
            "hfl_lite/samples.py", "hfl_lite/export.py", "hfl_lite/web/pipeline.mjs", "hfl_lite/web/page.mjs",
            "hfl_lite/web/page.css"} <= names
    assert not [n for n in names if n.startswith(("bench/", "tests/", "tools/", "book/"))]


def test_installed_wheel_runs_the_tiny_bench_and_infer_from_an_empty_folder(hfl_wheel, make_venv, tmp_path):
    venv = make_venv()
    venv.pip_install(str(hfl_wheel), cwd=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    package, samples = venv.run(["-c", WHERE], cwd=empty).stdout.split()
    assert package.startswith(str(venv.site)) and samples == str(venv.site / "hfl_lite" / "data_samples")

    out = tmp_path / "bench.json"
    venv.run(["-m", "hfl_lite", "bench", "--tiny", "--threads", "1", "--out", out], cwd=empty, timeout=900)
    result = json.loads(out.read_text())
    assert [name for name, s in result["sections"].items() if s["error"] or not s["records"]] == []
    assert {"epnp", "voting", "data", "render"} <= set(result["sections"])

    # infer on a shipped evaluation image with the shipped checkpoint, boxes as the training data defines them
    data = HO3D(samples_root() / "ho3d", "evaluation", image_size=64, roi_size=8)
    frame = data.read_frame(0)
    hand_box = enlarge_box(tight_box(project_points(frame.joints3d, frame.K)), 1.1)
    obj_box = tight_box(project_points(transform_points(frame.obj_ctrl3d, frame.obj_rot, frame.obj_trans), frame.K))
    image = data.frame_paths(0)["rgb"].relative_to(samples_root())
    installed = venv.site / "hfl_lite" / "data_samples"
    K = frame.K
    venv.run(["-m", "hfl_lite", "infer", "--checkpoint", installed / "checkpoints" / "hfl_lite_cpu_ho3d_synthetic.pt",
              "--image", installed / image, "--object", frame.obj_name, "--out", tmp_path / "infer",
              "--hand-box", *[f"{v:.1f}" for v in hand_box.tolist()], "--obj-box", *[f"{v:.1f}" for v in obj_box.tolist()],
              "--K", *[f"{float(v):.3f}" for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])]], cwd=empty)
    report = json.loads((tmp_path / "infer" / "result.json").read_text())
    assert report["object"]["name"] == frame.obj_name and len(report["hand"]["joints"]) == 21
    assert report["image"] == str(installed / image)
    assert sorted(p.name for p in empty.iterdir()) == []  # nothing written where it ran


def test_editable_install_finds_the_checkouts_samples(hfl_wheel, make_venv, tmp_path):
    """``pip install -e`` of a checkout: the package and the samples stay in the checkout."""
    checkout = hfl_wheel.parents[1] / "src"  # the copy the wheel was built from
    venv = make_venv()
    venv.pip_install("--no-build-isolation", "-e", str(checkout), cwd=tmp_path)
    package, samples = venv.run(["-c", WHERE], cwd=tmp_path).stdout.split()
    assert package == str(checkout / "hfl_lite" / "__init__.py") and samples == str(checkout / "data_samples")
