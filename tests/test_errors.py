"""Expected failures end in one line naming the file or argument, the traceback only with
``--debug``; checkpoint errors name the path and never suggest ``weights_only=False``; a
checkpoint of another network is one sentence (issue 21, finding 7)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from hfl_lite.__main__ import main
from hfl_lite.errors import UserError

HO3D_SAMPLE = Path(__file__).resolve().parents[1] / "data_samples" / "ho3d"


pytestmark = pytest.mark.usefixtures("quiet_standin")


def eval_args(checkpoint, out, root=HO3D_SAMPLE) -> list[str]:
    return ["eval", "--checkpoint", str(checkpoint), "--dataset", "ho3d", "--root", str(root), "--device", "cpu",
            "--max-samples", "2", "--batch-size", "2", "--out", str(out)]


class RunsCode:
    """Pickled, this object would run ``os.system`` when loaded."""

    def __reduce__(self):
        return os.system, ("echo this should never run",)


def _folder(tmp_path: Path, fresh: Path) -> Path:
    path = tmp_path / "run.pt"
    path.mkdir()
    return path


def _truncated(tmp_path: Path, fresh: Path) -> Path:
    path = tmp_path / "cut.pt"
    data = fresh.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _runs_code(tmp_path: Path, fresh: Path) -> Path:
    path = tmp_path / "hostile.pt"
    torch.save({"model": RunsCode(), "preset": "cpu"}, path)
    return path


def _empty(tmp_path: Path, fresh: Path) -> Path:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    return path


CHECKPOINTS = {  # name: (make the file, words the one-line error holds)
    "a folder": (_folder, "is a folder, not a checkpoint file"),
    "missing": (lambda t, f: t / "missing.pt", "not found"),
    "truncated": (_truncated, "cannot be read: it is truncated or corrupt"),
    "empty": (_empty, "cannot be read: it is truncated or corrupt"),
    "holding code": (_runs_code, "refused by the safe loader"),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_a_bad_checkpoint_is_one_line_naming_it(case, fresh_checkpoint, tmp_path, capsys):
    make, words = CHECKPOINTS[case]
    path = make(tmp_path, fresh_checkpoint)
    assert main(eval_args(path, tmp_path / "eval")) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and words in lines[0], captured.err
    assert "weights_only" not in captured.err + captured.out
    assert "this should never run" not in captured.out
    assert not (tmp_path / "eval").exists()


def test_debug_shows_the_traceback(fresh_checkpoint, tmp_path):
    path = _truncated(tmp_path, fresh_checkpoint)
    with pytest.raises(UserError, match="cannot be read") as info:
        main(eval_args(path, tmp_path / "eval") + ["--debug"])
    assert "weights_only" not in str(info.value)


def test_a_missing_dataset_is_one_line(fresh_checkpoint, tmp_path, capsys):
    assert main(eval_args(fresh_checkpoint, tmp_path / "eval", root=tmp_path / "no_such_folder")) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no_such_folder" in lines[0] and "is not a directory" in lines[0]


def test_a_checkpoint_of_another_network_is_one_sentence(fresh_checkpoint, tmp_path, capsys):
    """Loading weights into a network they do not fit used to print one line per tensor (841)."""
    checkpoint = dict(torch.load(fresh_checkpoint, weights_only=True))
    checkpoint["model_config"] = {**checkpoint["model_config"], "backbone": "single"}
    other = tmp_path / "other.pt"
    torch.save(checkpoint, other)
    assert main(eval_args(other, tmp_path / "eval")) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(other) in lines[0] and "does not fit the network of preset 'cpu' with backbone 'single'" in lines[0]


def test_init_from_another_preset_is_one_sentence_naming_both(fresh_checkpoint, tmp_path, capsys):
    paper = tmp_path / "paper.pt"
    torch.save(dict(torch.load(fresh_checkpoint, weights_only=True), preset="paper"), paper)
    code = main(["train", "--dataset", "ho3d", "--root", str(HO3D_SAMPLE), "--preset", "cpu", "--max-steps", "1",
                 "--no-progress", "--init-from", str(paper), "--out", str(tmp_path / "run")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1, lines
    assert str(paper) in lines[0] and "holds a network of preset 'paper'" in lines[0]
    assert "this command builds preset 'cpu'" in lines[0]
