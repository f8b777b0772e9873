"""TensorBoard protos from numpy values and tracetensor's plain-data events: the one place
that knows TensorBoard's formats (scalars, TF-style histograms, PNG images, text, hparams,
graphs, step stats). Protos come from the `tensorboard` package; nothing is hand-encoded."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ... import events as ev

INSTALL_HINT = 'pip install "tracetensor[tensorboard]"'


class TensorBoardNotInstalled(ImportError):
    """TensorBoard support was used without the `tensorboard` package."""


def protos() -> Any:
    """TensorBoard's proto modules, imported on first use (an optional dependency)."""
    global _PROTOS
    if _PROTOS is None:
        try:
            from tensorboard.compat.proto import (
                attr_value_pb2,
                config_pb2,
                event_pb2,
                graph_pb2,
                node_def_pb2,
                step_stats_pb2,
                summary_pb2,
                tensor_pb2,
                tensor_shape_pb2,
                types_pb2,
                versions_pb2,
            )
        except ImportError as e:
            raise TensorBoardNotInstalled(
                f"TensorBoard support needs the tensorboard package ({e}): {INSTALL_HINT}"
            ) from None
        import types

        _PROTOS = types.SimpleNamespace(
            attr=attr_value_pb2,
            config=config_pb2,
            event=event_pb2,
            graph=graph_pb2,
            node=node_def_pb2,
            step=step_stats_pb2,
            summary=summary_pb2,
            tensor=tensor_pb2,
            shape=tensor_shape_pb2,
            types=types_pb2,
            versions=versions_pb2,
        )
    return _PROTOS


_PROTOS: Any = None


class LazyProto:
    """A TensorBoard proto class named before the package is imported (`tf.RunMetadata`,
    `tf.summary.Summary`): resolved on first use, so `import tracetensor.graph` never
    needs tensorboard."""

    def __init__(self, module: str, name: str) -> None:
        self._module, self._name = module, name

    def resolve(self) -> Any:
        return getattr(getattr(protos(), self._module), self._name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.resolve(), attr)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self.resolve())

    def __repr__(self) -> str:
        return f"<TensorBoard proto {self._name}>"


# --------------------------------------------------------------------------- values


def to_numpy(x: Any) -> np.ndarray:
    """A tracetensor tensor, numpy array, number or list (or anything with
    `.detach().cpu().numpy()`, such as a torch tensor) as a numpy array on the host."""
    if isinstance(x, np.ndarray):
        return x
    for m in ("detach", "cpu", "numpy"):
        f = getattr(x, m, None)
        if callable(f):
            x = f()
    return ev.to_numpy(x) if not isinstance(x, (list, tuple, int, float, bool)) else np.asarray(x)


def scalar(tag: str, value: Any) -> Any:
    if not isinstance(value, (float, int)):  # (a number is the common case: no conversion)
        v = to_numpy(value)
        if v.size != 1:
            raise ValueError(f"the scalar '{tag}' must be a single number, got an array of shape {tuple(v.shape)}")
        value = v.reshape(-1)[0]
    p = protos().summary
    return p.Summary(value=[p.Summary.Value(tag=tag, simple_value=float(value))])


def _tf_bucket_limits() -> np.ndarray:
    """TensorFlow's default histogram bucket edges (what TF1 summaries and PyTorch's
    bins='tensorflow' use): +-1e-12 * 1.1**k up to 1e20, 0, and +-DBL_MAX at the ends."""
    pos = []
    v = 1e-12
    while v < 1e20:
        pos.append(v)
        v *= 1.1
    pos.append(np.finfo(np.float64).max)
    return np.array([-x for x in reversed(pos)] + [0.0] + pos)


_LIMITS = _tf_bucket_limits()


