"""A data pipeline in the style of PyTorch's "Datasets & DataLoaders" tutorial and common
NLP scripts: a map-style Dataset returning dicts with a transform, random_split, a
collate_fn that pads variable-length sequences, a WeightedRandomSampler for class
imbalance, worker processes (num_workers=2) and a sharded IterableDataset."""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset, WeightedRandomSampler, random_split

torch.manual_seed(0)  # the sampler and the initial weights draw from it: the same run each time


class ToySentences(Dataset):
    """Sequences of token ids; the label is 1 when the sequence contains token 7."""

    def __init__(self, n, transform=None, seed=0):
        rng = np.random.default_rng(seed)
        self.items = [rng.integers(1, 10, rng.integers(3, 9)) for _ in range(n)]
        self.transform = transform

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        seq = self.items[idx]
        sample = {"tokens": torch.tensor(seq), "label": int(7 in seq), "index": idx}
        if self.transform:
            sample = self.transform(sample)
        return sample


class Truncate:
    def __init__(self, n):
        self.n = n

    def __call__(self, sample):
        sample["tokens"] = sample["tokens"][:self.n]
        return sample


def pad_collate(batch):
    lengths = torch.tensor([len(b["tokens"]) for b in batch])
    tokens = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long)
    for i, b in enumerate(batch):
        tokens[i, :len(b["tokens"])] = b["tokens"]
    labels = torch.tensor([b["label"] for b in batch], dtype=torch.float32)
    return tokens, lengths, labels, [b["index"] for b in batch]


class BagOfWords(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8, padding_idx=0)
        self.out = nn.Linear(8, 1)

    def forward(self, tokens, lengths):
        mask = (tokens != 0).unsqueeze(-1).float()
        mean = (self.emb(tokens) * mask).sum(1) / lengths.unsqueeze(-1).float()
        return self.out(mean).squeeze(-1)


dataset = ToySentences(240, transform=Truncate(6))
train_set, val_set = random_split(dataset, [0.75, 0.25], generator=torch.Generator().manual_seed(42))
print(len(train_set), len(val_set))

labels = np.array([dataset[i]["label"] for i in train_set.indices])
class_weight = 1.0 / np.bincount(labels)
sampler = WeightedRandomSampler(torch.tensor(class_weight[labels]), num_samples=len(train_set), replacement=True)
train_loader = DataLoader(train_set, batch_size=16, sampler=sampler, collate_fn=pad_collate, num_workers=2)
val_loader = DataLoader(val_set, batch_size=32, shuffle=False, collate_fn=pad_collate, num_workers=2)

model = BagOfWords()
opt = torch.optim.Adam(model.parameters(), lr=0.05)
for epoch in range(4):
    model.train()
    total = 0.0
    for tokens, lengths, y, _ in train_loader:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(tokens, lengths), y)
        loss.backward()
        opt.step()
        total += loss.item() * len(y)
    model.eval()
    seen, correct = [], 0
    with torch.no_grad():
        for tokens, lengths, y, idx in val_loader:
            correct += ((model(tokens, lengths) > 0).float() == y).sum().item()
            seen += idx
    assert seen == list(val_set.indices)  # workers kept the order
    print(f"epoch {epoch} train loss {total / len(train_set):.4f} val acc {correct / len(val_set):.3f}")


class Shards(IterableDataset):
    def __init__(self, start, end):
        super().__init__()
        self.start, self.end = start, end

    def __iter__(self):
        worker_info = torch.utils.data.get_worker_info()
        if worker_info is None:  # single-process data loading, return the full iterator
            iter_start, iter_end = self.start, self.end
        else:  # in a worker process: split workload
            per_worker = int(math.ceil((self.end - self.start) / float(worker_info.num_workers)))
            worker_id = worker_info.id
            iter_start = self.start + worker_id * per_worker
            iter_end = min(iter_start + per_worker, self.end)
        return iter(range(iter_start, iter_end))


ds = Shards(3, 7)
print(list(DataLoader(ds, num_workers=0)))
both = sorted(int(x) for x in DataLoader(ds, num_workers=2))
assert both == [3, 4, 5, 6], both
assert correct / len(val_set) > 0.9
print("OK")
