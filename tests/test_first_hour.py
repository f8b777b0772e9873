"""What a new user trips on in the first hour, off README's scripted path: each test is
one of those trips, checked the way the user met it (the CLI in a subprocess, the API
as README shows it)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from tracetensor.profiler import profile

import tracetensor as tt
import tracetensor.graph as tf

ROOT = pathlib.Path(__file__).resolve().parents[1]

# several tests make NaN/inf on purpose; the tracetensor pytest plugin would fail them
pytestmark = pytest.mark.tracetensor_allow_nan

NAN_SCRIPT = """\
import tracetensor as tt
from tracetensor import profiler
w = tt.tensor([[1.0, -1.0], [2.0, 0.5]], requires_grad=True)
x = tt.tensor([[1.0, 2.0], [-1.0, 1.0]])
for step in range(3):
    y = (x @ w).relu().log().sum()
    y.backward()
    profiler.step()
"""


def cli(*args: str, cwd: pathlib.Path = ROOT, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracetensor", *args], cwd=cwd, capture_output=True, text=True, timeout=120, **kw
    )


# ---------------------------------------------------------------- profiler traces and filters


def test_profiled_trace_answers_has_inf_or_nan(tmp_path):
    (tmp_path / "nan.py").write_text(NAN_SCRIPT)
    r = cli("profile", "--no-py-spy", "nan.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    trace = tmp_path / "nan-profile" / "nan.ttrace"
    out = cli("debug", str(trace), "-c", "lt -f has_inf_or_nan", "-c", "pt log:0").stdout
    assert "culprit (has_inf_or_nan): log:0" in out
    assert "0 tensors passing" not in out
    assert "-inf=1" in out  # pt shows the recorded summary


def test_filters_and_pt_say_when_the_trace_cannot_answer(tmp_path):
    path = tmp_path / "none.ttrace"
    with np.errstate(all="ignore"), tt.record(path, values="none"):
        tt.tensor([1.0, 0.0]).log()
    with tt.trace.open(path) as tr:
        name = tr.events(op="log")[-1].outputs[0].name  # log:0, or log_N:0 after other ops in this run
    r = cli("debug", str(path), "-c", "lt -f has_inf_or_nan", "-c", f"pt {name}", "-c", "run -f has_inf_or_nan")
    out = " ".join(r.stdout.split())
    assert "1 tensor could not be checked: this trace recorded neither numeric summaries nor their values" in out
    assert "neither the value nor a numeric summary was recorded" in out
    assert "values='none'" in out and "cannot see NaN/inf" in out


# ---------------------------------------------------------------- tracetensor profile


def test_windowed_pyspy_shares_are_of_the_window_and_its_file_is_listed(tmp_path):
    out = tmp_path / "prof"
    # a window long enough for py-spy to sample at 500 Hz however fast the engine gets: 30
    # steps of a wide MLP, about 8 ms each here (0.25 s, ~120 samples; 10 steps of the small
    # one were 5 ms, often no sample at all)
    r = cli(
        "profile",
        "--out",
        str(out),
        "--rate",
        "500",
        "--steps",
        "10:40",
        "--no-record",
        "examples/mlp_eager.py",
        "--steps",
        "50",
        "--batch",
        "512",
        "--hidden",
        "2048",
    )
    assert r.returncode == 0, r.stderr
    if "py-spy could not attach" in r.stderr:
        pytest.skip("py-spy cannot attach here")
    assert "sampled within the recorded steps" in r.stdout
    mine = r.stdout.split("the script's own functions by py-spy samples")[1].split("written:")[0]
    shares = [float(x) for x in re.findall(r"([\d.]+)%", mine)]
    assert shares and max(shares) <= 100.0, mine
    assert re.search(r"pyspy\.chrometrace\.json\s+py-spy's own output", r.stdout)


def test_profile_folders_window_never_reached_and_gitignore(tmp_path):
    args = ("profile", "--no-py-spy", "--steps", "100:200", str(ROOT / "examples/mlp_eager.py"), "--steps", "5")
    first, second = cli(*args, cwd=tmp_path), cli(*args, cwd=tmp_path)
    assert first.returncode == second.returncode == 0, first.stderr
    assert (tmp_path / "mlp_eager-profile" / "trace.json").exists()
    assert (tmp_path / "mlp_eager-profile-2" / "trace.json").exists()  # the first is kept
    assert "the script ran 5 steps" in first.stdout and "window was never reached" in first.stdout
    assert "call tracetensor.profiler.step()" not in first.stdout
    # what the tools write is what .gitignore keeps out of commits
    written = ["mlp_eager-profile/trace.json", "mlp_eager-profile-2/table.txt", "run.ttrace", "sub/x.ttrace"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *written], cwd=ROOT, capture_output=True, text=True, timeout=30
    ).stdout.split()
    assert ignored == written


def test_a_script_that_raises_shows_its_own_traceback(tmp_path):
    r = cli("profile", "--no-py-spy", "--out", str(tmp_path / "p"), "examples/profile_raises.py")
    assert r.returncode == 1
    tb = r.stderr[r.stderr.index("Traceback") :]
    assert tb.splitlines()[1].strip().startswith('File "examples/profile_raises.py", line 33, in <module>')
    for launcher in ("recorder.py", "<frozen runpy>", "_dispatch.py"):
        assert launcher not in tb
    assert "ShapeError: matmul: cannot multiply (8, 15) by (16, 4)" in tb


def test_row_source_location_is_where_the_time_went():
    a, b = tt.ones(2), tt.randn(1024, 1024)

    def once() -> None:
        a + a  # one tiny add first

    def hot() -> None:
        for _ in range(30):
            b + b  # where the add time goes (milliseconds, against the one add's microseconds)

    with profile(with_stack=True) as prof:
        once()
        hot()
    row = next(r for r in prof.key_averages() if r.key == "add")
    assert row.stack[0].name == "hot"


def test_graph_backward_ops_have_flops():
    x = tf.placeholder(tf.float32, [8, 16], name="x")
    w = tf.Variable(np.ones((16, 4), np.float32), name="w")
    loss = tf.reduce_sum(tf.nn.relu(tf.matmul(x, w)))
    grads = tf.gradients(loss, [w])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        with profile(with_flops=True) as prof:
            sess.run(grads, {x: np.ones((8, 16), np.float32)})
    rows = {r.key: r.flops for r in prof.key_averages()}
    assert rows["MatMul"] == 2 * 8 * 4 * 16
    assert rows["MatMulGrad (backward)"] == 2 * rows["MatMul"]  # as eager `matmul (backward)` counts it
    assert rows["ReluGrad (backward)"] > 0


# ---------------------------------------------------------------- command lines


def test_help_texts():
    debug = cli("debug", "--help").stdout
    assert "otherwise the Textual UI opens." in " ".join(debug.split())
    ui_help = " ".join(debug.split("--ui {textual,readline}")[-1].split())
    assert "ctrl+q" in ui_help and "line mode" in ui_help
    assert "trace record" in cli("--help").stdout
    bench = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    names = sorted(p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py"))
    assert bench.returncode == 0 and ", ".join(names) in " ".join(bench.stdout.split())
    bad = subprocess.run(
        [sys.executable, "benchmarks/run.py", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "no benchmark named 'nope'" in bad.stderr


@pytest.mark.parametrize("argv", [["trace", "info", "r.ttrace"], ["debug", "r.ttrace", "-c", "lt", "-c", "ri"]])
def test_a_closed_pipe_ends_quietly(tmp_path, argv):
    with tt.record(tmp_path / "r.ttrace"):
        (tt.ones(3) * 2).sum()
    cmd = [sys.executable, "-m", "tracetensor", *(str(tmp_path / a) if a == "r.ttrace" else a for a in argv)]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # `| head` that already exited
    _, err = p.communicate(timeout=60)
    assert b"BrokenPipeError" not in err and b"Traceback" not in err, err.decode()
    assert p.returncode == 141


# ---------------------------------------------------------------- the trace API


def test_trace_events_match_op_types_across_modes_and_case(tmp_path):
    path = tmp_path / "r.ttrace"
    with tt.record(path):
        w = tt.ones(3, 2, requires_grad=True)
        (tt.ones(4, 3) @ w).relu().sum().backward()
        x = tf.placeholder(tf.float32, [2, 2], name="x")
        y = tf.nn.relu(tf.matmul(x, x))
        with tf.Session() as sess:
            sess.run(y, {x: np.eye(2, dtype=np.float32)})
    with tt.trace.open(path) as tr:
        eager_run = tr.events(op="matmul")[0].run
        for trace in (tr,):
            assert {e.op for e in trace.events(run=eager_run, op="MatMul")} == {"matmul"}
            assert {e.op for e in trace.events(op="MatMul")} == {"matmul", "MatMul"}
            assert {e.op for e in trace.events(op="RELU", phase="forward")} == {"relu", "Relu"}
        with pytest.raises(tt.trace.ValueNotRecorded, match=r"matmul:0 in run \d+: this trace kept no tensor values"):
            tr.value("matmul:0", eager_run)
        with pytest.raises(tt.trace.ValueNotRecorded, match="no tensor named 'nope:0'"):
            tr.value("nope")
        assert tr.value("matmul:0", eager_run, default=None) is None


# ---------------------------------------------------------------- check_numerics_mode


def test_check_numerics_names_the_forward_line_or_says_it_ran_outside():
    w = tt.tensor([1.0, 0.0], requires_grad=True)
    y = (w * 1.0).log().sum()  # forward outside the check
    with pytest.raises(tt.debugging.NumericsError) as err, tt.debugging.check_numerics_mode():
        y.backward()  # the backward() line
    msg = str(err.value)
    assert "from the forward op at" not in msg
    assert "its forward ran outside the check" in msg and "through 'log'" in msg
    assert f"backward called at {__file__}:" in msg

    with pytest.raises(tt.debugging.NumericsError) as err, tt.debugging.check_numerics_mode():
        z = (tt.tensor([0.0], requires_grad=True) * 1.0).sqrt().sum()
        line = sys._getframe().f_lineno - 1
        z.backward()
    assert f"through 'sqrt', from the forward op at {__file__}:{line}" in str(err.value)


# ---------------------------------------------------------------- names in the debugger


def _names_run(path: pathlib.Path):
    import tracetensor.nn as nn
    from tracetensor import events as ev
    from tracetensor.trace import MemoryTrace

    tt.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    opt = tt.optim.SGD(model.parameters(), lr=0.1)
    with tt.record(path, values="full"), MemoryTrace(values=True) as live:
        r = ev.begin_run("debug", name="step")
        model(tt.ones(4, 3)).sum().backward()
        opt.step()
        ev.end_run(r)
    return live


def test_every_name_the_debugger_prints_is_accepted_by_every_command(tmp_path):
    from tracetensor.debugger import Debugger

    live = _names_run(tmp_path / "r.ttrace")
    for trace in (live, tt.trace.open(tmp_path / "r.ttrace")):
        dbg = Debugger(trace)
        names = dbg.tensor_names()
        assert "0.weight" in names and "0.weight.grad" in names  # the update and the gradient
        nodes = {e.name for e in trace.events(dbg.run)}
        for name in [*names, *nodes]:
            for cmd in ("pt", "ni -t", "li", "lo"):
                out = dbg.plain(f"{cmd} {name}")
                assert not out.startswith("error"), (cmd, name, out)
        assert "sgd_update" in dbg.plain("ni 0.weight")
        assert "shape (2, 3)" in dbg.plain("eval '`0.weight` * 2'")
        assert "0.weight.grad" in dbg.plain("li 0.weight")
        assert "update/0.weight" in dbg.plain("lo 0.weight.grad")


# ---------------------------------------------------------------- line-mode sessions


def _session(commands: str, filters: dict | None = None):
    import io

    from tracetensor.debugger import add_tensor_filter, wrap
    from tracetensor.debugger.readline_ui import ReadlineUI

    for name, fn in (filters or {}).items():
        add_tensor_filter(name, fn)
    out = io.StringIO()
    w = tt.tensor([[1.0, -1.0], [2.0, 1.0]], requires_grad=True)

    def step(k: float) -> float:
        y = ((tt.ones(2, 2) * k) @ w).relu().sum()
        y.backward()
        return y.item()

    s = wrap(step, ui=ReadlineUI(io.StringIO(commands), out))
    results = []
    for k in range(5):
        tt.ones(2).sum()  # ops outside the debugged function, in runs of their own
        tt.step()
        results.append(s(float(k)))
    return out.getvalue(), results


def test_a_broken_user_filter_is_reported_and_the_program_goes_on():
    out, results = _session("run -f three_args\nlt\nexit\n", {"three_args": lambda a, b, c: True})
    assert len(results) == 5  # the script was not killed
    assert "error: tensor filter 'three_args' raised TypeError" in out
    assert "fn(datum, tensor)" in out
    assert "run #1 ended" in out  # it stopped at the first run, where the filter failed
    from tracetensor.debugger import Debugger

    from tracetensor.trace import MemoryTrace

    dbg = Debugger(MemoryTrace(start=False))
    for cmd in ("lt", "run"):  # the signature is in the commands' help too
        assert "fn(datum, tensor)" in " ".join(dbg.plain(f"help {cmd}").split())


def test_one_number_for_one_run_in_line_mode():
    out, _ = _session("run\nrun -n\nrun\nlt\nri\ntm -n 3\nexit\n")
    assert "======== run-end: run #3 ========" in out and "run #3 ended" in out
    assert "run #3: " in out.split("tfdbg> lt")[-1]
    assert "trace run" not in out.split("tfdbg> ri")[0]  # the screens use the session's number alone
    numbers = set(re.findall(r"\brun #?(\d+)", out.split("======== run-end: run #3")[1].split("tfdbg> ri")[0]))
    assert numbers == {"3"}, numbers


def test_tm_says_what_it_leaves_out_and_what_it_measures():
    out, _ = _session("run\ntm -n 3\nri\nexit\n")
    tm = out.split("tfdbg> tm -n 3")[1].split("tfdbg> ri")[0]
    assert re.search(r"run #1: (\d+) ops, [\d.]+ ms in ops", tm)
    n = int(re.search(r"run #1: (\d+) ops", tm).group(1))
    assert f"... {n - 3} more ops (tm -n {n} shows all)" in tm
    assert "the ops' own host time, summed" in tm
    assert "wall time" in out.split("tfdbg> ri")[1]


# ---------------------------------------------------------------- engine answers


def test_graph_load_of_a_foreign_file_never_suggests_allow_pickle(tmp_path):
    text, objects = tmp_path / "notes.txt", tmp_path / "objects.npz"
    text.write_text("not a graph")
    np.savez(objects, a=np.array([{"x": 1}], dtype=object))
    for path in (text, objects):
        for load in (tf.load, lambda p: tf.train.Saver.__new__(tf.train.Saver).restore(None, p)):
            with pytest.raises(tt.errors.SerializationError) as err:
                load(str(path))
            assert "allow_pickle" not in str(err.value) and str(path) in str(err.value)
    with pytest.raises(tt.errors.SerializationError, match="pickled object; refusing to load it"):
        tf.load(str(objects))


def test_backward_through_a_traced_function_says_why_it_cannot():
    import tracetensor.nn as nn

    lin = nn.Linear(3, 2)

    @tt.function
    def loss_fn(x: tt.Tensor) -> tt.Tensor:
        return lin(x).relu().sum()

    y = loss_fn(tt.randn(4, 3))
    with pytest.raises(
        tt.errors.TraceTensorError,
        match="result of @tt.function .*loss_fn.*computes values only.*Call the undecorated function",
    ):
        y.backward()
    eager = loss_fn.__wrapped__(tt.randn(4, 3))  # what the message points to: it trains
    eager.backward()
    assert lin.weight.grad is not None
    with pytest.raises(tt.errors.TraceTensorError) as err:  # an unrelated tensor keeps the plain message
        tt.ones(2).sum().backward()
    assert "tt.function" not in str(err.value)


def test_float32_model_keeps_float32_gradients_with_int64_operands():
    import tracetensor.nn.functional as F
    from tracetensor import events as ev

    p = tt.tensor([[0.2, 0.3, 0.5]], requires_grad=True)
    y = tt.tensor([1])
    wide = []
    with ev.listen(
        lambda e: wide.extend(m.name for m in e.outputs if m.dtype == "float64") if isinstance(e, ev.OpEvent) else None
    ):
        (p.log() * F.one_hot(y, 3)).sum().backward()
        (p / F.one_hot(y, 3).clamp(1, 2)).sum().backward()
        (p ** tt.tensor([2])).sum().backward()
        tt.maximum(p, tt.tensor([0.3])).sum().backward()
        tt.minimum(p, tt.tensor([1])).sum().backward()
    assert F.one_hot(y, 3).dtype == tt.int64
    assert wide == [] and p.grad.dtype == tt.float32


def test_a_dtype_problem_is_a_dtype_error():
    with pytest.raises(tt.errors.DTypeError, match="mean needs a floating point or complex input, got int64"):
        tt.tensor([1, 2]).mean()
    with pytest.raises(tt.errors.DTypeError):
        tt.tensor([1, 2]).var()


def test_tt_numerics_prints_what_it_offers():
    from tracetensor.nancheck import Numerics

    with np.errstate(all="ignore"), Numerics() as n:
        w = tt.tensor([0.0, 1.0], requires_grad=True)
        w.log().sum().backward()
    text = repr(n)
    assert text.startswith("<tt_numerics: 4 non-finite tensor(s) (2 gradient(s)), first log")
    assert ".grads(name)" in text and "gradients of 1 parameter(s)" in text


# ---------------------------------------------------------------- README


def test_readme_is_self_contained_and_its_benchmark_line_matches_run_py():
    readme = (ROOT / "README.md").read_text()
    assert "../" not in readme and "shared/" not in readme  # nothing outside the repository
    lines = readme.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("python benchmarks/run.py"))
    comment = lines[i].split("#")[1]
    for ln in lines[i + 1 :]:  # the comment may go on over the next lines
        if not ln.strip().startswith("#"):
            break
        comment += ln.split("#")[1]
    names = sorted(p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py"))
    assert sorted(comment.split(";")[0].split()) == names
    assert readme.count("benchmarks/run.py") == 1  # one usage line
    assert "ctrl+q" in readme and "fn(datum, tensor)" in readme and "pyspy.chrometrace.json" in readme


# ---------------------------------------------------------------- pytest plugin


def test_plugin_report_lists_the_inputs_of_the_bad_op_in_a_plain_test(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    pytester.makepyfile("""
        import tracetensor as tt

        def test_plain():
            w = tt.tensor([1.0, 0.0], requires_grad=True)
            (w * 2).log().sum().backward()
    """)
    out = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio").stdout.str()
    for section in out.split("inputs of this op:")[1:3]:  # the first bad tensor's, the first bad gradient's
        assert re.match(r"\s+\S+: n=2 min=", section.splitlines()[1]), section  # `mul:0: n=2 min=0 ...`
    assert out.count("inputs of this op:") >= 2


def test_report_says_an_update_input_is_seen_after_the_update():
    import math

    import tracetensor.nn as nn
    from tracetensor.nancheck import Numerics

    m = nn.Linear(2, 1)
    opt = tt.optim.SGD(m.parameters(), lr=math.inf)
    with np.errstate(all="ignore"), Numerics() as n:
        m(tt.ones(1, 2)).sum().backward()
        opt.step()
    report = n.report("all")
    assert "weight (after the in-place update): " in report
    assert "weight.grad: n=2 min=1 max=1" in report  # the gradient is as it came in
