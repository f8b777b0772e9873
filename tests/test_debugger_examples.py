"""The debugger examples, each run as a user would (a subprocess, commands on standard
input, line mode chosen because stdin is not a terminal), and `tracetensor debug TRACE`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.tracetensor_allow_nan  # the NaN example is about NaN


def run_example(name: str, commands: list[str], *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-W", "ignore", str(EXAMPLES / name), "--debug", *args],
        input="".join(c + "\n" for c in commands),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=EXAMPLES,
    )


def line_of(name: str, text: str) -> int:
    return next(i for i, ln in enumerate((EXAMPLES / name).read_text().splitlines(), 1) if text in ln)


def first_nonfinite_run(steps: int) -> int:
    """Ground truth without the debugger: the 1-based training run in which any tensor
    first holds NaN/inf, from a plain MemoryTrace over the same model and data."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import debug_tf1_mnist_nan as ex
    finally:
        sys.path.remove(str(EXAMPLES))
    import tracetensor.graph as tf
    from tracetensor.trace import MemoryTrace

    with tf.Graph().as_default():
        xs, ys = ex.make_data(100 * steps)
        m = ex.build_model(stable=False)
        sess = tf.Session()
        sess.run(tf.global_variables_initializer())
        with np.errstate(all="ignore"), MemoryTrace(summaries=True, stacks=False) as tr:
            for i in range(steps):
                sess.run(
                    [m["train"], m["loss"], m["accuracy"]],
                    feed_dict={m["x"]: xs[i * 100 : (i + 1) * 100], m["y_"]: ys[i * 100 : (i + 1) * 100]},
                )
        runs = [r.run for r in tr.runs()]
        bad = next(k for k, r in enumerate(runs, 1) if tr.first_nonfinite(r) is not None)
        culprit = tr.first_nonfinite(runs[bad - 1])
    assert culprit is not None and culprit.op == "Log"
    return bad


def test_nan_example_stops_at_first_inf_and_points_at_log_line() -> None:
    want = first_nonfinite_run(10)
    assert 1 < want <= 6  # "within a few runs"
    p = run_example("debug_tf1_mnist_nan.py", ["run -f has_inf_or_nan", "lt", "ni -t cross_entropy/Log", "exit"])
    assert p.returncode == 0, p.stderr
    out = p.stdout
    stops = re.findall(r"======== (run-\w+: run #\d+) ========", out)
    assert stops == ["run-start: run #1", f"run-end: run #{want}"]
    # the steps before the stop ran without stopping; the loss is still finite there
    assert out.count("loss nan") == 10 - want + 1 and f"step {want - 2}: loss" in out
    lt = out.split("tfdbg> lt\n")[1].split("tfdbg> ")[0]
    first_row = next(ln for ln in lt.splitlines() if ln.startswith("!"))
    assert "cross_entropy/Log:0" in first_row and " Log " in first_row and "-inf=" in first_row
    ni = out.split("tfdbg> ni -t cross_entropy/Log\n")[1]
    log_line = line_of("debug_tf1_mnist_nan.py", "diff = -(y_ * tf.log(y))")
    assert (
        f"debug_tf1_mnist_nan.py:{log_line} in build_model"
        in ni.splitlines()[ni.splitlines().index(next(ln for ln in ni.splitlines() if "traceback" in ln)) + 1]
    )
    assert "tf.log(y)" in ni


def test_fixed_example_runs_clean() -> None:
    p = run_example("debug_tf1_mnist_fixed.py", ["run -f has_inf_or_nan", "exit"])
    assert p.returncode == 0, p.stderr
    assert "run-end" not in p.stdout  # the filter never passed
    losses = [float(x) for x in re.findall(r"loss (\S+)", p.stdout)]
    assert len(losses) == 10 and all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_shape_error_example_names_node_and_line() -> None:
    p = run_example("debug_shape_error.py", ["run -f has_inf_or_nan", "ni -t linear/MatMul", "exit"])
    assert p.returncode == 1, p.stderr
    out = p.stdout
    assert "======== run-end: run #3 ========" in out
    screen = out.split("run-end: run #3")[1]
    line = line_of("debug_shape_error.py", "tf.matmul(x, w)")
    assert "raised ShapeError" in screen and "node: linear/MatMul" in screen
    assert f"debug_shape_error.py:{line}" in screen and "y = tf.matmul(x, w) + b" in screen
    assert "cannot multiply (8, 4) by (3, 1)" in screen
    assert "step 2 failed: MatMul 'linear/MatMul'" in out  # the error still reaches the program


def test_eager_example_gradient_flow() -> None:
    p = run_example("debug_eager_wrap.py", ["run -t 3", "gf", "exit"])
    assert p.returncode == 0, p.stderr
    assert "======== run-end: run #3 ========" in p.stdout
    gf = p.stdout.split("tfdbg> gf\n")[1]
    for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
        cols = next(ln for ln in gf.splitlines() if ln.startswith(name)).split()
        grad, weight, ratio = float(cols[1]), float(cols[2]), float(cols[3])
        assert grad > 0 and weight > 0 and ratio == pytest.approx(grad / weight, rel=0.02)
        assert len(cols[5]) == 3  # a sparkline over the three runs
    assert len(re.findall(r"step \d: loss", p.stdout)) == 8


def test_debug_cli_on_a_recorded_trace(tmp_path: Path) -> None:
    trace = tmp_path / "nan.ttrace"
    rec = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            "import sys; from tracetensor.trace import record_script; "
            f"sys.exit(record_script({str(trace)!r}, "
            f"{str(EXAMPLES / 'debug_tf1_mnist_nan.py')!r}, "
            "['--steps', '6'], values='full'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=EXAMPLES,
    )
    assert rec.returncode == 0, rec.stderr
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracetensor",
            "debug",
            str(trace),
            "-c",
            "lt -f has_inf_or_nan",
            "-c",
            "ni -t cross_entropy/Log",
            "-c",
            "pt cross_entropy/Log:0[0]",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    out = p.stdout
    lt = out.split("tfdbg> lt -f has_inf_or_nan\n")[1]
    first_row = next(ln for ln in lt.splitlines() if ln.startswith("!"))
    assert "cross_entropy/Log:0" in first_row
    assert f"debug_tf1_mnist_nan.py:{line_of('debug_tf1_mnist_nan.py', 'diff = -(y_ * tf.log(y))')}" in out
    assert "-inf" in out.split("tfdbg> pt cross_entropy/Log:0[0]\n")[1]
    # without -c and without a terminal: line mode on stdin; `run -f` moves to later matching runs
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    p2 = subprocess.run(
        [sys.executable, "-m", "tracetensor", "debug", str(trace)],
        env=env,
        input="ri\nrun -f has_inf_or_nan\nri\nexit\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p2.returncode == 0, p2.stderr
    runs = [int(x) for x in re.findall(r"^Run (\d+)", p2.stdout, re.M)]
    assert len(runs) == 2 and runs[1] == runs[0] + 1
    assert "first NaN/inf: cross_entropy/Log:0" in p2.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "tracetensor", "debug", str(tmp_path / "missing.ttrace"), "-c", "lt"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "missing.ttrace" in bad.stderr
