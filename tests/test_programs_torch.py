"""The PyTorch program corpus (tests/programs/torch/*.py): real-style scripts written with
`import torch`, run as subprocesses with only their imports swapped to tracetensor; and,
where PyTorch is installed, parity runs that start both libraries from the same weights and
compare the printed loss curves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HARNESS = Path(__file__).parent / "programs" / "swap_imports.py"
HERE = HARNESS.parent / "torch"
PROGRAMS = sorted(HERE.glob("*.py"))
# no dropout, no library-drawn shuffling or sampling: with the same weights, the same numbers
PARITY = ["polynomial_function", "cifar_blitz", "lstm_time_series", "schedulers_checkpoint", "gru_classifier"]


def _run(args: list[str], tmp: Path, *, parity: bool = False, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("PARITY_INIT", None)
    if parity:
        env["PARITY_INIT"] = "1"
    return subprocess.run(
        [sys.executable, str(HARNESS), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp
    )


def test_the_harness_answers_torch_imports_with_tracetensor(tmp_path: Path) -> None:
    prog = tmp_path / "which.py"
    prog.write_text(
        "import torch\nimport torch.nn.functional as F\nfrom torch.utils.data import DataLoader\n"
        "from torch.optim.lr_scheduler import StepLR\n"
        "print(torch.__name__, F.__name__, DataLoader.__module__, StepLR.__module__)\n"
    )
    r = _run([str(prog)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [
        "tracetensor",
        "tracetensor.nn.functional",
        "tracetensor.utils.data.dataloader",
        "tracetensor.optim.lr_scheduler",
    ]


@pytest.mark.parametrize("prog", PROGRAMS, ids=lambda p: p.stem)
def test_pytorch_program_runs_with_only_its_imports_swapped(prog: Path, tmp_path: Path) -> None:
    r = _run([str(prog)], tmp_path)
    assert r.returncode == 0, f"{prog.name} failed:\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}"
    assert r.stdout.rstrip().endswith("OK"), r.stdout[-1500:]


def _losses(out: str) -> np.ndarray:
    """Every number printed after the word "loss" (the scripts' own progress lines)."""
    return np.array([float(m) for m in re.findall(r"loss[^0-9-]*(-?\d+\.\d+(?:e-?\d+)?)", out, re.IGNORECASE)])


@pytest.mark.slow
@pytest.mark.parametrize("name", PARITY)
def test_loss_curve_matches_pytorch_from_the_same_weights(name: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    prog = str(HERE / f"{name}.py")
    ours, theirs = _run([prog], tmp_path, parity=True), _run(["--real", prog], tmp_path, parity=True)
    assert ours.returncode == 0, ours.stderr[-3000:]
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    a, b = _losses(ours.stdout), _losses(theirs.stdout)
    assert len(a) == len(b) >= 4, (len(a), len(b))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
