"""Tensor filters (tfdbg's `has_inf_or_nan` and user-registered ones): predicates over
one tensor of one run, used by `lt -f`, `run -f` and the culprit marker."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from tracetensor import events as ev
from tracetensor.trace import Trace


@dataclass
class TensorDatum:
    """One output tensor of one op event, as a filter sees it (tfdbg's DebugTensorDatum)."""

    event: ev.OpEvent
    index: int
    trace: Trace

    @property
    def meta(self) -> ev.TensorMeta:
        return self.event.outputs[self.index]

    @property
    def tensor_name(self) -> str:
        return self.meta.name

    @property
    def node_name(self) -> str:
        return self.event.name

    @property
    def op_type(self) -> str:
        return self.event.op

    @property
    def summary(self) -> ev.Summary | None:
        s = self.event.summaries
        return s[self.index] if s is not None and self.index < len(s) else None

    @cached_property
    def value(self) -> np.ndarray | None:
        """The recorded value (None when only summaries were kept)."""
        return self.trace.value(self.tensor_name, self.event.run, default=None)


Filter = Callable[[TensorDatum, Any], bool]


class FilterError(LookupError):
    """A filter name that is not registered, or a filter that failed on a tensor."""


def has_inf_or_nan(datum: TensorDatum, tensor: Any) -> bool:
    """True when the tensor holds a NaN or an infinity (from its summary when one was
    recorded, else from its value)."""
    s = datum.summary
    if s is not None:
        return not s.finite
    if tensor is None:
        return False
    a = np.asarray(tensor)
    return a.dtype.kind in "fc" and not bool(np.isfinite(a).all())


_FILTERS: dict[str, Filter] = {"has_inf_or_nan": has_inf_or_nan}


def add_tensor_filter(name: str, fn: Filter) -> None:
    """Registers `fn(datum, tensor) -> bool` under `name` for `lt -f` and `run -f`.
    `datum` is a TensorDatum (`.tensor_name`, `.node_name`, `.op_type`, `.meta`, `.summary`);
    `tensor` is the value as a numpy array, or None when values were not kept. A filter
    that raises is reported in the debugger; the program goes on."""
    if not callable(fn):
        raise TypeError(f"tensor filter {name!r} must be callable, got {type(fn).__name__}")
    _FILTERS[name] = fn


def get_filter(name: str) -> Filter:
    try:
        return _FILTERS[name]
    except KeyError:
        known = ", ".join(sorted(_FILTERS))
        raise FilterError(f"no tensor filter named {name!r}; registered: {known}") from None


def filter_names() -> list[str]:
    return sorted(_FILTERS)


def passes(fn: Filter, datum: TensorDatum) -> bool:
    """Runs a filter; only the value-free path is taken when the summary already answers."""
    if fn is has_inf_or_nan and datum.summary is not None:
        return not datum.summary.finite
    try:
        return bool(fn(datum, datum.value))
    except Exception as e:  # the user's filter: its bug must not end the program being debugged
        name = next((n for n, f in _FILTERS.items() if f is fn), getattr(fn, "__name__", repr(fn)))
        raise FilterError(
            f"tensor filter {name!r} raised {type(e).__name__} on {datum.tensor_name}: {e}\n"
            "filters are called as fn(datum, tensor) -> bool (datum: TensorDatum, tensor: "
            "numpy array or None)"
        ) from None


def data(trace: Trace, run: int | None) -> list[TensorDatum]:
    """Every output tensor of a run, in execution order."""
    out = []
    for e in trace.events(run):
        for i, m in enumerate(e.outputs):
            if m.dtype != "none":
                out.append(TensorDatum(e, i, trace))
    return out


def unanswered(fn: Filter, rows: Iterable[TensorDatum]) -> int:
    """How many of `rows` `fn` cannot judge from what was recorded: for has_inf_or_nan,
    floating tensors with neither a summary nor a value (a trace recorded with
    values="none"). Counting them keeps "0 tensors passing" from reading as "no NaN"."""
    if fn is not has_inf_or_nan:
        return 0
    return sum(
        1
        for d in rows
        if d.summary is None
        and d.meta.dtype.startswith(("float", "complex", "bfloat"))
        and not checked(d.trace)
        and d.value is None
    )


def checked(trace: Trace) -> bool:
    """True for a trace recorded with values="check": every floating tensor was checked for
    NaN/inf exactly, and only those that failed have a summary (no summary: finite)."""
    meta = getattr(trace, "meta", None)  # a trace file's; a live MemoryTrace has none
    return callable(meta) and meta().get("values") == "check"


def first_of(rows: Iterable[TensorDatum], fn: Filter) -> TensorDatum | None:
    """The culprit: the first tensor of `rows` (in execution order) that passes `fn`."""
    return next((d for d in rows if passes(fn, d)), None)


def first_passing(trace: Trace, run: int | None, fn: Filter) -> TensorDatum | None:
    """The culprit of a whole run. For has_inf_or_nan the trace's own index answers
    (`Trace.first_nonfinite`): wherever values are kept, summaries are too."""
    if fn is has_inf_or_nan:
        e = trace.first_nonfinite(run)
        if e is None:
            return None
        return TensorDatum(e, next(i for i, s in enumerate(e.summaries or ()) if s is not None and not s.finite), trace)
    return first_of(data(trace, run), fn)
