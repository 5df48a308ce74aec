#!/usr/bin/env python3
"""Reference data for tests/unit/test_quant.c (fixed seed; deterministic).

For every type fm can dequantize, writes to tests/fixtures/quant/:
    <TYPE>.bin   raw blocks (random but valid; scale fields mostly small finite
                 values, plus edge values: +-0, subnormals, +-65504, +-inf, NaNs)
    <TYPE>.f32   the expected float32 output (little-endian)
and MANIFEST ("<TYPE> <n_values> <oracle>" per line), SIZES (gguf-py's
GGML_QUANT_SIZES), plus conv.bin: records of (u32 float32 bits, u16 f16,
u16 bf16) for the narrowing conversions.

Oracles (pinned: gguf==0.19.0, numpy 2.x, torch 2.x):
    gguf      gguf.quants.dequantize() (gguf-py's numpy code) -- the spec oracle
    numpy     numpy astype(np.float32) (gguf-py has no dequantizer: I8..I64, F64)
    mirror    a numpy transcription of ggml's dequantize_row_q8_K / _q1_0
              (gguf-py has no dequantizer for these)
    torch     torch float8_e4m3fn / float8_e5m2 -> float32 (safetensors F8)
    spec      numpy transcription of specs/quant.md A3 (fm's affine A<b>_<g>)
Run from the repo root:  /work/venv/bin/python tests/gen/gen_quant_ref.py
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES
import gguf.quants as gq

OUT = "tests/fixtures/quant"
SEED = 20240611

# f16 edge values for scale fields
F16_EDGES = [0x0000, 0x8000, 0x0001, 0x03FF, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE01]
F32_EDGES = [0x00000000, 0x80000000, 0x00000001, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000,
             0x7FC00000, 0x7F800001, 0xFFC12345]

# (type, n_blocks, [byte offsets of f16 scale fields], order-safe for two NaNs)
# Two different NaNs in one float op give the first operand's NaN: only
# subtractions have a fixed operand order (a*b and a+b may be emitted either
# way round by a C compiler), so different-NaN pairs are only generated for
# types where the two scales meet in a subtraction (d*q - dmin*m).
BLOCK_TYPES = [
    (Q.Q4_0, 64, [0], False),
    (Q.Q4_1, 64, [0, 2], False),
    (Q.Q5_0, 64, [0], False),
    (Q.Q5_1, 64, [0, 2], False),
    (Q.Q8_0, 64, [0], False),
    (Q.Q2_K, 32, [80, 82], True),
    (Q.Q3_K, 32, [108], False),
    (Q.Q4_K, 32, [0, 2], True),
    (Q.Q5_K, 32, [0, 2], True),
    (Q.Q6_K, 32, [208], False),
    (Q.IQ2_XXS, 32, [0], False),
    (Q.IQ2_XS, 32, [0], False),
    (Q.IQ2_S, 32, [0], False),
    (Q.IQ3_XXS, 32, [0], False),
    (Q.IQ3_S, 32, [0], False),
    (Q.IQ1_S, 32, [0], False),
    (Q.IQ1_M, 32, ["iq1m"], False),
    (Q.IQ4_NL, 64, [0], False),
    (Q.IQ4_XS, 32, [0], False),
    (Q.TQ1_0, 32, [52], False),
    (Q.TQ2_0, 32, [64], False),
    (Q.MXFP4, 64, [], False),
    (Q.NVFP4, 64, [], False),
]


def small_f16(rng, n):
    """Small finite f16 scales like real files have: |d| in ~[2^-14, 1]."""
    v = rng.uniform(0.5, 1.0, n) * np.exp2(-rng.integers(0, 14, n)) * rng.choice([-1.0, 1.0], n)
    return v.astype(np.float16).view(np.uint16)


def set_f16(raw, blk, field, bits):
    if field == "iq1m":  # d spread over the top nibbles of the 4 u16 words at 48..55
        for k in range(4):
            w = int(raw[blk, 48 + 2 * k]) | int(raw[blk, 49 + 2 * k]) << 8
            w = (w & 0x0FFF) | (((bits >> (4 * k)) & 0xF) << 12)
            raw[blk, 48 + 2 * k] = w & 0xFF
            raw[blk, 49 + 2 * k] = w >> 8
    else:
        raw[blk, field] = bits & 0xFF
        raw[blk, field + 1] = bits >> 8


def make_blocks(rng, qtype, nblk, fields, nan_pair_ok):
    _, ts = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (nblk, ts), dtype=np.uint8)
    for f in fields:
        for b, v in enumerate(small_f16(rng, nblk)):
            set_f16(raw, b, f, int(v))
    blk = 0
    for f in fields:  # one edge value at a time, the other fields small
        for e in F16_EDGES:
            set_f16(raw, blk, f, e)
            blk += 1
    if len(fields) == 2:
        set_f16(raw, blk, fields[0], 0x7C01)  # the same NaN in both
        set_f16(raw, blk, fields[1], 0x7C01)
        blk += 1
        set_f16(raw, blk, fields[0], 0x7C00)  # inf - inf
        set_f16(raw, blk, fields[1], 0x7C00)
        blk += 1
        if nan_pair_ok:
            set_f16(raw, blk, fields[0], 0x7E00)
            set_f16(raw, blk, fields[1], 0xFC01)
            blk += 1
    if qtype == Q.MXFP4:  # E8M0 edge exponents (subnormal halves, max)
        for i, e in enumerate([0, 1, 2, 127, 128, 254, 255]):
            raw[i, 0] = e
    if qtype == Q.NVFP4:  # UE4M3 specials: 0, 0x7f (decodes 0), bit 7 set
        raw[0, 0:4] = [0x00, 0x7F, 0x80, 0xFF]
        raw[1, 0:4] = [0x01, 0x07, 0x08, 0x7E]
    assert blk <= nblk, qtype
    return raw


def write(name, raw_bytes, f32, oracle, manifest):
    f32 = np.ascontiguousarray(f32, dtype="<f4").reshape(-1)
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(raw_bytes)
    with open(os.path.join(OUT, name + ".f32"), "wb") as f:
        f.write(f32.tobytes())
    manifest.append(f"{name} {f32.size} {oracle}")


def main():
    assert gguf.__name__ == "gguf"
    from importlib.metadata import version
    assert version("gguf") == "0.19.0", version("gguf")
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    manifest = []
    np.seterr(all="ignore")

    for qtype, nblk, fields, nan_pair_ok in BLOCK_TYPES:
        raw = make_blocks(rng, qtype, nblk, fields, nan_pair_ok)
        out = gq.dequantize(raw.reshape(-1), qtype)
        assert out.dtype == np.float32 and out.size == nblk * GGML_QUANT_SIZES[qtype][0]
        write(qtype.name, raw.tobytes(), out, "gguf", manifest)

    # Q8_K: float32 d (edge values too), int8 qs, int16 bsums (unused). mirror.
    nblk = 32
    raw = rng.integers(0, 256, (nblk, 292), dtype=np.uint8)
    d = (rng.uniform(-1, 1, nblk) * 1e-3).astype("<f4").view(np.uint32)
    d[: len(F32_EDGES)] = F32_EDGES
    raw[:, 0:4] = d.astype("<u4").view(np.uint8).reshape(nblk, 4)
    df = raw[:, 0:4].copy().view("<f4").reshape(nblk, 1)
    out = df * raw[:, 4:260].view(np.int8).astype(np.float32)
    write("Q8_K", raw.tobytes(), out, "mirror", manifest)

    # Q1_0: f16 d + 128 sign bits, x = bit ? d : -d (ggml). mirror.
    nblk = 32
    raw = make_blocks(rng, Q.Q1_0, nblk, [0], False)
    df = raw[:, 0:2].copy().view("<f2").astype(np.float32).reshape(nblk, 1)
    bits = np.unpackbits(raw[:, 2:], axis=1, bitorder="little").astype(bool)
    out = np.where(bits, df, -df)
    write("Q1_0", raw.tobytes(), out, "mirror", manifest)

    # fm affine A<b>_<g> (specs/quant.md A1-A4): d, m finite f16 (A4), codes a
    # little-endian bit stream (A2), value = f32(d) * q + f32(m) in float32 with
    # the product rounded first (A3). mirror of the spec.
    fin_edges = [0x0000, 0x8000, 0x0001, 0x03FF, 0x7BFF, 0xFBFF, 0x3C00]
    for bits in (4, 3, 2):
        for g in (32, 64, 128):
            nblk, ts = 32, 4 + g * bits // 8
            raw = rng.integers(0, 256, (nblk, ts), dtype=np.uint8)
            for f in (0, 2):
                for b, v in enumerate(small_f16(rng, nblk)):
                    set_f16(raw, b, f, int(v))
            for i, e in enumerate(fin_edges):
                set_f16(raw, i, 0, e)
                set_f16(raw, len(fin_edges) + i, 2, e)
            set_f16(raw, 2 * len(fin_edges), 0, 0x7BFF)  # extremes together
            set_f16(raw, 2 * len(fin_edges), 2, 0xFBFF)
            d = raw[:, 0:2].copy().view("<f2").astype(np.float32).reshape(nblk, 1)
            m = raw[:, 2:4].copy().view("<f2").astype(np.float32).reshape(nblk, 1)
            st = np.unpackbits(raw[:, 4:], axis=1, bitorder="little").reshape(nblk, g, bits)
            q = (st.astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(axis=-1).astype(np.float32)
            out = (d * q) + m
            write(f"A{bits}_{g}", raw.tobytes(), out, "spec", manifest)

    # Element types.
    f32 = rng.integers(0, 2**32, 256, dtype=np.uint64).astype(np.uint32)
    f32[: len(F32_EDGES)] = F32_EDGES
    write("F32", f32.astype("<u4").tobytes(), gq.dequantize(f32.astype("<u4").view(np.uint8), Q.F32), "gguf", manifest)

    h = rng.integers(0, 2**16, 2048, dtype=np.uint32).astype(np.uint16)
    h[:32] = np.arange(0x7C00, 0x7C20)  # inf and signalling NaNs
    h[32:64] = np.arange(0xFDF0, 0xFE10)  # -sNaN/-qNaN boundary
    h[64:96] = np.arange(0x0000, 0x0020)  # subnormals
    h[96:128] = np.arange(0x83E0, 0x8400)  # largest negative subnormals
    hb = h.astype("<u2").tobytes()
    write("F16", hb, gq.dequantize(np.frombuffer(hb, np.uint8), Q.F16), "gguf", manifest)
    write("BF16", hb, gq.dequantize(np.frombuffer(hb, np.uint8), Q.BF16), "gguf", manifest)

    f64 = rng.integers(0, 2**64, 256, dtype=np.uint64)
    f64[:12] = [0, 1 << 63, 1, 0x7FEFFFFFFFFFFFFF, 0x7FF0000000000000, 0xFFF0000000000000,
                0x7FF8000000000000, 0x7FF0000000000001, 0x47EFFFFFE0000000, 0x47EFFFFFF0000000,
                0x36A0000000000000, 0x3FF0000010000000]  # rounding edges near FLT_MAX, 2^-149
    f64[12:128] = (rng.standard_normal(116) * 1e3).view(np.uint64)
    write("F64", f64.astype("<u8").tobytes(), f64.view(np.float64).astype(np.float32), "numpy", manifest)

    for name, dt in (("I8", "<i1"), ("I16", "<i2"), ("I32", "<i4"), ("I64", "<i8")):
        bits = 8 * np.dtype(dt).itemsize
        if bits == 8:
            v = np.arange(-128, 128, dtype=np.int64)
        else:
            v = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1, 256, dtype=np.int64, endpoint=True)
            v[:4] = [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1, 0, -1]
            if bits == 64:
                v[4:8] = [2**24 + 1, 2**53 + 1, (2**62) + 2**38, -(2**40) - 2**15]  # rounding
        a = v.astype(dt)
        write(name, a.tobytes(), a.astype(np.float32), "numpy", manifest)

    import torch
    b = torch.arange(256, dtype=torch.uint8)
    for name, dt in (("F8_E4M3", torch.float8_e4m3fn), ("F8_E5M2", torch.float8_e5m2)):
        write(name, bytes(range(256)), b.view(dt).float().numpy(), "torch", manifest)

    # Narrowing conversions: f32 bits -> (numpy astype f16, gguf-py BF16).
    n = 8192
    x = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    f16v = rng.integers(0, 0x7C00, 2048, dtype=np.uint32)  # around f16 rounding points
    base = f16v.astype(np.uint16).view(np.float16).astype(np.float32).view(np.uint32)
    x[:2048] = base + rng.choice([0, 0xFFF, 0x1000, 0x1001, 0x2000, 0xFFFFFFFF], 2048).astype(np.uint32)
    x[2048:2048 + 64] = (0x33000000 + rng.integers(-2, 3, 64)).astype(np.uint32)
    x[2112:2112 + 64] = (0x477FF000 + rng.integers(-2, 3, 64)).astype(np.uint32)
    bfv = rng.integers(0, 0x10000, 1024, dtype=np.uint32) << 16  # around bf16 rounding points
    x[3000:4024] = bfv + rng.choice([0, 0x7FFF, 0x8000, 0x8001, 0xFFFF], 1024).astype(np.uint32)
    x[4024:4024 + len(F32_EDGES)] = F32_EDGES
    x[4100:4110] = [0x7F800001, 0x7F801FFF, 0x7F802000, 0xFF800001, 0x7FFFFFFF, 0x7FBFFFFF,
                    0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x00007FFF]
    xf = x.astype("<u4").view(np.float32)
    o16 = xf.astype(np.float16).view(np.uint16)
    obf = gq.quantize(xf.reshape(1, -1), Q.BF16).view("<u2").reshape(-1)
    rec = np.zeros(n, dtype=[("x", "<u4"), ("h", "<u2"), ("b", "<u2")])
    rec["x"], rec["h"], rec["b"] = x, o16, obf
    with open(os.path.join(OUT, "conv.bin"), "wb") as f:
        f.write(rec.tobytes())

    # gguf-py's block sizes, for the traits-table check.
    with open(os.path.join(OUT, "SIZES"), "w") as f:
        f.write("# GGML_QUANT_SIZES of gguf 0.19.0: <name> <id> <block_size> <type_size>\n")
        for t, (bs, ts) in sorted(GGML_QUANT_SIZES.items(), key=lambda kv: int(kv[0])):
            f.write(f"{t.name} {int(t)} {bs} {ts}\n")

    with open(os.path.join(OUT, "MANIFEST"), "w") as f:
        f.write("# generated by tests/gen/gen_quant_ref.py; <type> <n_values> <oracle>\n")
        f.write("\n".join(manifest) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, p)) for p in os.listdir(OUT))
    print(f"{len(manifest)} types, {total} bytes in {OUT}")


if __name__ == "__main__":
    sys.exit(main())
