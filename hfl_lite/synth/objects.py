"""YCB-like objects made by this project: meshes, colours, signed distances, control points.

The real YCB models (used by HO3D and Dex-YCB) cannot be shipped, so ``hfl_lite`` builds simple
stand-ins with the real objects' outer dimensions (metres) from two kinds of parts:

* rounded boxes (a box with its edges rounded by a radius, 0 for sharp edges);
* lathes: a profile ``(radius, z)`` turned about the part's z axis, optionally squashed to an
  elliptical section (bottles, cans, bowls, capsules and ring handles).

Each part has an exact (lathe: exact up to its elliptical squash) signed distance, which the
grasp synthesis uses to keep fingers out of objects, and a colour; decals (axis-aligned boxes in
the object frame painted another colour, optionally striped) break the symmetries that the real
objects' textures break, so that the pose of a non-symmetric object is visible in an image.

Object frame: origin at the centre of the axis-aligned bounding box, z along the object's
"up" (the tallest side for bottles and boxes standing upright). Every object of
:data:`hfl_lite.data.formats.OBJECT_NAMES` (Dex-YCB's 21, HO3D's ten among them) has a stand-in
under its YCB name.

    >>> verts, faces = load_object("006_mustard_bottle")   # [V, 3] metres, [F, 3] int64
    >>> control_points("006_mustard_bottle").shape          # torch [21, 3], DESIGN.md order
    torch.Size([21, 3])

Files, as the datasets store models (:func:`write_model`): ``<dir>/<name>/textured_simple.obj``
(``v x y z r g b`` lines: positions in metres and per-vertex colours in [0, 1], then 1-based
``f`` lines) and ``<dir>/<name>/points.xyz`` (HO3D style: one ``x y z`` line per surface vertex);
the readers load them with :func:`hfl_lite.data.formats.read_obj`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hfl_lite.data.formats import OBJECT_NAMES, YCB_IDS, mesh_diameter
from hfl_lite.geometry.control_points import control_points_from_vertices

__all__ = [
    "ObjectModel",
    "get_object",
    "load_object",
    "object_diameter",
    "control_points",
    "write_model",
]


# --------------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------------

def _rot(axis: str, deg: float) -> np.ndarray:
    """Rotation matrix [3, 3] by ``deg`` degrees about the coordinate axis ``axis``."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


