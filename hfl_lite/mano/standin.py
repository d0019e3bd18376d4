"""The project's stand-in hand: an openly made asset in MANO's format (not MANO).

MANO's files may not be redistributed, so the package ships a hand of its own, built here
from simple geometry by a deterministic script, with nothing taken from MANO's data. It has
MANO's keys, shapes, joint tree and fingertip vertex numbers, so every piece of code that
reads ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` reads it unchanged; with the real files
(``MANO_ROOT``) the same code uses MANO.

Regenerate the committed files with::

    python -m hfl_lite.mano.standin --out data_samples/mano_standin

Geometry (right hand, metres). The template is a flat hand with the wrist joint at the
origin, fingers pointing along -x, the thumb on the +z side, the back of the hand facing
+y and the palm -y. Internally it is built in an anatomical frame (u along the fingers,
v towards the thumb, w out of the back of the hand); ``x = -u, y = w, z = v``.

Mesh: one connected surface, open only at the wrist (a 16-edge loop), hence
``faces = 2 * vertices - 2 - 16``: 778 vertices, 1538 triangles.

==========================  =========  ==========================================
part                        vertices   triangles
==========================  =========  ==========================================
wrist loop                  16         16 + 40 (band to the first palm row)
palm: 6 rows of 40          240 - 3    5 bands x 80 - 16 (thumb opening) + 3 x 2 (webs)
4 fingers: 10 rings of 10   4 x 101    4 x (10 x 20 + 10)
  + a tip vertex
thumb: 10 rings of 12       121        10 x 24 + 12
  + a tip vertex
==========================  =========  ==========================================

The top palm row is the four fingers' base rings; the thumb grows out of a 4 x 2 quad
opening on the thumb side of the palm (its 3 inner vertices are left out). Vertices are
numbered in that order (wrist, palm, index, middle, ring, little, thumb), except the six
that manopth reads as fingertips, which sit at MANO's numbers: 745 thumb, 317 index,
444 middle (445, the middle fingertip's pad, for the left hand), 556 ring, 673 little.

Model data:

* ``J_regressor``: each joint is the mean of the ring of vertices around it (the thumb's
  CMC joint, inside the palm, a fixed mix of palm vertices around it).
* ``weights``: bone proximity. A vertex is weighted by ``exp(-(d_k^2 - d_min^2) / s^2)``
  over the bones it may follow (its finger's bones and the palm), with ``d_k`` its distance
  to the bone segments of joint ``k``; weights under 1 % are dropped.
* ``shapedirs``: ten meaningful directions, each the central difference of the template
  over one anatomical measure (see :data:`SHAPE_PARAMETERS`).
* ``posedirs``: a small corrective that keeps bent joints from thinning: vertices near a
  joint move away from the bone by up to 1.5 mm x (1 - cos(bending angle)).
* ``hands_components``: synergy-like patterns (close the hand, spread, oppose the thumb,
  point, hook, ...) orthonormalised in that order, completed to a basis of R^45;
  ``hands_mean`` a relaxed, slightly curled hand; ``hands_coeffs`` the PCA coefficients of a
  few named example poses.

The left asset is the right one mirrored (``x -> -x``, faces re-wound, pose axes mirrored).
"""
from __future__ import annotations

import argparse
import functools
import pickle
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .constants import (
    ASSET_FILES,
    MANO_PARENTS,
    N_FACES,
    N_JOINTS,
    N_VERTS,
    STANDIN_MARKER,
    TIP_VERTS_LEFT,
    TIP_VERTS_RIGHT,
)

__all__ = ["SHAPE_PARAMETERS", "EXAMPLE_POSES", "build_standin", "standin_bytes", "write_standin", "main"]

# Anatomical (u, v, w) -> output (x, y, z): x = -u, y = w, z = v (a proper rotation).
_TO_OUTPUT = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])

# ---------------------------------------------------------------------------- design
_FINGERS = ("index", "middle", "ring", "little")  # radial to ulnar
_FINGER_ROOT = {"index": 1, "middle": 4, "ring": 10, "little": 7}  # MANO joint id of the MCP
_MCP_UV = {"index": (0.088, 0.030), "middle": (0.092, 0.010), "ring": (0.088, -0.009), "little": (0.080, -0.027)}
_SPLAY = {"index": 0.10, "middle": 0.02, "ring": -0.06, "little": -0.14}  # radians towards the thumb
_PHALANX = {"index": (0.041, 0.024, 0.021), "middle": (0.045, 0.028, 0.022),
            "ring": (0.042, 0.027, 0.021), "little": (0.033, 0.020, 0.019)}  # MCP-PIP, PIP-DIP, DIP-tip
