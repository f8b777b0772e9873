"""The Textual debugger, headless (`run_test` + pilot) for each screen and command, at
100,000 events, and once for real inside tmux."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from textual.widgets import Static, TabbedContent
from tracetensor.debugger import Debugger
from tracetensor.debugger.commands import to_plain
from tracetensor.debugger.tui import (
    CommandInput,
    DebuggerApp,
    RunEndScreen,
    RunStartScreen,
    TensorList,
    TensorScreen,
)

import tracetensor as tt
from tracetensor import events as ev
from tracetensor.trace import MemoryTrace

pytestmark = pytest.mark.tracetensor_allow_nan  # NaNs are made on purpose here


def _debugger() -> Debugger:
    w = tt.tensor([[1.0, -1.0], [2.0, 0.5]], requires_grad=True)
    x = tt.tensor([[1.0, 2.0], [-1.0, 1.0]])
    with np.errstate(all="ignore"), MemoryTrace(values=True, summaries=True, stacks=True) as tr:
        r = ev.begin_run("debug", name="step")
        y = (x @ w).relu().log().sum()
        y.backward()
        ev.end_run(r)
    return Debugger(tr)


def _text(app: DebuggerApp, selector: str) -> str:
    return to_plain(app.screen.query_one(selector, Static).content)


async def _settle(pilot) -> None:
    """Commands run in workers: wait for them, then for the screen to take their answer."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def _visible(app: DebuggerApp) -> str:
    """The screen as the user sees it: the composed terminal lines, as text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def test_run_end_screen_lists_culprit_first_and_opens_tensor_view() -> None:
    app = DebuggerApp(_debugger(), "run-end: run #1", "hello", "end")
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot)
        assert isinstance(app.screen, RunEndScreen)
        assert isinstance(app.focused, CommandInput)
        tl = app.screen.query_one(TensorList)
        assert tl.rows[0].tensor_name == "log:0" and tl.culprit is tl.rows[0]
        assert "culprit (has_inf_or_nan): log:0" in _text(app, "#list-head")
        assert tl.render_line(0).text.startswith("!") and "log:0" in tl.render_line(0).text
        await pilot.press("ctrl+l", "down")
        assert tl.cursor == 1 and "matmul:0" in app.sub_title
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TensorScreen) and app.screen.datum.tensor_name == "matmul:0"
        assert "[[5" in _text(app, "#values").replace(" ", "").replace(".", "")
        assert "histogram" in _text(app, "#histogram") and "zero" in _text(app, "#summary")
        await pilot.press(*"[1]", "enter")
        await pilot.pause()
        vals = _text(app, "#values")
        assert vals.replace(" ", "") == "[1.,1.5]"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunEndScreen)


async def test_mouse_click_selects_a_row() -> None:
    app = DebuggerApp(_debugger(), "run-end", "", "end")
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot)
        await pilot.click(TensorList, offset=(5, 2))
        tl = app.screen.query_one(TensorList)
        assert tl.cursor == 2 and app.focused is tl


async def test_command_line_output_history_and_completion() -> None:
    app = DebuggerApp(_debugger(), "run-end", "", "end")
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot)
        await pilot.press(*"ni -t log", "enter")
        await pilot.pause()
        out = _text(app, "#output")
        assert "tfdbg> ni -t log" in out and "op type: log" in out and "test_debugger_tui.py" in out
        cmd = app.screen.query_one(CommandInput)
        cmd.value = "lt -f has_inf_or_nan"
        await pilot.press("enter", "up", "up")
        assert cmd.value == "ni -t log"
        await pilot.press("down")
        assert cmd.value == "lt -f has_inf_or_nan"
        cmd.value = ""
        await pilot.press(*"pt mat", "tab")
        assert cmd.value == "pt matmul"
        cmd.value = "frob"
        await pilot.press("enter")
        await pilot.pause()
        assert "unknown command" in _text(app, "#output")


# each command, and what the user must then see on the screen (x @ w = [[5, 0], [1, 1.5]])
COMMANDS = [
    ("lt", ["run {run}: 9 tensors", "culprit (has_inf_or_nan): log:0", "! ", "matmul:0", "relu:0"]),
    ("lt -f has_inf_or_nan -s op_type", ["tensors passing has_inf_or_nan", "log:0", "-inf=1"]),
    ("pt matmul:0[0]", ['Tensor "matmul:0"', "[5., 0.]"]),
    ("pt -s -r [0,1] relu:0", ["elements in range [0, 1]", "histogram of finite values"]),
    ("ni -a -t log", ["op type: log", "attributes", "test_debugger_tui.py:", ".relu().log().sum()"]),
    ("li -r sum", ['Inputs to node "sum"', "|- log:0", "|- relu:0"]),
    ("lo matmul", ['Recipients of node "matmul"', "relu"]),
    ("ps test_debugger_tui.py", ["tests/test_debugger_tui.py", '1 """The Textual debugger']),
    ("ri", ["Run {run}", "first NaN/inf: log:0"]),
    ("eval np.sum(`matmul:0`)", ["7.5"]),
    ("gf", ["gradient flow", "nan/inf"]),
    ("tm", ["host (us)", "log"]),
    ("help", ["list_tensors", "print_tensor", "list_runs"]),
    ("help lt", ["usage: list_tensors", "--tensor_filter", "(-a: of every run)"]),
    ("pt nothere:0", ["error: no tensor or node named 'nothere:0'"]),
]


