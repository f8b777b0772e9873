"""`tt.debugging`: find the first NaN/inf. `check_numerics(x, message)` checks one tensor
(TF's semantics); `enable_check_numerics()` / `check_numerics_mode()` check every op,
forward and backward, and raise at the first one that produces a NaN or infinity (like
tf.debugging.enable_check_numerics and torch.autograd.detect_anomaly)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._source import user_frame
from .errors import NumericsError
from .events import Event, Listener, OpEvent, check, subscribe
from .trace.text import printable

__all__ = ["check_numerics", "enable_check_numerics", "disable_check_numerics", "check_numerics_mode", "NumericsError"]


def check_numerics(x: Any, message: str = "") -> Any:
    """Returns `x` unchanged when all its values are finite; otherwise raises NumericsError
    naming `message` and a summary (counts of NaN, -inf, +inf, range of the finite values)."""
    data = getattr(x, "_data", x)
    s = check(data if hasattr(data, "dtype") else np.asarray(data))
    if s is None:
        return x
    raise NumericsError(
        f"check_numerics: {message + ': ' if message else ''}tensor has {s.nan} NaN, "
        f"{s.neginf} -inf, {s.posinf} +inf of {s.size} values ({s.brief()})"
    )


def _where(ev: OpEvent) -> str:
    if not ev.stack:
        return "an unknown line"
    f = ev.stack[0]
    return f"{f.filename}:{f.lineno}" + (f" in {f.name}" if f.name and f.name != "<module>" else "")


def _describe(ev: OpEvent) -> str:
    """One message naming the op, phase, its name, its inputs' summaries and the user's line."""
    bad = [(m.name, s) for m, s in zip(ev.outputs, ev.summaries or ()) if s is not None and not s.finite]
    head = f"{ev.op} ({ev.phase}) '{ev.name}' produced"
    outs = "; ".join(f"{n}: {s.nan} NaN, {s.neginf} -inf, {s.posinf} +inf of {s.size}" for n, s in bad)
    lines = [f"{head} {outs}"]
    if ev.phase == "backward" and ev.stack == () and ev.mode == "eager":
        here = user_frame()
        lines.append(
            f"  gradient of {', '.join(n for n in ev.grad_of if n) or '?'} through '{ev.forward}' "
            f"({ev.op}); its forward ran outside the check, so where it was created is unknown: "
            "put the forward pass inside check_numerics_mode() to see its line"
        )
        if here is not None:
            lines.append(f"  backward called at {here.filename}:{here.lineno}")
    elif ev.phase == "backward":
        lines.append(
            f"  gradient of {', '.join(n for n in ev.grad_of if n) or '?'} through '{ev.forward}', "
            f"from the forward op at {_where(ev)}"
        )
    else:
        lines.append(f"  at {_where(ev)}")
    for name, s in zip(ev.inputs, ev.input_summaries or ()):
        lines.append(f"  input {name}: {s.brief() if s is not None else 'not a tensor'}")
    return printable("\n".join(lines), lines=True)  # (names and paths are the user's: plain text)


class _Checker:
    """The listener: raises inside the op that made the first non-finite value (the
    exception propagates out of the dispatch point into the user's code). It listens with
    the exact check and nothing else (`checks=True, only_nonfinite=True`): a finite op costs
    its check alone (beside other listeners it may come as a record, which it ignores); a
    failing op arrives as an OpEvent with summaries and the user's stack."""

    def __call__(self, ev: Event) -> None:
        if ev.__class__ is OpEvent and ev.summaries and any(s is not None and not s.finite for s in ev.summaries):
            raise NumericsError(_describe(ev))


_lock = threading.Lock()
_active: list[Listener] = []


def enable_check_numerics() -> None:
    """Checks every op's outputs from now on (until disable_check_numerics), exactly and cheaply:
    one reduction per output; summaries and the user's line only for the op that fails."""
    with _lock:
        if not _active:
            _active.append(subscribe(_Checker(), checks=True, raw=True, only_nonfinite=True, at_op=True))


def disable_check_numerics() -> None:
    with _lock:
        while _active:
            _active.pop().close()


@contextmanager
def check_numerics_mode() -> Iterator[None]:
    """`with tt.debugging.check_numerics_mode(): loss.backward()` — like torch's detect_anomaly."""
    lis = subscribe(_Checker(), checks=True, raw=True, only_nonfinite=True, at_op=True)
    try:
        yield
    finally:
        lis.close()
