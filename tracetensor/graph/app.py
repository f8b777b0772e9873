"""TF1's script boilerplate: `tf.app.run`, `tf.app.flags` / `tf.flags` (absl-style command
line flags) and `tf.logging`, so `if __name__ == "__main__": tf.app.run()` programs run."""

from __future__ import annotations

import logging as _logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__ = ["run", "flags", "logging"]


class Error(Exception):
    """A flag that cannot be defined or parsed (absl's flags.Error)."""


class UnrecognizedFlagError(Error):
    pass


class IllegalFlagValueError(Error, ValueError):
    pass


def _bool(text: str) -> bool:
    t = text.lower()
    if t in ("true", "t", "1", "yes", "y"):
        return True
    if t in ("false", "f", "0", "no", "n"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


class _Flag:
    def __init__(
        self,
        name: str,
        default: Any,
        help: str | None,
        parse: Callable[[str], Any],
        kind: str,
        enum_values: Sequence[str] | None = None,
    ) -> None:
        self.name, self.help, self.parse, self.kind, self.enum_values = name, help or "", parse, kind, enum_values
        self.default = parse(default) if isinstance(default, str) and kind != "string" else default
        self.value = self.default
        self.present = False


class FlagValues:
    """`FLAGS`: the defined flags as attributes. The command line is read on the first
    attribute access (or by `tf.app.run`); flags it does not know are left for `main`."""

    def __init__(self) -> None:
        object.__setattr__(self, "_flags", {})
        object.__setattr__(self, "_parsed", False)

    def _define(self, flag: _Flag) -> None:
        if flag.name in self._flags:
            raise Error(f"flag --{flag.name} is defined twice")
        self._flags[flag.name] = flag

    def __getattr__(self, name: str) -> Any:
        flags = object.__getattribute__(self, "_flags")
        if name not in flags:
            raise AttributeError(f"no flag --{name} is defined (defined: {', '.join(sorted(flags)) or 'none'})")
        if not self._parsed:
            self(sys.argv, known_only=True)
        return flags[name].value

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._flags:
            raise AttributeError(f"no flag --{name} is defined")
        self._flags[name].value = value

    def __contains__(self, name: str) -> bool:
        return name in self._flags

    def __call__(self, argv: Sequence[str], known_only: bool = False) -> list[str]:
        """Parses `argv` (argv[0] is the program); returns [argv[0], *arguments left over]."""
        argv = list(argv)
        rest = argv[:1]
        args = iter(argv[1:])
        for arg in args:
            if arg == "--":
                rest.extend(args)
                break
            if not arg.startswith("-") or arg == "-":
                rest.append(arg)
                continue
            body = arg.lstrip("-")
            name, eq, text = body.partition("=")
            flag = self._flags.get(name)
            if name in ("help", "helpfull", "h", "?") and flag is None:
                print(self.help_text(argv[0] if argv else ""))
                sys.exit(0)
            if flag is None and name.startswith("no") and not eq:
                neg = self._flags.get(name[2:])
                if neg is not None and neg.kind == "bool":
                    neg.value, neg.present = False, True
                    continue
            if flag is None:
                if known_only:
                    rest.append(arg)
                    continue
                raise UnrecognizedFlagError(f"unknown command line flag {arg!r}")
            if flag.kind == "bool" and not eq:
                flag.value, flag.present = True, True
                continue
            if not eq:
                text = next(args, None)
                if text is None:
                    raise IllegalFlagValueError(f"flag --{name} needs a value")
            try:
                flag.value = flag.parse(text)
            except ValueError as e:
                raise IllegalFlagValueError(f"flag --{name}={text}: {e}") from None
            flag.present = True
        object.__setattr__(self, "_parsed", True)
        return rest

    def is_parsed(self) -> bool:
        return self._parsed

    def mark_as_parsed(self) -> None:
        object.__setattr__(self, "_parsed", True)

    def flag_values_dict(self) -> dict[str, Any]:
        return {n: f.value for n, f in self._flags.items()}

    def help_text(self, prog: str = "") -> str:
        lines = [f"usage: {prog} [flags]", "flags:"]
        for f in self._flags.values():
            lines.append(f"  --{f.name}: {f.help}")
            lines.append(f"    (default: {f.default!r})")
        return "\n".join(lines)

    def reset(self) -> None:
        """Forgets every flag (tests define the same flags again)."""
        self._flags.clear()
        object.__setattr__(self, "_parsed", False)


FLAGS = FlagValues()


def _list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def DEFINE_string(
    name: str, default: str | None, help: str | None = None, flag_values: FlagValues = FLAGS, **_ignored: Any
) -> None:
    flag_values._define(_Flag(name, default, help, str, "string"))


def DEFINE_integer(
    name: str,
    default: int | None,
    help: str | None = None,
    lower_bound: int | None = None,
    upper_bound: int | None = None,
    flag_values: FlagValues = FLAGS,
    **_ignored: Any,
) -> None:
    def parse(text: str) -> int:
        v = int(text, 0)
        if (lower_bound is not None and v < lower_bound) or (upper_bound is not None and v > upper_bound):
            raise ValueError(f"{v} is outside [{lower_bound}, {upper_bound}]")
        return v

    flag_values._define(_Flag(name, default, help, parse, "int"))


def DEFINE_float(
    name: str, default: float | None, help: str | None = None, flag_values: FlagValues = FLAGS, **_ignored: Any
) -> None:
    flag_values._define(_Flag(name, default, help, float, "float"))


def DEFINE_boolean(
    name: str, default: bool | None, help: str | None = None, flag_values: FlagValues = FLAGS, **_ignored: Any
) -> None:
    flag_values._define(_Flag(name, default, help, _bool, "bool"))


DEFINE_bool = DEFINE_boolean


def DEFINE_list(
    name: str, default: Any, help: str | None = None, flag_values: FlagValues = FLAGS, **_ignored: Any
) -> None:
    if isinstance(default, str):
        default = _list(default)
    flag_values._define(_Flag(name, default, help, _list, "list"))


def DEFINE_enum(
    name: str,
    default: str | None,
    enum_values: Sequence[str],
    help: str | None = None,
    flag_values: FlagValues = FLAGS,
    **_ignored: Any,
) -> None:
    def parse(text: str) -> str:
        if text not in enum_values:
            raise ValueError(f"must be one of {list(enum_values)}")
        return text

    flag_values._define(_Flag(name, default, help, parse, "enum", enum_values))


def mark_flag_as_required(name: str, flag_values: FlagValues = FLAGS) -> None:
    _required.append((name, flag_values))


_required: list[tuple[str, FlagValues]] = []


class _FlagsModule:
    """`tf.app.flags` / `tf.flags` (absl.flags' names)."""

    FLAGS = FLAGS
    FlagValues = FlagValues
    Error = Error
    UnrecognizedFlagError = UnrecognizedFlagError
    IllegalFlagValueError = IllegalFlagValueError
    DEFINE_string = staticmethod(DEFINE_string)
    DEFINE_integer = staticmethod(DEFINE_integer)
    DEFINE_float = staticmethod(DEFINE_float)
    DEFINE_boolean = staticmethod(DEFINE_boolean)
    DEFINE_bool = staticmethod(DEFINE_bool)
    DEFINE_list = staticmethod(DEFINE_list)
    DEFINE_enum = staticmethod(DEFINE_enum)
    mark_flag_as_required = staticmethod(mark_flag_as_required)


flags = _FlagsModule()


def run(main: Callable[[list[str]], Any] | None = None, argv: Sequence[str] | None = None) -> NoReturn:
    """Parses the flags it knows from `argv` (default sys.argv), then exits with
    `main([program, *arguments left over])` (main defaults to `__main__.main`)."""
    if main is None:
        main = getattr(sys.modules["__main__"], "main", None)
        if main is None:
            raise Error("tf.app.run() found no main() in the __main__ module: pass tf.app.run(main=...)")
    try:
        rest = FLAGS(sys.argv if argv is None else argv, known_only=True)
    except Error as e:  # absl's behaviour: one line on stderr, exit status 1
        print(f"FATAL Flags parsing error: {e}\nPass --help to see help on flags.", file=sys.stderr)
        sys.exit(1)
    for name, fv in _required:
        f = fv._flags.get(name)
        if f is not None and f.value is None:
            print(f"FATAL Flags parsing error: flag --{name} must have a value other than None.", file=sys.stderr)
            sys.exit(1)
    sys.exit(main(rest))


# --------------------------------------------------------------------------- tf.logging


class _Logging:
    """`tf.logging`: Python logging under the logger name 'tensorflow', TF's level names."""

    DEBUG, INFO, WARN, ERROR, FATAL = _logging.DEBUG, _logging.INFO, _logging.WARN, _logging.ERROR, _logging.FATAL

    def __init__(self) -> None:
        self._logger = _logging.getLogger("tensorflow")
        self._counts: dict[Any, int] = {}
        if not self._logger.handlers:
            h = _logging.StreamHandler()
            h.setFormatter(_logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
            self._logger.addHandler(h)
            self._logger.propagate = False
        self._logger.setLevel(_logging.WARN)

    def set_verbosity(self, v: int) -> None:
        self._logger.setLevel(v)

    def get_verbosity(self) -> int:
        return self._logger.getEffectiveLevel()

    def log(self, level: int, msg: str, *args: Any) -> None:
        self._logger.log(level, msg, *args)

    def debug(self, msg: str, *args: Any) -> None:
        self._logger.debug(msg, *args)

    def info(self, msg: str, *args: Any) -> None:
        self._logger.info(msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._logger.warning(msg, *args)

    warn = warning

    def error(self, msg: str, *args: Any) -> None:
        self._logger.error(msg, *args)

    def fatal(self, msg: str, *args: Any) -> None:
        self._logger.critical(msg, *args)

    def log_every_n(self, level: int, msg: str, n: int, *args: Any) -> None:
        key = (level, msg)
        c = self._counts.get(key, 0)
        self._counts[key] = c + 1
        if c % max(int(n), 1) == 0:
            self._logger.log(level, msg, *args)

    def log_first_n(self, level: int, msg: str, n: int, *args: Any) -> None:
        key = (level, msg, "first")
        c = self._counts.get(key, 0)
        self._counts[key] = c + 1
        if c < n:
            self._logger.log(level, msg, *args)


logging = _Logging()
