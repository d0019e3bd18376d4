"""The "Try it" page in headless Chromium, the network off: it loads, runs HFL-Net on two sample
images with onnxruntime-web (WebAssembly), and gives Python's answers (``predict_image``): 2D joints
within 0.5 px, vertices within 1 mm, and (for a trained network) the object pose within 1 degree and
5 mm. A page that cannot run fails these tests.

The page is served from 127.0.0.1 by a server in the test (browsers run WebAssembly modules only over
HTTP); every other route is closed. Two sites: one assembled here from an untrained checkpoint made in
the test session (the weights' values do not matter for the comparison), and the built book's own page
(``make book``), which runs the shipped checkpoint when it loads with this version of the network.
Skipped, with the reason, where Chromium, chromedriver, Node's onnxruntime-web or the built book is
missing.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from hfl_lite.inference import load_model, predict_image
from hfl_lite.web import find_onnxruntime_web, write_site
from hfl_lite.web.browser import chromium_problem, headless_chromium, serve
from web_checks import CONFIG, compare_with_predict_image, shipped_model_or_skip, torch_draws

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "_build" / "html"
READY = """const done = arguments[arguments.length - 1];
if (!window.hflLive) done({error: "the page's module did not run (see the browser's log)"});
else window.hflLive.ready.then(done, (e) => done({error: String(e)}));"""
RUN = """const [index, draws, done] = arguments;
window.hflLive.run(index, {random: {draws}}).then(done, (e) => done({error: String(e)}));"""
STATUS = "const s = document.querySelector('.hfl-live-status'); return s && {text: s.textContent, kind: s.dataset.kind};"


@pytest.fixture(scope="module")
def browser():
    problem = chromium_problem()
    if problem:
        pytest.skip(problem)
    driver = headless_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(lively_checkpoint, tmp_path_factory):
    """The page's folder, with a bare index.html, for an untrained network of this version."""
    if find_onnxruntime_web() is None:
        pytest.skip("onnxruntime-web is not installed: run `npm ci` in the repository (needs Node.js and npm)")
    folder = tmp_path_factory.mktemp("live_site")
    write_site(folder, lively_checkpoint, index_html=True)
    return folder


def open_page(driver, url: str) -> dict:
    driver.get_log("browser")  # drop earlier messages
    driver.get(url)
    info = driver.execute_async_script(READY)
    assert "error" not in info, (f"the page did not start: {info['error']}; status: {driver.execute_script(STATUS)}; "
                                 f"log: {driver.get_log('browser')}")
    return info


def run_samples(driver, model, base_url: str, config: dict, well_posed: bool, trained: bool) -> None:
    """Run the page on its first two samples and compare each with predict_image."""
    for index, sample in enumerate(config["samples"][:2]):
        draws = torch_draws(0)  # predict's RANSAC draws, replayed in the page
        js = driver.execute_async_script(RUN, index, draws)
        assert "error" not in js, f"sample {sample['id']}: {js['error']}"
        from hfl_lite.data.sample import read_image

        image = read_image(Path(config["folder"]) / sample["image"])
        py = predict_image(model, image, sample["hand_box"], sample["obj_box"], torch.tensor(sample["ctrl3d"]),
                           torch.tensor(sample["K"]), generator=torch.Generator().manual_seed(0))
        compare_with_predict_image(js, py, sample["ctrl3d"], model.preset.roi_size, well_posed, trained,
                                   label=f"sample {sample['id']}")
        assert js["ms"]["network"] > 0 and js["ms"]["total"] >= js["ms"]["network"]
    visited = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert visited and all(url.startswith(base_url) or url.startswith("data:") for url in visited), visited
    # JavaScript errors, and files that failed to load (the book's theme logs its own complaints; no favicon)
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and (
        e["source"] == "javascript" or (e["source"] == "network" and "favicon.ico" not in e["message"]))]
    assert not severe, f"the page logged errors: {severe}"


def test_page_gives_pythons_answers(browser, site, lively_checkpoint):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = load_model(lively_checkpoint, "cpu")
    config = {**json.loads((site / "config.json").read_text()), "folder": str(site)}
    with serve(site) as url:
        info = open_page(browser, url + "index.html")
        assert info["samples"] == len(config["samples"]) >= 2 and info["threads"] >= 1
        run_samples(browser, model, url, config, well_posed=True, trained=False)
        drawn = browser.execute_script(
            "const p = document.querySelector('.hfl-live-plot'); const c = document.querySelector('.hfl-live-crop');"
            "return {traces: p.data ? p.data.length : 0, crop: c.width, rows: document.querySelectorAll('.hfl-live-report tr').length}")
        assert drawn["traces"] >= 2 and drawn["crop"] > 0 and drawn["rows"] >= 4, drawn


def test_page_says_why_it_cannot_run(browser, tmp_path):
    """No network to load: the page names the reason instead of failing silently; and from a file://
    URL it says that it must be served."""
    if find_onnxruntime_web() is None:
        pytest.skip("onnxruntime-web is not installed: run `npm ci` in the repository (needs Node.js and npm)")
    config = write_site(tmp_path, None, index_html=True)
    assert config["model"] is None and config["model_error"]
    with serve(tmp_path) as url:
        browser.get(url + "index.html")
        assert "error" in browser.execute_async_script(READY)
        status = browser.execute_script(STATUS)
        assert status["kind"] == "error" and "no checkpoint" in status["text"], status
    browser.get((tmp_path / "index.html").as_uri())
    text = browser.execute_script("return document.getElementById('hfl-live').textContent")
    assert browser.execute_script("return typeof window.hflLive") == "undefined" and "http.server" in text, text


def test_built_book_page_runs_the_shipped_checkpoint(browser):
    """The page as `make book` built it, served as a static host serves it (no isolation headers: one
    thread), running the shipped checkpoint."""
    config_path = BUILT / "_static" / "hfl_live" / "config.json"
    if not config_path.is_file():
        pytest.skip("the book is not built (or was built without book/_ext/hfl_live.py): run `make book` first")
    config = json.loads(config_path.read_text())
    if config["runtime_error"] or config["model_error"]:
        pytest.skip(f"the built page cannot run: {config['runtime_error'] or config['model_error']}")
    model = shipped_model_or_skip()
    with serve(BUILT, isolated=False) as url:
        info = open_page(browser, url + "book/try_it.html")
        assert info["threads"] == 1
        run_samples(browser, model, url, {**config, "folder": str(config_path.parent)}, well_posed=True, trained=True)
