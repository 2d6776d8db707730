#!/usr/bin/python3
"""Generate exact PyTorch quantization test vectors (JSON).

Framework: torch 1.13 (Debian python3-torch 1.13.1+dfsg, torch.__version__ ==
"1.13.0a0", built WITHOUT fbgemm: quantized engines = qnnpack, onednn) and
numpy 1.24.2.  The versions actually used are printed and stored in every JSON
file as "generator": {"numpy": ..., "torch": ...}.

Re-run from the repository root:

    /usr/bin/python3 tests/data/quant/gen_torch_quant.py

Writes next to this script:
    quantize_per_tensor.json   torch.quantize_per_tensor + int_repr + dequantize
    quantize_per_channel.json  torch.quantize_per_channel + int_repr + dequantize
    observers.json             MinMax / MovingAverage / PerChannel / Histogram observers
    choose_qparams_dynamic.json  torch._choose_qparams_per_tensor + dynamic Linear
    fake_quant.json            fake_quantize_per_{tensor,channel}_affine and the
                               learnable variants, forward + backward
Schemas are documented in README.md.  Float32 values are stored as their IEEE
bit patterns (uint32) under keys ending in "_bits", float64 values as uint64
under keys ending in "_bits64".

Deterministic: numpy Generator / torch.manual_seed with fixed seeds and
torch.set_num_threads(1).
"""
import json
import math
import os
import sys
import warnings

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATOR = {"numpy": np.__version__, "torch": torch.__version__}

warnings.filterwarnings("ignore")
torch.set_num_threads(1)

try:  # torch >= 1.13 location
    import torch.ao.quantization.observer as obsmod
except ImportError:  # pragma: no cover
    import torch.quantization.observer as obsmod
try:
    import torch.ao.nn.quantized.dynamic as nnqd
except ImportError:  # pragma: no cover
    import torch.nn.quantized.dynamic as nnqd


