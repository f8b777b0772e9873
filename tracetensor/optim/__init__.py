"""`tt.optim`: SGD, Adam, AdamW, Adagrad, RMSprop, Adadelta and LBFGS with PyTorch's update
rules (`tt.optim.lr_scheduler` holds the schedulers). Updates are in place on the
parameter arrays; each parameter's update passes the dispatch point as an "update"
event when someone listens, and costs what hand-written numpy costs when nobody does."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import _source
from .._dispatch import Site, dispatch, named_site, site_of
from .._grad_mode import enable_grad
from .._naming import update_names
from .._registry import REGISTRY, OpDef
from ..errors import Invalid, TraceTensorError
from ..events import STATE
from ..events import update_done as _end_step
from ..tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta", "LBFGS", "lr_scheduler"]

_tuple_new = tuple.__new__  # Sites are made in their field order (see _dispatch.Site)


class Optimizer:
    """Base class: `param_groups` (lists of parameters with their hyperparameters),
    per-parameter `state`, `zero_grad`, `step`, `state_dict`/`load_state_dict`."""

    _op = "sgd_update"  # the registry op of one parameter's update
    _held_stack: Any = None  # while a step holds the user's stack: it (the updates' sites carry it)

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
        seen = {id(q) for g in self.param_groups for q in g["params"]}
        for p in params:
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TraceTensorError(
                    f"{type(self).__name__} can only optimize tensors that require grad, got {type(p).__name__}"
                )
            if id(p) in seen:
                raise ValueError("some parameters appear in more than one parameter group")
            seen.add(id(p))
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
        loss = _call(closure)
        listening = STATE.named  # (a `names=False` listener alone: unnamed sites, see _run)
        # the updates' stack (the user's `step()` line), taken once (see _source.hold)
        outer = _source.hold() if listening and STATE.stacks and _library_update(type(self)) else None
        if outer is not None:
            self._held_stack = outer[2]
        try:
            for group in self.param_groups:
                for i, p in enumerate(group["params"]):
                    if p.grad is not None:
                        g = p.grad._data
                        if g.shape != p._data.shape:
                            raise _grad_error(self._op, p, g)
                        self._update(p, g, group, self.state.setdefault(id(p), {}), listening, i)
        finally:
            if outer is not None:
                _source.release(outer)
                self._held_stack = None
        if STATE.listeners:
            _end_step()  # an eager step (run) ends with its update; the next op begins the next
        return loss

    def _update(self, p: Tensor, g: Any, group: dict, state: dict, listening: bool, index: int) -> None:
        raise NotImplementedError

    def _run(
        self, opname: str, p: Tensor, args: tuple, attrs: dict, listening: bool, index: int, fn: Any = None
    ) -> None:
        """One parameter's update, through the dispatch point: the op's forward on (xp, *args),
        or `fn(*args)` when given (the same update, leaner: plain SGD's `_sub_scaled`)."""
        op = REGISTRY[opname]
        if listening:
            site = named_site(_update_site, p._name or f"param_{index}", op, p._device, self._held_stack)
        else:
            site = site_of(op, "update")
        if fn is None:
            dispatch(site, op.forward, (p._device.xp, *args), args[:2], attrs)
        else:
            dispatch(site, fn, args, args[:2])

    # state as plain data (tt.save can write it): per-parameter state indexed by position
    def state_dict(self) -> dict[str, Any]:
        order = [id(p) for g in self.param_groups for p in g["params"]]
        state = {}
        for k, pid in enumerate(order):
            if pid in self.state and self.state[pid]:
                state[k] = {
                    n: (Tensor._make(v, _dev_of(self, pid)) if hasattr(v, "shape") else v)
                    for n, v in self.state[pid].items()
                }
        groups = []
        k = 0
        for g in self.param_groups:
            groups.append(
                {**{n: v for n, v in g.items() if n != "params"}, "params": list(range(k, k + len(g["params"])))}
            )
            k += len(g["params"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)
        ):
            raise TraceTensorError(
                "loaded optimizer state has a different number of parameter groups or parameters than this optimizer"
            )
        params = [p for g in self.param_groups for p in g["params"]]
        for g, saved in zip(self.param_groups, groups):
            g.update({n: v for n, v in saved.items() if n != "params"})
        self.state = {}
        for k, st in state_dict["state"].items():
            p = params[int(k)]
            self.state[id(p)] = {
                n: (
                    p._device.xp.array(v._data if isinstance(v, Tensor) else v)
                    if isinstance(v, Tensor) or hasattr(v, "shape")
                    else v
                )
                for n, v in st.items()
            }


def _library_update(cls: type) -> bool:
    """Whether `cls._update` is tracetensor's own (a user's optimizer may run ops of its own lines)."""
    code = getattr(getattr(cls, "_update", None), "__code__", None)
    return code is not None and _source._is_internal(code.co_filename)


def _call(closure: Any) -> Any:
    """The closure's loss, computed with gradients on (as PyTorch's optimizers do)."""
    if closure is None:
        return None
    with enable_grad():
        return closure()


def _dev_of(opt: Optimizer, pid: int) -> Any:
    for g in opt.param_groups:
        for p in g["params"]:
            if id(p) == pid:
                return p._device
    raise KeyError(pid)


class SGD(Optimizer):
    """Stochastic gradient descent with PyTorch's momentum, dampening, Nesterov and L2 weight decay."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"invalid SGD hyperparameters: lr={lr}, momentum={momentum}, "
                f"weight_decay={weight_decay} (all must be >= 0)"
            )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(
            params,
            {
                "lr": lr,
                "momentum": momentum,
                "dampening": dampening,
                "weight_decay": weight_decay,
                "nesterov": nesterov,
            },
        )

    def step(self, closure: Any = None) -> Any:
        if type(self)._update is not SGD._update:  # (a subclass's own update runs the general loop)
            return super().step(closure)
        for group in self.param_groups:  # (a loop: any() over a generator costs more than the updates' checks)
            if group["momentum"] or group["weight_decay"]:
                return super().step(closure)
        loss = _call(closure)
        # the plain step, with no per-parameter bookkeeping; observed with names, each update is
        # an op named after its parameter (as `_run` names it), without the general loop's state per parameter
        named = STATE.named
        if not named:
            for group in self.param_groups:
                lr = group["lr"]
                for p in group["params"]:
                    if p.grad is not None:
                        _plain_sgd(p, p.grad._data, lr)
            if STATE.listeners:  # (timings only: see events.subscribe's `names`)
                _end_step()
            return loss
        # what `_run` does, inline: a training loop's every step runs this for each parameter
        op = REGISTRY[self._op]
        outer = _source.hold() if STATE.stacks else None  # (the updates' stack, see Optimizer.step)
        held = outer[2] if outer is not None else None
        try:
            for group in self.param_groups:
                lr = group["lr"]
                for i, p in enumerate(group["params"]):
                    if p.grad is None:
                        continue
                    g, d = p.grad._data, p._data
                    if g.shape != d.shape:
                        raise _grad_error(self._op, p, g)
                    site = named_site(_update_site, p._name or f"param_{i}", op, p._device, held)
                    dispatch(site, _sub_scaled, (d, g, lr), (d, g))
        finally:
            if outer is not None:
                _source.release(outer)
        if STATE.listeners:  # (timings only: see events.subscribe's `names`)
            _end_step()
        return loss

    def _update(self, p: Tensor, g: Any, group: dict, state: dict, listening: bool, index: int) -> None:
        momentum = group["momentum"]
        if not momentum and not group["weight_decay"] and not listening:
            _plain_sgd(p, g, group["lr"])
            return
        if not momentum and not group["weight_decay"]:  # observed plain SGD: p -= lr * g
            self._run("sgd_update", p, (p._data, g, group["lr"]), {}, listening, index, _sub_scaled)
            return
        buf = None
        first = False
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = p._device.xp.empty_like(p._data)
                first = True
        self._run(
            "sgd_update",
            p,
            (p._data, g, buf),
            {
                "lr": group["lr"],
                "momentum": momentum,
                "dampening": group["dampening"],
                "weight_decay": group["weight_decay"],
                "nesterov": group["nesterov"],
                "first": first,
            },
            listening,
            index,
        )


def _update_site(pname: str, op: OpDef, dev: Any, stack: Any) -> Site:
    """The named Site of op `op` updating parameter `pname` (see `named_site`); `stack`: the
    user's `step()` line that the step holds, or None (each update looks)."""
    uname, uins, uouts = update_names(pname)
    return _tuple_new(Site, (op, "update", "eager", op.name, uname, uins, dev, stack, None, (), uouts, None, False))


def _plain_sgd(p: Tensor, g: Any, lr: float) -> None:
    """`p -= lr * g`, exactly what hand-written numpy does, with the checks of the update op."""
    if g.shape != p._data.shape:
        raise _grad_error("sgd_update", p, g)
    if STATE.listeners:  # timings only (see events.subscribe's `names`): this update, timed
        dispatch(_SGD_SITE, _sub_scaled, (p._data, g, lr), (p._data, g))
        return
    try:
        _sub_scaled(p._data, g, lr)
    except Exception as e:
        raise site_of(REGISTRY["sgd_update"], "update").error((p._data, g), {"lr": lr}, e) from None


_SGD_SITE = site_of(REGISTRY["sgd_update"], "update")  # (the unnamed site, made once)


def _sub_scaled(p: Any, g: Any, lr: float) -> Any:
    """`sgd_update` without momentum or weight decay: `p -= lr * g`, in place."""
    p -= lr * g
    return p


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

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid Adam hyperparameters: lr={lr}, betas={betas}, eps={eps}")
        super().__init__(
            params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad}
        )

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
        self._run(
            "adam_update",
            p,
            (p._data, g, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq")),
            {
                "lr": group["lr"],
                "beta1": b1,
                "beta2": b2,
                "eps": group["eps"],
                "weight_decay": group["weight_decay"],
                "step": state["step"],
                "decoupled": self._decoupled,
            },
            listening,
            index,
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01), as torch.optim.AdamW."""

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class Adagrad(Optimizer):
    """Adagrad with PyTorch's lr_decay, weight_decay, initial_accumulator_value and eps."""

    _op = "adagrad_update"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        if lr < 0 or lr_decay < 0 or weight_decay < 0 or eps < 0 or initial_accumulator_value < 0:
            raise ValueError(
                f"invalid Adagrad hyperparameters: lr={lr}, lr_decay={lr_decay}, weight_decay={weight_decay}, eps={eps}"
            )
        super().__init__(
            params,
            {
                "lr": lr,
                "lr_decay": lr_decay,
                "weight_decay": weight_decay,
                "initial_accumulator_value": initial_accumulator_value,
                "eps": eps,
            },
        )
        for g in self.param_groups:  # PyTorch creates Adagrad's state up front
            for p in g["params"]:
                self.state[id(p)] = {"step": 0, "sum": p._device.xp.full_like(p._data, g["initial_accumulator_value"])}

    def _update(self, p: Tensor, g: Any, group: dict, state: dict, listening: bool, index: int) -> None:
        state["step"] += 1
        self._run(
            "adagrad_update",
            p,
            (p._data, g, state["sum"]),
            {
                "lr": group["lr"],
                "lr_decay": group["lr_decay"],
                "weight_decay": group["weight_decay"],
                "eps": group["eps"],
                "step": state["step"],
            },
            listening,
            index,
        )


class RMSprop(Optimizer):
    """RMSprop with PyTorch's alpha, eps, weight_decay, momentum and centered options."""

    _op = "rmsprop_update"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        if lr < 0 or eps < 0 or momentum < 0 or weight_decay < 0 or alpha < 0:
            raise ValueError(
                f"invalid RMSprop hyperparameters: lr={lr}, alpha={alpha}, eps={eps}, "
                f"momentum={momentum}, weight_decay={weight_decay}"
            )
        super().__init__(
            params,
            {
                "lr": lr,
                "alpha": alpha,
                "eps": eps,
                "weight_decay": weight_decay,
                "momentum": momentum,
                "centered": centered,
            },
        )

    def _update(self, p: Tensor, g: Any, group: dict, state: dict, listening: bool, index: int) -> None:
        xp = p._device.xp
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p._data)
            if group["momentum"] > 0:
                state["momentum_buffer"] = xp.zeros_like(p._data)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(p._data)
        state["step"] += 1
        self._run(
            "rmsprop_update",
            p,
            (p._data, g, state["square_avg"], state.get("grad_avg"), state.get("momentum_buffer")),
            {
                "lr": group["lr"],
                "alpha": group["alpha"],
                "eps": group["eps"],
                "weight_decay": group["weight_decay"],
                "momentum": group["momentum"],
                "centered": group["centered"],
            },
            listening,
            index,
        )


