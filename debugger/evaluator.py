"""The debugger's `eval`: a small expression language over recorded tensors and numpy,
evaluated by walking the AST of what the user typed. It is not Python's `eval` with
fewer builtins (such sandboxes leak through `().__class__.__bases__[0].__subclasses__()`);
only the node kinds below exist, names come from a fixed table, attributes are read only
from numpy, its arrays, scalars and dtypes, and nothing that reads or writes files,
or reaches a module, an underscore name or a Python object's internals, can be named.
"""

from __future__ import annotations

import ast
import operator as op
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


class EvalError(Exception):
    """An expression the evaluator refuses or cannot compute."""


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: op.add,
    ast.Sub: op.sub,
    ast.Mult: op.mul,
    ast.Div: op.truediv,
    ast.FloorDiv: op.floordiv,
    ast.Mod: op.mod,
    ast.Pow: op.pow,
    ast.MatMult: op.matmul,
    ast.BitAnd: op.and_,
    ast.BitOr: op.or_,
    ast.BitXor: op.xor,
    ast.LShift: op.lshift,
    ast.RShift: op.rshift,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: op.pos, ast.USub: op.neg, ast.Not: op.not_, ast.Invert: op.invert}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: op.eq,
    ast.NotEq: op.ne,
    ast.Lt: op.lt,
    ast.LtE: op.le,
    ast.Gt: op.gt,
    ast.GtE: op.ge,
}
# numpy names that read or write files, load pickles, call back into Python, expose raw
# memory or change global state: an expression over tensors needs none of them
_DENIED = frozenset(
    {
        "load",
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "loadtxt",
        "genfromtxt",
        "fromfile",
        "fromregex",
        "tofile",
        "dump",
        "dumps",
        "memmap",
        "ctypes",
        "ctypeslib",
        "DataSource",
        "show_config",
        "show_runtime",
        "info",
        "lookfor",
        "source",
        "get_include",
        "set_printoptions",
        "printoptions",
        "seterr",
        "seterrcall",
        "setbufsize",
        "frompyfunc",
        "vectorize",
        "piecewise",
        "apply_along_axis",
        "apply_over_axes",
        "fromfunction",
        "setflags",
        "base",
        "data",
        "object_",
        "nditer",
        "errstate",
        "testing",
        "lib",
        "os",
        "sys",
        "char",
        "rec",
        "ma",
        "emath",
        "polynomial",
        "random",
        "distutils",
        "f2py",
        "core",
        "typing",
        "version",
        "exceptions",
        "dtypes",
        "matlib",
        "strings",
        "test",
        "format",
        "format_map",  # a format string reads attributes, dunders included
    }
)
_SUBMODULES = (np.linalg, np.fft)  # pure functions of arrays
_BUILTINS = {
    "abs": abs,
    "min": min,
    "max": max,
    "sum": sum,
    "len": len,
    "float": float,
    "int": int,
    "round": round,
    "bool": bool,
    "True": True,
    "False": False,
    "None": None,
}
_CONSTS = (int, float, complex, bool, str, bytes, type(None), type(Ellipsis))
_MAX_INT_BITS = 4096  # `9**9**9` would hang the debugger


def _is_value(x: Any) -> bool:
    """Data the evaluator may hold and read attributes from."""
    return isinstance(x, (np.ndarray, np.generic, np.dtype, np.ufunc))


def _is_module(x: Any) -> bool:
    """numpy itself or one of the submodules eval may reach (by identity: `in` would compare arrays)."""
    return x is np or any(x is m for m in _SUBMODULES)


def _check_name(name: str, what: str) -> None:
    if name.startswith("_") or name in _DENIED:
        raise EvalError(f"{what} {name!r} is not allowed in eval")


