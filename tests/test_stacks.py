"""Cheap stacks: a library layer's forward and an optimizer's updates take the user's
stack once for all the ops inside; every event still carries exactly the stack a
capture per op gives (user forwards, hooks and nested layers included)."""

from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest

import tracetensor as tt
import tracetensor.nn as nn
import tracetensor.nn.functional as F
import tracetensor.nn.module as _module
import tracetensor.optim as _optim
from tracetensor import events

pytestmark = pytest.mark.tracetensor_nan("off")  # the plugin's own listener would add nothing here


def _line(fn, text: str) -> int:
    src, start = inspect.getsourcelines(fn)
    return start + next(i for i, s in enumerate(src) if text in s)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        # a library layer running a callable of the user's: that callable's ops have its lines
        self.block = nn.TransformerEncoderLayer(4, 1, dim_feedforward=8, dropout=0.0, activation=_act, batch_first=True)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))

    def forward(self, x: tt.Tensor) -> tt.Tensor:
        h = self.fc(x)
        h = h * 2.0
        h = self.block(h.reshape(5, 1, 4)).reshape(5, 4)
        return self.head(h)


def _act(x: tt.Tensor) -> tt.Tensor:
    return x * 0.5


def _hook(module: nn.Module, args: tuple, out: tt.Tensor) -> tt.Tensor:
    return out + 1.0


def _train_events(stacks: bool = True, momentum: float = 0.9) -> list[events.OpEvent]:
    rng = np.random.default_rng(0)
    net = Net()
    net.head[1].register_forward_hook(_hook)
    opt = tt.optim.SGD(net.parameters(), lr=0.1, momentum=momentum)
    x = tt.tensor(rng.standard_normal((5, 4)).astype(np.float32))
    y = tt.tensor(rng.integers(0, 2, 5))
    got: list = []
    with events.listen(got.append, stacks=stacks):
        for _ in range(2):
            opt.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
    return [e for e in got if isinstance(e, events.OpEvent)]


def test_events_carry_the_stacks_a_capture_per_op_gives(monkeypatch):
    held = _train_events()
    monkeypatch.setattr(_module, "_library_forward", lambda cls: False)
    monkeypatch.setattr(_optim, "_library_update", lambda cls: False)
    per_op = _train_events()

    def mine(e: events.OpEvent) -> tuple:  # the two runs are called from different lines of this test
        return e.name, tuple(f for f in e.stack if not f.name.startswith("test_"))

    assert [mine(e) for e in held] == [mine(e) for e in per_op]


def test_each_op_points_at_its_own_user_line():
    evs = _train_events()
    first = {}
    for e in evs:
        first.setdefault((e.phase, e.op), e.stack[0])
    assert first[("forward", "linear")].lineno == _line(Net.forward, "self.fc(x)")  # (inside fc: Net.forward's line)
    assert first[("forward", "mul")].lineno == _line(Net.forward, "h * 2.0")
    assert first[("forward", "relu")].lineno == _line(Net.forward, "self.head(h)")
    fc_line = _line(Net.forward, "self.fc(x)")  # a VJP points at its forward op's line
    assert any(e.phase == "backward" and e.op == "linear" and e.stack[0].lineno == fc_line for e in evs)
    hook_adds = [e for e in evs if e.op == "add" and e.stack[0].name == "_hook"]
    assert hook_adds and hook_adds[0].stack[0].lineno == _line(_hook, "out + 1.0")
    acts = [e for e in evs if e.phase == "forward" and e.stack[0].name == "_act"]
    assert acts and acts[0].op == "mul" and acts[0].stack[0].lineno == _line(_act, "x * 0.5")
    assert acts[0].stack[1].name == "forward" and acts[0].stack[1].lineno == _line(Net.forward, "self.block(")
    update = first[("update", "sgd_update")]
    assert update.name == "_train_events" and update.lineno == _line(_train_events, "opt.step()")
    backward_line = _line(_train_events, "loss.backward()")
    accumulations = [e for e in evs if e.op == "accumulate_grad"]
    assert len(accumulations) == 2 * len(list(Net().parameters()))
    assert all(e.stack[0].lineno == backward_line and e.stack[0].name == "_train_events" for e in accumulations)
    plain = [e for e in _train_events(momentum=0.0) if e.phase == "update"]  # plain SGD's own loop
    assert plain and all(e.stack[0].lineno == _line(_train_events, "opt.step()") for e in plain)


def test_no_stacks_are_taken_when_nobody_asks():
    assert all(e.stack is None for e in _train_events(stacks=False) if e.phase != "backward")


def _op_in(a: tt.Tensor) -> tt.Tensor:
    return a + 1.0


def _loop_a(a: tt.Tensor, n: int) -> None:
    for _ in range(n):
        _op_in(a)


def _loop_b(a: tt.Tensor, n: int) -> None:
    for _ in range(n):
        _op_in(a)
        _op_in(a)  # the same caller, stopped at another line


