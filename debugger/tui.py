"""The Textual debugger: run-start and run-end screens, a tensor list that draws only
visible rows (Line API, fit for 100,000 events), a tensor view, gradient-flow and timing
panels, a command line with history and completion, and a command palette."""
from __future__ import annotations

import os
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

from tracetensor import events as ev
from tracetensor.trace import format_bytes, nonfinite_text, printable

from . import filters as flt
from .commands import CommandError, Debugger, RunAction, array_text, histogram, parse_slice, safe_renderable

# --------------------------------------------------------------------------- widgets

# (title, width, right-justified)
_COLS = (("", 1, False), ("t (ms)", 9, True), ("size", 10, True), ("op type", 16, False),
         ("tensor name", 40, False), ("shape", 14, False), ("dtype", 8, False), ("nan/inf", 14, False))


def _cells(values: tuple[str, ...], name_w: int = 40) -> str:
    out = []
    for (title, w, right), v in zip(_COLS, values):
        w = name_w if title == "tensor name" else w
        v = v if len(v) <= w else v[: w - 1] + "…"
        out.append(v.rjust(w) if right else v.ljust(w))
    return " ".join(out)


_FIXED = sum(w + 1 for t, w, _ in _COLS if t != "tensor name")


def name_width(total: int) -> int:
    """The tensor-name column takes what the other columns leave (at least 20 cells)."""
    return max(20, total - _FIXED - 1)


class TensorList(ScrollView, can_focus=True):
    """The run's tensors, culprit first. Renders only the visible rows from the store."""

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

    def __init__(self, rows: list[flt.TensorDatum], culprit: flt.TensorDatum | None, t0: int,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.rows = rows
        self.culprit = culprit
        self.t0 = t0
        self.virtual_size = Size(_FIXED + 20, len(rows))
        self._styles = {"norm": Style(), "cursor": Style(reverse=True),
                        "culprit": Style(color="red", bold=True), "bad": Style(color="yellow")}

    def row_text(self, d: flt.TensorDatum) -> str:
        return _cells(("!" if d is self.culprit else "", f"{(d.event.end_ns - self.t0) / 1e6:.3f}",
                       format_bytes(d.meta.nbytes), printable(d.op_type), printable(d.tensor_name),
                       str(tuple(d.meta.shape)), printable(d.meta.dtype), nonfinite_text(d.summary)),
                      name_width(self.size.width))

    def on_resize(self) -> None:
        head = getattr(self.screen, "refresh_head", None)
        if head is not None:
            head(self.size.width)

    def render_line(self, y: int) -> Strip:
        sx, sy = self.scroll_offset
        i = sy + y
        width = self.size.width
        if i >= len(self.rows):
            return Strip.blank(width)
        d = self.rows[i]
        st = self._styles["norm"]
        if d is self.culprit:
            st = self._styles["culprit"]
        elif d.summary is not None and not d.summary.finite:
            st = self._styles["bad"]
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
        super().__init__(placeholder="command (help, lt, pt NAME, ni -t NAME, gf, tm, run, "
                                     "run -f has_inf_or_nan)",
                         **kw)
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
            self.value = done + self.value[self.cursor_position:]
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
            ("List NaN/inf tensors (lt -f has_inf_or_nan)", partial(app.run_command, "lt -f has_inf_or_nan"),
             "only tensors holding NaN or inf"),
            ("Gradient flow", partial(app.show_tab, "gradients"), "per-parameter gradient norms"),
            ("Timing", partial(app.show_tab, "timing"), "ops slowest first"),
            ("Run info (ri)", partial(app.run_command, "ri"), "fetches, feeds, errors"),
            ("Help", partial(app.run_command, "help"), "every command"),
            ("Run", partial(app.run_command, "run"), "continue to the next run"),
            ("Run until NaN/inf", partial(app.run_command, "run -f has_inf_or_nan"), "tfdbg's run -f"),
            ("Exit debugger", partial(app.run_command, "exit"), "the program goes on undebugged"),
        ]
        for d in app.dbg.data()[:5000]:
            self.entries.append((f"Tensor {printable(d.tensor_name)}", partial(app.open_tensor, d),
                                 f"{printable(d.op_type)} {d.meta.shape}"))

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
    """After a run: the tensor list and the panels."""

    def compose(self) -> ComposeResult:
        app = self.app
        assert isinstance(app, DebuggerApp)
        dbg = app.dbg
        rows = dbg.data()
        culprit = dbg.culprit(rows=rows)
        if culprit is not None:
            rows.remove(culprit)
            rows.insert(0, culprit)
        yield Header()
        with Vertical(id="body"):
            with Vertical(id="left"):
                yield Static(id="list-head")
                yield TensorList(rows, culprit, dbg.run_start(dbg.run), id="tensors")
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
        yield CommandInput(dbg, id="cmd")
        yield Footer()

    @on(TabbedContent.TabActivated)
    def _fill_panel(self, event: TabbedContent.TabActivated) -> None:
        dbg = self.app.dbg  # type: ignore[attr-defined]
        pane = event.pane.id
        cmd = {"gradients": "gf", "timing": "tm -n 200"}.get(pane or "")
        view = self.query_one(f"#{pane}-view", Static) if cmd else None
        if view is not None and not view.content:
            view.update(dbg.execute(cmd).output)

    def refresh_head(self, width: int) -> None:
        tl = self.query_one(TensorList)
        t = Text(f"run {self.app.dbg.run}: {len(tl.rows)} tensors", style="bold")  # type: ignore[attr-defined]
        if tl.culprit is not None:
            t.append(f"   culprit: {printable(tl.culprit.tensor_name)}", style="bold red")
        t.append("\n" + _cells(tuple(c for c, _, _ in _COLS), name_width(width)), style="underline")
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
        yield Static(Text(printable(f"{d.tensor_name}   op {d.op_type}   {d.meta.dtype} {tuple(d.meta.shape)}   "
                                    f"node {d.node_name}"), style="bold"), id="tensor-title")
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
        self.query_one("#summary", Static).update(
            Text("summary\n" + (_summary_lines(s) if s is not None else "(none recorded)")))
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
    return "\n".join(f"{k:>6}: {getattr(s, k):.6g}" if isinstance(getattr(s, k), float) else
                     f"{k:>6}: {getattr(s, k)}" for k in s._fields)


