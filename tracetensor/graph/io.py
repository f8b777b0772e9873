"""Saving a graph with its variables to one `.npz` file (a JSON structure plus plain
arrays; never pickle) and loading it back, in a fresh process, into a ready Session."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .. import dtypes as _dt
from .._npyfile import read_npz
from .._registry import REGISTRY
from .._source import Frame
from ..errors import SerializationError
from .core import CFContext, Graph, GraphError, Tensor
from .session import Session
from .variables import GLOBAL_VARIABLES, TRAINABLE_VARIABLES, Variable

FORMAT = "tracetensor-graph"
VERSION = 1


def _enc(v: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, np.bool_):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, tuple):
        return {"$t": [_enc(x, arrays, where) for x in v]}
    if isinstance(v, list):
        return {"$l": [_enc(x, arrays, where) for x in v]}
    if isinstance(v, dict):
        return {"$d": [[str(k), _enc(x, arrays, where)] for k, x in v.items()]}
    if isinstance(v, np.dtype):
        return {"$dtype": v.str}
    if isinstance(v, _dt.dtype):
        return {"$dtype": v.np.str}
    if isinstance(v, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = v
        return {"$a": key}
    if isinstance(v, slice):
        return {"$slice": [_enc(v.start, arrays, where), _enc(v.stop, arrays, where), _enc(v.step, arrays, where)]}
    if v is Ellipsis:
        return {"$ellipsis": True}
    if isinstance(v, complex):
        return {"$c": [v.real, v.imag]}
    raise SerializationError(f"{where}: a value of type {type(v).__name__} cannot be saved")


def _dec(v: Any, arrays: Any) -> Any:
    if not isinstance(v, dict):
        return v
    if "$t" in v:
        return tuple(_dec(x, arrays) for x in v["$t"])
    if "$l" in v:
        return [_dec(x, arrays) for x in v["$l"]]
    if "$d" in v:
        return {k: _dec(x, arrays) for k, x in v["$d"]}
    if "$dtype" in v:
        return np.dtype(v["$dtype"])
    if "$a" in v:
        return arrays[v["$a"]]
    if "$slice" in v:
        return slice(*(_dec(x, arrays) for x in v["$slice"]))
    if "$ellipsis" in v:
        return Ellipsis
    if "$c" in v:
        return complex(*v["$c"])
    raise ValueError(f"unknown encoded value {v!r}")


def export(
    path: str | os.PathLike,
    source: Session | Graph | Any = None,
    *,
    inputs: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
) -> str:
    """Writes `source` (a Session: its graph and the current values of its variables; a
    Graph: structure and initializers only; a `tt.function`: its latest trace) to `path`.
    `inputs`/`outputs` ({key: tensor}) name a signature that `load` gives back."""
    from .core import get_default_graph
    from .function import Function

    if isinstance(source, Function):
        if not source._traces:
            raise GraphError("this tt.function has not been traced yet: call it once before exporting")
        source = next(reversed(source._traces.values())).session
    sess = source if isinstance(source, Session) else None
    g: Graph = sess.graph if sess is not None else (source or get_default_graph())
    arrays: dict[str, np.ndarray] = {}
    nodes = []
    for op in g._order:
        kind, type_, attrs = op.kind, op.type, {k: v for k, v in op.attrs.items() if not k.startswith("_")}
        if kind == "captured":  # a tt.function's captured eager tensor is saved as its current value
            kind, type_, attrs = "const", "Const", {"value": np.asarray(attrs["tensor"])}
        where = f"attribute of node '{op.name}' ({op.type})"
        nodes.append(
            {
                "name": op.name,
                "type": type_,
                "kind": kind,
                "op": op.opdef.name if op.opdef is not None else None,
                "inputs": [t.name for t in op.inputs],
                "control": [c.name for c in op.control_inputs],
                "attrs": {k: _enc(v, arrays, where) for k, v in attrs.items()},
                "outputs": [[None if t._dims is None else list(t._dims), t.dtype.np.str] for t in op.outputs],
                "stack": [[f.filename, f.lineno, f.name] for f in op.stack],
                "ctx": op.ctx.name if op.ctx is not None else None,
                "device": op.device,
            }
        )
    variables = []
    for v in {id(v): v for v in g.get_collection(GLOBAL_VARIABLES)}.values():
        entry = {
            "name": v.op.name,
            "initializer": v.initializer.name,
            "initial_value": v.initial_value.name,
            "trainable": v.trainable,
        }
        if sess is not None and v.op.name in sess._vars:
            key = f"v{len(variables)}"
            arrays[key] = np.asarray(_host(sess._vars[v.op.name]))
            entry["value"] = key
        variables.append(entry)

    def sig(d: dict[str, Any] | None) -> dict[str, str]:
        return {k: g.as_graph_element(t).name for k, t in (d or {}).items()}

    meta = {
        "format": FORMAT,
        "version": VERSION,
        "graph_seed": g.seed,
        "nodes": nodes,
        "variables": variables,
        "signature": {"inputs": sig(inputs), "outputs": sig(outputs)},
    }
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = os.fspath(path)
    with open(path, "wb") as f:
        np.savez_compressed(f, __graph__=blob, **arrays)
    return path


def _host(a: Any) -> Any:
    return a if isinstance(a, np.ndarray) else a.get()


def load(path: str | os.PathLike, *, device: Any = None) -> Session:
    """Reads a file written by `export` into a new Graph and returns a Session on it with
    the saved variable values restored. `sess.signature` has the saved inputs/outputs
    (tensor names); `sess.graph.get_tensor_by_name(...)` finds any node."""
    path = os.fspath(path)
    arrays = read_npz(path, "tracetensor graph file")  # sizes and dtypes checked before allocating
    try:
        if "__graph__" not in arrays:
            raise ValueError("it does not contain a tracetensor graph")
        meta = json.loads(arrays.pop("__graph__").tobytes().decode())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("it does not contain a tracetensor graph")
        if meta.get("version") != VERSION:
            raise ValueError(f"format version {meta.get('version')} is not supported (this is version {VERSION})")
        g = _build(meta, arrays)
        sess = Session(graph=g, device=device)
        for v in meta["variables"]:
            if "value" in v:
                sess._load_variable(g.get_tensor_by_name(v["name"] + ":0"), arrays[v["value"]])
        sess.signature = meta["signature"]
    except SerializationError:
        raise
    except RecursionError:
        raise SerializationError(f"{path} is not a valid tracetensor graph file: nested too deeply") from None
    except Exception as e:  # json, numpy, missing keys or a graph that does not hold together
        raise SerializationError(f"{path} is not a valid tracetensor graph file: {type(e).__name__}: {e}") from None
    return sess


def _build(meta: dict, arrays: dict[str, np.ndarray]) -> Graph:
    g = Graph()
    g.seed = meta.get("graph_seed")
    ctxs: dict[str, CFContext] = {}
    for n in meta["nodes"]:
        opdef = None
        if n["op"] is not None:
            opdef = REGISTRY.get(n["op"])
            if opdef is None:
                raise ValueError(f"node '{n['name']}' uses the op {n['op']!r}, which this tracetensor does not have")
        inputs = [g.get_tensor_by_name(t) for t in n["inputs"]]
        control = [g.get_operation_by_name(c) for c in n["control"]]
        attrs = {k: _dec(v, arrays) for k, v in n["attrs"].items()}
        outs = [(None if d is None else tuple(d), _dt.from_numpy(np.dtype(dt))) for d, dt in n["outputs"]]
        stack = tuple(Frame(str(f), int(ln), str(fn)) for f, ln, fn in n["stack"])
        if n["kind"] == "variable":
            op = g.create_op("variable", n["type"], (), attrs, name=n["name"], exact_name=True, out=[], stack=stack)
            v = Variable.__new__(Variable)
            Tensor.__init__(v, op, 0, outs[0][0], outs[0][1])
            op.outputs = (v,)
        else:
            op = g.create_op(
                n["kind"],
                n["type"],
                inputs,
                attrs,
                name=n["name"],
                opdef=opdef,
                out=outs,
                control_inputs=control,
                stack=stack,
                exact_name=True,
            )
        if n["ctx"] is not None:
            ctx = ctxs.get(n["ctx"])
            if ctx is None:
                ctx = ctxs[n["ctx"]] = CFContext(n["ctx"], None)
            op.ctx = ctx
            ctx.ops.append(op)
        op.device = n.get("device")
        _mark_used(g, op.name)
    for v in meta["variables"]:
        var: Variable = g.get_tensor_by_name(v["name"] + ":0")  # type: ignore[assignment]
        var.initializer = g.get_operation_by_name(v["initializer"])
        var.initial_value = g.get_tensor_by_name(v["initial_value"])
        var.trainable = bool(v["trainable"])
        g.add_to_collection(GLOBAL_VARIABLES, var)
        if var.trainable:
            g.add_to_collection(TRAINABLE_VARIABLES, var)
    return g


def _mark_used(g: Graph, name: str) -> None:
    """Names read back count as used, so ops added after loading get fresh ones."""
    g._names[name] = max(g._names.get(name, 0), 1)
    base, _, num = name.rpartition("_")
    if base and num.isdigit():
        g._names[base] = max(g._names.get(base, 0), int(num) + 1)


class Saver:
    """TF1's `tf.train.Saver`. `save(sess, "/tmp/model.ckpt", global_step=100)` returns the
    checkpoint prefix `/tmp/model.ckpt-100` and writes `<prefix>.data-00000-of-00001` (the
    values: an `.npz` archive, never pickle), `<prefix>.index` (JSON: names, shapes, dtypes)
    and the directory's `checkpoint` state file that `tf.train.latest_checkpoint` reads.
    The newest `max_to_keep` checkpoints are kept. No `.meta` graph file is written."""

    def __init__(self, var_list: Any = None, max_to_keep: int = 5, **_ignored: Any) -> None:
        self._var_list = var_list
        self._max_to_keep = max_to_keep
        self._kept: list[str] = []

    def _vars(self, sess: Session) -> dict[str, Variable]:
        vl = self._var_list
        if vl is None:
            vl = sess.graph.get_collection(GLOBAL_VARIABLES)
        if isinstance(vl, dict):
            return dict(vl)
        return {v.op.name: v for v in vl}

    def save(
        self,
        sess: Session,
        save_path: str | os.PathLike,
        global_step: Any = None,
        latest_filename: str | None = None,
        write_state: bool = True,
        **_ignored: Any,
    ) -> str:
        from .core import FailedPreconditionError

        prefix = os.fspath(save_path)
        if global_step is not None:
            step = global_step if isinstance(global_step, int) else int(sess.run(global_step))
            prefix = f"{prefix}-{step}"
        arrays = {}
        for key, v in self._vars(sess).items():
            a = sess._vars.get(v.op.name)
            if a is None:
                raise FailedPreconditionError(f"cannot save the uninitialized variable {v.op.name}")
            arrays[key] = np.asarray(_host(a))
        os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
        with open(prefix + DATA_SUFFIX, "wb") as f:
            np.savez(f, __tracetensor_checkpoint__=np.array(VERSION), **arrays)
        index = {
            "format": "tracetensor-checkpoint-index",
            "version": VERSION,
            "variables": {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()},
        }
        with open(prefix + ".index", "w") as f:
            json.dump(index, f)
        if prefix in self._kept:
            self._kept.remove(prefix)
        self._kept.append(prefix)
        while self._max_to_keep and len(self._kept) > self._max_to_keep:
            old = self._kept.pop(0)
            for suffix in (DATA_SUFFIX, ".index"):
                if os.path.exists(old + suffix):
                    os.remove(old + suffix)
        if write_state:
            _write_state(os.path.dirname(prefix) or ".", prefix, self._kept, latest_filename or "checkpoint")
        return prefix

    def restore(self, sess: Session, save_path: str | os.PathLike) -> None:
        from .core import InvalidArgumentError, NotFoundError

        if save_path is None:
            raise ValueError("Saver.restore needs a checkpoint prefix (tf.train.latest_checkpoint gave None?)")
        prefix = os.fspath(save_path)
        path = next((p for p in (prefix + DATA_SUFFIX, prefix, prefix + ".npz") if os.path.isfile(p)), None)
        if path is None:
            raise FileNotFoundError(f"no checkpoint at {prefix!r} (looked for {prefix + DATA_SUFFIX})")
        arrays = read_npz(path, "tracetensor checkpoint")  # sizes and dtypes checked before allocating
        if "__tracetensor_checkpoint__" not in arrays:
            raise SerializationError(f"{path} is not a valid tracetensor checkpoint: no checkpoint marker")
        for key, v in self._vars(sess).items():
            if key not in arrays:
                raise NotFoundError(f"the checkpoint {prefix} has no value for variable {key}")
            a = arrays[key]
            if v._dims is not None and (
                len(a.shape) != len(v._dims) or any(d is not None and d != s for d, s in zip(v._dims, a.shape))
            ):
                raise InvalidArgumentError(f"the checkpoint's {key} has shape {a.shape}, the variable {v.shape}")
            sess._load_variable(v, a)


DATA_SUFFIX = ".data-00000-of-00001"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) < 2 or s[0] != '"' or s[-1] != '"':
        raise ValueError(f"not a quoted string: {s!r}")
    out, chars = [], iter(s[1:-1])
    for c in chars:
        out.append(next(chars, "") if c == "\\" else c)
    return "".join(out)


def _write_state(directory: str, latest: str, kept: list[str], filename: str) -> None:
    """TF's `checkpoint` file (text): the newest prefix and all kept ones, relative to the directory."""

    def rel(p: str) -> str:
        return os.path.relpath(p, directory) if os.path.dirname(p) == directory or not os.path.isabs(p) else p

    lines = [f"model_checkpoint_path: {_quote(rel(latest))}"]
    lines += [f"all_model_checkpoint_paths: {_quote(rel(p))}" for p in kept]
    tmp = os.path.join(directory, filename + ".tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, os.path.join(directory, filename))


class CheckpointState:
    """What a `checkpoint` state file says (tf.train.get_checkpoint_state)."""

    def __init__(self, model_checkpoint_path: str, all_model_checkpoint_paths: list[str]) -> None:
        self.model_checkpoint_path = model_checkpoint_path
        self.all_model_checkpoint_paths = all_model_checkpoint_paths

    def __repr__(self) -> str:
        return f"CheckpointState(model_checkpoint_path={self.model_checkpoint_path!r})"


def get_checkpoint_state(checkpoint_dir: str | os.PathLike, latest_filename: str | None = None) -> Any:
    """The directory's checkpoint state, or None when it has no `checkpoint` file. The file is
    parsed as data (two kinds of `key: "path"` lines), never evaluated."""
    d = os.fspath(checkpoint_dir)
    path = os.path.join(d, latest_filename or "checkpoint")
    if not os.path.isfile(path):
        return None
    latest, every = None, []
    with open(path) as f:
        for line in f:
            key, sep, value = line.partition(":")
            if not sep:
                continue
            try:
                p = _unquote(value)
            except ValueError:
                raise SerializationError(f"{path}: cannot read the line {line.strip()!r}") from None
            p = p if os.path.isabs(p) else os.path.join(d, p)
            if key.strip() == "model_checkpoint_path":
                latest = p
            elif key.strip() == "all_model_checkpoint_paths":
                every.append(p)
    return None if latest is None else CheckpointState(latest, every)


def latest_checkpoint(checkpoint_dir: str | os.PathLike, latest_filename: str | None = None) -> str | None:
    """The newest checkpoint prefix saved in `checkpoint_dir`, or None (TF's behaviour)."""
    state = get_checkpoint_state(checkpoint_dir, latest_filename)
    if state is None:
        return None
    p = state.model_checkpoint_path
    return p if os.path.isfile(p + DATA_SUFFIX) or os.path.isfile(p) else None