def histogram_proto(values: Any, bins: Any = "tensorflow") -> Any:
    """A HistogramProto of the finite values. Bucket i holds [limit[i-1], limit[i]);
    empty buckets are left out as TensorFlow does (TensorBoard widens their neighbours).
    bins: "tensorflow" (TF's exponential edges), an int or a sequence of edges (numpy's)."""
    a = to_numpy(values).astype(np.float64, copy=False).reshape(-1)
    a = a[np.isfinite(a)]
    p = protos().summary
    if a.size == 0:
        return p.HistogramProto(min=0.0, max=0.0, num=0, sum=0.0, sum_squares=0.0)
    if isinstance(bins, str) and bins == "tensorflow":
        # sort once, then find the ~1500 edges in it: far cheaper than placing each value
        below = np.searchsorted(np.sort(a), _LIMITS[:-1], side="left")  # how many values are < each limit
        counts = np.diff(below, prepend=0, append=a.size)
        keep = np.nonzero(counts)[0]
        limits, counts = _LIMITS[keep], counts[keep]
    else:
        counts, edges = np.histogram(a, bins=bins)
        limits = edges[1:]
    return p.HistogramProto(
        min=float(a.min()),
        max=float(a.max()),
        num=int(a.size),
        sum=float(a.sum()),
        sum_squares=float(a @ a),
        bucket_limit=limits.tolist(),
        bucket=counts.tolist(),
    )


def histogram(tag: str, values: Any, bins: Any = "tensorflow") -> Any:
    p = protos().summary
    return p.Summary(value=[p.Summary.Value(tag=tag, histo=histogram_proto(values, bins))])


def to_uint8_image(img: Any, dataformats: str = "CHW") -> np.ndarray:
    """An image as HWC uint8 (C = 1, 3 or 4). Floats are taken to be in [0, 1] and
    scaled by 255, as PyTorch's SummaryWriter does; uint8 passes through."""
    a = to_numpy(img)
    fmt = dataformats.upper()
    if sorted(fmt) != sorted(set(fmt)) or set(fmt) - set("CHW") or "H" not in fmt or "W" not in fmt:
        raise ValueError(
            f"dataformats must be an arrangement of H and W with an optional C (CHW, HWC, HW), got {dataformats!r}"
        )
    if a.ndim != len(fmt):
        raise ValueError(
            f"an image with dataformats={dataformats!r} has {len(fmt)} dimensions, got shape {tuple(a.shape)}"
        )
    if "C" not in fmt:
        a, fmt = a[..., None], fmt + "C"
    a = np.transpose(a, [fmt.index(c) for c in "HWC"])
    if a.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"an image has 1, 3 or 4 channels, got {a.shape[2]} (shape {tuple(a.shape)} "
            f"after arranging {dataformats!r} as HWC)"
        )
    if a.dtype == np.uint8:
        return a
    return (np.nan_to_num(a.astype(np.float64)) * 255).clip(0, 255).round().astype(np.uint8)


def _png(hwc: np.ndarray) -> bytes:
    try:
        from PIL import Image  # a dependency of tensorboard
    except ImportError as e:
        raise TensorBoardNotInstalled(f"image summaries need Pillow ({e}): {INSTALL_HINT}") from None
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[hwc.shape[2]]
    buf = io.BytesIO()
    Image.fromarray(hwc[:, :, 0] if mode == "L" else np.ascontiguousarray(hwc), mode).save(buf, format="PNG")
    return buf.getvalue()


def image_value(tag: str, hwc: np.ndarray) -> Any:
    p = protos().summary
    h, w, c = hwc.shape
    return p.Summary.Value(
        tag=tag, image=p.Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=_png(hwc))
    )


def image(tag: str, img: Any, dataformats: str = "CHW") -> Any:
    return protos().summary.Summary(value=[image_value(tag, to_uint8_image(img, dataformats))])


