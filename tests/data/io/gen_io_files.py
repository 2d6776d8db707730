#!/usr/bin/python3
"""Writes the .npy / .npz / .safetensors test inputs for tests/io/{npy,safetensors}_test.cpp
and the fuzz seed corpora, with numpy 1.24 and torch 1.13 (Debian's python3-numpy and
python3-torch):

    cd tests/data/io && /usr/bin/python3 gen_io_files.py

.npy and .npz files are written by numpy itself (np.save, np.lib.format.write_array with an
explicit version, np.savez, np.savez_compressed). The `safetensors` Python package is not
installed here, so the .safetensors files are written by `write_safetensors` below, which
follows the format's specification and the reference implementation's serializer (tensors
sorted by dtype, largest first, then by name; compact JSON; header padded with spaces to a
multiple of 8). The tensor bytes and the expected float values both come from torch tensors
(bf16 included: torch rounds the float32 values to bfloat16, the test checks our reader
returns exactly torch's `.float()` of them).

manifest.json lists, per file and array: dtype, shape, fortran order, every value converted to
float32 in C order as uint32 bits (key `values_bits`) and their float64 sum (`sum_bits64`,
numpy's pairwise sum of the float32 values as float64).
"""
import io
import json
import os
import struct
import zipfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "fuzz", "corpus")
manifest = {}


def f32_bits(values):
    return [int(b) for b in np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).ravel()]


def record(file, name, arr_c_values, dtype, shape, fortran):
    v = np.asarray(arr_c_values).astype(np.float32)
    manifest.setdefault(file, {})[name] = {
        "dtype": dtype,
        "shape": list(shape),
        "fortran_order": bool(fortran),
        "values_bits": f32_bits(v),
        "sum_bits64": int(np.array([v.astype(np.float64).sum()]).view(np.uint64)[0]),
    }


def save_npy(file, arr, version=None, name="x"):
    path = os.path.join(HERE, file)
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=version)
    record(file, name, np.ascontiguousarray(arr), arr.dtype.str, arr.shape, np.isfortran(arr) and arr.ndim > 1)


rng = np.random.default_rng(20261129)
base = rng.standard_normal(12).astype(np.float32) * 3

# One .npy per dtype numpy can write and qprune reads, version 1.0, C order.
dtypes = {
    "f4": np.float32, "f8": np.float64, "f2": np.float16,
    "i1": np.int8, "u1": np.uint8, "i2": np.int16, "u2": np.uint16,
    "i4": np.int32, "u4": np.uint32, "i8": np.int64, "u8": np.uint64, "b1": np.bool_,
}
for code, t in dtypes.items():
    if t == np.bool_:
        a = (base > 0).reshape(3, 4)
    elif np.issubdtype(t, np.unsignedinteger):
        a = (np.abs(base) * 20).astype(t).reshape(3, 4)
        if code == "u8":
            a[0, 0] = np.uint64(2**64 - 1)  # not a float: checks the rounding to float32
        if code == "u4":
            a[0, 0] = np.uint32(2**32 - 1)
    elif np.issubdtype(t, np.integer):
        a = (base * 20).astype(t).reshape(3, 4)
        if code == "i8":
            a[0, 1] = np.int64(-(2**63))
    else:
        a = base.astype(t).reshape(3, 4)
    save_npy(f"np_{code}.npy", a)

# Fortran order (2-D and 3-D), big-endian, versions 2.0 and 3.0, 0-d, empty, 1-D.
save_npy("np_f4_fortran.npy", np.asfortranarray(base.reshape(3, 4)))
save_npy("np_f8_fortran_3d.npy", np.asfortranarray(np.arange(24, dtype=np.float64).reshape(2, 3, 4) * 0.5))
save_npy("np_f4_big.npy", base.reshape(3, 4).astype(">f4"))
save_npy("np_i2_big.npy", (base * 100).astype(">i2").reshape(4, 3))
save_npy("np_f4_v2.npy", base.reshape(2, 6), version=(2, 0))
save_npy("np_f4_v3.npy", base.reshape(6, 2), version=(3, 0))
save_npy("np_f8_scalar.npy", np.array(2.5, dtype=np.float64))
save_npy("np_f4_empty.npy", np.zeros((0, 3), dtype=np.float32))
save_npy("np_i4_1d.npy", np.arange(5, dtype=np.int32) - 2)

# .npz: stored and deflated, as np.savez / np.savez_compressed write them.
w = (base.reshape(3, 4) * 0.25).astype(np.float32)
b = np.arange(4, dtype=np.float16)
m = np.asfortranarray(np.arange(6, dtype=np.int8).reshape(2, 3))
for file, fn in (("np_savez.npz", np.savez), ("np_savez_compressed.npz", np.savez_compressed)):
    fn(os.path.join(HERE, file), weight=w, bias=b, mask=m)
    record(file, "weight", w, "<f4", w.shape, False)
    record(file, "bias", b, "<f2", b.shape, False)
    record(file, "mask", np.ascontiguousarray(m), "|i1", m.shape, True)

# zip64 central directory + zip64 end record, written by Python's zipfile with its limits
# lowered (what numpy's savez writes for archives over 4 GiB or 65535 members).
saved = (zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT)
zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 64, 1
try:
    np.savez(os.path.join(HERE, "np_savez_zip64.npz"), weight=w, bias=b)
