"""The recording's writer process: `tt.record` hands its batches to it, packed, and goes on.

Why a process: the writer's work (block packing, indexing, SQLite) is mostly Python. In a
thread of the recording program it runs under the same GIL as the training loop, so it takes
turns with the loop instead of running beside it. In a process of its own it runs on another
core: on the small MLP of benchmarks/bench_overhead.py (an 88 µs step), the loop's share of
a recording's writing drops from about 7 µs a step written inline (18 µs in a writer thread)
to handing the batch over (about 1 µs), and the loop's wall time with it.

One writer process per recording program, started by the first batch a recording hands over
before its end (a recording whose only batch is its last is written in the program: see
RemoteWriter) and kept for the next ones; it writes any number of files. It first says what
it is (`_HELLO`); the program goes on recording meanwhile (see RemoteWriter). The program
talks to it over a pipe (1 MiB where Linux allows), in frames (`_frame`: a pickle, and the
batch's large buffers written as they are beside it) of

    ("open", fid, path, options)    -> ("opened", fid, error or None), read with a later answer
    ("write", fid, cwd, payload)    -> nothing, unless it fails: ("failed", fid, error)
    ("close", fid, complete)        -> ("closed", fid, error or None)
    ("cpu", 0)                      -> ("cpu", 0, its CPU seconds so far)

The program made the file it opens (`store.create_trace`) and holds its lock until the close
is answered. `payload` is what `store.BatchPacker.pack` made. A write is committed in the
order it came; a close is answered once everything before it is in the file. The process ignores SIGINT and
SIGTERM (a terminal's Ctrl-C reaches its whole process group, a service manager's SIGTERM a
whole cgroup: the program's handlers decide) and runs in a session of its own. When the
program ends, however it ends (SIGKILL too), the pipe closes: the process writes what it
was sent, marks the files it still holds incomplete and exits. So a killed program loses
only what it had not sent yet.

Errors cross the pipe as (type name, message[, path, problem]); `RemoteError` carries them
back, or the TraceFileError they were.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any, BinaryIO

_HEAD = struct.Struct("<QI")  # a frame: pickle length, number of out-of-band buffers
PROTOCOL = pickle.HIGHEST_PROTOCOL
# where this tracetensor lives: the writer process imports the same one, whatever sys.path says
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The process imports the trace store and what it needs (numpy, events, the C accelerator),
# not the package's `__init__`, which brings in the whole engine: it boots in about 0.1 s, not
# 0.2, while the program's first recording waits for it at its end at the latest
# It starts with SIGINT and SIGTERM blocked (see Client), ignores them before anything else,
# then unblocks them: one sent while it boots is dropped, not fatal (see `main`).
_BOOT = (
    "import signal; [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)]; "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM)); "
    "import os, sys, types; pkg = types.ModuleType('tracetensor'); "
    "pkg.__path__ = [os.path.join(sys.argv[1], 'tracetensor')]; sys.modules['tracetensor'] = pkg; "
    "from tracetensor.trace.server import main; main()"
)
# what the writer process says first: the program knows it is one, not some other program
# that sys.executable names (an embedding application's binary), and waits at most BOOT_S
_HELLO = b"tracetensor-writer 1\n"
BOOT_S = 60.0
# an MPI launcher's variables: the writer is no rank (an mpi4py import must not join the job)
_MPI_ENV = ("PMI_", "PMIX_", "OMPI_", "MPI_LOCALRANKID", "HYDRA_", "MPICH_")


class RemoteError(RuntimeError):
    """What stopped the writer process's work on a file (disk full, file removed ...):
    `kind` is the exception's type name there, the message its text."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {message}")


def _portable(e: BaseException) -> tuple:
    from .store import TraceFileError

    if isinstance(e, TraceFileError):
        return ("TraceFileError", str(e), e.path, e.problem)
    return (type(e).__name__, str(e))


def rebuilt(info: tuple) -> BaseException:
    """The exception the writer process reported (see `_portable`)."""
    if info[0] == "TraceFileError":
        from .store import TraceFileError

        return TraceFileError(info[2], info[3])
    return RemoteError(info[0], info[1])


