#!/usr/bin/env python3
"""Fixtures for fm-convert / fm-requant (issue 5), under tests/fixtures/convert/.

1. Tiny random Hugging Face models made with transformers' own classes
   (fixed seeds), saved with save_pretrained (safetensors; qwen3moe-f32 in
   two shards), each with a small byte-level BPE tokenizer.json (qwen2
   pre-tokenizer regex) trained on tests/fixtures/tok/multilingual.txt:
     qwen3moe-f32   Qwen3MoeForCausalLM  f32, 8 experts, sharded
     qwen3moe-bf16  Qwen3MoeForCausalLM  bf16
     mixtral-f32    MixtralForCausalLM   f32 (llama arch: q/k rows permuted)
     qwen2moe-bf16  Qwen2MoeForCausalLM  bf16 (shared expert and its gate)
     gemma3-f32     Gemma3ForCausalLM    f32 (norm weights +1)
     llama-f32      LlamaForCausalLM     f32, dense, attention biases (permuted too)
2. Each converted to GGUF by llama.cpp's own convert_hf_to_gguf.py (from the
   llama-cpp-python 0.3.36 sdist: $FM_LLAMA_CPP, or
   /tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp, else fetched with
   `pip download --no-binary :all: --no-deps` into $TMPDIR/fm-lcp): --outtype f32 for the
   f32 models, bf16 for the bf16 ones, and qwen3moe-bf16 also as q8_0.
   The converter refuses an unknown BPE pre-tokenizer hash; these tokenizers
   are not real ones, so the wrapper tells it "qwen2" (metadata only), and
   makes the llama family skip its SentencePiece attempts (byte-level BPE).
3. Small invalid inputs under bad/ (no python at test time): GGUFs with an
   unsupported architecture, a Q8_1 tensor (no dequantizer), an expert count
   that disagrees with the tensors; an HF dir whose tensor has dtype F64.
4. <model>.logits: transformers' float32 logits of each HF model for the
   token ids in LOGIT_IDS (float32 LE [12][320]), to check that a bundle
   converted from the HF directory runs like the HF model (fm-run).
5. REFERENCE.tsv: for every GGUF here and tests/fixtures/arch/qwen3moe-q4km.gguf
   (Q4_K and Q6_K experts, made by llama.cpp's quantizer), each tensor's
   name, GGML type and the SHA-256 of gguf-py's float32 dequantization
   (gguf.quants.dequantize, little-endian, GGUF storage order).

Run from the repo root with /work/venv/bin/python (torch, transformers,
tokenizers, gguf==0.19.0). Re-running gives identical files for the same
package versions."""
import hashlib
import json
import os
import runpy
import shutil
import subprocess
import sys

import numpy as np

OUT = "tests/fixtures/convert"
LLAMA_CPP = os.environ.get("FM_LLAMA_CPP", "/tmp/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp")
VOCAB = 320


def tokenizer_json(path):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    qwen2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(qwen2), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=VOCAB - 3, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                             special_tokens=["<|endoftext|>"], show_progress=False)
    lines = open("tests/fixtures/tok/multilingual.txt", encoding="utf-8").read().splitlines()
    tok.train_from_iterator(lines, tr)
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    tok.save(path)


