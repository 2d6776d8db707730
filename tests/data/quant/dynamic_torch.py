#!/usr/bin/python3
"""Generate PyTorch dynamic-quantized Linear vectors for qprune's dynamic.hpp.

Framework: torch 1.13 (Debian python3-torch 1.13.1+dfsg, built WITHOUT fbgemm:
quantized engines qnnpack and onednn) and numpy 1.24, single thread.

Re-run from the repository root:

    /usr/bin/python3 tests/data/quant/dynamic_torch.py

Writes dynamic_torch.json next to this script.  Every module is built the way a
user builds it: a float nn.Linear with qconfig per_channel_dynamic_qconfig or
default_dynamic_qconfig, converted by nnqd.Linear.from_float (weights quantized by
the PyTorch observers), then called under the given engine.  All expected values
(weight codes, weight scales, input qparams, outputs) come from torch.

The inputs of the "ties_*" cases are chosen so that the candidate activation
quantization formulas listed in NOTES disagree (elements within a few ulps of a
rounding tie); the formulas are used ONLY to select such inputs, and the script
then checks which formula reproduces torch bit for bit and records it.

Float32 values are stored as uint32 bit patterns ("*_bits"), float64 as uint64
("*_bits64"); tensors are flattened row-major.
"""
import json
import os
import warnings

import numpy as np
import torch
import torch.nn as nn

warnings.filterwarnings("ignore")
torch.set_num_threads(1)

try:
    import torch.ao.nn.quantized.dynamic as nnqd
    import torch.ao.quantization as tq
except ImportError:  # pragma: no cover
    import torch.nn.quantized.dynamic as nnqd
    import torch.quantization as tq

HERE = os.path.dirname(os.path.abspath(__file__))
f32 = np.float32


def bits(x):
    return [int(v) for v in np.ascontiguousarray(np.asarray(x, dtype=np.float32)).reshape(-1).view(np.uint32)]


def bits64(x):
    return int(np.array([x], dtype=np.float64).view(np.uint64)[0])


def bits64_list(x):
    return [int(v) for v in np.asarray(x, dtype=np.float64).reshape(-1).view(np.uint64)]


# ---------------------------------------------------------------------------
# candidate formulas (input selection and the self-check below)
# ---------------------------------------------------------------------------
def fma32(a, b, c):
    """float32 fma: the exact a*b+c (a double holds the 48-bit product; the sum of
    it and a small integer c is exact in double for the magnitudes used here),
    rounded once to float32."""
    return np.float32(np.float64(a) * np.float64(b) + np.float64(c))


def quantize_candidates(x, scale_d, zp):
    """uint8 codes of x (1-D float32) under each candidate rule; saturation [0, 255]."""
    sf = f32(scale_d)
    inv = f32(1.0) / sf                 # 1.0f / float(scale)
    inv_d = f32(1.0 / scale_d)          # float(1.0 / double(scale))
    c = {
        # torch quantize_per_tensor (non-fbgemm build): float(zp) + nearbyint(x * inv)
        "recip_round_then_add_zp": f32(zp) + np.rint(x * inv),
        # FBGEMM QuantizeAvx2 LEGACY: nearbyint(fma(x, inv, zp))
        "fma": np.rint(np.array([fma32(v, inv, zp) for v in x], dtype=f32)),
        "mul_add_two_roundings": np.rint((x * inv) + f32(zp)),
        "division": np.rint(x / sf) + zp,
        # ideep/oneDNN reorder: nearbyint(float(x * inv_d) + zp)
        "inv_double_mul_add": np.rint((x * inv_d) + f32(zp)),
        "inv_double_fma": np.rint(np.array([fma32(v, inv_d, zp) for v in x], dtype=f32)),
    }
    return {k: np.clip(v, 0, 255).astype(np.int64) for k, v in c.items()}


