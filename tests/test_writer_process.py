"""The recording's writer process (tracetensor/trace/server.py): one per program, started by
the first recording that hands a batch over before its end, shared by the later ones, gone
with the program; a recording survives it dying, Ctrl-C to the whole terminal, and a machine
where it cannot start. (A recording past one queue, 32,768 records, hands a batch over.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

import tracetensor as tt
from tracetensor.trace import server
from tracetensor.trace.recorder import BATCH_RECORDS
from tracetensor.trace.store import TraceWriter

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")


PAST = BATCH_RECORDS // 5 + 600  # steps past one queue (three ops and two run markers a step)


def _steps(n: int) -> None:
    x = tt.randn(8, 8)
    for _ in range(n):
        r = tt.events.begin_run("step")
        (x @ x).tanh().sum()
        tt.events.end_run(r)


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


RECORDINGS = textwrap.dedent("""
    import sys
    import tracetensor as tt
    from tracetensor.trace import server
    x = tt.randn(8, 8)
    for arg in sys.argv[2:]:  # PATH:STEPS, one recording each, with values=argv[1]
        path, steps = arg.rsplit(":", 1)
        with tt.record(path, values=sys.argv[1]):
            for _ in range(int(steps)):
                r = tt.events.begin_run("step")
                (x @ x).tanh().sum()
                tt.events.end_run(r)
        c = server._client  # (the writer process, once one has started)
        print(c.proc.pid if c is not None else "program", flush=True)
""")


def test_recordings_share_one_writer_process_that_ends_with_the_program(tmp_path):
    """One writer process serves the program's recordings, one after another (the first
    starts it, the next one, however short, uses it); when the program ends, so does it, and
    nothing is left open (no ResourceWarning under -X dev)."""
    paths = [str(tmp_path / "a.ttrace"), str(tmp_path / "b.ttrace")]
    env = {**os.environ, "TRACETENSOR_WRITER": "process"}
    args = ["summary", f"{paths[0]}:{PAST}", f"{paths[1]}:50"]
    p = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always::ResourceWarning", "-c", RECORDINGS, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    assert "ResourceWarning" not in p.stderr  # (the pipes are closed, the process waited for)
    pids = {int(w) for w in p.stdout.split()}
    assert len(pids) == 1 and os.getpid() not in pids
    assert _gone(pids.pop())
    for path, steps in zip(paths, (PAST, 50)):
        with tt.trace.open(path) as t:
            assert t.complete and len(t.runs()) == steps and t.count() == 3 * steps
            assert t.events(t.runs()[-1].run)[1].summaries[0].size == 64


def test_a_recording_over_before_its_first_batch_is_written_by_the_program(tmp_path):
    """A short script's recording hands its only batch over at its end: the program writes it
    (starting a process for it would cost more than it saves). A longer one starts the process."""
    paths = [str(tmp_path / "short.ttrace"), str(tmp_path / "long.ttrace")]
    env = {**os.environ, "TRACETENSOR_WRITER": "process"}
    args = ["none", f"{paths[0]}:20", f"{paths[1]}:{PAST}"]
    p = subprocess.run([sys.executable, "-c", RECORDINGS, *args], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    said = p.stdout.split()
    assert said[0] == "program" and said[1].isdigit()
    for path, steps in zip(paths, (20, PAST)):
        with tt.trace.open(path) as t:
            assert t.complete and t.count() == 3 * steps and len(t.runs()) == steps


def test_a_slow_recording_reaches_its_file_while_it_goes_on(tmp_path, monkeypatch):
    """The writer process holds what it gets for up to half a second (server.HOLD_S), then
    writes it, though batches keep coming (one each 0.1 s here, a few records each): a file
    being recorded is readable a little later, never only at its end."""
    monkeypatch.setenv("TRACETENSOR_WRITER", "process")
    server.client().wait_ready()
    rec = tt.record(tmp_path / "slow.ttrace", values="none").start()
    try:
        began = time.monotonic()
        seen = None
        while seen is None and time.monotonic() - began < 5 + server.HOLD_S:
            _steps(1)
            time.sleep(0.005)  # (a slow step: the queue never fills, batches go over by time)
            with rec.open() as t:
                if t.count():
                    seen = time.monotonic() - began
    finally:
        rec.stop()
    assert seen is not None, "nothing reached the file while the recording went on"
    # the first batch leaves after 0.1 s, is held HOLD_S: a loaded machine gets a second of slack
    assert seen < 0.1 + server.HOLD_S + 1.0, f"the first events reached the file after {seen:.2f} s"


def test_a_full_queue_is_written_at_once_not_held(tmp_path, monkeypatch):
    """A busy stream's batches (a full queue, 1.5 MB) are written as they come: held, the writer
    would idle while they piled up, then write while the program waited on a full pipe."""
    monkeypatch.setenv("TRACETENSOR_WRITER", "process")
    server.client().wait_ready()
    rec = tt.record(tmp_path / "busy.ttrace", values="none").start()
    try:
        _steps(PAST)  # (past a full queue: handed over by this thread, now)
        handed = time.monotonic()
        seen = None
        while seen is None and time.monotonic() - handed < 5:
            with rec.open() as t:
                if t.count():
                    seen = time.monotonic() - handed
            time.sleep(0.01)
    finally:
        rec.stop()
    assert seen is not None and seen < server.HOLD_S - 0.05, f"the full queue reached the file after {seen} s"


def test_a_writer_process_killed_mid_recording_stops_the_recording_not_the_program(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACETENSOR_WRITER", "process")
    path = tmp_path / "cut.ttrace"
    rec = tt.record(path, values="none").start()
    try:
        assert isinstance(rec._writer, server.RemoteWriter)
        _steps(PAST)  # (past a full queue: committed by the writer process)
        proc = server._client.proc
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the writer process has that batch in the file
            with rec.open() as t:
                if t.count() >= 3 * (BATCH_RECORDS // 5) - 3:
                    break
            time.sleep(0.02)
        proc.kill()
        proc.wait(10)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _steps(PAST)  # the next batch finds the process gone: the recording stops, the loop goes on
            rec.stop()
    finally:
        rec.stop()
    assert rec.error is not None
    assert any("recording to" in str(w.message) and "stopped" in str(w.message) for w in caught)
    with tt.trace.open(path) as t:
        assert not t.complete and t.count() >= 3 * (BATCH_RECORDS // 5) - 3
    with tt.record(tmp_path / "next.ttrace", values="none"):  # (written here; a longer one starts a new process)
        _steps(10)
    with tt.trace.open(tmp_path / "next.ttrace") as t:
        assert t.complete and t.count() == 30


LOOP_UNTIL_CTRL_C = textwrap.dedent("""
    import sys
    import tracetensor as tt
    from tracetensor.trace import server
    x = tt.randn(32, 32)
    with tt.record(sys.argv[1], values="summary"):
        i = told = 0
        while True:
            r = tt.events.begin_run("step")
            (x @ x).tanh().sum()
            tt.events.end_run(r)
            i += 1
            if i >= 300 and not told and server._client is not None:  # (started by the first batch)
                print(server._client.proc.pid, flush=True)
                told = 1
