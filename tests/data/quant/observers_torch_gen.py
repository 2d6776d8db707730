#!/usr/bin/python3
"""Extra PyTorch 1.13 vectors for qprune's observers (JSON): the parts of
HistogramObserver that observers.json does not stress.

Framework: torch 1.13 (Debian python3-torch, CPU capability AVX2, one thread) and
numpy 1.24.  Run from the repository root:

    /usr/bin/python3 tests/data/quant/observers_torch_gen.py

Writes observers_torch.json next to this script:

  "torch_sum": [{"n", "x_bits": [uint32], "sum_bits": uint32}]
      torch.sum of a contiguous float32 tensor (ATen's cascade sum: the order in
      which HistogramObserver sums its histogram and its error terms).
  "cumsum": [{"n", "x_bits", "cumsum_bits": [uint32]}]
      torch.cumsum of float32 (float64 accumulator, float32 results).
  "histogram": [{"name", "bins", "upsample_rate", "dtype", "qscheme", "reduce_range",
                 "batches": [{"shape", "x_bits"}], "min_val_bits", "max_val_bits",
                 "histogram_bits": [uint32], "search_min_bits", "search_max_bits",
                 "scale_bits", "zero_point"}]
      HistogramObserver(bins, upsample_rate, dtype, qscheme, reduce_range) fed the
      batches in order; search_* = obs._non_linear_param_search(); scale/zero_point
      = obs.calculate_qparams().  Batches stay within a factor ~30 of each other
      (torch materialises bins * downsample_rate float64 slots when merging).
Float32 values are uint32 bit patterns ("_bits").  Deterministic (fixed seeds).
"""
import json
import os
import warnings

import numpy as np
import torch
import torch.ao.quantization.observer as obsmod

HERE = os.path.dirname(os.path.abspath(__file__))
warnings.filterwarnings("ignore")
torch.set_num_threads(1)


def bits(a):
    return [int(v) for v in np.asarray(a, np.float32).ravel().view(np.uint32)]


def bit1(v):
    return int(np.float32(v).view(np.uint32))


def main():
    rng = np.random.default_rng(4242)
    sums = []
    for n in list(range(1, 41)) + [63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 2047, 2048,
                                   2049, 4096, 5003]:
        x = (rng.standard_normal(n) * 10 ** rng.uniform(-3, 3, n)).astype(np.float32)
        s = torch.sum(torch.from_numpy(x)).item()
        sums.append({"n": n, "x_bits": bits(x), "sum_bits": bit1(s)})
    cums = []
    for n in (5, 300, 2048):
        x = (rng.uniform(0, 3, n) * 10 ** rng.uniform(-2, 2, n)).astype(np.float32)
        cums.append({"n": n, "x_bits": bits(x), "cumsum_bits": bits(torch.cumsum(torch.from_numpy(x), 0))})

    hist = []
    kinds = ["gauss", "exp", "uniform", "ints", "cauchy"]
    for t in range(24):
        bins = [2048, 2048, 512, 256, 100, 2048][t % 6]
        up = [128, 16, 128, 32, 8, 128][t % 6]
        dt = torch.qint8 if t % 2 else torch.quint8
        qs = torch.per_tensor_symmetric if t % 3 == 0 else torch.per_tensor_affine
        rr = (t % 4 == 1) and not (qs == torch.per_tensor_symmetric and dt == torch.quint8)
        s0 = 10 ** rng.uniform(-2.5, 2.5)
        batches = []
        for _ in range(1 + t % 4):
            n = int(rng.integers(20, 200))
            s = s0 * 10 ** rng.uniform(-0.6, 0.6)
            kind = kinds[int(rng.integers(0, len(kinds)))]
            if kind == "gauss":
                x = rng.normal(rng.normal(0, s), s, n)
            elif kind == "exp":
                x = rng.exponential(s, n)
            elif kind == "uniform":
                x = rng.uniform(-s, 3 * s, n)
            elif kind == "ints":
                x = np.round(rng.normal(0, 3, n))
            else:
                x = np.clip(rng.standard_cauchy(n), -30, 30) * s
            batches.append(x.astype(np.float32))
        obs = obsmod.HistogramObserver(bins=bins, upsample_rate=up, dtype=dt, qscheme=qs, reduce_range=rr)
        for b in batches:
            obs(torch.from_numpy(b.copy()))
        smin, smax = obs._non_linear_param_search()
        scale, zp = obs.calculate_qparams()
        hist.append({
            "name": "hist_%d" % t, "bins": bins, "upsample_rate": up,
            "dtype": "qint8" if dt == torch.qint8 else "quint8",
            "qscheme": str(qs).replace("torch.", ""), "reduce_range": bool(rr),
            "batches": [{"shape": list(b.shape), "x_bits": bits(b)} for b in batches],
            "min_val_bits": bit1(obs.min_val.item()), "max_val_bits": bit1(obs.max_val.item()),
            "histogram_bits": bits(obs.histogram),
            "search_min_bits": bit1(smin.item()), "search_max_bits": bit1(smax.item()),
            "scale_bits": bit1(scale.item()), "zero_point": int(zp.item()),
        })

    out = {"generator": {"numpy": np.__version__, "torch": torch.__version__},
           "description": "torch.sum / torch.cumsum order and extra HistogramObserver cases; "
                          "see observers_torch_gen.py for the schema.",
           "torch_sum": sums, "cumsum": cums, "histogram": hist}
    with open(os.path.join(HERE, "observers_torch.json"), "w") as f:
        f.write("{\n")
        keys = list(out)
        for i, k in enumerate(keys):
            v = out[k]
            if isinstance(v, list):
                f.write(json.dumps(k) + ": [\n" + ",\n".join(json.dumps(c, separators=(",", ":")) for c in v)
                        + "\n]")
            else:
                f.write(json.dumps(k) + ": " + json.dumps(v))
            f.write(",\n" if i + 1 < len(keys) else "\n")
        f.write("}\n")


if __name__ == "__main__":
    main()
