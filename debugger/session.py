"""Debugging live programs: `LocalCLIDebugWrapperSession` around a graph-mode Session and
`wrap` around eager functions and modules. Both drive one `Controller` that decides,
run by run, whether to stop, and opens the chosen UI (Textual or line mode) at stops."""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from tracetensor import events as ev
from tracetensor.trace import MemoryTrace

from .commands import Debugger, RunAction
from .filters import FilterError, TensorDatum, add_tensor_filter


def _pick_ui(ui_type: str) -> Any:
    if ui_type not in ("textual", "readline", "curses"):
        raise ValueError(
            f"tracetensor debugger: ui_type must be 'textual' or 'readline' (tfdbg's "
            f"'curses' means 'textual'), got {ui_type!r}"
        )
    if ui_type == "readline" or not (sys.stdin.isatty() and sys.stdout.isatty()):
        from .readline_ui import ReadlineUI

        return ReadlineUI()
    from .tui import TextualUI

    return TextualUI()


class Controller:
    """Decides, run by run, what to record and where to stop (tfdbg's run-start /
    run-end protocol). A `run` typed at a run-end screen applies to the next run."""

    def __init__(self, ui_type: str = "textual", ui: Any = None) -> None:
        self.ui = ui if ui is not None else _pick_ui(ui_type)
        self.pending: RunAction | None = None
        self.countdown = 0
        self.enabled = True
        self.calls = 0
        self.trace: MemoryTrace | None = None
        self.last: Debugger | None = None
        self.graphs: list[ev.GraphDef] = []
        self.history: dict[str, list[float]] = {}
        self.weights: Callable[[], dict[str, ev.Summary]] | None = None

    def before_run(self, fetches: tuple[str, ...] = (), feeds: tuple[str, ...] = ()) -> bool:
        """Called before each run; returns whether this run is recorded."""
        self.calls += 1
        if not self.enabled:
            return False
        if self.pending is None:
            intro = Text()
            intro.append(f"run #{self.calls}: about to run\n", style="bold")
            intro.append(f"  fetches: {', '.join(fetches) or '(eager call)'}\n")
            intro.append(f"  feeds: {', '.join(feeds) or '(none)'}\n")
            intro.append("Choose: run | run -n | run -t N | run -f FILTER | exit   (help for more)")
            dbg = self.last or Debugger(MemoryTrace(start=False))
            act = self.ui.session(dbg, f"run-start: run #{self.calls}", intro, kind="start")
            if not self._take(act):
                return False
        assert self.pending is not None
        if self.pending.mode == "nodebug":
            self.pending = None
            return False
        self.trace = MemoryTrace(values=True, summaries=True, stacks=True)
        for g in self.graphs:  # graph structure is announced once; each run's trace needs it
            self.trace.add(g)
        return True

    def _take(self, act: RunAction | None) -> bool:
        if act is None:
            self.enabled = False
            self.pending = None
            return False
        self.pending = act
        self.countdown = act.times
        return True

    def after_run(self, error: BaseException | None = None) -> None:
        """Called after a recorded run (also when it raised); may open the run-end screen."""
        tr, act = self.trace, self.pending
        if tr is None or act is None:
            return
        tr.stop()
        self.trace = None
        self.graphs = tr.graphs()[-4:]
        dbg = Debugger(tr, watch=act)
        dbg.label = f"#{self.calls}"
        dbg.grad_history = self.history
        if self.weights is not None:
            dbg.weights = self.weights()
        dbg.record_history()
        self.last = dbg
        culprit = filter_error = None
        if act.mode == "times":
            self.countdown -= 1
            stop = self.countdown <= 0
        elif act.mode == "filter":
            dbg.stopped_by = act.filter
            try:
                culprit = dbg.culprit(act.filter)
                stop = culprit is not None
            except FilterError as e:  # a broken user filter stops here and says why
                dbg.stopped_by, filter_error, stop = None, e, True
        else:
            stop = True
        if not stop and error is None:
            return
        self.pending = None
        intro = self.run_end_intro(dbg, error, culprit, act.filter)
        if filter_error is not None:
            intro = Group(intro, Text(f"error: {filter_error}", style="red"))
        self._take(self.ui.session(dbg, f"run-end: run #{self.calls}", intro, kind="end"))

    def run_end_intro(
        self, dbg: Debugger, error: BaseException | None, culprit: TensorDatum | None, filter_name: str | None
    ) -> RenderableType:
        parts: list[RenderableType] = [
            Text(f"run #{self.calls} ended: {dbg.trace.count(dbg.run)} op events", style="bold")
        ]
        if error is not None:
            t = Text(f"run #{self.calls} raised {type(error).__name__}:\n", style="bold red")
            t.append(f"  {error}\n", style="red")
            frame = getattr(error, "frame", None)
            name = getattr(error, "name", None)
            if name:
                t.append(f"  node: {name}\n")
            if frame is not None:
                t.append(f"  defined at {frame.filename}:{frame.lineno}\n")
                line = dbg._source_line(frame.filename, frame.lineno)
                if line:
                    t.append(f"    {line}\n")
            parts.append(t)
        if culprit is not None:
            parts.append(
                Text(
                    f"run #{self.calls}: tensor filter {filter_name!r} passed at "
                    f"{culprit.tensor_name} ({culprit.op_type})",
                    style="bold red",
                )
            )
        if getattr(self.ui, "show_list", False):  # the TUI shows the list in its own widget
            parts.append(dbg.execute("lt").output)
        return Group(*parts)


