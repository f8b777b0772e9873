"""`nn.MultiheadAttention`, `nn.TransformerEncoderLayer`, `nn.TransformerEncoder` and
`F.scaled_dot_product_attention`, with PyTorch's parameter names (`in_proj_weight`,
`out_proj`, `linear1`, `norm1` ...), defaults and mask conventions, built from registered ops."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from .. import dtypes
from ..errors import ShapeError
from ..tensor import Tensor, ones, zeros
from . import functional as F
from . import init
from .layers import Dropout, LayerNorm, Linear, ModuleList
from .module import Module, Parameter


def _additive(mask: Tensor | None, like: Tensor) -> Tensor | None:
    """A bool mask (True = may not attend) as -inf where True; a float mask as given."""
    if mask is None:
        return None
    if mask.dtype == dtypes.bool:
        return zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(mask, float("-inf"))
    return mask


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(q k^T * scale + mask) v over the last two dimensions. A bool attn_mask marks
    the positions that MAY attend (True), as in PyTorch's SDPA."""
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    w = query @ key.transpose(-2, -1) * scale
    L, S = query.shape[-2], key.shape[-2]
    if is_causal:
        causal = ones(L, S, dtype=dtypes.bool, device=query.device).tril()
        w = w.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        w = w.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == dtypes.bool else w + attn_mask
    w = F.softmax(w, dim=-1)
    if dropout_p > 0:
        w = F.dropout(w, dropout_p, True)
    return w @ value


class MultiheadAttention(Module):
    """PyTorch's MultiheadAttention (packed in_proj for equal q/k/v sizes; bias, dropout,
    batch_first, key_padding_mask and attn_mask as bool or additive float masks)."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if add_bias_kv or add_zero_attn or (kdim not in (None, embed_dim)) or (vdim not in (None, embed_dim)):
            raise NotImplementedError(
                "MultiheadAttention: add_bias_kv, add_zero_attn and kdim/vdim other than "
                "embed_dim are not supported by tracetensor"
            )
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = embed_dim, num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        self.in_proj_weight = Parameter(zeros(3 * embed_dim, embed_dim, dtype=dtype, device=device))
        if bias:
            self.in_proj_bias = Parameter(zeros(3 * embed_dim, dtype=dtype, device=device))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        batched = query.ndim == 3
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            key_padding_mask = key_padding_mask.unsqueeze(0) if key_padding_mask is not None else None
        elif self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        L, N, E = query.shape
        S = key.shape[0]
        if E != self.embed_dim:
            raise ShapeError(
                "MultiheadAttention", f"was expecting embedding dimension of {self.embed_dim}, but got {E}"
            )
        H, hd = self.num_heads, self.head_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        wq, wk, wv = w[:E], w[E : 2 * E], w[2 * E :]
        bq, bk, bv = (b[:E], b[E : 2 * E], b[2 * E :]) if b is not None else (None, None, None)
        q = F.linear(query, wq, bq).reshape(L, N * H, hd).transpose(0, 1)
        k = F.linear(key, wk, bk).reshape(S, N * H, hd).transpose(0, 1)
        v = F.linear(value, wv, bv).reshape(S, N * H, hd).transpose(0, 1)
        scores = (q * math.sqrt(1.0 / hd)) @ k.transpose(-2, -1)  # (N*H, L, S)
        mask = _additive(attn_mask, q)
        if mask is not None:
            scores = scores + (mask if mask.ndim == 2 else mask.reshape(N * H, L, S))
        if key_padding_mask is not None:
            pad = _additive(key_padding_mask, q).reshape(N, 1, 1, S)
            scores = (scores.reshape(N, H, L, S) + pad).reshape(N * H, L, S)
        weights = F.softmax(scores, dim=-1)
        if self.dropout > 0 and self.training:
            weights = F.dropout(weights, self.dropout, True)
        out = (weights @ v).transpose(0, 1).reshape(L * N, E)
        out = self.out_proj(out).reshape(L, N, E)
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        weights = weights.reshape(N, H, L, S)
        if average_attn_weights:
            weights = weights.mean(1)
        return out, (weights if batched else weights.squeeze(0))


class TransformerEncoderLayer(Module):
    """Self-attention then a feed-forward block, each with a residual and LayerNorm (post-norm,
    or pre-norm with norm_first), PyTorch's defaults (dim_feedforward=2048, dropout=0.1, relu)."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        if isinstance(activation, str):
            if activation not in ("relu", "gelu"):
                raise RuntimeError(f"activation should be relu/gelu, not {activation}")
            activation = F.relu if activation == "relu" else F.gelu
        self.activation = activation

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None) -> Tensor:
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False)[0]
        return self.dropout1(x)

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerEncoder(Module):
    """`num_layers` copies of an encoder layer, then an optional norm."""

    def __init__(
        self,
        encoder_layer: TransformerEncoderLayer,
        num_layers: int,
        norm: Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ) -> None:
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self,
        src: Tensor,
        mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool | None = None,
    ) -> Tensor:
        out = src
        for mod in self.layers:
            out = mod(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
        return self.norm(out) if self.norm is not None else out

    @staticmethod
    def generate_square_subsequent_mask(sz: int, device: Any = None, dtype: Any = None) -> Tensor:
        return generate_square_subsequent_mask(sz, device, dtype)


def generate_square_subsequent_mask(sz: int, device: Any = None, dtype: Any = None) -> Tensor:
    """The causal mask: -inf above the diagonal, 0 elsewhere (float)."""
    return zeros(sz, sz, dtype=dtype, device=device).masked_fill(
        ones(sz, sz, dtype=dtypes.bool, device=device).triu(1), float("-inf")
    )


class Transformer(Module):
    """Only the static helper PyTorch scripts use (`nn.Transformer.generate_square_subsequent_mask`);
    the encoder-decoder model itself is not provided."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "nn.Transformer (encoder-decoder) is not supported by tracetensor; "
            "nn.TransformerEncoder and nn.MultiheadAttention are"
        )

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)


__all__ = [
    "MultiheadAttention",
    "TransformerEncoderLayer",
    "TransformerEncoder",
    "Transformer",
    "scaled_dot_product_attention",
]
