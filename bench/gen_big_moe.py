#!/usr/bin/env python3
"""A random-weight qwen3moe GGUF of a few GB for bench/bigger_than_ram.sh.

Measure-only (not CI). Usage:
    /work/venv/bin/python bench/gen_big_moe.py OUT.gguf [N_LAYER]

Shape (Qwen3-30B-A3B's per-layer expert shape): n_embd 2048, 128 experts,
top-8 renormalized, n_ff_exp 768, 16 heads of 128 (4 KV heads), q/k norm,
a synthetic 2048-token SentencePiece vocab. Q4_K_M: one expert is about
3 MB (gate/up Q4_K, down Q4_K or Q6_K), one layer about 380 MB; 14 layers
give about 5.4 GB.

How it is made (a full-size F32 source would not fit the disk):
  1. a small F32 source GGUF with 2 layers of 16 distinct experts is
     quantized with llama.cpp's own quantizer (llama_model_quantize,
     Q4_K_M, llama-cpp-python 0.3.36);
  2. the big file repeats those quantized tensors: layer l takes the dense
     tensors of source layer l % 2 and, for expert e, the quantized blocks
     of source expert perm_l(e) % 16 (a per-layer permutation), so every
     (layer, expert) blob sits at its own file offset (separate reads, no
     page-cache sharing) although blobs repeat byte-for-byte;
  3. each layer gets its own random F32 router (ffn_gate_inp) whose row
     norms are skewed (1 + 0.6 * z, z ~ |N(0,1)| sorted into a random
     order), so some experts are picked more often than others, as in real
     MoE models (a uniform router would make every cache policy equal).
Fixed seeds: the same file every time (for a given llama.cpp build)."""
import ctypes
import os
import sys
import tempfile

import numpy as np

import gguf
import llama_cpp

ARCH = "qwen3moe"
E, H, KV, D = 2048, 16, 4, 128
X_SRC, X = 16, 128
K = 8
F = 768
V = 2048


def add_vocab(w):
    toks, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        toks.append("<0x%02X>" % b)
        scores.append(0.0)
        types.append(6)
    i = 0
    while len(toks) < V:
        toks.append("\u2581t%d" % i)
        scores.append(-float(i))
        types.append(1)
        i += 1
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)


def add_hparams(w, n_layer, n_expert):
    w.add_name("fm-bench-big-moe")
    w.add_context_length(4096)
    w.add_embedding_length(E)
    w.add_block_count(n_layer)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_key_length(D)
    w.add_value_length(D)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1e6)
    w.add_feed_forward_length(6144)
    w.add_expert_count(n_expert)
    w.add_expert_used_count(K)
    w.add_expert_feed_forward_length(F)
    add_vocab(w)


def mat(rng, rows, cols, scale=1.0):
    return (rng.standard_normal((rows, cols)) * (scale / np.sqrt(cols))).astype(np.float32)


def vec(rng, n, mean=1.0, sd=0.1):
    return (mean + sd * rng.standard_normal(n)).astype(np.float32)


