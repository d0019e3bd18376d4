"""tools/synthetic_checkpoint.py: the shipped checkpoint's recipe as one command (``--tiny`` here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import synthetic_checkpoint as recipe  # noqa: E402  (tools/synthetic_checkpoint.py)


def test_tiny_recipe_renders_trains_both_stages_and_evaluates(tmp_path, monkeypatch, capsys):
    out = tmp_path / "recipe"
    assert recipe.main(["--out", str(out), "--tiny", "--workers", "1"]) == 0
    for stage in ("stage1", "stage2"):
        assert len((out / f"data_{stage}" / "train.txt").read_text().split()) == recipe.TINY[stage][0]
        assert (out / stage / "log.csv").is_file()
    final = torch.load(out / recipe.CHECKPOINT_NAME, weights_only=True)
    first = torch.load(out / "stage1.pt", weights_only=True)
    assert final["preset"] == first["preset"] == "cpu" and final["step"] == first["step"] == 2
    assert final["init_from"] == str(out / "stage1.pt") and final["init_from_meta"]["step"] == 2
    assert final["loss_weights"]["joints2d"] == 1e4
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["samples"] == 16 and "baseline_mean_pose" in metrics
    assert "$ python -m hfl_lite train" in capsys.readouterr().out

    # a second call finds every step done and runs nothing
    ran = []
    monkeypatch.setattr(recipe, "_run", ran.append)
    assert recipe.main(["--out", str(out), "--tiny"]) == 0
    assert ran == []
    assert capsys.readouterr().out.count("# ") == 6
