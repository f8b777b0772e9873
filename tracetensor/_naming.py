"""Stable, human-readable names for eager ops: module path + op + per-run counter,
e.g. `MLP/fc1/matmul`, `MLP/fc1/matmul_1`. Only computed while someone listens."""
from __future__ import annotations

import itertools
import threading


class _Scopes(threading.local):
    prefix = ""  # "MLP/fc1/" inside those scopes; per thread

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}  # per thread, like runs: names are unique within a run


_tls = _Scopes()
_leaf_ids = itertools.count()


def scopes() -> list[str]:
    return [p for p in _tls.prefix.split("/") if p]


class name_scope:
    """`with tt.name_scope("encoder"):` prefixes the names of the ops inside.
    (A class, not a generator: nn.Module enters one per call while listening.)"""
    __slots__ = ("name", "_prev")

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> str:
        self._prev = p = _tls.prefix
        _tls.prefix = p = p + self.name.strip("/") + "/"
        return p[:-1]

    def __exit__(self, *exc: object) -> None:
        _tls.prefix = self._prev


def op_name(op: str) -> str:
    t = _tls
    p = t.prefix
    base = p + op if p else op
    c = t.counters
    n = c.get(base, 0)
    c[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def leaf_name() -> str:
    """A name for a tensor no op produced (the user's inputs)."""
    return f"tensor_{next(_leaf_ids)}"


def reset() -> None:
    """Called at each run start so a step's op names repeat from run to run."""
    _tls.counters.clear()