def _loop_stacks() -> list[tuple]:
    got: list = []
    a = tt.tensor(np.ones(3, np.float32))
    with events.listen(got.append, stacks=True):
        for _ in range(2):
            _loop_a(a, 2)
            _loop_b(a, 2)
    return [tuple(f for f in e.stack if not f.name.startswith("test_")) for e in got if isinstance(e, events.OpEvent)]


def test_frames_shared_above_the_innermost_user_frame_are_those_a_full_walk_finds(monkeypatch):
    from tracetensor import _source

    shared = _loop_stacks()  # (with the C accelerator's capture when it is built)

    class Nothing(dict):  # a cache that keeps nothing: every capture walks every frame
        def __setitem__(self, key, value) -> None:
            pass

    # the Python capture, uncached
    monkeypatch.setattr(_source, "_chains", Nothing())
    monkeypatch.setattr(_source, "user_frames", _source.user_frames_py)
    monkeypatch.setattr(_source, "stack_here", _source.stack_here_py)
    monkeypatch.setattr(sys.modules["tracetensor.tensor"], "stack_here", _source.stack_here_py)
    monkeypatch.setattr(sys.modules["tracetensor.tensor"], "_site", sys.modules["tracetensor.tensor"]._site_py)
    assert shared == _loop_stacks()
    callers = [(s[0].name, s[1].name, s[1].lineno) for s in shared]
    assert callers[:2] == [("_op_in", "_loop_a", _line(_loop_a, "_op_in(a)"))] * 2
    assert callers[2:4] == [
        ("_op_in", "_loop_b", _line(_loop_b, "_op_in(a)")),
        ("_op_in", "_loop_b", _line(_loop_b, "_op_in(a)  # the same caller")),
    ]


def test_the_c_and_python_captures_agree_with_and_without_a_held_stack():
    from tracetensor import _source

    if _source.user_frames is _source.user_frames_py:
        pytest.skip("the C accelerator's capture is not in use (TRACETENSOR_PURE=1, no compiler, Python 3.10)")

    calls = [
        (_source.user_frames, ()),
        (_source.user_frames_py, ()),
        (_source.user_frames, (3,)),
        (_source.user_frames_py, (3,)),
        (_source.stack_here, ()),
        (_source.stack_here_py, ()),
    ]

    def captures() -> list:
        out = []
        for fn, args in calls:
            out.append(fn(*args))  # (one line: every capture sees the same frames)
        return out

    free = captures()
    assert free[0] == free[1] and free[2] == free[3] == free[0][:3] and free[4] == free[5] == free[0]
    assert free[0][0].name == "captures" and free[0][1].name == sys._getframe().f_code.co_name
    # a framework call holding the user's stack at this frame (each path keeps its own: the C
    # one in C, per thread, the Python one in `_source.HELD`)
    for hold, release, stack_here in (
        (_source.hold, _source.release, _source.stack_here),
        (_source.hold_py, _source.release_py, _source.stack_here_py),
    ):
        outer = hold()
        try:
            held = outer[2]
            assert held[0].name == free[0][1].name and held[1:7] == free[0][2:8]  # this frame and its callers
            assert stack_here() is held  # only this frame between: the held stack
            nested = captures()  # user code in between (the `captures` frame): captured there
            assert nested[4] == nested[5] == nested[0] == nested[1] and nested[0][0] == free[0][0]
            assert nested[0][1] != held[0] and nested[0][2:] == held[1:7]  # this frame, at the `captures()` line
        finally:
            release(outer)
        after = stack_here()  # released: nothing held, a capture here
        assert after is not held and after[0].lineno != held[0].lineno and after[1:7] == held[1:7]


def test_the_ops_of_one_line_share_one_stack_object():
    """A stack is made once per call chain and shared (the C and the Python capture alike):
    what keys on stacks (a trace's signatures, a profile's groups) compares one object."""
    from tracetensor import _source

    a = tt.tensor(np.ones(3, np.float32))
    for capture in {_source.user_frames, _source.user_frames_py}:
        got: list = []
        with events.listen(got.append, raw=True, stacks=True):
            _loop_a(a, 4)  # (one call: its frame is the same for the four ops)
        stacks = [r[6] for r in got if events.is_raw(r)]
        assert len(stacks) == 4 and all(s is stacks[0] for s in stacks), capture
        again = []
        for _ in range(2):
            again.append(capture())
        assert again[0] is again[1] and again[0][0].name == "test_the_ops_of_one_line_share_one_stack_object"


