"""The exact NaN/inf check (`subscribe(checks=True)`, `Numerics(summaries=False)`, the pytest
plugin's default, `tt.record(values="check")`): every output checked, a finding named with its
op and user line, the same on the raw-record and the event path, no false alarm."""

from __future__ import annotations

import inspect
import subprocess
import sys
from contextlib import nullcontext

import numpy as np
import pytest
from tracetensor.debugger import Debugger

import tracetensor as tt
from tracetensor import events as ev
from tracetensor.nancheck import Numerics

pytestmark = pytest.mark.tracetensor_allow_nan  # these tests make NaN/inf on purpose


def _line(marker: str) -> int:
    src = inspect.getsource(sys.modules[__name__]).splitlines()
    return next(i for i, ln in enumerate(src, 1) if marker in ln and "_line(" not in ln)


def _train_until_nan() -> None:
    """A small model whose loss takes log(0) in its second and last step (a forward -inf, a NaN gradient)."""
    net = tt.nn.Sequential(tt.nn.Linear(2, 3), tt.nn.ReLU(), tt.nn.Linear(3, 2))
    opt = tt.optim.SGD(net.parameters(), lr=0.1)
    for step in range(2):
        shift = tt.tensor([[0.0, -1000.0 if step == 1 else 0.0]])
        probs = (net(tt.tensor([[1.0, 2.0]])) + shift).softmax(-1)
        loss = -(probs.log() * tt.tensor([[0.0, 1.0]])).sum()  # LOG LINE
        opt.zero_grad()
        loss.backward()
        opt.step()


def _findings(n: Numerics) -> list[tuple]:
    return [(f.op, f.phase, f.tensor, repr(f.summary), f.frame, tuple(n.flows_into(f))) for f in n.ordered()]


@pytest.mark.parametrize("other", [None, "plain", "summaries"])
def test_check_finds_forward_and_backward_nan_with_op_and_line(other: str | None) -> None:
    # alone the check runs on raw records; beside a plain listener it runs on events; beside a
    # summarizing one every output is summarized: the findings must be the same every way
    side = {
        None: nullcontext(),
        "plain": ev.listen(lambda e: None),
        "summaries": ev.listen(lambda e: None, summaries=True),
    }
    tt.manual_seed(3)
    with np.errstate(all="ignore"), side[other], Numerics(summaries=False) as n:
        _train_until_nan()
    line = _line("# LOG LINE")
    first = n.ordered()[0]
    assert (first.op, first.phase, first.frame.lineno) == ("log", "forward", line)
    assert first.summary.neginf >= 1 and first.event.input_summaries[0].zero >= 1  # softmax underflowed
    grad = n.ordered("grad")[0]
    assert (grad.op, grad.phase, grad.frame.lineno) == ("log", "backward", line)
    assert grad.event.forward == "log" and n.flows_into(grad)  # names the parameters it reaches
    assert set(n.flows_into(grad)) <= set(n.params()) and "0.weight" in n.params()
    report = n.report("grad")
    assert f"test_checks.py:{line}" in report and "inputs of forward op 'log'" in report
    assert "zero=" in report.split("inputs of forward op 'log'")[1]  # the forward input, summarized
    if other is None:
        tt.manual_seed(3)
        with np.errstate(all="ignore"), ev.listen(lambda e: None), Numerics(summaries=False) as n2:
            _train_until_nan()
        assert _findings(n2) == _findings(n)
    else:
        tt.manual_seed(3)
        with np.errstate(all="ignore"), Numerics(summaries=False) as alone:
            _train_until_nan()
        assert _findings(alone) == _findings(n)


def test_check_agrees_with_full_summaries() -> None:
    results = []
    for summaries in (True, False):
        tt.manual_seed(3)
        with np.errstate(all="ignore"), Numerics(summaries=summaries) as n:
            _train_until_nan()
        results.append((n.total, n.total_grad, _findings(n)))
    assert results[0] == results[1] and results[0][0] > 0


def test_finite_ops_reach_a_raw_checking_listener_as_records_only() -> None:
    got: list = []
    with ev.listen(got.append, checks=True, raw=True):
        w = tt.tensor([1.0, 2.0], requires_grad=True)
        (w * 3.0).sum().backward()
        bad = tt.tensor([-1.0, 4.0]).sqrt()
    ops = [x for x in got if ev.is_raw(x) or isinstance(x, ev.OpEvent)]
    events = [x for x in ops if not ev.is_raw(x)]
    assert len(ops) >= 5 and len(events) == 1 and events[0].op == "sqrt"
    assert events[0].summaries[0].nan == 1 and events[0].frame.lineno == _line("bad = tt.tensor([-1.0, 4.0])")
    assert np.isnan(bad.numpy()[0])
    assert all(e.summaries is None for e in ev.materialize([x for x in ops if ev.is_raw(x)]))


