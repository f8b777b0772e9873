"""Recurrent layers and containers: PyTorch's names, shapes and formulas; gradients through
time against finite differences (and against PyTorch itself where it is installed)."""

from __future__ import annotations

import numpy as np
import pytest

import tracetensor as tt
from tracetensor import events, nn

CONFIGS = [
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu", "num_layers": 2}),
    ("LSTM", {}),
    ("GRU", {}),
    ("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    ("GRU", {"num_layers": 2, "bidirectional": True}),
]


def _loss(out, hidden, kind):
    h = hidden[0] if kind == "LSTM" else hidden
    return (out * out).sum() + h.sum()


@pytest.mark.parametrize("kind,kw", CONFIGS)
def test_parameter_names_and_shapes_are_pytorchs(kind: str, kw: dict) -> None:
    m = getattr(nn, kind)(3, 4, **kw).double()
    gates = {"RNN": 1, "LSTM": 4, "GRU": 3}[kind]
    d = 2 if kw.get("bidirectional") else 1
    names = dict(m.named_parameters())
    for layer in range(kw.get("num_layers", 1)):
        for sfx in ["", "_reverse"][:d]:
            assert names[f"weight_ih_l{layer}{sfx}"].shape == (gates * 4, 3 if layer == 0 else 4 * d)
            assert names[f"weight_hh_l{layer}{sfx}"].shape == (gates * 4, 4)
            assert names[f"bias_hh_l{layer}{sfx}"].shape == (gates * 4,)
    assert all(abs(p).max().item() <= 0.5 for p in m.parameters())  # U(-1/sqrt(hidden), 1/sqrt(hidden))
    x = tt.randn(5, 2, 3, dtype=tt.float64)
    out, hidden = m(x)
    n_dir_layers = d * kw.get("num_layers", 1)
    assert out.shape == (5, 2, 4 * d)  # (L, N, D*H), or (N, L, D*H) with batch_first
    h = hidden[0] if kind == "LSTM" else hidden
    assert h.shape == (n_dir_layers, 5 if kw.get("batch_first") else 2, 4)


@pytest.mark.parametrize("kind,kw", CONFIGS)
def test_gradients_through_time_match_finite_differences(kind: str, kw: dict) -> None:
    tt.manual_seed(0)
    m = getattr(nn, kind)(3, 4, **kw).double()
    x = tt.randn(4, 2, 3, dtype=tt.float64, requires_grad=True)
    n = 2 * kw.get("num_layers", 1) if kw.get("bidirectional") else kw.get("num_layers", 1)
    h0 = tt.randn(n, 4 if kw.get("batch_first") else 2, 4, dtype=tt.float64, requires_grad=True)

    def loss():
        out, hidden = m(x, (h0, h0 * 0.5) if kind == "LSTM" else h0)
        return _loss(out, hidden, kind)

    loss().backward()
    rng = np.random.default_rng(1)
    for t in [x, h0, *m.parameters()]:
        flat = t._data.reshape(-1)
        for i in rng.choice(flat.size, 3, replace=False):
            old = flat[i]
            flat[i] = old + 1e-6
            with tt.no_grad():
                up = loss().item()
            flat[i] = old - 1e-6
            with tt.no_grad():
                down = loss().item()
            flat[i] = old
            assert t.grad._data.reshape(-1)[i] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("kind,kw", CONFIGS)
def test_outputs_and_gradients_match_pytorch(kind: str, kw: dict) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = getattr(torch.nn, kind)(3, 4, **kw).double()
    m = getattr(nn, kind)(3, 4, **kw).double()
    m.load_state_dict({k: tt.tensor(v.detach().numpy()) for k, v in ref.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    xr, xo = torch.tensor(x, requires_grad=True), tt.tensor(x, requires_grad=True)
    out_r, hid_r = ref(xr)
    out_o, hid_o = m(xo)
    _loss(out_r, hid_r, kind).backward()
    _loss(out_o, hid_o, kind).backward()
    np.testing.assert_allclose(out_o.detach().numpy(), out_r.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(xo.grad.numpy(), xr.grad.numpy(), atol=1e-12)
    ours = dict(m.named_parameters())
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(ours[name].grad.numpy(), p.grad.numpy(), atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cell", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_match_one_step_of_the_layer_and_take_unbatched_input(cell: str) -> None:
    tt.manual_seed(0)
    c = getattr(nn, cell)(3, 5)
    layer = getattr(nn, cell.replace("Cell", ""))(3, 5)
    layer.load_state_dict({k + "_l0": v for k, v in c.state_dict().items()})
    x = tt.randn(2, 3)
    out, _ = layer(x.unsqueeze(0))
    h = c(x)
    h = h[0] if cell == "LSTMCell" else h
    np.testing.assert_allclose(h.detach().numpy(), out[0].detach().numpy(), rtol=1e-6)
    single = c(x[0])
    single = single[0] if cell == "LSTMCell" else single
    assert single.shape == (5,)
    np.testing.assert_allclose(single.detach().numpy(), h[0].detach().numpy(), rtol=1e-6)


def test_recurrent_steps_emit_events_and_bad_input_names_the_layer() -> None:
    lstm = nn.LSTM(3, 4)
    seen = []
    with events.subscribe(lambda e: seen.append(getattr(e, "op", None))):
        lstm(tt.randn(3, 1, 3))
    assert seen.count("sigmoid") == 3 * 3 and "linear" in seen
    with pytest.raises(tt.ShapeError, match="input_size"):
        lstm(tt.randn(3, 1, 2))
    with pytest.raises(tt.ShapeError, match="hidden size"):
        lstm(tt.randn(3, 1, 3), (tt.zeros(2, 1, 4), tt.zeros(2, 1, 4)))


def test_module_dict_parameter_list_and_dict_register_their_entries() -> None:
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.Linear(2, 1)})
            self.scales = nn.ParameterList([nn.Parameter(tt.ones(3)), tt.zeros(1)])
            self.extra = nn.ParameterDict({"bias": tt.zeros(2)})

    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "heads.a.weight",
        "heads.a.bias",
        "heads.b.weight",
        "heads.b.bias",
        "scales.0",
        "scales.1",
        "extra.bias",
    ]
    assert list(net.heads) == ["a", "b"] and "a" in net.heads and len(net.scales) == 2
    assert isinstance(net.scales[1], nn.Parameter) and net.scales[-1] is net.scales[1]
    net.heads["c"] = nn.Linear(2, 2)
    del net.heads["a"]
    assert list(net.heads.keys()) == ["b", "c"]
    net.extra["w"] = tt.ones(2)
    assert set(net.state_dict()) >= {"extra.w", "heads.c.weight", "scales.0"}
    out = net.heads["b"](tt.ones(4, 2)).sum() + net.scales[0].sum() + net.extra["bias"].sum()
    out.backward()
    assert net.scales[0].grad.tolist() == [1.0, 1.0, 1.0]


def test_clip_grad_norm_and_value() -> None:
    a, b = tt.zeros(3, requires_grad=True), tt.zeros(4, requires_grad=True)
    (a * tt.tensor([3.0, 0.0, 0.0])).sum().backward()
    (b * tt.tensor([0.0, 4.0, 0.0, 0.0])).sum().backward()
    total = nn.utils.clip_grad_norm_([a, b], max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    assert a.grad.tolist() == pytest.approx([0.6, 0, 0], rel=1e-5) and b.grad[1].item() == pytest.approx(0.8, rel=1e-5)
    assert nn.utils.clip_grad_norm_([a, b], 10.0).item() == pytest.approx(1.0, rel=1e-5)  # below max: unchanged
    assert a.grad[0].item() == pytest.approx(0.6, rel=1e-5)
    nn.utils.clip_grad_value_([a, b], 0.7)
    assert b.grad[1].item() == pytest.approx(0.7)
    assert nn.utils.clip_grad_norm_(a, 1.0, norm_type=float("inf")).item() == pytest.approx(0.6, rel=1e-5)
    v = nn.utils.parameters_to_vector([a, b])
    assert v.shape == (7,)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_layers_on_the_gpu_match_the_cpu(kind: str) -> None:
    tt.manual_seed(0)
    cpu = getattr(nn, kind)(3, 4, num_layers=2, bidirectional=True).double()
    gpu = getattr(nn, kind)(3, 4, num_layers=2, bidirectional=True).double()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    out_c, _ = cpu(tt.tensor(x))
    out_g, _ = gpu(tt.tensor(x, device="cuda"))
    out_c.sum().backward()
    out_g.sum().backward()
    np.testing.assert_allclose(out_g.detach().cpu().numpy(), out_c.detach().numpy(), rtol=1e-10, atol=1e-12)
    for (n, pc), pg in zip(cpu.named_parameters(), gpu.parameters()):
        np.testing.assert_allclose(pg.grad.cpu().numpy(), pc.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=n)


def _packed_run(lib, m, x, lengths, batch_first):
    rnn_utils = lib.nn.utils.rnn
    xt = lib.tensor(x, requires_grad=True)
    packed = rnn_utils.pack_padded_sequence(xt, lengths, batch_first=batch_first, enforce_sorted=False)
    out, hidden = m(packed)
    assert isinstance(out, rnn_utils.PackedSequence)
    padded, lens = rnn_utils.pad_packed_sequence(out, batch_first=batch_first)
    h = hidden[0] if isinstance(hidden, tuple) else hidden
    ((padded * padded).sum() + h.sum()).backward()
    return padded.detach().numpy(), lens.tolist(), h.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_packed_sequences_match_pytorch(kind: str, batch_first: bool) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = getattr(torch.nn, kind)(3, 4, num_layers=2, bidirectional=True, batch_first=batch_first).double()
    m = getattr(nn, kind)(3, 4, num_layers=2, bidirectional=True, batch_first=batch_first).double()
    m.load_state_dict({k: tt.tensor(v.detach().numpy()) for k, v in ref.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, 5, 3) if batch_first else (5, 3, 3))
    lengths = [2, 5, 3]
    ours, theirs = _packed_run(tt, m, x, lengths, batch_first), _packed_run(torch, ref, x, lengths, batch_first)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-12)


def test_padding_and_packing_round_trip_and_stop_each_sequence_at_its_end() -> None:
    from tracetensor.nn.utils.rnn import pack_sequence, pad_packed_sequence, pad_sequence

    seqs = [tt.tensor([[1.0], [2.0], [3.0]]), tt.tensor([[4.0]]), tt.tensor([[5.0], [6.0]])]
    padded = pad_sequence(seqs, batch_first=True, padding_value=-1.0)
    assert padded[:, :, 0].tolist() == [[1, 2, 3], [4, -1, -1], [5, 6, -1]]
    packed = pack_sequence(seqs, enforce_sorted=False)
    assert packed.batch_sizes.tolist() == [3, 2, 1] and packed.data[:, 0].tolist() == [1, 5, 4, 2, 6, 3]
    back, lens = pad_packed_sequence(packed, batch_first=True)
    assert lens.tolist() == [3, 1, 2] and back[:, :, 0].tolist() == [[1, 2, 3], [4, 0, 0], [5, 6, 0]]
    with pytest.raises(RuntimeError, match="decreasing"):
        pack_sequence(seqs)
    rnn = nn.RNN(1, 2)
    _, h_packed = rnn(packed)
    _, h_alone = rnn(seqs[1].unsqueeze(1))  # the length-1 sequence run on its own
    np.testing.assert_allclose(h_packed[0, 1].detach().numpy(), h_alone[0, 0].detach().numpy(), rtol=1e-6)