# ----------------------------------------------------------------------------
# encoding helpers
# ----------------------------------------------------------------------------
def f32(x):
    """numpy float32 array from tensor / list / scalar."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float32).numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def bits(x):
    """flattened float32 bit patterns (list of int)."""
    return [int(v) for v in f32(x).reshape(-1).view(np.uint32)]


def bit1(x):
    """single float32 bit pattern."""
    return int(np.array([x], dtype=np.float32).view(np.uint32)[0])


def bits64(x):
    """single float64 bit pattern."""
    return int(np.array([x], dtype=np.float64).view(np.uint64)[0])


def bits64_list(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    return [int(v) for v in np.asarray(x, dtype=np.float64).reshape(-1).view(np.uint64)]


def ints(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.int64).numpy()
    return [int(v) for v in np.asarray(x).reshape(-1)]


DTYPES = {"quint8": torch.quint8, "qint8": torch.qint8, "qint32": torch.qint32}
QRANGE = {"quint8": (0, 255), "qint8": (-128, 127), "qint32": (-2 ** 31, 2 ** 31 - 1)}


def dname(dt):
    for k, v in DTYPES.items():
        if v == dt:
            return k
    raise KeyError(dt)


def dump(name, obj):
    """JSON with one list element per line for the big lists of cases."""
    path = os.path.join(HERE, name)
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
    json.loads(text)  # sanity
    with open(path, "w") as f:
        f.write(text)
    print("wrote %-30s %8d bytes" % (name, len(text)))


# ----------------------------------------------------------------------------
# reference formula used only to flag torch's out-of-range quirk
# ----------------------------------------------------------------------------
def ref_quantize(x, scale, zp, dt):
    """zp + nearbyint(x * (1.0f/float(scale))) computed in float32 then clamped
    with a saturating (mathematically correct) clamp."""
    qmin, qmax = QRANGE[dt]
    inv = np.float32(1.0) / np.float32(scale)
    with np.errstate(over="ignore", invalid="ignore"):
        t = np.float32(zp) + np.rint(f32(x) * inv)
    return np.clip(t.astype(np.float64), qmin, qmax).astype(np.int64)


# ----------------------------------------------------------------------------
# 1. quantize_per_tensor
# ----------------------------------------------------------------------------
def gen_quantize_per_tensor():
    rng = np.random.default_rng(1001)
    cases = []

    def add(name, x, scale, zp, dt):
        x = f32(x)
        t = torch.from_numpy(x.copy())
        q = torch.quantize_per_tensor(t, scale, zp, DTYPES[dt])
        qi = ints(q.int_repr())
        deq = q.dequantize()
        ref = ref_quantize(x, scale, zp, dt).reshape(-1)
        quirk = [i for i, (a, b) in enumerate(zip(qi, ref)) if a != b]
        inv = np.float32(1.0) / np.float32(scale)
        with np.errstate(over="ignore", invalid="ignore"):
            by_recip = np.rint(x.reshape(-1) * inv)
            by_div = np.rint(x.reshape(-1) / np.float32(scale))
        cases.append({
            "name": name,
            "dtype": dt,
            "shape": list(x.shape),
            "x_bits": bits(x),
            "scale_bits64": bits64(scale),
            "scale_bits": bit1(scale),
            "zero_point": int(zp),
            "q_scale_bits64": bits64(q.q_scale()),
            "q": qi,
            "dequant_bits": bits(deq),
            "overflow_quirk_indices": quirk,
            "recip_differs_from_div": bool(np.any(by_recip != by_div)),
        })

    scales = [0.1, 0.3, float(np.float32(1.0 / 3.0)), 0.0078125, 1e-5, 1.0, 0.5,
              2.0 ** -4, 0.7, 123.456]
    for dt in ("quint8", "qint8", "qint32"):
        qmin, qmax = QRANGE[dt]
        zps = {"quint8": [0, 128, 3, 255], "qint8": [0, -5, 17, -128],
               "qint32": [0, 7, -12345, 3]}[dt]
        # random values around the representable range for each scale
        for si, s in enumerate(scales):
            zp = zps[si % len(zps)]
            span = 150.0 if dt != "qint32" else 5000.0
            x = rng.uniform(-span * s, span * s, size=32).astype(np.float32)
            add("random_s%g_zp%d" % (s, zp), x, s, zp, dt)
        # cases where x*inv_scale rounds differently than x/scale
        for s in (0.1, 0.3, float(np.float32(1.0 / 3.0)), 1e-5, 0.7, 123.456):
            s32 = np.float32(s)
            inv = np.float32(1.0) / s32
            found = []
            k = 0
            while len(found) < 16 and k < 200000:
                k += 1
                c = rng.integers(-100, 100) + 0.5
                xv = np.float32(c * np.float64(s32))
                for dx in (-2, -1, 0, 1, 2):
                    xb = np.float32(xv).view(np.uint32)
                    xx = np.uint32(int(xb) + dx).view(np.float32) if xv != 0 else xv
                    if np.rint(xx * inv) != np.rint(np.float64(xx) / np.float64(s32)):
                        found.append(xx)
                        break
            if found:
                add("recip_vs_div_s%g" % s, np.array(found[:16], np.float32), s, zps[0], dt)
        # exact ties: x = (k+0.5)*scale, scale power of two
        for s in (2.0 ** -3, 1.0, 2.0 ** 5):
            for zp in zps[:2]:
                kk = np.arange(-16, 16, dtype=np.float64) + 0.5
                if dt == "quint8" and zp == 0:
                    kk = np.arange(0, 32, dtype=np.float64) + 0.5
                x = (kk * s).astype(np.float32)
                add("ties_s%g_zp%d" % (s, zp), x, s, zp, dt)
        # edge inputs
        add("all_zero", np.zeros(16, np.float32), 0.1, zps[1], dt)
        add("constant", np.full(9, 0.37, np.float32), 0.1, zps[1], dt)
        add("single", np.array([-1.2345], np.float32), 0.01, zps[2], dt)
        add("tiny_range", (1e-8 + rng.uniform(0, 1e-8, 12)).astype(np.float32), 1e-10,
            zps[0], dt)
        add("tiny_values_big_scale", rng.uniform(-1e-8, 1e-8, 12).astype(np.float32), 0.1,
            zps[1], dt)
        add("huge_range_scale1e28", np.array([-1e30, -1e29, -1e28, 0, 1e28, 1e29, 1e30],
                                             np.float32), 1e28, zps[0], dt)
        add("huge_values_scale1", np.array([-1e30, -3e9, -1e9, -1e5, 0, 1e5, 1e9, 3e9,
                                            9.2e18, 9.3e18, 1e30, 3.4e38, -3.4e38],
                                           np.float32), 1.0, zps[0], dt)
        add("negative_only", -rng.uniform(0.01, 5, 20).astype(np.float32), 0.05, zps[2], dt)
        add("positive_only", rng.uniform(0.01, 5, 20).astype(np.float32), 0.05, zps[2], dt)
        lo, hi = (qmin - zps[1]) * 0.25, (qmax - zps[1]) * 0.25
        add("saturating", np.array([lo - 1, lo - 0.25, lo - 0.125, lo, lo + 0.125, hi - 0.125,
                                    hi, hi + 0.125, hi + 0.25, hi + 1, 1e6, -1e6], np.float32),
            0.25, zps[1], dt)
        add("inf_values", np.array([np.inf, -np.inf, 1.0], np.float32), 0.5, zps[0], dt)
        add("subnormal_values", np.array([1e-45, -1e-45, 1e-39, -1e-39], np.float32),
            1e-5, zps[0], dt)
        # 2-D / 4-D layout (row-major flatten)
        add("shape_2d", rng.normal(0, 1, (4, 8)).astype(np.float32), 0.03, zps[1], dt)
        add("shape_4d", rng.normal(0, 1, (2, 2, 3, 3)).astype(np.float32), 0.02, zps[2], dt)
        if dt == "qint32":
            # float addition of zero_point above 2^24 (float32 rounding of zp + round())
            x = np.array([2.0 ** 24, 2.0 ** 24 + 2, 2.0 ** 25, 2.0 ** 25 + 4, 2.0 ** 30,
                          -2.0 ** 25, 2.0 ** 31 - 128, 2.0 ** 31, -2.0 ** 31,
                          2.0 ** 62, 2.0 ** 63, -2.0 ** 63, -2.0 ** 64], np.float32)
            for zp in (0, 1, 3, -3, 12345):
                add("large_zp_float_add_zp%d" % zp, x, 1.0, zp, dt)

    quirk_cases = sum(1 for c in cases if c["overflow_quirk_indices"])
    dump("quantize_per_tensor.json", {
        "generator": GENERATOR,
        "description": "torch.quantize_per_tensor(x, scale, zero_point, dtype): q = int_repr(), "
                       "dequant = dequantize(). See README.md.",
        "observed_formula": {
            "quantize": "q = clamp((int64)(float(zero_point) + nearbyint(x * (1.0f/float(scale)))), "
                        "qmin, qmax), all arithmetic in float32 (note: zero_point is added in "
                        "float32, matters for |values| > 2^24 in qint32)",
            "quantize_overflow_quirk": "if |float(zp)+nearbyint(x*inv)| >= 2^63 (or inf) the "
                                       "float->int64 conversion yields INT64_MIN so torch returns "
                                       "qmin even for huge POSITIVE x; such element indices are "
                                       "listed in overflow_quirk_indices",
            "dequantize": "float(scale) * (float)(int32)(q - zero_point) -- the subtraction wraps "
                          "in int32 for qint32 (e.g. q=-2^31, zp=7 gives a positive result)",
        },
        "num_cases_with_overflow_quirk": quirk_cases,
        "cases": cases,
    })


# ----------------------------------------------------------------------------
# 2. quantize_per_channel
# ----------------------------------------------------------------------------
def gen_quantize_per_channel():
    rng = np.random.default_rng(1002)
    cases = []

    def add(name, x, scales, zps, axis, dt):
        x = f32(x)
        sc = torch.tensor(scales, dtype=torch.float64)
        zp = torch.tensor(zps, dtype=torch.int64)
        q = torch.quantize_per_channel(torch.from_numpy(x.copy()), sc, zp, axis, DTYPES[dt])
        cases.append({
            "name": name,
            "dtype": dt,
            "shape": list(x.shape),
            "axis": axis,
            "x_bits": bits(x),
            "scales_bits64": bits64_list(sc),
            "scales_bits": bits(np.asarray(scales, np.float64).astype(np.float32)),
            "zero_points": ints(zp),
            "q_per_channel_scales_bits64": bits64_list(q.q_per_channel_scales()),
            "q_per_channel_zero_points": ints(q.q_per_channel_zero_points()),
            "q": ints(q.int_repr()),
            "dequant_bits": bits(q.dequantize()),
        })

    pool_s = [0.1, 0.3, float(np.float32(1 / 3)), 0.0078125, 1e-5, 0.02, 0.05, 2.0 ** -3]
    for dt in ("qint8", "quint8"):
        zpool = [0, -3, 5, 17, -128, 127] if dt == "qint8" else [0, 128, 3, 255, 64, 200]
        shapes_axes = [((4, 8), 0), ((4, 8), 1), ((3, 5), 0), ((5, 3), 1),
                       ((2, 3, 2, 4), 0), ((2, 3, 2, 4), 1), ((2, 3, 2, 4), 3),
                       ((4, 2, 2, 2), 0), ((2, 2, 3, 5), 3)]
        for shape, axis in shapes_axes:
            c = shape[axis]
            scales = [pool_s[(i * 3 + axis) % len(pool_s)] for i in range(c)]
            zps = [zpool[(i + axis) % len(zpool)] for i in range(c)]
            x = rng.normal(0, 1, shape).astype(np.float32)
            # scale each channel so the data spans roughly the quantized range
            bshape = [1] * len(shape)
            bshape[axis] = c
            x = x * (np.array(scales, np.float32) * 60).reshape(bshape)
            add("random_%s_axis%d" % ("x".join(map(str, shape)), axis), x, scales, zps, axis, dt)
        # ties per channel
        s = [2.0 ** -3, 1.0, 2.0 ** -1]
        k = (np.arange(-6, 6, dtype=np.float64) + 0.5) if dt == "qint8" \
            else (np.arange(0, 12, dtype=np.float64) + 0.5)
        x = np.stack([k * si for si in s]).astype(np.float32)
        add("ties_3x12_axis0", x, s, zpool[:3] if dt == "qint8" else [0, 0, 0], 0, dt)
        add("ties_12x3_axis1", x.T.copy(), s, zpool[:3] if dt == "qint8" else [0, 0, 0], 1, dt)
        # edge rows: zero, constant, negative-only, positive-only, saturating, tiny, huge
        rows = np.array([
            [0, 0, 0, 0, 0, 0],
            [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
            [-0.1, -0.5, -1, -2, -3, -4],
            [0.1, 0.5, 1, 2, 3, 4],
            [-1e6, -100, -1.6, 1.6, 100, 1e6],
            [1e-8, 2e-8, 3e-8, -1e-8, 0, 5e-9],
            [1e30, -1e30, 1e20, -1e20, 3e9, -3e9],
        ], np.float32)
        add("edge_rows_axis0", rows, [0.1, 0.1, 0.02, 0.02, 0.0125, 1e-10, 1e20],
            [zpool[i % len(zpool)] for i in range(7)], 0, dt)
        add("single_element_2d", np.array([[0.123]], np.float32), [0.01], [zpool[2]], 0, dt)

    dump("quantize_per_channel.json", {
        "generator": GENERATOR,
        "description": "torch.quantize_per_channel(x, scales(float64 tensor), zero_points(int64 "
                       "tensor), axis, dtype); q = int_repr() and dequant = dequantize(), both "
                       "row-major flattened. See README.md.",
        "observed_formula": {
            "quantize": "q = clamp(float(zp_c) + nearbyint(x * (1.0f/float(scale_c))), qmin, qmax) "
                        "(same as per-tensor)",
            "dequantize": "(float)((double)(float(q) - float(zp_c)) * scale_c_double) -- unlike "
                          "per-tensor, the multiplication uses the float64 scale",
        },
        "cases": cases,
    })


# ----------------------------------------------------------------------------
# 3. observers
# ----------------------------------------------------------------------------
def gen_observers():
    torch.manual_seed(1003)
    rng = np.random.default_rng(1003)
    cases = []

    def run(name, cls, kwargs, batches, record_hist=False):
        kw = dict(kwargs)
        obs = cls(**kw)
        for b in batches:
            obs(torch.from_numpy(f32(b).copy()))
        scale, zp = obs.calculate_qparams()
        ekw = {}
        for k, v in kwargs.items():
            if k == "dtype":
                ekw[k] = dname(v)
            elif k == "qscheme":
                ekw[k] = str(v).replace("torch.", "")
            elif k in ("eps", "averaging_constant"):
                ekw[k + "_bits64"] = bits64(v)
                ekw[k + "_bits"] = bit1(v)
            else:
                ekw[k] = v
        case = {
            "name": name,
            "observer": cls.__name__,
            "kwargs": ekw,
            "effective_quant_min": int(obs.quant_min),
            "effective_quant_max": int(obs.quant_max),
            "eps_bits": bits(obs.eps),
            "per_channel": bool(obs.min_val.dim() == 1),
            "batches": [{"shape": list(f32(b).shape), "x_bits": bits(b)} for b in batches],
            "min_val_bits": bits(obs.min_val.reshape(-1)),
            "max_val_bits": bits(obs.max_val.reshape(-1)),
            "scale_bits": bits(scale.reshape(-1)),
            "zero_point": ints(zp.reshape(-1)),
        }
        if record_hist:
            case["bins"] = int(obs.bins)
            case["upsample_rate"] = int(obs.upsample_rate)
            case["histogram_bits"] = bits(obs.histogram)
        cases.append(case)

    def gauss(shape, s=1.0, m=0.0):
        return rng.normal(m, s, shape).astype(np.float32)

    # --- MinMaxObserver
    MM = obsmod.MinMaxObserver
    data1 = [gauss((4, 8), 1.5, 0.3), gauss((16,), 2.0, -0.5)]
    for qs in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        for dt in (torch.quint8, torch.qint8):
            for rr in (False, True):
                if rr and dt == torch.quint8 and qs == torch.per_tensor_symmetric:
                    continue  # torch raises NotImplementedError for this combination
                nm = "minmax_%s_%s_rr%d" % (str(qs)[6:], dname(dt), rr)
                run(nm, MM, {"dtype": dt, "qscheme": qs, "reduce_range": rr}, data1)
    run("minmax_custom_-127_127_eps2^-12_sym", MM,
        {"dtype": torch.qint8, "qscheme": torch.per_tensor_symmetric, "quant_min": -127,
         "quant_max": 127, "eps": 2.0 ** -12}, data1)
    run("minmax_custom_-127_127_eps2^-12_affine", MM,
        {"dtype": torch.qint8, "qscheme": torch.per_tensor_affine, "quant_min": -127,
         "quant_max": 127, "eps": 2.0 ** -12}, data1)
    run("minmax_custom_quint8_0_15_sym", MM,
        {"dtype": torch.quint8, "qscheme": torch.per_tensor_symmetric, "quant_min": 0,
         "quant_max": 15}, data1)
    run("minmax_custom_quint8_0_15_affine_rr", MM,
        {"dtype": torch.quint8, "qscheme": torch.per_tensor_affine, "quant_min": 0,
         "quant_max": 15, "reduce_range": True}, data1)
    # symmetric quint8 -> zero_point 128 quirk (positive-only data too)
    run("minmax_sym_quint8_zp128_positive_only", MM,
        {"dtype": torch.quint8, "qscheme": torch.per_tensor_symmetric},
        [rng.uniform(0.5, 3.0, 20).astype(np.float32)])
    # qint8 symmetric: s = max|x| / 127.5
    run("minmax_sym_qint8_s_a_over_127.5", MM,
        {"dtype": torch.qint8, "qscheme": torch.per_tensor_symmetric},
        [np.array([-2.55, 1.0, 0.5, 2.0], np.float32)])
    run("minmax_uninitialised", MM, {"dtype": torch.quint8}, [])
    run("minmax_all_zero", MM, {"dtype": torch.quint8}, [np.zeros(10, np.float32)])
    run("minmax_all_zero_sym_qint8", MM,
        {"dtype": torch.qint8, "qscheme": torch.per_tensor_symmetric},
        [np.zeros(10, np.float32)])
    run("minmax_constant_positive", MM, {"dtype": torch.quint8}, [np.full(5, 3.25, np.float32)])
    run("minmax_negative_only", MM, {"dtype": torch.quint8},
        [-rng.uniform(0.1, 4, 12).astype(np.float32)])
    run("minmax_tiny_range", MM, {"dtype": torch.quint8},
        [(1.0 + rng.uniform(0, 1e-7, 8)).astype(np.float32) * np.float32(1e-8)])
    run("minmax_huge_range", MM, {"dtype": torch.qint8},
        [np.array([-1e30, 3e29, 1.0], np.float32)])
    run("minmax_single_element", MM, {"dtype": torch.qint8}, [np.array([-0.75], np.float32)])
    run("minmax_zp_tie", MM, {"dtype": torch.quint8},
        [np.array([-0.5, 254.5], np.float32)])  # min/scale = -0.5 -> round half even

    # --- MovingAverageMinMaxObserver
    MA = obsmod.MovingAverageMinMaxObserver
    batches = [gauss((8,), 1.0, 0.0), gauss((8,), 2.0, 0.5), gauss((3, 4), 0.5, -0.2),
               gauss((8,), 3.0, 1.0), gauss((5,), 1.0, 0.0)]
    for c in (0.01, 0.5):
        for qs in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            for dt in (torch.quint8, torch.qint8):
                run("movavg_c%g_%s_%s" % (c, str(qs)[6:], dname(dt)), MA,
                    {"averaging_constant": c, "dtype": dt, "qscheme": qs}, batches)
        run("movavg_c%g_single_batch" % c, MA, {"averaging_constant": c}, batches[:1])
    run("movavg_c0.01_reduce_range", MA,
        {"averaging_constant": 0.01, "dtype": torch.quint8, "reduce_range": True}, batches)

    # --- PerChannelMinMaxObserver
    PC = obsmod.PerChannelMinMaxObserver
    pcb = [gauss((4, 6), 1.0, 0.0), gauss((4, 6), 2.0, 0.3)]
    pcb[0][2] = np.abs(pcb[0][2])   # channel 2 positive-only in batch 0
    pcb[1][2] = np.abs(pcb[1][2])
    pcb[0][3] = 0.0                 # channel 3 all zero
    pcb[1][3] = 0.0
    for ax in (0, 1):
        for qs in (torch.per_channel_affine, torch.per_channel_symmetric):
            for dt in (torch.qint8, torch.quint8):
                run("perchannel_ax%d_%s_%s" % (ax, str(qs)[6:], dname(dt)), PC,
                    {"ch_axis": ax, "qscheme": qs, "dtype": dt}, pcb)
    run("perchannel_4d_ax0_sym_qint8", PC,
        {"ch_axis": 0, "qscheme": torch.per_channel_symmetric, "dtype": torch.qint8},
        [gauss((3, 2, 3, 3))])
    run("perchannel_4d_ax1_affine_quint8_rr", PC,
        {"ch_axis": 1, "qscheme": torch.per_channel_affine, "dtype": torch.quint8,
         "reduce_range": True}, [gauss((2, 3, 2, 2)), gauss((2, 3, 2, 2), 3.0)])
    run("perchannel_custom_-127_127", PC,
        {"ch_axis": 0, "qscheme": torch.per_channel_symmetric, "dtype": torch.qint8,
         "quant_min": -127, "quant_max": 127, "eps": 2.0 ** -12}, pcb)

    # --- MovingAveragePerChannelMinMaxObserver
    MPC = obsmod.MovingAveragePerChannelMinMaxObserver
    mpcb = [gauss((3, 5), 1.0), gauss((3, 5), 2.0, 0.5), gauss((3, 5), 0.5, -1.0)]
    for c in (0.01, 0.5):
        for ax in (0, 1):
            run("movavg_perchannel_c%g_ax%d_affine_quint8" % (c, ax), MPC,
                {"averaging_constant": c, "ch_axis": ax, "dtype": torch.quint8,
                 "qscheme": torch.per_channel_affine}, mpcb)
        run("movavg_perchannel_c%g_ax0_sym_qint8" % c, MPC,
            {"averaging_constant": c, "ch_axis": 0, "dtype": torch.qint8,
             "qscheme": torch.per_channel_symmetric}, mpcb)

    # --- HistogramObserver (bins=2048, upsample_rate=128 default)
    HO = obsmod.HistogramObserver
    g1 = gauss((64,), 1.0)
    run("hist_gauss_single", HO, {}, [g1], True)
    run("hist_gauss_multi_merge", HO, {},
        [gauss((64,), 1.0), gauss((64,), 2.5, 0.5), gauss((64,), 0.5)], True)
    out = gauss((64,), 1.0)
    out[5] = 25.0
    out[40] = -12.0
    run("hist_outliers_single", HO, {}, [out], True)
    run("hist_outliers_multi", HO, {"dtype": torch.qint8, "qscheme": torch.per_tensor_symmetric},
        [gauss((64,), 1.0), out, gauss((64,), 4.0)], True)
    pos = rng.exponential(1.5, 64).astype(np.float32)
    run("hist_positive_only_multi", HO, {},
        [pos, rng.exponential(3.0, 64).astype(np.float32)], True)
    run("hist_small_range_multi", HO, {},   # |x| < 1: exercises int(min)/int(max) in histc
        [rng.uniform(0.1, 0.9, 64).astype(np.float32),
         rng.uniform(-0.3, 0.95, 64).astype(np.float32)], True)
    run("hist_reduce_range_qint8", HO, {"dtype": torch.qint8, "reduce_range": True},
        [gauss((64,), 2.0), gauss((32,), 1.0)], True)
    run("hist_all_zero", HO, {}, [np.zeros(16, np.float32)], True)
    run("hist_uninitialised", HO, {}, [], False)

    dump("observers.json", {
        "generator": GENERATOR,
        "description": "torch.ao.quantization observers: construct with kwargs, call forward "
                       "on each batch in order, then calculate_qparams(). See README.md.",
        "notes": [
            "HistogramObserver (torch 1.13) calls torch.histc(x, bins, min=int(min_val), "
            "max=int(max_val)): the range is TRUNCATED to integers, so values outside "
            "[trunc(min), trunc(max)] are dropped from the histogram (e.g. hist_gauss_single: "
            "64 inputs, histogram sum 61); if trunc(min)==trunc(max) histc uses the data min/max.",
            "Symmetric quint8 without custom range uses zero_point 128; with custom range "
            "(quant_min+quant_max)//2.",
        ],
        "cases": cases,
    })


# ----------------------------------------------------------------------------
# 4. choose_qparams (dynamic) + dynamic Linear
# ----------------------------------------------------------------------------
def gen_choose_qparams_dynamic():
    rng = np.random.default_rng(1004)
    torch.manual_seed(1004)
    cq = []

    engines = list(torch.backends.quantized.supported_engines)
    old_engine = torch.backends.quantized.engine
    # generic engine for the reference choose_qparams values (qnnpack ignores reduce_range)
    ref_engine = "onednn" if "onednn" in engines else ("none" if "none" in engines else old_engine)

    def add(name, x, engine=None):
        x = f32(x)
        engine = engine or ref_engine
        torch.backends.quantized.engine = engine
        for rr in (False, True):
            s, z = torch._choose_qparams_per_tensor(torch.from_numpy(x.copy()), rr)
            cq.append({
                "name": name,
                "engine": engine,
                "shape": list(x.shape),
                "x_bits": bits(x),
                "reduce_range": rr,
                "min_bits": bit1(x.min()),
                "max_bits": bit1(x.max()),
                "scale_bits64": bits64(s),
                "scale_bits": bit1(s),
                "zero_point": int(z),
            })

    for i in range(12):
        add("gauss_%d" % i, rng.normal(rng.uniform(-2, 2), rng.uniform(0.01, 5), 16))
    add("all_zero", np.zeros(8))
    add("single_positive", [0.7])
    add("single_negative", [-0.7])
    add("positive_only", rng.uniform(0.5, 3, 10))
    add("negative_only", -rng.uniform(0.5, 3, 10))
    add("tiny_range_1e-8", rng.uniform(-1e-8, 1e-8, 10))
    add("tiny_positive_1e-6", rng.uniform(0, 1e-6, 10))
    add("tiny_negative_1e-6", -rng.uniform(0, 1e-6, 10))
    add("below_floor_mixed", [-3e-3, 1e-3, 2e-3])       # scale < 6.1e-5 with min,max != 0
    add("at_floor", [0.0, np.float32(6.1e-5) * 255])
    add("huge_range", [-1e30, 1e30])
    add("huge_positive", [1e30, 2e30])
    add("zp_tie_case", [-0.5, 254.5])
    add("symmetric_range", [-1.0, 1.0])
    add("integers_0_255", np.arange(0, 256, 17))
    add("max_float", [-3.4e38, 3.4e38])
    if "qnnpack" in engines:  # qnnpack ignores reduce_range=True in choose_qparams
        add("qnnpack_gauss", rng.normal(0.3, 1.5, 16), "qnnpack")
        add("qnnpack_range_-1_2", [-1.0, 2.0], "qnnpack")
    torch.backends.quantized.engine = old_engine

    # --- dynamic Linear
    lin = []
    in_f, out_f = 8, 5
    W = rng.normal(0, 0.5, (out_f, in_f)).astype(np.float32)
    b = rng.normal(0, 0.1, out_f).astype(np.float32)
    xs = [rng.normal(0, 1, (3, in_f)).astype(np.float32),
          rng.uniform(0, 2, (2, in_f)).astype(np.float32),
          rng.normal(0.5, 3, (4, in_f)).astype(np.float32),
          np.zeros((1, in_f), np.float32)]
    wt = torch.from_numpy(W.copy())
    # per-channel weight qparams (symmetric qint8, zero_point 0) and per-tensor
    wmax = np.abs(W).max(axis=1)
    wsc = (wmax / 127.5).astype(np.float64)
    qw_pc = torch.quantize_per_channel(wt, torch.tensor(wsc), torch.zeros(out_f, dtype=torch.int64),
                                       0, torch.qint8)
    qw_pt = torch.quantize_per_tensor(wt, float(np.abs(W).max() / 127.5), 0, torch.qint8)
    input_qparams = []
    torch.backends.quantized.engine = ref_engine
    for x in xs:
        s_rr, z_rr = torch._choose_qparams_per_tensor(torch.from_numpy(x), True)
        s_nr, z_nr = torch._choose_qparams_per_tensor(torch.from_numpy(x), False)
        input_qparams.append((s_rr, z_rr, s_nr, z_nr))
    torch.backends.quantized.engine = old_engine
    for eng in ("fbgemm", "onednn", "x86", "qnnpack"):
        if eng not in engines:
            lin.append({"engine": eng, "available": False,
                        "note": "engine not in torch.backends.quantized.supported_engines"})
            continue
        for wname, qw in (("per_channel", qw_pc), ("per_tensor", qw_pt)):
            entry = {"engine": eng, "available": True, "weight_qscheme": wname}
            try:
                torch.backends.quantized.engine = eng
                m = nnqd.Linear(in_f, out_f, dtype=torch.qint8)
                m.set_weight_bias(qw, torch.from_numpy(b.copy()))
                pw = m.weight()
                entry.update({
                    "in_features": in_f, "out_features": out_f,
                    "weight_float_bits": bits(W),
                    "weight_shape": [out_f, in_f],
                    "weight_int_repr": ints(pw.int_repr()),
                    "bias_bits": bits(m.bias()),
                })
                if pw.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                    entry["weight_scales_bits64"] = bits64_list(pw.q_per_channel_scales())
                    entry["weight_zero_points"] = ints(pw.q_per_channel_zero_points())
                    entry["weight_axis"] = int(pw.q_per_channel_axis())
                else:
                    entry["weight_scale_bits64"] = bits64(pw.q_scale())
                    entry["weight_zero_point"] = int(pw.q_zero_point())
                runs = []
                entry["module_reduce_range"] = True
                entry["effective_input_reduce_range"] = eng != "qnnpack"
                for x, (s_rr, z_rr, s_nr, z_nr) in zip(xs, input_qparams):
                    y = m(torch.from_numpy(x.copy()))
                    runs.append({"x_shape": list(x.shape), "x_bits": bits(x),
                                 "y_shape": list(y.shape), "y_bits": bits(y),
                                 "input_qparams_reduce_range_true": {
                                     "scale_bits64": bits64(s_rr), "zero_point": int(z_rr)},
                                 "input_qparams_reduce_range_false": {
                                     "scale_bits64": bits64(s_nr), "zero_point": int(z_nr)}})
                entry["runs"] = runs
            except Exception as e:  # record instead of failing
                entry = {"engine": eng, "available": True, "weight_qscheme": wname,
                         "error": "%s: %s" % (type(e).__name__, e)}
            lin.append(entry)
    torch.backends.quantized.engine = old_engine

    dump("choose_qparams_dynamic.json", {
        "generator": GENERATOR,
        "supported_engines": engines,
        "choose_qparams_reference_engine": ref_engine,
        "notes": [
            "_choose_qparams_per_tensor ignores reduce_range=True when the quantized engine is "
            "qnnpack (cases with engine == 'qnnpack' show this).",
            "dynamic_linear input_qparams_* are computed with the reference engine, i.e. the "
            "true reduce_range semantics; onednn used reduce_range=True (matches "
            "input_qparams_reduce_range_true), qnnpack ignores it (matches _false).",
            "dynamic_linear y is not bit-reproducible by a naive formula: float accumulation "
            "order differs (|err| ~ 1 ulp vs (sum (xq-zx)*wq) * (sx*sw) + b).",
        ],
        "description": "choose_qparams: torch._choose_qparams_per_tensor(x, reduce_range) "
                       "(scale returned as python float = double). dynamic_linear: "
                       "torch.ao.nn.quantized.dynamic.Linear forward (module calls "
                       "quantized::linear_dynamic with reduce_range=True). See README.md.",
        "choose_qparams": cq,
        "dynamic_linear": lin,
    })
    return [e["engine"] for e in lin if e.get("available") and "runs" in e]


# ----------------------------------------------------------------------------
# 5. fake quant
# ----------------------------------------------------------------------------
def gen_fake_quant():
    rng = np.random.default_rng(1005)
    pt, pc, lpt, lpc = [], [], [], []

    def fq_pt(name, x, scale, zp, qmin, qmax):
        x = f32(x)
        g = rng.normal(0, 1, x.shape).astype(np.float32)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        y = torch.fake_quantize_per_tensor_affine(xt, scale, zp, qmin, qmax)
        y.backward(torch.from_numpy(g.copy()))
        pt.append({"name": name, "shape": list(x.shape), "x_bits": bits(x),
                   "scale_bits64": bits64(scale), "scale_bits": bit1(scale),
                   "zero_point": int(zp), "quant_min": qmin, "quant_max": qmax,
                   "g_bits": bits(g), "y_bits": bits(y), "grad_x_bits": bits(xt.grad)})

    def fq_pc(name, x, scales, zps, axis, qmin, qmax):
        x = f32(x)
        g = rng.normal(0, 1, x.shape).astype(np.float32)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        sc = torch.tensor(scales, dtype=torch.float32)
        zp = torch.tensor(zps, dtype=torch.int32)
        y = torch.fake_quantize_per_channel_affine(xt, sc, zp, axis, qmin, qmax)
        y.backward(torch.from_numpy(g.copy()))
        pc.append({"name": name, "shape": list(x.shape), "axis": axis, "x_bits": bits(x),
                   "scales_bits": bits(sc), "zero_points": ints(zp),
                   "quant_min": qmin, "quant_max": qmax,
                   "g_bits": bits(g), "y_bits": bits(y), "grad_x_bits": bits(xt.grad)})

    def boundary_values(scale, zp, qmin, qmax):
        s = np.float32(scale)
        lo = (qmin - zp) * np.float64(s)
        hi = (qmax - zp) * np.float64(s)
        v = []
        for e in (lo, hi):
            e32 = np.float32(e)
            v += [e32, np.nextafter(e32, np.float32(-np.inf)), np.nextafter(e32, np.float32(np.inf)),
                  np.float32(e - 0.5 * s), np.float32(e + 0.5 * s),     # clamp-boundary ties
                  np.float32(e - 0.49 * s), np.float32(e + 0.49 * s),
                  np.float32(e - 0.51 * s), np.float32(e + 0.51 * s),
                  np.float32(e - 3 * s), np.float32(e + 3 * s)]
        v += [np.float32(0.0), np.float32(-0.0)]
        return np.array(v, np.float32)

    for (qmin, qmax) in ((0, 255), (-128, 127), (-127, 127), (0, 15), (-8, 7)):
        for scale, zp in ((0.1, (qmin + qmax + 1) // 2), (2.0 ** -4, qmin),
                          (float(np.float32(1 / 3)), qmax), (0.0078125, 0), (1e-5, qmin + 3)):
            zp = int(min(max(zp, qmin), qmax))
            fq_pt("boundary_q%d_%d_s%g_zp%d" % (qmin, qmax, scale, zp),
                  boundary_values(scale, zp, qmin, qmax), scale, zp, qmin, qmax)
            x = rng.uniform((qmin - zp - 10) * scale, (qmax - zp + 10) * scale, 24)
            fq_pt("random_q%d_%d_s%g_zp%d" % (qmin, qmax, scale, zp), x, scale, zp, qmin, qmax)
        # exact ties with power-of-two scale
        s = 2.0 ** -3
        zp = (qmin + qmax + 1) // 2
        k = np.arange(qmin - zp - 2, qmin - zp + 6) if qmax - qmin < 20 else \
            np.arange(-10, 10)
        fq_pt("ties_q%d_%d" % (qmin, qmax), ((k + 0.5) * s).astype(np.float32), s, zp,
              qmin, qmax)
    fq_pt("all_zero", np.zeros(8), 0.1, 3, 0, 255)
    fq_pt("single", [0.25], 0.1, 0, -128, 127)
    fq_pt("tiny", rng.uniform(-1e-8, 1e-8, 8), 1e-10, 0, -128, 127)
    fq_pt("huge", [1e30, -1e30, 3e9, -3e9, 1.0], 1.0, 0, -128, 127)
    fq_pt("shape_2d", rng.normal(0, 1, (3, 7)), 0.02, 5, -128, 127)

    # per-channel
    for (qmin, qmax) in ((-128, 127), (0, 255), (-127, 127)):
        for shape, axis in (((3, 8), 0), ((8, 3), 1), ((2, 3, 2, 2), 1), ((2, 2, 2, 3), 3),
                            ((4, 2, 1, 3), 0)):
            c = shape[axis]
            scales = [[0.1, 2.0 ** -4, float(np.float32(1 / 3)), 0.0078125][i % 4] for i in range(c)]
            zps = [[(qmin + qmax + 1) // 2, qmin, qmax, 0][i % 4] for i in range(c)]
            zps = [int(min(max(z, qmin), qmax)) for z in zps]
            bshape = [1] * len(shape)
            bshape[axis] = c
            x = rng.normal(0, 1, shape) * (np.array(scales) * 90).reshape(bshape)
            fq_pc("random_%s_ax%d_q%d_%d" % ("x".join(map(str, shape)), axis, qmin, qmax),
                  x, scales, zps, axis, qmin, qmax)
        # boundary rows per channel
        sc = [0.1, 2.0 ** -4]
        zz = [(qmin + qmax + 1) // 2, qmin]
        rows = [boundary_values(sc[i], zz[i], qmin, qmax) for i in range(2)]
        fq_pc("boundary_rows_q%d_%d" % (qmin, qmax), np.stack(rows), sc, zz, 0, qmin, qmax)
        fq_pc("boundary_cols_q%d_%d" % (qmin, qmax), np.stack(rows).T.copy(), sc, zz, 1,
              qmin, qmax)

    # learnable
    def lfq(per_channel, name, x, scale, zp, qmin, qmax, gf_kind, axis=None):
        x = f32(x)
        g = rng.normal(0, 1, x.shape).astype(np.float32)
        n = x.size
        gf = 1.0 if gf_kind == "one" else 1.0 / math.sqrt(n * qmax)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        st = torch.tensor(scale, dtype=torch.float32).requires_grad_(True)
        zt = torch.tensor(zp, dtype=torch.float32).requires_grad_(True)
        if per_channel:
            y = torch._fake_quantize_learnable_per_channel_affine(xt, st, zt, axis, qmin, qmax, gf)
        else:
            y = torch._fake_quantize_learnable_per_tensor_affine(xt, st, zt, qmin, qmax, gf)
        y.backward(torch.from_numpy(g.copy()))
        c = {"name": name, "shape": list(x.shape), "x_bits": bits(x),
             "scale_bits": bits(st.detach().reshape(-1)),
             "zero_point_bits": bits(zt.detach().reshape(-1)),
             "quant_min": qmin, "quant_max": qmax,
             "grad_factor_bits64": bits64(gf), "grad_factor_bits": bit1(gf),
             "grad_factor_kind": gf_kind,
             "g_bits": bits(g), "y_bits": bits(y), "grad_x_bits": bits(xt.grad),
             "grad_scale_bits": bits(st.grad.reshape(-1)),
             "grad_zero_point_bits": bits(zt.grad.reshape(-1))}
        if per_channel:
            c["axis"] = axis
            lpc.append(c)
        else:
            lpt.append(c)

    for gfk in ("one", "lsq"):
        for (qmin, qmax) in ((0, 255), (-128, 127), (-8, 7)):
            for scale, zp in ((0.1, 0.0), (2.0 ** -4, float((qmin + qmax + 1) // 2)),
                              (0.03, 2.5), (0.05, 3.7), (0.2, float(qmax) + 5.0)):
                x = np.concatenate([boundary_values(scale, round(min(max(zp, qmin), qmax)),
                                                    qmin, qmax),
                                    rng.uniform((qmin - 10) * scale, (qmax + 10) * scale, 10)])
                lfq(False, "pt_q%d_%d_s%g_zp%g_%s" % (qmin, qmax, scale, zp, gfk),
                    x, [scale], [zp], qmin, qmax, gfk)
            for shape, axis in (((3, 6), 0), ((6, 3), 1), ((2, 3, 2, 2), 1)):
                c = shape[axis]
                scales = [[0.1, 2.0 ** -4, 0.03][i % 3] for i in range(c)]
                zps = [[0.0, float((qmin + qmax + 1) // 2), 2.5][i % 3] for i in range(c)]
                zps = [min(max(z, qmin), qmax) for z in zps]
                bshape = [1] * len(shape)
                bshape[axis] = c
                x = rng.normal(0, 1, shape) * (np.array(scales) * (qmax - qmin) / 3).reshape(bshape)
                lfq(True, "pc_%s_ax%d_q%d_%d_%s" % ("x".join(map(str, shape)), axis, qmin, qmax,
                                                    gfk), x, scales, zps, qmin, qmax, gfk, axis)

    dump("fake_quant.json", {
        "generator": GENERATOR,
        "description": "fake_quantize_per_tensor_affine / fake_quantize_per_channel_affine and "
                       "_fake_quantize_learnable_per_{tensor,channel}_affine: forward y and "
                       "backward with upstream gradient g. See README.md.",
        "notes": [
            "fake_quantize_*: q = (int64)(float(zp) + nearbyint(x*(1.0f/scale))), "
            "y = (clamp(q,qmin,qmax) - zp) * scale, grad_x = g * float(qmin <= q <= qmax) "
            "(so masked entries are -0.0 when g < 0). q overflows int64 for huge |x| "
            "(e.g. 1e30 -> INT64_MIN -> y = (qmin-zp)*scale, grad 0).",
            "learnable per-tensor: forward zp = clamp(nearbyint(zp_f)); backward zp = "
            "(int64)clamp(zp_f + 0.5f) (different rounding!), xq = nearbyint(fma(x, inv_scale, "
            "zp)) -- the compiled kernel fuses x*inv_scale+zp into one FMA (matters at ties).",
            "learnable per-channel: zp = torch.round(zp_f).clamp(qmin,qmax) (half-to-even) in "
            "forward and backward; xq = nearbyint(fma(x, inv_scale, zp)); in-range dscale = "
            "g * fma(clamp(xq)-zp, scale, -x) * inv_scale * grad_factor.",
            "grad_scale / grad_zero_point are float32 sums of per-element terms; compare with a "
            "small relative tolerance (summation order).",
        ],
        "per_tensor": pt,
        "per_channel": pc,
        "learnable_per_tensor": lpt,
        "learnable_per_channel": lpc,
    })


def main():
    print("numpy", np.__version__, "torch", torch.__version__, "python", sys.version.split()[0])
    print("quantized engines:", torch.backends.quantized.supported_engines)
    gen_quantize_per_tensor()
    gen_quantize_per_channel()
    gen_observers()
    used = gen_choose_qparams_dynamic()
    print("dynamic Linear engines used:", used)
    gen_fake_quant()


if __name__ == "__main__":
    main()
