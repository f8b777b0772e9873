"""Every op, checked by one helper: forward against a numpy reference and gradient
against float64 central finite differences (`tt.autograd.gradcheck`), over several
shapes (broadcasting included), in float32 and float64. The table below declares
each op once (chainer style); pytest expands it."""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import tracetensor as tt
from tracetensor import events
from tracetensor._registry import REGISTRY


def _np_log_softmax(a, axis=-1):
    s = a - a.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _np_gather(a, idx, axis):
    return np.take_along_axis(a, idx, axis=axis)


def _np_ce_nd(a, y, w):
    """PyTorch's weighted mean cross-entropy over (N, C, L) with ignore_index=-100."""
    lsm = _np_log_softmax(a, 1)
    keep = y != -100
    yy = np.where(keep, y, 0)
    picked = np.take_along_axis(lsm, yy[:, None], 1)[:, 0]
    ww = w[yy] * keep
    return -(picked * ww).sum() / ww.sum()


_np_erf = np.vectorize(math.erf, otypes=[np.float64])


def _np_standardize(a, axes, eps=1e-5):
    return (a - a.mean(axes, keepdims=True)) / np.sqrt(a.var(axes, keepdims=True) + eps)


def _np_softplus(a, beta=1.0, threshold=20.0):
    return np.where(a * beta > threshold, a, np.log1p(np.exp(a * beta)) / beta)


def _np_conv2d(x, w, stride=1, padding=0):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, ho, wo), dtype=np.result_type(x, w))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w)
    return out


def _np_max_pool(x, k, stride):
    n, c, h, w = x.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.empty((n, c, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = x[:, :, i * stride : i * stride + k, j * stride : j * stride + k].max(axis=(2, 3))
    return out


@dataclass
class Case:
    """One op under test. `fn` takes tensors, `ref` the same inputs as numpy arrays.
    `shapes` lists input-shape tuples to try; `domain` shapes the random inputs;
    `ints` gives extra integer inputs (made by `ints(rng, shapes)`) appended after the floats."""

    name: str
    fn: Callable[..., Any]
    ref: Callable[..., Any]
    shapes: list[tuple[tuple[int, ...], ...]]
    domain: str = "any"  # any | pos | away0 (|x| > 0.2, for kinks at 0) | distinct | offgrid
    grad: bool = True
    ints: Callable[..., list[np.ndarray]] | None = None
    complex_in: bool = False
    tol32: float = 2e-2
    tags: tuple[str, ...] = field(default=())


B = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3))]  # broadcasting pairs
U = [((3, 4),), ((5,),), ((2, 3, 2),)]  # unary shapes


def _np_avg_pool_pad(x, k=3, s=2, p=1):
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ho, wo = (xp.shape[2] - k) // s + 1, (xp.shape[3] - k) // s + 1
    return np.array(
        [
            [
                [[xp[n, c, i * s : i * s + k, j * s : j * s + k].mean() for j in range(wo)] for i in range(ho)]
                for c in range(x.shape[1])
            ]
            for n in range(x.shape[0])
        ]
    )


def _labels(rng, shapes):
    n, c = shapes[0][0], shapes[0][-1]
    return [rng.integers(0, c, size=(n,))]


