"""`tf.summary`: TensorFlow 1's summary ops and `FileWriter`. Summary ops are registry ops
like any other: a session runs them through the dispatch point (they are events, the
debugger lists them), and each computes a serialized `Summary` protobuf. `sess.run` of
one gives it as a uint8 array (`bytes(x)` is TensorFlow's string); `FileWriter.add_summary`
takes either."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .. import dtypes as _dt
from .. import events as _events
from .._registry import register
from ..errors import Invalid
from ..utils.tensorboard import summary as _sm
from ..utils.tensorboard.writer import EventWriter
from .core import Graph, Tensor, get_default_graph
from .ops import _tensors
from .variables import GraphKeys

__all__ = [
    "scalar",
    "histogram",
    "image",
    "text",
    "merge",
    "merge_all",
    "FileWriter",
    "Summary",
    "Event",
    "SessionLog",
    "RunMetadata",
    "RunOptions",
]

SUMMARIES = "summaries"  # TensorFlow's GraphKeys.SUMMARIES
if not hasattr(GraphKeys, "SUMMARIES"):
    GraphKeys.SUMMARIES = SUMMARIES  # type: ignore[attr-defined]

Summary = _sm.LazyProto("summary", "Summary")
Event = _sm.LazyProto("event", "Event")
SessionLog = _sm.LazyProto("event", "SessionLog")
RunMetadata = _sm.LazyProto("config", "RunMetadata")
RunOptions = _sm.LazyProto("config", "RunOptions")


_NOT_SUPPORTED = frozenset(
    (
        "audio",
        "tensor_summary",
        "FileWriterCache",
        "get_summary_description",
        "SummaryDescription",
        "TaggedRunMetadata",
        "initialize",
        "all_v2_summary_ops",
    )
)


def __getattr__(name: str) -> Any:
    # TF1's other tf.summary members: one clear error instead of an AttributeError
    if name in _NOT_SUPPORTED:
        raise NotImplementedError(
            f"tf.summary.{name} is not supported by tracetensor; supported: " + ", ".join(__all__)
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- the ops


def _no_cost(arrays: tuple, out: Any, attrs: dict) -> int:
    return 0


def _out(xp: Any, summary: Any) -> Any:
    return xp.asarray(np.frombuffer(summary.SerializeToString(), np.uint8).copy())


@register("scalar_summary", tf="ScalarSummary", cost=_no_cost)
def _scalar_summary(xp, value, *, tag):
    v = _events.to_numpy(value)
    if v.size != 1:
        raise Invalid(f"tf.summary.scalar '{tag}' takes one number; got a tensor of shape {tuple(v.shape)}")
    return _out(xp, _sm.scalar(tag, v))


@register("histogram_summary", tf="HistogramSummary", cost=_no_cost)
def _histogram_summary(xp, values, *, tag):
    v = _events.to_numpy(values)
    if v.dtype.kind in "fc" and not np.isfinite(v).all():  # TensorFlow's rule, and its message
        raise Invalid(
            f"Nan in summary histogram for: {tag} ({int(np.isnan(v).sum())} NaN, "
            f"{int(np.isinf(v).sum())} inf of {v.size} values)"
        )
    return _out(xp, _sm.histogram(tag, v))


@register("image_summary", tf="ImageSummary", cost=_no_cost)
def _image_summary(xp, images, *, tag, max_outputs):
    a = _events.to_numpy(images)
    if a.ndim != 4 or a.shape[3] not in (1, 3, 4):
        raise Invalid(
            f"tf.summary.image '{tag}' takes [batch, height, width, channels] with 1, 3 or 4 "
            f"channels; got shape {tuple(a.shape)}"
        )
    vals = []
    for i in range(min(max_outputs, a.shape[0])):
        img = a[i]
        if img.dtype != np.uint8:
            img = _tf_scale(img.astype(np.float64))
        vals.append(_sm.image_value(f"{tag}/image" if max_outputs == 1 else f"{tag}/image/{i}", img))
    return _out(xp, _sm.protos().summary.Summary(value=vals))


def _tf_scale(img: np.ndarray) -> np.ndarray:
    """TensorFlow's float image rule: all >= 0 -> scaled so the largest is 255; otherwise
    scaled so the largest magnitude is 127 and shifted so 0 is 128."""
    img = np.nan_to_num(img)
    top = float(np.abs(img).max()) if img.size else 0.0
    if img.min(initial=0.0) >= 0:
        scaled = img * (255.0 / top) if top > 0 else img
    else:
        scaled = img * (127.0 / top) + 128.0 if top > 0 else img + 128.0
    return scaled.clip(0, 255).round().astype(np.uint8)


@register("text_summary", tf="TensorSummaryV2", cost=_no_cost)
def _text_summary(xp, *values, tag, text=None):
    if text is None:
        v = _events.to_numpy(values[0])
        text = [str(x) for x in v.reshape(-1)] if v.ndim else str(v[()])
    return _out(xp, _sm.text(tag, text))


@register("merge_summary", tf="MergeSummary", cost=_no_cost)
def _merge_summary(xp, *summaries):
    # serialized Summary messages concatenate into one Summary holding all their values
    return xp.concatenate([s.reshape(-1) for s in summaries]) if summaries else xp.zeros(0, np.uint8)


# --------------------------------------------------------------------------- builders


def _summary_node(
    op: str, name: str, inputs: Sequence[Any], attrs: dict, collections: Sequence[str] | None, family: str | None = None
) -> Tensor:
    _sm.protos()  # the "pip install" error at the line that builds the summary, not at the first run
    from .._registry import REGISTRY

    ts = _tensors(*inputs) if inputs else []
    g: Graph = ts[0].graph if ts else get_default_graph()
    full = g.unique_name(_clean(name))
    if op != "merge_summary":
        attrs = {"tag": f"{family}/{full}" if family else full, **attrs}
    node = g.create_op(
        "op",
        REGISTRY[op].tf_name,
        ts,
        attrs,
        name=full,
        opdef=REGISTRY[op],
        out=[((None,), _dt.uint8)],
        exact_name=True,
    )
    out = node.outputs[0]
    for key in [SUMMARIES] if collections is None else collections:
        g.add_to_collection(key, out)
    return out


def _clean(name: str) -> str:
    """TF replaces characters that are not valid in op names with underscores."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a summary name must be a non-empty string, got {name!r}")
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", name).strip("/") or "summary"