# --------------------------------------------------------------------------- app

class DebuggerApp(App[RunAction | None]):
    """One stop of the debugger. Exits with the next RunAction (or None for `exit`)."""

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
        Binding("escape", "focus_cmd", "Command line", show=False),
        Binding("ctrl+q", "command('exit')", "Exit", priority=True),
    ]

    def __init__(self, dbg: Debugger, title: str = "", intro: RenderableType = "", kind: str = "end") -> None:
        super().__init__()
        self.dbg = dbg
        self.kind = kind
        self.intro = safe_renderable(intro)
        self.title = f"tracetensor debugger · {title}" if title else self.TITLE
        self.sub_title = ""
        self.last_output: RenderableType = intro

    def on_mount(self) -> None:
        self.push_screen(RunStartScreen(self.intro) if self.kind == "start" else RunEndScreen(self.intro))

    # -- the command line
    @on(Input.Submitted, "#cmd")
    def _submitted(self, event: Input.Submitted) -> None:
        inp = event.input
        assert isinstance(inp, CommandInput)
        inp.remember(event.value)
        inp.value = ""
        self.run_command(event.value)

    def run_command(self, line: str) -> None:
        if not line.strip():
            return
        res = self.dbg.execute(line)
        if res.exit:
            self.exit(None)
        elif res.action is not None:
            self.exit(res.action)
        else:
            self.show_output(Group(Text(f"tfdbg> {line}", style="bold cyan"), res.output))

    def show_output(self, r: RenderableType) -> None:
        r = safe_renderable(r)
        self.last_output = r
        self.screen.query_one("#output", Static).update(r)
        if self.screen.query("#panels"):
            self.screen.query_one("#panels", TabbedContent).active = "output-tab"

    def show_tab(self, tab: str) -> None:
        if self.screen.query("#panels"):
            self.screen.query_one("#panels", TabbedContent).active = tab

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


class TextualUI:
    """The front end a Controller calls at each stop."""

    def session(self, dbg: Debugger, title: str, intro: RenderableType) -> RunAction | None:
        kind = "start" if title.startswith("run-start") else "end"
        return DebuggerApp(dbg, title, intro, kind).run()
