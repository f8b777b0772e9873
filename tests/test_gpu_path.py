"""The GPU path's own pieces: summaries computed on the device agree with the host's,
a cuda training step matches the CPU's, and checked or summarized GPU ops reach their
listeners in op order without a synchronize per op. The `gpu` tests skip without a GPU."""

from __future__ import annotations

import inspect
import re
import sys

import numpy as np
import pytest

import tracetensor as tt
import tracetensor.nn.functional as F
from tracetensor import events as ev

CASES = {
    "normal": np.random.default_rng(0).standard_normal(4096).astype(np.float32),
    "signs_and_zeros": np.array([0.0, 1.0, -2.0, 0.0, 3.5]),
    "nan": np.array([np.nan, 1.0, -1.0], np.float32),
    "inf": np.array([np.inf, 1.0, -np.inf, 0.0]),
    "all_nan": np.full(5, np.nan, np.float32),
    "float16": np.array([0.5, -1.0, 0.0, 2.0], np.float16),
}
_big = np.random.default_rng(2).standard_normal(3_000_001)  # more elements than one grid covers
_big[[7, 2_999_999]] = np.nan
_big[1_000_000] = -np.inf
CASES["large_float64_with_nan"] = _big


@pytest.mark.parametrize("name", list(CASES))
def test_device_fast_summary_agrees_with_the_full_summary(name: str) -> None:
    # the device fast path is written against the array API cupy shares with numpy;
    # run here with numpy, it must give the full path's summary or hand over (None)
    a = CASES[name]
    fast = ev._device_fast_summary(a, a.size, np)
    if not np.isfinite(a).all():
        assert fast is None  # non-finite values always take the exact, full path
    else:
        assert fast is not None
        np.testing.assert_allclose(tuple(fast), tuple(ev.summarize(a)), rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(CASES))
def test_summary_on_the_gpu_matches_the_cpu(name: str) -> None:
    import cupy

    a = CASES[name]
    np.testing.assert_allclose(tuple(ev.summarize(cupy.asarray(a))), tuple(ev.summarize(a)), rtol=1e-5, equal_nan=True)


@pytest.mark.gpu
def test_recorded_gpu_training_step_matches_the_cpu_and_keeps_summaries(tmp_path) -> None:
    losses = {}
    for dev in ("cpu", "cuda"):
        tt.manual_seed(0)
        model = tt.nn.Sequential(tt.nn.Linear(8, 16), tt.nn.ReLU(), tt.nn.Linear(16, 3)).to(dev)
        opt = tt.optim.SGD(model.parameters(), lr=0.1)
        x = tt.tensor(np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32), device=dev)
        y = tt.tensor([0, 1, 2, 1], device=dev)
        with tt.record(tmp_path / f"{dev}.ttrace", values="summary"):
            out = []
            for _ in range(3):
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                out.append(float(loss.item()))
        losses[dev] = out
        tr = tt.trace.open(tmp_path / f"{dev}.ttrace")
        evs = [e for e in tr.events() if isinstance(e, ev.OpEvent)]
        assert evs and all(e.summaries is not None for e in evs)
        assert all(m.device.startswith(dev) for e in evs for m in e.outputs if m.dtype != "none")
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-5)


def _line(marker: str) -> int:
    src = inspect.getsource(sys.modules[__name__]).splitlines()
    return next(i for i, ln in enumerate(src, 1) if ln.rstrip().endswith(marker))


_rng = np.random.default_rng(5)
STATS_CASES = {
    **CASES,
    "int32": _rng.integers(-5, 6, 1000).astype(np.int32),
    "int64_big": _rng.integers(-(2**40), 2**40, 70_001),
    "uint8": _rng.integers(0, 256, 300).astype(np.uint8),
    "bool": _rng.random(999) < 0.3,
    "transposed": _rng.standard_normal((37, 53)).astype(np.float32).T,
    "strided": _rng.standard_normal(1000)[::3],
}


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(STATS_CASES))
def test_device_statistics_kernel_matches_the_cpu_summary(name: str) -> None:
    # the one-launch kernel the deferred check reads (every dtype it takes, any layout, more
    # elements than one grid covers) against the host's own summary
    import cupy

    from tracetensor import _gpu

    a = STATS_CASES[name]
    st = _gpu.summary_stats(cupy.asarray(a))
    assert st is not None
    np.testing.assert_allclose(
        tuple(ev._summary_from_stats(a.size, st)), tuple(ev.summarize(a)), rtol=1e-5, equal_nan=True
    )