_FINGER_RADIUS = {"index": 0.0100, "middle": 0.0101, "ring": 0.0095, "little": 0.0086}
_ULNAR_GRADIENT = {"index": -1.0, "middle": 0.0, "ring": 0.5, "little": 1.0}
_V_CENTRE = 0.0015  # middle of the knuckle line (v)
# Rings along a finger: (bone, fraction of the bone, radius / base radius); the cap follows.
_FINGER_STATIONS = ((0, 0.25, 0.90), (0, 0.50, 0.86), (0, 0.75, 0.84), (1, 0.0, 0.85),
                    (1, 0.33, 0.79), (1, 0.67, 0.77), (2, 0.0, 0.77))
_FINGER_END_RADIUS = 0.75
_THUMB_STATIONS = ((0, 0.72, 1.22), (0, 0.86, 1.12), (1, 0.0, 1.07), (1, 0.33, 1.0), (1, 0.67, 0.96),
                   (2, 0.0, 0.95), (2, 0.30, 0.93))
_THUMB_END_RADIUS = 0.92
_THUMB_RADIUS = 0.0100
_THUMB_DIRS = ((0.68, 0.70, -0.20), (0.78, 0.60, -0.14), (0.85, 0.50, -0.12))  # (u, v, w) per bone
_THUMB_LENGTHS = (0.044, 0.031, 0.027)
_THUMB_NAIL = (0.0, 0.6, 0.8)  # roughly where the thumbnail faces (u, v, w)
_CAP_ANGLES = np.radians([35.0, 65.0])  # two rings on the rounded fingertip, then the tip vertex
_DORSAL_FLATTEN, _PALMAR_FLATTEN = 0.85, 0.95  # ring half-thickness / half-width

_RING = 10  # vertices per finger ring
_THUMB_RING = 12
_PALM_RING = 4 * _RING
_WRIST_RING = 16
_PALM_ROWS = 6  # 5 rows + the knuckle row (the fingers' base rings)
_ROW_FRAC = (0.12, 0.30, 0.40, 0.50, 0.72)  # of the way from the wrist to the knuckles
_ROW_HALF_WIDTH = (0.035, 0.041, 0.043, 0.043, 0.042)
_ROW_V_CENTRE = (0.0, 0.001, 0.002, 0.002, 0.002)
_ROW_DORSAL = (0.014, 0.012, 0.011, 0.0105, 0.010)
_ROW_PALMAR = (0.015, 0.0145, 0.0135, 0.012, 0.0105)
_ROW_BLEND = (0.0, 0.0, 0.0, 0.25, 0.6)  # how far each row bends towards the knuckle row
_SUPERELLIPSE = 2.6
# Palm columns spread apart around the thumb's opening (a rounder opening): theta + warp * sin(theta - centre).
_ROW_WARP = (0.45, 0.6, 0.6, 0.6, 0.3)
_WARP_CENTRE = np.radians(-40.5)
_WRIST_HALF = (0.029, 0.017)
_HOLE_ROWS = (1, 2)  # quad rows (row r to r + 1) left open for the thumb
_HOLE_COLS = (33, 34, 35, 36)  # quad columns (column c to c + 1)
# Thumb CMC joint: weights of palm vertex groups (row, columns) whose means it mixes.
_CMC_GROUPS = (((0, tuple(range(30, 40))), 0.35), ((1, tuple(range(30, 40))), 0.35), ((0, tuple(range(10))), 0.15),
               ((1, tuple(range(10))), 0.15))


@dataclass(frozen=True)
class _Measures:
    """Anatomical measures (1 = the design values above, 0 = no change for offsets)."""

    scale: float = 1.0
    finger_length: float = 1.0
    palm_width: float = 1.0
    finger_thickness: float = 1.0
    palm_length: float = 1.0
    thumb_length: float = 1.0
    palm_thickness: float = 1.0
    ulnar_finger_length: float = 0.0
    thumb_spread: float = 0.0
    flesh: float = 1.0


#: What each of the ten shape values changes, and by how much per unit of ``beta``.
SHAPE_PARAMETERS = (
    ("scale", 0.04, "overall size, +4 % per unit"),
    ("finger_length", 0.05, "length of the four fingers, +5 %"),
    ("palm_width", 0.05, "palm width and finger spacing, +5 %"),
    ("finger_thickness", 0.08, "finger girth, +8 %"),
    ("palm_length", 0.05, "palm length (knuckles move out), +5 %"),
    ("thumb_length", 0.06, "thumb length, +6 %"),
    ("palm_thickness", 0.10, "palm thickness, +10 %"),
    ("ulnar_finger_length", 0.06, "ring and little fingers longer, index shorter, 6 %"),
    ("thumb_spread", 0.10, "thumb turned away from the fingers, 0.1 rad"),
    ("flesh", 0.06, "all soft tissue thicker, +6 %"),
)


