"""tt.nn: Module API, layers, losses against numpy, op naming in the event stream, training."""

from __future__ import annotations

import re

import numpy as np
import pytest

import tracetensor as tt
import tracetensor.nn as nn
import tracetensor.nn.functional as F


class MLP(nn.Module):
    def __init__(self, d_in: int = 4, d_hidden: int = 8, d_out: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(d_hidden, d_out)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_parameters_children_and_modules_are_found_by_attribute() -> None:
    m = MLP()
    assert [n for n, _ in m.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "fc2"]
    assert [n for n, _ in m.named_modules()] == ["", "fc1", "act", "fc2"]
    assert m.fc1.weight.shape == (8, 4) and all(p.requires_grad for p in m.parameters())
    assert isinstance(m.fc1.weight, nn.Parameter)


def test_shared_parameters_are_listed_once() -> None:
    m = MLP()
    m.fc3 = m.fc1
    assert len(list(m.parameters())) == 4


def test_linear_init_follows_pytorch_bounds() -> None:
    tt.manual_seed(0)
    lin = nn.Linear(100, 50)
    w = lin.weight.detach().numpy()
    assert np.abs(w).max() <= 0.1 and np.abs(w).max() > 0.09  # U(-1/sqrt(100), 1/sqrt(100))
    assert abs(w.mean()) < 0.01


def test_state_dict_round_trip_and_strict_errors() -> None:
    a, b = MLP(), MLP()
    b.load_state_dict(a.state_dict())
    x = tt.randn(2, 4)
    assert np.allclose(a(x).detach().numpy(), b(x).detach().numpy())
    sd = a.state_dict()
    del sd["fc2.bias"]
    with pytest.raises(tt.TraceTensorError, match=r"missing keys \['fc2.bias'\]"):
        b.load_state_dict(sd)
    sd = a.state_dict()
    sd["fc1.weight"] = tt.zeros(3, 3)
    with pytest.raises(tt.TraceTensorError, match=r"'fc1.weight' has shape \(3, 3\) in the checkpoint"):
        b.load_state_dict(sd)


def test_load_state_dict_updates_parameters_in_place() -> None:
    m = MLP()
    w = m.fc1.weight
    m.load_state_dict({k: v * 0 for k, v in m.state_dict().items()})
    assert m.fc1.weight is w and float(w.detach().abs().sum()) == 0


def test_forward_hooks_and_pre_hooks_run_and_can_be_removed() -> None:
    m = MLP()
    calls = []
    h1 = m.fc1.register_forward_pre_hook(lambda mod, inp: calls.append(("pre", inp[0].shape)))
    h2 = m.fc1.register_forward_hook(lambda mod, inp, out: out * 0)
    out = m(tt.randn(2, 4))
    assert calls == [("pre", (2, 4))]
    assert np.allclose(out.detach().numpy(), m.fc2.bias.detach().numpy())  # fc1's output was zeroed
    h1.remove()
    h2.remove()
    m(tt.randn(2, 4))
    assert len(calls) == 1


def test_train_eval_switches_dropout() -> None:
    m = nn.Sequential(nn.Dropout(0.5))
    x = tt.ones(1000)
    y = m(x).numpy()
    assert set(np.unique(y)) == {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    m.eval()
    assert not m[0].training and m(x).tolist() == x.tolist()


def test_events_are_named_by_module_path_and_parameters_by_state_dict_key() -> None:
    m = MLP()
    names = []
    with tt.events.listen(lambda e: names.append((e.name, e.inputs)) if hasattr(e, "inputs") else None):
        m(tt.randn(2, 4))
    ops = [n for n, _ in names]
    for want in ("MLP/fc1/linear", "MLP/act/relu", "MLP/fc2/linear"):  # counters may add a _N suffix
        assert any(re.fullmatch(rf"{want}(_\d+)?", n) for n in ops), (want, ops)
    assert any("fc1.weight" in ins for _, ins in names)


@pytest.mark.tracetensor_allow_nan  # keeps the pytest plugin from listening during this test
def test_no_listener_means_no_name_scopes_pushed() -> None:
    from tracetensor._naming import scopes

    assert not tt.events.is_listening()
    seen = []
    m = MLP()
    m.fc1.register_forward_hook(lambda mod, inp, out: seen.append(list(scopes())))
    m(tt.randn(1, 4))
    assert seen == [[]]


def test_sequential_and_modulelist_register_children() -> None:
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1), nn.Sigmoid())
    assert len(seq) == 4 and isinstance(seq[1], nn.Tanh)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    out = seq(tt.randn(5, 2))
    assert out.shape == (5, 1) and ((out > 0) & (out < 1)).all()
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    holder = nn.Module()
    holder.layers = ml
    assert len(list(holder.parameters())) == 6


def test_conv_pool_flatten_network_shapes_and_gradients() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)
    )
    x = tt.randn(3, 1, 8, 8)
    out = net(x)
    assert out.shape == (3, 2)
    F.cross_entropy(out, tt.tensor([0, 1, 0])).backward()
    assert net[0].weight.grad.shape == (4, 1, 3, 3) and float(net[0].weight.grad.abs().sum()) > 0


