"""Eager steps reuse their large temporaries' memory instead of faulting in fresh pages
every step (glibc malloc's thresholds: see tracetensor/_malloc.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


pytestmark = pytest.mark.skipif(not _glibc(), reason="the thresholds are glibc malloc's")

# the bigger model: its activations (256 x 1024 float32, 1 MiB) are past glibc's
# first mmap threshold (128 KiB)
_STEPS = """
import resource
import numpy as np
import tracetensor as tt
import tracetensor.nn.functional as F
from tracetensor import _malloc, nn
rng = np.random.default_rng(0)
model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
opt = tt.optim.SGD(model.parameters(), lr=0.01)
x = tt.tensor(rng.standard_normal((256, 512)).astype(np.float32))
y = tt.tensor(rng.integers(0, 10, 256))
def step():
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(_malloc.TUNED, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _run(**env: str) -> tuple[bool, float]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", _STEPS], env={**e, **env}, capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    return out[0] == "True", float(out[1])


def test_a_training_step_of_a_bigger_model_reuses_its_memory() -> None:
    tuned, faults = _run()
    assert tuned
    assert faults < 50, f"{faults} page faults a step: the step's temporaries come fresh from the kernel"
    # (glibc's own defaults, for comparison: the step's arrays, page by page, every step)
    default, faults_default = _run(TRACETENSOR_MALLOC="default")
    assert not default and faults_default > 10 * max(faults, 1)


def test_thresholds_the_user_set_are_left_as_they_are() -> None:
    assert _run(MALLOC_TRIM_THRESHOLD_="1000000")[0] is False
    assert _run(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=1000000")[0] is False
    # other malloc options are not these thresholds (MALLOC_ARENA_MAX=2: a common container default)
    assert _run(MALLOC_ARENA_MAX="2")[0] is True
    assert _run(GLIBC_TUNABLES="glibc.malloc.arena_max=2")[0] is True