def text(tag: str, text: Any) -> Any:
    """The text plugin's summary: a string tensor (markdown) of `text` (a str or a list
    of str; anything else is shown as its str())."""
    from tensorboard.plugins.text import metadata

    p = protos()
    items = text if isinstance(text, (list, tuple)) else [text]
    strs = [(s if isinstance(s, str) else str(s)).encode("utf-8") for s in items]
    shape = p.shape.TensorShapeProto(dim=[p.shape.TensorShapeProto.Dim(size=len(strs))])
    tensor = p.tensor.TensorProto(dtype=p.types.DT_STRING, string_val=strs, tensor_shape=shape)
    meta = metadata.create_summary_metadata(display_name=tag, description="")
    return p.summary.Summary(value=[p.summary.Summary.Value(tag=tag, metadata=meta, tensor=tensor)])


def hparams(
    hparam_dict: Mapping[str, Any], metric_dict: Mapping[str, Any], domain_discrete: Mapping[str, list] | None = None
) -> tuple[Any, Any, Any]:
    """The hparams plugin's three summaries: experiment, session start and session end
    (PyTorch's `add_hparams` writes the same three)."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.plugins.hparams.metadata import NULL_TENSOR

    if not isinstance(hparam_dict, Mapping) or not isinstance(metric_dict, Mapping):
        raise TypeError(
            "add_hparams(hparam_dict, metric_dict) takes two dicts, got "
            f"{type(hparam_dict).__name__} and {type(metric_dict).__name__}"
        )
    domain_discrete = dict(domain_discrete or {})
    ssi = plugin_data_pb2.SessionStartInfo()
    infos = []
    for k, v in hparam_dict.items():
        if isinstance(v, (np.generic,)) or hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            v = v.item()
        info = api_pb2.HParamInfo(name=k)
        if isinstance(v, bool):
            ssi.hparams[k].bool_value = v
            info.type = api_pb2.DATA_TYPE_BOOL
        elif isinstance(v, (int, float)):
            ssi.hparams[k].number_value = float(v)
            info.type = api_pb2.DATA_TYPE_FLOAT64
        elif isinstance(v, str) or v is None:
            ssi.hparams[k].string_value = "None" if v is None else v
            info.type = api_pb2.DATA_TYPE_STRING
        else:
            raise ValueError(f"hparam '{k}' must be a bool, number, string or None, got {type(v).__name__}")
        if k in domain_discrete:
            info.domain_discrete.values.extend(_pb_value(x) for x in domain_discrete[k])
        infos.append(info)

    def wrap(tag: str, data: Any) -> Any:
        s = protos().summary
        return s.Summary(
            value=[s.Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=NULL_TENSOR)]
        )

    exp = api_pb2.Experiment(
        hparam_infos=infos, metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=k)) for k in metric_dict]
    )
    sei = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)
    return (
        wrap(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=exp, version=0)),
        wrap(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=ssi, version=0)),
        wrap(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=sei, version=0)),
    )


def _pb_value(x: Any) -> Any:
    from google.protobuf import struct_pb2

    if isinstance(x, bool):
        return struct_pb2.Value(bool_value=x)
    if isinstance(x, (int, float)):
        return struct_pb2.Value(number_value=float(x))
    return struct_pb2.Value(string_value=str(x))


# --------------------------------------------------------------------------- graphs

_DTYPES = {
    "float16": "DT_HALF",
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "int8": "DT_INT8",
    "uint8": "DT_UINT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "bool": "DT_BOOL",
    "complex64": "DT_COMPLEX64",
    "complex128": "DT_COMPLEX128",
}


def _tf_input(name: str) -> str:
    """TF's input spelling: `x` for output 0, `x:1` for others, `^x` for a control input."""
    return name[:-2] if name.endswith(":0") and not name.startswith("^") else name


