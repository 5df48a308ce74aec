#!/usr/bin/env python3
"""A random-weight MoE GGUF shaped like Qwen3-30B-A3B, Q4_K_M, for bench/run.sh.

Measure-only (not CI). Usage:
    gen_qwen3moe.py OUT.gguf [--layers N] [--zipf A] [--src SRC.gguf]
    gen_qwen3moe.py --set-router FILE.gguf --zipf A   (rewrite the routers in place)

Shape (Qwen3-30B-A3B): 48 layers (--layers), n_embd 2048, 128 experts,
top-8 renormalized, n_ff_exp 768, 32 query heads and 4 KV heads of 128,
q/k norm, vocab 151936 (synthetic SentencePiece tokens "\u2581t<i>": the
word "t123" is one token, so a prompt of N such words is N + 1 tokens).
48 layers give about 17.7 GB (Qwen3-30B-A3B Q4_K_M is 18.6 GB).

How it is made (a 30B-parameter F32 source cannot exist on this disk):
  1. a small F32 source GGUF with 2 layers of 16 distinct experts (full
     layer shapes, full vocab) is quantized by llama.cpp's own quantizer
     (llama_model_quantize, LLAMA_FTYPE_MOSTLY_Q4_K_M, llama-cpp-python
     0.3.36). With 2 layers the quantizer makes layer 0's ffn_down/attn_v
     Q4_K and layer 1's Q6_K. The result is cached next to OUT (--src).
  2. the N-layer file repeats those quantized blocks: layer l takes source
     layer 1 when llama.cpp's Q4_K_M rule use_more_bits(l, N) would give its
     ffn_down Q6_K (l < N/8, l >= 7N/8, (l - N/8) % 3 == 2), else source
     layer 0 -- the same per-layer type mix as a real N-layer Q4_K_M file --
     and for expert e the blocks of source expert perm_l(e) % 16 (a per-layer
     random permutation). Every (layer, expert) blob has its own file offset,
     so nothing is shared through the page cache, although blobs repeat.
  3. each layer gets its own F32 router (ffn_gate_inp), N(0, 9/2048).
  The file is written tensor by tensor (gguf-py GGUFWriter: add_tensor_info,
  header, then write_tensor_data per tensor; nothing is buffered), so about
  one fused expert tensor (~170 MB) is in memory at a time.

Routing locality (--zipf A, default 0 = none). Random routers route almost
uniformly: every expert is equally likely, so an expert cache of a fraction
f of the experts hits about f of the time (pessimistic for any cache). The
generator keeps one hidden dimension (d0 = 0) as a constant channel: every
token embedding has the value K = 8 there, no layer writes to it
(attn_output and ffn_down rows d0 are zero, so the residual keeps K exactly)
and no layer reads it (attn_q/k/v and ffn_gate/up columns d0 are zero
before quantization). With --zipf A > 0, router column d0 becomes a bias:
expert of rank r (a random order per layer) gets -A * 3 * ln(r) / 8 there,
i.e. a logit offset of about -A * sigma * ln(r) * (K / rms(x)) / K where
sigma ~ 3 is the spread of the random logits, so the selection frequency
falls off roughly like r^-A (Zipf-like). The strength falls slowly with
depth as the residual RMS grows (layer outputs are scaled by 0.35 to keep
that growth small). --zipf 0 leaves column d0 zero: the channel does not
touch routing. --set-router rewrites only the F32 router data of an
existing file (same layout), so one big file serves every A.
Fixed seeds: the same bytes every time for the same llama.cpp build."""
import argparse
import ctypes
import os
import sys
import tempfile

import numpy as np

import gguf

ARCH = "qwen3moe"
E, H, KV, D = 2048, 32, 4, 128
X_SRC, X = 16, 128
K_USED = 8
F = 768
V = 151936
D0, K0 = 0, 8.0      # constant channel: dimension and value
OUT_SCALE = 0.35     # attn_output / ffn_down scale (keeps the residual RMS growth small)
ROUTER_SCALE = 3.0


