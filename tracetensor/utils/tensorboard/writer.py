"""`SummaryWriter`, PyTorch's TensorBoard logger: event files written by TensorBoard's own
`EventFileWriter` (TFRecord framing, CRCs, a background flushing thread)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from . import summary as sm


class EventWriter:
    """One event file in `log_dir`: summaries, graphs and run metadata at steps. The shared
    base of `SummaryWriter` and graph mode's `tf.summary.FileWriter`."""

    def __init__(self, log_dir: str, max_queue: int = 10, flush_secs: float = 120, filename_suffix: str = "") -> None:
        sm.protos()  # the clear "pip install" error comes before any folder is made
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.log_dir = str(log_dir)
        self._args = (max_queue, flush_secs, filename_suffix)
        self._file: Any = EventFileWriter(self.log_dir, max_queue, flush_secs, filename_suffix)

    def get_logdir(self) -> str:
        return self.log_dir

    def add_event(self, event: Any) -> None:
        if self._file is None:  # TF's writers reopen on use after close; so do we
            self.reopen()
        self._file.add_event(event)

    def add_summary(self, summary: Any, global_step: int | None = None, walltime: float | None = None) -> None:
        """`summary`: a Summary proto, or its serialized bytes (what a graph-mode summary op
        computes: bytes, or a uint8 array)."""
        p = sm.protos().summary
        if isinstance(summary, np.ndarray):
            summary = summary.tobytes()
        if isinstance(summary, (bytes, bytearray, memoryview)):
            summary = p.Summary.FromString(bytes(summary))
        if not isinstance(summary, p.Summary):
            raise TypeError(
                f"add_summary takes a Summary proto or its serialized bytes (what sess.run of a "
                f"tf.summary op returns), got {type(summary).__name__}"
            )
        self.add_event(sm.event(summary=summary, **_step(global_step), **_wall(walltime)))

    def add_graph_def(self, graph_def: Any, walltime: float | None = None) -> None:
        self.add_event(sm.event(graph_def=graph_def.SerializeToString(), **_wall(walltime)))

    def add_run_metadata(self, run_metadata: Any, tag: str, global_step: int | None = None) -> None:
        """Step stats for the Graphs dashboard's "Session runs" menu, under `tag`."""
        tagged = sm.protos().event.TaggedRunMetadata(tag=tag, run_metadata=run_metadata.SerializeToString())
        self.add_event(sm.event(tagged_run_metadata=tagged, **_step(global_step)))

    def add_session_log(self, session_log: Any, global_step: int | None = None) -> None:
        self.add_event(sm.event(session_log=session_log, **_step(global_step)))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def reopen(self) -> None:
        """A new event file in the same folder (after `close`)."""
        if self._file is None:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self._file = EventFileWriter(self.log_dir, *self._args)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _step(step: Any) -> dict:
    return {} if step is None else {"step": int(step)}


def _wall(walltime: float | None) -> dict:
    return {} if walltime is None else {"wall_time": float(walltime)}


def default_log_dir(comment: str = "") -> str:
    """PyTorch's default: runs/<Mon>DD_HH-MM-SS_<host><comment>."""
    return os.path.join("runs", datetime.now().strftime("%b%d_%H-%M-%S") + "_" + socket.gethostname() + comment)


