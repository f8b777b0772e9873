"""Recurrent layers: `RNN`, `LSTM`, `GRU` and their cells, with PyTorch's parameter names,
shapes, gate order and init (so state_dicts load both ways). They are built from registered
ops (linear, slices, sigmoid/tanh, stack), so every step of every layer emits its events and
gradients flow through time by the ordinary autograd engine."""

from __future__ import annotations

import math
from typing import Any

from ..errors import ShapeError
from ..functional import cat, stack
from ..tensor import Tensor, zeros
from . import functional as F
from . import init
from .module import Module, Parameter
from .utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _rnn_step(
    mode: str, xp: Tensor, h: Tensor, c: Tensor | None, w_hh: Tensor, b_hh: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """One time step, given the input projection xp = x W_ih^T + b_ih (PyTorch's formulas and
    gate order: LSTM i, f, g, o; GRU r, z, n)."""
    hp = F.linear(h, w_hh, b_hh)
    if mode == "LSTM":
        i, f, g, o = (hp + xp).chunk(4, -1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c.tanh(), c
    if mode == "GRU":
        xr, xz, xn = xp.chunk(3, -1)
        hr, hz, hn = hp.chunk(3, -1)
        r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
        n = (xn + r * hn).tanh()
        return (h - n) * z + n, None
    pre = hp + xp
    return (pre.tanh() if mode == "RNN_TANH" else pre.relu()), None


# ----------------------------------------------------------------- cells


class _CellBase(Module):
    _mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        g = _GATES[self._mode] * hidden_size
        self.weight_ih = Parameter(zeros(g, input_size))
        self.weight_hh = Parameter(zeros(g, hidden_size))
        self.bias_ih = Parameter(zeros(g)) if bias else None
        self.bias_hh = Parameter(zeros(g)) if bias else None
        if not bias:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _prepare(self, x: Tensor, hx: Any) -> tuple[Tensor, bool]:
        if x.ndim not in (1, 2):
            raise ShapeError(
                type(self).__name__, f"expected input to be 1-D or 2-D, got {x.ndim}-D of shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.input_size:
            raise ShapeError(
                type(self).__name__, f"input has {x.shape[-1]} features, expected input_size={self.input_size}"
            )
        batched = x.ndim == 2
        return (x if batched else x.unsqueeze(0)), batched

    def _zeros(self, x: Tensor) -> Tensor:
        return zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(_CellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}: expected 'tanh' or 'relu'")
        self.__dict__["_mode"] = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        self.__dict__["nonlinearity"] = nonlinearity
        super().__init__(input_size, hidden_size, bias)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, batched = self._prepare(input, hx)
        h = self._zeros(x) if hx is None else (hx if batched else hx.unsqueeze(0))
        h, _ = _rnn_step(self._mode, F.linear(x, self.weight_ih, self.bias_ih), h, None, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)


class LSTMCell(_CellBase):
    """(h', c') from (x, (h, c)), PyTorch's gate order i, f, g, o."""

    _mode = "LSTM"

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        x, batched = self._prepare(input, hx)
        if hx is None:
            h, c = self._zeros(x), self._zeros(x)
        else:
            h, c = hx if batched else (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        h, c = _rnn_step("LSTM", F.linear(x, self.weight_ih, self.bias_ih), h, c, self.weight_hh, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_CellBase):
    """h' from (x, h), PyTorch's gate order r, z, n."""

    _mode = "GRU"

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, batched = self._prepare(input, hx)
        h = self._zeros(x) if hx is None else (hx if batched else hx.unsqueeze(0))
        h, _ = _rnn_step("GRU", F.linear(x, self.weight_ih, self.bias_ih), h, None, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)


# ----------------------------------------------------------------- multi-layer, over sequences


class RNNBase(Module):
    """Shared by RNN, LSTM and GRU: parameters `weight_ih_l{k}[_reverse]` etc., inputs (L, N, H_in)
    or (N, L, H_in) with batch_first or unbatched (L, H_in); returns (output, h_n) — for LSTM
    (output, (h_n, c_n)). A PackedSequence input gives a PackedSequence output and each
    sequence's own last state in h_n. LSTM proj_size is not supported."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if proj_size:
            raise NotImplementedError("LSTM proj_size is not supported by tracetensor")
        if not 0 <= dropout <= 1:
            raise ValueError(f"dropout should be a number in range [0, 1], got {dropout}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, float(dropout), bidirectional
        self.proj_size = 0
        d = 2 if bidirectional else 1
        g = _GATES[mode] * hidden_size
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            for direction in range(d):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                n_in = input_size if layer == 0 else hidden_size * d
                shapes = [("weight_ih", (g, n_in)), ("weight_hh", (g, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (g,)), ("bias_hh", (g,))]
                for name, shape in shapes:
                    self.register_parameter(name + sfx, Parameter(zeros(*shape, dtype=dtype, device=device)))
                    self._flat_weights_names.append(name + sfx)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    @property
    def all_weights(self) -> list[list[Parameter]]:
        k = 4 if self.bias else 2
        ws = [getattr(self, n) for n in self._flat_weights_names]
        return [ws[i : i + k] for i in range(0, len(ws), k)]

    def flatten_parameters(self) -> None:
        """Accepted for cuDNN-era scripts; there is nothing to flatten."""

    def _weights(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        return (
            getattr(self, "weight_ih" + sfx),
            getattr(self, "weight_hh" + sfx),
            getattr(self, "bias_ih" + sfx, None),
            getattr(self, "bias_hh" + sfx, None),
        )

    def forward(self, input: Any, hx: Any = None) -> tuple[Any, Any]:
        name = type(self).__name__
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:  # run on the padded batch (original order), with steps past each end masked
            seq_in = input
            input, lengths = pad_packed_sequence(input, batch_first=self.batch_first)
        if not isinstance(input, Tensor):
            raise TypeError(f"{name} takes a tensor or a PackedSequence, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ShapeError(
                name, f"expected input to be 2-D (unbatched) or 3-D, got {input.ndim}-D of shape {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise ShapeError(
                name, f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {input.shape[-1]}"
            )
        batched = input.ndim == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        seq, n = x.shape[0], x.shape[1]
        d = 2 if self.bidirectional else 1
        lstm = self.mode == "LSTM"
        h0 = c0 = None
        if hx is not None:
            h0, c0 = hx if lstm else (hx, None)
            if not batched:
                h0 = h0.unsqueeze(1)
                c0 = c0.unsqueeze(1) if c0 is not None else None
            want = (self.num_layers * d, n, self.hidden_size)
            for t in (h0, c0):
                if t is not None and tuple(t.shape) != want:
                    raise ShapeError(name, f"Expected hidden size {want}, got {tuple(t.shape)}")
        masks = None
        if lengths is not None:
            steps_left = lengths.numpy()
            masks = [
                Tensor._make(x.device.xp.asarray((steps_left > t).astype(x._data.dtype)[:, None]), x.device)
                for t in range(seq)
            ]
        h_n, c_n = [], []
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(d):
                k = layer * d + direction
                w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
                xp = F.linear(layer_in, w_ih, b_ih)  # every step's input projection in one product
                h = h0[k] if h0 is not None else zeros(n, self.hidden_size, dtype=x.dtype, device=x.device)
                c = None
                if lstm:
                    c = c0[k] if c0 is not None else zeros(n, self.hidden_size, dtype=x.dtype, device=x.device)
                steps = range(seq - 1, -1, -1) if direction else range(seq)
                ys: list[Tensor] = [None] * seq  # type: ignore[list-item]
                for t in steps:
                    h1, c1 = _rnn_step(self.mode, xp[t], h, c, w_hh, b_hh)
                    if masks is None:
                        h, c = h1, c1
                        ys[t] = h
                        continue
                    m = masks[t]  # past a sequence's end its state stays and its output is zero
                    h = m * h1 + (1 - m) * h
                    c = m * c1 + (1 - m) * c if lstm else None
                    ys[t] = m * h1
                outs.append(stack(ys, 0))
                h_n.append(h)
                if lstm:
                    c_n.append(c)
            layer_in = outs[0] if d == 1 else cat(outs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, True)
        out = layer_in
        hn = stack(h_n, 0)
        cn = stack(c_n, 0) if lstm else None
        if batched and self.batch_first:
            out = out.transpose(0, 1)
        if not batched:
            out, hn = out.squeeze(1), hn.squeeze(1)
            cn = cn.squeeze(1) if cn is not None else None
        if packed:
            out = pack_padded_sequence(out, lengths, batch_first=self.batch_first, enforce_sorted=False)
            out = (
                out._replace(sorted_indices=seq_in.sorted_indices, unsorted_indices=seq_in.unsorted_indices)
                if seq_in.sorted_indices is not None
                else out._replace(sorted_indices=None, unsorted_indices=None)
            )
        return out, ((hn, cn) if lstm else hn)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(
            "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
        )
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            "LSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
        )


class GRU(RNNBase):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            "GRU",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
        )


__all__ = ["RNNCell", "LSTMCell", "GRUCell", "RNNBase", "RNN", "LSTM", "GRU"]
