"""The benchmark command (hfl_lite.bench): a tiny end-to-end run and its measuring helpers.

No timing assertions: only that every section runs and reports well-formed, sensible numbers.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time

import nbformat
import pytest
import torch
from torch import nn

from hfl_lite.bench import book, cli, load, settings, timing, train


def test_tiny_run_writes_every_section(tmp_path):
    out = tmp_path / "results" / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "hfl_lite", "bench", "--tiny", "--threads", "1", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| section | case | result | details |" in proc.stdout and f"wrote {out}" in proc.stdout
    result = json.loads(out.read_text())
    assert result["table"] in proc.stdout
    assert result["meta"]["settings"]["tiny"] and result["meta"]["machine"]["torch"] == torch.__version__
    expected = [s for s in cli.SECTIONS if s != "book"]
    assert list(result["sections"]) == expected
    for name, section in result["sections"].items():
        assert section["error"] is None, (name, section["error"])
        assert section["records"], name
        for r in section["records"]:
            assert r["section"] == name and r["case"] and r["value"]
            assert all(math.isfinite(v) for v in r.values() if isinstance(v, float)), r
    records = {name: section["records"] for name, section in result["sections"].items()}
    assert records["peak"][0]["gflops"] > 0
    inference = {(r["batch"], r["variant"]) for r in records["inference"]}
    assert inference == {(b, v) for b in (1, 2) for v in ("plain", "fast")}
    assert all(0 < r["fraction_of_peak"] and r["gflop_per_image"] > 0 for r in records["inference"])
    assert [(r["layout"], r["precision"]) for r in records["train"]] == [("contiguous", "fp32"), ("channels-last", "fp32")]
    for train in records["train"]:
        assert train["images_per_s"] > 0 and train["peak_memory_mb"] >= train["start_memory_mb"] > 0
    plain, nhwc = records["train"]
    assert plain["speedup_vs_contiguous"] == 1.0
    assert nhwc["speedup_vs_contiguous"] == pytest.approx(plain["ms_per_step"] / nhwc["ms_per_step"])
    ratio = records["backbone"][-1]
    assert ratio["flop_ratio"] > ratio["flop_ratio_without_fpn"] > 1  # two streams cost more than one ResNet-50
    for r in records["epnp"] + records["voting"]:
        assert r["speedup"] > 0 and r["cpu_speedup"] > 0 and r["torch_rot_deg"] < 5 and r["opencv_rot_deg"] < 5
    loaded = os.cpu_count()  # the second pass runs with one busy process per CPU
    assert [(r["batch"], r["load"]) for r in records["epnp"]] == [(1, 0), (16, 0), (1, loaded), (16, loaded)]
    assert records["epnp"][2]["case"].endswith(f"{loaded} busy processes competing")
    assert records["data"][0]["samples"] == 8 and records["data"][0]["samples_per_s"] > 0
    assert records["data"][1]["samples"] == 8 and records["data"][1]["main_cpu_ms_per_sample"] > 0
    assert records["render"][0]["images_per_s"] > 0
    browser = records["browser"]  # the page in headless Chromium, or a record of why it cannot run here
    if "skipped" in browser[0]:
        assert len(browser) == 1 and browser[0]["details"] == browser[0]["skipped"]
    else:
        assert [r["engine"] for r in browser] == ["torch", "onnxruntime", "onnxruntime-web"]
        assert all(r["network_ms"] > 0 for r in browser) and browser[-1]["ratio_to_torch"] > 0


def test_train_step_timing_runs_under_autocast():
    """The bf16 row ``bench`` adds on a GPU: the same timed step under autocast (run here on the CPU)."""
    from hfl_lite.model import build_model
    from hfl_lite.presets import get_preset

    s = settings.make_settings(tiny=True, device="cpu")
    preset = get_preset("cpu")
    data = train._training_batch(preset, 2, torch.device("cpu"))
    seconds, memory = train._time_train_step(preset, build_model(preset).state_dict(), data, torch.channels_last, s,
                                             amp_dtype=torch.bfloat16)
    assert seconds > 0 and memory.peak_mb >= memory.start_mb > 0


def test_book_section_times_each_chapter(tmp_path, monkeypatch):
    """The chapters of a checkout's _toc.yml (here a made-up book in tmp_path, given as --book-root)."""
    (tmp_path / "book").mkdir()
    ok, bad = tmp_path / "book" / "01_ok.ipynb", tmp_path / "book" / "02_bad.ipynb"
    (tmp_path / "intro.md").write_text("# A book\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n- file: book/01_ok\n- file: book/02_bad\n")
    cell = nbformat.v4.new_code_cell
    nbformat.write(nbformat.v4.new_notebook(cells=[cell("import os\nassert os.environ['HFL_PRESET'] == 'cpu'")]), ok)
    nbformat.write(nbformat.v4.new_notebook(cells=[cell("raise RuntimeError('broken chapter')")]), bad)
    monkeypatch.delenv("HFL_PRESET", raising=False)
    rows = book.bench_book(settings.make_settings(tiny=True, device="cpu", book_root=str(tmp_path)), {})
    assert [r["case"] for r in rows[:2]] == ["01_ok", "02_bad"]
    assert rows[0]["status"] == "ok"
    assert rows[1]["status"].startswith("failed") and "broken chapter" in rows[1]["status"]
    assert rows[2]["chapters"] == 2 and rows[2]["failed"] == 1
    assert rows[2]["seconds"] == pytest.approx(rows[0]["seconds"] + rows[1]["seconds"])
    assert "HFL_PRESET" not in os.environ  # restored
    assert nbformat.read(ok, as_version=4).cells[0].outputs == []  # the notebooks on disk are untouched


