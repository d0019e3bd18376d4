"""tools/synthetic_checkpoint.py: the shipped checkpoint's recipe as one command (``--tiny`` here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import synthetic_checkpoint as recipe  # noqa: E402  (tools/synthetic_checkpoint.py)


def test_tiny_recipe_renders_trains_every_stage_and_evaluates(tmp_path, monkeypatch, capsys):
    out = tmp_path / "recipe"
    assert recipe.main(["--out", str(out), "--tiny", "--workers", "1"]) == 0
    stages = list(recipe.TINY)
    assert stages == list(recipe.FULL) and len(stages) >= 2
    for stage in stages:
        assert len((out / f"data_{stage}" / "train.txt").read_text().split()) == recipe.TINY[stage][0]
        assert (out / stage / "log.csv").is_file()
    final = torch.load(out / recipe.CHECKPOINT_NAME, weights_only=True)
    assert final["preset"] == "cpu" and final["loss_weights"]["joints2d"] == 1e4
    # the lineage walks back through every stage's export to stage 1, which started from random weights
    meta, sources = final, []
    while "init_from" in meta:
        sources.append(meta["init_from"])
        assert meta["step"] == 2
        meta = meta["init_from_meta"]
    assert sources == [str(out / f"{stage}.pt") for stage in reversed(stages[:-1])]
    assert meta["step"] == 2 and "init_from_meta" not in meta
    stage1 = torch.load(out / "stage1.pt", weights_only=True)
    assert "init_from" not in stage1 and stage1["step"] == 2
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["samples"] == 16 and "baseline_mean_pose" in metrics
    assert "$ python -m hfl_lite train" in capsys.readouterr().out

    # a second call finds every step done and runs nothing
    ran = []
    monkeypatch.setattr(recipe, "_run", ran.append)
    assert recipe.main(["--out", str(out), "--tiny"]) == 0
    assert ran == []
    # one "done already" line per rendered set and per stage, one for the evaluation
    assert capsys.readouterr().out.count("# ") == 2 * len(stages) + 2
