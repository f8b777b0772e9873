"""The debugger on a 100,000-event eager recording (5,555 steps, a NaN made late): one run
per step, every answer read through the trace's indexes, a TUI whose commands run off the
UI thread (pilot), and the navigation a long recording needs (lr, jump, lt -a)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tracetensor.debugger import Debugger
from tracetensor.debugger.cli import start_run
from tracetensor.debugger.tui import CommandInput, DebuggerApp, TensorList

import tracetensor as tt

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
from _bigtrace import make

pytestmark = pytest.mark.tracetensor_allow_nan


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[str, int]:
    """(trace path, run of the culprit), made once for this module (a second or two)."""
    return make(str(tmp_path_factory.mktemp("big") / "big.ttrace"), 100_000)


def _debug(path: str, *cmds: str) -> str:
    argv = [sys.executable, "-m", "tracetensor", "debug", path]
    for c in cmds:
        argv += ["-c", c]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_each_step_is_a_run_and_the_culprit_is_found_by_index(big) -> None:
    path, culprit_run = big
    with tt.trace.open(path) as tr:
        runs = tr.runs()
        assert len(runs) == 100_000 // 18 and {r.n_events for r in runs} <= {18, 22}
        assert [r.run for r in runs if r.nonfinite] == [culprit_run]
        assert tr.first_nonfinite().run == culprit_run and tr.first_nonfinite().name == "log"
    out = _debug(path, "lt -f has_inf_or_nan")
    assert f"run {culprit_run}: 21 tensors passing has_inf_or_nan   culprit (has_inf_or_nan): log:0" in out
    assert out.splitlines()[4].lstrip().startswith("!") and " log:0 " in out.splitlines()[4]


def test_run_list_jump_and_lt_across_runs(big) -> None:
    path, culprit_run = big
    out = _debug(
        path, "lr -f", "jump 7", "lt -t linear", "lr -p 1", "lt -a -t linear -p 2", f"jump {culprit_run}", "ri"
    )
    lr_f, jump, lt7, lr1, lta, _, ri = out.split("tfdbg> ")[1:]
    assert "loss: nan" in ri
    bad = [ln for ln in lr_f.splitlines() if ln.startswith(">")]
    assert len(bad) == 1 and bad[0].split()[1] == str(culprit_run) and "nan" in bad[0].split()
    assert "now at run 7" in jump
    assert lt7.splitlines()[1].startswith("run 7: 7 tensors")
    row7 = next(ln for ln in lr1.splitlines() if ln.startswith(">"))
    assert row7.split()[1] == "7" and float(row7.split()[-1]) > 0  # its loss
    assert "tensors 101-200" in lta and "more: lt -a -p 3 -t linear" in lta
    runs = [int(ln.split()[0]) for ln in lta.splitlines() if ln.strip()[:1].isdigit()]
    assert len(runs) == 100 and runs == sorted(runs) and runs[0] == 15  # 7 linear tensors a step: row 101 is in run 15


def test_lt_across_runs_finds_non_finite_tensors_from_the_index(big) -> None:
    path, culprit_run = big
    out = _debug(path, "lt -a -f has_inf_or_nan")
    rows = [ln for ln in out.splitlines() if ln.strip().startswith(str(culprit_run))]
    assert len(rows) == 21 and "!" in rows[0] and "log:0" in rows[0]
    assert "more:" not in out


async def _settle(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def _visible(app: DebuggerApp) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def test_tui_on_a_hundred_thousand_events(big) -> None:
    path, culprit_run = big
    tr = tt.trace.open(path)
    dbg = Debugger(tr, start_run(tr))
    dbg.history_from_trace()
    app = DebuggerApp(dbg, f"trace: run {dbg.run}", "", kind="end")
    async with app.run_test(size=(140, 50)) as pilot:
        await _settle(pilot)
        tl = app.screen.query_one(TensorList)
        assert dbg.run == culprit_run and tl.rows[0].tensor_name == "log:0"
        assert f"run {culprit_run}: 26 tensors   culprit (has_inf_or_nan): log:0" in _visible(app)
        cmd = app.screen.query_one(CommandInput)
        for c, seen in [
            ("lt -t linear", f"run {culprit_run}: 7 tensors"),
            ("lt -f has_inf_or_nan", "21 tensors passing has_inf_or_nan"),
            ("pt log:0", 'Tensor "log:0"'),
            ("ni -t log", "op type: log"),
            ("gf", "gradient flow"),
            ("tm", "host (us)"),
            ("lr", "runs; page"),
            ("jump 3", "now at run 3"),
        ]:
            cmd.value = c
            await pilot.press("enter")
            await _settle(pilot)
            assert seen in _visible(app), c
        assert dbg.run == 3 and "run 3: 22 tensors" in _visible(app)  # the list followed the jump
        # a long command runs in a worker: Esc cancels it, and the command line stays live
        app.run_command("lt -a")  # as Enter would, without waiting for the screen to settle
        await pilot.press("escape")
        await _settle(pilot)
        assert app.busy is None and "lt -a: cancelled" in _visible(app)
        await pilot.press(*"ri", "enter")
        await _settle(pilot)
        assert "Run 3" in _visible(app)
    tr.close()
