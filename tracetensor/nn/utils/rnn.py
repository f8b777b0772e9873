"""`tt.nn.utils.rnn`: variable-length batches for the recurrent layers, as torch.nn.utils.rnn
(`pad_sequence`, `pack_padded_sequence`, `pad_packed_sequence`, `pack_sequence`). Packing and
padding are slices, cats and stacks, so they are ops with events and gradients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ...functional import cat, stack
from ...tensor import Tensor, full, tensor


class PackedSequence(NamedTuple):
    """Time-major rows of a batch sorted by decreasing length: `data[sum(batch_sizes[:t]):]`
    holds step t of the `batch_sizes[t]` sequences still running."""

    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None

    def to(self, *args: Any, **kwargs: Any) -> PackedSequence:
        return self._replace(data=self.data.to(*args, **kwargs))


def _lengths(lengths: Any) -> np.ndarray:
    a = np.asarray(lengths.tolist() if isinstance(lengths, Tensor) else lengths, dtype=np.int64).reshape(-1)
    if a.size and a.min() <= 0:
        raise ValueError(
            "Length of all samples has to be greater than 0, but found an element in 'lengths' that is <= 0"
        )
    return a


def pack_padded_sequence(
    input: Tensor, lengths: Any, batch_first: bool = False, enforce_sorted: bool = True
) -> PackedSequence:
    lens = _lengths(lengths)
    if enforce_sorted:
        if np.any(np.diff(lens) > 0):
            raise RuntimeError(
                "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
                "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence "
                "to sidestep this requirement if you do not need ONNX exportability."
            )
        order = np.arange(lens.size)
        sorted_idx = unsorted_idx = None
    else:
        order = np.argsort(-lens, kind="stable")
        sorted_idx = tensor(order)
        unsorted_idx = tensor(np.argsort(order, kind="stable"))
    x = input.transpose(0, 1) if batch_first else input  # (T, B, *)
    if sorted_idx is not None:
        x = x.index_select(1, sorted_idx)
    lens = lens[order]
    steps = int(lens[0]) if lens.size else 0
    if steps > x.shape[0]:
        raise ValueError(f"a length of {steps} is longer than the {x.shape[0]} padded time steps")
    sizes = [int((lens > t).sum()) for t in range(steps)]
    data = cat([x[t, : sizes[t]] for t in range(steps)], 0)
    return PackedSequence(data, tensor(sizes), sorted_idx, unsorted_idx)


def pad_packed_sequence(
    sequence: PackedSequence, batch_first: bool = False, padding_value: float = 0.0, total_length: int | None = None
) -> tuple[Tensor, Tensor]:
    data, sizes = sequence.data, [int(s) for s in sequence.batch_sizes.tolist()]
    batch, steps = sizes[0], len(sizes)
    if total_length is not None and total_length < steps:
        raise ValueError(
            f"Expected total_length to be at least the length of the longest sequence ({steps}), got {total_length}"
        )
    rows, k = [], 0
    for s in sizes:
        step = data[k : k + s]
        if s < batch:
            step = cat(
                [step, full((batch - s, *data.shape[1:]), padding_value, dtype=data.dtype, device=data.device)], 0
            )
        rows.append(step)
        k += s
    for _ in range(steps, total_length or steps):
        rows.append(full((batch, *data.shape[1:]), padding_value, dtype=data.dtype, device=data.device))
    out = stack(rows, 0)  # (T, B, *), sorted order
    lens = np.array([sum(1 for s in sizes if s > b) for b in range(batch)], dtype=np.int64)
    if sequence.unsorted_indices is not None:
        out = out.index_select(1, sequence.unsorted_indices)
        lens = lens[sequence.unsorted_indices.numpy()]
    return (out.transpose(0, 1) if batch_first else out), tensor(lens)


def pad_sequence(
    sequences: Sequence[Tensor], batch_first: bool = False, padding_value: float = 0.0, padding_side: str = "right"
) -> Tensor:
    """Stacks tensors of different lengths (dimension 0), padding the short ones."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    longest = max(s.shape[0] for s in sequences)
    rows = []
    for s in sequences:
        n = longest - s.shape[0]
        if n:
            pad = full((n, *s.shape[1:]), padding_value, dtype=s.dtype, device=s.device)
            s = cat([s, pad] if padding_side == "right" else [pad, s], 0)
        rows.append(s)
    return stack(rows, 0 if batch_first else 1)


def pack_sequence(sequences: Sequence[Tensor], enforce_sorted: bool = True) -> PackedSequence:
    return pack_padded_sequence(pad_sequence(sequences), [s.shape[0] for s in sequences], enforce_sorted=enforce_sorted)


__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pad_sequence", "pack_sequence"]
