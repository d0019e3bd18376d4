"""Open the built book in headless Chromium with the network off and check what a reader sees.

Every page listed in ``_toc.yml``: every plotly figure draws, math is typeset (no raw TeX), tables
are tables (no paragraph of pipes), outputs carry no stderr, warnings, temporary paths or Colab
set-up cell, every figure has a numbered caption that the text refers to, every link inside the
book resolves, and the page stays light (plotly.js only where a figure needs it).

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
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlparse

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
PAGE_LIMIT_BYTES = 500_000  # HTML of one page; plotly.js and MathJax are separate files
# Chapters whose figures do not have numbered captions yet (their content is being rewritten).
# Empty this set as each one gets its captions; no other exception is allowed.
CAPTIONS_PENDING: set[str] = set()


def book_pages() -> list[Path]:
    """The built page of every document in _toc.yml, root first."""
    return [HTML / p.relative_to(ROOT).with_suffix(".html") for p in book.toc_files()]


def page_id(page: Path) -> str:
    return page.stem


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
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--window-size=1280,1000",
                 *OFFLINE_FLAGS]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def figure_states(driver) -> list[dict]:
    return driver.execute_script(f"""return Array.from({FIGURE_DIVS}).map(e => ({{
        id: e.id, svg: e.querySelectorAll('svg.main-svg').length,
        canvas: e.querySelectorAll('canvas').length, laidOut: !!e._fullLayout,
        text: (e.innerText || '').slice(0, 200)}}))""")


def drawn(state: dict) -> bool:
    return state["laidOut"] and (state["svg"] > 0 or state["canvas"] > 0) and "WebGL is not supported" not in state["text"]


# What the reader sees, gathered once the page has typeset its math. Code (input and output
# blocks) is left out of the prose checks: a backslash or a pipe is fine there.
READER_VIEW_JS = r"""
const done = arguments[arguments.length - 1];
const start = Date.now();
function gather() {
  const article = document.querySelector('article') || document.body;
  const prose = article.cloneNode(true);
  prose.querySelectorAll('pre, code, .highlight, mjx-container, script, style').forEach(e => e.remove());
  const outputs = Array.from(document.querySelectorAll('.cell_output'));
  const figures = Array.from(document.querySelectorAll('.cell_output img, .hfl-plotly')).map(e => {
    const fig = e.closest('figure');
    const cap = fig && fig.querySelector('figcaption');
    return {what: e.tagName === 'IMG' ? 'image ' + (e.getAttribute('src') || '').split('/').pop() : 'plotly figure',
            id: fig ? fig.id : null, number: cap ? (cap.querySelector('.caption-number') || {}).textContent || '' : '',
            caption: cap ? cap.textContent.trim().slice(0, 80) : ''};
  });
  return {
    mathjax: !!(window.MathJax && window.MathJax.startup && window.MathJax.version),
    math: Array.from(document.querySelectorAll('.math')).length,
    untypeset: Array.from(document.querySelectorAll('.math')).filter(e => !e.querySelector('mjx-container'))
                 .map(e => e.textContent.trim().slice(0, 60)),
    prose: prose.textContent,
    visible: document.body.innerText,
    pipeParagraphs: Array.from(article.querySelectorAll('p')).filter(p => !p.closest('pre, code'))
                      .map(p => p.textContent).filter(t => (t.match(/\|/g) || []).length >= 4)
                      .map(t => t.trim().slice(0, 80)),
    stderr: Array.from(document.querySelectorAll('.output.stderr, .stderr')).map(e => e.textContent.trim().slice(0, 120)),
    warnings: outputs.map(e => e.innerText).filter(t => /\b\w*Warning\b/.test(t)).map(t => t.trim().slice(0, 120)),
    figures: figures,
    localLinks: Array.from(document.querySelectorAll('a[href]')).map(a => a.href).filter(h => h.startsWith('file:')),
    scripts: Array.from(document.querySelectorAll('script[src]')).map(s => s.getAttribute('src')),
  };
}
function wait() {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    mj.startup.promise.then(() => done(gather()), () => done(gather()));
  } else if (Date.now() - start > 15000 || !document.querySelector('.math')) {
    done(gather());  // no MathJax came (or no math to typeset): report what is on the page
  } else {
    setTimeout(wait, 200);
  }
}
wait();
"""


_VIEWS: dict[Path, dict] = {}


def reader_view(browser, page: Path) -> dict:
    """The reader's view of ``page``, loaded once per test session."""
    if page not in _VIEWS:
        browser.get(page.as_uri())
        _VIEWS[page] = browser.execute_async_script(READER_VIEW_JS)
    return _VIEWS[page]


def test_book_has_interactive_figures():
    if not HTML.is_dir():
        pytest.skip("the book is not built: run `make book` first")
    expected = chapters_that_show_figures()
    assert expected, "no chapter shows a plotly figure: nothing for this check to check"
    missing = [name for name in sorted(expected)
               if 'class="hfl-plotly"' not in (HTML / "book" / f"{name}.html").read_text()]
    assert not missing, f"these chapters call show() but their built pages hold no figure: {missing}"


