"""`tracetensor profile` end to end on the example scripts: real subprocesses, real py-spy."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest

import tracetensor as tt

ROOT = pathlib.Path(__file__).resolve().parents[1]


def profile_cli(*args: str, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracetensor", "profile", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Row name -> cells of the op table printed by the CLI (cell 5 is "# of Calls")."""
    lines = stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("Name "))
    rows = {}
    for ln in lines[head + 2 :]:
        if ln.startswith("---"):
            break
        name, rest = ln[: ln.index("  ")], ln[ln.index("  ") :]
        rows[name.strip()] = rest.split()
    return rows


def chrome(out: pathlib.Path) -> dict:
    return json.loads((out / "trace.json").read_text())


def test_eager_mlp_table_trace_and_pyspy(tmp_path):
    out = tmp_path / "prof"
    rate = 500  # samples a second: the 60 steps take some 50 ms, and train_step must get samples
    r = profile_cli("--out", str(out), "--rate", str(rate), "examples/mlp_eager.py", "--steps", "60")
    assert r.returncode == 0, r.stderr
    assert "step  59  loss" in r.stdout  # the script's own argument reached it
    rows = table_rows(r.stdout)
    for name in (
        "linear",
        "linear (backward)",
        "relu",
        "relu (backward)",
        "ProfilerStep*",
        "forward",
        "backward",
        "optimizer",
    ):
        assert name in rows, name
    assert rows["ProfilerStep*"][5] == "60"  # "# of Calls" column: one per step
    assert "top source lines by op time" in r.stdout and "mlp_eager.py:" in r.stdout
    assert "py-spy could not attach" not in r.stderr, r.stderr

    doc = chrome(out)
    evs = doc["traceEvents"]
    assert doc["otherData"]["exit_code"] == 0 and doc["otherData"]["pyspy_aligned"] is True
    steps = sorted((e for e in evs if e.get("cat") == "step"), key=lambda e: e["ts"])
    ops = [e for e in evs if e.get("cat", "").startswith("op.")]
    assert [s["name"] for s in steps] == [f"ProfilerStep#{i}" for i in range(60)]
    for e in ops:
        for k in ("name", "ph", "ts", "dur", "pid", "tid", "cat", "args"):
            assert k in e
        assert e["ph"] == "X" and e["dur"] >= 0
    # every op lies inside exactly one step
    per_step: dict[str, list[str]] = {}
    for e in ops:
        inside = [s for s in steps if s["ts"] <= e["ts"] and e["ts"] + e["dur"] <= s["ts"] + s["dur"]]
        assert len(inside) == 1, e
        per_step.setdefault(inside[0]["name"], []).append(e["name"])
    assert len(per_step) == 60
    # step 0 also holds the set-up before the loop (parameter init); the others are alike
    assert len({tuple(v) for k, v in per_step.items() if k != "ProfilerStep#0"}) == 1

    # py-spy's samples of the script's own functions, on the same timeline as the steps
    py = [e for e in evs if e.get("cat") == "py-spy"]
    mine = [e for e in py if e["name"] == "train_step" and e["args"]["file"].endswith("mlp_eager.py")]
    assert mine
    first, last = steps[0]["ts"], steps[-1]["ts"] + steps[-1]["dur"]
    slack = 2 * 1e6 / rate  # two sample intervals, in us
    assert all(first - slack <= e["ts"] <= last + slack for e in mine)
    own = r.stdout[r.stdout.index("the script's own functions") :]
    assert "train_step (mlp_eager.py)" in own

    ss = json.loads((out / "profile.speedscope.json").read_text())
    assert {p["name"].split(" (")[0] for p in ss["profiles"]} == {"tracetensor ops", "Python"}
    folded = (out / "stacks.folded").read_text().splitlines()
    assert any("train_step (mlp_eager.py:" in ln and ln.split(" ")[-2].endswith(";linear") for ln in folded)
    with tt.trace.open(str(out / "mlp_eager.ttrace")) as tr:
        assert tr.count() == sum(1 for e in ops)