def test_an_only_nonfinite_listener_gets_nothing_of_finite_ops_and_every_op_after_the_switch() -> None:
    got: list = []
    with np.errstate(all="ignore"), ev.listen(got.append, checks=True, raw=True, only_nonfinite=True) as lis:
        w = tt.tensor([1.0, 4.0], requires_grad=True)
        (w * 3.0).sum().backward()  # finite: nothing comes (its step still begins)
        quiet = list(got)
        bad = tt.tensor([-1.0, 4.0]).sqrt()  # QUIET SQRT LINE
        lis.every_op()  # from here on every op, as `checks` alone gives
        (w * 2.0).sum()
    ops = [x for x in quiet if ev.is_raw(x) or isinstance(x, ev.OpEvent)]
    assert ops == [] and any(isinstance(x, ev.RunStart) for x in quiet)
    events = [x for x in got if isinstance(x, ev.OpEvent)]
    assert [e.op for e in events] == ["sqrt"] and events[0].summaries[0].nan == 1 and np.isnan(bad.numpy()[0])
    assert events[0].frame.lineno == _line("# QUIET SQRT LINE")
    later = ev.materialize([x for x in got if ev.is_raw(x)])
    assert [e.op for e in later] == ["mul", "sum"] and all(e.run == events[0].run for e in later)  # the same step
    with pytest.raises(ValueError, match="checks=True"):
        ev.subscribe(got.append, only_nonfinite=True)


def _finite_then_sqrt_at_zero() -> None:
    """A model whose forward stays finite; its last backward pass takes sqrt's gradient at 0."""
    net = tt.nn.Linear(2, 2)
    with tt.no_grad():
        net.weight.fill_(0.1)
        net.bias.fill_(0.0)
    opt = tt.optim.SGD(net.parameters(), lr=0.01)
    x = tt.tensor([[1.0, 2.0]])
    for step in range(4):  # three finite steps first: the check sees nothing of them
        shift = -net(x) if step == 3 else tt.tensor([[1.0, 1.0]])
        loss = (net(x) + shift).relu().sqrt().sum()  # ZERO SQRT LINE
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_a_gradient_that_goes_bad_after_finite_steps_is_reported_as_with_full_summaries() -> None:
    """The plain check sees nothing of the finite steps (`only_nonfinite` until its first
    finding): it must still name the op, line, forward inputs and parameters as a listener
    that summarized every tensor does."""
    results = []
    for summaries in (True, False):
        tt.manual_seed(3)
        with np.errstate(all="ignore"), Numerics(summaries=summaries) as n:
            _finite_then_sqrt_at_zero()
        results.append((n.total, n.total_grad, _findings(n), n.report("grad")))
    (_, total_grad, findings, _), (*_, report) = results
    assert results[0][:3] == results[1][:3] and total_grad > 0
    grad = next(f for f in findings if f[1] == "backward")
    assert grad[0] == "sqrt" and grad[4].lineno == _line("# ZERO SQRT LINE") and set(grad[5]) == {"weight", "bias"}
    fwd = report.split("inputs of forward op 'sqrt")[1].splitlines()[1]
    assert "zero=2" in fwd and "nan=" not in fwd  # sqrt's input, summarized as the gradient went bad


@pytest.mark.parametrize(
    "values",
    [
        np.full(8, 3e38, np.float32),  # the float32 sum overflows; every value is finite
        np.array([1e308, 1e308, -1e308]),
        np.full(100, 6e4, np.float16),
        np.array([3e38 + 3e38j] * 4, np.complex64),
    ],
)
def test_an_overflowing_but_finite_tensor_is_not_reported(values: np.ndarray) -> None:
    assert ev.finite(values) and ev.check(values) is None
    with np.errstate(all="ignore"), Numerics(summaries=False) as n:
        t = tt.tensor(values)
        (t * 1).sum()
    assert [f.tensor for f in n.findings if f.tensor.startswith("mul")] == []


@pytest.mark.parametrize(
    "values, nan, neginf, posinf",
    [
        (np.array([1.0, np.nan], np.float32), 1, 0, 0),
        (np.array([np.inf, -np.inf, 2.0]), 0, 1, 1),
        (np.array([[1.0, 2.0], [np.inf, 0.0]], np.float16), 0, 0, 1),
        (np.array([1 + 1j, complex(0, np.nan)], np.complex64), 1, 0, 0),
        (np.float64("-inf"), 0, 1, 0),
    ],
)
def test_check_counts_exactly(values: np.ndarray, nan: int, neginf: int, posinf: int) -> None:
    with np.errstate(all="ignore"):
        s = ev.check(values)
    assert not ev.finite(values) and (s.nan, s.neginf, s.posinf) == (nan, neginf, posinf)


