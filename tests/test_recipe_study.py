"""tools/recipe_study.py: chapter 9's recipe study as one resumable command (``--tiny`` here)."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import recipe_study as study  # noqa: E402  (tools/recipe_study.py)

CHOSEN = ["scratch, fixed, paper weights", "warm, no step: the previous checkpoint, fresh hand encoder",
          "warm, fresh, recipe weights, hand decoder only"]


def test_tiny_study_trains_scores_on_the_heldout_set_and_resumes(tmp_path, fresh_checkpoint, monkeypatch):
    out = tmp_path / "study"
    args = ["--out", str(out), "--tiny", "--workers", "1", "--warm-start", str(fresh_checkpoint), "--configs", *CHOSEN]
    assert study.main(args) == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["config"] for r in rows] == [*CHOSEN, "mean-pose baseline (no image)"]
    for row in rows:
        assert float(row["finger_angle_deg"]) > 0 and float(row["pa_mpjpe_mm"]) > 0
    assert [r["steps"] for r in rows[:3]] == ["2", "0", "2"] and rows[2]["trainable"] == "hand_decoder"
    assert len((out / "heldout" / "evaluation.txt").read_text().split()) == study.TINY["heldout"]

    runs = {c: out / "runs" / c.replace(", ", "_").replace("=", "-") for c in CHOSEN}
    # the warm runs started from the given weights: with no step, they are those weights exactly
    start = torch.load(fresh_checkpoint, weights_only=True)["model"]
    unchanged = torch.load(runs[CHOSEN[1]] / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(unchanged[k].to(v.dtype), v) for k, v in start.items())
    decoder_only = torch.load(runs[CHOSEN[2]] / "last.pt", weights_only=True)
    assert decoder_only["trainable"] == ["hand_decoder"] and "init_partial" in decoder_only

    # run again: every configuration is scored already, nothing is trained or evaluated
    ran = []
    monkeypatch.setattr(study, "_run", lambda *a, **k: ran.append(a))
    assert study.main(args) == 0
    assert ran == []
