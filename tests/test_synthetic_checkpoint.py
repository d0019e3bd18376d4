"""tools/synthetic_checkpoint.py: the shipped checkpoint's recipe as one command (``--tiny`` here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import synthetic_checkpoint as recipe  # noqa: E402  (tools/synthetic_checkpoint.py)


def _lineage(meta: dict) -> list[str]:
    sources = []
    while "init_from" in meta:
        sources.append(meta["init_from"])
        meta = meta["init_from_meta"]
    return sources


def test_tiny_recipe_renders_trains_every_stage_and_evaluates_on_the_heldout_set(tmp_path, monkeypatch, capsys):
    out = tmp_path / "recipe"
    assert recipe.main(["--out", str(out), "--tiny", "--workers", "1"]) == 0
    stages = list(recipe.TINY)
    assert stages == list(recipe.FULL) and len(stages) >= 2
    assert len((out / "heldout" / "evaluation.txt").read_text().split()) == recipe.TINY_HELDOUT
    assert (out / "heldout" / "train.txt").read_text().split() == []
    for stage in stages:
        assert len((out / f"data_{stage}" / "train.txt").read_text().split()) == recipe.TINY[stage].images
        assert (out / stage / "log.csv").is_file()
    final = torch.load(out / recipe.CHECKPOINT_NAME, weights_only=True)
    # the last stage's own weighting, on top of the preset's
    assert final["preset"] == "cpu" and final["loss_weights"]["mano_pose"] == 1e3
    assert final["loss_weights"]["obj_offset"] == 5e3 and final["step"] == 2
    # the lineage walks back through every stage's export to stage 1, which started from random weights
    assert _lineage(final) == [str(out / f"{stage}.pt") for stage in reversed(stages[:-1])]
    assert "init_from" not in torch.load(out / "stage1.pt", weights_only=True)
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["samples"] == recipe.TINY_HELDOUT and metrics["root"] == str(out / "heldout")
    assert metrics["baseline_root"] == str(out / f"data_{stages[-1]}")
    assert "finger_angle_deg" in metrics["model"] and "finger_angle_deg" in metrics["baseline_mean_pose"]
    assert "$ python -m hfl_lite train" in capsys.readouterr().out

    # a second call finds every step done and runs nothing
    ran = []
    monkeypatch.setattr(recipe, "_run", ran.append)
    assert recipe.main(["--out", str(out), "--tiny"]) == 0
    assert ran == []
    # "done already" lines: the held-out set, each stage's set and run, the evaluation, the end
    assert capsys.readouterr().out.count("# ") == 2 * len(stages) + 3


def test_warm_start_trains_only_the_last_stage_from_the_tensors_that_fit(tmp_path, fresh_checkpoint):
    """An older network's file: its hand encoder lacks blocks the current one has."""
    old = torch.load(fresh_checkpoint, weights_only=True)
    dropped = sorted(k for k in old["model"] if k.startswith("hand_decoder.encoder."))[:6]
    assert dropped
    for key in dropped:
        del old["model"][key]
    torch.save(old, tmp_path / "old.pt")

    out = tmp_path / "warm"
    assert recipe.main(["--out", str(out), "--tiny", "--workers", "1", "--warm-start", str(tmp_path / "old.pt")]) == 0
    last = list(recipe.TINY)[-1]
    assert sorted(p.name for p in out.iterdir()) == sorted(["heldout", f"data_{last}", last, recipe.CHECKPOINT_NAME,
                                                            "eval"])
    final = torch.load(out / recipe.CHECKPOINT_NAME, weights_only=True)
    assert _lineage(final) == [str(tmp_path / "old.pt")]
    assert sorted(final["init_partial"]["fresh"]) == dropped and final["init_partial"]["dropped"] == []
