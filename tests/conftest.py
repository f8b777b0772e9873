"""Shared test setup: `gpu` tests skip without a usable CUDA GPU; each test starts
from a clean engine state (no listeners left behind, grad mode on)."""
from __future__ import annotations

import numpy as np
import pytest

import tracetensor as tt

pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if tt.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with cupy (none available here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_engine():
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
