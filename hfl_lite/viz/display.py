"""Show a plotly figure so that it appears both in Jupyter/Colab and in the built book.

Since plotly 6 a figure's default output is the ``application/vnd.plotly.v1+json`` mime
type, which Jupyter Book 1 (myst-nb) does not render: figures silently vanish from the
page. :func:`show` therefore has two modes:

* interactive (Jupyter, Colab, a script): the ordinary ``fig.show()``;
* book build (environment variable ``HFL_BOOK_BUILD=1``, set by ``make book``): an HTML
  fragment that draws with the ``plotly.min.js`` the build copies into the book's
  ``_static/`` folder from the installed plotly package, so the page needs no network.
"""
from __future__ import annotations

import os
import uuid

BOOK_BUILD_ENV = "HFL_BOOK_BUILD"


def in_book_build() -> bool:
    """True while ``make book`` (or the browser test's build) executes the chapters."""
    return os.environ.get(BOOK_BUILD_ENV, "") not in {"", "0", "false", "False"}


def figure_html(fig, div_id: str | None = None) -> str:
    """HTML fragment for ``fig`` that expects ``window.Plotly`` from the page's own scripts.

    The plot is drawn once ``Plotly`` exists (the page loads ``_static/plotly.min.js`` in its
    head); animation frames and sliders keep working without a kernel.
    """
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
