"""tt.debugging: check_numerics on one tensor, and the mode that stops at the first op
(forward or backward) producing NaN/inf, naming the op, its inputs and the user's line."""

from __future__ import annotations

import re

import pytest

import tracetensor as tt
from tracetensor.events import STATE

HERE = re.escape(__file__.rsplit("/", 1)[-1])
# these tests make NaN/inf on purpose: the pytest plugin must not fail them for it
pytestmark = pytest.mark.tracetensor_allow_nan


def _line(marker: str) -> int:
    for i, line in enumerate(open(__file__).read().splitlines(), 1):
        if line.rstrip().endswith(f"# {marker}"):
            return i
    raise AssertionError(marker)


def test_check_numerics_returns_its_input_when_finite() -> None:
    x = tt.tensor([1.0, 2.0])
    assert tt.debugging.check_numerics(x, "ok") is x


def test_check_numerics_raises_with_the_message_and_a_summary() -> None:
    x = tt.tensor([1.0, float("nan"), float("inf"), -float("inf"), 3.0])
    want = r"check_numerics: logits: tensor has 1 NaN, 1 -inf, 1 \+inf of 5 values .*min=1 max=3"
    with pytest.raises(tt.NumericsError, match=want):
        tt.debugging.check_numerics(x, "logits")


def test_mode_stops_at_the_first_forward_op_and_names_the_line() -> None:
    x = tt.tensor([4.0, -1.0])
    with tt.debugging.check_numerics_mode():
        with pytest.raises(tt.NumericsError) as e:
            y = x.log()  # FWD
            y * 2  # never reached
    msg = str(e.value)
    assert msg.startswith("log (forward) 'log")
    assert "1 NaN, 0 -inf, 0 +inf of 2" in msg
    assert re.search(rf"at .*{HERE}:{_line('FWD')}", msg), msg
    assert re.search(r"input tensor_\d+: n=2 min=-1 max=4", msg), msg
    assert not STATE.listeners


def test_mode_catches_backward_and_points_at_the_forward_line() -> None:
    w = tt.tensor([0.0, 1.0], requires_grad=True)
    with tt.debugging.check_numerics_mode():
        loss = w.sqrt().sum()  # BWD
        with pytest.raises(tt.NumericsError) as e:
            loss.backward()
    msg = str(e.value)
    assert msg.startswith("sqrt (backward)") and "1 +inf" in msg
    assert re.search(rf"from the forward op at .*{HERE}:{_line('BWD')}", msg), msg


def test_enable_and_disable_check_numerics() -> None:
    tt.debugging.enable_check_numerics()
    try:
        with pytest.raises(tt.NumericsError, match="div"):
            tt.tensor([1.0]) / tt.tensor([0.0])
    finally:
        tt.debugging.disable_check_numerics()
    assert not STATE.listeners
    out = tt.tensor([1.0]) / tt.tensor([0.0])
    assert out.isinf().all()


def test_finite_programs_run_unchanged_under_the_mode() -> None:
    m = tt.nn.Linear(3, 2)
    with tt.debugging.check_numerics_mode():
        loss = m(tt.randn(4, 3)).tanh().sum()
        loss.backward()
    assert m.weight.grad is not None