def test_graph_mode_script_profiles_node_types(tmp_path):
    out = tmp_path / "g"
    r = profile_cli("--out", str(out), "--no-py-spy", "examples/profile_graph.py")
    assert r.returncode == 0, r.stderr
    rows = table_rows(r.stdout)
    assert {"MatMul", "Relu", "ProfilerStep*"} <= set(rows)
    assert rows["MatMul"][5] == "60"  # two layers, 30 steps
    assert rows["session.run"][5] == "31"  # the initializer, then one per step: a range holding the ops
    ops = [e for e in chrome(out)["traceEvents"] if e.get("cat", "").startswith("op.")]
    names = {e["args"]["name"] for e in ops if e["name"] == "MatMul"}
    assert any(n.startswith("fc1/") for n in names) and any(n.startswith("fc2/") for n in names)
    assert all(e["args"]["mode"] == "graph" for e in ops)


def test_script_that_raises_still_gets_its_profile(tmp_path):
    out = tmp_path / "r"
    r = profile_cli("--out", str(out), "--no-py-spy", "examples/profile_raises.py")
    assert r.returncode == 1
    assert "ShapeError" in r.stderr and "profile_raises.py" in r.stderr
    rows = table_rows(r.stdout)
    assert rows["ProfilerStep*"][5] == "5"  # the five steps before the failing one
    assert chrome(out)["otherData"]["exit_code"] == 1
    assert (out / "stacks.folded").read_text().strip()


def test_argv_main_and_exit_code_pass_through(tmp_path):
    script = tmp_path / "exits.py"
    script.write_text(
        "import sys\nimport tracetensor as tt\n"
        "assert __name__ == '__main__'\n"
        "print('argv', sys.argv)\n"
        "(tt.ones(2, 2) * 3).sum()\n"
        "sys.exit(int(sys.argv[2]))\n"
    )
    r = profile_cli("--out", str(tmp_path / "o"), "--no-py-spy", "--no-record", str(script), "--code", "7")
    assert r.returncode == 7, r.stderr
    assert f"argv ['{script}', '--code', '7']" in r.stdout
    assert {"mul", "sum"} <= set(table_rows(r.stdout))
    assert not (tmp_path / "o" / "exits.ttrace").exists()


