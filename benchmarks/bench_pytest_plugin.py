"""Cost of the pytest NaN plugin on a suite of 60 small training tests (target: at most 1.2x).

The suite is generated into a temporary folder: ordinary user tests, each training a small
model (MLPs, a convnet, an autoencoder, LayerNorm/GELU, logistic regression; SGD or Adam) for
a few dozen steps and asserting that the loss went down. It runs with the plugin off, in
`grad` and in `all` mode, a fresh pytest subprocess each, interleaved, medians of CPU time.
Anchor: the same tests written for torch, run with `torch.autograd.detect_anomaly()` around
each test against without (skipped, saying so, when torch is not installed).

Two ratios per mode: the whole pytest process, and the tests alone: the CPU time of pytest's
test loop (every test's setup, call and teardown, the plugin's hooks included), timed inside
the process by the suite's conftest. (It was the whole process less a run that collected the
suite and ran no test; two noisy figures subtracted, that swung by 0.1x from run to run.)
Compiled modules are cached, as an installed package has them (in the temporary folder: the
source tree stays clean), and a first round, not counted, writes them.

`python benchmarks/bench_pytest_plugin.py [--repeat N]`     (TT_BENCH_QUICK=1: --repeat 3)
"""

from __future__ import annotations

import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile

from _common import fmt_time

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUICK = bool(os.environ.get("TT_BENCH_QUICK"))

# (model, optimizer, data, loss): written once, for `T` = tracetensor or torch
_KINDS = {
    "mlp_regression": (
        "nn.Sequential(nn.Linear({d}, {h}), nn.ReLU(), nn.Linear({h}, 1))",
        "T.optim.SGD(model.parameters(), lr=0.05)",
        "x = T.randn({n}, {d}); y = x.sum(-1, keepdim=True) * 0.5",
        "F.mse_loss(model(x), y)",
    ),
    "mlp_classifier": (
        "nn.Sequential(nn.Linear({d}, {h}), nn.Tanh(), nn.Linear({h}, 4))",
        "T.optim.SGD(model.parameters(), lr=0.1)",
        "x = T.randn({n}, {d}); y = T.randint(0, 4, ({n},))",
        "F.cross_entropy(model(x), y)",
    ),
    "convnet": (
        "nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 3))",
        "T.optim.Adam(model.parameters(), lr=0.01)",
        "x = T.randn({n}, 1, 8, 8); y = T.randint(0, 3, ({n},))",
        "F.cross_entropy(model(x), y)",
    ),
    "autoencoder": (
        "nn.Sequential(nn.Linear({d}, {h}), nn.Sigmoid(), nn.Linear({h}, {d}))",
        "T.optim.Adam(model.parameters(), lr=0.01)",
        "x = T.randn({n}, {d}); y = x",
        "F.mse_loss(model(x), y)",
    ),
    "layernorm_gelu": (
        "nn.Sequential(nn.Linear({d}, {h}), nn.LayerNorm({h}), nn.GELU(), nn.Linear({h}, 3))",
        "T.optim.Adam(model.parameters(), lr=0.01)",
        "x = T.randn({n}, {d}); y = T.randint(0, 3, ({n},))",
        "F.cross_entropy(model(x), y)",
    ),
    "logistic": (
        "nn.Linear({d}, 1)",
        "T.optim.SGD(model.parameters(), lr=0.5)",
        "x = T.randn({n}, {d}); y = (x[:, :1] > 0).float()",
        "F.binary_cross_entropy_with_logits(model(x), y)",
    ),
}
_SIZES = [(8, 16, 16), (16, 32, 32), (32, 64, 64), (16, 16, 64), (8, 64, 32)]  # (d, h, n)
_STEPS = (20, 40)  # 6 kinds x 5 sizes x 2 lengths = 60 tests

_TEST = """
def test_{name}():
    T.manual_seed({seed})
    model = {model}
    opt = {opt}
    {data}
    first = None
    for _ in range({steps}):
        opt.zero_grad()
        loss = {loss}
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first
"""

_HEAD = {
    "tracetensor": "import tracetensor as T\nfrom tracetensor import nn\nimport tracetensor.nn.functional as F\n",
    "torch": "import torch as T\nfrom torch import nn\nimport torch.nn.functional as F\n",
}

# both suites: the CPU time of pytest's test loop, written where TT_BENCH_LOOP_CPU says
_CONFTEST = """
import os
import time

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session):
    t0 = time.process_time()
    yield
    with open(os.environ["TT_BENCH_LOOP_CPU"], "w") as f:
        f.write(repr(time.process_time() - t0))
"""

# the anchor: torch's detect_anomaly around every test when TT_ANOMALY=1
_TORCH_CONFTEST = """
import torch


@pytest.fixture(autouse=True)
def _anomaly():
    if os.environ.get("TT_ANOMALY") == "1":
        with torch.autograd.detect_anomaly(check_nan=True):
            yield
    else:
        yield
"""


