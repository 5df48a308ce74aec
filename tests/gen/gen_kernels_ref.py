#!/usr/bin/env python3
"""Reference data for tests/unit/test_kernels.c (fixed seed; deterministic).

Writes to tests/fixtures/kernels/:
  vecdot.bin  little-endian: u32 n_sets, then per activation set
                u32 cols, u32 n, X  n x cols float32  (normal, heavy-tailed,
                                   exact .5 ties, zero blocks, +-max)
              then records, one per weight type:
                u32 qtype, u32 act_type, u32 cols, u32 rows, u32 n,
                W   rows x row_bytes          random but valid weight blocks
                                              (X is the set with these cols)
                XQ  n x act_row_bytes          X quantized by ggml's CPU backend
                                              (quantize_row_q8_K / _q8_0 / _q8_1)
                Y   n x rows float32          ggml_vec_dot_<type>_q8_<x>(W[r], XQ[i])
              ends with a u32 0.
  q8_0_ref.bin  u32 cols, u32 n, X (n x cols f32), then gguf-py's Q8_0
              quantization of X (ggml quantize_row_q8_0_ref): n x cols/32 blocks.

Oracles (pinned in tests/gen/requirements.txt): llama-cpp-python 0.3.36's
libggml-cpu.so (llama.cpp's own CPU kernels, the build that runs on this
machine), called through ctypes; gguf==0.19.0 gguf.quants for Q8_0_ref.
Run from the repo root:  /work/venv/bin/python tests/gen/gen_kernels_ref.py
"""
import ctypes
import os
import struct
import sys

import numpy as np
import gguf
import gguf.quants as gq
from gguf import GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES

import llama_cpp

OUT = "tests/fixtures/kernels"
SEED = 20240705

Q8_0, Q8_1, Q8_K = 8, 9, 15
ACT_SIZE = {Q8_0: (32, 34), Q8_1: (32, 36), Q8_K: (256, 292)}

# (fm/ggml type id, ggml function suffix, act type, cols, f16 field offsets)
TYPES = [
    (2, "q4_0_q8_0", Q8_0, 288, [0]),
    (3, "q4_1_q8_1", Q8_1, 288, [0, 2]),
    (6, "q5_0_q8_0", Q8_0, 288, [0]),
    (7, "q5_1_q8_1", Q8_1, 288, [0, 2]),
    (8, "q8_0_q8_0", Q8_0, 288, [0]),
    (20, "iq4_nl_q8_0", Q8_0, 288, [0]),
    (10, "q2_K_q8_K", Q8_K, 512, [80, 82]),
    (11, "q3_K_q8_K", Q8_K, 512, [108]),
    (12, "q4_K_q8_K", Q8_K, 512, [0, 2]),
    (13, "q5_K_q8_K", Q8_K, 512, [0, 2]),
    (14, "q6_K_q8_K", Q8_K, 512, [208]),
    (23, "iq4_xs_q8_K", Q8_K, 512, [0]),
    # no fm integer kernel: fm emulates the activation rounding
    (16, "iq2_xxs_q8_K", Q8_K, 512, [0]),
    (17, "iq2_xs_q8_K", Q8_K, 512, [0]),
    (22, "iq2_s_q8_K", Q8_K, 512, [0]),
    (18, "iq3_xxs_q8_K", Q8_K, 512, [0]),
    (21, "iq3_s_q8_K", Q8_K, 512, [0]),
    (19, "iq1_s_q8_K", Q8_K, 512, [0]),
    (29, "iq1_m_q8_K", Q8_K, 512, ["iq1m"]),
    (34, "tq1_0_q8_K", Q8_K, 512, [52]),
    (35, "tq2_0_q8_K", Q8_K, 512, [64]),
    (39, "mxfp4_q8_0", Q8_0, 512, ["e8m0"]),
]

ROWS = 3