def test_book_section_outside_a_checkout_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"no _toc.yml in {tmp_path}") + ".*--book-root"):
        book.bench_book(settings.make_settings(tiny=True, device="cpu", book_root=str(tmp_path)), {})


def test_timed_counts_runs_and_stops_at_the_budget():
    calls = []

    def fn():
        calls.append(1)
        return len(calls)

    cpu = []
    seconds, last = timing.timed(fn, torch.device("cpu"), repeats=5, warmup=2, cpu_times=cpu)
    assert len(calls) == 7 and last == 7 and seconds >= 0 and len(cpu) == 5

    calls.clear()

    def slow():
        calls.append(1)
        time.sleep(0.02)

    timing.median_time(slow, torch.device("cpu"), repeats=10, warmup=1, max_seconds=0.01)
    assert len(calls) == 2  # the warm-up and a single timed run: the budget was spent


def test_count_flops_matches_the_formula():
    assert timing.count_flops(nn.Linear(10, 20), torch.zeros(3, 10)) == 2 * 3 * 10 * 20
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    total, per_module = timing.count_flops(conv, torch.zeros(1, 3, 16, 16), by_module=True)
    first, second = 2 * 8 * 3 * 9 * 16 * 16, 2 * 4 * 8 * 16 * 16
    assert total == first + second
    assert per_module["Sequential.0"] == first and per_module["Sequential.2"] == second


def test_peak_memory_sees_an_allocation():
    with timing.PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(25_000_000, dtype=torch.float64)  # 200 MB, written so the pages are resident
        block += 1
    assert memory.peak_mb - memory.start_mb > 150
    del block


def test_sections_and_settings():
    assert cli._sections(None, book=False) == tuple(s for s in cli.SECTIONS if s != "book")
    assert cli._sections("epnp, data", book=True) == ("epnp", "data", "book")
    with pytest.raises(SystemExit, match="unknown section"):
        cli._sections("epnp,gpu", book=False)
    tiny = settings.make_settings(tiny=True, device="cpu", infer_batches=(3,), repeats=2)
    assert tiny.tiny and tiny.infer_batches == (3,) and tiny.repeats == 2 and tiny.infer_preset == "cpu"
    full = settings.make_settings(device="cpu")
    assert full.infer_preset == "paper" and full.infer_batches == (1, 32) and full.epnp_batches == (1, 64, 1024)
    assert full.voting_batches == (1, 64, 1024) and full.load_processes == os.cpu_count()
    assert settings.make_settings(device="cpu", load_processes=0).load_processes == 0
    # the compiled solver rows: on a full run (whose first call compiles), not on a tiny one
    assert full.compiled and not tiny.compiled and not settings.make_settings(device="cpu", compiled=False).compiled
    failed = {"sections": {"peak": {"records": [], "error": "RuntimeError: boom", "seconds": 0.0}}}
    assert "| peak | (failed) | | RuntimeError: boom |" in cli.format_table(failed)


def test_competing_load_is_bounded_and_always_stopped():
    with load.competing_load(1, max_seconds=60) as busy:
        assert len(busy) == 1 and busy[0].poll() is None  # spinning
    assert busy[0].poll() is not None  # stopped with the block
    with pytest.raises(RuntimeError, match="boom"):
        with load.competing_load(1, max_seconds=60) as busy:
            raise RuntimeError("boom")
    assert busy[0].poll() is not None  # stopped on an error too
    with load.competing_load(1, max_seconds=0.5) as busy:
        busy[0].wait(timeout=30)  # ends by itself after max_seconds
    with load.competing_load(0) as busy:
        assert busy == []
    with pytest.raises(ValueError, match="processes must be in"):
        with load.competing_load(os.cpu_count() + 1):
            pass
