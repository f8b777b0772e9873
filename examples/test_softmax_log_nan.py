"""What the tracetensor pytest plugin catches: run `pytest examples/test_softmax_log_nan.py`.

Both tests pass without the plugin (`--tracetensor-nan=off`): the smoke test checks
shapes and that the weights moved, and NaN weights pass both checks. With the plugin
(on by default once tracetensor is installed), the naive loss fails, naming the log op,
the line of the loss and the parameters the NaN gradient flows into."""

from __future__ import annotations

import pytest
from softmax_classifier import Classifier, cross_entropy, cross_entropy_naive, train

import tracetensor as tt


@pytest.mark.parametrize("loss_fn", [cross_entropy_naive, cross_entropy])
def test_training_updates_the_weights(loss_fn):
    tt.manual_seed(0)
    model = Classifier(2, 2)
    before = model.fc.weight.detach().numpy().copy()
    # Large, well-separated features: the logits differ by hundreds, so softmax saturates.
    x = tt.tensor([[400.0, -300.0], [-350.0, 250.0], [500.0, 450.0]])
    onehot = tt.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    losses = train(model, x, onehot, loss_fn)
    assert len(losses) == 3
    assert model.fc.weight.shape == (2, 2) and (model.fc.weight.detach().numpy() != before).any()