def add_vocab(w):
    toks, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        toks.append("<0x%02X>" % b)
        scores.append(0.0)
        types.append(6)
    for c in ["\u2581", "t", "\u2581t"] + [str(d) for d in range(10)]:  # so "t123" is one token
        toks.append(c)
        scores.append(0.0)
        types.append(1)
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
    w.add_name("fm-bench-qwen3moe-%dL" % n_layer)
    w.add_context_length(40960)
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
    w.add_expert_used_count(K_USED)
    w.add_expert_feed_forward_length(F)
    add_vocab(w)


def mat(rng, rows, cols, scale=1.0):
    return (rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(scale / np.sqrt(cols)))


def vec(rng, n, mean=1.0, sd=0.1):
    return (mean + sd * rng.standard_normal(n)).astype(np.float32)


def no_read(a):   # the layer does not read the constant channel (input column d0)
    a[..., D0] = 0.0
    return a


def no_write(a):  # the layer does not write the constant channel (output row d0)
    a[..., D0, :] = 0.0
    return a


def build_source(path):
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(path, ARCH)
    add_hparams(w, 2, X_SRC)
    emb = rng.standard_normal((V, E), dtype=np.float32)
    emb[:, D0] = K0
    w.add_tensor("token_embd.weight", emb)
    on = vec(rng, E)
    on[D0] = 1.0
    w.add_tensor("output_norm.weight", on)
    out = no_read(mat(rng, V, E, 2.0))
    out[2, :] = 0.0  # EOS logit is always 0 (mid-range): never sampled, runs have N tokens
    w.add_tensor("output.weight", out)
    for il in range(2):
        p = f"blk.{il}."
        an = vec(rng, E)
        fn = vec(rng, E)
        fn[D0] = 1.0
        w.add_tensor(p + "attn_norm.weight", an)
        w.add_tensor(p + "attn_q.weight", no_read(mat(rng, H * D, E, 2.0)))
        w.add_tensor(p + "attn_k.weight", no_read(mat(rng, KV * D, E, 2.0)))
        w.add_tensor(p + "attn_v.weight", no_read(mat(rng, KV * D, E)))
        w.add_tensor(p + "attn_output.weight", no_write(mat(rng, E, H * D, OUT_SCALE)))
        w.add_tensor(p + "attn_q_norm.weight", vec(rng, D))
        w.add_tensor(p + "attn_k_norm.weight", vec(rng, D))
        w.add_tensor(p + "ffn_norm.weight", fn)
        w.add_tensor(p + "ffn_gate_inp.weight", router(0, il, X_SRC))
        w.add_tensor(p + "ffn_gate_exps.weight", np.stack([no_read(mat(rng, F, E, 1.5)) for _ in range(X_SRC)]))
        w.add_tensor(p + "ffn_up_exps.weight", np.stack([no_read(mat(rng, F, E, 1.5)) for _ in range(X_SRC)]))
        w.add_tensor(p + "ffn_down_exps.weight", np.stack([no_write(mat(rng, E, F, OUT_SCALE)) for _ in range(X_SRC)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src, dst):
    import llama_cpp
    p = llama_cpp.llama_model_quantize_default_params()
    p.nthread = os.cpu_count() or 2
    p.ftype = 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed: {rc}")


def router(zipf, il, n_expert=X):
    """Layer il's F32 router [n_expert][E]; depends only on (il, zipf)."""
    rng = np.random.default_rng(1000 + il)
    r = mat(rng, n_expert, E, ROUTER_SCALE)
    rank = rng.permutation(n_expert) + 1
    r[:, D0] = 0.0
    if zipf > 0:
        r[:, D0] = (-zipf * ROUTER_SCALE * np.log(rank) / K0).astype(np.float32)
    return r


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def raw(t):
    return np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)


def build_big(qpath, out, n_layer, zipf):
    r = gguf.GGUFReader(qpath)
    src = {t.name: t for t in r.tensors}
    rng = np.random.default_rng(11)
    w = gguf.GGUFWriter(out, ARCH)
    add_hparams(w, n_layer, X)
    plan = []  # producers in file order

    def info(name, t, nbytes=None, lead=None):
        bs, ts = gguf.GGML_QUANT_SIZES[t.tensor_type]
        ne = [int(x) for x in t.shape]
        if lead is not None:
            ne[-1] = lead
        shape = list(reversed(ne))  # numpy order
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            nb = int(np.prod(shape)) * 4
            w.add_tensor_info(name, shape, np.dtype(np.float32), nb)
        else:
            shape[-1] = shape[-1] // bs * ts
            nb = int(np.prod(shape))
            w.add_tensor_info(name, shape, np.dtype(np.uint8), nb, raw_dtype=t.tensor_type)
        return nb

    for g in ("token_embd.weight", "output_norm.weight", "output.weight"):
        t = src[g]
        info(g, t)
        plan.append(lambda t=t: raw(t))
    for il in range(n_layer):
        s = 1 if use_more_bits(il, n_layer) else 0
        for suf in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm",
                    "attn_k_norm", "ffn_norm"):
            t = src[f"blk.{s}.{suf}.weight"]
            info(f"blk.{il}.{suf}.weight", t)
            plan.append(lambda t=t: raw(t))
        name = f"blk.{il}.ffn_gate_inp.weight"
        w.add_tensor_info(name, [X, E], np.dtype(np.float32), X * E * 4)
        plan.append(lambda il=il: router(zipf, il).reshape(-1).view(np.uint8))
        perm = rng.permutation(X)
        for suf in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
            t = src[f"blk.{s}.{suf}.weight"]
            info(f"blk.{il}.{suf}.weight", t, lead=X)

            def fused(t=t, perm=perm):
                b = raw(t).reshape(X_SRC, -1)
                return np.ascontiguousarray(b[perm % X_SRC]).reshape(-1)

            plan.append(fused)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for fn in plan:
        w.write_tensor_data(fn())
    w.fout[0].flush()
    os.fsync(w.fout[0].fileno())
    w.close()


