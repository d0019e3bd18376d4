"""Open the built book in headless Chromium with the network off: every plotly figure draws.

Run by `make test` after `make book` (which writes _build/html). Skips, with the reason, when
the book has not been built or Chromium/chromedriver are missing; `.ci/run` installs Debian's
chromium and chromium-driver so CI always runs it.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import book  # noqa: E402  (tools/book.py)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
FIGURE_DIVS = "document.querySelectorAll('.hfl-plotly .plotly-graph-div')"
# Every route off this machine fails fast: the page must need nothing from the network.
OFFLINE_FLAGS = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chapter_pages() -> list[Path]:
    return sorted((HTML / "book").glob("*.html"))


@pytest.fixture(scope="module")
def browser():
    if not HTML.is_dir():
        pytest.skip("the book is not built: run `make book` (make test does) first")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no headless Chromium/chromedriver installed (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader", *OFFLINE_FLAGS]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def figure_states(driver) -> list[dict]:
    return driver.execute_script(f"""return Array.from({FIGURE_DIVS}).map(e => ({{
        id: e.id, svg: e.querySelectorAll('svg.main-svg').length,
        canvas: e.querySelectorAll('canvas').length, laidOut: !!e._fullLayout,
        text: (e.innerText || '').slice(0, 200)}}))""")


def drawn(state: dict) -> bool:
    return state["laidOut"] and (state["svg"] > 0 or state["canvas"] > 0) and "WebGL is not supported" not in state["text"]


def chapters_that_show_figures() -> set[str]:
    names = set()
    for nb in book.toc_notebooks():
        cells = json.loads(nb.read_text())["cells"]
        # a bare show(...) is hfl_lite.viz.show; plt.show() and fig.show() are not
        if any(re.search(r"(?<![\w.])show\(", "".join(c["source"])) for c in cells if c["cell_type"] == "code"):
            names.add(nb.stem)
    return names


def test_book_has_interactive_figures():
    if not HTML.is_dir():
        pytest.skip("the book is not built: run `make book` first")
    expected = chapters_that_show_figures()
    assert expected, "no chapter shows a plotly figure: nothing for this check to check"
    missing = [name for name in sorted(expected)
               if 'class="hfl-plotly"' not in (HTML / "book" / f"{name}.html").read_text()]
    assert not missing, f"these chapters call show() but their built pages hold no figure: {missing}"


@pytest.mark.parametrize("page", chapter_pages(), ids=lambda p: p.name)
def test_every_figure_draws_offline_without_js_errors(browser, page):
    browser.get_log("browser")  # drop messages from earlier pages
    browser.get(page.as_uri())
    if browser.execute_script(f"return {FIGURE_DIVS}.length"):
        assert browser.execute_script("return typeof window.Plotly") == "object", \
            f"{page.name}: plotly.js did not load from _static/"
    deadline = time.time() + 30
    states = figure_states(browser)
    while time.time() < deadline and not all(map(drawn, states)):
        time.sleep(0.5)
        states = figure_states(browser)
    failed = [s for s in states if not drawn(s)]
    assert not failed, f"{page.name}: {len(failed)} of {len(states)} figures did not draw: {failed}"
    logs = browser.get_log("browser")
    js_errors = [e for e in logs if e["level"] == "SEVERE" and e.get("source") == "javascript"]
    local_missing = [e for e in logs if e["level"] == "SEVERE" and e.get("source") == "network"
                     and "file://" in e["message"]]
    assert not js_errors, f"{page.name}: JavaScript errors: {js_errors}"
    assert not local_missing, f"{page.name}: files of the book failed to load: {local_missing}"
