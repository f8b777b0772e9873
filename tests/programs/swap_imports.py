"""Runs a program written for PyTorch (or TF1) with its imports swapped to tracetensor:
`python swap_imports.py PROGRAM.py [args]`. A meta-path finder answers `import torch`,
`import torch.nn.functional as F`, `from torch.utils.data import DataLoader` ... with the
tracetensor module of the same path (`tensorflow` maps to `tracetensor.graph`); nothing in
the program itself is edited.

`--real` runs the program under the real library instead (for parity runs). With the
environment variable PARITY_INIT=1, every parameter is set, in place, at its module's first
call (unless loaded with load_state_dict before), to values drawn from a numpy generator
seeded by the parameter's name and shape: both libraries then start from the same weights
whatever their own random number generators do.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import runpy
import sys
import zlib

import numpy as np

ALIASES = {"torch": "tracetensor", "tensorflow": "tracetensor.graph"}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        root = fullname.split(".")[0]
        if root not in ALIASES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        root, _, rest = spec.name.partition(".")
        target = ALIASES[root] + ("." + rest if rest else "")
        mod = importlib.import_module(target)
        sys.modules[spec.name] = mod
        return mod

    def exec_module(self, module):
        pass  # the tracetensor module is already executed


def _parity_init(lib) -> None:
    """Patches Module.__call__ so parameters get name-seeded values at their first use."""
    seen: set[int] = set()
    module_cls = lib.nn.Module
    call = module_cls.__call__

    def first_call(self, *args, **kwargs):
        for name, p in self.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            rng = np.random.default_rng(zlib.crc32(f"{name}{tuple(p.shape)}".encode()))
            fan_in = int(np.prod(p.shape[1:])) if len(p.shape) > 1 else int(p.shape[0])
            bound = 1.0 / np.sqrt(max(fan_in, 1))
            values = rng.uniform(-bound, bound, size=tuple(p.shape))
            if name.endswith(("norm.weight", "ln_1.weight", "ln_2.weight", "ln_f.weight")):
                values = np.ones(tuple(p.shape))  # norms start at identity in both libraries
            with lib.no_grad():
                p.copy_(lib.tensor(values, dtype=p.dtype))
        return call(self, *args, **kwargs)

    load = module_cls.load_state_dict

    def loaded(self, *args, **kwargs):
        seen.update(id(p) for p in self.parameters())  # loaded weights are kept, not re-drawn
        return load(self, *args, **kwargs)

    module_cls.__call__ = first_call
    module_cls.load_state_dict = loaded


def main() -> None:
    args = sys.argv[1:]
    real = args and args[0] == "--real"
    if real:
        args = args[1:]
    if not args:
        raise SystemExit("usage: swap_imports.py [--real] PROGRAM.py [args...]")
    if not real:
        sys.meta_path.insert(0, _Alias())
    if os.environ.get("PARITY_INIT") == "1":
        _parity_init(importlib.import_module("torch"))
    sys.argv = args
    sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
    runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