def set_router(path, zipf):
    r = gguf.GGUFReader(path, "r+")
    n = 0
    for t in r.tensors:
        if t.name.endswith(".ffn_gate_inp.weight"):
            il = int(t.name.split(".")[1])
            t.data[...] = router(zipf, il).reshape(t.data.shape)
            n += 1
    r.data.flush()
    print(f"{path}: {n} routers rewritten for --zipf {zipf}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?")
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--zipf", type=float, default=0.0)
    ap.add_argument("--src", help="quantized 2-layer source (default: OUT's dir/qwen3moe-src-q4km.gguf)")
    ap.add_argument("--set-router", metavar="FILE")
    a = ap.parse_args()
    if a.set_router:
        set_router(a.set_router, a.zipf)
        return
    if not a.out:
        ap.error("OUT.gguf is required")
    qdir = os.path.dirname(os.path.abspath(a.out))
    qpath = a.src or os.path.join(qdir, "qwen3moe-src-q4km.gguf")
    if not os.path.exists(qpath):
        with tempfile.TemporaryDirectory(dir=qdir) as td:
            srcp = os.path.join(td, "src-f32.gguf")
            build_source(srcp)
            quantize(srcp, qpath + ".tmp")
            os.rename(qpath + ".tmp", qpath)
    build_big(qpath, a.out + ".tmp", a.layers, a.zipf)
    os.rename(a.out + ".tmp", a.out)
    print(f"{a.out}: {os.path.getsize(a.out)} bytes, {a.layers} layers x {X} experts, zipf {a.zipf}")


if __name__ == "__main__":
    main()
