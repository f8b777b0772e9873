"""Exceptions: each names the op or node, the phase, what was expected, what came,
and the user's source line (chainer's "Invalid operation in" habit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._source import Frame


class TraceTensorError(Exception):
    """Base of every error tracetensor raises for bad input."""


class DeviceError(TraceTensorError, RuntimeError):
    """A device that cannot be used, or tensors on different devices."""


class Invalid(Exception):
    """Raised inside an op's rule with just the detail ("cannot multiply (2, 3) by (1, 3)");
    the dispatch point turns it into an OpError that names the op and the user's line."""


class InvalidDType(Invalid):
    """An `Invalid` about the inputs' dtypes (the dispatch point raises a DTypeError for it)."""


class OpError(TraceTensorError, RuntimeError):
    """An op that could not run. `.op`, `.name`, `.phase`, `.detail`, `.frame`."""

    def __init__(
        self,
        op: str,
        detail: str,
        *,
        phase: str = "forward",
        name: str | None = None,
        frame: Frame | None = None,
        mode: str = "eager",
    ) -> None:
        self.op, self.detail, self.phase, self.name, self.frame, self.mode = op, detail, phase, name, frame, mode
        where = f"{frame.filename}:{frame.lineno}" if frame is not None else "an unknown line"
        ph = "" if phase == "forward" else f" ({phase})"
        if mode == "graph" and name:
            msg = f"{op} '{name}'{ph} defined at {where}: {detail}"
        else:
            msg = f"{op}{ph}: {detail} at {where}"
        super().__init__(msg)


class ShapeError(OpError, ValueError):
    """Shapes that an op cannot combine."""


class DTypeError(OpError, TypeError):
    """A dtype an op does not accept."""


class NumericsError(TraceTensorError, FloatingPointError):
    """A NaN or infinity found by `check_numerics` or the numerics-checking mode."""


class SerializationError(TraceTensorError, ValueError):
    """A file that is not a valid tracetensor file (truncated, corrupt, foreign, tampered)."""
