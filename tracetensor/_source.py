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
    cache = _internal_cache
    f = sys._getframe(1)
    # A stack is made once per chain of user frames, each by its code and instruction, and
    # shared: consumers that key on stacks (a trace's signatures, a profile's groups) compare
    # one object, not frames. Not by the frames themselves: a call's frames are freed when it
    # returns, and the next call's often sit at the same addresses, stopped at the same lines
    # but called from somewhere else (pretraining, then fine-tuning). (Any `limit`: a key of
    # fewer frames than another's is equal to it only where the chain ends there, stacks alike.)
    key: list[int] = []
    codes = []
    first = None
    while f is not None and len(codes) < limit:
        co = f.f_code
        fn = co.co_filename
        r = cache.get(fn)
        if r is None:
            r = _is_internal(fn)
        if not r:
            if co.co_name == "_run_code" and "runpy" in fn:
                break  # our launcher's frame (see _walk)
            if first is None:
                first = f
            codes.append(co)
            key += (id(co), f.f_lasti)
        f = f.f_back
    if first is None:
        return ()
    k = tuple(key)
    hit = _chains.get(k)
    if hit is None:
        if len(_chains) > 10_000:  # bounded: programs that generate code keep making new chains
            _chains.clear()
        # (the entry holds the codes: an id in a live key is no other code's)
        hit = _chains[k] = (tuple(codes), tuple(_walk(first, limit, cache, _frames)))
    return hit[1]


# (id(code), instruction, ...) of a stack's user frames, innermost first -> (those codes, the
# stack): see user_frames. The C accelerator's capture keeps its last stacks by the same key
# and shares this dict, so both return one object per chain.
_chains: dict[tuple[int, ...], tuple[tuple, tuple[Frame, ...]]] = {}


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
    (An op under user code the call runs, a callable it was given, captures its own.) The
    Python path's: the C accelerator keeps the same pair in C, per thread (_speedups.c)."""

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
        setup_stacks(_internal_cache, _is_internal, _frames, _chains, _walk)
        user_frames, stack_here, hold, release = _user_frames_c, _stack_here_c, _hold_c, _release_c
