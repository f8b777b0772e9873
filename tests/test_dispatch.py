"""The one dispatch point: an op that cannot run raises the same error (class, message,
source line) whether or not anyone listens to the event stream."""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

import tracetensor as tt
import tracetensor.graph as tf
import tracetensor.nn as nn
import tracetensor.nn.functional as F
from tracetensor import events
from tracetensor.errors import OpError, ShapeError

# the project's own pytest plugin listens during every test; "nobody listens" needs it off
pytestmark = pytest.mark.tracetensor_nan("off")


def _error(fn: Callable[[], object], listen: bool, **flags: bool) -> BaseException:
    if listen:
        with events.listen(lambda e: None, **flags):
            with pytest.raises(Exception) as info:
                fn()
    else:
        assert not events.is_listening()
        with pytest.raises(Exception) as info:
            fn()
    return info.value


def _same_either_way(fn: Callable[[], object]) -> BaseException:
    quiet = _error(fn, False)
    for flags in ({}, {"stacks": True, "summaries": True, "values": True}, {"raw": True, "names": False}):
        loud = _error(fn, True, **flags)
        assert type(loud) is type(quiet)
        assert str(loud) == str(quiet)
    return quiet


def _sgd_with_wrong_grad(opt_cls: type, **kw: object) -> Callable[[], object]:
    def run() -> None:
        p = tt.tensor(np.ones((2, 3), np.float32), requires_grad=True)
        opt = opt_cls([p], lr=0.1, **kw)
        p.grad = tt.tensor(np.ones((4,), np.float32))  # a gradient of the wrong shape
        opt.step()

    return run


@pytest.mark.parametrize("opt_cls, kw", [(tt.optim.SGD, {}), (tt.optim.SGD, {"momentum": 0.9}), (tt.optim.Adam, {})])
def test_an_update_with_a_wrongly_shaped_gradient_raises_one_shape_error(opt_cls, kw):
    err = _same_either_way(_sgd_with_wrong_grad(opt_cls, **kw))
    assert isinstance(err, ShapeError)
    assert "(4,)" in str(err) and "(2, 3)" in str(err)
    assert err.frame is not None and err.frame.filename == __file__


def test_a_broadcastable_but_wrong_gradient_is_refused_too():
    p = tt.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    opt = tt.optim.SGD([p], lr=0.1)
    p.grad = tt.tensor(np.ones((3,), np.float32))  # would broadcast silently into (2, 3)
    with pytest.raises(ShapeError):
        opt.step()
    assert np.array_equal(p.detach().numpy(), np.ones((2, 3)))


def test_a_forward_error_reads_the_same_with_and_without_a_listener():
    a, b = tt.ones(2, 3), tt.ones(4, 5)
    err = _same_either_way(lambda: a @ b)
    assert isinstance(err, ShapeError) and "(2, 3)" in str(err) and "(4, 5)" in str(err)
    err = _same_either_way(lambda: a + b)
    assert isinstance(err, ShapeError)


def test_a_graph_node_error_reads_the_same_with_and_without_a_listener():
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [None, None])
        y = tf.matmul(x, tf.constant(np.ones((3, 2), np.float32)), name="proj")
    with tf.Session(graph=g) as sess:
        err = _same_either_way(lambda: sess.run(y, {x: np.ones((2, 4), np.float32)}))
    assert isinstance(err, OpError) and "proj" in str(err)


def _linear_step(x_shape: tuple[int, ...], dtype: type, bias_grad: bool = True) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    x = tt.tensor(rng.standard_normal(x_shape).astype(dtype), requires_grad=True)
    w = tt.tensor(rng.standard_normal((5, x_shape[-1])).astype(dtype), requires_grad=True)
    b = tt.tensor(rng.standard_normal(5).astype(dtype), requires_grad=bias_grad)
    out = tt.nn.functional.linear(x, w, b)
    (out * out).sum().backward()
    return [out.detach().numpy(), x.grad.numpy(), w.grad.numpy()] + ([b.grad.numpy()] if bias_grad else [])


@pytest.mark.parametrize(
    "x_shape, dtype, bias_grad",
    [((8, 3), np.float32, True), ((2, 4, 3), np.float64, True), ((8, 3), np.float32, False)],
)
def test_linear_gives_the_same_values_and_gradients_with_and_without_a_listener(x_shape, dtype, bias_grad):
    # nobody listening, F.linear runs one fused op; a listener sees (and gets) matmul then add
    quiet = _linear_step(x_shape, dtype, bias_grad)
    with events.listen(lambda e: None):
        loud = _linear_step(x_shape, dtype, bias_grad)
    assert all(q.dtype == lo.dtype and np.array_equal(q, lo) for q, lo in zip(quiet, loud, strict=True))


