"""HFL-Net in the reader's browser: the files of the book's "Try it" page.

The page runs the ONNX graph of a checkpoint (:mod:`hfl_lite.export`) with onnxruntime-web's
WebAssembly backend, and the steps around it in JavaScript. This folder holds

* ``pipeline.mjs``: the JavaScript port of the Python around the graph (the crop, the input
  checks, the hand's translation, the votes, RANSAC EPnP), each function naming the Python one it
  follows; ``tests/test_web_pipeline.py`` runs both on the same inputs;
* ``page.mjs`` and ``page.css``: the page itself (pick a sample or drop an image, draw the boxes,
  run, see the 2D joints and the object's box over the image and the hand and object in 3D, with
  the error against the ground truth and the time each step took).

:func:`write_site` assembles a folder the page runs from: those files, onnxruntime-web's module and
WebAssembly binary (:data:`ORT_FILES`, from the ``node_modules`` folder that ``npm ci`` fills from
the repository's ``package-lock.json``), the ONNX file, a few frames of the shipped HO3D evaluation
split (frames no checkpoint trained on) as PNG images, and ``config.json``
(:func:`page_config`): the numbers of the Python the JavaScript needs (input limits, crop factor,
voting and RANSAC settings), the hand's faces, the objects' control points and each sample's
ground truth. The book build (``book/_ext/hfl_live.py``) writes it into the built book's static
files; ``python -m hfl_lite bench`` (section ``browser``) and the tests into temporary folders.
Nothing is fetched from elsewhere: the page works offline once served.

WebAssembly and ES modules are not allowed from ``file://`` pages: serve the folder over HTTP (a
static host such as GitHub Pages, or ``python -m http.server`` locally); the page says so when
opened from a file. Several WebAssembly threads need a cross-origin isolated page (the
``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy: require-corp``
headers); elsewhere onnxruntime-web runs on one thread.
"""
from __future__ import annotations

import inspect
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

__all__ = ["FALLBACK_HTML", "LOADER_HTML", "MODEL_FILE", "ORT_FILES", "PAGE_FILES", "SAMPLE_COUNT", "find_onnxruntime_web", "page_config",
           "sample_frames", "write_site"]

HERE = Path(__file__).resolve().parent
ORT_FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")
"""What the page needs of onnxruntime-web (``node_modules/onnxruntime-web/dist``): the ES module
with its WebAssembly glue bundled in, and the SIMD + threads binary."""
PAGE_FILES = ("pipeline.mjs", "page.mjs", "page.css")
MODEL_FILE = "hfl_lite.onnx"
SAMPLE_COUNT = 4
FALLBACK_HTML = ("<p><em>Starting HFL-Net in your browser… If this message stays, JavaScript is off, or the page "
                 "was opened from a file: browsers run its WebAssembly only from a web server (from a local build: "
                 "<code>python -m http.server -d _build/html</code> in the repository, then open "
                 "<code>http://localhost:8000/book/try_it.html</code>).</em></p>")
"""What the page's element holds until ``page.mjs`` replaces it, and keeps where the module cannot run."""
LOADER_HTML = ('<script>if (location.protocol !== "file:") { const s = document.createElement("script"); '
               's.type = "module"; s.src = "../_static/hfl_live/page.mjs"; document.body.appendChild(s); }</script>')
