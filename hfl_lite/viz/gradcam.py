"""Grad-CAM heatmaps of HFL-Net's hand and object streams (the paper's Figure 3).

The paper argues visually: in a single shared backbone the hand and the object blur together,
while the harmonious backbone gives each stream its own focus. :func:`stream_gradcam` computes
class-activation maps with pytorch-grad-cam on either stream of any backbone kind.

Targets. HFL-Net has no class scores, so each stream gets a scalar that says how strongly its
head finds what it looks for:

* hand stream: the sum over the 21 joints of the peak of the hand decoder's joint score map
  (``heatmaps``, the logits that the spatial softmax of the soft-argmax turns into weights;
  like a class logit, taken before the normalisation);
* object stream: the sum over the 21 control points of the highest sigmoid confidence of the
  object decoder's vote map.

Layers. ``"layer2"`` and ``"layer3"`` are the stream's own ResNet stages and ``"fpn"`` is the
stream's final FPN convolution (the map ``P^h`` or ``P^o``):

=========  =============================  ====================================
backbone   hand stream                    object stream
=========  =============================  ====================================
single     ``resnet.layerN``, ``fpn``     the same modules (the point of Fig. 3)
hfl        ``resnet.layerN``, ``fpn_h``   ``obj_layerN``, ``fpn_o``
double     ``hand.resnet.layerN`` ...     ``obj.resnet.layerN`` ...
=========  =============================  ====================================

For the single-stream backbone both streams read the same activations and differ only through
their targets' gradients, so gradient-free methods (``"eigencam"``) give the same map for both.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["LAYERS", "METHODS", "STREAMS", "StreamScores", "stream_gradcam", "stream_layer"]

STREAMS = ("hand", "object")
LAYERS = ("layer2", "layer3", "fpn")
METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam")


def _cam_class(method: str):
    """The pytorch-grad-cam class for ``method`` (one of :data:`METHODS`)."""
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM

    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM,
            "layercam": LayerCAM, "eigencam": EigenCAM}[method]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def stream_layer(model: nn.Module, stream: str, layer: str) -> nn.Module:
    """The module of ``model.backbone`` whose activations stand for ``stream`` at ``layer``.

    model: an ``HFLNet``; stream: "hand" or "object"; layer: "layer2", "layer3" or "fpn"
    (see the table in the module docstring).
    """
    from ..model.backbone import DoubleStreamBackbone, HFLBackbone, SingleStreamBackbone

    _check_choice("stream", stream, STREAMS)
    _check_choice("layer", layer, LAYERS)
    backbone = getattr(model, "backbone", None)
    hand = stream == "hand"
    if isinstance(backbone, DoubleStreamBackbone):
        backbone = backbone.hand if hand else backbone.obj
    if isinstance(backbone, SingleStreamBackbone):
        return backbone.fpn.smooth if layer == "fpn" else getattr(backbone.resnet, layer)
    if isinstance(backbone, HFLBackbone):
        if layer == "fpn":
            return (backbone.fpn_h if hand else backbone.fpn_o).smooth
        return getattr(backbone.resnet, layer) if hand else getattr(backbone, f"obj_{layer}")
    raise TypeError(f"model.backbone must be a single, double or HFL backbone, got {type(backbone).__name__}")


class StreamScores(nn.Module):
    """``images [B,3,S,S] -> [B,2]``: (hand score, object score) for fixed boxes (see module doc).

    hand_boxes, obj_boxes: ``[B,4]`` crop pixels, the boxes used for every call.
    """

    def __init__(self, model: nn.Module, hand_boxes: torch.Tensor, obj_boxes: torch.Tensor):
        super().__init__()
        self.model, self.hand_boxes, self.obj_boxes = model, hand_boxes, obj_boxes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images, self.hand_boxes, self.obj_boxes, return_intermediates=True)
        hand = out["heatmaps"].flatten(2).amax(-1).sum(-1)
        obj = torch.sigmoid(out["obj_conf_logits"]).flatten(2).amax(-1).sum(-1)
        return torch.stack([hand, obj], dim=1)


class _StreamTarget:
    """pytorch-grad-cam target: picks the stream's score from one sample's ``[2]`` output."""

    def __init__(self, index: int):
        self.index = index

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output[self.index]


def stream_gradcam(model: nn.Module, images: torch.Tensor, hand_boxes: torch.Tensor, obj_boxes: torch.Tensor,
                   stream: str = "hand", layer: str = "layer3", method: str = "gradcam") -> dict[str, np.ndarray]:
    """Class-activation maps of one stream for a batch.

    model:       an ``HFLNet`` (any backbone kind); run in eval mode, its mode is restored after.
                 The parameters' ``.grad`` are left as they were.
    images:      ``[B,3,S,S]`` RGB in [0,1] (S = the model preset's image size)
    hand_boxes, obj_boxes: ``[B,4]`` crop pixels ``(x1, y1, x2, y2)``
    stream:      "hand" or "object";  layer: "layer2", "layer3" or "fpn";  method: one of
                 :data:`METHODS` (pytorch-grad-cam's GradCAM, GradCAM++, XGradCAM, LayerCAM, EigenCAM)

    Returns ``{"heatmaps": [B,S,S] float32 in [0,1] (each map scaled to its own maximum),
    "overlays": [B,S,S,3] uint8 RGB (jet colour map blended with the image),
    "scores": [B] float32, the stream's target value}``.
    Bad arguments raise ``ValueError`` naming the argument (boxes are checked by the model).
    """
    from pytorch_grad_cam.utils.image import show_cam_on_image

    _check_choice("stream", stream, STREAMS)
    _check_choice("layer", layer, LAYERS)
    _check_choice("method", method, METHODS)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor [B,3,S,S], got {shape}")
    target_layer = stream_layer(model, stream, layer)
    device = next(model.parameters()).device
    images = images.detach().float().to(device)
    hand_boxes, obj_boxes = (b.to(device) if isinstance(b, torch.Tensor) else b for b in (hand_boxes, obj_boxes))
    scores_model = StreamScores(model, hand_boxes, obj_boxes)
    index = STREAMS.index(stream)
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]
    was_training = model.training
    # The input requires grad so that activations carry gradients even for frozen parameters.
    cam = _cam_class(method)(model=scores_model, target_layers=[target_layer])
    try:
        with torch.enable_grad():
            heatmaps = cam(input_tensor=images.clone().requires_grad_(True),
                           targets=[_StreamTarget(index)] * images.shape[0])
        scores = cam.outputs[:, index].detach().float().cpu().numpy()
    finally:
        cam.activations_and_grads.release()
        for p, g in zip(params, saved_grads):
            p.grad = g
        model.train(was_training)
    heatmaps = np.nan_to_num(np.asarray(heatmaps, dtype=np.float32)).clip(0.0, 1.0)
    rgb = images.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32).clip(0.0, 1.0)
    overlays = np.stack([show_cam_on_image(img, hm, use_rgb=True) for img, hm in zip(rgb, heatmaps)])
    return {"heatmaps": heatmaps, "overlays": overlays, "scores": scores}
