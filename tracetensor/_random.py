"""Random number generators: `tt.Generator` and the default one `tt.manual_seed` seeds.

Numbers are drawn on the host (numpy's PCG64), so a seed gives the same numbers on
every device; functions that draw take `generator=` as PyTorch's do."""

from __future__ import annotations

from typing import Any

import numpy as np


class Generator:
    """`tt.Generator().manual_seed(0)`: an independent stream of random numbers."""

    def __init__(self, device: Any = "cpu") -> None:
        self.device = device
        self._seed = int(np.random.SeedSequence().entropy % (1 << 63))
        self._rng = np.random.default_rng(self._seed)

    def manual_seed(self, seed: int) -> Generator:
        self._seed = int(seed)
        self._rng = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        """Reseeds from fresh entropy and returns the new seed."""
        return self.manual_seed(int(np.random.SeedSequence().entropy % (1 << 63)))._seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        return self._rng.bit_generator.state

    def set_state(self, state: dict) -> Generator:
        self._rng.bit_generator.state = state
        return self


default_generator = Generator()


def rng_of(generator: Generator | None) -> np.random.Generator:
    """The numpy generator behind `generator=` (the default one when None)."""
    if generator is None:
        return default_generator._rng
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a tt.Generator, got {type(generator).__name__}")
    return generator._rng


def manual_seed(seed: int) -> Generator:
    """Seeds the default generator (and cupy's, when present); returns it, as torch does."""
    default_generator.manual_seed(seed)
    from .device import _probe_cupy

    cp = _probe_cupy()
    if cp is not None:
        cp.random.seed(int(seed))
    return default_generator


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    default_generator.set_state(state)
