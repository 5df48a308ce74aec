#!/usr/bin/env python3
"""GGUF dequantization fixtures: one small GGUF file per GGML type fm
dequantizes, quantized by llama.cpp's own quantizer, plus SHA-256 references
of the dequantized float32 data.

Pinned versions (also in tests/gen/requirements.txt):
    gguf==0.19.0  numpy==2.4.6  llama-cpp-python==0.3.36 (ggml 0.25.3)

Outputs (committed):
    tests/fixtures/gguf/<TYPE>.gguf   one file per type (REQUIRED + EXTRA below)
    tests/fixtures/gguf/unsupported-Q8_1.gguf   a valid file with a Q8_1 tensor,
        a type fm has no dequantizer for (fm-inspect must exit 1 on it)
    tests/fixtures/gguf/REFERENCE.tsv file, tensor, type, ne, sha256
    tests/fixtures/gemma3-270m.dequant.tsv   the same for every tensor of
        models/gemma-3-270m-q4_k_m.gguf (left alone, with a note, when absent)

How the fixtures are made:
  * src (F32.gguf): a tiny f32 "llama" model written with gguf-py's GGUFWriter
    (fixed numpy seed). llama_model_quantize needs only the llama hparams
    written in write_src (it loads arch + hparams, not the vocab). Row
    lengths are multiples of 256 so every type, K-quants and IQ included,
    applies to every 2-D/3-D tensor. The rows deliberately mix scales
    (1e-6 .. 300, f16 subnormals, an all-zero row, one-signed rows, a
    constant row, an outlier row) and one tensor is 3-D (an MoE-style
    expert stack, ne [256, 2, 3]) to pin the row order ne2 x ne1 x ne0.
  * Most types: llama_model_quantize(src, dst) with params.pure = True, so
    every 2-D/3-D weight gets exactly that type; 1-D tensors stay F32
    (llama.cpp never quantizes them). MXFP4 comes from
    LLAMA_FTYPE_MOSTLY_MXFP4_MOE, IQ2_S from MOSTLY_IQ2_M (with pure=True each
    makes every weight that type). IQ1_*, IQ2_*, IQ3_XXS need an importance
    matrix: a fixed-seed one is passed (params.imatrix).
  * Q8_K and NVFP4: llama.cpp cannot write them into a model file (Q8_K:
    ggml_quantize_chunk has no Q8_K case and aborts with
    GGML_ASSERT(result == nrows * row_size); NVFP4: "invalid output file
    type"), so their blocks come from ggml's own quantize_row_<t>_ref
    (libggml-base of llama-cpp-python, via ctypes), written with GGUFWriter
    raw_dtype.
  * F64, I8, I16, I32, I64: plain numpy arrays through GGUFWriter, with the
    values where conversion to float32 must round (2^24+1, 2^53+1, ...).

Reference: SHA-256 of gguf-py's gguf.quants.dequantize(t.data, t.tensor_type)
as little-endian float32, C order (numpy shape is reversed ne, so the bytes
are ne2 x ne1 rows of ne0 values). Types gguf-py 0.19.0 cannot dequantize
are done in numpy here: Q8_K (d * q), Q1_0 (bit ? d : -d), F64 and integers
(astype float32, round to nearest even). Every tensor of a type ggml can
dequantize is cross-checked against ggml's own C dequantize_row_* /
ggml_*_to_fp32_row (via ctypes); the script fails if they differ in any bit.
No such difference exists for any fixture nor for the Gemma model.

The output is deterministic (same bytes on every run with these versions;
another build of llama.cpp could quantize differently, and the references
would follow, since they are computed from the files written).

Run: python tests/gen/gen_gguf_types.py   (from anywhere; tests/gen/regen.sh runs it)
"""
import ctypes
import hashlib
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T

import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTDIR = os.path.join(ROOT, "tests", "fixtures", "gguf")
GEMMA = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
GEMMA_TSV = os.path.join(ROOT, "tests", "fixtures", "gemma3-270m.dequant.tsv")

EXPECT_VERSIONS = {"gguf": "0.19.0", "numpy": "2.4.6", "llama_cpp": "0.3.36"}

