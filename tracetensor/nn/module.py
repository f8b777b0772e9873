"""`tt.nn.Module` and `Parameter`: the container model code builds on, with PyTorch's API
(parameters, children, train/eval, state_dict, hooks) and op naming for the event stream."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .. import _naming, _source
from .. import events as _ev
from .._grad_mode import MODE as _MODE
from ..device import device as _device
from ..errors import TraceTensorError
from ..events import STATE
from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that a Module registers as one of its parameters (requires grad by default)."""

    __slots__ = ()

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Parameter:
        from ..tensor import tensor

        src = tensor([]) if data is None else data if isinstance(data, Tensor) else tensor(data)
        base = Tensor._make(src._data, src._device)
        p = object.__new__(cls)
        for slot in Tensor.__slots__:  # copy every field a fresh tensor has, whatever they are
            if slot != "__weakref__":
                object.__setattr__(p, slot, getattr(base, slot))
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # everything happens in __new__ (Tensor.__init__ would copy the data)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + Tensor.__repr__(self)


class _Handle:
    """What register_*_hook returns: `.remove()` unregisters the hook."""

    def __init__(self, hooks: dict[int, Callable], key: int) -> None:
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


class IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


class _Calls(threading.local):
    stack: list | None = None  # the modules being called on this thread, outermost first


_tls = _Calls()
_names = _naming._tls  # (the per-thread name prefix)
_library: dict[type, bool] = {}


def _outermost_begins(mod: Module, training: bool) -> None:
    """An outermost module call begins, in a step not yet marked as training, while someone
    listens (see Module._call_inference): the same module again ends the step of inference
    calls it began; a training call marks the step."""
    if _names.calls is mod:
        _ev.step()
    if training:
        _names.calls = True


def _library_forward(cls: type) -> bool:
    """Whether `cls.forward` is tracetensor's own code (a layer of tt.nn), not the user's, and
    runs several ops: they then share one capture of the user's stack (see `__call__`). A
    forward of one op (`one_op`) lets its op capture the stack itself, the same stack for less
    (about 70 ns, where holding one costs 320)."""
    r = _library.get(cls)
    if r is None:
        fn = getattr(cls, "forward", None)
        code = getattr(fn, "__code__", None)
        one = getattr(fn, "_tt_one_op", False)
        r = _library[cls] = code is not None and not one and _source._is_internal(code.co_filename)
    return r


def one_op(forward: Callable) -> Callable:
    """Marks a library layer's `forward` as running one op (see `_library_forward`)."""
    forward._tt_one_op = True  # type: ignore[attr-defined]
    return forward


_hook_ids = iter(range(1, 1 << 62))


