"""Eager steps are runs: a run ends at `optimizer.step()`, `profiler.step()`, `tt.step()`
or a debugger-wrapped call; a step's backward and update events belong to it; runs are
per thread; names are unique within a run; graph mode keeps one run per `Session.run`."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

import tracetensor as tt
from tracetensor import events as ev
from tracetensor.trace import MemoryTrace


def _model() -> tuple[tt.nn.Module, tt.optim.Optimizer]:
    tt.manual_seed(0)
    m = tt.nn.Sequential(tt.nn.Linear(4, 8), tt.nn.ReLU(), tt.nn.Linear(8, 1))
    opt = tt.optim.SGD(m.parameters(), lr=0.01)
    tt.step()  # the set-up's ops (seen by pytest's NaN plugin) are a step of their own
    return m, opt


def _train(m: tt.nn.Module, opt: tt.optim.Optimizer, steps: int, rng: np.random.Generator) -> list[float]:
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        x = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32))
        loss = (m(x) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _phases(tr: MemoryTrace, run: int) -> set[str]:
    return {e.phase for e in tr.events(run)}


def test_each_optimizer_step_is_one_run_holding_forward_backward_and_update(rng) -> None:
    m, opt = _model()
    with MemoryTrace() as tr:
        losses = _train(m, opt, 5, rng)
    runs = tr.runs()
    assert len(runs) == 5
    assert all(r.kind == "step" and r.end_ns is not None for r in runs), runs
    for r in runs:
        assert _phases(tr, r.run) == {"forward", "backward", "update"}
        names = [e.name for e in tr.events(r.run)]
        assert len(names) == len(set(names)), "names repeat within a run"
    # every step names its ops the same way, so `pt 0/matmul` means the same op in any run
    first = [e.name for e in tr.events(runs[0].run)]
    assert [e.name for e in tr.events(runs[-1].run)] == first
    assert [r.loss for r in runs] == np.float32(losses).tolist()


def test_tt_step_ends_a_run_in_a_loop_without_an_optimizer(rng) -> None:
    w = tt.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    tt.step()
    with MemoryTrace() as tr:
        for _ in range(4):
            (w @ w).sum().backward()
            with tt.no_grad():
                w -= 0.1 * w.grad
            w.grad = None
            tt.step()
    assert [r.n_events for r in tr.runs()] == [tr.runs()[0].n_events] * 4
    assert len(tr.runs()) == 4


def test_a_hand_written_loop_ends_its_steps_at_backward(rng) -> None:
    """No optimizer, no module and no `tt.step()` (`w -= lr * w.grad` by hand, as tutorials
    write): the first step holds the loop's first two iterations, then each iteration is a
    step ending with its backward pass (its update leads the next one), with its loss, and
    the steps' op names repeat, so their call sites do. (They were all one run, an op name
    each: a recording's signatures grew by a step's ops every step.)"""
    w = tt.tensor(rng.standard_normal((3, 1)).astype(np.float32), requires_grad=True)
    tt.step()
    losses = []
    with MemoryTrace() as tr:
        for _ in range(6):
            x = tt.tensor(rng.standard_normal((8, 3)).astype(np.float32))  # (a fresh batch a step)
            loss = ((x @ w) ** 2).mean()
            loss.backward()
            losses.append(loss.item())
            with tt.no_grad():
                w -= 0.1 * w.grad
            w.grad = None
    runs = tr.runs()
    assert [r.n_events for r in runs] == [16, 9, 9, 9, 9, 2]  # (the last update: a step of its own)
    assert [r.loss for r in runs[:-1]] == np.float32(losses[1:]).tolist()
    steps = [[(e.name, e.inputs) for e in tr.events(r.run)] for r in runs[1:-1]]
    assert all(s == steps[0] for s in steps) and steps[0][2][0] == "matmul"
    # (each step's batch: the step's third new leaf, after the update's 0.1 and w.grad)
    assert steps[0][2][1][0] == "tensor_2" and steps[0][0][1] == ("tensor_0", "tensor_1")


def test_an_optimizer_ends_the_steps_even_after_a_loop_without_one(rng) -> None:
    """Gradient accumulation (two backward passes an optimizer step): the first optimizer
    step is cut at its backward passes, as a hand-written loop's would be, and from then on
    each optimizer step is one run."""
    m, opt = _model()
    with MemoryTrace() as tr:
        for _ in range(4):
            opt.zero_grad()
            for _ in range(2):
                x = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32))
                (m(x) ** 2).mean().backward()
            opt.step()
    runs = tr.runs()
    assert len(runs) == 2 + 3 and [_phases(tr, r.run) for r in runs[-3:]] == [{"forward", "backward", "update"}] * 3
    assert len({tuple(e.name for e in tr.events(r.run)) for r in runs[-3:]}) == 1


def test_a_steps_new_leaves_are_named_alike_from_step_to_step(rng) -> None:
    """A loop that makes its inputs each step (a batch a step, `x ** 2`'s 2): each new leaf
    is named by its place among the step's new leaves (`tensor_0`, `tensor_1` ...), so the
    ops that take them keep their call sites; a leaf kept from an earlier step keeps its name."""
    m, opt = _model()
    with MemoryTrace() as tr:
        _train(m, opt, 4, rng)
    ins = [[e.inputs for e in tr.events(r.run) if e.phase == "forward"] for r in tr.runs()]
    assert all(i == ins[0] for i in ins) and ins[0][0][0] == "tensor_0"
    leaves = [n for i in ins[0] for n in i if n.startswith("tensor_")]
    assert leaves == ["tensor_0", "tensor_1"]  # (the batch, and the 2 of `** 2`)


def test_profiler_step_ends_the_run_too(rng) -> None:
    from tracetensor.profiler import step as profiler_step

    w = tt.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    tt.step()
    with MemoryTrace() as tr:
        for _ in range(3):
            (w @ w).sum().backward()
            profiler_step()  # no profiler running: still a step boundary for the recording
    assert len(tr.runs()) == 3


def test_an_explicit_run_is_not_ended_by_optimizer_step(rng) -> None:
    m, opt = _model()
    with MemoryTrace() as tr:
        r = ev.begin_run("debug", name="mine")
        _train(m, opt, 3, rng)
        ev.end_run(r)
    assert [x.run for x in tr.runs()] == [r]


def test_graph_mode_keeps_one_run_per_session_run() -> None:
    tf = tt.graph
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [None, 2], name="x")
        y = tf.reduce_sum(x * 2.0)
        with MemoryTrace() as tr, tf.Session() as sess:
            for i in range(3):
                sess.run(y, {x: np.ones((2, 2)) * i})
    assert [r.kind for r in tr.runs()] == ["session.run"] * 3


def test_runs_are_per_thread_and_hold_only_their_own_threads_events() -> None:
    barrier = threading.Barrier(4)

    models = [_model() for _ in range(4)]

    def work(seed: int) -> None:
        barrier.wait()
        _train(*models[seed], 10, np.random.default_rng(seed))

    with MemoryTrace() as tr:
        ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    runs = tr.runs()
    assert len(runs) == 40
    for r in runs:
        evs = tr.events(r.run)
        assert len({e.thread for e in evs}) == 1, f"run {r.run} mixes threads"
        assert _phases(tr, r.run) == {"forward", "backward", "update"}
        assert max(Counter(e.name for e in evs).values()) == 1


def test_a_recording_of_n_steps_has_n_runs_with_loss_and_nonfinite_counts(tmp_path, rng) -> None:
    m, opt = _model()
    path = tmp_path / "t.ttrace"
    with tt.record(path):
        losses = _train(m, opt, 6, rng)
        with np.errstate(all="ignore"):
            x = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32))
            (m(x) - 1e9).log().mean().backward()  # log of negatives: NaN, in a 7th step
        tt.step()
    with tt.trace.open(path) as tr:
        runs = tr.runs()
        assert len(runs) == 7
        assert [r.loss for r in runs[:6]] == np.float32(losses).tolist()
        assert [r.nonfinite for r in runs[:6]] == [0] * 6 and runs[6].nonfinite > 0
        assert np.isnan(runs[6].loss)
        assert tr.first_nonfinite().run == runs[6].run


def test_threads_mixing_eager_steps_and_sessions_under_a_recorder(tmp_path) -> None:
    tf = tt.graph
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [None, 2], name="x")
        y = tf.reduce_sum(x * 2.0, name="y")
    models = [_model() for _ in range(4)]
    barrier = threading.Barrier(8)
    stale: list[int] = []

    def eager(k: int) -> None:
        barrier.wait()
        _train(*models[k], 5, np.random.default_rng(k))
        stale.append(ev.current_run())

    def graph(k: int) -> None:
        with tf.Session(graph=g) as sess:
            barrier.wait()
            for i in range(5):
                sess.run(y, {x: np.full((2, 2), i + k, np.float32)})
        stale.append(ev.current_run())

    path = tmp_path / "threads.ttrace"
    with tt.record(path):
        ts = [threading.Thread(target=eager if k < 4 else graph, args=(k % 4,)) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert stale == [0] * 8, "a thread stayed in a run that had ended"
    with tt.trace.open(path) as tr:
        runs = tr.runs()
        starts = {s.run: s.thread for s in tr.run_starts()}
        assert sorted(r.kind for r in runs) == ["session.run"] * 20 + ["step"] * 20
        for r in runs:
            evs = tr.events(r.run)
            assert {e.thread for e in evs} == {starts[r.run]}, f"run {r.run} holds another thread's ops"
            assert {e.mode for e in evs} == {"graph" if r.kind == "session.run" else "eager"}
            seqs = [e.seq for e in evs]
            assert seqs == sorted(seqs)


def test_a_session_run_inside_an_eager_step_keeps_the_steps_names_unique(rng) -> None:
    tf = tt.graph
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [2], name="x")
        y = x * 2.0
    w = tt.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    tt.step()
    with MemoryTrace() as tr, tf.Session(graph=g) as sess:
        a = w @ w
        sess.run(y, {x: np.ones(2, np.float32)})  # a nested run
        (a @ w).sum().backward()
        tt.step()
    step = next(r for r in tr.runs() if r.kind == "step")
    names = [e.name for e in tr.events(step.run)]
    assert names.count("matmul") == 1 and "matmul_1" in names


def _marker_script(start, run_end, auto_run, step, tag: str) -> tuple[list, list]:
    """One sequence of runs through the given run-marker functions: an implicit step with a
    loss, an explicit run with a nested one and an error, a step with a 1-element loss, and
    steps with nobody listening; what was emitted (times and threads blanked) and the state
    each left (the thread's run, step and loss, the outer runs, the name counters)."""
    from tracetensor import _naming

    got: list = []
    states: list = []

    def state() -> None:
        run = ev.RUN
        states.append((run.run != 0, run.auto != 0, run.loss is None, len(ev._outer), dict(_naming._tls.counters)))

    with ev.listen(got.append, raw=True):
        run = auto_run(123)
        _naming.op_name("matmul")
        ev.note_loss(np.array(2.5, np.float32))
        state()
        step()
        state()
        outer = start("session", "graph", tag, ["a:0"], ("b:0",), 7, 0)
        inner = start("call", "eager", "inner", (), (), None, 0)
        run_end(inner, "ValueError: bad")
        ev.note_loss(np.array([1.5]))
        run_end(outer, None)
        state()
        step()  # no implicit step open: only the counters
        auto_run(0)
        ev.note_loss(object())  # not a number: no loss
        step()
        auto_run(0)
        ev.note_loss(np.array(1 + 2j))  # a 0-d array float() refuses: no loss either
        step()
        state()
    auto_run(0)  # nobody listening: the state only
    step()
    state()
    assert run and outer and inner
    blank = []
    for e in got:
        if isinstance(e, ev.RunStart):
            blank.append((type(e).__name__, e.mode, e.kind, e.name, e.fetches, e.feeds, e.graph, e.t_ns == 123))
        else:
            blank.append((type(e).__name__, e.error, e.loss))
    return blank, states


def test_the_c_run_markers_do_what_the_python_ones_do() -> None:
    """The accelerator's run markers (`events._start`, `_run_end`, `auto_run`, `step`) against
    the Python functions they replace: the same events (RunStart and RunEnd objects, untracked)
    and the same per-thread state after each step."""
    import gc

    if ev.step is ev.step_py:
        pytest.skip("the C accelerator is not built (TRACETENSOR_PURE=1 or no compiler)")
    c = _marker_script(ev._start, ev._run_end, ev.auto_run, ev.step, "c")
    py = _marker_script(ev._start_py, ev._run_end_py, ev.auto_run_py, ev.step_py, "c")
    assert c == py
    assert c[0][0] == ("RunStart", "eager", "step", "step", (), (), None, True)
    assert c[0][1] == ("RunEnd", None, 2.5)
    assert ("RunEnd", "ValueError: bad", None) in c[0] and ("RunEnd", None, 1.5) in c[0]
    assert c[0][-1] == c[0][-3] == ("RunEnd", None, None)
    got: list = []
    with ev.listen(got.append):
        ev.step(), ev.auto_run(0), ev.step()
    assert [type(e) for e in got] == [ev.RunStart, ev.RunEnd] and not any(gc.is_tracked(e) for e in got)
    start, end = got
    same = ev.RunStart(start.run, "eager", "step", "step", (), (), None, start.t_ns, start.thread, start.wall_ns)
    assert start == same
    assert hash(end) == hash(ev.RunEnd(end.run, end.t_ns, end.thread, None, None))
    assert start.thread == threading.get_ident() and abs(start.wall_ns - time.time_ns()) < 10**9


@pytest.mark.tracetensor_nan("off")  # (the plugin's own listener would keep the step open)
def test_a_listener_closed_mid_step_leaves_the_next_steps_names_fresh():
    """Closing the last listener ends the step it left open; the next listened step's op names
    start afresh, as after `step()` (names are stable from step to step)."""
    w = tt.tensor([1.0], requires_grad=True)

    def names() -> list[str]:
        got: list = []
        with ev.listen(got.append):
            (w * 2.0).sum()  # no optimizer step: the step is still open when the listener closes
        return [e.name for e in got if isinstance(e, ev.OpEvent)]

    assert names() == names() == ["mul", "sum"]


def _batches(tr: MemoryTrace) -> list[list[str]]:
    """Each run's op names, in order."""
    return [[e.name for e in tr.events(r.run)] for r in tr.runs()]


def test_an_inference_loop_is_a_step_per_batch(rng) -> None:
    """Under no_grad, a step without an optimizer ends where the next outermost module call
    begins: each batch is a run, its forward and what follows it, with names that repeat."""
    m, _ = _model()
    x = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32))
    with MemoryTrace() as tr, tt.no_grad():
        for _ in range(5):
            m(x).argmax(1)
    batches = _batches(tr)
    assert len(batches) == 5
    assert batches[0] == ["Sequential/0/linear", "Sequential/1/relu", "Sequential/2/linear", "argmax"]
    assert all(b == batches[0] for b in batches)  # (one run for the loop: `linear_1` ... `argmax_4`)


