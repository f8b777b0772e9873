"""Optimizers and LR schedulers added for PyTorch programs: rules checked against PyTorch
itself where it is installed, and against known values everywhere."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tracetensor as tt
from tracetensor import events
from tracetensor.optim import lr_scheduler as S

_RNG = np.random.default_rng(0)
W0, X, Y = _RNG.standard_normal((3, 4)), _RNG.standard_normal((8, 4)), _RNG.standard_normal((8, 3))


def _train(lib, make_opt, make_sched=None, steps=12, closure_style=False):
    """Least squares on fixed data: the losses, the rates the scheduler set, the final weights."""
    w = lib.tensor(W0.copy(), requires_grad=True)
    x, y = lib.tensor(X), lib.tensor(Y)
    opt = make_opt(lib, [w])
    sch = make_sched(lib, opt) if make_sched else None
    losses, lrs = [], []
    for _ in range(steps):

        def closure():
            opt.zero_grad()
            loss = ((x @ w.T - y) ** 2).mean()
            loss.backward()
            return loss

        if closure_style:
            loss = opt.step(closure)
        else:
            loss = closure()
            opt.step()
        losses.append(float(loss.detach()))
        if sch is not None:
            sch.step(1.0) if isinstance(sch, lib.optim.lr_scheduler.ReduceLROnPlateau) else sch.step()
            lrs.append(sch.get_last_lr()[0])
    return np.array(losses), np.array(lrs), w.detach().cpu().numpy()


CASES = {
    "adagrad": (lambda L, p: L.optim.Adagrad(p, lr=0.1, lr_decay=0.01, weight_decay=0.01), None),
    "rmsprop_centered": (lambda L, p: L.optim.RMSprop(p, lr=0.01, momentum=0.9, centered=True, weight_decay=0.1), None),
    "rmsprop": (lambda L, p: L.optim.RMSprop(p), None),
    "adadelta": (lambda L, p: L.optim.Adadelta(p, weight_decay=0.1), None),
    "lbfgs": (lambda L, p: L.optim.LBFGS(p, lr=0.5, max_iter=5, history_size=3), None),
    "lbfgs_strong_wolfe": (lambda L, p: L.optim.LBFGS(p, lr=1, max_iter=4, line_search_fn="strong_wolfe"), None),
    "steplr": (lambda L, p: L.optim.SGD(p, lr=0.1, momentum=0.9), lambda L, o: L.optim.lr_scheduler.StepLR(o, 3, 0.5)),
    "multistep": (lambda L, p: L.optim.SGD(p, lr=0.1), lambda L, o: L.optim.lr_scheduler.MultiStepLR(o, [2, 5, 5])),
    "exponential": (lambda L, p: L.optim.SGD(p, lr=0.1), lambda L, o: L.optim.lr_scheduler.ExponentialLR(o, 0.9)),
    "cosine": (lambda L, p: L.optim.SGD(p, lr=0.1), lambda L, o: L.optim.lr_scheduler.CosineAnnealingLR(o, 4, 0.01)),
    "warm_restarts": (
        lambda L, p: L.optim.SGD(p, lr=0.1),
        lambda L, o: L.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 3, 2),
    ),
    "lambda": (lambda L, p: L.optim.SGD(p, lr=0.1), lambda L, o: L.optim.lr_scheduler.LambdaLR(o, lambda e: 0.9**e)),
    "multiplicative": (
        lambda L, p: L.optim.SGD(p, lr=0.1),
        lambda L, o: L.optim.lr_scheduler.MultiplicativeLR(o, lambda e: 0.9),
    ),
    "linear": (lambda L, p: L.optim.SGD(p, lr=0.1), lambda L, o: L.optim.lr_scheduler.LinearLR(o, 0.2, 1.0, 4)),
    "constant": (lambda L, p: L.optim.SGD(p, lr=0.1), lambda L, o: L.optim.lr_scheduler.ConstantLR(o, 0.5, 3)),
    "polynomial": (lambda L, p: L.optim.SGD(p, lr=0.1), lambda L, o: L.optim.lr_scheduler.PolynomialLR(o, 6, 2.0)),
    "sequential": (
        lambda L, p: L.optim.SGD(p, lr=0.1),
        lambda L, o: L.optim.lr_scheduler.SequentialLR(
            o, [L.optim.lr_scheduler.LinearLR(o, 0.1, total_iters=3), L.optim.lr_scheduler.ExponentialLR(o, 0.8)], [3]
        ),
    ),
    "onecycle": (
        lambda L, p: L.optim.SGD(p, lr=0.1, momentum=0.9),
        lambda L, o: L.optim.lr_scheduler.OneCycleLR(o, 0.5, total_steps=12),
    ),
    "onecycle_adam_3phase": (
        lambda L, p: L.optim.Adam(p, lr=0.1),
        lambda L, o: L.optim.lr_scheduler.OneCycleLR(
            o, 0.5, epochs=3, steps_per_epoch=4, three_phase=True, anneal_strategy="linear"
        ),
    ),
    "plateau": (
        lambda L, p: L.optim.SGD(p, lr=0.1),
        lambda L, o: L.optim.lr_scheduler.ReduceLROnPlateau(o, patience=2, cooldown=1),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_optimizer_and_scheduler_match_pytorch(name: str) -> None:
    torch = pytest.importorskip("torch")
    make_opt, make_sched = CASES[name]
    closure = name.startswith("lbfgs")
    ours = _train(tt, make_opt, make_sched, closure_style=closure)
    theirs = _train(torch, make_opt, make_sched, closure_style=closure)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_schedules_follow_their_formulas() -> None:
    def lrs(make, n=8):
        opt = tt.optim.SGD([tt.zeros(1, requires_grad=True)], lr=1.0)
        s = make(opt)
        out = []
        for _ in range(n):
            out.append(s.get_last_lr()[0])
            opt.step()
            s.step()
        return out

    assert lrs(lambda o: S.StepLR(o, 3, 0.5)) == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert lrs(lambda o: S.MultiStepLR(o, [1, 4], 0.1)) == pytest.approx([1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01])
    cos = lrs(lambda o: S.CosineAnnealingLR(o, 4))
    assert cos[:5] == pytest.approx([1, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0])
    one = lrs(lambda o: S.OneCycleLR(o, 1.0, total_steps=10), 10)
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0, rel=0.05) and one[-1] < 1e-4


def test_scheduler_and_optimizer_state_dicts_resume_where_they_stopped() -> None:
    def make():
        w = tt.ones(2, requires_grad=True)
        opt = tt.optim.RMSprop([w], lr=0.1, momentum=0.5)
        return w, opt, S.StepLR(opt, 2, 0.5)

    w, opt, sch = make()
    for _ in range(3):
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
        sch.step()
    w2, opt2, sch2 = make()
    w2.data = w.detach().clone()
    opt2.load_state_dict(opt.state_dict())
    sch2.load_state_dict(sch.state_dict())
    assert sch2.get_last_lr() == sch.get_last_lr() == [0.05]
    for ww, o, s in ((w, opt, sch), (w2, opt2, sch2)):
        o.zero_grad()
        (ww * ww).sum().backward()
        o.step()
        s.step()
    np.testing.assert_allclose(w2.detach().numpy(), w.detach().numpy())
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_plateau_cuts_the_rate_after_patience_runs_out() -> None:
    opt = tt.optim.SGD([tt.zeros(1, requires_grad=True)], lr=1.0)
    s = S.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    for metric in [1.0, 0.5, 0.6, 0.6, 0.6, 0.6]:
        s.step(metric)
    assert s.get_last_lr() == [0.25]


def test_lbfgs_minimizes_a_quadratic_and_moves_through_update_events() -> None:
    target = tt.tensor([1.0, -2.0, 3.0])
    x = tt.zeros(3, requires_grad=True)
    opt = tt.optim.LBFGS([x], lr=1, max_iter=20)

    def closure():
        opt.zero_grad()
        loss = ((x - target) ** 2).sum()
        loss.backward()
        return loss

    seen = []
    with events.subscribe(lambda e: seen.append((getattr(e, "phase", None), getattr(e, "op", None)))):
        opt.step(closure)
    np.testing.assert_allclose(x.detach().numpy(), target.numpy(), atol=1e-4)
    assert ("update", "lbfgs_update") in seen
    with pytest.raises(tt.TraceTensorError, match="closure"):
        opt.step()


def test_optimizer_param_groups_and_zero_grad() -> None:
    a, b = tt.ones(2, requires_grad=True), tt.ones(3, requires_grad=True)
    opt = tt.optim.Adagrad([a], lr=0.5)
    opt.add_param_group({"params": [b], "lr": 0.1})
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    (a.sum() + b.sum()).backward()
    opt.zero_grad(set_to_none=False)
    assert a.grad is not None and a.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert a.grad is None


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["adagrad", "rmsprop_centered", "adadelta", "lbfgs", "onecycle"])
def test_optimizers_on_the_gpu_match_the_cpu(name: str) -> None:
    make_opt, make_sched = CASES[name]

    class OnGpu:  # the same calls, with tensors made on the GPU
        optim = tt.optim

        @staticmethod
        def tensor(a, requires_grad=False):
            return tt.tensor(a, device="cuda", requires_grad=requires_grad)

    closure = name.startswith("lbfgs")
    cpu = _train(tt, make_opt, make_sched, closure_style=closure)
    gpu = _train(OnGpu, make_opt, make_sched, closure_style=closure)
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(np.asarray(b), a, rtol=1e-9, atol=1e-12)
