"""Samplers: which dataset indices a DataLoader reads, and in what order (PyTorch's names)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any

import numpy as np

from ..._random import Generator, rng_of
from ...tensor import Tensor


class Sampler:
    """Base class: an iterable of indices (or, for a batch sampler, of lists of indices)."""

    def __init__(self, data_source: Sized | None = None) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError


class SequentialSampler(Sampler):
    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


def _epoch_rng(generator: Generator | None) -> np.random.Generator:
    """Without a generator, each epoch's order is seeded from the default generator, as in
    PyTorch: `tt.manual_seed` makes shuffling reproducible."""
    if generator is not None:
        return rng_of(generator)
    return np.random.default_rng(int(rng_of(None).integers(0, 2**63 - 1)))


class RandomSampler(Sampler):
    """A random permutation each epoch, or `num_samples` draws with replacement."""

    def __init__(
        self,
        data_source: Sized,
        replacement: bool = False,
        num_samples: int | None = None,
        generator: Generator | None = None,
    ) -> None:
        self.data_source, self.replacement, self._num_samples = data_source, replacement, num_samples
        self.generator = generator
        if num_samples is not None and int(num_samples) <= 0:
            raise ValueError(f"num_samples should be a positive integer, got {num_samples}")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        rng = _epoch_rng(self.generator)
        if self.replacement:
            return iter(rng.integers(0, n, self.num_samples).tolist())
        k = self.num_samples
        idx = np.concatenate([rng.permutation(n) for _ in range(-(-k // n))])[:k] if n else []
        return iter(list(map(int, idx)))

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order each epoch."""

    def __init__(self, indices: Sequence[int], generator: Generator | None = None) -> None:
        self.indices, self.generator = list(indices), generator

    def __iter__(self) -> Iterator[int]:
        rng = _epoch_rng(self.generator)
        return iter([self.indices[int(i)] for i in rng.permutation(len(self.indices))])

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """`num_samples` indices drawn with probabilities proportional to `weights`."""

    def __init__(
        self,
        weights: Sequence[float] | Tensor,
        num_samples: int,
        replacement: bool = True,
        generator: Generator | None = None,
    ) -> None:
        w = np.asarray(weights._data if isinstance(weights, Tensor) else weights, dtype=np.float64)
        if w.ndim != 1 or (w < 0).any() or not w.sum() > 0:
            raise ValueError("weights should be a 1-D sequence of non-negative numbers with a positive sum")
        if not replacement and num_samples > (w > 0).sum():
            raise ValueError("num_samples is larger than the number of nonzero weights without replacement")
        self.weights, self.num_samples, self.replacement = w, int(num_samples), replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        rng = _epoch_rng(self.generator)
        idx = rng.choice(
            len(self.weights), self.num_samples, replace=self.replacement, p=self.weights / self.weights.sum()
        )
        return iter(idx.tolist())

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Groups another sampler's indices into lists of `batch_size`."""

    def __init__(self, sampler: Iterable[int], batch_size: int, drop_last: bool) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


__all__ = [
    "Sampler",
    "SequentialSampler",
    "RandomSampler",
    "SubsetRandomSampler",
    "WeightedRandomSampler",
    "BatchSampler",
]