def test_integer_and_empty_outputs_need_no_check() -> None:
    assert ev.check(np.arange(5)) is None and ev.check(np.zeros(0, np.float32)) is None
    assert ev.check(np.array([True, False])) is None


def test_debugging_mode_raises_at_the_op_through_the_check() -> None:
    w = tt.tensor([0.0, 1.0], requires_grad=True)
    with pytest.raises(tt.debugging.NumericsError) as info, np.errstate(all="ignore"):
        with tt.debugging.check_numerics_mode():
            y = w.sqrt().sum()  # SQRT LINE
            y.backward()
    msg = str(info.value)
    assert "sqrt (backward)" in msg and f"test_checks.py:{_line('# SQRT LINE')}" in msg


def test_record_values_check_trace_opens_in_info_and_debugger(tmp_path) -> None:
    path = tmp_path / "c.ttrace"
    tt.manual_seed(3)
    with np.errstate(all="ignore"), tt.record(path, values="check"):
        _train_until_nan()
    tr = tt.trace.open(path)
    assert tr.meta()["values"] == "check"
    first = tr.first_nonfinite()
    assert (first.op, first.phase) == ("log", "forward") and first.frame.lineno == _line("# LOG LINE")
    assert first.input_summaries is not None
    info = subprocess.run(
        [sys.executable, "-m", "tracetensor", "trace", "info", str(path)], capture_output=True, text=True, timeout=120
    )
    assert info.returncode == 0 and "values   check" in info.stdout
    d = Debugger(tr)
    out = d.plain("lt -a -f has_inf_or_nan")
    assert f"culprit (has_inf_or_nan): log:0 in run {first.run}" in out
    assert "could not be checked" not in d.plain("lt -f has_inf_or_nan")  # unsummarized = checked finite
    finite = next(e for e in tr.events(d.run) if e.op == "linear" and not e.summaries)
    assert "finite (checked for NaN/inf" in d.plain(f"pt {finite.outputs[0].name}")


@pytest.mark.gpu
@pytest.mark.parametrize(
    "values",
    [
        np.array([1.0, np.nan], np.float32),
        np.array([np.inf, -np.inf, 2.0]),
        np.full(8, 3e38, np.float32),
        np.random.default_rng(0).standard_normal(3_000_001).astype(np.float32),
        np.arange(5),
    ],
)
def test_the_check_on_the_gpu_agrees_with_the_cpu(values: np.ndarray) -> None:
    import cupy

    d = cupy.asarray(values)
    assert ev.finite(d) == ev.finite(values)
    s_gpu, s_cpu = ev.check(d), ev.check(values)
    assert (s_gpu is None) == (s_cpu is None)
    if s_cpu is not None:
        assert (s_gpu.nan, s_gpu.neginf, s_gpu.posinf) == (s_cpu.nan, s_cpu.neginf, s_cpu.posinf)


@pytest.mark.gpu
def test_numerics_check_finds_a_gpu_nan_gradient_with_its_forward_line() -> None:
    with np.errstate(all="ignore"), Numerics(summaries=False) as n:
        w = tt.tensor([0.0, 1.0], device="cuda", requires_grad=True)
        w.sqrt().sum().backward()  # GPU SQRT LINE
    grad = n.ordered("grad")[0]
    assert (grad.op, grad.phase, grad.frame.lineno) == ("sqrt", "backward", _line("# GPU SQRT LINE"))
    assert grad.summary.posinf == 1 and grad.event.device.startswith("cuda")


async def test_tui_opens_a_values_check_trace_and_says_an_unsummarized_tensor_was_checked(tmp_path) -> None:
    from textual.widgets import Static
    from tracetensor.debugger.commands import to_plain
    from tracetensor.debugger.tui import DebuggerApp, TensorList, TensorScreen

    path = tmp_path / "c.ttrace"
    tt.manual_seed(3)
    with np.errstate(all="ignore"), tt.record(path, values="check"):
        _train_until_nan()
    app = DebuggerApp(Debugger(tt.trace.open(path)), "run-end", "", "end")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        tl = app.screen.query_one(TensorList)
        assert tl.culprit is not None and tl.culprit.tensor_name == "log:0"
        row = next(i for i, d in enumerate(tl.rows) if d.summary is None and d.meta.dtype == "float32")
        await pilot.press("ctrl+l", *["down"] * row, "enter")
        await pilot.pause()
        assert isinstance(app.screen, TensorScreen) and app.screen.datum.summary is None
        assert "finite: checked for NaN/inf" in to_plain(app.screen.query_one("#summary", Static).content)


