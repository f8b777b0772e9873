"""TF1's recurrent cells and loops (`tf.nn.rnn_cell`, `tf.contrib.rnn`, `tf.nn.static_rnn`,
`tf.nn.dynamic_rnn`): each time step is ordinary graph nodes over the registry, so gradients
flow through time with `tf.gradients` and every step shows in the debugger. A cell creates
its variables on its first call, named as TF names them (`rnn/basic_lstm_cell/kernel`), and
uses them on every later call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from .core import InvalidArgumentError, Tensor, get_default_graph
from .layers import ones_initializer, unique_layer_name, zeros_initializer
from .nn_ops import dropout, split, unstack
from .ops import (
    _tensors,
    add,
    clip_by_value,
    concat,
    expand_dims,
    float32,
    less,
    matmul,
    multiply,
    shape,
    sigmoid,
    stack,
    strided_slice,
    subtract,
    tanh,
    where,
    zeros,
)
from .variables import get_variable, variable_scope


class LSTMStateTuple(NamedTuple):
    """An LSTM's state: (c, h)."""

    c: Any
    h: Any

    @property
    def dtype(self) -> Any:
        return self.c.dtype


def _flatten(s: Any) -> list[Any]:
    if isinstance(s, (tuple, list)):
        return [x for i in s for x in _flatten(i)]
    return [s]


def _pack_like(structure: Any, flat: list[Any]) -> Any:
    it = iter(flat)

    def build(s: Any) -> Any:
        if isinstance(s, LSTMStateTuple):
            return LSTMStateTuple(build(s.c), build(s.h))
        if isinstance(s, (tuple, list)):
            return type(s)(build(i) for i in s)
        return next(it)

    return build(structure)


class RNNCell:
    """Base of the cells: `cell(inputs, state) -> (output, new_state)`, `state_size`,
    `output_size`, `zero_state(batch_size, dtype)`."""

    _base = "rnn_cell"

    def __init__(self, reuse: Any = None, name: str | None = None, dtype: Any = None) -> None:
        self._name = name
        self._scope: str | None = None
        self._built = False
        self._reuse = reuse
        self.variables: list[Tensor] = []

    @property
    def state_size(self) -> Any:
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    def zero_state(self, batch_size: Any, dtype: Any = float32) -> Any:
        def z(size: Any) -> Any:
            if isinstance(size, (tuple, list)):
                parts = [z(s) for s in size]
                return LSTMStateTuple(*parts) if isinstance(size, LSTMStateTuple) else type(size)(parts)
            return zeros([batch_size, size], dtype=dtype)

        return z(self.state_size)

    @property
    def trainable_variables(self) -> list[Tensor]:
        return list(self.variables)

    weights = trainable_variables

    def _get(self, name: str, shape: Sequence[int], dtype: Any, initializer: Any = None) -> Tensor:
        v = get_variable(name, list(shape), dtype, initializer)
        self.variables.append(v)
        return v

    def __call__(self, inputs: Any, state: Any, scope: Any = None) -> tuple[Any, Any]:
        (x,) = _tensors(inputs)
        if x._dims is None or x._dims[-1] is None:
            raise InvalidArgumentError(
                f"{type(self).__name__}: the input '{x.name}' (shape {x.shape}) needs a known last dimension"
            )
        if not self._built:
            name = self._name or (scope if isinstance(scope, str) else None) or unique_layer_name(self._base)
            with variable_scope(name, reuse=self._reuse) as vs:
                self._scope = vs
                self.build(x._dims[-1], x.dtype)
            self._built = True
        g = get_default_graph()
        with g.name_scope(self._scope + "/"):
            return self.call(x, state)

    def build(self, input_depth: int, dtype: Any) -> None:
        pass

    def call(self, inputs: Tensor, state: Any) -> tuple[Any, Any]:
        raise NotImplementedError


class _UnitsCell(RNNCell):
    """A cell whose state and output are both one tensor of `num_units` (RNN, GRU)."""

    _units: int

    @property
    def state_size(self) -> int:
        return self._units

    @property
    def output_size(self) -> int:
        return self._units


