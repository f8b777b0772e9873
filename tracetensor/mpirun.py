"""Runs a Python function on N MPI ranks (`mpiexec -n N`) and brings back each rank's
return value; the pytest plugin's `tt_distributed` fixture is glue over this."""

from __future__ import annotations

import inspect
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from typing import Any

from .distributed import INSTALL_HINT, find_mpiexec, is_available, launcher_env


class MPIUnavailable(RuntimeError):
    """No mpi4py or no mpiexec here."""


class MPIJobError(RuntimeError):
    """The job failed or ran out of time; the message holds the ranks' output."""


_RUNNER = """
import pickle, sys
from mpi4py import MPI
{source}
_result = {name}()
with open({out!r} + f".{{MPI.COMM_WORLD.Get_rank()}}.pkl", "wb") as _f:
    pickle.dump(_result, _f)
"""


def run_function(fn: Callable[[], Any], n: int = 2, timeout: float = 60.0, workdir: str | None = None) -> list[Any]:
    """Runs `fn` (a function taking no arguments that does its own imports: only its source
    travels) on `n` ranks; returns [rank 0's result, rank 1's, ...]. A rank that fails, or a job
    that outlives `timeout` seconds, raises MPIJobError with the output of every rank."""
    mpiexec = find_mpiexec()
    if not is_available() or mpiexec is None:
        raise MPIUnavailable(f"needs mpi4py and mpiexec: {INSTALL_HINT}")
    workdir = workdir or tempfile.mkdtemp(prefix="tt-mpi-")
    src = textwrap.dedent(inspect.getsource(fn))
    out = os.path.join(os.fspath(workdir), f"{fn.__name__}.result")
    script = os.path.join(os.fspath(workdir), f"{fn.__name__}_mpi.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(_RUNNER.format(source=src, name=fn.__name__, out=out))
    code, text = run_command([mpiexec, "-n", str(n), sys.executable, script], timeout, cwd=os.fspath(workdir))
    if code != 0:
        raise MPIJobError(f"{fn.__name__} on {n} ranks failed (exit code {code}):\n{text}")
    results = []
    for r in range(n):
        with open(f"{out}.{r}.pkl", "rb") as f:  # written by our own child process just now
            results.append(pickle.load(f))
    return results


def run_command(cmd: list[str], timeout: float, cwd: str | None = None) -> tuple[int, str]:
    """Runs a launcher command in its own process group, so that on timeout every rank is
    killed, not just mpiexec. Returns (exit code, stdout+stderr); 124 on timeout."""
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        start_new_session=True,
        env=launcher_env(),
    )
    try:
        text, _ = p.communicate(timeout=timeout)
        return p.returncode, text
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        text, _ = p.communicate()
        return 124, f"{text}\n(timed out after {timeout} s: every rank was killed)"