class _Capture:
    """How a test takes stacks: the C accelerator's capture (where built) or the Python one."""

    def __init__(self, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        from tracetensor import _source

        self.name = name
        if name == "python":
            tensor_mod = sys.modules["tracetensor.tensor"]
            monkeypatch.setattr(_source, "user_frames", _source.user_frames_py)
            monkeypatch.setattr(_source, "stack_here", _source.stack_here_py)
            monkeypatch.setattr(tensor_mod, "stack_here", _source.stack_here_py)
            monkeypatch.setattr(tensor_mod, "_site", tensor_mod._site_py)
        elif _source.user_frames is _source.user_frames_py:
            pytest.skip("the C accelerator's capture is not in use (TRACETENSOR_PURE=1, no compiler, Python 3.10)")


def _relu_at(x: tt.Tensor) -> tuple:
    from tracetensor import _source

    x.relu()
    return _source.user_frames()  # (looked up at the call: the capture under test)


def _forward_of(x: tt.Tensor) -> tuple:
    return _relu_at(x)


def _step_of(x: tt.Tensor) -> tuple:
    return _forward_of(x)


def _pretrain(x: tt.Tensor) -> tuple:
    return _step_of(x)


def _finetune(x: tt.Tensor) -> tuple:
    return _step_of(x)


@pytest.mark.parametrize("capture", ["c", "python"])
def test_a_call_path_that_returns_and_comes_back_from_elsewhere_gets_its_own_stack(monkeypatch, capture):
    """A call's frames are freed when it returns, and the next call's frames often sit at the
    same addresses: the same functions, stopped at the same lines, now called from somewhere
    else (pretraining, then fine-tuning) must show where they were called from this time,
    in captures and in op events alike. (Both captures answered "_pretrain" for every
    fine-tuning step before their caches were keyed by what the frames are, not where.)"""
    _Capture(capture, monkeypatch)
    x = tt.tensor(np.ones(3, np.float32))
    got: list = []
    callers: list[str] = []
    with events.listen(got.append, stacks=True):
        for _ in range(2):
            for caller in (_pretrain, _finetune):
                for _ in range(3):
                    stack = caller(x)
                    assert [f.name for f in stack[:4]] == ["_relu_at", "_forward_of", "_step_of", caller.__name__]
                    callers.append(caller.__name__)
    ops = [e for e in got if isinstance(e, events.OpEvent)]
    assert len(ops) == len(callers) == 12
    for e, caller in zip(ops, callers):
        assert [f.name for f in e.stack[:4]] == ["_relu_at", "_forward_of", "_step_of", caller]
        assert e.stack[0].lineno == _line(_relu_at, "x.relu()")


def test_the_c_capture_never_answers_from_its_cache_for_another_code_or_line():
    """The C capture keeps its last stacks by (code, instruction) of the innermost user frame
    and the frames above it. Functions compiled afresh, one per loop turn, are new code objects
    that could sit where a freed one sat, at the same instruction under the same caller; each
    capture must still be its own (the Python walk, uncached, says which)."""
    from tracetensor import _source

    if _source.user_frames is _source.user_frames_py:
        pytest.skip("the C accelerator's capture is not in use (TRACETENSOR_PURE=1, no compiler, Python 3.10)")
    for i in range(60):
        ns: dict = {}
        exec(compile("\n" * i + "def fresh(capture):\n    return capture()\n", f"<fresh {i % 3}>", "exec"), ns)
        got = [ns["fresh"](c) for c in (_source.user_frames, _source.user_frames_py, _source.user_frames)]
        assert got[0] == got[1] == got[2], i
        assert (got[0][0].filename, got[0][0].lineno) == (f"<fresh {i % 3}>", i + 2)
        del ns, got


def test_a_held_stack_is_its_own_threads():
    """A framework call's held stack serves the ops under it in its thread only: another
    thread's op, at that moment, captures its own user frames (C and Python paths alike)."""
    import threading

    from tracetensor import _source

    for hold, release, stack_here in (
        (_source.hold, _source.release, _source.stack_here),
        (_source.hold_py, _source.release_py, _source.stack_here_py),
    ):
        got: list = []

        def other(stack_here=stack_here, got=got) -> None:
            got.append(stack_here())

        outer = hold()
        try:
            t = threading.Thread(target=other)
            t.start()
            t.join()
            assert stack_here() is outer[2]
        finally:
            release(outer)
        assert got[0] is not outer[2] and got[0][0].name == "other"


def test_a_hold_never_released_leaves_a_stale_stack_not_a_dangling_one():
    """A hold whose release never comes (a KeyboardInterrupt between `hold()` and the caller's
    `try`): the held stack and frame stay alive where they are kept (the C path's own
    references), and later captures are whole: the stale frame is not on the stack."""
    import gc

    from tracetensor import _source

    def held_then_dropped() -> None:
        _source.hold()  # (what it returned is dropped: no release)

    try:
        held_then_dropped()
        gc.collect()
        junk = [tuple(range(i % 50)) for i in range(20_000)]  # (freed memory taken again)
        here = _source.stack_here()
        assert here[0].name == "test_a_hold_never_released_leaves_a_stale_stack_not_a_dangling_one"
        outer = _source.hold()
        assert _source.stack_here() is outer[2]
        _source.release(outer)
        assert len(junk) == 20_000
    finally:
        _source.release((None, None, ()))  # (nothing held, as before the test)
        _source.release_py((None, None, ()))
