"""NaN/inf findings from the event stream and the report the pytest plugin prints;
knows nothing of pytest, so it is usable (and tested) on its own.

`Numerics` is an event listener: it keeps the non-finite outputs it sees (capped),
the gradient summaries each parameter received (one per backward pass), and just
enough of the op graph to say which parameters a bad gradient flows into.

With `summaries=False` it asks the engine for the cheap exact check only, and until
something fails it, for nothing else (`subscribe(checks=True, only_nonfinite=True)`: a
finite op then costs its check alone). A non-finite output arrives as a full event
(summaries, inputs, stack; for a backward op, its forward op's inputs); from then on every
op comes, as raw records kept in a bounded queue and turned into events only when the report
or a query needs them (the backward ops the bad gradient flows through, the parameters it
reaches).
"""

from __future__ import annotations

import dataclasses
import linecache
import os
import threading
from collections import deque

from tracetensor.events import Event, Frame, GraphDef, Listener, OpEvent, Summary, materialize, router, subscribe
from tracetensor.trace import nonfinite_text, printable

__all__ = ["MODES", "Finding", "Numerics", "is_gradient"]

MODES = ("grad", "all", "off")
# Forward events kept for the report (the culprit's forward op and its inputs); the
# map is cleared when it reaches this size, so a long test keeps only recent ops.
_FORWARD_CAP = 20_000


def is_gradient(phase: str, name: str) -> bool:
    """Backward ops, gradient accumulation and optimizer updates; in graph mode also
    the `gradients/...` nodes, which run in the forward phase of a session."""
    return phase != "forward" or name.startswith("gradients/")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One output tensor that held a NaN or an infinity."""

    seq: int
    tensor: str
    summary: Summary
    event: OpEvent
    # for a backward op: its forward op and that op's inputs (name, summary text) as they
    # were when the gradient went bad; later steps reuse the same op names
    forward_event: OpEvent | None = None
    forward_inputs: tuple[tuple[str, str], ...] = ()

    @property
    def op(self) -> str:
        return self.event.op

    @property
    def phase(self) -> str:
        return self.event.phase

    @property
    def gradient(self) -> bool:
        return is_gradient(self.event.phase, self.event.name)

    @property
    def frame(self) -> Frame | None:
        """The user's line; for a backward op that of the forward op it differentiates."""
        return self.event.frame