# ---------------------------------------------------------------------------- topology
@dataclass(frozen=True)
class _Topology:
    wrist: np.ndarray  # [16] natural ids
    palm: np.ndarray  # [6, 40] natural ids (-1 where the thumb opening removed a vertex)
    finger_rings: dict  # name -> [10, 10] ids of rings 1..10 (ring 0 is in the knuckle row)
    finger_apex: dict  # name -> id
    thumb_loop: np.ndarray  # [12] ids of the opening (palm vertices)
    thumb_rings: np.ndarray  # [10, 12]
    thumb_apex: int
    faces: np.ndarray  # [1538, 3] natural ids
    order: np.ndarray  # [778] natural id of each final vertex number
    part: np.ndarray  # [778] natural: 0 palm/wrist, 1-4 fingers (radial to ulnar), 5 thumb


def _knuckle_column(finger: int, ring_index: int) -> int:
    """Palm column of a finger's base-ring vertex (ring: 5 dorsal radial->ulnar, 5 palmar back)."""
    return 5 * finger + ring_index if ring_index < 5 else 39 - 5 * finger - (9 - ring_index)


def _band(a, b) -> list:
    """Triangles joining two loops of equal length, winding as a tube running from a to b."""
    n = len(a)
    out = []
    for i in range(n):
        j = (i + 1) % n
        out += [(a[i], a[j], b[j]), (a[i], b[j], b[i])]
    return out


def _zipper(a, b) -> list:
    """Triangles joining loops of different lengths (both evenly spaced in angle, half-offset)."""
    na, nb = len(a), len(b)
    out, i, j = [], 0, 0
    while i < na or j < nb:
        next_a = (i + 1.5) / na if i < na else np.inf
        next_b = (j + 1.5) / nb if j < nb else np.inf
        if next_a <= next_b:
            out.append((a[i % na], a[(i + 1) % na], b[j % nb]))
            i += 1
        else:
            out.append((a[i % na], b[(j + 1) % nb], b[j % nb]))
            j += 1
    return out


def _fan(a, apex) -> list:
    n = len(a)
    return [(a[i], a[(i + 1) % n], apex) for i in range(n)]


@functools.lru_cache(maxsize=1)
def _topology() -> _Topology:
    next_id = iter(range(N_VERTS))
    wrist = np.array([next(next_id) for _ in range(_WRIST_RING)])
    removed = {(2, c) for c in _HOLE_COLS[1:]}
    palm = -np.ones((_PALM_ROWS, _PALM_RING), dtype=np.int64)
    for r in range(_PALM_ROWS):
        for c in range(_PALM_RING):
            if (r, c) not in removed:
                palm[r, c] = next(next_id)
    finger_rings, finger_apex = {}, {}
    for name in _FINGERS:
        finger_rings[name] = np.array([[next(next_id) for _ in range(_RING)] for _ in range(10)])
        finger_apex[name] = next(next_id)
    thumb_rings = np.array([[next(next_id) for _ in range(_THUMB_RING)] for _ in range(10)])
    thumb_apex = next(next_id)
    assert next(next_id, None) is None

    faces = _zipper(wrist, palm[0])
    hole = {(r, c) for r in _HOLE_ROWS for c in _HOLE_COLS}
    for r in range(_PALM_ROWS - 1):
        for c in range(_PALM_RING):
            if (r, c) not in hole:
                c1 = (c + 1) % _PALM_RING
                faces += [(palm[r, c], palm[r, c1], palm[r + 1, c1]), (palm[r, c], palm[r + 1, c1], palm[r + 1, c])]
    top = palm[-1]
    for f in range(3):  # webs between neighbouring fingers
        d4, d0_next, p0_next, p4 = top[5 * f + 4], top[5 * f + 5], top[34 - 5 * f], top[35 - 5 * f]
        faces += [(d4, d0_next, p0_next), (d4, p0_next, p4)]
    for f, name in enumerate(_FINGERS):
        rings = [top[[_knuckle_column(f, i) for i in range(_RING)]]] + list(finger_rings[name])
        for a, b in zip(rings[:-1], rings[1:]):
            faces += _band(a, b)
        faces += _fan(rings[-1], finger_apex[name])
    r0, r1 = _HOLE_ROWS[0], _HOLE_ROWS[-1] + 1
    c0, cols = _HOLE_COLS[0], [*_HOLE_COLS, (_HOLE_COLS[-1] + 1) % _PALM_RING]
    thumb_loop = np.array([palm[r0, c] for c in cols] + [palm[r, cols[-1]] for r in range(r0 + 1, r1)]
                          + [palm[r1, c] for c in reversed(cols)] + [palm[r, c0] for r in range(r1 - 1, r0, -1)])
    rings = [thumb_loop] + list(thumb_rings)
    for a, b in zip(rings[:-1], rings[1:]):
        faces += _band(a, b)
    faces += _fan(rings[-1], thumb_apex)
    faces = np.array(faces, dtype=np.int64)

    # Final numbering: natural order, with manopth's fingertip vertices at MANO's numbers.
    fixed = {TIP_VERTS_RIGHT[1]: finger_apex["index"], TIP_VERTS_RIGHT[2]: finger_apex["middle"],
             TIP_VERTS_LEFT[2]: finger_rings["middle"][-1, 7], TIP_VERTS_RIGHT[3]: finger_apex["ring"],
             TIP_VERTS_RIGHT[4]: finger_apex["little"], TIP_VERTS_RIGHT[0]: thumb_apex}
    rest = iter(n for n in range(N_VERTS) if n not in set(fixed.values()))
    order = np.array([fixed[k] if k in fixed else next(rest) for k in range(N_VERTS)])
    part = np.zeros(N_VERTS, dtype=np.int64)
    for f, name in enumerate(_FINGERS):
        part[finger_rings[name].ravel()] = f + 1
        part[finger_apex[name]] = f + 1
    part[thumb_rings.ravel()] = 5
    part[thumb_apex] = 5
    return _Topology(wrist, palm, finger_rings, finger_apex, thumb_loop, thumb_rings, thumb_apex, faces, order, part)


