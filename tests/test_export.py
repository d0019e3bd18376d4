"""``python -m hfl_lite export``: the ONNX graph that ONNX Runtime (Python) runs as the network runs.

Checkpoints made in the test session stand in for the shipped one (the weights' values do not
matter for the comparison; ``lively_checkpoint``'s outputs spread as a trained network's do).
"""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch

from hfl_lite import export
from hfl_lite.__main__ import main
from hfl_lite.inference import load_model


@pytest.fixture(scope="module")
def lively_model(lively_checkpoint):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(lively_checkpoint, "cpu")[0]


@pytest.fixture(scope="module")
def exported(lively_model):
    """``{precision: (serialised graph, differences)}`` of lively_model, made once for the tests below."""
    return {precision: export.export_onnx(lively_model, precision) for precision in export.PRECISIONS}


def crops(preset, batch: int, seed: int):
    """Random crops ``[B,3,S,S]`` and overlapping boxes, unlike the sample the export traced with."""
    g = torch.Generator().manual_seed(seed)
    S = preset.image_size
    corner = torch.rand(batch, 2, generator=g) * S * 0.4
    size = (0.3 + 0.3 * torch.rand(batch, 2, generator=g)) * S
    hand = torch.cat([corner, corner + size], 1)
    obj = torch.cat([corner + 0.2 * S, corner + 0.2 * S + size], 1)
    return torch.rand(batch, 3, S, S, generator=g), hand, obj


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_onnx_runtime_runs_the_exported_graph_as_the_network(precision, lively_checkpoint, lively_model, tmp_path, capsys):
    out = tmp_path / f"model_{precision}.onnx"
    assert main(["export", "--checkpoint", str(lively_checkpoint), "--out", str(out), "--precision", precision]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    session = export.onnx_session(out)
    for inputs in (export.check_inputs(lively_model.preset), crops(lively_model.preset, 3, seed=1)):
        differences = export.compare_with_torch(lively_model, session, inputs)
        assert differences["joints2d"] < 0.5 and differences["verts"] < 1e-3 and differences["joints"] < 1e-3, differences
        assert differences["obj_conf_logits"] < 1e-2 and differences["obj_offset"] < 1e-2, differences
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["preset"] == "cpu" and meta["precision"] == precision and meta["checkpoint"] == lively_checkpoint.name


def test_fp16_halves_the_file_and_keeps_float32_arithmetic(exported):
    (fp32, _), (fp16, differences) = exported["fp32"], exported["fp16"]
    assert len(fp16) < 0.6 * len(fp32)
    graph = onnx.load_from_string(fp16).graph
    stored = {onnx.TensorProto.DataType.Name(t.data_type) for t in graph.initializer if len(t.dims) > 1}
    assert stored == {"FLOAT16"}  # every weight matrix and kernel halved...
    casts = [n for n in graph.node if n.op_type == "Cast" and n.input[0].endswith("__fp16")]
    assert casts and all(a.i == onnx.TensorProto.FLOAT for n in casts for a in n.attribute)  # ...and cast back
    assert differences["verts"] < 1e-3 and differences["joints2d"] < 0.5


def test_graph_is_standard_onnx_with_the_references_roi_align(lively_model, exported):
    graph = onnx.load_from_string(exported["fp32"][0]).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}  # no runtime-specific operators
    rois = [n for n in graph.node if n.op_type == "RoiAlign"]
    assert len(rois) == 4  # F_h, F_oh, F_o, F_ho
    for node in rois:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes["coordinate_transformation_mode"] == b"output_half_pixel"  # aligned=False
        assert attributes["output_height"] == attributes["output_width"] == lively_model.preset.roi_size
        assert attributes["spatial_scale"] == pytest.approx(0.25)
    assert [i.name for i in graph.input] == list(export.INPUT_NAMES)
    assert [o.name for o in graph.output] == list(export.OUTPUT_NAMES)


def test_a_graph_outside_the_tolerances_is_refused_and_not_written(lively_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "TOLERANCES", {"joints2d": -1.0})
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(lively_checkpoint), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "differs from the network beyond the tolerances" in err and "--precision fp32" in err
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_one_line_errors(lively_checkpoint, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "missing.pt not found" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(lively_checkpoint), "--out", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(lively_checkpoint), "--out", str(tmp_path / "m.onnx"), "--opset", "11"]) == 1
    assert "opset 16" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_batches_run_through_the_graph(lively_model, exported):
    """The batch dimension is free: a batch of three gives each image's own outputs."""
    session = export.onnx_session(exported["fp16"][0])
    image, hand, obj = crops(lively_model.preset, 3, seed=2)
    together = export.run_onnx(session, image, hand, obj)
    alone = export.run_onnx(session, image[1:2], hand[1:2], obj[1:2])
    for name in export.OUTPUT_NAMES:
        np.testing.assert_allclose(together[name][1:2].numpy(), alone[name].numpy(), rtol=1e-4, atol=1e-5)
