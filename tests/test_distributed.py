"""Distributed data-parallel training on MPI: collectives, DDP, the sampler, per-rank
traces read as one (debugger, merge) and the profiler across ranks. The MPI tests run real
`mpiexec -n 2` jobs, each bounded in time; scenarios share jobs to keep the suite quick."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import numpy as np
import pytest

import tracetensor as tt
import tracetensor.distributed as dist
from tracetensor import events as ev
from tracetensor.mpirun import run_command
from tracetensor.trace import multi
from tracetensor.utils.data.distributed import DistributedSampler

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, "mpi", "train.py")
TIMEOUT = 90
_skip_without_mpi = pytest.mark.skipif(
    not dist.is_available() or dist.find_mpiexec() is None,
    reason='needs mpi4py and mpiexec: pip install "tracetensor[distributed]"',
)


def needs_mpi(test):
    """Runs real `mpiexec -n 2` jobs (marker `mpi`); skipped where MPI is not installed."""
    return pytest.mark.mpi(_skip_without_mpi(test))


def _cli(*args: str, cwd: str) -> tuple[int, str]:
    return run_command([sys.executable, "-m", "tracetensor", *args], TIMEOUT, cwd=cwd)


# --------------------------------------------------------------------------- without MPI


def test_sampler_splits_the_dataset_between_ranks_and_reshuffles_per_epoch():
    data = list(range(10))
    parts = [list(DistributedSampler(data, num_replicas=3, rank=r, seed=7)) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]  # padded to ceil(10 / 3) each
    assert set().union(*parts) == set(data)
    samplers = [DistributedSampler(data, num_replicas=3, rank=r, seed=7) for r in range(3)]
    for s in samplers:
        s.set_epoch(1)
    assert [list(s) for s in samplers] != parts  # a new order this epoch ...
    assert set().union(*(list(s) for s in samplers)) == set(data)  # ... still covering the dataset
    dropped = [list(DistributedSampler(data, 3, r, shuffle=False, drop_last=True)) for r in range(3)]
    assert dropped == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ValueError, match="rank should be in"):
        DistributedSampler(data, num_replicas=2, rank=2)


def test_collectives_without_a_process_group_say_how_to_start_one():
    with pytest.raises(dist.DistributedError, match="init_process_group"):
        dist.all_reduce(tt.ones(3))
    with pytest.raises(dist.DistributedError, match="backend 'nccl' is not supported"):
        dist.init_process_group("nccl")
    assert not dist.is_initialized()


def test_without_mpi4py_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if it were not installed
    assert not dist.is_available()
    with pytest.raises(ImportError, match=r'pip install "tracetensor\[distributed\]"'):
        dist.init_process_group("mpi")


def test_a_hooked_leaf_is_accumulated_as_soon_as_its_last_use_is_done():
    # what lets DDP start reducing a layer's gradients while backward still runs earlier layers
    w1 = tt.tensor(np.ones((3, 3)), requires_grad=True)
    w2 = tt.tensor(np.ones((3, 3)), requires_grad=True)
    seen = []
    w2.register_post_accumulate_grad_hook(lambda t: seen.append(("w2", w1.grad is None, t.grad.numpy().sum())))
    w1.register_post_accumulate_grad_hook(lambda t: seen.append(("w1", True, t.grad.numpy().sum())))
    x = tt.tensor(np.ones((2, 3)))
    ((x @ w1).tanh() @ w2).sum().backward()
    assert [s[0] for s in seen] == ["w2", "w1"]
    assert seen[0][1]  # w2's hook ran before w1 had its gradient: before the first layer's backward
    assert seen[0][2] == pytest.approx(18 * np.tanh(3.0))  # and it is the whole gradient


# --------------------------------------------------------------------------- MPI jobs


def _collectives_on_two_ranks():
    import numpy as np

    import tracetensor as tt
    import tracetensor.distributed as dist

    dist.init_process_group("mpi")
    r, n = dist.get_rank(), dist.get_world_size()
    evs = []
    out = {}
    with tt.events.listen(evs.append):
        t = tt.tensor(np.arange(4.0) + r)
        dist.all_reduce(t)
        out["sum"] = t.numpy()
        m = tt.tensor(np.array([1.0, 5.0]) * (r + 1))
        dist.all_reduce(m, dist.ReduceOp.MAX)
        out["max"] = m.numpy()
        a = tt.tensor(np.full(3, float(r + 1)))
        work = dist.all_reduce(a, dist.ReduceOp.AVG, async_op=True)
        work.wait()
        out["avg"], out["done"] = a.numpy(), work.is_completed()
        b = tt.tensor(np.full(2, float(r)))
        dist.broadcast(b, src=1)
        out["bcast"] = b.numpy()
        gathered = [tt.zeros(2) for _ in range(n)]
        dist.all_gather(gathered, tt.tensor(np.full(2, float(r), np.float32)))
        out["gather"] = [g.numpy() for g in gathered]
        o = tt.zeros(2)
        dist.reduce_scatter(o, [tt.tensor(np.full(2, float(10 * i + r), np.float32)) for i in range(n)])
        out["rs"] = o.numpy()
        dist.barrier()
    out["events"] = [
        (e.phase, e.op, e.inputs, e.forward, e.iteration, e.outputs[0].nbytes)
        for e in evs
        if isinstance(e, tt.events.OpEvent)
    ]
    out["rank"] = r
    # DDP's no_sync: a local backward, then a synchronized one averages the accumulated gradients
    from tracetensor.nn.parallel import DistributedDataParallel

    lin = tt.nn.Linear(2, 1, bias=False).double()
    ddp = DistributedDataParallel(lin)
    x = tt.tensor(np.array([[1.0, 2.0]]) * (r + 1))
    with ddp.no_sync():
        ddp(x).sum().backward()
    out["local_grad"] = lin.weight.grad.numpy().copy()
    ddp(x).sum().backward()
    out["synced_grad"] = lin.weight.grad.numpy().copy()
    # a parameter that gets no gradient is named at the next call, not left hanging
    two = tt.nn.ModuleList([tt.nn.Linear(2, 1), tt.nn.Linear(2, 1)]).double()
    ddp2 = DistributedDataParallel(two)
    ddp2.module[0](x).sum().backward()
    try:
        ddp2(x)
    except dist.DistributedError as e:
        out["unused"] = str(e)

    # ... unless find_unused_parameters=True: then they are left alone, the rest is averaged
    class Half(tt.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = tt.nn.Linear(2, 1, bias=False), tt.nn.Linear(2, 1, bias=False)

        def forward(self, x):
            return self.a(x)

    half = Half().double()
    ddp3 = DistributedDataParallel(half, find_unused_parameters=True)
    for _ in range(2):
        ddp3(x).sum().backward()
    out["find_unused"] = (half.a.weight.grad.numpy().tolist(), half.b.weight.grad is None)
    dist.destroy_process_group()
    return out


@needs_mpi
def test_collectives_on_two_ranks(tt_distributed):
    r0, r1 = tt_distributed(_collectives_on_two_ranks, n=2, timeout=TIMEOUT)
    assert (r0["rank"], r1["rank"]) == (0, 1)
    for res in (r0, r1):
        np.testing.assert_array_equal(res["sum"], [1, 3, 5, 7])
        np.testing.assert_array_equal(res["max"], [2, 10])
        np.testing.assert_array_equal(res["avg"], [1.5, 1.5, 1.5])
        assert res["done"]
        np.testing.assert_array_equal(res["bcast"], [1, 1])
        np.testing.assert_array_equal(res["gather"][1], [1, 1])
    np.testing.assert_array_equal(r0["rs"], [1, 1])  # 0 + 1
    np.testing.assert_array_equal(r1["rs"], [21, 21])  # 10 + 11
    # each collective is an event: phase, op, peers, how the bytes went, the same ordinal on both ranks
    ops = [e[1] for e in r0["events"]]
    assert ops == ["all_reduce", "all_reduce", "all_reduce", "broadcast", "all_gather", "reduce_scatter", "barrier"]
    assert r0["events"][0] == ("collective", "all_reduce", ("rank:0", "rank:1"), "host", 0, 32)
    assert [e[4] for e in r0["events"]] == [e[4] for e in r1["events"]] == list(range(7))
    np.testing.assert_array_equal(r0["local_grad"], [[1, 2]])
    np.testing.assert_array_equal(r1["local_grad"], [[2, 4]])
    for res in (r0, r1):  # mean over ranks of (x_r + x_r): (2 * [1, 2] + 2 * [2, 4]) / 2
        np.testing.assert_array_equal(res["synced_grad"], [[3, 6]])
        assert "gave no gradient to parameters" in res["unused"] and "1.weight" in res["unused"]
        assert res["find_unused"] == ([[3.0, 6.0]], True)  # two synced steps of mean([1, 2], [2, 4])


@needs_mpi
@pytest.mark.tracetensor_allow_nan
def test_ddp_matches_one_process_and_the_straggler_shows_in_the_profile(tmp_path):
    ref = tmp_path / "ref.npy"
    code, text = run_command([sys.executable, TRAIN, "--single", "--save", str(ref)], TIMEOUT)
    assert code == 0, text
    # rank 1 sleeps 100 ms before each backward: rank 0 waits for it in the gradient all-reduce
    code, text = _cli(
        "profile",
        "-n",
        "2",
        "-o",
        "prof",
        "--row-limit",
        "5",
        TRAIN,
        "--delay-rank",
        "1",
        "--delay",
        "0.1",
        "--save",
        str(tmp_path / "ddp.npy"),
        cwd=str(tmp_path),
    )
    assert code == 0, text
    np.testing.assert_allclose(np.load(tmp_path / "ddp.npy"), np.load(ref), rtol=0, atol=1e-6)
    assert "-- rank 0 --" in text and "-- rank 1 --" in text and "all_reduce (collective)" in text
    # step 0 also holds the start-up broadcast, where rank 1 may wait for a slow-starting rank 0
    assert "rank 1 was the slowest in 6 of 6 steps" in text or "rank 1 was the slowest in 5 of 6 steps" in text, text
    with tt.trace.open_ranks(str(tmp_path / "prof" / "train.rank*.ttrace")) as mt:
        st = multi.steps(mt)
        assert len(st) == 6
        for s in st[1:]:
            assert s.slowest == 1, s
            assert s.ranks[0].wait > 50e6 > s.ranks[1].wait, s  # rank 0 waited ~100 ms a step for rank 1
            assert s.ranks[1].idle > 90e6, s  # the straggler's sleep is idle time
    chrome = json.loads((tmp_path / "prof" / "trace.json").read_text())
    names = {e["args"]["name"] for e in chrome["traceEvents"] if e.get("name") == "process_name"}
    assert names == {"rank 0", "rank 1"}
    waits = [e for e in chrome["traceEvents"] if e.get("cat") == "wait" and e["args"]["collective"].startswith("ddp/b")]
    long_waits = [(e["pid"], e["name"]) for e in waits if e["dur"] > 50e3]
    # (on a loaded machine a slow-starting rank 0 can keep rank 1 waiting in the first step)
    on_rank0 = long_waits.count((1, "wait for rank 1"))
    assert on_rank0 >= 5 and len(long_waits) - on_rank0 <= 1, long_waits


@needs_mpi
@pytest.mark.tracetensor_allow_nan
def test_first_nan_across_ranks_is_named_by_rank_step_op_and_line(tmp_path):
    code, text = run_command(
        [
            dist.find_mpiexec(),
            "-n",
            "2",
            sys.executable,
            TRAIN,
            "--record",
            "run.ttrace",
            "--nan-rank",
            "1",
            "--nan-step",
            "5",
            "--steps",
            "7",
        ],
        TIMEOUT,
        cwd=str(tmp_path),
    )
    assert code == 0, text
    assert sorted(os.listdir(tmp_path)) == ["run.rank0.ttrace", "run.rank1.ttrace"]
    line = next(i for i, s in enumerate(open(TRAIN), 1) if "the injected NaN" in s)
    code, out = _cli("debug", "run.rank*.ttrace", "-c", "lt -f has_inf_or_nan", "-c", "ranks", cwd=str(tmp_path))
    assert code == 0, out
    assert f"culprit (has_inf_or_nan): rank1/mul:0  (rank 1, step 5, op mul at train.py:{line} in loss_fn)" in out
    rows = {ln.split()[0]: ln for ln in out.split("tfdbg> ranks")[1].splitlines() if ln[:2] in ("0 ", "1 ")}
    assert f"mul:0 (mul) at train.py:{line}" in rows["1"]  # rank 1 made it
    assert "(all_reduce)" in rows["0"]  # rank 0 got its first NaN from the gradient all-reduce
    asyncio.run(_tui_shows_the_culprit_of_the_job(str(tmp_path / "run.rank*.ttrace")))
    # merged into one file, every tool reads it as a single trace
    code, out = _cli("trace", "merge", "run.rank0.ttrace", "run.rank1.ttrace", "-o", "all.ttrace", cwd=str(tmp_path))
    assert code == 0, out
    with tt.trace.open(str(tmp_path / "all.ttrace")) as tr:
        bad = tr.first_nonfinite()
        assert bad.name == "rank1/mul" and [r.run for r in tr.runs() if r.kind == "step"].index(bad.run) == 5
        assert {e.name.split("/")[0] for e in tr.events(bad.run)} == {"rank0", "rank1"}


@needs_mpi
def test_graph_mode_distributed_optimizer_matches_one_process(tmp_path):
    script = os.path.join(HERE, "mpi", "graph_train.py")
    code, text = run_command([sys.executable, script, str(tmp_path / "one.npy"), "--single"], TIMEOUT)
    assert code == 0, text
    # the ranks start from different weights: broadcast_global_variables(0) must align them
    code, text = run_command(
        [
            dist.find_mpiexec(),
            "-n",
            "2",
            sys.executable,
            "-m",
            "tracetensor",
            "trace",
            "record",
            "-o",
            str(tmp_path / "g.ttrace"),
            script,
            str(tmp_path / "two.npy"),
        ],
        TIMEOUT,
    )
    assert code == 0, text
    np.testing.assert_allclose(np.load(tmp_path / "two.npy"), np.load(tmp_path / "one.npy"), rtol=0, atol=1e-6)
    with tt.trace.open_ranks(str(tmp_path / "g.rank*.ttrace")) as mt:
        colls = mt.events(phase="collective")
        assert {e.op for e in colls} == {"HorovodAllreduce", "HorovodBroadcast"}
        assert {e.mode for e in colls} == {"graph"}
        assert len(multi.collectives(mt)) == 2 + 5 * 2  # 2 variables broadcast, 2 gradients a step


async def _tui_shows_the_culprit_of_the_job(pattern: str) -> None:
    from tracetensor.debugger import Debugger
    from tracetensor.debugger.cli import start_run
    from tracetensor.debugger.tui import DebuggerApp, TensorList

    with tt.trace.open_ranks(pattern) as mt:
        app = DebuggerApp(Debugger(mt, start_run(mt)), "job", "", "end")
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.pause()
            tl = app.screen.query_one(TensorList)
            assert tl.rows[0].tensor_name == "rank1/mul:0" and tl.culprit is tl.rows[0]


def _fake_rank(path, rank: int, offset: int, ops: list) -> None:
    """A per-rank trace written directly: one step with (phase, op, start, end, ordinal) ops,
    times in this rank's clock (rank 0's clock minus `offset`)."""
    from tracetensor.trace.store import TraceWriter

    w = TraceWriter(str(path), meta={"rank": rank, "world_size": 2, "clock_offset_ns": offset, "values": "none"})
    meta = (ev.TensorMeta("x:0", (4,), "float32", "cpu", 16),)
    evs: list = [ev.RunStart(1, "eager", "step", "step", (), (), None, 0 - offset, 1)]
    for k, (phase, op, t0, t1, ordinal) in enumerate(ops):
        evs.append(
            ev.OpEvent(
                k + 1,
                1,
                "eager",
                phase,
                op,
                f"{op}_{k}",
                ("rank:0", "rank:1"),
                meta,
                t0 - offset,
                t1 - offset,
                1,
                iteration=ordinal,
            )
        )
    evs.append(ev.RunEnd(1, 1000 - offset, 1))
    w.write(evs)
    w.close()


def test_straggler_and_waiting_come_from_aligned_clocks(tmp_path):
    # rank 1 computes until t=600 before joining the all-reduce that rank 0 entered at t=200;
    # rank 1's clock runs 5000 ns behind rank 0's (its offset puts both on rank 0's clock)
    _fake_rank(
        tmp_path / "j.rank0.ttrace",
        0,
        0,
        [("forward", "matmul", 100, 200, None), ("collective", "all_reduce", 200, 700, 0)],
    )
    _fake_rank(
        tmp_path / "j.rank1.ttrace",
        1,
        5000,
        [("forward", "matmul", 100, 600, None), ("collective", "all_reduce", 600, 700, 0)],
    )
    with tt.trace.open_ranks(str(tmp_path / "j.rank*.ttrace")) as mt:
        (c,) = multi.collectives(mt)
        assert c.last == 1 and (c.wait(0), c.transfer(0)) == (400, 100) and (c.wait(1), c.transfer(1)) == (0, 100)
        (st,) = multi.steps(mt)
        assert st.slowest == 1 and st.spread == 400
        assert (st.ranks[0].compute, st.ranks[0].wait, st.ranks[0].transfer) == (100, 400, 100)
        assert (st.ranks[1].compute, st.ranks[1].wait, st.ranks[1].transfer) == (500, 0, 100)
        assert [e.name for e in mt.events(1)] == [
            "rank0/matmul_0",
            "rank1/matmul_0",
            "rank0/all_reduce_1",
            "rank1/all_reduce_1",
        ]


def test_per_rank_traces_refuse_files_of_another_job(tmp_path):
    with tt.record(str(tmp_path / "plain.ttrace")):
        tt.ones(2) + 1
    with pytest.raises(tt.trace.TraceFileError, match="was not recorded under MPI"):
        tt.trace.open_ranks([str(tmp_path / "plain.ttrace")])
    with pytest.raises(tt.trace.TraceFileError, match="matches no file"):
        tt.trace.open_ranks(str(tmp_path / "none.rank*.ttrace"))


# --------------------------------------------------------------------------- GPU


def _cupy_collectives():
    import cupy

    import tracetensor as tt
    import tracetensor.distributed as dist

    dist.init_process_group("mpi")
    r = dist.get_rank()
    evs = []
    with tt.events.listen(evs.append):
        t = tt.tensor(cupy.arange(4.0) + r, device="cuda")
        dist.all_reduce(t)
    via = [e.forward for e in evs if getattr(e, "phase", "") == "collective"]
    # DDP on the GPU: gradients of rank-dependent inputs come out averaged
    from tracetensor.nn.parallel import DistributedDataParallel

    lin = tt.nn.Linear(2, 1, bias=False).double().cuda()
    ddp = DistributedDataParallel(lin)
    ddp(tt.tensor(cupy.asarray([[1.0, 2.0]]) * (r + 1), device="cuda")).sum().backward()
    return t._data.get().tolist(), via, lin.weight.grad._data.get().tolist()


@pytest.mark.gpu
@needs_mpi
def test_cupy_tensors_all_reduce_through_mpi(tt_distributed):
    pytest.importorskip("cupy")
    res = tt_distributed(_cupy_collectives, n=2, timeout=TIMEOUT)
    for vals, via, grad in res:
        assert vals == [1.0, 3.0, 5.0, 7.0]
        assert grad == [[1.5, 3.0]]
        assert via == ["cuda-aware" if os.environ.get("TRACETENSOR_MPI_CUDA") == "1" else "host-copy"]


def test_tt_distributed_fixture_runs_a_function_on_two_ranks(pytester):
    if not dist.is_available() or dist.find_mpiexec() is None:
        pytest.skip("needs mpi4py and mpiexec")
    pytester.makepyfile("""
        def body():
            from mpi4py import MPI
            return MPI.COMM_WORLD.Get_rank() * 10

        def test_ranks(tt_distributed):
            assert tt_distributed(body, n=2) == [0, 10]

        def failing():
            raise ValueError("boom on every rank")

        def test_failure_shows_output(tt_distributed):
            tt_distributed(failing, n=2)
    """)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=TIMEOUT)
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*MPIJobError: failing on 2 ranks failed*", "*ValueError: boom on every rank*"])


def test_recording_outside_mpi_keeps_the_path():
    assert tt.record("x.ttrace").path == "x.ttrace"
    assert dist.rank_path("out/run.ttrace", 3) == "out/run.rank3.ttrace"


def test_subprocess_helper_kills_every_process_on_timeout(tmp_path):
    code, text = run_command([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    assert code == 124 and "timed out" in text