# (type name, how): "MOSTLY_x": llama_model_quantize with that llama_ftype
# (pure); "+im" appended: with an importance matrix (llama.cpp refuses these
# types without one); "src": the f32 source itself; "ggml-ref": ggml's
# quantize_row_<t>_ref over the rows (llama.cpp cannot write the type into a
# model file); "numpy": GGUFWriter with a plain numpy array of that dtype.
# REQUIRED: the types fm must dequantize (issue 3); the test fails when one
# is missing from REFERENCE.tsv. EXTRA: the other types fm's table can
# dequantize, covered because it is cheap.
REQUIRED = [
    ("F32", "src"),
    ("F16", "MOSTLY_F16"),
    ("BF16", "MOSTLY_BF16"),
    ("Q8_0", "MOSTLY_Q8_0"),
    ("Q4_0", "MOSTLY_Q4_0"),
    ("Q4_1", "MOSTLY_Q4_1"),
    ("Q5_0", "MOSTLY_Q5_0"),
    ("Q5_1", "MOSTLY_Q5_1"),
    ("Q2_K", "MOSTLY_Q2_K"),
    ("Q3_K", "MOSTLY_Q3_K_M"),
    ("Q4_K", "MOSTLY_Q4_K_M"),
    ("Q5_K", "MOSTLY_Q5_K_M"),
    ("Q6_K", "MOSTLY_Q6_K"),
    ("Q8_K", "ggml-ref"),
    ("IQ4_NL", "MOSTLY_IQ4_NL"),
    ("IQ4_XS", "MOSTLY_IQ4_XS"),
    ("TQ1_0", "MOSTLY_TQ1_0"),
    ("TQ2_0", "MOSTLY_TQ2_0"),
    ("MXFP4", "MOSTLY_MXFP4_MOE"),
]
EXTRA = [
    ("IQ2_XXS", "MOSTLY_IQ2_XXS+im"),
    ("IQ2_XS", "MOSTLY_IQ2_XS+im"),
    ("IQ2_S", "MOSTLY_IQ2_M+im"),     # pure IQ2_M uses IQ2_S for every weight
    ("IQ3_XXS", "MOSTLY_IQ3_XXS+im"),
    ("IQ3_S", "MOSTLY_IQ3_S"),
    ("IQ1_S", "MOSTLY_IQ1_S+im"),
    ("IQ1_M", "MOSTLY_IQ1_M+im"),
    ("Q1_0", "MOSTLY_Q1_0"),
    ("NVFP4", "ggml-ref"),             # LLAMA_FTYPE_MOSTLY_NVFP4: "invalid output file type"
    ("F64", "numpy"),
    ("I8", "numpy"),
    ("I16", "numpy"),
    ("I32", "numpy"),
    ("I64", "numpy"),
]
TYPES = REQUIRED + EXTRA


def check_versions():
    got = {"gguf": _dist_version("gguf"), "numpy": np.__version__, "llama_cpp": llama_cpp.__version__}
    for k, v in EXPECT_VERSIONS.items():
        if got[k] != v:
            sys.exit(f"gen_gguf_types: {k} {got[k]} installed, {v} pinned (run tests/gen/regen.sh)")


def _dist_version(name):
    from importlib.metadata import version
    return version(name)


