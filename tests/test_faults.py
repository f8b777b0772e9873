"""Faults while recording and profiling: a full disk, a device or directory as the trace
path, a forked child, Ctrl-C during the report, an output folder in use, a bad py-spy
path, and NaN from a thread an earlier test started (the pytest plugin)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import tracetensor as tt

pytestmark = pytest.mark.tracetensor_allow_nan


# --------------------------------------------------------------------------- faults while recording


@pytest.mark.parametrize("target", ["/dev/null", "dir", "fifo"])
def test_recording_to_a_device_directory_or_pipe_is_a_trace_file_error(target: str, tmp_path) -> None:
    path = {"/dev/null": "/dev/null", "dir": str(tmp_path), "fifo": str(tmp_path / "p.ttrace")}[target]
    if target == "fifo":
        os.mkfifo(path)
    with pytest.raises(tt.trace.TraceFileError, match="not a regular file") as ei:
        with tt.record(path):
            tt.ones(2) + 1
    assert path in str(ei.value)


RECORD_UNTIL_FULL = """
import resource, signal, sys, time
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
import tracetensor as tt
from tracetensor import events as ev
x = tt.randn(64, 64)
with tt.record(sys.argv[1], values="full"):
    for i in range(60):
        r = ev.begin_run("step", name=f"step {i}")
        (x @ x).tanh().sum()
        ev.end_run(r)
        if i % 5 == 0:
            time.sleep(0.11)  # let the writer commit a few transactions before the disk fills
