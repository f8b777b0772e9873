"""Distributed cost, on 2 MPI ranks of this machine (`python benchmarks/run.py distributed`):
`tt.distributed.all_reduce` against a bare mpi4py `Allreduce` of the same buffers (goal:
>= 0.9x its bandwidth); a DDP training step on 2 ranks, half the batch each, against the
same step without communication on one rank's half batch (ideal 1.0x: communication
hidden or free); and the cost of per-rank recording (`tt.record` under mpiexec) on the
DDP step. Each ratio compares timings taken in the same processes, interleaved."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, os.path.dirname(__file__))
from _common import fmt_time, interleaved, print_table


def worker(out: str) -> None:
    import numpy as np
    from mpi4py import MPI

    import tracetensor as tt
    import tracetensor.distributed as dist
    from tracetensor.nn.parallel import DistributedDataParallel

    dist.init_process_group("mpi")
    comm = MPI.COMM_WORLD
    res: dict = {"allreduce": {}, "ddp": {}}
    for n in (1 << 8, 1 << 16, 1 << 22):  # float32 elements: 1 KiB, 256 KiB, 16 MiB
        a = np.ones(n, np.float32)
        t = tt.tensor(np.ones(n, np.float32))
        number = 200 if n < 1 << 20 else 10
        # every rank runs the same rounds (the collectives must match)
        r = interleaved(
            {"mpi4py": lambda a=a: comm.Allreduce(MPI.IN_PLACE, a), "tt": lambda t=t: dist.all_reduce(t)},
            number=number,
            repeat=7,
            sync=comm.Barrier,
        )
        res["allreduce"][n * 4] = r

    g = np.random.default_rng(0)
    batch = 256
    half = batch // dist.get_world_size()
    x = tt.tensor(g.standard_normal((half, 256)).astype(np.float32))
    y = tt.tensor(g.integers(0, 10, half))

    def make():
        return tt.nn.Sequential(
            tt.nn.Linear(256, 512), tt.nn.ReLU(), tt.nn.Linear(512, 512), tt.nn.ReLU(), tt.nn.Linear(512, 10)
        )

    local = make()
    ddp = DistributedDataParallel(make(), bucket_cap_mb=1)
    opts = {"local": tt.optim.SGD(local.parameters(), lr=0.01), "ddp": tt.optim.SGD(ddp.parameters(), lr=0.01)}

    def step(model, opt):
        def run():
            opt.zero_grad()
            tt.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        return run

    local_step, ddp_step = step(local, opts["local"]), step(ddp, opts["ddp"])
    res["ddp"] = interleaved({"local": local_step, "ddp": ddp_step}, number=20, repeat=7, sync=comm.Barrier)

    # recording: the same DDP step with and without a per-rank recorder, alternating
    tmp = os.path.dirname(out)
    rec_t, plain_t = [], []
    for i in range(7):
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(20):
            ddp_step()
        plain_t.append((time.perf_counter() - t0) / 20)
        rec = tt.record(os.path.join(tmp, f"bench{i}.ttrace"), values="summary").start()
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(20):
            ddp_step()
        rec_t.append((time.perf_counter() - t0) / 20)
        rec.stop()
    res["record"] = {"plain": statistics.median(plain_t), "recorded": statistics.median(rec_t)}
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(res, f)


def main() -> None:
    from tracetensor.distributed import find_mpiexec, is_available

    mpiexec = find_mpiexec()
    if mpiexec is None or not is_available():
        print('\ndistributed: skipped (needs mpi4py and mpiexec: pip install "tracetensor[distributed]")')
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        subprocess.run([mpiexec, "-n", "2", sys.executable, __file__, "--worker", out], check=True, timeout=600)
        with open(out) as f:
            res = json.load(f)
    rows = []
    for nbytes, r in res["allreduce"].items():
        n = int(nbytes)
        size = f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"
        rows.append(
            (
                f"all_reduce {size}: tt vs bare mpi4py Allreduce",
                f"{fmt_time(r['tt'])} ({n / r['tt'] / 1e9:.2f} GB/s)",
                f"{r['mpi4py'] / r['tt']:.2f}x",
                ">= 0.9x bandwidth",
            )
        )
    d = res["ddp"]
    rows.append(
        (
            "DDP step, 2 ranks x half batch vs 1 rank half batch (no comm)",
            fmt_time(d["ddp"]),
            f"{d['ddp'] / d['local']:.2f}x",
            "~1x (comm overlapped)",
        )
    )
    rec = res["record"]
    rows.append(
        (
            "DDP step recorded per rank (values=summary) vs not",
            fmt_time(rec["recorded"]),
            f"{rec['recorded'] / rec['plain']:.2f}x",
            "small",
        )
    )
    print_table("distributed (2 MPI ranks on this machine; ratios from the same processes)", rows)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