def test_inference_mode_and_a_user_module_end_inference_steps_too(rng) -> None:
    class Net(tt.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = tt.nn.Linear(4, 2)

        def forward(self, x: tt.Tensor) -> tt.Tensor:
            return self.body(x).relu()

    net = Net()
    tt.step()
    x = tt.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    with MemoryTrace() as tr, tt.inference_mode():
        for _ in range(3):
            net(x).sum()
    assert _batches(tr) == [["Net/body/linear", "Net/relu", "sum"]] * 3


@pytest.mark.tracetensor_nan("off")  # (alone: the named path is not taken)
def test_a_listener_without_names_sees_the_same_inference_steps(rng) -> None:
    m, _ = _model()
    x = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32))
    hooked: list = []
    m.register_forward_hook(lambda mod, args, out: hooked.append(out.shape))  # (hooks run on this path too)
    got: list = []
    with tt.no_grad():
        with ev.listen(got.append, names=False):
            for _ in range(4):
                m(x).argmax(1)
    assert hooked == [(16, 1)] * 4
    starts = [e for e in got if isinstance(e, ev.RunStart)]
    ops = [e for e in got if isinstance(e, ev.OpEvent)]
    assert len(starts) == 4 and len({e.run for e in ops}) == 4
    assert [e.op for e in ops if e.run == starts[0].run] == ["linear", "relu", "linear", "argmax"]


