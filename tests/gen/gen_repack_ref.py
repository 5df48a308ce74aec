#!/usr/bin/env python3
"""Reference data for tests/unit/test_kernels_repack.c (fixed seed; deterministic).

llama.cpp's CPU backend repacks Q4_K weights with rows % 8 == 0 into
block_q4_Kx8 (8 rows interleaved) on AVX2 machines and multiplies them with
ggml_gemm_q4_K_8x8_q8_K (activation rows in groups of 4, block_q8_Kx4,
quantized by ggml_quantize_mat_q8_K_4x8) and ggml_gemv_q4_K_8x8_q8_K (the
n % 4 leftover rows, quantize_row_q8_K), exactly as
ggml-cpu/repack.cpp forward_mul_mat{,_one_chunk} does.  This script repeats
that driver logic (the repacking itself is a transcription of
make_block_q4_Kx8) and calls llama.cpp's own kernels through ctypes.

Writes tests/fixtures/kernels/repack.bin, little-endian:
  u32 n_cases, then per case
    u32 qtype (12 = Q4_K), u32 cols, u32 rows, u32 n,
    W  rows x row_bytes    plain (not repacked) Q4_K rows, random valid blocks
    X  n x cols float32
    Y  n x rows float32    llama.cpp's repacked mul_mat result
    V  n x rows float32    ggml_vec_dot_q4_K_q8_K on the same rows (the
                           non-repacked order, to show the two differ)

Also writes tests/fixtures/kernels/mulmat_graph.bin, the same layout, with Y
from a real ggml graph (ggml_mul_mat on a plain CPU buffer, 2 threads): Q8_0
(qtype 8) and Q5_0 (6) with n >= 2 (llamafile_sgemm, tinyBLAS_Q0_AVX: the
same bits as vec_dot on x86), Q6_K (14) and Q4_K (12) with n >= 8
(ggml-cpu/tiled) and n = 7 (vec_dot).
Oracle: llama-cpp-python 0.3.36's libggml-cpu.so on this machine.
Run from the repo root:  /work/venv/bin/python tests/gen/gen_repack_ref.py
"""
import ctypes
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from gen_kernels_ref import load_ggml, rand_blocks, activations  # noqa: E402

OUT = "tests/fixtures/kernels"
SEED = 20261201
Q4_K = 12
Q4K_BYTES = 144
Q8K_BYTES = 292
CASES = [(512, 24, 23), (256, 16, 1), (256, 8, 6), (512, 32, 4)]  # cols, rows, n