def test_embedding_and_rnncell() -> None:
    emb = nn.Embedding(10, 4)
    cell = nn.RNNCell(4, 6)
    tokens = tt.tensor([[1, 2, 3], [4, 5, 6]])
    h = None
    for t in range(3):
        h = cell(emb(tokens[:, t]), h)
    assert h.shape == (2, 6) and (h.abs() <= 1).all()
    h.sum().backward()
    g = emb.weight.grad.numpy()
    assert np.abs(g[[1, 2, 3, 4, 5, 6]]).sum() > 0 and np.abs(g[[0, 7, 8, 9]]).sum() == 0


def test_losses_match_numpy() -> None:
    rng = np.random.default_rng(0)
    logits, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    lsm = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    t_logits, t_y = tt.tensor(logits), tt.tensor(y)
    assert nn.CrossEntropyLoss()(t_logits, t_y).item() == pytest.approx(-lsm[np.arange(6), y].mean())
    assert nn.NLLLoss(reduction="sum")(t_logits.log_softmax(1), t_y).item() == pytest.approx(
        -lsm[np.arange(6), y].sum()
    )
    w = np.array([1.0, 2.0, 0.5, 1.0])
    want = (-lsm[np.arange(6), y] * w[y]).sum() / w[y].sum()
    assert F.cross_entropy(t_logits, t_y, weight=tt.tensor(w)).item() == pytest.approx(want)
    y_ign = y.copy()
    y_ign[:2] = -100
    want = -lsm[np.arange(2, 6), y[2:]].mean()
    assert F.cross_entropy(t_logits, tt.tensor(y_ign)).item() == pytest.approx(want)
    p, t = 1 / (1 + np.exp(-logits)), rng.random((6, 4))
    want = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
    assert nn.BCELoss()(tt.tensor(p), tt.tensor(t)).item() == pytest.approx(want)
    mse = nn.MSELoss(reduction="sum")(tt.tensor(p), tt.tensor(t))
    assert mse.item() == pytest.approx(((p - t) ** 2).sum())


def test_cross_entropy_with_ignored_labels_gives_them_no_gradient() -> None:
    logits = tt.randn(3, 4, requires_grad=True)
    F.cross_entropy(logits, tt.tensor([1, -100, 2])).backward()
    g = logits.grad.numpy()
    assert np.all(g[1] == 0) and np.abs(g[[0, 2]]).sum() > 0


def test_bad_reduction_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.MSELoss(reduction="avg")


def test_module_to_float64_casts_parameters_in_place() -> None:
    m = MLP()
    w = m.fc1.weight
    m.double()
    assert m.fc1.weight is w and w.dtype == tt.float64
    assert m(tt.randn(2, 4, dtype=tt.float64)).dtype == tt.float64


def test_an_mlp_learns_xor() -> None:
    tt.manual_seed(0)
    x = tt.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = tt.tensor([0, 1, 1, 0])
    m = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    opt = tt.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert m(x).argmax(1).tolist() == [0, 1, 1, 0]


@pytest.mark.gpu
def test_mlp_runs_on_the_gpu_like_on_the_cpu() -> None:
    m = MLP()
    x = tt.randn(5, 4)
    want = m(x).detach().numpy()
    m.to("cuda")
    got = m(x.to("cuda"))
    assert got.device.type == "cuda"
    np.testing.assert_allclose(got.detach().cpu().numpy(), want, rtol=1e-5, atol=1e-6)
    F.cross_entropy(got, tt.tensor([0, 1, 2, 0, 1], device="cuda")).backward()
    assert m.fc1.weight.grad.device.type == "cuda"


def test_pad_matches_numpy_and_passes_gradients() -> None:
    x = tt.randn(2, 3, requires_grad=True)
    y = F.pad(x, (1, 2, 0, 1), value=0.5)  # last dim (left 1, right 2), then dim 0 (top 0, bottom 1)
    want = np.pad(x.detach().numpy(), ((0, 1), (1, 2)), constant_values=0.5)
    np.testing.assert_array_equal(y.detach().numpy(), want)
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy())


# ----------------------------------------------------------------- activations, normalization, more losses


def test_activation_modules_match_their_functions() -> None:
    x = tt.randn(4, 5)
    pairs = [
        (nn.GELU(), F.gelu(x)),
        (nn.GELU("tanh"), F.gelu(x, approximate="tanh")),
        (nn.LeakyReLU(0.2), F.leaky_relu(x, 0.2)),
        (nn.ELU(0.5), F.elu(x, 0.5)),
        (nn.SiLU(), F.silu(x)),
        (nn.Softplus(2.0), F.softplus(x, 2.0)),
        (nn.Identity(), x),
    ]
    for module, want in pairs:
        np.testing.assert_array_equal(module(x).numpy(), want.numpy())
    X = x.numpy()
    np.testing.assert_allclose(nn.LeakyReLU()(x).numpy(), np.where(X > 0, X, 0.01 * X), rtol=1e-6)
    assert "negative_slope=0.2" in repr(nn.LeakyReLU(0.2))


