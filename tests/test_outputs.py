"""Outputs appear whole or not at all (issue 21, finding 8): a failed ``eval`` or ``synth`` leaves
no empty or partial folder, ``synth --overwrite`` keeps the old tree until the new one is
complete, and :func:`hfl_lite.atomic.staged_folder` moves results into place only on success.
(``infer --out <existing file>`` is in test_bad_input.py.)"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hfl_lite.__main__ import main
from hfl_lite.atomic import staged_folder
from hfl_lite.bench.timing import cpu_kind

HO3D_SAMPLE = Path(__file__).resolve().parents[1] / "data_samples" / "ho3d"


pytestmark = pytest.mark.usefixtures("quiet_standin")


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its text."""
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# staged_folder
# ---------------------------------------------------------------------------------------------
def test_a_failure_leaves_neither_the_target_nor_the_stage(tmp_path):
    with pytest.raises(RuntimeError, match="half way"):
        with staged_folder(tmp_path / "out") as stage:
            (stage / "metrics.json").write_text("{}")
            raise RuntimeError("half way")
    assert list(tmp_path.iterdir()) == []


def test_success_creates_or_joins_the_target(tmp_path):
    with staged_folder(tmp_path / "out") as stage:
        (stage / "a.txt").write_text("new a")
        assert not (tmp_path / "out").exists()  # nothing is visible before the block ends
    assert tree(tmp_path / "out") == {"a.txt": "new a"}
    (tmp_path / "out" / "keep.txt").write_text("the user's")
    with staged_folder(tmp_path / "out") as stage:
        (stage / "a.txt").write_text("newer a")
        (stage / "sub").mkdir()
        (stage / "sub" / "b.txt").write_text("b")
    assert tree(tmp_path / "out") == {"a.txt": "newer a", "keep.txt": "the user's", "sub/b.txt": "b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replace_swaps_the_whole_folder_only_at_the_end(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with staged_folder(out, replace=True) as stage:
        (stage / "new.txt").write_text("new")
        assert tree(out) == {"old.txt": "old"}
    assert tree(out) == {"new.txt": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_stage_left_by_a_killed_process_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".out.partial-{int(dead.stdout)}-x1y2"
    abandoned.mkdir()
    (abandoned / "metrics.json").write_text("half")
    with staged_folder(tmp_path / "out") as stage:
        (stage / "metrics.json").write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---------------------------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------------------------
def _eval(checkpoint, root, out, *extra) -> int:
    return main(["eval", "--checkpoint", str(checkpoint), "--dataset", "ho3d", "--root", str(root), "--device", "cpu",
                 "--max-samples", "2", "--batch-size", "2", "--out", str(out), *extra])


def test_a_failed_eval_leaves_no_output_folder(ho3d_copy, fresh_checkpoint, tmp_path, capsys):
    sequence, frame = (ho3d_copy / "evaluation.txt").read_text().split()[1].split("/")
    meta = ho3d_copy / "evaluation" / sequence / "meta" / f"{frame}.pkl"
    meta.write_bytes(meta.read_bytes()[:40])
    out = tmp_path / "eval"
    assert _eval(fresh_checkpoint, ho3d_copy, out) == 1
    assert str(meta) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ho3d"]  # no eval folder, no hidden stage


def test_eval_writes_into_an_existing_folder_keeping_other_files(fresh_checkpoint, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _eval(fresh_checkpoint, HO3D_SAMPLE, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "metrics.md", "notes.txt", "pred.zip"]
    report = json.loads((out / "metrics.json").read_text())
    assert report["samples"] == 2 and report["submission"] == str(out / "pred.zip")
    assert report["hardware"] == cpu_kind()  # whose rounding the numbers repeat (tests/test_inference.py)


# ---------------------------------------------------------------------------------------------
# synth
# ---------------------------------------------------------------------------------------------
def _render_then_fail(folder, *args, **kwargs):
    (Path(folder) / "train.txt").write_text("a partial list\n")
    raise RuntimeError("rendering failed half way")


def _synth(out: Path, layout: str, *extra: str) -> list[str]:
    return ["synth", "--layout", layout, "--out", str(out), "--n-train", "1", "--n-eval", "0", "--cameras", "1",
            "--no-progress", *extra]


def test_a_failed_synth_leaves_no_partial_tree(tmp_path, monkeypatch):
    """Finding 8: the partial tree then demanded --overwrite. With --layout both, the Dex-YCB
    failure also takes back the finished HO3D tree: both appear together or neither does."""
    import hfl_lite.synth.generate as synth

    out = tmp_path / "sets"
    monkeypatch.setattr(synth, "generate_dexycb", _render_then_fail)
    with pytest.raises(RuntimeError, match="half way"):
        main(_synth(out, "both"))
    assert not out.exists() or list(out.iterdir()) == []
    monkeypatch.undo()
    assert main(_synth(out / "ho3d", "ho3d")) == 0  # no --overwrite needed
    assert len((out / "ho3d" / "train.txt").read_text().split()) == 1  # the one frame asked for


def test_synth_overwrite_keeps_the_old_tree_until_the_new_one_is_complete(tmp_path, monkeypatch):
    import hfl_lite.synth.generate as synth

    out = tmp_path / "ho3d"
    out.mkdir()
    (out / "train.txt").write_text("the old set\n")
    assert main(_synth(out, "ho3d")) == 1  # without --overwrite: refused before rendering
    monkeypatch.setattr(synth, "generate_ho3d", _render_then_fail)
    with pytest.raises(RuntimeError, match="half way"):
        main(_synth(out, "ho3d", "--overwrite"))
    assert tree(out) == {"train.txt": "the old set\n"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ho3d"]
