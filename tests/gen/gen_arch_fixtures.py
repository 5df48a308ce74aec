#!/usr/bin/env python3
"""Tiny random-weight GGUF models, one per architecture fm-run supports, with
llama.cpp's logits for every position of a fixed token sequence.

Writes tests/fixtures/arch/<name>.gguf, <name>.logits (float32 little-endian,
[n_tokens][n_vocab], the sequence evaluated as one batch), <name>.dec.logits
(the first N_PROMPT ids as a batch, then one token at a time: llama.cpp's
decode path) and <name>.json (token ids, sizes, oracle set-up).
tests/unit/test_logits.c runs fm's forward pass on each and compares.

Oracle set-up (tests/../shared/oracles.md): llama-cpp-python 0.3.36, F32 KV
cache (type_k = type_v = 0), flash attention off, every position's logits
(logits_all). The f32 fixtures store every weight in F32. Two more are
quantized with llama.cpp's own quantizer (llama_model_quantize): a qwen3moe
in Q4_K_M and a llama in Q6_K; only the quantized GGUF is kept.

Fixed seeds: re-running gives identical files (for a given llama.cpp build).
Run from the repo root with /work/venv/bin/python (gguf==0.19.0,
llama-cpp-python==0.3.36)."""
import ctypes
import json
import os
import sys
import tempfile

import numpy as np

import gguf
import llama_cpp

OUT = "tests/fixtures/arch"
N_TOKENS = 40
N_PROMPT = 20
N_VOCAB = 320


def check_versions():
    want = {"gguf": "0.19.0", "llama_cpp": "0.3.36"}
    import importlib.metadata as md
    got = {"gguf": md.version("gguf"), "llama_cpp": llama_cpp.__version__}
    for k, v in want.items():
        if got[k] != v:
            sys.exit(f"gen_arch_fixtures: need {k}=={v}, found {got[k]}")


def add_vocab(w, n_vocab):
    """A minimal SentencePiece ("llama") vocab: <unk> <s> </s>, the 256 byte
    tokens, then plain pieces. Only there so llama.cpp loads the model; the
    tests feed token ids directly."""
    toks, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        toks.append("<0x%02X>" % b)
        scores.append(0.0)
        types.append(6)
    i = 0
    while len(toks) < n_vocab:
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
    w.add_add_bos_token(False)


class Gen:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def mat(self, rows, cols, scale=1.0):
        # numpy [rows][cols] = GGUF ne [cols, rows]; ~unit-variance outputs
        return (self.rng.standard_normal((rows, cols)) * (scale / np.sqrt(cols))).astype(np.float32)

    def vec(self, n, mean=0.0, sd=0.1):
        return (mean + sd * self.rng.standard_normal(n)).astype(np.float32)


