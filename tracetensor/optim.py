"""`tt.optim`: SGD and Adam with PyTorch's update rules. Updates are in place on the
parameter arrays; each parameter's update passes the dispatch point as an "update"
event when someone listens, and costs what hand-written numpy costs when nobody does."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._dispatch import Site, dispatch, site_of
from ._registry import REGISTRY
from .errors import Invalid, TraceTensorError
from .events import STATE
from .events import step as _end_step
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]

_tuple_new = tuple.__new__  # Sites are made in their field order (see _dispatch.Site)


class Optimizer:
    """Base class: `param_groups` (lists of parameters with their hyperparameters),
    per-parameter `state`, `zero_grad`, `step`, `state_dict`/`load_state_dict`."""

    _op = "sgd_update"  # the registry op of one parameter's update

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: dict[int, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise TraceTensorError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict[str, Any]) -> None:
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TraceTensorError(f"{type(self).__name__} can only optimize tensors that require grad, "
                                       f"got {type(p).__name__}")
        g = {**self.defaults, **group, "params": params}
        self.param_groups.append(g)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad._data[...] = 0

    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        listening = bool(STATE.listeners)
        for group in self.param_groups:
            for i, p in enumerate(group["params"]):
                if p.grad is not None:
                    g = p.grad._data
                    if g.shape != p._data.shape:
                        raise _grad_error(self._op, p, g)
                    self._update(p, g, group, self.state.setdefault(id(p), {}), listening, i)
        if listening:
            _end_step()  # an eager step (run) ends with its update; the next op begins the next
        return loss

    def _update(self, p: Tensor, g: Any, group: dict, state: dict, listening: bool, index: int) -> None:
        raise NotImplementedError

    def _run(self, opname: str, p: Tensor, args: tuple, attrs: dict, listening: bool, index: int) -> None:
        """One parameter's update, through the dispatch point."""
        op = REGISTRY[opname]
        if listening:
            pname = p._name or f"param_{index}"
            site = _tuple_new(Site, (op, "update", "eager", op.name, "update/" + pname, (pname, pname + ".grad"),
                                     p._device, None, None, (), (pname,), None, False))
        else:
            site = site_of(op, "update")
        dispatch(site, op.forward, (p._device.xp, *args), args[:2], attrs)

    # state as plain data (tt.save can write it): per-parameter state indexed by position
    def state_dict(self) -> dict[str, Any]:
        order = [id(p) for g in self.param_groups for p in g["params"]]
        state = {}
        for k, pid in enumerate(order):
            if pid in self.state and self.state[pid]:
                state[k] = {n: (Tensor._make(v, _dev_of(self, pid)) if hasattr(v, "shape") else v)
                            for n, v in self.state[pid].items()}
        groups = []
        k = 0
        for g in self.param_groups:
            groups.append({**{n: v for n, v in g.items() if n != "params"},
                           "params": list(range(k, k + len(g["params"])))})
            k += len(g["params"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)):
            raise TraceTensorError("loaded optimizer state has a different number of parameter groups or "
                                   "parameters than this optimizer")
        params = [p for g in self.param_groups for p in g["params"]]
        for g, saved in zip(self.param_groups, groups):
            g.update({n: v for n, v in saved.items() if n != "params"})
        self.state = {}
        for k, st in state_dict["state"].items():
            p = params[int(k)]
            self.state[id(p)] = {n: (p._device.xp.array(v._data if isinstance(v, Tensor) else v)
                                     if isinstance(v, Tensor) or hasattr(v, "shape") else v)
                                 for n, v in st.items()}


def _dev_of(opt: Optimizer, pid: int) -> Any:
    for g in opt.param_groups:
        for p in g["params"]:
            if id(p) == pid:
                return p._device
    raise KeyError(pid)


class SGD(Optimizer):
    """Stochastic gradient descent with PyTorch's momentum, dampening, Nesterov and L2 weight decay."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid SGD hyperparameters: lr={lr}, momentum={momentum}, "
                             f"weight_decay={weight_decay} (all must be >= 0)")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov})

    def step(self, closure: Any = None) -> Any:
        if STATE.listeners or any(g["momentum"] or g["weight_decay"] for g in self.param_groups):
            return super().step(closure)
        loss = closure() if closure is not None else None
        for group in self.param_groups:  # the plain step, with no per-parameter bookkeeping
            lr = group["lr"]
            for p in group["params"]:
                if p.grad is not None:
                    _plain_sgd(p, p.grad._data, lr)
        return loss

    def _update(self, p: Tensor, g: Any, group: dict, state: dict, listening: bool, index: int) -> None:
        momentum = group["momentum"]
        if not momentum and not group["weight_decay"] and not listening:
            _plain_sgd(p, g, group["lr"])
            return
        buf = None
        first = False
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = p._device.xp.empty_like(p._data)
                first = True
        self._run("sgd_update", p, (p._data, g, buf),
                  {"lr": group["lr"], "momentum": momentum, "dampening": group["dampening"],
                   "weight_decay": group["weight_decay"], "nesterov": group["nesterov"], "first": first},
                  listening, index)


def _plain_sgd(p: Tensor, g: Any, lr: float) -> None:
    """`p -= lr * g`, exactly what hand-written numpy does, with the checks of the update op."""
    if g.shape != p._data.shape:
        raise _grad_error("sgd_update", p, g)
    try:
        p._data -= lr * g
    except Exception as e:
        raise site_of(REGISTRY["sgd_update"], "update").error((p._data, g), {"lr": lr}, e) from None


def _grad_error(opname: str, p: Tensor, g: Any) -> BaseException:
    """A gradient whose shape is not its parameter's (PyTorch refuses such a `.grad`); the
    error the dispatch point gives it, whether or not anyone listens."""
    site = site_of(REGISTRY[opname], "update")
    msg = f"gradient of shape {tuple(g.shape)} does not match its parameter's shape {tuple(p._data.shape)}"
    return site.error((p._data, g), {}, Invalid(msg))


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's bias correction, L2 weight decay and amsgrad."""

    _decoupled = False
    _op = "adam_update"

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid Adam hyperparameters: lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "amsgrad": amsgrad})

    def _update(self, p: Tensor, g: Any, group: dict, state: dict, listening: bool, index: int) -> None:
        xp = p._device.xp
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p._data)
            state["exp_avg_sq"] = xp.zeros_like(p._data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p._data)
        state["step"] += 1
        b1, b2 = group["betas"]
        self._run("adam_update", p, (p._data, g, state["exp_avg"], state["exp_avg_sq"],
                                     state.get("max_exp_avg_sq")),
                  {"lr": group["lr"], "beta1": b1, "beta2": b2, "eps": group["eps"],
                   "weight_decay": group["weight_decay"], "step": state["step"],
                   "decoupled": self._decoupled},
                  listening, index)


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01), as torch.optim.AdamW."""

    _decoupled = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, amsgrad: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
