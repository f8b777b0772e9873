"""PyTorch's `torch.utils` namespace: `tracetensor.utils.data`, `tracetensor.utils.tensorboard`."""