def _names(x: Any) -> list[str]:
    """Names of fetches/feeds in a nested structure (tensors, ops, strings)."""
    if isinstance(x, dict):
        out = []
        for k, v in x.items():
            out += _names(k) if v is None else _names(v)
        return out
    if isinstance(x, (list, tuple)):
        return [n for i in x for n in _names(i)]
    name = getattr(x, "name", None)
    return [name if isinstance(name, str) else str(x)]


class LocalCLIDebugWrapperSession:
    """tfdbg's wrapper: behaves as the wrapped Session and opens the debugger around
    each `run()`."""

    def __init__(
        self,
        sess: Any,
        ui_type: str = "textual",
        dump_root: str | None = None,
        log_usage: bool = True,
        thread_name_filter: str | None = None,
        config_file_path: str | None = None,
        *,
        ui: Any = None,
    ) -> None:
        # tfdbg's log_usage and config_file_path (its UI preferences file) change nothing here;
        # thread_name_filter (a regex) debugs only the runs of threads whose name matches
        self._sess = sess
        self.config_file_path = config_file_path
        self._thread_filter = re.compile(thread_name_filter) if thread_name_filter else None
        self.dump_root = dump_root
        self.controller = Controller(ui_type, ui)
        self._recorder = None
        if dump_root is not None:
            # every run is also kept in a trace file: `tracetensor debug DUMP_ROOT/session.ttrace`
            from tracetensor.trace import record

            os.makedirs(dump_root, exist_ok=True)
            self.trace_path = os.path.join(dump_root, "session.ttrace")
            self._recorder = record(self.trace_path, values="full").start()

    def add_tensor_filter(self, filter_name: str, tensor_filter: Callable) -> None:
        """tfdbg's `sess.add_tensor_filter(name, fn)`: `fn(datum, tensor) -> bool` becomes
        usable as `run -f NAME` and `lt -f NAME`."""
        add_tensor_filter(filter_name, tensor_filter)

    def run(self, fetches: Any, feed_dict: dict | None = None, **kwargs: Any) -> Any:
        c = self.controller
        if self._thread_filter is not None and not self._thread_filter.match(threading.current_thread().name):
            return self._sess.run(fetches, feed_dict=feed_dict, **kwargs)
        if not c.before_run(tuple(_names(fetches)), tuple(_names(list((feed_dict or {}).keys())))):
            return self._sess.run(fetches, feed_dict=feed_dict, **kwargs)
        try:
            out = self._sess.run(fetches, feed_dict=feed_dict, **kwargs)
        except Exception as e:
            c.after_run(e)
            raise
        c.after_run()
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sess, name)

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.stop()
            self._recorder = None
        self._sess.close()

    def __enter__(self) -> LocalCLIDebugWrapperSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Wrapped:
    """An eager function under the debugger: each call is one debugged run."""

    def __init__(self, fn: Callable, controller: Controller) -> None:
        self._fn = fn
        self.controller = controller
        self.__name__ = getattr(fn, "__name__", "call")
        self.__doc__ = getattr(fn, "__doc__", None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        c = self.controller
        debug = c.before_run()
        ev.step()  # a wrapped call is a step of its own: an open implicit step ends here
        run = ev.begin_run("debug", name=self.__name__)
        try:
            out = self._fn(*args, **kwargs)
        except Exception as e:
            ev.end_run(run, e)
            if debug:
                c.after_run(e)
            raise
        ev.end_run(run)
        if debug:
            c.after_run()
        return out


class _WrappedModule:
    """An eager module under the debugger: a run spans from one forward call to the
    next, so each step's backward and optimizer ops belong to it."""

    def __init__(self, model: Any, controller: Controller) -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "controller", controller)
        object.__setattr__(self, "_open", None)  # (run id, debugged) of the open run
        controller.weights = self._weights
        atexit.register(self.close)

    def _weights(self) -> dict[str, ev.Summary]:
        named = getattr(self._model, "named_parameters", None)
        if named is None:
            return {}
        out = {}
        for name, p in named():
            out[name] = ev.summarize(p.detach().cpu().numpy())
        return out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.close()
        ev.step()
        debug = self.controller.before_run()
        object.__setattr__(self, "_open", (ev.begin_run("debug", name=type(self._model).__name__), debug))
        try:
            return self._model(*args, **kwargs)
        except Exception as e:
            self.close(e)
            raise

    def close(self, error: BaseException | None = None) -> None:
        """Ends the open run (called by the next forward, at exit, or by you)."""
        if self._open is None:
            return
        run, debug = self._open
        object.__setattr__(self, "_open", None)
        ev.end_run(run, error)
        if debug:
            self.controller.after_run(error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._model, name, value)


def wrap(fn_or_model: Any, ui_type: str = "textual", *, ui: Any = None) -> Any:
    """Debugs eager code: a function's every call is one run; a module's run spans from
    one forward call to the next. Returns the wrapped callable."""
    controller = Controller(ui_type, ui)
    if hasattr(fn_or_model, "parameters") and hasattr(fn_or_model, "forward"):
        return _WrappedModule(fn_or_model, controller)
    if not callable(fn_or_model):
        raise TypeError(f"debugger.wrap needs a function or an nn.Module, got {type(fn_or_model).__name__}")
    return _Wrapped(fn_or_model, controller)
