"""The layering rule of ARCHITECTURE.md, checked: consumers (debugger, profiler, the
pytest plugin) use only the event contract, the trace reader and the public API, and
the package installs under one `tracetensor` namespace."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONSUMERS = {
    "debugger": ("tracetensor", "debugger"),
    "profiler": ("tracetensor", "profiler"),
    "tracetensor/pytest_plugin.py": ("tracetensor",),
    "tracetensor/nancheck.py": ("tracetensor",),
    "tracetensor/utils/tensorboard": ("tracetensor", "utils", "tensorboard"),  # trace -> TensorBoard export
}


def _imports(path: pathlib.Path, package: tuple[str, ...]) -> list[tuple[str, int]]:
    """Absolute module names imported by a file (relative imports resolved)."""
    out = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, node.lineno))
            out += [(f"{mod}.{a.name}", node.lineno) for a in node.names]
    return out


@pytest.mark.parametrize("where", sorted(CONSUMERS))
def test_consumers_import_no_private_engine_module(where: str) -> None:
    pkg = CONSUMERS[where]
    target = ROOT / where
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    bad = []
    for f in files:
        for mod, line in _imports(f, pkg):
            own = ".".join(pkg) + "." if len(pkg) > 1 else None
            if own and (mod + ".").startswith(own):
                continue  # a consumer's own helpers are its business
            parts = mod.split(".")
            if parts[0] == "tracetensor" and any(p.startswith("_") and p != "__version__" for p in parts[1:]):
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "consumers must use tracetensor.events / tracetensor.trace / the public API:\n" + "\n".join(bad)


def test_debugger_and_profiler_install_inside_the_tracetensor_namespace(tmp_path: pathlib.Path) -> None:
    code = (
        "import importlib.util, tracetensor.debugger as d, tracetensor.profiler as p;"
        "print(importlib.util.find_spec('debugger'), importlib.util.find_spec('profiler'),"
        " d.LocalCLIDebugWrapperSession.__name__, p.profile.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "None", "LocalCLIDebugWrapperSession", "profile"]


def test_the_command_line_reports_its_version_and_subcommands(tmp_path: pathlib.Path) -> None:
    import tracetensor

    out = subprocess.run(
        [sys.executable, "-m", "tracetensor", "--version"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"tracetensor {tracetensor.__version__}"
    helptext = subprocess.run(
        [sys.executable, "-m", "tracetensor", "--help"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    for cmd in ("profile", "debug", "trace"):
        assert cmd in helptext