@dataclass
class _Part:
    """A part in the object frame: ``X_obj = R X_local + t``; subclasses define local geometry."""

    colour: tuple[float, float, float]
    t: tuple[float, float, float] = (0.0, 0.0, 0.0)
    R: np.ndarray = field(default_factory=lambda: np.eye(3))

    def to_local(self, p: np.ndarray) -> np.ndarray:
        return (p - np.asarray(self.t)) @ self.R

    def to_object(self, p: np.ndarray) -> np.ndarray:
        return p @ self.R.T + np.asarray(self.t)

    def sdf(self, p: np.ndarray) -> np.ndarray:
        """Signed distance (metres, negative inside) of object-frame points ``p [N, 3]``.

        Exact (lathes: up to their elliptical squash) for points within 1 cm of the part's
        bounding box; farther points get their distance to that box, a lower bound.
        """
        q = self.to_local(p)
        lo, hi = self._local_bounds
        box = np.linalg.norm(np.maximum(np.maximum(lo - q, q - hi), 0.0), axis=-1)
        out = box.copy()
        near = np.nonzero(box <= 0.01)[0]
        if len(near):
            out[near] = self._sdf_local(q[near])
        return out

    @functools.cached_property
    def _local_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        v = self._mesh_local()[0]
        return v.min(0), v.max(0)

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(verts [V, 3], normals [V, 3], faces [F, 3]) in the object frame."""
        v, n, f = self._mesh_local()
        return self.to_object(v), n @ self.R.T, f


@dataclass
class _Box(_Part):
    """Box of full ``size`` (metres) whose edges are rounded with ``radius``."""

    size: tuple[float, float, float] = (0.1, 0.1, 0.1)
    radius: float = 0.0
    step: float = 0.012

    def _sdf_local(self, p):
        h = np.asarray(self.size) / 2 - self.radius
        q = np.abs(p) - h
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        return outside + np.minimum(q.max(-1), 0.0) - self.radius

    def _axis_grid(self, half: float) -> np.ndarray:
        r = self.radius
        inner = np.linspace(-half + r, half - r, max(2, int(math.ceil(2 * (half - r) / self.step)) + 1))
        if r <= 0:
            return inner
        ring = np.linspace(0.0, r, 4 if r >= 0.005 else 2)[1:]
        return np.concatenate([-half + r - ring[::-1], inner, half - r + ring])

    def _mesh_local(self):
        half = np.asarray(self.size) / 2
        inner = half - self.radius
        verts, normals, faces = [], [], []
        count = 0
        for axis in range(3):
            for sign in (-1.0, 1.0):
                a, b = (axis + 1) % 3, (axis + 2) % 3  # e_a x e_b = e_axis
                if sign < 0:  # keep every face's winding counter-clockwise seen from outside
                    a, b = b, a
                ga, gb = self._axis_grid(half[a]), self._axis_grid(half[b])
                A, B = np.meshgrid(ga, gb, indexing="ij")
                p = np.zeros(A.shape + (3,))
                p[..., a], p[..., b], p[..., axis] = A, B, sign * half[axis]
                p = p.reshape(-1, 3)
                q = np.clip(p, -inner, inner)
                d = p - q
                dn = np.linalg.norm(d, axis=-1, keepdims=True)
                face_n = np.zeros(3)
                face_n[axis] = sign
                n = np.where(dn > 1e-12, d / np.maximum(dn, 1e-12), face_n)
                if self.radius > 0:
                    p = q + self.radius * n
                na, nb = len(ga), len(gb)
                idx = np.arange(na * nb).reshape(na, nb) + count
                q00, q10, q01, q11 = idx[:-1, :-1], idx[1:, :-1], idx[:-1, 1:], idx[1:, 1:]
                faces.append(np.stack([q00, q10, q11], -1).reshape(-1, 3))
                faces.append(np.stack([q00, q11, q01], -1).reshape(-1, 3))
                verts.append(p)
                normals.append(n)
                count += na * nb
        return np.concatenate(verts), np.concatenate(normals), np.concatenate(faces)


@dataclass
class _Lathe(_Part):
    """Profile ``(radius, z)`` turned about the local z axis, section squashed by ``(sx, sy)``.

    An open profile starts and ends on the axis (radius 0); a ``closed`` profile is a loop away
    from the axis (a ring). A point repeated in the profile makes a sharp edge there.
    """

    profile: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.05, 0.0), (0.05, 0.1), (0.0, 0.1))
    sx: float = 1.0
    sy: float = 1.0
    segments: int = 40
    closed: bool = False

    def _polygon(self) -> np.ndarray:
        return np.asarray(self.profile, dtype=np.float64)

    def _sdf_local(self, p):
        rho = np.hypot(p[:, 0] / self.sx, p[:, 1] / self.sy)
        q = np.stack([rho, p[:, 2]], -1)  # [N, 2]
        poly = self._polygon()
        a, b = poly, np.roll(poly, -1, axis=0)
        if not self.closed:  # the closing segment runs along the axis: no surface there
            a, b = a[:-1], b[:-1]
        ab = b - a
        ap = q[:, None, :] - a[None]
        tt = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-18), 0.0, 1.0)
        dist = np.linalg.norm(ap - tt[..., None] * ab, axis=-1).min(-1)
        # inside test against the closed polygon (crossing number)
        pa, pb = poly, np.roll(poly, -1, axis=0)
        y = q[:, 1:2]
        crosses = (pa[None, :, 1] > y) != (pb[None, :, 1] > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = (pb[None, :, 0] - pa[None, :, 0]) / (pb[None, :, 1] - pa[None, :, 1])
            xint = pa[None, :, 0] + (y - pa[None, :, 1]) * slope
        inside = (crosses & (q[:, :1] < xint)).sum(-1) % 2 == 1
        scale = min(self.sx, self.sy)
        return np.where(inside, -dist, dist) * scale

    def _profile_normals(self) -> np.ndarray:
        poly = self._polygon()
        n = len(poly)
        out = np.zeros_like(poly)
        for i in range(n):
            acc = np.zeros(2)
            for j, k in ((i - 1, i), (i, i + 1)):
                if not self.closed and (j < 0 or k >= n):
                    continue
                d = poly[k % n] - poly[j % n]
                length = np.linalg.norm(d)
                if length < 1e-12:
                    continue
                acc += np.array([d[1], -d[0]]) / length  # segment normal; orientation fixed in _mesh_local
            out[i] = acc / max(np.linalg.norm(acc), 1e-12)
        return out

    def _mesh_local(self):
        poly = self._polygon()
        pn = self._profile_normals()
        # Orient profile normals outward: test a point slightly along the normal.
        mid = len(poly) // 2
        probe = np.array([[poly[mid, 0] + 1e-4 * pn[mid, 0], 0.0, poly[mid, 1] + 1e-4 * pn[mid, 1]]])
        probe[0, 0] *= self.sx
        if self._sdf_local(probe)[0] < 0:
            pn = -pn
        theta = np.linspace(0.0, 2 * math.pi, self.segments, endpoint=False)
        c, s = np.cos(theta), np.sin(theta)
        verts, normals, faces = [], [], []
        rings = []  # vertex index of each profile point's ring (list) or pole (int)
        count = 0
        for (r, z), (nr, nz) in zip(poly, pn):
            if r <= 1e-12 and not self.closed:
                verts.append([[0.0, 0.0, z]])
                normals.append([[0.0, 0.0, np.sign(nz) if nz != 0 else 1.0]])
                rings.append(count)
                count += 1
                continue
            ring = np.stack([r * c * self.sx, r * s * self.sy, np.full_like(c, z)], -1)
            # normal of the squashed surface: scale the radial part by 1/s
            nn = np.stack([nr * c / self.sx, nr * s / self.sy, np.full_like(c, nz)], -1)
            nn /= np.linalg.norm(nn, axis=-1, keepdims=True)
            verts.append(ring)
            normals.append(nn)
            rings.append(np.arange(count, count + self.segments))
            count += self.segments
        m = len(rings)
        pairs = [(i, i + 1) for i in range(m - 1)] + ([(m - 1, 0)] if self.closed else [])
        for i, j in pairs:
            a, b = rings[i], rings[j]
            if isinstance(a, int) and isinstance(b, int):
                continue
            if isinstance(a, int):
                faces.append(np.stack([np.full(self.segments, a), np.roll(b, -1), b], -1))
            elif isinstance(b, int):
                faces.append(np.stack([a, np.roll(a, -1), np.full(self.segments, b)], -1))
            else:
                faces.append(np.stack([a, np.roll(a, -1), np.roll(b, -1)], -1))
                faces.append(np.stack([a, np.roll(b, -1), b], -1))
        v, n, f = np.concatenate(verts), np.concatenate(normals), np.concatenate(faces)
        keep = _nondegenerate(v, f)
        return v, n, f[keep]


def _nondegenerate(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Boolean [F]: faces with a non-zero area."""
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return np.linalg.norm(cross, axis=-1) > 1e-14


