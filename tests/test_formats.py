"""The datasets' format conventions (hfl_lite.data.formats), shared by the readers and the writers.

References: the MANO layer itself (frame changes, Dex-YCB's PCA form), SciPy rotations, the
Dex-YCB toolkit's object order written out here, brute-force distances, and OBJ text written by
hand.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hfl_lite.data.formats import (GL_FLIP, HO3D_TO_MANOPTH, MANOPTH_TO_HO3D, OBJECT_NAMES, SYMMETRIC, YCB_IDS,
                                   mesh_diameter, pca_to_pose, pose_to_pca, read_obj, transform_mano)

F = np.diag([1.0, -1.0, -1.0])


def _layer(side="right", **kw):
    from hfl_lite.mano import ManoLayer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ManoLayer(mano_root=None, side=side, **kw)


def test_object_ids_symmetry_and_joint_orders():
    assert len(OBJECT_NAMES) == 21 and YCB_IDS["002_master_chef_can"] == 1
    assert YCB_IDS["021_bleach_cleanser"] == 12 and YCB_IDS["061_foam_brick"] == 21
    assert SYMMETRIC == {"024_bowl", "036_wood_block", "052_extra_large_clamp", "061_foam_brick"}
    assert sorted(HO3D_TO_MANOPTH) == list(range(21))
    assert [HO3D_TO_MANOPTH[i] for i in MANOPTH_TO_HO3D] == list(range(21))
    np.testing.assert_array_equal(GL_FLIP, F)


def test_transform_mano_matches_layer_and_gl_round_trip():
    layer = _layer(use_pca=False, flat_hand_mean=True)
    rng = np.random.default_rng(0)
    pose, betas, trans = rng.normal(0, 0.4, 48), rng.normal(0, 1, 10), rng.normal(0, 0.2, 3)
    R, t = Rotation.random(random_state=1).as_matrix(), rng.normal(0, 0.3, 3)

    def verts_joints(p, tr):
        v, j = layer(torch.tensor(p[None], dtype=torch.float64).float(), torch.tensor(betas[None]).float(),
                     torch.tensor(tr[None]).float())
        return v[0].double().numpy() / 1000, j[0].double().numpy() / 1000

    root = verts_joints(np.zeros(48), np.zeros(3))[1][0]  # the rest wrist J0 of this shape

    def verts(p, tr):
        return verts_joints(p, tr)[0]

    aa2, tr2 = transform_mano(pose[:3], trans, root, R, t)
    np.testing.assert_allclose(verts(np.r_[aa2, pose[3:]], tr2), verts(pose, trans) @ R.T + t, atol=2e-5)
    aa_gl, tr_gl = transform_mano(pose[:3], trans, root, GL_FLIP)
    np.testing.assert_allclose(verts(np.r_[aa_gl, pose[3:]], tr_gl), verts(pose, trans) @ F.T, atol=2e-5)
    aa_back, tr_back = transform_mano(aa_gl, tr_gl, root, GL_FLIP)
    np.testing.assert_allclose(Rotation.from_rotvec(aa_back).as_matrix(), Rotation.from_rotvec(pose[:3]).as_matrix(),
                               atol=1e-9)
    np.testing.assert_allclose(tr_back, trans, atol=1e-12)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pose_to_pca_matches_dexycb_layer(side):
    full = _layer(side, use_pca=False, flat_hand_mean=True)
    pca = _layer(side, use_pca=True, ncomps=45, flat_hand_mean=False)
    data = full.smpl_data
    rng = np.random.default_rng(1)
    pose = rng.normal(0, 0.3, 48)
    coeffs = pose_to_pca(pose[3:], data["hands_mean"], data["hands_components"])
    np.testing.assert_allclose(pca_to_pose(coeffs, data["hands_mean"], data["hands_components"]), pose[3:], atol=1e-9)
    v1, _ = full(torch.tensor(pose[None]).float())
    v2, _ = pca(torch.tensor(np.r_[pose[:3], coeffs][None]).float())
    np.testing.assert_allclose(v1.numpy(), v2.numpy(), atol=1e-2)  # millimetres
    with pytest.raises(ValueError, match="components must be"):
        pose_to_pca(pose[3:], data["hands_mean"], data["hands_components"][:6])


def test_read_obj_forms_and_polygons(tmp_path):
    path = tmp_path / "model.obj"
    path.write_text("# a unit square and a triangle\n"
                    "v 0 0 0 1 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvn 0 0 1\n\n"
                    "f 1/1/1 2/1/1 3/1/1 4/1/1\nf -4//1 -2//1 -1//1\n")
    verts, faces = read_obj(path)
    assert verts.dtype == np.float32 and faces.dtype == np.int64
    np.testing.assert_array_equal(verts, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(faces, [[0, 1, 2], [0, 2, 3], [0, 2, 3]])  # the quad as a fan
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no vertices or faces"):
        read_obj(path)


def test_read_obj_reads_the_written_models(tmp_path):
    from hfl_lite.synth import objects

    folder = objects.write_model("006_mustard_bottle", tmp_path)
    v, f = read_obj(folder / "textured_simple.obj")
    v0, f0 = objects.load_object("006_mustard_bottle")
    np.testing.assert_allclose(v, v0, atol=6e-6)
    np.testing.assert_array_equal(f, f0)
    pts = np.loadtxt(folder / "points.xyz")
    assert pts.shape == v0.shape


def test_mesh_diameter_is_the_largest_pairwise_distance():
    points = np.random.default_rng(4).normal(size=(300, 3)) * [0.1, 0.05, 0.02]
    brute = max(np.linalg.norm(points - p, axis=1).max() for p in points)
    assert mesh_diameter(points) == pytest.approx(brute, abs=1e-12)
