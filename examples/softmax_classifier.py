"""A tiny softmax classifier for examples/test_softmax_log_nan.py: two cross-entropy
losses that agree on small logits, and one of them breaks on large ones."""

from __future__ import annotations

import tracetensor as tt
from tracetensor import nn


class Classifier(nn.Module):
    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(features, classes)

    def forward(self, x: tt.Tensor) -> tt.Tensor:
        return self.fc(x)


def cross_entropy_naive(logits: tt.Tensor, onehot: tt.Tensor) -> tt.Tensor:
    """The classic mistake: softmax underflows to exactly 0 when one logit is far below
    another, log(0) is -inf, 0 * -inf is NaN, and so is the gradient."""
    return -(logits.softmax(-1).log() * onehot).sum(-1).mean()


def cross_entropy(logits: tt.Tensor, onehot: tt.Tensor) -> tt.Tensor:
    """The fix: log_softmax computes x - logsumexp(x), never log(0)."""
    return -(logits.log_softmax(-1) * onehot).sum(-1).mean()


def train(model: nn.Module, x: tt.Tensor, onehot: tt.Tensor, loss_fn, steps: int = 3) -> list[float]:
    """A few steps of SGD; returns the losses."""
    opt = tt.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), onehot)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
