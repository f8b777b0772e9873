"""The boilerplate of the "Transfer Learning for Computer Vision" tutorial and similar
scripts: device selection (cuda / mps / cpu), cudnn flags, a train/val phase loop with
torch.set_grad_enabled(phase == 'train'), best-weights copy.deepcopy, a scheduler, an
RMSprop + Adagrad pair via parameter groups, and f-string formatting of tensors."""
import copy
import time

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.optim import lr_scheduler
from torch.utils.data import DataLoader, TensorDataset

torch.backends.cudnn.benchmark = True
torch.backends.cudnn.deterministic = True
if torch.cuda.is_available():
    device = torch.device("cuda:0")
elif torch.backends.mps.is_available():
    device = torch.device("mps")
else:
    device = torch.device("cpu")
print(f"Using {device} device; accelerator available: {torch.accelerator.is_available()}")
torch.manual_seed(0)
torch.cuda.manual_seed_all(0)

rng = np.random.default_rng(0)
feats = rng.standard_normal((200, 10)).astype(np.float32)
labels = (feats[:, :3].sum(1) > 0).astype(np.int64)
image_datasets = {"train": TensorDataset(torch.from_numpy(feats[:150]), torch.from_numpy(labels[:150])),
                  "val": TensorDataset(torch.from_numpy(feats[150:]), torch.from_numpy(labels[150:]))}
dataloaders = {x: DataLoader(image_datasets[x], batch_size=25, shuffle=(x == "train")) for x in ["train", "val"]}
dataset_sizes = {x: len(image_datasets[x]) for x in ["train", "val"]}


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU())
        self.scale = nn.ParameterList([nn.Parameter(torch.ones(32))])
        self.fc = nn.Linear(32, 2)

    def forward(self, x):
        return self.fc(self.features(x) * self.scale[0])


def train_model(model, criterion, optimizer, scheduler, num_epochs=4):
    since = time.time()
    best_model_wts = copy.deepcopy(model.state_dict())
    best_acc = 0.0
    for epoch in range(num_epochs):
        print(f'Epoch {epoch}/{num_epochs - 1}')
        for phase in ['train', 'val']:
            if phase == 'train':
                model.train()  # Set model to training mode
            else:
                model.eval()  # Set model to evaluate mode
            running_loss = 0.0
            running_corrects = 0
            for inputs, labels in dataloaders[phase]:
                inputs = inputs.to(device)
                labels = labels.to(device)
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == 'train'):
                    outputs = model(inputs)
                    _, preds = torch.max(outputs, 1)
                    loss = criterion(outputs, labels)
                    if phase == 'train':
                        loss.backward()
                        nn.utils.clip_grad_value_(model.parameters(), clip_value=5.0)
                        optimizer.step()
                running_loss += loss.item() * inputs.size(0)
                running_corrects += torch.sum(preds == labels.data)
            if phase == 'train':
                scheduler.step()
            epoch_loss = running_loss / dataset_sizes[phase]
            epoch_acc = running_corrects.double() / dataset_sizes[phase]
            print(f'{phase} Loss: {epoch_loss:.4f} Acc: {epoch_acc:.4f}')
            if phase == 'val' and epoch_acc > best_acc:
                best_acc = epoch_acc
                best_model_wts = copy.deepcopy(model.state_dict())
    time_elapsed = time.time() - since
    print(f'Training complete in {time_elapsed // 60:.0f}m {time_elapsed % 60:.0f}s')
    print(f'Best val Acc: {best_acc:4f}')
    model.load_state_dict(best_model_wts)
    return model, best_acc


model = Backbone().to(device)
criterion = nn.CrossEntropyLoss()
optimizer = optim.RMSprop([{"params": model.features.parameters()},
                           {"params": [*model.fc.parameters(), *model.scale.parameters()], "lr": 0.005}], lr=0.01)
exp_lr_scheduler = lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
model, best_acc = train_model(model, criterion, optimizer, exp_lr_scheduler)
assert best_acc > 0.8, best_acc
fine = optim.Adagrad(model.fc.parameters(), lr=0.01)
with torch.enable_grad():
    loss = criterion(model(torch.from_numpy(feats[:20])), torch.from_numpy(labels[:20]))
    loss.backward()
fine.step()
print(f"fine-tune loss {loss:.4f}")
print("OK")
