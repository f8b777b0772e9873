"""tt.nn: modules, layers and losses with PyTorch names (`tt.nn.functional`, `tt.nn.init`,
`tt.nn.utils`, `tt.nn.parallel`)."""

from . import functional, init, parallel, utils
from .containers import ModuleDict, ParameterDict, ParameterList
from .layers import *  # noqa: F403  (every layer and loss: layers.__all__)
from .layers import __all__ as _layers_all
from .module import Module, Parameter
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell
from .transformer import MultiheadAttention, Transformer, TransformerEncoder, TransformerEncoderLayer

__all__ = [
    "Module",
    "Parameter",
    "functional",
    "init",
    "parallel",
    "utils",
    "ModuleDict",
    "ParameterList",
    "ParameterDict",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNNBase",
    "RNN",
    "LSTM",
    "GRU",
    "MultiheadAttention",
    "TransformerEncoderLayer",
    "TransformerEncoder",
    "Transformer",
    *_layers_all,
]
