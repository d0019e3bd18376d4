"""Sphinx extension for the book: every page works with no network, and carries only what it uses.

* **Math.** MathJax 3 comes from the npm package ``mathjax``, pinned in the repository's
  ``package.json``/``package-lock.json`` and installed by ``make book`` (``npm ci``). At
  ``builder-inited`` its browser build is copied into the book's ``_static/mathjax/`` and every
  page with math loads it from there. Without it (no Node.js/npm, or ``npm ci`` not run) the build
  says so in one warning and the pages fall back to Sphinx's CDN address.
* **Plotly.** ``plotly.min.js`` is copied from the installed plotly package into ``_static/`` and
  added only to the pages that hold a figure written by ``hfl_lite.viz.show`` (plotly 6+ output is
  otherwise dropped by myst-nb, see hfl_lite/viz/display.py).
* **Layout.** ``_static/hfl_book.css``: wide outputs (tables) scroll inside the text column.
* **Scripts.** sphinx-thebe registers its inline configuration script once per document-reading
  pass; when a build reads documents more than once, the page gets the same ``const``
  declarations twice and the browser reports a SyntaxError. ``html-page-context`` keeps one copy
  of each script.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

PLOTLY_JS = "plotly.min.js"
# A figure written by hfl_lite.viz.figure_html; the page then needs plotly.js.
PLOTLY_MARKER = 'class="hfl-plotly"'
MATHJAX_PACKAGE = Path("node_modules") / "mathjax" / "es5"
MATHJAX_ENTRY = "tex-mml-chtml.js"  # the component Sphinx's CDN default loads, here served locally
MATHJAX_STATIC = "mathjax"
CSS = "hfl_book.css"
CSS_RULES = """\
/* hfl_book: outputs wider than the text column (tables) scroll inside it. */
div.cell_output div.output, div.cell_output div.text_html { overflow-x: auto; max-width: 100%; }
div.cell_output table { margin-left: 0; }
"""


def _local_mathjax(app) -> Path:
    return Path(app.srcdir) / MATHJAX_PACKAGE


def _use_local_mathjax(app, config) -> None:
    if (_local_mathjax(app) / MATHJAX_ENTRY).is_file():
        config.mathjax_path = f"{MATHJAX_STATIC}/{MATHJAX_ENTRY}"
    else:
        logger.warning(
            "MathJax is not installed in %s (run `npm ci` at the repository root; it needs Node.js and npm, "
            "which `make book` runs when they are present): the pages load MathJax from %s instead, and "
            "without a network they show raw TeX.", _local_mathjax(app), config.mathjax_path)


def _copy_static(app) -> None:
    import plotly

    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    source = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not source.is_file():
        raise FileNotFoundError(f"{PLOTLY_JS} is missing from the installed plotly package ({source})")
    shutil.copyfile(source, static / PLOTLY_JS)
    mathjax = _local_mathjax(app)
    if (mathjax / MATHJAX_ENTRY).is_file():
        # sre is the speech engine of the accessibility menu, loaded only on request: 4 MB left out
        shutil.copytree(mathjax, static / MATHJAX_STATIC, dirs_exist_ok=True, ignore=shutil.ignore_patterns("sre"))
    (static / CSS).write_text(CSS_RULES)
    app.add_css_file(CSS)


def _page_assets(app, pagename, templatename, context, doctree) -> None:
    if PLOTLY_MARKER in context.get("body", ""):
        app.add_js_file(PLOTLY_JS)  # inside html-page-context: this page only


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # inline scripts come with filename None or "" (two registrations of one body)
        key = (getattr(script, "filename", script) or None, tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("config-inited", _use_local_mathjax)
    app.connect("builder-inited", _copy_static)
    app.connect("html-page-context", _page_assets)
    # after the themes, which add page scripts in their own handlers
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