def output_candidates(acc, sx_d, w_scales_f, b):
    """float32 outputs for int32 accumulators acc [M, N]."""
    accf = acc.astype(f32)
    sx = f32(sx_d)
    ix = f32(1.0 / sx_d)
    iw = (1.0 / w_scales_f.astype(np.float64)).astype(f32)
    c = ix * iw                          # float32
    return {
        # FBGEMM requantizeForFloatAvx2 / QNNPACK q8gemm_dq / ORT graph
        "acc_times_sxsw_plus_b": (accf * (sx * w_scales_f)) + b,
        # ideep/oneDNN: bias pre-scaled by 1/(sx*sw), then one rescale
        "onednn_acc_plus_scaled_bias_times_rescale": (accf + b * c) * (f32(1.0) / c),
    }


def choose_qparams(x, reduce_range):
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "onednn"   # honours reduce_range
    s, z = torch._choose_qparams_per_tensor(torch.from_numpy(np.ascontiguousarray(x)), reduce_range)
    torch.backends.quantized.engine = old
    return s, int(z)


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------
rng = np.random.default_rng(20261130)


def tie_rows(m, k, reduce_range):
    """m x k floats sharing one range: two elements are lo and hi (they fix the
    batch's qparams), the others lie within a few ulps of (j + 1/2) * scale, where
    the candidate rules disagree."""
    while True:
        lo = -f32(rng.uniform(0.2, 3.0))
        hi = f32(rng.uniform(0.2, 5.0))
        s, z = choose_qparams(np.array([lo, hi], dtype=f32), reduce_range)
        if f32(1.0) / f32(s) == f32(1.0 / s):
            continue  # want 1.0f/float(s) != float(1.0/s), so the inverse rules differ too
        sf = np.float64(f32(s))
        top = 127 if reduce_range else 255
        found = []
        for _ in range(100000):
            j = int(rng.integers(-z, top - z))
            v = f32((j + 0.5) * sf * (1.0 + rng.uniform(-4e-7, 4e-7)))
            if not (lo <= v <= hi):
                continue
            q = quantize_candidates(np.array([v], dtype=f32), s, z)
            if len({int(a[0]) for a in q.values()}) > 1:
                found.append(v)
                if len(found) == m * k - 2:
                    break
        if len(found) == m * k - 2:
            flat = np.concatenate([np.array([lo, hi], dtype=f32), np.array(found, dtype=f32)])
            rng.shuffle(flat)
            return flat.reshape(m, k).astype(f32)


def make_weight(n, k, kind="normal"):
    if kind == "positive":
        return rng.uniform(0.95, 1.0, (n, k)).astype(f32)
    w = rng.normal(0.0, 0.5, (n, k)).astype(f32)
    if kind == "zero_row":
        w[1, :] = 0.0
    return w


CASES = []  # (name, n, k, weight kind, list of (x generator per effective reduce_range))


def case(name, n, k, wkind, xs):
    CASES.append((name, n, k, wkind, xs))


case("random_3x16_to_7", 7, 16, "normal",
     lambda rr: [rng.normal(0.0, 1.0, (3, 16)).astype(f32)])
case("ties", 5, 32, "normal", lambda rr: [tie_rows(4, 32, rr)])
case("zero_row_in_batch", 4, 9, "normal",
     lambda rr: [np.concatenate([rng.normal(0.3, 2.0, (1, 9)), np.zeros((1, 9)),
                                 rng.normal(-0.2, 1.0, (1, 9))]).astype(f32)])
case("all_zero_input", 3, 6, "normal", lambda rr: [np.zeros((2, 6), f32)])
case("positive_only_input", 3, 10, "normal", lambda rr: [rng.uniform(0.5, 3.0, (2, 10)).astype(f32)])
case("negative_only_input", 3, 10, "normal", lambda rr: [-rng.uniform(0.5, 3.0, (2, 10)).astype(f32)])
case("constant_input", 3, 5, "normal", lambda rr: [np.full((2, 5), 1.75, f32)])
case("tiny_range_input", 3, 8, "normal", lambda rr: [rng.uniform(-1e-6, 2e-6, (2, 8)).astype(f32)])
case("zero_weight_row", 4, 12, "zero_row", lambda rr: [rng.normal(0.0, 1.0, (2, 12)).astype(f32)])
case("m1_k1_n1", 1, 1, "normal", lambda rr: [np.array([[0.8125]], f32), np.array([[-2.5]], f32)])
case("primes_7x13_to_11", 11, 13, "normal", lambda rr: [rng.normal(0.1, 1.5, (7, 13)).astype(f32)])
# |acc| > 2^24 so float(acc) rounds: K large, x and W positive.
case("large_acc", 1, 1200, "positive", lambda rr: [rng.uniform(1.9, 2.0, (2, 1200)).astype(f32)])