""")


def test_ctrl_c_to_the_whole_terminal_leaves_a_complete_trace(tmp_path):
    """A terminal's Ctrl-C reaches every process of its group: the program's KeyboardInterrupt
    ends the recording, and the writer process (a session of its own) finishes the file."""
    out = tmp_path / "ctrlc.ttrace"
    env = {**os.environ, "TRACETENSOR_WRITER": "process"}
    p = subprocess.Popen(
        [sys.executable, "-c", LOOP_UNTIL_CTRL_C, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # (a group of its own, as a terminal's foreground job)
    )
    try:
        writer = int(p.stdout.readline())
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == -signal.SIGINT and "KeyboardInterrupt" in err  # (as Python exits on one)
    assert _gone(writer)
    with tt.trace.open(out) as t:
        runs = t.runs()
        assert t.complete and len(runs) >= 300
        assert all(r.n_events == 3 for r in runs[:-1])


def test_sigterm_to_the_program_and_its_writer_process_leaves_a_complete_trace(tmp_path):
    """A service manager stops a program by sending SIGTERM to every process it started (a
    systemd unit's cgroup): the program's recording ends as on SIGTERM alone, and the writer
    process, which ignores it, finishes the file and then ends."""
    out = tmp_path / "term.ttrace"
    p = subprocess.Popen(
        [sys.executable, "-c", LOOP_UNTIL_CTRL_C, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TRACETENSOR_WRITER": "process"},
    )
    try:
        writer = int(p.stdout.readline())
        os.kill(writer, signal.SIGTERM)  # (first: it must outlive the program's own flush)
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 128 + signal.SIGTERM  # (tt.record turns SIGTERM into SystemExit)
    assert _gone(writer)
    with tt.trace.open(out) as t:
        runs = t.runs()
        assert t.complete and len(runs) >= 300
        assert all(r.n_events == 3 for r in runs[:-1])


def test_without_a_writer_process_the_program_writes_its_trace_itself(tmp_path, monkeypatch):
    """No interpreter to start (an embedded Python, say): the recording writes in this process."""
    monkeypatch.setenv("TRACETENSOR_WRITER", "process")
    monkeypatch.setattr(server, "_client", None)
    monkeypatch.setattr(server, "_cannot", None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with tt.record(tmp_path / "here.ttrace", values="summary") as rec:
        _steps(PAST)  # (past a queue: the process is asked for)
    assert isinstance(rec._writer._local, TraceWriter) and server._cannot is not None
    with tt.trace.open(tmp_path / "here.ttrace") as t:
        assert t.complete and t.count() == 3 * PAST
    with tt.record(tmp_path / "again.ttrace", values="none") as rec:  # (not tried again)
        _steps(5)
    assert isinstance(rec._writer, TraceWriter)


def test_a_file_the_writer_process_cannot_write_is_refused_at_start(tmp_path, monkeypatch):
    """The writer process opens the file; what it says is wrong comes back as the TraceFileError
    the program's own writer would raise, at `start()`."""
    monkeypatch.setenv("TRACETENSOR_WRITER", "process")
    (tmp_path / "notes.txt").write_text("my notes\n")
    with pytest.raises(tt.trace.TraceFileError, match="refusing to overwrite") as ei:
        tt.record(tmp_path / "notes.txt").start()
    assert ei.value.path == str(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"


def test_an_executable_that_is_not_python_makes_the_program_write_its_trace_itself(tmp_path, monkeypatch):
    """sys.executable names some other program (an application embedding Python): it does
    not say it is the writer process, so it is stopped and the program writes its trace,
    what it queued meanwhile included."""
    fake = tmp_path / "not-python"
    fake.write_text("#!/bin/sh\necho 'some server, listening'\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TRACETENSOR_WRITER", "process")
    monkeypatch.setattr(server, "_client", None)
    monkeypatch.setattr(server, "_cannot", None)
    monkeypatch.setattr(sys, "executable", str(fake))
    t0 = time.monotonic()
    with tt.record(tmp_path / "here.ttrace", values="none") as rec:
        _steps(PAST)  # (past a queue: the process is started, and kept waiting for what it is)
    assert isinstance(rec._writer._local, TraceWriter) and time.monotonic() - t0 < 10
    with tt.trace.open(tmp_path / "here.ttrace") as t:
        assert t.complete and t.count() == 3 * PAST
    t0 = time.monotonic()
    with tt.record(tmp_path / "again.ttrace", values="none") as rec:  # (not tried again)
        _steps(5)
    assert isinstance(rec._writer, TraceWriter) and time.monotonic() - t0 < 1


ONE_RECORDING = textwrap.dedent("""
    import sys
    import tracetensor as tt
    from tracetensor.trace import server
    with tt.record(sys.argv[1], values="none") as rec:
        for _ in range(20000):  # (past a queue of 32,768 records: two ops a step)
            (tt.ones(2) + 1).sum()
    print("process" if server._client is not None else "program")
""")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity (Linux)")
def test_a_program_limited_to_one_core_writes_its_trace_itself(tmp_path):
    """With one core the writer process would only take turns with the program (for more
    CPU in all): by default the program writes its trace itself; with two, the process."""
    env = {k: v for k, v in os.environ.items() if k != "TRACETENSOR_WRITER"}
    cores = sorted(os.sched_getaffinity(0))
    got = {}
    for n in (1, 2) if len(cores) >= 2 else (1,):
        code = f"import os; os.sched_setaffinity(0, {cores[:n]!r}); exec({ONE_RECORDING!r})"
        out = tmp_path / f"cores{n}.ttrace"
        p = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120, env=env)
        assert p.returncode == 0, p.stderr
        got[n] = p.stdout.split()[-1]
        with tt.trace.open(out) as t:
            assert t.complete and t.count() == 40000
    assert got[1] == "program" and got.get(2, "process") == "process"


MANY_FILES = textwrap.dedent("""
    import os, resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # (a data loader's files, say)
    import tracetensor as tt
    from tracetensor.trace import server
    with tt.record(sys.argv[1], values="none") as rec:
        for _ in range(20000):  # (past a queue of 32,768 records: two ops a step)
            (tt.ones(2) + 1).sum()
    print("process" if server._client is not None and server._client.boot_error is None else "program")
""")


def test_a_program_holding_over_1024_files_still_records_through_the_writer_process(tmp_path):
    """The pipes to the writer process then have descriptors past 1,024, which `select`
    cannot watch: the program waits on them with `poll`."""
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1200:
        pytest.skip("the hard limit on open files is below 1,200 here")
    out = tmp_path / "many.ttrace"
    env = {**os.environ, "TRACETENSOR_WRITER": "process"}
    p = subprocess.run(
        [sys.executable, "-c", MANY_FILES, str(out)], capture_output=True, text=True, timeout=120, env=env
    )
    assert p.returncode == 0 and p.stdout.split()[-1] == "process", p.stderr
    with tt.trace.open(out) as t:
        assert t.complete and t.count() == 40000