class Evaluator:
    """Evaluates one expression; `names` binds the names it may use (tensors, np)."""

    def __init__(self, names: Mapping[str, Any]) -> None:
        self.names = {**_BUILTINS, "np": np, "numpy": np, **names}

    def __call__(self, text: str) -> Any:
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as e:
            raise EvalError(f"invalid expression: {e.msg}") from None
        except (RecursionError, MemoryError, ValueError):
            raise EvalError("expression too long or nested too deeply") from None
        try:
            return self.ev(tree.body)
        except EvalError:
            raise
        except RecursionError:
            raise EvalError("expression nested too deeply") from None
        except Exception as e:  # numpy's own errors: shapes, dtypes, indexes
            raise EvalError(f"{type(e).__name__}: {e}") from None

    def ev(self, n: ast.AST) -> Any:
        meth = getattr(self, "_" + type(n).__name__, None)
        if meth is None:
            raise EvalError(
                f"{type(n).__name__} expressions are not supported in eval "
                "(names, numbers, arithmetic, comparisons, subscripts and numpy calls are)"
            )
        return meth(n)

    def _Constant(self, n: ast.Constant) -> Any:
        if not isinstance(n.value, _CONSTS):
            raise EvalError(f"constant {n.value!r} is not supported")
        return n.value

    def _Name(self, n: ast.Name) -> Any:
        _check_name(n.id, "name")
        if n.id not in self.names:
            raise EvalError(f"unknown name {n.id!r}: put tensor names in backticks, e.g. `relu:0`; numpy is `np`")
        return self.names[n.id]

    def _Attribute(self, n: ast.Attribute) -> Any:
        base = self.ev(n.value)
        _check_name(n.attr, "attribute")
        if not (_is_module(base) or _is_value(base)):
            raise EvalError(
                f"attribute .{n.attr} of a {type(base).__name__} is not allowed in eval (only of np and of arrays)"
            )
        try:
            out = getattr(base, n.attr)
        except AttributeError:
            raise EvalError(f"{'np' if base is np else type(base).__name__} has no attribute {n.attr!r}") from None
        if isinstance(out, types.ModuleType) and not _is_module(out):
            raise EvalError(f"np.{n.attr} is a module; eval reaches numpy functions, not modules")
        return out

    def _BinOp(self, n: ast.BinOp) -> Any:
        a, b = self.ev(n.left), self.ev(n.right)
        if (
            isinstance(n.op, (ast.Pow, ast.LShift, ast.Mult))
            and isinstance(a, int)
            and isinstance(b, int)
            and abs(b) > _MAX_INT_BITS
            and abs(a) > 1
        ):
            raise EvalError("integer result too large")
        f = _BINOPS.get(type(n.op))
        if f is None:
            raise EvalError(f"operator {type(n.op).__name__} is not supported")
        return f(a, b)

    def _UnaryOp(self, n: ast.UnaryOp) -> Any:
        return _UNARY[type(n.op)](self.ev(n.operand))

    def _BoolOp(self, n: ast.BoolOp) -> Any:
        out = self.ev(n.values[0])
        for v in n.values[1:]:
            if isinstance(n.op, ast.And) and not out or isinstance(n.op, ast.Or) and out:
                return out
            out = self.ev(v)
        return out

    def _Compare(self, n: ast.Compare) -> Any:
        left = self.ev(n.left)
        result: Any = True
        for o, c in zip(n.ops, n.comparators):
            f = _CMPOPS.get(type(o))
            if f is None:
                raise EvalError(f"comparison {type(o).__name__} is not supported")
            right = self.ev(c)
            r = f(left, right)
            result = r if result is True else result & r
            left = right
        return result

    def _IfExp(self, n: ast.IfExp) -> Any:
        return self.ev(n.body) if self.ev(n.test) else self.ev(n.orelse)

    def _Subscript(self, n: ast.Subscript) -> Any:
        base = self.ev(n.value)
        if not (_is_value(base) or isinstance(base, (tuple, list))):
            raise EvalError(f"cannot index a {type(base).__name__} in eval")
        return base[self.ev(n.slice)]

    def _Slice(self, n: ast.Slice) -> slice:
        return slice(*(None if p is None else self.ev(p) for p in (n.lower, n.upper, n.step)))

    def _Tuple(self, n: ast.Tuple) -> tuple:
        return tuple(self.ev(e) for e in n.elts)

    def _List(self, n: ast.List) -> list:
        return [self.ev(e) for e in n.elts]

    def _Call(self, n: ast.Call) -> Any:
        f = self.ev(n.func)
        if not callable(f) or isinstance(f, type) and not (issubclass(f, np.generic) or f in (float, int, bool)):
            raise EvalError(f"{type(f).__name__} is not a function eval can call")
        kw = {}
        for k in n.keywords:
            if k.arg is None:
                raise EvalError("**kwargs is not supported in eval")
            _check_name(k.arg, "keyword")
            kw[k.arg] = self.ev(k.value)
        args = []
        for a in n.args:
            if isinstance(a, ast.Starred):
                raise EvalError("*args is not supported in eval")
            args.append(self.ev(a))
        return f(*args, **kw)


def evaluate(text: str, names: Mapping[str, Any]) -> Any:
    """The value of expression `text` with `names` bound (see the module docstring)."""
    return Evaluator(names)(text)
