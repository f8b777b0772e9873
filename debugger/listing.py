"""The tensor list, specified once: its columns, the culprit-first order and the row styles,
used by line mode's `lt` (a Rich table) and by the TUI's virtual list (one Strip per visible
row). Every cell is plain text: names come from traces and are never read as markup."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich import box
from rich.table import Table
from rich.text import Text

from tracetensor.trace import format_bytes, nonfinite_text, printable

from .filters import TensorDatum


@dataclass(frozen=True)
class Column:
    """One column: its title, its width in the TUI (`None`: takes what the others leave),
    whether it is right-justified, and how a row's cell reads."""

    title: str
    width: int | None
    right: bool
    cell: Callable[[TensorDatum, ListView], str]


@dataclass
class ListView:
    """What the cells of one listing need besides the row: the culprit, and each run's start
    (times are shown from the start of the row's own run)."""

    culprit: TensorDatum | None = None
    run_start: Callable[[int], int] = lambda run: 0
    all_runs: bool = False  # `lt -a`: a run column

    def columns(self) -> tuple[Column, ...]:
        return (RUN_COLUMN, *COLUMNS) if self.all_runs else COLUMNS

    def is_culprit(self, d: TensorDatum) -> bool:
        c = self.culprit
        return c is not None and (d is c or d.event.seq == c.event.seq and d.index == c.index)


COLUMNS: tuple[Column, ...] = (
    Column("", 1, False, lambda d, v: "!" if v.is_culprit(d) else ""),
    Column("t (ms)", 9, True, lambda d, v: f"{(d.event.end_ns - v.run_start(d.event.run)) / 1e6:.3f}"),
    Column("size", 10, True, lambda d, v: format_bytes(d.meta.nbytes)),
    Column("op type", 16, False, lambda d, v: d.op_type),
    Column("tensor name", None, False, lambda d, v: d.tensor_name),
    Column("shape", 14, False, lambda d, v: str(tuple(d.meta.shape))),
    Column("dtype", 8, False, lambda d, v: d.meta.dtype),
    Column("nan/inf", 14, False, lambda d, v: nonfinite_text(d.summary)),
)
RUN_COLUMN = Column("run", 7, True, lambda d, v: str(d.event.run))
MIN_NAME = 20  # the tensor-name column never gets narrower than this in the TUI


def culprit_first(rows: list[TensorDatum], view: ListView) -> list[TensorDatum]:
    """The rows with the culprit moved to the top (tfdbg's convention), in place."""
    if view.culprit is not None:
        k = next((i for i, d in enumerate(rows) if view.is_culprit(d)), None)
        if k is not None:
            rows.insert(0, rows.pop(k))
    return rows


def row_style(d: TensorDatum, view: ListView) -> str | None:
    """red: the culprit; yellow: any other tensor holding NaN/inf."""
    if view.is_culprit(d):
        return "red"
    s = d.summary
    return "yellow" if s is not None and not s.finite else None


def table(rows: Sequence[TensorDatum], view: ListView) -> Table:
    """Line mode's rendering: a Rich table whose cells are Text (never markup)."""
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    cols = view.columns()
    for c in cols:
        t.add_column(c.title, justify="right" if c.right else "left", no_wrap=True)
    for d in rows:
        t.add_row(*(Text(printable(c.cell(d, view))) for c in cols), style=row_style(d, view))
    return t


def widths(view: ListView, total: int) -> list[int]:
    """TUI column widths for a list `total` cells wide: the name column takes the rest."""
    cols = view.columns()
    fixed = sum((c.width or 0) + 1 for c in cols)
    return [c.width if c.width is not None else max(MIN_NAME, total - fixed - 1) for c in cols]


def line(values: Sequence[str], view: ListView, ws: Sequence[int]) -> str:
    """One TUI row (or the header) as fixed-width cells, cut with an ellipsis."""
    out = []
    for c, w, v in zip(view.columns(), ws, values):
        v = printable(v)  # control characters from a trace never reach the terminal
        v = v if len(v) <= w else v[: w - 1] + "…"
        out.append(v.rjust(w) if c.right else v.ljust(w))
    return " ".join(out)


def row_line(d: TensorDatum, view: ListView, ws: Sequence[int]) -> str:
    return line([c.cell(d, view) for c in view.columns()], view, ws)


def header_line(view: ListView, ws: Sequence[int]) -> str:
    return line([c.title for c in view.columns()], view, ws)
