"""`tf.train`: GradientDescent, Momentum and Adam optimizers. `minimize` adds gradient
nodes and one update node per variable that runs the registry's update op in place
(an "update"-phase event when someone listens)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import dtypes as _dt
from .._registry import REGISTRY
from .core import Operation, Tensor
from .gradients import gradients
from .ops import convert_to_tensor, zeros_like
from .session import Step, executor
from .variables import Variable, trainable_variables


class Optimizer:
    """Base: `compute_gradients`, `apply_gradients`, `minimize`, `get_slot`."""

    _type = "ApplyGradientDescent"
    _rule = "sgd_update"
    _slot_names: tuple[str, ...] = ()
    _slot_init: dict[str, float] = {}

    def __init__(self, learning_rate: Any, use_locking: bool = False, name: str = "GradientDescent") -> None:
        self._lr = learning_rate
        self._name = name
        self._slots: dict[tuple[str, str], Variable] = {}

    def compute_gradients(
        self, loss: Tensor, var_list: Sequence[Variable] | None = None, **_ignored: Any
    ) -> list[tuple[Tensor | None, Variable]]:
        var_list = list(var_list) if var_list is not None else trainable_variables(loss.graph)
        if not var_list:
            raise ValueError("no variables to optimize: create tf.Variable(...) or pass var_list=")
        grads = gradients(loss, var_list)
        return list(zip(grads, var_list))

    def _hyper(self) -> dict[str, Any]:
        return {}

    def apply_gradients(
        self,
        grads_and_vars: Sequence[tuple[Tensor | None, Variable]],
        global_step: Variable | None = None,
        name: str | None = None,
    ) -> Operation:
        gv = [(g, v) for g, v in grads_and_vars if g is not None]
        if not gv:
            raise ValueError(f"no gradients provided for any variable: {[v.name for _, v in grads_and_vars]}")
        graph = gv[0][1].graph
        gops = [g.op for g, _ in gv]
        with graph.name_scope(name or self._name) as scope:
            lr = self._lr
            lr_t = convert_to_tensor(lr, dtype=_dt.float32, name="learning_rate") if isinstance(lr, Tensor) else None
            extra = self._create_extra(graph)
            updates = []
            for g, v in gv:
                slots = [self._slot(v, s) for s in self._slot_names]
                ins = (v, g, *slots, *extra, *((lr_t,) if lr_t is not None else ()))
                # every update waits for every gradient, so no gradient reads an updated variable
                op = graph.create_op(
                    "update",
                    self._type,
                    ins,
                    {
                        "rule": self._rule,
                        "lr": None if lr_t is not None else float(lr),
                        "n_slots": len(slots),
                        "n_extra": len(extra),
                        **self._hyper(),
                    },
                    name=f"update_{v.op.name}/{self._type}",
                    out=[(v._dims, v.dtype)],
                    control_inputs=gops,
                )
                updates.append(op)
            finish = self._finish(graph, updates, extra)
            if global_step is not None:
                with graph.control_dependencies(updates):
                    finish.append(global_step.assign_add(1, name="global_step_update").op)
        return graph.create_op(
            "noop", "NoOp", (), name=scope[:-1], exact_name=True, out=[], control_inputs=[*updates, *finish]
        )

    def minimize(
        self,
        loss: Tensor,
        global_step: Variable | None = None,
        var_list: Sequence[Variable] | None = None,
        name: str | None = None,
        **_ignored: Any,
    ) -> Operation:
        return self.apply_gradients(self.compute_gradients(loss, var_list), global_step=global_step, name=name)

    def _slot(self, var: Variable, slot: str) -> Variable:
        key = (var.op.name, slot)
        s = self._slots.get(key)
        if s is None:
            g = var.graph
            with g.name_scope(var.op.name + "/"), g.control_dependencies(None):
                init = zeros_like(var.initial_value)
                fill = self._slot_init.get(slot, 0.0)  # TF1's RMSProp starts "rms" at 1, Adagrad at 0.1
                s = Variable(init + fill if fill else init, trainable=False, name=self._name)
            self._slots[key] = s
        return s

    def get_slot(self, var: Variable, name: str) -> Variable | None:
        return self._slots.get((var.op.name, name))

    def get_slot_names(self) -> list[str]:
        return list(self._slot_names)

    def _create_extra(self, graph: Any) -> list[Variable]:
        return []

    def _finish(self, graph: Any, updates: list[Operation], extra: list[Variable]) -> list[Operation]:
        return []


class GradientDescentOptimizer(Optimizer):
    def __init__(self, learning_rate: Any, use_locking: bool = False, name: str = "GradientDescent") -> None:
        super().__init__(learning_rate, use_locking, name)


class MomentumOptimizer(Optimizer):
    _type = "ApplyMomentum"
    _slot_names = ("momentum",)

    def __init__(
        self,
        learning_rate: Any,
        momentum: float,
        use_locking: bool = False,
        name: str = "Momentum",
        use_nesterov: bool = False,
    ) -> None:
        super().__init__(learning_rate, use_locking, name)
        self._momentum, self._nesterov = float(momentum), bool(use_nesterov)

    def _hyper(self) -> dict[str, Any]:
        return {"momentum": self._momentum, "nesterov": self._nesterov}


class AdamOptimizer(Optimizer):
    _type = "ApplyAdam"
    _rule = "adam_update"
    _slot_names = ("m", "v")

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        use_locking: bool = False,
        name: str = "Adam",
    ) -> None:
        super().__init__(learning_rate, use_locking, name)
        self._b1, self._b2, self._eps = float(beta1), float(beta2), float(epsilon)

    def _hyper(self) -> dict[str, Any]:
        return {"beta1": self._b1, "beta2": self._b2, "eps": self._eps}

    def _create_extra(self, graph: Any) -> list[Variable]:
        with graph.control_dependencies(None):
            return [Variable(0, trainable=False, name="step", dtype=_dt.int64)]

    def _finish(self, graph: Any, updates: list[Operation], extra: list[Variable]) -> list[Operation]:
        with graph.control_dependencies(updates):
            return [extra[0].assign_add(1, name="step_update").op]


class RMSPropOptimizer(Optimizer):
    """TF1's RMSProp (slots "rms", starting at 1, and "momentum"; "mg" when centered)."""

    _type = "ApplyRMSProp"
    _rule = "tf_rmsprop_update"

    def __init__(
        self,
        learning_rate: Any,
        decay: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-10,
        use_locking: bool = False,
        centered: bool = False,
        name: str = "RMSProp",
    ) -> None:
        super().__init__(learning_rate, use_locking, name)
        self._slot_names = ("rms", "momentum", "mg") if centered else ("rms", "momentum")
        self._slot_init = {"rms": 1.0}
        self._rms_hyper = {"decay": float(decay), "momentum": float(momentum), "eps": float(epsilon)}

    def _hyper(self) -> dict[str, Any]:
        return {"hyper": self._rms_hyper}


