"""`tt.nn.parallel.DistributedDataParallel`: data-parallel training over `tt.distributed`.

Each rank runs the same model on its own part of the batch. At construction rank 0's
parameters and buffers are broadcast to all ranks; during backward, gradients are
averaged across ranks in buckets, each bucket's non-blocking all-reduce starting as
soon as its last gradient is accumulated (the autograd engine accumulates a hooked
leaf right after its last use), so communication overlaps the rest of backward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import distributed as dist
from .module import Module, Parameter

__all__ = ["DistributedDataParallel"]


class _Bucket:
    __slots__ = ("index", "params", "pending", "buf", "work")

    def __init__(self, index: int, params: list[Parameter]) -> None:
        self.index = index
        self.params = params
        self.pending = len(params)
        self.buf: Any = None
        self.work: dist.Work | None = None


class DistributedDataParallel(Module):
    """Wraps `module` (PyTorch's signature; `device_ids`/`output_device` are accepted for
    compatibility: the module's own device is used). Call it as the module; its gradients
    come out of `backward()` averaged over all ranks. `no_sync()` skips the averaging
    (gradients accumulate locally until the next synchronized backward).
    """

    def __init__(
        self,
        module: Module,
        device_ids: Any = None,
        output_device: Any = None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group: Any = None,
        bucket_cap_mb: float = 25,
        find_unused_parameters: bool = False,
        gradient_as_bucket_view: bool = False,
    ) -> None:
        super().__init__()
        if not dist.is_initialized():
            raise dist.DistributedError(
                "DistributedDataParallel: the default process group is not initialized; "
                "call tt.distributed.init_process_group('mpi') first (launch with mpiexec)"
            )
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self._sync = True
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._names = {id(p): n for n, p in named}
        _broadcast_flat([p for _, p in named] + [b for b in module.buffers()], "ddp/broadcast_params")
        # buckets in reverse registration order: roughly the order backward produces gradients
        cap = int(bucket_cap_mb * (1 << 20))
        self._buckets: list[_Bucket] = []
        cur: list[Parameter] = []
        size = 0
        for _, p in reversed(named):
            if cur and (
                size + p._data.nbytes > cap or p._data.dtype != cur[0]._data.dtype or p._device != cur[0]._device
            ):
                self._buckets.append(_Bucket(len(self._buckets), cur))
                cur, size = [], 0
            cur.append(p)
            size += p._data.nbytes
        if cur:
            self._buckets.append(_Bucket(len(self._buckets), cur))
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        self._next = 0  # buckets start in index order on every rank (MPI matches collectives by order)
        self._ready: set[int] = set()
        for _, p in named:
            p.register_post_accumulate_grad_hook(self._grad_ready)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._ready:
            missing = [self._names[id(p)] for b in self._buckets for p in b.params if id(p) not in self._ready]
            raise dist.DistributedError(
                "DistributedDataParallel: the last backward gave no gradient to parameters "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; every parameter must take "
                "part in the loss, or pass find_unused_parameters=True"
            )
        if self.broadcast_buffers and self.training:
            bufs = list(self.module.buffers())
            if bufs:
                _broadcast_flat(bufs, "ddp/broadcast_buffers")
        out = self.module(*args, **kwargs)
        if self.find_unused_parameters and self._sync:
            # parameters this output does not depend on count as ready now (PyTorch walks the
            # graph from the outputs the same way), so their buckets do not wait for them
            used = _leaves_under(out)
            for b in self._buckets:
                for p in b.params:
                    if id(p) not in used:
                        self._grad_ready(p)
        return out

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate gradients locally, without communication."""
        old, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = old

    # -- backward: bucketed, overlapped all-reduce
    def _grad_ready(self, p: Parameter) -> None:
        if not self._sync:
            return
        b = self._bucket_of[id(p)]
        if id(p) in self._ready:
            return
        for done in self._buckets[: self._next]:  # MPI moves bytes only inside MPI calls: poke the
            if done.work is not None:  # reductions in flight so they progress during backward
                done.work.is_completed()
        self._ready.add(id(p))
        b.pending -= 1
        while self._next < len(self._buckets) and self._buckets[self._next].pending == 0:
            self._launch(self._buckets[self._next])
            self._next += 1
        if self._next == len(self._buckets):
            self._finish()

    def _launch(self, b: _Bucket) -> None:
        xp = b.params[0]._device.xp
        # (an unused parameter that has no gradient contributes zeros)
        b.buf = xp.concatenate(
            [xp.zeros(p._data.size, p._data.dtype) if p.grad is None else p.grad._data.reshape(-1) for p in b.params]
        )
        b.work = dist.all_reduce_array(b.buf, dist.ReduceOp.AVG, name=f"ddp/bucket{b.index}", async_op=True)

    def _finish(self) -> None:
        for b in self._buckets:
            assert b.work is not None
            b.work.wait()
            off = 0
            for p in b.params:
                n = p._data.size
                if p.grad is not None:
                    p.grad._data[...] = b.buf[off : off + n].reshape(p._data.shape)
                off += n
            b.buf = b.work = None
            b.pending = len(b.params)
        self._next = 0
        self._ready.clear()


def _leaves_under(out: Any) -> set[int]:
    """ids of the leaf tensors the output(s) were computed from, through the autograd graph."""
    from ..tensor import Tensor

    seen: set[int] = set()
    leaves: set[int] = set()
    stack = [out]
    while stack:
        x = stack.pop()
        if isinstance(x, Tensor):
            if id(x) in seen:
                continue
            seen.add(id(x))
            if x._node is None:
                leaves.add(id(x))
            else:
                stack.extend(x._node.inputs)
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
    return leaves


def _broadcast_flat(tensors: list[Any], name: str) -> None:
    """Rank 0's values into every rank's tensors: one broadcast per dtype and device."""
    groups: dict[tuple, list[Any]] = {}
    for t in tensors:
        groups.setdefault((t._data.dtype.str, t._device.name), []).append(t)
    for ts in groups.values():
        xp = ts[0]._device.xp
        buf = xp.concatenate([t._data.reshape(-1) for t in ts])
        dist.broadcast_array(buf, 0, name=name)
        off = 0
        for t in ts:
            t._data[...] = buf[off : off + t._data.size].reshape(t._data.shape)
            off += t._data.size