# ---------------------------------------------------------------- source model
def source_tensors():
    """name -> float32 array in numpy shape (reversed ne). Fixed seed."""
    rng = np.random.default_rng(20240603)
    out = {}

    def mixed_rows(nrows, ncols):
        a = rng.standard_normal((nrows, ncols)).astype(np.float32)
        kinds = ["normal", "tiny", "zero", "big", "positive", "negative", "const", "outlier", "small"]
        for i in range(nrows):
            k = kinds[i % len(kinds)]
            if k == "tiny":        # f16 subnormal range (min normal 6.1e-5)
                a[i] *= np.float32(1e-6)
            elif k == "zero":
                a[i] = 0
            elif k == "big":
                a[i] *= np.float32(300)
            elif k == "positive":
                a[i] = np.abs(a[i]) + np.float32(0.25)
            elif k == "negative":
                a[i] = -np.abs(a[i]) * np.float32(2)
            elif k == "const":
                a[i] = np.float32(0.7)
            elif k == "outlier":
                a[i, rng.integers(0, ncols)] = np.float32(40)
            elif k == "small":
                a[i] *= np.float32(0.02)
        return a

    out["token_embd.weight"] = mixed_rows(16, 256)             # ne [256, 16]
    out["output_norm.weight"] = (1 + 0.1 * rng.standard_normal(256)).astype(np.float32)
    out["blk.0.attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(256)).astype(np.float32)
    out["blk.0.attn_q.weight"] = mixed_rows(9, 512)            # ne [512, 9]
    out["blk.0.attn_v.weight"] = (0.05 * rng.standard_normal((4, 256))).astype(np.float32)
    e = mixed_rows(6, 256).reshape(3, 2, 256)                  # ne [256, 2, 3]
    out["blk.0.ffn_gate_exps.weight"] = e
    return out


def numpy_tensors(name):
    """Tensors of a plain numpy dtype (F64, I8..I64), fixed seed, with the
    values where conversion to float32 must round or saturate correctly."""
    rng = np.random.default_rng(99)
    dt = NUMPY_TYPES[T[name]]
    if name == "F64":
        a = rng.standard_normal((4, 64)) * np.array([[1.0], [1e-30], [1e30], [1e-40]])
        a[0, :8] = [1 / 3, -2 / 3, 1 + 2**-24, 1 + 3 * 2**-24, 0.0, -0.0, 5e-324, 3.4028234663852886e38]
        return {"a.weight": a.astype(dt), "b.bias": np.linspace(-1, 1, 32)}
    info = np.iinfo(dt)
    a = rng.integers(info.min, info.max, size=(4, 64), dtype=dt, endpoint=True)
    ext = [info.min, info.max, 0, -1, 1, info.min + 1, info.max - 1]
    if dt == np.int64:
        ext += [2**53 + 1, 2**24 + 1, -(2**24 + 3), 2**62 + 2**38]
    elif dt == np.int32:
        ext += [2**24 + 1, -(2**24 + 3), 2**31 - 65, 2**31 - 64]
    a[0, :len(ext)] = ext
    return {"a.weight": a, "b.bias": np.arange(-16, 16, dtype=dt)}


def write_src(path, tensors):
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("fm dequant fixture")
    w.add_context_length(64)
    w.add_embedding_length(256)
    w.add_block_count(1)
    w.add_feed_forward_length(256)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_expert_count(3)
    w.add_expert_used_count(1)
    w.add_file_type(0)
    for name, a in tensors.items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@llama_cpp.llama_log_callback
def _quiet_log(level, text, user_data):  # llama.cpp logs every tensor; keep regen quiet
    pass


def imatrix_for(tensors):
    """A fixed-seed importance matrix (ne0 * n_experts positive weights per
    quantized tensor), as a NULL-terminated llama_model_imatrix_data array."""
    rng = np.random.default_rng(7)
    ents = []
    for name, a in tensors.items():
        if a.ndim >= 2:
            n = a.shape[-1] * (a.shape[0] if a.ndim == 3 else 1)
            ents.append((name.encode(), rng.uniform(0.1, 2.0, n).astype(np.float32)))
    arr = (llama_cpp.llama_model_imatrix_data * (len(ents) + 1))()
    for i, (name, w) in enumerate(ents):
        arr[i].name = name
        arr[i].data = w.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        arr[i].size = w.size
    arr[len(ents)].name = None
    return arr, ents  # ents keeps the weight arrays alive


def quantize(src, dst, ftype_name, imatrix=None):
    llama_cpp.llama_log_set(_quiet_log, ctypes.c_void_p())
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = getattr(llama_cpp, "LLAMA_FTYPE_" + ftype_name)
    p.pure = True
    p.nthread = 1
    if imatrix is not None:
        p.imatrix = imatrix
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"gen_gguf_types: llama_model_quantize({ftype_name}) failed: {rc}")


# ---------------------------------------------------------------- ggml via ctypes
def ggml_lib():
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
    return lib