CASES = [
    Case("add", lambda a, b: a + b, np.add, B),
    Case("sub", lambda a, b: a - b, np.subtract, B),
    Case("mul", lambda a, b: a * b, np.multiply, B),
    Case("div", lambda a, b: a / b, np.divide, B, domain="away0"),
    Case("pow", lambda a, b: a**b, np.power, B[:3], domain="pos"),
    Case("maximum", tt.maximum, np.maximum, B, domain="distinct"),
    Case("minimum", tt.minimum, np.minimum, B, domain="distinct"),
    Case("neg", lambda a: -a, np.negative, U),
    Case("exp", tt.exp, np.exp, U),
    Case("log", tt.log, np.log, U, domain="pos"),
    Case("sqrt", tt.sqrt, np.sqrt, U, domain="pos"),
    Case("abs", tt.abs, np.abs, U, domain="away0"),
    Case("tanh", tt.tanh, np.tanh, U),
    Case("sigmoid", tt.sigmoid, lambda a: 1 / (1 + np.exp(-a)), U),
    Case("relu", tt.relu, lambda a: np.maximum(a, 0), U, domain="away0"),
    Case("sin", tt.sin, np.sin, U),
    Case("square", tt.square, np.square, U),
    Case("clamp", lambda a: a.clamp(-0.5, 0.7), lambda a: np.clip(a, -0.5, 0.7), U, domain="away0"),
    Case("clamp_min", lambda a: a.clamp(min=0.3), lambda a: np.maximum(a, 0.3), U, domain="away0"),
    Case("where", lambda a, b: tt.where(a > 0, a, b), lambda a, b: np.where(a > 0, a, b), B[:3], domain="away0"),
    Case(
        "matmul",
        tt.matmul,
        np.matmul,
        [
            ((3, 4), (4, 2)),
            ((2, 3, 4), (4, 5)),
            ((4,), (4, 3)),
            ((3, 4), (4,)),
            ((4,), (4,)),
            ((2, 1, 3, 4), (3, 4, 2)),
        ],
    ),
    Case("sum", lambda a: a.sum(), np.sum, U),
    Case("sum_dim", lambda a: a.sum(0, keepdim=True), lambda a: a.sum(0, keepdims=True), U),
    Case("mean_dims", lambda a: a.mean((0, -1)), lambda a: a.mean((0, -1)), [((3, 4),), ((2, 3, 2),)]),
    Case("var", lambda a: a.var(), lambda a: a.var(ddof=1), U),
    Case("var_dim", lambda a: a.var(1, keepdim=True), lambda a: a.var(1, ddof=1, keepdims=True), [((3, 4),)]),
    Case("var_biased", lambda a: a.var(0, unbiased=False), lambda a: a.var(0), U),
    Case("std", lambda a: a.std(-1), lambda a: a.std(-1, ddof=1), U),
    Case("std_corr0", lambda a: a.std(correction=0), lambda a: a.std(), U),
    Case("prod", lambda a: a.prod(), np.prod, U),
    Case("prod_dim", lambda a: a.prod(1), lambda a: a.prod(1), [((3, 4),), ((2, 3, 2),)]),
    Case("prod_zero", lambda a: (a * (a > 0)).prod(0), lambda a: (a * (a > 0)).prod(0), [((3, 4),)], domain="away0"),
    Case("max", lambda a: a.max(), np.max, U, domain="distinct"),
    Case("max_dim", lambda a: a.max(1).values, lambda a: a.max(1), [((3, 4),)], domain="distinct"),
    Case(
        "min_dim",
        lambda a: a.min(0, keepdim=True).values,
        lambda a: a.min(0, keepdims=True),
        [((3, 4),)],
        domain="distinct",
    ),
    Case("logsumexp", lambda a: a.logsumexp(-1), lambda a: np.log(np.exp(a).sum(-1)), U),
    Case(
        "logsumexp2",
        lambda a: a.logsumexp((0, 1), keepdim=True),
        lambda a: np.log(np.exp(a).sum((0, 1), keepdims=True)),
        [((3, 4),)],
    ),
    Case("cumsum", lambda a: a.cumsum(0), lambda a: np.cumsum(a, 0), U),
    Case("softmax", lambda a: a.softmax(-1), lambda a: np.exp(_np_log_softmax(a)), U),
    Case("log_softmax", lambda a: a.log_softmax(0), lambda a: _np_log_softmax(a, 0), U),
    Case("reshape", lambda a: a.reshape(-1, 2), lambda a: a.reshape(-1, 2), [((3, 4),), ((2, 3, 2),)]),
    Case("permute", lambda a: a.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), [((2, 3, 4),)]),
    Case("transpose", lambda a: a.t(), lambda a: a.T, [((3, 4),)]),
    Case("flip", lambda a: a.flip(0), lambda a: np.flip(a, 0), U),
    Case("flip2", lambda a: a.flip((0, -1)), lambda a: np.flip(a, (0, -1)), [((3, 4),), ((2, 3, 2),)]),
    Case("squeeze", lambda a: a.squeeze(1), lambda a: a.squeeze(1), [((3, 1, 4),)]),
    Case("unsqueeze", lambda a: a.unsqueeze(-1), lambda a: a[..., None], U),
    Case("expand", lambda a: a.expand(2, -1, 4), lambda a: np.broadcast_to(a, (2, 3, 4)), [((3, 1),)]),
    Case("getitem", lambda a: a[1:, ::2], lambda a: a[1:, ::2], [((3, 4),)]),
    Case("getitem_int_array", lambda a: a[[0, 2, 0]], lambda a: a[[0, 2, 0]], [((3, 4),)]),
    Case("cat", lambda a, b: tt.cat([a, b], 0), lambda a, b: np.concatenate([a, b], 0), [((2, 3), (4, 3))]),
    Case(
        "cat_dim1", lambda a, b: tt.cat([a, b, a], dim=1), lambda a, b: np.concatenate([a, b, a], 1), [((2, 3), (2, 1))]
    ),
    Case("stack", lambda a, b: tt.stack([a, b], 1), lambda a, b: np.stack([a, b], 1), [((2, 3), (2, 3))]),
    Case("add_n", lambda a, b: tt.add_n([a, b, a]), lambda a, b: a + b + a, [((2, 3), (2, 3))]),
    Case("clone", lambda a: a.clone(), lambda a: a.copy(), U),
    Case(
        "gather",
        lambda a, i: a.gather(1, tt.from_numpy(i)),
        lambda a, i: _np_gather(a, i, 1),
        [((3, 4),)],
        ints=lambda rng, s: [rng.integers(0, 4, size=(3, 2))],
    ),
    Case(
        "index_select",
        lambda a, i: a.index_select(0, tt.from_numpy(i)),
        lambda a, i: a[i],
        [((3, 4),)],
        ints=lambda rng, s: [np.array([2, 0, 2])],
    ),
    Case(
        "embedding",
        lambda w, i: tt.nn.functional.embedding(tt.from_numpy(i), w),
        lambda w, i: w[i],
        [((5, 3),)],
        ints=lambda rng, s: [np.array([[1, 4], [1, 0]])],
    ),
    Case(
        "softmax_cross_entropy",
        lambda a, b: tt.nn.functional.softmax_cross_entropy_with_logits(a, b.softmax(-1)),
        lambda a, b: -(np.exp(_np_log_softmax(b)) * _np_log_softmax(a)).sum(-1),
        [((3, 4), (3, 4))],
    ),
    Case(
        "cross_entropy",
        lambda a, y: tt.nn.functional.cross_entropy(a, tt.from_numpy(y)),
        lambda a, y: -_np_log_softmax(a)[np.arange(len(y)), y].mean(),
        [((5, 4),)],
        ints=_labels,
    ),
    Case(
        "cross_entropy_nd_weighted",
        lambda a, y: tt.nn.functional.cross_entropy(a, tt.from_numpy(y), weight=tt.tensor([1.0, 2.0, 0.5])),
        lambda a, y: _np_ce_nd(a, y, np.array([1.0, 2.0, 0.5])),
        [((2, 3, 4),)],
        ints=lambda rng, s: [np.array([[0, 2, 1, -100], [1, 1, 0, 2]])],
    ),
    Case(
        "nll_loss",
        lambda a, y: tt.nn.functional.nll_loss(a, tt.from_numpy(y), reduction="sum"),
        lambda a, y: -a[np.arange(len(y)), y].sum(),
        [((5, 4),)],
        ints=_labels,
    ),
    Case(
        "mse_loss", lambda a, b: tt.nn.functional.mse_loss(a, b), lambda a, b: ((a - b) ** 2).mean(), [((3, 4), (3, 4))]
    ),
    Case(
        "binary_cross_entropy",
        lambda a, b: tt.nn.functional.binary_cross_entropy(a.sigmoid(), b.sigmoid()),
        lambda a, b: (
            -(
                1 / (1 + np.exp(-b)) * np.log(1 / (1 + np.exp(-a)))
                + (1 - 1 / (1 + np.exp(-b))) * np.log(1 - 1 / (1 + np.exp(-a)))
            ).mean()
        ),
        [((3, 4), (3, 4))],
    ),
    Case("fft", lambda a: tt.fft.fft(a), lambda a: np.fft.fft(a), [((6,),), ((2, 5),)]),
    Case(
        "fft_n_ortho",
        lambda a: tt.fft.fft(a, n=4, dim=0, norm="ortho"),
        lambda a: np.fft.fft(a, n=4, axis=0, norm="ortho"),
        [((6, 2),), ((3, 2),)],
    ),
    Case("ifft", lambda a: tt.fft.ifft(a), lambda a: np.fft.ifft(a), [((6,),)], complex_in=True),
    Case("rfft", lambda a: tt.fft.rfft(a), lambda a: np.fft.rfft(a), [((6,),), ((2, 5),)]),
    Case("rfft_n", lambda a: tt.fft.rfft(a, n=8), lambda a: np.fft.rfft(a, n=8), [((6,),)]),
    Case("irfft", lambda a: tt.fft.irfft(a), lambda a: np.fft.irfft(a), [((5,),), ((2, 4),)], complex_in=True),
    Case(
        "irfft_odd",
        lambda a: tt.fft.irfft(a, n=7, norm="forward"),
        lambda a: np.fft.irfft(a, n=7, norm="forward"),
        [((4,),)],
        complex_in=True,
    ),
    Case("conv2d", lambda x, w: tt.nn.functional.conv2d(x, w), _np_conv2d, [((2, 3, 5, 5), (4, 3, 3, 3))]),
    Case(
        "conv2d_bias",
        lambda x, w, b: tt.nn.functional.conv2d(x, w, b, padding=1),
        lambda x, w, b: _np_conv2d(x, w, 1, 1) + b.reshape(1, -1, 1, 1),
        [((2, 3, 4, 5), (4, 3, 3, 2), (4,))],
    ),
    Case(
        "conv2d_stride_pad",
        lambda x, w: tt.nn.functional.conv2d(x, w, stride=2, padding=1),
        lambda x, w: _np_conv2d(x, w, 2, 1),
        [((1, 2, 5, 4), (3, 2, 2, 3))],
    ),
    Case(
        "max_pool2d",
        lambda x: tt.nn.functional.max_pool2d(x, 2),
        lambda x: _np_max_pool(x, 2, 2),
        [((2, 2, 4, 4),), ((1, 1, 5, 5),)],
        domain="distinct",
    ),
    Case(
        "max_pool2d_overlap",
        lambda x: tt.nn.functional.max_pool2d(x, 3, stride=1),
        lambda x: _np_max_pool(x, 3, 1),
        [((1, 2, 4, 5),)],
        domain="distinct",
    ),
    # rounding, remainders, special functions
    Case("remainder", lambda a, b: a % b, np.remainder, B[:3], domain="away0"),
    Case("remainder_r", lambda a: 2.5 % a, lambda a: np.remainder(2.5, a), U, domain="away0"),
    Case("floor", tt.floor, np.floor, U, domain="offgrid"),
    Case("ceil", lambda a: a.ceil(), np.ceil, U, domain="offgrid"),
    Case("trunc", lambda a: tt.div(a, 0.3, rounding_mode="trunc"), lambda a: np.trunc(a / 0.3), U, domain="offgrid"),
    Case("round", lambda a: tt.round(a * 3), lambda a: np.round(a * 3), U, domain="offgrid"),
    Case("round_decimals", lambda a: a.round(decimals=1), lambda a: np.round(a, 1), U, domain="offgrid"),
    Case("log1p", tt.log1p, np.log1p, U, domain="pos"),
    Case("expm1", tt.expm1, np.expm1, U),
    Case("log2", tt.log2, np.log2, U, domain="pos"),
    Case("log10", tt.log10, np.log10, U, domain="pos"),
    Case("rsqrt", tt.rsqrt, lambda a: 1 / np.sqrt(a), U, domain="pos"),
    Case("reciprocal", tt.reciprocal, lambda a: 1 / a, U, domain="away0"),
    Case("erf", tt.erf, _np_erf, U),
    Case("erf_wide", lambda a: (a * 2.5).erf(), lambda a: _np_erf(a * 2.5), [((4, 5),)]),
    Case("cos", tt.cos, np.cos, U),
    Case(
        "arith_names",
        lambda a, b: tt.sub(tt.add(a, b, alpha=2), tt.mul(a, b), alpha=0.5).neg().true_divide(tt.div(b, 2) + 3),
        lambda a, b: -(a + 2 * b - 0.5 * a * b) / (b / 2 + 3),
        B[:3],
        domain="away0",
    ),
    # activations and normalization
    Case("softplus", tt.nn.functional.softplus, _np_softplus, U),
    Case(
        "softplus_beta",
        lambda a: tt.nn.functional.softplus(a * 10, beta=2, threshold=5),
        lambda a: _np_softplus(a * 10, 2, 5),
        [((3, 4),)],
        domain="away0",
    ),
    Case("gelu", tt.nn.functional.gelu, lambda a: 0.5 * a * (1 + _np_erf(a / np.sqrt(2))), U),
    Case(
        "gelu_tanh",
        lambda a: tt.nn.functional.gelu(a, approximate="tanh"),
        lambda a: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3))),
        U,
    ),
    Case(
        "leaky_relu",
        lambda a: tt.nn.functional.leaky_relu(a, 0.1),
        lambda a: np.where(a > 0, a, 0.1 * a),
        U,
        domain="away0",
    ),
    Case(
        "elu",
        lambda a: tt.nn.functional.elu(a, 0.7),
        lambda a: np.where(a > 0, a, 0.7 * np.expm1(a)),
        U,
        domain="away0",
    ),
    Case("silu", tt.nn.functional.silu, lambda a: a / (1 + np.exp(-a)), U),
    Case(
        "layer_norm",
        lambda a, w: tt.nn.functional.layer_norm(a, a.shape[-1:], w, w * 2),
        lambda a, w: _np_standardize(a, (-1,)) * w + 2 * w,
        [((3, 4), (4,)), ((2, 3, 2), (2,))],
    ),
    Case(
        "layer_norm_2d",
        lambda a: tt.nn.functional.layer_norm(a, a.shape[1:]),
        lambda a: _np_standardize(a, (1, 2)),
        [((2, 3, 2),)],
    ),
    Case(
        "batch_norm",
        lambda a, w: tt.nn.functional.batch_norm(a, None, None, w, w + 1, training=True),
        lambda a, w: _np_standardize(a, (0,)) * w + (w + 1),
        [((5, 3), (3,))],
    ),
    Case(
        "batch_norm_3d",
        lambda a: tt.nn.functional.batch_norm(a, None, None, training=True),
        lambda a: _np_standardize(a, (0, 2)),
        [((3, 2, 4),)],
    ),
    Case("norm", tt.norm, lambda a: np.sqrt((a * a).sum()), U),
    Case("norm_dim", lambda a: a.norm(dim=-1, keepdim=True), lambda a: np.linalg.norm(a, axis=-1, keepdims=True), U),
    Case(
        "norm_p",
        lambda a: tt.stack([a.norm(1), a.norm(3), a.norm(float("inf"))]),
        lambda a: np.array([np.abs(a).sum(), (np.abs(a) ** 3).sum() ** (1 / 3), np.abs(a).max()]),
        [((3, 4),)],
        domain="distinct",
    ),
    Case(
        "normalize",
        tt.nn.functional.normalize,
        lambda a: a / np.linalg.norm(a, axis=1, keepdims=True),
        [((3, 4),), ((2, 3, 2),)],
    ),
    # losses
    Case(
        "sigmoid_cross_entropy",
        lambda a, b: tt.nn.functional.binary_cross_entropy_with_logits(a * 5, b.sigmoid(), reduction="none"),
        lambda a, b: (
            -(
                1 / (1 + np.exp(-b)) * np.log(1 / (1 + np.exp(-5 * a)))
                + (1 - 1 / (1 + np.exp(-b))) * np.log(1 - 1 / (1 + np.exp(-5 * a)))
            )
        ),
        [((3, 4), (3, 4))],
    ),
    Case(
        "bce_logits_pos_weight",
        lambda a, b: tt.nn.functional.binary_cross_entropy_with_logits(
            a, b.sigmoid(), pos_weight=tt.tensor([1.0, 2.0, 0.5, 3.0])
        ),
        lambda a, b: (
            -(
                np.array([1, 2, 0.5, 3]) * (1 / (1 + np.exp(-b))) * np.log(1 / (1 + np.exp(-a)))
                + (1 - 1 / (1 + np.exp(-b))) * np.log(1 - 1 / (1 + np.exp(-a)))
            )
        ).mean(),
        [((3, 4), (3, 4))],
    ),
    Case(
        "smooth_l1_loss",
        lambda a, b: tt.nn.functional.smooth_l1_loss(a, b, beta=0.5),
        lambda a, b: np.where(np.abs(a - b) < 0.5, (a - b) ** 2, np.abs(a - b) - 0.25).mean(),
        [((3, 4), (3, 4))],
    ),
    # matrices
    Case("dot", tt.dot, np.dot, [((5,), (5,))]),
    Case("outer", tt.outer, np.outer, [((3,), (4,))]),
    Case("bmm", tt.bmm, np.matmul, [((2, 3, 4), (2, 4, 5))]),
    Case("tril", lambda a: a.tril(), np.tril, [((3, 4),), ((2, 3, 3),)]),
    Case("triu", lambda a: tt.triu(a, 1), lambda a: np.triu(a, 1), [((3, 4),), ((2, 3, 3),)]),
    Case("diag", lambda a: tt.diag(a, 1), lambda a: np.diag(a, 1), [((4,),), ((3, 4),)]),
    Case("diag_below", lambda a: a.diag(-1), lambda a: np.diag(a, -1), [((4, 3),)]),
    Case("tile", lambda a: a.repeat(2, 1, 3), lambda a: np.tile(a, (2, 1, 3)), [((3, 4),), ((2, 1, 2),)]),
    Case("tile_short", lambda a: tt.tile(a, (2,)), lambda a: np.tile(a, 2), [((3, 4),)]),
    # selection
    Case(
        "masked_fill", lambda a: a.masked_fill(a > 0.5, -1.0), lambda a: np.where(a > 0.5, -1.0, a), U, domain="away0"
    ),
    Case("sort", lambda a: tt.sort(a, 0).values, lambda a: np.sort(a, 0), U, domain="distinct"),
    Case("sort_desc", lambda a: a.sort(-1, descending=True).values, lambda a: -np.sort(-a, -1), U, domain="distinct"),
    Case("topk", lambda a: a.topk(2).values, lambda a: -np.sort(-a, -1)[..., :2], U, domain="distinct"),
    Case(
        "topk_smallest",
        lambda a: tt.topk(a, 3, dim=0, largest=False).values,
        lambda a: np.sort(a, 0)[:3],
        [((4, 2),)],
        domain="distinct",
    ),
    Case(
        "chunk_split",
        lambda a: tt.cat(
            [(c * (k + 1)).reshape(-1) for k, c in enumerate(a.chunk(3, 1))] + [p.reshape(-1) for p in a.split([1, 2])]
        ),
        lambda a: np.concatenate(
            [(c * (k + 1)).reshape(-1) for k, c in enumerate(np.array_split(a, 3, 1))]
            + [p.reshape(-1) for p in np.split(a, [1])]
        ),
        [((3, 3),)],
    ),
    Case(
        "clamp_max",
        lambda a: tt.clamp_max(tt.clamp_min(a, -0.5), 0.4),
        lambda a: np.clip(a, -0.5, 0.4),
        U,
        domain="away0",
    ),
    Case("floordiv", lambda a, b: a // b, np.floor_divide, B[:3], domain="away0", grad=False),
    Case("imag", lambda a: (a * 2).imag, lambda a: (a * 2).imag, [((3, 4),)], complex_in=True),
    Case("sign", tt.sign, np.sign, U, domain="away0"),
    Case("isnan", lambda a: (a - 1).sqrt().isnan(), lambda a: a < 1, U, grad=False, domain="away0"),
    Case("le", lambda a, b: a <= b, np.less_equal, B, grad=False),
    Case(
        "logical_or_xor",
        lambda a, b: tt.stack([(a > 0) | (b > 0), (a > 0) ^ (b > 0)]),
        lambda a, b: np.stack(np.broadcast_arrays((a > 0) | (b > 0), (a > 0) ^ (b > 0))),
        B[:3],
        grad=False,
    ),
    Case(
        "avg_pool2d",
        lambda x: tt.nn.functional.avg_pool2d(x, 2),
        lambda x: x.reshape(2, 2, 2, 2, 2, 2).mean((3, 5)),
        [((2, 2, 4, 4),)],
    ),
    Case(
        "avg_pool2d_pad",
        lambda x: tt.nn.functional.avg_pool2d(x, 3, stride=2, padding=1),
        lambda x: _np_avg_pool_pad(x),
        [((1, 2, 5, 5),)],
    ),
    Case(
        "adaptive_avg_pool2d",
        lambda x: tt.nn.AdaptiveAvgPool2d(1)(x),
        lambda x: x.mean((2, 3), keepdims=True),
        [((2, 3, 4, 4),)],
    ),
    Case("roll", lambda a: a.roll(1, -1), lambda a: np.roll(a, 1, -1), U),
    Case("roll_dims", lambda a: tt.roll(a, (1, -2), (0, 1)), lambda a: np.roll(a, (1, -2), (0, 1)), [((3, 4),)]),
    # no gradient: outputs are bool or int
    Case("argsort", lambda a: a.argsort(-1), lambda a: np.argsort(a, -1, kind="stable"), U, grad=False),
    Case(
        "argsort_ties",
        lambda a: tt.argsort((a > 0).float(), 0, descending=True),
        lambda a: np.argsort(-(a > 0).astype(float), 0, kind="stable"),
        U,
        grad=False,
    ),
    Case("nonzero", lambda a: tt.nonzero(a > 0), lambda a: np.argwhere(a > 0), U, grad=False),
    Case(
        "nonzero_tuple",
        lambda a: tt.stack((a > 0).nonzero(as_tuple=True)),
        lambda a: np.stack(np.nonzero(a > 0)),
        [((3, 4),)],
        grad=False,
    ),
    Case(
        "isclose",
        lambda a, b: tt.isclose(a, a + b * 1e-6, rtol=0, atol=5e-7),
        lambda a, b: np.isclose(a, a + b * 1e-6, rtol=0, atol=5e-7),
        B,
        grad=False,
    ),
    Case("eq", lambda a, b: a == b, np.equal, B, grad=False),
    Case("lt", lambda a, b: a < b, np.less, B, grad=False),
    Case("ge", lambda a, b: a >= b, np.greater_equal, B, grad=False),
    Case("ne", lambda a, b: a != b, np.not_equal, B, grad=False),
    Case("logical_and", lambda a, b: (a > 0) & (b > 0), lambda a, b: (a > 0) & (b > 0), B, grad=False),
    Case("logical_not", lambda a: ~(a > 0), lambda a: ~(a > 0), U, grad=False),
    Case("isfinite", lambda a: tt.isfinite(a.log()), lambda a: a > 0, U, grad=False),
    Case("isinf", lambda a: (a * 0).log().isinf(), lambda a: np.ones(a.shape, dtype=bool), U, grad=False),
    Case(
        "all_any",
        lambda a: tt.stack([(a > 0).all(0), (a > 0).any(0)]),
        lambda a: np.stack([(a > 0).all(0), (a > 0).any(0)]),
        [((3, 4),)],
        grad=False,
    ),
    Case("argmax", lambda a: a.argmax(1), lambda a: a.argmax(1), [((3, 4),)], grad=False),
    Case(
        "one_hot",
        lambda a: tt.one_hot((a > 0).long() + 1, 3),
        lambda a: np.eye(3, dtype=np.int64)[(a > 0) + 1],
        U,
        grad=False,
    ),
    # TensorFlow 1's layouts (tf.nn.conv2d / max_pool / avg_pool): NHWC, (kh, kw, in, out) filters
    Case(
        "tf_conv2d",
        lambda x, w: _tf_op("tf_conv2d", x, w),
        lambda x, w: _np_tf_conv(x, w),
        [((2, 5, 5, 3), (3, 3, 3, 4))],
    ),
    Case(
        "tf_conv2d_same",
        lambda x, w: _tf_op("tf_conv2d", x, w, strides=(2, 1), padding="SAME", dilations=(1, 2)),
        lambda x, w: _np_tf_conv(x, w, (2, 1), "SAME", (1, 2)),
        [((1, 6, 7, 2), (2, 3, 2, 3))],
    ),
    Case(
        "tf_conv2d_dilated",
        lambda x, w: _tf_op("tf_conv2d", x, w, padding="SAME", dilations=(2, 3)),
        lambda x, w: _np_tf_conv(x, w, (1, 1), "SAME", (2, 3)),
        [((2, 7, 8, 2), (3, 2, 2, 3))],
    ),
    Case(
        "tf_conv2d_nchw",
        lambda x, w: _tf_op("tf_conv2d", x, w, padding="SAME", nchw=True),
        lambda x, w: _np_tf_conv(x.transpose(0, 2, 3, 1), w, padding="SAME").transpose(0, 3, 1, 2),
        [((2, 3, 4, 5), (3, 2, 3, 2))],
    ),
    Case(
        "tf_max_pool",
        lambda x: _tf_op("tf_max_pool", x, ksize=(2, 2), strides=(2, 2), padding="SAME"),
        lambda x: _np_tf_pool(x, np.max, (2, 2), (2, 2), "SAME"),
        [((2, 5, 4, 3),)],
        domain="distinct",
    ),
    Case(
        "tf_avg_pool",
        lambda x: _tf_op("tf_avg_pool", x, ksize=(3, 2), strides=(1, 2), padding="SAME"),
        lambda x: _np_tf_pool(x, np.mean, (3, 2), (1, 2), "SAME"),
        [((2, 4, 5, 2),)],
    ),
    Case(
        "tf_max_pool_nchw",
        lambda x: _tf_op("tf_max_pool", x, ksize=(3, 3), strides=(1, 2), padding="SAME", nchw=True),
        lambda x: _np_tf_pool(x.transpose(0, 2, 3, 1), np.max, (3, 3), (1, 2), "SAME").transpose(0, 3, 1, 2),
        [((2, 3, 5, 6),)],
        domain="distinct",
    ),
    Case("transpose_all", lambda a: _tf_op("transpose_all", a), np.transpose, U),
    Case(
        "tf_conv2d_transpose",
        lambda v, w: _tf_op("tf_conv2d_transpose", v, w, out_hw=(5, 7), strides=(2, 2), padding="SAME"),
        lambda v, w: _np_tf_conv_transpose(v, w, (5, 7), (2, 2), "SAME"),
        [((2, 3, 4, 4), (3, 2, 3, 4))],
    ),
    Case(
        "tf_conv2d_transpose_nchw",
        lambda v, w: _tf_op("tf_conv2d_transpose", v, w, out_hw=(5, 7), strides=(2, 2), padding="SAME", nchw=True),
        lambda v, w: _np_tf_conv_transpose(v.transpose(0, 2, 3, 1), w, (5, 7), (2, 2), "SAME").transpose(0, 3, 1, 2),
        [((2, 4, 3, 4), (3, 2, 3, 4))],
    ),
    Case(
        "tf_pad",
        lambda a: _tf_op("tf_pad", a, paddings=((1, 0), (2, 1))),
        lambda a: np.pad(a, ((1, 0), (2, 1))),
        [((3, 4),)],
    ),
    Case(
        "tf_pad_reflect",
        lambda a: _tf_op("tf_pad", a, paddings=((0, 2), (1, 1)), mode="SYMMETRIC"),
        lambda a: np.pad(a, ((0, 2), (1, 1)), mode="symmetric"),
        [((3, 4),)],
    ),
]


