#!/usr/bin/python3
"""Extra PyTorch fake-quant vectors for qprune's tests (JSON), beyond fake_quant.json:
per-element LSQ gradient terms, and inputs where x * (1/scale) and x / scale round
to different codes.

1. LSQ terms.
torch only returns the *sums* of the per-element scale / zero-point gradient
terms, in its own float32 summation order. With a one-element tensor per call
(per-tensor op), or one element per channel (per-channel op on an [n, 1]
tensor, axis 0), each returned sum is a single term, so the terms can be compared bit
for bit. Written by qprune's fake-quant tests (tests/quant/fake_quant_test.cpp).

Framework: torch 1.13 (Debian python3-torch 1.13.1+dfsg, CPU capability AVX2),
numpy 1.24. Re-run from the repository root:

    /usr/bin/python3 tests/data/quant/fake_quant_extra.py

2. Reciprocal vs division. torch's fake_quantize_per_{tensor,channel}_affine
multiply by the float32 reciprocal 1/scale; these inputs were searched so that
nearbyint(x * (1/s)) != nearbyint(x / s) in float32 for every element.

Writes tests/data/quant/fake_quant_extra.json:
  generator: {"numpy", "torch"}
  description: string
  lsq_per_tensor: list of groups, one (scale, zero point, range, grad factor) each:
    name, scale_bits (uint32), zero_point_bits (uint32, float zero point),
    quant_min, quant_max, grad_factor_bits64 (uint64, the double passed),
    x_bits, g_bits, y_bits, grad_x_bits, grad_scale_bits, grad_zero_point_bits
    ([uint32], element i = one independent call on the tensor [x_i] with
    upstream gradient [g_i])
  lsq_per_channel: list of single calls on an [n, 1] tensor with axis 0 (one element
    per channel): name, shape, x_bits, g_bits, scale_bits, zero_point_bits ([uint32], one
    per element/channel), quant_min, quant_max, grad_factor_bits64, y_bits,
    grad_x_bits, grad_scale_bits, grad_zero_point_bits ([uint32])
  recip_vs_div: torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax) and
    torch.fake_quantize_per_channel_affine on the same x viewed as [n, 1], axis 0,
    one channel per element with the same scale: name, scale_bits (uint32),
    zero_point, quant_min, quant_max, x_bits, g_bits, y_bits, grad_x_bits,
    per_channel_y_bits, per_channel_grad_x_bits ([uint32])
"""
import json
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)


def bits(a):
    return [int(v) for v in np.asarray(a, np.float32).reshape(-1).view(np.uint32)]


def bits64(v):
    return int(np.array([v], np.float64).view(np.uint64)[0])


def candidates(rng, scale, zp, qmin, qmax):
    """Values on, just beside, and half a step around both clamp boundaries, plus random ones."""
    s = np.float32(scale)
    z = int(min(max(round(zp), qmin), qmax))
    v = []
    for k in (qmin - z, qmax - z, 0, 1, -1):
        e = np.float32(k * np.float64(s))
        v += [e, np.nextafter(e, np.float32(-np.inf)), np.nextafter(e, np.float32(np.inf)),
              np.float32((k - 0.5) * np.float64(s)), np.float32((k + 0.5) * np.float64(s)),
              np.float32((k + 1) * np.float64(s))]
    v += list(rng.uniform((qmin - z - 4) * scale, (qmax - z + 4) * scale, 24).astype(np.float32))
    return np.array(v, np.float32)


def per_tensor_group(rng, name, scale, zp, qmin, qmax, gf):
    x = candidates(rng, scale, zp, qmin, qmax)
    g = rng.normal(0, 1, x.shape).astype(np.float32)
    out = {k: [] for k in ("y", "gx", "ds", "dz")}
    for xi, gi in zip(x, g):
        xt = torch.tensor([xi], dtype=torch.float32, requires_grad=True)
        st = torch.tensor([scale], dtype=torch.float32, requires_grad=True)
        zt = torch.tensor([zp], dtype=torch.float32, requires_grad=True)
        y = torch._fake_quantize_learnable_per_tensor_affine(xt, st, zt, qmin, qmax, gf)
        y.backward(torch.tensor([gi], dtype=torch.float32))
        out["y"].append(y.item())
        out["gx"].append(xt.grad.item())
        out["ds"].append(st.grad.item())
        out["dz"].append(zt.grad.item())
    return {"name": name, "scale_bits": bits([scale])[0], "zero_point_bits": bits([zp])[0],
            "quant_min": qmin, "quant_max": qmax, "grad_factor_bits64": bits64(gf),
            "x_bits": bits(x), "g_bits": bits(g), "y_bits": bits(out["y"]),
            "grad_x_bits": bits(out["gx"]), "grad_scale_bits": bits(out["ds"]),
            "grad_zero_point_bits": bits(out["dz"])}