class Numerics:
    """Collects what a test (or any block of code) computed that was not finite.

    `with Numerics() as n: ...` listens while the block runs; `n.findings`, `n.total`,
    `n.grads("fc1.weight")`, `n.report()`. `summaries=False` checks every output exactly
    for NaN/inf at a fraction of the cost, but keeps statistics only of non-finite tensors,
    and sees finite ones only after the first non-finite one (`grads()` and `params()` then
    start there, and hold None for a gradient that was finite).
    """

    def __init__(self, max_findings: int = 50, *, summaries: bool = True) -> None:
        self.max_findings = max_findings
        self.summaries = summaries
        self._records: deque = deque(maxlen=_FORWARD_CAP)  # raw records not yet looked at
        self.findings: list[Finding] = []
        self.total = 0  # non-finite output tensors, every phase, beyond the cap too
        self.total_grad = 0  # of those, gradients (see is_gradient)
        self._grads: dict[str, list[Summary]] = {}
        self._forward: dict[str, OpEvent] = {}
        self._backward: dict[str, tuple[str, ...]] = {}  # forward op name -> grad_of, after a finding
        self._variables: set[str] = set()  # graph-mode variables (from the graphs' GraphDefs)
        self._lock = threading.Lock()
        self._listener: Listener | None = None
        # threads started by someone else (the pytest plugin: by an earlier test) -> who started
        # them; what they compute is counted in `background`, not in this block's findings
        self.foreign_threads: dict[int, str] = {}
        self.background: dict[str, int] = {}

    # ----------------------------------------------------------------- listening
    def start(self) -> Numerics:
        if self._listener is None:
            if self.summaries:
                self._listener = subscribe(self, summaries=True, stacks=True)
            else:
                # nothing per finite op until one fails the check (then `_every_op`)
                self._listener = subscribe(self, checks=True, raw=True, only_nonfinite=True)
        return self

    def _every_op(self) -> None:
        """At the first non-finite tensor: every op from here on, for the report (the backward
        ops a bad gradient flows through, the parameters it reaches). Records (finite ops) queue
        at C speed; events (a failed check, run markers) come to `__call__`."""
        lis = self._listener
        if lis is not None and lis.only_nonfinite:
            lis.every_op(router(self._records.append, self))

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> Numerics:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __call__(self, e: Event) -> None:
        """The listener callback: a few attribute reads per event unless something is wrong."""
        if e.__class__ is not OpEvent:
            if e.__class__ is tuple:  # a raw record: its outputs are finite; read when needed
                self._records.append(e)
            elif e.__class__ is GraphDef:  # (once per graph: which nodes are variables, for flows_into)
                self._variables.update(n.name for n in e.nodes if "Variable" in n.op)
            return
        if self._records:
            self._catch_up()
        self._see(e)

    def _catch_up(self) -> None:
        """Takes in the raw records received so far (oldest first), as events."""
        recs = self._records
        with self._lock:
            batch = [recs.popleft() for _ in range(len(recs))]
        for e in materialize(batch):
            self._see(e)

    def _see(self, e: OpEvent) -> None:
        phase = e.phase
        if phase == "forward":
            fw = self._forward
            if len(fw) >= _FORWARD_CAP:
                fw.clear()
            # values (when another listener asked for them) would keep arrays alive here
            fw[e.name] = e if e.values is None else dataclasses.replace(e, values=None)
        elif e.forward is not None and self.findings:
            self._backward[e.forward] = e.grad_of
        sums = e.summaries
        if e.op == "accumulate_grad" and e.grad_of and (sums or not self.summaries):
            self._grads.setdefault(e.grad_of[0], []).append(sums[0] if sums else None)
        if sums:
            for s in sums:
                if s is not None and not s.finite:
                    self._every_op()
                    owner = self.foreign_threads.get(e.thread) if self.foreign_threads else None
                    if owner is None:
                        self._found(e, sums)
                    else:
                        with self._lock:
                            self.background[owner] = self.background.get(owner, 0) + 1
                    break

    def _found(self, e: OpEvent, sums: tuple[Summary, ...]) -> None:
        grad = is_gradient(e.phase, e.name)
        with self._lock:
            fwd = self._forward.get(e.forward) if e.forward is not None else None
            fwd_inputs = ()
            if len(self.findings) >= self.max_findings:
                pass
            elif e.forward_summaries is not None:  # the check summarized them as the gradient went bad
                # (the forward op's inputs are what its gradient is of, `grad_of`: read here, not
                # from its forward event, which a check that saw nothing finite before has not)
                fwd_inputs = tuple(
                    (n, s.brief() if s is not None else "-") for n, s in zip(e.grad_of, e.forward_summaries)
                )
            elif fwd is not None:
                fwd_inputs = tuple((n, self._summary_of(n)) for n in fwd.inputs)
            for meta, s in zip(e.outputs, sums):
                if s is None or s.finite:
                    continue
                self.total += 1
                self.total_grad += grad
                if len(self.findings) < self.max_findings:
                    self.findings.append(Finding(e.seq, meta.name, s, e, fwd, fwd_inputs))
            if grad and e.forward is not None:
                self._backward[e.forward] = e.grad_of

    def __repr__(self) -> str:
        first = self.ordered()[:1]
        return (
            f"<tt_numerics: {self.total} non-finite tensor(s) ({self.total_grad} gradient(s))"
            + (f", first {first[0].tensor}" if first else "")
            + f"; gradients of {len(self._grads)} parameter(s): {', '.join(list(self._grads)[:5])}"
            + ("..." if len(self._grads) > 5 else "")
            + "; .findings .ordered() .grads(name) .params() .flows_into(f) .report()>"
        )

    # ----------------------------------------------------------------- queries
    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self.findings.clear()
            self.total = self.total_grad = 0
            self._grads.clear()
            self._backward.clear()

    def ordered(self, mode: str = "all") -> list[Finding]:
        """Findings in execution order; `mode="grad"` keeps gradients only."""
        fs = sorted(self.findings, key=lambda f: f.seq)
        return [f for f in fs if f.gradient] if mode == "grad" else fs

    def count(self, mode: str = "all") -> int:
        """How many non-finite tensors `mode` counts ("off" counts none)."""
        return 0 if mode == "off" else self.total_grad if mode == "grad" else self.total

    def grads(self, param: str) -> list[Summary | None]:
        """Summaries of the gradients accumulated into leaf `param`, one per backward pass
        (None for a finite gradient when only checked: `summaries=False`)."""
        if self._records:
            self._catch_up()
        return list(self._grads.get(param, ()))

    def params(self) -> list[str]:
        """Leaf tensors (parameters) that received a gradient, in first-seen order."""
        if self._records:
            self._catch_up()
        return list(self._grads)

    def flows_into(self, f: Finding) -> list[str]:
        """The parameters a non-finite gradient reaches: follows grad_of through the
        backward ops to the leaves that accumulated a gradient (eager) or to the
        variables (graph mode)."""
        if self._records:
            self._catch_up()
        e = f.event
        params = self._grads
        if e.op == "accumulate_grad":
            return list(e.grad_of[:1])
        out: list[str] = []
        seen: set[str] = set()
        todo = list(e.grad_of) if e.forward is not None else []
        while todo:
            n = todo.pop()
            if n in seen or not n:
                continue
            seen.add(n)
            if n in params:
                out.append(n)
                continue
            producer = n.rsplit(":", 1)[0]
            nxt = self._backward.get(producer)
            if nxt:
                todo.extend(nxt)
                continue
            fw = self._forward.get(producer)
            if producer in self._variables or fw is not None and "Variable" in fw.op:  # a graph-mode
                out.append(producer)  # variable: the parameter itself
        if not out:  # graph-mode gradients and the like: the leaves whose gradient went bad
            out = [p for p, ss in params.items() if any(s is not None and not s.finite for s in ss)]
        return sorted(out)

    # ----------------------------------------------------------------- report
    def reason(self, mode: str = "grad") -> str:
        """One line for the short test summary: op, phase, line, parameter, then counts."""
        fs = self.ordered(mode)
        if not fs:
            return ""
        f = fs[0]
        what = "gradient" if f.gradient else "value"
        where = f" at {_where(f.frame)}" if f.frame else ""
        into = self.flows_into(f) if f.gradient else []
        dest = f" -> {', '.join(into)}" if into else ""
        n = self.count(mode)
        noun = "gradient" if mode == "grad" else "tensor"
        # (names, paths and source lines are the user's: shown as plain text, no control characters)
        return printable(
            f"tracetensor: non-finite {what} from {f.op} ({f.phase}){where}{dest}: "
            f"{f.tensor} has {nonfinite_text(f.summary)}; {n} non-finite {noun}{'s' if n != 1 else ''}"
        )

    def report(self, mode: str = "grad") -> str:
        """The failure section: the first non-finite tensor in execution order, what
        produced it, where in the user's code, what its inputs held; then the first
        gradient if that is another tensor, and the totals."""
        fs = self.ordered("all")
        if not fs or self.count(mode) == 0:
            return ""
        lines = [
            f"{self.count('all')} non-finite tensor(s) in this test "
            f"({self.total_grad} gradient(s)); checked: {_MODE_TEXT[mode]}"
        ]
        first = fs[0]
        lines += ["", "first non-finite tensor, in execution order:", *self._describe(first)]
        grads = [f for f in fs if f.gradient]
        if grads and grads[0] is not first:
            lines += ["", "first non-finite gradient:", *self._describe(grads[0])]
        shown = {id(first)} | ({id(grads[0])} if grads else set())
        others = [f for f in fs if id(f) not in shown]
        if others:
            more = ", ".join(f"{f.tensor} ({f.op}, {f.phase})" for f in others[:5])
            rest = self.total - len(shown) - min(len(others), 5)
            lines += ["", f"also non-finite: {more}" + (f" and {rest} more" if rest > 0 else "")]
        return printable("\n".join(lines), lines=True)  # (see `reason`)

    def _describe(self, f: Finding) -> list[str]:
        e = f.event
        out = [
            f"  tensor  {f.tensor}: {f.summary.brief()}",
            f"  op      {e.op} '{e.name}' ({e.phase}, {e.mode} mode"
            + (f", run {e.run}" if e.mode == "graph" else "")
            + ")",
        ]
        if e.forward is not None:
            out.append(f"  of      forward op '{e.forward}'")
        if f.gradient:
            into = self.flows_into(f)
            out.append(f"  flows into  {', '.join(into) if into else '(no parameter found)'}")
        if f.frame is not None:
            label = "forward line" if e.phase != "forward" else "line"
            out.append(f"  {label}  {_where(f.frame)} in {f.frame.name}")
            code = linecache.getline(f.frame.filename, f.frame.lineno).strip()
            if code:
                out.append(f"      {code}")
            for fr in _callers(e.stack):
                out.append(f"      called from {_where(fr)} in {fr.name}")
        if e.input_summaries:
            out.append("  inputs of this op:")
            # an update changes its parameter in place: that input is summarized as it is after
            inplace = {m.name for m in e.outputs} if e.phase == "update" else set()
            out += [
                f"      {n}{' (after the in-place update)' if n in inplace else ''}: "
                f"{s.brief() if s is not None else '-'}"
                for n, s in zip(e.inputs or ("?",) * len(e.input_summaries), e.input_summaries)
            ]
        fwd = f.forward_event
        if fwd is not None or f.forward_inputs:
            out.append(f"  inputs of forward op '{fwd.name if fwd is not None else e.forward}':")
            out += [f"      {n}: {text}" for n, text in f.forward_inputs]
            if fwd is not None and fwd.summaries:
                out += [
                    f"      -> {m.name}: {s.brief() if s is not None else '-'}"
                    for m, s in zip(fwd.outputs, fwd.summaries)
                ]
        return out

    def _summary_of(self, tensor: str) -> str:
        op, _, idx = tensor.rpartition(":")
        e = self._forward.get(op) if op else None
        if e is None or not e.summaries or not idx.isdigit() or int(idx) >= len(e.summaries):
            return "leaf tensor" if not op else "(not recorded)"
        s = e.summaries[int(idx)]
        return s.brief() if s is not None else "-"


_MODE_TEXT = {
    "grad": "gradients and updates (tracetensor_nan=grad)",
    "all": "every op output (tracetensor_nan=all)",
    "off": "nothing (tracetensor_nan=off)",
}


def _callers(stack: tuple[Frame, ...] | None, limit: int = 3) -> list[Frame]:
    """The user's outer frames, up to the test runner's own."""
    out = []
    for fr in (stack or ())[1 : limit + 1]:
        if any(p in fr.filename for p in _RUNNER_DIRS):
            break
        out.append(fr)
    return out


_RUNNER_DIRS = (f"{os.sep}_pytest{os.sep}", f"{os.sep}pluggy{os.sep}", f"{os.sep}unittest{os.sep}")


def _where(fr: Frame) -> str:
    path = fr.filename
    try:
        rel = os.path.relpath(path)
        if not rel.startswith(".."):
            path = rel
    except ValueError:  # another drive on Windows
        pass
    return f"{path}:{fr.lineno}"