def load_ggml():
    d = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    ctypes.CDLL(os.path.join(d, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(os.path.join(d, "libggml-cpu.so"))
    lib.ggml_cpu_init()
    return lib


def rand_f16(rng, n, lo=-10, hi=-4):
    mag = np.exp2(rng.uniform(lo, hi, n)).astype(np.float16)
    sign = np.where(rng.random(n) < 0.5, -1, 1).astype(np.float16)
    return (mag * sign).view(np.uint16)


def rand_blocks(rng, qtype, nblocks, offs):
    bs, ts = GGML_QUANT_SIZES[Q(qtype)]
    b = rng.integers(0, 256, size=(nblocks, ts), dtype=np.uint8)
    for off in offs:
        if off == "iq1m":
            # f16 d spread over the top nibbles of the four u16 scale words (bytes 48..55)
            h = rand_f16(rng, nblocks)
            for k in range(4):
                lo = 48 + 2 * k
                word = b[:, lo].astype(np.uint16) | (b[:, lo + 1].astype(np.uint16) << 8)
                word = (word & 0x0FFF) | (((h >> (4 * k)) & 0xF) << 12)
                b[:, lo] = word & 0xFF
                b[:, lo + 1] = word >> 8
        elif off == "e8m0":
            b[:, 0] = rng.integers(118, 126, size=nblocks)
        else:
            h = rand_f16(rng, nblocks)
            b[:, off] = h & 0xFF
            b[:, off + 1] = h >> 8
    return b


def activations(rng, cols):
    x = np.zeros((5, cols), dtype=np.float32)
    x[0] = rng.standard_normal(cols)
    x[1] = rng.standard_normal(cols) * np.exp(rng.standard_normal(cols) * 2)
    # exact ties after scaling: every 32-block has amax 127 (Q8_0 id = 1, Q8_K iscale = -1)
    t = rng.integers(-127, 127, size=cols) + 0.5
    t[::32] = 127.0
    x[2] = t
    # zero blocks (amax = 0), then normal values
    x[3] = rng.standard_normal(cols)
    x[3][: min(cols, 256)] = 0.0
    # the first element of largest magnitude is negative, a later one positive
    x[4] = rng.standard_normal(cols)
    for s in range(0, cols, 32):
        x[4][s + 3] = -6.0
        x[4][s + 17] = 6.0
    return x


def main():
    lib = load_ggml()
    rng = np.random.default_rng(SEED)
    os.makedirs(OUT, exist_ok=True)
    qfun = {Q8_0: lib.quantize_row_q8_0, Q8_1: lib.quantize_row_q8_1, Q8_K: lib.quantize_row_q8_K}
    xsets = {c: activations(rng, c) for c in sorted({t[3] for t in TYPES})}
    out = bytearray(struct.pack("<I", len(xsets)))
    for c, x in xsets.items():
        out += struct.pack("<2I", c, x.shape[0]) + x.astype("<f4").tobytes()
    for qtype, suffix, act, cols, offs in TYPES:
        bs, ts = GGML_QUANT_SIZES[Q(qtype)]
        nbw = cols // bs
        w = rand_blocks(rng, qtype, ROWS * nbw, offs).reshape(ROWS, nbw * ts)
        x = xsets[cols]
        abs_, ats = ACT_SIZE[act]
        arow = cols // abs_ * ats
        xq = np.zeros((x.shape[0], arow), dtype=np.uint8)
        for i in range(x.shape[0]):
            xi = np.ascontiguousarray(x[i])
            qfun[act](xi.ctypes.data_as(ctypes.c_void_p), xq[i].ctypes.data_as(ctypes.c_void_p),
                      ctypes.c_int64(cols))
        f = getattr(lib, "ggml_vec_dot_" + suffix)
        y = np.zeros((x.shape[0], ROWS), dtype=np.float32)
        s = ctypes.c_float()
        for i in range(x.shape[0]):
            for r in range(ROWS):
                wr = np.ascontiguousarray(w[r])
                f(ctypes.c_int(cols), ctypes.byref(s), ctypes.c_size_t(0),
                  wr.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(0),
                  xq[i].ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(0), ctypes.c_int(1))
                y[i, r] = s.value
        out += struct.pack("<5I", qtype, act, cols, ROWS, x.shape[0])
        out += w.tobytes() + xq.tobytes() + y.astype("<f4").tobytes()
    out += struct.pack("<I", 0)
    with open(os.path.join(OUT, "vecdot.bin"), "wb") as fh:
        fh.write(out)

    cols = 256
    x = activations(rng, cols)
    q = gq.quantize(x, Q.Q8_0)
    with open(os.path.join(OUT, "q8_0_ref.bin"), "wb") as fh:
        fh.write(struct.pack("<2I", cols, x.shape[0]))
        fh.write(x.astype("<f4").tobytes())
        fh.write(np.ascontiguousarray(q).tobytes())
    print("wrote", OUT, len(out), "bytes")


if __name__ == "__main__":
    from importlib.metadata import version
    assert version("gguf") == "0.19.0", version("gguf")
    assert version("llama_cpp_python") == "0.3.36", version("llama_cpp_python")
    sys.exit(main())
