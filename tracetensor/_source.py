"""Finds the user's own source frames: the first frames outside the framework."""

from __future__ import annotations

import os
import sys
import threading
from typing import NamedTuple


class Frame(NamedTuple):
    filename: str
    lineno: int
    name: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"


_PKG = os.path.dirname(os.path.abspath(__file__))
# Frames from these folders are the framework's own; debugger/ and profiler/ live
# beside tracetensor/ in a source checkout, so both layouts are covered.
_INTERNAL = (
    _PKG + os.sep,
    os.path.join(os.path.dirname(_PKG), "debugger") + os.sep,
    os.path.join(os.path.dirname(_PKG), "profiler") + os.sep,
)
_internal_cache: dict[str, bool] = {}


def _is_internal(filename: str) -> bool:
    r = _internal_cache.get(filename)
    if r is None:
        # contextlib frames sit between `with tt.something():` and the user's code
        r = filename.startswith(_INTERNAL) or filename.endswith(("contextlib.py", "functools.py"))
        _internal_cache[filename] = r
    return r


_frames: dict[tuple[int, int], tuple[Frame, object]] = {}


def user_frames(limit: int = 8) -> tuple[Frame, ...]:
    """The user's frames, innermost first, up to `limit` of them. Hot while someone
    asks for stacks: Frame objects are interned per (code, line) so a loop's ops share them."""
    cache, frames = _internal_cache, _frames
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        r = cache.get(fn)
        if r is None:
            r = _is_internal(fn)
        if not r:
            break
        f = f.f_back
    if f is None:
        return ()
    # the frames above the innermost user frame are the same objects, stopped at the same
    # instructions, for every op it runs (a training loop that calls `step()` and up): made
    # once per (caller frame, instruction) and shared. Only a user frame's caller that is
    # user code too (long-lived: a loop), keyed by it and its own caller, both stopped where
    # they are, so a frame freed and another made at its address cannot pass for it
    b = f.f_back
    key = None
    if b is not None and cache.get(b.f_code.co_filename) is False:
        bb = b.f_back
        key = (id(b), b.f_lasti, id(bb), bb.f_lasti if bb is not None else -1)
    hit = _outer.get(key) if key is not None else None
    if hit is not None and hit[0] is b.f_code:
        line = f.f_lineno
        co = f.f_code
        inner = frames.get((id(co), line))
        if inner is not None and inner[1] is co:
            return (inner[0], *hit[1]) if limit > 1 else (inner[0],)
    out = _walk(f, limit, cache, frames)
    if key is not None and limit == 8:  # (the default depth is the one cached)
        if len(_outer) > 10_000:
            _outer.clear()
        _outer[key] = (b.f_code, tuple(out[1:]))
    return tuple(out)


# (id(caller), its instruction, id(its caller), that one's instruction) -> (caller's code, user frames from there up)
_outer: dict[tuple[int, int, int, int], tuple[object, tuple[Frame, ...]]] = {}


def _walk(f, limit: int, cache: dict, frames: dict) -> list[Frame]:
    out: list[Frame] = []
    while f is not None and len(out) < limit:
        co = f.f_code
        r = cache.get(co.co_filename)
        if r is None:
            r = _is_internal(co.co_filename)
        if not r:
            if co.co_name == "_run_code" and "runpy" in co.co_filename:
                break  # a script run by `tracetensor profile`/`trace record`: outside is our launcher
            line = f.f_lineno
            hit = frames.get((id(co), line))
            if hit is None or hit[1] is not co:  # (a freed code object's id can be reused)
                if len(frames) > 50_000:  # bounded: programs that generate code keep making new ones
                    frames.clear()
                hit = frames[(id(co), line)] = (Frame(co.co_filename, line, co.co_name), co)
            out.append(hit[0])
        f = f.f_back
    return out


class _Held(threading.local):
    """A user stack held by an enclosing framework call (a library layer's forward, an
    optimizer's updates) and that call's frame: an op whose frames up to that one are all
    the framework's would find the same user frames again, so one capture serves them all.
    (An op under user code the call runs, a callable it was given, captures its own.)"""

    stack: tuple[Frame, ...] | None = None
    frame: object = None


HELD = _Held()


def stack_here() -> tuple[Frame, ...]:
    """`user_frames()`, or the stack an enclosing framework call holds when nothing but
    framework frames lies between it and here (then the two are the same frames)."""
    held = HELD.stack
    if held is not None:
        target, cache = HELD.frame, _internal_cache
        f = sys._getframe(1)
        while f is not None:
            if f is target:
                return held
            fn = f.f_code.co_filename
            r = cache.get(fn)
            if r is None:
                r = _is_internal(fn)
            if not r:
                break  # user code in between (a callable the call was given): capture here
            f = f.f_back
    return user_frames()


def hold() -> tuple:
    """Called by a framework call that runs ops: holds the user's stack at its caller's
    frame (see `_Held`); returns what to hand `release` when the call ends."""
    held = HELD
    outer = (held.stack, held.frame)
    held.stack = stack_here()
    held.frame = sys._getframe(1)
    return outer


def release(outer: tuple) -> None:
    HELD.stack, HELD.frame = outer


def user_frame() -> Frame | None:
    """The innermost user frame, or None when called from the framework alone."""
    f = sys._getframe(1)
    while f is not None and _is_internal(f.f_code.co_filename):
        f = f.f_back
    return None if f is None else Frame(f.f_code.co_filename, f.f_lineno, f.f_code.co_name)