# ---------------------------------------------------------------------------- geometry
def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _ring(centre, e1, e2, radius, angles) -> np.ndarray:
    """Ring points ``centre + r cos(a) e1 + r k sin(a) e2`` (k flattens the back and the pad)."""
    c, s = np.cos(angles), np.sin(angles)
    k = np.where(s > 0, _DORSAL_FLATTEN, _PALMAR_FLATTEN)
    return centre + radius * (c[:, None] * e1 + (k * s)[:, None] * e2)


def _superellipse(theta, half_width, half_thickness_dorsal, half_thickness_palmar):
    """(v, w) on a rounded-rectangle cross-section; theta from +v (radial) towards +w (dorsal)."""
    c, s = np.cos(theta), np.sin(theta)
    e = 2.0 / _SUPERELLIPSE
    v = half_width * np.sign(c) * np.abs(c) ** e
    w = np.where(s > 0, half_thickness_dorsal, half_thickness_palmar) * np.sign(s) * np.abs(s) ** e
    return v, w


def _chain_rings(joints, dirs, lengths, stations, base_radius, end_radius, frame_of, angles):
    """Rings along a bone chain (stations, then the rounded cap) and the tip point."""
    out = []
    for bone, t, factor in stations:
        d = dirs[bone] if t > 0 or bone == 0 else _unit(dirs[bone - 1] + dirs[bone])
        e1, e2 = frame_of(d)
        out.append(_ring(joints[bone] + t * lengths[bone] * dirs[bone], e1, e2, factor * base_radius, angles))
    tip = joints[-1] + lengths[-1] * dirs[-1]
    r_end = end_radius * base_radius
    e1, e2 = frame_of(dirs[-1])
    out.append(_ring(tip - r_end * dirs[-1], e1, e2, r_end, angles))
    for gamma in _CAP_ANGLES:
        out.append(_ring(tip - r_end * (1 - np.sin(gamma)) * dirs[-1], e1, e2, r_end * np.cos(gamma), angles))
    return out, tip


@dataclass(frozen=True)
class _Skeleton:
    tips: dict  # finger name -> fingertip point (u, v, w)
    dirs: dict  # finger name -> [3, 3] bone directions


