"""The ``browser`` section: the Try it page's time per image next to the Python CPU path.

One run, side by side: ``predict_image`` in PyTorch (this process's threads), the same ONNX graph in
ONNX Runtime for Python (one thread), and the page in headless Chromium with onnxruntime-web's
WebAssembly backend on one thread and on several (the page served with cross-origin isolation, as
WebAssembly threads need). Each row gives the milliseconds per image of the network alone and of the
whole image-to-pose path (crop, network, translation, votes and RANSAC EPnP), and the ratio of the
browser's time to PyTorch's. The network is the shipped checkpoint when it loads with this version
(RANSAC's work depends on how confident the votes are), else an untrained one, which the row says.

Skipped, with the reason as its record, where Chromium, chromedriver, selenium or onnxruntime-web
(``npm ci`` in a checkout) is missing, e.g. when hfl_lite is installed from a wheel.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from .settings import Settings, record

__all__ = ["bench_browser"]

READY = "const done = arguments[arguments.length - 1]; window.hflLive.ready.then(done, (e) => done({error: String(e)}));"
TIMES = """const [index, repeats, done] = arguments;
(async () => { const out = []; for (let i = 0; i < repeats; i++) out.push((await window.hflLive.run(index)).ms); return out; })()
  .then(done, (e) => done({error: String(e)}));"""


def _network_for_bench():
    """``(model, name)``: the shipped checkpoint's network, or an untrained one where it does not load."""
    from hfl_lite.errors import EXPECTED_ERRORS
    from hfl_lite.inference import load_model
    from hfl_lite.model import build_model
    from hfl_lite.samples import SamplesNotFoundError, shipped_checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return load_model(shipped_checkpoint(), "cpu")[0], "shipped checkpoint"
        except (SamplesNotFoundError, *EXPECTED_ERRORS):
            torch.manual_seed(0)
            return build_model("cpu", pretrained=False).eval(), "untrained network (the shipped checkpoint does not load)"


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def bench_browser(s: Settings, context: dict) -> list[dict]:
    """Time per image of the page in headless Chromium (1 and several WebAssembly threads) against
    ``predict_image`` in PyTorch and the graph in ONNX Runtime for Python (see the module docstring)."""
    from hfl_lite.data.augment import AugmentParams, apply_photometric
    from hfl_lite.data.sample import read_image
    from hfl_lite.export import onnx_session, run_onnx
    from hfl_lite.inference import crop_request, predict_image
    from hfl_lite.web import MODEL_FILE, find_onnxruntime_web, write_site
    from hfl_lite.web.browser import chromium_problem, headless_chromium, serve

    root = Path(s.book_root) if s.book_root else None
    ort_dist = find_onnxruntime_web(root)
    problem = chromium_problem() or (None if ort_dist else "onnxruntime-web is not installed (run `npm ci` in a "
                                     "checkout of the repository; needs Node.js and npm)")
    if problem:
        return [record("browser", "skipped", "skipped", problem, skipped=problem)]
    model, which = _network_for_bench()
    threads = [1] if s.tiny else [1, max(2, min(4, os.cpu_count() or 1))]
    with tempfile.TemporaryDirectory(prefix="hfl_bench_browser_") as folder:
        config = write_site(folder, None, ort_dist=ort_dist, model=model, index_html=True)
        sample = config["samples"][0]
        image = read_image(Path(folder) / sample["image"])
        ctrl3d, K = torch.tensor(sample["ctrl3d"]), torch.tensor(sample["K"])

        def python_path():
            predict_image(model, image, sample["hand_box"], sample["obj_box"], ctrl3d, K,
                          generator=torch.Generator().manual_seed(0))

        crop, hand, obj = crop_request(K, torch.tensor(sample["hand_box"]), torch.tensor(sample["obj_box"]),
                                       model.preset.image_size)
        inputs = (apply_photometric(crop.warp_image(image), AugmentParams())[None], hand.float()[None], obj.float()[None])
        session = onnx_session(Path(folder) / MODEL_FILE, threads=1)

        def torch_network():
            with torch.no_grad():
                model(*inputs)

        torch_threads = torch.get_num_threads()
        py_total, py_net = _median_ms(python_path, s.repeats), _median_ms(torch_network, s.repeats)
        ort_net = _median_ms(lambda: run_onnx(session, *inputs), s.repeats)
        rows = [record("browser", f"PyTorch, {torch_threads} thread(s)", f"{py_total:,.1f} ms/image",
                       f"network {py_net:,.1f} ms; {which}", engine="torch", threads=torch_threads,
                       ms_per_image=py_total, network_ms=py_net),
                record("browser", "ONNX Runtime (Python), 1 thread", f"{ort_net:,.1f} ms network",
                       f"{ort_net / py_net:.2f}x PyTorch's network time", engine="onnxruntime", threads=1,
                       network_ms=ort_net, ratio_to_torch=ort_net / py_net)]
        with serve(folder) as url:
            driver = headless_chromium()
            try:
                for n in threads:
                    driver.get(f"{url}index.html?threads={n}")
                    info = driver.execute_async_script(READY)
                    if "error" in info:
                        raise RuntimeError(f"the page did not start: {info['error']}")
                    driver.execute_async_script(TIMES, 0, 1)  # warm-up: the first run compiles WebAssembly kernels
                    times = driver.execute_async_script(TIMES, 0, max(1, s.repeats))
                    if isinstance(times, dict):
                        raise RuntimeError(f"the page failed: {times['error']}")
                    total = statistics.median(t["total"] for t in times)
                    net = statistics.median(t["network"] for t in times)
                    rows.append(record(
                        "browser", f"Chromium, WebAssembly, {info['threads']} thread(s)", f"{total:,.1f} ms/image",
                        f"network {net:,.1f} ms; {total / py_total:.2f}x PyTorch's time per image, network "
                        f"{net / py_net:.2f}x", engine="onnxruntime-web", threads=info["threads"], ms_per_image=total,
                        network_ms=net, ratio_to_torch=total / py_total, network_ratio_to_torch=net / py_net))
            finally:
                driver.quit()
    return rows
