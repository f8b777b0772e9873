"""tt.nn: modules, layers and losses with PyTorch names (`tt.nn.functional`, `tt.nn.init`)."""
from . import functional, init
from .layers import (
    BCELoss,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Embedding,
    Flatten,
    Identity,
    L1Loss,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ModuleList,
    MSELoss,
    NLLLoss,
    ReLU,
    RNNCell,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "functional", "init", "Sequential", "ModuleList", "Identity", "Linear",
           "Conv2d", "MaxPool2d", "Embedding", "RNNCell", "ReLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
           "Dropout", "Flatten", "MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCELoss"]
