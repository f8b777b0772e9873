"""Profiler overhead: an MLP training step (64->128->10, batch 64, SGD) unprofiled, under
`profile()` with timings only, and with shapes+memory+stacks; then `tracetensor profile`
on an example script against plain `python` on it. Ratios against baselines timed in the
same run, cases interleaved round by round so machine noise hits them alike."""

from __future__ import annotations

import os
import pathlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from _common import fmt_time, print_table
from tracetensor.profiler import profile

import tracetensor as tt
import tracetensor.nn as nn
import tracetensor.nn.functional as F
from tracetensor import events

ROOT = pathlib.Path(__file__).resolve().parents[1]


def make_step() -> Callable[[], None]:
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = tt.optim.SGD(model.parameters(), lr=0.05)
    x = tt.tensor(rng.standard_normal((64, 64)).astype(np.float32))
    y = tt.tensor(rng.integers(0, 10, 64))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


class _Null:
    """A listener that drops every event: what the engine itself costs once observed
    (`stacks`/`values`: asking the engine for what the full profile asks)."""

    def __init__(self, stacks: bool = False, values: bool = False) -> None:
        self.lis: events.Listener | None = None
        self.stacks, self.values = stacks, values

    def start(self) -> None:
        self.lis = events.subscribe(lambda e: None, stacks=self.stacks, values=self.values)

    def stop(self) -> None:
        assert self.lis is not None
        self.lis.close()


def step_overhead(number: int = 100, repeat: int = 9) -> dict[str, float]:
    step = make_step()
    cases: dict[str, Callable[[], object] | None] = {
        "unprofiled": None,
        "null listener (engine cost)": _Null,
        "profile() timings only": lambda: profile(),
        "null listener, stacks+values": lambda: _Null(stacks=True, values=True),
        "profile(shapes, memory, stacks)": lambda: profile(record_shapes=True, profile_memory=True, with_stack=True),
    }
    for _ in range(number):
        step()  # warm up
    acc: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeat):
        for name, make in cases.items():
            prof = make() if make is not None else None
            if prof is not None:
                prof.start()
            t0 = time.perf_counter()
            for _ in range(number):
                step()
                if isinstance(prof, profile):
                    prof.step()
            acc[name].append((time.perf_counter() - t0) / number)
            if prof is not None:
                prof.stop()  # builds the report: not part of the per-step cost
    return {k: statistics.median(v) for k, v in acc.items()}


def cli_overhead(repeat: int = 3) -> dict[str, float]:
    script = str(ROOT / "examples" / "mlp_eager.py")
    runs = {
        "python examples/mlp_eager.py": [sys.executable, script, "--steps", "100"],
        "tracetensor profile --no-py-spy": [
            sys.executable,
            "-m",
            "tracetensor",
            "profile",
            "--no-py-spy",
            "--out",
            "{out}",
            script,
            "--steps",
            "100",
        ],
        "tracetensor profile (py-spy on)": [
            sys.executable,
            "-m",
            "tracetensor",
            "profile",
            "--out",
            "{out}",
            script,
            "--steps",
            "100",
        ],
    }
    acc: dict[str, list[float]] = {k: [] for k in runs}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            for name, cmd in runs.items():
                out = os.path.join(tmp, f"o{i}-{len(acc[name])}-{hash(name) % 97}")
                cmd = [c.replace("{out}", out) for c in cmd]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=os.environ)
                acc[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in acc.items()}


def main() -> None:
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        # OpenBLAS's worker threads, fighting other processes for a few cores, make this
        # small step up to 30x slower and bury the overhead in noise: measure single-threaded
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        subprocess.run([sys.executable, __file__], env=env, check=True)
        return
    t = step_overhead()
    base = t["unprofiled"]
    targets = {"profile() timings only": "<= 1.25x", "profile(shapes, memory, stacks)": "<= 1.6x"}
    print_table(
        "profiler overhead per MLP training step (64->128->10, batch 64, SGD)",
        [(k, fmt_time(v), f"{v / base:.2f}x", targets.get(k, "")) for k, v in t.items()],
    )
    null = t["null listener (engine cost)"]
    full = t["null listener, stacks+values"]
    print(
        f"the profiler's own share, against a null listener asking the engine for the same: timings "
        f"{t['profile() timings only'] / null:.2f}x, shapes+memory+stacks "
        f"{t['profile(shapes, memory, stacks)'] / full:.2f}x"
    )
    c = cli_overhead()
    base = c["python examples/mlp_eager.py"]
    print_table(
        "tracetensor profile vs python on examples/mlp_eager.py --steps 100 (whole process, wall)",
        [(k, fmt_time(v), f"{v / base:.2f}x", "") for k, v in c.items()],
    )


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    main()
