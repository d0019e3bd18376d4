"""The book's chapters are listed, stored without outputs, and start with the Colab cell."""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import book  # noqa: E402  (tools/book.py)

NOTEBOOKS = sorted((ROOT / "book").glob("**/*.ipynb"))


def test_every_chapter_is_in_the_toc_and_every_toc_entry_exists():
    listed = {p.resolve() for p in book.toc_files()}
    unlisted = [p.relative_to(ROOT) for p in NOTEBOOKS if p.resolve() not in listed and ".ipynb_checkpoints" not in p.parts]
    assert not unlisted, f"notebooks missing from _toc.yml: {unlisted}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} have stored outputs; the book build executes chapters, strip them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_is_the_colab_cell_and_second_states_the_goal(path):
    cells = json.loads(path.read_text())["cells"]
    assert "".join(cells[0]["source"]) == book.colab_cell_source(), (
        f"{path.name}: first cell is not the Colab cell; run `python tools/book.py sync-colab`")
    assert cells[1]["cell_type"] == "markdown", f"{path.name}: the second cell should state the chapter's goal"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapters_find_the_samples_only_through_the_locator(path):
    """No chapter looks for data_samples/ above its folder: hfl_lite.samples.samples_root() knows."""
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    assert not re.search(r"Path\.cwd\(\)|os\.getcwd\(\)|__file__|\.parent\b|[\"'](\.\./)*data_samples", code), path.name
    if "SAMPLES" in code or "ABLATION" in code:
        assert re.search(r"from hfl_lite\.samples import [^\n]*\bsamples_root\b", code), path.name


CODE_COLUMNS = 79  # what the book's text column shows without a scroll bar


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_apparatus_summary_exercises_and_code_that_fits_the_column(path):
    """Issue 20: a summary and exercises at the end of every chapter (each exercise with a hint or
    an answer to fold open), and visible code no wider than the column (hidden drawing code may be)."""
    cells = json.loads(path.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert "Summary" in headings and "Exercises" in headings, f"{path.name}: sections {headings}"
    exercises = text.split("## Exercises", 1)[1]
    numbered = re.findall(r"^\d+\. ", exercises, re.M)
    folded = re.findall(r"^\s*:class: dropdown", exercises, re.M)
    assert numbered and len(folded) >= len(numbered), (
        f"{path.name}: {len(numbered)} exercises, {len(folded)} folded hints or answers")
    wide = []
    for i, c in enumerate(cells[1:], 1):
        tags = c.get("metadata", {}).get("tags", [])
        if c["cell_type"] != "code" or {"hide-input", "remove-input", "remove-cell"} & set(tags):
            continue
        wide += [f"cell {i}: {line[:40]}..." for line in "".join(c["source"]).splitlines() if len(line) > CODE_COLUMNS]
    assert not wide, f"{path.name}: visible code lines over {CODE_COLUMNS} characters: {wide}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_cell_is_hidden_in_the_built_book(path):
    """One rule (tools/book.py COLAB_TAGS) hides the set-up cell on every chapter."""
    cell = json.loads(path.read_text())["cells"][0]
    assert book.colab_cell_is_current(cell), (
        f"{path.name}: the Colab cell lacks the tags {book.COLAB_TAGS} that keep it out of the built book "
        f"(it has {cell.get('metadata', {}).get('tags', [])}); run `python tools/book.py sync-colab`")


def test_sync_colab_restores_the_hiding_tags_and_keeps_the_cell_id(tmp_path):
    nb = json.loads(NOTEBOOKS[0].read_text())
    nb["cells"][0]["metadata"] = {"tags": ["other-tag"]}  # today's source, tags lost
    nb["cells"][0]["id"] = "kept-id"
    second = json.loads(NOTEBOOKS[0].read_text())
    second["cells"] = second["cells"][1:]  # no Colab cell at all
    (tmp_path / "a.ipynb").write_text(json.dumps(nb, indent=1) + "\n")
    (tmp_path / "b.ipynb").write_text(json.dumps(second, indent=1) + "\n")
    assert sorted(p.name for p in book.sync_colab_cells(tmp_path)) == ["a.ipynb", "b.ipynb"]
    for name in ("a.ipynb", "b.ipynb"):
        first = json.loads((tmp_path / name).read_text())["cells"][0]
        assert book.colab_cell_is_current(first), name
    a = json.loads((tmp_path / "a.ipynb").read_text())
    assert a["cells"][0]["id"] == "kept-id" and "other-tag" in a["cells"][0]["metadata"]["tags"]
    assert len(a["cells"]) == len(nb["cells"])
    assert book.sync_colab_cells(tmp_path) == []  # nothing left to do



def test_colab_cell_derives_from_the_repository_url_and_branch():
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    source = book.colab_cell_source()
    assert f"git+{repository['url']}@{{ref}}" in source and f'ref = "{repository["branch"]}"' in source
    assert "google.colab" in source and book.COLAB_INSTALL_ENV in source
    assert book.colab_cell_source("https://example.org/x") != source
    assert 'ref = "0123abc"' in book.colab_cell_source(ref="0123abc")


def _run_colab_cell(source: str) -> tuple[list, dict]:
    """Execute a Colab cell as IPython would; returns the magic calls and the cell's namespace."""
    from IPython.core.inputtransformer2 import TransformerManager

    calls = []
    namespace = {"get_ipython": lambda: type("IP", (), {"run_line_magic": lambda self, *a: calls.append(a)})()}
    code = TransformerManager().transform_cell(source)
    assert "run_line_magic" in code  # the %pip line really is a magic call
    exec(compile(code, "colab-cell", "exec"), namespace)
    return calls, namespace


def test_colab_cell_in_colab_installs_the_ref_or_the_override(monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.delenv(book.COLAB_INSTALL_ENV, raising=False)
    url = book.repository_url()
    calls, namespace = _run_colab_cell(book.colab_cell_source(ref="0123abc"))
    assert calls == [("pip", "install -q {package}")]  # IPython fills in {package}
    assert namespace["package"] == f'"hfl_lite[book] @ git+{url}@0123abc"'
    monkeypatch.setenv(book.COLAB_INSTALL_ENV, "--no-deps /tmp/hfl_lite-0.1.0-py3-none-any.whl")
    assert _run_colab_cell(book.colab_cell_source())[1]["package"] == "--no-deps /tmp/hfl_lite-0.1.0-py3-none-any.whl"


def test_stamping_gives_the_built_copies_the_commit(tmp_path):
    chapter, page = tmp_path / "book" / NOTEBOOKS[0].name, tmp_path / "other.ipynb"
    chapter.parent.mkdir()
    shutil.copy2(NOTEBOOKS[0], chapter)
    page.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    before = page.read_text()
    assert book.stamp_notebooks(tmp_path, "0123abc") == [chapter]
    cells, stored = json.loads(chapter.read_text())["cells"], json.loads(NOTEBOOKS[0].read_text())["cells"]
    assert "".join(cells[0]["source"]) == book.colab_cell_source(ref="0123abc")
    assert cells[0]["id"] == stored[0]["id"] and cells[1:] == stored[1:]
    assert page.read_text() == before  # no Colab cell: left alone
    assert book.stamp_notebooks(tmp_path, "0123abc") == []


def test_colab_cell_does_nothing_outside_colab():
    """Executing the cell here (no google.colab) runs no install."""
    assert "google.colab" not in sys.modules
    calls, namespace = _run_colab_cell(book.colab_cell_source())
    assert calls == [] and "package" not in namespace


def test_execution_errors_fail_the_build():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert config["execute"]["execute_notebooks"] in {"force", "auto", "cache"}
    assert config["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