def chapters_that_show_figures() -> set[str]:
    names = set()
    for nb in book.toc_notebooks():
        cells = json.loads(nb.read_text())["cells"]
        # a bare show(...) is hfl_lite.viz.show; plt.show() and fig.show() are not
        if any(re.search(r"(?<![\w.])show\(", "".join(c["source"])) for c in cells if c["cell_type"] == "code"):
            names.add(nb.stem)
    return names


@pytest.mark.parametrize("page", book_pages(), ids=page_id)
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


@pytest.mark.parametrize("page", book_pages(), ids=page_id)
def test_math_is_typeset_offline(browser, page):
    view = reader_view(browser, page)
    if view["math"]:
        assert view["mathjax"], f"{page.name}: the page has {view['math']} formulas but MathJax did not load offline"
    assert not view["untypeset"], f"{page.name}: formulas left as TeX: {view['untypeset'][:5]}"
    raw = sorted(set(re.findall(r"\\\(.{0,40}|\\\[.{0,40}|\\begin\{.{0,30}|\$\$.{0,30}|\$[^$\s][^$\n]{0,60}\$", view["prose"])))
    assert not raw, f"{page.name}: raw TeX in the text: {raw[:5]}"


@pytest.mark.parametrize("page", book_pages(), ids=page_id)
def test_tables_render_as_tables(browser, page):
    view = reader_view(browser, page)
    assert not view["pipeParagraphs"], f"{page.name}: tables printed as paragraphs of pipes: {view['pipeParagraphs']}"


@pytest.mark.parametrize("page", book_pages(), ids=page_id)
def test_outputs_are_clean(browser, page):
    view = reader_view(browser, page)
    assert not view["stderr"], f"{page.name}: stderr output blocks: {view['stderr']}"
    assert not view["warnings"], f"{page.name}: warnings in the outputs: {view['warnings']}"
    tmp = sorted(set(re.findall(r"/tmp/\S{0,40}", view["visible"])))
    assert not tmp, f"{page.name}: temporary paths on the page: {tmp}"
    assert book.COLAB_MARKER not in view["visible"], f"{page.name}: the Colab set-up cell shows on the page"


@pytest.mark.parametrize("page", book_pages(), ids=page_id)
def test_every_figure_has_a_numbered_caption_the_text_refers_to(browser, page):
    view = reader_view(browser, page)
    uncaptioned = [f["what"] for f in view["figures"] if not f["number"]]
    targets = {unquote(urlparse(link).fragment) for link in view["localLinks"]
               if Path(unquote(urlparse(link).path)) == page}
    unreferenced = [f"{f['number']}{f['caption']}" for f in view["figures"] if f["number"] and f["id"] not in targets]
    if page.stem in CAPTIONS_PENDING:
        if uncaptioned or unreferenced or not view["figures"]:
            pytest.skip(f"{page.stem}: captions pending (CAPTIONS_PENDING): {len(uncaptioned)} uncaptioned, "
                        f"{len(unreferenced)} unreferenced figures")
        pytest.fail(f"{page.stem} has every figure captioned and referenced: remove it from CAPTIONS_PENDING")
    assert not uncaptioned, f"{page.name}: figures without a numbered caption: {uncaptioned}"
    assert not unreferenced, f"{page.name}: figures the text never refers to: {unreferenced}"


@lru_cache(maxsize=None)
def element_ids(path: Path) -> frozenset[str]:
    return frozenset(re.findall(r'\sid="([^"]+)"', path.read_text(errors="replace")))


@pytest.mark.parametrize("page", book_pages(), ids=page_id)
def test_every_internal_link_resolves(browser, page):
    view = reader_view(browser, page)
    broken = []
    for link in sorted(set(view["localLinks"])):
        parts = urlparse(link)
        target = Path(unquote(parts.path))
        if not target.exists():
            broken.append(f"{link} (no such file)")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in element_ids(target):
            broken.append(f"{link} (no element with this id)")
    assert not broken, f"{page.name}: links that lead nowhere: {broken}"


@pytest.mark.parametrize("page", book_pages(), ids=page_id)
def test_page_weight(browser, page):
    size = page.stat().st_size
    assert size <= PAGE_LIMIT_BYTES, f"{page.name}: {size / 1e3:.0f} kB of HTML, over {PAGE_LIMIT_BYTES / 1e3:.0f} kB"
    view = reader_view(browser, page)
    loads_plotly = any(src.split("?")[0].endswith("plotly.min.js") for src in view["scripts"])
    has_figures = 'class="hfl-plotly"' in page.read_text()
    assert loads_plotly == has_figures, (
        f"{page.name}: loads plotly.js ({loads_plotly}) but holds plotly figures ({has_figures}): "
        "plotly.js belongs only on pages that draw with it")
    remote = [src for src in view["scripts"] if re.match(r"https?://", src)]
    assert not remote, f"{page.name}: scripts from the network: {remote}"
