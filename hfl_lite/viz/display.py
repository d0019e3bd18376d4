"""Show a plotly figure so that it appears both in Jupyter/Colab and in the built book.

Since plotly 6 a figure's default output is the ``application/vnd.plotly.v1+json`` mime
type, which Jupyter Book 1 (myst-nb) does not render: figures silently vanish from the
page. :func:`show` therefore has two modes:

* interactive (Jupyter, Colab, a script): the ordinary ``fig.show()``;
* book build (environment variable ``HFL_BOOK_BUILD=1``, set by ``make book``): an HTML
  fragment that draws with the ``plotly.min.js`` the build copies into the book's
  ``_static/`` folder from the installed plotly package, so the page needs no network.

A static page carries every number of its figures, so the book's fragments thin long line
traces first (:func:`thin_line_traces`: a training curve of tens of thousands of steps would
otherwise weigh megabytes, far more than the column's pixels can show).
"""
from __future__ import annotations

import os
import uuid

import numpy as np

BOOK_BUILD_ENV = "HFL_BOOK_BUILD"
MAX_LINE_POINTS = 1500  # per line trace in the book: about two per pixel of the text column


def in_book_build() -> bool:
    """True while ``make book`` (or the browser test's build) executes the chapters."""
    return os.environ.get(BOOK_BUILD_ENV, "") not in {"", "0", "false", "False"}


def thin_line_traces(fig, max_points: int = MAX_LINE_POINTS):
    """Thin, in place, every 2D line trace (``mode`` "lines", no markers) longer than ``max_points``.

    The trace's points are cut into ``max_points // 2`` runs of consecutive points, and each run
    keeps its lowest and its highest point, in their order: the curve keeps its envelope (spikes
    and the noise band stay visible) while the page stores at most ``max_points`` points. Traces
    with markers, 3D traces and traces whose x or y is not numeric are left alone.
    Returns ``fig``.
    """
    for trace in fig.data:
        # mode None draws lines for traces this long (plotly's default above 20 points)
        if trace.type not in ("scatter", "scattergl") or trace.mode not in (None, "lines") or trace.y is None:
            continue
        y = np.asarray(trace.y)
        x = np.arange(len(y)) if trace.x is None else np.asarray(trace.x)
        if len(y) <= max_points or y.dtype.kind not in "iuf" or x.dtype.kind not in "iuf" or len(x) != len(y):
            continue
        keep = []
        for run in np.array_split(np.arange(len(y)), max_points // 2):
            values = y[run]
            finite = np.isfinite(values)
            if not finite.any():
                keep.append(run[:1])  # an all-gap run stays a gap
                continue
            low = run[np.nanargmin(np.where(finite, values, np.inf))]
            high = run[np.nanargmax(np.where(finite, values, -np.inf))]
            keep.append(np.unique([low, high]))
        keep = np.concatenate(keep)
        trace.update(x=x[keep].astype(np.float32) if x.dtype.kind == "f" else x[keep], y=y[keep].astype(np.float32))
    return fig


def figure_html(fig, div_id: str | None = None) -> str:
    """HTML fragment for ``fig`` that expects ``window.Plotly`` from the page's own scripts.

    The plot is drawn once ``Plotly`` exists (the page loads ``_static/plotly.min.js`` in its
    head); animation frames and sliders keep working without a kernel. Long line traces are
    thinned first (:func:`thin_line_traces`, on a copy: ``fig`` is not changed).
    """
    import plotly.graph_objects as go

    fig = thin_line_traces(go.Figure(fig))
    div_id = div_id or f"hfl-fig-{uuid.uuid4().hex[:12]}"
    body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"responsive": True, "displaylogo": False})
    return f'<div class="hfl-plotly">{body}</div>'


def show(fig) -> None:
    """Display a plotly figure in a notebook, the book or a script (see module docstring)."""
    if in_book_build():
        from IPython.display import HTML, display

        display(HTML(figure_html(fig)))
    else:
        fig.show()
