"""MANO layer vs a slow loop-based reference, asset loading and checks, the stand-in hand."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.spatial.transform import Rotation

import hfl_lite.mano.asset as asset_module
from hfl_lite.mano import (
    JOINT_REORDER,
    MANO_PARENTS,
    ManoLayer,
    StandinAssetWarning,
    load_mano_pickle,
    project_to_rotation,
)
from hfl_lite.mano.standin import build_standin, standin_bytes
from hfl_lite.safe_pickle import safe_load
from hfl_lite.samples import SAMPLES_ENV, samples_root

pytestmark = pytest.mark.filterwarnings("ignore::hfl_lite.mano.StandinAssetWarning")

COMMITTED = samples_root() / "mano_standin"
TIPS = {"right": [745, 317, 444, 556, 673], "left": [745, 317, 445, 556, 673]}


# ------------------------------------------------------------------ reference (float64, loops)
def reference_forward(asset, rotations, betas, side, trans=None, center_idx=None):
    """MANO by the book, one joint at a time. rotations [B,16,3,3], betas [B,10] -> mm."""
    verts_out, joints_out = [], []
    reg = asset["J_regressor"].toarray() if sp.issparse(asset["J_regressor"]) else asset["J_regressor"]
    for b in range(len(rotations)):
        R = rotations[b]
        v_shaped = asset["v_template"] + asset["shapedirs"] @ betas[b]
        J = reg @ v_shaped
        features = np.concatenate([(R[k] - np.eye(3)).ravel() for k in range(1, 16)])
        v_posed = v_shaped + asset["posedirs"] @ features
        G = [None] * 16
        for k in range(16):
            local = np.eye(4)
            local[:3, :3] = R[k]
            parent = MANO_PARENTS[k]
            local[:3, 3] = J[k] if parent < 0 else J[k] - J[parent]
            G[k] = local if parent < 0 else G[parent] @ local
        skin = np.zeros((778, 4, 4))
        for k in range(16):
            unposed = np.eye(4)
            unposed[:3, 3] = -J[k]
            skin += asset["weights"][:, k, None, None] * (G[k] @ unposed)
        homo = np.concatenate([v_posed, np.ones((778, 1))], axis=1)
        verts = np.einsum("vij,vj->vi", skin, homo)[:, :3]
        joints = np.array([G[k][:3, 3] for k in range(16)] + [verts[i] for i in TIPS[side]])[list(JOINT_REORDER)]
        if trans is None or not np.any(trans):
            if center_idx is not None:
                verts, joints = verts - joints[center_idx], joints - joints[center_idx]
        else:
            verts, joints = verts + trans[b], joints + trans[b]
        verts_out.append(verts * 1000)
        joints_out.append(joints * 1000)
    return np.array(verts_out), np.array(joints_out)


def rotvecs_to_matrices(rotvecs):
    """[B,16,3] axis-angles -> [B,16,3,3] with SciPy."""
    return Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_matrix().reshape(*rotvecs.shape[:-1], 3, 3)


def full_pose(asset, pose_coeffs, use_pca, ncomps, flat_hand_mean):
    """[B, 3 + n] inputs -> [B,16,3] axis-angles, as the MANO paper defines the PCA pose."""
    hand = pose_coeffs[:, 3:] @ asset["hands_components"][:ncomps] if use_pca else pose_coeffs[:, 3:]
    if not flat_hand_mean:
        hand = hand + asset["hands_mean"]
    return np.concatenate([pose_coeffs[:, :3], hand], axis=1).reshape(-1, 16, 3)


# ------------------------------------------------------------------ a perturbed test asset
def _random_asset(side, seed):
    """The stand-in with random pose correctives, shape directions, weights and PCA basis (float64)."""
    rng = np.random.default_rng(seed)
    a = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
         for k, v in build_standin(side).items() if k != "hfl_lite_standin"}
    a["posedirs"] = rng.normal(scale=2e-3, size=(778, 3, 135))
    a["shapedirs"] = rng.normal(scale=2e-3, size=(778, 3, 10))
    w = a["weights"] + rng.random((778, 16)) * 0.2 * (a["weights"] > 0)
    a["weights"] = w / w.sum(1, keepdims=True)
    a["hands_components"] = np.linalg.qr(rng.normal(size=(45, 45)))[0].T
    a["hands_mean"] = rng.normal(scale=0.2, size=45)
    reg = a["J_regressor"].toarray().astype(np.float64)
    reg = reg + (reg > 0) * rng.random(reg.shape) * 0.1
    a["J_regressor"] = sp.csc_matrix(reg / reg.sum(1, keepdims=True))
    return a


@pytest.fixture(scope="module")
def test_assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("mano_root")
    assets = {side: _random_asset(side, seed) for seed, side in enumerate(("right", "left"))}
    for side, name in (("right", "MANO_RIGHT.pkl"), ("left", "MANO_LEFT.pkl")):
        (root / name).write_bytes(pickle.dumps(assets[side], protocol=2))
    return root, assets


def _random_inputs(rng, batch, n_pose):
    pose = rng.normal(scale=0.6, size=(batch, n_pose))
    betas = rng.normal(size=(batch, 10))
    return pose, betas


# ------------------------------------------------------------------ layer vs reference
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("use_pca,ncomps", [(True, 6), (True, 45), (False, 45)])
@pytest.mark.parametrize("flat_hand_mean", [True, False])
def test_layer_matches_reference(test_assets, side, use_pca, ncomps, flat_hand_mean):
    root, assets = test_assets
    layer = ManoLayer(mano_root=root, side=side, use_pca=use_pca, ncomps=ncomps, flat_hand_mean=flat_hand_mean,
                      dtype=torch.float64)
    assert layer.asset_kind == "mano"  # no stand-in marker in the test asset
    rng = np.random.default_rng(1)
    pose, betas = _random_inputs(rng, 3, 3 + ncomps)
    verts, joints = layer(torch.from_numpy(pose), torch.from_numpy(betas))
    rot = rotvecs_to_matrices(full_pose(assets[side], pose, use_pca, ncomps, flat_hand_mean))
    ref_v, ref_j = reference_forward(assets[side], rot, betas, side)
    np.testing.assert_allclose(verts.numpy(), ref_v, atol=1e-8)
    np.testing.assert_allclose(joints.numpy(), ref_j, atol=1e-8)


def test_mean_shape_default_and_shared_betas(test_assets):
    root, assets = test_assets
    layer = ManoLayer(mano_root=root, use_pca=False, dtype=torch.float64)
    pose = torch.from_numpy(np.random.default_rng(2).normal(scale=0.5, size=(2, 48)))
    ref_v, _ = reference_forward(assets["right"], rotvecs_to_matrices(pose.numpy().reshape(2, 16, 3)),
                                 np.zeros((2, 10)), "right")
    for betas in (None, torch.zeros(1, dtype=torch.float64)):
        np.testing.assert_allclose(layer(pose, betas)[0].numpy(), ref_v, atol=1e-8)
    shared = torch.linspace(-1, 1, 10, dtype=torch.float64)
    np.testing.assert_allclose(layer(pose, shared)[0].numpy(), layer(pose, shared.expand(2, 10))[0].numpy())


def test_centering_and_translation(test_assets):
    root, assets = test_assets
    layer = ManoLayer(mano_root=root, use_pca=False, center_idx=9, dtype=torch.float64)
    rng = np.random.default_rng(3)
    pose, betas = _random_inputs(rng, 2, 48)
    rot = rotvecs_to_matrices(pose.reshape(2, 16, 3))
    tp, tb = torch.from_numpy(pose), torch.from_numpy(betas)

    verts, joints = layer(tp, tb)  # no trans: joint 9 (middle MCP) moved to the origin
    ref_v, ref_j = reference_forward(assets["right"], rot, betas, "right", center_idx=9)
    np.testing.assert_allclose(joints.numpy(), ref_j, atol=1e-8)
    np.testing.assert_allclose(verts.numpy(), ref_v, atol=1e-8)
    assert torch.allclose(joints[:, 9], torch.zeros(2, 3, dtype=torch.float64), atol=1e-9)
    # All-zero trans counts as no trans (centred), as in manopth.
    np.testing.assert_allclose(layer(tp, tb, torch.zeros(2, 3, dtype=torch.float64))[1].numpy(), ref_j, atol=1e-8)

    trans = rng.normal(scale=0.1, size=(2, 3))  # metres, added before the conversion to mm; no centring
    verts, joints = layer(tp, tb, torch.from_numpy(trans))
    ref_v, ref_j = reference_forward(assets["right"], rot, betas, "right", trans=trans, center_idx=9)
    np.testing.assert_allclose(joints.numpy(), ref_j, atol=1e-8)
    np.testing.assert_allclose(verts.numpy(), ref_v, atol=1e-8)
    uncentred = ManoLayer(mano_root=root, use_pca=False, dtype=torch.float64)(tp, tb)[1]
    np.testing.assert_allclose(joints.numpy(), uncentred.numpy() + trans[:, None] * 1000, atol=1e-8)


def test_manopth_keyword_names(test_assets):
    """Calls written for manopth (``th_pose_coeffs``, ``th_betas``, ``th_trans``, with manopth's
    default ``th_trans=torch.zeros(1)``) give what the native call gives, checked against the
    reference forward."""
    root, assets = test_assets
    layer = ManoLayer(mano_root=root, use_pca=True, ncomps=6, center_idx=0, dtype=torch.float64)
    rng = np.random.default_rng(4)
    pose, betas = _random_inputs(rng, 2, 3 + 6)
    trans = rng.normal(scale=0.1, size=(2, 3))
    tp, tb, tt = (torch.from_numpy(x) for x in (pose, betas, trans))
    rot = rotvecs_to_matrices(full_pose(assets["right"], pose, True, 6, True))
    ref_v, ref_j = reference_forward(assets["right"], rot, betas, "right", center_idx=0)
    for verts, joints in (layer(tp, tb), layer(th_pose_coeffs=tp, th_betas=tb),
                          layer(th_pose_coeffs=tp, th_betas=tb, th_trans=torch.zeros(1, dtype=torch.float64))):
        np.testing.assert_allclose(verts.numpy(), ref_v, atol=1e-8)
        np.testing.assert_allclose(joints.numpy(), ref_j, atol=1e-8)
    for a, b in zip(layer(tp, tb, tt), layer(th_pose_coeffs=tp, th_betas=tb, th_trans=tt)):
        assert torch.equal(a, b)
    with pytest.raises(TypeError, match="th_betas"):
        layer(tp, tb, th_betas=tb)
    with pytest.raises(TypeError, match="th_pose_coeffs"):
        layer(th_betas=tb)


@pytest.mark.parametrize("flat_shape", [True, False])
def test_rotmat_mode(test_assets, flat_shape):
    root, assets = test_assets
    layer = ManoLayer(mano_root=root, use_pca=False, joint_rot_mode="rotmat", flat_hand_mean=False,
                      dtype=torch.float64)
    rng = np.random.default_rng(4)
    rot = rotvecs_to_matrices(rng.normal(scale=0.8, size=(2, 16, 3)))
    noisy = rot + rng.normal(scale=0.02, size=rot.shape)
    u, _, vt = np.linalg.svd(noisy)  # nearest rotations (no reflections at this noise level)
    projected = u @ vt
    assert np.all(np.linalg.det(projected) > 0)
    betas = rng.normal(size=(2, 10))
    inputs = torch.from_numpy(noisy if flat_shape else noisy.reshape(2, 144))
    verts, joints = layer(inputs, torch.from_numpy(betas))
    ref_v, ref_j = reference_forward(assets["right"], projected, betas, "right")  # hands_mean unused
    np.testing.assert_allclose(verts.numpy(), ref_v, atol=1e-7)
    np.testing.assert_allclose(joints.numpy(), ref_j, atol=1e-7)


@pytest.mark.parametrize("robust", [False, True])
def test_rot6d_root_matches_axisang(test_assets, robust):
    root, _ = test_assets
    rng = np.random.default_rng(5)
    pose, betas = _random_inputs(rng, 3, 3 + 10)
    axisang = ManoLayer(mano_root=root, ncomps=10, dtype=torch.float64)
    six = ManoLayer(mano_root=root, ncomps=10, root_rot_mode="rot6d", robust_rot=robust, dtype=torch.float64)
    root_m = Rotation.from_rotvec(pose[:, :3]).as_matrix()
    pose6 = np.concatenate([root_m[:, :, 0], root_m[:, :, 1], pose[:, 3:]], axis=1)
    a = axisang(torch.from_numpy(pose), torch.from_numpy(betas))
    b = six(torch.from_numpy(pose6), torch.from_numpy(betas))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-8)


def test_gradcheck():
    layer = ManoLayer(use_pca=True, ncomps=3, flat_hand_mean=False, center_idx=0, dtype=torch.float64)
    rng = np.random.default_rng(6)
    pose = torch.tensor(rng.normal(scale=0.5, size=(1, 6)), requires_grad=True)
    betas = torch.tensor(rng.normal(size=(1, 10)), requires_grad=True)
    trans = torch.tensor([[0.01, -0.02, 0.3]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, b, t: layer(p, b, t), (pose, betas, trans), fast_mode=True)
    assert torch.autograd.gradcheck(lambda p, b: layer(p, b), (pose, betas), fast_mode=True)


def test_project_to_rotation():
    rng = np.random.default_rng(7)
    m = torch.tensor(rng.normal(size=(3, 3, 3)), requires_grad=True)
    r = project_to_rotation(m)
    u, _, vt = np.linalg.svd(m.detach().numpy())
    d = np.sign(np.linalg.det(u @ vt))
    expected = u @ (np.eye(3) * np.stack([np.ones_like(d), np.ones_like(d), d], -1)[:, None, :]).transpose(0, 2, 1) @ vt
    np.testing.assert_allclose(r.detach().numpy(), expected, atol=1e-10)
    np.testing.assert_allclose(np.linalg.det(r.detach().numpy()), 1.0, atol=1e-10)
    assert torch.autograd.gradcheck(project_to_rotation, (m,))
    exact = torch.tensor(rotvecs_to_matrices(rng.normal(size=(2, 3))), requires_grad=True)
    project_to_rotation(exact).sum().backward()  # repeated singular values: gradient still finite
    assert torch.isfinite(exact.grad).all()
    assert torch.autograd.gradcheck(project_to_rotation, (exact,))


# ------------------------------------------------------------------ layer plumbing and errors
def test_standin_is_default_and_layer_attributes(monkeypatch):
    monkeypatch.delenv("MANO_ROOT", raising=False)
    layer = ManoLayer()
    assert layer.asset_kind == "standin" and layer.side == "right"
    assert layer.faces.dtype == torch.int64 and tuple(layer.faces.shape) == (1538, 3)
    assert layer.parents == list(MANO_PARENTS) and layer.ncomps == 6 and layer.use_pca
    assert layer.state_dict() == {}  # the asset never travels with a checkpoint
    double = layer.to(torch.float64)
    assert double.th_v_template.dtype == torch.float64 and double.th_faces.dtype == torch.int64
    verts, joints = double(torch.zeros(2, 9, dtype=torch.float64))
    assert verts.shape == (2, 778, 3) and joints.shape == (2, 21, 3)


def test_standin_warning_and_env_root(monkeypatch, test_assets):
    root, _ = test_assets
    monkeypatch.delenv("MANO_ROOT", raising=False)
    monkeypatch.setattr(asset_module, "_ANNOUNCED", set())
    with pytest.warns(StandinAssetWarning, match="STAND-IN"):
        ManoLayer()
    monkeypatch.setenv("MANO_ROOT", str(root))
    assert ManoLayer().asset_kind == "mano"
    monkeypatch.setenv("MANO_ROOT", str(root / "missing"))
    with pytest.raises(FileNotFoundError, match="MANO_ROOT"):
        ManoLayer()


def test_standin_built_in_memory_when_files_are_absent(monkeypatch, tmp_path):
    monkeypatch.delenv("MANO_ROOT", raising=False)
    monkeypatch.setenv(SAMPLES_ENV, str(tmp_path))  # a samples folder without mano_standin/
    memory = ManoLayer(side="left", use_pca=False)
    assert memory.asset_kind == "standin" and "in memory" in memory.asset_source
    monkeypatch.delenv(SAMPLES_ENV)
    files = ManoLayer(side="left", use_pca=False)
    assert files.asset_source.endswith("MANO_LEFT.pkl")
    pose = torch.from_numpy(np.random.default_rng(8).normal(scale=0.5, size=(2, 48)).astype(np.float32))
    for a, b in zip(memory(pose), files(pose)):
        assert torch.equal(a, b)


def test_input_errors(test_assets):
    root, _ = test_assets
    layer = ManoLayer(mano_root=root)
    with pytest.raises(ValueError, match=r"pose_coeffs must be \[B, 9\]"):
        layer(torch.zeros(2, 48))
    with pytest.raises(ValueError, match="betas"):
        layer(torch.zeros(2, 9), torch.zeros(3, 10))
    with pytest.raises(ValueError, match="trans"):
        layer(torch.zeros(2, 9), None, torch.ones(2, 2))
    with pytest.raises(ValueError, match="rotmat"):
        ManoLayer(mano_root=root, use_pca=False, joint_rot_mode="rotmat")(torch.zeros(2, 48))
    with pytest.raises(ValueError, match="side"):
        ManoLayer(mano_root=root, side="middle")
    with pytest.raises(FileNotFoundError, match="MANO_RIGHT.pkl"):
        ManoLayer(mano_root=root / "nowhere")


@pytest.mark.parametrize("key,bad,expect", [
    ("posedirs", np.zeros((778, 3, 10)), r"'posedirs' has shape \(778, 3, 10\), expected \(778, 3, 135\)"),
    ("weights", np.zeros((16, 778)), r"'weights' has shape \(16, 778\), expected \(778, 16\)"),
    ("J_regressor", sp.csc_matrix((21, 778)), r"'J_regressor' has shape \(21, 778\), expected \(16, 778\)"),
    ("shapedirs", None, r"missing the key 'shapedirs' \(expected an array of shape \(778, 3, 10\)\)"),
    ("kintree_table", np.array([[-1, 2] + list(range(1, 15)), range(16)]), "kintree_table"),
])
def test_bad_mano_files_name_the_key(tmp_path, key, bad, expect):
    data = build_standin("right")
    if bad is None:
        del data[key]
    else:
        data[key] = bad
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(ValueError, match=expect) as info:
        load_mano_pickle(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=key):
        ManoLayer(mano_root=tmp_path)


def test_load_mano_pickle_types_and_mano_quirks(tmp_path):
    data = build_standin("right")
    data["kintree_table"] = data["kintree_table"].astype(np.uint32)  # MANO: root parent 2**32 - 1
    data["f"] = data["f"].astype(np.uint32)
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    loaded = load_mano_pickle(path, dtype=np.float64)
    assert loaded["kintree_table"][0].tolist() == list(MANO_PARENTS)
    assert loaded["f"].dtype == np.int64 and loaded["v_template"].dtype == np.float64
    assert isinstance(loaded["J_regressor"], np.ndarray) and loaded["J_regressor"].shape == (16, 778)
    assert loaded["hfl_lite_standin"]["side"] == "right"


# ------------------------------------------------------------------ the stand-in asset
@pytest.fixture(scope="module")
def standin():
    return {side: load_mano_pickle(COMMITTED / f"MANO_{side.upper()}.pkl", dtype=np.float64)
            for side in ("right", "left")}


def test_standin_mesh(standin):
    a = standin["right"]
    v, f = a["v_template"], a["f"]
    assert v.shape == (778, 3) and f.shape == (1538, 3) and len(np.unique(f)) == 778
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len({tuple(e) for e in edges.tolist()}) == len(edges)  # consistent winding
    undirected, counts = np.unique(np.sort(edges, axis=1), axis=0, return_counts=True)
    assert set(counts.tolist()) == {1, 2}
    boundary = undirected[counts == 1]
    assert len(boundary) == 16 and np.all(np.bincount(boundary.ravel(), minlength=778)[np.unique(boundary)] == 2)
    assert np.abs(v[np.unique(boundary)] @ np.array([1.0, 0, 0])).max() < 0.002  # the open loop is the wrist
    tri = v[f]
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert volume > 1e-4  # outward normals, > 100 cm^3
    length = v[:, 0].max() - v[:, 0].min()
    assert 0.16 < length < 0.21  # wrist to middle fingertip, metres
    assert np.linalg.norm(a["J"][0]) < 0.005  # wrist joint near the origin


def test_standin_model_data(standin):
    for side, a in standin.items():
        assert a["kintree_table"][0].tolist() == list(MANO_PARENTS)
        np.testing.assert_allclose(a["weights"].sum(1), 1.0, atol=1e-5)
        assert (a["weights"] >= 0).all() and (a["J_regressor"] >= 0).all()
        np.testing.assert_allclose(a["J_regressor"].sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(a["hands_components"] @ a["hands_components"].T, np.eye(45), atol=1e-5)
        np.testing.assert_allclose(a["J_regressor"] @ a["v_template"], a["J"], atol=1e-6)
        assert np.abs(a["shapedirs"]).max(axis=(0, 1)).min() > 5e-4  # every shape value moves something
        assert 0 < np.abs(a["posedirs"]).max() < 0.01
        assert a["hands_coeffs"].shape[1] == 45 and a["hfl_lite_standin"]["side"] == side


@pytest.mark.parametrize("side", ["right", "left"])
def test_standin_fingertips(standin, side):
    a = standin[side]
    v, joints = a["v_template"], a["J"]
    last_joint = {"thumb": 15, "index": 3, "middle": 6, "ring": 12, "little": 9}
    for name, tip in zip(("thumb", "index", "middle", "ring", "little"), TIPS[side]):
        dist = np.linalg.norm(joints[list(last_joint.values())] - v[tip], axis=1)
        assert list(last_joint)[dist.argmin()] == name, (name, tip)
        assert 0.012 < dist.min() < 0.03
        last, before = joints[last_joint[name]], joints[last_joint[name] - 1]
        axis = (last - before) / np.linalg.norm(last - before)
        along = (v[tip] - last) @ axis  # beyond the last joint, on the finger's axis
        assert 0.012 < along < 0.03 and np.linalg.norm(v[tip] - last - along * axis) < 0.006, name
    assert np.linalg.norm(v[444] - v[445]) < 0.006


def test_standin_left_mirrors_right(standin):
    r, l_ = standin["right"], standin["left"]
    flip = np.array([-1.0, 1.0, 1.0])
    np.testing.assert_array_equal(l_["v_template"], r["v_template"] * flip)
    layer_r = ManoLayer(side="right", use_pca=True, ncomps=12, flat_hand_mean=False, dtype=torch.float64)
    layer_l = ManoLayer(side="left", use_pca=True, ncomps=12, flat_hand_mean=False, dtype=torch.float64)
    rng = np.random.default_rng(9)
    pose, betas = _random_inputs(rng, 3, 15)
    mirrored = pose.copy()
    mirrored[:, 1:3] *= -1  # a mirrored global rotation; PCA coefficients stay as they are
    vr, jr = layer_r(torch.from_numpy(pose), torch.from_numpy(betas))
    vl, jl = layer_l(torch.from_numpy(mirrored), torch.from_numpy(betas))
    np.testing.assert_allclose(vl.numpy(), vr.numpy() * flip, atol=1e-6)
    # The same joints, except that the left hand reads its middle fingertip from vertex 445.
    np.testing.assert_allclose(np.delete(jl.numpy(), 12, 1), np.delete(jr.numpy(), 12, 1) * flip, atol=1e-6)
    np.testing.assert_allclose(jl.numpy()[:, 12], vr.numpy()[:, 445] * flip, atol=1e-6)


def test_standin_is_reproducible():
    """The generator rebuilds the committed files exactly (so a git install without them is identical)."""
    assert standin_bytes("right") == standin_bytes("right")
    for side in ("right", "left"):
        committed = safe_load(COMMITTED / f"MANO_{side.upper()}.pkl")
        built = build_standin(side)
        assert committed.keys() == built.keys()
        for key, value in built.items():
            if sp.issparse(value):
                assert (committed[key] != value).nnz == 0 and committed[key].dtype == value.dtype
            elif isinstance(value, np.ndarray):
                assert committed[key].dtype == value.dtype and np.array_equal(committed[key], value), key
            else:
                assert committed[key] == value, key


# ------------------------------------------------------------------ optional: parity with manopth
def _manopth_layer_class():
    try:
        from manopth.manolayer import ManoLayer as ManopthLayer
    except Exception:  # noqa: BLE001  (manopth and its chumpy dependency are optional)
        return None
    return ManopthLayer


@pytest.mark.skipif(_manopth_layer_class() is None or not os.environ.get("MANO_ROOT")
                    or not (Path(os.environ.get("MANO_ROOT", "/nonexistent")) / "MANO_RIGHT.pkl").is_file(),
                    reason="needs manopth and MANO's files (MANO_ROOT)")
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("use_pca,ncomps,flat", [(True, 6, True), (True, 45, False), (False, 45, True)])
def test_parity_with_manopth(side, use_pca, ncomps, flat):
    root = os.environ["MANO_ROOT"]
    ours = ManoLayer(mano_root=root, side=side, use_pca=use_pca, ncomps=ncomps, flat_hand_mean=flat, center_idx=0)
    theirs = _manopth_layer_class()(mano_root=root, side=side, use_pca=use_pca, ncomps=ncomps,
                                    flat_hand_mean=flat, center_idx=0)
    rng = np.random.default_rng(10)
    pose = torch.tensor(rng.normal(scale=0.5, size=(4, 3 + ncomps)), dtype=torch.float32)
    betas = torch.tensor(rng.normal(size=(4, 10)), dtype=torch.float32)
    a, b = ours(pose, betas), theirs(pose, betas)
    for x, y in zip(a, b[:2]):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=0.05)  # mm