class Adadelta(Optimizer):
    """Adadelta with PyTorch's defaults (lr=1.0, rho=0.9, eps=1e-6)."""

    _op = "adadelta_update"

    def __init__(
        self, params: Iterable[Any], lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0
    ) -> None:
        if lr < 0 or not 0 <= rho <= 1 or eps < 0 or weight_decay < 0:
            raise ValueError(
                f"invalid Adadelta hyperparameters: lr={lr}, rho={rho}, eps={eps}, weight_decay={weight_decay}"
            )
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay})

    def _update(self, p: Tensor, g: Any, group: dict, state: dict, listening: bool, index: int) -> None:
        xp = p._device.xp
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p._data)
            state["acc_delta"] = xp.zeros_like(p._data)
        state["step"] += 1
        self._run(
            "adadelta_update",
            p,
            (p._data, g, state["square_avg"], state["acc_delta"]),
            {"lr": group["lr"], "rho": group["rho"], "eps": group["eps"], "weight_decay": group["weight_decay"]},
            listening,
            index,
        )


class LBFGS(Optimizer):
    """L-BFGS as torch.optim.LBFGS (one parameter group; `step(closure)` re-evaluates the loss;
    `line_search_fn=None` or "strong_wolfe"). Each parameter move passes the dispatch point as
    an `lbfgs_update` event."""

    _op = "lbfgs_update"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"only 'strong_wolfe' is supported as LBFGS line_search_fn, got {line_search_fn!r}")
        super().__init__(
            params,
            {
                "lr": lr,
                "max_iter": max_iter,
                "max_eval": max_eval if max_eval is not None else max_iter * 5 // 4,
                "tolerance_grad": tolerance_grad,
                "tolerance_change": tolerance_change,
                "history_size": history_size,
                "line_search_fn": line_search_fn,
            },
        )
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")

    def _flat_grad(self) -> Any:
        ps = self.param_groups[0]["params"]
        xp = ps[0]._device.xp
        return xp.concatenate(
            [(p.grad._data if p.grad is not None else xp.zeros_like(p._data)).reshape(-1) for p in ps]
        )

    def _add(self, t: float, d: Any) -> None:
        listening = STATE.named
        k = 0
        for i, p in enumerate(self.param_groups[0]["params"]):
            n = p._data.size
            self._run("lbfgs_update", p, (p._data, d[k : k + n]), {"t": float(t)}, listening, i)
            k += n

    def step(self, closure: Any = None) -> Any:
        if closure is None:
            raise TraceTensorError(
                "LBFGS.step needs a closure that clears the gradients, computes the loss, "
                "calls backward() and returns the loss"
            )
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tol_grad, tol_change, history = group["tolerance_grad"], group["tolerance_change"], group["history_size"]
        state = self.state.setdefault(id(group["params"][0]), {})
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        orig_loss = _call(closure)
        loss = float(orig_loss)
        evals = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad()
        if abs(flat_grad).max() <= tol_grad:
            return orig_loss
        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        h_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d, old_dirs, old_stps, ro, h_diag = -flat_grad, [], [], [], 1
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:
                    if len(old_dirs) == history:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / float(y @ y)
                al = [0.0] * len(old_dirs)
                q = -flat_grad
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q = q - al[i] * old_dirs[i]
                d = r = q * h_diag
                for i in range(len(old_dirs)):
                    be_i = float(old_dirs[i] @ r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss
            t = min(1.0, 1.0 / float(abs(flat_grad).sum())) * lr if state["n_iter"] == 1 else lr
            gtd = float(flat_grad @ d)
            if gtd > -tol_change:
                break
            ls_evals = 0
            opt_cond = False
            if group["line_search_fn"] == "strong_wolfe":
                params = group["params"]
                x_init = [p._data.copy() for p in params]

                def obj_func(t_: float, d_: Any, params: list = params, x_init: list = x_init) -> tuple[float, Any]:
                    self._add(t_, d_)
                    f_ = float(_call(closure))
                    g_ = self._flat_grad()
                    for p, x0 in zip(params, x_init):
                        p._data[...] = x0
                    return f_, g_

                loss, flat_grad, t, ls_evals = _strong_wolfe(obj_func, t, d, loss, flat_grad, gtd)
                self._add(t, d)
                opt_cond = abs(flat_grad).max() <= tol_grad
            else:
                self._add(t, d)
                if n_iter != max_iter:
                    loss = float(_call(closure))
                    flat_grad = self._flat_grad()
                    opt_cond = abs(flat_grad).max() <= tol_grad
                    ls_evals = 1
            evals += ls_evals
            state["func_evals"] += ls_evals
            if n_iter == max_iter or evals >= max_eval or opt_cond:
                break
            if abs(d * t).max() <= tol_change or abs(loss - prev_loss) < tol_change:
                break
        state.update(
            d=d,
            t=t,
            old_dirs=old_dirs,
            old_stps=old_stps,
            ro=ro,
            H_diag=h_diag,
            prev_flat_grad=prev_flat_grad,
            prev_loss=prev_loss,
        )
        if STATE.listeners:
            _end_step()
        return orig_loss


def _cubic_interpolate(
    x1: float, f1: float, g1: float, x2: float, f2: float, g2: float, bounds: tuple[float, float] | None = None
) -> float:
    """The minimizer of the cubic through two points with their slopes, within bounds."""
    lo, hi = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = d2_square**0.5
        if x1 <= x2:
            pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(pos, lo), hi)
    return (lo + hi) / 2.0


def _strong_wolfe(
    obj_func: Any,
    t: float,
    d: Any,
    f: float,
    g: Any,
    gtd: float,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
) -> tuple:
    """PyTorch's strong-Wolfe line search (bracketing, then zoom by cubic interpolation)."""
    d_norm = float(abs(d).max())
    g = g.copy()
    f_new, g_new = obj_func(t, d)
    evals = 1
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket: list = []
    bracket_f: list = []
    bracket_g: list = []
    bracket_gtd: list = []
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        min_step, max_step = t + 0.01 * (t - t_prev), t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(t, d)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]
    insuf_progress = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(t, d)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low]:
            bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = t, f_new, g_new.copy(), gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low] = t, f_new, g_new.copy(), gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evals


from . import lr_scheduler  # noqa: E402  (tt.optim.lr_scheduler, as torch.optim.lr_scheduler)
