"""The recorder and the trace file: what `tt.record` writes, `tt.trace.open` reads back the
same (event for event), with every `Trace` query answered from the file."""

from __future__ import annotations

import os
import sqlite3
import tracemalloc

import numpy as np
import pytest

import tracetensor as tt
from tracetensor import events as ev
from tracetensor.errors import SerializationError
from tracetensor.trace import MemoryTrace, SqliteTrace, TraceFileError


def train_steps(n: int, *, nan_at: int | None = None, size: int = 8) -> None:
    """n runs of a tiny model: forward, backward, a manual SGD update."""
    g = np.random.default_rng(0)
    w = tt.tensor(g.standard_normal((size, 3)).astype(np.float32), requires_grad=True)
    for i in range(n):
        r = ev.begin_run("step", name=f"step {i}")
        x = tt.tensor(g.standard_normal((4, size)).astype(np.float32))
        h = (x @ w).relu()
        loss = ((h - 1e6).log() if nan_at == i else h).sum()  # log of negatives: NaN
        loss.backward()
        with tt.no_grad():
            w -= 0.01 * w.grad
        w.grad = None
        ev.end_run(r)


def per_step() -> int:
    """Op events in one `train_steps` run, counted live."""
    with MemoryTrace() as m:
        train_steps(1)
    return m.count()


def same(evs: list) -> list[str]:
    """Events compared by their repr, where NaN equals NaN (an all-NaN summary has NaN min/max)."""
    return [repr(e) for e in evs]


def test_file_gives_back_the_events_the_live_stream_gave(tmp_path):
    path = tmp_path / "t.ttrace"
    live = MemoryTrace(values=True, summaries=True)
    with tt.record(path, values="full"):
        ev.emit(
            ev.GraphDef(
                7,
                1,
                (
                    ev.NodeDef(
                        "x",
                        "Placeholder",
                        (),
                        (("dtype", "float32"),),
                        (ev.Frame(__file__, 10, "build"),),
                        ((None, 3),),
                        ("float32",),
                    ),
                    ev.NodeDef("y", "Relu", ("x:0",), (), (), ((None, 3),), ("float32",)),
                ),
            )
        )
        with ev.record_range("epoch 0"):
            train_steps(3)
        ev.emit(ev.DeviceTime(live.events()[0].seq, 12345))
    live.close()
    with tt.trace.open(path) as t:
        assert isinstance(t, SqliteTrace)
        assert t.runs() == live.runs()
        got, want = t.events(), live.events()
        assert len(want) == 3 * per_step()
        assert got == want  # these steps make no NaN, so plain equality holds (see `same`)
        assert t.graphs() == live.graphs() and t.graph(7).nodes[1].inputs == ("x:0",)
        assert t.ranges() == live.ranges() and t.ranges()[0].name == "epoch 0"
        assert t.device_times() == live.device_times() == {want[0].seq: 12345}
        for e in want:
            for m in e.outputs:
                np.testing.assert_array_equal(
                    t.value(m.name, e.run, default=None), live.value(m.name, e.run, default=None)
                )
        # a replay of the file into a MemoryTrace answers like the live one
        replay = MemoryTrace(start=False)
        replay.extend(t.stream())
        assert replay.runs() == live.runs() and replay.events() == want
        assert replay.graphs() == live.graphs() and replay.device_times() == live.device_times()


@pytest.mark.parametrize("values", ["none", "summary", "full"])
def test_values_level_decides_what_is_kept(tmp_path, values):
    path = tmp_path / f"{values}.ttrace"
    with tt.record(path, values=values):
        train_steps(2)
    t = tt.trace.open(path)
    e = t.events(phase="forward")[0]
    assert e.stack is not None and e.stack[0].filename == __file__
    assert (e.summaries is not None) == (values != "none")
    if values == "summary":
        assert e.summaries[0].size == int(np.prod(e.outputs[0].shape))
    kept = t.value(e.outputs[0].name, e.run, default=None)
    assert (kept is not None) == (values == "full")
    if values != "full":  # asked without a default, a missing value is an error that says why
        with pytest.raises(tt.trace.ValueNotRecorded, match=f"kept no tensor values \\(values='{values}'\\)"):
            t.value(e.outputs[0].name, e.run)
    if kept is not None:
        assert kept.shape == e.outputs[0].shape
    assert t.meta()["values"] == values
    t.close()


