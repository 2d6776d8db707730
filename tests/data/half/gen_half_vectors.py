#!/usr/bin/python3
"""Generate exact float16 / bfloat16 conversion test vectors.

Frameworks: numpy 1.24.2 (float16 <-> float32 casts) and torch 1.13
(Debian python3-torch 1.13.1+dfsg, torch.__version__ == "1.13.0a0";
float32 -> bfloat16 conversion).  The versions actually used are printed
and stored in manifest.json.

Re-run from the repository root:

    /usr/bin/python3 tests/data/half/gen_half_vectors.py

Files are written next to this script (raw little-endian arrays):

  half_to_float.u32          65536 x uint32: float32 bits of float16 pattern h=0..65535
  float_to_half.in.u32       N x uint32: float32 input bit patterns
  float_to_half.out.u16      N x uint16: numpy  x.astype(np.float16) bits
  float_to_bf16.in.u32       N x uint32: same input list (byte-identical copy)
  float_to_bf16.out.u16      N x uint16: torch contiguous .to(torch.bfloat16) bits
                             (vectorised AVX2 kernel: every NaN -> 0xFFFF)
  float_to_bf16_scalar.out.u16
                             N x uint16: torch strided (non-vectorised, c10::BFloat16
                             scalar) conversion bits (every NaN -> 0x7FC0); identical
                             to float_to_bf16.out.u16 for every non-NaN input
  manifest.json              generator versions, counts, sha256 of each file

The script is deterministic (numpy Generator seeded with 20240601).
"""
import hashlib
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20240601


def f32_from_bits(b):
    return np.array(b, dtype=np.uint32).view(np.float32)


def bits_from_f32(x):
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def half_bits_to_f32_bits(h):
    return np.array(h, dtype=np.uint16).view(np.float16).astype(np.float32).view(np.uint32)


def nextup32(b):
    """float32 bit pattern one ulp further from zero (same sign); b finite."""
    return np.uint32(b + 1)


def nextdown32(b):
    """float32 bit pattern one ulp closer to zero; b != 0."""
    return np.uint32(b - 1)