def test_batchnorm1d_tracks_running_stats_like_pytorch() -> None:
    bn = nn.BatchNorm1d(3, momentum=0.5)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((6, 3)).astype(np.float32) * [1, 2, 3] + [0, 5, -5] for _ in range(2)]
    mean, var = np.zeros(3), np.ones(3)
    for X in batches:
        y = bn(tt.tensor(X)).detach().numpy()
        # training: the batch's own statistics (biased variance) normalize it
        np.testing.assert_allclose(y, (X - X.mean(0)) / np.sqrt(X.var(0) + 1e-5), rtol=1e-4, atol=1e-5)
        mean, var = 0.5 * mean + 0.5 * X.mean(0), 0.5 * var + 0.5 * X.var(0, ddof=1)  # running var is unbiased
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=1e-5)
    assert bn.num_batches_tracked.item() == 2
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    bn.eval()
    X = batches[0][:2]
    np.testing.assert_allclose(bn(tt.tensor(X)).detach().numpy(), (X - mean) / np.sqrt(var + 1e-5), rtol=1e-4)
    assert bn.running_mean.numpy().tolist() == pytest.approx(mean.tolist())  # eval leaves the stats alone


def test_batchnorm_cumulative_average_and_channel_dimension() -> None:
    bn = nn.BatchNorm1d(2, momentum=None)
    X = [np.arange(12, dtype=np.float32).reshape(2, 2, 3) * k for k in (1, 3)]
    for a in X:
        bn(tt.tensor(a))
    want = np.mean([a.mean((0, 2)) for a in X], axis=0)  # momentum=None: the plain average of batches
    np.testing.assert_allclose(bn.running_mean.numpy(), want, rtol=1e-5)
    with pytest.raises(ValueError, match=r"BatchNorm1d\(2\) got input with 3 channels"):
        bn(tt.zeros(4, 3))
    with pytest.raises(tt.OpError, match="more than 1 value per channel"):
        nn.BatchNorm1d(2)(tt.zeros(1, 2))


def test_batchnorm_and_layernorm_train_their_affine_parameters() -> None:
    for norm in (nn.BatchNorm1d(4), nn.LayerNorm(4)):
        x = tt.randn(8, 4) * 3 + 1
        norm(x).square().mul(tt.arange(4).float()).sum().backward()
        assert norm.weight.grad is not None and norm.bias.grad is not None
        assert np.abs(norm.weight.grad.numpy()).sum() > 0


def test_layer_norm_normalizes_the_trailing_dimensions() -> None:
    ln = nn.LayerNorm([2, 3], elementwise_affine=False)
    x = tt.randn(4, 2, 3) * 5 + 2
    y = ln(x).numpy()
    np.testing.assert_allclose(y.reshape(4, -1).mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(y.reshape(4, -1).std(1), 1, atol=1e-3)
    assert list(dict(ln.named_parameters())) == []
    with pytest.raises(tt.ShapeError, match=r"normalized_shape \(3,\) does not match .* \(4, 2\)"):
        F.layer_norm(tt.zeros(4, 2), 3)


def test_bce_with_logits_is_stable_where_sigmoid_then_bce_is_not() -> None:
    logits = tt.tensor([[200.0, -200.0, 0.0]], requires_grad=True)
    target = tt.tensor([[0.0, 1.0, 1.0]])
    loss = nn.BCEWithLogitsLoss()(logits, target)
    assert loss.item() == pytest.approx((200 + 200 + np.log(2)) / 3, rel=1e-5)
    loss.backward()
    np.testing.assert_allclose(logits.grad.numpy(), [[1 / 3, -1 / 3, -1 / 6]], rtol=1e-5)


def test_smooth_l1_and_normalize() -> None:
    a, b = tt.tensor([0.0, 0.5, 3.0]), tt.tensor([0.2, 2.0, 0.0])
    assert nn.SmoothL1Loss(reduction="sum")(a, b).item() == pytest.approx(0.5 * 0.04 + 1.0 + 2.5)
    v = F.normalize(tt.tensor([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(v.numpy(), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)  # the zero row stays 0, no NaN


class _Attention(nn.Module):
    """A causal self-attention block written as PyTorch code is: only the import differs."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln, self.mlp = nn.LayerNorm(d), nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        q, k, v = self.qkv(self.ln(x)).chunk(3, dim=-1)
        scores = q.bmm(k.transpose(1, 2)) * q.shape[-1] ** -0.5
        causal = tt.ones(x.shape[1], x.shape[1]).tril() == 0
        x = x + self.out(scores.masked_fill(causal, float("-inf")).softmax(-1).bmm(v))
        return x + self.mlp(x)


def test_a_causal_attention_block_learns_and_masks_the_future() -> None:
    tt.manual_seed(0)
    model = _Attention()
    x, target = tt.randn(4, 5, 8), tt.randn(4, 5, 8)
    opt = tt.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = F.smooth_l1_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    x2 = x.clone()
    x2[:, -1] = 100.0  # changing the last position must not change any earlier output
    np.testing.assert_allclose(
        model(x2)[:, :-1].detach().numpy(), model(x)[:, :-1].detach().numpy(), rtol=1e-5, atol=1e-5
    )