def make_block_q4_Kx8(blk):
    """blk: 8 x 144 uint8 (one Q4_K block of each of 8 rows) -> 1152 bytes."""
    d = blk[:, 0:2].copy()
    dmin = blk[:, 2:4].copy()
    sc = blk[:, 4:16].astype(np.int32)
    qs = blk[:, 16:144]
    out_qs = np.zeros(1024, dtype=np.uint8)
    for i in range(1024 // 8):
        src_id = i % 8
        src_off = (i // 8) * 8
        out_qs[i * 8:(i + 1) * 8] = qs[src_id, src_off:src_off + 8]
    out_sc = np.zeros(96, dtype=np.int32)
    for half in range(2):
        for i in range(4):
            if half == 0:
                s = sc[:, i] & 63
                m = sc[:, i + 4] & 63
            else:
                s = ((sc[:, i] & 192) >> 2) | (sc[:, i + 8] & 15)
                m = ((sc[:, i + 4] & 192) >> 2) | ((sc[:, i + 8] & 240) >> 4)
            o = i * 12 + 48 * half
            for k in range(4):
                out_sc[o + k] = (s[k] & 63) + ((s[k + 4] & 48) << 2)
                out_sc[o + 4 + k] = (m[k] & 63) + ((m[k + 4] & 48) << 2)
                out_sc[o + 8 + k] = (s[k + 4] & 15) + ((m[k + 4] & 15) << 4)
    return d.tobytes() + dmin.tobytes() + (out_sc & 0xFF).astype(np.uint8).tobytes() + out_qs.tobytes()


def repack(w, rows, nb):
    out = bytearray()
    for g in range(rows // 8):
        for b in range(nb):
            out += make_block_q4_Kx8(w[g * 8:(g + 1) * 8, b * Q4K_BYTES:(b + 1) * Q4K_BYTES])
    return np.frombuffer(bytes(out), dtype=np.uint8).copy()


def vp(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def main():
    lib = load_ggml()
    rng = np.random.default_rng(SEED)
    os.makedirs(OUT, exist_ok=True)
    out = bytearray(struct.pack("<I", len(CASES)))
    for cols, rows, n in CASES:
        nb = cols // 256
        w = rand_blocks(rng, Q4_K, rows * nb, [0, 2]).reshape(rows, nb * Q4K_BYTES)
        base = activations(rng, cols)
        x = np.zeros((n, cols), dtype=np.float32)
        for i in range(n):
            x[i] = base[i] if i < base.shape[0] else rng.standard_normal(cols) * (1 + i)
        rp = repack(w, rows, nb)
        rowsz = nb * Q8K_BYTES
        wdata = np.zeros(n * rowsz, dtype=np.uint8)
        n4 = n - n % 4
        for i in range(0, n4, 4):
            xi = np.ascontiguousarray(x[i:i + 4])
            sub = wdata[i * rowsz:(i + 4) * rowsz]
            lib.ggml_quantize_mat_q8_K_4x8(vp(xi), vp(sub), ctypes.c_int64(cols))
            wdata[i * rowsz:(i + 4) * rowsz] = sub
        for i in range(n4, n):
            xi = np.ascontiguousarray(x[i])
            sub = np.zeros(rowsz, dtype=np.uint8)
            lib.quantize_row_q8_K(vp(xi), vp(sub), ctypes.c_int64(cols))
            wdata[i * rowsz:(i + 1) * rowsz] = sub
        y = np.zeros((n, rows), dtype=np.float32)
        if n4 > 0:
            lib.ggml_gemm_q4_K_8x8_q8_K(ctypes.c_int(cols), vp(y), ctypes.c_size_t(rows), vp(rp), vp(wdata),
                                        ctypes.c_int(n4), ctypes.c_int(rows))
        for i in range(n4, n):
            yi = np.zeros(rows, dtype=np.float32)
            ai = np.ascontiguousarray(wdata[i * rowsz:(i + 1) * rowsz])
            lib.ggml_gemv_q4_K_8x8_q8_K(ctypes.c_int(cols), vp(yi), ctypes.c_size_t(rows), vp(rp), vp(ai),
                                        ctypes.c_int(1), ctypes.c_int(rows))
            y[i] = yi
        # vec_dot order on plain rows with quantize_row_q8_K activations
        v = np.zeros((n, rows), dtype=np.float32)
        s = ctypes.c_float()
        for i in range(n):
            xi = np.ascontiguousarray(x[i])
            aq = np.zeros(rowsz, dtype=np.uint8)
            lib.quantize_row_q8_K(vp(xi), vp(aq), ctypes.c_int64(cols))
            for r in range(rows):
                wr = np.ascontiguousarray(w[r])
                lib.ggml_vec_dot_q4_K_q8_K(ctypes.c_int(cols), ctypes.byref(s), ctypes.c_size_t(0), vp(wr),
                                           ctypes.c_size_t(0), vp(aq), ctypes.c_size_t(0), ctypes.c_int(1))
                v[i, r] = s.value
        ndiff = int(np.sum(y.view(np.uint32) != v.view(np.uint32)))
        print(f"cols {cols} rows {rows} n {n}: repacked vs vec_dot differ in {ndiff}/{y.size}")
        out += struct.pack("<4I", Q4_K, cols, rows, n)
        out += w.tobytes() + x.astype("<f4").tobytes() + y.astype("<f4").tobytes() + v.astype("<f4").tobytes()
    with open(os.path.join(OUT, "repack.bin"), "wb") as fh:
        fh.write(out)
    print("wrote", os.path.join(OUT, "repack.bin"), len(out), "bytes")
    graph_mulmat(lib, rng)


class InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


# (type, values per block, block bytes, f16 field offsets, cases (cols, rows, n)):
#  Q8_0/Q5_0 with n >= 2: llamafile_sgemm (tinyBLAS_Q0_AVX) -- same bits as vec_dot on x86;
#  Q6_K/Q4_K (plain buffer, so never repacked) with n >= 8: ggml-cpu/tiled; n < 8: vec_dot.
TB_TYPES = [(8, 32, 34, [0], [(288, 13, 2), (640, 9, 7)]),
            (6, 32, 22, [0], [(288, 13, 2), (256, 5, 5)]),
            (14, 256, 210, [208], [(512, 13, 8), (256, 40, 21), (512, 9, 7)]),
            (12, 256, 144, [0, 2], [(512, 13, 8), (256, 20, 17), (512, 9, 7)])]
VD = {8: "q8_0_q8_0", 6: "q5_0_q8_0", 14: "q6_K_q8_K", 12: "q4_K_q8_K"}


def graph_mulmat(lib, rng):
    """Q8_0/Q5_0 weights in a plain CPU buffer, n >= 2 activation rows:
    ggml_compute_forward_mul_mat quantizes X to Q8_0 (quantize_row_q8_0) and
    hands it to llamafile_sgemm (tinyBLAS_Q0_AVX). Computed through a real
    ggml graph (ggml_mul_mat + ggml_graph_compute_with_ctx)."""
    for fn in ("ggml_init", "ggml_new_tensor_2d", "ggml_mul_mat", "ggml_new_graph", "ggml_get_data"):
        getattr(lib, fn).restype = ctypes.c_void_p
    lib.ggml_init.argtypes = [InitParams]
    lib.ggml_new_tensor_2d.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    lib.ggml_mul_mat.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.ggml_new_graph.argtypes = [ctypes.c_void_p]
    lib.ggml_build_forward_expand.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.ggml_graph_compute_with_ctx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.ggml_get_data.argtypes = [ctypes.c_void_p]
    lib.ggml_free.argtypes = [ctypes.c_void_p]
    cases = [(t, bsz, rb, offs, c, r, n) for (t, bsz, rb, offs, cs) in TB_TYPES for (c, r, n) in cs]
    out = bytearray(struct.pack("<I", len(cases)))
    for qtype, bsz, rb, offs, cols, rows, n in cases:
        nb = cols // bsz
        act_bytes = cols // 32 * 34 if bsz == 32 else cols // 256 * Q8K_BYTES
        quant = lib.quantize_row_q8_0 if bsz == 32 else lib.quantize_row_q8_K
        w = rand_blocks(rng, qtype, rows * nb, offs).reshape(rows, nb * rb)
        base = activations(rng, cols)
        x = np.zeros((n, cols), dtype=np.float32)
        for i in range(n):
            x[i] = base[i] if i < base.shape[0] else rng.standard_normal(cols)
        ctx = lib.ggml_init(InitParams(64 << 20, None, False))
        a = lib.ggml_new_tensor_2d(ctx, qtype, cols, rows)
        b = lib.ggml_new_tensor_2d(ctx, 0, cols, n)
        ctypes.memmove(lib.ggml_get_data(a), w.tobytes(), w.size)
        ctypes.memmove(lib.ggml_get_data(b), x.tobytes(), x.nbytes)
        c = lib.ggml_mul_mat(ctx, a, b)
        gf = lib.ggml_new_graph(ctx)
        lib.ggml_build_forward_expand(gf, c)
        lib.ggml_graph_compute_with_ctx(ctx, gf, 2)
        y = np.frombuffer(ctypes.string_at(lib.ggml_get_data(c), 4 * rows * n), dtype=np.float32).reshape(n, rows).copy()
        lib.ggml_free(ctx)
        v = np.zeros((n, rows), dtype=np.float32)
        s = ctypes.c_float()
        f = getattr(lib, "ggml_vec_dot_" + VD[qtype])
        for i in range(n):
            xi = np.ascontiguousarray(x[i])
            aq = np.zeros(act_bytes, dtype=np.uint8)
            quant(vp(xi), vp(aq), ctypes.c_int64(cols))
            for r in range(rows):
                wr = np.ascontiguousarray(w[r])
                f(ctypes.c_int(cols), ctypes.byref(s), ctypes.c_size_t(0), vp(wr), ctypes.c_size_t(0), vp(aq),
                  ctypes.c_size_t(0), ctypes.c_int(1))
                v[i, r] = s.value
        ndiff = int(np.sum(y.view(np.uint32) != v.view(np.uint32)))
        print(f"type {qtype} cols {cols} rows {rows} n {n}: graph mul_mat vs vec_dot differ in {ndiff}/{y.size}, "
              f"max rel {np.max(np.abs(y - v)) / (np.max(np.abs(v)) + 1e-30):.2e}")
        out += struct.pack("<4I", qtype, cols, rows, n)
        out += w.tobytes() + x.astype("<f4").tobytes() + y.astype("<f4").tobytes() + v.astype("<f4").tobytes()
    with open(os.path.join(OUT, "mulmat_graph.bin"), "wb") as fh:
        fh.write(out)
    print("wrote", os.path.join(OUT, "mulmat_graph.bin"), len(out), "bytes")


if __name__ == "__main__":
    from importlib.metadata import version
    assert version("llama_cpp_python") == "0.3.36", version("llama_cpp_python")
    sys.exit(main())