def build_inputs():
    rng = np.random.default_rng(SEED)
    out = []

    def add(b):
        out.append(int(b) & 0xFFFFFFFF)

    def add_both_signs(b):
        add(b)
        add(int(b) ^ 0x80000000)

    # --- signed zeros
    add(0x00000000)
    add(0x80000000)

    # --- exact halves: all subnormal halves, and normal halves with chosen mantissas
    mants = [0, 1, 2, 511, 512, 1022, 1023]
    for m in range(1, 1024):
        add_both_signs(half_bits_to_f32_bits(m))
    for e in range(1, 31):
        for m in mants:
            add_both_signs(half_bits_to_f32_bits((e << 10) | m))

    # --- midpoints between consecutive halves (ties) and +-1 float32 ulp
    # half pattern h and h+1 (positive, finite); midpoint is exact in float32.
    def add_mid(h):
        a = np.float64(np.array(h, np.uint16).view(np.float16))
        if h == 0x7BFF:
            b = 65536.0  # virtual next value beyond 65504 -> tie at 65520
        else:
            b = np.float64(np.array(h + 1, np.uint16).view(np.float16))
        mid = np.float32((a + b) / 2.0)
        assert np.float64(mid) == (a + b) / 2.0
        mb = int(bits_from_f32(mid))
        for v in (nextdown32(mb), mb, nextup32(mb)):
            add_both_signs(v)

    for m in mants:  # subnormal range (exponent field 0)
        add_mid(m)
    for e in range(1, 31):
        for m in mants:
            add_mid((e << 10) | m)
    # a denser sweep over all mantissas of a few exponents (even/odd ties)
    for e in (0, 1, 15, 30):
        for m in range(0, 1024, 37):
            add_mid((e << 10) | m)

    # --- specific edge values
    specials = [
        2.0 ** -24,            # smallest half subnormal
        2.0 ** -25,            # tie between 0 and 2^-24 -> 0 (even)
        2.0 ** -26,
        2.0 ** -25 * 1.5,      # 3*2^-26 -> rounds to 2^-24
        2.0 ** -14,            # smallest normal half
        2.0 ** -14 - 2.0 ** -25,  # tie between largest subnormal and smallest normal
        65504.0,
        65519.99609375,        # 65520 - 1 ulp(f32) -> 65504
        65520.0,               # tie -> inf
        65520.0 + 2.0 ** -8,   # 65520 + 1 ulp -> inf
        65536.0,
        1e5,
        1e10,
        1.0,
        0.1,
        1.0 / 3.0,
        2049.0,                # tie in half at exponent 11
        2051.0,
    ]
    for s in specials:
        add_both_signs(bits_from_f32(np.float32(s)))
    for b in (0x3300_0000 - 1, 0x3300_0000, 0x3300_0001,   # around 2^-25
              0x3380_0000 - 1, 0x3380_0000, 0x3380_0001,   # around 2^-24
              0x3880_0000 - 1, 0x3880_0000, 0x3880_0001,   # around 2^-14
              0x477F_E000 - 1, 0x477F_E000, 0x477F_E000 + 1,  # around 65504
              0x477F_F000 - 1, 0x477F_F000, 0x477F_F000 + 1,  # around 65520
              0x7F7F_FFFF,                                   # FLT_MAX
              0x7F7F_FFFE,
              0x0080_0000,                                   # FLT_MIN (normal)
              0x0000_0001,                                   # smallest f32 subnormal
              0x007F_FFFF,                                   # largest f32 subnormal
              0x0040_0000,
              0x7F80_0000,                                   # inf
              ):
        add_both_signs(b)

    # --- bfloat16 specific: ties (low 16 bits == 0x8000) with even/odd bit 16,
    #     and neighbours 0x7fff / 0x8001, across many exponents incl. subnormals.
    for exp in list(range(0, 255, 7)) + [0, 1, 126, 127, 128, 253, 254]:
        for hi_mant in (0x00, 0x01, 0x02, 0x03, 0x7E, 0x7F):  # 7 bf16 mantissa bits
            base = (exp << 23) | (hi_mant << 16)
            for low in (0x7FFF, 0x8000, 0x8001, 0x0000, 0xFFFF):
                if exp == 0 and hi_mant == 0 and low == 0:
                    continue
                add_both_signs(base | low)
    # near FLT_MAX: 0x7F7F8000 is a tie with odd bit16 -> rounds to inf
    for b in (0x7F7F_7FFF, 0x7F7F_8000, 0x7F7F_8001, 0x7F7E_8000, 0x7F7E_8001,
              0x7F7F_C000):
        add_both_signs(b)

    # --- NaNs (quiet and signalling, both signs, various payloads)
    nans = [0x7FC0_0000, 0x7FC0_0001, 0x7FC0_1234, 0x7FFF_FFFF, 0x7FE0_0000,
            0x7F80_0001, 0x7F80_2000, 0x7FA0_0000, 0x7FBF_FFFF, 0x7F80_0100,
            0x7F80_E000, 0x7F81_0000]
    for b in nans:
        add_both_signs(b)

    # --- random float32 bit patterns (uniform over all 2^32 patterns)
    for b in rng.integers(0, 2 ** 32, size=20000, dtype=np.uint64):
        add(int(b))

    # --- random floats, log-uniform magnitude in [1e-9, 1e6], random sign
    mag = np.exp(rng.uniform(np.log(1e-9), np.log(1e6), size=20000))
    sgn = rng.integers(0, 2, size=20000)
    vals = np.where(sgn == 1, -mag, mag).astype(np.float32)
    for b in bits_from_f32(vals):
        add(int(b))

    # de-duplicate preserving first occurrence
    seen = set()
    uniq = []
    for b in out:
        if b not in seen:
            seen.add(b)
            uniq.append(b)
    return np.array(uniq, dtype=np.uint32)


