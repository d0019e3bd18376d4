"""HFL-Net as an ONNX graph: ``python -m hfl_lite export`` and :func:`export_onnx`.

The graph is the network from a crop and its two boxes to everything the pose step needs::

    inputs   image     [B,3,S,S]   float32 RGB in [0,1] (the crop of hfl_lite.data.crop)
             hand_box  [B,4]       crop pixels (x1, y1, x2, y2)
             obj_box   [B,4]       crop pixels
    outputs  joints2d         [B,21,2]      crop pixels
             verts            [B,778,3]     metres, root-relative (wrist at the origin)
             joints           [B,21,3]      metres, root-relative
             obj_conf_logits  [B,21,R,R]    every ROI cell's vote for every control point: its
             obj_offset       [B,21,2,R,R]  confidence logit and offset, as HFLNet returns them
                                            (decoded by hfl_lite.geometry.voting.decode_votes)

What is *not* in the graph: the decoding of the votes (outside, in float64 as in Python: a
float32 sigmoid turns the near-zero logits of an untrained network into exactly 0.5, which is not
above the voting threshold), the object pose (the reference's RANSAC EPnP draws random samples
and needs eigen decompositions, for which standard ONNX has no operator) and the hand's
translation (a small least-squares solve, :func:`hfl_lite.inference.estimate_hand_translation`).
Python runs them with :func:`hfl_lite.inference.predict`; the browser runs their JavaScript port
``hfl_lite/web/pipeline.mjs``, tested against the Python.

The export traces the network with PyTorch's TorchScript-based exporter at opset 18 (the
``torch.export`` path refuses the network's data-dependent input checks, which tracing simply
records as passed): the input checks therefore do not travel with the graph, and callers check
their boxes first (:func:`hfl_lite.inference.check_request`, and its port in the page). Every
operator is standard ONNX; the ones worth knowing are ``RoiAlign`` (torchvision's ``roi_align``
with ``aligned=False`` becomes ``coordinate_transformation_mode="output_half_pixel"``),
``Softmax`` (the soft-argmax), ``LayerNormalization`` and ``Erf`` (the attention blocks' GELU),
and ``Sin``/``Cos``/``Atan`` (MANO's rotations).

Precision: ``"fp32"`` stores every weight in float32; ``"fp16"`` stores the larger weight tensors
in float16 with a ``Cast`` to float32 in front, so the file halves while every operation still
computes in float32 (ONNX Runtime folds the casts once, when it loads the model). Weights
exported by ``train --export`` are float16 already, so for them only MANO's buffers round.
:func:`export_onnx` measures the exported graph against the network with ONNX Runtime
(:func:`compare_with_torch`) and refuses a file whose outputs leave :data:`TOLERANCES`.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hfl_lite.errors import UserError

__all__ = ["FORMATS", "INPUT_NAMES", "OPSET", "OUTPUT_NAMES", "PRECISIONS", "TOLERANCES", "ExportedNetwork",
           "check_inputs", "compare_with_torch", "export_onnx", "main", "onnx_session", "run_onnx"]

INPUT_NAMES = ("image", "hand_box", "obj_box")
OUTPUT_NAMES = ("joints2d", "verts", "joints", "obj_conf_logits", "obj_offset")
OPSET = 18
FORMATS = ("onnx",)
PRECISIONS = ("fp32", "fp16")
FP16_MIN_ELEMENTS = 64  # smaller tensors (biases, norms) stay float32: they cost nothing
TOLERANCES = {"joints2d": 0.5, "verts": 1e-3, "joints": 1e-3}
"""Largest accepted difference between the exported graph and the network: 2D joints in pixels,
vertices and joints in metres (half a pixel, a millimetre)."""


class ExportedNetwork(nn.Module):
    """The part of :class:`hfl_lite.model.HFLNet` that goes into the graph (see the module
    docstring): ``forward(image, hand_box, obj_box)`` returns the tuple :data:`OUTPUT_NAMES`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, hand_box: torch.Tensor, obj_box: torch.Tensor):
        out = self.model(image, hand_box, obj_box)
        return tuple(out[name] for name in OUTPUT_NAMES)


