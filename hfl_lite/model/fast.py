"""A faster inference path for HFL-Net that gives the same outputs as the plain one.

    fast = optimize_for_inference(model)              # a copy; ``model`` itself is left alone
    out = fast(images, hand_boxes, obj_boxes)         # what model.eval()(...) returns, without autograd

What the copy changes, none of which alters the arithmetic beyond float32 rounding:

* evaluation mode and ``torch.inference_mode`` (no autograd bookkeeping);
* every batch normalisation that directly follows a convolution is folded into it
  (:func:`fold_batchnorm`): ``W' = W * g``, ``b' = (b - mean) * g + beta`` with
  ``g = gamma / sqrt(var + eps)``, so the pair costs one convolution. The pre-activation
  normalisations of the hourglass blocks (BN before ReLU before conv) cannot be folded and stay;
* channels-last (NHWC) weights and input images, the layout oneDNN (CPU) and cuDNN (GPU)
  convolutions run natively;
* optionally ``torch.compile`` (off by default: compiling takes minutes on a small CPU).

Optionally it also runs under mixed precision (``autocast="bf16"`` or ``"fp16"``; on a GPU
that uses the tensor cores). This one does change the numbers (about 1e-2 relative); outputs
are returned in float32 either way.

Already batched in the plain model, so left as they are: the attention blocks use
``scaled_dot_product_attention`` over all heads at once, and each ROIAlign call pools the
whole batch.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["FastInference", "fold_batchnorm", "fold_conv_bn", "optimize_for_inference"]

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` with ``bn`` in evaluation mode.

    ``conv`` is any ``nn.Conv2d`` (its bias may be absent); ``bn`` must track running
    statistics (its affine parameters may be absent). The returned convolution has a bias;
    ``conv`` and ``bn`` are not modified.
    """
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"fold_conv_bn: need (nn.Conv2d, nn.BatchNorm2d), got ({type(conv).__name__}, {type(bn).__name__})")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_conv_bn: the batch norm has no running statistics (track_running_stats=False)")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"fold_conv_bn: batch norm over {bn.num_features} channels after a conv with "
                         f"{conv.out_channels} output channels")
    with torch.no_grad():
        w = conv.weight
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_var)
        scale = gamma / torch.sqrt(bn.running_var + bn.eps)  # [C_out]
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused = copy.deepcopy(conv)
        fused.weight = nn.Parameter(w * scale.reshape(-1, *([1] * (w.dim() - 1))), requires_grad=w.requires_grad)
        fused.bias = nn.Parameter((bias - bn.running_mean) * scale + beta, requires_grad=w.requires_grad)
    return fused


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None
            and bn.num_features == conv.out_channels)


def fold_batchnorm(module: nn.Module) -> int:
    """Fold, in place, every batch norm that directly follows a convolution; returns how many.

    The pairs found are the ones a module applies back to back: consecutive
    ``(nn.Conv2d, nn.BatchNorm2d)`` children of an ``nn.Sequential``, and the attribute pairs
    ``conv1/bn1``, ``conv2/bn2``, ... of torchvision-style residual blocks and stems (whose
    ``forward`` computes ``bnK(convK(x))``). The convolution is replaced by the folded one and
    the batch norm by ``nn.Identity``. Use on a model in evaluation mode only.
    """
    folded = 0
    for parent in list(module.modules()):
        if isinstance(parent, nn.Sequential):
            for i in range(len(parent) - 1):
                if _foldable(parent[i], parent[i + 1]):
                    parent[i] = fold_conv_bn(parent[i], parent[i + 1])
                    parent[i + 1] = nn.Identity()
                    folded += 1
        children = dict(parent.named_children())
        for name, child in children.items():
            if name.startswith("conv") and name[4:].isdigit() and _foldable(child, children.get("bn" + name[4:])):
                setattr(parent, name, fold_conv_bn(child, children["bn" + name[4:]]))
                setattr(parent, "bn" + name[4:], nn.Identity())
                folded += 1
    return folded


class FastInference(nn.Module):
    """Inference wrapper made by :func:`optimize_for_inference`; call it like the model.

    ``forward(images, *args, **kwargs)`` runs ``self.model`` under ``torch.inference_mode``
    (and autocast if asked), with ``images`` in channels-last layout when ``channels_last``,
    and returns the model's dict with floating-point tensors in float32. ``preset`` and
    ``config`` are the wrapped model's.
    """

    def __init__(self, model: nn.Module, channels_last: bool, autocast: str | None):
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        self.autocast = autocast

    @property
    def preset(self):
        return getattr(self.model, "preset", None)

    @property
    def config(self):
        return getattr(self.model, "config", None)

    def forward(self, images: torch.Tensor, *args, **kwargs):
        if self.channels_last and isinstance(images, torch.Tensor) and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.autocast is None:
                out = self.model(images, *args, **kwargs)
            else:
                with torch.autocast(images.device.type, dtype=_AUTOCAST[self.autocast]):
                    out = self.model(images, *args, **kwargs)
        return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in out.items()}


def optimize_for_inference(model: nn.Module, channels_last: bool = True, fold_bn: bool = True, compile: bool = False,
                           autocast: str | None = None) -> FastInference:
    """A faster copy of ``model`` (e.g. :class:`~hfl_lite.model.HFLNet`) for inference.

    channels_last: NHWC weights and inputs.  fold_bn: :func:`fold_batchnorm` on the copy.
    compile: wrap the copy in ``torch.compile`` (the first call compiles).
    autocast: None (float32, the default), "bf16" or "fp16" mixed precision.
    ``model`` is not modified; the copy lives on the same device. See the module docstring.
    """
    if autocast is not None and autocast not in _AUTOCAST:
        raise ValueError(f"optimize_for_inference: autocast must be None or one of {sorted(_AUTOCAST)}, got {autocast!r}")
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    if fold_bn:
        fold_batchnorm(fast)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if compile:
        fast = torch.compile(fast)
    return FastInference(fast, channels_last, autocast).eval()