def test_a_linear_layer_error_reads_the_same_with_and_without_a_listener():
    layer = tt.nn.Linear(4, 5)
    err = _same_either_way(lambda: layer(tt.ones(2, 3)))
    assert isinstance(err, ShapeError) and "matmul" in str(err) and "(2, 3)" in str(err)
    assert err.frame is not None and err.frame.filename == __file__


# ------------------------------------------------------------------ the C accelerator


def test_the_c_accelerator_is_built_and_in_use():
    """`pip install -e .` compiles tracetensor/_speedups.c where a C compiler is found; a
    silent fallback to the Python path there (a failed build) shows here, not as a slower
    benchmark. (Without a compiler the Python path is the expected one.)"""
    import shutil
    import sysconfig

    from tracetensor import _dispatch

    if os.environ.get("TRACETENSOR_PURE"):
        assert not _dispatch.ACCELERATED and _dispatch.dispatch is _dispatch.dispatch_py
        return
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None and not _dispatch.ACCELERATED:
        pytest.skip(f"no C compiler ({cc}): the Python path is in use, as it should be")
    assert _dispatch.ACCELERATED and _dispatch.dispatch is not _dispatch.dispatch_py


def _both_paths():
    from tracetensor import _dispatch

    if not _dispatch.ACCELERATED:
        pytest.skip("the C accelerator is not built (TRACETENSOR_PURE=1 or no compiler)")
    return _dispatch, (_dispatch.dispatch, _dispatch.dispatch_py)


@pytest.mark.parametrize("names,checks", [(False, False), (True, False), (True, True)])
def test_the_c_and_python_dispatch_make_the_same_records(names, checks):
    _dispatch, paths = _both_paths()
    op = tt._registry.REGISTRY["matmul"]
    a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    site = _dispatch.site_of(op) if not names else _dispatch.Site(op, name="mm", device=tt.device("cpu"))
    vjp = _dispatch.site_of(tt._registry.REGISTRY["sparse_softmax_cross_entropy"])
    logits, labels = np.zeros((2, 3), np.float32), np.array([0, 2])
    got: dict = {}
    for d in paths:
        recs: list = []
        with events.listen(recs.append, raw=True, names=names, checks=checks):
            out = d(site, op.forward, (np, a, b), (a, b))
            out2 = d(vjp, vjp.op.forward, (np, logits, labels), (logits, labels), {"axis": -1})
            if checks:  # an output that fails the check: a full event, whichever path
                bad = d(site, op.forward, (np, a * np.nan, b), (a * np.nan, b))
                full = recs.pop()
                assert np.isnan(bad).all() and isinstance(full, events.OpEvent)
                assert full.summaries[0].nan == bad.size and full.stack and full.name == "mm"
        assert np.array_equal(out, a @ b) and isinstance(out2, tuple)  # (a saving op: output, residuals)
        ops = [r for r in recs if events.is_raw(r)]
        assert len(ops) == 2
        got[d] = [(r[0], r[2] > 0, r[3] <= r[4], r[5], r[6], *r[7:]) for r in ops]
        assert ops[0][1] < ops[1][1]  # sequence numbers in order
        evs = [e for e in events.materialize(recs) if isinstance(e, events.OpEvent)]
        assert [(e.op, e.outputs[0].shape) for e in evs] == [("matmul", (2, 4)), ("sparse_softmax_cross_entropy", (2,))]
    assert got[paths[0]] == got[paths[1]]


@pytest.mark.parametrize("listen", [None, {"raw": True, "names": False}, {}])
def test_the_c_and_python_dispatch_raise_the_same_error(listen):
    _dispatch, paths = _both_paths()
    op = tt._registry.REGISTRY["matmul"]
    a, b = np.ones((2, 3)), np.ones((2, 3))
    errs = []
    for d in paths:
        with events.listen(lambda e: None, **listen) if listen is not None else contextlib.nullcontext():
            with pytest.raises(ShapeError) as info:
                d(_dispatch.site_of(op), op.forward, (np, a, b), (a, b))
        e = info.value
        assert e.__cause__ is None and e.__suppress_context__ and isinstance(e.__context__, ValueError)
        errs.append((type(e), str(e)))
    assert errs[0] == errs[1]

    def interrupted(xp, x):
        raise KeyboardInterrupt

    for d in paths:  # only Exceptions become op errors: an interrupt passes unchanged
        with pytest.raises(KeyboardInterrupt):
            d(_dispatch.site_of(op), interrupted, (np, a), (a,))


