"""The ``epnp`` and ``voting`` sections: batched torch EPnP and vote-to-pose against OpenCV loops.

Both sides run in the same process on the same problems, so the ratio is meaningful on the
machine at hand (absolute times are not). The EPnP section also measures both sides while a
competing CPU load runs (:func:`hfl_lite.bench.load.competing_load`: busy processes started and
stopped by the section), and on a GPU also the solver replayed as a CUDA graph. Both sections
time the solver eagerly and, unless told not to, compiled by ``torch.compile``
(``compiled=True``): the first call, which compiles, is reported on its own, the ratios come
from the calls after it.
:func:`bench_epnp` / :func:`bench_voting` each return a list of dict rows;
:func:`bench_epnp_section` / :func:`bench_voting_section` turn them into the command's records
(``python -m hfl_lite bench --sections epnp,voting``).
"""
from __future__ import annotations

import statistics

import cv2
import numpy as np
import torch

from hfl_lite.geometry import (control_points_from_bounds, epnp, offset_targets, project_points, random_pnp_problems,
                               solve_pose_from_votes, tight_box, transform_points)
from hfl_lite.presets import pick_device
from hfl_lite.threads import cpu_threads

from .load import competing_load
from .settings import Settings, record
from .timing import timed

__all__ = ["bench_epnp", "bench_epnp_section", "bench_voting", "bench_voting_section"]


def _timed_ms(fn, repeats: int, device: torch.device) -> tuple[float, float, float, object]:
    """Median wall time and median process CPU time of ``fn()`` in milliseconds over ``repeats``
    runs after a first call, the wall time of that first call (which includes any compilation,
    in milliseconds) and the last result."""
    first, _ = timed(fn, device, 1, warmup=0)
    cpu = []
    seconds, out = timed(fn, device, repeats, warmup=0, cpu_times=cpu)
    return seconds * 1000, statistics.median(cpu) * 1000, first * 1000, out