def save_hf(name, model, shard=None):
    import torch
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    kw = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(d, **kw)
    tokenizer_json(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": None, "eos_token": "<|endoftext|>", "add_bos_token": False,
                   "model_max_length": 256, "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=1)
    return d


def randomize(model, seed):
    """transformers' init is N(0, 0.02) with norms at 1 (0 for gemma): make
    every tensor distinct so that a wrong mapping shows."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in sorted(model.named_parameters()):
            if p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p.shape[-1] ** 0.5))


def make_models():
    import torch
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, MixtralConfig,
                              MixtralForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen3MoeConfig,
                              Qwen3MoeForCausalLM)
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6)
    q3 = Qwen3MoeConfig(**common, head_dim=16, intermediate_size=128, moe_intermediate_size=32, num_experts=8,
                        num_experts_per_tok=2, norm_topk_prob=True, rope_theta=1e6, tie_word_embeddings=False)
    m = Qwen3MoeForCausalLM(q3)
    randomize(m, 1)
    save_hf("qwen3moe-f32", m, shard="300KB")
    m = Qwen3MoeForCausalLM(q3)
    randomize(m, 2)
    save_hf("qwen3moe-bf16", m.to(torch.bfloat16))

    mx = MixtralConfig(**common, intermediate_size=64, num_local_experts=4, num_experts_per_tok=2,
                       rope_theta=1e6, tie_word_embeddings=False)
    m = MixtralForCausalLM(mx)
    randomize(m, 3)
    save_hf("mixtral-f32", m)

    q2 = Qwen2MoeConfig(**common, intermediate_size=128, moe_intermediate_size=32,
                        shared_expert_intermediate_size=64, num_experts=4, num_experts_per_tok=2,
                        norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[], rope_theta=1e6,
                        tie_word_embeddings=False)
    m = Qwen2MoeForCausalLM(q2)
    randomize(m, 4)
    save_hf("qwen2moe-bf16", m.to(torch.bfloat16))

    gc = Gemma3TextConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
                          sliding_window=64, query_pre_attn_scalar=16, rms_norm_eps=1e-6)
    m = Gemma3ForCausalLM(gc)
    randomize(m, 5)
    save_hf("gemma3-f32", m)

    ll = LlamaConfig(**common, intermediate_size=128, attention_bias=True, rope_theta=10000.0,
                     tie_word_embeddings=False)
    m = LlamaForCausalLM(ll)
    randomize(m, 6)
    save_hf("llama-f32", m)


def to_gguf(name, outtype, out=None):
    out = out or os.path.join(OUT, f"{name}.gguf")
    wrapper = (
        "import sys, runpy\n"
        f"L = {LLAMA_CPP!r}\n"
        "sys.path.insert(0, L); sys.path.insert(1, L + '/gguf-py')\n"
        "import conversion.base as b\n"
        "b.TextModel.get_vocab_base_pre = lambda self, tok: 'qwen2'\n"
        "def nospm(self):\n    raise FileNotFoundError('byte-level BPE fixture')\n"
        "b.TextModel._set_vocab_sentencepiece = nospm\n"
        "b.TextModel._set_vocab_llama_hf = nospm\n"
        "sys.argv = [L + '/convert_hf_to_gguf.py'] + sys.argv[1:]\n"
        "runpy.run_path(L + '/convert_hf_to_gguf.py', run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", wrapper, os.path.join(OUT, name), "--outtype", outtype, "--outfile",
                        out], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"convert_hf_to_gguf {name} {outtype} failed:\n{r.stderr[-3000:]}")


def bad_inputs():
    import gguf
    d = os.path.join(OUT, "bad")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    rng = np.random.default_rng(7)

    def tiny(path, arch="qwen3moe", q81=False, expert_count=2):
        w = gguf.GGUFWriter(path, arch)
        w.add_context_length(64)
        w.add_embedding_length(32)
        w.add_block_count(1)
        w.add_head_count(2)
        w.add_head_count_kv(1)
        w.add_key_length(16)
        w.add_value_length(16)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_expert_count(expert_count)
        w.add_expert_used_count(1)
        w.add_expert_feed_forward_length(32)
        w.add_vocab_size(16)

        def f32(name, *shape):
            w.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))
        f32("token_embd.weight", 16, 32)
        f32("output_norm.weight", 32)
        f32("blk.0.attn_norm.weight", 32)
        if q81:  # Q8_1 blocks as ggml has them: d, s (f16), 32 int8 = 36 bytes (gguf-py 0.19 says 40)
            gguf.constants.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_1] = (32, 36)
            blk = np.zeros((32, 1, 36), np.uint8)
            blk[:, :, 0:2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
            blk[:, :, 4:] = rng.integers(0, 255, (32, 1, 32), dtype=np.uint8)
            w.add_tensor("blk.0.attn_q.weight", blk.reshape(32, 36), raw_dtype=gguf.GGMLQuantizationType.Q8_1)
        else:
            f32("blk.0.attn_q.weight", 32, 32)
        f32("blk.0.attn_k.weight", 16, 32)
        f32("blk.0.attn_v.weight", 16, 32)
        f32("blk.0.attn_output.weight", 32, 32)
        f32("blk.0.attn_q_norm.weight", 16)
        f32("blk.0.attn_k_norm.weight", 16)
        f32("blk.0.ffn_norm.weight", 32)
        f32("blk.0.ffn_gate_inp.weight", 2, 32)
        f32("blk.0.ffn_gate_exps.weight", 2, 32, 32)
        f32("blk.0.ffn_up_exps.weight", 2, 32, 32)
        f32("blk.0.ffn_down_exps.weight", 2, 32, 32)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    tiny(os.path.join(d, "tiny-qwen3moe.gguf"))  # valid: the control case
    tiny(os.path.join(d, "arch-rwkv6.gguf"), arch="rwkv6")
    tiny(os.path.join(d, "qtype-q8_1.gguf"), q81=True)
    tiny(os.path.join(d, "experts-disagree.gguf"), expert_count=3)

    from safetensors.numpy import save_file
    hd = os.path.join(d, "dtype-f64")
    os.makedirs(hd)
    cfg = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": 8,
           "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1,
           "head_dim": 16, "rms_norm_eps": 1e-6, "num_experts": 2, "num_experts_per_tok": 1,
           "moe_intermediate_size": 16, "intermediate_size": 16}
    with open(os.path.join(hd, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save_file({"model.embed_tokens.weight": rng.standard_normal((8, 16))}, os.path.join(hd, "model.safetensors"))


LOGIT_IDS = [1, 5, 17, 42, 99, 200, 255, 300, 12, 7, 64, 128]


def hf_logits(names):
    import torch
    from transformers import AutoModelForCausalLM
    for n in names:
        m = AutoModelForCausalLM.from_pretrained(os.path.join(OUT, n), dtype=torch.float32)
        m.eval()
        with torch.no_grad():
            lg = m(torch.tensor([LOGIT_IDS])).logits[0].float().numpy().astype("<f4")
        lg.tofile(os.path.join(OUT, f"{n}.logits"))
    with open(os.path.join(OUT, "logits-ids.txt"), "w") as f:
        f.write(" ".join(str(i) for i in LOGIT_IDS) + "\n")


def dequant_sha(path):
    import gguf
    r = gguf.GGUFReader(path)
    rows = []
    for t in r.tensors:
        v = gguf.quants.dequantize(t.data, t.tensor_type).astype("<f4")
        rows.append((t.name, t.tensor_type.name, hashlib.sha256(v.tobytes()).hexdigest()))
    return rows


def reference():
    files = sorted(f for f in os.listdir(OUT) if f.endswith(".gguf"))
    paths = [os.path.join(OUT, f) for f in files] + ["tests/fixtures/arch/qwen3moe-q4km.gguf"]
    with open(os.path.join(OUT, "REFERENCE.tsv"), "w") as o:
        o.write("# gguf-py %s dequantization of each tensor (float32 LE, GGUF storage order); "
                "by tests/gen/gen_convert_fixtures.py\n" % __import__("importlib.metadata").metadata.version("gguf"))
        o.write("file\ttensor\ttype\tsha256\n")
        for p in paths:
            for name, ty, sha in dequant_sha(p):
                o.write(f"{os.path.basename(p)}\t{name}\t{ty}\t{sha}\n")


def fetch_llama_cpp():
    """The converter ships in the llama-cpp-python sdist: fetch it with pip."""
    import glob
    import tarfile
    import tempfile
    d = os.path.join(tempfile.gettempdir(), "fm-lcp")
    src = os.path.join(d, "llama_cpp_python-0.3.36", "vendor", "llama.cpp")
    if not os.path.exists(os.path.join(src, "convert_hf_to_gguf.py")):
        os.makedirs(d, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
                        "llama-cpp-python==0.3.36", "-d", d], check=True)
        with tarfile.open(glob.glob(os.path.join(d, "llama_cpp_python-0.3.36.tar.gz"))[0]) as t:
            t.extractall(d, filter="data")
    return src


def main():
    import importlib.metadata as md
    if md.version("gguf") != "0.19.0":
        sys.exit("gen_convert_fixtures: need gguf==0.19.0")
    global LLAMA_CPP
    if not os.path.exists(os.path.join(LLAMA_CPP, "convert_hf_to_gguf.py")):
        LLAMA_CPP = fetch_llama_cpp()
    os.makedirs(OUT, exist_ok=True)
    make_models()
    for n in ["qwen3moe-f32", "mixtral-f32", "gemma3-f32", "llama-f32"]:
        to_gguf(n, "f32")
    for n in ["qwen3moe-bf16", "qwen2moe-bf16"]:
        to_gguf(n, "bf16")
    to_gguf("qwen3moe-bf16", "q8_0", os.path.join(OUT, "qwen3moe-bf16.q8_0.gguf"))
    bad_inputs()
    hf_logits(["qwen3moe-f32", "mixtral-f32", "gemma3-f32", "llama-f32", "qwen3moe-bf16", "qwen2moe-bf16"])
    reference()


if __name__ == "__main__":
    main()
