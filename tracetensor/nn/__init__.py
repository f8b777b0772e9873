"""tt.nn: modules, layers and losses with PyTorch names (`tt.nn.functional`, `tt.nn.init`)."""
from . import functional, init, parallel
from .layers import *  # noqa: F403  (every layer and loss: layers.__all__)
from .layers import __all__ as _layers_all
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "functional", "init", "parallel", *_layers_all]