class Module:
    """Base of every layer and model. Subclasses assign Parameters and Modules as
    attributes in `__init__` and compute in `forward`; call the module, not forward."""

    training: bool

    def __init__(self) -> None:
        d = self.__dict__
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent"] = set()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = {}
        d["_forward_pre_hooks"] = {}
        d["training"] = True

    # attributes: registered objects also live in __dict__, so `self.fc1` is a plain lookup
    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if "_parameters" not in d:
            if isinstance(value, (Parameter, Module)):
                raise TraceTensorError(
                    f"cannot assign {type(value).__name__} '{name}' before Module.__init__() was called "
                    f"(call super().__init__() first in {type(self).__name__}.__init__)"
                )
            object.__setattr__(self, name, value)
            return
        for reg in (d["_parameters"], d["_modules"], d["_buffers"]):
            if name in reg and not (reg is d["_buffers"] and isinstance(value, Tensor)):
                del reg[name]
        if isinstance(value, Parameter):
            d["_parameters"][name] = value
        elif isinstance(value, Module):
            d["_modules"][name] = value
        elif name in d["_buffers"]:
            d["_buffers"][name] = value
        elif name in d["_parameters"] and value is None:
            d["_parameters"][name] = None
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for reg in (self._parameters, self._modules, self._buffers):
            reg.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is None:
            self._parameters[name] = None
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """A tensor that is state but not a parameter (running stats...); in state_dict
        unless persistent=False."""
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module: Module | None) -> None:
        self._modules[name] = module
        object.__setattr__(self, name, module)

    register_module = add_module

    # calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not STATE.named:
            if STATE.listeners:  # (a `names=False` listener: the steps of an inference loop count)
                if not (_MODE.enabled and self.training):
                    return self._call_inference(args, kwargs)
                if _names.calls is not True:  # (a training call, marked once a step)
                    _outermost_begins(self, True)
            if self._forward_pre_hooks or self._forward_hooks:
                return self._call_hooked(args, kwargs)
            return self.forward(*args, **kwargs)
        # With a listener that wants names: scope op names by module path (`MLP/fc1/matmul`),
        # and name the parameters of the outermost module after their state_dict keys, once.
        # (Here, not in a method of its own: one Python call less per module call.)
        d = self.__dict__  # (read once: this runs for every module call while names are made)
        names = _names
        stack = _tls.stack
        if stack is None:
            stack = _tls.stack = []
        training = True  # (an outermost call's, below; a nested call leaves the step as it is)
        if stack:
            parent = stack[-1]
            cached = d.get("_tt_scope")  # (parent, key): modules are called far more than moved
            if cached is not None and cached[0] is parent and parent._modules.get(cached[1]) is self:
                scope = cached[1]
            else:
                scope = next((k for k, m in parent._modules.items() if m is self), type(self).__name__)
                d["_tt_scope"] = (parent, scope)
        else:
            training = _MODE.enabled and d["training"]
            if names.calls is not True:
                _outermost_begins(self, training)
            scope = type(self).__name__
            if not d.get("_tt_named"):
                for pname, p in self.named_parameters():
                    if p._name is None:
                        p._name = pname
                d["_tt_named"] = True
        stack.append(self)
        prefix = names.prefix
        # what `with _naming.name_scope(scope)` does, the string made once per (prefix, scope)
        made = d.get("_tt_prefix")
        if made is None or made[0] is not prefix or made[1] is not scope:
            made = d["_tt_prefix"] = (prefix, scope, prefix + scope.strip("/") + "/")
        names.prefix = made[2]
        # a library layer's ops share the user's stack at its call, taken once (a user's
        # forward, hook or callable in between makes its ops capture their own: see hold)
        outer = None
        if STATE.stacks:
            lib = _library.get(type(self))
            if lib is None:
                lib = _library_forward(type(self))
            if lib:
                outer = _source.hold()
        try:
            if self._forward_pre_hooks or self._forward_hooks:
                out = self._call_hooked(args, kwargs)
            else:
                out = self.forward(*args, **kwargs)
        finally:
            names.prefix = prefix
            if outer is not None:
                _source.release(outer)
            stack.pop()
        if not stack and not training and names.calls is None:
            names.calls = self  # (an inference step's first module: see _call_inference)
        return out

    def _call_inference(self, args: tuple, kwargs: dict) -> Any:
        """An inference call (under `no_grad` or `inference_mode`, or of a module in eval
        mode) while someone listens without names (the named path in `__call__` does the
        same). Listened to, a step (a run, whose op names repeat from step to step) ends at
        `optimizer.step()`; in a loop without one, the step of inference calls ends where the
        module of its first outermost call (`model(x)`) is called again: each batch of an
        inference loop is a step, its forward and what comes before and after it (an argmax,
        a metric). Without it, such a loop was one step, in which each op got a name of its
        own (`linear_4999`): a new signature per op, 2.5 times the CPU and six times the trace
        bytes of ops whose names repeat. A call of a module in training mode, in grad mode,
        makes the step a training step (`calls` True): its inference calls (a target
        network's) stay in it. (`_naming._tls.calls`: None, True, or that first module.)
        Only here is the depth kept: a training call just marks the step."""
        stack = _tls.stack
        if stack is None:
            stack = _tls.stack = []
        if not stack and _names.calls is not True:
            _outermost_begins(self, False)
        stack.append(self)
        try:
            out = self._call_hooked(args, kwargs)  # (the forward, with the hooks there are)
        finally:
            stack.pop()
        if not stack and _names.calls is None:
            _names.calls = self
        return out

    def _call_hooked(self, args: tuple, kwargs: dict) -> Any:
        if not (self._forward_pre_hooks or self._forward_hooks):
            return self.forward(*args, **kwargs)
        for hook in tuple(self._forward_pre_hooks.values()):
            r = hook(self, args)
            if r is not None:
                args = r if isinstance(r, tuple) else (r,)
        out = self.forward(*args, **kwargs)
        for hook in tuple(self._forward_hooks.values()):
            r = hook(self, args, out)
            if r is not None:
                out = r
        return out

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]) -> _Handle:
        """`hook(module, inputs, output)` runs after forward; a non-None result replaces the output."""
        k = next(_hook_ids)
        self._forward_hooks[k] = hook
        return _Handle(self._forward_hooks, k)

    def register_forward_pre_hook(self, hook: Callable[[Module, tuple], Any]) -> _Handle:
        """`hook(module, inputs)` runs before forward; a non-None result replaces the inputs."""
        k = next(_hook_ids)
        self._forward_pre_hooks[k] = hook
        return _Handle(self._forward_pre_hooks, k)

    # traversal
    def named_modules(self, memo: set[int] | None = None, prefix: str = "") -> Iterator[tuple[str, Module]]:
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        mods = self.named_modules(prefix=prefix) if recurse else iter([(prefix, self)])
        for mp, m in mods:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))  # a shared parameter is listed once (by id: tensors compare elementwise)
                yield (f"{mp}.{name}" if mp else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        mods = self.named_modules(prefix=prefix) if recurse else iter([(prefix, self)])
        for mp, m in mods:
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mp}.{name}" if mp else name), b

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn: Callable[[Module], None]) -> Module:
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # modes and state
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad._data[...] = 0

    def state_dict(
        self, destination: dict | None = None, prefix: str = "", keep_vars: bool = False
    ) -> OrderedDict[str, Tensor]:
        """Parameters and persistent buffers by qualified name; the tensors share storage."""
        out: OrderedDict[str, Tensor] = OrderedDict() if destination is None else destination
        for mp, m in self.named_modules(prefix=prefix.rstrip(".")):
            for name, p in m._parameters.items():
                if p is not None:
                    out[f"{mp}.{name}" if mp else name] = p if keep_vars else p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[f"{mp}.{name}" if mp else name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copies values into the existing parameters and buffers (in place, so optimizers
        keep working). With strict, missing or unexpected keys raise one error listing them."""
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise TraceTensorError(
                f"load_state_dict for {type(self).__name__}: missing keys {missing}, unexpected keys {unexpected}"
            )
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = v._data if isinstance(v, Tensor) else v
            if tuple(getattr(arr, "shape", ())) != tuple(t.shape):
                raise TraceTensorError(
                    f"load_state_dict for {type(self).__name__}: '{k}' has shape "
                    f"{tuple(getattr(arr, 'shape', ()))} in the checkpoint but "
                    f"{tuple(t.shape)} in the model"
                )
            src = v if isinstance(v, Tensor) else Tensor._make(arr, t._device)
            if src._device != t._device:
                src = src.to(t._device)
            t._data[...] = src._data
        return IncompatibleKeys(missing, unexpected)

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Moves (and/or casts) parameters, their grads and buffers in place: `model.to("cuda")`."""
        for t in (*self.parameters(), *self.buffers()):
            moved = t.detach().to(*args, **kwargs)
            t._data, t._device = moved._data, moved._device
            if t.grad is not None:
                g = t.grad.to(*args, **kwargs)
                t.grad._data, t.grad._device = g._data, g._device
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, index: int | None = None) -> Module:
        return self.to(_device("cuda", index))

    def double(self) -> Module:
        from .. import dtypes

        return self.to(dtypes.float64)

    def float(self) -> Module:
        from .. import dtypes

        return self.to(dtypes.float32)

    # printing
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
