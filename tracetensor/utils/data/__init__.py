"""`tracetensor.utils.data`, laid out as `torch.utils.data`: datasets, samplers and the DataLoader."""

from __future__ import annotations

from typing import Any

from .dataloader import DataLoader, WorkerInfo, default_collate, default_convert, get_worker_info
from .dataset import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    random_split,
)
from .sampler import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

__all__ = [
    "DataLoader",
    "Dataset",
    "IterableDataset",
    "TensorDataset",
    "ConcatDataset",
    "ChainDataset",
    "Subset",
    "random_split",
    "default_collate",
    "default_convert",
    "get_worker_info",
    "WorkerInfo",
    "Sampler",
    "SequentialSampler",
    "RandomSampler",
    "SubsetRandomSampler",
    "WeightedRandomSampler",
    "BatchSampler",
]


def __getattr__(name: str) -> Any:
    # DistributedSampler lives in .distributed (with tt.distributed); loaded on first use
    if name == "DistributedSampler":
        from .distributed import DistributedSampler

        return DistributedSampler
    raise AttributeError(f"module 'tracetensor.utils.data' has no attribute {name!r}")
