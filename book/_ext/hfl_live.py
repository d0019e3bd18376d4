"""Sphinx extension: the files of the "Try it" page, where HFL-Net runs in the reader's browser.

At ``builder-inited`` it writes ``_static/hfl_live/`` into the built book with
:func:`hfl_lite.web.write_site`: onnxruntime-web from the repository's ``node_modules`` (pinned by
``package-lock.json``; ``make book`` runs ``npm ci``), the ONNX export of the shipped checkpoint
(:func:`hfl_lite.samples.shipped_checkpoint`, so a new checkpoint ships with the next build; the
environment variable ``HFL_LIVE_CHECKPOINT`` names another), a few held-out sample frames with their
ground truth, and ``config.json``. The page (``book/try_it.md``, and the small one at the end of
chapter 10) loads them from there: nothing comes from a CDN.

What is missing does not stop the book: without Node.js/npm, or with a checkpoint that does not load
with this version of the network, the build logs a warning saying what to do, and the page shows the
same reason to the reader.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

CHECKPOINT_ENV = "HFL_LIVE_CHECKPOINT"
FOLDER = "hfl_live"


def _write_page_files(app) -> None:
    from hfl_lite.samples import SamplesNotFoundError, shipped_checkpoint
    from hfl_lite.web import find_onnxruntime_web, write_site

    start = time.perf_counter()
    checkpoint, missing = os.environ.get(CHECKPOINT_ENV), None
    if not checkpoint:
        try:
            checkpoint = shipped_checkpoint()
        except SamplesNotFoundError as err:
            missing = str(err)
    config = write_site(Path(app.outdir) / "_static" / FOLDER, checkpoint, ort_dist=find_onnxruntime_web(app.srcdir))
    if config["runtime_error"]:
        logger.warning(f"hfl_live: the Try it page cannot run HFL-Net: {config['runtime_error']}. Install Node.js 18+ "
                       "and npm, then run `npm ci` in the repository (make book does); the rest of the book is built.")
    if config["model_error"]:
        reason = missing or config["model_error"]
        logger.warning(f"hfl_live: the Try it page has no network: {reason}. Export a checkpoint of this version "
                       f"(train, then `python -m hfl_lite export`) or name one in {CHECKPOINT_ENV}.")
    if config["model"]:
        logger.info(f"hfl_live: exported {config['checkpoint']} to ONNX ({config['model_bytes'] / 1e6:.1f} MB, "
                    f"{config['precision']} weights; ONNX Runtime vs PyTorch: 2D joints "
                    f"{config['onnx_vs_torch']['joints2d']:.1g} px) in {time.perf_counter() - start:.0f} s")


def setup(app):
    app.connect("builder-inited", _write_page_files)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
