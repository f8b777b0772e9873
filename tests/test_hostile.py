"""Hostile and damaged inputs: a trace file from someone else is data. Names holding Rich
markup or terminal escapes are shown literally, `eval` cannot be escaped, sources are
read only from the trace, and damaged files give one clear error, fast."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from textual.widgets import Static
from tracetensor.debugger import Debugger
from tracetensor.debugger.commands import to_plain
from tracetensor.debugger.tui import DebuggerApp, RunEndScreen, TensorList

import tracetensor as tt
from tracetensor import events as ev
from tracetensor.trace import MemoryTrace, printable

pytestmark = pytest.mark.tracetensor_allow_nan

CLICK = "n[@click=app.command('run -t 7')]CLICKME[/]"  # clicking it, if parsed, would leave the app
BOLD = "[bold red]loud[/]"
OSC = "t\x1b]0;pwned\x07\x1b[2K\x1b]52;c;ZWNobyBoaQ==\x07\u202egnp.exe"


def _recorded(tmp_path) -> str:
    path = str(tmp_path / "hostile.ttrace")
    w = tt.tensor([[1.0, -1.0], [2.0, 0.5]], requires_grad=True)
    x = tt.tensor([[1.0, 2.0], [-1.0, 1.0]])
    with np.errstate(all="ignore"), tt.record(path, values="full"):
        r = ev.begin_run("debug", name="step")
        y = (x @ w).relu().log().sum()
        y.backward()
        ev.end_run(r)
    return path


def _rename(path: str, names: dict[str, str], ops: dict[str, str] | None = None) -> None:
    """What an attacker does: rewrite op and tensor names inside a real trace."""
    db = sqlite3.connect(path)
    with db:
        for i, name, outputs, inputs in db.execute("SELECT id, name, outputs, inputs FROM sigs").fetchall():
            outs = json.loads(outputs)
            for o in outs:
                base, _, idx = o[0].partition(":")
                o[0] = names.get(base, base) + (":" + idx if idx else "")
            ins = [
                names.get(s.split(":")[0], s.split(":")[0]) + ":" + s.split(":")[-1] if ":" in s else s
                for s in json.loads(inputs)
            ]
            db.execute(
                "UPDATE sigs SET name = ?, outputs = ?, inputs = ? WHERE id = ?",
                (names.get(name, name), json.dumps(outs), json.dumps(ins), i),
            )
        for old, new in (ops or {}).items():
            db.execute("UPDATE ops SET op = ? WHERE op = ?", (new, old))
        for old, new in names.items():
            db.execute("UPDATE tensors SET name = ? WHERE name = ?", (new + ":0", old + ":0"))
    db.close()


@pytest.fixture
def hostile(tmp_path) -> str:
    p = _recorded(tmp_path)
    _rename(p, {"log": CLICK, "relu": BOLD, "matmul": OSC}, {"relu": "[@click=app.exit]x[/]"})
    return p


def test_printable_shows_every_control_character() -> None:
    assert printable("a\x1b[2Kb") == "a\u241b[2Kb"
    assert printable("x\x07\x9b\u202e\n\ty") == "x\u2407\ufffd\ufffd\u240a\u2409y"
    assert printable("one\ntwo\tthree", lines=True) == "one\ntwo\tthree"
    assert len(printable(OSC)) == len(OSC)  # one for one: Rich spans and columns stay right


def test_line_mode_shows_names_literally_and_no_control_characters(hostile) -> None:
    dbg = Debugger(tt.trace.open(hostile))
    for cmd in ("lt", "tm", "ni -t " + CLICK, "li " + CLICK, "pt " + CLICK, "ri", "ps"):
        out = dbg.plain(
            cmd
            if " " not in cmd or cmd.startswith(("lt", "tm"))
            else cmd.split(" ")[0]
            + " '"
            + cmd.split(" ", 1)[1].replace("-t ", "")
            + "'"
            + (" -t" if "-t" in cmd else "")
        )
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, cmd
    lt = dbg.plain("lt")
    assert CLICK in lt and BOLD in lt and "[@click=app.exit]x[/]" in lt
    assert "t\u241b]0;pwned\u2407" in lt  # the escape is visible, not sent


def test_trace_info_and_debug_cli_print_no_control_characters(hostile) -> None:
    for argv in (["trace", "info", hostile], ["debug", hostile, "-c", "lt", "-c", "tm"]):
        p = subprocess.run([sys.executable, "-m", "tracetensor", *argv], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert not any(c in p.stdout for c in "\x1b\x07\u202e"), argv
    assert "[@click=app.exit]x[/]" in p.stdout and CLICK in p.stdout


def _strips(widget) -> list:
    from textual.geometry import Region

    return widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))


async def test_tui_shows_markup_in_names_literally_and_clicking_runs_nothing(hostile) -> None:
    dbg = Debugger(tt.trace.open(hostile))
    app = DebuggerApp(dbg, "trace", "intro " + CLICK, "end")
    async with app.run_test(size=(220, 50)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunEndScreen)
        for cmd in ("lt", "tm", "gf", "ni '" + CLICK + "'"):
            app.run_command(cmd)
            await pilot.pause()
            await app.workers.wait_for_complete()  # commands run in workers
            await pilot.pause()
            # `lt` answers in the tensor list, the other commands in the output pane
            out = app.screen.query_one(TensorList) if cmd == "lt" else app.screen.query_one("#output", Static)
            strips = _strips(out)
            text = "\n".join(st.text for st in strips)
            assert cmd == "gf" or CLICK in text or "CLICKME" in text, (cmd, text)
            assert not any(s.style is not None and s.style.meta.get("@click") for st in strips for s in st), (
                f"{cmd}: a trace name became a clickable action"
            )
            for y, st in enumerate(strips):
                x = st.text.find("CLICKME")
                if x >= 0:
                    await pilot.click(out, offset=(x + 2, y))
                    await pilot.pause()
                    break
            assert app.is_running and app.return_value is None, f"{cmd}: clicking a name ran an action"
        head = to_plain(app.screen.query_one("#list-head", Static).content)
        assert "culprit (has_inf_or_nan): " + CLICK in head
        # the tensor list and the header
        await pilot.press("ctrl+l", "down")
        await pilot.pause()
        assert "\x1b" not in app.sub_title
    assert app.return_value is None


async def test_tui_palette_shows_names_literally(hostile) -> None:
    from textual.command import CommandPalette

    dbg = Debugger(tt.trace.open(hostile))
    app = DebuggerApp(dbg, "trace", "", "end")
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        app.action_command_palette()
        await pilot.pause()
        await pilot.press(*"CLICKME")
        await pilot.pause(0.5)
        pal = app.screen
        assert isinstance(pal, CommandPalette)
        from textual.command import CommandList

        cl = pal.query_one(CommandList)
        prompts = [str(cl.get_option_at_index(i).prompt) for i in range(cl.option_count)]
        assert any(CLICK in p for p in prompts), prompts


async def test_tui_damaged_tensor_value_shows_an_error_and_keeps_the_app(hostile) -> None:
    db = sqlite3.connect(hostile)
    with db:
        db.execute("UPDATE tensors SET npy = ?", (b"\x93NUMPY\x01\x00garbage-header" + b"\x00" * 40,))
    db.close()
    dbg = Debugger(tt.trace.open(hostile))
    app = DebuggerApp(dbg, "trace", "", "end")
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+l", "enter")
        await pilot.pause()
        vals = to_plain(app.screen.query_one("#values", Static).content)
        assert "error" in vals and hostile in vals
        assert app.is_running


# --------------------------------------------------------------------------- eval


def _eval_debugger() -> Debugger:
    x = tt.tensor([[1.0, 2.0], [3.0, 4.0]])
    with MemoryTrace(values=True) as tr:
        r = ev.begin_run("debug", name="step")
        (x * 2).relu()
        ev.end_run(r)
    return Debugger(tr)


@pytest.mark.parametrize(
    "expr",
    [
        "().__class__.__bases__[0].__subclasses__()",
        "np.__class__",
        "np.sum.__globals__",
        "`relu:0`.__class__",
        "np.lib.npyio.os.system",
        "np.os.system('touch /tmp/owned')",
        "np.ctypeslib",
        "np.testing",
        "__import__('os')",
        "getattr(np, '__loader__')",
        "np.load('x.npy', allow_pickle=True)",
        "`relu:0`.tofile('/tmp/x')",
        "`relu:0`.ctypes",
        "(lambda: 1)()",
        "[x for x in (1, 2)]",
        "np.vectorize(np.sum)",
        "_t0",
        "np.sum(**{'a': 1})",
        "9 ** 9 ** 9",
        "np.test()",
        "np.char.join",
        "np.str_('{0.__class__.__mro__}').format(np.sum)",
        "np.float32.mro()",
    ],
)
def test_eval_refuses_escapes(expr: str) -> None:
    out = _eval_debugger().execute(
        "eval " + json.dumps(expr)[1:-1].replace("'", "\\'").join("''")
        if False
        else 'eval "' + expr.replace('"', '\\"') + '"'
    )
    assert out.error, to_plain(out.output)
    assert "eval" in to_plain(out.output)
    assert not os.path.exists("/tmp/owned")


def test_eval_computes_numpy_expressions() -> None:
    dbg = _eval_debugger()
    assert "20.0" in dbg.plain("eval np.sum(`relu:0`)")
    assert "[4., 8.]" in dbg.plain('eval "`relu:0`[:, 1]"').replace(" ", "").replace(",", ", ")
    assert "True" in dbg.plain('eval "np.linalg.norm(`relu:0`) > 1 and `relu:0`.max() == 8"')
    assert "(2, 2)" in dbg.plain("eval `relu:0`.T.shape")
    assert "6.0" in dbg.plain("eval np.add.reduce(np.array([1.0,2,3]))")
    assert "not Python" in dbg.plain("help eval")


# --------------------------------------------------------------------------- sources


def test_offline_source_comes_only_from_the_trace(tmp_path) -> None:
    p = _recorded(tmp_path)
    db = sqlite3.connect(p)
    with db:  # frames that point at files of the machine opening the trace
        for i, frames in db.execute("SELECT id, frames FROM stacks").fetchall():
            fr = json.loads(frames)
            fr[0][0] = "/etc/passwd"
            db.execute("UPDATE stacks SET frames = ? WHERE id = ?", (json.dumps(fr), i))
    db.close()
    dbg = Debugger(tt.trace.open(p))
    assert "/etc/passwd" in dbg.plain("ps")
    out = dbg.plain("ps /etc/passwd")
    assert "not in the trace" in out and "root:" not in out
    assert "root:" not in dbg.plain("ni -t log")


def test_live_source_reads_only_small_regular_files(tmp_path) -> None:
    from tracetensor.trace.base import read_source

    fifo = tmp_path / "fifo.py"
    os.mkfifo(fifo)
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * (3 << 20))
    ok = tmp_path / "ok.py"
    ok.write_text("x = 1\n")
    tr = MemoryTrace(start=False)
    assert tr.source(str(ok)) == "x = 1\n"
    for bad in ("/dev/zero", str(fifo), str(tmp_path), str(big), "/nonexistent/x.py", "a\x00b"):
        assert tr.source(bad) is None, bad
    assert read_source(str(big), limit=4 << 20) is not None


# --------------------------------------------------------------------------- damaged traces


def _npy_header(shape: tuple) -> bytes:
    import struct

    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': " + repr(shape) + ", }"
    hdr += " " * (63 - (len(hdr) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + b"\x00" * 64


def _zbomb() -> bytes:
    """4 MB of zlib that inflate to 4 GiB of zeros (a full flush makes each 1 MiB chunk
    stand alone, so one compressed chunk repeated is a valid stream)."""
    import zlib

    c = zlib.compressobj(9)
    first = c.compress(b"\x00" * (1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    chunk = c.compress(b"\x00" * (1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return first + chunk * 4095 + c.flush()


DAMAGE: dict[str, tuple] = {
    "no t0": ("DELETE FROM meta WHERE key='t0'",),
    "text t0": ("UPDATE meta SET value='abc' WHERE key='t0'",),
    "negative version": ("UPDATE meta SET value='-1' WHERE key='version'",),
    "future version": ("UPDATE meta SET value='99' WHERE key='version'",),
    "undecodable meta": (("UPDATE meta SET value=CAST(? AS TEXT) WHERE key='format'", (b"\xff\xfe",)),),
    "bad json outputs": ("UPDATE sigs SET outputs='[['",),
    "bad json inputs": ("UPDATE sigs SET inputs='{'",),
    "bad json stack": ("UPDATE stacks SET frames='[[1'",),
    "bad json fetches": ("UPDATE runs SET fetches='[x'",),
    "text in blob column": ("UPDATE blocks SET data='hello'",),
    "text in npy column": ("UPDATE tensors SET npy='hello'",),
    "garbage block": (("UPDATE blocks SET data=?", (bytes(range(256)) * 4,)),),
    "negative n": ("UPDATE blocks SET n=-1",),
    "huge m": ("UPDATE blocks SET m=1000000000000",),
    "text n": ("UPDATE blocks SET n='x'",),
    "huge npy shape": (("UPDATE tensors SET npy=?", (_npy_header((1 << 20, 1 << 20, 1 << 10)),)),),
    "garbage npy header": (("UPDATE tensors SET npy=?", (b"\x93NUMPY\x01\x00\x10\x00{'descr': 'x'}  \n",)),),
    "text start": ("UPDATE runs SET start_ns='abc'",),
    "no sigs": ("DELETE FROM sigs",),
    "no ops": ("DELETE FROM ops",),
    "bad graph": ("INSERT INTO graphs(graph, version, nodes) VALUES (1, 1, '[[1]]')",),
    "bad device time": ("INSERT INTO device_times VALUES (1, 'x')",),
    "endless view": (
        "DROP TABLE runs",
        "CREATE VIEW runs AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL"
        " SELECT x+1 FROM c) SELECT x,'','','','[]','[]',NULL,0,0,0,0,NULL,0 FROM c",
    ),
    "no runs table": ("DROP TABLE runs",),
}
DEBUG_CMDS = ["lt", "tm", "pt relu:0", "ni -t relu", "ps", "ri", "gf", "eval `relu:0`", "run", "lt"]


def _damage(path: str, stmts: tuple) -> None:
    db = sqlite3.connect(path)
    with db:
        for s in stmts:
            db.execute(s) if isinstance(s, str) else db.execute(*s)
    db.close()


@pytest.fixture(scope="module")
def good_trace(tmp_path_factory) -> str:
    return _recorded(tmp_path_factory.mktemp("good"))


def _copy(src: str, dst) -> str:
    import shutil

    shutil.copy(src, dst)
    return str(dst)


def _api_reads_all(path: str) -> None:
    with tt.trace.open(path) as t:
        list(t.iter_events())
        t.runs(), t.graphs(), t.value("relu:0"), t.find("relu:0"), t.device_times(1), t.info()


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from tracetensor.cli import main

    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_trace_gives_one_clear_error(case: str, good_trace, tmp_path, capsys) -> None:
    p = _copy(good_trace, tmp_path / "t.ttrace")
    _damage(p, DAMAGE[case])
    try:
        _api_reads_all(p)
    except tt.trace.TraceFileError as e:
        assert p in str(e)
    rc, out, err = _cli(["trace", "info", p], capsys)
    assert rc in (0, 2) and "Traceback" not in err
    if rc == 2:
        assert err.count("\n") == 1 and p in err
    rc, out, err = _cli(["profile", "--from-trace", p, "--out", str(tmp_path / "prof")], capsys)
    assert rc in (0, 2) and "Traceback" not in out + err
    if rc == 2:
        assert err.count("\n") == 1 and p in err, err
    rc, out, err = _cli(["debug", p, *(x for c in DEBUG_CMDS for x in ("-c", c))], capsys)
    assert "Traceback" not in out + err
    if rc == 2:  # the file cannot be opened: one line naming it
        assert err.count("\n") == 1 and p in err, err
    else:  # a command that meets a damaged part says so in one line, the others still work
        assert "tfdbg> lt" in out
        for ln in out.splitlines():
            assert "Error" not in ln or ln.startswith("error: "), ln


def test_byte_flips_and_truncations_anywhere_give_one_clear_error(good_trace, tmp_path, capsys) -> None:
    import random

    rng = random.Random(15)
    size = os.path.getsize(good_trace)
    cuts = [0, 50, 100, 1000, 4096, size // 2, size - 1]
    flips = [rng.randrange(0, size) for _ in range(24)]
    for k, (kind, at) in enumerate([("cut", c) for c in cuts] + [("flip", f) for f in flips]):
        p = _copy(good_trace, tmp_path / f"{k}.ttrace")
        with open(p, "r+b") as f:
            if kind == "cut":
                f.truncate(at)
            else:
                f.seek(at)
                b = f.read(1)
                f.seek(at)
                f.write(bytes([b[0] ^ 0xA5]))
        try:
            _api_reads_all(p)
        except tt.trace.TraceFileError as e:
            assert p in str(e), (kind, at)
        rc, out, err = _cli(["debug", p, "-c", "lt", "-c", "tm", "-c", "pt relu:0"], capsys)
        assert "Traceback" not in out + err, (kind, at)


def _run_cli(argv: list[str], tmp_path, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real command line, in a child limited to 1 GiB of address space beyond its start."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    return subprocess.run(
        [sys.executable, "-m", "tracetensor", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        preexec_fn=limit,
    )


def test_zlib_bomb_fifo_directory_and_foreign_sqlite_fail_fast(good_trace, tmp_path, capsys) -> None:
    import time

    bomb = _copy(good_trace, tmp_path / "bomb.ttrace")
    _damage(bomb, (("UPDATE blocks SET data=?", (_zbomb(),)),))
    fifo = str(tmp_path / "x.ttrace")
    os.mkfifo(fifo)
    foreign = str(tmp_path / "foreign.ttrace")
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE meta(key, value)")
    db.commit()
    db.close()
    # the real command line (a child process, bounded in time and address space) for three ...
    for p, says, argv in (
        (bomb, "inflates to more than", ["debug", bomb, "-c", "lt", "-c", "pt relu:0"]),
        (fifo, "not a regular file", ["trace", "info", fifo]),
        (foreign, "not a tracetensor trace", ["debug", foreign]),
    ):
        t0 = time.monotonic()
        r = _run_cli(argv, tmp_path, timeout=30)
        assert time.monotonic() - t0 < 20
        assert "Traceback" not in r.stderr + r.stdout, r.stderr
        assert says in r.stderr + r.stdout and p in r.stderr + r.stdout, (argv, r.stdout, r.stderr)
    # ... and in process for the rest
    for p, says in (
        (fifo, "not a regular file"),
        (str(tmp_path), "not a regular file"),
        (foreign, "not a tracetensor trace"),
    ):
        for argv in (["trace", "info", p], ["debug", p, "-c", "lt"]):
            rc, out, err = _cli(argv, capsys)
            assert rc == 2 and says in err and p in err and err.count("\n") == 1, (argv, err)
        with pytest.raises(tt.trace.TraceFileError, match=says):
            tt.trace.open(p)
    assert sorted(os.listdir(tmp_path)) == ["bomb.ttrace", "foreign.ttrace", "x.ttrace"]


# --------------------------------------------------------------------------- save and graph files


def _npz(path, members: dict[str, bytes], compress: bool = False) -> str:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name + ".npy", data)
    return str(path)


def _npy(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _manifest(root) -> bytes:
    return _npy(
        np.frombuffer(json.dumps({"format": "tracetensor-checkpoint", "version": 1, "root": root}).encode(), np.uint8)
    )


def _bomb_npz(path) -> str:
    """A 300 MiB array of zeros in about 300 KB: a zip bomb in an npz."""
    import zipfile

    n = 300 << 20
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("__manifest__.npy", _manifest({"$tensor": "t0", "device": "cpu"}))
        with z.open("t0.npy", "w", force_zip64=True) as f:
            f.write(
                _npy(np.zeros(0, np.float32))[: -0 or None]
                .replace(b"(0,)", f"({n // 4},)".encode())
                .ljust(128, b" ")[:127]
                + b"\n"
            )
            chunk = b"\x00" * (4 << 20)
            for _ in range(n // len(chunk)):
                f.write(chunk)
    return str(path)


SAVE_CASES = {
    "4 TiB declared shape": lambda p: _npz(
        p, {"__manifest__": _manifest({"$tensor": "t0"}), "t0": _npy_header((1 << 40,))}
    ),
    "tpu:9 device": lambda p: _npz(
        p, {"__manifest__": _manifest({"$tensor": "t0", "device": "tpu:9"}), "t0": _npy(np.ones(3, np.float32))}
    ),
    "50k-deep manifest": lambda p: _npz(
        p,
        {
            "__manifest__": _npy(
                np.frombuffer(
                    (
                        '{"format": "tracetensor-checkpoint", "version": 1, "root": '
                        + '{"$list": [' * 50_000
                        + "null"
                        + "]}" * 50_000
                        + "}"
                    ).encode(),
                    np.uint8,
                )
            )
        },
    ),
    "deep but parseable manifest": lambda p: _npz(
        p,
        {
            "__manifest__": _npy(
                np.frombuffer(
                    (
                        '{"format": "tracetensor-checkpoint", "version": 1, "root": '
                        + '{"$list": [' * 900
                        + "null"
                        + "]}" * 900
                        + "}"
                    ).encode(),
                    np.uint8,
                )
            )
        },
    ),
    "garbage npy header": lambda p: _npz(
        p, {"__manifest__": b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'sha" + b"\x00" * 40}
    ),
    "string dtype": lambda p: _npz(p, {"__manifest__": _manifest({"$ndarray": "t0"}), "t0": _npy(np.array(["a"]))}),
    "zip bomb": _bomb_npz,
    "not a zip": lambda p: (p.write_bytes(b"\x80\x04garbage"), str(p))[1],
}


@pytest.mark.parametrize("case", sorted(SAVE_CASES))
def test_damaged_save_file_gives_one_serialization_error(case: str, tmp_path) -> None:
    import resource
    import time

    p = SAVE_CASES[case](tmp_path / "ckpt.tt")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    with pytest.raises(tt.SerializationError) as ei:
        tt.load(p)
    assert time.monotonic() - t0 < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < (200 << 10)  # KiB: far below the bomb
    msg = str(ei.value)
    assert p in msg and "\n" not in msg
    says = {
        "tpu:9 device": "map_location='cpu'",
        "zip bomb": "refused as a zip bomb",
        "4 TiB declared shape": "declares shape (1099511627776,)",
        "50k-deep manifest": "nested too deeply",
        "string dtype": "only numeric arrays",
        "garbage npy header": "not a valid .npy header",
    }
    assert says.get(case, "") in msg, msg
    # every reader of .npz files refuses the same file the same way
    with pytest.raises(tt.SerializationError, match=str(p).replace(".", r"\.")):
        tt.graph.load(p)


def test_load_refuses_directories_and_pipes_by_name(tmp_path) -> None:
    fifo = tmp_path / "pipe.tt"
    os.mkfifo(fifo)
    for p in (tmp_path, fifo):
        for load in (tt.load, tt.graph.load):
            with pytest.raises(tt.SerializationError, match="not a regular file"):
                load(str(p))


def test_saver_and_graph_load_name_the_file_for_missing_keys_and_strings(tmp_path) -> None:
    import tracetensor.graph as tf

    g = tf.Graph()
    with g.as_default():
        tf.Variable(np.ones((2, 2), np.float32), name="w")
        saver = tf.train.Saver()
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            good = saver.save(s, tmp_path / "ckpt")
            strings = _npz(
                tmp_path / "strings.npz",
                {"__tracetensor_checkpoint__": _npy(np.array(1)), "w": _npy(np.array([["a", "b"], ["c", "d"]]))},
            )
            with pytest.raises(tt.SerializationError, match="strings.npz.*dtype <U1"):
                saver.restore(s, strings)
            saver.restore(s, good)
            graph = tf.export(tmp_path / "g.npz", s)
    import zipfile

    with zipfile.ZipFile(graph) as z:
        meta = json.loads(np.load(z.open("__graph__.npy")).tobytes())
    for broken in (
        {k: v for k, v in meta.items() if k != "variables"},
        {**meta, "variables": [{"name": "w"}]},
        {**meta, "nodes": [{"name": "x"}]},
    ):
        p = _npz(tmp_path / "broken.npz", {"__graph__": _npy(np.frombuffer(json.dumps(broken).encode(), np.uint8))})
        with pytest.raises(tt.SerializationError, match="broken.npz is not a valid tracetensor graph file"):
            tf.load(p)


@pytest.mark.parametrize(
    "call, says",
    [
        (lambda: tt.tensor([2**70]), "tensor: cannot make a tensor of list"),
        (lambda: tt.tensor([object()]), "numbers or bools"),
        (lambda: tt.tensor([[1, 2], [3]]), "inhomogeneous"),
        (lambda: tt.tensor(["a"]), "dtype <U1"),
        (lambda: tt.zeros(-1, 3), "zeros: negative dimension -1"),
        (lambda: tt.ones((2, -3)), "ones: negative dimension -3"),
        (lambda: tt.zeros(1e12), "zeros: size must be integers"),
        (lambda: tt.zeros(10**12), "zeros: cannot allocate 3725.3 GiB"),
        (lambda: tt.randn(10**7, 10**7), "randn: cannot allocate"),
        (lambda: tt.full((10**13,), 1.0), "full: cannot allocate"),
        (lambda: tt.arange(0, 5, 0), "arange:"),
    ],
)
def test_bad_creation_arguments_are_library_errors_naming_the_call(call, says: str) -> None:
    with pytest.raises(tt.TraceTensorError, match=None) as ei:
        call()
    assert says in str(ei.value) and "test_hostile.py" in str(ei.value)  # and the user's line


def test_nan_reports_show_hostile_names_as_plain_text() -> None:
    """The pytest plugin's report and `tt.debugging`'s error name ops by the user's scopes:
    written to a terminal, they carry no control character."""
    from tracetensor.nancheck import Numerics

    with np.errstate(all="ignore"), Numerics(summaries=False) as n, tt.name_scope(OSC):
        tt.tensor([-1.0, 4.0]).sqrt()
    for text in (n.reason("all"), n.report("all")):
        assert "pwned" in text and not any(c in text for c in "\x1b\x07\u202e"), text
    with pytest.raises(tt.debugging.NumericsError) as info, np.errstate(all="ignore"):
        with tt.debugging.check_numerics_mode(), tt.name_scope(OSC):
            tt.tensor([-1.0, 4.0]).sqrt()
    assert "pwned" in str(info.value) and not any(c in str(info.value) for c in "\x1b\x07\u202e")
