"""`tt.record(path)`: records the event stream into a trace file, off the hot path.

The listener callback only queues: raw records as rows of numbers (`events.column_queue`,
into which the dispatch point writes them without making a record), the rest as it comes
(and, for `values="full"`, copies of the arrays, since in-place updates could change them
before they are written). The queue is handed to the file's writer in batches: by the
producing thread itself when the queue fills (see `batch_records`; `BATCH_EVENTS` events
where a filter or values="full" queues events), and by a writer thread when the queue has
waited `FLUSH_S` seconds (a program that stopped producing, or produces slowly). So a killed
process loses at most about `FLUSH_S` of recording, busy or not.

The writer is the writer process (trace/server.py): the batch is packed here (about 1 µs
per step: rows, the new call sites' descriptions, the run markers as tuples) and written
there, one SQLite transaction each, on another core. The process starts with the first
batch a recording hands over before its end: a recording whose only batch is its last (a
short script's) is written here. Where that process cannot start (or
TRACETENSOR_WRITER=thread) the file is written here, by whichever thread hands the batch
over. Why not a writer thread: the writer's work is mostly Python, so under the GIL a
writer thread takes turns with the training loop rather than running beside it; on the
small MLP of benchmarks/bench_overhead.py (an 88 µs step) it took 18 µs of CPU a step,
more than the same batches written in the training thread (11 µs).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .. import events as ev
from .._version import __version__
from . import server
from .server import RemoteError, RemoteWriter
from .store import SqliteTrace, TraceWriter

VALUES = ("none", "check", "summary", "full")
FLUSH_S = 0.1  # what waits longer than this the writer thread hands over (a SIGKILL loses about this much)
# queued items the producer hands over itself (see the module's docstring). Records are rows
# of 48 bytes: for the writer process they go in batches of 1.5 MB, few and large, since it
# wakes for each batch and a process that wakes every few tens of milliseconds runs each
# batch with cold caches. On the small MLP of benchmarks/bench_overhead.py, batches of 32,768
# records (the 0.1 s flush comes first) took the writer's CPU about 1.3 us a step lower than
# 8,192, the program's 0.5% lower. A batch written in the program, and an events queue (an
# event is an object of about half a KB), hand over at 8,192.
BATCH_RECORDS = 32_768
BATCH_EVENTS = 8_192
QUEUE_BATCHES = 4  # queued batches past which a producer waits (for the writer thread, mid-batch)
MAX_QUEUE_VALUE_BYTES = 64 << 20  # queued value bytes the producer hands over itself (values="full")
BATCH = 20_000  # events per transaction; keeps each commit short

_active: weakref.WeakSet[Recorder] = weakref.WeakSet()
_atexit_registered = False

Steps = range | Iterable[int] | Callable[[int], bool] | None


class Recorder:
    """A recording in progress; made by `record(...)`. Use as a context manager, or call
    `start()` / `stop()`. `path`, `error` (what stopped the writer, if anything)."""

    def __init__(
        self,
        path: str | os.PathLike,
        values: str = "summary",
        ops: str | None = None,
        steps: Steps = None,
        max_bytes: int = 512 << 20,
        *,
        stacks: bool = True,
        sources: bool = True,
    ) -> None:
        if values not in VALUES:
            raise ValueError(f"tt.record: values must be one of {', '.join(map(repr, VALUES))}, got {values!r}")
        if steps is not None and not callable(steps) and not isinstance(steps, Iterable):
            raise TypeError(
                f"tt.record: steps must be a range, an iterable of run indices or a callable, "
                f"got {type(steps).__name__}"
            )
        if int(max_bytes) < 0:
            raise ValueError(f"tt.record: max_bytes must be >= 0, got {max_bytes}")
        self.path = os.fspath(path)
        self.rank = _rank_info()  # under mpiexec: one file per rank, run.rank3.ttrace
        if self.rank is not None:
            self.path = _rank_path(self.path, self.rank["rank"])
        self.values = values
        self.ops = ops
        self._ops_rx = re.compile(ops) if ops is not None else None
        self._steps = steps if steps is None or callable(steps) or isinstance(steps, range) else set(steps)
        self.max_bytes = int(max_bytes)
        # value bytes the queue may hold before producers wait (never more than the budget needs)
        self._qbytes_limit = min(MAX_QUEUE_VALUE_BYTES, max(self.max_bytes, 1 << 20))
        self.stacks = stacks
        self.sources = sources
        self.error: BaseException | None = None
        # what the listener queued for the writer (`take()` hands it over): raw records as
        # columns (`events.column_queue`), but where a filter reads each event (`_keep`)
        if values == "full" or self._steps is not None or self._ops_rx is not None:
            self._q = ev.appender(BATCH_EVENTS, self._on_full)
            self._max_queue = QUEUE_BATCHES * BATCH_EVENTS
        else:
            n = batch_records()
            self._q = ev.column_queue(n, self._on_full, stacks)
            self._max_queue = QUEUE_BATCHES * n
        self._vals: dict[int, tuple] = {}  # seq -> copied output values (values="full")
        self._qbytes = 0
        self._qlock = threading.Lock()
        # one batch at a time, taken and written in order: by a producer or the writer thread
        self._wlock = threading.Lock()
        self._written = time.monotonic()  # when the last batch was written
        self._wake = threading.Event()
        self._stopping = False
        self._listener: ev.Listener | None = None
        self._thread: threading.Thread | None = None
        self._writer: TraceWriter | None = None
        self._old_sigterm: Any = None
        # step filter state (read and set by whoever writes a batch: `_wlock` held)
        self._n_runs = 0
        self._selected: set[int] = set()
        self._cur_selected = True
        self._op_keep: dict[tuple[str, str], bool] = {}

    # -- lifecycle
    def start(self) -> Recorder:
        if self._listener is not None:
            return self
        self._writer = _open_writer(
            self.path,
            keep_summaries=self.values != "none",
            keep_stacks=self.stacks,
            max_bytes=self.max_bytes,
            sources=self.sources,
            meta={
                "values": self.values,
                "ops": self.ops or "",
                "steps": _describe(self._steps),
                "tracetensor": __version__,
                "argv": " ".join(sys.argv),
                "python": sys.version.split()[0],
                **(self.rank or {}),
            },
        )
        self._thread = threading.Thread(target=self._run, name=f"tracetensor-recorder:{self.path}", daemon=True)
        self._thread.start()
        full = self.values == "full"
        self._listener = ev.subscribe(
            self._on_event_full if full else self._q,
            values=full,
            summaries=self.values in ("summary", "full"),
            stacks=self.stacks,
            # records, packed by the writer: no event is made per op ("summary": records carry
            # their outputs' summaries; with "check" or "summary", an op with a NaN or an inf
            # comes as an event, with summaries of its outputs and inputs)
            raw=not full,
            checks=self.values == "check",
        )
        _active.add(self)
        _ensure_atexit()
        self._install_sigterm()
        return self

    def stop(self) -> None:
        """Unsubscribes, writes what is queued and closes the file (idempotent)."""
        if self._listener is None:
            return
        self._listener.close()
        self._listener = None
        self._restore_sigterm()
        self._stopping = True
        self._wake.set()
        interrupted = None
        t = self._thread
        while t is not None and t.is_alive():
            try:
                t.join(0.1)
            except KeyboardInterrupt as e:  # a second Ctrl-C: finish the flush first, then re-raise
                interrupted = e
        _active.discard(self)
        if interrupted is not None:
            raise interrupted

    close = stop

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def open(self) -> SqliteTrace:
        """Reads the trace back (after `stop()`, or live: what was committed so far)."""
        return SqliteTrace(self.path)

    # -- hot path: append only (values="full" copies the arrays first; the rest: events.appender)
    def _on_event_full(self, e: ev.Event) -> None:
        if e.__class__ is ev.OpEvent and e.values is not None:
            # copies: an in-place update could change an output before the writer gets to it
            vals = tuple(None if v is None else v.copy() for v in e.values)
            n = sum(v.nbytes for v in vals if v is not None)
            with self._qlock:
                self._qbytes += n
            self._vals[e.seq] = vals  # before the event is queued, so the writer always finds it
        self._q(e)  # (hands the queue over past BATCH_EVENTS events)
        if self._qbytes > self._qbytes_limit:
            self._on_full()

    def _on_full(self) -> None:
        """The queue is full: the producing thread hands it over now. If the writer thread is
        mid-batch, the producer goes on queueing, and waits for it only past QUEUE_BATCHES."""
        over = len(self._q) > self._max_queue or self._qbytes > 2 * self._qbytes_limit
        if not self._wlock.acquire(blocking=over):
            return
        try:
            if self.error is None and not self._stopping:
                with _signals_held():
                    try:
                        self._drain()
                    except Exception as e:  # disk full, file removed ...: as in the writer thread
                        self._fail(e)
        finally:
            self._wlock.release()

    # -- writer thread: what waited FLUSH_S, and the rest at stop
    def _run(self) -> None:
        w = self._writer
        assert w is not None
        try:
            while True:
                self._wake.wait(FLUSH_S / 2)
                self._wake.clear()
                stopping = self._stopping
                if stopping or time.monotonic() - self._written >= FLUSH_S:
                    with self._wlock:
                        if self.error is not None:  # a producer's write failed, and closed the file
                            return
                        if stopping and hasattr(w, "finishing"):  # (a recording's last batch: see RemoteWriter)
                            w.finishing()
                        self._drain()
                        while stopping and len(self._q):  # an event another thread emitted as the listener closed
                            self._drain()
                if stopping:
                    break
            w.close(complete=True)
        except BaseException as e:
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        """What stopped the writer (disk full, file removed ...) stops the recording; the
        program goes on. Called with `_wlock` held, or by the writer thread."""
        self.error = e
        self._q.take()
        self._vals.clear()
        if self._listener is not None:
            self._listener.close()
        what = str(e) if isinstance(e, RemoteError) else f"{type(e).__name__}: {e}"
        warnings.warn(
            f"tracetensor: recording to {self.path} stopped: {what}",
            RuntimeWarning,
            stacklevel=1,
        )
        try:
            assert self._writer is not None
            self._writer.close(complete=False)
        except Exception:
            pass

    def _drain(self) -> None:
        """Writes what was queued when it was called (not what arrives meanwhile: batches stay
        big, so each transaction's fixed cost is spread over many events). `_wlock` held."""
        assert self._writer is not None
        # no collection while a batch is written: its records (and the writer's many new
        # objects, no cycles among them) are freed before any collection would traverse them
        # all; otherwise the writer's allocations set one off over every record still queued
        with ev.gc_paused():
            self._write_queued(self._writer)
        self._written = time.monotonic()

    def _write_queued(self, w: Any) -> None:
        queued = self._q.take()
        if queued.__class__ is tuple:  # a column queue's (no filter, no values): one batch
            if queued[0] or queued[3] or queued[4] or queued[5]:  # (rows, a key numbering reset, events, run markers)
                w.write(queued)
            return
        filtered = self._steps is not None or self._ops_rx is not None
        for k in range(0, len(queued), BATCH):
            batch = queued[k : k + BATCH]
            vals = None
            if self._vals:
                vals = {}
                pv = self._vals.pop
                for e in batch:
                    v = pv(e.seq, None) if e.__class__ is ev.OpEvent else None
                    if v is not None:
                        vals[e.seq] = v
            if filtered:
                batch = [e for e in ev.materialize(batch) if self._keep(e)]
            if batch:
                w.write(batch, vals)
            if vals:
                n = sum(a.nbytes for v in vals.values() for a in v if a is not None)
                with self._qlock:
                    self._qbytes -= n

    def _keep(self, e: ev.Event) -> bool:
        """The `steps` and `ops` filters (applied as a batch is written, not per op)."""
        cls = e.__class__
        steps = self._steps
        if cls is ev.RunStart:
            if steps is not None:
                i = self._n_runs
                self._n_runs += 1
                self._cur_selected = bool(steps(i)) if callable(steps) else i in steps
                if self._cur_selected:
                    self._selected.add(e.run)
            return self._cur_selected
        if cls is ev.GraphDef:
            return True
        if cls is ev.DeviceTime:
            return self._cur_selected
        if steps is not None and e.run not in self._selected:  # OpEvent, RunEnd, UserRange
            return False
        if cls is ev.OpEvent and self._ops_rx is not None:
            k = (e.op, e.name)
            keep = self._op_keep.get(k)
            if keep is None:
                rx = self._ops_rx
                keep = self._op_keep[k] = bool(rx.search(e.op) or rx.search(e.name))
                if len(self._op_keep) > 100_000:
                    self._op_keep.clear()
            return keep
        return True

    # -- signals: SIGTERM becomes SystemExit so `with`/finally blocks (and this flush) run
    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            if not any(r._old_sigterm is not None for r in _active if r is not self):
                signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None


_HELD_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM") if hasattr(signal, n))


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """In the main thread, the Python handlers of SIGINT and SIGTERM are held while a batch
    is written and run after it: a Ctrl-C part-way would roll the batch back (the trace would
    miss those events) and leave the writer's interning ahead of its file. Other threads get
    no signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[tuple[int, Any]] = []
    old: dict[int, Any] = {}
    for s in _HELD_SIGNALS:
        h = signal.getsignal(s)
        if callable(h):
            old[s] = signal.signal(s, lambda n, f: got.append((n, f)))
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for n, f in got:
            old[n](n, f)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # (a container's share, not the machine's)
    except AttributeError:
        return os.cpu_count() or 1


# the writer process needs a core of its own to pay off (it costs a little more CPU in all
# than writing here: see benchmarks/bench_overhead.py); Windows has no `select` on pipes
_DEFAULT_WRITER = "process" if os.name != "nt" and _cpus() > 1 else "thread"


def uses_writer_process() -> bool:
    """Whether recordings go to the writer process (where it can start): not on Windows, where
    the program has one core, or where TRACETENSOR_WRITER=thread says so."""
    return os.name != "nt" and os.environ.get("TRACETENSOR_WRITER", _DEFAULT_WRITER) != "thread"


def batch_records() -> int:
    """How many raw records a recording queues before the producing thread hands them over:
    BATCH_RECORDS for the writer process, BATCH_EVENTS where the program writes them."""
    return BATCH_RECORDS if uses_writer_process() else BATCH_EVENTS


def _open_writer(path: str, *, keep_summaries: bool, keep_stacks: bool, **options: Any) -> Any:
    """The file's writer: in the writer process (trace/server.py), or in this process where
    that process cannot start, where the program has one core, on Windows, or where
    TRACETENSOR_WRITER=thread asks for it. A file that cannot be written raises
    TraceFileError either way."""
    if uses_writer_process():
        try:
            return RemoteWriter(path, keep_summaries=keep_summaries, keep_stacks=keep_stacks, **options)
        except (OSError, RemoteError):  # no interpreter to start, or one that died starting: write here
            pass
    return TraceWriter(path, keep_summaries=keep_summaries, keep_stacks=keep_stacks, **options)


def _rank_info() -> dict[str, int] | None:
    from ..distributed import launched_by_mpi, rank_info

    return rank_info() if launched_by_mpi() else None


def _rank_path(path: str, rank: int) -> str:
    from ..distributed import rank_path

    return rank_path(path, rank)


def _sigterm_to_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _describe(steps: Steps) -> str:
    if steps is None:
        return "all"
    if isinstance(steps, range):
        return repr(steps)
    if callable(steps):
        return getattr(steps, "__name__", "callable")
    return ",".join(map(str, sorted(steps)))[:200]


def _stop_all() -> None:
    for r in list(_active):
        try:
            r.stop()
        except Exception:
            pass
    server.shutdown()


def _forget_in_child() -> None:
    """After fork the child has no writer thread: its recorders stop listening (the parent's
    file is the parent's), instead of queueing events that nobody writes."""
    for r in list(_active):
        if r._listener is not None:
            r._listener.close()
            r._listener = None
        r._q.take()
        r._vals.clear()
    _active.clear()


def _ensure_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_stop_all)  # a recorder started without `with` still ends complete
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forget_in_child)
        _atexit_registered = True


