"""The folder the Try it page runs from (hfl_lite.web.write_site) and the pages that embed the page."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import hfl_lite.web as web
from hfl_lite import inference
from hfl_lite.geometry.epnp import epnp_ransac

ROOT = Path(__file__).resolve().parents[1]


def test_a_site_without_runtime_or_network_says_what_is_missing(tmp_path, monkeypatch):
    """No onnxruntime-web (Node.js/npm missing) and no checkpoint: the page's own files, the samples
    and config.json are written all the same, and config.json names both problems for the page."""
    monkeypatch.setattr(web, "find_onnxruntime_web", lambda root=None: None)
    config = web.write_site(tmp_path, None)
    assert "Node.js and npm" in config["runtime_error"] and "npm ci" in config["runtime_error"]
    assert config["model"] is None and "no checkpoint" in config["model_error"]
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads(json.dumps(config))
    assert all((tmp_path / name).is_file() for name in web.PAGE_FILES)
    assert not any((tmp_path / name).exists() for name in (*web.ORT_FILES, web.MODEL_FILE))
    assert len(config["samples"]) == web.SAMPLE_COUNT
    assert all((tmp_path / sample["image"]).is_file() and sample["truth"]["verts3d"] for sample in config["samples"])


def test_a_checkpoint_that_does_not_load_is_reported(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    config = web.write_site(tmp_path / "site", broken)
    assert config["model"] is None and str(broken) in config["model_error"]


def test_the_pages_numbers_come_from_the_python():
    config = web.page_config()
    assert config["limits"]["min_box_side_px"] == inference.MIN_BOX_SIDE_PX
    assert config["limits"]["plausible_depth_m"] == list(inference.PLAUSIBLE_DEPTH_M)
    defaults = inspect.signature(epnp_ransac).parameters
    assert {k: defaults[k].default for k in config["ransac"]} == config["ransac"]
    assert config["votes"] == {"rounds": 10, "threshold": 0.5, "min_points": 6, "offset_scale": 10.0}


def test_pages_that_embed_the_page_load_it_from_the_books_static_files():
    """Every page holding the page's element (the Try it page, the end of chapters 10 and 13) loads
    page.mjs (except from a file: web.LOADER_HTML) and page.css from where book/_ext/hfl_live.py
    writes them, and holds the note the reader sees where the module cannot run."""
    pages = {path.name: path.read_text() for path in sorted((ROOT / "book").glob("*.md"))}
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        pages[path.name] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    embedding = {name: text for name, text in pages.items() if 'id="hfl-live"' in text}
    assert set(embedding) >= {"try_it.md", "10_end_to_end.ipynb", "13_browser.ipynb"}
    for name, text in embedding.items():
        assert 'data-base="../_static/hfl_live/"' in text and web.FALLBACK_HTML in text, name
        assert web.LOADER_HTML in text and "page.mjs" not in text.replace(web.LOADER_HTML, ""), name
        assert '<link rel="stylesheet" href="../_static/hfl_live/page.css">' in text, name
