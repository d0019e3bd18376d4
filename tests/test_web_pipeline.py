"""The page's JavaScript (hfl_lite/web/pipeline.mjs) against the Python it ports, run under Node.

Each function gets the inputs of its Python original and must give the same numbers: the crop and
its boxes, the crop's pixels (against OpenCV's warpAffine), the input checks, the hand's
translation, the votes, EPnP and RANSAC EPnP; then the whole of ``predict_image`` with the ONNX
graph run by onnxruntime-web (the page's runtime) against the PyTorch network. Skipped, with the
reason, where Node (or onnxruntime-web, for the last test) is missing.
"""
from __future__ import annotations

import base64
import importlib
import json
import math
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hfl_lite.data.augment import AugmentParams, apply_photometric
from hfl_lite.geometry import epnp, epnp_ransac, random_pnp_problems, relative_angle, solve_pose_from_votes
from hfl_lite.geometry.camera import make_intrinsics, project_points, transform_points
from hfl_lite.geometry.voting import decode_votes, offset_targets, vote_topk
from hfl_lite.inference import check_request, crop_request, estimate_hand_translation, predict_image
from hfl_lite.errors import UserError
from hfl_lite.web import find_onnxruntime_web, page_config, sample_frames
from web_checks import compare_with_predict_image, shipped_model_or_skip, torch_draws

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "node_pipeline.mjs"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the page's JavaScript cannot run "
                                                    "(install Node.js 18+ to test it)")
CONFIG = page_config()


