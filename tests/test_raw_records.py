"""Raw records: a `raw=True` listener gets compact op records that `materialize` turns
into exactly the events a plain listener gets (same fields, same order), eager and graph,
with and without stacks; and the profiler, which listens raw, reports the same ops."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from collections.abc import Callable

import numpy as np
import pytest
from tracetensor.profiler import profile

import tracetensor as tt
import tracetensor.graph as tf
import tracetensor.nn as nn
import tracetensor.nn.functional as F
from tracetensor import events

# the project's pytest plugin listens (not raw) during every test: records need it off
pytestmark = pytest.mark.tracetensor_nan("off")

_TIMES = {"seq", "start_ns", "end_ns", "t_ns", "wall_ns", "loss"}  # loss: the model trained in between


def _normal(evs: list) -> list[tuple]:
    """Events without what differs from one run of the same code to the next (times,
    sequence numbers, the step's loss, which training changes; run ids as their order of appearance)."""
    runs: dict[int, int] = {}
    out = []
    for e in evs:
        d = {f.name: getattr(e, f.name) for f in dataclasses.fields(e) if f.name not in _TIMES}
        if "run" in d:
            d["run"] = runs.setdefault(d["run"], len(runs))
        d.pop("loss", None)
        if d.get("stack"):  # the test calls the two cases from different lines
            d["stack"] = tuple(f for f in d["stack"] if not f.name.startswith("test_"))
        out.append((type(e).__name__, tuple(sorted(d.items(), key=lambda kv: kv[0]))))
    return out


def _collect(step: Callable[[], object], raw: bool, **flags: bool) -> list:
    got: list = []
    with events.listen(got.append, raw=raw, **flags):
        step()
    if raw:
        assert any(events.is_raw(x) for x in got), "no raw record came: the raw path was not taken"
        evs = events.materialize(got)
    else:
        assert not any(events.is_raw(x) for x in got)
        evs = got
    seqs = [e.seq for e in evs if isinstance(e, events.OpEvent)]
    assert seqs == sorted(seqs) and seqs
    return evs


def _eager_mlp(opt_cls: type, lr: float = 0.01, seed: int = 0) -> Callable[[], object]:
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = opt_cls(model.parameters(), lr=lr)
    x = tt.tensor(rng.standard_normal((4, 8)).astype(np.float32))
    y = tt.tensor(rng.integers(0, 3, 4))

    def step() -> None:
        run = events.begin_run("step")
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        events.end_run(run)

    return step


def _eager_conv() -> Callable[[], object]:
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    opt = tt.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = tt.tensor(rng.standard_normal((2, 1, 6, 6)).astype(np.float32))

    def step() -> None:
        opt.zero_grad()
        out = model(x)
        vals, idx = out.max(1)
        (vals.sum() + (out * out).mean()).backward()
        opt.step()

    return step


def _graph_mlp() -> Callable[[], object]:
    rng = np.random.default_rng(2)
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        y = tf.placeholder(tf.int64, [None], name="y")
        with tf.name_scope("layer"):
            w = tf.Variable(rng.standard_normal((4, 3)).astype(np.float32), name="W")
            b = tf.Variable(np.zeros(3, np.float32), name="b")
            logits = tf.matmul(x, w) + b
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
        init = tf.global_variables_initializer()
    sess = tf.Session(graph=g)
    sess.run(init)
    feed = {x: rng.standard_normal((5, 4)).astype(np.float32), y: rng.integers(0, 3, 5)}
    return lambda: sess.run([loss, train], feed)


MODELS = {
    "eager MLP, SGD": lambda: _eager_mlp(tt.optim.SGD),
    "eager MLP, Adam": lambda: _eager_mlp(tt.optim.Adam),
    "eager conv net, momentum": _eager_conv,
    "graph MLP, training": _graph_mlp,
}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stacks", [False, True])
def test_materialized_records_are_the_events_a_plain_listener_gets(model, stacks):
    step = MODELS[model]()
    _collect(step, False, stacks=stacks)  # names every leaf; later steps name alike
    plain = _collect(step, False, stacks=stacks)
    raw = _collect(step, True, stacks=stacks)
    assert _normal(raw) == _normal(plain)
    assert {e.phase for e in raw if isinstance(e, events.OpEvent)} >= {"forward", "backward"}


def test_a_plain_listener_beside_a_raw_one_makes_both_get_events():
    step = _eager_mlp(tt.optim.SGD)
    raw_got: list = []
    plain_got: list = []
    with events.listen(raw_got.append, raw=True), events.listen(plain_got.append):
        step()
    assert not any(events.is_raw(x) for x in raw_got)
    assert raw_got == plain_got


@pytest.mark.parametrize("flag", ["values", "flops"])
def test_records_are_not_made_when_a_listener_wants_what_only_the_arrays_give(flag):
    step = _eager_mlp(tt.optim.SGD)
    got: list = []
    with events.listen(got.append, raw=True, **{flag: True}):
        step()
    assert got and not any(events.is_raw(x) for x in got)


@pytest.mark.parametrize("stacks", [False, True])
def test_summarized_records_are_the_events_a_plain_summaries_listener_gets(stacks):
    """`summaries=True, raw=True` (a summary recording): each op's record carries its
    outputs' summaries, and materializes to the very event a plain listener gets; an op with
    a NaN or an inf still comes as a full event, with its inputs' summaries."""
    step = _eager_mlp(tt.optim.SGD, lr=0.0, seed=3)  # (no training: every step computes the same tensors)
    x = tt.ones(4, 8)
    _collect(step, False, summaries=True, stacks=stacks)
    plain = _collect(step, False, summaries=True, stacks=stacks)
    raw = _collect(step, True, summaries=True, stacks=stacks)
    assert _normal(raw) == _normal(plain)
    got: list = []
    with events.listen(got.append, raw=True, summaries=True, stacks=stacks):
        step()
    recs = [r for r in got if events.is_raw(r)]
    assert len(recs) == len([e for e in plain if isinstance(e, events.OpEvent)])
    assert all(len(r) == 11 and r[10] for r in recs)  # (every op here: outputs to summarize)
    assert all(r[10].__class__ is bytes for r in recs)  # (packed rows: one object per op, see events.summary_rows)
    assert all(any(s is not None and s.size for s in e.summaries) for e in raw if isinstance(e, events.OpEvent))

    got.clear()
    with events.listen(got.append, raw=True, summaries=True, stacks=stacks):
        (x * float("nan")).relu()
    bad = [e for e in got if isinstance(e, events.OpEvent)]
    assert len(bad) == 2 and not any(events.is_raw(e) for e in got)
    assert bad[1].op == "relu" and bad[1].summaries[0].nan == 32 and bad[1].input_summaries[0].nan == 32


@pytest.mark.parametrize("modules", [False, True])
def test_the_profiler_reports_the_same_ops_from_records(modules):
    """`with_modules` profiles the op-by-op view a plain listener gets; the default, the
    program as it runs unobserved (what a `names=False` listener gets)."""
    step = _eager_mlp(tt.optim.SGD)
    step()
    with profile(with_modules=modules) as prof:
        for _ in range(3):
            step()
            prof.step()
    ops = [e for e in prof.events() if isinstance(e, events.OpEvent)]
    assert ops and all(e.end_ns >= e.start_ns for e in ops)
    counts = {r.key: r.count for r in prof.key_averages()}
    assert counts["linear"] == 2 * 3 and "matmul" not in counts  # nn.Linear: one op, as it runs unobserved
    assert counts["sgd_update (update)"] == 4 * 3 and counts["accumulate_grad (backward)"] == 4 * 3
    plain = _collect(step, False, names=modules)
    assert [e.name for e in ops[: len([p for p in plain if isinstance(p, events.OpEvent)])]] == [
        e.name for e in plain if isinstance(e, events.OpEvent)
    ]


@pytest.mark.parametrize("model", MODELS)
def test_a_names_false_listener_gets_the_program_as_it_runs_unobserved(model):
    """`names=False`: records materialize to the events a plain `names=False` listener gets;
    eager ops run their unobserved path (fused `linear`), named after their op type, and
    train bit-identically to an unobserved run. Graph events keep their node names."""
    step = MODELS[model]()
    _collect(step, False)  # names every leaf
    plain = _collect(step, False, names=False)
    raw = _collect(step, True, names=False)
    assert _normal(raw) == _normal(plain)
    ops = [e for e in raw if isinstance(e, events.OpEvent)]
    assert {e.phase for e in ops} >= {"forward", "backward", "update"}
    if model.startswith("graph"):
        assert all("/" in e.name or e.name in ("x", "y") or e.name for e in ops)
        named = _collect(step, True)
        assert [e.name for e in ops] == [e.name for e in named if isinstance(e, events.OpEvent)]
        return
    assert all(e.name == e.op and e.inputs == () for e in ops)
    fwd = [e.op for e in ops if e.phase == "forward"]
    assert "linear" in fwd and "matmul" not in fwd
    assert [e.op for e in ops if e.phase == "backward"].count("accumulate_grad") == len(
        [e for e in ops if e.phase == "update"]
    )
    assert all(m.name == f"{e.op}:{i}" for e in ops for i, m in enumerate(e.outputs) if e.phase != "update")


def test_a_names_false_listener_changes_no_number():
    """Observing changes no number: the same losses and parameters, bit for bit, as with
    nobody listening, under a `names=False` listener and under named ones."""

    def train(listen: dict | None) -> tuple[list, list]:
        rng = np.random.default_rng(3)
        tt.manual_seed(3)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        opt = tt.optim.SGD(model.parameters(), lr=0.1)
        x = tt.tensor(rng.standard_normal((4, 8)).astype(np.float32))
        y = tt.tensor(rng.integers(0, 3, 4))
        losses = []
        with events.listen(lambda e: None, **listen) if listen is not None else contextlib.nullcontext():
            for _ in range(5):
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                losses.append(loss.item())
        return losses, [p.detach().numpy().copy() for p in model.parameters()]

    base_l, base_p = train(None)
    for flags in ({"raw": True, "names": False}, {"names": False}):
        got_l, got_p = train(flags)
        assert got_l == base_l and all(np.array_equal(a, b) for a, b in zip(got_p, base_p))
    for flags in ({"raw": True}, {"stacks": True, "summaries": True}):  # the named view: the same ops
        named_l, named_p = train(flags)
        assert named_l == base_l and all(np.array_equal(a, b) for a, b in zip(named_p, base_p))


def _recorded(step: Callable[[], object], path: str, beside_plain: bool) -> tuple[list, list]:
    """A values="none" recording of two steps, read back: (op and run events, run infos)."""
    # a plain listener beside it: the recorder gets OpEvents, not records
    beside = events.listen(lambda e: None, stacks=True) if beside_plain else contextlib.nullcontext()
    with tt.record(path, values="none"), beside:
        assert (events.STATE.raw is None) == beside_plain, "records were (not) made"
        step()
        step()
    with tt.trace.open(path) as t:
        evs = t.events()
        runs = [(r.mode, r.kind, r.name, r.n_events, r.nonfinite) for r in t.runs()]
    return evs, runs


@pytest.mark.parametrize("model", ["eager MLP, SGD", "graph MLP, training"])
def test_a_recording_from_records_reads_back_as_one_from_events(model, tmp_path):
    step = MODELS[model]()
    step()  # names every leaf; later steps name alike
    raw_evs, raw_runs = _recorded(step, str(tmp_path / "raw.ttrace"), False)
    plain_evs, plain_runs = _recorded(step, str(tmp_path / "plain.ttrace"), True)
    assert raw_evs and _normal(raw_evs) == _normal(plain_evs)
    assert raw_runs == plain_runs and len(raw_runs) == 2


def test_an_outputs_listener_gets_each_ops_arrays_beside_its_record_and_keeps_records():
    """`outputs=True` hands the op's output array(s) at the op, next to a raw record (the
    memory tracker's weak references), without making ops full events; run markers come alone."""
    got: list = []
    x = tt.tensor(np.ones((3, 4), np.float32), requires_grad=True)

    def cb(item, out=None):
        got.append((item, out))

    with events.listen(cb, raw=True, outputs=True):
        y = (x * 2.0).relu()
        y.sum().backward()
        events.step()
    ops = [(i, o) for i, o in got if events.is_raw(i)]
    assert ops and all(o is not None for _, o in ops)  # records, each with its outputs
    assert all(o is None for i, o in got if not events.is_raw(i))  # run markers alone
    mats = events.materialize([i for i, _ in ops])
    relu = next(k for k, e in enumerate(mats) if e.op == "relu" and e.phase == "forward")
    assert ops[relu][1] is y._data  # the very array the tensor holds
    for (_, out), e in zip(ops, mats):
        arrays = out if isinstance(out, tuple) else (out,)
        assert [a.shape if a is not None else () for a in arrays] == [m.shape for m in e.outputs]


def test_a_queueing_callback_appends_and_calls_on_full_past_its_limit(monkeypatch):
    """`events.appender` (a recording's callback; C when built, else Python): every item is
    queued in order, the producer is held (`on_full`) each time the queue is past its limit,
    not before, and `take()` hands over what is queued and starts afresh."""
    for c_type in {events._Appender, None}:
        monkeypatch.setattr(events, "_Appender", c_type)
        full: list[int] = []
        box: list = []
        cb = events.appender(3, lambda full=full, box=box: full.append(len(box[0])))
        box.append(cb)
        for i in range(6):
            cb(("item", i))
        assert len(cb) == 6 and full == [4, 5, 6]
        assert cb.take() == [("item", i) for i in range(6)] and len(cb) == 0
        cb("again")
        assert cb.take() == ["again"] and cb.take() == []
        assert (type(cb).__name__ == "Appender") == (c_type is not None)


@pytest.mark.parametrize("names,stacks", [(True, False), (True, True), (False, False)])
@pytest.mark.parametrize("model", ["eager", "conv", "graph"])
def test_a_plain_listeners_events_made_in_c_are_those_python_makes(model, names, stacks, monkeypatch):
    """A listener that takes each OpEvent as it happens and asks for nothing more gets events
    the C accelerator makes (`STATE.plain`); without that flag the same ops' events come from
    `_dispatch._after` in Python. The two agree field by field."""
    step = {"eager": lambda: _eager_mlp(tt.optim.Adam), "conv": _eager_conv, "graph": _graph_mlp}[model]()
    step()
    made = []
    for in_c in (True, False):
        if not in_c:  # (every refresh of the listeners then turns the flag off)
            monkeypatch.setattr(
                events, "REFRESH_HOOKS", [*events.REFRESH_HOOKS, lambda: setattr(events.STATE, "plain", None)]
            )
        got: list = []
        with events.listen(got.append, names=names, stacks=stacks):
            assert (events.STATE.plain is events.STATE.listeners) == in_c
            step()
        made.append(_normal(got))
    assert made[0] == made[1] and sum(k == "OpEvent" for k, _ in made[0]) > 8


def _rows(taken: tuple) -> list[list[int]]:
    return np.frombuffer(taken[0], np.int64).reshape(-1, 6).tolist()


def _markers(marks: bytes, keys: list[tuple]) -> list:
    """A column queue's run marker rows, back as the RunStarts and RunEnds they were."""
    out = []
    for kind, run, t, x, key, has_loss in _rows((marks,)):
        k = keys[key]
        if kind == 0:
            out.append(events.RunStart(run, *k[:6], t, k[6], x))
        else:
            loss = struct.unpack("<d", struct.pack("<q", x))[0] if has_loss else None
            out.append(events.RunEnd(run, t, k[0], k[1], loss))
    return out


@pytest.mark.parametrize("values", ["none", "summary"])
def test_a_column_queue_holds_the_records_the_dispatch_point_would_have_made(values):
    """`events.column_queue` (a recording's queue, C when built): the dispatch point hands it
    each record's fields as a row (seq, run, start, end, key, summary rows), without making
    the tuple; each (site, thread, shape, dtype, nbytes, stack) is numbered once and handed
    over once; summaries' packed rows in order; run markers queued as they are. A plain raw
    listener beside it gets the tuples: the two agree field by field."""
    if events._ColumnQueue is None:
        pytest.skip("the C accelerator is not in use")
    step = _eager_mlp(tt.optim.SGD)
    step()
    q = events.column_queue(1 << 20, lambda: None, True)
    recs: list = []
    summ = values == "summary"
    with events.listen(q, raw=True, stacks=True, summaries=summ), events.listen(recs.append, raw=True):
        for _ in range(2):  # (one line: the same stacks)
            step()
    rows_bytes, srows, new_keys, reset, others, marks, mark_keys = q.take()
    tuples = [r for r in recs if events.is_raw(r)]
    markers = [e for e in recs if not events.is_raw(e)]
    assert not reset and others == [] and len(markers) == 4  # (the run markers: rows of their own)
    assert _markers(marks, mark_keys) == markers
    assert len(mark_keys) == 2  # (the second step's markers reuse the first's keys)
    rows = _rows((rows_bytes,))
    assert len(rows) == len(tuples) > 10
    assert len(new_keys) == len(tuples) // 2  # the second step's records reuse the first's keys
    at = 0
    for (seq, run, t0, t1, key, ns), r in zip(rows, tuples):
        assert (seq, run, t0, t1) == r[1:5]
        site, tid, shape, dtype, nbytes, stack = new_keys[key]
        assert (site, tid, stack) == (r[0], r[5], r[6]) and (shape, dtype, nbytes) == r[7:10]
        if summ:
            assert srows[at : at + ns * events.SUMMARY_ROW.size] == r[10]
            at += ns * events.SUMMARY_ROW.size
        else:
            assert ns == -1 and srows is None
    assert len(q) == 0 and q.take()[2] == []  # (nothing new: taken)


def test_a_column_queue_numbers_keys_afresh_after_a_hundred_thousand():
    """A program that keeps making names makes keys without end: past 100,000 the numbering
    starts over with the next batch, which says so (`reset`), so that no row of a batch
    refers to a key another batch numbered."""
    if events._ColumnQueue is None:
        pytest.skip("the C accelerator is not in use")
    q = events.column_queue(1 << 30, lambda: None, True)
    sites = [object() for _ in range(100_001)]
    for i, site in enumerate(sites):
        q((site, i, 1, 0, 5, 7, None, (2,), np.dtype("f4"), 8))
    q(("run marker",))
    rows, _, new_keys, reset, others, *_ = q.take()
    assert not reset and len(new_keys) == 100_001 and others == [("run marker",)]
    assert [r[4] for r in _rows((rows,))[:3]] == [0, 1, 2] and new_keys[2][0] is sites[2]
    q((sites[5], 0, 1, 0, 5, 7, None, (2,), np.dtype("f4"), 8))
    rows, _, new_keys, reset, *_ = q.take()
    assert reset and [k[0] for k in new_keys] == [sites[5]] and _rows((rows,))[0][4] == 0


def test_a_column_queue_calls_on_full_past_its_limit():
    if events._ColumnQueue is None:
        pytest.skip("the C accelerator is not in use")
    full: list[int] = []
    box: list = []
    q = events.column_queue(3, lambda: full.append(len(box[0])), False)
    box.append(q)
    for i in range(3):
        q((object(), i, 1, 0, 5, 7, None, (2,), np.dtype("f4"), 8))
    q("an event")
    q("another")
    assert full == [4, 5] and len(q) == 5
    rows, _, keys, _, others, *_ = q.take()
    assert len(_rows((rows,))) == 3 and len(keys) == 3 and others == ["an event", "another"] and len(q) == 0


def test_a_routing_callback_sends_records_one_way_and_events_the_other(monkeypatch):
    """`events.router` (the pytest plugin's check listens through it; C when built): raw
    records reach the first callable, run markers and op events the second, in order."""
    step = _eager_mlp(tt.optim.SGD)
    step()
    for c_type in {events._Router, None}:
        monkeypatch.setattr(events, "_Router", c_type)
        recs: list = []
        rest: list = []
        with events.listen(events.router(recs.append, rest.append), raw=True, checks=True):
            step()
            (tt.ones(2) * float("nan")).relu()  # a failed check: an event
        assert recs and all(events.is_raw(r) for r in recs) and not any(events.is_raw(e) for e in rest)
        assert {type(e).__name__ for e in rest} >= {"RunStart", "RunEnd", "OpEvent"}
        assert [e.op for e in rest if isinstance(e, events.OpEvent)][-1] == "relu"


@pytest.mark.parametrize("stacks", [False, True])
def test_record_columns_are_the_same_from_c_and_python(monkeypatch, stacks):
    """`events.record_columns` (what a profile folds and a trace writer packs; C when built):
    the columns are the records' own numbers, and records share a key exactly when they
    share Site, thread, output signature (and stack)."""
    import threading

    step = _eager_mlp(tt.optim.Adam)
    step()
    got: list = []
    with events.listen(got.append, raw=True, stacks=True):
        step()
        step()
        t = threading.Thread(target=step)
        t.start()
        t.join()
    recs = [r for r in got if events.is_raw(r)]
    answers = []
    for c in {events._record_columns, None}:
        monkeypatch.setattr(events, "_record_columns", c)
        cols, index, firsts = events.record_columns(recs, stacks)
        assert cols.shape == (4, len(recs)) and cols[0].tolist() == [r[1] for r in recs]
        assert cols[3].tolist() == [r[4] for r in recs] and sorted(set(index.tolist())) == list(range(len(firsts)))
        key = lambda r: (id(r[0]), r[5], r[7], r[8], r[9], id(r[6]) if stacks else 0)
        for i, r in enumerate(recs):
            assert key(recs[firsts[index[i]]]) == key(r)
        assert len({key(recs[j]) for j in firsts}) == len(firsts)
        answers.append((cols.tolist(), index.tolist(), firsts))
    assert all(a == answers[0] for a in answers) and len({r[5] for r in recs}) == 2