def record(
    path: str | os.PathLike,
    values: str = "summary",
    ops: str | None = None,
    steps: Steps = None,
    max_bytes: int = 512 << 20,
    *,
    stacks: bool = True,
    sources: bool = True,
) -> Recorder:
    """Records every event of the code inside `with tt.record("run.ttrace"):` into a trace file.

    values: "none" (names, shapes, dtypes, timings), "check" (plus an exact NaN/inf check of
    every output: a tensor that fails it, and its op's inputs, get full summaries; a tensor
    without a summary was checked finite), "summary" (NaN/inf/sign counts and min/max/mean/std
    of every tensor) or "full" (plus the tensors, within `max_bytes`, oldest dropped first).
    ops: a regex searched in each op's type and name; only matching ops are kept.
    steps: which runs to keep, by their index in this recording (0 = the first run that starts
    inside it): a range, an iterable, or a callable `index -> bool`. With `steps`, ops outside
    any run are not kept. The file is overwritten; a path being recorded by another process
    is refused (TraceFileError). Read it back with `tt.trace.open(path)`.
    """
    return Recorder(path, values, ops, steps, max_bytes, stacks=stacks, sources=sources)


def run_script(path: str | os.PathLike, argv: Sequence[str] = ()) -> int:
    """Runs a Python script as `python path *argv` would (its own sys.argv and sys.path[0],
    `__name__ == "__main__"`) and returns its exit code; an uncaught exception prints its
    traceback and gives 1, Ctrl-C gives 130. The profiler and the recorder CLI use this."""
    import runpy

    path = os.fspath(path)
    if _script_missing(path):
        return 2
    old_argv, old_path0 = sys.argv, sys.path[0] if sys.path else None
    sys.argv = [path, *argv]
    script_dir = os.path.dirname(os.path.abspath(path))
    if sys.path:
        sys.path[0] = script_dir
    else:
        sys.path.append(script_dir)
    try:
        runpy.run_path(path, run_name="__main__")
        return 0
    except SystemExit as e:
        return _exit_code(e.code)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", file=sys.stderr)
        return 130
    except BaseException as e:
        _print_user_traceback(e, path)
        return 1
    finally:
        sys.argv = old_argv
        if old_path0 is not None:
            sys.path[0] = old_path0


_DISPATCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_dispatch.py")


def _print_user_traceback(e: BaseException, path: str) -> None:
    """The traceback `python path` would print: without the launcher's frames (this module,
    runpy) above the script's first frame, nor the event dispatch point's frames that only
    exist because someone listens."""
    te = traceback.TracebackException.from_exception(e)
    script = os.path.abspath(path)
    first = next((i for i, f in enumerate(te.stack) if os.path.abspath(f.filename) == script), 0)
    te.stack[:] = [f for f in te.stack[first:] if os.path.abspath(f.filename) != _DISPATCH]
    sys.stderr.write("".join(te.format()))


def _script_missing(path: str) -> bool:
    """True (and says so, as `python` does) when the script to run is not a file."""
    if os.path.isfile(path):
        return False
    print(f"tracetensor: can't open file {path!r}: no such file", file=sys.stderr)
    return True


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message") prints it and exits 1, as Python does
    return 1


def record_script(
    output: str | os.PathLike, path: str | os.PathLike, argv: Sequence[str] = (), **record_kwargs: Any
) -> int:
    """Runs a script under `record(output, **record_kwargs)`; returns the script's exit code.
    The trace is complete whatever the script does (raise, sys.exit, Ctrl-C, SIGTERM)."""
    if _script_missing(os.fspath(path)):
        return 2  # before recording: no empty trace file for a script that never ran
    rec = record(output, **record_kwargs).start()
    try:
        return run_script(path, argv)
    finally:
        rec.stop()
        if rec.error is None:
            print(
                f"tracetensor: trace written to {rec.path} (`tracetensor trace info {rec.path}`)",
                file=sys.stderr,
            )