def scalar(name: str, tensor: Any, collections: Sequence[str] | None = None, family: str | None = None) -> Tensor:
    """A summary of one number (a loss, an accuracy): the Scalars dashboard's curve `name`."""
    return _summary_node("scalar_summary", name, [tensor], {}, collections, family)


def histogram(name: str, values: Any, collections: Sequence[str] | None = None, family: str | None = None) -> Tensor:
    """The distribution of `values` (TF's exponential buckets); NaN or inf is an error, as in TF."""
    return _summary_node("histogram_summary", name, [values], {}, collections, family)


def image(
    name: str, tensor: Any, max_outputs: int = 3, collections: Sequence[str] | None = None, family: str | None = None
) -> Tensor:
    """Up to `max_outputs` images of a [batch, height, width, channels] tensor, tagged
    `name/image/i` (`name/image` when max_outputs is 1)."""
    return _summary_node("image_summary", name, [tensor], {"max_outputs": int(max_outputs)}, collections, family)


def text(name: str, tensor: Any, collections: Sequence[str] | None = None) -> Tensor:
    """Text (markdown) for the Text dashboard: a Python string or list of strings, or a
    tensor whose values are shown as text."""
    if isinstance(tensor, str) or isinstance(tensor, (list, tuple)) and all(isinstance(s, str) for s in tensor):
        return _summary_node("text_summary", name, [], {"text": tensor}, collections)
    return _summary_node("text_summary", name, [tensor], {}, collections)


def merge(inputs: Sequence[Tensor], collections: Sequence[str] | None = None, name: str | None = None) -> Tensor:
    """One summary holding the values of all `inputs` (summary tensors)."""
    inputs = list(inputs)
    for t in inputs:
        if not isinstance(t, Tensor) or t.op.opdef is None or not t.op.opdef.name.endswith("_summary"):
            raise TypeError(
                f"tf.summary.merge takes summary tensors (from tf.summary.scalar, ...), got "
                f"{getattr(t, 'name', repr(t))}"
            )
    return _summary_node("merge_summary", name or "Merge/MergeSummary", inputs, {}, collections or [])


def merge_all(key: str = SUMMARIES, scope: str | None = None, name: str | None = None) -> Tensor | None:
    """All summaries in the default graph's collection `key` (matching `scope`), merged;
    None when there are none (TF's behaviour)."""
    items = get_default_graph().get_collection(key)
    if scope is not None:
        items = [t for t in items if re.match(scope, t.op.name)]
    return merge(items, name=name) if items else None


# --------------------------------------------------------------------------- FileWriter


class FileWriter(EventWriter):
    """TF1's `tf.summary.FileWriter(logdir, graph)`: `add_summary(sess.run(merged), step)`,
    `add_graph(sess.graph)`, `add_run_metadata(run_metadata, "step 10", 10)`, `flush`, `close`."""

    def __init__(
        self,
        logdir: str,
        graph: Any = None,
        max_queue: int = 10,
        flush_secs: float = 120,
        graph_def: Any = None,
        filename_suffix: str | None = None,
        session: Any = None,
    ) -> None:
        super().__init__(logdir, max_queue, flush_secs, filename_suffix or "")
        if graph is not None or graph_def is not None:
            self.add_graph(graph if graph is not None else graph_def)

    def add_graph(self, graph: Any, global_step: int | None = None, graph_def: Any = None) -> None:
        """A `tf.Graph` (name scopes become the Graphs dashboard's boxes) or a GraphDef proto."""
        graph = graph if graph is not None else graph_def
        if isinstance(graph, Graph):
            from .session import graph_def as _plain

            graph = _sm.graph_proto(_plain(graph))
        elif not isinstance(graph, _sm.protos().graph.GraphDef):
            raise TypeError(f"add_graph takes a tf.Graph (e.g. sess.graph) or a GraphDef, got {type(graph).__name__}")
        self.add_graph_def(graph)


# --------------------------------------------------------------------------- step stats


@contextmanager
def collect_run_metadata(run_metadata: Any) -> Iterator[None]:
    """`sess.run(..., run_metadata=md)`: fills `md.step_stats` with this thread's op events
    of the run (host times, output shapes and bytes), for `FileWriter.add_run_metadata`."""
    if not isinstance(run_metadata, _sm.protos().config.RunMetadata):
        raise TypeError(f"run_metadata must be a tf.RunMetadata(), got {type(run_metadata).__name__}")
    me = threading.get_ident()
    got: list[_events.OpEvent] = []
    dev: dict[int, int] = {}

    def keep(e: Any) -> None:
        if isinstance(e, _events.OpEvent) and e.thread == me:
            got.append(e)
        elif isinstance(e, _events.DeviceTime):
            dev[e.seq] = e.device_ns

    with _events.listen(keep):
        yield
    run_metadata.MergeFrom(_sm.run_metadata(got, dev))
