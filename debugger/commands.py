"""The debugger's commands (tfdbg's vocabulary: lt, pt, ni, li, lo, ps, ri, eval, run, help,
exit, plus gf and tm), implemented once over a `Trace` and a current run. Each returns a
rich renderable: the line-mode UI prints it as plain text, the Textual UI shows it."""

from __future__ import annotations

import argparse
import ast
import itertools
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

import numpy as np
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from tracetensor import events as ev
from tracetensor.errors import TraceTensorError
from tracetensor.trace import Trace, format_bytes, format_ns, is_launcher_frame, nonfinite_text, printable

from . import filters as flt
from . import listing as L
from .evaluator import EvalError, evaluate


class CommandError(Exception):
    """A command that cannot run: unknown name, bad flag, unknown tensor."""


@dataclass
class RunAction:
    """What `run ...` asks the session to do next."""

    mode: str = "step"  # step | nodebug | times | filter
    times: int = 1
    filter: str | None = None
    node_name_filter: str | None = None
    op_type_filter: str | None = None
    tensor_dtype_filter: str | None = None


@dataclass
class Result:
    output: RenderableType
    action: RunAction | None = None
    exit: bool = False
    error: bool = False
    moved: bool = False  # the current run changed (`jump`): a UI refreshes its list


@dataclass
class GradStat:
    """One parameter's gradient in one run (the gradient-flow panel's row)."""

    param: str
    grad_norm: float
    weight_norm: float | None
    zero_share: float
    nonfinite: int
    history: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, param: str, grad: ev.Summary, weight: ev.Summary | None) -> GradStat:
        """From the summaries of a gradient and of its parameter (None: not known)."""
        return cls(
            param,
            norm_of(grad),
            None if weight is None else norm_of(weight),
            grad.zero / grad.size if grad.size else 0.0,
            grad.nonfinite,
        )

    @property
    def ratio(self) -> float | None:
        if self.weight_norm is None or self.weight_norm == 0:
            return None
        return self.grad_norm / self.weight_norm

    @property
    def flag(self) -> str:
        if self.nonfinite:
            return "nan/inf"
        r = self.ratio
        if self.grad_norm < 1e-8 or (r is not None and r < 1e-5):
            return "vanishing"
        if r is not None and r > 1.0 or self.grad_norm > 1e3:
            return "exploding"
        return ""


SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 20  # runs of gradient-norm history that `gf` shows


def sparkline(xs: Iterable[float]) -> str:
    vals = [x for x in xs]
    fin = [x for x in vals if math.isfinite(x)]
    if not fin:
        return "!" * len(vals)
    lo, hi = min(fin), max(fin)
    span = hi - lo or 1.0
    return "".join(SPARK[min(7, int((x - lo) / span * 7.999))] if math.isfinite(x) else "!" for x in vals)


def norm_of(s: ev.Summary) -> float:
    """L2 norm of the finite values, from a summary alone: sum x^2 = n (std^2 + mean^2)."""
    n = s.size - s.nonfinite
    if n <= 0 or not math.isfinite(s.mean):
        return float("nan")
    return math.sqrt(n * (s.std**2 + s.mean**2))


def to_plain(r: RenderableType, width: int = 200) -> str:
    """A renderable as plain text (line mode, tests, pipes), with no control characters."""
    if isinstance(r, str):
        return printable(r, lines=True)
    buf = StringIO()
    Console(
        file=buf,
        width=width,
        color_system=None,
        force_terminal=False,
        legacy_windows=False,
        emoji=False,
        highlight=False,
        soft_wrap=False,
        markup=False,
    ).print(r)
    return printable("\n".join(line.rstrip() for line in buf.getvalue().splitlines()), lines=True)


def safe_renderable(r: RenderableType) -> RenderableType:
    """`r` with every string shown as plain text: strings (which Rich and Textual would
    parse as markup, running `[@click=...]` actions) become `Text`, and control
    characters become visible symbols. Trace data passes through here before display."""
    if isinstance(r, str):
        return Text(printable(r, lines=True))
    if isinstance(r, Text):
        t = r.copy()
        t.plain = printable(t.plain, lines=True)  # one character for one: the spans still fit
        return t
    if isinstance(r, Group):
        return Group(*(safe_renderable(x) for x in r.renderables))
    if isinstance(r, Table):
        for c in r.columns:
            c.header = safe_renderable(c.header)
            c._cells = [safe_renderable(x) for x in c._cells]  # Rich keeps a column's cells here
        r.title = None if r.title is None else safe_renderable(r.title)
        r.caption = None if r.caption is None else safe_renderable(r.caption)
        return r
    return r