def test_a_training_steps_no_grad_module_call_stays_in_the_step(rng) -> None:
    """A target network called under no_grad inside a training step (DQN) does not end it:
    the step's outermost call returned in grad mode first."""
    m, opt = _model()
    target = tt.nn.Sequential(tt.nn.Linear(4, 8), tt.nn.ReLU(), tt.nn.Linear(8, 1))
    tt.step()
    x = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32))
    with MemoryTrace() as tr:
        for _ in range(3):
            opt.zero_grad()
            q = m(x)
            with tt.no_grad():
                t = target(x)
            ((q - t) ** 2).mean().backward()
            opt.step()
    runs = tr.runs()
    assert len(runs) == 3
    for r in runs:
        assert _phases(tr, r.run) == {"forward", "backward", "update"}
        names = [e.name for e in tr.events(r.run)]
        assert "Sequential_1/0/linear" in names or any(n.endswith("0/linear_1") for n in names)
        assert len(names) == len(set(names))


def test_validation_after_training_steps_is_a_step_per_batch(rng) -> None:
    m, opt = _model()
    with MemoryTrace() as tr:
        _train(m, opt, 2, rng)
        x = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32))
        with tt.no_grad():
            for _ in range(3):
                (m(x) ** 2).mean()
    runs = tr.runs()
    assert len(runs) == 5
    assert [_phases(tr, r.run) for r in runs] == [{"forward", "backward", "update"}] * 2 + [{"forward"}] * 3
    assert len({tuple(b) for b in _batches(tr)[2:]}) == 1


