"""The page in a real browser, on this machine only: a loopback HTTP server and headless Chromium.

Used by ``python -m hfl_lite bench`` (section ``browser``) and the tests. :func:`serve` serves a
folder on ``127.0.0.1`` with the headers that make the page cross-origin isolated (so that
onnxruntime-web may start several WebAssembly threads) and the MIME types ES modules and
WebAssembly need. :func:`headless_chromium` starts Chromium with every route off the machine
closed (loopback excepted): a page that needs the network fails instead of fetching.
"""
from __future__ import annotations

import contextlib
import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["OFFLINE_FLAGS", "chromium_problem", "headless_chromium", "serve"]

# Every route off this machine fails fast; loopback stays open (Chromium's implicit proxy bypass).
OFFLINE_FLAGS = ("--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run")
HEADLESS_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader")


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript",
                      ".wasm": "application/wasm", ".onnx": "application/octet-stream", ".json": "application/json"}
    isolated = True

    def end_headers(self):
        if self.isolated:  # cross-origin isolation: SharedArrayBuffer, hence WebAssembly threads
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args):  # quiet
        pass


@contextlib.contextmanager
def serve(folder: str | Path, isolated: bool = True):
    """Serve ``folder`` on ``127.0.0.1`` (a free port) in a background thread while the block runs;
    yields the base URL (ending in ``/``). ``isolated``: send the cross-origin isolation headers."""
    handler = functools.partial(type("Handler", (_Handler,), {"isolated": isolated}), directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def chromium_problem() -> str | None:
    """Why headless Chromium cannot run here (None when it can): the browser, its driver or selenium missing."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")):
        return "no Chromium installed (Debian: apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "no chromedriver installed (Debian: apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium; the test extra has it)"
    return None


def headless_chromium(width: int = 1400, height: int = 1100):
    """A selenium driver of headless Chromium with the network off (:data:`OFFLINE_FLAGS`) and the
    browser console logged; quit it when done. Raises ``RuntimeError`` with :func:`chromium_problem`'s
    reason when it cannot start."""
    problem = chromium_problem()
    if problem:
        raise RuntimeError(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    for flag in (*HEADLESS_FLAGS, *OFFLINE_FLAGS):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_script_timeout(600)
    return driver
