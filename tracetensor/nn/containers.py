"""`ModuleDict`, `ParameterList` and `ParameterDict`: containers whose entries the parent
module registers (so `parameters()`, `state_dict()` and `.to()` see them), as in PyTorch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..tensor import Tensor
from .module import Module, Parameter


class ModuleDict(Module):
    """Modules by name, in insertion order: `self.heads = nn.ModuleDict({"a": ..., "b": ...})`."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]
        object.__delattr__(self, key)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for k, m in pairs:
            self[k] = m

    def pop(self, key: str) -> Module:
        m = self._modules[key]
        del self[key]
        return m

    def clear(self) -> None:
        for k in list(self._modules):
            del self[k]


def _as_param(value: Any) -> Any:
    if isinstance(value, Tensor) and not isinstance(value, Parameter):
        return Parameter(value)
    return value


class ParameterList(Module):
    """A list of parameters registered under "0", "1", ... (plain tensors become Parameters)."""

    def __init__(self, values: Iterable[Any] | None = None) -> None:
        super().__init__()
        self._size = 0
        for v in values or ():
            self.append(v)

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return ParameterList(list(self)[i])
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a ParameterList of length {n}")
        return getattr(self, str(i % n))

    def __setitem__(self, i: int, value: Any) -> None:
        self.register_parameter(str(i % len(self)), _as_param(value))

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))

    def append(self, value: Any) -> ParameterList:
        self._size += 1
        self.register_parameter(str(self._size - 1), _as_param(value))
        return self

    def extend(self, values: Iterable[Any]) -> ParameterList:
        for v in values:
            self.append(v)
        return self

    def extra_repr(self) -> str:
        return ", ".join(f"({i}): Parameter of shape {tuple(p.shape)}" for i, p in enumerate(self))


class ParameterDict(Module):
    """Parameters by name (plain tensors become Parameters)."""

    def __init__(self, parameters: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None) -> None:
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __getitem__(self, key: str) -> Any:
        return self._parameters[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.register_parameter(key, _as_param(value))

    def __delitem__(self, key: str) -> None:
        del self._parameters[key]
        object.__delattr__(self, key)

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parameters)

    def __contains__(self, key: object) -> bool:
        return key in self._parameters

    def keys(self) -> Iterable[str]:
        return self._parameters.keys()

    def items(self) -> Iterable[tuple[str, Any]]:
        return self._parameters.items()

    def values(self) -> Iterable[Any]:
        return self._parameters.values()

    def update(self, parameters: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        pairs = parameters.items() if isinstance(parameters, Mapping) else parameters
        for k, v in pairs:
            self[k] = v

    def pop(self, key: str) -> Any:
        v = self._parameters[key]
        del self[key]
        return v

    def get(self, key: str, default: Any = None) -> Any:
        return self._parameters.get(key, default)


__all__ = ["ModuleDict", "ParameterList", "ParameterDict"]