def _geometry(m: _Measures) -> tuple[np.ndarray, _Skeleton]:
    """Template vertices in natural order (u, v, w), and the skeleton they were built on."""
    topo = _topology()
    verts = np.zeros((N_VERTS, 3))
    tips, bone_dirs = {}, {}
    finger_angles = np.radians(36.0 * (np.arange(_RING) + 0.5))
    up = np.array([0.0, 0.0, 1.0])

    def finger_frame(d):  # ring axes: e1 across the finger towards the thumb, e2 out of the back
        return np.cross(up, d), up

    # Fingers (their base rings are the palm's knuckle row).
    knuckle_row = np.zeros((_PALM_RING, 3))
    for f, name in enumerate(_FINGERS):
        u, v = _MCP_UV[name]
        mcp = np.array([u * m.palm_length, _V_CENTRE + (v - _V_CENTRE) * m.palm_width, 0.0])
        d = np.array([np.cos(_SPLAY[name]), np.sin(_SPLAY[name]), 0.0])
        lengths = np.array(_PHALANX[name]) * m.finger_length * (1 + m.ulnar_finger_length * _ULNAR_GRADIENT[name])
        chain = mcp + np.concatenate([[0.0], np.cumsum(lengths[:2])])[:, None] * d
        radius = _FINGER_RADIUS[name] * m.finger_thickness * m.flesh
        rings, tip = _chain_rings(chain, [d, d, d], lengths, _FINGER_STATIONS, radius, _FINGER_END_RADIUS,
                                  finger_frame, finger_angles)
        base = _ring(mcp, *finger_frame(d), radius, finger_angles)
        knuckle_row[[_knuckle_column(f, i) for i in range(_RING)]] = base
        verts[topo.finger_rings[name].ravel()] = np.concatenate(rings)
        verts[topo.finger_apex[name]] = tip
        tips[name], bone_dirs[name] = tip, np.stack([d, d, d])

    # Wrist loop and palm rows.
    theta = 2 * np.pi * (np.arange(_WRIST_RING) + 0.5) / _WRIST_RING
    v, w = _superellipse(theta, _WRIST_HALF[0] * (1 + 0.5 * (m.palm_width - 1)),
                         _WRIST_HALF[1] * (1 + 0.5 * (m.palm_thickness - 1)) * m.flesh,
                         _WRIST_HALF[1] * (1 + 0.5 * (m.palm_thickness - 1)) * m.flesh)
    verts[topo.wrist] = np.stack([np.zeros_like(v), v, w], axis=1)
    theta = 2 * np.pi * (np.arange(_PALM_RING) + 0.5) / _PALM_RING
    for r in range(_PALM_ROWS):
        if r == _PALM_ROWS - 1:
            row = knuckle_row
        else:
            thick = m.palm_thickness * m.flesh
            warped = theta + _ROW_WARP[r] * np.sin(theta - _WARP_CENTRE)
            v, w = _superellipse(warped, _ROW_HALF_WIDTH[r] * m.palm_width, _ROW_DORSAL[r] * thick,
                                 _ROW_PALMAR[r] * thick)
            v = v + _V_CENTRE + (_ROW_V_CENTRE[r] - _V_CENTRE) * m.palm_width
            b = _ROW_BLEND[r]
            row = np.stack([_ROW_FRAC[r] * knuckle_row[:, 0], (1 - b) * v + b * knuckle_row[:, 1],
                            (1 - b) * w + b * knuckle_row[:, 2]], axis=1)
        keep = topo.palm[r] >= 0
        verts[topo.palm[r][keep]] = row[keep]

    # Thumb: its CMC joint is a fixed mix of palm vertices; the rings start at the opening.
    cmc = sum(wt * verts[topo.palm[r, list(cols)]].mean(0) for (r, cols), wt in _CMC_GROUPS)
    spread = np.array([[np.cos(m.thumb_spread), -np.sin(m.thumb_spread), 0.0],
                       [np.sin(m.thumb_spread), np.cos(m.thumb_spread), 0.0], [0.0, 0.0, 1.0]])
    dirs = _unit(np.array(_THUMB_DIRS)) @ spread.T
    lengths = np.array(_THUMB_LENGTHS) * m.thumb_length
    chain = np.stack([cmc, cmc + lengths[0] * dirs[0], cmc + lengths[0] * dirs[0] + lengths[1] * dirs[1]])
    nail = np.array(_THUMB_NAIL)

    def thumb_frame(d):  # e2 towards the nail, e1 = e2 x d (the same handedness as the fingers)
        e2 = _unit(nail - (nail @ d) * d)
        return np.cross(e2, d), e2

    e1, e2 = thumb_frame(dirs[0])
    rel = verts[topo.thumb_loop] - chain[0]
    psi = np.arctan2(rel @ e2, rel @ e1) - 2 * np.pi * np.arange(_THUMB_RING) / _THUMB_RING
    phase = np.angle(np.exp(1j * psi).sum())
    thumb_angles = phase + 2 * np.pi * np.arange(_THUMB_RING) / _THUMB_RING
    radius = _THUMB_RADIUS * m.flesh
    rings, tip = _chain_rings(chain, dirs, lengths, _THUMB_STATIONS, radius, _THUMB_END_RADIUS, thumb_frame,
                              thumb_angles)
    verts[topo.thumb_rings.ravel()] = np.concatenate(rings)
    verts[topo.thumb_apex] = tip
    tips["thumb"], bone_dirs["thumb"] = tip, dirs
    return verts * m.scale, _Skeleton({k: t * m.scale for k, t in tips.items()}, bone_dirs)


# ---------------------------------------------------------------------------- model data
_SKIN_SIGMA = 0.006  # metres: how far a bone's influence reaches past its neighbour's
_SKIN_MIN = 0.01
_BULGE = 0.0015  # metres of corrective push at a half-and-half vertex, per (1 - cos angle)
# Joints each part may follow: palm (0), fingers radial to ulnar (1-4), thumb (5).
_PART_JOINTS = {0: (0, 1, 4, 7, 10, 13), 5: (0, 13, 14, 15)} | {
    f + 1: (0, _FINGER_ROOT[n], _FINGER_ROOT[n] + 1, _FINGER_ROOT[n] + 2) for f, n in enumerate(_FINGERS)}


