#!/usr/bin/python3
"""Generate torch.nn.utils.prune reference masks (torch_prune.json).

Framework: torch 1.13 (Debian python3-torch 1.13.1+dfsg, torch.__version__ ==
"1.13.0a0") and numpy 1.24.2.  Versions are printed and stored in the JSON as
"generator": {"numpy": ..., "torch": ...}.

Re-run from the repository root:

    /usr/bin/python3 tests/data/prune/gen_torch_prune.py

Writes torch_prune.json next to this script; the schema is documented in
README.md.  Weights are tie-free (all magnitudes distinct, all structured
norms distinct) so the masks do not depend on torch.topk tie-breaking.
Deterministic (numpy Generator seed 3001).
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
GENERATOR = {"numpy": np.__version__, "torch": torch.__version__}
rng = np.random.default_rng(3001)
torch.set_num_threads(1)


def bits(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return [int(v) for v in np.ascontiguousarray(x, dtype=np.float32).reshape(-1).view(np.uint32)]


def b64(v):
    return int(np.array([v], dtype=np.float64).view(np.uint64)[0])


def mask_list(m):
    return [int(v) for v in m.detach().cpu().numpy().reshape(-1).astype(np.int64)]


def tie_free(shape, scale=1.0):
    """distinct magnitudes, random signs, float32"""
    n = int(np.prod(shape))
    mags = (rng.permutation(n) + 1).astype(np.float64)
    mags = mags + rng.uniform(-0.3, 0.3, n)          # still distinct (gap >= 0.4)
    sign = np.where(rng.integers(0, 2, n) == 1, -1.0, 1.0)
    w = (sign * mags * scale / n).astype(np.float32)
    assert len(set(np.abs(w).tolist())) == n
    return w.reshape(shape)


def module_with(w):
    m = nn.Module()
    m.weight = nn.Parameter(torch.from_numpy(np.array(w, dtype=np.float32)))
    return m


def amount_fields(amount):
    if isinstance(amount, int):
        return {"amount_is_int": True, "amount_int": amount}
    return {"amount_is_int": False, "amount_bits64": b64(amount)}


def norms_distinct(w, n, dim):
    t = torch.from_numpy(w)
    dims = [d for d in range(t.dim()) if d != (dim % t.dim())]
    nv = torch.norm(t, p=n, dim=dims).numpy()
    return len(set(nv.tolist())) == nv.size


cases = []
glob = []
iters = []

# ---------------- l1_unstructured
shapes = [(13,), (10,), (7, 13), (4, 3, 3, 3), (5, 1)]
amounts = [0, 1, 3, 6, 0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 1.0]
for shape in shapes:
    w = tie_free(shape)
    n = w.size
    extra = []
    # amounts whose amount*n is exactly k + 0.5 (Python round() -> half to even)
    for k in range(0, n):
        a = (k + 0.5) / n
        if a * n == k + 0.5 and a < 1.0:
            extra.append(a)
    extra = extra[:2] + extra[-2:]
    for a in amounts + extra + [n]:
        if isinstance(a, int) and a > n:
            continue
        m = module_with(w)
        prune.l1_unstructured(m, "weight", amount=a)
        k = prune._compute_nparams_toprune(a, n)
        c = {"name": "l1_unstructured_%s_%s" % ("x".join(map(str, shape)), repr(a)),
             "method": "l1_unstructured", "shape": list(shape), "weight_bits": bits(w)}
        c.update(amount_fields(a))
        c.update({"amount_times_n_is_half": (not isinstance(a, int)) and (a * n) % 1 == 0.5,
                  "nparams_toprune": int(k), "mask": mask_list(m.weight_mask)})
        assert sum(c["mask"]) == n - k
        cases.append(c)

# ---------------- ln_structured
st_shapes = [(7, 13), (4, 3, 3, 3), (6, 5), (3, 8, 2)]
for shape in st_shapes:
    w = tie_free(shape)
    for n_ in (1, 2, math.inf):
        for dim in (0, 1, -1):
            if not norms_distinct(w, n_, dim):
                raise RuntimeError("norm tie")
            size = shape[dim]
            for a in list(dict.fromkeys([1, size // 2, 0.5, 1 / 3])):
                if isinstance(a, int) and a > size:
                    continue
                m = module_with(w)
                prune.ln_structured(m, "weight", amount=a, n=n_, dim=dim)
                k = prune._compute_nparams_toprune(a, size)
                c = {"name": "ln_structured_%s_n%s_dim%d_%s" % ("x".join(map(str, shape)), n_, dim,
                                                              repr(a)),
                     "method": "ln_structured", "shape": list(shape), "weight_bits": bits(w),
                     "n_bits64": b64(float(n_)), "n_is_inf": math.isinf(n_), "dim": dim}
                c.update(amount_fields(a))
                c.update({"amount_times_n_is_half": (not isinstance(a, int))
                          and (a * size) % 1 == 0.5,
                          "nparams_toprune": int(k), "mask": mask_list(m.weight_mask)})
                cases.append(c)

# ---------------- global_unstructured (L1) over 3 tensors
gshapes = [(5, 4), (3, 3, 2, 2), (11,)]
ntot = sum(int(np.prod(s)) for s in gshapes)
# one shared pool of distinct magnitudes so the global ranking is tie-free
pool = tie_free((ntot,))
ws, off = [], 0
for s in gshapes:
    k = int(np.prod(s))
    ws.append(pool[off:off + k].reshape(s).copy())
    off += k
for a in (0, 7, 30, ntot, 0.2, 0.5, 0.75, (37 + 0.5) / ntot):
    mods = [module_with(w) for w in ws]
    prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured,
                              amount=a)
    g = {"name": "global_l1_%s" % repr(a),
         "params": [{"shape": list(s), "weight_bits": bits(w)} for s, w in zip(gshapes, ws)],
         "total_params": ntot}
    g.update(amount_fields(a))
    g.update({"nparams_toprune": int(prune._compute_nparams_toprune(a, ntot)),
              "masks": [mask_list(m.weight_mask) for m in mods]})
    assert sum(sum(mk) for mk in g["masks"]) == ntot - g["nparams_toprune"]
    glob.append(g)

# ---------------- iterative pruning (PruningContainer)
def iterative(name, shape, steps):
    w = tie_free(shape)
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
    iters.append({"name": name, "shape": list(shape), "weight_bits": bits(w), "steps": out_steps,
                  "masks_after_each_step": masks, "final_mask": masks[-1],
                  "final_pruned_weight_bits": bits(m.weight)})


iterative("l1_twice_float_7x13", (7, 13), [{"method": "l1_unstructured", "amount": 0.3},
                                            {"method": "l1_unstructured", "amount": 0.5}])
iterative("l1_twice_int_7x13", (7, 13), [{"method": "l1_unstructured", "amount": 20},
                                          {"method": "l1_unstructured", "amount": 15}])
iterative("l1_twice_mixed_4x3x3x3", (4, 3, 3, 3), [{"method": "l1_unstructured", "amount": 0.25},
                                                    {"method": "l1_unstructured", "amount": 10}])
iterative("l1_twice_half_tie_13", (13,), [{"method": "l1_unstructured", "amount": 0.5},
                                          {"method": "l1_unstructured", "amount": 0.5}])
iterative("l1_three_times_10", (10,), [{"method": "l1_unstructured", "amount": 0.2},
                                       {"method": "l1_unstructured", "amount": 0.25},
                                       {"method": "l1_unstructured", "amount": 1}])
iterative("l1_then_ln_structured_6x5", (6, 5),
          [{"method": "l1_unstructured", "amount": 0.4},
           {"method": "ln_structured", "amount": 2, "n": 2, "dim": 0}])

doc = {
    "generator": GENERATOR,
    "description": "torch.nn.utils.prune masks on tie-free float32 weights; masks are 0/1 "
                   "row-major flattened. See README.md.",
    "notes": [
        "float amount: nparams_toprune = round(amount * n) with Python round() "
        "(half-to-even), n = numel (unstructured/global) or shape[dim] (structured); "
        "int amount: used as is.",
        "l1_unstructured prunes the nparams_toprune smallest |w|; ln_structured keeps the "
        "shape[dim]-k slices with largest L_n norm over all other dims.",
        "Iterative pruning (PruningContainer): for unstructured methods the new amount is "
        "relative to the entries still unpruned (float: round(amount * remaining)); the "
        "structured step is computed on the full tensor and multiplied with the old mask.",
    ],
    "cases": cases,
    "global_unstructured": glob,
    "iterative": iters,
}


def dump(path, obj):
    parts = ["{"]
    keys = list(obj.keys())
    for i, k in enumerate(keys):
        v = obj[k]
        end = "," if i + 1 < len(keys) else ""
        if isinstance(v, list) and v and isinstance(v[0], dict):
            parts.append(" %s: [" % json.dumps(k))
            for j, c in enumerate(v):
                parts.append("  " + json.dumps(c, separators=(",", ":"))
                             + ("," if j + 1 < len(v) else ""))
            parts.append(" ]" + end)
        else:
            parts.append(" %s: %s%s" % (json.dumps(k), json.dumps(v, separators=(",", ":")), end))
    parts.append("}")
    text = "\n".join(parts) + "\n"
    json.loads(text)
    with open(path, "w") as f:
        f.write(text)
    return len(text)


if __name__ == "__main__":
    print("numpy", np.__version__, "torch", torch.__version__, "python", sys.version.split()[0])
    size = dump(os.path.join(HERE, "torch_prune.json"), doc)
    print("wrote torch_prune.json %d bytes: %d cases, %d global, %d iterative"
          % (size, len(cases), len(glob), len(iters)))
