#!/usr/bin/env python3
"""Developer tool (not a fixture generator; regen.sh does not run it): dumps
llama.cpp's intermediate tensors for a token sequence, to find where fm's
forward pass first differs from llama.cpp's.

    llama_dump.py MODEL.gguf "ID ID ..." OUT.npz [--decode]

Every contiguous F32 graph tensor llama.cpp computes (through the context's
eval callback) is saved under "NNNN:name" in execution order (names as in
llama.cpp's graph: attn_norm-0, Qcur-0, kq-0, kq_soft_max-0, kqv_out-0,
ffn_moe_probs-0, l_out-0, ...; shapes reversed to numpy order). --decode
evaluates all but the last id as a batch first (not dumped) and dumps the
one-token decode of the last id. fm's side: set fm_state.trace
(runtime/forward.h), which reports the same names.

Oracle set-up as tests/gen/gen_arch_fixtures.py: F32 KV cache, flash
attention off, 2 threads. Needs llama-cpp-python 0.3.36."""
import ctypes
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import llama_cpp as L


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    model, ids, out = sys.argv[1], [int(x) for x in sys.argv[2].split()], sys.argv[3]
    decode = "--decode" in sys.argv[4:]
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    base = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
    base.ggml_get_name.restype = ctypes.c_char_p
    base.ggml_get_name.argtypes = [ctypes.c_void_p]
    base.ggml_nbytes.restype = ctypes.c_size_t
    base.ggml_nbytes.argtypes = [ctypes.c_void_p]
    base.ggml_is_contiguous.restype = ctypes.c_bool
    base.ggml_is_contiguous.argtypes = [ctypes.c_void_p]
    base.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    dumps, on = {}, [not decode]

    @L.ggml_backend_sched_eval_callback
    def cb(t, ask, ud):
        if not on[0]:
            return False if ask else True
        if ask:
            return True
        typ = ctypes.cast(t, ctypes.POINTER(ctypes.c_int32))[0]  # ggml_tensor.type
        if typ != 0 or not base.ggml_is_contiguous(t):  # F32 only
            return True
        ne = [ctypes.cast(t + 16, ctypes.POINTER(ctypes.c_int64))[i] for i in range(4)]  # ggml_tensor.ne
        nb = base.ggml_nbytes(t)
        buf = (ctypes.c_char * nb)()
        base.ggml_backend_tensor_get(t, buf, 0, nb)
        name = base.ggml_get_name(t).decode()
        dumps["%04d:%s" % (len(dumps), name)] = np.frombuffer(buf, dtype=np.float32).copy().reshape(ne[::-1])
        return True

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    m = L.llama_model_load_from_file(model.encode(), mp)
    cp = L.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = max(64, len(ids))
    cp.type_k = cp.type_v = 0
    cp.flash_attn_type = 0
    cp.n_threads = cp.n_threads_batch = 2
    cp.cb_eval = cb
    cp.cb_eval_user_data = None
    ctx = L.llama_init_from_model(m, cp)
    first = ids[:-1] if decode else ids
    arr = (ctypes.c_int32 * len(first))(*first)
    assert L.llama_decode(ctx, L.llama_batch_get_one(arr, len(first))) == 0
    if decode:
        on[0] = True
        one = (ctypes.c_int32 * 1)(ids[-1])
        assert L.llama_decode(ctx, L.llama_batch_get_one(one, 1)) == 0
    np.savez(out, **dumps)
    print("%s: %d tensors" % (out, len(dumps)))


if __name__ == "__main__":
    main()