def _regressor(topo: _Topology) -> np.ndarray:
    """Dense [16, 778] joint regressor in natural vertex order (rows sum to 1)."""
    reg = np.zeros((N_JOINTS, N_VERTS))
    reg[0, topo.wrist] = 1.0 / _WRIST_RING
    for f, name in enumerate(_FINGERS):
        root = _FINGER_ROOT[name]
        reg[root, topo.palm[-1, [_knuckle_column(f, i) for i in range(_RING)]]] = 1.0 / _RING
        reg[root + 1, topo.finger_rings[name][3]] = 1.0 / _RING  # PIP ring
        reg[root + 2, topo.finger_rings[name][6]] = 1.0 / _RING  # DIP ring
    for (r, cols), wt in _CMC_GROUPS:
        reg[13, topo.palm[r, list(cols)]] += wt / len(cols)
    reg[14, topo.thumb_rings[2]] = 1.0 / _THUMB_RING  # MCP ring
    reg[15, topo.thumb_rings[5]] = 1.0 / _THUMB_RING  # IP ring
    return reg


def _bone_segments(joints: np.ndarray, tips: dict) -> dict:
    """Joint id -> list of (start, end) segments that the joint's transform carries."""
    children = {k: [c for c in range(N_JOINTS) if MANO_PARENTS[c] == k] for k in range(N_JOINTS)}
    leaf_tip = {_FINGER_ROOT[n] + 2: tips[n] for n in _FINGERS} | {15: tips["thumb"]}
    return {k: [(joints[k], joints[c]) for c in children[k]] or [(joints[k], leaf_tip[k])] for k in range(N_JOINTS)}


