"""The Tensor API as PyTorch users know it: operators, methods, dtypes, in-place updates."""

from __future__ import annotations

import numpy as np
import pytest

import tracetensor as tt


def test_comparison_and_logical_operators() -> None:
    a, b = tt.tensor([1, 2, 3]), tt.tensor([3, 2, 1])
    assert (a < b).tolist() == [True, False, False]
    assert (a <= b).tolist() == [True, True, False]
    assert (a != b).tolist() == [True, False, True]
    assert ((a > 1) & (b > 1)).tolist() == [False, True, False]
    assert ((a > 2) | (b > 2)).tolist() == [True, False, True]
    assert (~(a == 2)).tolist() == [True, False, True]
    assert tt.equal(a, a.clone()) and not tt.equal(a, b)


def test_int_and_float_promotion_follows_pytorch() -> None:
    i, f = tt.tensor([1, 2]), tt.tensor([0.5, 0.5])
    assert (i + f).dtype == tt.float32  # numpy would give float64
    assert (i / 2).dtype == tt.float32
    assert (i * 2).dtype == tt.int64
    assert (f * 2).dtype == tt.float32
    assert i.sum().dtype == tt.int64 and tt.tensor([True, True]).sum().item() == 2


def test_reductions_with_dim_and_keepdim() -> None:
    x = tt.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]])
    v, i = x.max(1)
    assert v.tolist() == [5.0, 6.0] and i.tolist() == [1, 2]
    assert x.min(0, keepdim=True).values.shape == (1, 3)
    assert x.prod(1).tolist() == [15.0, 48.0]
    assert x.cumsum(1).tolist() == [[1.0, 6.0, 9.0], [4.0, 6.0, 12.0]]
    assert x.logsumexp(1).numpy() == pytest.approx(np.log(np.exp(x.numpy()).sum(1)))
    assert x.std(1).numpy() == pytest.approx(np.std(x.numpy(), 1, ddof=1))
    assert (x > 2).all(1).tolist() == [False, False] and (x > 5).any(1).tolist() == [False, True]


def test_shape_methods() -> None:
    x = tt.arange(6).reshape(2, 3)
    assert x.unsqueeze(0).shape == (1, 2, 3) and x.unsqueeze(-1).shape == (2, 3, 1)
    assert x.flip(1).tolist() == [[2, 1, 0], [5, 4, 3]]
    assert x.flip(0, 1).tolist() == [[5, 4, 3], [2, 1, 0]]
    assert tt.cat([x, x], dim=1).shape == (2, 6) and tt.stack([x, x], dim=-1).shape == (2, 3, 2)
    assert [t.tolist() for t in x.split(2, dim=1)] == [[[0, 1], [3, 4]], [[2], [5]]]
    assert len(x.chunk(3, 1)) == 3
    assert x.expand_as(tt.zeros(4, 2, 3)).shape == (4, 2, 3)
    assert x.gather(1, tt.tensor([[2, 0], [1, 1]])).tolist() == [[2, 0], [4, 4]]
    assert x.index_select(1, tt.tensor([2, 0])).tolist() == [[2, 0], [5, 3]]


def test_clamp_variants_and_where() -> None:
    x = tt.tensor([-2.0, 0.5, 3.0])
    assert x.clamp(-1, 1).tolist() == [-1.0, 0.5, 1.0]
    assert x.clamp(min=0).tolist() == [0.0, 0.5, 3.0]
    assert x.clamp_max(0).tolist() == [-2.0, 0.0, 0.0]
    assert tt.where(x > 0, x, tt.zeros(3)).tolist() == [0.0, 0.5, 3.0]


def test_isnan_isinf_isfinite() -> None:
    x = tt.tensor([1.0, float("nan"), float("inf")])
    assert x.isnan().tolist() == [False, True, False]
    assert x.isinf().tolist() == [False, False, True]
    assert tt.isfinite(x).tolist() == [True, False, False]


def test_data_shares_storage_for_old_style_updates() -> None:
    p = tt.ones(3, requires_grad=True)
    (p * 2).sum().backward()
    p.data -= 0.5 * p.grad.data
    assert p.tolist() == [0.0, 0.0, 0.0] and p.requires_grad


def test_in_place_on_a_leaf_that_requires_grad_is_refused_outside_no_grad() -> None:
    p = tt.ones(2, requires_grad=True)
    with pytest.raises(tt.TraceTensorError, match="leaf tensor that requires grad"):
        p += 1
    with tt.no_grad():
        p += 1
    assert p.tolist() == [2.0, 2.0]


def test_complex_parts_and_fft_round_trip() -> None:
    x = tt.randn(8, dtype=tt.float64)
    spec = tt.fft.rfft(x)
    assert spec.dtype == tt.complex128 and spec.shape == (5,)
    np.testing.assert_allclose(tt.fft.irfft(spec, n=8).numpy(), x.numpy(), atol=1e-12)
    np.testing.assert_allclose(tt.fft.ifft(tt.fft.fft(x)).real.numpy(), x.numpy(), atol=1e-12)
    assert tt.fft.fft(tt.randn(4)).dtype == tt.complex64  # float32 in, complex64 out


def test_one_hot() -> None:
    assert tt.one_hot(tt.tensor([0, 2])).tolist() == [[1, 0, 0], [0, 0, 1]]
    with pytest.raises(tt.OpError, match=r"class values must be in \[0, 2\)"):
        tt.one_hot(tt.tensor([0, 2]), 2)
