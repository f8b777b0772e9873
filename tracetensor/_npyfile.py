"""Reading `.npy` / `.npz` bytes from files that may come from someone else: every size is
checked against the bytes that are really there before anything is allocated, only plain
numeric arrays are accepted (never pickles, objects or strings), and a zip member that
would inflate far beyond its compressed size is refused before it is inflated."""

from __future__ import annotations

import os
import stat
import zipfile
from typing import IO

import numpy as np

from .errors import SerializationError

NUMERIC = "biufc"  # bool, ints, floats, complex
BOMB_RATIO = 200  # a member inflating more than this many times its compressed size ...
BOMB_BYTES = 256 << 20  # ... to more than this is refused as a zip bomb


def npy_header(f: IO[bytes], available: int) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Reads an npy header from `f`; `available`: the bytes of the whole `.npy`. Raises
    ValueError unless the declared shape and dtype fit exactly what is there."""
    start = f.tell()
    try:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy version {version}")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
    except ValueError:
        raise
    except Exception as e:  # numpy parses the header text with ast/tokenize: any error is a bad header
        raise ValueError(f"not a valid .npy header ({type(e).__name__}: {e})") from None
    if dtype.hasobject:
        raise ValueError("holds a pickled object array; refusing to load it (never unpickled)")
    if dtype.kind not in NUMERIC:
        raise ValueError(f"holds dtype {dtype} (only numeric arrays are read; never objects or strings)")
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ValueError(f"header declares an invalid shape {shape}")
    count = 1
    for d in shape:
        count *= d
    body = available - (f.tell() - start)
    if count * dtype.itemsize != body:
        raise ValueError(
            f"header declares shape {shape} of {dtype} ({count * dtype.itemsize} bytes), but {body} bytes follow"
        )
    return tuple(shape), bool(fortran), dtype


def check_regular(path: str, what: str) -> None:
    """A missing path is FileNotFoundError (as `open` would say); a directory, device or
    pipe is a SerializationError before anything opens (or blocks on) it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no {what} at {path!r}") from None
    except OSError as e:
        raise SerializationError(f"{path}: cannot read this {what} ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SerializationError(f"{path} is not a {what}: not a regular file (a directory, device or pipe)")


def read_npz(path: str, what: str) -> dict[str, np.ndarray]:
    """Every array of an `.npz` file, checked as the module docstring says; any problem is
    one SerializationError naming `path`."""
    check_regular(path, what)
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename
                if not name.endswith(".npy") or info.is_dir():
                    raise SerializationError(f"{path} is not a {what}: it holds {name!r}, not an array")
                if info.file_size > BOMB_BYTES and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
                    raise SerializationError(
                        f"{path}: array {name[:-4]!r} would inflate from {info.compress_size} to "
                        f"{info.file_size} bytes; refused as a zip bomb"
                    )
                with zf.open(info) as f:
                    try:
                        shape, fortran, dtype = npy_header(f, info.file_size)
                    except ValueError as e:
                        if "pickled" in str(e):
                            raise SerializationError(
                                f"{path} contains a pickled object; refusing to load it (array {name[:-4]!r}: "
                                "pickled (object) arrays, which tracetensor never loads)"
                            ) from None
                        raise SerializationError(f"{path} is not a valid {what}: array {name[:-4]!r} {e}") from None
                    a = np.empty(shape[::-1] if fortran else shape, dtype)
                    mv = memoryview(a.reshape(-1).view(np.uint8)) if a.size else memoryview(bytearray())
                    pos = 0
                    while pos < len(mv):  # in place, a chunk at a time (zipfile stops at the declared size)
                        k = f.readinto(mv[pos : pos + (16 << 20)])
                        if not k:
                            raise SerializationError(f"{path}: array {name[:-4]!r} is truncated")
                        pos += k
                out[name[:-4]] = a.T if fortran else a
    except SerializationError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as e:
        raise SerializationError(
            f"{path} is truncated, corrupt or not a valid {what} ({type(e).__name__}: {e})"
        ) from None
    return out
