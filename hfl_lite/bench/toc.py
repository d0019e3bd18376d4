"""The book's table of contents: the documents a checkout's ``_toc.yml`` lists, in order.

The one reader of ``_toc.yml``: the ``book`` benchmark section and ``tools/book.py`` (the
chapter list for nbval, the Colab cells) both use it. The book exists only in a repository
checkout; ``root`` defaults to the checkout holding this package.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

__all__ = ["TOC", "book_root", "toc_files", "toc_notebooks"]

TOC = "_toc.yml"


def book_root(root: str | os.PathLike | None = None) -> Path:
    """The checkout whose book is meant: ``root``, or the checkout holding this package.

    Raises ``FileNotFoundError`` naming the folder when it has no ``_toc.yml``.
    """
    folder = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    if not (folder / TOC).is_file():
        where = "" if root is not None else " (the folder above the hfl_lite package: not a checkout)"
        raise FileNotFoundError(f"no {TOC} in {folder}{where}: the book's chapters exist only in a repository "
                                "checkout; pass --book-root CHECKOUT")
    return folder


def toc_files(root: str | os.PathLike | None = None) -> list[Path]:
    """Every document named in ``_toc.yml`` of ``root`` (see :func:`book_root`), root document
    first, resolved to an existing ``.ipynb`` or ``.md`` file."""
    folder = book_root(root)
    toc = yaml.safe_load((folder / TOC).read_text())
    names = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    paths = []
    for name in names:
        candidates = [folder / name] + [folder / f"{name}{ext}" for ext in (".ipynb", ".md")]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise FileNotFoundError(f"{folder / TOC} names {name!r}, but no such .ipynb or .md file exists")
        paths.append(found[0])
    return paths


def toc_notebooks(root: str | os.PathLike | None = None) -> list[Path]:
    """The chapters (notebooks) of ``_toc.yml``, in the book's order."""
    return [p for p in toc_files(root) if p.suffix == ".ipynb"]