def _tf_op(name, *args, **attrs):
    from tracetensor.tensor import apply

    return apply(REGISTRY[name], *args, **attrs)


def _tf_same(size, k, s, d):
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _np_tf_conv(x, w, strides=(1, 1), padding="VALID", dil=(1, 1)):
    """TF's conv2d by definition: NHWC, SAME padding with the odd row at the bottom/right."""
    kh, kw, c, o = w.shape
    pads = (
        [(0, 0), (0, 0)]
        if padding == "VALID"
        else [_tf_same(x.shape[1 + i], (kh, kw)[i], strides[i], dil[i]) for i in range(2)]
    )
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    ho = (xp.shape[1] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (xp.shape[2] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((x.shape[0], ho, wo, o), dtype=np.result_type(x, w))
    for i in range(ho):
        for j in range(wo):
            patch = xp[
                :,
                i * strides[0] : i * strides[0] + dil[0] * (kh - 1) + 1 : dil[0],
                j * strides[1] : j * strides[1] + dil[1] * (kw - 1) + 1 : dil[1],
                :,
            ]
            out[:, i, j] = np.einsum("nhwc,hwco->no", patch, w)
    return out


def _np_tf_conv_transpose(v, w, out_hw, strides, padding):
    """The transpose of TF's conv2d by definition: each input position scatters v @ w[a, b].T."""
    kh, kw, c, o = w.shape
    pads = (
        [(0, 0), (0, 0)] if padding == "VALID" else [_tf_same(out_hw[i], (kh, kw)[i], strides[i], 1) for i in range(2)]
    )
    out = np.zeros((v.shape[0], out_hw[0] + sum(pads[0]), out_hw[1] + sum(pads[1]), c), np.result_type(v, w))
    for i in range(v.shape[1]):
        for j in range(v.shape[2]):
            for a in range(kh):
                for b in range(kw):
                    out[:, i * strides[0] + a, j * strides[1] + b] += v[:, i, j] @ w[a, b].T
    return out[:, pads[0][0] : pads[0][0] + out_hw[0], pads[1][0] : pads[1][0] + out_hw[1]]


def _np_tf_pool(x, fn, k, s, padding):
    """TF's pools by definition: windows over the real elements only (padding never counts)."""
    pads = [(0, 0), (0, 0)] if padding == "VALID" else [_tf_same(x.shape[1 + i], k[i], s[i], 1) for i in range(2)]
    ho = (x.shape[1] + sum(pads[0]) - k[0]) // s[0] + 1
    wo = (x.shape[2] + sum(pads[1]) - k[1]) // s[1] + 1
    out = np.zeros((x.shape[0], ho, wo, x.shape[3]), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * s[0] - pads[0][0], j * s[1] - pads[1][0]
            win = x[:, max(r0, 0) : r0 + k[0], max(c0, 0) : c0 + k[1], :]
            out[:, i, j] = fn(win, axis=(1, 2))
    return out


def _inputs(case: Case, shapes, dtype, rng):
    arrays = []
    for k, s in enumerate(shapes):
        a = rng.standard_normal(s)
        if case.domain == "pos":
            a = np.abs(a) + 0.5
        elif case.domain == "away0":
            a = np.sign(a) * (np.abs(a) + 0.2)
        elif case.domain == "offgrid":  # k + 0.37: away from every rounding boundary the rows below use
            a = np.round(a * 2) + 0.37
        elif case.domain == "distinct":  # no ties, gaps wider than the finite-difference step
            a = (rng.permutation(max(a.size, 1))[: a.size].reshape(s) * 0.1 + 0.05 * k).astype(np.float64)
        if case.complex_in:
            a = a + 1j * rng.standard_normal(s)
        arrays.append(a.astype(np.result_type(dtype, np.complex64) if case.complex_in else dtype))
    return arrays


PARAMS = [
    pytest.param(c, s, dt, id=f"{c.name}-{'x'.join(map(str, s))}-{np.dtype(dt).name}")
    for c in CASES
    for s in c.shapes
    for dt in (np.float32, np.float64)
]


@pytest.mark.parametrize("case,shapes,dtype", PARAMS)
def test_op(case: Case, shapes, dtype) -> None:
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    arrays = _inputs(case, shapes, dtype, rng)
    extra = case.ints(rng, shapes) if case.ints else []
    ts = [tt.tensor(a, requires_grad=case.grad) for a in arrays]
    out = case.fn(*ts, *extra)
    want = np.asarray(case.ref(*arrays, *extra))
    got = out.detach().numpy()
    assert got.shape == want.shape, f"{case.name}: shape {got.shape}, numpy gives {want.shape}"
    tol = case.tol32 if np.dtype(dtype) == np.float32 else 1e-7
    if want.dtype.kind in "fc":
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        # float32 inputs stay float32 (PyTorch keeps the input precision; numpy would not always)
        assert got.dtype.itemsize <= np.dtype(dtype).itemsize * (2 if got.dtype.kind == "c" else 1)
    else:
        np.testing.assert_array_equal(got, want)
    if case.grad:
        eps, atol, rtol = (1e-6, 1e-5, 1e-4) if np.dtype(dtype) == np.float64 else (1e-3, 3e-2, 3e-2)
        assert tt.autograd.gradcheck(lambda *t: case.fn(*t, *extra), ts, eps=eps, atol=atol, rtol=rtol)
    else:
        assert not out.requires_grad


# the ops added for PyTorch/TF coverage, run on cupy: the same forward and VJP code as numpy
_GPU_CASES = [
    c
    for c in CASES
    if c.name
    in {
        "remainder",
        "remainder_r",
        "floor",
        "ceil",
        "trunc",
        "round",
        "round_decimals",
        "log1p",
        "expm1",
        "log2",
        "log10",
        "rsqrt",
        "reciprocal",
        "erf",
        "erf_wide",
        "arith_names",
        "softplus",
        "softplus_beta",
        "gelu",
        "gelu_tanh",
        "leaky_relu",
        "elu",
        "silu",
        "layer_norm",
        "layer_norm_2d",
        "batch_norm",
        "batch_norm_3d",
        "norm",
        "norm_dim",
        "norm_p",
        "normalize",
        "sigmoid_cross_entropy",
        "smooth_l1_loss",
        "dot",
        "outer",
        "bmm",
        "tril",
        "triu",
        "diag",
        "diag_below",
        "tile",
        "tile_short",
        "masked_fill",
        "sort",
        "sort_desc",
        "topk",
        "topk_smallest",
        "chunk_split",
        "clamp_max",
        "argsort",
        "argsort_ties",
        "nonzero",
        "nonzero_tuple",
        "isclose",
        "conv2d",
        "conv2d_bias",
        "conv2d_stride_pad",
        "max_pool2d",
        "max_pool2d_overlap",
        "avg_pool2d",
        "avg_pool2d_pad",
        "tf_conv2d",
        "tf_conv2d_same",
        "tf_conv2d_dilated",
        "tf_conv2d_nchw",
        "tf_max_pool",
        "tf_avg_pool",
        "tf_conv2d_transpose",
    }
]


@pytest.mark.gpu
@pytest.mark.parametrize("case", _GPU_CASES, ids=lambda c: c.name)
def test_op_on_the_gpu_matches_the_cpu(case: Case) -> None:
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    shapes = case.shapes[-1]
    arrays = _inputs(case, shapes, np.float64, rng)
    cpu = [tt.tensor(a, requires_grad=case.grad) for a in arrays]
    gpu = [tt.tensor(a, device="cuda", requires_grad=case.grad) for a in arrays]
    want, got = case.fn(*cpu), case.fn(*gpu)
    assert got.device.type == "cuda"
    w, g = want.detach().numpy(), got.detach().cpu().numpy()
    assert g.dtype == w.dtype and g.shape == w.shape
    if w.dtype.kind == "f":
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_array_equal(g, w)
    if case.grad:
        want.sum().backward()
        got.sum().backward()
        for c, d in zip(cpu, gpu):
            np.testing.assert_allclose(d.grad.cpu().numpy(), c.grad.numpy(), rtol=1e-10, atol=1e-12)


# ops the table cannot show (random, in-place updates, device copies, TF-only graph ops), each
# with the test file that covers it
ELSEWHERE = {
    "cast": "test_tensor",
    "to_device": "test_gpu_path",
    "accumulate_grad": "test_autograd",
    "linear": "test_dispatch",  # F.linear's fused op runs only while nobody listens
    "sgd_update": "test_optim",
    "adam_update": "test_optim",
    "adagrad_update": "test_optim_compat",
    "rmsprop_update": "test_optim_compat",
    "adadelta_update": "test_optim_compat",
    "lbfgs_update": "test_optim_compat",
    "bernoulli": "test_torch_compat",
    "multinomial": "test_torch_compat",
    "shape": "test_graph",
    "size": "test_graph",
    "rank": "test_graph",
    "range": "test_graph",
    "identity": "test_graph",
    "sparse_softmax_cross_entropy": "test_graph",
    "tf_fill": "test_tf1",
    "stop_gradient": "test_tf1",
    "tf_rmsprop_update": "test_tf1",
    "tf_adagrad_update": "test_tf1",
    "tf_print": "test_tf1",
}


def test_every_registered_op_is_seen_running_by_the_table_or_named_here() -> None:
    """Coverage from the event stream: every registered op must be seen running (forward or
    backward) while the table's rows run, or be listed in ELSEWHERE with where it is tested.
    Ops registered by optional modules (summaries, collectives) count once they are imported."""
    seen: set[str] = set()

    def note(e) -> None:
        op = getattr(e, "op", None)
        if op is not None:
            seen.add(op)

    with events.subscribe(note):
        for case in CASES:
            rng = np.random.default_rng(zlib.crc32(case.name.encode()))
            arrays = _inputs(case, case.shapes[0], np.float64, rng)
            extra = case.ints(rng, case.shapes[0]) if case.ints else []
            ts = [tt.tensor(a, requires_grad=case.grad) for a in arrays]
            out = case.fn(*ts, *extra)
            if case.grad:
                (out.real if out.dtype.is_complex else out).sum().backward()
    # ops declared outside ops.py (summaries, collectives) are tested by their own modules' tests
    own = {n for n, d in REGISTRY.items() if d.forward.__module__ == "tracetensor.ops"}
    missing = own - seen - set(ELSEWHERE)
    assert not missing, f"ops no test row runs (add a Case, or name them in ELSEWHERE): {sorted(missing)}"


# ----------------------------------------------------------------- PyTorch semantics


def test_var_and_std_are_unbiased_by_default() -> None:
    x = tt.tensor([1.0, 2.0, 3.0, 4.0])
    assert x.var().item() == pytest.approx(np.var([1, 2, 3, 4], ddof=1))
    assert x.std(unbiased=False).item() == pytest.approx(np.std([1, 2, 3, 4]))
    assert tt.var(x, correction=0).item() == pytest.approx(1.25)


def test_comparison_operators_give_bool_tensors_without_grad() -> None:
    x = tt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    m = x >= 2
    assert m.dtype == tt.bool and not m.requires_grad
    assert m.tolist() == [False, True, True]
    assert (x == 2).tolist() == [False, True, False]
    assert (2 < x).tolist() == [False, False, True]  # reflected comparison


def test_squeeze_of_a_dimension_not_of_size_one_is_a_no_op() -> None:
    assert tt.zeros(2, 3).squeeze(0).shape == (2, 3)
    assert tt.zeros(1, 3, 1).squeeze().shape == (3,)


def test_cat_promotes_dtypes_like_pytorch() -> None:
    out = tt.cat([tt.tensor([1, 2]), tt.tensor([0.5])])
    assert out.dtype == tt.float32 and out.tolist() == [1.0, 2.0, 0.5]


def test_max_pool_gradient_goes_to_the_first_maximum() -> None:
    x = tt.ones(1, 1, 2, 2, requires_grad=True)
    tt.nn.functional.max_pool2d(x, 2).sum().backward()
    assert x.grad.numpy().reshape(-1).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_cross_entropy_is_stable_for_huge_logits() -> None:
    logits = tt.tensor([[1000.0, 0.0], [0.0, -1000.0]], requires_grad=True)
    loss = tt.nn.functional.cross_entropy(logits, tt.tensor([1, 1]))
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(500.0 + 500.0, rel=1e-4)
    loss.backward()
    assert np.isfinite(logits.grad.numpy()).all()


def test_embedding_rows_used_twice_get_both_gradients() -> None:
    w = tt.ones(4, 2, requires_grad=True)
    tt.nn.functional.embedding(tt.tensor([1, 1, 3]), w).sum().backward()
    assert w.grad.numpy()[:, 0].tolist() == [0.0, 2.0, 0.0, 1.0]


def test_expand_keeps_minus_one_dims_and_shares_the_gradient() -> None:
    x = tt.ones(3, 1, requires_grad=True)
    y = x.expand(2, -1, 4)
    assert y.shape == (2, 3, 4)
    y.sum().backward()
    assert x.grad.numpy().tolist() == [[8.0], [8.0], [8.0]]


def test_sort_and_topk_return_values_and_indices() -> None:
    x = tt.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 5.0]], requires_grad=True)
    values, indices = x.sort(dim=1, descending=True)
    assert values.tolist() == [[3.0, 2.0, 1.0], [5.0, 5.0, 0.0]] and indices.tolist() == [[0, 2, 1], [1, 2, 0]]
    assert indices.dtype == tt.int64 and not indices.requires_grad
    top = tt.topk(x, 1)
    assert top.values.tolist() == [[3.0], [5.0]] and top.indices.tolist() == [[0], [1]]  # ties: the first
    top.values.sum().backward()
    assert x.grad.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert tt.argsort(tt.tensor([2, 0, 1])).tolist() == [1, 2, 0]