def test_queries_use_runs_phases_ops_names_and_pages(tmp_path):
    path = tmp_path / "q.ttrace"
    with tt.record(path, values="summary"):
        train_steps(4)
    t = tt.trace.open(path)
    runs = t.runs()
    assert [r.name for r in runs] == [f"step {i}" for i in range(4)]
    assert all(r.error is None and r.end_ns >= r.start_ns for r in runs)
    r2 = runs[2].run
    evs = t.events(r2)
    assert evs and all(e.run == r2 for e in evs) and t.count(r2) == len(evs) == runs[2].n_events
    assert t.count() == sum(r.n_events for r in runs) == len(t.events())
    assert [e.seq for e in evs] == sorted(e.seq for e in evs)
    # pages are slices of the full list
    assert t.events(r2, start=2, limit=3) == evs[2:5]
    assert t.events(start=len(t.events()) - 1) == t.events()[-1:]
    assert list(t.iter_events(r2)) == evs
    mm = t.events(op="^matmul$", phase="forward")
    assert len(mm) == 4 and {e.op for e in mm} == {"matmul"}
    assert {e.phase for e in t.events(phase="backward")} == {"backward"}
    assert all("relu" in e.name for e in t.events(r2, name="relu"))
    assert t.events(r2, phase="forward", op="relu")[0].name == "relu"
    # producer, inputs, consumers
    e, i = t.find("relu", r2)
    assert e.op == "relu" and e.run == r2 and i == 0
    assert t.inputs("relu", r2) == e.inputs
    assert "sum" in t.consumers("relu", r2)
    assert t.find("no_such_tensor") is None


def test_first_nonfinite_finds_the_culprit(tmp_path):
    path = tmp_path / "nan.ttrace"
    with tt.record(path, values="summary"):
        train_steps(5, nan_at=3)
    t = tt.trace.open(path)
    runs = t.runs()
    bad = t.first_nonfinite()
    assert bad is not None and bad.op == "log" and bad.run == runs[3].run
    assert bad.summaries[0].nan > 0 and bad.input_summaries is not None
    assert t.first_nonfinite(runs[0].run) is None
    assert t.first_nonfinite(runs[3].run).seq == bad.seq
    # the generic (paged) search agrees with the indexed one
    assert t.first(lambda e: e.nonfinite > 0).seq == bad.seq


def test_ops_and_steps_filters(tmp_path):
    with tt.record(tmp_path / "ops.ttrace", ops="matmul|relu"):
        train_steps(2)
    t = tt.trace.open(tmp_path / "ops.ttrace")
    assert {e.op for e in t.events()} <= {"matmul", "relu"} and len(t.events(op="relu")) == 4

    with tt.record(tmp_path / "steps.ttrace", steps=range(1, 3)):
        train_steps(5)
    t = tt.trace.open(tmp_path / "steps.ttrace")
    assert [r.name for r in t.runs()] == ["step 1", "step 2"]
    assert {e.run for e in t.events()} == {r.run for r in t.runs()}

    with tt.record(tmp_path / "odd.ttrace", steps=lambda i: i % 2 == 1):
        train_steps(5)
    assert [r.name for r in tt.trace.open(tmp_path / "odd.ttrace").runs()] == ["step 1", "step 3"]


def test_bad_arguments_say_what_was_expected(tmp_path):
    with pytest.raises(ValueError, match="values must be one of"):
        tt.record(tmp_path / "x", values="everything")
    with pytest.raises(TypeError, match="steps must be"):
        tt.record(tmp_path / "x", steps=3)


def test_full_values_ring_drops_oldest_first_and_logs_it(tmp_path):
    path = tmp_path / "ring.ttrace"
    budget = 64 << 10
    with tt.record(path, values="full", max_bytes=budget):
        train_steps(60, size=256)
    t = tt.trace.open(path)
    d = t.dropped()
    assert d["values"] > 0 and d["bytes"] > 0
    first, last = t.runs()[0].run, t.runs()[-1].run
    e_first = t.events(first, op="matmul")[0]
    e_last = t.events(last, op="matmul")[0]
    assert t.value(e_first.outputs[0].name, first, default=None) is None  # oldest: gone
    assert t.value(e_last.outputs[0].name, last) is not None  # newest: kept
    assert t.info()["tensor_bytes"] <= budget
    # what was dropped is on record, by tensor, oldest first
    rows = sqlite3.connect(path).execute("SELECT name, run FROM dropped ORDER BY rowid LIMIT 3").fetchall()
    assert rows == [(m.name, first) for e in t.events(first)[:3] for m in e.outputs]