def write_suite(folder: pathlib.Path, framework: str) -> None:
    """The 60 tests, one module per kind, written for `framework` ("tracetensor" or "torch")."""
    folder.mkdir(parents=True, exist_ok=True)
    seed = 0
    for kind, (model, opt, data, loss) in _KINDS.items():
        parts = [_HEAD[framework]]
        for d, h, n in _SIZES:
            for steps in _STEPS:
                seed += 1
                fmt = {"d": d, "h": h, "n": n}
                parts.append(
                    _TEST.format(
                        name=f"{kind}_{d}_{h}_{n}_{steps}",
                        seed=seed,
                        model=model.format(**fmt),
                        opt=opt,
                        data=data.format(**fmt),
                        loss=loss,
                        steps=steps,
                    )
                )
        (folder / f"test_{kind}.py").write_text("\n".join(parts))
    (folder / "conftest.py").write_text(_CONFTEST + (_TORCH_CONFTEST if framework == "torch" else ""))


def cpu_time(folder: pathlib.Path, args: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """CPU seconds (user + system) of one fresh pytest process over `folder`, and of its test
    loop alone (see _CONFTEST)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *args, str(folder)]
    loop_file = folder.parent / "loop_cpu"
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(
        cmd,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            # compiled modules cached as an installed package has them (a machine that sets
            # PYTHONDONTWRITEBYTECODE would otherwise compile every module in every run, and the
            # plugin's imports would count in its tests' time), kept out of the source tree
            "PYTHONPYCACHEPREFIX": str(folder.parent / "pycache"),
            "OMP_NUM_THREADS": "1",
            "TT_BENCH_LOOP_CPU": str(loop_file),
            **(env or {}),
        },
    )
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark suite failed ({' '.join(args)}):\n{p.stdout[-3000:]}\n{p.stderr[-2000:]}")
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), float(loop_file.read_text())


def bench(repeat: int) -> list[tuple[str, str, str, str, str]]:
    with tempfile.TemporaryDirectory(prefix="tt-plugin-bench-") as tmp:
        tt_dir, torch_dir = pathlib.Path(tmp, "tt"), pathlib.Path(tmp, "torch")
        write_suite(tt_dir, "tracetensor")
        try:
            import torch  # noqa: F401

            write_suite(torch_dir, "torch")
            torch_ok = True
        except ImportError:
            torch_ok = False
        cases: dict[str, tuple[pathlib.Path, list[str], dict[str, str] | None]] = {
            "off": (tt_dir, ["--tracetensor-nan=off"], None),
            "grad": (tt_dir, ["--tracetensor-nan=grad"], None),
            "all": (tt_dir, ["--tracetensor-nan=all"], None),
        }
        if torch_ok:
            noplugin = ["-p", "no:tracetensor"]
            cases |= {
                "torch": (torch_dir, noplugin, {"TT_ANOMALY": "0"}),
                "torch anomaly": (torch_dir, noplugin, {"TT_ANOMALY": "1"}),
            }
        times: dict[str, list[float]] = {k: [] for k in cases}
        loops: dict[str, list[float]] = {k: [] for k in cases}
        for r in range(repeat + 1):  # (round 0 warms up: caches the compiled modules)
            for k, (folder, args, env) in cases.items():  # interleaved: noise hits every case alike
                whole, loop = cpu_time(folder, args, env)
                if r:
                    times[k].append(whole)
                    loops[k].append(loop)
    med = {k: statistics.median(v) for k, v in times.items()}
    loop = {k: statistics.median(v) for k, v in loops.items()}

    def ratios(k: str, base: str) -> tuple[str, str]:
        return f"{med[k] / med[base]:.2f}x", f"{loop[k] / loop[base]:.2f}x"

    def rest(k: str) -> str:  # interpreter, imports, pytest's collection and report
        return f"outside the test loop {fmt_time(statistics.median(t - lp for t, lp in zip(times[k], loops[k])))}"

    anchor = "torch: not installed"
    if torch_ok:
        whole, tests = ratios("torch anomaly", "torch")
        anchor = f"torch detect_anomaly {whole} (tests alone {tests})"
    rows = [("60 tests, plugin off", fmt_time(med["off"]), "1.00x", "1.00x", rest("off"))]
    for m in ("grad", "all"):
        whole, tests = ratios(m, "off")
        rows.append((f"60 tests, --tracetensor-nan={m}", fmt_time(med[m]), whole, tests, anchor))
    if torch_ok:
        rows.append(("60 tests in torch, detect_anomaly off", fmt_time(med["torch"]), "", "", rest("torch")))
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    repeat = 3 if QUICK else 5
    if "--repeat" in argv:
        repeat = int(argv[argv.index("--repeat") + 1])
    rows = [("case", "CPU time", "process", "tests alone", "anchor"), *bench(repeat)]
    print(
        f"\npytest plugin on 60 small training tests (CPU time, fresh subprocesses, interleaved, "
        f"median of {repeat}; goal <= 1.2x)"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            print("-" * (sum(widths) + 8))


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    main()