def test_nonzero_masked_fill_and_closeness() -> None:
    x = tt.tensor([[0.0, 2.0], [3.0, 0.0]])
    assert tt.nonzero(x).tolist() == [[0, 1], [1, 0]]
    rows, cols = x.nonzero(as_tuple=True)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    assert x.masked_fill(x == 0, float("-inf")).tolist() == [[float("-inf"), 2.0], [3.0, float("-inf")]]
    assert tt.allclose(x, x + 1e-9) and not tt.allclose(x, x + 1e-3)
    assert tt.isclose(tt.tensor([1.0, float("nan")]), tt.tensor([1.0, float("nan")]), equal_nan=True).tolist() == [
        True,
        True,
    ]
    assert tt.equal(x, x.clone()) and not tt.equal(x, x.t())
    assert tt.numel(x) == 4 and x.count_nonzero().item() == 2


def test_remainder_and_division_rounding_follow_python_and_pytorch() -> None:
    a, b = tt.tensor([7, -7, 7, -7]), tt.tensor([3, 3, -3, -3])
    assert (a % b).tolist() == [7 % 3, -7 % 3, 7 % -3, -7 % -3]  # the sign of the divisor, as Python
    assert tt.remainder(a, b).dtype == tt.int64 and (10 % tt.tensor([4.0])).tolist() == [2.0]
    assert tt.div(a, b, rounding_mode="trunc").tolist() == [2, -2, -2, 2]
    assert tt.div(a, b, rounding_mode="floor").tolist() == [2, -3, -3, 2]
    assert tt.div(a, 2).tolist() == [3.5, -3.5, 3.5, -3.5]
    with pytest.raises(ValueError, match="rounding_mode"):
        tt.div(a, b, rounding_mode="round")
    assert tt.round(tt.tensor([0.5, 1.5, 2.5, -0.5])).tolist() == [0.0, 2.0, 2.0, -0.0]  # half to even