def build(cfg, path, vocab=True):
    a = cfg["arch"]
    g = Gen(cfg["seed"])
    E, H, KV, D = cfg["n_embd"], cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"]
    V = N_VOCAB if vocab else cfg.get("n_vocab", 16)
    w = gguf.GGUFWriter(path, a)
    w.add_name("fm-test-" + cfg["name"])
    w.add_context_length(cfg.get("n_ctx_train", 256))
    w.add_embedding_length(E)
    w.add_block_count(cfg["n_layer"])
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    if cfg.get("explicit_head_dim", True):
        w.add_key_length(D)
        w.add_value_length(D)
    w.add_layer_norm_rms_eps(cfg.get("rms_eps", 1e-6))
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    if "rope_dim" in cfg:
        w.add_rope_dimension_count(cfg["rope_dim"])
    if "n_ff" in cfg:
        w.add_feed_forward_length(cfg["n_ff"])
    if cfg.get("n_expert"):
        w.add_expert_count(cfg["n_expert"])
        w.add_expert_used_count(cfg["n_expert_used"])
        if "n_ff_exp" in cfg:
            w.add_expert_feed_forward_length(cfg["n_ff_exp"])
        if "n_ff_shexp" in cfg:
            w.add_expert_shared_feed_forward_length(cfg["n_ff_shexp"])
    if "rope_scaling" in cfg:
        rs = cfg["rope_scaling"]
        w.add_string(f"{a}.rope.scaling.type", rs["type"])
        w.add_float32(f"{a}.rope.scaling.factor", rs["factor"])
        if "orig_ctx" in rs:
            w.add_uint32(f"{a}.rope.scaling.original_context_length", rs["orig_ctx"])
    if "sliding_window" in cfg:
        w.add_sliding_window(cfg["sliding_window"])
    if vocab:
        add_vocab(w, V)

    t = {}
    t["token_embd.weight"] = (g.rng.standard_normal((V, E)) * cfg.get("embd_sd", 1.0)).astype(np.float32)
    t["output_norm.weight"] = g.vec(E, 1.0)
    if not cfg.get("tied", False):
        t["output.weight"] = g.mat(V, E, 2.0)
    ff_act_scale = 1.5
    for il in range(cfg["n_layer"]):
        p = f"blk.{il}."
        t[p + "attn_norm.weight"] = g.vec(E, 1.0)
        t[p + "attn_q.weight"] = g.mat(H * D, E, 2.0)
        t[p + "attn_k.weight"] = g.mat(KV * D, E, 2.0)
        t[p + "attn_v.weight"] = g.mat(KV * D, E)
        t[p + "attn_output.weight"] = g.mat(E, H * D)
        if cfg.get("qkv_bias"):
            t[p + "attn_q.bias"] = g.vec(H * D, 0.0, 0.2)
            t[p + "attn_k.bias"] = g.vec(KV * D, 0.0, 0.2)
            t[p + "attn_v.bias"] = g.vec(KV * D, 0.0, 0.2)
        if cfg.get("qk_norm"):
            t[p + "attn_q_norm.weight"] = g.vec(D, 1.0)
            t[p + "attn_k_norm.weight"] = g.vec(D, 1.0)
        if cfg.get("post_norms"):
            t[p + "post_attention_norm.weight"] = g.vec(E, 1.0)
            t[p + "post_ffw_norm.weight"] = g.vec(E, 1.0)
        t[p + "ffn_norm.weight"] = g.vec(E, 1.0)
        if cfg.get("n_expert"):
            X, F = cfg["n_expert"], cfg.get("n_ff_exp", cfg.get("n_ff"))
            t[p + "ffn_gate_inp.weight"] = g.mat(X, E, 3.0)
            t[p + "ffn_gate_exps.weight"] = np.stack([g.mat(F, E, ff_act_scale) for _ in range(X)])
            t[p + "ffn_up_exps.weight"] = np.stack([g.mat(F, E, ff_act_scale) for _ in range(X)])
            t[p + "ffn_down_exps.weight"] = np.stack([g.mat(E, F) for _ in range(X)])
            if cfg.get("n_ff_shexp"):
                S = cfg["n_ff_shexp"]
                t[p + "ffn_gate_inp_shexp.weight"] = g.vec(E, 0.0, 2.0 / np.sqrt(E))
                t[p + "ffn_gate_shexp.weight"] = g.mat(S, E, ff_act_scale)
                t[p + "ffn_up_shexp.weight"] = g.mat(S, E, ff_act_scale)
                t[p + "ffn_down_shexp.weight"] = g.mat(E, S)
        else:
            F = cfg["n_ff"]
            t[p + "ffn_gate.weight"] = g.mat(F, E, ff_act_scale)
            t[p + "ffn_up.weight"] = g.mat(F, E, ff_act_scale)
            t[p + "ffn_down.weight"] = g.mat(E, F)
    for k, v in t.items():
        w.add_tensor(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src, dst, ftype):
    p = llama_cpp.llama_model_quantize_default_params()
    p.nthread = 2
    p.ftype = ftype
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed: {rc}")


def oracle_logits(path, ids, n_prompt=None):
    """Every position's logits. n_prompt None: one batch (prompt processing);
    else the first n_prompt ids as a batch, then one token at a time (decode),
    which takes different float paths in llama.cpp."""
    llm = llama_cpp.Llama(model_path=path, n_ctx=64, n_batch=64, n_ubatch=64, n_threads=2,
                          logits_all=True, type_k=0, type_v=0, flash_attn=False, verbose=False,
                          seed=1)
    assert llm.n_vocab() == N_VOCAB, llm.n_vocab()
    if n_prompt is None:
        llm.eval(ids)
    else:
        llm.eval(ids[:n_prompt])
        for t in ids[n_prompt:]:
            llm.eval([t])
    out = np.array(llm.scores[: len(ids)], dtype=np.float32)
    assert out.shape == (len(ids), N_VOCAB)
    assert np.all(np.isfinite(out))
    del llm
    return out


