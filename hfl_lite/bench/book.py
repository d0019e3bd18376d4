"""The ``book`` section: execution time of every chapter listed in a checkout's ``_toc.yml``.

The chapters exist only in a repository checkout (an installed package has no notebooks), so
the section runs those of ``--book-root`` (default: the checkout holding this package, when the
package is run from one; see :mod:`hfl_lite.bench.toc`).
"""
from __future__ import annotations

import os
import time

from .settings import Settings, record
from .toc import toc_notebooks

__all__ = ["bench_book"]


def bench_book(s: Settings, context: dict) -> list[dict]:
    """Execute every chapter of ``_toc.yml`` in ``s.book_root`` with nbclient (HFL_PRESET=cpu),
    each in its folder; the notebooks on disk are not changed."""
    import nbclient
    import nbformat

    notebooks = toc_notebooks(s.book_root)
    rows, total = [], 0.0
    old = os.environ.get("HFL_PRESET")
    os.environ["HFL_PRESET"] = "cpu"
    try:
        for path in notebooks:
            nb = nbformat.read(path, as_version=4)
            client = nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                                             resources={"metadata": {"path": str(path.parent)}})
            start, status = time.perf_counter(), "ok"
            try:
                client.execute()
            except Exception as err:  # report the failing chapter and go on with the others
                status = f"failed: {type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
            seconds = time.perf_counter() - start
            total += seconds
            rows.append(record("book", path.stem, f"{seconds:,.1f} s", status, seconds=seconds, status=status,
                               notebook=str(path)))
    finally:
        if old is None:
            os.environ.pop("HFL_PRESET", None)
        else:
            os.environ["HFL_PRESET"] = old
    failed = sum(r["status"] != "ok" for r in rows)
    rows.append(record("book", f"whole book ({len(rows)} chapters)", f"{total:,.1f} s",
                       f"{failed} failed" if failed else "all ran", seconds=total, chapters=len(rows), failed=failed))
    return rows
