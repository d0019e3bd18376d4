"""hfl_lite.viz helpers the book relies on: thinning long curves for static pages, the drawn
test scene of chapters 4-6, boxes on Matplotlib axes."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from hfl_lite.geometry.camera import box_intersection
from hfl_lite.viz import draw_box, figure_html, grasp_sketch, thin_line_traces


def noisy_curve(n=50_000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=np.float64)
    y = 1000 * np.exp(-x / 8000) + rng.normal(0, 20, n)
    y[int(0.63 * n)] = 5000.0  # one spike, as a training loss has
    return x, y


def test_thinning_keeps_the_envelope_of_a_long_curve():
    x, y = noisy_curve()
    fig = thin_line_traces(go.Figure(go.Scatter(x=x, y=y, mode="lines")), max_points=1000)
    tx, ty = np.asarray(fig.data[0].x, dtype=np.float64), np.asarray(fig.data[0].y, dtype=np.float64)
    assert len(tx) <= 1000 and len(tx) == len(ty)
    assert np.all(np.diff(tx) > 0), "points must stay in their order"
    assert ty.max() == pytest.approx(5000.0) and ty.min() == pytest.approx(y.min(), rel=1e-6)
    # every kept point is a point of the curve
    np.testing.assert_allclose(ty, y[tx.astype(int)], rtol=1e-6)
    # each run of 100 points is represented by its own extremes (a slow loop over the runs)
    for run in np.array_split(np.arange(len(y)), 500):
        inside = (tx >= run[0]) & (tx <= run[-1])
        assert ty[inside].max() == pytest.approx(y[run].max(), rel=1e-6)
        assert ty[inside].min() == pytest.approx(y[run].min(), rel=1e-6)


def test_thinning_leaves_short_curves_markers_and_gaps_alone():
    x, y = noisy_curve(3000)
    short = go.Scatter(x=x[:500], y=y[:500], mode="lines")
    markers = go.Scatter(x=x, y=y, mode="lines+markers")
    text = go.Scatter(x=[str(v) for v in x], y=y, mode="lines")
    fig = thin_line_traces(go.Figure([short, markers, text]), max_points=1000)
    assert [len(t.x) for t in fig.data] == [500, 3000, 3000]
    gappy = y.copy()
    gappy[1000:1500] = np.nan
    thinned = thin_line_traces(go.Figure(go.Scatter(y=gappy)), max_points=1000).data[0]
    assert len(thinned.y) <= 1000 and np.isnan(np.asarray(thinned.y, dtype=np.float64)).any()


def test_book_fragment_of_a_long_curve_is_small_and_leaves_the_figure_alone():
    x, y = noisy_curve()
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines"))
    html = figure_html(fig)
    assert len(html) < 60_000, f"{len(html)} characters for one curve"
    assert len(fig.data[0].x) == len(x)  # the caller's figure is not thinned


@pytest.mark.parametrize("size", [64, 128, 256])
def test_grasp_sketch_draws_what_its_boxes_say(size):
    image, hand_box, obj_box = grasp_sketch(size)
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    skin = (image - torch.tensor([225, 170, 140])[:, None, None] / 255).abs().amax(0) < 0.02
    obj = (image - torch.tensor([70, 110, 190])[:, None, None] / 255).abs().amax(0) < 0.02
    ys, xs = torch.nonzero(skin, as_tuple=True)
    assert len(xs) > size  # the hand is drawn, and lies inside its box (one pixel of anti-aliasing)
    assert hand_box[0] - 1 <= xs.min() and xs.max() <= hand_box[2] + 1
    assert hand_box[1] - 1 <= ys.min() and ys.max() <= hand_box[3] + 1
    ys, xs = torch.nonzero(obj, as_tuple=True)
    assert obj_box[0] - 1 <= xs.min() and xs.max() <= obj_box[2] + 1
    assert obj_box[1] - 1 <= ys.min() and ys.max() <= obj_box[3] + 1
    _, overlaps = box_intersection(hand_box, obj_box)
    assert bool(overlaps)
    _, hand_apart, obj_apart = grasp_sketch(size, grasp=False)
    assert not bool(box_intersection(hand_apart, obj_apart)[1])


def test_grasp_sketch_scales_its_boxes_and_refuses_tiny_images():
    _, hand_small, obj_small = grasp_sketch(64)
    _, hand_big, obj_big = grasp_sketch(256)
    torch.testing.assert_close(hand_big, 4 * hand_small)
    torch.testing.assert_close(obj_big, 4 * obj_small)
    with pytest.raises(ValueError, match="size=8"):
        grasp_sketch(8)


def test_draw_box_outlines_the_box():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    draw_box(ax, torch.tensor([10.0, 20.0, 50.0, 80.0]), "red", "hand box", ls="--")
    (patch,) = ax.patches
    assert (patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()) == (10, 20, 40, 60)
    assert patch.get_label() == "hand box" and patch.get_linestyle() == "--" and not patch.get_fill()
    plt.close(fig)