def test_erf_matches_math_erf_everywhere() -> None:
    x = np.concatenate([np.linspace(-7, 7, 2001), [0.0, 1e-300, -1e-12, 1e-5, 0.4999999, 0.5]])
    got = tt.erf(tt.tensor(x)).numpy()
    want = np.array([math.erf(v) for v in x])
    assert np.abs(got - want).max() < 1e-15
    tiny = np.abs(x) < 0.5  # relative accuracy near zero too (a naive 1 - erfc loses it)
    np.testing.assert_allclose(got[tiny], want[tiny], rtol=1e-14)


def test_norm_of_zeros_has_a_zero_gradient_like_pytorch() -> None:
    x = tt.zeros(3, requires_grad=True)
    x.norm().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]
    assert tt.tensor([[3.0, 4.0]]).norm(dim=1).tolist() == [5.0]
    assert tt.tensor([[3.0, -4.0]]).norm(p=1).item() == 7.0


def test_integer_inputs_of_float_math_give_the_default_dtype() -> None:
    for fn in (tt.log1p, tt.expm1, tt.log2, tt.log10, tt.rsqrt, tt.reciprocal, tt.erf):
        assert fn(tt.tensor([1, 2])).dtype == tt.float32, fn
    assert tt.floor(tt.tensor([1, 2])).dtype == tt.int64