def _cylinder(radius, height, colour, t=(0.0, 0.0, 0.0), R=None, lip=0.0, sx=1.0, sy=1.0, segments=40):
    """Closed cylinder along local z, centred on ``t``; ``lip`` > 0 adds raised rims (cans)."""
    h = height / 2
    if lip > 0:
        prof = ((0.0, -h + lip), (radius - lip, -h + lip), (radius - lip, -h + lip), (radius - lip / 2, -h),
                (radius, -h + lip), (radius, -h + lip), (radius, h - lip), (radius, h - lip),
                (radius - lip / 2, h), (radius - lip, h - lip), (radius - lip, h - lip), (0.0, h - lip))
    else:
        prof = ((0.0, -h), (radius, -h), (radius, -h), (radius, h), (radius, h), (0.0, h))
    return _Lathe(colour=colour, t=t, R=np.eye(3) if R is None else R, profile=prof, sx=sx, sy=sy, segments=segments)


def _capsule(a, b, radius, colour, segments=20):
    """Capsule between object-frame points ``a`` and ``b``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    length = float(np.linalg.norm(d))
    z = d / length
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z], -1)
    k = 5
    ang = np.linspace(0.0, math.pi / 2, k)
    bottom = [(radius * math.sin(t), -length / 2 - radius * math.cos(t)) for t in ang]
    top = [(radius * math.cos(t), length / 2 + radius * math.sin(t)) for t in ang]
    return _Lathe(colour=colour, t=tuple((a + b) / 2), R=R, profile=tuple(bottom + top), segments=segments)


def _ring(centre, major, minor, colour, R=None, segments=28):
    """Torus with radii ``major`` (centre line) and ``minor`` (tube) about local z."""
    ang = np.linspace(0.0, 2 * math.pi, 12, endpoint=False)
    prof = tuple((major + minor * math.cos(t), minor * math.sin(t)) for t in ang)
    return _Lathe(colour=colour, t=tuple(centre), R=np.eye(3) if R is None else R, profile=prof,
                  segments=segments, closed=True)


@dataclass(frozen=True)
class _Decal:
    """Colour painted on the surface inside the object-frame box ``[lo, hi]``; optional stripes."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    colour: tuple[float, float, float]
    stripe_axis: int = -1
    stripe_period: float = 0.01


