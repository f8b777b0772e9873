"""Line-mode output of every debugger command, over a real eager run recorded live."""

from __future__ import annotations

import re

import numpy as np
import pytest
from tracetensor.debugger import Debugger, GradStat, add_tensor_filter
from tracetensor.debugger.commands import parse_slice, sparkline

import tracetensor as tt
from tracetensor import events as ev
from tracetensor.trace import MemoryTrace

# these tests make NaN/inf on purpose; the tracetensor pytest plugin would fail them
pytestmark = pytest.mark.tracetensor_allow_nan

LOG_LINE = "y = h.log().sum()  # the culprit line"


def _record() -> MemoryTrace:
    w = tt.tensor([[1.0, -1.0], [2.0, 0.5]], requires_grad=True)
    x = tt.tensor([[1.0, 2.0], [-1.0, 1.0]])
    with MemoryTrace(values=True, summaries=True, stacks=True) as tr:
        r = ev.begin_run("debug", name="step")
        h = (x @ w).relu()
        y = h.log().sum()  # the culprit line
        y.backward()
        ev.end_run(r)
    return tr


@pytest.fixture
def dbg() -> Debugger:
    with np.errstate(all="ignore"):
        return Debugger(_record())


def rows(out: str) -> list[list[str]]:
    """The data rows of an `lt` table, split on runs of spaces."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if set(ln.strip()) == {"─"}) + 1
    return [re.split(r"\s{2,}", ln.strip()) for ln in lines[start:] if ln.strip()]


def test_lt_lists_culprit_first_and_every_tensor(dbg: Debugger) -> None:
    out = dbg.plain("lt")
    assert "culprit (has_inf_or_nan): log:0" in out
    r = rows(out)
    assert r[0][0] == "!" and "log:0" in r[0]
    assert "-inf=1" in r[0]
    names = [next(c for c in row if ":" in c or c.endswith(".grad")) for row in r]
    for want in ("matmul:0", "relu:0", "sum:0", "gradients/log_grad:0"):
        assert want in names
    assert any(n.endswith(".grad") for n in names)
    # after the culprit, execution order
    seqs = [n for n in names[1:]]
    assert seqs.index("matmul:0") < seqs.index("relu:0") < seqs.index("sum:0")


def test_lt_filters_and_sorting(dbg: Debugger) -> None:
    only_bad = dbg.plain("lt -f has_inf_or_nan")
    assert "matmul:0" not in only_bad and "log:0" in only_bad
    assert "passing has_inf_or_nan" in only_bad
    by_op = dbg.plain("lt -t ^relu$")
    assert "relu:0" in by_op and "matmul:0" not in by_op
    by_name = dbg.plain("lt -n gradients/")
    assert "gradients/log_grad:0" in by_name and "relu:0" not in by_name.replace("gradients/relu", "")
    by_size = rows(dbg.plain("lt -s dump_size -r"))
    sizes = [int(re.sub(r"\D", "", row[2] if row[0] == "!" else row[1])) for row in by_size[1:]]
    assert sizes == sorted(sizes, reverse=True)


def test_user_filter(dbg: Debugger) -> None:
    add_tensor_filter("bigger_than_4", lambda d, v: v is not None and v.size > 0 and float(np.max(v)) > 4)
    out = dbg.plain("lt -f bigger_than_4")
    assert "culprit (bigger_than_4): matmul:0" in out
    listed = {next(c for c in row if ":" in c or c.endswith(".grad")) for row in rows(out)}
    every = set(dbg.tensor_names())
    with np.errstate(invalid="ignore"):
        passing = {n for n in every if float(np.max(dbg.trace.value(n))) > 4}
    assert listed == passing and "relu:0" in listed and "sum:0" not in listed
    err = dbg.execute("lt -f no_such_filter")
    assert err.error and "no tensor filter named 'no_such_filter'" in dbg.plain("lt -f no_such_filter")


def test_pt_values_slices_summary_ranges(dbg: Debugger) -> None:
    out = dbg.plain("pt matmul:0")
    body = out.split("\n", 1)[1]
    assert [float(x) for x in re.findall(r"-?\d+\.?\d*", body)] == [5.0, 0.0, 1.0, 1.5]
    assert "shape (2, 2)" in out
    assert "-inf" in dbg.plain("pt log:0")
    sliced = dbg.plain("pt matmul:0[1, :]")
    assert "slice [1,:] -> shape (2,)" in sliced
    assert [float(x) for x in re.findall(r"-?\d+\.?\d*", sliced.splitlines()[-1])] == [1.0, 1.5]
    s = dbg.plain("pt -s relu:0")
    assert "zero=1" in s and "histogram of finite values" in s
    r = dbg.plain("pt relu:0 -r [1,2]")
    assert "2 of 4 elements in range [1, 2]" in r
    bad = dbg.plain("pt nothere:0")
    assert "no tensor or node named 'nothere:0'" in bad
    assert "does not fit shape" in dbg.plain("pt matmul:0[5]")


def test_parse_slice_refuses_code() -> None:
    assert parse_slice("[0, 1:3, ::2, ...]") == (0, slice(1, 3), slice(None, None, 2), Ellipsis)
    assert parse_slice("[-1]") == (-1,)
    from tracetensor.debugger import CommandError

    with pytest.raises(CommandError):
        parse_slice("[__import__('os')]")


def test_ni_traceback_points_at_user_line(dbg: Debugger) -> None:
    out = dbg.plain("ni -t log")
    assert "op type: log" in out and "relu:0" in out
    lineno = next(i for i, ln in enumerate(open(__file__).read().splitlines(), 1) if ln.strip() == LOG_LINE)
    assert f"{__file__}:{lineno} in _record" in out
    assert LOG_LINE in out
    assert "-inf=1" in out
    attrs = dbg.plain("ni -a sum")
    assert "attributes:" in attrs


def test_li_lo(dbg: Debugger) -> None:
    li = dbg.plain("li -r sum")
    lines = li.splitlines()
    depth = {ln.strip().split()[1]: len(ln) - len(ln.lstrip()) for ln in lines[1:] if "|-" in ln}
    assert depth["log:0"] < depth["relu:0"] < depth["matmul:0"]
    assert "(relu)" in li
    assert "relu" in dbg.plain("lo matmul")
    one = dbg.plain("li sum")
    assert "relu:0" not in one


def test_ps_annotates_lines(dbg: Debugger) -> None:
    listing = dbg.plain("ps")
    assert __file__ in listing
    out = dbg.plain("ps test_debugger_commands.py")
    line = next(ln for ln in out.splitlines() if LOG_LINE in ln and "LOG_LINE" not in ln)
    assert line.startswith(">") and "# log" in line
    assert not any(ln.startswith(">") for ln in out.splitlines() if "LOG_LINE =" in ln)
    assert "no source for" in dbg.plain("ps nowhere.py")


def test_ri(dbg: Debugger) -> None:
    out = dbg.plain("ri")
    assert f"Run {dbg.run}" in out and "debug, eager mode, step" in out
    assert "first NaN/inf: log:0 (log)" in out


def test_eval(dbg: Debugger) -> None:
    # matmul:0 is [[5, 0], [1, 1.5]]
    assert "15.0" in dbg.plain("eval np.sum(`matmul:0`) * 2")
    arr = dbg.plain('eval "`relu:0` > 1"')
    assert "shape (2, 2), dtype bool" in arr
    assert "no tensor or node named 'nothere:0'" in dbg.plain("eval `nothere:0` + 1")
    assert "unknown name 'open'" in dbg.plain("eval open('x')")


def test_gradient_flow(dbg: Debugger) -> None:
    out = dbg.plain("gf")
    assert "gradient flow" in out and "nan/inf" in out
    st = dbg.grad_stats()
    assert len(st) == 1
    g = dbg.trace.value(f"{st[0].param}.grad")
    finite = g[np.isfinite(g)]
    assert st[0].grad_norm == pytest.approx(float(np.linalg.norm(finite)), rel=1e-5)
    assert GradStat("w", 1e-12, 1.0, 0.0, 0).flag == "vanishing"
    assert GradStat("w", 50.0, 1.0, 0.0, 0).flag == "exploding"
    assert GradStat("w", 0.01, 1.0, 0.0, 0).flag == ""
    assert sparkline([1, 2, 3]) == "▁▄█" and sparkline([1, float("nan")]) == "▁!"


def test_timing_slowest_first(dbg: Debugger) -> None:
    out = dbg.plain("tm")
    assert f"run {dbg.run}: {dbg.trace.count(dbg.run)} ops" in out
    host = [float(ln.split()[0]) for ln in out.splitlines() if re.match(r"^\s*\d+\.\d", ln)]
    assert len(host) == dbg.trace.count(dbg.run)
    assert host == sorted(host, reverse=True)


def test_run_and_exit_actions(dbg: Debugger) -> None:
    assert dbg.execute("run").action.mode == "step"
    assert dbg.execute("run -n").action.mode == "nodebug"
    a = dbg.execute("run -t 3").action
    assert (a.mode, a.times) == ("times", 3)
    f = dbg.execute("run -f has_inf_or_nan --op_type_filter Log").action
    assert (f.mode, f.filter, f.op_type_filter) == ("filter", "has_inf_or_nan", "Log")
    assert dbg.execute("run -f nope").error
    assert dbg.execute("exit").exit


def test_help_and_errors(dbg: Debugger) -> None:
    out = dbg.plain("help")
    for c in (
        "lt, list_tensors",
        "pt, print_tensor",
        "ni, node_info",
        "li, list_inputs",
        "lo, list_outputs",
        "ps, print_source",
        "ri, run_info",
        "eval",
        "run",
        "exit",
        "has_inf_or_nan",
    ):
        assert c in out
    assert "--numeric_summary" in dbg.plain("help pt") and "--sort_by" in dbg.plain("lt -h")
    assert "unknown command 'frobnicate'" in dbg.plain("frobnicate")
    assert "unrecognized arguments: --bogus" in dbg.plain("lt --bogus")


def test_watch_filters_restrict_the_list() -> None:
    from tracetensor.debugger import RunAction

    with np.errstate(all="ignore"):
        d = Debugger(_record(), watch=RunAction(op_type_filter="^(log|relu)$"))
    names = d.tensor_names()
    assert set(names) == {"log:0", "relu:0", "gradients/log_grad:0", "gradients/relu_grad:0"}


def test_completion(dbg: Debugger) -> None:
    assert dbg.complete("l") == ["li", "list_inputs", "list_outputs", "list_runs", "list_tensors", "lo", "lr", "lt"]
    assert "relu:0" in dbg.complete("pt re") and "relu" in dbg.complete("pt re")
    assert dbg.complete("lt -f has") == ["has_inf_or_nan"]


def test_graph_nodes_from_graphdef() -> None:
    """Graph-mode structure (a GraphDef in the trace) drives ni -a, li and lo."""
    fr = ev.Frame(__file__, 1, "model")
    g = ev.GraphDef(
        7,
        1,
        (
            ev.NodeDef("x", "Placeholder", (), (("dtype", "float32"),), (fr,)),
            ev.NodeDef("layer/MatMul", "MatMul", ("x:0", "w:0"), (("transpose_a", "False"),), (fr,)),
            ev.NodeDef("w", "VariableV2", (), (), (fr,)),
            ev.NodeDef("loss", "Sum", ("layer/MatMul:0",), (("axis", "None"),), (fr,)),
        ),
    )
    tr = MemoryTrace(start=False)
    tr.add(g)
    d = Debugger(tr)
    ni = d.plain("ni -a -t layer/MatMul")
    assert "op type: MatMul" in ni and "transpose_a = False" in ni and f"{__file__}:1 in model" in ni
    assert "traceback of node construction" in ni
    assert "x:0" in d.plain("li layer/MatMul") and "loss" in d.plain("lo layer/MatMul")


def test_pt_all_and_summary_only_values_and_li_depth() -> None:
    with MemoryTrace(values=False, summaries=True) as tr:
        r = ev.begin_run("debug")
        big = (tt.arange(3000) * 2).float().tanh().exp().log().relu()
        ev.end_run(r)
    d = Debugger(tr)
    out = d.plain("pt relu:0")
    assert "value was not kept" in out and "n=3000" in out  # the summary still shows
    with MemoryTrace(values=True, summaries=True) as tr2:
        r = ev.begin_run("debug")
        big = (tt.arange(3000) * 2).float().tanh().exp().log().relu()
        ev.end_run(r)
    d2 = Debugger(tr2)
    short, full = d2.plain("pt mul:0"), d2.plain("pt -a mul:0")
    assert "..." in short and "5998" in short and "..." not in full
    assert len(re.findall(r"\d+", full.split("\n", 1)[1])) == 3000
    assert big.shape == (3000,)
    deep, shallow = d2.plain("li -r relu"), d2.plain("li -r -d 1 relu")
    assert "mul:0" in deep and "exp:0" not in shallow and "log:0" in shallow
