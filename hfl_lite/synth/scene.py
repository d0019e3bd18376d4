"""Scenes of the synthetic sets: a grasp of an object seen by a random camera, as meshes to render.

A :class:`Scene` holds a grasp (:mod:`hfl_lite.synth.grasp`, in the object's frame), a camera
(world -> camera ``R``, ``t`` and intrinsics ``K`` of a 640x480 image like HO3D's and
Dex-YCB's), a skin colour and, for Dex-YCB, other objects standing near the grasped one.
:func:`sample_scene` draws one; :func:`make_frame_meshes` turns it into the camera-frame meshes
that :func:`hfl_lite.synth.render.render_scene` draws. Everything is in metres, OpenCV camera
frame, and drawn from the ``numpy`` generator given (deterministic for a given state).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hfl_lite.data.formats import HAND_LABEL, YCB_IDS

from . import objects
from .grasp import Grasp, get_hand_model, sample_grasp
from .render import RenderMesh, vertex_normals

__all__ = ["HEIGHT", "WIDTH", "Scene", "random_intrinsics", "skin_colour", "sample_camera", "key_points",
           "sample_scene", "make_frame_meshes"]

HEIGHT, WIDTH = 480, 640
"""Image size of the synthetic sets (pixels), as HO3D's and Dex-YCB's colour images."""


@dataclass
class Scene:
    """A grasp seen by a camera: ``grasp`` (in the object's frame), world -> camera ``R`` [3, 3],
    ``t`` [3], intrinsics ``K`` [3, 3], skin colour [3], the grasped object's pose in the world
    ``obj_R``, ``obj_t`` (None: identity) and other objects ``extras`` as (name, R_world, t_world)."""

    grasp: Grasp
    R: np.ndarray
    t: np.ndarray
    K: np.ndarray
    skin: np.ndarray
    extras: tuple = ()
    obj_R: np.ndarray | None = None
    obj_t: np.ndarray | None = None

    def object_to_camera(self) -> tuple[np.ndarray, np.ndarray]:
        """``(R, t)`` mapping the grasped object's frame (and the grasp) to the camera."""
        Ro = np.eye(3) if self.obj_R is None else self.obj_R
        to = np.zeros(3) if self.obj_t is None else self.obj_t
        return self.R @ Ro, self.R @ to + self.t


def random_intrinsics(rng: np.random.Generator) -> np.ndarray:
    """Intrinsics [3, 3] of a 640x480 camera like HO3D's and Dex-YCB's (f about 615 px)."""
    f = rng.uniform(600.0, 630.0)
    return np.array([[f * rng.uniform(0.998, 1.002), 0.0, 320.0 + rng.uniform(-8, 8)],
                     [0.0, f, 240.0 + rng.uniform(-8, 8)], [0.0, 0.0, 1.0]])


def skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A skin albedo [3] in [0, 1], from light to dark."""
    u = rng.uniform(0.0, 1.0)
    return (1 - u) * np.array([0.93, 0.76, 0.64]) + u * np.array([0.42, 0.28, 0.20])


def _look_at(direction: np.ndarray, target: np.ndarray, distance: float, roll: float) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera (R, t) for a camera at ``target + distance * direction`` looking at ``target``."""
    z = -direction / np.linalg.norm(direction)
    helper = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = math.cos(roll), math.sin(roll)
    R = np.stack([c * x + s * y, -s * x + c * y, z])
    centre = target + distance * direction / np.linalg.norm(direction)
    return R, -R @ centre


def _in_view(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, margin: float = 8.0) -> bool:
    cam = points @ R.T + t
    if (cam[:, 2] < 0.1).any():
        return False
    uv = cam[:, :2] / cam[:, 2:3] * np.diag(K)[:2] + K[:2, 2]
    limit = np.array([WIDTH - 1 - margin, HEIGHT - 1 - margin])
    return bool((uv >= margin).all() and (uv <= limit).all())


def _blocks_view(camera: np.ndarray, target: np.ndarray, spheres) -> bool:
    """Whether a sphere (centre, radius) comes within 3 cm of the segment camera -> target."""
    d = target - camera
    for c, r in spheres:
        s = np.clip((c - camera) @ d / (d @ d), 0.0, 1.0)
        if np.linalg.norm(camera + s * d - c) < r + 0.03:
            return True
    return False


def sample_camera(rng: np.random.Generator, points: np.ndarray, K: np.ndarray, near: float = 0.4, far: float = 0.8,
                  tries: int = 30, avoid=()) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera ``(R [3, 3], t [3])`` from a random direction ``near``-``far`` metres from the
    centre of ``points [N, 3]`` (world frame), with every point inside the image and no sphere of
    ``avoid`` (centre [3], radius) across the line of sight, when possible in ``tries`` draws."""
    centre = (points.min(0) + points.max(0)) / 2
    R = t = None
    for k in range(tries):
        direction = rng.normal(size=3)
        distance = rng.uniform(near, far) * (1.0 + 0.05 * max(0, k - tries // 2))
        target = centre + rng.normal(0.0, 0.02, size=3)
        R, t = _look_at(direction, target, distance, rng.uniform(-math.pi, math.pi))
        if _in_view(points, K, R, t) and not _blocks_view(-R.T @ t, centre, avoid):
            break
    return R, t


def key_points(grasp: Grasp) -> np.ndarray:
    """Points that must be in view: hand joints and the object's control points (object frame)."""
    return np.concatenate([grasp.joints, objects.control_points(grasp.object_name).numpy()])


def sample_scene(rng: np.random.Generator, object_name: str, side: str = "right", betas: np.ndarray | None = None,
                 K: np.ndarray | None = None, mano_root=None) -> Scene:
    """A random grasp of ``object_name`` and a camera that sees it (the renderer benchmark draws its scenes so)."""
    hand = get_hand_model(side, mano_root)
    betas = rng.normal(0.0, 0.7, size=10) if betas is None else betas
    K = random_intrinsics(rng) if K is None else K
    grasp = sample_grasp(objects.get_object(object_name), hand, betas, rng)
    R, t = sample_camera(rng, key_points(grasp), K)
    return Scene(grasp=grasp, R=R, t=t, K=K, skin=skin_colour(rng))


def make_frame_meshes(scene: Scene) -> tuple[list[RenderMesh], np.ndarray]:
    """Camera-frame :class:`RenderMesh` list (hand, grasped object, extras) and ``K``."""
    g = scene.grasp
    Rc, tc = scene.object_to_camera()
    hv = g.verts @ Rc.T + tc
    shade = 1.0 + 0.04 * np.sin(g.verts @ np.array([91.0, 57.0, 73.0]))[:, None]  # faint skin texture
    meshes = [RenderMesh(verts=hv, faces=g.faces, normals=vertex_normals(hv, g.faces), label=HAND_LABEL,
                         colours=np.clip(scene.skin[None] * shade, 0, 1).astype(np.float32))]
    poses = [(g.object_name, Rc, tc)] + [(name, scene.R @ Rw, scene.R @ tw + scene.t) for name, Rw, tw in scene.extras]
    for name, R, t in poses:
        m = objects.get_object(name)
        meshes.append(RenderMesh(verts=m.verts @ R.T + t, faces=m.faces, normals=m.normals @ R.T,
                                 label=YCB_IDS[name], texture=m.texture, local=m.verts, vert_part=m.vert_part))
    return meshes, scene.K
