"""HFL-Net: backbones, ROI features, interaction modules, decoders and the full network.

    build_backbone(kind, preset)   kind in {"hfl", "single", "double"} -> (P_h, P_o)
    HFLNet(preset, ...)            the full network; forward(images, hand_boxes, obj_boxes)
    build_model(preset, **kw)      HFLNet with the paper's configuration by default
    optimize_for_inference(model)  the same network, batch norm folded, channels-last, no autograd
"""
from .attention import HAND_VARIANTS, OBJECT_VARIANTS, AttentionBlock, HandInteraction, ObjectInteraction
from .backbone import BACKBONE_KINDS, DoubleStreamBackbone, HFLBackbone, SingleStreamBackbone, build_backbone
from .fast import FastInference, fold_batchnorm, fold_conv_bn, optimize_for_inference
from .fpn import FPN
from .hand_decoder import HandDecoder, HandEncoder, soft_argmax
from .hflnet import PAPER_VARIANTS, HFLNet, build_model
from .hourglass import Hourglass, HourglassHead, PreActBottleneck
from .init import reference_init_
from .object_decoder import ObjectDecoder
from .resnet import ResNetTrunk, imagenet_state_dict
from .roi import ROI_CONVENTIONS, clamp_boxes, intersection_boxes, pool, pool_features, validate_boxes

__all__ = [
    "AttentionBlock", "BACKBONE_KINDS", "DoubleStreamBackbone", "FPN", "FastInference", "HAND_VARIANTS", "HFLBackbone", "HFLNet",
    "HandDecoder", "HandEncoder", "HandInteraction", "Hourglass", "HourglassHead", "OBJECT_VARIANTS",
    "ObjectDecoder", "ObjectInteraction", "PAPER_VARIANTS", "PreActBottleneck", "ROI_CONVENTIONS", "ResNetTrunk",
    "SingleStreamBackbone",
    "build_backbone", "build_model", "clamp_boxes", "fold_batchnorm", "fold_conv_bn", "imagenet_state_dict",
    "intersection_boxes", "optimize_for_inference", "pool", "pool_features", "reference_init_", "soft_argmax",
    "validate_boxes",
]
