"""pytest plugin (entry point `pytest11`): fails a test whose gradients went NaN or
infinite, naming the first bad tensor, its op, the parameter it flows into and the
user's forward line.

Glue only; the logic is in `tracetensor.nancheck`, imported on the first checked
test. Only the call phase is watched (a listener closed before fixture teardown); a
test that never ran a tracetensor op adds nothing to report. Every op output is checked
for NaN/inf exactly but cheaply (`tt.events.subscribe(checks=True, only_nonfinite=True)`:
one reduction per output and nothing else until a check fails; full summaries and the user's
line where one does, and every op after it for the report); a test that asks for the
`tt_numerics` fixture gets full summaries of every tensor, at more cost.

Settings, strongest first: `@pytest.mark.tracetensor_allow_nan` / `@pytest.mark.
tracetensor_nan(mode)` on a test, `--tracetensor-nan=MODE`, ini `tracetensor_nan`,
default `grad`. Modes: `grad` (backward ops, accumulated gradients, optimizer
updates), `all` (every op output, forward too), `off`.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tracetensor.nancheck import Numerics

MODES = ("grad", "all", "off")  # also tracetensor.nancheck.MODES; kept here to import nothing
DEFAULT = "grad"
NAN_HELP = (
    "tracetensor: fail a test when a tensor it computes holds NaN or inf: "
    "'grad' checks backward ops, gradients and optimizer updates (default), "
    "'all' also checks forward outputs, 'off' disables the check."
)
ALLOW_MARKER = (
    "tracetensor_allow_nan: tracetensor does not fail this test for NaN/inf values "
    "(the tt_numerics fixture still records them)."
)
MODE_MARKER = "tracetensor_nan(mode): the tracetensor NaN/inf check mode for this test: grad, all or off."
SECTION = "tracetensor: non-finite values"


@dataclass(frozen=True)
class Settings:
    mode: str
    source: str  # where the mode came from, for messages


SETTINGS = pytest.StashKey[Settings]()
NUMERICS = pytest.StashKey["Numerics"]()
REPORT = pytest.StashKey[str]()
THREADS = pytest.StashKey[dict]()  # ident of a thread a test started and left running -> that test


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tracetensor")
    group.addoption(
        "--tracetensor-nan", action="store", dest="tracetensor_nan", default=None, metavar="MODE", help=NAN_HELP
    )
    parser.addini("tracetensor_nan", NAN_HELP)


def _check(value: str, source: str) -> str:
    mode = value.strip().lower()
    if mode not in MODES:
        raise pytest.UsageError(
            f"tracetensor: invalid NaN check mode {value!r} from {source}; expected one of {', '.join(MODES)}"
        )
    return mode


def get_settings(config: pytest.Config) -> Settings:
    """Command line over ini over the default; a bad value is a usage error naming its source."""
    cli = config.getoption("tracetensor_nan")
    if cli is not None:
        return Settings(_check(cli, "the command line (--tracetensor-nan)"), "command line")
    ini = config.getini("tracetensor_nan")
    if ini:
        where = "ini option tracetensor_nan" + (f" in {config.inipath}" if config.inipath else "")
        return Settings(_check(ini, where), where)
    return Settings(DEFAULT, "default")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", ALLOW_MARKER)
    config.addinivalue_line("markers", MODE_MARKER)
    config.stash[SETTINGS] = get_settings(config)


def pytest_report_header(config: pytest.Config) -> str | None:
    s = config.stash.get(SETTINGS, None)
    if s is None or s.source == "default":
        return None
    return f"tracetensor: NaN check {s.mode} (from {s.source})"


def _mode_for(item: pytest.Item) -> str:
    if item.get_closest_marker("tracetensor_allow_nan") is not None:
        return "off"
    m = item.get_closest_marker("tracetensor_nan")
    if m is not None and m.args:
        return _check(str(m.args[0]), f"the marker on {item.nodeid}")
    return item.config.stash[SETTINGS].mode


@pytest.fixture
def tt_numerics(request: pytest.FixtureRequest) -> Numerics:
    """What tracetensor observed during this test's call: `.findings` (non-finite
    tensors, in execution order with `.ordered()`), `.grads("fc1.weight")` (a Summary per
    backward pass), `.params()`, `.report()`. Recorded whatever the check mode; asking for
    it makes the test keep full summaries of every tensor (slower than the plain check)."""
    from tracetensor.nancheck import Numerics

    n = Numerics()
    request.node.stash[NUMERICS] = n
    return n


@pytest.fixture
def tt_distributed(tmp_path: Any) -> Any:
    """Runs a function on MPI ranks: `tt_distributed(fn, n=2, timeout=60)` runs `fn` (no
    arguments; it does its own imports, since only its source travels) under `mpiexec -n 2`
    and returns [rank 0's return value, rank 1's, ...]; a failing rank fails the test with
    every rank's output. Skips the test where mpi4py or mpiexec is missing."""
    from tracetensor.mpirun import MPIUnavailable, run_function

    def run(fn: Any, n: int = 2, timeout: float = 60.0) -> list[Any]:
        try:
            return run_function(fn, n, timeout, workdir=str(tmp_path))
        except MPIUnavailable as e:
            pytest.skip(f"tt_distributed: {e}")

    return run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    mode = _mode_for(item)
    numerics = item.stash.get(NUMERICS, None)
    if numerics is None:
        # nothing to check: the mode is off, or tracetensor was never imported (no events can come)
        if mode == "off" or "tracetensor.events" not in sys.modules:
            return (yield)
        from tracetensor.nancheck import Numerics

        numerics = Numerics(summaries=False)  # the exact check alone: cheap enough to leave on
    before = _background_threads(item, numerics)
    numerics.start()  # listens only during the call: fixtures' setup and teardown are not checked
    try:
        result = yield
    except BaseException:
        numerics.stop()
        _after_call(item, numerics, before)
        _keep_report(item, numerics, mode)
        raise
    numerics.stop()
    _after_call(item, numerics, before)
    if _keep_report(item, numerics, mode):
        pytest.fail(numerics.reason(mode) + f"\n(details in the section '{SECTION}' below)", pytrace=False)
    return result


def _background_threads(item: pytest.Item, numerics: Numerics) -> set[int | None]:
    """Threads earlier tests started and left running are not this test's: NaN they make is
    reported as theirs. Returns the threads alive now."""
    alive = {t.ident for t in threading.enumerate()}
    owners = item.config.stash.setdefault(THREADS, {})
    for ident in [k for k in owners if k not in alive]:  # ended: its ident may be reused
        del owners[ident]
    numerics.foreign_threads = dict(owners)
    return alive


def _after_call(item: pytest.Item, numerics: Numerics, before: set[int | None]) -> None:
    owners = item.config.stash.setdefault(THREADS, {})
    for t in threading.enumerate():
        if t.ident not in before and t.is_alive() and t.ident is not None:
            owners[t.ident] = item.nodeid
    for test, n in numerics.background.items():
        item.warn(
            pytest.PytestWarning(
                f"tracetensor: {n} non-finite tensor(s) computed during this test came from a background "
                f"thread started in test {test} (not counted against this test)"
            )
        )


def _keep_report(item: pytest.Item, numerics: Numerics, mode: str) -> bool:
    if mode == "off" or numerics.count(mode) == 0:
        return False
    item.stash[REPORT] = numerics.report(mode)
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[pytest.TestReport]:
    rep = yield
    if call.when == "call" and rep.failed:
        text = item.stash.get(REPORT, None)
        if text:
            rep.sections.append((SECTION, text))
    return rep
