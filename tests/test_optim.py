"""tt.optim: SGD and Adam against reference implementations of PyTorch's update rules,
in-place updates, update events, and state_dict round trips."""

from __future__ import annotations

import numpy as np
import pytest

import tracetensor as tt


def _quadratic_grads(p: tt.Tensor, target: np.ndarray) -> None:
    loss = ((p - tt.tensor(target)) ** 2).sum()
    loss.backward()


def _run(opt_factory, steps: int = 5):
    rng = np.random.default_rng(0)
    start, target = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    p = tt.tensor(start, requires_grad=True)
    opt = opt_factory([p])
    for _ in range(steps):
        opt.zero_grad()
        _quadratic_grads(p, target)
        opt.step()
    return start, target, p.detach().numpy()


def _ref_sgd(p, target, steps, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p = p.copy()
    buf = None
    for _ in range(steps):
        g = 2 * (p - target) + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def _ref_adam(p, target, steps, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False):
    p = p.copy()
    m = v = vmax = np.zeros_like(p)
    for t in range(1, steps + 1):
        g = 2 * (p - target) + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        vv = vmax if amsgrad else v
        p = p - lr / (1 - b1**t) * m / (np.sqrt(vv / (1 - b2**t)) + eps)
    return p


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"momentum": 0.9},
        {"momentum": 0.9, "nesterov": True},
        {"momentum": 0.5, "dampening": 0.3, "weight_decay": 0.1},
        {"weight_decay": 0.2},
    ],
)
def test_sgd_matches_pytorchs_rule(kw) -> None:
    start, target, got = _run(lambda ps: tt.optim.SGD(ps, lr=0.1, **kw))
    np.testing.assert_allclose(got, _ref_sgd(start, target, 5, 0.1, **kw), rtol=1e-10)


@pytest.mark.parametrize("kw", [{}, {"weight_decay": 0.1}, {"amsgrad": True}, {"betas": (0.5, 0.9)}])
def test_adam_matches_pytorchs_rule(kw) -> None:
    start, target, got = _run(lambda ps: tt.optim.Adam(ps, lr=0.05, **kw), steps=8)
    ref = dict(kw)
    if "betas" in ref:
        ref["b1"], ref["b2"] = ref.pop("betas")
    np.testing.assert_allclose(got, _ref_adam(start, target, 8, 0.05, **ref), rtol=1e-10)


def test_updates_are_in_place_on_the_parameter_storage() -> None:
    p = tt.ones(3, requires_grad=True)
    storage = p._data
    opt = tt.optim.SGD([p], lr=0.5)
    (p * 2).sum().backward()
    opt.step()
    assert p._data is storage and p.tolist() == [0.0, 0.0, 0.0]


def test_zero_grad_sets_to_none_by_default_or_zeroes() -> None:
    p = tt.ones(2, requires_grad=True)
    opt = tt.optim.SGD([p], lr=0.1)
    p.sum().backward()
    opt.zero_grad(set_to_none=False)
    assert p.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert p.grad is None


def test_each_parameter_update_is_an_update_event_named_after_the_parameter() -> None:
    model = tt.nn.Sequential(tt.nn.Linear(3, 2))
    opt = tt.optim.Adam(model.parameters(), lr=0.1)
    events = []
    with tt.events.listen(events.append):
        model(tt.randn(4, 3)).sum().backward()
        opt.step()
    ups = [e for e in events if getattr(e, "phase", None) == "update"]
    assert [(e.op, e.name, e.inputs) for e in ups] == [
        ("adam_update", "update/0.weight", ("0.weight", "0.weight.grad")),
        ("adam_update", "update/0.bias", ("0.bias", "0.bias.grad")),
    ]
    assert ups[0].outputs[0].name == "0.weight" and ups[0].outputs[0].shape == (2, 3)


def test_update_with_listener_equals_update_without() -> None:
    def train(listen: bool):
        tt.manual_seed(1)
        m = tt.nn.Linear(3, 2)
        opt = tt.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
        for _ in range(3):
            opt.zero_grad()
            if listen:
                with tt.events.listen(lambda e: None):
                    m(tt.ones(2, 3)).sum().backward()
                    opt.step()
            else:
                m(tt.ones(2, 3)).sum().backward()
                opt.step()
        return m.weight.detach().numpy().copy()

    np.testing.assert_array_equal(train(True), train(False))


def test_state_dict_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(0)
    target = rng.standard_normal(4)
    p1 = tt.tensor(rng.standard_normal(4), requires_grad=True)
    o1 = tt.optim.Adam([p1], lr=0.1)
    for _ in range(3):
        o1.zero_grad()
        _quadratic_grads(p1, target)
        o1.step()
    p2 = tt.tensor(p1.detach().numpy().copy(), requires_grad=True)
    o2 = tt.optim.Adam([p2], lr=0.7)
    o2.load_state_dict(o1.state_dict())
    assert o2.param_groups[0]["lr"] == 0.1
    for p, o in ((p1, o1), (p2, o2)):
        o.zero_grad()
        _quadratic_grads(p, target)
        o.step()
    np.testing.assert_array_equal(p1.detach().numpy(), p2.detach().numpy())


def test_bad_hyperparameters_and_params_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="lr=-1"):
        tt.optim.SGD([tt.ones(1, requires_grad=True)], lr=-1)
    with pytest.raises(tt.TraceTensorError, match="only optimize tensors that require grad"):
        tt.optim.SGD([tt.ones(1)], lr=0.1)
    with pytest.raises(tt.TraceTensorError, match="empty parameter list"):
        tt.optim.Adam([])
