"""Shared test setup: `gpu` tests skip without a usable CUDA GPU; each test starts
from a clean engine state (no listeners left behind, grad mode on) and seeded generators."""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
import pytest

import tracetensor as tt

pytest_plugins = ["pytester"]


def _import_every_module() -> None:
    """pytester's in-process runs unload every module imported during them; a tracetensor
    module first imported inside one (a lazily imported graph or summary module) would
    then be imported anew later, and its classes and ops would no longer be the ones the
    rest of the engine holds. Imported here, before any test, they stay put."""
    import tracetensor.debugger
    import tracetensor.profiler

    for pkg in (tt, tracetensor.debugger, tracetensor.profiler):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if m.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(m.name)
            except ImportError:  # an optional extra (tensorboard, mpi4py) that is not installed
                pass


_import_every_module()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if tt.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with cupy (none available here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_engine():
    # Every test draws the same numbers however the suite is ordered or filtered: a test that
    # trains from tt.randn or np.random's global state cannot pass or fail by the luck of the
    # tests run before it.
    tt.manual_seed(0)
    np.random.seed(0)
    yield
    from tracetensor.events import STATE

    leftover = STATE.listeners
    for lis in leftover:
        lis.close()
    tt.set_grad_enabled(True)
    assert not leftover, f"a test left {len(leftover)} event listener(s) subscribed"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