# ----------------------------------------------------------------- error messages
HERE = re.escape(__file__.rsplit("/", 1)[-1])


def _line_of(marker: str) -> int:
    for i, line in enumerate(open(__file__).read().splitlines(), 1):
        if marker in line and "_line_of" not in line:
            return i
    raise AssertionError(marker)


def test_matmul_error_names_op_shapes_and_the_users_line() -> None:
    a, b = tt.zeros(2, 3), tt.zeros(1, 3)
    with pytest.raises(tt.ShapeError) as e:
        a @ b  # MARK-matmul
    assert re.search(
        rf"^matmul: cannot multiply \(2, 3\) by \(1, 3\) at .*{HERE}:{_line_of('MARK-matmul')}$", str(e.value)
    )


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda: tt.zeros(2, 3) + tt.zeros(4), r"add: cannot add shapes \(2, 3\) and \(4,\): they do not broadcast"),
        (
            lambda: tt.cat([tt.zeros(2, 3), tt.zeros(2, 4)]),
            r"cat: .*same shape except in dimension 0.*\(2, 3\), \(2, 4\)",
        ),
        (lambda: tt.stack([tt.zeros(2), tt.zeros(3)]), r"stack: .*equal size.*\(2,\), \(3,\)"),
        (lambda: tt.zeros(3, 2).expand(3, 4), r"expand: cannot expand shape \(3, 2\) to \(3, 4\)"),
        (
            lambda: tt.nn.functional.cross_entropy(tt.zeros(2, 3), tt.tensor([0, 3])),
            r"sparse_softmax_cross_entropy: label 3 is out of range for 3 classes",
        ),
        (
            lambda: tt.nn.functional.conv2d(tt.zeros(1, 3, 5, 5), tt.zeros(2, 4, 3, 3)),
            r"conv2d: input has 3 channels but the weight \(2, 4, 3, 3\) expects 4",
        ),
        (
            lambda: tt.nn.functional.conv2d(tt.zeros(1, 4, 5, 5), tt.zeros(2, 4, 3, 3), tt.zeros(3)),
            r"conv2d: the bias must have shape \(2,\), one value per output channel, got \(3,\)",
        ),
        (lambda: tt.nn.functional.embedding(tt.tensor([5]), tt.zeros(4, 2)), r"embedding: index 5 is out of range"),
        (lambda: tt.zeros(2, 3).reshape(4, 2), r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\)"),
        (lambda: tt.zeros(2, 3).gather(1, tt.zeros(2, dtype=tt.int64)), r"gather: index has 1 dimensions"),
        (lambda: tt.dot(tt.zeros(3), tt.zeros(2, 3)), r"dot: expected two 1-D tensors .* \(3,\) and \(2, 3\)"),
        (lambda: tt.bmm(tt.zeros(2, 3, 4), tt.zeros(3, 4, 5)), r"bmm: expected two 3-D tensors with the same batch"),
        (lambda: tt.zeros(2, 3).topk(4), r"topk: k=4 is out of range for dimension -1 of size 3"),
        (lambda: tt.zeros(2, 3).repeat(2), r"repeat: the number of repeats 1 cannot be smaller"),
        (lambda: tt.zeros(3).tril(), r"tril: expected a tensor of at least 2 dimensions .*, got shape \(3,\)"),
        (lambda: tt.zeros(2, 2, 2).diag(), r"diag: expected a 1-D or 2-D tensor, got shape \(2, 2, 2\)"),
    ],
)
def test_shape_errors_are_clear(make, pattern) -> None:
    with pytest.raises(tt.OpError) as e:
        make()
    msg = str(e.value)
    assert re.search(pattern, msg), msg
    assert re.search(rf"at .*{HERE}:\d+$", msg), msg  # the user's line, never an internal one
    assert "Traceback" not in msg and e.value.__cause__ is None