finally:
    zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = saved
record("np_savez_zip64.npz", "weight", w, "<f4", w.shape, False)
record("np_savez_zip64.npz", "bias", b, "<f2", b.shape, False)

# The corruption-sweep inputs: small files.
np.save(os.path.join(HERE, "sweep.npy"), np.arange(6, dtype=np.float32).reshape(2, 3) - 1.5)
np.savez(os.path.join(HERE, "sweep.npz"), a=np.arange(3, dtype=np.int16), b=np.ones((2, 2), np.float32))
np.savez_compressed(os.path.join(HERE, "sweep_deflated.npz"), a=np.arange(3, dtype=np.int16),
                    b=np.ones((2, 2), np.float32))

# ---- safetensors ----
ST_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32",
            "F32", "F64", "I64", "U64"]
TORCH_ST = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16",
            torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32", torch.float32: "F32",
            torch.float64: "F64", torch.int64: "I64"}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> (dtype string, shape list, raw little-endian bytes)."""
    items = sorted(tensors.items(), key=lambda kv: kv[0])
    items.sort(key=lambda kv: ST_ORDER.index(kv[1][0]), reverse=True)  # stable: names stay sorted
    parts = []
    if metadata is not None:
        parts.append('"__metadata__":' + json.dumps(metadata, separators=(",", ":"), ensure_ascii=False))
    offset, data = 0, b""
    for name, (dt, shape, raw) in items:
        parts.append(json.dumps(name, ensure_ascii=False) + ":" + json.dumps(
            {"dtype": dt, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]},
            separators=(",", ":")))
        offset += len(raw)
        data += raw
    header = ("{" + ",".join(parts) + "}").encode("utf-8")
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + data)


torch.manual_seed(1129)
x = torch.randn(3, 5) * 4
st = {
    "w.f32": x,
    "w.f16": x.to(torch.float16),
    "w.bf16": x.to(torch.bfloat16),
    "w.f64": x.to(torch.float64)[:2],
    "q.i8": (x * 10).clamp(-128, 127).to(torch.int8),
    "q.u8": (x.abs() * 20).clamp(0, 255).to(torch.uint8),
    "q.i16": (x * 1000).to(torch.int16),
    "q.i32": (x * 1e6).to(torch.int32),
    "q.i64": (x * 1e12).to(torch.int64),
    "mask": x > 0,
    "scalar": torch.tensor(0.125),
    "empty": torch.zeros(0, 4),
}
file = "torch.safetensors"
write_safetensors(os.path.join(HERE, file),
                  {k: (TORCH_ST[t.dtype], list(t.shape), tensor_bytes(t)) for k, t in st.items()},
                  metadata={"format": "pt", "source": "gen_io_files.py"})
for k, t in st.items():
    record(file, k, t.float().numpy(), TORCH_ST[t.dtype], t.shape, False)
# Raw-only dtypes: fp8 and the unsigned types torch 1.13 lacks (bytes from numpy).
raw = {
    "f8a": ("F8_E4M3", [4], bytes([0x00, 0x38, 0xb8, 0x7e])),
    "f8b": ("F8_E5M2", [2, 2], bytes([0x3c, 0x40, 0xbc, 0x7b])),
    "u16": ("U16", [3], np.array([0, 1, 65535], "<u2").tobytes()),
    "u32": ("U32", [2], np.array([7, 4294967295], "<u4").tobytes()),
    "u64": ("U64", [2], np.array([3, 2**64 - 1], "<u8").tobytes()),
}
write_safetensors(os.path.join(HERE, "raw_dtypes.safetensors"), raw)
record("raw_dtypes.safetensors", "u16", [0, 1, 65535], "U16", [3], False)
record("raw_dtypes.safetensors", "u32", [7, 4294967295], "U32", [2], False)
record("raw_dtypes.safetensors", "u64", np.array([3, 2**64 - 1], np.uint64), "U64", [2], False)

write_safetensors(os.path.join(HERE, "sweep.safetensors"), {
    "a": ("F32", [2, 2], np.array([1, -2, 3.5, 0], "<f4").tobytes()),
    "b": ("I8", [3], bytes([1, 255, 7])),
    "c": ("BF16", [2], torch.tensor([1.5, -3.0]).to(torch.bfloat16).view(torch.int16).numpy().tobytes()),
}, metadata={"k": "v"})

with open(os.path.join(HERE, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
    f.write("\n")

# Fuzz seed corpora: small valid files of each kind.
for sub, files in (("npy", ["np_f4.npy", "np_f4_fortran.npy", "np_i2_big.npy", "np_f4_v3.npy", "np_f8_scalar.npy"]),
                   ("npz", ["np_savez.npz", "np_savez_compressed.npz", "np_savez_zip64.npz"]),
                   ("safetensors", ["sweep.safetensors", "raw_dtypes.safetensors"])):
    os.makedirs(os.path.join(CORPUS, sub), exist_ok=True)
    for fn in files:
        with open(os.path.join(HERE, fn), "rb") as src, open(os.path.join(CORPUS, sub, fn), "wb") as dst:
            dst.write(src.read())
