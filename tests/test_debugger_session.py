"""The run protocol (run-start / run-end, run -t / -n / -f, exit) of `debugger.wrap` and
`LocalCLIDebugWrapperSession`, driven in line mode with commands on a text stream."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from tracetensor.debugger import LocalCLIDebugWrapperSession, wrap
from tracetensor.debugger.readline_ui import ReadlineUI

import tracetensor as tt

pytestmark = pytest.mark.tracetensor_allow_nan  # NaNs are made on purpose here


def _ui(commands: str) -> tuple[ReadlineUI, io.StringIO]:
    out = io.StringIO()
    return ReadlineUI(io.StringIO(commands), out), out


def _stops(text: str) -> list[str]:
    return re.findall(r"======== (run-(?:start|end): run #\d+) ========", text)


def _step_fn():
    w = tt.tensor([[1.0, -1.0], [2.0, 1.0]], requires_grad=True)
    x = tt.tensor([[1.0, 2.0], [-1.0, 1.0]])

    def step(k: float) -> float:
        y = ((x * k) @ w).relu().log().sum()  # NaN/inf only when k <= 0
        y.backward()
        return y.item()

    return step


def test_run_f_stops_at_first_run_with_inf_and_program_goes_on() -> None:
    ui, out = _ui("run -f has_inf_or_nan\nlt\nri\nexit\n")
    step = wrap(_step_fn(), ui=ui)
    with np.errstate(all="ignore"):
        results = [step(k) for k in (1.0, 2.0, -1.0, 3.0, -2.0)]
    text = out.getvalue()
    assert _stops(text) == ["run-start: run #1", "run-end: run #3"]
    assert "tensor filter 'has_inf_or_nan' passed at log:0" in text
    lt = text.split("tfdbg> lt\n")[1]
    first_row = next(ln for ln in lt.splitlines() if ln.startswith("!"))
    assert "log:0" in first_row
    assert len(results) == 5 and np.isinf(results[2])  # exit: the program ran on, undebugged


def test_run_t_and_run_n() -> None:
    ui, out = _ui("run -t 2\nrun -n\nrun\nexit\n")
    step = wrap(_step_fn(), ui=ui)
    for k in (1.0, 2.0, 3.0, 4.0, 5.0):
        step(k)
    # run -t 2 stops at the end of run 2; run -n skips run 3 undebugged and stops at run 4's start
    assert _stops(out.getvalue()) == ["run-start: run #1", "run-end: run #2", "run-start: run #4", "run-end: run #4"]


def test_end_of_input_leaves_the_debugger() -> None:
    ui, out = _ui("")
    step = wrap(_step_fn(), ui=ui)
    plain = _step_fn()
    assert [step(k) for k in (1.0, 2.0)] == [pytest.approx(plain(k)) for k in (1.0, 2.0)]
    assert _stops(out.getvalue()) == ["run-start: run #1"]


def test_run_end_screen_shows_the_error_and_its_line() -> None:
    ui, out = _ui("run\nexit\n")

    def bad() -> None:
        a = tt.ones(2, 3)
        b = tt.ones(4, 5)
        return a @ b  # the failing line

    f = wrap(bad, ui=ui)
    with pytest.raises(tt.ShapeError):
        f()
    text = out.getvalue()
    assert "run #1 raised ShapeError" in text
    assert "a @ b  # the failing line" in text
    assert re.search(r"test_debugger_session\.py:\d+", text)


def test_watch_filters_from_run_flags() -> None:
    ui, out = _ui("run --op_type_filter ^log$\nexit\n")
    step = wrap(_step_fn(), ui=ui)
    step(1.0)
    lt = out.getvalue().split("run-end: run #1")[1]
    assert "log:0" in lt and "matmul:0" not in lt and "relu:0" not in lt


def test_wrapped_module_spans_forward_to_forward_with_gradient_flow() -> None:
    nn = tt.nn
    tt.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    ui, out = _ui("run -t 2\ngf\nexit\n")
    m = wrap(model, ui=ui)
    x = tt.randn(5, 4)
    for _ in range(3):
        loss = (m(x) ** 2).mean()
        loss.backward()
        with tt.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
                p.grad = None
    m.close()
    text = out.getvalue()
    assert _stops(text)[:2] == ["run-start: run #1", "run-end: run #2"]
    gf = text.split("tfdbg> gf\n")[1]
    # backward ran after the forward call: its gradients belong to the run, named by module path
    for pname in ("0.weight", "0.bias", "2.weight", "2.bias"):
        row = next(ln for ln in gf.splitlines() if ln.startswith(pname))
        cols = row.split()
        assert float(cols[1]) > 0 and float(cols[2]) > 0  # grad norm and weight norm
    m.eval()  # attribute access and assignment go to the module itself
    assert model.training is False and m.training is False


def test_wrapper_session_behaves_as_the_session(tmp_path) -> None:
    import tracetensor.graph as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, shape=(None, 2), name="x")
        y = tf.reduce_sum(tf.log(x), name="y")
        sess = tf.Session(graph=g)
    ui, out = _ui("run -f has_inf_or_nan\nni -t y\nexit\n")
    dsess = LocalCLIDebugWrapperSession(sess, ui=ui, dump_root=str(tmp_path / "dumps"))
    vals = []
    with np.errstate(all="ignore"):
        for v in ([[1.0, 2.0]], [[3.0, 4.0]], [[0.0, 1.0]], [[1.0, 1.0]]):
            vals.append(dsess.run(y, feed_dict={x: np.array(v, np.float32)}))
    text = out.getvalue()
    assert _stops(text) == ["run-start: run #1", "run-end: run #3"]
    assert "fetches: y:0" in text and "feeds: x:0" in text
    assert np.isclose(vals[0], np.log(2.0)) and np.isinf(vals[2])
    assert dsess.graph is sess.graph
    dsess.close()
    # dump_root kept every run in a trace file that the offline debugger reads
    from tracetensor.debugger import Debugger
    from tracetensor.debugger.cli import start_run

    from tracetensor.trace import open as open_trace

    with open_trace(dsess.trace_path) as tr:
        assert len(tr.runs()) == 4
        d = Debugger(tr, start_run(tr))
        assert d.run == tr.runs()[2].run and "culprit (has_inf_or_nan): Log:0" in d.plain("lt")
