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


_frames: dict[tuple[int, int], tuple[Frame, object]] = {}  # (id(code), instruction) -> Frame


def user_frames(limit: int = 8) -> tuple[Frame, ...]:
    """The user's frames, innermost first, up to `limit` of them. Hot while someone
    asks for stacks: Frame objects are interned per (code, instruction) so a loop's ops share them."""
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
    if limit != 8:
        return tuple(_walk(f, limit, cache, frames))
    # The user frames above the innermost one, from the next user frame `g` up, are the same
    # for every op that frame runs (a training step's ops, a loop's iterations): made once per
    # (g, its instruction, its caller, that one's instruction) and shared. Both frames are
    # checked by code as well: a frame freed and another made at its address, stopped at the
    # same instruction of the same code under the same live caller, has the same frames above.
    # The whole stack is shared too, one per innermost Frame under that entry: consumers that
    # key on stacks (a trace's signatures, a profile's groups) compare one object, not frames.
    g = f.f_back
    while g is not None:
        r = cache.get(g.f_code.co_filename)
        if r is None:
            r = _is_internal(g.f_code.co_filename)
        if not r:
            break
        g = g.f_back
    if g is None:
        return tuple(_walk(f, limit, cache, frames))
    gb = g.f_back
    gbc = gb.f_code if gb is not None else None
    key = (id(g), g.f_lasti, id(gb), gb.f_lasti if gb is not None else -1)
    hit = _outer.get(key)
    if hit is None or hit[0] is not g.f_code or hit[1] is not gbc:
        if len(_outer) > 10_000:  # bounded: each step's frames make new keys
            _outer.clear()
        hit = _outer[key] = (g.f_code, gbc, tuple(_walk(g, limit - 1, cache, frames)), {})
    co = f.f_code
    h = frames.get((id(co), f.f_lasti))
    if h is None or h[1] is not co:  # (first time here, or our launcher's frame: see _walk)
        first = _walk(f, 1, cache, frames)
        if not first:
            return ()
        head = first[0]
    else:
        head = h[0]
    stack = hit[3].get(id(head))
    if stack is None or stack[0] is not head:
        stack = hit[3][id(head)] = (head, *hit[2])
    return stack


# (id(g), its instruction, id(its caller), that one's instruction) -> (g's code, its caller's
# code, the user frames from g up, id(innermost Frame) -> the whole stack): see user_frames
_outer: dict[tuple[int, int, int, int], tuple[object, object, tuple[Frame, ...], dict]] = {}


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
            # keyed by instruction, not line: f_lineno searches the code's line table each time
            key = (id(co), f.f_lasti)
            hit = frames.get(key)
            if hit is None or hit[1] is not co:  # (a freed code object's id can be reused)
                if len(frames) > 50_000:  # bounded: programs that generate code keep making new ones
                    frames.clear()
                hit = frames[key] = (Frame(co.co_filename, f.f_lineno, co.co_name), co)
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
    frame (see `_Held`); returns what to hand `release` when the call ends, whose last item
    is the stack held (the call's own sites can carry it: no op of theirs then looks for it)."""
    held = HELD
    outer = (held.stack, held.frame, stack_here())
    held.stack = outer[2]
    held.frame = sys._getframe(1)
    return outer


def release(outer: tuple) -> None:
    HELD.stack, HELD.frame = outer[0], outer[1]


def user_frame() -> Frame | None:
    """The innermost user frame, or None when called from the framework alone."""
    f = sys._getframe(1)
    while f is not None and _is_internal(f.f_code.co_filename):
        f = f.f_back
    return None if f is None else Frame(f.f_code.co_filename, f.f_lineno, f.f_code.co_name)


# The C accelerator's versions (tracetensor/_speedups.c: the same walk over the same caches,
# about 4x faster), unless TRACETENSOR_PURE=1 or the extension was not built (or Python 3.10)
user_frames_py, stack_here_py, hold_py, release_py = user_frames, stack_here, hold, release
if not os.environ.get("TRACETENSOR_PURE"):
    try:
        from ._speedups import hold as _hold_c
        from ._speedups import release as _release_c
        from ._speedups import setup_stacks
        from ._speedups import stack_here as _stack_here_c
        from ._speedups import user_frames as _user_frames_c
    except ImportError:
        pass
    else:
        setup_stacks(_internal_cache, _is_internal, _frames, _outer, _walk, HELD)
        user_frames, stack_here, hold, release = _user_frames_c, _stack_here_c, _hold_c, _release_c
