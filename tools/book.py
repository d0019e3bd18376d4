"""Book chores: the chapter list from ``_toc.yml`` and the Colab cell of every chapter.

    python tools/book.py sync-colab     rewrite the first cell of every book/ notebook from _config.yml
    python tools/book.py notebooks      print the chapters listed in _toc.yml (for nbval)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from hfl_lite.bench import toc  # the one reader of _toc.yml

ROOT = Path(__file__).resolve().parents[1]
COLAB_MARKER = "# Colab set-up"
# The one rule that keeps the set-up cell out of the built book (Jupyter Book's tag for a cell
# shown neither as code nor as output); sync-colab writes it on every chapter.
COLAB_TAGS = ["remove-cell"]


def repository_url() -> str:
    """The repository address from ``_config.yml`` (the single place it is written)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/")


def colab_cell_source(url: str | None = None) -> str:
    """Source of every chapter's first cell: installs hfl_lite in Colab, does nothing elsewhere."""
    url = url or repository_url()
    return (
        f"{COLAB_MARKER}: in Google Colab, install hfl_lite from the book's repository.\n"
        "# Anywhere else (your machine, the book build) this cell does nothing.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install -q "hfl_lite[book] @ git+{url}"'
    )


def toc_notebooks() -> list[Path]:
    """The chapters listed in this checkout's ``_toc.yml``, in order."""
    return toc.toc_notebooks(ROOT)


def toc_files() -> list[Path]:
    """Every document listed in this checkout's ``_toc.yml``, root first."""
    return toc.toc_files(ROOT)


def is_colab_cell(cell: dict) -> bool:
    """Whether ``cell`` (a notebook cell as stored) is a Colab cell, current or outdated."""
    return cell["cell_type"] == "code" and "".join(cell["source"]).startswith(COLAB_MARKER)


def colab_cell_is_current(cell: dict) -> bool:
    """The cell holds today's Colab source and carries the tags that hide it in the book."""
    tags = cell.get("metadata", {}).get("tags", [])
    return (is_colab_cell(cell) and "".join(cell["source"]) == colab_cell_source()
            and all(tag in tags for tag in COLAB_TAGS))


def sync_colab_cells(folder: Path | None = None) -> list[Path]:
    """Make the first cell of every notebook under ``folder`` (default: book/) the Colab cell,
    hidden in the built book by :data:`COLAB_TAGS`; returns the notebooks changed. A cell
    being replaced keeps its id and its other tags."""
    changed = []
    source = colab_cell_source()
    for path in sorted(Path(folder or ROOT / "book").glob("**/*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        nb = json.loads(path.read_text())
        cells = nb["cells"]
        if cells and colab_cell_is_current(cells[0]):
            continue
        old = cells[0] if cells and is_colab_cell(cells[0]) else None
        tags = [t for t in (old or {}).get("metadata", {}).get("tags", []) if t not in COLAB_TAGS] + COLAB_TAGS
        cell = {"cell_type": "code", "execution_count": None, "id": old["id"] if old and "id" in old else "colab-setup",
                "metadata": {**(old or {}).get("metadata", {}), "tags": tags}, "outputs": [],
                "source": source.splitlines(keepends=True)}
        if old:
            cells[0] = cell
        else:
            cells.insert(0, cell)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    if argv == ["sync-colab"]:
        for path in sync_colab_cells():
            print(f"updated {path.relative_to(ROOT)}")
    elif argv == ["notebooks"]:
        print(" ".join(str(p.relative_to(ROOT)) for p in toc_notebooks()))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