def per_channel_call(rng, name, qmin, qmax, gf, n):
    scales = rng.choice(np.array([0.1, 0.03, 2.0 ** -4, 0.05, 0.2], np.float32), n)
    zps = rng.choice(np.array([0.0, 2.5, 3.7, -1.5, float(qmin), float(qmax), qmax + 5.0,
                               (qmin + qmax + 1) // 2], np.float32), n)
    x = np.empty(n, np.float32)
    for i in range(n):
        x[i] = candidates(rng, float(scales[i]), float(zps[i]), qmin, qmax)[rng.integers(0, 54)]
    g = rng.normal(0, 1, n).astype(np.float32)
    # Shape [n, 1], axis 0: every channel sums over one element. (A 1-D tensor
    # does not work: torch then reduces over an empty dim list, i.e. everything.)
    xt = torch.tensor(x.reshape(n, 1), requires_grad=True)
    st = torch.tensor(scales, requires_grad=True)
    zt = torch.tensor(zps, requires_grad=True)
    y = torch._fake_quantize_learnable_per_channel_affine(xt, st, zt, 0, qmin, qmax, gf)
    y.backward(torch.tensor(g.reshape(n, 1)))
    return {"name": name, "shape": [n, 1], "x_bits": bits(x), "g_bits": bits(g), "scale_bits": bits(scales),
            "zero_point_bits": bits(zps), "quant_min": qmin, "quant_max": qmax,
            "grad_factor_bits64": bits64(gf), "y_bits": bits(y.detach()),
            "grad_x_bits": bits(xt.grad), "grad_scale_bits": bits(st.grad),
            "grad_zero_point_bits": bits(zt.grad)}


def recip_vs_div(rng, name, scale, zp, qmin, qmax, n=32):
    s = np.float32(scale)
    inv = np.float32(1.0) / s
    found = []
    while len(found) < n:
        k = rng.integers(qmin - zp - 3, qmax - zp + 4, 4096)
        x = ((k + 0.5) * np.float64(s) + rng.uniform(-2e-6, 2e-6, k.size) * np.float64(s)) \
            .astype(np.float32)
        diff = np.rint(x * inv) != np.rint(x / s)
        found += list(x[diff][: n - len(found)])
    x = np.array(found, np.float32)
    g = rng.normal(0, 1, n).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    y = torch.fake_quantize_per_tensor_affine(xt, float(s), zp, qmin, qmax)
    y.backward(torch.tensor(g))
    xc = torch.tensor(x.reshape(n, 1), requires_grad=True)
    yc = torch.fake_quantize_per_channel_affine(xc, torch.full((n,), s), torch.full(
        (n,), zp, dtype=torch.int32), 0, qmin, qmax)
    yc.backward(torch.tensor(g.reshape(n, 1)))
    return {"name": name, "scale_bits": bits([s])[0], "zero_point": zp, "quant_min": qmin,
            "quant_max": qmax, "x_bits": bits(x), "g_bits": bits(g), "y_bits": bits(y.detach()),
            "grad_x_bits": bits(xt.grad), "per_channel_y_bits": bits(yc.detach()),
            "per_channel_grad_x_bits": bits(xc.grad)}


def main():
    rng = np.random.default_rng(20261129)
    pt, pc = [], []
    for (qmin, qmax) in ((0, 255), (-128, 127), (-8, 7)):
        for gf in (1.0, 1.0 / np.sqrt(qmax)):
            for scale, zp in ((0.1, 0.0), (2.0 ** -4, float((qmin + qmax + 1) // 2)),
                              (0.03, 2.5), (0.05, 3.7), (0.2, qmax + 5.0), (0.07, -3.7)):
                pt.append(per_tensor_group(rng, "pt_q%d_%d_s%g_zp%g_gf%.6g" %
                                           (qmin, qmax, scale, zp, gf), scale, zp, qmin, qmax, gf))
            pc.append(per_channel_call(rng, "pc_q%d_%d_gf%.6g" % (qmin, qmax, gf), qmin, qmax,
                                       gf, 120))
    rd = [recip_vs_div(rng, "q0_255_s0.1_zp128", 0.1, 128, 0, 255),
          recip_vs_div(rng, "q-128_127_s0.3_zp0", 0.3, 0, -128, 127),
          recip_vs_div(rng, "q0_15_s0.7_zp3", 0.7, 3, 0, 15),
          recip_vs_div(rng, "q-127_127_s0.0123_zp0", 0.0123, 0, -127, 127)]
    doc = {"generator": {"numpy": np.__version__, "torch": torch.__version__},
           "description": "lsq_*: torch._fake_quantize_learnable_per_{tensor,channel}_affine with "
                          "one element per sum, so grad_scale / grad_zero_point are single "
                          "per-element terms (exact). recip_vs_div: fake_quantize_per_{tensor,"
                          "channel}_affine on inputs where x*(1/s) and x/s round differently. "
                          "See the docstring of fake_quant_extra.py.",
           "lsq_per_tensor": pt, "lsq_per_channel": pc, "recip_vs_div": rd}
    path = os.path.join(HERE, "fake_quant_extra.json")
    with open(path, "w") as f:
        f.write("{\n")
        f.write(' "generator": %s,\n' % json.dumps(doc["generator"]))
        f.write(' "description": %s,\n' % json.dumps(doc["description"]))
        keys = ("lsq_per_tensor", "lsq_per_channel", "recip_vs_div")
        for key in keys:
            f.write(' "%s": [\n' % key)
            f.write(",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in doc[key]))
            f.write("\n ]%s\n" % ("," if key != keys[-1] else ""))
        f.write("}\n")
    json.load(open(path))
    print("wrote", path, len(pt), "LSQ per-tensor groups,", len(pc), "LSQ per-channel calls,",
          len(rd), "reciprocal-vs-division cases")


if __name__ == "__main__":
    main()
