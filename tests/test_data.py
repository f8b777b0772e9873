"""tt.utils.data: datasets, samplers, collation and the DataLoader, as torch.utils.data."""

from __future__ import annotations

import threading
from collections import namedtuple

import numpy as np
import pytest

import tracetensor as tt
from tracetensor.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    get_worker_info,
    random_split,
)


def _ds(n=10):
    return TensorDataset(tt.arange(n * 2.0).reshape(n, 2), tt.arange(n))


def test_batches_in_order_with_the_last_one_short_or_dropped() -> None:
    batches = list(DataLoader(_ds(), batch_size=4))
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    x, y = batches[0]
    assert x.shape == (4, 2) and y.dtype == tt.int64
    dl = DataLoader(_ds(), batch_size=4, drop_last=True)
    assert len(dl) == 2 and [b[1].tolist() for b in dl] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(DataLoader(_ds(), batch_size=4)) == 3


def test_shuffle_is_a_new_permutation_each_epoch_and_seeded_by_manual_seed() -> None:
    dl = DataLoader(_ds(), batch_size=10, shuffle=True)
    tt.manual_seed(0)
    e1, e2 = (next(iter(dl))[1].tolist() for _ in range(2))
    assert sorted(e1) == list(range(10)) and e1 != e2
    tt.manual_seed(0)
    assert next(iter(dl))[1].tolist() == e1
    g = tt.Generator().manual_seed(5)
    a = [b[1].tolist() for b in DataLoader(_ds(), batch_size=3, shuffle=True, generator=g)]
    g.manual_seed(5)
    assert [b[1].tolist() for b in DataLoader(_ds(), batch_size=3, shuffle=True, generator=g)] == a


def test_collate_of_dicts_tuples_namedtuples_numbers_strings_and_arrays() -> None:
    Pt = namedtuple("Pt", "x y")
    batch = [
        {
            "img": np.ones((2, 2), np.float32) * i,
            "label": i,
            "w": 0.5,
            "name": f"s{i}",
            "pt": Pt(i, 2.0),
            "pair": (tt.tensor([i]), i),
        }
        for i in range(3)
    ]
    out = default_collate(batch)
    assert out["img"].shape == (3, 2, 2) and out["img"].dtype == tt.float32
    assert out["label"].tolist() == [0, 1, 2] and out["label"].dtype == tt.int64
    assert out["w"].dtype == tt.float64  # Python floats collate to float64, as in PyTorch
    assert out["name"] == ["s0", "s1", "s2"]
    assert isinstance(out["pt"], Pt) and out["pt"].x.tolist() == [0, 1, 2]
    assert isinstance(out["pair"], list) and out["pair"][0].shape == (3, 1)
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [1]])


def test_map_style_workers_keep_sampler_order_and_run_in_other_threads() -> None:
    seen_threads = set()

    class Slow(Dataset):
        def __len__(self):
            return 23

        def __getitem__(self, i):
            info = get_worker_info()
            assert info is not None and info.num_workers == 3
            seen_threads.add(threading.get_ident())
            return tt.tensor([float(i)])

    inits = []
    dl = DataLoader(Slow(), batch_size=4, num_workers=3, worker_init_fn=inits.append)
    assert [b[:, 0].tolist() for b in dl] == [[float(i) for i in range(k, min(k + 4, 23))] for k in range(0, 23, 4)]
    assert threading.get_ident() not in seen_threads and sorted(inits) == [0, 1, 2]
    assert get_worker_info() is None


def test_worker_errors_reach_the_main_loop() -> None:
    class Bad(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i == 2:
                raise KeyError("sample 2 is corrupt")
            return i

    with pytest.raises(KeyError, match="corrupt"):
        list(DataLoader(Bad(), batch_size=1, num_workers=2))


def test_iterable_datasets_split_by_worker_info_and_interleave_like_pytorch() -> None:
    class Stream(IterableDataset):
        def __iter__(self):
            w = get_worker_info()
            return iter(range(10) if w is None else range(w.id, 10, w.num_workers))

    assert [b.tolist() for b in DataLoader(Stream(), batch_size=2)] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert [b.tolist() for b in DataLoader(Stream(), batch_size=2, num_workers=2)] == [
        [0, 2],
        [1, 3],
        [4, 6],
        [5, 7],
        [8],
        [9],
    ]
    with pytest.raises(ValueError, match="shuffle"):
        DataLoader(Stream(), shuffle=True)


def test_samplers() -> None:
    assert list(SequentialSampler(range(3))) == [0, 1, 2]
    tt.manual_seed(0)
    assert sorted(RandomSampler(range(5))) == [0, 1, 2, 3, 4]
    assert len(list(RandomSampler(range(5), replacement=True, num_samples=12))) == 12
    assert sorted(SubsetRandomSampler([7, 3, 9])) == [3, 7, 9]
    draws = list(WeightedRandomSampler([0.0, 1.0, 3.0], 400))
    assert 0 not in draws and draws.count(2) > draws.count(1)
    assert list(BatchSampler(range(5), 2, drop_last=False)) == [[0, 1], [2, 3], [4]]
    assert len(BatchSampler(range(5), 2, drop_last=True)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(range(5), 0, False)
    dl = DataLoader(_ds(), batch_sampler=BatchSampler(SequentialSampler(range(10)), 5, False))
    assert [b[1].tolist() for b in dl] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    dl = DataLoader(_ds(), sampler=SubsetRandomSampler([1, 2]), batch_size=2)
    assert sorted(next(iter(dl))[1].tolist()) == [1, 2]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(_ds(), sampler=SequentialSampler(range(10)), shuffle=True)


def test_random_split_concat_and_subset() -> None:
    ds = _ds(10)
    a, b = random_split(ds, [7, 3], generator=tt.Generator().manual_seed(0))
    assert len(a) == 7 and len(b) == 3 and sorted(a.indices + b.indices) == list(range(10))
    parts = random_split(ds, [0.5, 0.3, 0.2])
    assert [len(p) for p in parts] == [5, 3, 2]
    thirds = random_split(range(10), [1 / 3, 1 / 3, 1 / 3])
    assert [len(p) for p in thirds] == [4, 3, 3]  # the remainder goes round-robin from the first
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [5, 4])
    both = ConcatDataset([Subset(ds, [0, 1]), Subset(ds, [9])])
    assert len(both) == 3 and both[2][1].item() == 9 and both[-1][1].item() == 9
    assert len(ds + ds) == 20
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(tt.zeros(3), tt.zeros(4))