# --------------------------------------------------------------------------------------------
# The objects (outer dimensions of the real YCB objects, metres)
# --------------------------------------------------------------------------------------------

_INF = 1.0
RED, WHITE, YELLOW, BLUE = (0.80, 0.10, 0.08), (0.92, 0.92, 0.90), (0.95, 0.80, 0.10), (0.12, 0.25, 0.70)
SILVER, BLACK, BROWN = (0.70, 0.70, 0.72), (0.08, 0.08, 0.09), (0.45, 0.28, 0.12)


def _spec(name: str) -> tuple[list[_Part], list[_Decal]]:
    """Parts and decals of one object, before re-centring on its bounding box."""
    if name == "002_master_chef_can":
        return [_cylinder(0.051, 0.139, BLUE, lip=0.004)], [
            _Decal((-_INF, -_INF, 0.062), (_INF, _INF, _INF), SILVER),
            _Decal((-_INF, -_INF, -_INF), (_INF, _INF, -0.062), SILVER),
            _Decal((0.02, -0.03, -0.03), (_INF, 0.03, 0.03), YELLOW, stripe_axis=2, stripe_period=0.012)]
    if name == "003_cracker_box":
        return [_Box(RED, size=(0.158, 0.060, 0.210), radius=0.002, step=0.018)], [
            _Decal((-_INF, -_INF, 0.02), (_INF, -0.026, 0.08), YELLOW),
            _Decal((-0.06, -_INF, -0.09), (0.0, -0.026, -0.02), WHITE, stripe_axis=2, stripe_period=0.015),
            _Decal((-_INF, 0.026, -_INF), (_INF, _INF, _INF), (0.95, 0.55, 0.10), stripe_axis=0, stripe_period=0.03),
            _Decal((-_INF, -_INF, 0.1), (_INF, _INF, _INF), (0.55, 0.05, 0.05))]
    if name == "004_sugar_box":
        return [_Box(WHITE, size=(0.089, 0.038, 0.175), radius=0.002)], [
            _Decal((-_INF, -_INF, -0.02), (_INF, -0.015, 0.05), YELLOW),
            _Decal((-_INF, 0.015, -_INF), (_INF, _INF, _INF), (0.30, 0.55, 0.85), stripe_axis=2, stripe_period=0.02)]
    if name == "005_tomato_soup_can":
        return [_cylinder(0.033, 0.101, WHITE, lip=0.003)], [
            _Decal((-_INF, -_INF, 0.0), (_INF, _INF, _INF), RED),
            _Decal((0.015, -0.015, -0.03), (_INF, 0.015, -0.005), (0.85, 0.70, 0.25))]
    if name == "006_mustard_bottle":
        prof = ((0.0, -0.095), (0.044, -0.095), (0.0475, -0.088), (0.0475, 0.020), (0.040, 0.040),
                (0.022, 0.052), (0.016, 0.056), (0.0, 0.056))
        cap = ((0.0, 0.054), (0.015, 0.054), (0.015, 0.075), (0.006, 0.090), (0.004, 0.095), (0.0, 0.095))
        return [_Lathe(YELLOW, profile=prof, sx=1.0, sy=0.61), _Lathe(RED, profile=cap)], [
            _Decal((-0.03, -_INF, -0.06), (0.03, -0.01, 0.0), BLUE),
            _Decal((-0.02, -_INF, -0.05), (0.02, -0.01, -0.01), RED, stripe_axis=0, stripe_period=0.012)]
    if name == "007_tuna_fish_can":
        return [_cylinder(0.0425, 0.033, SILVER, lip=0.003)], [
            _Decal((-_INF, -_INF, -0.01), (_INF, _INF, 0.01), BLUE),
            _Decal((0.02, -0.015, -_INF), (_INF, 0.015, _INF), YELLOW)]
    if name == "008_pudding_box":
        return [_Box(BROWN, size=(0.110, 0.035, 0.089), radius=0.002)], [
            _Decal((-_INF, -_INF, 0.015), (_INF, -0.013, _INF), WHITE),
            _Decal((0.01, 0.013, -_INF), (_INF, _INF, _INF), YELLOW, stripe_axis=2, stripe_period=0.015)]
    if name == "009_gelatin_box":
        return [_Box((0.85, 0.25, 0.35), size=(0.085, 0.028, 0.073), radius=0.002)], [
            _Decal((-_INF, -_INF, 0.01), (_INF, -0.01, _INF), WHITE),
            _Decal((-_INF, 0.01, -_INF), (0.0, _INF, _INF), BLUE)]
    if name == "010_potted_meat_can":
        return [_Box(BLUE, size=(0.097, 0.050, 0.082), radius=0.010, step=0.01)], [
            _Decal((-_INF, -_INF, 0.030), (_INF, _INF, _INF), SILVER),
            _Decal((-0.03, -_INF, -0.025), (0.035, -0.015, 0.015), YELLOW),
            _Decal((-0.02, -_INF, -0.02), (0.02, -0.015, 0.0), RED, stripe_axis=0, stripe_period=0.01)]
    if name == "011_banana":
        pts = [(0.095 * math.sin(t), 0.0, 0.11 * (1 - math.cos(t))) for t in np.linspace(-0.9, 0.9, 6)]
        radii = [0.010, 0.016, 0.018, 0.018, 0.016]
        parts = [_capsule(pts[i], pts[i + 1], radii[i], YELLOW) for i in range(5)]
        return parts, [_Decal((0.07, -_INF, -_INF), (_INF, _INF, _INF), BROWN),
                       _Decal((-_INF, -_INF, -_INF), (-0.075, _INF, _INF), (0.35, 0.45, 0.10))]
    if name == "019_pitcher_base":
        prof = ((0.0, -0.1175), (0.050, -0.1175), (0.054, -0.110), (0.062, -0.02), (0.056, 0.06),
                (0.048, 0.1175), (0.042, 0.1175), (0.0, 0.1175))
        handle = [_capsule((0.055, 0.0, 0.08), (0.10, 0.0, 0.06), 0.010, BLUE),
                  _capsule((0.10, 0.0, 0.06), (0.10, 0.0, -0.04), 0.010, BLUE),
                  _capsule((0.10, 0.0, -0.04), (0.058, 0.0, -0.07), 0.010, BLUE)]
        return [_Lathe(BLUE, profile=prof)] + handle, [
            _Decal((-_INF, -_INF, 0.09), (_INF, _INF, _INF), (0.20, 0.40, 0.85))]
    if name == "021_bleach_cleanser":
        body = _Box(WHITE, t=(0.0, 0.0, -0.030), size=(0.098, 0.065, 0.190), radius=0.018, step=0.014)
        neck = _cylinder(0.020, 0.040, WHITE, t=(0.018, 0.0, 0.080))
        cap = _cylinder(0.017, 0.030, BLUE, t=(0.018, 0.0, 0.110))
        return [body, neck, cap], [
            _Decal((-_INF, -_INF, -0.10), (_INF, -0.02, 0.01), BLUE),
            _Decal((-0.03, -_INF, -0.08), (0.02, -0.02, -0.03), YELLOW, stripe_axis=2, stripe_period=0.012),
            _Decal((-_INF, 0.02, -0.05), (_INF, _INF, 0.03), (0.60, 0.80, 0.95))]
    if name == "024_bowl":
        prof = ((0.0, -0.0265), (0.035, -0.0265), (0.045, -0.020), (0.070, 0.005), (0.0795, 0.0265),
                (0.0740, 0.0265), (0.064, 0.007), (0.040, -0.014), (0.0, -0.018))
        return [_Lathe(RED, profile=prof, segments=48)], []
    if name == "025_mug":
        prof = ((0.0, -0.041), (0.040, -0.041), (0.040, 0.041), (0.036, 0.041), (0.036, -0.035), (0.0, -0.035))
        return [_Lathe(RED, profile=prof), _ring((0.040, 0.0, 0.0), 0.025, 0.006, RED, R=_rot("x", 90))], [
            _Decal((-_INF, -0.04, -0.02), (-0.035, 0.04, 0.02), WHITE)]
    if name == "035_power_drill":
        return [_Box((0.10, 0.45, 0.40), t=(0.0, 0.0, 0.045), size=(0.180, 0.057, 0.070), radius=0.012),
                _Box(BLACK, t=(-0.040, 0.0, -0.040), size=(0.050, 0.045, 0.105), radius=0.010),
                _Box(BLACK, t=(-0.045, 0.0, -0.095), size=(0.080, 0.057, 0.030), radius=0.006),
                _cylinder(0.013, 0.045, SILVER, t=(0.110, 0.0, 0.045), R=_rot("y", 90))], [
            _Decal((0.03, -_INF, -_INF), (_INF, _INF, _INF), BLACK)]
    if name == "036_wood_block":
        return [_Box((0.80, 0.62, 0.38), size=(0.085, 0.085, 0.200), radius=0.001, step=0.018)], []
    if name == "037_scissors":
        return [_Box(SILVER, t=(0.045, 0.0, 0.0), size=(0.110, 0.022, 0.004), radius=0.0015, step=0.01),
                _ring((-0.045, 0.018, 0.0), 0.020, 0.006, (0.10, 0.35, 0.75)),
                _ring((-0.045, -0.024, 0.0), 0.017, 0.006, (0.10, 0.35, 0.75))], []
    if name == "040_large_marker":
        return [_cylinder(0.009, 0.090, WHITE, t=(0.0, 0.0, -0.0155)),
                _cylinder(0.0095, 0.030, BLACK, t=(0.0, 0.0, 0.0455))], [
            _Decal((0.004, -_INF, -0.04), (_INF, _INF, 0.0), BLACK)]
    if name in ("051_large_clamp", "052_extra_large_clamp"):
        s = 1.0 if name == "051_large_clamp" else 1.5
        orange = (0.95, 0.45, 0.05)
        return [_Box(orange, t=(0.0, 0.0, 0.0), size=(0.020 * s, 0.030 * s, 0.120 * s), radius=0.004),
                _Box(orange, t=(0.040 * s, 0.0, 0.050 * s), size=(0.080 * s, 0.030 * s, 0.020 * s), radius=0.004),
                _Box(BLACK, t=(0.040 * s, 0.0, -0.050 * s), size=(0.080 * s, 0.020 * s, 0.020 * s), radius=0.004),
                _cylinder(0.006 * s, 0.090 * s, SILVER, t=(0.065 * s, 0.0, 0.0))], []
    if name == "061_foam_brick":
        return [_Box((0.85, 0.15, 0.12), size=(0.050, 0.075, 0.050), radius=0.003, step=0.008)], []
    raise KeyError(f"unknown object name {name!r}; expected one of {OBJECT_NAMES}")