def build_source(path):
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(path, ARCH)
    add_hparams(w, 2, X_SRC)
    w.add_tensor("token_embd.weight", rng.standard_normal((V, E)).astype(np.float32))
    w.add_tensor("output_norm.weight", vec(rng, E))
    w.add_tensor("output.weight", mat(rng, V, E, 2.0))
    for il in range(2):
        p = f"blk.{il}."
        w.add_tensor(p + "attn_norm.weight", vec(rng, E))
        w.add_tensor(p + "attn_q.weight", mat(rng, H * D, E, 2.0))
        w.add_tensor(p + "attn_k.weight", mat(rng, KV * D, E, 2.0))
        w.add_tensor(p + "attn_v.weight", mat(rng, KV * D, E))
        w.add_tensor(p + "attn_output.weight", mat(rng, E, H * D))
        w.add_tensor(p + "attn_q_norm.weight", vec(rng, D))
        w.add_tensor(p + "attn_k_norm.weight", vec(rng, D))
        w.add_tensor(p + "ffn_norm.weight", vec(rng, E))
        w.add_tensor(p + "ffn_gate_inp.weight", mat(rng, X_SRC, E, 3.0))
        w.add_tensor(p + "ffn_gate_exps.weight", np.stack([mat(rng, F, E, 1.5) for _ in range(X_SRC)]))
        w.add_tensor(p + "ffn_up_exps.weight", np.stack([mat(rng, F, E, 1.5) for _ in range(X_SRC)]))
        w.add_tensor(p + "ffn_down_exps.weight", np.stack([mat(rng, E, F) for _ in range(X_SRC)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src, dst):
    p = llama_cpp.llama_model_quantize_default_params()
    p.nthread = 2
    p.ftype = 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed: {rc}")


def build_big(qpath, out, n_layer):
    r = gguf.GGUFReader(qpath)
    src = {t.name: t for t in r.tensors}
    rng = np.random.default_rng(11)
    w = gguf.GGUFWriter(out, ARCH)
    add_hparams(w, n_layer, X)
    plan = []  # (name, producer) in file order

    def raw(t):
        return np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)

    def qtensor(name, t, data_fn):
        # byte shape: ne reversed, last dim in bytes
        bs, ts = gguf.GGML_QUANT_SIZES[t.tensor_type]
        ne = [int(x) for x in t.shape]  # ne order
        byte_shape = list(reversed(ne))
        byte_shape[-1] = byte_shape[-1] // bs * ts
        nbytes = int(np.prod(byte_shape))
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            w.add_tensor_info(name, list(reversed(ne)), np.dtype(np.float32), nbytes)
        else:
            w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=t.tensor_type)
        plan.append((name, data_fn, t.tensor_type))

    for g in ("token_embd.weight", "output_norm.weight", "output.weight"):
        t = src[g]
        qtensor(g, t, (lambda t=t: raw(t)))
    for il in range(n_layer):
        s = il % 2
        for suf in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm",
                    "attn_k_norm", "ffn_norm"):
            t = src[f"blk.{s}.{suf}.weight"]
            qtensor(f"blk.{il}.{suf}.weight", t, (lambda t=t: raw(t)))
        # router: own random F32 rows, skewed norms
        z = np.sort(np.abs(rng.standard_normal(X)))[rng.permutation(X)]
        router = mat(rng, X, E, 3.0) * (1.0 + 0.6 * z)[:, None].astype(np.float32)
        name = f"blk.{il}.ffn_gate_inp.weight"
        w.add_tensor_info(name, [X, E], np.dtype(np.float32), router.nbytes)
        plan.append((name, (lambda a=router: a.reshape(-1).view(np.uint8)), gguf.GGMLQuantizationType.F32))
        perm = rng.permutation(X)
        for suf in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
            t = src[f"blk.{s}.{suf}.weight"]
            bs, ts = gguf.GGML_QUANT_SIZES[t.tensor_type]
            ne = [int(x) for x in t.shape]  # [cols, rows, X_SRC]
            slice_b = ne[0] // bs * ts * ne[1]
            nbytes = slice_b * X
            w.add_tensor_info(f"blk.{il}.{suf}.weight", [X, ne[1], ne[0] // bs * ts], np.dtype(np.uint8),
                              nbytes, raw_dtype=t.tensor_type)

            def fused(t=t, slice_b=slice_b, perm=perm):
                b = raw(t).reshape(X_SRC, slice_b)
                return np.ascontiguousarray(b[perm % X_SRC]).reshape(-1)

            plan.append((f"blk.{il}.{suf}.weight", fused, t.tensor_type))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, fn, _ in plan:
        w.write_tensor_data(fn())
    w.close()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    n_layer = int(sys.argv[2]) if len(sys.argv) > 2 else 14
    qdir = os.path.dirname(os.path.abspath(out))
    qpath = os.path.join(qdir, "big-moe-src-q4km.gguf")
    if not os.path.exists(qpath):
        with tempfile.TemporaryDirectory(dir=qdir) as td:
            srcp = os.path.join(td, "src-f32.gguf")
            build_source(srcp)
            quantize(srcp, qpath + ".tmp")
            os.rename(qpath + ".tmp", qpath)
    build_big(qpath, out + ".tmp", n_layer)
    os.rename(out + ".tmp", out)
    print(f"{out}: {os.path.getsize(out)} bytes, {n_layer} layers x {X} experts")


if __name__ == "__main__":
    main()