async def test_every_command_shows_its_answer_on_the_screen() -> None:
    dbg = _debugger()
    app = DebuggerApp(dbg, "run-end", "", "end")
    async with app.run_test(size=(160, 60)) as pilot:
        await _settle(pilot)
        cmd = app.screen.query_one(CommandInput)
        for c, expected in COMMANDS:
            cmd.value = c  # typed key by key in the other tests; here only Enter is pressed
            await pilot.press("enter")
            await _settle(pilot)
            screen = _visible(app)
            assert f"tfdbg> {c}" in screen, c
            for text in expected:
                text = text.replace("{run}", str(dbg.run))
                assert text in screen, (c, text, screen)
            assert app.screen.query_one(TabbedContent).active == "output-tab"


async def test_panels_gradients_and_timing() -> None:
    dbg = _debugger()
    app = DebuggerApp(dbg, "run-end", "", "end")
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot)
        tabs = app.screen.query_one(TabbedContent)
        await pilot.press("f3")
        assert tabs.active == "gradients"
        assert "gradient flow" in _text(app, "#gradients-view") and "nan/inf" in _text(app, "#gradients-view")
        await pilot.press("f4")
        assert tabs.active == "timing"
        timing = _text(app, "#timing-view")
        slowest = max(dbg.trace.events(dbg.run), key=lambda e: e.duration_ns)
        first_row = next(ln for ln in timing.splitlines() if ln.strip()[:1].isdigit())
        assert first_row.rstrip().endswith(slowest.name)


async def test_command_palette_finds_views_and_tensors() -> None:
    app = DebuggerApp(_debugger(), "run-end", "", "end")
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Timi")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.query_one(TabbedContent).active == "timing"
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"relu:0")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TensorScreen) and app.screen.datum.tensor_name == "relu:0"


async def test_run_start_screen_returns_run_actions() -> None:
    app = DebuggerApp(_debugger(), "run-start: run #2", "about to run", "start")
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot)
        assert isinstance(app.screen, RunStartScreen)
        assert "about to run" in _text(app, "#intro")
        cmd = app.screen.query_one(CommandInput)
        cmd.value = "help"
        await pilot.press("enter")
        await pilot.pause()
        assert "list_tensors" in _text(app, "#output")
        cmd.value = "run -t 3"
        await pilot.press("enter")
        await pilot.pause()
    assert app.return_value is not None and (app.return_value.mode, app.return_value.times) == ("times", 3)
    app2 = DebuggerApp(_debugger(), "run-end", "", "end")
    async with app2.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+n")
        await pilot.pause()
    assert app2.return_value.filter == "has_inf_or_nan"
    app3 = DebuggerApp(_debugger(), "run-end", "", "end")
    async with app3.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app3.return_value is None


