#!/usr/bin/env python3
"""A large dense llama-shaped GGUF with random Q8_0 weights, for fm-run's
layer streaming (issue 6: "dense models stream whole layers the same way when
they do not fit"); bench/dense_stream.sh runs it under a cgroup limit.

    gen_dense.py OUT.gguf [--layers 32] [--embd 2048] [--ff 5632] [--seed 1]

Shape: n_embd 2048, 16 query / 4 KV heads of 128, FFN 5632, 32 layers by
default (~1.5 GB). Q8_0 blocks are written directly (random int8 quants, f16
scales ~ 1/sqrt(row length) so activations stay in range): no F32 source is
needed. The vocabulary (320 tokens, SentencePiece-style with byte fallback)
is copied from tests/fixtures/arch/llama.gguf so `fm-run -p` works; the text
is meaningless (random weights): only that fm-run's output under a limit
equals its output without one matters. Tensors are written one at a time
(gguf-py GGUFWriter, write_tensor_data), so memory stays small. Pinned:
gguf 0.19.0, numpy."""
import argparse
import os

import gguf
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "tests", "fixtures", "arch", "llama.gguf")


def q8_0(rng, rows, cols, scale):
    """rows x cols Q8_0 bytes: per 32 values an f16 scale then 32 int8."""
    nb = cols // 32
    d = (rng.uniform(0.5, 1.5, size=(rows, nb)) * scale / 64.0).astype(np.float16)
    q = rng.integers(-127, 128, size=(rows, nb, 32), dtype=np.int8)
    out = np.empty((rows, nb, 34), dtype=np.uint8)
    out[:, :, :2] = d.view(np.uint8).reshape(rows, nb, 2)
    out[:, :, 2:] = q.view(np.uint8)
    return out.reshape(rows, nb * 34)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--embd", type=int, default=2048)
    ap.add_argument("--ff", type=int, default=5632)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    src = gguf.GGUFReader(FIXTURE)
    tokens = [bytes(src.fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8")
              for i in src.fields["tokenizer.ggml.tokens"].data]
    scores = [float(src.fields["tokenizer.ggml.scores"].parts[i][0]) for i in src.fields["tokenizer.ggml.scores"].data]
    ttypes = [int(src.fields["tokenizer.ggml.token_type"].parts[i][0])
              for i in src.fields["tokenizer.ggml.token_type"].data]
    n_vocab, D, F, H, HKV, HD = len(tokens), a.embd, a.ff, a.embd // 128, max(1, a.embd // 512), 128

    w = gguf.GGUFWriter(a.out + ".tmp", "llama")
    w.add_name("fm-bench-dense")
    w.add_context_length(4096)
    w.add_embedding_length(D)
    w.add_block_count(a.layers)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(HKV)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(ttypes)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)

    mats = []  # (name, rows, cols) in GGUF order: ne = [cols, rows]
    mats.append(("token_embd.weight", n_vocab, D))
    for il in range(a.layers):
        p = "blk.%d." % il
        mats += [(p + "attn_q.weight", H * HD, D), (p + "attn_k.weight", HKV * HD, D),
                 (p + "attn_v.weight", HKV * HD, D), (p + "attn_output.weight", D, H * HD),
                 (p + "ffn_gate.weight", F, D), (p + "ffn_up.weight", F, D), (p + "ffn_down.weight", D, F)]
    mats.append(("output.weight", n_vocab, D))
    norms = ["output_norm.weight"] + ["blk.%d.%s" % (il, n) for il in range(a.layers)
                                      for n in ("attn_norm.weight", "ffn_norm.weight")]
    for name, rows, cols in mats:
        w.add_tensor_info(name, (rows, cols * 34 // 32), np.dtype(np.uint8), rows * cols * 34 // 32,
                          raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    for name in norms:
        w.add_tensor_info(name, (D,), np.dtype(np.float32), D * 4, raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, rows, cols in mats:
        w.write_tensor_data(q8_0(rng, rows, cols, 1.0 / np.sqrt(cols)))
    for name in norms:
        w.write_tensor_data(np.ones(D, dtype=np.float32))
    w.close()
    os.replace(a.out + ".tmp", a.out)
    print("wrote %s: %d layers, %.2f GB" % (a.out, a.layers, os.path.getsize(a.out) / 1e9))


if __name__ == "__main__":
    main()