def _readable(f: Any, timeout: float) -> bool:
    """Whether `f` has something to read (or its end) within `timeout` seconds. `poll`, not
    `select`: a program holding over 1,024 files has pipes that `select` cannot watch."""
    if hasattr(select, "poll"):
        p = select.poll()
        p.register(f, select.POLLIN)
        return bool(p.poll(timeout * 1000))
    return bool(select.select([f], [], [], timeout)[0])


def _read_exact(f: BinaryIO, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            return None
        got += k
    return buf


def _read_msg(f: BinaryIO) -> Any:
    """One frame (see `_frame`), unpickled; None at the end of the stream."""
    head = _read_exact(f, _HEAD.size)
    if head is None:
        return None
    size, nbuf = _HEAD.unpack(head)
    lens = _read_exact(f, 8 * nbuf) if nbuf else b""
    body = _read_exact(f, size) if lens is not None else None
    if body is None:
        return None
    bufs = []
    for n in struct.unpack(f"<{nbuf}Q", lens):
        b = _read_exact(f, n)
        if b is None:
            return None
        bufs.append(b)
    return pickle.loads(body, buffers=bufs)


def _frame(msg: tuple) -> list:
    """A message as the parts of one frame: the pickle's length and its number of out-of-band
    buffers, their lengths, the pickle, then the buffers themselves (a batch's rows and
    summary rows, wrapped in `pickle.PickleBuffer`: written from where they are, not copied
    into the pickle)."""
    bufs: list = []
    body = pickle.dumps(msg, PROTOCOL, buffer_callback=bufs.append)
    raws = [b.raw() for b in bufs]
    head = _HEAD.pack(len(body), len(raws)) + struct.pack(f"<{len(raws)}Q", *(r.nbytes for r in raws))
    return [head, body, *raws]


def _big(b: Any) -> Any:
    """`b`, sent out of band when it is a large bytes object (see `_frame`)."""
    return pickle.PickleBuffer(b) if b.__class__ is bytes and len(b) > 4096 else b


# --------------------------------------------------------------------------- the process


def main() -> None:
    """The writer process's loop: `python -c _BOOT ROOT`, talking over stdin and stdout."""
    # a Ctrl-C or a service manager's SIGTERM may reach every process of the program (a
    # terminal's process group, a systemd unit's cgroup): the program decides what they do,
    # and this process ends when the program has (its pipe closes). (_BOOT set this already,
    # before its imports: here for a `main()` started otherwise.)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    from .store import TraceWriter

    # (unbuffered: `_readable` polls the pipe, and bytes read ahead into a buffer would wait unseen)
    rin, out = getattr(sys.stdin.buffer, "raw", sys.stdin.buffer), sys.stdout.buffer
    sys.stdout = sys.stderr  # (nothing else may write into the reply pipe)
    writers: dict[int, TraceWriter] = {}

    def reply(msg: tuple | bytes) -> None:
        try:
            out.write(msg if msg.__class__ is bytes else b"".join(_frame(msg)))
            out.flush()
        except OSError:  # the program is gone: what it sent is still written (the loop ends at EOF)
            pass

    reply(_HELLO)  # (the program reads this first: see Client)

    held: list[tuple] = []  # write messages not written yet, in order (see HOLD_S)
    held_bytes = 0
    since = 0.0  # when the first of them came

    def write_held() -> None:
        nonlocal held_bytes
        for _, fid, cwd, payload in held:
            w = writers.get(fid)
            if w is None:  # (failed already: the program stops sending once it hears so)
                continue
            try:
                _follow(cwd)
                w.write_payload(payload)
            except BaseException as e:
                del writers[fid]
                _close_quietly(w)
                reply(("failed", fid, _portable(e)))
        held.clear()
        held_bytes = 0

    while True:
        if held:
            wait = since + HOLD_S - time.monotonic()
            if held_bytes > HOLD_BYTES or wait <= 0 or not _readable(rin, wait):
                write_held()
                continue
        try:
            msg = _read_msg(rin)
        except Exception:  # a message cut short: the program died mid-send
            msg = None
        if msg is None:
            break
        kind, fid = msg[0], msg[1]
        if kind == "write":
            if fid in writers:
                if not held:
                    since = time.monotonic()
                held.append(msg)
                held_bytes += _payload_bytes(msg[3])
            continue
        write_held()  # (the rest is answered once what came before it is written)
        if kind == "open":  # (a file the program made and holds the lock of: see RemoteWriter)
            path, opts = msg[2], msg[3]
            try:
                os.chdir(opts.pop("cwd"))
                writers[fid] = TraceWriter(path, attach=(None, opts.pop("t0")), **opts)
                reply(("opened", fid, None))
            except BaseException as e:
                reply(("opened", fid, _portable(e)))
        elif kind == "cpu":  # (benchmarks: what the recording costs beyond the program itself)
            reply(("cpu", fid, time.process_time()))
        elif kind == "close":
            w = writers.pop(fid, None)
            err = None
            if w is not None:
                try:
                    w.close(complete=msg[2])
                except BaseException as e:
                    err = _portable(e)
            reply(("closed", fid, err))
    write_held()
    for w in writers.values():  # the program is gone: what it sent is in, the file incomplete
        _close_quietly(w)


# The batches a recording hands over (each 0.1 s, or 32,768 records: see trace/recorder.py)
# are written once they have waited HOLD_S here, or once HOLD_BYTES of them wait, or before
# anything else the program asks (a file's close first of all), or at the program's end. A
# process woken for each small batch runs it with cold caches: a slow step's batches (the small
# CNN of benchmarks/bench_overhead.py: 30 steps' worth each) took the writer 38-39 us of CPU a
# step written as they came, 25-27 us held half a second. A busy stream's batches (a full queue
# each, 1.5 MB) go on at once: held, the writer would idle while they pile up, then write them
# while the program waits on a full pipe (1M small events, end to end: 20-30% fewer a second).
# The program dying loses nothing more (its pipe's end writes what waits here); this process
# dying loses at most this much more, and a reader of the file while it is being written sees
# it this much later.
HOLD_S = 0.5
HOLD_BYTES = 1 << 20


def _payload_bytes(payload: tuple) -> int:
    """About how many bytes a batch holds, as its queue counted them: 48 a record (its row) or
    run marker, a few hundred an event, and the values it carries. A full queue, whatever it
    holds, comes to about 1.5 MB."""
    recs, ops, marks, rest, values = payload
    n = len(marks[0]) + 48 * len(rest) + 256 * len(ops)
    if recs is not None:
        n += len(recs[0]) + len(recs[3] or b"")
    if values:
        n += sum(getattr(a, "nbytes", 0) for v in values.values() for a in v)
    return n


def _follow(cwd: str) -> None:
    """Into the program's working directory (its source files may be named relative to it);
    where it is gone, sources named so are simply not found, as in the program."""
    try:
        if cwd != os.getcwd():
            os.chdir(cwd)
    except OSError:
        pass


def _close_quietly(w: Any) -> None:
    try:
        w.close(complete=False)
    except BaseException:
        pass


# --------------------------------------------------------------------------- the program's side


class Client:
    """This program's link to its writer process (see `client()`)."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_MPI_ENV)}
        # (blocked in this thread while it starts: the process inherits the mask, see _BOOT; one
        # that arrives meanwhile is this program's, delivered as the mask is restored)
        held = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, _ROOT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,  # (raw pipes: a frame is written whole, see _send, and a forked child closes its copies)
                env=env,
                start_new_session=True,  # no terminal signals: the program decides what a Ctrl-C does
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin, self.proc.stdout
        # a pipe of 1 MiB (Linux: F_SETPIPE_SZ), not 64 KiB: a batch goes in a few writes, not
        # dozens, and half of it may be filled before the process is known to read it (RemoteWriter)
        self.pipe_bytes = 0
        try:
            import fcntl

            fcntl.fcntl(self._in.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
            self.pipe_bytes = 1 << 20
        except (ImportError, OSError):
            pass
        # the process boots (about 0.2 s: Python, numpy, tracetensor) while the program goes on
        # recording; what needs it waits (`wait_ready`)
        self._ready = threading.Event()
        self.boot_error: OSError | None = None
        threading.Thread(target=self._boot, name="tracetensor-writer-boot", daemon=True).start()
        self._lock = threading.RLock()
        self._fids = iter(range(1, 1 << 62))
        self._replies: dict[tuple[str, int], Any] = {}  # answers read while waiting for another
        self.failed: dict[int, BaseException] = {}  # fid -> what stopped its writes
        self.dead = False

    def _boot(self) -> None:
        global _cannot
        try:
            self._hello()
        except BaseException as e:
            self.boot_error = e if isinstance(e, OSError) else OSError(str(e))
            _cannot = self.boot_error  # (not tried again: see `client`)
            self.dead = True
            try:
                self.proc.kill()
                self.proc.wait()
            except OSError:
                pass
        finally:
            self._ready.set()

    def wait_ready(self) -> None:
        """Returns once the process said what it is; OSError where it did not (see `_hello`)."""
        self._ready.wait()
        if self.boot_error is not None:
            raise self.boot_error

    def _hello(self) -> None:
        """Waits for the writer process to say what it is (OSError: it did not, in time)."""
        got = b""
        deadline = time.monotonic() + BOOT_S
        while len(got) < len(_HELLO):
            left = deadline - time.monotonic()
            if left <= 0 or not _readable(self._out, left):
                raise OSError(f"the recording's writer process did not start within {BOOT_S:.0f} s")
            more = os.read(self._out.fileno(), len(_HELLO) - len(got))
            if not more:
                raise OSError("the recording's writer process ended as it started")
            got += more
        if got != _HELLO:
            raise OSError(f"{sys.executable} did not start the recording's writer process")

    def _send(self, msg: tuple) -> None:
        """Writes one frame, whole: a Ctrl-C part-way is raised after it (a frame cut short
        would leave the process reading the rest of the stream as garbage)."""
        parts = [memoryview(p).cast("B") for p in _frame(msg)]
        interrupted = None
        fd = self._in.fileno()
        with self._lock:
            while parts:
                try:
                    sent = os.writev(fd, parts)
                except KeyboardInterrupt as e:  # (its handler ran between two writes: nothing was cut)
                    interrupted = e
                    continue
                except (OSError, ValueError):
                    self.dead = True
                    raise BrokenPipeError("the recording's writer process is gone") from None
                while parts and sent >= len(parts[0]):  # (a pipe takes part of a large frame at a time)
                    sent -= len(parts[0])
                    parts.pop(0)
                if sent:
                    parts[0] = parts[0][sent:]
        if interrupted is not None:
            raise interrupted

    def _read_one(self) -> None:
        msg = _read_msg(self._out)
        if msg is None:
            self.dead = True
            raise BrokenPipeError("the recording's writer process is gone")
        if msg[0] == "failed" or (msg[0] == "opened" and msg[2] is not None):
            self.failed[msg[1]] = rebuilt(msg[2])  # (a file is opened without waiting: see `open`)
        elif msg[0] != "opened":
            self._replies[(msg[0], msg[1])] = msg[2]

    def _ask(self, msg: tuple, answer: str) -> Any:
        self.wait_ready()
        with self._lock:
            self._send(msg)
            key = (answer, msg[1])
            while key not in self._replies:
                self._read_one()
            return self._replies.pop(key)

    def _request(self, msg: tuple, answer: str) -> None:
        err = self._ask(msg, answer)
        if err is not None:
            raise rebuilt(err)

    def cpu_seconds(self) -> float:
        """The CPU time the writer process has used so far (every file it wrote)."""
        return float(self._ask(("cpu", 0), "cpu"))

    def poll(self) -> None:
        """Reads what the process said meanwhile (a failed write), without waiting."""
        if not self._ready.is_set() or self.boot_error is not None:
            return  # (until it said what it is, the boot thread reads what it says)
        with self._lock:
            while not self.dead and _readable(self._out, 0):
                self._read_one()

    # -- one file
    def open(self, path: str, options: dict) -> int:
        """Asks the process to open `path` (a file the program made: see RemoteWriter), without
        waiting: what it answers, if it fails, comes with the file's next write or its close."""
        fid = next(self._fids)
        self._send(("open", fid, path, {**options, "cwd": os.getcwd()}))
        return fid

    def write(self, fid: int, payload: tuple) -> None:
        self._send(("write", fid, os.getcwd(), payload))
        self.poll()
        err = self.failed.pop(fid, None)
        if err is not None:
            raise err

    def close(self, fid: int, complete: bool) -> None:
        self._request(("close", fid, complete), "closed")
        err = self.failed.pop(fid, None)
        if err is not None:
            raise err

    def shutdown(self) -> None:
        """Closes the pipe (the process finishes what it was sent and exits) and waits a while."""
        try:
            self._in.close()
        except OSError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        self.close_pipes()

    def close_pipes(self) -> None:
        """This program's ends of the pipes (the process is gone, or ends when it reads EOF)."""
        for f in (self._in, self._out):
            try:
                f.close()
            except OSError:
                pass


_client: Client | None = None
_client_lock = threading.Lock()
_cannot: OSError | None = None  # why the writer process could not start (not tried again)


def client() -> Client:
    """The writer process of this program, started with the first recording that needs one
    (and again if it died). OSError where it cannot start: then never tried again."""
    global _client, _cannot
    with _client_lock:
        if _cannot is not None:
            raise _cannot
        if _client is None or _client.dead or _client.proc.poll() is not None:
            if _client is not None:  # (it died: its pipes and its exit status are collected)
                _client.close_pipes()
                _client.proc.poll()
            try:
                _client = Client()
            except OSError as e:
                _cannot = e
                raise
            _ensure_hooks()
        return _client


_hooked = False


def _ensure_hooks() -> None:
    global _hooked
    if not _hooked and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_in_child)
    _hooked = True