CONFIGS = [
    # llama: dense, GQA 4/2, NORM rope, linear rope scaling.
    dict(name="llama", arch="llama", seed=101, n_layer=2, n_embd=64, n_head=4, n_head_kv=2,
         head_dim=16, n_ff=128, rope_theta=10000.0, explicit_head_dim=False,
         rope_scaling=dict(type="linear", factor=2.0)),
    # mixtral = llama with 4 experts, top-2, renormalized; n_ff_exp from feed_forward_length.
    dict(name="mixtral", arch="llama", seed=102, n_layer=2, n_embd=64, n_head=4, n_head_kv=2,
         head_dim=16, n_ff=64, n_expert=4, n_expert_used=2, rope_theta=1e6, explicit_head_dim=False),
    # qwen2: q/k/v biases, tied output.
    dict(name="qwen2", arch="qwen2", seed=103, n_layer=2, n_embd=64, n_head=4, n_head_kv=2,
         head_dim=16, n_ff=128, qkv_bias=True, tied=True, rope_theta=1e6, explicit_head_dim=False),
    # qwen3: q/k norm, head_dim 32 != n_embd/n_head, YaRN rope scaling.
    dict(name="qwen3", arch="qwen3", seed=104, n_layer=2, n_embd=64, n_head=4, n_head_kv=2,
         head_dim=32, n_ff=128, qk_norm=True, rope_theta=1e6, n_ctx_train=256,
         rope_scaling=dict(type="yarn", factor=4.0, orig_ctx=64)),
    # qwen2moe: 4 experts top-2 without renormalization, shared expert with sigmoid gate, biases.
    dict(name="qwen2moe", arch="qwen2moe", seed=105, n_layer=2, n_embd=64, n_head=4, n_head_kv=2,
         head_dim=16, n_ff=128, n_expert=4, n_expert_used=2, n_ff_exp=32, n_ff_shexp=64,
         qkv_bias=True, rope_theta=1e6, explicit_head_dim=False),
    # qwen3moe: 8 experts top-2 renormalized, q/k norm, head_dim 32.
    dict(name="qwen3moe", arch="qwen3moe", seed=106, n_layer=2, n_embd=64, n_head=4, n_head_kv=2,
         head_dim=32, n_ff=192, n_expert=8, n_expert_used=2, n_ff_exp=16, qk_norm=True, rope_theta=1e6),
    # gemma3: 6 layers = 5 sliding (window 8, rope base 10000) + 1 global (1e6); post norms,
    # q/k norm, GeGLU, sqrt(n_embd) embedding scale, tied output.
    dict(name="gemma3", arch="gemma3", seed=107, n_layer=6, n_embd=32, n_head=2, n_head_kv=1,
         head_dim=16, n_ff=64, qk_norm=True, post_norms=True, tied=True, sliding_window=8,
         rope_theta=1e6, embd_sd=0.05),
]

QUANT_CONFIGS = [
    # K-quants need rows that are multiples of 256.
    (dict(name="qwen3moe-q4km", arch="qwen3moe", seed=201, n_layer=2, n_embd=256, n_head=4,
          n_head_kv=2, head_dim=64, n_ff=512, n_expert=4, n_expert_used=2, n_ff_exp=256,
          qk_norm=True, rope_theta=1e6), 15, "Q4_K_M"),  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    (dict(name="llama-q6k", arch="llama", seed=202, n_layer=2, n_embd=256, n_head=4, n_head_kv=2,
          head_dim=64, n_ff=256, rope_theta=10000.0, explicit_head_dim=False), 18, "Q6_K"),
]


def write_fixture(cfg, gguf_path, quant=None):
    rng = np.random.default_rng(cfg["seed"] + 1000)
    ids = [int(x) for x in rng.integers(3, N_VOCAB, N_TOKENS)]
    logits = oracle_logits(gguf_path, ids)
    name = cfg["name"]
    logits.astype("<f4").tofile(os.path.join(OUT, name + ".logits"))
    dec = oracle_logits(gguf_path, ids, N_PROMPT)
    dec.astype("<f4").tofile(os.path.join(OUT, name + ".dec.logits"))
    meta = {
        "gguf": name + ".gguf",
        "arch": cfg["arch"],
        "n_tokens": N_TOKENS,
        "n_vocab": N_VOCAB,
        "ids": ids,
        "n_prompt": N_PROMPT,
        "weights": quant or "F32",
        "oracle": "llama-cpp-python 0.3.36, type_k=type_v=F32, flash_attn off, n_batch 64; "
                  ".logits: one batch; .dec.logits: n_prompt ids as a batch, then one at a time",
    }
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"{name}: {os.path.getsize(gguf_path)} bytes gguf, logits rms {np.sqrt((logits**2).mean()):.3f}")


def write_fuzz_corpus():
    """Seeds for tests/fuzz/fuzz_arch.c: each architecture at toy size (n_embd
    8, no tokenizer), a few KB each."""
    d = "tests/fuzz/corpus/arch"
    os.makedirs(d, exist_ok=True)
    for cfg in CONFIGS:
        c = dict(cfg, n_embd=8, n_head=2, n_head_kv=1, head_dim=4, n_vocab=16)
        for k in ("n_ff", "n_ff_exp", "n_ff_shexp"):
            if k in c:
                c[k] = 8
        if c["arch"] == "gemma3":
            c["n_layer"] = 6
        build(c, os.path.join(d, cfg["name"] + ".gguf"), vocab=False)


def main():
    check_versions()
    os.makedirs(OUT, exist_ok=True)
    only = set(sys.argv[1:])
    if not only:
        write_fuzz_corpus()
    for cfg in CONFIGS:
        if only and cfg["name"] not in only:
            continue
        path = os.path.join(OUT, cfg["name"] + ".gguf")
        build(cfg, path)
        write_fixture(cfg, path)
    for cfg, ftype, qname in QUANT_CONFIGS:
        if only and cfg["name"] not in only:
            continue
        with tempfile.TemporaryDirectory() as td:
            src = os.path.join(td, "f32.gguf")
            build(cfg, src)
            dst = os.path.join(OUT, cfg["name"] + ".gguf")
            quantize(src, dst, ftype)
        write_fixture(cfg, dst, qname)


if __name__ == "__main__":
    main()
