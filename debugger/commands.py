"""The debugger's commands (tfdbg's vocabulary: lt, pt, ni, li, lo, ps, ri, eval, run, help,
exit, plus gf and tm), implemented once over a `Trace` and a current run. Each returns a
rich renderable: the line-mode UI prints it as plain text, the Textual UI shows it."""
from __future__ import annotations

import argparse
import ast
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

import numpy as np
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from tracetensor import events as ev
from tracetensor.trace import Trace, format_bytes, format_ns, is_launcher_frame, nonfinite_text

from . import filters as flt


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
        return cls(param, norm_of(grad), None if weight is None else norm_of(weight),
                   grad.zero / grad.size if grad.size else 0.0, grad.nonfinite)

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
    return math.sqrt(n * (s.std ** 2 + s.mean ** 2))


def to_plain(r: RenderableType, width: int = 200) -> str:
    """A renderable as plain text (line mode, tests, pipes)."""
    if isinstance(r, str):
        return r
    buf = StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, legacy_windows=False,
            emoji=False, highlight=False, soft_wrap=False).print(r)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


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
        if isinstance(n, ast.Constant) and (n.value is Ellipsis or n.value is None
                                            or isinstance(n.value, int)):
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

    def __init__(self, trace: Trace, run: int | None = None, *, stopped_by: str | None = None,
                 watch: RunAction | None = None) -> None:
        self.trace = trace
        self.run = run if run is not None else trace.last_run()
        self.stopped_by = stopped_by  # the filter whose culprit is listed first
        self.watch = watch or RunAction()
        self.weights: dict[str, ev.Summary] = {}
        self.grad_history: dict[str, list[float]] = {}
        self._offline_history = False  # see history_from_trace
        self._history_of_run: int | None = None
        self.commands: dict[str, _Cmd] = {}
        self._build()

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
            return Result(Text(f"error: unknown command {argv[0]!r}; type `help` for the list", style="red"),
                          error=True)
        try:
            args = cmd.parser.parse_args(argv[1:])
            out = cmd.fn(args)
        except _Help as h:
            return Result(Text(str(h)))
        except (CommandError, flt.FilterError) as e:
            return Result(Text(f"error: {e}", style="red"), error=True)
        return out if isinstance(out, Result) else Result(out)

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
            if rn and not rn.search(d.node_name) or ro and not ro.search(d.op_type) \
                    or rd and not rd.search(d.meta.dtype):
                continue
            out.append(d)
        return out

    def tensor_names(self) -> list[str]:
        return [d.tensor_name for d in self.data()]

    def culprit(self, filter_name: str | None = None,
                rows: list[flt.TensorDatum] | None = None) -> flt.TensorDatum | None:
        """The first tensor (execution order) passing the filter that stopped the run
        (has_inf_or_nan by default); `rows` saves recomputing `data()`."""
        fn = flt.get_filter(filter_name or self.stopped_by or "has_inf_or_nan")
        return flt.first_of(self.data() if rows is None else rows, fn)

    def _run_start_ns(self) -> int:
        try:
            return self.trace.run_info(self.run).start_ns
        except KeyError:
            evs = self.trace.events(self.run, limit=1)
            return evs[0].start_ns if evs else 0

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
            raise CommandError(f"no tensor or node named {name!r} in run {self.run}{hint}")
        return hit

    # ------------------------------------------------------------------ commands
    def _add(self, name: str, aliases: tuple[str, ...], help_: str, fn: Callable,
             setup: Callable[[_Parser], None] | None = None) -> None:
        p = _Parser(prog=name, description=help_, add_help=True)
        if setup is not None:
            setup(p)
        cmd = _Cmd(name, aliases, p, fn)
        for n in (name, *aliases):
            self.commands[n] = cmd

    def _build(self) -> None:
        def lt(p: _Parser) -> None:
            p.add_argument("-f", "--tensor_filter",
                           help="only tensors passing this filter (e.g. has_inf_or_nan)")
            p.add_argument("-n", "--node_name_filter", help="regex over node names")
            p.add_argument("-t", "--op_type_filter", help="regex over op types")
            p.add_argument("-s", "--sort_by", choices=["timestamp", "dump_size", "op_type", "tensor_name"],
                           default="timestamp")
            p.add_argument("-r", "--reverse", action="store_true", help="reverse the sort order")
        self._add("list_tensors", ("lt",), "List the tensors of the current run.", self.cmd_lt, lt)

        def pt(p: _Parser) -> None:
            p.add_argument("tensor", nargs="+", help="tensor name, optionally sliced: name:0[0, 1:3]")
            p.add_argument("-a", "--all", action="store_true", help="print every element")
            p.add_argument("-s", "--numeric_summary", action="store_true", help="add a numeric summary")
            p.add_argument("-r", "--ranges", help="highlight elements in [lo, hi] (or [[lo, hi], ...])")
        self._add("print_tensor", ("pt",), "Print a tensor's value.", self.cmd_pt, pt)

        def ni(p: _Parser) -> None:
            p.add_argument("node", help="node/op or tensor name")
            p.add_argument("-a", "--attributes", action="store_true", help="show the node's attributes")
            p.add_argument("-t", "--traceback", action="store_true", help="show where the node was created")
        self._add("node_info", ("ni",), "Information about a node (op).", self.cmd_ni, ni)

        def io(p: _Parser) -> None:
            p.add_argument("node")
            p.add_argument("-r", "--recursive", action="store_true")
            p.add_argument("-d", "--depth", type=int, default=20)
        self._add("list_inputs", ("li",), "The inputs of a node (-r: recursively).",
                  lambda a: self.cmd_tree(a, inputs=True), io)
        self._add("list_outputs", ("lo",), "The consumers of a node's outputs (-r: recursively).",
                  lambda a: self.cmd_tree(a, inputs=False), io)

        def ps(p: _Parser) -> None:
            p.add_argument("file", nargs="?", help="a source file seen in the run's stacks")
        self._add("print_source", ("ps",), "Source annotated with the ops each line created.",
                  self.cmd_ps, ps)
        self._add("run_info", ("ri",), "Information about the current run.", self.cmd_ri)

        def evl(p: _Parser) -> None:
            p.add_argument("expr", nargs="+", help="numpy expression; tensors in backticks: `relu:0`")
        self._add("eval", (), "Evaluate a numpy expression over tensors in backticks.", self.cmd_eval, evl)

        def gf(p: _Parser) -> None:
            pass
        self._add("gradient_flow", ("gf",), "Per-parameter gradient norms, ratios and history.",
                  self.cmd_gf, gf)

        def tm(p: _Parser) -> None:
            p.add_argument("-n", "--limit", type=int, default=30, help="how many ops")
        self._add("timing", ("tm",), "Per-op time of the run, slowest first.", self.cmd_tm, tm)

        def run(p: _Parser) -> None:
            p.add_argument("-n", "--no_debug", action="store_true", help="run the next run without debugging")
            p.add_argument("-t", "--times", type=int, default=1, help="run this many times without stopping")
            p.add_argument("-f", "--till_filter_pass", help="run until a tensor passes this filter")
            p.add_argument("--node_name_filter", help="regex: watch only these nodes")
            p.add_argument("--op_type_filter", help="regex: watch only these op types")
            p.add_argument("--tensor_dtype_filter", help="regex: watch only these dtypes")
        self._add("run", ("r",), "Continue: run the next session.run / step.", self.cmd_run, run)
        self._add("ranks", (), "Compare the ranks of an MPI job in the current run (per-rank traces).",
                  self.cmd_ranks)
        self._add("help", ("h",), "List commands, or show one command's help.", self.cmd_help,
                  lambda p: p.add_argument("command", nargs="?"))
        self._add("exit", ("quit", "q"), "Leave the debugger (the program goes on undebugged).",
                  lambda a: Result(Text("exit"), exit=True))

    # --------------------------------------------------------------- lt
    def cmd_lt(self, a: argparse.Namespace) -> RenderableType:
        rows = self.data()
        fname = a.tensor_filter or self.stopped_by or "has_inf_or_nan"
        fn = flt.get_filter(fname)
        culprit = self.culprit(fname, rows)
        if a.tensor_filter:
            rows = [d for d in rows if flt.passes(fn, d)]
        if a.node_name_filter:
            rx = re.compile(a.node_name_filter)
            rows = [d for d in rows if rx.search(d.node_name)]
        if a.op_type_filter:
            rx = re.compile(a.op_type_filter)
            rows = [d for d in rows if rx.search(d.op_type)]
        key = {"timestamp": lambda d: d.event.seq, "dump_size": lambda d: d.meta.nbytes,
               "op_type": lambda d: d.op_type, "tensor_name": lambda d: d.tensor_name}[a.sort_by]
        rows.sort(key=key, reverse=a.reverse)
        if culprit is not None and culprit in rows:
            rows.remove(culprit)
            rows.insert(0, culprit)
        t0 = self._run_start_ns()
        head = Text(f"run {self.run}: {len(rows)} tensors")
        if a.tensor_filter:
            head.append(f" passing {a.tensor_filter}")
        if culprit is not None:
            head.append(f"   culprit ({fname}): ", style="bold")
            head.append(culprit.tensor_name, style="bold red")
            where = getattr(self.trace, "where", None)  # a set of per-rank traces: which rank and step
            if where is not None:
                head.append(f"  ({where(culprit.event)})", style="bold")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for col, j in (("", "left"), ("t (ms)", "right"), ("size", "right"), ("op type", "left"),
                       ("tensor name", "left"), ("shape", "left"), ("dtype", "left"), ("nan/inf", "left")):
            table.add_column(col, justify=j, no_wrap=True)
        for d in rows:
            mark = "!" if d is culprit else ""
            nf = nonfinite_text(d.summary)
            table.add_row(mark, f"{(d.event.end_ns - t0) / 1e6:.3f}", format_bytes(d.meta.nbytes), d.op_type,
                          d.tensor_name, str(tuple(d.meta.shape)), d.meta.dtype, nf,
                          style="red" if d is culprit else ("yellow" if nf not in ("", "0") else None))
        return Group(head, table)

    # --------------------------------------------------------------- ranks
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
    def cmd_pt(self, a: argparse.Namespace) -> RenderableType:
        expr = "".join(a.tensor)
        m = _SLICE_RX.match(expr)
        if not m:
            raise CommandError(f"invalid tensor expression {expr!r}")
        name, sl = m.group(1), m.group(2)
        e, i = self._resolve(name)
        meta = e.outputs[i]
        v = self.trace.value(meta.name, e.run)
        head = Text(f"Tensor \"{meta.name}\" (run {e.run}): op {e.op}, dtype {meta.dtype}, "
                    f"shape {meta.shape}")
        parts: list[RenderableType] = [head]
        summ = e.summaries[i] if e.summaries and i < len(e.summaries) else None
        if v is None:
            parts.append(Text("(the value was not kept: only the summary was recorded)", style="yellow"))
            if summ is not None:
                parts.append(Text(summ.brief()))
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
            t.append("  traceback of node construction (innermost first):\n" if node is not None
                     else "  traceback of op creation (innermost first):\n")
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
    def cmd_tree(self, a: argparse.Namespace, *, inputs: bool) -> RenderableType:
        e_name = a.node.split(":")[0]
        if self.trace.node(e_name) is None:
            e_name = self._resolve(a.node)[0].name
        t = Text()
        t.append(f"{'Inputs to' if inputs else 'Recipients of'} node \"{e_name}\"" +
                 (f" (depth limit {a.depth})" if a.recursive else "") + ":\n", style="bold")
        seen: set[str] = set()

        def walk(n: str, depth: int) -> None:
            kids = self.trace.inputs(n, self.run) if inputs else self.trace.consumers(n, self.run)
            for k in kids:
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

    def _op_of(self, name: str) -> str | None:
        n = self.trace.node(name)
        if n is not None:
            return n.op
        hit = self.trace.find(name, self.run)
        return hit[0].op if hit else None

    # --------------------------------------------------------------- ps
    def cmd_ps(self, a: argparse.Namespace) -> RenderableType:
        by_file: dict[str, dict[int, list[str]]] = {}
        stacks: list[tuple[str, tuple]] = [(e.name, e.stack) for e in self.trace.events(self.run)
                                           if e.stack and e.phase == "forward"]
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
            raise CommandError(f"no source for {a.file!r}; files seen: {seen}")
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
    def cmd_ri(self, a: argparse.Namespace) -> RenderableType:
        if self.run is None:
            return Text("no run recorded yet")
        try:
            r = self.trace.run_info(self.run)
        except KeyError:
            raise CommandError(f"run {self.run} is not in this trace") from None
        t = Text()
        t.append(f"Run {r.run}  ({r.kind}, {r.mode} mode{', ' + r.name if r.name else ''})\n", style="bold")
        t.append(f"  {r.n_events} op events")
        if r.duration_ns is not None:
            t.append(f", {format_ns(r.duration_ns)}")
        t.append("\n")
        t.append(f"  fetches ({len(r.fetches)}):\n")
        for f in r.fetches:
            t.append(f"    {f}\n")
        t.append(f"  feeds ({len(r.feeds)}):\n")
        for f in r.feeds:
            t.append(f"    {f}\n")
        if r.error:
            t.append(f"  error: {r.error}\n", style="red")
        c = self.culprit("has_inf_or_nan")
        if c is not None:
            t.append(f"  first NaN/inf: {c.tensor_name} ({c.op_type})\n", style="red")
        return t

    # --------------------------------------------------------------- eval
    def cmd_eval(self, a: argparse.Namespace) -> RenderableType:
        expr = " ".join(a.expr)
        env: dict[str, Any] = {"np": np, "numpy": np}
        count = 0

        def sub(m: re.Match) -> str:
            nonlocal count
            e, i = self._resolve(m.group(1))
            v = self.trace.value(e.outputs[i].name, e.run)
            if v is None:
                raise CommandError(f"the value of {m.group(1)} was not kept")
            key = f"_t{count}"
            count += 1
            env[key] = v
            return key
        code = re.sub(r"`([^`]+)`", sub, expr)
        try:
            out = eval(code, {"__builtins__": {"abs": abs, "min": min, "max": max, "sum": sum, "len": len,
                                               "float": float, "int": int, "range": range}}, env)
        except CommandError:
            raise
        except Exception as e:
            raise CommandError(f"eval {expr!r} failed: {type(e).__name__}: {e}") from None
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

    def cmd_gf(self, a: argparse.Namespace) -> RenderableType:
        self._refresh_history()
        stats = self.grad_stats()
        if not stats:
            return Text("no parameter gradients in this run (no backward pass, or summaries not recorded)")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                      title=f"gradient flow, run {self.run}")
        for col in ("parameter", "grad norm", "weight norm", "ratio", "zeros", "history", "flag"):
            right = col in ("grad norm", "weight norm", "ratio", "zeros")
            table.add_column(col, no_wrap=True, justify="right" if right else "left")
        for s in stats:
            hist = self.grad_history.get(s.param) or [s.grad_norm]
            wn = "" if s.weight_norm is None else f"{s.weight_norm:.3g}"
            table.add_row(s.param, f"{s.grad_norm:.3g}", wn,
                          "" if s.ratio is None else f"{s.ratio:.2e}", f"{s.zero_share:.0%}",
                          sparkline(hist[-20:]), s.flag,
                          style="red" if s.flag in ("nan/inf", "exploding") else
                          ("yellow" if s.flag == "vanishing" else None))
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
        for r in self.trace.runs():
            if r.run > (self.run or 0):
                break
            for s in self.grad_stats(r.run):
                self.grad_history.setdefault(s.param, []).append(s.grad_norm)
        self._history_of_run = self.run

    # --------------------------------------------------------------- tm
    def cmd_tm(self, a: argparse.Namespace) -> RenderableType:
        events = self.trace.events(self.run)
        dev = self.trace.device_times(self.run)
        total = sum(e.duration_ns for e in events) or 1
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                      title=f"run {self.run}: {len(events)} ops, {total / 1e6:.3f} ms host time")
        for col in ("host (us)", "device (us)", "share", "phase", "op type", "name"):
            right = col in ("host (us)", "device (us)", "share")
            table.add_column(col, no_wrap=True, justify="right" if right else "left")
        for e in sorted(events, key=lambda e: e.duration_ns, reverse=True)[: a.limit]:
            d = dev.get(e.seq)
            table.add_row(f"{e.duration_ns / 1e3:.1f}", "" if d is None else f"{d / 1e3:.1f}",
                          f"{e.duration_ns / total:.1%}", e.phase, e.op, e.name)
        return table

    # --------------------------------------------------------------- run / help
    def cmd_run(self, a: argparse.Namespace) -> Result:
        act = RunAction(node_name_filter=a.node_name_filter, op_type_filter=a.op_type_filter,
                        tensor_dtype_filter=a.tensor_dtype_filter)
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

    def complete(self, prefix: str) -> list[str]:
        """Completions for the last word of a command line: commands, then tensor names."""
        words = prefix.split(" ")
        if len(words) == 1:
            return sorted({n for n in self.commands if n.startswith(words[0])})
        last = words[-1].lstrip("`")
        if words[-2] in ("-f", "--till_filter_pass", "--tensor_filter"):
            return [n for n in flt.filter_names() if n.startswith(last)]
        names = self.tensor_names()
        return sorted({n for n in names if n.startswith(last)} |
                      {n.split(":")[0] for n in names if n.startswith(last)})


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
    fmt = {"float_kind": lambda x: f"\x01{x:.6g}\x02" if hit(x) else f"{x:.6g}",
           "int": lambda x: f"\x01{x}\x02" if hit(x) else str(x)}
    with np.printoptions(linewidth=110, formatter=fmt, **opts):
        s = np.array2string(v, separator=", ") if v.ndim else fmt["float_kind"](float(v))
    t = Text()
    for k, chunk in enumerate(re.split(r"[\x01\x02]", s)):
        t.append(chunk, style="bold reverse" if k % 2 else None)
    t.append(f"\n{n} of {v.size} elements in range {', '.join(f'[{lo:g}, {hi:g}]' for lo, hi in ranges)}")
    return t