def graph_proto(g: ev.GraphDef, rename: Mapping[str, str] | None = None) -> Any:
    """A TensorBoard GraphDef from a graph's plain-data structure (a session graph, a
    `tt.function` trace). Name scopes are the `/`-separated prefixes of node names, as in
    TensorFlow; `_output_shapes` gives the Graphs dashboard its edge shapes.
    `rename` maps node names to the names to show (inputs follow)."""
    p = protos()
    rename = dict(rename or {})

    def rn(name: str) -> str:
        ctrl = name.startswith("^")
        base, sep, idx = name.lstrip("^").partition(":")
        return ("^" if ctrl else "") + rename.get(base, base) + sep + idx

    out = p.graph.GraphDef(versions=p.versions.VersionDef(producer=22))
    for n in g.nodes:
        nd = out.node.add(name=rn(n.name), op=n.op, input=[_tf_input(rn(i)) for i in n.inputs])
        shapes = p.attr.AttrValue.ListValue()
        for dims in n.shapes or ():
            s = shapes.shape.add()
            if dims is None:
                s.unknown_rank = True
            else:
                s.dim.extend(p.shape.TensorShapeProto.Dim(size=-1 if d is None else int(d)) for d in dims)
        if n.shapes:
            nd.attr["_output_shapes"].list.CopyFrom(shapes)
        if n.dtypes and n.dtypes[0] in _DTYPES:
            nd.attr["T"].type = getattr(p.types, _DTYPES[n.dtypes[0]])
        for k, v in n.attrs:
            if k not in nd.attr:
                nd.attr[k].s = v.encode("utf-8", "replace")
    return out


# --------------------------------------------------------------------------- step stats


def _device_name(dev: str) -> str:
    kind, _, idx = dev.partition(":")
    return f"/job:localhost/replica:0/task:0/device:{'GPU' if kind == 'cuda' else 'CPU'}:{idx or 0}"


def run_metadata(events: Iterable[ev.OpEvent], device_times: Mapping[int, int] | None = None) -> Any:
    """A RunMetadata whose step stats hold one NodeExecStats per op event (host times,
    output shapes and bytes; GPU time where known): the Graphs dashboard colours nodes
    by compute time and memory with it."""
    p = protos()
    base_perf, base_wall = ev.clock_base()
    md = p.config.RunMetadata()
    devs: dict[str, Any] = {}
    device_times = device_times or {}
    for e in events:
        ds = devs.get(e.device)
        if ds is None:
            ds = devs[e.device] = md.step_stats.dev_stats.add(device=_device_name(e.device))
        start_us = (base_wall + e.start_ns - base_perf) // 1000
        dur_us = max(1, (device_times.get(e.seq) or e.duration_ns) // 1000)
        ns = ds.node_stats.add(
            node_name=e.name,
            all_start_micros=start_us,
            op_start_rel_micros=0,
            op_end_rel_micros=dur_us,
            all_end_rel_micros=dur_us,
            thread_id=e.thread & 0xFFFFFFFF,
            timeline_label=f"{e.name} = {e.op}()",
        )
        total = 0
        for i, m in enumerate(e.outputs):
            td = ns.output.add(slot=i).tensor_description
            dt = _DTYPES.get(m.dtype)
            if dt:
                td.dtype = getattr(p.types, dt)
            td.shape.dim.extend(p.shape.TensorShapeProto.Dim(size=int(d)) for d in m.shape)
            td.allocation_description.requested_bytes = td.allocation_description.allocated_bytes = m.nbytes
            td.allocation_description.allocator_name = e.device
            total += m.nbytes
        ns.memory.add(allocator_name=e.device, total_bytes=total, peak_bytes=total)
    return md


def event(**fields: Any) -> Any:
    fields.setdefault("wall_time", time.time())
    return protos().event.Event(**fields)


def norm(s: ev.Summary) -> float:
    """L2 norm of a tensor's finite values from its summary alone: sum x^2 = n (std^2 + mean^2)."""
    n = s.size - s.nonfinite
    if n <= 0 or not math.isfinite(s.mean):
        return float("nan")
    return math.sqrt(n * (s.std**2 + s.mean**2))