def test_errors_name_the_users_line_in_backward_too() -> None:
    class Bad(tt.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return tt.zeros(5) @ tt.zeros(3)

    x = tt.ones(2, requires_grad=True)
    y = Bad.apply(x).sum()
    with pytest.raises(tt.OpError, match=rf"matmul: .* at .*{HERE}:\d+"):
        y.backward()


# ----------------------------------------------------------------- the same table in graph mode and tt.function


def _graph_params():
    return [pytest.param(c, id=c.name) for c in CASES]


@pytest.mark.parametrize("case", _graph_params())
def test_op_in_graph_mode_and_tt_function_matches_eager(case: Case) -> None:
    """Each row, traced by tt.function into a graph and run in its Session: the same values as
    eager, and tf.gradients over the traced graph gives the same gradients as eager backward."""
    import tracetensor.graph as tf

    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    shapes = case.shapes[0]
    arrays = _inputs(case, shapes, np.float64, rng)
    extra = case.ints(rng, shapes) if case.ints else []
    ts = [tt.tensor(a, requires_grad=case.grad) for a in arrays]
    want = case.fn(*ts, *extra)
    f = tt.function(lambda *t: case.fn(*t, *extra))
    got = f(*[tt.tensor(a) for a in arrays])
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-10, atol=1e-12)
    if not case.grad:
        return
    w = rng.standard_normal(want.shape)
    ((want.real if want.dtype.is_complex else want) * tt.tensor(w)).sum().backward()
    tr = f._get(tuple(tt.tensor(a) for a in arrays), {})
    with tr.graph.as_default():
        out = tr.fetches[0]
        obj = tf.reduce_sum((tf.real(out) if want.dtype.is_complex else out) * tf.constant(w))
        phs = [ph for _, ph in tr.inputs]
        grads = tf.gradients(obj, phs)
    vals = tr.session.run(grads, feed_dict=dict(zip(phs, arrays)))
    for t, g in zip(ts, vals):
        np.testing.assert_allclose(np.asarray(g), t.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.tracetensor_nan("off")  # the infinities are the point
def test_declaring_an_op_takes_a_forward_and_a_vjp_and_the_rest_defaults() -> None:
    import warnings

    from tracetensor._registry import OpDef
    from tracetensor.tensor import apply

    def half_log(xp, a):
        return xp.log(a) / 2

    op = OpDef("half_log", half_log, None, None, None, errstate="all")
    op.defvjp(lambda ctx, g: (g / (2 * ctx.args[0]),))
    assert op.tf_name == "HalfLog"
    x = tt.tensor([0.0, 1.0, 4.0], requires_grad=True)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log(0) = -inf and 1/0 = inf are answers, not warnings
        with events.subscribe(seen.append, flops=True):
            y = apply(op, x)
            y.sum().backward()
    assert y.tolist()[0] == -np.inf and x.grad.tolist() == [np.inf, 0.5, 0.125]
    fwd = [e for e in seen if getattr(e, "op", None) == "half_log" and e.phase == "forward"]
    assert fwd and fwd[0].flops == 3  # the default cost: one per output element
    with pytest.raises(ValueError, match="errstate"):
        OpDef("bad", half_log, None, None, None, errstate="sometimes")