class AdagradOptimizer(Optimizer):
    """TF1's Adagrad (slot "accumulator", starting at `initial_accumulator_value`)."""

    _type = "ApplyAdagrad"
    _rule = "tf_adagrad_update"
    _slot_names = ("accumulator",)

    def __init__(
        self,
        learning_rate: Any,
        initial_accumulator_value: float = 0.1,
        use_locking: bool = False,
        name: str = "Adagrad",
    ) -> None:
        super().__init__(learning_rate, use_locking, name)
        self._slot_init = {"accumulator": float(initial_accumulator_value)}

    def _hyper(self) -> dict[str, Any]:
        return {"hyper": {}}


@executor("update")
def _update_step(sess: Any, op: Operation, xp: Any) -> Step:
    a = op.attrs
    rule = REGISTRY[a["rule"]]
    fwd = rule.forward
    n_slots, lr_const = a["n_slots"], a["lr"]
    if a["rule"] == "sgd_update":
        momentum, nesterov = a.get("momentum", 0.0), a.get("nesterov", False)

        def update(p: Any, g: Any, *rest: Any) -> Any:
            lr = lr_const if lr_const is not None else float(rest[-1])
            if momentum:
                return fwd(xp, p, g, rest[0], lr=lr, momentum=momentum, nesterov=nesterov)
            return fwd(xp, p, g, lr=lr)
    elif "hyper" in a:  # the TF1-only rules (RMSProp, Adagrad): slots in order, then hyperparameters
        hyper = a["hyper"]

        def update(p: Any, g: Any, *rest: Any) -> Any:
            lr = lr_const if lr_const is not None else float(rest[-1])
            return fwd(xp, p, g, *rest[:n_slots], lr=lr, **hyper)
    else:
        b1, b2, eps = a["beta1"], a["beta2"], a["eps"]

        def update(p: Any, g: Any, *rest: Any) -> Any:
            lr = lr_const if lr_const is not None else float(rest[-1])
            m, v = rest[0], rest[1]
            step = int(rest[n_slots]) + 1  # the optimizer's step variable, advanced after all updates
            return fwd(xp, p, g, m, v, lr=lr, beta1=b1, beta2=b2, eps=eps, step=step)

    step = Step(op, update, phase="update", evop=rule, grad_of=(op.inputs[0].name,))
    if a["rule"] == "sgd_update" and not momentum and lr_const is not None and len(op.inputs) == 2:
        # plain SGD: the generated plan calls the registry op itself, `p -= lr * g`, no wrapper
        step.extra["direct"] = (fwd, True, {"lr": lr_const})
    return step


