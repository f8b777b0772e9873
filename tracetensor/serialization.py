"""`tt.save(obj, path)` / `tt.load(path)`: a safe checkpoint format, never pickle.

A file is a plain `.npz` (a zip of `.npy` arrays) holding one array per tensor and a
JSON manifest (`__manifest__`, stored as uint8 bytes) that describes the nested
structure: dicts with string or int keys, lists, tuples, tensors, ints, floats, bools,
strings and None. Loading uses `np.load(allow_pickle=False)`, so an object array (the
only way a pickle gets into an npz) is refused, never run; anything that does not match
the manifest raises `SerializationError` naming the file and the problem.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import OrderedDict
from typing import Any

import numpy as np

from ._npyfile import check_regular, read_npz
from .device import CPU, device, to_device
from .errors import DeviceError, SerializationError
from .tensor import Tensor

__all__ = ["save", "load"]

FORMAT = "tracetensor-checkpoint"
VERSION = 1
_MANIFEST = "__manifest__"


def save(obj: Any, f: str | os.PathLike) -> None:
    """Writes `obj` (a state_dict, an optimizer state, nested dicts/lists of tensors and
    plain values) to `f`. Tensors are copied to the host; their dtype and device are kept."""
    arrays: dict[str, np.ndarray] = {}

    def enc(x: Any) -> Any:
        if isinstance(x, Tensor):
            key = f"t{len(arrays)}"
            arrays[key] = np.asarray(to_device(x._data, CPU))
            return {"$tensor": key, "device": str(x.device), "requires_grad": bool(x.requires_grad)}
        if isinstance(x, np.ndarray):
            key = f"t{len(arrays)}"
            arrays[key] = x
            return {"$ndarray": key}
        if isinstance(x, (bool, int, float, str)) or x is None:
            if isinstance(x, float) and not np.isfinite(x):
                return {"$float": repr(x)}  # JSON has no nan/inf
            return x
        if isinstance(x, (np.integer, np.floating, np.bool_)):
            return enc(x.item())
        if isinstance(x, dict):
            items = []
            for k, v in x.items():
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise SerializationError(f"cannot save {f}: dict keys must be str or int, got {type(k).__name__}")
                items.append([k, enc(v)])
            return {"$dict": items, "ordered": isinstance(x, OrderedDict)}
        if isinstance(x, (list, tuple)):
            return {"$list" if isinstance(x, list) else "$tuple": [enc(v) for v in x]}
        raise SerializationError(
            f"cannot save {f}: objects of type {type(x).__name__} are not supported "
            "(tensors, numbers, strings, None and dicts/lists of them are)"
        )

    manifest = {"format": FORMAT, "version": VERSION, "root": enc(obj)}
    arrays[_MANIFEST] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    path = os.fspath(f)
    with open(path, "wb") as fh:  # a file object: np.savez would otherwise append ".npz"
        np.savez(fh, **arrays)


def load(f: str | os.PathLike, map_location: Any = None, weights_only: bool = True) -> Any:
    """Reads a file written by `tt.save`. `map_location` ("cpu", "cuda") overrides the saved
    devices. A truncated, tampered or foreign file raises SerializationError."""
    path = os.fspath(f)
    check_regular(path, "tracetensor checkpoint")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":  # np.load would take any other file for a pickle or a bare .npy
        raise SerializationError(f"{path} is not a tracetensor checkpoint: not an npz (zip) file")
    try:
        z = read_npz(path, "tracetensor checkpoint")  # sizes and dtypes checked before allocating
        names = set(z)
        if _MANIFEST not in names:
            raise SerializationError(f"{path} is not a tracetensor checkpoint: no manifest inside")
        manifest = json.loads(z[_MANIFEST].tobytes().decode())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            what = manifest.get("format") if isinstance(manifest, dict) else manifest
            raise SerializationError(f"{path} is not a tracetensor checkpoint: unknown format {what!r}")
        if manifest.get("version") != VERSION:
            raise SerializationError(
                f"{path} has checkpoint format version {manifest.get('version')}; "
                f"this tracetensor reads version {VERSION}"
            )
        used: set[str] = set()
        out = _decode(manifest.get("root"), z, names, used, path, map_location)
        extra = names - used - {_MANIFEST}
        if extra:
            raise SerializationError(f"{path} holds arrays the manifest does not list: {sorted(extra)[:5]}")
        return out
    except SerializationError:
        raise
    except FileNotFoundError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise SerializationError(
                f"{path} contains a pickled object; refusing to load it (tracetensor checkpoints never contain pickles)"
            ) from None
        raise SerializationError(f"{path} is corrupt or not a tracetensor checkpoint: {e}") from None
    except RecursionError:
        raise SerializationError(f"{path} has an invalid manifest: nested too deeply") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SerializationError(
            f"{path} is truncated, corrupt or not a tracetensor checkpoint ({type(e).__name__}: {e})"
        ) from None


def _decode(node: Any, z: Any, names: set[str], used: set[str], path: str, map_location: Any) -> Any:
    def bad(what: str) -> SerializationError:
        return SerializationError(f"{path} has an invalid manifest: {what}")

    def array(key: Any) -> np.ndarray:
        if not isinstance(key, str) or key not in names or key == _MANIFEST:
            raise bad(f"it refers to a missing array {key!r}")
        if key in used:
            raise bad(f"array {key!r} is referenced twice")
        used.add(key)
        a = z[key]  # read_npz accepts numeric arrays only: nothing is unpickled
        if a.dtype.kind not in "biufc":
            raise bad(f"array {key!r} has unsupported dtype {a.dtype}")
        return a

    def dec(x: Any) -> Any:
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, list):
            raise bad("a bare list (lists are tagged objects)")
        if not isinstance(x, dict) or len(x) == 0:
            raise bad(f"unexpected entry {x!r:.60}")
        if "$tensor" in x:
            a = array(x["$tensor"])
            where = map_location if map_location is not None else x.get("device", "cpu")
            try:
                dev = device(where)
            except (DeviceError, TypeError, ValueError) as e:
                raise SerializationError(
                    f"{path}: a tensor is stored on device {where!r}, which cannot be "
                    f"used here ({e}); pass map_location='cpu'"
                ) from None
            t = Tensor._make(a if dev.type == "cpu" else to_device(a, dev), dev)
            if x.get("requires_grad") and a.dtype.kind in "fc":
                t.requires_grad_(True)
            return t
        if "$ndarray" in x:
            return array(x["$ndarray"])
        if "$float" in x:
            if x["$float"] not in ("nan", "inf", "-inf"):
                raise bad(f"bad float {x['$float']!r}")
            return float(x["$float"])
        if "$dict" in x:
            items = x["$dict"]
            if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 2 for i in items):
                raise bad("a dict entry is not a list of [key, value] pairs")
            d: dict = OrderedDict() if x.get("ordered") else {}
            for k, v in items:
                if not isinstance(k, (str, int)):
                    raise bad(f"dict key {k!r} is not a str or int")
                d[k] = dec(v)
            return d
        for tag, kind in (("$list", list), ("$tuple", tuple)):
            if tag in x:
                if not isinstance(x[tag], list):
                    raise bad(f"{tag} is not a list")
                return kind(dec(v) for v in x[tag])
        raise bad(f"unknown entry with keys {sorted(x)[:5]}")

    return dec(node)
