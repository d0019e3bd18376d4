"""Book chores: the chapter list from ``_toc.yml`` and the Colab cell of every chapter.

    python tools/book.py sync-colab     rewrite the first cell of every book/ notebook from _config.yml
    python tools/book.py notebooks      print the chapters listed in _toc.yml (for nbval)

The Colab cell installs ``hfl_lite[book]`` from the book's repository at a ref: the stored
chapters name the repository's branch (a stored notebook cannot contain its own commit); the
book build gives the notebook copies it publishes the commit it was built from
(:func:`stamp_notebooks`, called by ``book/_ext/hfl_colab.py``). The environment variable
``HFL_COLAB_INSTALL`` replaces what the cell installs (pip arguments, e.g. a local wheel).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from hfl_lite.bench import toc  # the one reader of _toc.yml

ROOT = Path(__file__).resolve().parents[1]
COLAB_MARKER = "# Colab set-up"
COLAB_INSTALL_ENV = "HFL_COLAB_INSTALL"
# The one rule that keeps the set-up cell out of the built book (Jupyter Book's tag for a cell
# shown neither as code nor as output); sync-colab writes it on every chapter.
COLAB_TAGS = ["remove-cell"]


def _repository() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]


def repository_url() -> str:
    """The repository address from ``_config.yml`` (the single place it is written)."""
    return _repository()["url"].rstrip("/")


def repository_branch() -> str:
    """The repository's branch from ``_config.yml``: the ref the stored chapters install."""
    return str(_repository().get("branch") or "main")


def colab_cell_source(url: str | None = None, ref: str | None = None) -> str:
    """Source of every chapter's first cell: in Colab it installs ``hfl_lite[book]`` from the
    repository ``url`` at ``ref`` (default: the branch of ``_config.yml``), or what
    ``HFL_COLAB_INSTALL`` names instead; anywhere else it does nothing."""
    url = url or repository_url()
    ref = ref or repository_branch()
    return (
        f"{COLAB_MARKER}: in Google Colab, install hfl_lite from the book's repository.\n"
        "# Anywhere else (your machine, the book build) this cell does nothing.\n"
        "import os\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    ref = "{ref}"  # the published book names here the commit it was built from\n'
        f'    package = os.environ.get("{COLAB_INSTALL_ENV}") or f\'"hfl_lite[book] @ git+{url}@{{ref}}"\'\n'
        "    %pip install -q {package}"
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


def _put_colab_cell(path: Path, source: str, insert: bool) -> bool:
    """Make the first cell of notebook ``path`` the Colab cell ``source``, hidden in the built book
    by :data:`COLAB_TAGS` (``insert``: add it when the notebook has none). A cell being replaced
    keeps its id and its other tags. Returns whether the file changed."""
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    old = cells[0] if cells and is_colab_cell(cells[0]) else None
    if old is None and not insert:
        return False
    metadata = (old or {}).get("metadata", {})
    tags = [t for t in metadata.get("tags", []) if t not in COLAB_TAGS] + COLAB_TAGS
    cell = {"cell_type": "code", "execution_count": None, "id": (old or {}).get("id", "colab-setup"),
            "metadata": {**metadata, "tags": tags}, "outputs": [], "source": source.splitlines(keepends=True)}
    if old is not None:
        if old == cell:
            return False
        cells[0] = cell
    else:
        cells.insert(0, cell)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


def _notebooks(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("**/*.ipynb")) if ".ipynb_checkpoints" not in p.parts]


def sync_colab_cells(folder: Path | None = None) -> list[Path]:
    """Make the first cell of every notebook under ``folder`` (default: book/) the Colab cell;
    returns the notebooks changed."""
    source = colab_cell_source()
    return [path for path in _notebooks(Path(folder or ROOT / "book")) if _put_colab_cell(path, source, insert=True)]


def stamp_notebooks(folder: Path, commit: str) -> list[Path]:
    """Give the Colab cell of every notebook under ``folder`` (the built book's copies) the ref
    ``commit``; notebooks without a Colab cell are left alone. Returns the notebooks changed."""
    source = colab_cell_source(ref=commit)
    return [path for path in _notebooks(Path(folder)) if _put_colab_cell(path, source, insert=False)]


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