print("script went on", flush=True)
"""


@pytest.mark.parametrize("writer", ["process", "thread", "producer"])
def test_disk_full_while_recording_keeps_every_committed_run(tmp_path, writer: str) -> None:
    """The disk fills while the writer process writes (its file size limit is the program's),
    or, with TRACETENSOR_WRITER=thread, while the writer thread writes (a slow loop) or while
    the training loop writes its own full queue (no pauses: small steps fill it every 8,192
    events, sooner than the writer thread's 0.1 s)."""
    script = tmp_path / "full.py"
    text = RECORD_UNTIL_FULL
    if writer == "producer":  # events come faster than the writer thread's period: the loop writes its queue
        text = text.replace('values="full"', 'values="summary"').replace("i % 5 == 0", "False")
        text = text.replace("range(60)", "range(40_000)").replace("randn(64, 64)", "randn(4, 4)")
    script.write_text(text)
    path = str(tmp_path / "full.ttrace")
    env = {**os.environ, "TRACETENSOR_WRITER": "process" if writer == "process" else "thread"}
    r = subprocess.run([sys.executable, str(script), path], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and "script went on" in r.stdout
    assert "recording to" in r.stderr and "stopped" in r.stderr
    with tt.trace.open(path) as t:
        assert not t.complete
        runs = t.runs()
        assert len(runs) >= 2 and t.count() >= 3 * (len(runs) - 1)
        if writer != "producer":
            assert t.value("tanh:0", runs[0].run) is not None
    p = subprocess.run(
        [sys.executable, "-m", "tracetensor", "trace", "info", path], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0 and "INCOMPLETE" in p.stdout and "truncated" not in p.stdout + p.stderr


def test_checkpoint_cut_short_by_a_full_disk_still_opens(tmp_path) -> None:
    """A full disk during the last checkpoint leaves page 1 counting pages that are still only
    in the WAL (seen on a 1 MB tmpfs): the file must open from the WAL, not be called truncated."""
    code = (
        "import os, sys, time, tracetensor as tt\n"
        "r = tt.record(sys.argv[1]); r.__enter__()\n"
        "for i in range(5):\n"
        "    run = tt.events.begin_run('step'); (tt.ones(4, 4) * 2).sum(); tt.events.end_run(run)\n"
        "time.sleep(0.3); os._exit(0)\n"
    )
    path = str(tmp_path / "cut.ttrace")
    # (written in the program: the writer process would fold the WAL in when the program ends)
    env = {**os.environ, "TRACETENSOR_WRITER": "thread"}
    subprocess.run([sys.executable, "-c", code, path], timeout=60, check=True, env=env)
    assert os.path.getsize(path + "-wal") > 0
    with open(path, "r+b") as f:
        head = bytearray(f.read(100))
        head[28:32] = (1000).to_bytes(4, "big")  # what the cut-short checkpoint wrote
        head[92:96] = head[24:28]
        f.seek(0)
        f.write(head)
    with tt.trace.open(path) as t:
        assert not t.complete and len(t.runs()) == 5


# --------------------------------------------------------------------------- the profiler's own faults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _profile(args: list[str], tmp_path, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tracetensor", "profile", "--no-py-spy", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def test_a_forked_child_that_returns_writes_no_second_report(tmp_path) -> None:
    script = tmp_path / "forks.py"
    script.write_text(
        "import os, tracetensor as tt\n"
        "x = tt.ones(4, 4)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    (x * 3).sum()  # the child falls off the end of the script: a normal exit\n"
        "else:\n"
        "    os.waitpid(pid, 0)\n"
        "    (x @ x).relu().sum()\n"
    )
    p = _profile(["--out", "o", str(script)], tmp_path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert out.count("== tracetensor profile:") == 1, out
    assert "matmul" in (tmp_path / "o" / "table.txt").read_text()


def test_ctrl_c_during_the_report_still_writes_it(tmp_path) -> None:
    import signal
    import time

    script = tmp_path / "loop.py"
    script.write_text(
        "import tracetensor as tt\nfrom tracetensor.profiler import step\nx = tt.ones(8, 8)\n"
        "for i in range(10**9):\n    (x @ x).relu()\n    step()\n"
        "    if i == 300:\n        print('ready', flush=True)\n"
    )
    p = _profile(["--out", "o", str(script)], tmp_path)
    try:
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGINT)  # stops the script ...
        t0 = time.monotonic()
        while p.poll() is None and time.monotonic() - t0 < 60:
            time.sleep(0.05)
            p.send_signal(signal.SIGINT)  # ... and an impatient user keeps pressing Ctrl-C
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert "ProfilerStep*" in out and "written:" in out, (out, err)
    assert (tmp_path / "o" / "trace.json").stat().st_size > 0 and (tmp_path / "o" / "table.txt").exists()


def test_output_folder_in_use_and_bad_pyspy_path_give_one_message(tmp_path) -> None:
    script = tmp_path / "wait.py"
    script.write_text(
        "import sys, time, tracetensor as tt\n(tt.ones(2) + 1).sum()\nprint('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    first = _profile(["--out", "o", str(script)], tmp_path, stdin=subprocess.PIPE)
    try:
        assert first.stdout.readline().strip() == "ready"
        second = _profile(["--out", "o", str(script)], tmp_path)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 2 and "Traceback" not in err
        assert "being recorded by another process" in err and "--out" in err
    finally:
        first.communicate("\n", timeout=60)
    assert first.returncode == 0
    for bad in ("/nonexistent/py-spy", str(tmp_path)):
        env = dict(os.environ, TRACETENSOR_PYSPY=bad, PYTHONPATH=ROOT)
        r = subprocess.run(
            [sys.executable, "-m", "tracetensor", "profile", "--out", "p", "--no-record", str(tmp_path / "wait.py")],
            cwd=tmp_path,
            input="\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.count("cannot be run") == 1 and bad in r.stderr and "op profile only" in r.stderr
        assert "ready" in r.stdout and "== tracetensor profile:" in r.stdout


# --------------------------------------------------------------------------- pytest plugin


def test_nan_from_a_thread_an_earlier_test_started_does_not_fail_the_next(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import threading
        import tracetensor as tt

        go, done = threading.Event(), threading.Event()

        def later():
            go.wait(30)
            x = tt.tensor([0.0], requires_grad=True)
            x.sqrt().sum().backward()  # a NaN gradient, long after test_starts_worker returned
            done.set()

        def test_starts_worker():
            threading.Thread(target=later, daemon=True).start()

        def test_innocent():
            go.set()
            assert done.wait(30)
            (tt.ones(2) * 2).sum()
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(["*background thread started in test *::test_starts_worker*"])
