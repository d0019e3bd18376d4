"""The ``render`` section: the synthetic-scene renderer (:mod:`hfl_lite.synth.render`) in images/s."""
from __future__ import annotations

import time

import numpy as np
import torch

from hfl_lite.synth.render import render_scene
from hfl_lite.synth.scene import make_frame_meshes, sample_scene

from .settings import Settings, record

__all__ = ["bench_render", "bench_renderer"]


def bench_renderer(n: int = 20, seed: int = 0, device: str | torch.device = "cpu") -> dict:
    """Time :func:`render_scene` on ``n`` synthetic grasp scenes at 640x480.

    Scenes (grasp, camera) are made before timing starts; only rendering is timed.
    Returns ``{"images_per_s", "ms_per_image", "cpu_ms_per_image", "n", "device", "threads",
    "mean_triangles"}``; ``cpu_ms_per_image`` (process CPU time) shows the cost on a machine
    shared with other work, where wall-clock figures drop.
    """
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, "021_bleach_cleanser" if i % 2 else "006_mustard_bottle") for i in range(n)]
    frames = [make_frame_meshes(s) for s in scenes]
    tris = [sum(len(m.faces) for m in meshes) for meshes, _ in frames]
    render_scene(frames[0][0], frames[0][1], np.random.default_rng(0), device=device)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for i, (meshes, K) in enumerate(frames):
        render_scene(meshes, K, np.random.default_rng(i), device=device)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"images_per_s": n / dt, "ms_per_image": 1000 * dt / n, "cpu_ms_per_image": 1000 * cpu / n, "n": n,
            "device": str(device), "threads": torch.get_num_threads(), "mean_triangles": float(np.mean(tris))}


def bench_render(s: Settings, context: dict) -> list[dict]:
    """The synthetic-scene renderer (:func:`bench_renderer`)."""
    r = bench_renderer(n=s.render_images, device=s.device)
    return [record("render", f"640x480 grasp scenes ({r['mean_triangles']:,.0f} triangles)",
                   f"{r['images_per_s']:,.2f} images/s",
                   f"{r['ms_per_image']:,.1f} ms/image wall, {r['cpu_ms_per_image']:,.1f} ms/image CPU; "
                   f"{r['threads']} threads", **r)]
