"""The Textual debugger: run-start and run-end screens, a tensor list that draws only
visible rows (Line API, fit for 100,000 events), a tensor view, gradient-flow and timing
panels, a command line with history and completion, and a command palette."""

from __future__ import annotations

import argparse
import os
import time
from functools import partial
from typing import Any

import numpy as np
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Header, Input, Static, TabbedContent, TabPane
from textual.worker import NoActiveWorker, get_current_worker

from tracetensor import events as ev
from tracetensor.trace import printable

from . import filters as flt
from . import listing as L
from .commands import (
    CommandError,
    Debugger,
    Result,
    RunAction,
    array_text,
    histogram,
    parse_slice,
    safe_renderable,
)

# --------------------------------------------------------------------------- widgets

TUI_ALL_RUNS_CAP = 20_000  # `lt -a` in the list: rows kept (narrow with -t/-n/-f, or page in line mode)


class TensorList(ScrollView, can_focus=True):
    """The tensors of a listing, culprit first. Renders only the visible rows (Line API): a
    list of 100,000 tensors costs what its 40 visible rows cost. Cells are plain text
    (`Segment`s, never markup), laid out by the one column spec in `listing`."""

    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "jump(0)", show=False),
        Binding("end", "jump(-1)", show=False),
        Binding("enter", "open", "Open tensor"),
    ]
    cursor: reactive[int] = reactive(0)

    class Selected(Message):
        """Enter (or a double click) on a row: open that tensor."""

        def __init__(self, datum: flt.TensorDatum) -> None:
            self.datum = datum
            super().__init__()

    class Highlighted(Message):
        def __init__(self, datum: flt.TensorDatum) -> None:
            self.datum = datum
            super().__init__()

    def __init__(self, rows: list[flt.TensorDatum] | None = None, view: L.ListView | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.rows: list[flt.TensorDatum] = rows or []
        self.view = view or L.ListView()
        self.virtual_size = Size(80, len(self.rows))
        self._styles = {
            None: Style(),
            "cursor": Style(reverse=True),
            "red": Style(color="red", bold=True),
            "yellow": Style(color="yellow"),
        }

    @property
    def culprit(self) -> flt.TensorDatum | None:
        return self.view.culprit

    def set_rows(self, rows: list[flt.TensorDatum], view: L.ListView) -> None:
        """Shows another listing (the cursor goes back to its first row)."""
        self.rows, self.view = rows, view
        self.set_reactive(TensorList.cursor, 0)
        self.virtual_size = Size(self.virtual_size.width, len(rows))
        self.scroll_to(y=0, animate=False)
        self.refresh()

    def append_rows(self, more: list[flt.TensorDatum]) -> None:
        """More rows of the same listing (streamed by a worker): the list grows, nothing jumps."""
        self.rows = self.rows + more
        self.virtual_size = Size(self.virtual_size.width, len(self.rows))
        self.refresh()

    def widths(self) -> list[int]:
        return L.widths(self.view, self.size.width)

    def row_text(self, d: flt.TensorDatum) -> str:
        return L.row_line(d, self.view, self.widths())

    def on_resize(self) -> None:
        head = getattr(self.screen, "refresh_head", None)
        if head is not None:
            head()

    def render_line(self, y: int) -> Strip:
        sx, sy = self.scroll_offset
        i = sy + y
        width = self.size.width
        rows = self.rows  # one read: a worker may swap the list while this runs
        if i >= len(rows):
            return Strip.blank(width)
        d = rows[i]
        st = self._styles[L.row_style(d, self.view)]
        if i == self.cursor:
            st = st + self._styles["cursor"]
        text = self.row_text(d)
        strip = Strip([Segment(text, st)], len(text)).crop(sx, sx + width)
        return strip.extend_cell_length(width, st if i == self.cursor else None)

    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh()
        if self.rows:
            self.scroll_to_region_visible(new)
            self.post_message(self.Highlighted(self.rows[new]))

    def scroll_to_region_visible(self, row: int) -> None:
        top = self.scroll_offset.y
        h = max(1, self.size.height)
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + h:
            self.scroll_to(y=row - h + 1, animate=False)

    def action_move(self, delta: int) -> None:
        if self.rows:
            self.cursor = max(0, min(len(self.rows) - 1, self.cursor + delta))

    def action_page(self, sign: int) -> None:
        self.action_move(sign * max(1, self.size.height - 1))

    def action_jump(self, where: int) -> None:
        if self.rows:
            self.cursor = where if where >= 0 else len(self.rows) - 1

    def action_open(self) -> None:
        if self.rows:
            self.post_message(self.Selected(self.rows[self.cursor]))

    def on_click(self, event: Any) -> None:
        i = self.scroll_offset.y + event.y
        if 0 <= i < len(self.rows):
            self.cursor = i
            if event.chain >= 2:
                self.action_open()


class CommandInput(Input):
    """The command line: Enter runs, Up/Down walk the history, Tab completes commands,
    filter names and tensor names."""

    BINDINGS = [
        Binding("up", "history(-1)", show=False),
        Binding("down", "history(1)", show=False),
        Binding("tab", "complete", "Complete", show=False),
    ]

    def __init__(self, dbg: Debugger, **kw: Any) -> None:
        super().__init__(
            placeholder="command (help, lt, pt NAME, ni -t NAME, gf, tm, run, run -f has_inf_or_nan)", **kw
        )
        self.dbg = dbg
        self.history: list[str] = []
        self._pos = 0
        self.candidates: list[str] = []

    def remember(self, line: str) -> None:
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
        self._pos = len(self.history)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._pos = max(0, min(len(self.history), self._pos + step))
        self.value = self.history[self._pos] if self._pos < len(self.history) else ""
        self.cursor_position = len(self.value)

    def action_complete(self) -> None:
        line = self.value[: self.cursor_position]
        opts = self.dbg.complete(line)
        self.candidates = opts
        if not opts:
            return
        last = line.split(" ")[-1]
        tick = last.startswith("`")
        stem = last.lstrip("`")
        common = opts[0] if len(opts) == 1 else os.path.commonprefix(opts)
        if len(common) > len(stem):
            head = line[: len(line) - len(last)] + ("`" if tick else "")
            done = head + common + (" " if len(opts) == 1 and not tick else "")
            self.value = done + self.value[self.cursor_position :]
            self.cursor_position = len(done)
        if len(opts) > 1:
            self.app.show_output(Text(printable("completions: " + "  ".join(opts[:60]))))


# --------------------------------------------------------------------------- palette


class DebuggerCommands(Provider):
    """Command palette entries: the debugger's views and commands, and every tensor."""

    async def startup(self) -> None:
        """Builds the entries once per palette opening (searches run on every keystroke)."""
        app = self.app
        assert isinstance(app, DebuggerApp)
        self.entries: list[tuple[str, Any, str]] = [
            ("List tensors (lt)", partial(app.run_command, "lt"), "tensors of this run, culprit first"),
            (
                "List NaN/inf tensors (lt -f has_inf_or_nan)",
                partial(app.run_command, "lt -f has_inf_or_nan"),
                "only tensors holding NaN or inf",
            ),
            ("Gradient flow", partial(app.show_tab, "gradients"), "per-parameter gradient norms"),
            ("Timing", partial(app.show_tab, "timing"), "ops slowest first"),
            ("Run info (ri)", partial(app.run_command, "ri"), "fetches, feeds, errors"),
            ("List runs (lr)", partial(app.run_command, "lr"), "every run: time, loss, NaN/inf"),
            ("Runs with NaN/inf (lr -f)", partial(app.run_command, "lr -f"), "only the runs that went bad"),
            (
                "Jump to the first NaN/inf run",
                partial(app.run_command, "jump first_nonfinite"),
                "the run of the culprit, in a recorded trace",
            ),
            ("Help", partial(app.run_command, "help"), "every command"),
            ("Run", partial(app.run_command, "run"), "continue to the next run"),
            ("Run until NaN/inf", partial(app.run_command, "run -f has_inf_or_nan"), "tfdbg's run -f"),
            ("Exit debugger", partial(app.run_command, "exit"), "the program goes on undebugged"),
        ]
        for d in app.listed_rows()[:5000]:
            self.entries.append(
                (
                    f"Tensor {printable(d.tensor_name)}",
                    partial(app.open_tensor, d),
                    f"{printable(d.op_type)} {d.meta.shape}",
                )
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for label, cb, help_ in self.entries:
            score = matcher.match(label)
            if score > 0:
                # Textual reads a hit's prompt and help as markup: trace names are escaped
                yield Hit(score, matcher.highlight(escape(label)), cb, text=label, help=escape(help_))


# --------------------------------------------------------------------------- screens


class _StopScreen(Screen):
    """A stop of the debugger: an intro text and the command line, which has the focus."""

    AUTO_FOCUS = "#cmd"

    def __init__(self, intro: RenderableType) -> None:
        super().__init__()
        self.intro = intro


class RunStartScreen(_StopScreen):
    """Before a run: what is about to run and how to run it."""

    def compose(self) -> ComposeResult:
        app = self.app
        assert isinstance(app, DebuggerApp)
        yield Header()
        with VerticalScroll(id="start"):
            yield Static(self.intro, id="intro")
            yield Static(id="output")
        yield CommandInput(app.dbg, id="cmd")
        yield Footer()


class RunEndScreen(_StopScreen):
    """After a run: the tensor list and the panels. The list is filled by a worker once the
    screen is up (`lt`), so a large run never holds the screen back."""

    def __init__(self, intro: RenderableType) -> None:
        super().__init__(intro)
        self.head: Text = Text("loading the tensor list…", style="dim")

    def compose(self) -> ComposeResult:
        app = self.app
        assert isinstance(app, DebuggerApp)
        yield Header()
        with Vertical(id="body"):
            with Vertical(id="left"):
                yield Static(id="list-head")
                yield TensorList(id="tensors")
            with TabbedContent(id="panels", initial="output-tab"):
                with TabPane("Output", id="output-tab"):
                    with VerticalScroll():
                        yield Static(self.intro, id="output")
                # the panels are computed when first shown: a run may hold 100k events
                with TabPane("Gradients", id="gradients"):
                    with VerticalScroll():
                        yield Static("", id="gradients-view")
                with TabPane("Timing", id="timing"):
                    with VerticalScroll():
                        yield Static("", id="timing-view")
        yield Static(id="busy")
        yield CommandInput(app.dbg, id="cmd")
        yield Footer()

    def on_mount(self) -> None:
        self.app.run_command("lt", echo=False)  # type: ignore[attr-defined]

    @on(TabbedContent.TabActivated)
    def _fill_panel(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id
        cmd = {"gradients": "gf", "timing": "tm -n 200"}.get(pane or "")
        view = self.query_one(f"#{pane}-view", Static) if cmd else None
        if view is not None and not view.content:
            self.app.run_command(cmd, target=f"#{pane}-view")  # type: ignore[attr-defined]

    def show_list(self, head: Text, rows: list[flt.TensorDatum], view: L.ListView) -> None:
        self.head = head
        self.query_one(TensorList).set_rows(rows, view)
        self.refresh_head()

    def refresh_head(self) -> None:
        tl = self.query_one(TensorList)
        t = safe_renderable(self.head)  # names from a trace: plain text, control characters shown
        assert isinstance(t, Text)
        t.stylize("bold")
        t.append("\n" + L.header_line(tl.view, tl.widths()), style="underline")
        self.query_one("#list-head", Static).update(t)


class TensorScreen(Screen):
    """One tensor: summary, histogram, values; a slice box narrows the view."""

    AUTO_FOCUS = "#slice"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, dbg: Debugger, datum: flt.TensorDatum) -> None:
        super().__init__()
        self.dbg = dbg
        self.datum = datum

    def compose(self) -> ComposeResult:
        d = self.datum
        yield Header()
        yield Static(
            Text(
                printable(
                    f"{d.tensor_name}   op {d.op_type}   {d.meta.dtype} {tuple(d.meta.shape)}   node {d.node_name}"
                ),
                style="bold",
            ),
            id="tensor-title",
        )
        yield Input(placeholder="numpy slice, e.g. [0, :10]  (Enter applies, Esc goes back)", id="slice")
        with Horizontal(id="tensor-top"):
            yield Static(id="summary")
            yield Static(id="histogram")
        with VerticalScroll(id="values-scroll"):
            yield Static(id="values")
        yield Footer()

    def on_mount(self) -> None:
        self.show("")

    def show(self, sl: str) -> None:
        d = self.datum
        try:
            v = self.dbg.trace.value(d.tensor_name, d.event.run, default=None)
        except Exception as e:  # a damaged value in the trace: say so here, keep the app up
            self.query_one("#values", Static).update(Text(printable(f"error: {e}"), style="red"))
            self.query_one("#histogram", Static).update("")
            return
        s = d.summary
        none = "(none recorded)"
        if s is None and flt.checked(self.dbg.trace) and d.meta.dtype.startswith(("float", "complex", "bfloat")):
            none = '(finite: checked for NaN/inf; values="check" keeps summaries of non-finite tensors only)'
        self.query_one("#summary", Static).update(Text("summary\n" + (_summary_lines(s) if s is not None else none)))
        if v is None:
            self.query_one("#values", Static).update(Text("(the value was not kept)", style="yellow"))
            self.query_one("#histogram", Static).update("")
            return
        a = np.asarray(v)
        try:
            if sl.strip():
                a = a[parse_slice(sl.strip())]
        except (CommandError, IndexError) as e:
            self.query_one("#values", Static).update(Text(f"error: {e}", style="red"))
            return
        self.query_one("#histogram", Static).update(histogram(a, bins=10, width=30))
        self.query_one("#values", Static).update(array_text(a, False, None))

    @on(Input.Submitted, "#slice")
    def _slice(self, event: Input.Submitted) -> None:
        self.show(event.value)


def _summary_lines(s: ev.Summary) -> str:
    return "\n".join(
        f"{k:>6}: {getattr(s, k):.6g}" if isinstance(getattr(s, k), float) else f"{k:>6}: {getattr(s, k)}"
        for k in s._fields
    )


# --------------------------------------------------------------------------- app


class DebuggerApp(App[RunAction | None]):
    """One stop of the debugger. Exits with the next RunAction (or None for `exit`).

    Commands run in a worker thread, one at a time (a new one cancels the last), so keys
    are never queued behind a command: a busy line says what runs, Esc cancels it."""

    CSS_PATH = "debugger.tcss"
    TITLE = "tracetensor debugger"
    COMMANDS = App.COMMANDS | {DebuggerCommands}
    BINDINGS = [
        Binding("ctrl+r", "command('run')", "Run", priority=True),
        Binding("ctrl+n", "command('run -f has_inf_or_nan')", "Run to NaN", priority=True),
        Binding("f2", "show_tab('output-tab')", "Output"),
        Binding("f3", "show_tab('gradients')", "Gradients"),
        Binding("f4", "show_tab('timing')", "Timing"),
        Binding("ctrl+l", "focus_list", "Tensor list"),
        Binding("escape", "escape", "Cancel / command line", show=False),
        Binding("ctrl+q", "command('exit')", "Exit", priority=True),
    ]

    def __init__(self, dbg: Debugger, title: str = "", intro: RenderableType = "", kind: str = "end") -> None:
        super().__init__()
        if kind not in ("start", "end"):
            raise ValueError(f"DebuggerApp: kind must be 'start' or 'end', got {kind!r}")
        self.dbg = dbg
        dbg.should_stop = _cancelled  # long loops in a command stop when its worker is cancelled
        self.kind = kind
        self.intro = safe_renderable(intro)
        self.title = f"tracetensor debugger · {title}" if title else self.TITLE
        self.sub_title = ""
        self.last_output: RenderableType = intro
        self.busy: str | None = None  # the command line being run, while a worker runs it
        self._busy_t0 = 0.0

    def on_mount(self) -> None:
        self.push_screen(RunStartScreen(self.intro) if self.kind == "start" else RunEndScreen(self.intro))
        self.set_interval(0.1, self._tick)

    # -- the command line
    @on(Input.Submitted, "#cmd")
    def _submitted(self, event: Input.Submitted) -> None:
        inp = event.input
        assert isinstance(inp, CommandInput)
        inp.remember(event.value)
        inp.value = ""
        self.run_command(event.value)

    def run_command(self, line: str, *, echo: bool = True, target: str = "#output") -> None:
        """Runs `line` in a worker; its answer goes to the tensor list (`lt` on the run-end
        screen), to `target`, or ends this stop (`run ...`, `exit`)."""
        if not line.strip():
            return
        self.busy, self._busy_t0 = line, time.perf_counter()
        self._tick()
        self.run_worker(
            partial(self._work, line, echo, target),
            thread=True,
            exclusive=True,
            group="cmd",
            name=line,
            exit_on_error=False,
        )

    def _work(self, line: str, echo: bool, target: str) -> None:
        """In the worker thread: the command itself, then its answer handed to the UI thread."""
        worker = get_current_worker()
        dbg = self.dbg
        try:
            listing = self._as_listing(line) if isinstance(self.screen, RunEndScreen) else None
            if listing is not None:
                self._stream_listing(worker, line, listing, echo)
                return
            res = dbg.execute(line)
        except Exception as e:  # a damaged trace or a bug: said in the UI, never a dead app
            res = Result(Text(f"error: {type(e).__name__}: {e}", style="red"), error=True)
        if not worker.is_cancelled:
            self.call_from_thread(self._finish, worker, line, res, echo, target)

    def _as_listing(self, line: str) -> argparse.Namespace | None:
        """The parsed arguments when `line` is a valid `lt` (shown in the list), else None."""
        try:
            cmd, args = self.dbg.parse(line)
        except Exception:
            return None  # execute() words the error
        return args if cmd.name == "list_tensors" else None

    def _stream_listing(self, worker: Any, line: str, a: argparse.Namespace, echo: bool) -> None:
        """`lt` into the list: one run's rows at once; `lt -a` a chunk at a time, the first
        chunk shown as soon as it is read, up to TUI_ALL_RUNS_CAP rows."""
        dbg = self.dbg
        try:
            if not a.all_runs:
                head, rows, view, _ = dbg.listing(a)
                if not worker.is_cancelled:
                    self.call_from_thread(self._show_listing, worker, line, head, rows, view, echo, True)
                return
            view, it = dbg.all_rows(a)
            head = Text("all runs")
            chunk: list[flt.TensorDatum] = []
            n, first, t_last = 0, True, time.perf_counter()
            for d in it:
                if worker.is_cancelled:
                    return
                chunk.append(d)
                n += 1
                if n >= TUI_ALL_RUNS_CAP or len(chunk) >= 2000 or time.perf_counter() - t_last > 0.2 and chunk:
                    self.call_from_thread(
                        self._show_listing,
                        worker,
                        line,
                        Text(f"all runs: {n} tensors so far…"),
                        chunk,
                        view,
                        echo and first,
                        first,
                    )
                    chunk, first, t_last = [], False, time.perf_counter()
                    if n >= TUI_ALL_RUNS_CAP:
                        break
            more = n >= TUI_ALL_RUNS_CAP
            head = Text(
                f"all runs: {'the first ' if more else ''}{n} tensors"
                + (f" passing {a.tensor_filter}" if a.tensor_filter else "")
            )
            if more:
                head.append(
                    f"  (the list keeps {TUI_ALL_RUNS_CAP:,}: narrow with -t/-n/-f, or page with -p in line mode)",
                    style="dim",
                )
            if view.culprit is not None:
                head.append("   culprit (has_inf_or_nan): ", style="bold")
                head.append(view.culprit.tensor_name, style="bold red")
                head.append(f" in run {view.culprit.event.run}", style="bold")
            if not worker.is_cancelled:
                self.call_from_thread(self._show_listing, worker, line, head, chunk, view, echo and first, first)
        except Exception as e:
            res = Result(Text(f"error: {type(e).__name__}: {e}", style="red"), error=True)
            if not worker.is_cancelled:
                self.call_from_thread(self._finish, worker, line, res, echo, "#output")
        finally:
            if not worker.is_cancelled:
                self.call_from_thread(self._done, worker)

    def _show_listing(
        self,
        worker: Any,
        line: str,
        head: Text,
        rows: list[flt.TensorDatum],
        view: L.ListView,
        echo: bool,
        replace: bool,
    ) -> None:
        """(UI thread) rows of a listing; more may follow from the same worker."""
        scr = self.screen
        if worker.is_cancelled or not isinstance(scr, RunEndScreen):
            return  # a newer command (or Esc) took over
        if replace:
            scr.show_list(head, rows, view)
        else:
            scr.head = head
            scr.query_one(TensorList).append_rows(rows)
            scr.refresh_head()
        if echo:
            self.show_output(
                Group(
                    Text(f"tfdbg> {line}", style="bold cyan"),
                    Text(f"{len(rows)} tensors in the list (ctrl+l to move in it)"),
                )
            )

    def _finish(self, worker: Any, line: str, res: Result, echo: bool, target: str) -> None:
        """(UI thread) a command's answer."""
        if worker.is_cancelled:
            return
        self._done(worker)
        if res.exit:
            self.exit(None)
        elif res.action is not None:
            self.exit(res.action)
        else:
            out = Group(Text(f"tfdbg> {line}", style="bold cyan"), res.output) if echo else res.output
            if target == "#output":
                self.show_output(out)
            elif self.screen.query(target):
                self.screen.query_one(target, Static).update(safe_renderable(out))
            if res.moved and isinstance(self.screen, RunEndScreen):
                self.sub_title = f"run {self.dbg.run}"
                self.run_command("lt", echo=False)

    def _done(self, worker: Any) -> None:
        if not worker.is_cancelled:  # a cancelled worker's end must not clear a newer command's line
            self.busy = None
            self._tick()

    def _tick(self) -> None:
        """The busy line: what runs, for how long, and that Esc cancels it."""
        if not self.is_running or not self._screen_stack:
            return
        bars = self.screen.query("#busy")
        if not bars:
            return
        bar = bars.first(Static)
        if self.busy is None:
            bar.display = False
            return
        dt = time.perf_counter() - self._busy_t0
        if dt < 0.15:
            return  # a blink: no flicker for fast commands
        bar.display = True
        spin = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"[int(dt * 10) % 10]
        bar.update(Text(f"{spin} running: {self.busy}   {dt:.1f} s   (Esc cancels)", style="bold yellow"))

    def action_escape(self) -> None:
        if self.busy is not None:
            self.workers.cancel_group(self, "cmd")
            line, self.busy = self.busy, None
            self._tick()
            self.show_output(Text(f"tfdbg> {line}: cancelled", style="yellow"))
        else:
            self.action_focus_cmd()

    def show_output(self, r: RenderableType) -> None:
        r = safe_renderable(r)
        self.last_output = r
        self.screen.query_one("#output", Static).update(r)
        if self.screen.query("#panels"):
            self.screen.query_one("#panels", TabbedContent).active = "output-tab"

    def show_tab(self, tab: str) -> None:
        if self.screen.query("#panels"):
            self.screen.query_one("#panels", TabbedContent).active = tab

    def listed_rows(self) -> list[flt.TensorDatum]:
        """The rows the tensor list shows now (the palette offers them)."""
        for scr in reversed(self.screen_stack):  # the palette is a screen of its own, on top
            if isinstance(scr, RunEndScreen):
                return scr.query_one(TensorList).rows
        return []

    def open_tensor(self, datum: flt.TensorDatum) -> None:
        self.push_screen(TensorScreen(self.dbg, datum))

    def action_command(self, line: str) -> None:
        self.run_command(line)

    def action_show_tab(self, tab: str) -> None:
        self.show_tab(tab)

    def action_focus_list(self) -> None:
        if self.screen.query("#tensors"):
            self.screen.query_one("#tensors").focus()

    def action_focus_cmd(self) -> None:
        if self.screen.query("#cmd"):
            self.screen.query_one("#cmd").focus()

    def on_tensor_list_selected(self, msg: TensorList.Selected) -> None:
        self.open_tensor(msg.datum)

    def on_tensor_list_highlighted(self, msg: TensorList.Highlighted) -> None:
        d = msg.datum
        s = d.summary
        self.sub_title = printable(f"{d.tensor_name}  {d.op_type}  {tuple(d.meta.shape)}  " + (s.brief() if s else ""))


def _cancelled() -> bool:
    """In a command's worker thread: whether Esc (or a newer command) cancelled it."""
    try:
        return get_current_worker().is_cancelled
    except NoActiveWorker:
        return False


class TextualUI:
    """The front end a Controller calls at each stop."""

    def session(self, dbg: Debugger, title: str, intro: RenderableType, kind: str = "end") -> RunAction | None:
        """`kind`: "start" (a run-start screen) or "end" (the run-end screen with the list)."""
        return DebuggerApp(dbg, title, intro, kind).run()