class _Parser(argparse.ArgumentParser):
    """argparse that raises CommandError instead of exiting and collects its help text."""

    def error(self, message: str) -> Any:
        raise CommandError(f"{self.prog}: {message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise _Help(self.format_help())

    def print_help(self, file: Any = None) -> None:
        raise _Help(self.format_help())


class _Help(Exception):
    pass


@dataclass
class _Cmd:
    name: str
    aliases: tuple[str, ...]
    parser: _Parser
    fn: Callable[[argparse.Namespace], RenderableType | Result]


def arg(*flags: str, **kw: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One argument of a command, as `argparse.add_argument` takes it."""
    return flags, kw


def command(name: str, *aliases: str, help: str, args: Iterable[tuple] = ()) -> Callable:
    """Declares a `Debugger` method as a command, with its arguments beside its body."""

    def deco(fn: Callable) -> Callable:
        fn._command = (name, aliases, help, tuple(args))  # type: ignore[attr-defined]
        return fn

    return deco


LT_PAGE = 100  # rows per page of `lt -a` (a trace may hold millions)
LR_PAGE = 50  # runs per page of `lr`


_SLICE_RX = re.compile(r"^([^\[]+)(\[.*\])?$")


def parse_slice(text: str) -> tuple:
    """`[0, 1:3, ::2, ...]` -> a numpy index tuple, without evaluating arbitrary code."""
    try:
        node = ast.parse("x" + text, mode="eval").body
    except SyntaxError:
        raise CommandError(f"invalid slice {text!r}") from None
    if not isinstance(node, ast.Subscript):
        raise CommandError(f"invalid slice {text!r}")

    def val(n: ast.AST) -> Any:
        if isinstance(n, ast.Constant) and (n.value is Ellipsis or n.value is None or isinstance(n.value, int)):
            return n.value
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -val(n.operand)
        if isinstance(n, ast.Slice):
            return slice(*(None if p is None else val(p) for p in (n.lower, n.upper, n.step)))
        if isinstance(n, ast.Tuple):
            return tuple(val(e) for e in n.elts)
        raise CommandError(f"invalid slice {text!r}: only integers, ':' and '...' are allowed")

    idx = val(node.slice)
    return idx if isinstance(idx, tuple) else (idx,)


class Debugger:
    """Command interpreter over one trace. `run` is the current run (the last one by
    default); `weights` may give parameter values (eager `wrap`) for gradient flow."""

    def __init__(
        self, trace: Trace, run: int | None = None, *, stopped_by: str | None = None, watch: RunAction | None = None
    ) -> None:
        self.trace = trace
        self.run = run if run is not None else trace.last_run()
        self.stopped_by = stopped_by  # the filter whose culprit is listed first
        self.watch = watch or RunAction()
        self.weights: dict[str, ev.Summary] = {}
        self.grad_history: dict[str, list[float]] = {}
        self._offline_history = False  # see history_from_trace
        self._history_of_run: int | None = None
        self.commands: dict[str, _Cmd] = {}
        self.should_stop: Callable[[], bool] = lambda: False  # the TUI's Esc: long loops check it
        self._starts: dict[int, int] | None = None
        for klass in reversed(type(self).__mro__):  # every @command method, in the order declared
            for fn in vars(klass).values():
                spec = getattr(fn, "_command", None)
                if spec is not None:
                    self._add(*spec, fn.__get__(self))
        # how a live session numbers this run ("#4": its 4th call), so that every command
        # names the run as the session's screens do; None: the trace's own run number
        self.label: str | None = None

    # ------------------------------------------------------------------ entry point
    def execute(self, line: str) -> Result:
        """Runs one command line and returns its output (errors come back as output)."""
        line = line.strip()
        if not line:
            return Result(Text(""))
        try:
            argv = shlex.split(line)
        except ValueError as e:
            return Result(Text(f"error: {e}", style="red"), error=True)
        cmd = self.commands.get(argv[0])
        if cmd is None:
            return Result(
                Text(f"error: unknown command {argv[0]!r}; type `help` for the list", style="red"), error=True
            )
        try:
            args = cmd.parser.parse_args(argv[1:])
            out = cmd.fn(args)
        except _Help as h:
            return Result(Text(str(h)))
        except (CommandError, flt.FilterError) as e:
            return Result(Text(printable(f"error: {e}", lines=True), style="red"), error=True)
        except Exception as e:  # a damaged trace, a bug: one line, and the debugger stays up
            msg = str(e) if isinstance(e, TraceTensorError) else f"{type(e).__name__}: {e}"
            return Result(Text(printable(f"error: {argv[0]}: {msg}"), style="red"), error=True)
        res = out if isinstance(out, Result) else Result(out)
        res.output = safe_renderable(res.output)
        return res

    def parse(self, line: str) -> tuple[_Cmd, argparse.Namespace]:
        """A command line's command and parsed arguments, without running it (the TUI sends
        `lt` to its list); raises for anything `execute` would answer with an error."""
        argv = shlex.split(line.strip())
        cmd = self.commands.get(argv[0]) if argv else None
        if cmd is None:
            raise CommandError(f"unknown command in {line!r}")
        return cmd, cmd.parser.parse_args(argv[1:])

    def plain(self, line: str) -> str:
        return to_plain(self.execute(line).output)

    # ------------------------------------------------------------------ data helpers
    def data(self) -> list[flt.TensorDatum]:
        """The tensors of the current run that the watch filters keep, execution order."""
        w = self.watch
        rn = re.compile(w.node_name_filter) if w.node_name_filter else None
        ro = re.compile(w.op_type_filter) if w.op_type_filter else None
        rd = re.compile(w.tensor_dtype_filter) if w.tensor_dtype_filter else None
        out = []
        for d in flt.data(self.trace, self.run):
            if (
                rn
                and not rn.search(d.node_name)
                or ro
                and not ro.search(d.op_type)
                or rd
                and not rd.search(d.meta.dtype)
            ):
                continue
            out.append(d)
        return out

    def tensor_names(self) -> list[str]:
        return [d.tensor_name for d in self.data()]

    def culprit(
        self, filter_name: str | None = None, rows: list[flt.TensorDatum] | None = None
    ) -> flt.TensorDatum | None:
        """The first tensor (execution order) passing the filter that stopped the run
        (has_inf_or_nan by default); `rows` saves recomputing `data()`."""
        fn = flt.get_filter(filter_name or self.stopped_by or "has_inf_or_nan")
        return flt.first_of(self.data() if rows is None else rows, fn)

    @property
    def run_name(self) -> str:
        return f"run {self.label}" if self.label else f"run {self.run}"

    def _resolve(self, name: str) -> tuple[ev.OpEvent, int]:
        hit = self.trace.find(name, self.run)
        if hit is None:
            hit = self.trace.find(name)
        if hit is None:
            # an op name without an output index, e.g. `gradients/x/AccumulateGrad`
            for e in self.trace.events(self.run):
                if e.name == name and e.outputs:
                    return e, 0
            close = [n for n in self.tensor_names() if name in n][:5]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise CommandError(f"no tensor or node named {name!r} in {self.run_name}{hint}")
        return hit

    # ------------------------------------------------------------------ commands
    def _add(self, name: str, aliases: tuple[str, ...], help_: str, args: tuple, fn: Callable) -> None:
        p = _Parser(prog=name, description=help_, add_help=True)
        for flags, kw in args:
            p.add_argument(*flags, **kw)
        cmd = _Cmd(name, aliases, p, fn)
        for n in (name, *aliases):
            self.commands[n] = cmd

    # --------------------------------------------------------------- lt
    def run_start(self, run: int) -> int:
        """When `run` began (the zero of the list's time column)."""
        if self._starts is None or len(self._starts) > 4096:
            self._starts = {}  # the runs a listing shows, not every run of a long trace
        start = self._starts.get(run)
        if start is None:
            try:
                start = self.trace.run_info(run).start_ns
            except KeyError:
                evs = self.trace.events(run, limit=1)
                start = evs[0].start_ns if evs else 0
            self._starts[run] = start
        return start

    def listing(self, a: argparse.Namespace) -> tuple[Text, list[flt.TensorDatum], L.ListView, bool]:
        """`lt`'s rows and heading, for line mode's table and the TUI's list alike:
        (heading, rows, view, whether more pages follow)."""
        if a.all_runs:
            return self._listing_all(a)
        rows = self.data()
        fname = a.tensor_filter or self.stopped_by or "has_inf_or_nan"
        fn = flt.get_filter(fname)
        view = L.ListView(self.culprit(fname, rows), self.run_start)
        unknown = 0
        if a.tensor_filter:
            unknown = flt.unanswered(fn, rows)
            rows = [d for d in rows if flt.passes(fn, d)]
        if a.node_name_filter:
            rx = _regex(a.node_name_filter)
            rows = [d for d in rows if rx.search(d.node_name)]
        if a.op_type_filter:
            rx = _regex(a.op_type_filter)
            rows = [d for d in rows if rx.search(d.op_type)]
        key = {
            "timestamp": lambda d: d.event.seq,
            "dump_size": lambda d: d.meta.nbytes,
            "op_type": lambda d: d.op_type,
            "tensor_name": lambda d: d.tensor_name,
        }[a.sort_by]
        rows.sort(key=key, reverse=a.reverse)
        L.culprit_first(rows, view)
        head = Text(f"{self.run_name}: {len(rows)} tensors")
        if a.tensor_filter:
            head.append(f" passing {a.tensor_filter}")
        if unknown:
            head.append(
                f"\n{unknown} tensor{'s' if unknown > 1 else ''} could not be checked: this trace "
                'recorded neither numeric summaries nor their values (record with values="summary")',
                style="yellow",
            )
        culprit = view.culprit
        if culprit is not None:
            head.append(f"   culprit ({fname}): ", style="bold")
            head.append(culprit.tensor_name, style="bold red")
            where = getattr(self.trace, "where", None)  # a set of per-rank traces: which rank and step
            if where is not None:
                head.append(f"  ({where(culprit.event)})", style="bold")
        return head, rows, view, False

    def all_rows(self, a: argparse.Namespace) -> tuple[L.ListView, Iterator[flt.TensorDatum]]:
        """`lt -a`: every run's tensors that pass the filters, in execution order, lazily, read
        through the trace's indexes (blocks holding NaN/inf, op types) so a page costs what it shows."""
        if a.sort_by != "timestamp" or a.reverse:
            raise CommandError("lt -a lists in execution order; -s/-r sort the tensors of one run")
        tr = self.trace
        fname = a.tensor_filter or "has_inf_or_nan"
        fn = flt.get_filter(fname)
        first = tr.first_nonfinite() if fn is flt.has_inf_or_nan else None
        culprit = None
        if first is not None:
            culprit = flt.TensorDatum(
                first, next(i for i, s in enumerate(first.summaries or ()) if s is not None and not s.finite), tr
            )
        view = L.ListView(culprit, self.run_start, all_runs=True)
        rn = _regex(a.node_name_filter) if a.node_name_filter else None
        ro = _regex(a.op_type_filter) if a.op_type_filter else None
        if a.tensor_filter and fn is flt.has_inf_or_nan:
            events = tr.iter_nonfinite()
        else:
            events = tr.iter_events(None, op=a.op_type_filter, name=a.node_name_filter)

        def rows() -> Iterator[flt.TensorDatum]:
            for k, e in enumerate(events):
                if k % 256 == 0 and self.should_stop():
                    raise CommandError("cancelled")
                if rn and not rn.search(e.name) or ro and not ro.search(e.op):
                    continue
                for i, m in enumerate(e.outputs):
                    if m.dtype != "none":
                        d = flt.TensorDatum(e, i, tr)
                        if not a.tensor_filter or flt.passes(fn, d):
                            yield d

        return view, rows()

    def _listing_all(self, a: argparse.Namespace) -> tuple[Text, list[flt.TensorDatum], L.ListView, bool]:
        """`lt -a` in line mode: one page of LT_PAGE tensors."""
        if a.page < 1:
            raise CommandError(f"lt -p needs a page number from 1, got {a.page}")
        view, it = self.all_rows(a)
        lo = (a.page - 1) * LT_PAGE
        rows = list(itertools.islice(it, lo, lo + LT_PAGE + 1))
        more = len(rows) > LT_PAGE
        rows = rows[:LT_PAGE]
        head = Text(f"all runs: tensors {lo + 1 if rows else lo}-{lo + len(rows)}")
        if a.tensor_filter:
            head.append(f" passing {a.tensor_filter}")
        culprit = view.culprit
        if culprit is not None:
            head.append("   culprit (has_inf_or_nan): ", style="bold")
            head.append(culprit.tensor_name, style="bold red")
            head.append(f" in run {culprit.event.run}", style="bold")
        if more:
            head.append(f"\nmore: lt -a -p {a.page + 1} {_flags(a)}".rstrip(), style="dim")
        return head, rows, view, more

    @command(
        "list_tensors",
        "lt",
        help="List the tensors of the current run (-a: of every run).",
        args=(
            arg("-f", "--tensor_filter", help="tensors passing fn(datum, tensor), e.g. has_inf_or_nan"),
            arg("-n", "--node_name_filter", help="regex over node names"),
            arg("-t", "--op_type_filter", help="regex over op types"),
            arg("-s", "--sort_by", choices=["timestamp", "dump_size", "op_type", "tensor_name"], default="timestamp"),
            arg("-r", "--reverse", action="store_true", help="reverse the sort order"),
            arg("-a", "--all_runs", action="store_true", help="every run, in execution order, with a run column"),
            arg("-p", "--page", type=int, default=1, help=f"with -a: which page of {LT_PAGE} tensors"),
        ),
    )
    def cmd_lt(self, a: argparse.Namespace) -> RenderableType:
        head, rows, view, _ = self.listing(a)
        return Group(head, L.table(rows, view))

    # --------------------------------------------------------------- runs
    @command(
        "list_runs",
        "lr",
        help="The runs (steps) of the trace: time, loss, NaN/inf count.",
        args=(
            arg(
                "-p",
                "--page",
                type=int,
                default=None,
                help=f"which page of {LR_PAGE} runs (default: the current run's)",
            ),
            arg("-f", "--nonfinite", action="store_true", help="only runs with NaN/inf tensors"),
        ),
    )
    def cmd_lr(self, a: argparse.Namespace) -> RenderableType:
        runs = self.trace.run_ids(nonfinite=a.nonfinite)  # numbers only: a page's rows are read below
        if not runs:
            return Text("no runs" + (" with NaN/inf tensors" if a.nonfinite else "") + " in this trace")
        pages = (len(runs) + LR_PAGE - 1) // LR_PAGE
        if a.page is None:
            here = next((k for k, r in enumerate(runs) if r >= (self.run or 0)), 0)
            page = here // LR_PAGE + 1
        else:
            page = a.page
        if not 1 <= page <= pages:
            raise CommandError(f"lr -p: page {page} of {pages}")
        shown = self.trace.run_infos(runs[(page - 1) * LR_PAGE : page * LR_PAGE])
        head = Text(
            f"{len(runs)} runs{' with NaN/inf' if a.nonfinite else ''}; page {page} of {pages}"
            f"   (jump N: go to run N; lr -p P: another page)"
        )
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for col in ("", "run", "kind", "name", "events", "time", "loss", "nan/inf ops"):
            t.add_column(
                col,
                justify="right" if col in ("run", "events", "time", "loss", "nan/inf ops") else "left",
                no_wrap=True,
            )
        for r in shown:
            loss = "" if r.loss is None else f"{r.loss:.4g}"
            t.add_row(
                Text(">" if r.run == self.run else ""),
                Text(str(r.run)),
                Text(r.kind),
                Text(r.name),
                Text(str(r.n_events)),
                Text("" if r.duration_ns is None else format_ns(r.duration_ns)),
                Text(loss),
                Text(str(r.nonfinite) if r.nonfinite else ""),
                style="red" if r.nonfinite else None,
            )
        return Group(head, t)

    @command(
        "jump",
        "j",
        help="Go to run N of the trace (lr lists them).",
        args=(arg("target", help="a run number, or first_nonfinite (the run of the first NaN/inf)"),),
    )
    def cmd_jump(self, a: argparse.Namespace) -> Result:
        if a.target == "first_nonfinite":
            e = self.trace.first_nonfinite()
            if e is None:
                raise CommandError("no tensor in this trace holds NaN/inf")
            run = e.run
        else:
            try:
                run = int(a.target)
            except ValueError:
                raise CommandError(f"jump needs a run number, got {a.target!r}") from None
            try:
                self.trace.run_info(run)
            except KeyError:
                runs = self.trace.run_ids()
                have = f"runs {runs[0]} to {runs[-1]}" if runs else "no runs"
                raise CommandError(f"run {run} is not in this trace (it has {have})") from None
        self.run = run
        return Result(Text(f"now at run {run}"), moved=True)

    # --------------------------------------------------------------- ranks
    @command("ranks", help="Compare the ranks of an MPI job in the current run (per-rank traces).")
    def cmd_ranks(self, a: argparse.Namespace) -> RenderableType:
        from tracetensor.trace.multi import MultiTrace, ranks_text

        if not isinstance(self.trace, MultiTrace):
            raise CommandError("`ranks` needs the traces of an MPI job: tracetensor debug run.rank*.ttrace")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for col in ("rank", "step", "events", "in ops", "in collectives", "first nan/inf (op at line)"):
            table.add_column(col, no_wrap=True)
        for row in ranks_text(self.trace, self.run):
            table.add_row(*(Text(c) for c in row))  # names from a trace: plain text, never markup
        head = Text(f"run {self.run}: {len(self.trace.ranks)} of {self.trace.world_size} ranks")
        if self.trace.missing:
            head.append(f" (missing: {', '.join(map(str, self.trace.missing))})", style="yellow")
        return Group(head, table)

    # --------------------------------------------------------------- pt
    @command(
        "print_tensor",
        "pt",
        help="Print a tensor's value.",
        args=(
            arg("tensor", nargs="+", help="tensor name, optionally sliced: name:0[0, 1:3]"),
            arg("-a", "--all", action="store_true", help="print every element"),
            arg("-s", "--numeric_summary", action="store_true", help="add a numeric summary"),
            arg("-r", "--ranges", help="highlight elements in [lo, hi] (or [[lo, hi], ...])"),
        ),
    )
    def cmd_pt(self, a: argparse.Namespace) -> RenderableType:
        expr = "".join(a.tensor)
        m = _SLICE_RX.match(expr)
        if not m:
            raise CommandError(f"invalid tensor expression {expr!r}")
        name, sl = m.group(1), m.group(2)
        e, i = self._resolve(name)
        meta = e.outputs[i]
        v = self.trace.value(meta.name, e.run, default=None)
        head = Text(f'Tensor "{meta.name}" (run {e.run}): op {e.op}, dtype {meta.dtype}, shape {meta.shape}')
        parts: list[RenderableType] = [head]
        summ = e.summaries[i] if e.summaries and i < len(e.summaries) else None
        if v is None:
            if summ is not None:
                parts.append(Text("(the value was not kept: only the summary was recorded)", style="yellow"))
                parts.append(Text(summ.brief()))
            elif flt.checked(self.trace) and meta.dtype.startswith(("float", "complex", "bfloat")):
                parts.append(
                    Text(
                        'finite (checked for NaN/inf: this trace was recorded with values="check", which '
                        'keeps summaries of non-finite tensors only; record with values="summary" for all)',
                        style="yellow",
                    )
                )
            else:
                parts.append(
                    Text(
                        "(neither the value nor a numeric summary was recorded for this tensor: "
                        'record with values="summary" or "full")',
                        style="yellow",
                    )
                )
            return Group(*parts)
        if sl:
            try:
                v = np.asarray(v)[parse_slice(sl)]
            except IndexError as err:
                raise CommandError(f"slice {sl} does not fit shape {meta.shape}: {err}") from None
            parts.append(Text(f"slice {sl} -> shape {np.shape(v)}"))
        if a.numeric_summary:
            parts.append(Text(ev.summarize(np.asarray(v)).brief()))
            parts.append(histogram(np.asarray(v)))
        lo_hi = _parse_ranges(a.ranges) if a.ranges else None
        parts.append(array_text(np.asarray(v), a.all, lo_hi))
        return Group(*parts)

    # --------------------------------------------------------------- ni
    @command(
        "node_info",
        "ni",
        help="Information about a node (op).",
        args=(
            arg("node", help="node/op or tensor name"),
            arg("-a", "--attributes", action="store_true", help="show the node's attributes"),
            arg("-t", "--traceback", action="store_true", help="show where the node was created"),
        ),
    )
    def cmd_ni(self, a: argparse.Namespace) -> RenderableType:
        node = self.trace.node(a.node)
        try:
            e, _ = self._resolve(a.node)
        except CommandError:
            if node is None:
                raise
            e = None
        name = node.name if node is not None else e.name
        op = node.op if node is not None else e.op
        t = Text()
        t.append(f"Node {name}\n", style="bold")
        t.append(f"  op type: {op}\n")
        if e is not None:
            t.append(f"  phase: {e.phase}   mode: {e.mode}   device: {e.device}   run: {e.run}\n")
            t.append(f"  host time: {format_ns(e.duration_ns)}\n")
            if e.forward:
                t.append(f"  gradient of op: {e.forward}\n")
        ins = node.inputs if node is not None else (e.inputs if e else ())
        t.append(f"  {len(ins)} input(s):\n")
        for i in ins:
            t.append(f"    {i}\n")
        if e is not None:
            t.append(f"  {len(e.outputs)} output(s):\n")
            for j, m in enumerate(e.outputs):
                s = e.summaries[j] if e.summaries and j < len(e.summaries) else None
                t.append(f"    {m.name}  {m.dtype} {tuple(m.shape)}  {format_bytes(m.nbytes)}")
                if s is not None and not s.finite:
                    t.append(f"  {nonfinite_text(s)}", style="red")
                t.append("\n")
        users = self.trace.consumers(name, e.run if e is not None else self.run)
        t.append(f"  {len(users)} consumer(s): {', '.join(users[:8])}\n")
        if a.attributes:
            t.append("  attributes:\n")
            attrs = node.attrs if node is not None else ()
            if not attrs:
                t.append("    (none recorded)\n")
            for k, v in attrs:
                t.append(f"    {k} = {v}\n")
        if a.traceback:
            stack = node.stack if node is not None and node.stack else (e.stack if e is not None else None)
            t.append(
                "  traceback of node construction (innermost first):\n"
                if node is not None
                else "  traceback of op creation (innermost first):\n"
            )
            if not stack:
                t.append("    (no stack recorded: record with stacks)\n")
            for fr in stack or ():
                if is_launcher_frame(fr.name, fr.filename):
                    break  # the rest is `tracetensor profile` / `trace record` running the script
                t.append(f"    {fr.filename}:{fr.lineno} in {fr.name}\n", style="cyan")
                line = self._source_line(fr.filename, fr.lineno)
                if line:
                    t.append(f"      {line}\n")
        return t

    def _source_line(self, filename: str, lineno: int) -> str | None:
        src = self.trace.source(filename)
        if src is None:
            return None
        lines = src.splitlines()
        return lines[lineno - 1].strip() if 0 < lineno <= len(lines) else None

    # --------------------------------------------------------------- li / lo
    _TREE_ARGS = (
        arg("node"),
        arg("-r", "--recursive", action="store_true"),
        arg("-d", "--depth", type=int, default=20),
    )

    @command("list_inputs", "li", help="The inputs of a node (-r: recursively).", args=_TREE_ARGS)
    def cmd_li(self, a: argparse.Namespace) -> RenderableType:
        return self.cmd_tree(a, inputs=True)

    @command("list_outputs", "lo", help="The consumers of a node's outputs (-r: recursively).", args=_TREE_ARGS)
    def cmd_lo(self, a: argparse.Namespace) -> RenderableType:
        return self.cmd_tree(a, inputs=False)

    def cmd_tree(self, a: argparse.Namespace, *, inputs: bool) -> RenderableType:
        e_name = a.node.split(":")[0]
        if self.trace.node(e_name) is None:
            e_name = self._resolve(a.node)[0].name
        t = Text()
        t.append(
            f'{"Inputs to" if inputs else "Recipients of"} node "{e_name}"'
            + (f" (depth limit {a.depth})" if a.recursive else "")
            + ":\n",
            style="bold",
        )
        seen: set[str] = set()

        def walk(n: str, depth: int) -> None:
            for k in self._neighbours(n, inputs):
                t.append(f"{'  ' * depth}|- {k}")
                kn = k.split(":")[0]
                op = self._op_of(kn)
                if op:
                    t.append(f" ({op})", style="dim")
                t.append("\n")
                if a.recursive and depth < a.depth and kn not in seen:
                    seen.add(kn)
                    walk(kn, depth + 1)

        walk(e_name, 1)
        return t

    def _neighbours(self, n: str, inputs: bool) -> list[str]:
        """Input tensors of op/tensor `n`, or the ops consuming its outputs. An eager op whose
        outputs are not named `op:i` (`update/0.weight` outputs `0.weight`) is looked up by
        its outputs' names too."""
        kids = list(self.trace.inputs(n, self.run) if inputs else self.trace.consumers(n, self.run))
        if self.trace.node(n) is None:
            for e in self.trace.events(self.run, name=f"^{re.escape(n)}$")[-1:]:
                if inputs and not kids:
                    kids = list(e.inputs)
                elif not inputs:
                    for m in e.outputs:
                        if m.name.split(":")[0] != n:
                            kids += [k for k in self.trace.consumers(m.name, self.run) if k not in kids]
        return kids

    def _op_of(self, name: str) -> str | None:
        n = self.trace.node(name)
        if n is not None:
            return n.op
        hit = self.trace.find(name, self.run)
        return hit[0].op if hit else None

    # --------------------------------------------------------------- ps
    @command(
        "print_source",
        "ps",
        help="Source annotated with the ops each line created.",
        args=(arg("file", nargs="?", help="a source file seen in the run's stacks"),),
    )
    def cmd_ps(self, a: argparse.Namespace) -> RenderableType:
        by_file: dict[str, dict[int, list[str]]] = {}
        stacks: list[tuple[str, tuple]] = [
            (e.name, e.stack) for e in self.trace.events(self.run) if e.stack and e.phase == "forward"
        ]
        g = self.trace.graph()
        if g is not None:
            stacks += [(n.name, n.stack) for n in g.nodes if n.stack]
        for name, st in stacks:
            fr = st[0]
            lst = by_file.setdefault(fr.filename, {}).setdefault(fr.lineno, [])
            if name not in lst:
                lst.append(name)
        if not a.file:
            t = Text("Source files seen in this run's stacks (ps FILE to annotate one):\n")
            for f in sorted(by_file):
                t.append(f"  {f}  ({sum(len(v) for v in by_file[f].values())} ops)\n")
            return t
        matches = [f for f in by_file if f == a.file or os.path.basename(f) == a.file or f.endswith(a.file)]
        fname = matches[0] if matches else a.file
        src = self.trace.source(fname)
        if src is None:
            seen = ", ".join(sorted(by_file)) or "none"
            raise CommandError(f"no source for {a.file!r}: the source is not in the trace; files seen: {seen}")
        ann = by_file.get(fname, {})
        t = Text(f"{fname}\n", style="bold")
        for no, line in enumerate(src.splitlines(), 1):
            ops = ann.get(no)
            t.append(f"{'>' if ops else ' '} {no:4d} {line}", style="bold" if ops else None)
            if ops:
                shown = ", ".join(ops[:4]) + (f" (+{len(ops) - 4})" if len(ops) > 4 else "")
                t.append(f"    # {shown}", style="cyan")
            t.append("\n")
        return t

    # --------------------------------------------------------------- ri
    @command("run_info", "ri", help="Information about the current run.")
    def cmd_ri(self, a: argparse.Namespace) -> RenderableType:
        if self.run is None:
            return Text("no run recorded yet")
        try:
            r = self.trace.run_info(self.run)
        except KeyError:
            raise CommandError(f"run {self.run} is not in this trace") from None
        t = Text()
        t.append(
            f"{self.run_name.capitalize()}  ({r.kind}, {r.mode} mode{', ' + r.name if r.name else ''}"
            + (f"; trace run {r.run}" if self.label else "")
            + ")\n",
            style="bold",
        )
        t.append(f"  {r.n_events} op events")
        if r.duration_ns is not None:
            t.append(
                f"; wall time {format_ns(r.duration_ns)} (start to end of the run, Python between ops "
                "included; `tm` sums the ops' own host time)"
            )
        t.append("\n")
        t.append(f"  fetches ({len(r.fetches)}):\n")
        for f in r.fetches:
            t.append(f"    {f}\n")
        t.append(f"  feeds ({len(r.feeds)}):\n")
        for f in r.feeds:
            t.append(f"    {f}\n")
        if r.loss is not None:
            t.append(
                f"  loss: {r.loss:.6g} (what .backward() was called on in this step)\n",
                style=None if math.isfinite(r.loss) else "red",
            )
        if r.error:
            t.append(f"  error: {r.error}\n", style="red")
        c = self.culprit("has_inf_or_nan")
        if c is not None:
            t.append(f"  first NaN/inf: {c.tensor_name} ({c.op_type})\n", style="red")
        return t

    # --------------------------------------------------------------- eval
    @command(
        "eval",
        help="Evaluate an expression over tensors in backticks (not Python: only names,"
        " numbers, arithmetic, comparisons, subscripts, np.FUNCTION(...) calls and array"
        " methods; no builtins but abs/min/max/sum/len/float/int/round, no _names, no"
        " modules, no file I/O). Only what you type is evaluated, never trace text.",
        args=(arg("expr", nargs="+", help="expression; tensors in backticks: `relu:0`"),),
    )
    def cmd_eval(self, a: argparse.Namespace) -> RenderableType:
        expr = " ".join(a.expr)
        env: dict[str, Any] = {}
        count = 0

        def sub(m: re.Match) -> str:
            nonlocal count
            e, i = self._resolve(m.group(1))
            v = self.trace.value(e.outputs[i].name, e.run, default=None)
            if v is None:
                raise CommandError(f"the value of {m.group(1)} was not kept")
            key = f"T{count}"  # a name of its own; the tensor's name is never evaluated
            count += 1
            env[key] = v
            return key

        code = re.sub(r"`([^`]+)`", sub, expr)
        try:
            out = evaluate(code, env)
        except EvalError as e:
            raise CommandError(f"eval {expr!r} failed: {e}") from None
        head = Text(f"eval: {expr}")
        if isinstance(out, np.ndarray):
            return Group(head, Text(f"shape {out.shape}, dtype {out.dtype}"), array_text(out, False, None))
        return Group(head, Text(repr(out)))

    # --------------------------------------------------------------- gf
    def grad_stats(self, run: int | None = None) -> list[GradStat]:
        """Per-parameter gradient statistics of `run`, from accumulate_grad events (eager)
        and from gradient tensors feeding optimizer updates (graph mode)."""
        run = self.run if run is None else run
        out: dict[str, GradStat] = {}
        events = self.trace.events(run)
        updates: dict[str, ev.Summary] = {}
        for e in events:
            if e.phase == "update" and e.summaries and e.inputs:
                s = e.summaries[0]
                if s is not None:
                    updates[e.inputs[0].split(":")[0]] = s
        for e in events:
            s = e.summaries[0] if e.summaries else None
            if s is None:
                continue
            param = None
            if e.op == "accumulate_grad":
                param = (e.grad_of or e.inputs or (e.name,))[0]
            elif e.phase == "backward" and e.grad_of:
                continue
            if param is None:
                continue
            out[param] = GradStat.of(param, s, self.weights.get(param) or updates.get(param.split(":")[0]))
        if not out:
            out = self._graph_grad_stats(events, updates)
        return list(out.values())

    def _graph_grad_stats(self, events: list[ev.OpEvent], updates: dict[str, ev.Summary]) -> dict:
        """Graph mode: an update op's inputs are (variable, ..., gradient); the gradient is
        the input whose name starts with `gradients`."""
        produced = {m.name: (e, i) for e in events for i, m in enumerate(e.outputs)}
        out: dict[str, GradStat] = {}
        for e in events:
            if e.phase != "update":
                continue
            grads = [i for i in e.inputs if i.startswith("gradients")]
            if not grads or grads[0] not in produced:
                continue
            ge, gi = produced[grads[0]]
            s = ge.summaries[gi] if ge.summaries else None
            if s is None:
                continue
            param = e.inputs[0].split(":")[0]
            # the variable as read in this run (before its update), else the updated value
            we = produced.get(e.inputs[0])
            w = we[0].summaries[we[1]] if we is not None and we[0].summaries else updates.get(param)
            out[param] = GradStat.of(param, s, w)
        return out

    @command("gradient_flow", "gf", help="Per-parameter gradient norms, ratios and history.")
    def cmd_gf(self, a: argparse.Namespace) -> RenderableType:
        self._refresh_history()
        stats = self.grad_stats()
        if not stats:
            return Text("no parameter gradients in this run (no backward pass, or summaries not recorded)")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title=f"gradient flow, {self.run_name}")
        for col in ("parameter", "grad norm", "weight norm", "ratio", "zeros", "history", "flag"):
            right = col in ("grad norm", "weight norm", "ratio", "zeros")
            table.add_column(col, no_wrap=True, justify="right" if right else "left")
        for s in stats:
            hist = self.grad_history.get(s.param) or [s.grad_norm]
            wn = "" if s.weight_norm is None else f"{s.weight_norm:.3g}"
            table.add_row(
                s.param,
                f"{s.grad_norm:.3g}",
                wn,
                "" if s.ratio is None else f"{s.ratio:.2e}",
                f"{s.zero_share:.0%}",
                sparkline(hist[-HISTORY:]),
                s.flag,
                style="red" if s.flag in ("nan/inf", "exploding") else ("yellow" if s.flag == "vanishing" else None),
            )
        return table

    def record_history(self) -> None:
        """Appends this run's gradient norms to the per-parameter history (live sessions)."""
        for s in self.grad_stats():
            self.grad_history.setdefault(s.param, []).append(s.grad_norm)

    def history_from_trace(self) -> None:
        """Offline: `gf`'s history comes from the trace's runs up to the current one. It is
        read when `gf` first needs it (every run's events are decoded for it), and again
        once the current run has moved."""
        self._history_of_run = None
        self._offline_history = True

    def _refresh_history(self) -> None:
        if not self._offline_history or self._history_of_run == self.run:
            return
        self.grad_history.clear()
        # the sparkline shows the last HISTORY runs: only those are decoded, whatever the trace's size
        upto = [r for r in self.trace.run_ids() if r <= (self.run or 0)][-HISTORY:]
        for run in upto:
            for s in self.grad_stats(run):
                self.grad_history.setdefault(s.param, []).append(s.grad_norm)
        self._history_of_run = self.run

    # --------------------------------------------------------------- tm
    @command(
        "timing",
        "tm",
        help="Per-op time of the run, slowest first.",
        args=(arg("-n", "--limit", type=int, default=30, help="how many ops"),),
    )
    def cmd_tm(self, a: argparse.Namespace) -> RenderableType:
        events = self.trace.events(self.run)
        dev = self.trace.device_times(self.run)
        total = sum(e.duration_ns for e in events) or 1
        table = Table(
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            show_edge=False,
            title=f"{self.run_name}: {len(events)} ops, {total / 1e6:.3f} ms in ops",
        )
        for col in ("host (us)", "device (us)", "share", "phase", "op type", "name"):
            right = col in ("host (us)", "device (us)", "share")
            table.add_column(col, no_wrap=True, justify="right" if right else "left")
        for e in sorted(events, key=lambda e: e.duration_ns, reverse=True)[: a.limit]:
            d = dev.get(e.seq)
            table.add_row(
                f"{e.duration_ns / 1e3:.1f}",
                "" if d is None else f"{d / 1e3:.1f}",
                f"{e.duration_ns / total:.1%}",
                e.phase,
                e.op,
                e.name,
            )
        notes = (
            [Text(f"... {len(events) - a.limit} more ops (tm -n {len(events)} shows all)")]
            if len(events) > a.limit
            else []
        )
        notes.append(Text("time in ops: the ops' own host time, summed (`ri` gives the run's wall time)", style="dim"))
        return Group(table, *notes)

    # --------------------------------------------------------------- run / help
    @command(
        "run",
        "r",
        help="Continue: run the next session.run / step.",
        args=(
            arg("-n", "--no_debug", action="store_true", help="run the next run without debugging"),
            arg("-t", "--times", type=int, default=1, help="run this many times without stopping"),
            arg("-f", "--till_filter_pass", help="until a tensor passes fn(datum, tensor), e.g. has_inf_or_nan"),
            arg("--node_name_filter", help="regex: watch only these nodes"),
            arg("--op_type_filter", help="regex: watch only these op types"),
            arg("--tensor_dtype_filter", help="regex: watch only these dtypes"),
        ),
    )
    def cmd_run(self, a: argparse.Namespace) -> Result:
        act = RunAction(
            node_name_filter=a.node_name_filter,
            op_type_filter=a.op_type_filter,
            tensor_dtype_filter=a.tensor_dtype_filter,
        )
        if a.till_filter_pass:
            flt.get_filter(a.till_filter_pass)  # unknown names fail now, not after many runs
            act.mode, act.filter = "filter", a.till_filter_pass
        elif a.no_debug:
            act.mode = "nodebug"
        elif a.times > 1:
            act.mode, act.times = "times", a.times
        elif a.times < 1:
            raise CommandError(f"run -t needs a positive count, got {a.times}")
        return Result(Text(f"run ({act.mode})"), action=act)

    @command("help", "h", help="List commands, or show one command's help.", args=(arg("command", nargs="?"),))
    def cmd_help(self, a: argparse.Namespace) -> RenderableType:
        if a.command:
            cmd = self.commands.get(a.command)
            if cmd is None:
                raise CommandError(f"unknown command {a.command!r}")
            return Text(cmd.parser.format_help())
        t = Text("Commands (tfdbg vocabulary):\n", style="bold")
        seen = set()
        for c in self.commands.values():
            if c.name in seen:
                continue
            seen.add(c.name)
            names = ", ".join((*c.aliases, c.name))
            t.append(f"  {names:<24} {c.parser.description}\n")
        t.append(f"Tensor filters: {', '.join(flt.filter_names())}\n")
        t.append("`help COMMAND` or `COMMAND -h` shows a command's flags.\n")
        return t

    @command("exit", "quit", "q", help="Leave the debugger (the program goes on undebugged).")
    def cmd_exit(self, a: argparse.Namespace) -> Result:
        return Result(Text("exit"), exit=True)

    def complete(self, prefix: str) -> list[str]:
        """Completions for the last word of a command line: commands, then tensor names."""
        words = prefix.split(" ")
        if len(words) == 1:
            return sorted({n for n in self.commands if n.startswith(words[0])})
        last = words[-1].lstrip("`")
        if words[-2] in ("-f", "--till_filter_pass", "--tensor_filter"):
            return [n for n in flt.filter_names() if n.startswith(last)]
        names = self.tensor_names()
        return sorted({n for n in names if n.startswith(last)} | {n.split(":")[0] for n in names if n.startswith(last)})


def _regex(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise CommandError(f"invalid regex {pattern!r}: {e}") from None


def _flags(a: argparse.Namespace) -> str:
    """`lt -a`'s filter flags again, for the "more" hint."""
    out = []
    for flag, v in (("-f", a.tensor_filter), ("-n", a.node_name_filter), ("-t", a.op_type_filter)):
        if v:
            out.append(f"{flag} {shlex.quote(v)}")
    return " ".join(out)


def histogram(v: np.ndarray, bins: int = 12, width: int = 40) -> Text:
    """A text histogram of the finite values of `v`."""
    a = np.asarray(v)
    a = a[np.isfinite(a)] if a.dtype.kind in "fc" else a.astype(np.float64)
    t = Text("histogram of finite values:\n")
    if a.size == 0:
        t.append("  (no finite values)\n")
        return t
    counts, edges = np.histogram(np.real(a).ravel(), bins=bins)
    peak = counts.max() or 1
    for c, lo, hi in zip(counts, edges[:-1], edges[1:]):
        t.append(f"  [{lo:>10.4g}, {hi:>10.4g}) {'#' * int(round(c / peak * width)):<{width}} {c}\n")
    return t


def _parse_ranges(text: str) -> list[tuple[float, float]]:
    try:
        r = ast.literal_eval(text.replace("inf", "1e999"))
    except (ValueError, SyntaxError):
        raise CommandError(f"invalid range {text!r}; expected [lo, hi] or [[lo, hi], ...]") from None
    if isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(x, (int, float)) for x in r):
        r = [r]
    try:
        return [(float(lo), float(hi)) for lo, hi in r]
    except (TypeError, ValueError):
        raise CommandError(f"invalid range {text!r}; expected [lo, hi] or [[lo, hi], ...]") from None


def array_text(v: np.ndarray, full: bool, ranges: list[tuple[float, float]] | None) -> Text:
    opts: dict[str, Any] = {"threshold": np.inf} if full else {"threshold": 1000, "edgeitems": 3}
    if not ranges:
        with np.printoptions(linewidth=110, **opts):
            return Text(np.array2string(v, separator=", ") if v.ndim else repr(v.item()))

    def hit(x: float) -> bool:
        return any(lo <= x <= hi for lo, hi in ranges)

    n = int(sum(np.count_nonzero((v >= lo) & (v <= hi)) for lo, hi in ranges)) if v.dtype.kind in "fiu" else 0
    fmt = {
        "float_kind": lambda x: f"\x01{x:.6g}\x02" if hit(x) else f"{x:.6g}",
        "int": lambda x: f"\x01{x}\x02" if hit(x) else str(x),
    }
    with np.printoptions(linewidth=110, formatter=fmt, **opts):
        s = np.array2string(v, separator=", ") if v.ndim else fmt["float_kind"](float(v))
    t = Text()
    for k, chunk in enumerate(re.split(r"[\x01\x02]", s)):
        t.append(chunk, style="bold reverse" if k % 2 else None)
    t.append(f"\n{n} of {v.size} elements in range {', '.join(f'[{lo:g}, {hi:g}]' for lo, hi in ranges)}")
    return t