def _errors(R_est: np.ndarray, t_est: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Median rotation error (degrees) and median relative translation error."""
    rot = np.degrees(2 * np.arcsin(np.clip(np.linalg.norm(R_est - R, axis=(1, 2)) / np.sqrt(8), 0, 1)))
    tr = np.linalg.norm(t_est - t, axis=1) / np.linalg.norm(t, axis=1)
    return float(np.median(rot)), float(np.median(tr))


def _opencv_loop(X, x, K) -> tuple[np.ndarray, np.ndarray]:
    Rs, ts = np.tile(np.eye(3), (len(X), 1, 1)), np.tile([0.0, 0.0, 1.0], (len(X), 1))
    for i in range(len(X)):
        ok, rvec, tvec = cv2.solvePnP(X[i], x[i], K[i], None, flags=cv2.SOLVEPNP_EPNP)
        if ok:
            Rs[i], ts[i] = cv2.Rodrigues(rvec)[0], tvec.ravel()
    return Rs, ts


def bench_epnp(batches=(1, 64, 1024), repeats: int = 5, num_points: int = 21, noise_px: float = 1.0,
               device: str | None = None, seed: int = 0, threads: int | None = None,
               load_processes: int = 0, compiled: bool = True) -> list[dict]:
    """Time batched :func:`hfl_lite.geometry.epnp` (float32 in, float64 inside) against a Python
    loop over ``cv2.solvePnP(..., flags=SOLVEPNP_EPNP)`` on the same random problems
    (object-sized point clouds 0.3-1 m away, ``noise_px`` Gaussian pixel noise).

    Returns one row per batch size, variant (``eager``; with ``compiled`` also ``compiled``,
    ``epnp(..., compiled=True)``; on CUDA also ``cuda graph``, ``epnp(..., cuda_graph=True)``)
    and load (0, then ``load_processes`` busy processes on a CPU, both sides measured under the
    same load): ``batch, points, device, variant, load, torch_ms, opencv_ms, speedup`` (OpenCV
    time / torch time, median wall times after a first call), ``first_call_ms`` (that first
    call: the compilation for the first batch of the ``compiled`` variant),
    ``torch_cpu_ms, opencv_cpu_ms, cpu_speedup`` (the same with process CPU time, the steadier
    figure on a CPU shared with other work; not meaningful on a GPU) and the median rotation
    (degrees) and relative translation errors of both. ``threads`` sets torch's CPU threads for
    the run (the solver itself uses one thread for batches of ordinary size).
    """
    dev = torch.device(device) if device else pick_device()
    variants = {"eager": {}} | ({"compiled": {"compiled": True}} if compiled else {}) \
        | ({"cuda graph": {"cuda_graph": True}} if dev.type == "cuda" else {})
    problems = {B: random_pnp_problems(B, num_points, noise_px=noise_px, generator=torch.Generator().manual_seed(seed))
                for B in batches}
    rows = []
    for load in (0, load_processes) if load_processes and dev.type == "cpu" else (0,):
        with competing_load(load):
            for B, p in problems.items():
                X, x, K = (p[k].float().to(dev) for k in ("points_3d", "points_2d", "K"))
                Xn, xn, Kn = (p[k].numpy() for k in ("points_3d", "points_2d", "K"))
                cv_ms, cv_cpu, _, (R_c, t_c) = _timed_ms(lambda: _opencv_loop(Xn, xn, Kn), max(1, repeats // 2),
                                                         torch.device("cpu"))
                R_true, t_true = p["R"].numpy(), p["t"].numpy()
                rot_c, tr_c = _errors(R_c, t_c, R_true, t_true)
                for variant, kwargs in variants.items():
                    with cpu_threads(threads), torch.no_grad():
                        torch_ms, torch_cpu, first_ms, (R_t, t_t) = _timed_ms(lambda: epnp(X, x, K, **kwargs),
                                                                              repeats, dev)
                    rot_t, tr_t = _errors(R_t.double().cpu().numpy(), t_t.double().cpu().numpy(), R_true, t_true)
                    rows.append(dict(bench="epnp", batch=B, points=num_points, device=str(dev), variant=variant, load=load,
                                     torch_ms=torch_ms, first_call_ms=first_ms, opencv_ms=cv_ms,
                                     speedup=cv_ms / torch_ms, torch_cpu_ms=torch_cpu,
                                     opencv_cpu_ms=cv_cpu, cpu_speedup=cv_cpu / torch_cpu, torch_rot_deg=rot_t,
                                     opencv_rot_deg=rot_c, torch_trans_rel=tr_t, opencv_trans_rel=tr_c))
    return rows


def _synthetic_votes(B: int, grid: int, vote_noise: float, outlier_ratio: float, seed: int):
    """Decoder-like outputs for random box-shaped objects: offsets that vote for the true
    control points (plus noise), confident cells near each point, some confident junk votes."""
    g = torch.Generator().manual_seed(seed)
    p = random_pnp_problems(B, 1, generator=g, image_size=(256, 256), focal=300.0, depth=(0.4, 0.8))
    half = 0.02 + 0.06 * torch.rand(B, 3, generator=g, dtype=torch.float64)
    ctrl3d = control_points_from_bounds(-half, half)
    ctrl2d = project_points(transform_points(ctrl3d, p["R"], p["t"]), p["K"])
    box = tight_box(ctrl2d)
    off = offset_targets(ctrl2d, box, grid) + vote_noise * torch.randn(B, 21, 2, grid, grid, generator=g, dtype=torch.float64)
    junk = torch.rand(B, 21, 1, grid, grid, generator=g, dtype=torch.float64) < outlier_ratio
    off = torch.where(junk, 10 * (torch.rand(off.shape, generator=g, dtype=torch.float64) - 0.5), off)
    logits = 4 * torch.rand(B, 21, grid, grid, generator=g, dtype=torch.float64) - 2.5  # ~27% above 0.5
    return dict(conf=logits.float(), off=off.float(), box=box.float(), K=p["K"].float(), ctrl3d=ctrl3d.float(),
                R=p["R"].numpy(), t=p["t"].numpy())


def _reference_votes(conf, off, box, rounds=10, threshold=0.5):
    """Per-sample numpy version of the reference decoding: 10 rounds of argmax-and-remove."""
    K, R = conf.shape[0], conf.shape[-1]
    c = 1 / (1 + np.exp(-conf.reshape(K, R * R)))
    pts, idx = [], []
    for _ in range(rounds):
        for k in range(K):
            j = int(c[k].argmax())
            if c[k, j] > threshold:
                i, jj = divmod(j, R)
                u = (jj + 0.5) / R + off[k, 0, i, jj] / 10
                v = (i + 0.5) / R + off[k, 1, i, jj] / 10
                pts.append([box[0] + u * (box[2] - box[0]), box[1] + v * (box[3] - box[1])])
                idx.append(k)
            c[k, j] = -1
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2), np.asarray(idx, dtype=np.int64)


def bench_voting(batches=(1, 64, 256), grid: int = 32, repeats: int = 3, vote_noise: float = 0.02,
                 outlier_ratio: float = 0.2, device: str | None = None, seed: int = 0,
                 threads: int | None = None, compiled: bool = True) -> list[dict]:
    """Time the whole vote-to-pose step at test time: batched :func:`solve_pose_from_votes`
    (top-10 voting + batched RANSAC EPnP) against the reference's per-sample loop (numpy
    decoding + ``cv2.solvePnPRansac`` with the EPnP flag), on synthetic decoder outputs with
    ``outlier_ratio`` junk votes. Rows (per batch: ``eager``, then, with ``compiled``,
    ``compiled``): times, speedup and median pose errors of both; ``threads``, the first call
    and the CPU-time figures as in :func:`bench_epnp`."""
    dev = torch.device(device) if device else pick_device()
    rows = []
    for B in batches:
        s = _synthetic_votes(B, grid, vote_noise, outlier_ratio, seed)
        args = [s[k].to(dev) for k in ("conf", "off", "box", "K", "ctrl3d")]
        gen = torch.Generator(device=dev).manual_seed(seed)
        torch_rows = []
        for variant in ("eager", "compiled") if compiled else ("eager",):
            with cpu_threads(threads), torch.no_grad():
                torch_rows.append((variant, *_timed_ms(
                    lambda: solve_pose_from_votes(*args, generator=gen, compiled=variant == "compiled"), repeats, dev)))

        conf, off, box = (s[k].double().numpy() for k in ("conf", "off", "box"))
        Kn, ctrl = s["K"].double().numpy(), s["ctrl3d"].double().numpy()

        def loop():
            Rs, ts = np.tile(np.eye(3), (B, 1, 1)), np.tile([0.0, 0.0, 1.0], (B, 1))
            for b in range(B):
                pts, idx = _reference_votes(conf[b], off[b], box[b])
                if len(pts) >= 6:
                    ok, rvec, tvec, _ = cv2.solvePnPRansac(ctrl[b][idx], pts, Kn[b], None, flags=cv2.SOLVEPNP_EPNP)
                    if ok:
                        Rs[b], ts[b] = cv2.Rodrigues(rvec)[0], tvec.ravel()
            return Rs, ts

        cv_ms, cv_cpu, _, (R_c, t_c) = _timed_ms(loop, max(1, repeats // 2), torch.device("cpu"))
        rot_c, tr_c = _errors(R_c, t_c, s["R"], s["t"])
        for variant, torch_ms, torch_cpu, first_ms, pose in torch_rows:
            rot_t, tr_t = _errors(pose.R.double().cpu().numpy(), pose.t.double().cpu().numpy(), s["R"], s["t"])
            rows.append(dict(bench="votes->pose", batch=B, points=21 * 10, device=str(dev), variant=variant, load=0,
                             torch_ms=torch_ms, first_call_ms=first_ms, opencv_ms=cv_ms, speedup=cv_ms / torch_ms,
                             torch_cpu_ms=torch_cpu, opencv_cpu_ms=cv_cpu, cpu_speedup=cv_cpu / torch_cpu,
                             torch_rot_deg=rot_t, opencv_rot_deg=rot_c, torch_trans_rel=tr_t, opencv_trans_rel=tr_c))
    return rows


def _pnp_records(section: str, rows: list[dict]) -> list[dict]:
    def cpu(r):  # process CPU time is a steadier yardstick on a shared CPU, meaningless on a GPU
        return f" (CPU time: {r['cpu_speedup']:.2f}x)" if r["device"].startswith("cpu") else ""

    def case(r):
        variant = {"eager": "", "compiled": ", compiled", "cuda graph": ", CUDA graph"}[r["variant"]]
        load = f", {r['load']} busy processes competing" if r["load"] else ""
        return f"{r['bench']}, batch {r['batch']}, {r['points']} points{variant}{load}"

    return [record(section, case(r),
                   f"{r['speedup']:.2f}x the OpenCV loop",
                   f"torch {r['torch_ms']:,.2f} ms vs OpenCV {r['opencv_ms']:,.2f} ms{cpu(r)}; first call "
                   f"{r['first_call_ms'] / 1000:,.2f} s; median rotation error "
                   f"{r['torch_rot_deg']:.3f} / {r['opencv_rot_deg']:.3f} deg, translation "
                   f"{r['torch_trans_rel']:.4f} / {r['opencv_trans_rel']:.4f} (torch / OpenCV)", **r) for r in rows]


def bench_epnp_section(s: Settings, context: dict) -> list[dict]:
    """Batched EPnP against a loop over ``cv2.solvePnP(..., SOLVEPNP_EPNP)``, also under a
    competing load and, on a GPU, as a CUDA graph (:func:`bench_epnp`)."""
    rows = bench_epnp(batches=s.epnp_batches, repeats=max(1, s.repeats), device=s.device, threads=s.threads,
                      load_processes=s.load_processes, compiled=s.compiled)
    return _pnp_records("epnp", rows)


def bench_voting_section(s: Settings, context: dict) -> list[dict]:
    """Votes -> pose against the reference's per-sample loop (:func:`bench_voting`)."""
    rows = bench_voting(batches=s.voting_batches, grid=s.voting_grid, repeats=max(1, s.repeats), device=s.device,
                        threads=s.threads, compiled=s.compiled)
    return _pnp_records("voting", rows)
