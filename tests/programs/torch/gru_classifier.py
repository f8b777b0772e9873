"""Sequence classification with a bidirectional two-layer GRU (batch_first), an Embedding,
per-task heads in an nn.ModuleDict, gradient clipping, Adam, and evaluation under
torch.inference_mode()."""
import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(0)
SEQ, VOCAB = 12, 6


def make_data(n):
    x = rng.integers(1, VOCAB, (n, SEQ))
    parity = (x == 3).sum(1) % 2  # task "parity": is the count of token 3 odd
    first = (x[:, 0] > x[:, -1]).astype(np.int64)  # task "order"
    return torch.tensor(x), {"parity": torch.tensor(parity), "order": torch.tensor(first)}


class Classifier(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 8)
        self.rnn = nn.GRU(8, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.heads = nn.ModuleDict({"parity": nn.Linear(2 * hidden, 2), "order": nn.Linear(2 * hidden, 2)})

    def forward(self, x, h0=None):
        out, h_n = self.rnn(self.embedding(x), h0)
        summary = torch.cat([h_n[-2], h_n[-1]], dim=1)  # last layer, both directions
        return {name: head(summary) for name, head in self.heads.items()}


torch.manual_seed(0)
model = Classifier()
optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
criterion = nn.CrossEntropyLoss()
x_train, y_train = make_data(64)
x_test, y_test = make_data(64)

for step in range(25):
    optimizer.zero_grad()
    logits = model(x_train)
    loss = sum(criterion(logits[k], y_train[k]) for k in logits)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
    if step % 5 == 0:
        print(f"step {step} loss {loss.item():.6f} grad norm {norm.item():.3f}")

with torch.inference_mode():
    logits = model(x_test, torch.zeros(4, 64, 16))
    acc = {k: (logits[k].argmax(1) == y_test[k]).float().mean().item() for k in logits}
print("test accuracy", acc)
assert acc["order"] > 0.8, acc
print("OK")
