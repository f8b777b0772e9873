"""Line mode: the debugger's commands read from standard input, plain text written to
standard output. Tests, CI and pipes use it; it is chosen automatically without a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import RenderableType

from .commands import Debugger, RunAction, to_plain

PROMPT = "tfdbg> "


class ReadlineUI:
    """Runs a command loop at each stop of a debugged program."""

    show_list = True  # the run-end screen prints `lt`

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.interactive = self.stdin.isatty()
        if self.interactive:
            try:
                import readline  # noqa: F401  (line editing and history for input())
            except ImportError:
                pass

    def write(self, r: RenderableType) -> None:
        self.stdout.write(to_plain(r) + "\n")
        self.stdout.flush()

    def read(self) -> str | None:
        if self.interactive and self.stdin is sys.stdin:
            try:
                return input(PROMPT)
            except EOFError:
                return None
        line = self.stdin.readline()
        if not line:
            return None
        # echo the command so a transcript reads like an interactive session
        self.stdout.write(PROMPT + line.rstrip("\n") + "\n")
        return line

    def session(self, dbg: Debugger, title: str, intro: RenderableType, kind: str = "end") -> RunAction | None:
        """Shows `intro`, then runs commands until `run ...` (returns its action) or
        `exit` / end of input (returns None: the program goes on undebugged)."""
        self.write(f"======== {title} ========")
        self.write(intro)
        while True:
            line = self.read()
            if line is None:
                return None
            res = dbg.execute(line)
            if res.exit:
                return None
            if res.action is not None:
                return res.action
            self.write(res.output)