def test_steps_window_and_default_out_folder(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(
        "import tracetensor as tt\nfrom tracetensor.profiler import step\n"
        "x = tt.ones(3, 3)\n"
        "for i in range(10):\n    y = x * float(i)\n    step()\n"
    )
    r = profile_cli("--no-py-spy", "--steps", "2:5", str(script), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert table_rows(r.stdout)["mul"][5] == "3"
    assert (tmp_path / "loop-profile" / "trace.json").exists()
    r2 = profile_cli("--no-py-spy", "--no-record", str(script), cwd=tmp_path)
    assert r2.returncode == 0 and (tmp_path / "loop-profile-2" / "trace.json").exists()
    bad = profile_cli("--steps", "5:2", str(script), cwd=tmp_path)
    assert bad.returncode == 2 and "--steps expects A:B" in bad.stderr


@pytest.mark.gpu
def test_gpu_device_times_in_table_and_trace(tmp_path):
    script = tmp_path / "gpu.py"
    script.write_text(
        "import tracetensor as tt\nfrom tracetensor.profiler import step\n"
        "x = tt.ones(512, 512, device='cuda')\n"
        "for i in range(5):\n    y = (x @ x).relu().sum()\n    step()\n"
    )
    out = tmp_path / "gpu"
    r = profile_cli("--out", str(out), "--no-py-spy", "--memory", str(script))
    assert r.returncode == 0, r.stderr
    assert "Self GPU" in r.stdout and "GPU time of ops" in r.stdout
    evs = chrome(out)["traceEvents"]
    dev = [e for e in evs if e.get("cat") == "device"]
    flows = [e for e in evs if e.get("cat") == "flow"]
    assert any(e["name"] == "matmul" for e in dev) and len(flows) == 2 * len(dev)
    assert any(e["ph"] == "C" and e["name"] == "cupy memory pool" for e in evs)


def test_interrupted_script_still_gets_its_profile(tmp_path):
    script = tmp_path / "forever.py"
    script.write_text(
        "import time\nimport tracetensor as tt\nfrom tracetensor.profiler import step\n"
        "x = tt.ones(8, 8)\ni = 0\nt0 = time.perf_counter()\n"
        "while True:\n    y = (x @ x).relu()\n    step()\n    i += 1\n"
        "    if i >= 20 and t0 and time.perf_counter() - t0 > 0.3:  # long enough for py-spy samples\n"
        "        print('ready', flush=True)\n        t0 = 0\n"
    )
    out = tmp_path / "o"
    p = subprocess.Popen(
        [sys.executable, "-m", "tracetensor", "profile", "--out", str(out), str(script)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGINT)  # what Ctrl-C sends
        stdout, stderr = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, stderr
    assert "KeyboardInterrupt" in stderr
    assert int(table_rows(stdout)["ProfilerStep*"][5]) >= 20
    steps = [e for e in chrome(out)["traceEvents"] if e.get("cat") == "step"]
    assert len(steps) >= 20 and (out / "python.folded").exists()


def test_pyspy_failure_gives_one_message_and_the_op_profile(tmp_path):
    env = dict(os.environ, TRACETENSOR_PYSPY="/bin/false")  # a py-spy that cannot attach
    out = tmp_path / "o"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracetensor",
            "profile",
            "--out",
            str(out),
            "--no-record",
            "examples/profile_raises.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1
    assert r.stderr.count("py-spy could not attach") == 1 and "ptrace" in r.stderr
    assert "matmul" in table_rows(r.stdout)
    assert not any(e.get("cat") == "py-spy" for e in chrome(out)["traceEvents"])


def test_from_trace_gives_the_same_table_offline(tmp_path):
    out = tmp_path / "o"
    live = profile_cli("--out", str(out), "--no-py-spy", "examples/profile_raises.py")
    offline = profile_cli("--from-trace", str(out / "profile_raises.ttrace"), "--out", str(tmp_path / "off"))
    assert offline.returncode == 0, offline.stderr
    rows_live, rows_off = table_rows(live.stdout), table_rows(offline.stdout)
    assert rows_live.keys() == rows_off.keys()
    assert all(rows_live[k][:6] == rows_off[k][:6] for k in rows_live)  # same times and counts
    assert json.loads((tmp_path / "off" / "trace.json").read_text())["traceEvents"]


def test_pyspy_samples_line_up_with_the_ops(tmp_path):
    # ops, then 300 ms of pure Python in spin(), then ops again: on the merged timeline the
    # spin() samples must fill the gap between the two groups of ops
    script = tmp_path / "gap.py"
    script.write_text(
        "import time\nimport tracetensor as tt\n"
        "def spin():\n    t = time.perf_counter()\n    while time.perf_counter() - t < 0.3:\n        pass\n"
        "x = tt.ones(4, 4)\n"
        "for _ in range(50):\n    x = (x * 0.5).relu()\n"
        "spin()\n"
        "for _ in range(50):\n    x = (x + 1.0).tanh()\n"
    )
    out = tmp_path / "o"
    r = profile_cli("--out", str(out), "--rate", "200", "--no-record", str(script))
    assert r.returncode == 0, r.stderr
    evs = chrome(out)["traceEvents"]
    ops = [e for e in evs if e.get("cat") == "op.forward"]
    before = max(e["ts"] + e["dur"] for e in ops if e["name"] == "relu")
    after = min(e["ts"] for e in ops if e["name"] == "tanh")
    spin = [e for e in evs if e.get("cat") == "py-spy" and e["name"] == "spin"]  # a slice per line
    start, end = min(e["ts"] for e in spin), max(e["ts"] + e["dur"] for e in spin)
    tol = 6 * 1e6 / 200  # six sample intervals (30 ms, of a 300 ms gap): py-spy lags on a busy machine
    assert after - before >= 0.3e6
    assert abs(start - before) <= tol and abs(end - after) <= tol