@pytest.mark.skipif(bool(os.environ.get("TRACETENSOR_PURE")), reason="already the Python path")
def test_the_python_path_passes_the_dispatch_and_record_tests_too():
    """TRACETENSOR_PURE=1 runs the Python dispatch point (what an install without a C
    compiler gets): the dispatch, raw-record, NaN-check and stack tests pass on it as well."""
    here = pathlib.Path(__file__).parent
    env = {**os.environ, "TRACETENSOR_PURE": "1"}
    files = [str(here / f) for f in ("test_dispatch.py", "test_raw_records.py", "test_checks.py", "test_stacks.py")]
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *files],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and " failed" not in r.stdout


@pytest.mark.gpu
def test_an_unnamed_site_on_a_gpu_array_is_placed_on_its_device():
    """A `names=False` listener's shared sites carry no device: an op on a cupy array gets
    its device's copy of the site (made once), so its event says cuda and is CUDA-timed."""
    import cupy

    from tracetensor import _dispatch

    site = _dispatch.site_of(tt._registry.REGISTRY["relu"])
    placed, dev = _dispatch._placed(site, cupy.ones(3))
    assert str(dev) == "cuda:0" and placed.device == dev and placed.op is site.op and placed is not site
    assert _dispatch._placed(site, cupy.ones(2))[0] is placed
    assert _dispatch._placed(site, np.float32(1.0)) == (site, None)  # a numpy scalar: the CPU
    got: list = []
    with events.listen(got.append, raw=True, names=False):
        run = events.begin_run("step")
        (tt.ones(64, 64, device="cuda") @ tt.ones(64, 64, device="cuda")).relu()
        events.end_run(run)
    evs = events.materialize(got)
    ops = [e for e in evs if isinstance(e, events.OpEvent)]
    assert [(e.op, e.device) for e in ops][-2:] == [("matmul", "cuda:0"), ("relu", "cuda:0")]
    timed = {e.seq for e in evs if isinstance(e, events.DeviceTime)}
    assert {e.seq for e in ops[-2:]} <= timed


def test_records_and_events_are_not_gc_tracked():
    """A profile or a recording holds thousands of records or events; tracked, each would
    count toward the next full collection of the process (seen: 7.9x instead of 4.6x for a
    summary recording beside torch). Untracked: records, events without values and their
    summaries; `untrack` refuses anything that could be in a cycle."""
    import gc
    import typing

    _dispatch, _ = _both_paths()
    from tracetensor import _speedups

    got: list = []
    with events.listen(got.append, summaries=True):
        (tt.ones(3, 3) * 2).sum()
    ops = [e for e in got if isinstance(e, events.OpEvent)]
    assert ops and all(not gc.is_tracked(e) and not gc.is_tracked(e.summaries) for e in ops)
    assert all(not gc.is_tracked(s) for e in ops for s in e.summaries)
    assert ops[0].summaries[0].size == 9 and ops[0].summaries[0].max == 2.0  # (still Summaries)

    with events.listen(got.append, values=True):  # an event holding arrays stays tracked
        tt.ones(2) * 3
    held = [e for e in got if isinstance(e, events.OpEvent) and e.values is not None]
    assert held and all(gc.is_tracked(e) for e in held)
    recs: list = []
    with events.listen(recs.append, raw=True, stacks=True):  # the records of a profile, a trace
        (tt.ones(3, 3) * 2).sum()
    assert [r for r in recs if events.is_raw(r)] and not any(gc.is_tracked(r) for r in recs if events.is_raw(r))

    marks: list = []
    with events.listen(marks.append, raw=True):  # run markers: numbers and strings
        run = events.begin_run("step", name="s")
        events.end_run(run, "ValueError: x")
    assert [type(m) for m in marks] == [events.RunStart, events.RunEnd]
    assert not any(gc.is_tracked(m) for m in marks) and marks[1].error == "ValueError: x"

    holder: list = []
    mixed = (1, holder)  # an item that is tracked: could be in a cycle, stays tracked
    assert _speedups.untrack(mixed) is mixed and gc.is_tracked(mixed)

    class WithDict(tuple):  # a __dict__ could hold anything: refused
        pass

    s = WithDict((1, 2))
    s.note = holder
    assert _speedups.untrack(s) is s and gc.is_tracked(s)

    class Pair(typing.NamedTuple):
        a: int
        b: float

    p = Pair(1, 2.0)
    assert gc.is_tracked(p) and _speedups.untrack(p) is p and not gc.is_tracked(p)


