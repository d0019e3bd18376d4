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