class SummaryWriter:
    """Writes TensorBoard event files to `log_dir`, with PyTorch's API:
    `with SummaryWriter("runs/exp1") as w: w.add_scalar("loss", loss, step)`.

    log_dir: default `runs/<date>_<host><comment>`. purge_step: a run that crashed at step
    T+X and restarts at T: events with step >= T from before are hidden in TensorBoard.
    max_queue / flush_secs: events are written after that many, or every so many seconds."""

    def __init__(
        self,
        log_dir: str | os.PathLike | None = None,
        comment: str = "",
        purge_step: int | None = None,
        max_queue: int = 10,
        flush_secs: float = 120,
        filename_suffix: str = "",
    ) -> None:
        self.log_dir = str(log_dir) if log_dir else default_log_dir(comment)
        self.purge_step = purge_step
        self.max_queue, self.flush_secs, self.filename_suffix = max_queue, flush_secs, filename_suffix
        self.file_writer = EventWriter(self.log_dir, max_queue, flush_secs, filename_suffix)
        self.all_writers: dict[str, EventWriter] = {self.log_dir: self.file_writer}
        self._lock = threading.Lock()  # add_scalars from several threads must not open a run twice
        if purge_step is not None:
            p = sm.protos().event
            self.file_writer.add_event(sm.event(step=purge_step, file_version="brain.Event:2"))
            self.file_writer.add_event(sm.event(step=purge_step, session_log=p.SessionLog(status=p.SessionLog.START)))

    def get_logdir(self) -> str:
        return self.log_dir

    def _get_file_writer(self) -> EventWriter:
        if self.file_writer._file is None:
            self.file_writer.reopen()
        return self.file_writer

    def _add(self, summary: Any, global_step: Any, walltime: float | None) -> None:
        self._get_file_writer().add_summary(summary, _int_step(global_step), walltime)

    def add_scalar(
        self,
        tag: str,
        scalar_value: Any,
        global_step: Any = None,
        walltime: float | None = None,
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        """One point of the curve `tag` (a number, or a one-element tensor)."""
        self._add(sm.scalar(tag, scalar_value), global_step, walltime)

    def add_scalars(
        self, main_tag: str, tag_scalar_dict: Mapping[str, Any], global_step: Any = None, walltime: float | None = None
    ) -> None:
        """Several curves on one chart: each key goes to its own run `<log_dir>/<main_tag>_<key>`
        under the tag `main_tag`, as in PyTorch."""
        walltime = time.time() if walltime is None else walltime
        for key, value in tag_scalar_dict.items():
            path = os.path.join(self.log_dir, main_tag.replace("/", "_") + "_" + key)
            with self._lock:
                w = self.all_writers.get(path)
                if w is None:
                    w = self.all_writers[path] = EventWriter(
                        path, self.max_queue, self.flush_secs, self.filename_suffix
                    )
            w.add_summary(sm.scalar(main_tag, value), _int_step(global_step), walltime)

    def add_histogram(
        self,
        tag: str,
        values: Any,
        global_step: Any = None,
        bins: Any = "tensorflow",
        walltime: float | None = None,
        max_bins: int | None = None,
    ) -> None:
        """The distribution of `values` (NaN and inf left out of the buckets)."""
        self._add(sm.histogram(tag, values, bins), global_step, walltime)

    def add_image(
        self,
        tag: str,
        img_tensor: Any,
        global_step: Any = None,
        walltime: float | None = None,
        dataformats: str = "CHW",
    ) -> None:
        """An image: floats in [0, 1] or uint8; CHW by default (HWC, HW too)."""
        self._add(sm.image(tag, img_tensor, dataformats), global_step, walltime)

    def add_images(
        self,
        tag: str,
        img_tensor: Any,
        global_step: Any = None,
        walltime: float | None = None,
        dataformats: str = "NCHW",
    ) -> None:
        """A batch of images shown as one grid, as PyTorch does."""
        a = sm.to_numpy(img_tensor)
        fmt = dataformats.upper()
        if not fmt.startswith("N") or a.ndim != len(fmt):
            raise ValueError(
                f"add_images takes a batch with dataformats like NCHW or NHWC; got {dataformats!r} "
                f"and shape {tuple(a.shape)}"
            )
        imgs = [sm.to_uint8_image(a[i], fmt[1:]) for i in range(a.shape[0])]
        self._add(sm.protos().summary.Summary(value=[sm.image_value(tag, _grid(imgs))]), global_step, walltime)

    def add_text(
        self, tag: str, text_string: str | Sequence[str], global_step: Any = None, walltime: float | None = None
    ) -> None:
        """Markdown text under the Text dashboard."""
        self._add(sm.text(tag, text_string), global_step, walltime)

    def add_graph(
        self,
        model: Callable[..., Any],
        input_to_model: Any = None,
        verbose: bool = False,
        use_strict_trace: bool = True,
    ) -> None:
        """The graph of `model(*input_to_model)`, traced with `tt.function`: modules become
        name scopes (`Sequential/0/MatMul`), parameters sit inside their module."""
        from ... import graph as _graph

        if not callable(model):
            raise TypeError(f"add_graph(model, input_to_model) needs a callable model, got {type(model).__name__}")
        args = (
            input_to_model
            if isinstance(input_to_model, (tuple, list))
            else (() if input_to_model is None else (input_to_model,))
        )
        g = _graph.function(model).get_concrete_function(*args)
        gd = _graph.graph_def(g)
        self._get_file_writer().add_graph_def(sm.graph_proto(gd, _param_scopes(gd, model)))
        if verbose:
            for n in gd.nodes:
                print(f"{n.name} = {n.op}({', '.join(n.inputs)})")

    def add_hparams(
        self,
        hparam_dict: Mapping[str, Any],
        metric_dict: Mapping[str, Any],
        hparam_domain_discrete: Mapping[str, list] | None = None,
        run_name: str | None = None,
        global_step: Any = None,
    ) -> None:
        """One row of the HParams dashboard: the hyperparameters and final metrics of a
        trial, written (as PyTorch does) to the run `<log_dir>/<run_name>`."""
        exp, ssi, sei = sm.hparams(hparam_dict, metric_dict, hparam_domain_discrete)
        logdir = os.path.join(self.log_dir, run_name or str(time.time()))
        with EventWriter(logdir, self.max_queue, self.flush_secs, self.filename_suffix) as w:
            step = _int_step(global_step)
            for s in (exp, ssi, sei):
                w.add_summary(s, step)
            for k, v in metric_dict.items():
                w.add_summary(sm.scalar(k, v), step)

    def __getattr__(self, name: str) -> Any:
        # PyTorch's other add_* methods: one clear error instead of an AttributeError
        if name in _NOT_SUPPORTED:
            raise NotImplementedError(
                f"SummaryWriter.{name} is not supported by tracetensor; supported: " + ", ".join(_SUPPORTED)
            )
        raise AttributeError(f"'SummaryWriter' object has no attribute '{name}'")

    def flush(self) -> None:
        for w in self.all_writers.values():
            w.flush()

    def close(self) -> None:
        for w in self.all_writers.values():
            w.close()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SUPPORTED = (
    "add_scalar",
    "add_scalars",
    "add_histogram",
    "add_image",
    "add_images",
    "add_text",
    "add_graph",
    "add_hparams",
)
_NOT_SUPPORTED = frozenset(
    (
        "add_embedding",
        "add_pr_curve",
        "add_pr_curve_raw",
        "add_figure",
        "add_audio",
        "add_video",
        "add_mesh",
        "add_custom_scalars",
        "add_custom_scalars_multilinechart",
        "add_custom_scalars_marginchart",
        "add_histogram_raw",
        "add_image_with_boxes",
        "add_onnx_graph",
        "add_tensor",
    )
)


def _int_step(step: Any) -> int | None:
    if step is None or isinstance(step, int):
        return step
    v = sm.to_numpy(step)
    if v.size != 1:
        raise ValueError(f"global_step must be one integer, got shape {tuple(v.shape)}")
    return int(v.reshape(-1)[0])


def _grid(imgs: list[np.ndarray], ncols: int = 8) -> np.ndarray:
    """Images (HWC uint8) tiled into one, as torchvision's make_grid does."""
    h = max(i.shape[0] for i in imgs)
    w = max(i.shape[1] for i in imgs)
    c = max(i.shape[2] for i in imgs)
    cols = min(ncols, len(imgs))
    rows = -(-len(imgs) // cols)
    out = np.zeros((rows * h, cols * w, c), np.uint8)
    for k, im in enumerate(imgs):
        if im.shape[2] != c:
            im = np.repeat(im[:, :, :1], c, axis=2)
        r, q = divmod(k, cols)
        out[r * h : r * h + im.shape[0], q * w : q * w + im.shape[1]] = im
    return out


def _param_scopes(gd: Any, model: Any) -> dict[str, str]:
    """Puts captured parameters (`0.weight`) inside their module's scope
    (`Sequential/0/weight`), next to the ops that use them."""
    root = type(model).__name__
    if not any(n.name.startswith(root + "/") for n in gd.nodes):
        return {}
    return {n.name: root + "/" + n.name.replace(".", "/") for n in gd.nodes if n.op == "Captured"}
