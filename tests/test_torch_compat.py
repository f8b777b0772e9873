"""PyTorch boilerplate and random sampling: the calls ordinary training scripts make."""

from __future__ import annotations

import numpy as np
import pytest

import tracetensor as tt
from tracetensor import events


def test_randint_reads_all_of_pytorchs_overloads() -> None:
    tt.manual_seed(0)
    a = tt.randint(3, (1000,))  # randint(high, size): values in [0, 3)
    assert a.shape == (1000,) and a.dtype == tt.int64 and set(a.tolist()) == {0, 1, 2}
    b = tt.randint(5, 8, (200,))
    assert set(b.tolist()) == {5, 6, 7}
    assert set(tt.randint(low=2, high=4, size=(100,)).tolist()) == {2, 3}
    assert tt.randint(10, size=(2, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match="low"):
        tt.randint(5, 5, (2,))


def test_a_generator_gives_its_own_reproducible_stream() -> None:
    g1, g2 = tt.Generator().manual_seed(7), tt.Generator().manual_seed(7)
    tt.manual_seed(1)
    x = tt.randn(5, generator=g1)
    tt.randn(3)  # the default generator's draws do not disturb g2
    assert tt.equal(x, tt.randn(5, generator=g2))
    assert sorted(tt.randperm(6, generator=g1).tolist()) == list(range(6))
    tt.manual_seed(3)
    first = tt.rand(4)
    tt.manual_seed(3)
    assert tt.equal(first, tt.rand(4))


def test_multinomial_follows_the_weights_with_and_without_replacement() -> None:
    tt.manual_seed(0)
    w = tt.tensor([0.1, 0.0, 0.9])
    s = tt.multinomial(w, 4000, replacement=True)
    counts = np.bincount(s.numpy(), minlength=3)
    assert counts[1] == 0 and 0.85 < counts[2] / 4000 < 0.95
    rows = tt.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 5.0, 1.0, 1.0]])
    d = rows.multinomial(3)
    assert d.shape == (2, 3)
    for r, row in zip(d.tolist(), [[0, 1, 2], [1, 2, 3]]):
        assert sorted(r) == row  # without replacement: distinct, never a zero-weight category
    with pytest.raises(tt.OpError, match="without replacement"):
        rows.multinomial(4)


def test_bernoulli_and_normal_overloads() -> None:
    tt.manual_seed(0)
    p = tt.full((2000,), 0.25)
    assert 0.2 < tt.bernoulli(p).mean().item() < 0.3
    m = tt.zeros(3, requires_grad=True)
    out = tt.normal(m, 2.0)
    assert out.shape == (3,) and not out.requires_grad  # no gradient through a draw, as in PyTorch
    assert tt.normal(0.0, tt.ones(2, 2)).shape == (2, 2)
    big = tt.normal(3.0, 0.5, (4000,))
    assert abs(big.mean().item() - 3.0) < 0.05 and abs(big.std().item() - 0.5) < 0.05
    t = tt.empty(4000).normal_(1.0, 2.0)
    assert abs(t.mean().item() - 1.0) < 0.15
    u = tt.empty(1000).uniform_(-2, -1)
    assert u.min().item() >= -2 and u.max().item() < -1
    assert set(tt.empty(100).bernoulli_(0.5).tolist()) == {0.0, 1.0}


def test_sampling_ops_emit_events() -> None:
    seen = []
    with events.subscribe(lambda e: seen.append(getattr(e, "op", None))):  # run markers have no op
        tt.tensor([0.5, 0.5]).multinomial(1)
        tt.bernoulli(tt.tensor([0.3]))
        tt.arange(4).roll(1)
    assert {"multinomial", "bernoulli", "roll"} <= set(seen)


