#!/usr/bin/env python3
"""Reference steps of torch.optim.SGD and torch.optim.Adam (torch 1.13, CPU,
foreach=False) for tests/nn/optim_test.cpp. Writes optim_torch.json next to this
file: per case the hyper-parameters, the initial parameter, the gradient of each
step and the parameter after each step, floats as uint32 bit patterns (*_bits).
Run: /usr/bin/python3 tests/data/nn/optim_torch.py"""
import json
import os

import numpy as np
import torch


def bits(t):
    return [int(x) for x in t.detach().numpy().astype(np.float32).view(np.uint32)]


def run(name, make, n=37, steps=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(n, generator=g))
    p0 = p.detach().clone()
    opt, hp = make([p])
    grads, after = [], []
    for _ in range(steps):
        gr = torch.randn(n, generator=g)
        p.grad = gr.clone()
        opt.step()
        grads.append(bits(gr))
        after.append(bits(p))
    return {"name": name, "kind": hp.pop("kind"), "hp": hp, "p0_bits": bits(p0),
            "grads_bits": grads, "after_bits": after}


cases = [
    run("sgd_plain", lambda ps: (torch.optim.SGD(ps, lr=0.1, foreach=False),
                                 {"kind": "sgd", "lr": 0.1})),
    run("sgd_momentum_wd", lambda ps: (torch.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1,
                                                       weight_decay=0.01, foreach=False),
                                       {"kind": "sgd", "lr": 0.05, "momentum": 0.9,
                                        "dampening": 0.1, "weight_decay": 0.01}), seed=1),
    run("sgd_nesterov", lambda ps: (torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True,
                                                    foreach=False),
                                    {"kind": "sgd", "lr": 0.05, "momentum": 0.9,
                                     "nesterov": True}), seed=2),
    run("adam_default", lambda ps: (torch.optim.Adam(ps, lr=1e-3, foreach=False),
                                    {"kind": "adam", "lr": 1e-3}), seed=3),
    run("adam_wd", lambda ps: (torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                                weight_decay=0.1, foreach=False),
                               {"kind": "adam", "lr": 0.01, "beta1": 0.8, "beta2": 0.99,
                                "eps": 1e-6, "weight_decay": 0.1}), seed=4),
]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_torch.json")
with open(out, "w") as f:
    json.dump({"generator": "optim_torch.py", "torch": torch.__version__, "cases": cases}, f)
print("wrote", out)