def test_a_timing_listener_leaves_the_cyclic_gc_nothing_per_step():
    """A training loop makes the same output shapes step after step: its records share one
    tuple per shape and signature, and neither they nor the run markers are tracked, so a
    listened loop hands the collector no more objects than an unlistened one (each shape tuple
    kept was a young object every collection walked: 0.02x of a timing-only profile)."""
    import gc

    _both_paths()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = tt.optim.SGD(model.parameters(), lr=0.1)
    x, y = tt.randn(4, 8), tt.tensor([0, 2, 1, 0])

    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    got: list = []
    with events.listen(got.append, raw=True, names=False):
        for i in range(103):
            if i == 3:  # (warm: sites and caches made)
                gc.collect()
                gc.disable()
                before = len(gc.get_objects())
                kept = len(got)
            step()
        grew = len(gc.get_objects()) - before
        gc.enable()
    recs = [r for r in got[kept:] if events.is_raw(r)]
    assert len(recs) >= 100 * 10 and grew < 50, grew  # (without sharing: 29 a step on this model)
    objects: dict = {}
    for r in recs:  # equal shapes (signatures of several outputs) are one object
        sig = r[7] if r[7] is not None else r[8]
        objects.setdefault(sig, set()).add(id(sig))
    assert len(objects) > 3 and all(len(ids) == 1 for ids in objects.values())
    assert events.materialize(got[kept : kept + 30])[1].outputs[0].shape == (4, 16)  # (still the shapes)


def test_shared_shapes_stay_bounded_and_right_past_the_bound():
    _dispatch, paths = _both_paths()
    op = tt._registry.REGISTRY["neg"]
    got: list = []
    with events.listen(got.append, raw=True, names=False):
        for n in range(1, 4200 + 1):  # past the 4,096 kept
            a = np.zeros((n, 1), np.float32)
            _dispatch.dispatch(_dispatch.site_of(op), op.forward, (np, a), (a,))
    shapes = [r[7] for r in got if events.is_raw(r)]
    assert shapes == [(n, 1) for n in range(1, 4200 + 1)]

    class Odd:  # an output that is not numpy's, its shape a list: recorded as it is
        shape, dtype, nbytes = [3], np.dtype("float32"), 12

    got.clear()
    with events.listen(got.append, raw=True, names=False):
        out = _dispatch.dispatch(_dispatch.site_of(op), lambda xp, a: Odd(), (np, a), (a,))
    assert isinstance(out, Odd) and [r[7] for r in got if events.is_raw(r)] == [[3]]


def test_an_outputs_listener_gets_each_output_beside_its_record_on_both_paths():
    _dispatch, paths = _both_paths()
    op = tt._registry.REGISTRY["matmul"]
    xent = _dispatch.site_of(tt._registry.REGISTRY["sparse_softmax_cross_entropy"])
    a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    logits, labels = np.zeros((2, 3), np.float32), np.array([0, 2])
    for d in paths:
        pairs: list = []
        with events.listen(lambda rec, out=None, pairs=pairs: pairs.append((rec, out)), raw=True, outputs=True):
            out = d(_dispatch.site_of(op), op.forward, (np, a, b), (a, b))
            saved = d(xent, xent.op.forward, (np, logits, labels), (logits, labels), {"axis": -1})
        ops = [(r, o) for r, o in pairs if events.is_raw(r)]
        assert [o is out for _, o in ops] == [True, False] and ops[1][1] is saved[0]  # (the output, not residuals)


def test_a_closed_listener_is_not_kept_alive_by_the_accelerator():
    """The C record path keeps each listeners tuple's callbacks; closing a listener drops
    them, so a profile's buffer is freed with the profile, ops or no ops after it."""
    import gc
    import weakref

    _both_paths()

    class Sink(list):
        pass

    sink = Sink()
    with events.listen(sink.append, raw=True, names=False):
        tt.ones(2, 2).relu()
    assert any(events.is_raw(r) for r in sink)
    gone = weakref.ref(sink)
    del sink
    gc.collect()
    assert gone() is None


