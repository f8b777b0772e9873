"""The pytest-free half of the NaN plugin: what `Numerics` finds in the event stream
and what its report says, driven by real tracetensor code."""

from __future__ import annotations

import inspect
import math
import threading

import pytest

import tracetensor as tt
from tracetensor import events
from tracetensor.nancheck import Numerics

# These tests make NaN on purpose; the plugin itself must not fail them.
pytestmark = pytest.mark.tracetensor_allow_nan


def _line() -> int:
    """The caller's line number plus one: the line of the statement below the call."""
    return inspect.currentframe().f_back.f_lineno + 1


def test_clean_code_has_no_findings():
    with Numerics() as n:
        x = tt.tensor([1.0, 4.0], requires_grad=True)
        x.sqrt().sum().backward()
    assert n.findings == [] and n.total == 0
    assert n.reason() == "" and n.report() == ""
    assert not events.is_listening()


def test_sqrt_of_zero_names_backward_op_forward_line_and_parameter():
    with Numerics() as n:
        x = tt.tensor([0.0, 4.0], requires_grad=True)
        line = _line()
        y = x.sqrt().sum()
        y.backward()
    first = n.ordered()[0]
    assert (first.op, first.phase, first.gradient) == ("sqrt", "backward", True)
    assert first.summary.posinf == 1
    assert first.frame.lineno == line and first.frame.filename == __file__
    (param,) = n.params()
    assert n.flows_into(first) == [param]
    assert n.count("grad") == 2  # the sqrt gradient and the accumulated x.grad
    report = n.report("grad")
    assert f"test_nancheck.py:{line}" in report and "y = x.sqrt().sum()" in report
    assert "sqrt 'gradients/sqrt" in report and "(backward, eager mode)" in report
    assert "zero=1" in report  # the forward output that made 1/(2*sqrt(x)) infinite
    reason = n.reason("grad")
    assert "\n" not in reason and "sqrt (backward)" in reason and f":{line}" in reason
    assert reason.endswith("2 non-finite gradients")


def test_log_of_underflowed_softmax_points_at_forward_log_first():
    with Numerics() as n:
        w = tt.tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)
        logits = tt.tensor([[800.0, 0.0]]) @ w
        line = _line()
        loss = -(logits.softmax(-1).log() * tt.tensor([[0.0, 1.0]])).sum()
        loss.backward()
    first = n.ordered()[0]
    assert (first.op, first.phase, first.gradient) == ("log", "forward", False)
    assert first.summary.neginf == 1 and first.frame.lineno == line
    # the dispatch point summarized the inputs of the op that went bad: softmax underflowed to 0
    (softmax_in,) = first.event.input_summaries
    assert softmax_in.zero == 1 and softmax_in.finite
    grad = n.ordered("grad")[0]
    assert grad.op == "log" and grad.phase == "backward" and grad.frame.lineno == line
    assert n.flows_into(grad) == n.params()  # w is the only leaf needing a gradient
    assert n.count("all") > n.count("grad") > 0
    report = n.report("grad")
    assert "first non-finite tensor, in execution order:" in report
    assert "first non-finite gradient:" in report
    assert "inputs of forward op 'log" in report


def test_gradient_flows_only_into_the_parameters_on_its_path():
    with Numerics() as n:
        a = tt.tensor([1.0, 2.0], requires_grad=True)
        b = tt.tensor([3.0, 4.0], requires_grad=True)
        clean = (b * 2.0).sum()
        bad = (a * tt.tensor([0.0, 1.0])).sqrt().sum()
        (clean + bad).backward()
    bad_params = [p for p in n.params() if not n.grads(p)[-1].finite]
    assert len(n.params()) == 2 and len(bad_params) == 1
    assert n.flows_into(n.ordered("grad")[0]) == bad_params
    # and it is a's gradient that went bad, b's stayed finite
    assert not math.isfinite(a.grad.numpy()[0]) and all(map(math.isfinite, b.grad.numpy()))


def test_nn_parameters_are_named_and_only_those_upstream_are_blamed():
    class Net(tt.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = tt.nn.Linear(2, 3)
            self.fc2 = tt.nn.Linear(3, 2)

        def forward(self, x):
            h = self.fc1(x)
            return self.fc2(h), h

    net = Net()
    with Numerics() as n:
        out, h = net(tt.tensor([[0.0, 1.0]]))
        (out.sum() + (h * 0.0).sqrt().sum()).backward()  # sqrt'(0) is inf, on fc1's branch only
    assert sorted(n.params()) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    assert n.flows_into(n.ordered("grad")[0]) == ["fc1.bias", "fc1.weight"]
    assert all(s.finite for s in n.grads("fc2.weight")) and not n.grads("fc1.weight")[-1].finite


def test_forward_only_nan_counts_in_all_mode_only():
    with Numerics() as n:
        tt.tensor([-1.0, 1.0]).sqrt()
    assert n.count("all") == 1 and n.count("grad") == 0 and n.count("off") == 0
    assert n.report("grad") == "" and "sqrt" in n.report("all")


def test_gradient_summaries_per_backward_pass():
    with Numerics() as n:
        w = tt.tensor([0.5, -0.5], requires_grad=True)
        for _ in range(3):
            (w * w).sum().backward()
    (param,) = n.params()
    sums = n.grads(param)
    assert len(sums) == 3 and all(s.finite for s in sums)
    assert [s.max for s in sums] == [1.0, 2.0, 3.0]  # .grad accumulates across passes


def test_findings_are_capped_but_counted():
    with Numerics(max_findings=3) as n:
        x = tt.tensor([0.0])
        for _ in range(10):
            x.log()
    assert len(n.findings) == 3 and n.total == 10


def test_events_from_other_threads_are_seen():
    def work():
        x = tt.tensor([0.0], requires_grad=True)
        x.sqrt().sum().backward()

    with Numerics() as n:
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert n.count("grad") == 2 and n.ordered()[0].frame.name == "work"


def test_clear_forgets_findings():
    with Numerics() as n:
        tt.tensor([0.0]).log()
        n.clear()
        tt.tensor([1.0]).log()
    assert n.total == 0 and n.findings == []


def test_report_shows_the_forward_inputs_of_the_step_that_went_bad():
    # eager op names repeat every step: the report must describe the step whose gradient went
    # bad, not a later one that the NaN weights have poisoned throughout
    with Numerics() as n:
        w = tt.tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)
        for _ in range(3):
            logits = tt.tensor([[800.0, 0.0]]) @ w
            (-(logits.softmax(-1).log() * tt.tensor([[0.0, 1.0]])).sum()).backward()
            with tt.no_grad():
                w -= 0.1 * w.grad
            w.grad = None
    assert not n.ordered()[-1].summary.finite and n.ordered()[-1].seq > n.ordered("grad")[0].seq
    section = n.report("grad").split("first non-finite gradient:")[1]
    inputs = section.split("inputs of forward op 'log")[1].splitlines()
    softmax_in = next(ln for ln in inputs if "softmax" in ln and "->" not in ln)
    assert "zero=1" in softmax_in and "nan=" not in softmax_in
