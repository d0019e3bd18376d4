"""Sphinx extension: the built book's Colab cells and launch buttons name the commit it was built from.

A stored chapter cannot contain its own commit, so the book build writes it into what it
publishes:

* ``build-finished``: every notebook copy the built book serves (``<html>/_sources/**/*.ipynb``,
  also the pages' download buttons) gets the Colab cell of ``tools/book.py`` (the one writer of
  that cell) with the build's commit, ``git rev-parse HEAD`` of the book's folder, as the ref to
  install;
* ``html-page-context``: each chapter's Colab launch button opens that copy where the built book
  is published, the branch ``hfl_colab_branch`` of the book's repository (``_config.yml``;
  GitHub Pages serves ``gh-pages``): ``<colab>/github/<org>/<repo>/blob/<branch>/_sources/<page>.ipynb``.

A chapter opened in Colab from the published book and the package its first cell installs are
therefore the same commit, whatever the default branch holds later.
"""
from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)


def build_commit(folder: Path) -> str | None:
    """``git rev-parse HEAD`` of ``folder`` (None when it is not in a git checkout)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _book_tools(srcdir: Path):
    """``tools/book.py`` of the book's checkout (the writer of the Colab cell)."""
    path = srcdir / "tools" / "book.py"
    spec = importlib.util.spec_from_file_location("hfl_book_tools", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _colab_button(app, pagename, templatename, context, doctree) -> None:
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if button.get("text") == "Colab":
                repo = button["url"].split("/blob/")[0]
                button["url"] = f"{repo}/blob/{app.config.hfl_colab_branch}/_sources/{pagename}.ipynb"


def _stamp(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    srcdir = Path(app.srcdir)
    commit = build_commit(srcdir)
    if commit is None:
        logger.warning("hfl_colab: %s is not in a git checkout: the Colab cells keep the repository's branch", srcdir)
        return
    stamped = _book_tools(srcdir).stamp_notebooks(Path(app.outdir) / "_sources", commit)
    logger.info("hfl_colab: %d notebook copies install commit %s in Colab", len(stamped), commit)


def setup(app):
    app.add_config_value("hfl_colab_branch", "gh-pages", "html")
    # after sphinx-book-theme (priority 501), which adds the launch buttons
    app.connect("html-page-context", _colab_button, priority=600)
    app.connect("build-finished", _stamp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