from .io import CheckpointState, Saver, get_checkpoint_state, latest_checkpoint  # noqa: E402  (tf.train.*)


def get_global_step(graph: Any = None) -> Variable | None:
    """The graph's `global_step` variable, or None."""
    from .core import get_default_graph

    g = graph or get_default_graph()
    found = g.get_collection("global_step") or [v for v in g.get_collection("variables") if v.op.name == "global_step"]
    return found[0] if found else None


def get_or_create_global_step(graph: Any = None) -> Variable:
    """`global_step`: an int64 non-trainable variable starting at 0, made on first use."""
    from .core import get_default_graph

    g = graph or get_default_graph()
    step = get_global_step(g)
    if step is None:
        with g.as_default(), g.name_scope(None), g.control_dependencies(None):
            step = Variable(0, trainable=False, name="global_step", dtype=_dt.int64)
        g.add_to_collection("global_step", step)
    return step


create_global_step = get_or_create_global_step


class ExponentialMovingAverage:
    """TF1's moving averages of variables: `apply(var_list)` makes a shadow variable per
    variable (`VAR/ExponentialMovingAverage`, starting at the variable's initial value) and
    returns the op that moves each one: shadow -= (1 - decay) * (shadow - var), with decay
    min(decay, (1 + n) / (10 + n)) when `num_updates` is given."""

    def __init__(
        self, decay: float, num_updates: Any = None, zero_debias: bool = False, name: str = "ExponentialMovingAverage"
    ) -> None:
        self._decay, self._num_updates, self._name = float(decay), num_updates, name
        self._averages: dict[str, Variable] = {}

    @property
    def name(self) -> str:
        return self._name

    def apply(self, var_list: Any = None) -> Operation:
        from .ops import cast, group, minimum, multiply, name_scope, subtract

        var_list = list(var_list) if var_list is not None else trainable_variables()
        updates = []
        with name_scope(self._name):
            decay: Any = self._decay
            if self._num_updates is not None:
                n = cast(self._num_updates, _dt.float32)
                decay = minimum(decay, (n + 1.0) / (n + 10.0))
            for v in var_list:
                avg = self._averages.get(v.op.name)
                if avg is None:
                    g = v.graph
                    with g.name_scope(v.op.name + "/"), g.control_dependencies(None):
                        avg = Variable(v.initial_value, trainable=False, name=self._name)
                    g.add_to_collection("moving_average_variables", v)
                    self._averages[v.op.name] = avg
                keep = cast(decay, v.dtype) if isinstance(decay, Tensor) else decay
                updates.append(avg.assign_sub(multiply(subtract(avg, v), subtract(1.0, keep))).op)
        return group(*updates, name=self._name)

    def average(self, var: Variable) -> Variable | None:
        return self._averages.get(var.op.name)

    def average_name(self, var: Variable) -> str:
        return f"{var.op.name}/{self._name}"

    def variables_to_restore(self, moving_avg_variables: Any = None) -> dict[str, Variable]:
        """{name in a checkpoint: variable}: each averaged variable restored from its average."""
        from .core import get_default_graph

        out: dict[str, Variable] = {}
        for v in get_default_graph().get_collection("variables"):
            if v.op.name in self._averages:
                out[self.average_name(v)] = v
            elif all(a is not v for a in self._averages.values()):
                out[v.op.name] = v
        return out


def exponential_decay(
    learning_rate: Any,
    global_step: Any,
    decay_steps: Any,
    decay_rate: Any,
    staircase: bool = False,
    name: str | None = None,
) -> Tensor:
    """learning_rate * decay_rate ** (global_step / decay_steps) (the exponent floored when
    `staircase`), a float32 tensor that optimizers take as their learning rate."""
    from .ops import cast, floor, multiply, name_scope, pow

    with name_scope(name or "ExponentialDecay"):
        p = cast(global_step, _dt.float32) / float(decay_steps)
        if staircase:
            p = floor(p)
        return multiply(float(learning_rate), pow(float(decay_rate), p), name="learning_rate")


__all__ = [
    "Optimizer",
    "GradientDescentOptimizer",
    "MomentumOptimizer",
    "AdamOptimizer",
    "RMSPropOptimizer",
    "AdagradOptimizer",
    "Saver",
    "latest_checkpoint",
    "get_checkpoint_state",
    "CheckpointState",
    "get_global_step",
    "get_or_create_global_step",
    "create_global_step",
    "exponential_decay",
    "ExponentialMovingAverage",
]