def run_node(calls: list[dict], images: dict | None = None, **extra) -> list:
    """Results of ``calls`` (``{"fn", "args"}``) of pipeline.mjs, run by tests/node_pipeline.mjs."""
    payload = {"calls": calls, "images": images or {}, **extra}
    done = subprocess.run([NODE, str(HARNESS)], input=json.dumps(payload), capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["results"]


def rgba_payload(image: np.ndarray) -> dict:
    """An RGB image [H,W,3] uint8 as the page holds it (ImageData: RGBA bytes)."""
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    return {"rgba_base64": base64.b64encode(rgba.tobytes()).decode(), "width": image.shape[1], "height": image.shape[0]}


def random_boxes(rng: np.random.Generator, width: int, height: int) -> tuple[list[float], list[float]]:
    def box():
        w, h = rng.uniform(20, 260, 2)
        x, y = rng.uniform(-0.2 * w, width - 0.8 * w), rng.uniform(-0.2 * h, height - 0.8 * h)
        return [x, y, x + w, y + h]
    return box(), box()


@needs_node
def test_crop_request_is_the_same_in_javascript():
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(20):
        K = make_intrinsics(*rng.uniform(300, 900, 2), *rng.uniform(200, 400, 2), dtype=torch.float64)
        hand, obj = random_boxes(rng, 640, 480)
        cases.append((K, hand, obj, int(rng.choice([128, 256]))))
    results = run_node([{"fn": "cropRequest", "args": [K.tolist(), hand, obj, size, CONFIG["crop_enlarge"]]}
                        for K, hand, obj, size in cases])
    for (K, hand, obj, size), js in zip(cases, results):
        crop, crop_hand, crop_obj = crop_request(K, torch.tensor(hand), torch.tensor(obj), size)
        np.testing.assert_allclose(js["A"], crop.A.numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(js["K"], crop.K.numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(js["handBox"], crop_hand.numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(js["objBox"], crop_obj.numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(js["Ainv"], torch.linalg.inv(crop.A).numpy(), rtol=0, atol=1e-9)


@needs_node
def test_the_crops_pixels_match_opencvs_warp():
    """Including crops that reach over the image's border (zeros there, as warpAffine's border)."""
    entry, image = sample_frames(ROOT / "data_samples" / "ho3d", count=1)[0]
    K = torch.tensor(entry["K"], dtype=torch.float64)
    boxes = [(entry["hand_box"], entry["obj_box"]), ([-40.0, -30.0, 60.0, 90.0], [10.0, 20.0, 80.0, 70.0]),
             ([560.0, 400.0, 700.0, 520.0], [600.0, 380.0, 650.0, 470.0]), ([100.0, 50.0, 540.0, 460.0], [200, 100, 400, 300])]
    crops = [crop_request(K, torch.tensor(h, dtype=torch.float64), torch.tensor(o, dtype=torch.float64), 128)[0]
             for h, o in boxes]
    results = run_node([{"fn": "warpCrop", "args": [{"image": "frame"}, torch.linalg.inv(c.A).tolist(), 128]} for c in crops],
                       {"frame": rgba_payload(image)})
    for crop, js in zip(crops, results):
        expected = apply_photometric(crop.warp_image(image), AugmentParams()).numpy().ravel()
        diff = np.abs(np.asarray(js, dtype=np.float32) - expected) * 255
        # OpenCV rounds exact halves to even where this rounds them up: one grey level, rarely
        assert diff.max() <= 1.0 + 1e-3 and (diff > 0.5).mean() < 1e-3, (diff.max(), (diff > 0.5).mean())


@needs_node
def test_input_checks_refuse_what_check_request_refuses():
    K = [[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]]
    good = [100.0, 100.0, 200.0, 220.0]
    cases = [  # (width, height, hand box, object box, K, the argument Python names or None)
        (640, 480, good, [150.0, 120.0, 260.0, 230.0], K, None),
        (640, 480, good, [150.0, 120.0, 260.0, 230.0], None, None),
        (20, 480, good, good, None, "image"),
        (640, 480, [100.0, 100.0, 104.0, 200.0], good, None, "hand box"),
        (640, 480, good, [300.0, 300.0, 200.0, 400.0], None, "object box"),
        (640, 480, [-200.0, 100.0, 20.0, 200.0], good, None, "hand box"),
        (640, 480, good, [700.0, 100.0, 800.0, 200.0], None, "object box"),
        (640, 480, good, good, [[5.0, 0, 320], [0, 5.0, 240], [0, 0, 1]], "K"),
        (640, 480, good, good, [[600.0, 0, 900], [0, 600.0, 240], [0, 0, 1]], "K"),
    ]
    names = {"--hand-box": "hand box", "--obj-box": "object box", "--K": "K", "the image": "image"}
    results = run_node([{"fn": "checkRequest", "args": [w, h, hb, ob, k, CONFIG["limits"]]}
                        for w, h, hb, ob, k, _ in cases])
    for (w, h, hb, ob, k, culprit), js in zip(cases, results):
        try:
            check_request(w, h, hb, ob, None if k is None else torch.tensor(k))
            python = None
        except UserError as err:
            python = next(name for key, name in names.items() if str(err).startswith(key))
        assert python == culprit and (js and js["argument"]) == culprit, (culprit, python, js)


@needs_node
def test_hand_translation_is_the_same_in_javascript():
    g = torch.Generator().manual_seed(1)
    K = make_intrinsics(610.0, 605.0, 318.0, 242.0, dtype=torch.float64)
    joints = (torch.rand(6, 21, 3, generator=g, dtype=torch.float64) - 0.5) * 0.15
    t_true = torch.tensor([0.05, -0.03, 0.6], dtype=torch.float64) + 0.1 * torch.rand(6, 3, generator=g, dtype=torch.float64)
    joints2d = project_points(joints + t_true[:, None], K) + 2.0 * torch.randn(6, 21, 2, generator=g, dtype=torch.float64)
    expected = estimate_hand_translation(joints2d, joints, K.expand(6, 3, 3))
    results = run_node([{"fn": "estimateHandTranslation", "args": [p.tolist(), X.tolist(), K.tolist()]}
                        for p, X in zip(joints2d, joints)])
    np.testing.assert_allclose(results, expected.numpy(), rtol=0, atol=1e-9)


@needs_node
def test_votes_are_decoded_and_picked_as_in_python():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 21, 16, 16, generator=g).double()
    logits[0, 3] = 1e-9 * (1 + torch.rand(16, 16, generator=g, dtype=torch.float64))  # an untrained network's: just above 0.5
    offsets = torch.randn(1, 21, 2, 16, 16, generator=g).double()
    box = torch.tensor([[20.0, 30.0, 100.0, 110.0]], dtype=torch.float64)
    points, conf = decode_votes(logits, offsets, box)
    votes = vote_topk(logits, offsets, box)
    decoded, picked = run_node([
        {"fn": "decodeVotes", "args": [logits.flatten().tolist(), offsets.flatten().tolist(), box[0].tolist(), 16,
                                       CONFIG["votes"]["offset_scale"]]},
        {"fn": "voteTopk", "args": [points.flatten().tolist(), conf.flatten().tolist(), 21, 256, 10, 0.5]}])
    np.testing.assert_allclose(decoded["points"], points.flatten().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(decoded["conf"], conf.flatten().numpy(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(picked["points"], votes.points_2d[0].numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(picked["weights"], votes.weights[0].numpy(), rtol=0, atol=1e-15)
    assert picked["index"] == votes.point_index[0].tolist()
    assert sum(w > 0 for w in picked["weights"][3::21]) == 10  # the near-zero logits count, as in Python


def _svd_rotation(A: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(A)
    return U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt


@needs_node
def test_epnp_constants_are_pythons():
    """The JavaScript's copies of the solver's step counts, thresholds and index tables."""
    solver = importlib.import_module("hfl_lite.geometry.epnp")
    (js,) = run_node([{"fn": "EPNP_CONSTANTS"}])
    assert js == {"minSpreadRatio": solver.MIN_SPREAD_RATIO, "scorePolarSteps": solver._SCORE_POLAR_STEPS,
                  "polarSteps": solver._POLAR_STEPS, "sharedSteps": solver._SHARED_STEPS,
                  "sharedStepsMinimal": solver._SHARED_STEPS_MINIMAL, "gaussNewtonIters": solver._GAUSS_NEWTON_ITERS,
                  "metric": [list(row) for row in solver._METRIC], "products": list(solver._PRODUCTS),
                  "systems": [list(s) for s in solver._SYSTEMS]}


@needs_node
def test_polar_rotation_and_smallest_eigenvector():
    """EPnP's final rotation (scaled Newton, the exact flip for a reflection) against the SVD solution,
    reflections and condition numbers up to 1e4 included; the closed-form smallest eigenvector against
    numpy's eigh, a repeated largest eigenvalue included."""
    rng = np.random.default_rng(3)
    rotation = _svd_rotation(rng.normal(size=(3, 3)))
    mats = [rng.normal(size=(3, 3)) for _ in range(8)] + [np.diag([3.0, 2.0, -1.0]),
                                                           rotation @ np.diag([2.0, 1e-4, -1.0]) @ rotation.T]
    assert sum(np.linalg.det(m) < 0 for m in mats) >= 3  # reflections, which Newton's iteration alone gives
    sym = [m @ m.T + np.diag(rng.uniform(0, 1, 3)) for m in (rng.normal(size=(3, 3)) for _ in range(6))]
    sym.append(rotation @ np.diag([0.5, 3.0, 3.0]) @ rotation.T)
    results = run_node([{"fn": "polarRotation", "args": [m.tolist()]} for m in mats]
                       + [{"fn": "smallestEigenvector", "args": [s.tolist()]} for s in sym])
    for m, js in zip(mats, results):
        np.testing.assert_allclose(js, _svd_rotation(m), rtol=0, atol=1e-9)
    for s, js in zip(sym, results[len(mats):]):
        vector = np.linalg.eigh(s)[1][:, 0]
        assert abs(np.dot(js, vector)) == pytest.approx(1.0, abs=1e-10)


def _thin_problems(batch: int, noise_px: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """PnP problems whose object points are 30 times thinner along z than across: with noise, some of
    EPnP's candidates are the mirror images of the object (its thinnest axis flipped)."""
    p = random_pnp_problems(batch, 30, generator=generator)
    p["points_3d"][..., 2] *= 1 / 30
    p["points_2d"] = project_points(transform_points(p["points_3d"], p["R"], p["t"]), p["K"]) \
        + noise_px * torch.randn(batch, 30, 2, generator=generator, dtype=torch.float64)
    return p


def _run_epnp(problems: list[tuple], options: dict | None = None) -> list[dict]:
    """pipeline.mjs's epnp on every problem of batches ``(points_3d, points_2d, K, weights or None)``."""
    return run_node([{"fn": "epnp", "args": [X.tolist(), x.tolist(), K.tolist(), None if w is None else w.tolist()]
                      + ([options] if options else [])}
                     for X3, x2, K3, w3 in problems
                     for X, x, K, w in zip(X3, x2, K3, [None] * len(X3) if w3 is None else w3)])


@needs_node
def test_epnp_is_the_same_in_javascript():
    """The same poses to 1e-8 (the JavaScript takes the Python's steps; only rounding differs) on
    weighted 30-point problems with 1 px noise (one with three usable points, one planar: both
    unsolvable), thin point sets (mirror-image candidates) and sets of 5 and 6 points."""
    g = torch.Generator().manual_seed(4)
    p = random_pnp_problems(12, 30, noise_px=1.0, generator=g)
    w = torch.rand(12, 30, generator=g, dtype=torch.float64)
    w[3, :27] = 0  # three usable points: unsolvable
    p["points_3d"][5, :, 2] = 0.0  # planar object points: degenerate
    batches = [(p["points_3d"], p["points_2d"], p["K"], w)] + [
        (q["points_3d"], q["points_2d"], q["K"], None)
        for q in (_thin_problems(8, 1.0, g), random_pnp_problems(8, 5, noise_px=1.0, generator=g),
                  random_pnp_problems(8, 6, noise_px=1.0, generator=g))]
    expected = [epnp(X, x, K, ww, return_valid=True) for X, x, K, ww in batches]
    R, t, valid = (torch.cat(parts) for parts in zip(*expected))
    results = _run_epnp(batches)
    assert [r["valid"] for r in results] == valid.tolist() and (~valid).nonzero().flatten().tolist() == [3, 5]
    np.testing.assert_allclose([r["R"] for r in results], R.numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose([r["t"] for r in results], t.numpy(), rtol=0, atol=1e-9)


@needs_node
def test_ransac_hypotheses_are_the_same_in_javascript():
    """RANSAC's hypotheses (EPnP on five points from the two-kernel-vector start with one Gauss-Newton
    step, epnp._epnp(..., candidates=(2,))) on clean, noisy and outlier-ridden five-point sets. Noisy
    minimal sets are ill-conditioned (rounding differences grow to about 1e-7): 1e-6."""
    from hfl_lite.geometry.epnp import _epnp

    g = torch.Generator().manual_seed(7)
    batches = [(q["points_3d"], q["points_2d"], q["K"], None)
               for q in (random_pnp_problems(20, 5, generator=g), random_pnp_problems(20, 5, noise_px=1.0, generator=g),
                         random_pnp_problems(20, 5, noise_px=1.0, outlier_ratio=0.4, generator=g))]
    R, t, valid = (torch.cat(parts) for parts in zip(*[_epnp(X, x, K, None, 4, 1, 0, candidates=(2,))
                                                        for X, x, K, _ in batches]))
    results = _run_epnp(batches, {"gaussNewtonIters": 1, "candidates": [2]})
    assert [r["valid"] for r in results] == valid.tolist()
    np.testing.assert_allclose([r["R"] for r in results[:20]], R[:20].numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose([r["R"] for r in results], R.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose([r["t"] for r in results], t.numpy(), rtol=0, atol=1e-6)


@needs_node
def test_ransac_epnp_is_the_same_in_javascript():
    """30% outliers and 1 px noise: with torch's random draws replayed, the same hypotheses, inliers
    and pose; with the page's own random numbers, the same inliers and pose (the inliers are clear).
    Then settings under which the answer depends on which hypothesis wins (a threshold near the
    noise, one refit, 16 hypotheses; other random draws change 7 of the 8 inlier sets): with torch's
    draws, the same inliers and pose again."""
    g = torch.Generator().manual_seed(5)
    p = random_pnp_problems(8, 60, noise_px=1.0, outlier_ratio=0.3, generator=g)
    expected = [epnp_ransac(p["points_3d"][i:i + 1], p["points_2d"][i:i + 1], p["K"][i:i + 1],
                            generator=torch.Generator().manual_seed(i)) for i in range(8)]
    opts = {**CONFIG["ransac"], "min_inliers": 6}
    problems = [[X.tolist(), x.tolist(), K.tolist(), None] for X, x, K in zip(p["points_3d"], p["points_2d"], p["K"])]
    replayed = run_node([{"fn": "epnpRansac", "args": [*args, {**opts, "random": {"draws": torch_draws(i)}}]}
                         for i, args in enumerate(problems)])
    own = run_node([{"fn": "epnpRansac", "args": [*args, opts]} for args in problems])
    for i, ((R, t, inliers, valid), js, js_own) in enumerate(zip(expected, replayed, own)):
        assert bool(valid[0]) and js["valid"] and js_own["valid"]
        assert js["inliers"] == js_own["inliers"] == inliers[0].tolist()
        for result in (js, js_own):
            np.testing.assert_allclose(result["R"], R[0].numpy(), rtol=0, atol=1e-8)
            np.testing.assert_allclose(result["t"], t[0].numpy(), rtol=0, atol=1e-9)
        assert math.degrees(float(relative_angle(R[0], p["R"][i]))) < 1  # and both are right

    p = random_pnp_problems(8, 60, noise_px=1.0, outlier_ratio=0.2, generator=g)
    sensitive = {"iterations": 16, "threshold_px": 1.5, "refit_rounds": 1}
    problems = [[X.tolist(), x.tolist(), K.tolist(), None] for X, x, K in zip(p["points_3d"], p["points_2d"], p["K"])]
    expected = [epnp_ransac(p["points_3d"][i:i + 1], p["points_2d"][i:i + 1], p["K"][i:i + 1], **sensitive,
                            generator=torch.Generator().manual_seed(i)) for i in range(8)]
    replayed = run_node([{"fn": "epnpRansac",
                          "args": [*args, {**opts, **sensitive, "random": {"draws": torch_draws(i)}}]}
                         for i, args in enumerate(problems)])
    assert sum(bool(valid[0]) for *_, valid in expected) >= 6
    for (R, t, inliers, valid), js in zip(expected, replayed):
        assert js["valid"] == bool(valid[0]) and js["inliers"] == inliers[0].tolist()
        np.testing.assert_allclose(js["R"], R[0].numpy(), rtol=0, atol=1e-8)
        np.testing.assert_allclose(js["t"], t[0].numpy(), rtol=0, atol=1e-9)


@needs_node
def test_pose_from_votes_matches_solve_pose_from_votes():
    """Votes made from a known pose (cells voting for the true control points, with noise, some
    confident outliers and unconfident cells), decoded as the graph decodes them."""
    g = torch.Generator().manual_seed(6)
    name = "006_mustard_bottle"
    ctrl3d = torch.tensor(CONFIG["objects"][name]["ctrl3d"], dtype=torch.float64)
    K = make_intrinsics(300.0, 300.0, 63.5, 63.5, dtype=torch.float64)
    assert CONFIG["roi_size"] == 16
    cases = []
    for angle in (0.3, 1.2, 2.5):
        R = torch.linalg.matrix_exp(torch.tensor([[0, -angle, 0.2], [angle, 0, -0.4], [-0.2, 0.4, 0]], dtype=torch.float64))
        t = torch.tensor([0.01, -0.02, 0.55], dtype=torch.float64)
        ctrl2d = project_points(transform_points(ctrl3d, R, t), K)[None]
        box = torch.cat([ctrl2d.amin(1), ctrl2d.amax(1)], -1)
        offsets = offset_targets(ctrl2d, box, 16) + 0.05 * torch.randn(1, 21, 2, 16, 16, generator=g, dtype=torch.float64)
        logits = torch.randn(1, 21, 16, 16, generator=g, dtype=torch.float64) * 2
        wrong = torch.rand(1, 21, 16, 16, generator=g) < 0.1
        offsets = torch.where(wrong[:, :, None], offsets + 3 * torch.randn(offsets.shape, generator=g, dtype=torch.float64), offsets)
        logits, offsets = logits.float().double(), offsets.float().double()  # float32 values, as the graph's
        expected = solve_pose_from_votes(logits, offsets, box, K[None], ctrl3d, generator=torch.Generator().manual_seed(0))
        cases.append((logits, offsets, box, expected, R))
    config = {key: CONFIG[key] for key in ("roi_size", "votes", "ransac")}
    results = run_node([{"fn": "solvePoseFromVotes", "args": [logits.flatten().tolist(), offsets.flatten().tolist(),
                                                              box[0].tolist(), ctrl3d.tolist(), K.tolist(), config,
                                                              {"draws": torch_draws(0)}]}
                        for logits, offsets, box, *_ in cases])
    for (*_, expected, R), js in zip(cases, results):
        assert js["valid"] and bool(expected.valid[0])
        np.testing.assert_allclose(js["R"], expected.R[0].numpy(), rtol=0, atol=1e-8)
        np.testing.assert_allclose(js["t"], expected.t[0].numpy(), rtol=0, atol=1e-9)
        assert math.degrees(float(relative_angle(torch.tensor(js["R"], dtype=torch.float64), R))) < 5.0  # near the truth


@needs_node
@pytest.mark.parametrize("weights", ["fresh", "lively", "shipped"])
def test_predict_image_in_javascript_equals_python(weights, request, tmp_path):
    """The whole of predict_image: the page's crop, the ONNX graph under onnxruntime-web (WASM),
    the translation and the pose, against the PyTorch network on two sample images."""
    ort_dist = find_onnxruntime_web()
    if ort_dist is None:
        pytest.skip("onnxruntime-web is not installed: run `npm ci` in the repository (needs Node.js and npm)")
    from hfl_lite.export import export_onnx
    from hfl_lite.inference import load_model

    if weights == "shipped":
        model = shipped_model_or_skip()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, _ = load_model(request.getfixturevalue(f"{weights}_checkpoint"), "cpu")
    data, _ = export_onnx(model, "fp16")
    (tmp_path / "model.onnx").write_bytes(data)
    frames = sample_frames(ROOT / "data_samples" / "ho3d", count=2)
    config = {**page_config(model), "hand_faces": None}
    calls, expected = [], []
    for i, (entry, image) in enumerate(frames):
        request = {"handBox": entry["hand_box"], "objBox": entry["obj_box"], "K": entry["K"], "ctrl3d": entry["ctrl3d"],
                   "random": {"draws": torch_draws(0)}}  # predict's RANSAC draws
        calls.append({"fn": "predictImage", "args": [{"image": str(i)}, request, config]})
        expected.append(predict_image(model, image, entry["hand_box"], entry["obj_box"], torch.tensor(entry["ctrl3d"]),
                                      torch.tensor(entry["K"]), generator=torch.Generator().manual_seed(0)))
    results = run_node(calls, {str(i): rgba_payload(image) for i, (_, image) in enumerate(frames)},
                       ort=(ort_dist / "ort.wasm.bundle.min.mjs").as_uri(), model=str(tmp_path / "model.onnx"))
    for js, py, (entry, _) in zip(results, expected, frames):
        compare_with_predict_image(js, py, entry["ctrl3d"], model.preset.roi_size, hand_placed=weights != "fresh",
                                   trained=weights == "shipped", label=f"frame {entry['id']}")

