"""MultiheadAttention, TransformerEncoder(Layer) and scaled_dot_product_attention: PyTorch's
names and masks, checked against PyTorch itself where it is installed."""

from __future__ import annotations

import numpy as np
import pytest

import tracetensor as tt
from tracetensor import nn


def _copy_weights(ours, theirs) -> None:
    ours.load_state_dict({k: tt.tensor(v.detach().numpy()) for k, v in theirs.state_dict().items()})


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention_matches_pytorch_with_masks(batch_first: bool) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first).double().eval()
    m = nn.MultiheadAttention(8, 2, batch_first=batch_first).double().eval()
    _copy_weights(m, ref)
    rng = np.random.default_rng(0)
    shape = (3, 5, 8) if batch_first else (5, 3, 8)
    q, k = rng.standard_normal(shape), rng.standard_normal(shape)
    pad = np.zeros((3, 5), bool)
    pad[1, 3:] = True
    causal = np.triu(np.ones((5, 5), bool), 1)
    qo, ko = tt.tensor(q, requires_grad=True), tt.tensor(k)
    qr, kr = torch.tensor(q, requires_grad=True), torch.tensor(k)
    out_o, w_o = m(qo, ko, ko, key_padding_mask=tt.tensor(pad), attn_mask=tt.tensor(causal))
    out_r, w_r = ref(qr, kr, kr, key_padding_mask=torch.tensor(pad), attn_mask=torch.tensor(causal))
    np.testing.assert_allclose(out_o.detach().numpy(), out_r.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(w_o.detach().numpy(), w_r.detach().numpy(), atol=1e-12)
    out_o.sum().backward()
    out_r.sum().backward()
    np.testing.assert_allclose(qo.grad.numpy(), qr.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_matches_pytorch(norm_first: bool) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(
        8, 2, dim_feedforward=16, dropout=0.0, norm_first=norm_first, batch_first=True
    )
    ref = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(8), enable_nested_tensor=False)
    ref = ref.double().eval()
    m = (
        nn.TransformerEncoder(
            nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, norm_first=norm_first, batch_first=True),
            2,
            norm=nn.LayerNorm(8),
        )
        .double()
        .eval()
    )
    _copy_weights(m, ref)
    x = np.random.default_rng(1).standard_normal((2, 6, 8))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(6).double()
    out_r = ref(torch.tensor(x), mask=mask)
    out_o = m(tt.tensor(x), mask=nn.Transformer.generate_square_subsequent_mask(6).double())
    np.testing.assert_allclose(out_o.detach().numpy(), out_r.detach().numpy(), atol=1e-10)


def test_sdpa_causal_and_bool_masks() -> None:
    rng = np.random.default_rng(0)
    q, k, v = (tt.tensor(rng.standard_normal((2, 4, 3))) for _ in range(3))
    causal = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    allowed = tt.ones(4, 4, dtype=tt.bool).tril()
    np.testing.assert_allclose(causal.numpy(), nn.functional.scaled_dot_product_attention(q, k, v, allowed).numpy())
    first = nn.functional.scaled_dot_product_attention(q[:, :1], k[:, :1], v[:, :1])
    np.testing.assert_allclose(causal[:, 0].numpy(), first[:, 0].numpy())  # step 0 sees only itself
    mask = nn.Transformer.generate_square_subsequent_mask(3)
    assert mask.tolist()[0] == [0.0, float("-inf"), float("-inf")]
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(6, 4)
