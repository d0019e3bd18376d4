"""The built book's Colab cells and launch buttons name the commit the book was built from
(book/_ext/hfl_colab.py): a one-chapter book in a fresh git repository, built by jupyter-book
with the project's configuration and extension (execution off, so it takes seconds)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import book  # noqa: E402  (tools/book.py)

pytestmark = pytest.mark.slow


def _git(args: list[str], cwd: Path) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_built_book_installs_and_opens_the_commit_it_was_built_from(tmp_path):
    root = tmp_path / "book_root"
    (root / "book").mkdir(parents=True)
    (root / "tools").mkdir()
    shutil.copy2(REPO / "tools" / "book.py", root / "tools" / "book.py")
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    config["sphinx"]["local_extensions"] = {"hfl_colab": str(REPO / "book" / "_ext")}
    (root / "_config.yml").write_text(yaml.safe_dump(config))
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n- file: book/01_chapter\n")
    (root / "intro.md").write_text("# A book\n")
    chapter = root / "book" / "01_chapter.ipynb"
    chapter.write_text(json.dumps({"cells": [{"cell_type": "markdown", "id": "goal", "metadata": {},
                                              "source": ["# One chapter\n"]}],
                                   "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}},
                                   "nbformat": 4, "nbformat_minor": 5}, indent=1) + "\n")
    assert book.stamp_notebooks(root / "book", "unused") == []  # no Colab cell yet
    stored = chapter.read_text()
    nb = json.loads(stored)
    nb["cells"].insert(0, {"cell_type": "code", "execution_count": None, "id": "colab-setup",
                           "metadata": {"tags": ["remove-cell"]}, "outputs": [],
                           "source": book.colab_cell_source().splitlines(keepends=True)})
    chapter.write_text(json.dumps(nb, indent=1) + "\n")
    stored = chapter.read_text()
    _git(["init", "-q"], root)
    _git(["add", "-A"], root)
    _git(["commit", "-q", "-m", "book"], root)
    commit = _git(["rev-parse", "HEAD"], root)

    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    done = subprocess.run([str(jupyter_book), "build", str(root), "--path-output", str(root)], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    html = root / "_build" / "html"
    copy = json.loads((html / "_sources" / "book" / "01_chapter.ipynb").read_text())
    assert "".join(copy["cells"][0]["source"]) == book.colab_cell_source(ref=commit)
    assert f'ref = "{commit}"' in "".join(copy["cells"][0]["source"])
    assert copy["cells"][1:] == nb["cells"][1:]
    assert chapter.read_text() == stored  # the stored chapter keeps the branch
    page = (html / "book" / "01_chapter.html").read_text()
    assert ("https://colab.research.google.com/github/hfl-lite/hfl-lite/blob/gh-pages/_sources/book/01_chapter.ipynb"
            in page)
    assert "/blob/main/" not in page and "google.colab" not in page  # the cell stays hidden
