"""Schedulers as training scripts use them: OneCycleLR stepped per batch, a linear warmup
then cosine decay via SequentialLR, ReduceLROnPlateau on the validation loss, and a full
checkpoint (model, optimizer, scheduler, epoch) saved, reloaded and resumed exactly."""
import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, OneCycleLR, ReduceLROnPlateau, SequentialLR
from torch.utils.data import DataLoader, TensorDataset

rng = np.random.default_rng(0)
X = torch.tensor(rng.standard_normal((128, 6)), dtype=torch.float32)
true_w = torch.tensor(rng.standard_normal((6, 1)), dtype=torch.float32)
Y = X @ true_w + 0.01 * torch.tensor(rng.standard_normal((128, 1)), dtype=torch.float32)
loader = DataLoader(TensorDataset(X, Y), batch_size=16)


def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))


# 1. OneCycleLR, stepped after every optimizer.step()
model = make()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
epochs = 3
sched = OneCycleLR(opt, max_lr=0.1, steps_per_epoch=len(loader), epochs=epochs)
lrs = []
for epoch in range(epochs):
    for xb, yb in loader:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    print(f"onecycle epoch {epoch} loss {loss.item():.5f} lr {lrs[-1]:.6f} momentum {opt.param_groups[0]['momentum']:.3f}")
assert max(lrs) > 0.09 and min(lrs) < 1e-3, (max(lrs), min(lrs))

# 2. warmup + cosine, with a checkpoint in the middle
def train(model, opt, sched, start, stop):
    for epoch in range(start, stop):
        for xb, yb in loader:
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            opt.step()
        sched.step()
        print(f"epoch {epoch} loss {loss.item():.6f} lr {sched.get_last_lr()[0]:.6f}")
    return loss.item()


def make_all():
    model = make()
    opt = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.01)
    warm = LinearLR(opt, start_factor=0.1, total_iters=2)
    cos = CosineAnnealingLR(opt, T_max=6, eta_min=1e-4)
    return model, opt, SequentialLR(opt, schedulers=[warm, cos], milestones=[2])


model, opt, sched = make_all()
train(model, opt, sched, 0, 4)
path = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
torch.save({"epoch": 4, "model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict(),
            "scheduler_state_dict": sched.state_dict()}, path)
straight = train(model, opt, sched, 4, 8)

model2, opt2, sched2 = make_all()
checkpoint = torch.load(path)
model2.load_state_dict(checkpoint["model_state_dict"])
opt2.load_state_dict(checkpoint["optimizer_state_dict"])
sched2.load_state_dict(checkpoint["scheduler_state_dict"])
resumed = train(model2, opt2, sched2, checkpoint["epoch"], 8)
assert abs(resumed - straight) < 1e-6 * max(1.0, abs(straight)), (resumed, straight)
assert sched2.get_last_lr() == sched.get_last_lr()

# 3. ReduceLROnPlateau on a validation loss that stops improving
model = make()
opt = torch.optim.SGD(model.parameters(), lr=0.05)
plateau = ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=1)
for epoch in range(8):
    val_loss = 1.0 if epoch >= 2 else 2.0 - epoch * 0.5  # improves twice, then flat
    plateau.step(val_loss)
    print(f"plateau epoch {epoch} val {val_loss} lr {opt.param_groups[0]['lr']}")
assert abs(opt.param_groups[0]["lr"] - 0.05 / 4) < 1e-12  # halved twice
print("OK")
