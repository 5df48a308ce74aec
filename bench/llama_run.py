#!/usr/bin/env python3
"""llama.cpp side of bench/run.sh: load a GGUF, run a prompt, decode N tokens.

    llama_run.py MODEL --prompt TEXT -n N -t THREADS --ctx C --stats OUT.json
                 [--lazy] [--no-amx] [--seed S]

Uses llama.cpp's C API through llama-cpp-python 0.3.36 (no Python in the
token loop beyond one llama_decode and one native sampler call per token):
  - weights mmap'd (load_mode = LLAMA_LOAD_MODE_MMAP);
  - default set-up: llama.cpp's defaults (Q4_K weights repacked for its CPU
    kernels into anonymous memory: the in-RAM configuration);
  - --lazy: the streaming set-up for a model bigger than memory
    (lazy_mode = LLAMA_LAZY_MODE_ON, use_extra_bufts = False: expert rows read
    on demand through the mmap), as /work/shared/oracles.md describes;
  - --no-amx: the default set-up without llama.cpp's AMX buffer type (a
    seccomp filter makes arch_prctl(ARCH_REQ_XCOMP_PERM) fail, so
    ggml_amx_init() declines and the CPU repack buffer takes the weights).
    bench.py passes it on CPUs with AMX: llama-cpp-python 0.3.36 built with
    GGML_NATIVE crashes in ggml_backend_amx_mul_mat on this model (SIGSEGV);
  - n_threads = n_threads_batch = THREADS; the prompt is one batch;
  - sampling: llama.cpp's native chain with fm-run's defaults (top-k 40,
    top-p 0.95, min-p 0.05, temperature 0.8, seeded dist), so both programs
    do the same work per token.
Timing is taken inside the process: prompt = the llama_decode of the prompt
batch; decode = from the first sample after the prompt to the end of the Nth
single-token llama_decode (sampling included, as in fm-run), so model load
and the prompt do not enter the decode rate. The stats file is rewritten
after every token, so a run killed by a timeout still reports how many
tokens it decoded in how long."""
import argparse
import ctypes
import json
import os
import sys
import time


def deny_amx():
    """Install a seccomp filter: arch_prctl(ARCH_REQ_XCOMP_PERM, ...) -> EPERM,
    every other system call allowed. Must run before llama.cpp loads."""
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    ld, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    allow, eperm = 0x7FFF0000, 0x00050000 | 1
    prog = [(ld, 0, 0, 4), (jeq, 0, 5, 0xC000003E),  # arch == x86_64
            (ld, 0, 0, 0), (jeq, 0, 3, 158),  # nr == arch_prctl
            (ld, 0, 0, 16), (jeq, 0, 1, 0x1023),  # args[0] == ARCH_REQ_XCOMP_PERM
            (ret, 0, 0, eperm), (ret, 0, 0, allow)]
    buf = ctypes.create_string_buffer(b"".join(struct.pack("<HBBI", *i) for i in prog))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fp = Fprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fp), 0, 0) != 0:
        sys.exit("llama_run: seccomp: " + os.strerror(ctypes.get_errno()))


if "--no-amx" in sys.argv:
    deny_amx()

import llama_cpp  # noqa: E402 (after the seccomp filter)
import llama_cpp.llama_cpp as ll  # noqa: E402


def write_stats(path, d):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(d, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--lazy", action="store_true")
    ap.add_argument("--no-amx", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    global _log_cb  # the callback must outlive every llama.cpp call
    _log_cb = ll.llama_log_callback(lambda lvl, msg, ud: None)
    ll.llama_log_set(_log_cb, ctypes.c_void_p(0))
    ll.llama_backend_init()
    st = {"program": "llama.cpp", "llama_cpp_python": llama_cpp.__version__, "model": a.model,
          "threads": a.t, "setup": "lazy" if a.lazy else "default", "decode_tokens": 0, "amx_denied": a.no_amx,
          "decode_seconds": 0.0, "complete": False}
    t0 = time.monotonic()
    mp = ll.llama_model_default_params()
    mp.load_mode = ll.LLAMA_LOAD_MODE_MMAP
    if a.lazy:
        mp.lazy_mode = ll.LLAMA_LAZY_MODE_ON
        mp.use_extra_bufts = False
    model = ll.llama_model_load_from_file(a.model.encode(), mp)
    if not model:
        sys.exit("llama_run: cannot load " + a.model)
    cp = ll.llama_context_default_params()
    cp.n_ctx = a.ctx
    cp.n_batch = a.ctx
    cp.n_ubatch = a.ctx
    cp.n_threads = a.t
    cp.n_threads_batch = a.t
    ctx = ll.llama_init_from_model(model, cp)
    if not ctx:
        sys.exit("llama_run: cannot create a context")
    vocab = ll.llama_model_get_vocab(model)
    st["load_seconds"] = time.monotonic() - t0

    text = a.prompt.encode()
    buf = (ll.llama_token * (len(text) + 16))()
    n = ll.llama_tokenize(vocab, text, len(text), buf, len(buf), True, True)
    if n <= 0:
        sys.exit("llama_run: tokenize failed: %d" % n)
    if n + a.n + 1 > a.ctx:
        sys.exit("llama_run: prompt + n does not fit --ctx")
    st["prompt_tokens"] = n

    sp = ll.llama_sampler_chain_default_params()
    smpl = ll.llama_sampler_chain_init(sp)
    ll.llama_sampler_chain_add(smpl, ll.llama_sampler_init_top_k(40))
    ll.llama_sampler_chain_add(smpl, ll.llama_sampler_init_top_p(0.95, 1))
    ll.llama_sampler_chain_add(smpl, ll.llama_sampler_init_min_p(0.05, 1))
    ll.llama_sampler_chain_add(smpl, ll.llama_sampler_init_temp(0.8))
    ll.llama_sampler_chain_add(smpl, ll.llama_sampler_init_dist(a.seed))

    tp0 = time.monotonic()
    if ll.llama_decode(ctx, ll.llama_batch_get_one(buf, n)) != 0:
        sys.exit("llama_run: prompt decode failed")
    tp1 = time.monotonic()
    st["prompt_seconds"] = tp1 - tp0
    st["prompt_tok_s"] = n / (tp1 - tp0)
    write_stats(a.stats, st)

    tok = (ll.llama_token * 1)()
    td0 = time.monotonic()
    ids = []
    for i in range(a.n):
        t = ll.llama_sampler_sample(smpl, ctx, -1)
        ids.append(int(t))
        tok[0] = t
        if ll.llama_decode(ctx, ll.llama_batch_get_one(tok, 1)) != 0:
            sys.exit("llama_run: decode failed")
        dt = time.monotonic() - td0
        st["decode_tokens"] = i + 1
        st["decode_seconds"] = dt
        st["decode_tok_s"] = (i + 1) / dt
        write_stats(a.stats, st)
    st["complete"] = True
    st["eog_sampled"] = sum(1 for t in ids if ll.llama_vocab_is_eog(vocab, t))
    st["distinct_tokens"] = len(set(ids))
    write_stats(a.stats, st)
    ll.llama_sampler_free(smpl)
    ll.llama_free(ctx)
    ll.llama_model_free(model)


if __name__ == "__main__":
    main()
