"""HO3D submission: format, units, frame and joint order."""
import json
import zipfile

import numpy as np
import pytest
import torch

from hfl_lite.submission import HO3D_FROM_MANOPTH, MANOPTH_FROM_HO3D, read_submission, to_ho3d, write_submission

# HO3D joint names by index (MANO's native order, then the five tips) and manopth's order.
HO3D_NAMES = ["wrist", "index1", "index2", "index3", "middle1", "middle2", "middle3", "little1", "little2", "little3",
              "ring1", "ring2", "ring3", "thumb1", "thumb2", "thumb3", "thumb4", "index4", "middle4", "ring4", "little4"]
MANOPTH_NAMES = ["wrist"] + [f"{f}{i}" for f in ("thumb", "index", "middle", "ring", "little") for i in (1, 2, 3, 4)]


def test_joint_orders_by_name():
    assert [HO3D_NAMES[i] for i in MANOPTH_FROM_HO3D] == MANOPTH_NAMES
    assert [MANOPTH_NAMES[i] for i in HO3D_FROM_MANOPTH] == HO3D_NAMES


def test_round_trip_units_and_frame(tmp_path):
    rng = np.random.default_rng(0)
    joints = rng.uniform(-0.1, 0.1, (3, 21, 3)) + [0, 0, 0.5]  # metres, OpenCV: in front = +z
    verts = rng.uniform(-0.1, 0.1, (3, 778, 3)) + [0, 0, 0.5]
    path = write_submission(tmp_path / "pred.zip", torch.from_numpy(joints), verts, expected_count=3)
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["pred.json"]
        data = json.loads(zf.read("pred.json"))
    assert len(data) == 2 and len(data[0]) == 3 and len(data[0][0]) == 21 and len(data[1][0]) == 778
    stored_j, stored_v = np.array(data[0]), np.array(data[1])
    # OpenGL frame: the hand is in front of the camera at negative z, y flipped
    assert (stored_v[..., 2] < 0).all()
    np.testing.assert_allclose(stored_v[..., 1], -verts[..., 1], atol=1e-6)
    # HO3D order: entry 16 is the thumb tip (manopth 4), entry 1 the index MCP (manopth 5)
    np.testing.assert_allclose(stored_j[:, 16], joints[:, 4] * [1, -1, -1], atol=1e-6)
    np.testing.assert_allclose(stored_j[:, 1], joints[:, 5] * [1, -1, -1], atol=1e-6)
    j_back, v_back = read_submission(path)
    np.testing.assert_allclose(j_back, joints, atol=1e-6)
    np.testing.assert_allclose(v_back, verts, atol=1e-6)
    # a directory argument gets pred.zip inside it
    assert write_submission(tmp_path, joints[0], verts[0]).name == "pred.zip"


def test_refuses_millimetres_and_bad_input(tmp_path):
    joints = np.zeros((1, 21, 3))
    verts = np.zeros((1, 778, 3))
    verts[0, 0, 2] = 523.0  # millimetres slipped in
    with pytest.raises(ValueError, match="millimetres"):
        write_submission(tmp_path / "pred.zip", joints, verts)
    with pytest.raises(ValueError, match="joints"):
        to_ho3d(np.zeros((1, 16, 3)), np.zeros((1, 778, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        to_ho3d(np.full((1, 21, 3), np.nan), np.zeros((1, 778, 3)))
    with pytest.raises(ValueError, match="expected_count"):
        write_submission(tmp_path / "pred.zip", joints, np.zeros((1, 778, 3)), expected_count=2)
    assert not (tmp_path / "pred.zip").exists()
