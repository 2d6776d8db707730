#!/usr/bin/python3
"""Generate ONNX Runtime calibration and qparams reference vectors (JSON).

ONNX Runtime itself is not installable here, so this script PORTS the numerics of
ORT's Python quantization tools and runs them with numpy -- numpy is exactly the
arithmetic ORT uses (ORT's calibrators and compute_scale_zp are plain numpy code):

  onnxruntime/python/tools/quantization/calibrate.py
      HistogramCollector.collect_absolute_value  (percentile, symmetric=True)
      HistogramCollector.collect_value / merge_histogram  (percentile asymmetric, entropy)
      HistogramCollector.compute_percentile
      HistogramCollector.get_entropy_threshold
  onnxruntime/python/tools/quantization/quant_utils.py
      smooth_distribution, compute_scale_zp, get_qmin_qmax_for_qType tables

The ported functions below keep ORT's statements (and therefore numpy's dtype
promotions: float32 histograms edges, float64 thresholds after a merge, int64 q
bins, ...) unchanged; only the per-tensor dict plumbing is removed.  The KL
divergence is scipy.stats.entropy(p, q) in ORT; it is computed here with the
same formula scipy 1.10 uses (pk/sum(pk), qk/sum(qk) in float32, rel_entr in
double rounded to float32, np.sum in float32) and, when scipy is importable,
checked against scipy.stats.entropy bit for bit.

Writes next to this script (float32 values as uint32 bit patterns in keys ending
"_bits", float64 as uint64 in "_bits64"; one case per line):

  ort_calib.json "cases": collect every batch in order, then compute the range
    name, method ("percentile" | "entropy"), symmetric (percentile: histogram of |x|),
    num_bins, num_quantized_bins (entropy), percentile_bits64,
    batches: [{shape, x_bits}],
    hist: [int64 counts], hist_edges_bits: [uint32] (len(hist) + 1),
    min_bits, max_bits: min / max of the raw values of every batch,
    range_bits: [lo, hi] the calibrated range,
    threshold_bits64, threshold_is_float32: collect_value's running threshold and
      whether numpy holds it as float32 (until the first growth) or float64,
    kl_bits, kl_argmin (entropy): KL divergence of every candidate, argmin index.
  ort_qparams.json "cases": compute_scale_zp(rmin, rmax, qmin, qmax, symmetric, mrr)
    name, qtype, reduce_range, symmetric, rmin_bits, rmax_bits, qmin, qmax
    (get_qmin_qmax_for_qType), [min_real_range_bits], scale_bits, zero_point.

Run from the repository root:  /usr/bin/python3 tests/data/quant/ort_calib_gen.py
"""
import copy
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import scipy
    import scipy.stats
    HAVE_SCIPY = True
except ImportError:  # pragma: no cover
    HAVE_SCIPY = False
GENERATOR = {"numpy": np.__version__,
             "scipy": scipy.__version__ if HAVE_SCIPY else None,
             "onnxruntime": "not installed: calibrate.py / quant_utils.py numerics ported to numpy"}


def bits(a):
    return [int(v) for v in np.asarray(a, np.float32).ravel().view(np.uint32)]


def bit1(v):
    return int(np.float32(v).view(np.uint32))


def bits64(v):
    return int(np.float64(v).view(np.uint64))


def exact_f32(v):
    """v must be a float32 value (possibly held in a float64); returns its bits."""
    f = np.float32(v)
    assert float(f) == float(v), (v, f)
    return bit1(f)


# ----------------------------------------------------------------------------
# quant_utils.py (ported)
# ----------------------------------------------------------------------------
def smooth_distribution(p, eps=0.0001):
    is_zeros = (p == 0).astype(np.float32)
    is_nonzeros = (p != 0).astype(np.float32)
    n_zeros = is_zeros.sum()
    n_nonzeros = p.size - n_zeros

    if not n_nonzeros:
        return None
    eps1 = eps * float(n_zeros) / float(n_nonzeros)
    assert eps1 < 1.0, f"n_zeros={n_zeros}, n_nonzeros={n_nonzeros}, eps1={eps1}"

    hist = p.astype(np.float32)
    hist += eps * is_zeros + (-eps1) * is_nonzeros
    assert (hist <= 0).sum() == 0

    return hist