def test_view_refuses_what_pytorch_refuses_and_contiguous_fixes_it() -> None:
    a = tt.arange(6.0).reshape(2, 3)
    assert a.view(3, 2).shape == (3, 2) and a.is_contiguous()
    t = a.t()
    assert not t.is_contiguous()
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        t.view(6)
    assert t.contiguous().view(6).tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    assert t.reshape(6).tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    part = a[:, 1:]  # strides (3, 1): splitting a dimension works, merging the two does not
    assert part.view(2, 2, 1).shape == (2, 2, 1)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        part.view(4)


def test_a_0d_tensor_formats_like_its_value() -> None:
    loss = tt.tensor(0.123456)
    assert f"{loss:.4f}" == "0.1235"
    assert f"{tt.tensor(3):>3d}" == "  3"
    with pytest.raises(TypeError):
        f"{tt.ones(2):.2f}"


def test_grad_mode_switches() -> None:
    w = tt.ones(2, requires_grad=True)
    with tt.inference_mode():
        assert not (w * 2).requires_grad and tt.is_inference_mode_enabled()

    @tt.inference_mode()
    def f(x):
        return x * 2

    @tt.enable_grad()
    def g(x):
        return x * 2

    assert not f(w).requires_grad
    with tt.no_grad():
        assert g(w).requires_grad
    with tt.set_grad_enabled(False):
        assert not (w * 2).requires_grad
    assert (w * 2).requires_grad
    with tt.inference_mode(False):
        assert (w * 2).requires_grad


def test_cuda_accelerator_and_backends_answer_honestly_without_a_gpu() -> None:
    has = tt.cuda.is_available()
    assert tt.accelerator.is_available() == has
    assert (tt.cuda.device_count() > 0) == has
    tt.cuda.manual_seed_all(0)
    tt.cuda.manual_seed(0)
    tt.backends.cudnn.benchmark = True
    tt.backends.cudnn.deterministic = True
    assert tt.backends.cudnn.benchmark and not tt.backends.mps.is_available()
    device = tt.device("cuda" if tt.cuda.is_available() else "cpu")
    assert tt.zeros(2, device=device).device == device
    if not has:
        assert tt.accelerator.current_accelerator() is None


