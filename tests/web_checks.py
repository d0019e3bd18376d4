"""Checks shared by tests/test_web_pipeline.py (the page's JavaScript under Node) and
tests/test_live_page.py (the page in headless Chromium): both compare the page with the Python."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from hfl_lite.geometry import relative_angle, solve_pose_from_votes
from hfl_lite.inference import estimate_hand_translation
from hfl_lite.web import page_config

CONFIG = page_config()


def torch_keys(seed: int, n: int) -> list[float]:
    """The random keys epnp_ransac draws for one problem of ``n`` points with a generator seeded
    ``seed`` (``torch.rand(1, chunk, n)`` per chunk of hypotheses), for the JavaScript to replay."""
    g = torch.Generator().manual_seed(seed)
    chunk, iterations = CONFIG["ransac"]["chunk"], CONFIG["ransac"]["iterations"]
    return torch.cat([torch.rand(1, chunk, n, generator=g).flatten() for _ in range(-(-iterations // chunk))]).tolist()


def shipped_model_or_skip():
    """The shipped checkpoint's network, or a skip saying why it cannot be used."""
    from hfl_lite.errors import EXPECTED_ERRORS
    from hfl_lite.inference import load_model
    from hfl_lite.samples import shipped_checkpoint

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_model(shipped_checkpoint(), "cpu")[0]
    except EXPECTED_ERRORS as err:
        pytest.skip(f"the shipped checkpoint does not load with this network ({err}); the comparison on a trained "
                    "network runs once it is replaced")


def compare_with_predict_image(js: dict, py: dict, ctrl3d: list, roi_size: int, hand_placed: bool, trained: bool) -> None:
    """One image's page result ``js`` against ``predict_image``'s ``py`` (same image, boxes and K).

    Always: the network's outputs agree within the issue's tolerances (2D joints 0.5 px, vertices
    and joints 1 mm), and the page turns its own outputs into the translation the Python makes of
    them. ``hand_placed`` (a network whose hand has a hand's size): the translation also agrees with
    Python's end to end (5 mm); the reference's initialisation makes an untrained hand tiny and
    kilometres away, where the translation amplifies rounding. ``trained``: the object pose agrees
    (1 degree, 5 mm), computed from the page's votes and end to end, with RANSAC's draws replayed;
    an untrained network's votes are noise, on which every EPnP hypothesis is ill-posed (the pose
    step is compared on consistent votes in test_pose_from_votes_matches_solve_pose_from_votes).
    """
    net = js["network"]
    assert np.abs(np.asarray(js["joints2dFull"]) - py["joints2d_full"][0].numpy()).max() < 0.5
    assert np.abs(np.asarray(net["verts"]).reshape(778, 3) - py["verts"][0].numpy()).max() < 1e-3
    assert np.abs(np.asarray(net["joints"]).reshape(21, 3) - py["joints"][0].numpy()).max() < 1e-3
    K, box = torch.tensor(js["crop"]["K"], dtype=torch.float64), torch.tensor(js["crop"]["objBox"], dtype=torch.float64)
    joints2d = torch.tensor(net["joints2d"], dtype=torch.float64).view(1, 21, 2)
    t = estimate_hand_translation(joints2d, torch.tensor(net["joints"], dtype=torch.float64).view(1, 21, 3), K[None])
    np.testing.assert_allclose(js["handTrans"], t[0].numpy(), rtol=1e-7, atol=1e-9)
    if hand_placed:
        assert np.linalg.norm(np.asarray(js["handTrans"]) - py["hand_trans"][0].numpy()) < 5e-3
    if trained:
        R = roi_size
        pose = solve_pose_from_votes(torch.tensor(net["obj_conf_logits"], dtype=torch.float64).view(1, 21, R, R),
                                     torch.tensor(net["obj_offset"], dtype=torch.float64).view(1, 21, 2, R, R), box[None],
                                     K[None], torch.tensor(ctrl3d, dtype=torch.float64),
                                     generator=torch.Generator().manual_seed(0))
        for want in ({"valid": pose.valid, "R": pose.R, "t": pose.t},
                     {"valid": py["obj_valid"], "R": py["obj_rot"].cpu(), "t": py["obj_trans"].cpu()}):
            assert js["objValid"] == bool(want["valid"][0])
            if js["objValid"]:
                angle = relative_angle(torch.tensor(js["objRot"], dtype=torch.float64), want["R"][0].double())
                assert math.degrees(float(angle)) < 1.0
                assert np.linalg.norm(np.asarray(js["objTrans"]) - want["t"][0].numpy()) < 5e-3