def _big_trace(n: int) -> MemoryTrace:
    tr = MemoryTrace(start=False)
    tr.add(ev.RunStart(1, "eager", "debug", "big", (), (), None, 0, 0))
    fine = ev.Summary(4, 0, 0, 0, 1, 1, 2, -1.0, 1.0, 0.0, 0.5)
    bad = ev.Summary(4, 1, 0, 0, 1, 0, 2, -1.0, 1.0, 0.0, 0.5)
    for i in range(n):
        tr.add(
            ev.OpEvent(
                i + 1,
                1,
                "eager",
                "forward",
                "add",
                f"block/add_{i}",
                (),
                (ev.TensorMeta(f"block/add_{i}:0", (2, 2), "float32", "cpu", 16),),
                i * 1000,
                i * 1000 + 500,
                0,
                summaries=(bad if i == n // 2 else fine,),
            )
        )
    tr.add(ev.RunEnd(1, n * 1000, 0))
    return tr


async def test_hundred_thousand_events_stay_responsive() -> None:
    n = 100_000
    tr = _big_trace(n)
    t0 = time.perf_counter()
    app = DebuggerApp(Debugger(tr), "run-end", "", "end")
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot)
        mounted = time.perf_counter() - t0
        tl = app.screen.query_one(TensorList)
        assert len(tl.rows) == n and tl.rows[0].tensor_name == f"block/add_{n // 2}:0"
        assert tl.virtual_size.height == n
        await pilot.press("ctrl+l")
        t1 = time.perf_counter()
        await pilot.press("end")
        await pilot.pause()
        await pilot.press("pageup", "up", "up")
        await pilot.pause()
        keys = time.perf_counter() - t1
        assert tl.cursor == n - 1 - (tl.size.height - 1) - 2
        line = tl.render_line(tl.cursor - tl.scroll_offset.y).text
        assert f"block/add_{tl.cursor - 1 if tl.cursor <= n // 2 else tl.cursor}:0" in line
    # how fast: benchmarks/bench_debugger.py measures it (a timed assert here would be noise)
    print(f"100k events: screen up in {mounted:.2f} s, End/PageUp/Up in {keys * 1e3:.0f} ms")


TMUX_SCRIPT = """
import numpy as np
import tracetensor as tt
from tracetensor.debugger import wrap

w = tt.tensor([[1.0, -1.0], [2.0, 1.0]], requires_grad=True)
x = tt.tensor([[1.0, 2.0], [-1.0, 1.0]])

def step(k):
    y = ((x * k) @ w).relu().log().sum()
    y.backward()
    return y.item()

s = wrap(step)
with np.errstate(all="ignore"):
    for k in (1.0, 2.0, -1.0, 3.0):
        s(k)
print("PROGRAM DONE")
"""


def _tmux(*args: str) -> str:
    # a private server (-L) with no config (-f /dev/null): other tmux users' settings can't resize us
    return subprocess.run(
        ["tmux", "-L", f"ttdbg{os.getpid()}", "-f", "/dev/null", *args], capture_output=True, text=True, check=True
    ).stdout


def _capture(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _wait_for(session: str, text: str, timeout: float = 20.0) -> str:
    end = time.time() + timeout
    screen = ""
    while time.time() < end:
        screen = _capture(session)
        if text in screen:
            return screen
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never appeared on the tmux screen:\n{screen}")


def test_real_terminal_in_tmux(tmp_path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(TMUX_SCRIPT))
    session = f"ttdbg{os.getpid()}"
    # pytest may export COLUMNS/LINES, which Textual would obey over the real terminal size
    cmd = f"env -u COLUMNS -u LINES {sys.executable} -W ignore {script}; echo EXIT=$?; sleep 60"
    _tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", cmd)
    try:
        screen = _wait_for(session, "run-start: run #1")
        assert "about to run" in screen
        _tmux("send-keys", "-t", session, "run -f has_inf_or_nan", "Enter")
        screen = _wait_for(session, "-inf=")
        assert "run-end: run #3" in screen and "culprit (has_inf_or_nan): log:0" in screen
        row = next(ln for ln in screen.splitlines() if "log:0" in ln and "!" in ln)
        assert "-inf=" in row and row.index("log:0") < row.index("-inf=")
        _tmux("send-keys", "-t", session, "ni -t log", "Enter")
        screen = _wait_for(session, "op type: log")
        assert "prog.py:" in screen
        _tmux("send-keys", "-t", session, "C-q")
        screen = _wait_for(session, "EXIT=0")
        assert "PROGRAM DONE" in screen
    finally:
        _tmux("kill-server")