def main():
    engines = list(torch.backends.quantized.supported_engines)
    out = []
    formula_hits = {}
    for eng in ("fbgemm", "onednn", "qnnpack"):
        if eng not in engines:
            out.append({"engine": eng, "available": False,
                        "note": "engine not in torch.backends.quantized.supported_engines"})
            continue
        eff_rr = eng != "qnnpack"   # the module passes reduce_range=True; qnnpack ignores it
        for (name, n, k, wkind, xgen) in CASES:
            for qscheme, qconfig in (("per_channel", tq.per_channel_dynamic_qconfig),
                                     ("per_tensor", tq.default_dynamic_qconfig)):
                if name == "large_acc" and qscheme == "per_channel":
                    continue  # one output channel: the same as per tensor, and the case is big
                torch.backends.quantized.engine = eng
                w = make_weight(n, k, wkind)
                b = rng.normal(0.0, 0.3, n).astype(f32)
                fl = nn.Linear(k, n)
                with torch.no_grad():
                    fl.weight.copy_(torch.from_numpy(w))
                    fl.bias.copy_(torch.from_numpy(b))
                fl.qconfig = qconfig
                m = nnqd.Linear.from_float(fl)
                qw = m.weight()
                wq = qw.int_repr().numpy().astype(np.int64)
                if qw.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                    ws = qw.q_per_channel_scales().numpy().astype(np.float64)
                    wz = qw.q_per_channel_zero_points().numpy()
                else:
                    ws = np.full(n, qw.q_scale(), np.float64)
                    wz = np.full(n, qw.q_zero_point())
                assert np.all(wz == 0)
                entry = {"name": name, "engine": eng, "available": True, "weight_qscheme": qscheme,
                         "in_features": k, "out_features": n,
                         "weight_bits": bits(w), "bias_bits": bits(m.bias().detach().numpy()),
                         "weight_int_repr": [int(v) for v in wq.reshape(-1)],
                         "weight_scales_bits64": bits64_list(ws),
                         "module_reduce_range": True, "effective_input_reduce_range": eff_rr,
                         "runs": []}
                xs = xgen(eff_rr)
                if name == "large_acc":
                    # redraw until float(acc) really rounds (acc not a float32) in every row
                    for _ in range(1000):
                        sx, zx = choose_qparams(xs[0], eff_rr)
                        q = quantize_candidates(xs[0].reshape(-1), sx, zx)["recip_round_then_add_zp"]
                        acc = (q.reshape(xs[0].shape) - zx) @ wq.T
                        if np.all(acc.astype(f32).astype(np.int64) != acc):
                            break
                        xs = xgen(eff_rr)
                for x in xs:
                    y = m(torch.from_numpy(x.copy())).detach().numpy()
                    s, z = choose_qparams(x, eff_rr)
                    # self-check: which candidate rules reproduce torch bit for bit
                    flat = x.reshape(-1)
                    for qn, q in quantize_candidates(flat, s, z).items():
                        acc = (q.reshape(x.shape) - z) @ wq.T
                        for on, yc in output_candidates(acc, s, ws.astype(f32), b).items():
                            ok = bool(np.array_equal(yc.astype(f32).view(np.uint32), y.view(np.uint32)))
                            key = (eng, qn, on)
                            formula_hits[key] = formula_hits.get(key, True) and ok
                    entry["runs"].append({"x_shape": list(x.shape), "x_bits": bits(x),
                                          "y_shape": list(y.shape), "y_bits": bits(y),
                                          "input_scale_bits64": bits64(s), "input_zero_point": z})
                out.append(entry)
    torch.backends.quantized.engine = "none" if "none" in engines else engines[0]

    observed = {}
    for (eng, qn, on), ok in sorted(formula_hits.items()):
        if ok:
            observed.setdefault(eng, []).append(qn + " + " + on)
    print("bit-exact rules:", json.dumps(observed, indent=1))

    notes = [
        "weights: nnqd.Linear.from_float with per_channel_dynamic_qconfig (PerChannelMinMaxObserver "
        "qint8 per_channel_symmetric: s_n = max(max|W_n|/127.5, eps)) or default_dynamic_qconfig "
        "(MinMaxObserver qint8 per_tensor_symmetric); codes = clamp(nearbyint(w * (1.0f/s)), -128, 127).",
        "input qparams: torch._choose_qparams_per_tensor(x, effective_input_reduce_range) "
        "(ChooseQuantizationParams on [0,255] or [0,127]); codes always saturate to [0, 255].",
        "observed (bit-exact on every run of this file): " + json.dumps(observed),
        "qnnpack: q = clamp(float(zp) + nearbyint(x * (1.0f/float(s))), 0, 255); "
        "y = float(acc) * float(float(s) * s_w[n]) + b[n] (two float32 roundings, no fma).",
        "onednn: ix = float(1.0/s) (double division), iw[n] = float(1.0/s_w[n]), c = ix*iw[n] (float); "
        "q = clamp(nearbyint(float(x*ix) + zp), 0, 255); y = (float(acc) + b[n]*c) * (1.0f/c).",
        "acc = sum_k (q_x - zp_x) * w_q (exact int32).",
    ]
    schema = {
        "cases[]": "one module per (name, engine, weight_qscheme); unavailable engines are "
                   "{engine, available: false, note}",
        "name": "case label (random_*, ties, zero_row_in_batch, all_zero_input, positive_only_input, "
                "negative_only_input, constant_input, tiny_range_input, zero_weight_row, m1_k1_n1, "
                "primes_*, large_acc)",
        "engine": "torch.backends.quantized.engine during from_float and forward",
        "weight_qscheme": "per_channel (axis 0) or per_tensor",
        "in_features, out_features": "K, N",
        "weight_bits": "float W [N, K] before quantization (uint32 bit patterns)",
        "bias_bits": "float bias [N]",
        "weight_int_repr": "m.weight().int_repr() [N, K] (qint8 codes)",
        "weight_scales_bits64": "weight scale per output row (N float64 bit patterns, repeated "
                                "for per_tensor); weight zero points are all 0",
        "module_reduce_range": "true: the module calls linear_dynamic(x, w, reduce_range=True)",
        "effective_input_reduce_range": "onednn honours it, qnnpack ignores it",
        "runs[]": "{x_shape [M, K], x_bits, y_shape [M, N], y_bits: the module's float output, "
                  "input_scale_bits64, input_zero_point: torch._choose_qparams_per_tensor(x, "
                  "effective_input_reduce_range) under onednn}",
    }
    doc = {"generator": {"numpy": np.__version__, "torch": torch.__version__},
           "description": "torch.ao.nn.quantized.dynamic.Linear (from_float) forward per engine; "
                          "generated by dynamic_torch.py; conventions as tests/data/quant/README.md.",
           "schema": schema, "notes": notes, "cases": out}
    path = os.path.join(HERE, "dynamic_torch.json")
    parts = ["{"]
    keys = list(doc.keys())
    for i, key in enumerate(keys):
        end = "," if i + 1 < len(keys) else ""
        v = doc[key]
        if key == "cases":
            parts.append(' "cases": [')
            for j, c in enumerate(v):
                parts.append("  " + json.dumps(c, separators=(",", ":")) + ("," if j + 1 < len(v) else ""))
            parts.append(" ]" + end)
        else:
            parts.append(" %s: %s%s" % (json.dumps(key), json.dumps(v, separators=(",", ":")), end))
    parts.append("}")
    text = "\n".join(parts) + "\n"
    json.loads(text)
    with open(path, "w") as f:
        f.write(text)
    print("wrote dynamic_torch.json (%d bytes)" % len(text))


if __name__ == "__main__":
    main()