class BasicRNNCell(_UnitsCell):
    """h' = activation(concat([x, h]) @ kernel + bias)."""

    _base = "basic_rnn_cell"

    def __init__(
        self, num_units: int, activation: Any = None, reuse: Any = None, name: str | None = None, dtype: Any = None
    ) -> None:
        super().__init__(reuse, name, dtype)
        self._units, self._act = int(num_units), activation or tanh

    def build(self, input_depth: int, dtype: Any) -> None:
        self._kernel = self._get("kernel", [input_depth + self._units, self._units], dtype)
        self._bias = self._get("bias", [self._units], dtype, zeros_initializer())

    def call(self, inputs: Tensor, state: Any) -> tuple[Any, Any]:
        h = self._act(add(matmul(concat([inputs, state], 1), self._kernel), self._bias))
        return h, h


class BasicLSTMCell(RNNCell):
    """TF's LSTM: gates i, j, f, o from one kernel over concat([x, h]); the forget gate's
    bias starts at `forget_bias`. The state is LSTMStateTuple(c, h)."""

    _base = "basic_lstm_cell"

    def __init__(
        self,
        num_units: int,
        forget_bias: float = 1.0,
        state_is_tuple: bool = True,
        activation: Any = None,
        reuse: Any = None,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(reuse, name, dtype)
        self._units, self._forget_bias = int(num_units), float(forget_bias)
        self._tuple, self._act = bool(state_is_tuple), activation or tanh
        self._num_proj: int | None = None

    @property
    def state_size(self) -> Any:
        h = self._num_proj or self._units
        return LSTMStateTuple(self._units, h) if self._tuple else self._units + h

    @property
    def output_size(self) -> int:
        return self._num_proj or self._units

    def build(self, input_depth: int, dtype: Any) -> None:
        h = self._num_proj or self._units
        self._kernel = self._get("kernel", [input_depth + h, 4 * self._units], dtype, self._kernel_init())
        self._bias = self._get("bias", [4 * self._units], dtype, zeros_initializer())

    def _kernel_init(self) -> Any:
        return None

    def _split_state(self, state: Any) -> tuple[Tensor, Tensor]:
        if self._tuple:
            c, h = state
            return c, h
        c, h = split(state, [self._units, self._num_proj or self._units], axis=1)
        return c, h

    def call(self, inputs: Tensor, state: Any) -> tuple[Any, Any]:
        c, h = self._split_state(state)
        gates = add(matmul(concat([inputs, h], 1), self._kernel), self._bias)
        i, j, f, o = split(gates, 4, axis=1)
        new_c, new_h = self._update(c, i, j, f, o)
        new_state = LSTMStateTuple(new_c, new_h) if self._tuple else concat([new_c, new_h], 1)
        return new_h, new_state

    def _update(self, c: Tensor, i: Tensor, j: Tensor, f: Tensor, o: Tensor) -> tuple[Tensor, Tensor]:
        new_c = add(multiply(c, sigmoid(add(f, self._forget_bias))), multiply(sigmoid(i), self._act(j)))
        return new_c, multiply(self._act(new_c), sigmoid(o))


class LSTMCell(BasicLSTMCell):
    """BasicLSTMCell plus TF's options: `initializer` for the kernel, `use_peepholes`,
    `cell_clip`, and a projection of h to `num_proj` units (`proj_clip`)."""

    _base = "lstm_cell"

    def __init__(
        self,
        num_units: int,
        use_peepholes: bool = False,
        cell_clip: float | None = None,
        initializer: Any = None,
        num_proj: int | None = None,
        proj_clip: float | None = None,
        num_unit_shards: Any = None,
        num_proj_shards: Any = None,
        forget_bias: float = 1.0,
        state_is_tuple: bool = True,
        activation: Any = None,
        reuse: Any = None,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(num_units, forget_bias, state_is_tuple, activation, reuse, name, dtype)
        self._peep, self._cell_clip, self._init = bool(use_peepholes), cell_clip, initializer
        self._num_proj, self._proj_clip = (int(num_proj) if num_proj else None), proj_clip

    def _kernel_init(self) -> Any:
        return self._init

    def build(self, input_depth: int, dtype: Any) -> None:
        super().build(input_depth, dtype)
        if self._peep:
            self._wf = self._get("w_f_diag", [self._units], dtype, self._init)
            self._wi = self._get("w_i_diag", [self._units], dtype, self._init)
            self._wo = self._get("w_o_diag", [self._units], dtype, self._init)
        if self._num_proj:
            with variable_scope("projection"):
                self._proj = self._get("kernel", [self._units, self._num_proj], dtype, self._init)

    def _update(self, c: Tensor, i: Tensor, j: Tensor, f: Tensor, o: Tensor) -> tuple[Tensor, Tensor]:
        if self._peep:
            f = add(f, multiply(self._wf, c))
            i = add(i, multiply(self._wi, c))
        new_c = add(multiply(c, sigmoid(add(f, self._forget_bias))), multiply(sigmoid(i), self._act(j)))
        if self._cell_clip is not None:
            new_c = clip_by_value(new_c, -self._cell_clip, self._cell_clip)
        if self._peep:
            o = add(o, multiply(self._wo, new_c))
        h = multiply(sigmoid(o), self._act(new_c))
        if self._num_proj:
            h = matmul(h, self._proj)
            if self._proj_clip is not None:
                h = clip_by_value(h, -self._proj_clip, self._proj_clip)
        return new_c, h


class GRUCell(_UnitsCell):
    """TF's GRU: r, u = sigmoid(concat([x, h]) @ gates/kernel + gates/bias (starting at 1));
    c = act(concat([x, r * h]) @ candidate/kernel + candidate/bias); h' = u * h + (1 - u) * c."""

    _base = "gru_cell"

    def __init__(
        self,
        num_units: int,
        activation: Any = None,
        reuse: Any = None,
        kernel_initializer: Any = None,
        bias_initializer: Any = None,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(reuse, name, dtype)
        self._units, self._act = int(num_units), activation or tanh
        self._kinit, self._binit = kernel_initializer, bias_initializer

    def build(self, input_depth: int, dtype: Any) -> None:
        n = self._units
        with variable_scope("gates"):
            self._gk = self._get("kernel", [input_depth + n, 2 * n], dtype, self._kinit)
            self._gb = self._get("bias", [2 * n], dtype, self._binit or ones_initializer())
        with variable_scope("candidate"):
            self._ck = self._get("kernel", [input_depth + n, n], dtype, self._kinit)
            self._cb = self._get("bias", [n], dtype, self._binit or zeros_initializer())

    def call(self, inputs: Tensor, state: Any) -> tuple[Any, Any]:
        gates = sigmoid(add(matmul(concat([inputs, state], 1), self._gk), self._gb))
        r, u = split(gates, 2, axis=1)
        c = self._act(add(matmul(concat([inputs, multiply(r, state)], 1), self._ck), self._cb))
        h = add(multiply(u, state), multiply(subtract(1.0, u), c))
        return h, h


class MultiRNNCell(RNNCell):
    """Cells stacked: each one's output is the next one's input (variables under cell_0/, cell_1/ ...)."""

    _base = "multi_rnn_cell"

    def __init__(self, cells: Sequence[RNNCell], state_is_tuple: bool = True) -> None:
        super().__init__()
        if not cells:
            raise InvalidArgumentError("MultiRNNCell needs at least one cell")
        if not state_is_tuple:
            raise InvalidArgumentError("MultiRNNCell supports state_is_tuple=True only")
        self._cells = list(cells)

    @property
    def state_size(self) -> Any:
        return tuple(c.state_size for c in self._cells)

    @property
    def output_size(self) -> int:
        return self._cells[-1].output_size

    def zero_state(self, batch_size: Any, dtype: Any = float32) -> Any:
        return tuple(c.zero_state(batch_size, dtype) for c in self._cells)

    def call(self, inputs: Tensor, state: Any) -> tuple[Any, Any]:
        out, new = inputs, []
        for k, cell in enumerate(self._cells):
            with variable_scope(f"cell_{k}"):
                out, s = cell(out, state[k])
            new.append(s)
        for cell in self._cells:
            self.variables.extend(v for v in cell.variables if v not in self.variables)
        return out, tuple(new)


class DropoutWrapper(RNNCell):
    """Dropout on a cell's inputs, outputs and (new) state, with TF1's keep probabilities
    (Python numbers or placeholders)."""

    def __init__(
        self,
        cell: RNNCell,
        input_keep_prob: Any = 1.0,
        output_keep_prob: Any = 1.0,
        state_keep_prob: Any = 1.0,
        variational_recurrent: bool = False,
        input_size: Any = None,
        dtype: Any = None,
        seed: int | None = None,
        dropout_state_filter_visitor: Any = None,
    ) -> None:
        super().__init__()
        if variational_recurrent:
            raise InvalidArgumentError("DropoutWrapper(variational_recurrent=True) is not supported")
        self._cell, self._seed = cell, seed
        self._in, self._out, self._state = input_keep_prob, output_keep_prob, state_keep_prob

    @property
    def state_size(self) -> Any:
        return self._cell.state_size

    @property
    def output_size(self) -> int:
        return self._cell.output_size

    def zero_state(self, batch_size: Any, dtype: Any = float32) -> Any:
        return self._cell.zero_state(batch_size, dtype)

    def _drop(self, x: Any, keep: Any) -> Any:
        if not isinstance(keep, Tensor) and float(keep) == 1.0:
            return x
        return dropout(x, keep_prob=keep, seed=self._seed)

    def __call__(self, inputs: Any, state: Any, scope: Any = None) -> tuple[Any, Any]:
        out, new = self._cell(self._drop(inputs, self._in), state, scope)
        self.variables = self._cell.variables
        if not isinstance(self._state, Tensor) and float(self._state) == 1.0:
            pass
        elif isinstance(new, LSTMStateTuple):  # TF drops h, not the memory c
            new = LSTMStateTuple(new.c, self._drop(new.h, self._state))
        else:
            new = _pack_like(new, [self._drop(s, self._state) for s in _flatten(new)])
        return self._drop(out, self._out), new


# --------------------------------------------------------------------------- loops


def _initial_state(cell: RNNCell, first: Tensor, initial_state: Any, dtype: Any) -> Any:
    if initial_state is not None:
        return initial_state
    if dtype is None:
        raise InvalidArgumentError("give an initial_state or a dtype (as TF requires)")
    batch = first._dims[0] if first._dims and first._dims[0] is not None else strided_slice(shape(first), 0)
    return cell.zero_state(batch, dtype)


def _masked(mask: Tensor, new: Any, old: Any) -> Any:
    """Where the step is past a sequence's length, the old value (per batch row)."""
    return _pack_like(new, [where(mask, n, o) for n, o in zip(_flatten(new), _flatten(old))])


def _loop(
    cell: RNNCell, steps: list[Tensor], initial_state: Any, dtype: Any, sequence_length: Any, scope: str
) -> tuple[list[Tensor], Any]:
    if not steps:
        raise InvalidArgumentError("the RNN needs at least one time step")
    outputs = []
    with variable_scope(scope):
        state = _initial_state(cell, steps[0], initial_state, dtype)
        seq = None
        if sequence_length is not None:
            (seq,) = _tensors(sequence_length)
        for t, x in enumerate(steps):
            out, new = cell(x, state)
            if seq is not None:
                mask = expand_dims(less(t, seq), 1)  # (batch, 1): still inside the sequence
                out = where(mask, out, multiply(out, 0.0))  # TF gives zeros past the end
                new = _masked(mask, new, state)
            outputs.append(out)
            state = new
    return outputs, state


def static_rnn(
    cell: RNNCell,
    inputs: Sequence[Any],
    initial_state: Any = None,
    dtype: Any = None,
    sequence_length: Any = None,
    scope: str | None = None,
) -> tuple[list[Tensor], Any]:
    """The cell over a Python list of (batch, depth) inputs: (list of outputs, final state).
    With `sequence_length`, outputs past each row's length are zeros and its state stops there."""
    if isinstance(inputs, Tensor):
        raise InvalidArgumentError("static_rnn takes a list of tensors, one per step (tf.unstack the input)")
    return _loop(cell, [_tensors(x)[0] for x in inputs], initial_state, dtype, sequence_length, scope or "rnn")


def dynamic_rnn(
    cell: RNNCell,
    inputs: Any,
    sequence_length: Any = None,
    initial_state: Any = None,
    dtype: Any = None,
    parallel_iterations: Any = None,
    swap_memory: bool = False,
    time_major: bool = False,
    scope: str | None = None,
) -> tuple[Tensor, Any]:
    """The cell over a (batch, time, depth) tensor ((time, batch, depth) when `time_major`):
    (outputs of the same layout, final state). The steps are unrolled in the graph, so the
    number of time steps must be known when the graph is built."""
    (x,) = _tensors(inputs)
    if x._dims is None or len(x._dims) < 3:
        raise InvalidArgumentError(f"dynamic_rnn needs a 3-D input, got '{x.name}' with shape {x.shape}")
    t_axis = 0 if time_major else 1
    if x._dims[t_axis] is None:
        raise InvalidArgumentError(
            f"dynamic_rnn of '{x.name}' (shape {x.shape}): tracetensor unrolls the time steps in the graph, "
            "so the time dimension must be known (give the placeholder a fixed number of steps)"
        )
    steps = unstack(x, axis=t_axis)
    outputs, state = _loop(cell, steps, initial_state, dtype, sequence_length, scope or "rnn")
    return stack(outputs, axis=t_axis), state


def static_bidirectional_rnn(
    cell_fw: RNNCell,
    cell_bw: RNNCell,
    inputs: Sequence[Any],
    initial_state_fw: Any = None,
    initial_state_bw: Any = None,
    dtype: Any = None,
    sequence_length: Any = None,
    scope: str | None = None,
) -> tuple[list[Tensor], Any, Any]:
    """Forward and backward cells over the steps; outputs concatenated per step (no
    sequence_length: the backward pass starts at the last step of every row)."""
    if sequence_length is not None:
        raise InvalidArgumentError("static_bidirectional_rnn with sequence_length is not supported")
    steps = [_tensors(x)[0] for x in inputs]
    with variable_scope(scope or "bidirectional_rnn"):
        out_fw, st_fw = _loop(cell_fw, steps, initial_state_fw, dtype, None, "fw")
        out_bw, st_bw = _loop(cell_bw, steps[::-1], initial_state_bw, dtype, None, "bw")
    return [concat([f, b], 1) for f, b in zip(out_fw, out_bw[::-1])], st_fw, st_bw


def bidirectional_dynamic_rnn(
    cell_fw: RNNCell,
    cell_bw: RNNCell,
    inputs: Any,
    sequence_length: Any = None,
    initial_state_fw: Any = None,
    initial_state_bw: Any = None,
    dtype: Any = None,
    parallel_iterations: Any = None,
    swap_memory: bool = False,
    time_major: bool = False,
    scope: str | None = None,
) -> tuple[tuple[Tensor, Tensor], tuple[Any, Any]]:
    """((outputs_fw, outputs_bw), (state_fw, state_bw)), unrolled as dynamic_rnn."""
    if sequence_length is not None:
        raise InvalidArgumentError("bidirectional_dynamic_rnn with sequence_length is not supported")
    (x,) = _tensors(inputs)
    t_axis = 0 if time_major else 1
    if x._dims is None or x._dims[t_axis] is None:
        raise InvalidArgumentError(f"bidirectional_dynamic_rnn needs a known number of time steps, got {x.shape}")
    steps = unstack(x, axis=t_axis)
    with variable_scope(scope or "bidirectional_rnn"):
        out_fw, st_fw = _loop(cell_fw, steps, initial_state_fw, dtype, None, "fw")
        out_bw, st_bw = _loop(cell_bw, steps[::-1], initial_state_bw, dtype, None, "bw")
    return (stack(out_fw, axis=t_axis), stack(out_bw[::-1], axis=t_axis)), (st_fw, st_bw)
