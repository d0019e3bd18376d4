"""The book's Sphinx extension (book/_ext/hfl_book.py) without a full build: MathJax from the npm
package or, without it, one clear warning and the CDN; plotly.js only on pages with figures;
the static files it copies."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import hfl_book  # noqa: E402  (book/_ext/hfl_book.py)

CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"


class FakeApp:
    """What the extension's handlers touch of a Sphinx application."""

    def __init__(self, srcdir: Path, outdir: Path):
        self.srcdir, self.outdir = str(srcdir), str(outdir)
        self.js, self.css = [], []

    def add_js_file(self, filename, **kwargs):
        self.js.append(filename)

    def add_css_file(self, filename, **kwargs):
        self.css.append(filename)


def fake_mathjax(root: Path) -> Path:
    es5 = root / hfl_book.MATHJAX_PACKAGE
    for name in (hfl_book.MATHJAX_ENTRY, "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff", "sre/sre.js"):
        (es5 / name).parent.mkdir(parents=True, exist_ok=True)
        (es5 / name).write_text("// " + name)
    return es5


@pytest.fixture
def sphinx_warnings(caplog):
    caplog.set_level(logging.WARNING)
    return caplog


def test_installed_mathjax_is_served_from_the_book(tmp_path, sphinx_warnings):
    fake_mathjax(tmp_path / "src")
    app, config = FakeApp(tmp_path / "src", tmp_path / "out"), SimpleNamespace(mathjax_path=CDN)
    hfl_book._use_local_mathjax(app, config)
    assert config.mathjax_path == f"{hfl_book.MATHJAX_STATIC}/{hfl_book.MATHJAX_ENTRY}"
    assert not [r for r in sphinx_warnings.records if "MathJax" in r.getMessage()]
    hfl_book._copy_static(app)
    static = tmp_path / "out" / "_static"
    assert (static / hfl_book.MATHJAX_STATIC / hfl_book.MATHJAX_ENTRY).is_file()
    assert (static / hfl_book.MATHJAX_STATIC / "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff").is_file()
    assert not (static / hfl_book.MATHJAX_STATIC / "sre").exists()  # the speech engine stays out
    assert (static / hfl_book.PLOTLY_JS).stat().st_size > 1_000_000 and (static / hfl_book.CSS).is_file()
    assert app.css == [hfl_book.CSS] and app.js == []  # plotly.js is not added to every page


def test_without_npm_the_build_warns_once_and_keeps_the_cdn(tmp_path, sphinx_warnings):
    app, config = FakeApp(tmp_path / "src", tmp_path / "out"), SimpleNamespace(mathjax_path=CDN)
    hfl_book._use_local_mathjax(app, config)
    assert config.mathjax_path == CDN
    messages = [r.getMessage() for r in sphinx_warnings.records if "MathJax" in r.getMessage()]
    assert len(messages) == 1 and "npm ci" in messages[0] and "Node.js" in messages[0] and CDN in messages[0]
    hfl_book._copy_static(app)  # the rest of the build goes on
    assert not (tmp_path / "out" / "_static" / hfl_book.MATHJAX_STATIC).exists()


def test_plotly_js_only_on_pages_with_a_figure(tmp_path):
    app = FakeApp(tmp_path, tmp_path)
    hfl_book._page_assets(app, "book/01_introduction", "page.html", {"body": "<p>no figure</p>"}, None)
    assert app.js == []
    figure = '<div class="hfl-plotly"><div id="f" class="plotly-graph-div"></div></div>'
    hfl_book._page_assets(app, "book/02_mano", "page.html", {"body": figure}, None)
    assert app.js == [hfl_book.PLOTLY_JS]


def test_the_lockfile_pins_mathjax_3():
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert package["dependencies"]["mathjax"].startswith("3.")
    pinned = lock["packages"]["node_modules/mathjax"]
    assert pinned["version"] == package["dependencies"]["mathjax"] and pinned["integrity"].startswith("sha512-")
