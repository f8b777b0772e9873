"""Plain-text pieces every trace tool prints the same way (`trace info`, the debugger, the
profiler, the NaN report): byte sizes, durations, non-finite counts, and where a script's
own frames end and the launcher's (`tracetensor profile`, `trace record`) begin."""

from __future__ import annotations

from .. import events as ev


def format_bytes(n: float) -> str:
    """512 -> "512 B", 1536 -> "1.5 KiB" (powers of 1024, so named as such)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # not reached: the loop returns at GiB


def format_ns(ns: float) -> str:
    """A duration in the unit that suits it: "812.500us", "23.758ms", "1.204s" (no space, so a
    table row still splits into its columns on whitespace)."""
    if ns < 1e6:
        return f"{ns / 1e3:.3f}us"
    if ns < 1e9:
        return f"{ns / 1e6:.3f}ms"
    return f"{ns / 1e9:.3f}s"


def nonfinite_text(s: ev.Summary | None) -> str:
    """ "nan=3 -inf=1" (only the kinds present); "0" for a finite tensor, "" with no summary."""
    if s is None:
        return ""
    if s.finite:
        return "0"
    return " ".join(f"{k}={v}" for k, v in (("nan", s.nan), ("-inf", s.neginf), ("+inf", s.posinf)) if v)


def is_launcher_frame(name: str, filename: str) -> bool:
    """The runpy frame through which `run_script` runs a script: frames outside it belong to
    tracetensor's launcher, not to the user."""
    return name == "_run_code" and "runpy" in filename


# Control characters become their visible "control picture" (ESC -> U+241B, BEL -> U+2407,
# C1 and bidirectional overrides -> U+FFFD): one character for one, so Rich spans and
# column widths stay right, and a trace's names cannot move the cursor, retitle the
# terminal, write the clipboard (OSC 52) or reorder what is shown (bidi overrides).
_C0 = {c: 0x2400 + c for c in range(0x20)}
_SAFE = {
    **_C0,
    0x7F: 0x2421,
    **{c: 0xFFFD for c in range(0x80, 0xA0)},
    **{c: 0xFFFD for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))},
}
_SAFE_LINES = {k: v for k, v in _SAFE.items() if k not in (0x0A, 0x09)}


def printable(s: object, *, lines: bool = False) -> str:
    """`s` as text that is safe to write to a terminal: every control character shown as a
    visible symbol. `lines=True` keeps newlines and tabs (for multi-line output)."""
    return str(s).translate(_SAFE_LINES if lines else _SAFE)
