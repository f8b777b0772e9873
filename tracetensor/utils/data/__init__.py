"""PyTorch's `torch.utils.data` namespace (`tracetensor.utils.data.distributed.DistributedSampler`)."""
from .distributed import DistributedSampler

__all__ = ["DistributedSampler"]