def test_memory_stays_bounded_recording_full_values(tmp_path):
    path = tmp_path / "mem.ttrace"
    x = tt.randn(512, 512)  # 1 MiB per value; 120 of them is 120 MiB if kept in memory
    tracemalloc.start()
    try:
        with tt.record(path, values="full", max_bytes=4 << 20):
            for _ in range(40):
                r = ev.begin_run("step")
                (x * 2.0).relu().tanh()
                ev.end_run(r)
                _, peak = tracemalloc.get_traced_memory()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, f"peak {peak / 2**20:.0f} MiB while recording 120 MiB of values"
    t = tt.trace.open(path)
    assert t.dropped()["values"] > 0 and os.path.getsize(path) < 16 << 20


def test_print_source_survives_the_file_changing(tmp_path):
    src = tmp_path / "user_model.py"
    src.write_text("import tracetensor as tt\n\ndef f(x):\n    return (x * 3).sum()\n")
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_model", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with tt.record(tmp_path / "src.ttrace"):
        mod.f(tt.ones(3))
    src.write_text("# rewritten\n")
    t = tt.trace.open(tmp_path / "src.ttrace")
    e = t.events(op="mul")[0]
    assert e.frame.filename == str(src) and e.frame.lineno == 4
    assert t.source(str(src)).splitlines()[3] == "    return (x * 3).sum()"


def _trace_file(tmp_path) -> str:
    path = str(tmp_path / "good.ttrace")
    with tt.record(path):
        train_steps(30)
    return path