def shutdown() -> None:
    """Ends the writer process once this program's recordings are stopped (the recorder's
    exit hook calls it): it finishes what it was sent and exits. Without this it would
    exit all the same, when the program's end closes the pipe."""
    global _client
    c, _client = _client, None
    if c is not None:
        c.shutdown()


def _forget_in_child() -> None:
    """A forked child keeps no link to its parent's writer process: were it to keep the pipe
    open, the process would not see its program end."""
    global _client
    c, _client = _client, None
    if c is not None:
        c.dead = True
        c.close_pipes()  # (this process's copies only)


class RemoteWriter:
    """A trace file written by the writer process: what the recorder calls `_writer`
    (`write(batch, values)`, `finishing()`, `close(complete)`), the batches packed here.

    The file is made here at once, as a TraceWriter makes it (what one would refuse is
    refused at `start()`, and the file reads as an empty trace from then on), and its lock is
    held here until the writer process has closed it.

    The program's first recordings do not start the process: a recording whose first batch
    is its last (it ended within `FLUSH_S` and one queue: a short script's) is written here,
    as quickly as a file can be, since the process's start (about 0.1 s of CPU) would cost
    such a recording more than it saves. The first batch handed over mid-recording starts it
    (the recorder says `finishing()` before the last one), and later recordings use it at once.

    Batches go into the pipe at once, also while the process is still booting (it reads them
    once it has): a program killed then loses none of them. Until the process has said what
    it is, those batches are kept here too, up to half the pipe (then the program waits for
    it); where it turns out not to be the writer process, or cannot start, this process
    writes the file instead, those batches first."""

    def __init__(
        self,
        path: str,
        *,
        keep_summaries: bool,
        keep_stacks: bool,
        meta: dict[str, Any] | None = None,
        max_bytes: int = 512 << 20,
        sources: bool = True,
    ) -> None:
        from .store import BatchPacker, create_trace

        if _cannot is not None:  # (a process that could not start is not tried again: the caller writes)
            raise _cannot
        c = _client  # (one already started: this recording uses it from the start)
        self._client: Client | None = c if c is not None and not c.dead and c.proc.poll() is None else None
        self.path = path
        self.packer = BatchPacker()
        self.packer.keep_summaries, self.packer.keep_stacks = keep_summaries, keep_stacks
        self._options = {
            "max_bytes": max_bytes,
            "sources": sources,
            "keep_summaries": keep_summaries,
            "keep_stacks": keep_stacks,
        }
        self._lock_fd: int | None
        self._lock_fd, self._t0 = create_trace(path, meta=meta, max_bytes=max_bytes)
        self._local: Any = None  # a TraceWriter, where the process did not start
        self._unconfirmed: list[tuple] = []  # batches sent before the process said what it is
        self._unconfirmed_bytes = 0
        self._last = False  # (the recorder's next batch is its last: see `finishing`)
        self._fid = 0
        if self._client is not None:
            try:
                self._fid = self._client.open(path, {**self._options, "t0": self._t0})
            except BaseException:
                self._release()
                raise

    def finishing(self) -> None:
        """The recorder hands over its last batch next (at `stop()`)."""
        self._last = True

    def _start(self) -> None:
        """The first batch of a recording that began before the writer process: it goes there
        if the recording goes on (the process starts now), and is written here if it ends."""
        if not self._last:
            try:
                c = client()
                self._fid = c.open(self.path, {**self._options, "t0": self._t0})
                self._client = c
                return
            except OSError:  # no process can start: written here, now and from now on
                pass
        from .store import TraceWriter

        self._local = TraceWriter(self.path, attach=(self._lock_fd, self._t0), **self._options)
        self._lock_fd = None

    def _confirmed(self, wait: bool) -> bool:
        """Whether what was sent reaches the file (`wait`: until that is known). Where the
        process turned out not to start, this process writes the file from now on."""
        c = self._client
        if self._local is not None:
            return True
        assert c is not None  # (`_start` made one or the other)
        if not self._unconfirmed and c._ready.is_set() and c.boot_error is None:
            return True
        if not (wait or c._ready.is_set()):
            return False
        try:
            c.wait_ready()
        except OSError:
            from .store import TraceWriter

            w = TraceWriter(self.path, attach=(self._lock_fd, self._t0), **self._options)
            self._local, self._lock_fd = w, None
            for payload in self._unconfirmed:
                w.write_payload(payload)
        self._unconfirmed, self._unconfirmed_bytes = [], 0
        return True

    def write(self, batch: list | tuple, values: dict[int, tuple] | None = None) -> None:
        payload = self.packer.pack(batch, values)  # (now: a batch refers to the program's objects)
        if self._client is None and self._local is None:
            self._start()
        if self._local is not None:
            self._local.write_payload(payload)
            return
        assert self._client is not None
        recs, marks = payload[0], payload[2]
        size = _payload_bytes(payload)
        budget = self._client.pipe_bytes // 2
        confirmed = self._confirmed(wait=self._unconfirmed_bytes + size + 65536 > budget)
        if self._local is not None:
            self._local.write_payload(payload)
            return
        if not confirmed:
            self._unconfirmed.append(payload)
            self._unconfirmed_bytes += size + 65536  # (and its pickle, about)
        if recs is not None:
            recs = (_big(recs[0]), recs[1], recs[2], _big(recs[3]))
        try:
            self._client.write(self._fid, (recs, payload[1], (_big(marks[0]), marks[1]), *payload[3:]))
        except OSError:
            if confirmed:
                raise  # (the process had said what it is: it died, and the recording stops)
            self._confirmed(wait=True)  # (it never did, and was stopped meanwhile: written here)
            if self._local is None:
                raise

    def close(self, complete: bool = True) -> None:
        try:
            if self._client is None and self._local is None:  # (nothing was handed over)
                self._last = True
                self._start()
            self._confirmed(wait=True)
            if self._local is not None:
                self._local.close(complete)
            else:
                assert self._client is not None
                self._client.close(self._fid, complete)
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:  # (the file is the next recording's to take, now)
            os.close(self._lock_fd)
            self._lock_fd = None