"""How the book's pages start ``page.mjs``: not on a page opened from a file, where the browser would
refuse the module with an error in its console (the book's browser test opens pages so); there
:data:`FALLBACK_HTML` stays and says how to serve the book."""
INDEX_HTML = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HFL-Net in the browser</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="page.css"><script src="plotly.min.js"></script></head>
<body><div id="hfl-live" data-base="./">{FALLBACK_HTML}</div><script type="module" src="page.mjs"></script></body></html>
"""


def find_onnxruntime_web(root: str | Path | None = None) -> Path | None:
    """``node_modules/onnxruntime-web/dist`` of the checkout ``root`` (default: the one holding this
    package) when it holds :data:`ORT_FILES`, else None (Node/npm missing, or ``npm ci`` not run)."""
    root = Path(root) if root is not None else HERE.parents[1]
    dist = root / "node_modules" / "onnxruntime-web" / "dist"
    return dist if all((dist / name).is_file() for name in ORT_FILES) else None


def _defaults(function) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _floats(x, digits: int | None = None):
    """A tensor or array as nested lists of Python floats (rounded to ``digits`` decimals)."""
    values = np.asarray(x.detach().cpu().double() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    return (values if digits is None else values.round(digits)).tolist()


def sample_frames(root: str | Path, count: int = SAMPLE_COUNT) -> list[tuple[dict, np.ndarray]]:
    """``count`` frames of the HO3D-layout evaluation split in ``root`` (the first frame of each
    sequence, then the next ones in order), read by :class:`hfl_lite.data.HO3D` so that the image,
    ``K`` and the boxes are the loader's (:func:`hfl_lite.data.sample.frame_boxes`).

    Returns ``(entry, image [H,W,3] uint8 RGB)`` pairs; ``entry`` holds the sample's id, size,
    ``K``, boxes (image pixels), object name and control points, and its ground truth in the
    camera frame (metres): ``joints3d``, ``verts3d``, ``joints2d`` (pixels), ``obj_rot``,
    ``obj_trans``.
    """
    from hfl_lite.data import HO3D
    from hfl_lite.data.sample import frame_boxes
    from hfl_lite.geometry.camera import project_points

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in hand announces itself
        data = HO3D(root, "evaluation")
        sequences: dict[str, list[int]] = {}
        for index, frame_id in enumerate(data.ids):
            sequences.setdefault(frame_id.split("/")[0], []).append(index)
        order = [i for group in zip(*sequences.values()) for i in group]
        order += [i for i in range(len(data.ids)) if i not in order]
        out = []
        for index in order[:count]:
            frame = data.read_frame(index)
            hand_box, obj_box = frame_boxes(frame)
            entry = {
                "id": frame.sample_id, "width": frame.image.shape[1], "height": frame.image.shape[0],
                "K": _floats(frame.K), "hand_box": _floats(hand_box), "obj_box": _floats(obj_box),
                "object": frame.obj_name, "ctrl3d": _floats(frame.obj_ctrl3d),
                "truth": {"obj_rot": _floats(frame.obj_rot, 9), "obj_trans": _floats(frame.obj_trans, 9)},
            }
            if frame.has_hand:
                joints2d = frame.joints2d if frame.joints2d is not None else project_points(frame.joints3d, frame.K)
                entry["truth"].update(joints3d=_floats(frame.joints3d, 7), verts3d=_floats(frame.verts3d, 7),
                                      joints2d=_floats(joints2d, 4))
            out.append((entry, frame.image))
    return out


def page_config(model=None) -> dict[str, Any]:
    """The numbers the page's JavaScript takes from the Python (one source for both), for the
    network ``model`` (an :class:`~hfl_lite.model.HFLNet`; None: the cpu preset's sizes, no faces).

    Keys: ``image_size``, ``roi_size``, ``crop_enlarge``; ``limits`` (of
    :func:`hfl_lite.inference.check_request` and :func:`~hfl_lite.inference.implausible`);
    ``votes`` and ``ransac`` (the defaults :func:`hfl_lite.inference.predict` runs
    :func:`~hfl_lite.geometry.voting.solve_pose_from_votes` and
    :func:`~hfl_lite.geometry.epnp.epnp_ransac` with); ``skeleton_parents``, ``box_edges``,
    ``hand_faces``; ``objects`` (control points of the package's objects, for images of one's own).
    """
    from hfl_lite import inference
    from hfl_lite.data.crop import CROP_ENLARGE
    from hfl_lite.data.formats import OBJECT_NAMES
    from hfl_lite.geometry.control_points import BOX_EDGES
    from hfl_lite.geometry.epnp import epnp_ransac
    from hfl_lite.geometry.voting import OFFSET_SCALE, solve_pose_from_votes
    from hfl_lite.mano import SKELETON_PARENTS
    from hfl_lite.presets import get_preset
    from hfl_lite.synth.objects import control_points, object_diameter

    preset = model.preset if model is not None else get_preset("cpu")
    votes, ransac = _defaults(solve_pose_from_votes), _defaults(epnp_ransac)
    return {
        "preset": preset.name, "image_size": preset.image_size, "roi_size": preset.roi_size,
        "crop_enlarge": CROP_ENLARGE,
        "limits": {"min_image_side_px": inference.MIN_IMAGE_SIDE_PX, "min_box_side_px": inference.MIN_BOX_SIDE_PX,
                   "min_box_inside": inference.MIN_BOX_INSIDE, "focal_range": list(inference.FOCAL_RANGE),
                   "plausible_depth_m": list(inference.PLAUSIBLE_DEPTH_M)},
        "votes": {"rounds": votes["rounds"], "threshold": votes["threshold"], "min_points": votes["min_points"],
                  "offset_scale": OFFSET_SCALE},
        "ransac": {key: ransac[key] for key in ("iterations", "threshold_px", "confidence", "sample_size", "chunk",
                                                "refit_rounds")},
        "skeleton_parents": list(SKELETON_PARENTS), "box_edges": [list(e) for e in BOX_EDGES],
        "hand_faces": (model.hand_decoder.mano.faces.cpu().tolist() if model is not None else None),
        "objects": {name: {"ctrl3d": _floats(control_points(name), 7), "diameter": round(object_diameter(name), 6)}
                    for name in OBJECT_NAMES},
    }


def write_site(dest: str | Path, checkpoint: str | Path | None, samples_root: str | Path | None = None,
               ort_dist: Path | None = None, precision: str = "fp16", index_html: bool = False,
               model=None) -> dict[str, Any]:
    """Write the page's folder ``dest`` (created; files of the same names replaced).

    checkpoint: the checkpoint to export (or pass a built ``model`` instead); samples_root: the
    HO3D-layout folder the sample frames come from (default ``samples_root()/ho3d``); ort_dist:
    onnxruntime-web's ``dist`` folder (default :func:`find_onnxruntime_web`); index_html: also write
    a bare ``index.html`` that shows the page (with ``plotly.min.js``), for the benchmark and the
    tests. What cannot be done is not an error: it is recorded, and the page explains it.

    Returns the ``config.json`` written: :func:`page_config` plus ``model`` (the file name or None),
    ``model_error`` and ``runtime_error`` (None or what is missing and how to get it), ``runtime``
    (onnxruntime-web's version), ``checkpoint``, ``precision``, ``model_bytes``, ``onnx_vs_torch``
    (:func:`hfl_lite.export.compare_with_torch`) and ``samples``.
    """
    from hfl_lite.atomic import atomic_file
    from hfl_lite.errors import EXPECTED_ERRORS
    from hfl_lite.export import export_onnx
    from hfl_lite.samples import samples_root as default_samples

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    status: dict[str, Any] = {"model": None, "model_error": None, "runtime_error": None, "runtime": None,
                              "checkpoint": None if checkpoint is None else Path(checkpoint).name}
    ort_dist = ort_dist or find_onnxruntime_web()
    if ort_dist is None:
        status["runtime_error"] = ("onnxruntime-web is not installed: the page needs Node.js and npm at build time "
                                   "(`npm ci` in the repository, which `make book` runs)")
    else:
        for name in ORT_FILES:
            shutil.copyfile(ort_dist / name, dest / name)
        status["runtime"] = json.loads((ort_dist.parent / "package.json").read_text())["version"]
    for name in PAGE_FILES:
        shutil.copyfile(HERE / name, dest / name)
    if model is None and checkpoint is not None:
        from hfl_lite.inference import load_model

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model, _ = load_model(checkpoint, "cpu")
        except EXPECTED_ERRORS as err:
            status["model_error"] = f"the checkpoint could not be loaded: {err}"
    if model is not None:
        data, differences = export_onnx(model, precision)
        with atomic_file(dest / MODEL_FILE) as f:
            f.write(data)
        status.update(model=MODEL_FILE, precision=precision, model_bytes=len(data), onnx_vs_torch=differences)
    elif status["model_error"] is None:
        status["model_error"] = "no checkpoint was given to export"
    samples_dir = dest / "samples"
    samples_dir.mkdir(exist_ok=True)
    entries = []
    for entry, image in sample_frames(Path(samples_root) if samples_root else default_samples() / "ho3d"):
        name = entry["id"].replace("/", "_") + ".png"
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise OSError(f"could not encode sample {entry['id']} as PNG")
        (samples_dir / name).write_bytes(png.tobytes())
        entries.append({**entry, "image": f"samples/{name}"})
    config = {**page_config(model), **status, "samples": entries}
    with atomic_file(dest / "config.json", "w") as f:
        json.dump(config, f, separators=(",", ":"))
    if index_html:
        import plotly

        shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", dest / "plotly.min.js")
        (dest / "index.html").write_text(INDEX_HTML)
    return config
