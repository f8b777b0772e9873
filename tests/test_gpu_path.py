"""The GPU path's own pieces: summaries computed on the device agree with the host's,
and a cuda training step matches the CPU's. The `gpu` tests skip without a GPU."""

from __future__ import annotations

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