def test_a_recorded_inference_loop_keeps_a_few_signatures_and_bytes(tmp_path, rng) -> None:
    """Its ops' names repeat from batch to batch: the file holds a signature per op of one
    batch, not one per op event (before: 200 batches made 800 signatures)."""
    import sqlite3

    m, _ = _model()
    x = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32))
    path = tmp_path / "infer.ttrace"
    with tt.no_grad(), tt.record(path, values="none"):
        for _ in range(200):
            m(x).argmax(1)
    with tt.trace.open(path) as tr:
        assert tr.count() == 800 and len(tr.runs()) == 200
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM sigs").fetchone()[0] <= 8
    finally:
        db.close()


def test_an_evaluation_loop_in_eval_mode_is_a_step_per_batch_in_grad_mode_too(rng) -> None:
    """`model.eval()` and no `no_grad`: each call of the model begins the next batch's step."""
    m, _ = _model()
    m.eval()
    x = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32))
    with MemoryTrace() as tr:
        for _ in range(3):
            (m(x) ** 2).mean()
    assert _batches(tr) == [["Sequential/0/linear", "Sequential/1/relu", "Sequential/2/linear", "pow", "mean"]] * 3


def test_a_model_in_eval_mode_trained_with_a_loss_module_is_one_step_per_update(rng) -> None:
    """Fine-tuning with the model in eval mode (frozen batch statistics) and a loss module:
    the loss module, in training mode, makes the step a training step; it ends at the update."""
    m, opt = _model()
    m.eval()
    loss_fn = tt.nn.MSELoss()
    with MemoryTrace() as tr:
        for _ in range(3):
            opt.zero_grad()
            x = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32))
            loss_fn(m(x), tt.zeros(16, 1)).backward()
            opt.step()
    runs = tr.runs()
    assert len(runs) == 3
    assert all(_phases(tr, r.run) == {"forward", "backward", "update"} for r in runs)


def test_an_inference_step_is_aligned_on_its_first_module(rng) -> None:
    """A module called before the model (a projection): each batch's step begins with it,
    and the model's call does not end the step."""
    m, _ = _model()
    proj = tt.nn.Linear(4, 4)
    x = tt.tensor(rng.standard_normal((16, 4)).astype(np.float32))
    with MemoryTrace() as tr, tt.no_grad():
        for _ in range(3):
            m(proj(x)).argmax(1)
    one = ["Linear/linear", "Sequential/0/linear", "Sequential/1/relu", "Sequential/2/linear", "argmax"]
    assert _batches(tr) == [one] * 3