def test_damaged_or_foreign_files_give_one_clear_error(tmp_path):
    good = _trace_file(tmp_path)
    data = open(good, "rb").read()
    cases = {}
    (tmp_path / "trunc").write_bytes(data[: len(data) // 2])
    cases["trunc"] = "truncated"
    (tmp_path / "text").write_text("hello, I am a CSV file\n1,2,3\n")
    cases["text"] = "not a tracetensor trace"
    (tmp_path / "empty").write_bytes(b"")
    cases["empty"] = "empty"
    other = sqlite3.connect(tmp_path / "other")
    other.execute("CREATE TABLE songs(title TEXT)")
    other.commit()
    other.close()
    cases["other"] = "not a tracetensor trace"
    garbled = bytearray(data)
    garbled[100 : len(data)] = os.urandom(len(data) - 100)
    (tmp_path / "garbled").write_bytes(bytes(garbled))
    cases["garbled"] = "corrupt|not a tracetensor"
    cases["missing"] = "does not exist"
    newer = tmp_path / "newer"
    newer.write_bytes(data)
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value='99' WHERE key='version'")
    con.commit()
    con.close()
    cases["newer"] = "newer tracetensor .*schema version 99"
    tampered = tmp_path / "tampered"
    tampered.write_bytes(data)
    con = sqlite3.connect(tampered)
    con.execute("UPDATE sigs SET outputs='[[oops'")
    con.commit()
    con.close()
    cases["tampered"] = "corrupt .*event block"
    for name, problem in cases.items():
        p = str(tmp_path / name)
        with pytest.raises(TraceFileError, match=f"{p}.*({problem})") as info:
            tt.trace.open(p).events()
        assert isinstance(info.value, SerializationError)


def test_refuses_to_overwrite_a_file_that_is_not_a_trace(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("do not lose me")
    with pytest.raises(TraceFileError, match="not a tracetensor trace.*refusing"):
        tt.record(precious).start()
    assert precious.read_text() == "do not lose me"


def test_second_recorder_on_the_same_path_is_refused(tmp_path):
    path = tmp_path / "busy.ttrace"
    with tt.record(path) as rec:
        with pytest.raises(TraceFileError, match="being recorded by another"):
            tt.record(path).start()
        train_steps(1)
    assert rec.error is None and tt.trace.open(path).count() == per_step()
    with tt.record(path, values="none"):  # once finished, the path can be recorded again
        train_steps(2)
    assert tt.trace.open(path).count() == 2 * per_step()


def test_a_trace_can_be_read_while_it_is_recorded(tmp_path):
    path = tmp_path / "live.ttrace"
    n = per_step()
    with tt.record(path) as rec:
        train_steps(2)
        rec._wake.set()
        import time

        deadline = time.time() + 5
        while tt.trace.open(path).count() < 2 * n and time.time() < deadline:
            time.sleep(0.05)
        assert tt.trace.open(path).count() == 2 * n and not tt.trace.open(path).complete
    assert tt.trace.open(path).complete


@pytest.mark.parametrize("block", [7, 2048])
def test_every_query_agrees_with_the_live_trace(tmp_path, monkeypatch, block):
    """Events are stored in blocks (runs split across blocks, blocks spanning runs): every
    combination of filters and pages must still answer exactly as the in-memory trace."""
    from tracetensor.trace import store

    monkeypatch.setattr(store, "BLOCK", block)
    monkeypatch.setenv("TRACETENSOR_WRITER", "thread")  # (the writer patched here: in this process)
    live = MemoryTrace()
    with tt.record(tmp_path / "b.ttrace"):
        train_steps(12, nan_at=9)
    live.close()
    t = tt.trace.open(tmp_path / "b.ttrace")
    runs = [r.run for r in live.runs()]
    assert [r.run for r in t.runs()] == runs
    n_all = live.count()
    for run in [None, runs[0], runs[5], runs[-1]]:
        for filt in [
            {},
            {"phase": "backward"},
            {"op": "matmul"},
            {"name": "relu|sum"},
            {"op": "mul", "phase": "forward"},
        ]:
            want = same(live.events(run, **filt))
            assert same(t.events(run, **filt)) == want, (run, filt)
            for start, limit in [(0, 1), (3, 5), (len(want) - 2, 10), (n_all, None), (5, 0)]:
                got = same(t.events(run, **filt, start=start, limit=limit))
                assert got == want[start : None if limit is None else start + limit], (run, filt, start)
        assert t.count(run) == live.count(run)
        assert same([t.first_nonfinite(run)]) == same([live.first_nonfinite(run)])
    for name in ["matmul", "relu", "sum", "mul_1", "missing"]:
        for run in [None, runs[3]]:
            got, want = t.find(name, run), live.find(name, run)
            assert (got is None) == (want is None)
            assert got is None or (got[0].seq, got[1]) == (want[0].seq, want[1])
            assert t.consumers(name, run) == live.consumers(name, run)


def test_graph_mode_runs_keep_structure_fetches_and_feeds(tmp_path):
    import tracetensor.graph as tf

    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [None, 3], name="x")
    w = tf.Variable(np.ones((3, 2), np.float32), name="w")
    y = tf.nn.relu(tf.matmul(x, w), name="y")
    live = MemoryTrace()
    with tt.record(tmp_path / "g.ttrace", values="full"):
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(2):
                sess.run(y, feed_dict={x: np.ones((4, 3), np.float32)})
    live.close()
    t = tt.trace.open(tmp_path / "g.ttrace")
    assert t.graphs() == live.graphs() and t.graph() is not None
    assert t.node("y") == live.node("y") and t.inputs("y") == live.inputs("y") and t.inputs("y")
    assert t.runs() == live.runs()
    last = t.runs()[-1]
    assert last.mode == "graph" and "y:0" in last.fetches and "x:0" in last.feeds
    assert same(t.events(last.run)) == same(live.events(last.run))
    np.testing.assert_array_equal(t.value("y:0", last.run), np.full((4, 2), 3.0, np.float32))
    assert t.consumers("w") == live.consumers("w")


@pytest.mark.gpu
def test_gpu_values_and_device_times_are_recorded(tmp_path):
    x = tt.randn(64, 64).cuda()
    with tt.record(tmp_path / "gpu.ttrace", values="full"):
        r = ev.begin_run("step")
        y = (x @ x).relu()
        ev.end_run(r)
    t = tt.trace.open(tmp_path / "gpu.ttrace")
    e = t.events(op="relu")[0]
    assert e.device.startswith("cuda") and e.summaries[0].size == 64 * 64
    np.testing.assert_allclose(t.value(e.outputs[0].name, e.run), y.cpu().numpy())
    dev = t.device_times(e.run)
    assert e.seq in dev and dev[e.seq] > 0


def test_shared_text_formats():
    from tracetensor.trace import format_bytes, format_ns, is_launcher_frame, nonfinite_text

    assert [format_bytes(n) for n in (0, 1023, 1536, 3 << 20, 5 << 30)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "3.0 MiB",
        "5.0 GiB",
    ]
    assert [format_ns(n) for n in (812_500, 23_758_000, 1_204_000_000)] == ["812.500us", "23.758ms", "1.204s"]
    assert nonfinite_text(None) == "" and nonfinite_text(ev.summarize(np.ones(3))) == "0"
    with np.errstate(all="ignore"):
        bad = ev.summarize(np.array([np.nan, -np.inf, -np.inf, 1.0]))
    assert nonfinite_text(bad) == "nan=1 -inf=2"
    assert is_launcher_frame("_run_code", "<frozen runpy>") and not is_launcher_frame("main", "train.py")