def ggml_quantize_rows(lib, a, qtype):
    """ggml's quantize_row_<type>_ref over the rows of a."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    n = a.size
    bs, ts = gguf.GGML_QUANT_SIZES[qtype]
    assert a.shape[-1] % bs == 0
    out = np.zeros(n // bs * ts, dtype=np.uint8)
    f = getattr(lib, "quantize_row_%s_ref" % {T.Q8_K: "q8_K", T.NVFP4: "nvfp4", T.Q8_1: "q8_1"}[qtype])
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    f.restype = None
    f(a.ctypes.data, out.ctypes.data, n)
    return out.reshape(*a.shape[:-1], a.shape[-1] // bs * ts)


GGML_DEQ = {
    T.F16: "ggml_fp16_to_fp32_row", T.BF16: "ggml_bf16_to_fp32_row",
    T.Q4_0: "dequantize_row_q4_0", T.Q4_1: "dequantize_row_q4_1",
    T.Q5_0: "dequantize_row_q5_0", T.Q5_1: "dequantize_row_q5_1",
    T.Q8_0: "dequantize_row_q8_0", T.Q2_K: "dequantize_row_q2_K",
    T.Q3_K: "dequantize_row_q3_K", T.Q4_K: "dequantize_row_q4_K",
    T.Q5_K: "dequantize_row_q5_K", T.Q6_K: "dequantize_row_q6_K",
    T.Q8_K: "dequantize_row_q8_K", T.IQ4_NL: "dequantize_row_iq4_nl",
    T.IQ4_XS: "dequantize_row_iq4_xs", T.TQ1_0: "dequantize_row_tq1_0",
    T.TQ2_0: "dequantize_row_tq2_0", T.MXFP4: "dequantize_row_mxfp4",
    T.IQ2_XXS: "dequantize_row_iq2_xxs", T.IQ2_XS: "dequantize_row_iq2_xs",
    T.IQ2_S: "dequantize_row_iq2_s", T.IQ3_XXS: "dequantize_row_iq3_xxs",
    T.IQ3_S: "dequantize_row_iq3_s", T.IQ1_S: "dequantize_row_iq1_s",
    T.IQ1_M: "dequantize_row_iq1_m", T.Q1_0: "dequantize_row_q1_0",
    T.NVFP4: "dequantize_row_nvfp4",
}
NUMPY_TYPES = {T.F64: np.float64, T.I8: np.int8, T.I16: np.int16, T.I32: np.int32, T.I64: np.int64}


def ggml_dequant(lib, raw, qtype, n):
    raw = np.ascontiguousarray(raw).view(np.uint8).ravel()
    if qtype == T.F32:
        return raw.view(np.float32).copy()
    out = np.empty(n, dtype=np.float32)
    f = getattr(lib, GGML_DEQ[qtype])
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    f.restype = None
    f(raw.ctypes.data, out.ctypes.data, n)
    return out


# ---------------------------------------------------------------- reference
def reference_f32(t):
    """gguf-py dequantization of a GGUFReader tensor, float32 numpy array.
    Types gguf-py 0.19.0 cannot dequantize are done here in numpy."""
    if t.tensor_type == T.Q8_K:  # block: f32 d, int8 qs[256], int16 bsums[16]; y = d * q
        raw = np.ascontiguousarray(t.data).view(np.uint8).reshape(-1, 292)
        d = raw[:, 0:4].copy().view("<f4")
        qs = raw[:, 4:260].copy().view(np.int8).astype(np.float32)
        return (d * qs).astype(np.float32)
    if t.tensor_type == T.Q1_0:  # block: f16 d, 128 sign bits (LSB first); y = bit ? d : -d
        raw = np.ascontiguousarray(t.data).view(np.uint8).reshape(-1, 18)
        d = raw[:, 0:2].copy().view("<f2").astype(np.float32)
        bits = np.unpackbits(raw[:, 2:18], axis=1, bitorder="little").astype(bool)
        return np.where(bits, d, -d).astype(np.float32)
    if t.tensor_type in NUMPY_TYPES:  # by value, rounded to nearest even
        return np.ascontiguousarray(t.data).view(NUMPY_TYPES[t.tensor_type]).astype(np.float32)
    return gguf.quants.dequantize(t.data, t.tensor_type)


def tensor_rows(lib, path, label):
    """(label, name, type, ne, sha) for every tensor of a GGUF file."""
    r = gguf.GGUFReader(path)
    rows = []
    for t in r.tensors:
        ne = [int(x) for x in t.shape]
        n = int(np.prod(ne))
        ref = np.ascontiguousarray(reference_f32(t), dtype="<f4").ravel()
        if ref.size != n:
            sys.exit(f"gen_gguf_types: {path}: {t.name}: {ref.size} values, expected {n}")
        if t.tensor_type in GGML_DEQ or t.tensor_type == T.F32:
            g = ggml_dequant(lib, t.data, t.tensor_type, n)
            if g.tobytes() != ref.tobytes():
                bad = np.flatnonzero(g.view(np.uint32) != ref.view(np.uint32))
                sys.exit(f"gen_gguf_types: {path}: {t.name} ({t.tensor_type.name}): gguf-py and ggml "
                         f"dequantization differ at {bad.size} values (first {bad[0]}: "
                         f"{ref[bad[0]]!r} vs {g[bad[0]]!r})")
        elif t.tensor_type not in NUMPY_TYPES:  # ggml has no to_float for I8..I64, F64
            sys.exit(f"gen_gguf_types: {path}: {t.name}: no ggml cross-check for {t.tensor_type.name}")
        sha = hashlib.sha256(ref.tobytes()).hexdigest()
        rows.append((label, t.name, t.tensor_type.name, ",".join(map(str, ne)), sha))
    return rows


def write_tsv(path, header_lines, rows):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for h in header_lines:
            f.write("# " + h + "\n")
        f.write("file\ttensor\ttype\tne\tsha256\n")
        for row in rows:
            f.write("\t".join(row) + "\n")
    os.replace(tmp, path)


def main():
    check_versions()
    os.makedirs(OUTDIR, exist_ok=True)
    lib = ggml_lib()
    src_t = source_tensors()
    src = os.path.join(OUTDIR, "F32.gguf")
    write_src(src, src_t)

    imatrix = imatrix_for(src_t)
    for name, how in TYPES:
        dst = os.path.join(OUTDIR, name + ".gguf")
        if how == "src":
            continue
        if how in ("ggml-ref", "numpy"):
            w = gguf.GGUFWriter(dst, "llama")
            w.add_name("fm dequant fixture")
            w.add_file_type(0)
            if how == "ggml-ref":
                for tn, a in src_t.items():
                    if a.ndim >= 2:
                        w.add_tensor(tn, ggml_quantize_rows(lib, a, T[name]), raw_dtype=T[name])
                    else:
                        w.add_tensor(tn, a)
            else:
                for tn, a in numpy_tensors(name).items():
                    w.add_tensor(tn, a)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            continue
        ftype, im = (how[:-3], imatrix[0]) if how.endswith("+im") else (how, None)
        quantize(src, dst, ftype, im)

    # A valid GGUF with a type fm has no dequantizer for (Q8_1, an activation
    # format of ggml): fm-inspect must exit 1 on it, not 2 (inspect_cli.sh).
    w = gguf.GGUFWriter(os.path.join(OUTDIR, "unsupported-Q8_1.gguf"), "llama")
    w.add_name("fm fixture: type without a dequantizer")
    w.add_tensor("q8_1.weight", ggml_quantize_rows(lib, src_t["blk.0.attn_v.weight"], T.Q8_1),
                 raw_dtype=T.Q8_1)
    w.add_tensor("f32.weight", src_t["output_norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    rows = []
    seen = set()
    for name, _ in TYPES:
        fn = name + ".gguf"
        rr = tensor_rows(lib, os.path.join(OUTDIR, fn), fn)
        types = {r[2] for r in rr}
        if name not in types:
            sys.exit(f"gen_gguf_types: {fn} holds {sorted(types)}, not {name}")
        seen |= types
        rows += rr
    hdr = ["Dequantization references, made by tests/gen/gen_gguf_types.py.",
           "sha256: of the tensor dequantized to little-endian float32 in storage order",
           "(ne2 x ne1 rows of ne0 values), by gguf-py 0.19.0 (Q8_K, Q1_0, F64, I8..I64:",
           "numpy), cross-checked bit-exact against ggml's dequantize_row_* / *_to_fp32_row",
           "(llama-cpp-python 0.3.36) for every type ggml can dequantize.",
           "ne: GGUF dimension order, ne0 (fastest) first.",
           "required types: " + " ".join(n for n, _ in REQUIRED)]
    write_tsv(os.path.join(OUTDIR, "REFERENCE.tsv"), hdr, rows)
    total = sum(os.path.getsize(os.path.join(OUTDIR, n + ".gguf")) for n, _ in TYPES)
    print(f"gen_gguf_types: {len(rows)} tensors in {len(TYPES)} files ({total} bytes), "
          f"types: {' '.join(sorted(seen))}")

    if os.path.exists(GEMMA):
        with open(GEMMA, "rb") as f:
            msha = hashlib.file_digest(f, "sha256").hexdigest()
        grows = tensor_rows(lib, GEMMA, os.path.basename(GEMMA))
        hdr = [f"Dequantization references for {os.path.basename(GEMMA)} (sha256 {msha}),",
               "made by tests/gen/gen_gguf_types.py; columns as tests/fixtures/gguf/REFERENCE.tsv."]
        write_tsv(GEMMA_TSV, hdr, grows)
        gt = sorted({r[2] for r in grows})
        print(f"gen_gguf_types: {len(grows)} gemma tensors, types: {' '.join(gt)}")
    else:
        print(f"gen_gguf_types: {GEMMA} absent (sh scripts/get-gemma.sh {GEMMA}); "
              f"{GEMMA_TSV} not regenerated")


if __name__ == "__main__":
    main()