@pytest.mark.gpu
@pytest.mark.parametrize("name", [k for k, a in STATS_CASES.items() if a.dtype.kind == "f"])
def test_device_count_kernel_counts_every_nan_and_inf(name: str) -> None:
    # the check alone (checks without summaries): one launch, the count in a pinned row
    import cupy

    from tracetensor import _gpu

    a = STATS_CASES[name]
    row = _gpu.stats_async(cupy.asarray(a), count=True)
    assert row is not None
    cupy.cuda.get_current_stream().synchronize()
    assert _gpu._take(row)[0] == np.count_nonzero(~np.isfinite(a))


def _gpu_mlp(seed: int = 0):
    tt.manual_seed(seed)
    model = tt.nn.Sequential(tt.nn.Linear(8, 16), tt.nn.ReLU(), tt.nn.Linear(16, 3)).to("cuda")
    x = tt.tensor(np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32), device="cuda")
    return model, tt.optim.SGD(model.parameters(), lr=0.1), x, tt.tensor([0, 1, 2, 1], device="cuda")


def _steps(model, opt, x, y, n: int = 2) -> None:
    for _ in range(n):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        tt.step()


@pytest.mark.gpu
@pytest.mark.parametrize("flags", [{"checks": True}, {"summaries": True}])
def test_checked_gpu_ops_come_later_in_op_order_and_equal_the_checked_at_the_op_ones(flags) -> None:
    from tracetensor import _gpu

    got = {}
    for at_op in (True, False):
        model, opt, x, y = _gpu_mlp()
        items: list = []
        lis = ev.subscribe(items.append, raw=True, at_op=at_op, **flags)
        try:
            _gpu.flush()
            _gpu._appended = 1  # (the queue is next looked at in 7 ops)
            h = model[0](x)
            reached = any(isinstance(i, (tuple, ev.OpEvent)) for i in items)
            queued = any(p[4] is not None for p in _gpu._pending)  # (an op still to be read back)
            # deferred: nothing reached the listener yet, and nothing was waited for
            assert reached == at_op and queued != at_op
            del h
            _steps(model, opt, x, y)
        finally:
            lis.close()
        events = list(ev.materialize(items))
        ops = [e for e in events if isinstance(e, ev.OpEvent)]
        assert [e.seq for e in ops] == sorted(e.seq for e in ops)
        ends = {e.run: i for i, e in enumerate(events) if isinstance(e, ev.RunEnd)}
        # every op reached the listener before its run's end was announced
        assert all(events.index(e) < ends[e.run] for e in ops if e.run in ends)
        got[at_op] = [(e.op, e.phase, e.name, e.stack[0].lineno if e.stack else None) for e in ops]
        if flags.get("summaries"):
            assert all(e.summaries is not None and all(s is None or s.finite for s in e.summaries) for e in ops)
    assert got[True] == got[False]


@pytest.mark.gpu
@pytest.mark.tracetensor_allow_nan
def test_a_recorded_gpu_nan_is_found_at_its_op_and_line_like_on_the_cpu(tmp_path) -> None:
    found = {}
    for dev in ("cpu", "cuda"):
        w = tt.tensor([0.0, 1.0, 4.0], device=dev, requires_grad=True)
        with np.errstate(all="ignore"), tt.record(tmp_path / f"{dev}.ttrace", values="check"):
            for _ in range(3):
                (w * 2).sum().backward()
                tt.step()
            (w.sqrt() * 3).sum().backward()  # GPU NAN LINE
            tt.step()
        bad = tt.trace.open(tmp_path / f"{dev}.ttrace").first_nonfinite()
        assert bad is not None and bad.device.startswith(dev)
        found[dev] = (bad.op, bad.phase, bad.frame.lineno, tuple(bad.summaries[0])[:4])
    assert found["cuda"] == found["cpu"]
    assert found["cuda"][:3] == ("sqrt", "backward", _line("# GPU NAN LINE"))


@pytest.mark.gpu
@pytest.mark.tracetensor_allow_nan
def test_debugging_mode_on_the_gpu_still_raises_at_the_failing_op() -> None:
    x = tt.tensor([4.0, -1.0], device="cuda")
    with tt.debugging.check_numerics_mode():
        with pytest.raises(tt.NumericsError) as e:
            y = x.log()  # GPU FWD
            y * 2  # never reached
    assert str(e.value).startswith("log (forward)")
    assert re.search(rf"test_gpu_path.py:{_line('# GPU FWD')}", str(e.value))