def test_mark_non_differentiable_outputs_get_no_gradient() -> None:
    class Sorted(tt.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out = x * 1.0
            ctx.mark_non_differentiable(out)
            return out

        @staticmethod
        def backward(ctx, g):
            return g

    class Plain(Sorted):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

    x = tt.ones(3, requires_grad=True)
    assert not Sorted.apply(x).requires_grad
    assert Plain.apply(x).requires_grad


def test_legacy_constructors_and_torch_tensor_default_to_pytorchs_dtypes() -> None:
    assert tt.Tensor([0]).dtype == tt.float32  # torch.Tensor(list) is float, unlike tt.tensor
    assert tt.Tensor(np.array([1, 2])).dtype == tt.float32
    assert tt.Tensor(2, 3).shape == (2, 3)
    assert tt.LongTensor([1, 2]).dtype == tt.int64 and tt.FloatTensor(3).shape == (3,)
    assert tt.BoolTensor([True]).dtype == tt.bool and tt.DoubleTensor([1]).dtype == tt.float64


def test_in_place_ops_on_the_tape_keep_the_gradient_path() -> None:
    w = tt.tensor([2.0, 3.0], requires_grad=True)
    total = tt.Tensor([0])
    for k in range(3):
        total += (w * k).sum()  # a plain tensor accumulating tape tensors joins the tape
    h = w * 1.0
    h.add_(w)  # in place on a non-leaf: h is now w + w
    (total + h.sum()).backward()
    assert w.grad.tolist() == [5.0, 5.0]  # 3 (from 0 + 1 + 2) + 2
    with pytest.raises(tt.TraceTensorError, match="leaf"):
        w.add_(1)


def test_shape_changing_in_place_ops_and_new_tensors() -> None:
    t = tt.arange(3)
    assert t.unsqueeze_(-1).shape == (3, 1) and t.shape == (3, 1)
    assert t.squeeze_().shape == (3,)
    m = tt.zeros(2, 3).t_()
    assert m.shape == (3, 2)
    x = tt.tensor([-2.0, 0.5, 3.0])
    assert x.clamp_(-1, 1).tolist() == [-1.0, 0.5, 1.0]
    assert x.masked_fill_(x > 0.9, 0.0).tolist() == [-1.0, 0.5, 0.0]
    assert x.new_zeros(2, 2).dtype == tt.float32 and x.new_tensor([1, 2]).dtype == tt.float32
    assert x.nelement() == 3 and x.element_size() == 4 and x.ndimension() == 1
    assert tt.arange(3).type_as(x).dtype == tt.float32
    with pytest.raises(tt.TraceTensorError, match="requires grad"):
        tt.ones(2, requires_grad=True).unsqueeze_(0)


def test_reductions_take_numpy_spellings_as_pytorch_does() -> None:
    p = tt.tensor([[1.0, 3.0], [2.0, 2.0]])
    assert (p / p.sum(1, keepdims=True)).tolist() == [[0.25, 0.75], [0.5, 0.5]]
    assert p.mean(axis=0).tolist() == [1.5, 2.5]
    assert p.max(axis=1, keepdims=True).values.shape == (2, 1)


def test_deepcopy_of_a_model_and_its_state_dict_copies_storage() -> None:
    import copy

    m = tt.nn.Sequential(tt.nn.Linear(2, 3))
    m2 = copy.deepcopy(m)
    assert isinstance(m2[0].weight, tt.nn.Parameter) and m2[0].weight.requires_grad
    with tt.no_grad():
        m[0].weight.fill_(1.0)
    assert not tt.equal(m2[0].weight, m[0].weight)
    sd = copy.deepcopy(m.state_dict())
    with tt.no_grad():
        m[0].weight.fill_(2.0)
    assert sd["0.weight"].tolist()[0] == [1.0, 1.0]
    with pytest.raises(tt.TraceTensorError, match="deepcopy"):
        copy.deepcopy(m[0].weight * 2)


def test_narrow_select_unbind() -> None:
    a = tt.arange(12).reshape(3, 4)
    assert a.narrow(1, 1, 2).tolist() == [[1, 2], [5, 6], [9, 10]]
    assert a.select(0, -1).tolist() == [8, 9, 10, 11]
    assert [t.tolist() for t in a.unbind(1)][0] == [0, 4, 8]


def test_init_functions_take_a_generator_and_trunc_normal_stays_in_bounds() -> None:
    w = tt.empty(3, 4)
    g = tt.Generator().manual_seed(0)
    tt.nn.init.kaiming_uniform_(w, a=5**0.5, generator=g)
    first = w.clone()
    g.manual_seed(0)
    tt.nn.init.kaiming_uniform_(w, a=5**0.5, generator=g)
    assert tt.equal(first, w)
    big = tt.empty(2000)
    tt.nn.init.trunc_normal_(big, std=1.0, a=-0.5, b=0.5)
    assert big.abs().max().item() <= 0.5 and big.std().item() > 0.2


_FUNCTIONAL = {
    "hardtanh": lambda F, x, y: F.hardtanh(x * 2, -0.5, 0.7),
    "relu6": lambda F, x, y: F.relu6(x * 8),
    "logsigmoid": lambda F, x, y: F.logsigmoid(x),
    "softsign": lambda F, x, y: F.softsign(x),
    "mish": lambda F, x, y: F.mish(x),
    "glu": lambda F, x, y: F.glu(x, -1),
    "cosine_similarity": lambda F, x, y: F.cosine_similarity(x, y, dim=1),
    "huber_loss": lambda F, x, y: F.huber_loss(x * 3, y, delta=0.5),
    "kl_div": lambda F, x, y: F.kl_div(F.log_softmax(x, 1), F.softmax(y, 1), reduction="batchmean"),
    "kl_div_log_target": lambda F, x, y: F.kl_div(
        F.log_softmax(x, 1), F.log_softmax(y, 1), reduction="sum", log_target=True
    ),
}


@pytest.mark.parametrize("name", sorted(_FUNCTIONAL))
def test_composed_functionals_match_pytorch(name: str) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    fn = _FUNCTIONAL[name]
    xo, xr = tt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    a, b = fn(tt.nn.functional, xo, tt.tensor(y)), fn(torch.nn.functional, xr, torch.tensor(y))
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    a.sum().backward()
    b.sum().backward()
    np.testing.assert_allclose(xo.grad.numpy(), xr.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_more_tensor_functions() -> None:
    x = tt.tensor([[1.0, -2.0], [3.0, 4.0]])
    assert tt.as_tensor(x) is x and tt.as_tensor([1, 2]).dtype == tt.int64
    assert tt.is_floating_point(x) and not tt.arange(2).is_floating_point()
    assert tt.lerp(x, tt.zeros(2, 2), 0.5).tolist() == [[0.5, -1.0], [1.5, 2.0]]
    assert tt.addmm(tt.ones(2, 2), x, tt.eye(2), beta=2).tolist() == [[3.0, 0.0], [5.0, 6.0]]
    assert x.masked_select(x > 0).tolist() == [1.0, 3.0, 4.0]
    assert x.reshape(4).unflatten(0, (2, 2)).shape == (2, 2) and tt.nn.Unflatten(1, (2, 1))(x).shape == (2, 2, 1)
    s, m = tt.std_mean(x, 0)
    assert m.tolist() == [2.0, 1.0]
    y = x.clone()
    assert y.abs_().tolist() == [[1.0, 2.0], [3.0, 4.0]] and y.sqrt_().pow_(2).tolist()[1] == pytest.approx([3, 4])
    assert x.half().dtype == tt.float16
    assert tt.nn.PReLU()(tt.tensor([-4.0, 2.0])).tolist() == [-1.0, 2.0]
    tt.manual_seed(0)
    d = tt.nn.Dropout2d(0.5)(tt.ones(4, 8, 3, 3))
    per_channel = d.reshape(4, 8, 9)
    assert bool(((per_channel == 0).all(-1) | (per_channel == 2).all(-1)).all())  # whole channels dropped


_POOLS = [(2, None, 0), (3, 1, 1), (3, 2, 1), (2, 1, 0), ((2, 3), (1, 2), (1, 0))]


@pytest.mark.parametrize("kernel, stride, padding", _POOLS)
def test_max_pool2d_matches_pytorch_on_ties_and_nans(kernel, stride, padding) -> None:
    """The value and where its gradient goes: the first of tied maxima, a NaN over any number
    (the last NaN of a window that holds several), overlapping windows and padding."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, (2, 3, 6, 7)).astype(np.float64)  # small integers: many ties
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = x[1, 2, 2, 3] = np.nan
    xo, xr = tt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    a = tt.nn.functional.max_pool2d(xo, kernel, stride, padding)
    b = torch.nn.functional.max_pool2d(xr, kernel, stride, padding)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    weights = np.arange(a.numel(), dtype=np.float64).reshape(a.shape)  # each window's gradient its own
    (a * tt.tensor(weights)).sum().backward()
    (b * torch.tensor(weights)).sum().backward()
    np.testing.assert_array_equal(xo.grad.numpy(), xr.grad.numpy())


@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 1), (2, 1), ((2, 1), (0, 2))])
def test_conv2d_and_avg_pool2d_match_pytorch(stride, padding) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((3, 2, 7, 6)), rng.standard_normal((4, 2, 3, 2)), rng.standard_normal(4)
    ours = [tt.tensor(v, requires_grad=True) for v in (x, w, b)]
    theirs = [torch.tensor(v, requires_grad=True) for v in (x, w, b)]
    for F, (xi, wi, bi) in ((tt.nn.functional, ours), (torch.nn.functional, theirs)):
        y = F.conv2d(xi, wi, bi, stride=stride, padding=padding)
        (F.avg_pool2d(y, 2, stride=1, padding=1) * y.mean()).sum().backward()
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)
