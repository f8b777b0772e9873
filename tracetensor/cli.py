"""The `tracetensor` command: `profile`, `debug` and `trace` subcommands, each owned
by its own package and imported only when used."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ._version import __version__

# subcommand -> (module with `main(argv) -> int`, one-line help)
SUBCOMMANDS = {
    "profile": ("tracetensor.profiler.cli", "run a script under the profiler (op table, Chrome trace, py-spy)"),
    "debug": ("tracetensor.debugger.cli", "open a recorded trace in the debugger (TUI, or line mode with -c)"),
    "trace": (
        "tracetensor.trace.cli",
        "record a script into a trace file (`trace record -o FILE script.py`), "
        "say what one holds (`trace info FILE`), export it (`trace export --tensorboard`), "
        "merge per-rank traces (`trace merge`)",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="tracetensor",
        description="See inside deep-learning code: debugger, profiler and trace tools for tracetensor.",
        epilog="Run `tracetensor COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"tracetensor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] not in SUBCOMMANDS:
        args = parser.parse_args(argv)  # prints help/version or an error and exits
        if args.command is None:
            parser.print_help()
            return 2
    module, _ = SUBCOMMANDS[argv[0]]
    try:
        return int(importlib.import_module(module).main(argv[1:]) or 0)
    except BrokenPipeError:
        # `tracetensor ... | head` closed our stdout: stop quietly, as `cat` does. Python would
        # report the failed flush of the closed pipe at exit, so stdout goes to devnull first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
