#!/usr/bin/env python3
"""llama.cpp reference outputs for the real model test (issue 6):
models/gemma-3-270m-q4_k_m.gguf, 5 prompts x 64 greedy tokens, and the
top-1 token at every position of teacher-forced sequences (>= 512 positions).

Writes tests/fixtures/gemma3-270m/ref.json:
  greedy[]:  prompt text, prompt ids (llama.cpp tokenization, BOS added,
             special tokens parsed), 64 greedy ids, their text
  forced[]:  ids (prompt + generated continuation, or a text passage), and
             for every position the llama.cpp top-1 id and the margin
             between its top two logits (used to judge a disagreement).

Oracle set-up (shared/oracles.md): llama-cpp-python 0.3.36, F32 KV cache,
flash attention off, 2 threads. Greedy = argmax of the logits (the lowest id
on a tie), stopping early only at an end-of-generation token.
Skipped (nothing written) when the model file is absent."""
import ctypes
import json
import os
import sys

import numpy as np
import llama_cpp

MODEL = "models/gemma-3-270m-q4_k_m.gguf"
OUT = "tests/fixtures/gemma3-270m/ref.json"
N_GEN = 64

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n",
    "The three primary colors are",
    "Water boils at a temperature of",
]

# Plain English passages for teacher forcing (written for this test).
PASSAGES = [
    "The river wound slowly through the valley, past fields of wheat and old stone farmhouses. "
    "In the spring, when the snow melted in the mountains, the water rose and covered the low "
    "meadows, and the farmers moved their sheep to higher ground. Children waited on the bridge "
    "to watch the boats go by, carrying timber, wool and barrels of wine to the market town "
    "downstream. By summer the river was quiet again, and the only sound was the wind in the "
    "willows and the occasional splash of a fish.",
    "A computer program is a sequence of instructions that a machine can execute. Early programs "
    "were written directly in machine code, a tedious and error-prone process. Later, assembly "
    "languages gave names to instructions, and high-level languages such as Fortran and C let "
    "programmers describe algorithms in terms closer to mathematics. Today most software is built "
    "from many layers: an operating system, libraries, and applications, each relying on the "
    "correctness of the layers beneath it.",
    "To make a simple loaf of bread, mix flour, water, salt and a little yeast in a large bowl. "
    "Knead the dough for about ten minutes until it is smooth and elastic, then cover it and let "
    "it rise in a warm place for an hour or two. Shape the dough into a loaf, let it rise again, "
    "and bake it in a hot oven until the crust is golden brown and the bottom sounds hollow when "
    "tapped. Let it cool before slicing.",
    "The planets of the solar system orbit the sun in nearly circular paths. Mercury is the "
    "closest and the smallest, while Jupiter is by far the largest, more than three hundred times "
    "as massive as the Earth. Saturn is famous for its bright rings, made of countless pieces of "
    "ice and rock. Beyond Neptune lies a cold region of small icy bodies, including the dwarf "
    "planet Pluto, which takes two hundred and forty-eight years to complete a single orbit.",
]


def piece(vocab, t):
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, t, buf, len(buf), 0, False)
    return buf.raw[: max(n, 0)]


def main():
    if not os.path.exists(MODEL):
        print(f"gen_gemma_ref: {MODEL} absent, skipped")
        return
    if llama_cpp.__version__ != "0.3.36":
        sys.exit(f"gen_gemma_ref: need llama-cpp-python 0.3.36, found {llama_cpp.__version__}")
    llm = llama_cpp.Llama(model_path=MODEL, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=2,
                          logits_all=True, type_k=0, type_v=0, flash_attn=False, verbose=False, seed=1)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    nv = llm.n_vocab()

    def forced(ids):
        llm.reset()
        llm.eval(ids)
        sc = np.array(llm.scores[: len(ids)], dtype=np.float32)
        top = np.argmax(sc, axis=1)
        part = np.sort(sc, axis=1)
        margin = part[:, -1] - part[:, -2]
        return [int(x) for x in top], [round(float(x), 5) for x in margin]

    greedy, forced_out = [], []
    for p in PROMPTS:
        ids = llm.tokenize(p.encode(), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        gen = []
        for _ in range(N_GEN):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            t = int(np.argmax(logits))
            if llama_cpp.llama_vocab_is_eog(vocab, t):
                break
            gen.append(t)
            llm.eval([t])
        text = b"".join(piece(vocab, t) for t in gen).decode("utf-8", "replace")
        greedy.append({"prompt": p, "prompt_ids": ids, "ids": gen, "text": text})
        seq = ids + gen
        top, margin = forced(seq)
        forced_out.append({"source": "prompt+greedy", "ids": seq, "top1": top, "margin": margin})
        print(f"{p!r} -> {text!r}")
    for t in PASSAGES:
        ids = llm.tokenize(t.encode(), add_bos=True, special=True)
        top, margin = forced(ids)
        forced_out.append({"source": "passage", "ids": ids, "top1": top, "margin": margin})
    n_pos = sum(len(f["ids"]) for f in forced_out)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    meta = {
        "model": MODEL,
        "model_sha256": "a5fd3b62...6818 (scripts/get-gemma.sh checks the full digest)",
        "n_vocab": nv,
        "oracle": "llama-cpp-python 0.3.36, type_k=type_v=F32, flash_attn off, n_threads 2, greedy argmax",
        "n_forced_positions": n_pos,
        "greedy": greedy,
        "forced": forced_out,
    }
    with open(OUT, "w") as f:
        json.dump(meta, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"gen_gemma_ref: {OUT}: {len(greedy)} prompts, {n_pos} teacher-forced positions")


if __name__ == "__main__":
    main()
