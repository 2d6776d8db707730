#!/usr/bin/python3
"""Generate torch.nn.utils.prune PruningContainer vectors (masks_torch_container.json).

Complements torch_prune.json with the iterative cases whose semantics are easy to get
wrong (read from torch/nn/utils/prune.py, PruningContainer.compute_mask):
  * a structured step ranks channels by the L_n norm of the *current* module.weight,
    i.e. orig * mask, not of the unmasked original;
  * a structured step only considers channels that still have a nonzero mask entry,
    and a float amount is relative to the number of those channels;
  * an unstructured step after a structured one is relative to the surviving entries;
  * global_unstructured called twice is relative to the surviving entries of all tensors.

Framework: torch 1.13 (Debian python3-torch 1.13.1+dfsg) and numpy 1.24.2.
Re-run from the repository root:

    /usr/bin/python3 tests/data/prune/masks_torch_container.py

Schema: like the `iterative` entries of torch_prune.json (see README.md): `shape`,
`weight_bits` (float32 bit patterns, row-major), `steps` (each `{method, amount_is_int,
amount_int | amount_bits64}` plus `n_bits64`, `n_is_inf`, `dim` for ln_structured) and
`masks_after_each_step` (0/1, row-major).  `global_iterative` entries hold `params`
([{shape, weight_bits}]), `amounts` ([{amount_is_int, amount_int | amount_bits64}]) and
`masks_after_each_step` ([[mask per tensor]] per call).  Every selected set is
unambiguous (no ties at the cut), so torch.topk's tie order does not matter.
Deterministic (numpy Generator seed 4242).
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.utils.prune as prune

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(4242)
torch.set_num_threads(1)


def bits(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return [int(v) for v in np.ascontiguousarray(x, dtype=np.float32).reshape(-1).view(np.uint32)]


def b64(v):
    return int(np.array([v], dtype=np.float64).view(np.uint64)[0])


def mask_list(m):
    return [int(v) for v in m.detach().cpu().numpy().reshape(-1).astype(np.int64)]


def amount_fields(amount):
    if isinstance(amount, int):
        return {"amount_is_int": True, "amount_int": amount}
    return {"amount_is_int": False, "amount_bits64": b64(amount)}


def tie_free(shape):
    n = int(np.prod(shape))
    mags = (rng.permutation(n) + 1).astype(np.float64) + rng.uniform(-0.3, 0.3, n)
    sign = np.where(rng.integers(0, 2, n) == 1, -1.0, 1.0)
    w = (sign * mags / n).astype(np.float32)
    assert len(set(np.abs(w).tolist())) == n
    return w.reshape(shape)


def module_with(w):
    m = nn.Module()
    m.weight = nn.Parameter(torch.from_numpy(np.array(w, dtype=np.float32)))
    return m


iters = []


def iterative(name, w, steps):
    m = module_with(w)
    out_steps, masks = [], []
    for st in steps:
        if st["method"] == "l1_unstructured":
            prune.l1_unstructured(m, "weight", amount=st["amount"])
            d = {"method": "l1_unstructured"}
        else:
            prune.ln_structured(m, "weight", amount=st["amount"], n=st["n"], dim=st["dim"])
            d = {"method": "ln_structured", "n_bits64": b64(float(st["n"])),
                 "n_is_inf": math.isinf(st["n"]), "dim": st["dim"]}
        d.update(amount_fields(st["amount"]))
        out_steps.append(d)
        masks.append(mask_list(m.weight_mask))
    iters.append({"name": name, "shape": list(w.shape), "weight_bits": bits(w),
                  "steps": out_steps, "masks_after_each_step": masks})


# 1. The structured step scores orig*mask: row 1 has the largest unmasked L1 norm of the
#    first two rows (6.65 > 6.3) but the smallest once its three 0.55 entries are masked.
w1 = np.array([[4.5, 0.6, 0.6, 0.6], [5.0, 0.55, 0.55, 0.55], [9.0, 9.5, 9.25, 9.75]],
              dtype=np.float32)
iterative("structured_scores_masked_weights_3x4", w1,
          [{"method": "l1_unstructured", "amount": 3},
           {"method": "ln_structured", "amount": 1, "n": 1, "dim": 0}])

# 2. Two structured steps with float amounts: the second is relative to surviving channels.
iterative("ln_twice_float_dim0_4x3x3x3", tie_free((4, 3, 3, 3)),
          [{"method": "ln_structured", "amount": 0.5, "n": 2, "dim": 0},
           {"method": "ln_structured", "amount": 0.5, "n": 2, "dim": 0}])
iterative("ln_twice_float_dim1_4x3x3x3", tie_free((4, 3, 3, 3)),
          [{"method": "ln_structured", "amount": 1 / 3, "n": 1, "dim": 1},
           {"method": "ln_structured", "amount": 0.5, "n": math.inf, "dim": 1}])

# 3. An unstructured step kills a whole row; the next structured float amount counts only
#    the 5 surviving rows: round(0.4*5) = 2 (round(0.4*6) = 2 would prune the dead row + 1).
w3 = tie_free((6, 5)).reshape(-1)
idx_small = np.argsort(np.abs(w3))[:5]                # the 5 smallest magnitudes ...
rest = [i for i in range(30) if i not in set(idx_small.tolist())]
perm = np.empty_like(w3)
perm[10:15] = w3[idx_small]                           # ... go to row 2
perm[[i for i in range(30) if not 10 <= i < 15]] = w3[rest]
w3 = perm.reshape(6, 5)
iterative("l1_kills_row_then_ln_float_6x5", w3,
          [{"method": "l1_unstructured", "amount": 5},
           {"method": "ln_structured", "amount": 0.4, "n": 2, "dim": 0}])

# 4. Structured first, then unstructured relative to the surviving entries.
iterative("ln_then_l1_float_6x5", tie_free((6, 5)),
          [{"method": "ln_structured", "amount": 2, "n": 1, "dim": 0},
           {"method": "l1_unstructured", "amount": 0.5}])
iterative("l1_then_ln_dimm1_3x8x2", tie_free((3, 8, 2)),
          [{"method": "l1_unstructured", "amount": 0.25},
           {"method": "ln_structured", "amount": 1, "n": 2, "dim": -1},
           {"method": "l1_unstructured", "amount": 4}])

# 5. global_unstructured twice over the same three tensors.
glob = []
gshapes = [(5, 4), (3, 3, 2, 2), (11,)]
ntot = sum(int(np.prod(s)) for s in gshapes)
pool = tie_free((ntot,))
ws, off = [], 0
for s in gshapes:
    k = int(np.prod(s))
    ws.append(pool[off:off + k].reshape(s).copy())
    off += k
for amounts in ([0.3, 0.5], [10, 0.25], [0.5, 20]):
    mods = [module_with(w) for w in ws]
    masks = []
    for a in amounts:
        prune.global_unstructured([(m, "weight") for m in mods],
                                  pruning_method=prune.L1Unstructured, amount=a)
        masks.append([mask_list(m.weight_mask) for m in mods])
    glob.append({"name": "global_twice_%s" % "_".join(map(repr, amounts)),
                 "params": [{"shape": list(s), "weight_bits": bits(w)} for s, w in zip(gshapes, ws)],
                 "amounts": [amount_fields(a) for a in amounts],
                 "masks_after_each_step": masks})

doc = {"generator": {"numpy": np.__version__, "torch": torch.__version__},
       "description": "torch.nn.utils.prune PruningContainer (iterative) masks; see the "
                      "docstring of masks_torch_container.py",
       "iterative": iters, "global_iterative": glob}

if __name__ == "__main__":
    print("numpy", np.__version__, "torch", torch.__version__, "python", sys.version.split()[0])
    text = json.dumps(doc, separators=(",", ":"))
    with open(os.path.join(HERE, "masks_torch_container.json"), "w") as f:
        f.write(text + "\n")
    print("wrote masks_torch_container.json %d bytes: %d iterative, %d global"
          % (len(text), len(iters), len(glob)))