def _segment_distance(points, a, b) -> np.ndarray:
    ab = b - a
    t = np.clip(((points - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def _skinning(verts, part, segments) -> np.ndarray:
    """[778, 16] weights from bone proximity within each vertex's part (see module docstring)."""
    dist = np.full((N_VERTS, N_JOINTS), np.inf)
    for k, segs in segments.items():
        dist[:, k] = np.min([_segment_distance(verts, a, b) for a, b in segs], axis=0)
    allowed = np.zeros((N_VERTS, N_JOINTS), dtype=bool)
    for p, ks in _PART_JOINTS.items():
        allowed[np.ix_(part == p, ks)] = True
    d2 = np.where(allowed, dist**2, np.inf)
    w = np.exp(-(d2 - d2.min(1, keepdims=True)) / _SKIN_SIGMA**2)
    w /= w.sum(1, keepdims=True)
    w[w < _SKIN_MIN] = 0.0
    return w / w.sum(1, keepdims=True)


def _pose_corrective(verts, weights, segments) -> np.ndarray:
    """[778, 3, 135] posedirs (u, v, w): a radial push near each joint, driven by (1 - cos angle)."""
    posedirs = np.zeros((N_VERTS, 3, 9 * (N_JOINTS - 1)))
    for k in range(1, N_JOINTS):
        blend = 4.0 * weights[:, k] * weights[:, MANO_PARENTS[k]]
        a, b = segments[k][0]
        d = _unit(b - a)
        rel = verts - a
        radial = rel - np.outer(rel @ d, d)
        norm = np.linalg.norm(radial, axis=1, keepdims=True)
        push = _BULGE * blend[:, None] * radial / np.maximum(norm, 1e-9)
        for axis in range(3):  # -0.5 * sum of the diagonal of (R - I) = 1 - cos(angle)
            posedirs[:, :, 9 * (k - 1) + 4 * axis] = -0.5 * push
    return posedirs


def _joint_axes(skel: _Skeleton) -> dict:
    """MANO joint id -> (flexion, abduction, twist) unit axes (u, v, w) of the flat hand."""
    up = np.array([0.0, 0.0, 1.0])
    palmward = _unit([0.0, -0.8, -0.6])
    axes = {}
    for name in _FINGERS:
        d = skel.dirs[name][0]
        for i in range(3):
            axes[_FINGER_ROOT[name] + i] = (np.cross(up, d), up, d)
    for i, d in enumerate(skel.dirs["thumb"]):
        t = _unit(palmward - (palmward @ d) * d)
        axes[13 + i] = (np.cross(d, t), up, d)
    return axes


def _pose_vector(axes: dict, amounts: dict) -> np.ndarray:
    """45 axis-angle numbers (u, v, w) from {joint: (flexion, abduction, twist) in radians}."""
    out = np.zeros((15, 3))
    for joint, amount in amounts.items():
        out[joint - 1] = sum(a * ax for a, ax in zip(amount, axes[joint]))
    return out.ravel()


def _finger_amounts(per_joint, fingers=_FINGERS, scale=None) -> dict:
    """{joint: (flex, 0, 0)} for the given fingers; ``per_joint`` = flexion of MCP, PIP, DIP."""
    scale = scale or {}
    return {_FINGER_ROOT[n] + i: (per_joint[i] * scale.get(n, 1.0), 0.0, 0.0) for n in fingers for i in range(3)}


def _synergies(axes: dict) -> tuple[list, np.ndarray, dict]:
    """Named pose patterns (before orthonormalisation), the relaxed mean and example poses."""
    oppose = (0.8, 0.0, 0.6)
    pv = functools.partial(_pose_vector, axes)
    close = pv(_finger_amounts((0.9, 1.1, 0.7))
               | {13: tuple(0.5 * x for x in oppose), 14: (0.5, 0, 0), 15: (0.6, 0, 0)})
    spread = pv({1: (0, 0.5, 0), 4: (0, 0.1, 0), 10: (0, -0.3, 0), 7: (0, -0.6, 0), 13: (0, 0.5, 0)})
    opposition = pv({13: oppose, 14: (0.4, 0, 0), 15: (0.3, 0, 0)})
    point = pv(_finger_amounts((-0.5, -0.5, -0.5), ("index",))
               | _finger_amounts((0.8, 0.8, 0.8), ("middle", "ring", "little")) | {14: (0.4, 0, 0)})
    hook = pv(_finger_amounts((-0.5, 0.9, 0.7)))
    ulnar = pv(_finger_amounts((1.0, 1.0, 0.0), scale={"index": -0.4, "middle": -0.15, "ring": 0.3, "little": 0.6}))
    thumb_flex = pv({14: (1.0, 0, 0), 15: (1.0, 0, 0)})
    pinch = pv(_finger_amounts((0.6, 0.7, 0.3), ("index",)) | {13: tuple(0.6 * x for x in oppose), 14: (0.3, 0, 0)})
    twist = pv({1: (0, 0, -0.2), 4: (0, 0, -0.05), 10: (0, 0, 0.15), 7: (0, 0, 0.3)})
    patterns = [close, spread, opposition, point, hook, ulnar, thumb_flex, pinch, twist]
    mean = pv(_finger_amounts((0.2, 0.3, 0.15), scale={"index": 0.8, "middle": 1.0, "ring": 1.15, "little": 1.3})
              | {13: tuple(0.25 * x for x in oppose), 14: (0.15, 0, 0), 15: (0.2, 0, 0)})
    fist_fingers = pv(_finger_amounts((1.2, 1.4, 0.9)))
    examples = {
        "flat": np.zeros(45),
        "relaxed": mean,
        "fist": fist_fingers + pv({13: tuple(0.6 * x for x in oppose), 14: (0.6, 0, 0), 15: (0.7, 0, 0)}),
        "point": mean + point,
        "pinch": mean + 1.2 * pinch,
        "spread": spread * 1.5,
        "hook": hook * 1.2,
        "thumbs_up": fist_fingers + pv({13: (0, 0.3, 0), 14: (-0.2, 0, 0), 15: (-0.2, 0, 0)}),
    }
    return patterns, mean, examples


def _orthonormal_basis(patterns: list) -> np.ndarray:
    """Gram-Schmidt (twice) over the patterns, then the standard basis: [45, 45] orthonormal rows."""
    basis = []
    for candidate in list(patterns) + list(np.eye(45)):
        v = np.array(candidate, dtype=np.float64)
        for _ in range(2):
            for b in basis:
                v = v - (v @ b) * b
        n = np.linalg.norm(v)
        if n > 1e-6 and len(basis) < 45:
            basis.append(v / n)
    return np.array(basis)


#: Names of the rows of ``hands_coeffs`` (example poses) in the stand-in asset.
EXAMPLE_POSES = ("flat", "relaxed", "fist", "point", "pinch", "spread", "hook", "thumbs_up")


def _out(x: np.ndarray) -> np.ndarray:
    """(u, v, w) vectors along the last axis -> output (x, y, z)."""
    return x @ _TO_OUTPUT.T


def _pose_out(p: np.ndarray) -> np.ndarray:
    """45 (or [..., 45]) axis-angle numbers (u, v, w) -> output frame."""
    return _out(p.reshape(*p.shape[:-1], 15, 3)).reshape(p.shape)


def _check_mesh(faces: np.ndarray) -> None:
    """One oriented surface, open only at a 16-edge wrist loop."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    if len({tuple(e) for e in directed.tolist()}) != len(directed):
        raise RuntimeError("stand-in mesh: an edge is used twice in the same direction (bad winding)")
    undirected = {}
    for a, b in directed.tolist():
        undirected[(min(a, b), max(a, b))] = undirected.get((min(a, b), max(a, b)), 0) + 1
    open_edges = [e for e, n in undirected.items() if n == 1]
    if len(open_edges) != _WRIST_RING or len(np.unique(faces)) != N_VERTS:
        raise RuntimeError(f"stand-in mesh: {len(open_edges)} open edges (expected the 16 of the wrist)")


def _round(x: np.ndarray, decimals: int) -> np.ndarray:
    """Round and store as float32 (rounding first keeps the files identical across machines)."""
    return np.round(x, decimals).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _build_cached(side: str) -> dict:
    import scipy.sparse as sp

    topo = _topology()
    base = _Measures()
    verts, skel = _geometry(base)
    reg = _regressor(topo)
    joints = reg @ verts
    segments = _bone_segments(joints, skel.tips)
    weights = _skinning(verts, topo.part, segments)
    posedirs = _out(_pose_corrective(verts, weights, segments).transpose(0, 2, 1)).transpose(0, 2, 1)
    shapedirs = np.zeros((N_VERTS, 3, len(SHAPE_PARAMETERS)))
    for i, (name, step, _) in enumerate(SHAPE_PARAMETERS):
        plus = _geometry(replace(base, **{name: getattr(base, name) + step}))[0]
        minus = _geometry(replace(base, **{name: getattr(base, name) - step}))[0]
        shapedirs[:, :, i] = _out((plus - minus) / 2.0)
    patterns, mean, examples = _synergies(_joint_axes(skel))
    components = _pose_out(_orthonormal_basis(patterns))
    mean = _pose_out(mean)
    coeffs = (_pose_out(np.array([examples[n] for n in EXAMPLE_POSES])) - mean) @ components.T

    # Final vertex numbering (fingertips at MANO's numbers).
    order = topo.order
    new_id = np.empty(N_VERTS, dtype=np.int64)
    new_id[order] = np.arange(N_VERTS)
    faces = new_id[topo.faces]
    verts, weights, reg = _out(verts)[order], weights[order], reg[:, order]
    posedirs, shapedirs = posedirs[order], shapedirs[order]
    joints = _out(joints)

    if side == "left":
        flip = np.array([-1.0, 1.0, 1.0])
        axis_flip = np.tile([1.0, -1.0, -1.0], 15)  # a mirrored rotation's axis-angle
        verts, joints = verts * flip, joints * flip
        shapedirs = shapedirs * flip[None, :, None]
        feature_sign = np.tile(np.outer(flip, flip).ravel(), 15)  # (R - I)[a, b] -> s_a s_b (R - I)[a, b]
        posedirs = posedirs * flip[None, :, None] * feature_sign[None, None, :]
        components, mean = components * axis_flip, mean * axis_flip
        faces = faces[:, [0, 2, 1]]
    elif side != "right":
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    _check_mesh(faces)
    assert faces.shape == (N_FACES, 3)

    reg = np.round(reg, 6)
    return {
        "v_template": _round(verts, 7),
        "shapedirs": _round(shapedirs, 7),
        "posedirs": _round(posedirs, 7),
        "J_regressor": sp.csc_matrix(reg.astype(np.float32)),
        "weights": _round(weights, 6),
        "kintree_table": np.array([MANO_PARENTS, range(N_JOINTS)], dtype=np.int64),
        "f": faces.astype(np.int32),
        "hands_components": _round(components, 7),
        "hands_mean": _round(mean, 7),
        "hands_coeffs": _round(coeffs, 6),
        "J": _round(joints, 7),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        STANDIN_MARKER: {
            "description": "hfl_lite's stand-in hand: an openly made asset in MANO's format, NOT MANO. "
                           "Made by hfl_lite/mano/standin.py from simple geometry; no MANO data used.",
            "version": 1,
            "side": side,
            "hands_coeffs_names": list(EXAMPLE_POSES),
            "shape_parameters": [name for name, _, _ in SHAPE_PARAMETERS],
        },
    }


def build_standin(side: str = "right") -> dict:
    """The stand-in asset as MANO's pickle holds it (numpy float32 arrays, CSC ``J_regressor``).

    Args:
        side: ``"right"`` or ``"left"`` (the left hand is the right one mirrored in x).

    Returns:
        A fresh dict (copies) with MANO's keys plus ``"hfl_lite_standin"`` (a description).
    """
    import copy

    return copy.deepcopy(_build_cached(side))


def standin_bytes(side: str = "right") -> bytes:
    """The stand-in asset pickled as the committed file is (protocol 4: raw bytes, no inflation)."""
    return pickle.dumps(_build_cached(side), protocol=4)


def write_standin(out_dir: str | Path) -> list[Path]:
    """Write ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for side, name in ASSET_FILES.items():
        path = out_dir / name
        path.write_bytes(standin_bytes(side))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hfl_lite.mano.standin",
                                     description="Write the stand-in hand asset (MANO format, not MANO).")
    parser.add_argument("--out", required=True, help="folder for MANO_RIGHT.pkl and MANO_LEFT.pkl")
    args = parser.parse_args(argv)
    for path in write_standin(args.out):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