def test_the_c_naming_lookups_give_what_the_python_ones_give():
    """`op_name` and `named_site` answer their cache hits in C: the same names (counters
    included, past the names cache's cap too) and the same Sites as the Python functions."""
    _dispatch, _ = _both_paths()
    from tracetensor import _naming

    assert _naming.op_name is not _naming.op_name_py and _dispatch.named_site is not _dispatch.named_site_py

    def names(op_name):
        _naming.reset()
        got = []
        with _naming.name_scope("Net"):
            for i in range(1030):
                got.append(op_name("matmul"))
                if i % 100 == 0:
                    with _naming.name_scope(f"block{i}"):
                        got += [op_name("relu"), op_name("relu")]
        got.append(op_name("matmul"))
        return got

    c, py = names(_naming.op_name), names(_naming.op_name_py)
    assert c == py and c[:4] == ["Net/matmul", "Net/block0/relu", "Net/block0/relu_1", "Net/matmul_1"]
    assert c[-1] == "matmul" and "Net/matmul_1029" in c

    for named_site in (_dispatch.named_site, _dispatch.named_site_py):
        made = []  # (a maker of its own: sites are cached per maker and name)
        make = lambda name, *parts, made=made: (
            made.append(parts) or _dispatch.Site(tt._registry.REGISTRY["relu"], name=name)
        )
        first = named_site(make, "x", ("a",), 1)
        assert named_site(make, "x", ("a",), 1) is first  # equal parts: the same Site
        assert named_site(make, "x", ("a",), 2) is not first  # changed: made again
        assert named_site(make, "y", ("a",), 2).name == "y"
        assert made == [(("a",), 1), (("a",), 2), (("a",), 2)]


def test_the_c_forward_site_is_the_python_one():
    """An observed eager op's Site (its name, its inputs' names, the stack when asked) comes
    from C when the accelerator is built: the same Site as the Python `_site`, leaves named
    on the way, in and out of module scopes, with and without stacks."""
    import importlib

    T = importlib.import_module("tracetensor.tensor")
    from tracetensor import _naming

    if T._site is T._site_py:
        pytest.skip("the C accelerator is not built (TRACETENSOR_PURE=1 or no compiler)")
    op = tt._registry.REGISTRY["add"]
    a, b = tt.ones(2), tt.ones(2)
    for stacks in (False, True):
        got = []
        for site in (T._site, T._site_py):
            a._name = b._name = None
            _naming.reset()
            with events.listen(lambda e: None, stacks=stacks), _naming.name_scope("Net"):
                s1 = site(op, (a, b), a._device)
                s2 = site(op, (a, a), a._device)
            got.append((s1, s2, a._name, b._name))
        (c1, c2, ca, cb), (p1, p2, pa, pb) = got
        assert c1.name == p1.name == "Net/add" and c2.name == p2.name == "Net/add_1"
        assert c1.inputs == (ca, cb) and p1.inputs == (pa, pb) and ca.startswith("tensor_")
        assert c1._replace(inputs=p1.inputs) == p1 and (c1.stack is not None) == stacks


def test_a_gpu_arrays_unnamed_site_is_placed_as_itself_even_at_a_freed_sites_address(monkeypatch):
    """An unnamed site running on a GPU array gets a copy that says which device (made once,
    kept by the site's id). A site freed and another made at its address must get its own
    copy, not the freed one's (whose op would then name the event). (No GPU here: the device
    is the one thing stood in for, `device_of`'s answer for a cupy array on GPU 1.)"""
    device = sys.modules["tracetensor.device"]
    from tracetensor._dispatch import Site, _placed
    from tracetensor._registry import REGISTRY

    monkeypatch.setattr(device, "device_of", lambda a: f"cuda:{a.device.id}")

    class _Dev:
        id = 1

    class GpuLike:  # what `_placed` reads of a cupy array
        __cuda_array_interface__: dict = {}
        device = _Dev()

    a = GpuLike()
    first = Site(REGISTRY["relu"], "backward", stack=())
    where = id(first)
    placed, dev = _placed(first, a)
    assert placed.op is REGISTRY["relu"] and dev == "cuda:1"
    del first, placed
    for _ in range(1000):  # (a tuple of the same size is made where a freed one was, most often at once;
        other = Site(REGISTRY["exp"], "backward", stack=())  # where the cache keeps `first`, never)
        if id(other) == where:
            break
    placed, dev = _placed(other, a)
    assert placed.op is REGISTRY["exp"] and placed.phase == "backward" and dev == "cuda:1"
