"""`DataLoader`: batches from a dataset, with PyTorch's arguments and collation.

`num_workers > 0` loads batches in that many worker threads (not processes: tensors and
the event stream stay in one process, so a debugger sees worker ops too); batches still
come out in sampler order, and each worker gets `worker_init_fn(id)` and `get_worker_info()`.
"""

from __future__ import annotations

import collections
import collections.abc as cabc
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from ..._random import Generator, rng_of
from ...tensor import Tensor, tensor
from .dataset import Dataset, IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

# ---------------------------------------------------------------- collation


def default_convert(data: Any) -> Any:
    """numpy arrays become tensors, recursively through mappings and sequences (no batching)."""
    if isinstance(data, np.ndarray) and data.dtype.kind not in "USO":
        return tensor(data)
    if isinstance(data, cabc.Mapping):
        return (
            type(data)({k: default_convert(v) for k, v in data.items()})
            if not isinstance(data, dict) or type(data) is dict
            else {k: default_convert(v) for k, v in data.items()}
        )
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, (list, tuple)):
        return type(data)(default_convert(d) for d in data)
    return data


def default_collate(batch: list[Any]) -> Any:
    """PyTorch's default collation: tensors and numpy arrays are stacked along a new first
    dimension; Python floats become a float64 tensor, ints an int64 one; strings stay a list;
    dicts, namedtuples and sequences are collated field by field (tuples give lists)."""
    from ...functional import stack

    elem = batch[0]
    if isinstance(elem, Tensor):
        return stack(batch, 0)
    if isinstance(elem, np.ndarray) and elem.dtype.kind not in "USO":
        return stack([tensor(b) for b in batch], 0)
    if isinstance(elem, np.generic) and elem.dtype.kind not in "USO":
        return tensor(np.asarray(batch))
    if isinstance(elem, bool):
        return tensor(batch)
    if isinstance(elem, float):
        return tensor(batch, dtype="float64")
    if isinstance(elem, int):
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, cabc.Mapping):
        out = {k: default_collate([d[k] for d in batch]) for k in elem}
        try:
            return type(elem)(out) if type(elem) is not dict else out
        except TypeError:
            return out
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, cabc.Sequence):
        n = len(elem)
        if any(len(b) != n for b in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return [default_collate(list(s)) for s in zip(*batch)]
    raise TypeError(
        f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
        f"found {type(elem).__name__}"
    )


# ---------------------------------------------------------------- workers


class WorkerInfo(NamedTuple):
    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker = threading.local()


def get_worker_info() -> WorkerInfo | None:
    """Inside a DataLoader worker: its id, the number of workers, its seed and the dataset;
    None in the main thread."""
    return getattr(_worker, "info", None)


class _InfiniteConstantSampler(Sampler):
    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


# ---------------------------------------------------------------- the loader


class DataLoader:
    """Iterates over `dataset` in batches (PyTorch's arguments; `pin_memory`, `timeout`,
    `multiprocessing_context` and `persistent_workers` are accepted and have no effect)."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Sampler | Iterable | None = None,
        batch_sampler: Sampler | Iterable | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[list], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: Generator | None = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
    ) -> None:
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
        if prefetch_factor is not None and num_workers == 0:
            raise ValueError(
                "prefetch_factor option could only be specified in multiprocessing. Let "
                "num_workers > 0 to enable multiprocessing."
            )
        self.dataset, self.num_workers, self.generator = dataset, num_workers, generator
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers else prefetch_factor
        self.worker_init_fn, self.timeout, self.pin_memory = worker_init_fn, timeout, pin_memory
        self.persistent_workers, self.drop_last = persistent_workers, drop_last
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle:
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified shuffle option, but got shuffle={shuffle}"
                )
            if sampler is not None or batch_sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified sampler and batch_sampler options"
                )
            sampler = _InfiniteConstantSampler()
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        elif shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_size is not None and batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size, self.sampler, self.batch_sampler = batch_size, sampler, batch_sampler
        self.drop_last = drop_last
        self._auto_collation = batch_sampler is not None or (self._iterable and batch_size is not None)
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        self._base_rng = generator

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # type: ignore[arg-type]
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        src = self.batch_sampler if self.batch_sampler is not None else self.sampler
        return len(src)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        if self._iterable:
            return self._iter_stream()
        if self.num_workers == 0:
            return self._iter_map_main()
        return self._iter_map_workers()

    # map-style --------------------------------------------------------------
    def _fetch(self, index: Any) -> Any:
        if self._auto_collation:
            return self.collate_fn([self.dataset[i] for i in index])
        return self.collate_fn(self.dataset[index])

    def _indices(self) -> Iterator[Any]:
        return iter(self.batch_sampler if self.batch_sampler is not None else self.sampler)

    def _iter_map_main(self) -> Iterator[Any]:
        for index in self._indices():
            yield self._fetch(index)

    def _seeds(self) -> int:
        return int(rng_of(self._base_rng).integers(0, 2**62))

    def _init_worker(self, counter: Iterator[int], base_seed: int, dataset: Any) -> None:
        wid = next(counter)
        _worker.info = WorkerInfo(wid, self.num_workers, base_seed + wid, dataset)
        if self.worker_init_fn is not None:
            self.worker_init_fn(wid)

    def _iter_map_workers(self) -> Iterator[Any]:
        base = self._seeds()
        pool = ThreadPoolExecutor(
            self.num_workers,
            thread_name_prefix="DataLoader-worker",
            initializer=self._init_worker,
            initargs=(iter(range(self.num_workers)), base, self.dataset),
        )
        pending: collections.deque[Future] = collections.deque()
        depth = self.num_workers * (self.prefetch_factor or 2)
        indices = self._indices()
        try:
            for index in indices:
                pending.append(pool.submit(self._fetch, index))
                if len(pending) >= depth:
                    yield pending.popleft().result(timeout=self.timeout or None)
            while pending:
                yield pending.popleft().result(timeout=self.timeout or None)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    # iterable-style ---------------------------------------------------------
    def _stream(self, it: Iterator[Any]) -> Iterator[Any]:
        if self.batch_size is None:
            for item in it:
                yield self.collate_fn(item)
            return
        batch: list[Any] = []
        for item in it:
            batch.append(item)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)

    def _iter_stream(self) -> Iterator[Any]:
        if self.num_workers == 0:
            yield from self._stream(iter(self.dataset))
            return
        # each worker iterates the dataset itself; batches are taken from the workers in turn,
        # as PyTorch does (a worker that runs out drops out of the rotation)
        base, done = self._seeds(), object()
        stop = threading.Event()
        queues = [queue.Queue(maxsize=self.prefetch_factor or 2) for _ in range(self.num_workers)]

        def work(wid: int) -> None:
            _worker.info = WorkerInfo(wid, self.num_workers, base + wid, self.dataset)
            q = queues[wid]
            try:
                if self.worker_init_fn is not None:
                    self.worker_init_fn(wid)
                for b in self._stream(iter(self.dataset)):
                    while not stop.is_set():
                        try:
                            q.put((True, b), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put((True, done))
            except BaseException as e:  # handed to the main thread, which raises it
                q.put((False, e))

        threads = [
            threading.Thread(target=work, args=(w,), daemon=True, name=f"DataLoader-worker-{w}")
            for w in range(self.num_workers)
        ]
        for t in threads:
            t.start()
        live = list(range(self.num_workers))
        try:
            while live:
                for w in list(live):
                    ok, b = queues[w].get(timeout=self.timeout or None)
                    if not ok:
                        raise b
                    if b is done:
                        live.remove(w)
                    else:
                        yield b
        finally:
            stop.set()


__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info", "WorkerInfo"]
