"""tt.autograd: custom Functions, gradcheck, grad, and the Variable alias."""

from __future__ import annotations

import numpy as np
import pytest

import tracetensor as tt


class Cube(tt.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x * x * x * scale

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * ctx.scale * g, None


class WrongCube(Cube):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * x * ctx.scale * g, None  # the wrong derivative


def test_function_forward_and_backward_use_the_users_rules() -> None:
    x = tt.tensor([1.0, -2.0, 0.5], requires_grad=True)
    y = Cube.apply(x, 2.0)
    assert y.tolist() == pytest.approx([2.0, -16.0, 0.25])
    y.sum().backward()
    assert x.grad.tolist() == pytest.approx([6.0, 24.0, 1.5])


def test_function_reports_needs_input_grad() -> None:
    seen = []

    class Probe(tt.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            seen.append(ctx.needs_input_grad)
            return a * b

        @staticmethod
        def backward(ctx, g):
            return g, g

    Probe.apply(tt.ones(2, requires_grad=True), tt.ones(2))
    assert seen == [(True, False)]


def test_function_passes_the_dispatch_point_in_both_phases() -> None:
    x = tt.tensor([1.0, 2.0], requires_grad=True)
    events = []
    with tt.events.listen(events.append):
        Cube.apply(x, 1.0).sum().backward()
    mine = [(e.phase, e.op) for e in events if getattr(e, "op", None) == "Cube"]
    assert mine == [("forward", "Cube"), ("backward", "Cube")]


def test_gradcheck_accepts_a_correct_function_and_rejects_a_wrong_one() -> None:
    x = tt.randn(4, dtype=tt.float64, requires_grad=True)
    assert tt.autograd.gradcheck(lambda t: Cube.apply(t, 1.5), [x])
    with pytest.raises(tt.autograd.GradcheckError, match=r"input 0 .* does not match finite differences"):
        tt.autograd.gradcheck(lambda t: WrongCube.apply(t, 1.5), [x])
    assert tt.autograd.gradcheck(lambda t: WrongCube.apply(t, 1.5), [x], raise_exception=False) is False


def test_gradcheck_handles_complex_inputs() -> None:
    z = tt.tensor(np.array([1 + 2j, -0.5 + 1j, 3 - 1j]), requires_grad=True)
    assert tt.autograd.gradcheck(lambda t: tt.fft.ifft(t) * 2, [z])
    assert tt.autograd.gradcheck(lambda t: tt.fft.fft(t).real * tt.fft.fft(t).imag, [z])


def test_grad_returns_gradients_without_touching_dot_grad() -> None:
    x = tt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    (g,) = tt.autograd.grad(y, x)
    assert g.tolist() == [2.0, 4.0, 6.0] and x.grad is None


def test_variable_is_an_alias_for_old_code() -> None:
    v = tt.autograd.Variable(tt.ones(2), requires_grad=True)
    (v * 3).sum().backward()
    assert v.grad.tolist() == [3.0, 3.0]


def test_define_by_run_control_flow_decides_the_graph() -> None:
    x = tt.tensor(2.0, requires_grad=True)
    y = x
    for _ in range(4):
        y = y * x if y.item() < 10 else y + x
    y.backward()
    # x=2: multiplies while below 10 (2, 4, 8, 16), then adds: y = x^4 + x, dy/dx = 4x^3 + 1
    assert y.item() == 18.0 and x.grad.item() == 33.0


@pytest.mark.parametrize(
    "fn",
    [
        lambda a, b: (a * b).abs(),
        lambda a, b: (a / b).real,
        lambda a, b: (a.reshape(2, 2) @ b.reshape(2, 2)).imag,
        lambda a, b: (a @ b).real,
        lambda a, b: (a.exp() * b.log()).real,
    ],
    ids=["mul", "div", "matmul", "dot", "exp_log"],
)
def test_complex_gradients_follow_pytorchs_convention(fn) -> None:
    rng = np.random.default_rng(3)
    a = tt.tensor(rng.standard_normal(4) + 1j * rng.standard_normal(4), requires_grad=True)
    b = tt.tensor(rng.standard_normal(4) + 1j * rng.standard_normal(4) + 2, requires_grad=True)
    assert tt.autograd.gradcheck(fn, [a, b])


@pytest.mark.tracetensor_nan("off")  # (the plugin's own listener would name the "early" ops)
def test_each_backward_event_names_the_inputs_its_forward_op_read() -> None:
    """A VJP's `grad_of` are its forward op's input names: parameters by their state_dict keys,
    a user's leaf by the name it got at its first op, an intermediate by its op; an op made
    before anyone listened (its node unnamed) is named from its inputs' names at backward."""
    from tracetensor import events

    model = tt.nn.Sequential(tt.nn.Linear(3, 4), tt.nn.Tanh(), tt.nn.Linear(4, 2))
    x = tt.randn(5, 3, requires_grad=True)
    early = (x * 2.0).sum()  # made while nobody listened
    got: list = []
    with events.listen(got.append):
        loss = model(x).pow(2).mean() + early
        loss.backward()
    fwd = {e.name: e for e in got if isinstance(e, events.OpEvent) and e.phase == "forward"}
    bwd = [e for e in got if isinstance(e, events.OpEvent) and e.phase == "backward" and e.forward in fwd]
    assert len(bwd) >= 5
    for e in bwd:
        assert e.grad_of == fwd[e.forward].inputs, e.name
    linear = next(e for e in bwd if e.forward == "Sequential/0/linear")
    assert linear.grad_of[1:] == ("0.weight", "0.bias") and linear.grad_of[0].startswith("tensor_")
    unnamed = {
        e.forward: e for e in got if isinstance(e, events.OpEvent) and e.phase == "backward" and e.forward not in fwd
    }
    assert unnamed["sum"].grad_of == ("",) and unnamed["mul"].grad_of == (x._name, "")  # (2.0: a constant, unnamed)
    assert x._name == linear.grad_of[0]
