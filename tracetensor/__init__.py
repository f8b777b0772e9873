"""tracetensor: a tensor/autograd framework built to be looked into.

Eager code reads like PyTorch (`import tracetensor as tt`), graph code like
TensorFlow 1 (`import tracetensor.graph as tf`); every op of either emits an event
(`tt.events`) that the debugger, the profiler and the pytest plugin consume.
"""

from __future__ import annotations

# (_malloc first: it sets malloc's thresholds as it is imported, before any large array)
from . import _malloc, autograd, events  # noqa: F401
from . import ops as _ops  # noqa: F401  (registers every op)
from ._grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from ._naming import name_scope
from ._random import Generator, default_generator, get_rng_state, initial_seed, seed, set_rng_state
from ._version import __version__
from .device import Device, cuda, device, get_default_device, set_default_device
from .dtypes import (
    bool,
    cdouble,
    cfloat,
    complex64,
    complex128,
    double,
    dtype,
    float,
    float16,
    float32,
    float64,
    get_default_dtype,
    half,
    int,
    int8,
    int16,
    int32,
    int64,
    long,
    set_default_dtype,
    short,
    uint8,
)
from .errors import (
    DeviceError,
    DTypeError,
    NumericsError,
    OpError,
    SerializationError,
    ShapeError,
    TraceTensorError,
)
from .events import step
from .functional import *  # noqa: F403
from .functional import __all__ as _functional_all
from .tensor import (
    BoolTensor,
    ByteTensor,
    DoubleTensor,
    FloatTensor,
    HalfTensor,
    IntTensor,
    LongTensor,
    ShortTensor,
    Tensor,
    arange,
    empty,
    eye,
    from_numpy,
    full,
    full_like,
    is_tensor,
    linspace,
    manual_seed,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)

__all__ = [
    "Tensor",
    "tensor",
    "zeros",
    "ones",
    "full",
    "empty",
    "eye",
    "arange",
    "linspace",
    "randn",
    "rand",
    "randint",
    "zeros_like",
    "ones_like",
    "full_like",
    "randn_like",
    "rand_like",
    "from_numpy",
    "is_tensor",
    "manual_seed",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "is_grad_enabled",
    "name_scope",
    "device",
    "Device",
    "cuda",
    "set_default_device",
    "get_default_device",
    "dtype",
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "half",
    "float",
    "double",
    "short",
    "int",
    "long",
    "cfloat",
    "cdouble",
    "get_default_dtype",
    "set_default_dtype",
    "autograd",
    "events",
    "TraceTensorError",
    "OpError",
    "ShapeError",
    "DTypeError",
    "DeviceError",
    "NumericsError",
    "SerializationError",
    "__version__",
    "step",
    *_functional_all,
    "inference_mode",
    "is_inference_mode_enabled",
    "Generator",
    "default_generator",
    "seed",
    "initial_seed",
    "get_rng_state",
    "set_rng_state",
    "randperm",
    "randint_like",
    "FloatTensor",
    "DoubleTensor",
    "HalfTensor",
    "LongTensor",
    "IntTensor",
    "ShortTensor",
    "ByteTensor",
    "BoolTensor",
]


# Subpackages and entry points loaded on first use, so `import tracetensor` stays light
# and so each lives in one place: tt.nn, tt.optim, tt.fft, tt.debugging, tt.save/load,
# tt.function (graph tracing), tt.record (the recorder), tt.graph, tt.trace.
_LAZY = {
    "nn": ("tracetensor.nn", None),
    "optim": ("tracetensor.optim", None),
    "fft": ("tracetensor.fft", None),
    "debugging": ("tracetensor.debugging", None),
    "graph": ("tracetensor.graph", None),
    "trace": ("tracetensor.trace", None),
    "distributed": ("tracetensor.distributed", None),
    "save": ("tracetensor.serialization", "save"),
    "load": ("tracetensor.serialization", "load"),
    "function": ("tracetensor.graph", "function"),
    "record": ("tracetensor.trace", "record"),
    "utils": ("tracetensor.utils", None),
    "backends": ("tracetensor.backends", None),
    "accelerator": ("tracetensor.accelerator", None),
}


def __getattr__(name: str):
    spec = _LAZY.get(name)
    if spec is None:
        raise AttributeError(f"module 'tracetensor' has no attribute {name!r}")
    import importlib

    mod = importlib.import_module(spec[0])
    value = mod if spec[1] is None else getattr(mod, spec[1])
    globals()[name] = value
    return value
