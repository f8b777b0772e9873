"""`tracetensor.distributed`: PyTorch's process-group API (`init_process_group`,
`all_reduce`, `broadcast`, ...) over MPI through mpi4py; every collective is an event.

Launch with MPI's own launcher (`mpiexec -n 4 python train.py`); rank and world size
come from it. Collectives work in place on tensors, as PyTorch's do, and run MPI's
non-blocking collectives (`Iallreduce`, ...): `async_op=True` hands back a `Work`
whose `wait()` finishes it. GPU (cupy) arrays go straight to a CUDA-aware MPI when
one is present (`TRACETENSOR_MPI_CUDA=1`, or Open MPI's `OMPI_MCA_opal_cuda_support=true`),
otherwise through host copies.

Each collective becomes an `OpEvent` with phase "collective", passed through
`events.emit` like every other op: `op` is the collective ("all_reduce", ...), its
output's `nbytes` the bytes each rank contributed, `inputs` the peers (`rank:0`,
`rank:1`, ...), `forward` how the bytes travelled ("host", "cuda-aware" or "host-copy"),
and `iteration` the collective's ordinal in the process group, the same on every rank
(MPI runs a group's collectives in one order), which is how the trace reader lines
ranks up and splits each collective's time into waiting for the last rank and transfer.
"""

from __future__ import annotations

import enum
import itertools
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _naming
from . import events as _ev
from ._source import user_frames

if TYPE_CHECKING:
    from .tensor import Tensor

__all__ = [
    "ReduceOp",
    "Work",
    "DistributedError",
    "is_available",
    "init_process_group",
    "is_initialized",
    "get_rank",
    "get_world_size",
    "get_backend",
    "barrier",
    "all_reduce",
    "broadcast",
    "all_gather",
    "reduce_scatter",
    "destroy_process_group",
    "clock_offset_ns",
]

INSTALL_HINT = 'pip install "tracetensor[distributed]"'


class DistributedError(RuntimeError):
    """A misuse of the process group (not initialized, wrong backend, mismatched tensors)."""


class ReduceOp(enum.Enum):
    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


class _Group:
    """The one process group: MPI's world communicator (a duplicate, so the user's own
    mpi4py traffic on COMM_WORLD never matches ours)."""

    def __init__(self, MPI: Any) -> None:
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.ordinal = itertools.count()  # collectives issued: the same sequence on every rank
        self.offset_ns = _measure_offset(self.comm)
        self.cuda_aware = _cuda_aware()
        self.peers = tuple(f"rank:{r}" for r in range(self.size))


_group: _Group | None = None
_implicit = False  # joined by the recorder, not yet by the script's own init_process_group


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError(
            f"tracetensor.distributed needs mpi4py and an MPI runtime; install them with: {INSTALL_HINT}"
        ) from None
    return MPI


def is_available() -> bool:
    """True when mpi4py (and so an MPI library) can be imported."""
    try:
        _mpi()
    except ImportError:
        return False
    return True