def entropy(pk, qk):
    """scipy.stats.entropy(pk, qk) (scipy 1.10) on float32 inputs."""
    pk = np.asarray(pk)
    pk = 1.0 * pk / np.sum(pk, axis=0, keepdims=True)
    qk = np.asarray(qk)
    qk = 1.0 * qk / np.sum(qk, axis=0, keepdims=True)
    with np.errstate(divide="ignore"):
        vec = np.array([np.float32(float(x) * np.log(float(x) / float(y))) if x > 0 and y > 0
                        else (np.float32(0) if x == 0 and y >= 0 else np.float32(np.inf))
                        for x, y in zip(pk, qk)], dtype=np.float32)
    return np.sum(vec, axis=0)


ONNX_INT_TYPE_RANGE = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535),
                       "int16": (-32768, 32767), "uint4": (0, 15), "int4": (-8, 7)}
ONNX_INT_TYPE_SYMMETRIC_RANGE = {"uint8": (0, 254), "int8": (-127, 127), "uint16": (0, 65534),
                                 "int16": (-32767, 32767)}
ONNX_INT_TYPE_REDUCED_RANGE = {"uint8": (0, 127), "int8": (-64, 64), "uint16": (0, 32767),
                               "int16": (-16384, 16384), "uint4": (0, 7), "int4": (-4, 3)}
NP_DTYPE = {"uint8": np.uint8, "int8": np.int8, "uint16": np.uint16, "int16": np.int16,
            "uint4": np.uint8, "int4": np.int8}  # int4/uint4: ORT's base dtypes


def get_qmin_qmax_for_qType(qtype, reduce_range=False, symmetric=False):  # noqa: N802
    if reduce_range:
        qrange = ONNX_INT_TYPE_REDUCED_RANGE.get(qtype)
    elif symmetric and qtype in ONNX_INT_TYPE_SYMMETRIC_RANGE:
        qrange = ONNX_INT_TYPE_SYMMETRIC_RANGE[qtype]
    else:
        qrange = ONNX_INT_TYPE_RANGE.get(qtype)
    dt = NP_DTYPE[qtype]
    return np.array(qrange[0], dtype=dt), np.array(qrange[1], dtype=dt)


def compute_scale_zp(rmin, rmax, qmin, qmax, symmetric=False, min_real_range=None):
    if qmin > 0 or qmax < 0:
        raise ValueError("qmin <= 0 <= qmax required")
    rmin = np.minimum(rmin, np.array(0, dtype=rmin.dtype))
    rmax = np.maximum(rmax, np.array(0, dtype=rmax.dtype))
    if min_real_range is not None:
        rmax = max(rmax, rmin + np.asarray(min_real_range, dtype=rmin.dtype))
    if symmetric:
        absmax = np.maximum(np.abs(rmin), np.abs(rmax))
        rmin = -absmax
        rmax = +absmax
    assert qmin <= qmax
    dr = np.array(rmax - rmin, dtype=np.float64)
    dq = np.array(qmax, dtype=np.float64) - np.array(qmin, dtype=np.float64)
    scale = np.array(dr / dq)
    assert scale >= 0
    if scale < np.finfo(rmax.dtype).tiny:
        scale = np.array(1.0, dtype=rmax.dtype)
        zero_point = np.array(0, dtype=qmin.dtype)
    else:
        if symmetric:
            zero_point = np.array(np.round((qmin + qmax) / np.array(2.0, dtype=np.float64)),
                                  dtype=qmin.dtype)
        else:
            zero_point = np.array(np.round(qmin - rmin / scale), dtype=qmin.dtype)
        scale = scale.astype(rmax.dtype)
    return [zero_point, scale]


