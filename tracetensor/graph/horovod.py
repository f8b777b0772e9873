"""Horovod's TF1 API for graph mode, over `tracetensor.distributed` (MPI):
`import tracetensor.graph.horovod as hvd` where a TF1 script has `import horovod.tensorflow as hvd`.

`hvd.DistributedOptimizer(opt)` averages the gradients across ranks inside the plan (one
`HorovodAllreduce` node per gradient, before the updates), and
`hvd.broadcast_global_variables(0)` is an op that copies rank 0's variables to every rank.
Each such node runs as a "collective" event through the plan's dispatch point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import distributed as _dist
from .._registry import OpDef
from .core import Operation, Tensor
from .ops import group
from .session import Step, executor
from .train import Optimizer
from .variables import Variable, global_variables

__all__ = [
    "init",
    "shutdown",
    "rank",
    "size",
    "local_rank",
    "allreduce",
    "broadcast",
    "DistributedOptimizer",
    "broadcast_global_variables",
]

_ALLREDUCE = OpDef("all_reduce", lambda *a: a[0], "HorovodAllreduce", lambda arrays, out, attrs: 0, None)
_BROADCAST = OpDef("broadcast", lambda *a: a[0], "HorovodBroadcast", lambda arrays, out, attrs: 0, None)


def init() -> None:
    """Joins the MPI job (a no-op when `tt.distributed.init_process_group` already ran)."""
    if not _dist.is_initialized():
        _dist.init_process_group("mpi")


def shutdown() -> None:
    _dist.destroy_process_group()


def rank() -> int:
    return _dist.get_rank()


def size() -> int:
    return _dist.get_world_size()


def local_rank() -> int:
    """This process's rank among those on its machine (MPI launchers export it)."""
    import os

    for k in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_LOCAL_RANK"):
        if k in os.environ:
            return int(os.environ[k])
    return rank()


def allreduce(tensor: Tensor, average: bool = True, name: str | None = None) -> Tensor:
    """A node whose value is `tensor` summed (or averaged) over all ranks."""
    g = tensor.graph
    op = g.create_op(
        "mpi_allreduce",
        "HorovodAllreduce",
        (tensor,),
        {"average": bool(average)},
        name=name or f"HorovodAllreduce_{tensor.op.name}",
        out=[(tensor._dims, tensor.dtype)],
    )
    return op.outputs[0]


def broadcast(tensor: Tensor, root_rank: int, name: str | None = None) -> Tensor:
    """A node whose value is rank `root_rank`'s `tensor`, on every rank."""
    g = tensor.graph
    op = g.create_op(
        "mpi_broadcast",
        "HorovodBroadcast",
        (tensor,),
        {"root_rank": int(root_rank)},
        name=name or f"HorovodBroadcast_{tensor.op.name}",
        out=[(tensor._dims, tensor.dtype)],
    )
    return op.outputs[0]


def broadcast_global_variables(root_rank: int) -> Operation:
    """An op that sets every global variable to rank `root_rank`'s value; run it once after
    the initializer so all ranks start from the same weights."""
    return group(
        *[v.assign(broadcast(v.value() if hasattr(v, "value") else v, root_rank)) for v in global_variables()],
        name="broadcast_global_variables",
    )


class DistributedOptimizer(Optimizer):
    """Wraps a `tf.train` optimizer: `compute_gradients` averages each gradient over all
    ranks (Horovod's signature; `compression`, `sparse_as_dense` and device arguments are
    accepted and ignored), `apply_gradients` is the wrapped optimizer's."""

    def __init__(
        self,
        optimizer: Optimizer,
        name: str | None = None,
        use_locking: bool = False,
        device_dense: str = "",
        device_sparse: str = "",
        compression: Any = None,
        sparse_as_dense: bool = False,
        op: str = "Average",
    ) -> None:
        if op not in ("Average", "Sum"):
            raise ValueError(f"DistributedOptimizer: op must be 'Average' or 'Sum', got {op!r}")
        self._optimizer = optimizer
        self._average = op == "Average"
        self._name = name or f"Distributed{type(optimizer).__name__}"

    def compute_gradients(
        self, loss: Tensor, var_list: Sequence[Variable] | None = None, **kwargs: Any
    ) -> list[tuple[Tensor | None, Variable]]:
        gv = self._optimizer.compute_gradients(loss, var_list, **kwargs)
        if size() == 1:
            return gv
        return [
            (None if g is None else allreduce(g, self._average, name=f"DistributedGradients/{v.op.name}"), v)
            for g, v in gv
        ]

    def apply_gradients(
        self,
        grads_and_vars: Sequence[tuple[Tensor | None, Variable]],
        global_step: Variable | None = None,
        name: str | None = None,
    ) -> Operation:
        return self._optimizer.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def get_slot(self, var: Variable, name: str) -> Variable | None:
        return self._optimizer.get_slot(var, name)

    def get_slot_names(self) -> list[str]:
        return self._optimizer.get_slot_names()


@executor("mpi_allreduce")
def _allreduce_step(sess: Any, op: Operation, xp: Any) -> Step:
    mode = _dist.ReduceOp.AVG if op.attrs["average"] else _dist.ReduceOp.SUM

    def run(a: Any) -> Any:
        out = xp.array(a, copy=True)  # a fresh contiguous buffer: MPI writes the result into it
        if out.dtype.kind not in "fc" and mode is _dist.ReduceOp.AVG:
            out = out.astype(np.float64)
        _dist.all_reduce_array(out, mode, name=op.name, emit=False)  # the plan emits its event
        return out

    return Step(op, run, phase="collective", evop=_ALLREDUCE)


@executor("mpi_broadcast")
def _broadcast_step(sess: Any, op: Operation, xp: Any) -> Step:
    root = op.attrs["root_rank"]

    def run(a: Any) -> Any:
        out = xp.array(a, copy=True)
        _dist.broadcast_array(out, root, name=op.name, emit=False)
        return out

    return Step(op, run, phase="collective", evop=_BROADCAST)