def test_the_c_check_agrees_with_numpy_on_every_dtype_layout_and_value():
    """The accelerator's exponent-bit check (contiguous native numpy arrays and scalars)
    against `np.isfinite`: NaN, ±inf, the largest finite values, float16/32/64, complex,
    integers, bools, empty, 0-d, strided and byte-swapped arrays (those: not decided there,
    so `events.finite` checks them in numpy)."""
    from tracetensor import _dispatch

    if not _dispatch.ACCELERATED:
        pytest.skip("the C accelerator is not in use")
    from tracetensor import _speedups

    rng = np.random.default_rng(0)
    cases: list = []
    for dt in (np.float16, np.float32, np.float64, np.complex64, np.complex128, np.int32, np.uint8, np.bool_):
        for n in (0, 1, 7, 64, 1000, 4099):
            a = (rng.standard_normal(n) * 10).astype(dt)
            cases.append(a)
            if np.dtype(dt).kind in "fc" and n:
                for v in (np.nan, np.inf, -np.inf, complex(0, np.nan) if np.dtype(dt).kind == "c" else np.nan):
                    b = a.copy()
                    b[rng.integers(0, n)] = v
                    cases.append(b)
                cases.append(np.full(n, np.finfo(dt).max, dt))  # huge but finite (a sum would overflow)
        m = np.ones((4, 6), dt)
        cases += [m[:, ::2], m.T]
    cases += [np.float32(np.nan), np.float64(1.0), np.array(np.inf), np.array([1, 2], ">f4"), np.array([np.nan], ">f8")]
    decided = 0
    with np.errstate(all="ignore"):
        for a in cases:
            want = bool(np.isfinite(a).all()) if a.dtype.kind in "fc" else True
            got = _speedups.finite(a)
            decided += got is not None
            assert got is None or got == want, (a.dtype, a.shape, got, want)
            assert ev.finite(a) == want
    assert decided > 0.8 * len(cases)


def test_the_c_summary_agrees_with_numpy_on_every_dtype_layout_and_value(monkeypatch):
    """The accelerator's one-pass summary (contiguous native float32/float64 arrays, all
    finite) against the numpy path, which decides everything else: the same counts, extremes
    and signed zeros, mean and std to float64 rounding, over sizes that leave vector tails,
    huge and tiny values, NaN and ±inf anywhere (those go to numpy), other dtypes and layouts."""
    from tracetensor import _dispatch

    if not _dispatch.ACCELERATED:
        pytest.skip("the C accelerator is not in use")
    from tracetensor import _speedups

    rng = np.random.default_rng(1)
    cases: list = []
    for dt in (np.float16, np.float32, np.float64, np.complex64, np.int32, np.bool_):
        for n in (1, 3, 4, 5, 7, 64, 1001, 4099):
            a = (rng.standard_normal(n) * 10).astype(dt)
            cases.append(a)
            if np.dtype(dt).kind == "f":
                z = a.copy()
                z[::3] = 0  # zeros among negatives and positives
                z[1::5] = -0.0
                cases += [z, np.full(n, np.finfo(dt).max, dt), np.full(n, -np.finfo(dt).tiny, dt)]
                for v in (np.nan, np.inf, -np.inf):
                    for at in {0, n // 2, n - 1}:  # the vector part and the tail
                        b = a.copy()
                        b[at] = v
                        cases.append(b)
        m = (rng.standard_normal((4, 6)) * 3).astype(dt)
        cases += [m[:, ::2], m.T, m.reshape(2, 3, 4)]
    cases += [np.float32(2.5), np.array(-1.0), np.array([1, 2], ">f4"), np.zeros(9, np.float32)]
    decided = 0
    try:
        for wide in (True, False):  # AVX2 where the CPU has it, then the SSE2 (or plain C) pass
            _speedups.set_wide(wide)
            with np.errstate(all="ignore"):
                for a in cases:
                    fast = ev.summarize(a)
                    ours = a.dtype in (np.float32, np.float64) and a.dtype.isnative and np.isfinite(a).all()
                    decided_here = _speedups.summary(a) is not None
                    assert decided_here == bool(ours and np.asarray(a).flags.c_contiguous), (a.dtype, a.shape)
                    decided += decided_here
                    monkeypatch.setattr(ev, "_fast_summary", None)
                    want = ev.summarize(a)
                    monkeypatch.undo()
                    head = lambda s: (s.size, s.nan, s.neginf, s.posinf, s.neg, s.zero, s.pos)
                    assert head(fast) == head(want), (a.dtype, a.shape, wide)
                    assert (fast.min, fast.max) == (want.min, want.max) or (np.isnan(fast.min) and np.isnan(want.min))
                    np.testing.assert_allclose([fast.mean, fast.std], [want.mean, want.std], rtol=1e-9, atol=1e-300)
    finally:
        _speedups.set_wide(True)
    assert decided > 100