def check_inputs(preset, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs for tracing and checking: a real crop of the shipped HO3D evaluation set when the
    samples are there (realistic activations), else a seeded random image; boxes ``[B,4]``."""
    from hfl_lite.samples import SamplesNotFoundError, samples_root

    try:
        from hfl_lite.data import HO3D

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the stand-in hand announces itself
            sample = HO3D(samples_root() / "ho3d", "evaluation", image_size=preset.image_size,
                          roi_size=preset.roi_size)[0]
        image, hand, obj = sample["image"], sample["hand_box"], sample["obj_box"]
    except (SamplesNotFoundError, UserError):
        size = preset.image_size
        image = torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))
        hand = torch.tensor([0.15, 0.20, 0.65, 0.80]) * size
        obj = torch.tensor([0.40, 0.25, 0.90, 0.85]) * size
    return (image.expand(batch, -1, -1, -1).contiguous(), hand.expand(batch, 4).contiguous(),
            obj.expand(batch, 4).contiguous())


def _weights_to_fp16(proto) -> int:
    """Store the float32 weights of ``proto`` (an ``onnx.ModelProto``, changed in place) that hold
    at least :data:`FP16_MIN_ELEMENTS` values as float16, each followed by a ``Cast`` back to
    float32 under its old name: the initializers and the ``Constant`` nodes (MANO's buffers).
    Returns how many tensors were converted."""
    import onnx
    from onnx import numpy_helper

    def half(tensor):  # the float16 copy of a float32 tensor worth converting, else None
        if tensor.data_type != onnx.TensorProto.FLOAT:
            return None
        values = numpy_helper.to_array(tensor)
        halved = values.astype(np.float16)
        if values.size < FP16_MIN_ELEMENTS or not np.isfinite(halved[np.isfinite(values)]).all():
            return None  # tiny, or beyond float16's range
        return halved

    def cast(source: str, target: str):
        return onnx.helper.make_node("Cast", [source], [target], to=onnx.TensorProto.FLOAT, name=f"{target}__to_fp32")

    graph, nodes = proto.graph, []
    for init in graph.initializer:
        halved = half(init)
        if halved is not None:
            name = init.name
            init.CopyFrom(numpy_helper.from_array(halved, f"{name}__fp16"))
            nodes.append(cast(init.name, name))
    converted = len(nodes)
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        halved = None if value is None else half(value.t)
        if halved is None:
            nodes.append(node)
            continue
        name = node.output[0]
        nodes.append(onnx.helper.make_node("Constant", [], [f"{name}__fp16"], value=numpy_helper.from_array(halved)))
        nodes.append(cast(f"{name}__fp16", name))
        converted += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return converted


def onnx_session(model: str | Path | bytes, threads: int = 1):
    """An ONNX Runtime CPU session (``threads`` intra-op threads) for a file or serialised model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(session, image: torch.Tensor, hand_box: torch.Tensor, obj_box: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run an exported graph: the inputs of :class:`ExportedNetwork` -> ``{output name: tensor}``."""
    feeds = {name: x.detach().cpu().float().numpy() for name, x in zip(INPUT_NAMES, (image, hand_box, obj_box))}
    return {name: torch.from_numpy(v) for name, v in zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), feeds))}


def compare_with_torch(model: nn.Module, session, inputs) -> dict[str, float]:
    """Largest absolute difference, output by output, between the network and its graph on
    ``inputs`` (``(image, hand_box, obj_box)``): pixels for ``joints2d``, metres for ``verts`` and
    ``joints``, logits for ``obj_conf_logits`` and offsets (a tenth of the object box) for
    ``obj_offset``."""
    with torch.no_grad():
        expected = ExportedNetwork(model).eval()(*inputs)
    got = run_onnx(session, *inputs)
    return {name: float((got[name] - want.float()).abs().max()) for name, want in zip(OUTPUT_NAMES, expected)}


def export_onnx(model: nn.Module, precision: str = "fp16", opset: int = OPSET, inputs=None,
                metadata: dict[str, str] | None = None) -> tuple[bytes, dict[str, float]]:
    """Export ``model`` (an :class:`~hfl_lite.model.HFLNet`, on the CPU) to ONNX.

    precision: ``"fp32"`` or ``"fp16"`` (weights stored in float16, computed in float32; see the
    module docstring). inputs: ``(image, hand_box, obj_box)`` to trace and check with (default
    :func:`check_inputs`). metadata: extra ``key: value`` strings for the file's metadata.
    The batch dimension stays free.

    Returns ``(serialised model, differences)``: the bytes to write and
    :func:`compare_with_torch` measured on ``inputs``. Raises :class:`~hfl_lite.errors.UserError`
    when the graph's outputs leave :data:`TOLERANCES`.
    """
    import onnx

    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    model = model.cpu().eval()
    inputs = check_inputs(model.preset) if inputs is None else inputs
    wrapper = ExportedNetwork(model).eval()
    buffer = io.BytesIO()
    free_batch = {name: {0: "batch"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on Python-side input checks (recorded as passed)
        torch.onnx.export(wrapper, tuple(inputs), buffer, input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), opset_version=opset, dynamic_axes=free_batch,
                          do_constant_folding=False, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    if precision == "fp16":
        _weights_to_fp16(proto)
    info = {"producer": "hfl_lite export", "preset": model.preset.name, "image_size": str(model.preset.image_size),
            "roi_size": str(model.preset.roi_size), "precision": precision,
            "outputs": "joints2d px, verts m, joints m (root-relative), obj_conf_logits, obj_offset",
            **(metadata or {})}
    onnx.helper.set_model_props(proto, info)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    differences = compare_with_torch(model, onnx_session(data), inputs)
    beyond = {k: v for k, v in differences.items() if k in TOLERANCES and not v <= TOLERANCES[k]}
    if beyond:
        raise UserError(f"the {precision} ONNX graph differs from the network beyond the tolerances {TOLERANCES} "
                        f"(pixels, metres): {beyond}" + ("; export with --precision fp32" if precision == "fp16" else ""))
    return data, differences


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m hfl_lite export",
        description="Export a trained HFL-Net checkpoint to ONNX (the network from a crop and its boxes to 2D joints, "
                    "vertices, joints and object votes; see hfl_lite.export). Checks the file with ONNX Runtime "
                    "against the network before writing it.")
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (last.pt/best.pt) or exported weights")
    parser.add_argument("--format", default="onnx", choices=FORMATS, help="output format (default onnx)")
    parser.add_argument("--out", required=True, help="file to write, e.g. hfl_lite.onnx")
    parser.add_argument("--precision", default="fp16", choices=PRECISIONS,
                        help="weights stored in float16 (half the size, float32 arithmetic) or float32 (default fp16)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET}; RoiAlign needs 16+)")
    parser.add_argument("--mano-root", help="folder with MANO_RIGHT.pkl the checkpoint was trained with (default: stand-in)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """``python -m hfl_lite export``: see ``--help``."""
    from hfl_lite.atomic import atomic_file
    from hfl_lite.inference import load_model

    args = _parse_args(list(sys.argv[1:] if argv is None else argv))
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: name the file to write, e.g. {out / 'hfl_lite.onnx'}")
    if args.opset < 16:
        raise UserError(f"--opset {args.opset}: RoiAlign with HFL-Net's sampling convention needs opset 16 or later")
    model, meta = load_model(args.checkpoint, "cpu", args.mano_root)
    data, differences = export_onnx(model, args.precision, args.opset,
                                    metadata={"checkpoint": Path(args.checkpoint).name,
                                              "model_config": json.dumps(meta.get("model_config") or {})})
    with atomic_file(out) as f:
        f.write(data)
    print(f"wrote {out} ({len(data) / 1e6:.1f} MB, {args.precision} weights, opset {args.opset}); ONNX Runtime vs "
          f"the network: 2D joints {differences['joints2d']:.2g} px, vertices {differences['verts'] * 1e3:.2g} mm, "
          f"vote offsets {differences['obj_offset']:.2g}")
    return 0