# --------------------------------------------------------------------------------------------
# Object models
# --------------------------------------------------------------------------------------------

@dataclass
class ObjectModel:
    """One object, in its own frame (metres).

    verts [V, 3] float32, normals [V, 3] float32 (unit, outward), faces [F, 3] int64,
    vert_part [V] int64 (which part each vertex belongs to), colours [V, 3] float32 in [0, 1],
    diameter (m, largest distance between two vertices).
    """

    name: str
    verts: np.ndarray
    normals: np.ndarray
    faces: np.ndarray
    vert_part: np.ndarray
    colours: np.ndarray
    diameter: float
    _parts: list[_Part]
    _decals: list[_Decal]
    _offset: np.ndarray

    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (m, negative inside) of object-frame points ``[N, 3]`` -> ``[N]``."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3) + self._offset
        return np.min(np.stack([part.sdf(p) for part in self._parts], 0), 0)

    def texture(self, points: np.ndarray, part: np.ndarray) -> np.ndarray:
        """Surface colours ``[N, 3]`` in [0, 1] at object-frame points ``[N, 3]`` of parts ``[N]``."""
        base = np.array([p.colour for p in self._parts], dtype=np.float32)
        out = base[np.asarray(part)]
        p = np.asarray(points, dtype=np.float32) + self._offset.astype(np.float32)
        for d in self._decals:
            inside = np.all((p >= np.asarray(d.lo, np.float32)) & (p <= np.asarray(d.hi, np.float32)), axis=-1)
            if not inside.any():
                continue
            col = np.broadcast_to(np.asarray(d.colour, np.float32), (int(inside.sum()), 3))
            if d.stripe_axis >= 0:
                phase = np.floor(p[inside, d.stripe_axis] / d.stripe_period) % 2
                col = col * (1.0 - 0.45 * phase[:, None])
            out[inside] = col
        return out

    def sample_surface(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points on the surface (area-weighted) and their outward normals, each ``[n, 3]``."""
        v, f = self.verts.astype(np.float64), self.faces
        area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=-1)
        idx = rng.choice(len(f), size=n, p=area / area.sum())
        r1, r2 = rng.random(n), rng.random(n)
        s = np.sqrt(r1)
        w = np.stack([1 - s, s * (1 - r2), s * r2], -1)
        pts = (v[f[idx]] * w[..., None]).sum(1)
        nrm = (self.normals[f[idx]].astype(np.float64) * w[..., None]).sum(1)
        return pts, nrm / np.linalg.norm(nrm, axis=-1, keepdims=True)


@functools.lru_cache(maxsize=None)
def get_object(name: str) -> ObjectModel:
    """The :class:`ObjectModel` of a YCB name (built once, then cached)."""
    if name not in YCB_IDS:
        raise KeyError(f"unknown object name {name!r}; expected one of {OBJECT_NAMES}")
    parts, decals = _spec(name)
    verts, normals, faces, vpart = [], [], [], []
    count = 0
    for k, part in enumerate(parts):
        v, n, f = part.mesh()
        # drop faces buried inside another part (their three vertices inside it)
        if len(parts) > 1:
            others = np.min(np.stack([q.sdf(v) for j, q in enumerate(parts) if j != k], 0), 0)
            keep = ~np.all(others[f] < -1e-4, axis=1)
            f = f[keep]
        verts.append(v)
        normals.append(n)
        faces.append(f + count)
        vpart.append(np.full(len(v), k))
        count += len(v)
    v, n, f, vp = np.concatenate(verts), np.concatenate(normals), np.concatenate(faces), np.concatenate(vpart)
    used = np.unique(f)  # drop vertices no face uses
    remap = np.full(len(v), -1)
    remap[used] = np.arange(len(used))
    v, n, vp, f = v[used], n[used], vp[used], remap[f]
    offset = (v.min(0) + v.max(0)) / 2
    v = v - offset
    model = ObjectModel(name=name, verts=v.astype(np.float32), normals=n.astype(np.float32), faces=f.astype(np.int64),
                        vert_part=vp.astype(np.int64), colours=np.zeros((len(v), 3), np.float32), diameter=0.0,
                        _parts=parts, _decals=decals, _offset=offset)
    model.colours = model.texture(model.verts, model.vert_part)
    model.diameter = mesh_diameter(v)
    return model


def load_object(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Mesh of a YCB-like object: ``(verts [V, 3] float32 metres, faces [F, 3] int64)``."""
    m = get_object(name)
    return m.verts.copy(), m.faces.copy()


def object_diameter(name: str) -> float:
    """Largest distance between two vertices of the object (metres)."""
    return get_object(name).diameter


def control_points(name: str) -> torch.Tensor:
    """The 21 control points ``[21, 3]`` (metres, object frame) of the object's bounding box."""
    return control_points_from_vertices(torch.from_numpy(get_object(name).verts))


def write_model(name: str, models_dir: str | Path, points: bool = True) -> Path:
    """Write ``<models_dir>/<name>/textured_simple.obj`` and (``points``) ``points.xyz``; return the folder.

    The OBJ holds ``v x y z r g b`` (metres, colours in [0, 1], 5 and 3 decimals) and 1-based
    ``f a b c`` lines. ``points.xyz`` lists the surface vertices, one ``x y z`` per line.
    """
    m = get_object(name)
    folder = Path(models_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# {name}: YCB-like stand-in made by hfl_lite (not the YCB scan)"]
    lines += [f"v {x:.5f} {y:.5f} {z:.5f} {r:.3f} {g:.3f} {b:.3f}" for (x, y, z), (r, g, b) in zip(m.verts, m.colours)]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in m.faces]
    (folder / "textured_simple.obj").write_text("\n".join(lines) + "\n")
    if points:
        (folder / "points.xyz").write_text("\n".join(f"{x:.5f} {y:.5f} {z:.5f}" for x, y, z in m.verts) + "\n")
    return folder
