"""A small DDP training job for the MPI tests: `mpiexec -n 2 python train.py [options]`.
Optionally records per-rank traces, injects a NaN on one rank at one step, or delays one
rank (a straggler); saves the final parameters of rank 0 for comparison."""

import argparse
import time

import numpy as np

import tracetensor as tt
import tracetensor.distributed as dist
from tracetensor.nn.parallel import DistributedDataParallel

p = argparse.ArgumentParser()
p.add_argument("--record")
p.add_argument("--steps", type=int, default=6)
p.add_argument("--nan-rank", type=int, default=-1)
p.add_argument("--nan-step", type=int, default=-1)
p.add_argument("--delay-rank", type=int, default=-1)
p.add_argument("--delay", type=float, default=0.0)
p.add_argument("--save")
p.add_argument("--single", action="store_true", help="one process, the whole batch (the reference)")
args = p.parse_args()

rng = np.random.default_rng(1)
X = rng.standard_normal((args.steps, 8, 5))
Y = rng.standard_normal((args.steps, 8, 3))


def model():
    init = np.random.default_rng(0)
    m = tt.nn.Sequential(tt.nn.Linear(5, 16), tt.nn.Tanh(), tt.nn.Linear(16, 3)).double()
    for q in m.parameters():
        q._data[...] = init.standard_normal(q.shape)
    return m


def loss_fn(out, y, poison):
    d = out - y
    if poison:
        d = d * tt.tensor(np.array([np.nan, 1.0, 1.0]))  # the injected NaN
    return (d**2).mean()


rec = tt.record(args.record).start() if args.record else None
if args.single:
    m = model()
    net, rank, world = m, 0, 1
else:
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    m = model()
    if rank:
        for q in m.parameters():
            q._data += 1.0  # DDP's initial broadcast must undo this
    net = DistributedDataParallel(m, bucket_cap_mb=0.0005)
opt = tt.optim.SGD(net.parameters(), lr=0.05)
per = 8 // world
for step in range(args.steps):
    opt.zero_grad()
    xb, yb = X[step][rank * per : (rank + 1) * per], Y[step][rank * per : (rank + 1) * per]
    out = net(tt.tensor(xb))
    loss = loss_fn(out, tt.tensor(yb), rank == args.nan_rank and step == args.nan_step)
    if rank == args.delay_rank:
        time.sleep(args.delay)
    loss.backward()
    opt.step()
if rec is not None:
    rec.stop()
if args.save and rank == 0:
    np.save(args.save, np.concatenate([q.detach().numpy().ravel() for q in m.parameters()]))
