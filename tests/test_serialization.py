"""tt.save / tt.load: round trips of nested state, and clear refusals of truncated,
tampered, foreign or pickle-carrying files (never running what they contain)."""

from __future__ import annotations

import io
import json
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import tracetensor as tt


def test_model_and_optimizer_state_round_trip(tmp_path) -> None:
    model = tt.nn.Sequential(tt.nn.Linear(3, 4), tt.nn.ReLU(), tt.nn.Linear(4, 2))
    opt = tt.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(tt.randn(5, 3)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.tt"
    tt.save(
        {
            "model": model.state_dict(),
            "optim": opt.state_dict(),
            "epoch": 3,
            "note": "hi",
            "best": float("inf"),
            "shape": (2, 3),
            "none": None,
        },
        path,
    )
    back = tt.load(path)
    assert back["epoch"] == 3 and back["note"] == "hi" and back["best"] == float("inf")
    assert back["shape"] == (2, 3) and back["none"] is None
    assert isinstance(back["model"], OrderedDict) and list(back["model"]) == list(model.state_dict())
    for k, v in model.state_dict().items():
        assert back["model"][k].dtype == v.dtype
        np.testing.assert_array_equal(back["model"][k].numpy(), v.numpy())
    assert sorted(back["optim"]["state"]) == [0, 1, 2, 3]
    opt2 = tt.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    opt2.load_state_dict(back["optim"])
    assert opt2.param_groups[0]["lr"] == 0.1


def test_dtypes_and_requires_grad_survive(tmp_path) -> None:
    x = tt.tensor([1, 2, 3], dtype=tt.int32)
    z = tt.tensor(np.array([1 + 2j]), dtype=tt.complex64)
    w = tt.ones(2, dtype=tt.float64, requires_grad=True)
    tt.save([x, z, w], tmp_path / "a.tt")
    x2, z2, w2 = tt.load(tmp_path / "a.tt")
    assert (x2.dtype, z2.dtype, w2.dtype) == (tt.int32, tt.complex64, tt.float64)
    assert w2.requires_grad and not x2.requires_grad and z2.tolist() == [1 + 2j]


def test_unsupported_objects_are_refused_at_save(tmp_path) -> None:
    with pytest.raises(tt.SerializationError, match="objects of type object are not supported"):
        tt.save({"x": object()}, tmp_path / "bad.tt")


class _Payload:
    """Unpickling this would write a flag file: proof that code ran."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def __reduce__(self):
        return (exec, (f"open({self.flag!r}, 'w').write('pwned')",))


def test_a_pickle_payload_is_refused_without_running_it(tmp_path) -> None:
    flag = tmp_path / "flag"
    obj = np.empty(1, dtype=object)
    obj[0] = _Payload(str(flag))
    manifest = {"format": "tracetensor-checkpoint", "version": 1, "root": {"$ndarray": "t0"}}
    path = tmp_path / "evil.tt"
    with open(path, "wb") as f:
        np.savez(f, t0=obj, __manifest__=np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8))
    with pytest.raises(tt.SerializationError, match=r"evil\.tt contains a pickled object; refusing"):
        tt.load(path)
    assert not flag.exists()


def test_a_truncated_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "full.tt"
    tt.save({"w": tt.randn(100, 100)}, path)
    data = path.read_bytes()
    cut = tmp_path / "cut.tt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(tt.SerializationError, match=r"cut\.tt is truncated, corrupt or not a valid tracetensor"):
        tt.load(cut)


def test_a_tampered_array_fails_its_checksum(tmp_path) -> None:
    path = tmp_path / "t.tt"
    tt.save({"w": tt.zeros(1000)}, path)
    data = bytearray(path.read_bytes())
    i = data.index(b"\x00" * 64)
    data[i + 10] = 0x7F  # flip a byte inside the stored array
    path.write_bytes(bytes(data))
    with pytest.raises(tt.SerializationError, match=r"t\.tt is truncated, corrupt .*CRC"):
        tt.load(path)


def test_a_manifest_pointing_at_a_missing_array_is_refused(tmp_path) -> None:
    path = tmp_path / "m.tt"
    manifest = {"format": "tracetensor-checkpoint", "version": 1, "root": {"$tensor": "t9"}}
    with open(path, "wb") as f:
        np.savez(f, __manifest__=np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8))
    with pytest.raises(tt.SerializationError, match=r"m\.tt has an invalid manifest: .*missing array 't9'"):
        tt.load(path)


def test_foreign_files_are_refused(tmp_path) -> None:
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.ones(3))
    with pytest.raises(tt.SerializationError, match=r"plain\.npz is not a tracetensor checkpoint: no manif"):
        tt.load(plain)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(tt.SerializationError, match=r"notes\.txt is not a tracetensor checkpoint: not an"):
        tt.load(text)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.md", "a zip, not an npz")
    (tmp_path / "x.zip").write_bytes(buf.getvalue())
    with pytest.raises(tt.SerializationError, match=r"x\.zip is not a tracetensor checkpoint"):
        tt.load(tmp_path / "x.zip")


def test_a_newer_format_version_is_named(tmp_path) -> None:
    path = tmp_path / "v9.tt"
    manifest = {"format": "tracetensor-checkpoint", "version": 9, "root": 1}
    with open(path, "wb") as f:
        np.savez(f, __manifest__=np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8))
    with pytest.raises(tt.SerializationError, match="format version 9; this tracetensor reads version 1"):
        tt.load(path)
