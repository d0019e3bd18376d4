"""The book's chapters are listed, stored without outputs, and start with the Colab cell."""
from __future__ import annotations

import json
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


def test_colab_cell_derives_from_the_repository_url():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    source = book.colab_cell_source()
    assert f"git+{url}" in source and "google.colab" in source
    assert book.colab_cell_source("https://example.org/x") != source


def test_colab_cell_does_nothing_outside_colab():
    """Executing the cell here (no google.colab) runs no install."""
    calls = []
    namespace = {"get_ipython": lambda: type("IP", (), {"run_line_magic": lambda *a: calls.append(a)})()}
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(book.colab_cell_source())
    assert "run_line_magic" in code  # the %pip line really is a magic call...
    exec(compile(code, "colab-cell", "exec"), namespace)
    assert calls == []  # ...and it is not reached outside Colab


def test_execution_errors_fail_the_build():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert config["execute"]["execute_notebooks"] in {"force", "auto", "cache"}
    assert config["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
