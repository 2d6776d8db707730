#!/usr/bin/env python3
"""The issue #6 Fashion-MNIST recipe in PyTorch (torch 1.13, CPU), to state
PyTorch's accuracy on this machine next to examples/train_fashion_mnist.cpp.
Inputs (pixel/255 - 0.286)/0.353; MLP 784-256-128-10 ReLU (8 epochs) or CNN
conv3x3(32, pad 1)-relu-maxpool2-conv3x3(64, pad 1)-relu-maxpool2-flatten-fc128-
relu-fc10 (4 epochs); Adam lr 1e-3, batch 128, shuffled with a fixed seed,
default initialisation from torch.manual_seed(seed). Writes nothing.

Run: /usr/bin/python3 tests/data/nn/torch_recipe.py --model mlp|cnn [--epochs N] [--seed S]
     [--threads T]"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
from torch import nn

DIR = os.environ.get("QPRUNE_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def idx(name):
    with gzip.open(os.path.join(DIR, name + ".gz"), "rb") as f:
        data = f.read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(prefix):
    x = idx(prefix + "-images-idx3-ubyte").astype(np.float32)
    x = (x / np.float32(255) - np.float32(0.286)) / np.float32(0.353)
    y = idx(prefix + "-labels-idx1-ubyte").astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    epochs = a.epochs or (8 if a.model == "mlp" else 4)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    if a.model == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                            nn.ReLU(), nn.Linear(128, 10))
    else:
        net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                            nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(20261129)
    for epoch in range(1, epochs + 1):
        t0 = time.time()
        net.train()
        perm = torch.randperm(len(xtr), generator=g)
        tot, correct, batches = 0.0, 0, 0
        for i in range(0, len(xtr), 128):
            idx_b = perm[i:i + 128]
            xb, yb = xtr[idx_b], ytr[idx_b]
            opt.zero_grad()
            out = net(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            tot += loss.item()
            correct += (out.argmax(1) == yb).sum().item()
            batches += 1
        net.eval()
        with torch.no_grad():
            acc = sum((net(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
                      for i in range(0, len(xte), 1000)) / len(xte)
        print(f"epoch {epoch}/{epochs}  loss {tot / batches:.4f}  train acc "
              f"{100 * correct / len(xtr):.2f}%  test acc {100 * acc:.2f}%  "
              f"{time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