def cpu_capability():
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage" in line:
            return line.split(":", 1)[1].strip()
    return None


def write(name, arr):
    path = os.path.join(HERE, name)
    arr = np.ascontiguousarray(arr)
    assert arr.dtype.byteorder in ("=", "<", "|")
    data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    with open(path, "wb") as f:
        f.write(data)
    return {"file": name, "dtype": str(arr.dtype), "count": int(arr.size),
            "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def main():
    versions = {"numpy": np.__version__, "torch": torch.__version__}
    print("numpy", np.__version__, "torch", torch.__version__,
          "python", sys.version.split()[0])
    torch.manual_seed(0)

    files = []

    # a. half -> float (all patterns)
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    h2f = h.view(np.float16).astype(np.float32).view(np.uint32)
    files.append(write("half_to_float.u32", h2f))

    # b. float -> half (numpy)
    xin = build_inputs()
    x = xin.view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        f2h = x.astype(np.float16).view(np.uint16)
    files.append(write("float_to_half.in.u32", xin))
    files.append(write("float_to_half.out.u16", f2h))

    # c. float -> bfloat16 (torch); contiguous (vectorised) and strided (scalar)
    t = torch.from_numpy(x.copy())
    bf = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).copy()
    # strided: interleave with zeros and take every 2nd element -> non-contiguous
    big = torch.zeros(2 * x.size, dtype=torch.float32)
    big[::2] = t
    bf_s = big[::2].to(torch.bfloat16).contiguous().view(torch.int16).numpy() \
        .view(np.uint16).copy()
    isnan = np.isnan(x)
    assert np.array_equal(bf[~isnan], bf_s[~isnan]), "vectorised/scalar mismatch"
    files.append(write("float_to_bf16.in.u32", xin))
    files.append(write("float_to_bf16.out.u16", bf))
    files.append(write("float_to_bf16_scalar.out.u16", bf_s))

    nan_bf = sorted(set(int(v) for v in bf[isnan]))
    nan_bf_s = sorted(set(int(v) for v in bf_s[isnan]))
    # numpy keeps signalling NaNs unquieted (mantissa >> 13, forced non-zero)
    snan_in = xin[isnan & ((xin & 0x00400000) == 0)]
    with np.errstate(over="ignore", invalid="ignore"):
        snan_out = snan_in.view(np.float32).astype(np.float16).view(np.uint16)
    print("inputs:", xin.size, " NaN inputs:", int(isnan.sum()))
    print("torch bf16 NaN outputs (contiguous):", [hex(v) for v in nan_bf])
    print("torch bf16 NaN outputs (strided):  ", [hex(v) for v in nan_bf_s])
    print("numpy sNaN->half examples:",
          [(hex(int(a)), hex(int(b))) for a, b in zip(snan_in[:6], snan_out[:6])])

    manifest = {
        "generator": versions,
        "torch_cpu_capability": cpu_capability(),
        "seed": SEED,
        "files": files,
        "notes": [
            "float_to_half: numpy keeps signalling NaNs unquieted "
            "(half = sign | 0x7c00 | (f32 mantissa >> 13), made non-zero); compare NaN only "
            "as NaN with sign.",
            "float_to_bf16.out.u16: contiguous torch conversion (vectorised kernel); all "
            "NaN inputs map to %s regardless of sign/payload." % [hex(v) for v in nan_bf],
            "float_to_bf16_scalar.out.u16: strided torch conversion (c10::BFloat16 "
            "round_to_nearest_even); all NaN inputs map to %s." % [hex(v) for v in nan_bf_s],
            "The two bf16 outputs agree bit-exactly on every non-NaN input.",
        ],
    }
    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    for fi in files:
        print("%-30s %-7s %7d elements %8d bytes" % (fi["file"], fi["dtype"], fi["count"],
                                                     fi["bytes"]))


if __name__ == "__main__":
    main()
