"""Sphinx extension for the book: offline plotly.js and de-duplicated page scripts.

* At ``builder-inited`` it copies ``plotly.min.js`` from the installed plotly package into the
  build's static files and adds it to every page, so the figures that
  ``hfl_lite.viz.show`` writes draw with no network (plotly 6+ output is otherwise dropped by
  myst-nb, see hfl_lite/viz/display.py).
* sphinx-thebe registers its inline configuration script once per document-reading pass; when
  a build reads documents more than once, the page gets the same ``const`` declarations twice
  and the browser reports a SyntaxError. ``html-page-context`` keeps one copy of each script.
"""
from __future__ import annotations

import shutil
from pathlib import Path

PLOTLY_JS = "plotly.min.js"


def _copy_plotly(app) -> None:
    import plotly

    source = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not source.is_file():
        raise FileNotFoundError(f"{PLOTLY_JS} is missing from the installed plotly package ({source})")
    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, static / PLOTLY_JS)
    app.add_js_file(PLOTLY_JS)


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
    app.connect("builder-inited", _copy_plotly)
    # after the themes, which add page scripts in their own handlers
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
