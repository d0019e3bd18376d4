"""Attention blocks and the two interaction modules of HFL-Net (paper Sec. 3.2, Fig. 4).

Attention block (as in the reference code): for a query map ``X [B,d,H,W]`` and a key/value
map ``Y [B,d,H',W']`` (``Y = X`` for self-attention),

    Q, K, V = conv1x1_q(X), conv1x1_k(Y), conv1x1_v(Y)         each d -> d, flattened to tokens
    A       = softmax(Q_h K_h^T / sqrt(d / heads)) V_h           per head h (4 heads), concatenated
    Z       = X + A                                              residual on the *input* query;
                                                                 no output projection, no positional encoding
    out     = Z + MLP(LayerNorm(Z))                              MLP: d -> 4d, GELU, 4d -> d

Interaction variants (Tables 7 and 8 of the paper), by name:

hand side (object-to-hand), giving F^he from F^h:
    "concat_sa"  the paper's: self-attention over concat(F^h, F^oh) (2C channels); keep the first C
    "none"       F^he = F^h                     ("w/o enhance")
    "sa"         self-attention over F^h        ("SA")
    "ca"         cross-attention, query F^h, key/value F^o      ("CA")
    "add_sa"     self-attention over F^h + F^oh                 ("ADD+SA")
object side (hand-to-object), giving F^oe from F^o:
    "h2o"        the paper's: cross-attention, query F^o, key/value F^ho (from P^h)   ("H-to-O")
    "o2o"        the same with key/value F^oo, the intersection pooled from P^o       ("O-to-O")
    "none"       F^oe = F^o                     ("w/o inter.")

Gradient flow: as in the reference code, features taken from the *other* stream are detached.
The hand loss does not reach the object stream through F^oh (or F^o for "ca"), and the object
loss does not reach the hand stream through F^ho. Each stream still learns from its own head,
and the shared layers (stem, layer1, layer4) from both.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttentionBlock", "HAND_VARIANTS", "HandInteraction", "OBJECT_VARIANTS", "ObjectInteraction"]

HAND_VARIANTS = ("concat_sa", "none", "sa", "ca", "add_sa")
OBJECT_VARIANTS = ("h2o", "o2o", "none")


class AttentionBlock(nn.Module):
    """One attention block on feature maps (see the module docstring).

    ``forward(query [B,d,H,W], key_value [B,d,H',W'] | None, return_attention=False)``
    returns ``out [B,d,H,W]``, and with ``return_attention`` also the attention weights
    ``[B,heads,H*W,H'*W']`` (rows sum to 1; tokens in row-major order of the map).
    ``key_value=None`` means self-attention.
    """

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: int = 4):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"AttentionBlock: dim ({dim}) must be divisible by heads ({heads})")
        self.dim, self.heads = dim, heads
        self.to_q = nn.Conv2d(dim, dim, kernel_size=1)
        self.to_k = nn.Conv2d(dim, dim, kernel_size=1)
        self.to_v = nn.Conv2d(dim, dim, kernel_size=1)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,d,H,W] -> [B,heads,H*W,d/heads]``."""
        b = x.shape[0]
        return x.flatten(2).transpose(1, 2).reshape(b, -1, self.heads, self.dim // self.heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor | None = None, return_attention: bool = False):
        if key_value is None:
            key_value = query
        b, d, h, w = query.shape
        q, k, v = self._heads(self.to_q(query)), self._heads(self.to_k(key_value)), self._heads(self.to_v(key_value))
        if return_attention:
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
            attended = weights @ v
        else:
            weights = None
            attended = F.scaled_dot_product_attention(q, k, v)
        tokens = query.flatten(2).transpose(1, 2) + attended.transpose(1, 2).reshape(b, h * w, d)
        tokens = tokens + self.mlp(self.norm(tokens))
        out = tokens.transpose(1, 2).reshape(b, d, h, w)
        return (out, weights) if return_attention else out


class HandInteraction(nn.Module):
    """Object-to-hand enhancement: ``forward(F_h, F_oh, F_o) -> (F_he, attention | None)``.

    All inputs ``[B,C,R,R]``; ``F_he [B,C,R,R]``. ``variant`` in :data:`HAND_VARIANTS`.
    F_oh and F_o come from the object stream and are detached.
    """

    def __init__(self, channels: int, variant: str = "concat_sa", heads: int = 4):
        super().__init__()
        if variant not in HAND_VARIANTS:
            raise ValueError(f"hand_interaction: unknown variant {variant!r}; choices: {list(HAND_VARIANTS)}")
        self.variant, self.channels = variant, channels
        dim = 2 * channels if variant == "concat_sa" else channels
        self.block = None if variant == "none" else AttentionBlock(dim, heads)

    def forward(self, f_h, f_oh, f_o, return_attention: bool = False):
        if self.block is None:
            return f_h, None
        if self.variant == "concat_sa":
            out = self.block(torch.cat([f_h, f_oh.detach()], dim=1), None, return_attention)
        elif self.variant == "sa":
            out = self.block(f_h, None, return_attention)
        elif self.variant == "ca":
            out = self.block(f_h, f_o.detach(), return_attention)
        else:  # add_sa
            out = self.block(f_h + f_oh.detach(), None, return_attention)
        enhanced, weights = out if return_attention else (out, None)
        return enhanced[:, : self.channels], weights


class ObjectInteraction(nn.Module):
    """Hand-to-object enhancement: ``forward(F_o, F_ho, F_oo) -> (F_oe, attention | None)``.

    ``variant`` in :data:`OBJECT_VARIANTS`; "h2o" uses F_ho (hand stream, detached), "o2o"
    uses F_oo (object stream, so not detached; may be ``None`` for the other variants).
    """

    def __init__(self, channels: int, variant: str = "h2o", heads: int = 4):
        super().__init__()
        if variant not in OBJECT_VARIANTS:
            raise ValueError(f"object_interaction: unknown variant {variant!r}; choices: {list(OBJECT_VARIANTS)}")
        self.variant = variant
        self.block = None if variant == "none" else AttentionBlock(channels, heads)

    def forward(self, f_o, f_ho, f_oo=None, return_attention: bool = False):
        if self.block is None:
            return f_o, None
        key_value = f_ho.detach() if self.variant == "h2o" else f_oo
        out = self.block(f_o, key_value, return_attention)
        return out if return_attention else (out, None)