# ----------------------------------------------------------------------------
# calibrate.py HistogramCollector (ported, one tensor)
# ----------------------------------------------------------------------------
class HistogramCollector:
    def __init__(self, method, symmetric, num_bins, num_quantized_bins, percentile):
        self.histogram = None
        self.method = method
        self.symmetric = symmetric
        self.num_bins = num_bins
        self.num_quantized_bins = num_quantized_bins
        self.percentile = percentile
        self.kl = None

    def collect(self, data_arr):
        if self.method == "entropy":
            return self.collect_value(data_arr)
        if self.symmetric:
            return self.collect_absolute_value(data_arr)
        return self.collect_value(data_arr)

    def collect_absolute_value(self, data_arr_np):
        data_arr_np = data_arr_np.flatten()
        if data_arr_np.size > 0:
            min_value = np.min(data_arr_np)
            max_value = np.max(data_arr_np)
        else:
            min_value = 0
            max_value = 0
        data_arr_np = np.absolute(data_arr_np)
        if self.histogram is None:
            hist, hist_edges = np.histogram(data_arr_np, bins=self.num_bins)
            hist_edges = hist_edges.astype(data_arr_np.dtype)
            assert data_arr_np.dtype != np.float64
            self.histogram = (hist, hist_edges, min_value, max_value)
        else:
            old_histogram = self.histogram
            old_min = old_histogram[2]
            old_max = old_histogram[3]
            old_hist = old_histogram[0]
            old_hist_edges = old_histogram[1]
            temp_amax = np.max(data_arr_np)
            if temp_amax > old_hist_edges[-1]:
                width = old_hist_edges[1] - old_hist_edges[0]
                new_bin_edges = np.arange(old_hist_edges[-1] + width, temp_amax + width, width)
                old_hist_edges = np.hstack((old_hist_edges, new_bin_edges))
            hist, hist_edges = np.histogram(data_arr_np, bins=old_hist_edges)
            hist_edges = hist_edges.astype(data_arr_np.dtype)
            hist[: len(old_hist)] += old_hist
            assert data_arr_np.dtype != np.float64
            self.histogram = (hist, hist_edges, min(old_min, min_value), max(old_max, max_value))

    def collect_value(self, data_arr):
        data_arr = np.asarray(data_arr).flatten()
        if data_arr.size > 0:
            min_value = np.min(data_arr)
            max_value = np.max(data_arr)
        else:
            min_value = np.array(0, dtype=data_arr.dtype)
            max_value = np.array(0, dtype=data_arr.dtype)
        threshold = max(abs(min_value), abs(max_value))
        if self.histogram is not None:
            self.histogram = self.merge_histogram(self.histogram, data_arr, min_value, max_value,
                                                  threshold)
        else:
            hist, hist_edges = np.histogram(data_arr, self.num_bins, range=(-threshold, threshold))
            self.histogram = (hist, hist_edges, min_value, max_value, threshold)

    def merge_histogram(self, old_histogram, data_arr, new_min, new_max, new_threshold):
        (old_hist, old_hist_edges, old_min, old_max, old_threshold) = old_histogram
        if new_threshold <= old_threshold:
            new_hist, _ = np.histogram(data_arr, len(old_hist), range=(-old_threshold, old_threshold))
            return (new_hist + old_hist, old_hist_edges, min(old_min, new_min), max(old_max, new_max),
                    old_threshold)
        if old_threshold == 0:
            hist, hist_edges = np.histogram(data_arr, len(old_hist), range=(-new_threshold, new_threshold))
            hist += old_hist
        else:
            old_num_bins = len(old_hist)
            old_stride = 2 * old_threshold / old_num_bins
            half_increased_bins = int((new_threshold - old_threshold) // old_stride + 1)
            new_num_bins = old_num_bins + 2 * half_increased_bins
            new_threshold = half_increased_bins * old_stride + old_threshold
            hist, hist_edges = np.histogram(data_arr, new_num_bins, range=(-new_threshold, new_threshold))
            hist[half_increased_bins: new_num_bins - half_increased_bins] += old_hist
        return (hist, hist_edges, min(old_min, new_min), max(old_max, new_max), new_threshold)

    def compute_percentile(self):
        percentile = self.percentile
        histogram = self.histogram
        hist = histogram[0]
        hist_edges = histogram[1]
        total = hist.sum()
        cdf = np.cumsum(hist / total)
        if self.symmetric:
            idx_right = np.searchsorted(cdf, percentile / 100.0)
            th = (-np.array(hist_edges[idx_right], dtype=hist_edges.dtype),
                  np.array(hist_edges[idx_right], dtype=hist_edges.dtype))
        else:
            percent_to_cut_one_side = (100.0 - percentile) / 200.0
            idx_right = np.searchsorted(cdf, 1.0 - percent_to_cut_one_side)
            idx_left = np.searchsorted(cdf, percent_to_cut_one_side)
            th = (np.array(hist_edges[idx_left], dtype=hist_edges.dtype),
                  np.array(hist_edges[idx_right], dtype=hist_edges.dtype))
        min_value = histogram[2]
        max_value = histogram[3]
        if th[0] < min_value:
            th = (min_value, th[1])
        if th[1] > max_value:
            th = (th[0], max_value)
        return th

    def get_entropy_threshold(self, histogram, num_quantized_bins):
        hist = histogram[0]
        hist_edges = histogram[1]
        num_bins = hist.size
        zero_bin_index = num_bins // 2
        num_half_quantized_bin = num_quantized_bins // 2

        kl_divergence = np.zeros(zero_bin_index - num_half_quantized_bin + 1)
        thresholds = [(0, 0) for i in range(kl_divergence.size)]

        for i in range(num_half_quantized_bin, zero_bin_index + 1, 1):
            start_index = zero_bin_index - i
            end_index = zero_bin_index + i + 1 if (zero_bin_index + i + 1) <= num_bins else num_bins

            thresholds[i - num_half_quantized_bin] = (
                float(hist_edges[start_index]),
                float(hist_edges[end_index]),
            )

            sliced_distribution = copy.deepcopy(hist[start_index:end_index])

            p = sliced_distribution.copy()
            left_outliers_count = sum(hist[:start_index])
            right_outliers_count = sum(hist[end_index:])
            p[0] += left_outliers_count
            p[-1] += right_outliers_count

            nonzeros = (p != 0).astype(np.int64)

            quantized_bins = np.zeros(num_quantized_bins, dtype=np.int64)
            num_merged_bins = sliced_distribution.size // num_quantized_bins

            for index in range(num_quantized_bins):
                start = index * num_merged_bins
                end = start + num_merged_bins
                quantized_bins[index] = sum(sliced_distribution[start:end])
            quantized_bins[-1] += sum(sliced_distribution[num_quantized_bins * num_merged_bins:])

            q = np.zeros(p.size, dtype=np.int64)
            for index in range(num_quantized_bins):
                start = index * num_merged_bins
                end = start + num_merged_bins

                norm = sum(nonzeros[start:end])
                if norm != 0:
                    q[start:end] = float(quantized_bins[index]) / float(norm)

            p = smooth_distribution(p)
            q = smooth_distribution(q)

            if isinstance(q, np.ndarray):
                kl = entropy(p, q)
                if HAVE_SCIPY:
                    ref = scipy.stats.entropy(p, q)
                    assert np.float32(ref).view(np.uint32) == np.float32(kl).view(np.uint32)
                kl_divergence[i - num_half_quantized_bin] = kl
            else:
                kl_divergence[i - num_half_quantized_bin] = float("inf")

        self.kl = kl_divergence
        min_kl_divergence_idx = np.argmin(kl_divergence)
        optimal_threshold = thresholds[min_kl_divergence_idx]
        min_value = histogram[2]
        max_value = histogram[3]
        if optimal_threshold[0] < min_value:
            optimal_threshold = (min_value, optimal_threshold[1])
        if optimal_threshold[1] > max_value:
            optimal_threshold = (optimal_threshold[0], max_value)
        self.argmin = int(min_kl_divergence_idx)
        return optimal_threshold

    def compute(self):
        if self.method == "entropy":
            return self.get_entropy_threshold(self.histogram, self.num_quantized_bins)
        return self.compute_percentile()


# ----------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------
def calib_cases():
    rng = np.random.default_rng(2024)
    cases = []

    def g(n, s=1.0, m=0.0):
        return rng.normal(m, s, n).astype(np.float32)

    def run(name, method, symmetric, batches, num_bins, num_quantized_bins=128, percentile=99.999):
        col = HistogramCollector(method, symmetric, num_bins, num_quantized_bins, percentile)
        for b in batches:
            col.collect(np.asarray(b, np.float32))
        lo, hi = col.compute()
        h = col.histogram
        case = {
            "name": name,
            "method": method,
            "symmetric": bool(symmetric),
            "num_bins": num_bins,
            "num_quantized_bins": num_quantized_bins,
            "percentile_bits64": bits64(percentile),
            "batches": [{"shape": list(np.shape(b)), "x_bits": bits(b)} for b in batches],
            "hist": [int(v) for v in h[0]],
            "hist_edges_bits": bits(h[1]),
            "min_bits": exact_f32(h[2]),
            "max_bits": exact_f32(h[3]),
            "range_bits": [exact_f32(lo), exact_f32(hi)],
        }
        assert h[1].dtype == np.float32
        if len(h) == 5:  # collect_value: the running threshold (float32 or float64 after growth)
            case["threshold_bits64"] = bits64(float(h[4]))
            case["threshold_is_float32"] = bool(np.asarray(h[4]).dtype == np.float32)
        if method == "entropy":
            case["kl_bits"] = bits(col.kl.astype(np.float32))
            assert (col.kl.astype(np.float32).astype(np.float64) == col.kl).all() or \
                np.isinf(col.kl).any()
            case["kl_argmin"] = col.argmin
        cases.append(case)

    # percentile, symmetric (ORT's default for Percentile): histogram of |x|
    for sym in (True, False):
        tag = "sym" if sym else "asym"
        run("pct_%s_gauss_single" % tag, "percentile", sym, [g(1200)], 2048)
        run("pct_%s_gauss_p99" % tag, "percentile", sym, [g(1200, 2.0, 0.5)], 2048, percentile=99.0)
        run("pct_%s_outliers_p99.9" % tag, "percentile", sym,
            [np.concatenate([g(1000), np.float32([40.0, -25.0, 33.0])])], 2048, percentile=99.9)
        run("pct_%s_grow_multi" % tag, "percentile", sym, [g(500), g(500, 3.0), g(500, 0.5)], 512)
        run("pct_%s_grow_multi_p98_64bins" % tag, "percentile", sym,
            [g(300, 1.0, 1.0), g(300, 4.0, -1.0), g(300, 9.0)], 64, percentile=98.0)
        run("pct_%s_positive_only" % tag, "percentile", sym,
            [rng.exponential(1.5, 1000).astype(np.float32)], 2048, percentile=99.5)
        run("pct_%s_constant" % tag, "percentile", sym, [np.full(50, 0.75, np.float32)], 2048)
        run("pct_%s_small_then_big" % tag, "percentile", sym,
            [g(200, 0.2), g(200, 2.0), g(10, 0.01)], 64, percentile=99.0)
    run("pct_sym_p100", "percentile", True, [g(1000)], 2048, percentile=100.0)
    run("pct_asym_p0", "percentile", False, [g(1000)], 128, percentile=0.0)

    # entropy (collect_value): ORT defaults num_bins=128, num_quantized_bins=128
    run("ent_default_gauss_single", "entropy", False, [g(1000)], 128, 128)
    run("ent_default_grow_multi", "entropy", False, [g(500), g(500, 2.5, 0.5), g(500, 0.5)], 128, 128)
    run("ent_2048_128_outliers", "entropy", False,
        [np.concatenate([g(1500), np.float32([30.0, -18.0])])], 2048, 128)
    run("ent_512_128_positive", "entropy", False, [rng.exponential(1.0, 1200).astype(np.float32)],
        512, 128)
    run("ent_256_64_grow_multi", "entropy", False, [g(400), g(400, 4.0), g(400, 1.5, 1.0)], 256, 64)
    run("ent_256_128_shrinking_batches", "entropy", False, [g(400, 4.0), g(400), g(100, 0.1)], 256, 128)
    run("ent_zero_first", "entropy", False, [np.zeros(40, np.float32), g(500)], 128, 128)
    run("ent_zero_first_then_grow", "entropy", False,
        [np.zeros(40, np.float32), g(500), g(500, 3.0)], 256, 64)
    run("ent_200_63_odd", "entropy", False, [g(800, 1.0, 0.3)], 200, 63)
    run("ent_sparse_spikes", "entropy", False,
        [np.float32([0.5] * 300 + [-1.25] * 200 + [3.0] * 5 + [0.0] * 100)], 256, 32)
    return cases


def qparams_cases():
    rng = np.random.default_rng(2025)
    cases = []

    def add(name, rmin, rmax, qtype, reduce_range, symmetric, mrr=None):
        rmin = np.array(rmin, dtype=np.float32)
        rmax = np.array(rmax, dtype=np.float32)
        qmin, qmax = get_qmin_qmax_for_qType(qtype, reduce_range, symmetric)
        zp, s = compute_scale_zp(rmin, rmax, qmin, qmax, symmetric, mrr)
        assert s.dtype == np.float32
        c = {"name": name, "qtype": qtype, "reduce_range": reduce_range, "symmetric": symmetric,
             "rmin_bits": bit1(rmin), "rmax_bits": bit1(rmax),
             "qmin": int(qmin), "qmax": int(qmax),
             "scale_bits": bit1(s), "zero_point": int(zp)}
        if mrr is not None:
            c["min_real_range_bits"] = bit1(mrr)
        cases.append(c)

    ranges = [("gauss", -2.3456, 3.1415), ("pos", 0.25, 7.5), ("neg", -9.75, -0.5),
              ("zero", 0.0, 0.0), ("tiny", -1e-39, 2e-39), ("huge", -3e37, 1e38),
              ("zp_tie", -0.5, 254.5), ("zp_tie2", -1.5, 253.5), ("unit", -1.0, 1.0)]
    for _ in range(6):
        a, b = sorted(rng.normal(0, 10 ** rng.uniform(-3, 3), 2))
        ranges.append(("rand_%g" % a, a, b))
    for qtype in ("int8", "uint8", "int16", "uint16", "int4", "uint4"):
        for rr in (False, True):
            for sym in (False, True):
                for nm, a, b in ranges:
                    add("%s_%s_rr%d_sym%d" % (nm, qtype, rr, sym), a, b, qtype, rr, sym)
    add("mrr_small_range_uint8", -0.001, 0.002, "uint8", False, False, np.float32(0.5))
    add("mrr_large_range_int8", -3.0, 4.0, "int8", False, False, np.float32(0.5))
    add("mrr_zero_range_sym_int8", 0.0, 0.0, "int8", False, True, np.float32(1e-4))
    return cases


def main():
    print("numpy", np.__version__, "scipy", GENERATOR["scipy"])
    with open(os.path.join(HERE, "ort_calib.json"), "w") as f:
        cs = calib_cases()
        f.write(json.dumps({
            "generator": GENERATOR,
            "description": "ONNX Runtime HistogramCollector (percentile / entropy) ported to numpy: "
                           "collect every batch in order, then compute the (lo, hi) range. See README.md.",
            "cases": "@CASES@"}, indent=1).replace('"@CASES@"', "[\n" + ",\n".join(
                json.dumps(c, separators=(",", ":")) for c in cs) + "\n]"))
        f.write("\n")
    with open(os.path.join(HERE, "ort_qparams.json"), "w") as f:
        cs = qparams_cases()
        f.write(json.dumps({
            "generator": GENERATOR,
            "description": "ONNX Runtime quant_utils.compute_scale_zp(rmin, rmax, qmin, qmax, symmetric, "
                           "min_real_range) with get_qmin_qmax_for_qType ranges, float32 rmin/rmax.",
            "cases": "@CASES@"}, indent=1).replace('"@CASES@"', "[\n" + ",\n".join(
                json.dumps(c, separators=(",", ":")) for c in cs) + "\n]"))
        f.write("\n")


if __name__ == "__main__":
    main()