def launched_by_mpi() -> bool:
    """True inside a process started by mpiexec/mpirun (MPICH's Hydra, Open MPI, Slurm's PMI)."""
    return any(k in os.environ for k in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_SIZE"))


def init_process_group(
    backend: str = "mpi", init_method: str | None = None, world_size: int = -1, rank: int = -1, **kwargs: Any
) -> None:
    """Joins the process group. Only `backend="mpi"`: rank and world size come from the MPI
    launcher (`world_size`/`rank`, when given, must agree with it). Measures this rank's
    clock offset to rank 0, which per-rank traces carry so their timelines line up."""
    global _group, _implicit
    if _implicit and _group is not None:  # the recorder joined already (tt.record before this call)
        _implicit = False
        return
    if backend != "mpi":
        raise DistributedError(
            f"init_process_group: backend {backend!r} is not supported; "
            "tracetensor runs on MPI: backend='mpi', launched with mpiexec"
        )
    if _group is not None:
        raise DistributedError("init_process_group: the default process group is already initialized")
    g = _Group(_mpi())
    if world_size not in (-1, g.size) or rank not in (-1, g.rank):
        raise DistributedError(
            f"init_process_group: world_size={world_size}, rank={rank} given, but the MPI "
            f"launcher started this process as rank {g.rank} of {g.size}"
        )
    _group = g


def is_initialized() -> bool:
    return _group is not None


def _g(what: str) -> _Group:
    if _group is None:
        raise DistributedError(
            f"{what}: the default process group is not initialized; call "
            "tt.distributed.init_process_group('mpi') first (and launch with mpiexec)"
        )
    return _group


def get_rank() -> int:
    return _g("get_rank").rank


def get_world_size() -> int:
    return _g("get_world_size").size


def get_backend() -> str:
    _g("get_backend")
    return "mpi"


def clock_offset_ns() -> int:
    """Add to this rank's `time.perf_counter_ns()` to get rank 0's (0 on rank 0)."""
    return _g("clock_offset_ns").offset_ns


def destroy_process_group() -> None:
    """Leaves the process group (MPI itself is finalized when the process exits)."""
    global _group, _implicit
    g = _group
    _group, _implicit = None, False
    if g is not None:
        g.comm.Free()


# --------------------------------------------------------------------------- work handles


class Work:
    """A collective in flight (`async_op=True`). `wait()` blocks until it is done (the
    tensor then holds the result); `is_completed()` asks without blocking."""

    def __init__(self, req: Any, finish: Callable[[], None]) -> None:
        self._req = req
        self._finish = finish
        self._done = False

    def wait(self, timeout: Any = None) -> bool:
        if not self._done:
            self._req.Wait()
            self._complete()
        return True

    def is_completed(self) -> bool:
        if not self._done and self._req.Test():
            self._complete()
        return self._done

    def _complete(self) -> None:
        self._done = True
        self._finish()


class _Done(Work):
    def __init__(self) -> None:
        self._done = True


# --------------------------------------------------------------------------- collectives


def _array_of(t: Any, what: str) -> Any:
    from .tensor import Tensor

    if not isinstance(t, Tensor):
        raise TypeError(f"{what}: expected a tracetensor Tensor, got {type(t).__name__}")
    a = t._data
    if not a.flags.c_contiguous:  # MPI needs one contiguous buffer; results are copied back
        raise DistributedError(
            f"{what}: tensor '{t._name or 'tensor'}' of shape {tuple(a.shape)} is not contiguous; pass t.contiguous()"
        )
    return a


def _mpi_op(MPI: Any, op: ReduceOp, what: str) -> Any:
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{what}: op must be a tt.distributed.ReduceOp (SUM, AVG, MAX, MIN, PRODUCT), got {op!r}")
    return {
        ReduceOp.SUM: MPI.SUM,
        ReduceOp.AVG: MPI.SUM,
        ReduceOp.MAX: MPI.MAX,
        ReduceOp.MIN: MPI.MIN,
        ReduceOp.PRODUCT: MPI.PROD,
    }[op]


class _Transfer:
    """The buffers MPI sees for device arrays: the arrays themselves (numpy, or cupy with a
    CUDA-aware MPI, after the stream is synchronized) or host copies written back afterwards."""

    def __init__(self, g: _Group, arrays: list[Any]) -> None:
        self.arrays = arrays
        self.gpu = not isinstance(arrays[0], np.ndarray)
        if not self.gpu:
            self.via, self.bufs = "host", arrays
        elif g.cuda_aware:
            import cupy

            cupy.cuda.get_current_stream().synchronize()  # MPI reads device memory directly
            self.via, self.bufs = "cuda-aware", arrays
        else:
            self.via, self.bufs = "host-copy", [a.get() for a in arrays]

    def back(self) -> None:
        if self.gpu and self.via == "host-copy":
            for a, h in zip(self.arrays, self.bufs):
                a.set(h)


def _issue(
    what: str,
    arrays_in: list[Any],
    start: Callable[[_Group, list[Any], bool], Any],
    after: Callable[[], None] | None,
    out: Any,
    async_op: bool,
    name: str | None,
    out_arrays: list[Any] | None = None,
    emit: bool = True,
) -> Work | None:
    """Runs a collective over `arrays_in` (`out_arrays` are written, when they differ):
    `start(group, buffers, blocking)` calls MPI's blocking call, or starts the non-blocking
    one (`async_op`) that the handed-back Work finishes; then emits its event."""
    g = _g(what)
    ordinal = next(g.ordinal)
    listening = emit and bool(_ev.STATE.listeners)
    stack = user_frames() if listening and _ev.STATE.stacks else None
    run = (_ev.RUN.run or _ev.auto_run()) if listening else 0  # outside every run: a step begins, as for ops
    label = name or (_naming.op_name(what) if listening else what)
    tr_in = _Transfer(g, arrays_in)
    tr_out = tr_in if out_arrays is None else _Transfer(g, out_arrays)
    t0 = time.perf_counter_ns()
    bufs = tr_in.bufs if out_arrays is None else [*tr_in.bufs, *tr_out.bufs]

    def finish() -> None:
        tr_out.back()
        if after is not None:
            after()
        if listening and _ev.STATE.listeners:
            _emit(what, label, out, t0, time.perf_counter_ns(), g, tr_in.via, ordinal, run, stack)

    if async_op:
        return Work(start(g, bufs, False), finish)
    start(g, bufs, True)  # MPI's blocking call: cheaper than a non-blocking one waited for at once
    finish()
    return None


def _emit(
    what: str, name: str, out: Any, t0: int, t1: int, g: _Group, via: str, ordinal: int, run: int, stack: Any
) -> None:
    st = _ev.STATE
    dev = "cpu" if isinstance(out, np.ndarray) else f"cuda:{out.device.id}"
    meta = _ev.TensorMeta(f"{name}:0", tuple(out.shape), out.dtype.name, dev, int(out.nbytes))
    summaries = None
    if st.summaries and out.dtype.kind in "fiucb" or st.cheap_check and not _ev.finite(out):
        summaries = (_ev.summarize(out),)  # (with `checks`: only a non-finite result is summarized)
        if stack is None and st.checks and not summaries[0].finite:
            stack = user_frames()
    values = (out.copy(),) if st.values else None
    _ev.emit(
        _ev.OpEvent(
            _ev.next_seq(),
            run,
            "eager",
            "collective",
            what,
            name,
            g.peers,
            (meta,),
            t0,
            t1,
            _ev.threading.get_ident(),
            dev,
            0,
            via,
            (),
            ordinal,
            stack,
            summaries,
            None,
            values,
        )
    )


# MPI calls: (group, buffers, blocking) -> None, or the request of the non-blocking form
def _allreduce(mop: Any) -> Callable:
    return lambda g, b, blk: (g.comm.Allreduce if blk else g.comm.Iallreduce)(g.MPI.IN_PLACE, b[0], mop)


def _bcast(src: int) -> Callable:
    return lambda g, b, blk: (g.comm.Bcast if blk else g.comm.Ibcast)(b[0], root=src)


def _allgather(g: _Group, b: list[Any], blk: bool) -> Any:
    return (g.comm.Allgather if blk else g.comm.Iallgather)(b[0], b[1])


def _reduce_scatter(mop: Any) -> Callable:
    return lambda g, b, blk: (g.comm.Reduce_scatter_block if blk else g.comm.Ireduce_scatter_block)(b[0], b[1], mop)


def _barrier(g: _Group, b: list[Any], blk: bool) -> Any:
    return g.comm.Barrier() if blk else g.comm.Ibarrier()


def all_reduce(
    tensor: Tensor, op: ReduceOp = ReduceOp.SUM, group: Any = None, async_op: bool = False, *, name: str | None = None
) -> Work | None:
    """Reduces `tensor` across all ranks, in place (AVG divides the sum by the world size)."""
    what = "all_reduce"
    a = _array_of(tensor, what)
    g = _g(what)
    mop = _mpi_op(g.MPI, op, what)
    if op is ReduceOp.AVG and a.dtype.kind not in "fc":
        raise DistributedError(f"{what}: ReduceOp.AVG needs a floating-point tensor, got {a.dtype.name}")
    after = (lambda: a.__itruediv__(g.size)) if op is ReduceOp.AVG else None
    return _issue(what, [a], _allreduce(mop), after, a, async_op, name)


def broadcast(
    tensor: Tensor, src: int, group: Any = None, async_op: bool = False, *, name: str | None = None
) -> Work | None:
    """Copies rank `src`'s `tensor` into every other rank's, in place."""
    what = "broadcast"
    a = _array_of(tensor, what)
    g = _g(what)
    if not 0 <= src < g.size:
        raise DistributedError(f"{what}: src={src} is not a rank of this group (0..{g.size - 1})")
    return _issue(what, [a], _bcast(src), None, a, async_op, name)


def all_gather(
    tensor_list: list[Tensor], tensor: Tensor, group: Any = None, async_op: bool = False, *, name: str | None = None
) -> Work | None:
    """Fills `tensor_list[r]` with rank r's `tensor`, on every rank."""
    what = "all_gather"
    a = _array_of(tensor, what)
    g = _g(what)
    _check_list(what, "tensor_list", tensor_list, g.size, a)
    xp = np if isinstance(a, np.ndarray) else _cupy()
    flat = xp.empty((g.size, *a.shape), a.dtype)

    def after() -> None:
        for t, part in zip(tensor_list, flat):
            t._data[...] = part

    return _issue(what, [a], _allgather, after, a, async_op, name, out_arrays=[flat])


def reduce_scatter(
    output: Tensor,
    input_list: list[Tensor],
    op: ReduceOp = ReduceOp.SUM,
    group: Any = None,
    async_op: bool = False,
    *,
    name: str | None = None,
) -> Work | None:
    """Reduces `input_list` across ranks; rank r's `output` gets the reduction of everyone's
    `input_list[r]`."""
    what = "reduce_scatter"
    o = _array_of(output, what)
    g = _g(what)
    mop = _mpi_op(g.MPI, op, what)
    _check_list(what, "input_list", input_list, g.size, o)
    xp = np if isinstance(o, np.ndarray) else _cupy()
    flat = xp.ascontiguousarray(xp.stack([t._data for t in input_list]))
    after = (lambda: o.__itruediv__(g.size)) if op is ReduceOp.AVG else None
    return _issue(what, [flat], _reduce_scatter(mop), after, o, async_op, name, out_arrays=[o])


def barrier(group: Any = None, async_op: bool = False) -> Work | None:
    """Waits until every rank has reached it."""
    _g("barrier")
    token = np.zeros(0, np.uint8)
    return _issue("barrier", [token], _barrier, None, token, async_op, None)


def _check_list(what: str, arg: str, ts: list[Tensor], size: int, like: Any) -> None:
    if len(ts) != size:
        raise DistributedError(f"{what}: {arg} must hold one tensor per rank ({size}), got {len(ts)}")
    for i, t in enumerate(ts):
        a = _array_of(t, what)
        if a.shape != like.shape or a.dtype != like.dtype:
            raise DistributedError(
                f"{what}: {arg}[{i}] is {tuple(a.shape)} {a.dtype.name}; expected "
                f"{tuple(like.shape)} {like.dtype.name} like the tensor"
            )


def _cupy() -> Any:
    import cupy

    return cupy


# --------------------------------------------------------------------------- arrays (DDP, graph mode)


def all_reduce_array(
    a: Any, op: ReduceOp = ReduceOp.SUM, *, name: str, async_op: bool = False, emit: bool = True
) -> Work | None:
    """`all_reduce` on a raw (contiguous) numpy/cupy array; DDP's buckets and the graph-mode
    optimizer use it (`emit=False`: the graph plan emits the node's event itself)."""
    g = _g("all_reduce")
    mop = _mpi_op(g.MPI, op, "all_reduce")
    after = (lambda: a.__itruediv__(g.size)) if op is ReduceOp.AVG else None
    return _issue("all_reduce", [a], _allreduce(mop), after, a, async_op, name, emit=emit)


def broadcast_array(a: Any, src: int = 0, *, name: str, emit: bool = True) -> None:
    _issue("broadcast", [a], _bcast(src), None, a, False, name, emit=emit)


# --------------------------------------------------------------------------- ranks and clocks


def _measure_offset(comm: Any, rounds: int = 8) -> int:
    """This rank's clock offset to rank 0's `perf_counter_ns`, NTP style: the round trip
    with the smallest delay wins, its midpoint is taken as simultaneous with rank 0's reading."""
    rank, size = comm.Get_rank(), comm.Get_size()
    perf = time.perf_counter_ns
    if rank == 0:
        for r in range(1, size):
            for _ in range(rounds):
                comm.recv(source=r, tag=77)
                comm.send(perf(), dest=r, tag=78)
        return 0
    best = None
    for _ in range(rounds):
        t1 = perf()
        comm.send(None, dest=0, tag=77)
        t0 = comm.recv(source=0, tag=78)
        t3 = perf()
        if best is None or t3 - t1 < best[0]:
            best = (t3 - t1, t0 - (t1 + t3) // 2)
    return best[1] if best else 0


def _cuda_aware() -> bool:
    env = os.environ
    if env.get("TRACETENSOR_MPI_CUDA") is not None:
        return env["TRACETENSOR_MPI_CUDA"].strip().lower() in ("1", "true", "yes")
    return env.get("OMPI_MCA_opal_cuda_support", "").lower() == "true" or env.get("MPICH_GPU_SUPPORT_ENABLED") == "1"


def rank_info() -> dict[str, int] | None:
    """{rank, world_size, clock_offset_ns} of this process under an MPI launcher (joining the
    process group if the script has not yet), else None. The recorder calls this."""
    global _implicit
    if _group is None:
        if not launched_by_mpi() or not is_available():
            return None
        init_process_group("mpi")
        _implicit = True
    g = _group
    assert g is not None
    return {"rank": g.rank, "world_size": g.size, "clock_offset_ns": g.offset_ns}


def find_mpiexec() -> str | None:
    """MPI's launcher: the one next to this Python first (mpich's wheel installs it into the
    environment's bin), then PATH."""
    import shutil

    here = os.path.dirname(os.path.abspath(sys.executable))
    return shutil.which("mpiexec", path=here) or shutil.which("mpiexec") or shutil.which("mpirun")


def launcher_env() -> dict[str, str]:
    """The environment for mpiexec. As root (containers, CI) Open MPI refuses to start unless
    told twice that this is wanted; MPICH, the default runtime, ignores these variables."""
    env = dict(os.environ)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def rank_path(path: str, rank: int) -> str:
    """`run.ttrace` -> `run.rank3.ttrace`: one trace file per rank."""
    root, ext = os.path.splitext(path)
    return f"{root}.rank{rank}{ext or '.ttrace'}"
