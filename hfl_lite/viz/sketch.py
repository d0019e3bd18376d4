"""A drawn test scene for the network chapters, and boxes drawn on Matplotlib axes.

Chapters 4 to 6 run an *untrained* network to show its wiring and shapes. They need an input
that reads at a glance (a hand gripping a box, with the hand box and the object box the data
pipeline would give), not a dataset sample: :func:`grasp_sketch` draws one at any size.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

# The sketch lives in a 128-unit square, scaled to the requested size.
_UNITS = 128
_BACKGROUND = (200, 235)  # grey ramp, top to bottom
_OBJECT_RGB, _OUTLINE_RGB, _SKIN_RGB = (70, 110, 190), (30, 50, 110), (225, 170, 140)
_OBJECT = {True: [[52, 30], [112, 40], [104, 112], [44, 102]], False: [[78, 62], [122, 66], [118, 122], [74, 118]]}
_PALM = {True: (38, 70), False: (30, 70)}  # centre of the palm ellipse (axes 22 x 28, turned -20 deg)
_FINGERS = {  # (x0, y0, x1, y1): four fingers, then the thumb
    True: [(50, 50, 78, 44), (54, 62, 84, 60), (54, 74, 82, 78), (50, 86, 74, 94), (30, 48, 44, 26)],
    False: [(42, 50, 60, 40), (46, 62, 66, 58), (46, 74, 64, 76), (42, 86, 58, 92), (22, 48, 36, 26)],
}
_HAND_BOX = {True: [10.0, 20.0, 90.0, 102.0], False: [2.0, 20.0, 70.0, 102.0]}


def grasp_sketch(size: int, grasp: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A drawn hand and a box-shaped object, as the network's input.

    Args:
        size: side of the square image in pixels.
        grasp: True for fingers wrapped over the object (the boxes overlap); False for the hand
            beside the object (the boxes do not overlap, so there is no intersection box).

    Returns:
        image ``[3, size, size]`` float RGB in [0, 1] (no mean/std normalisation, as HFL-Net
        reads it), hand box ``[4]`` and object box ``[4]`` as ``(x1, y1, x2, y2)`` in pixels.
    """
    if size < 16:
        raise ValueError(f"grasp_sketch: size={size} is too small to draw a hand (at least 16 pixels)")
    k = size / _UNITS
    img = np.empty((size, size, 3), np.uint8)
    img[:] = np.linspace(*_BACKGROUND, size)[:, None, None].astype(np.uint8)
    corners = np.array(_OBJECT[grasp], dtype=np.float64)
    polygon = (corners * k).astype(np.int32)
    cv2.fillPoly(img, [polygon], _OBJECT_RGB)
    cv2.polylines(img, [polygon], True, _OUTLINE_RGB, max(1, int(k)))
    cx, cy = _PALM[grasp]
    cv2.ellipse(img, (int(cx * k), int(cy * k)), (int(22 * k), int(28 * k)), -20, 0, 360, _SKIN_RGB, -1)
    for x0, y0, x1, y1 in _FINGERS[grasp]:
        cv2.line(img, (int(x0 * k), int(y0 * k)), (int(x1 * k), int(y1 * k)), _SKIN_RGB, max(2, int(9 * k)),
                 cv2.LINE_AA)
    image = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    hand_box = torch.tensor(_HAND_BOX[grasp]) * k
    obj_box = torch.tensor([*corners.min(0), *corners.max(0)], dtype=torch.float32) * k
    return image, hand_box, obj_box


def draw_box(ax, box, color: str, label: str | None = None, lw: float = 2, **kw) -> None:
    """Outline ``box`` ``(x1, y1, x2, y2)`` (pixels; a tensor, array or sequence) on Matplotlib
    axes; extra keywords (``ls``, ``hatch``, ...) go to the rectangle."""
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = (float(v) for v in box)
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=color, lw=lw, label=label, **kw))
