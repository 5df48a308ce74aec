/* The forward pass: fm_state holds the scratch activations and the KV cache;
 * fm_forward runs a batch of tokens through every layer (batched prompt
 * processing with matrix-matrix products, or one token for decode).
 *
 * Numerics follow llama.cpp's CPU backend where it matters for a 1e-4
 * comparison: RMSNorm sums squares in double; rope angles are built by
 * repeated multiplication by theta_scale as ggml does; softmax sums in
 * double; in FM_KERNEL_Q8 mode GELU goes through f16 like ggml's table
 * (GGML_GELU_FP16), in FM_KERNEL_EXACT mode it is computed in float. */
#ifndef FM_FORWARD_H
#define FM_FORWARD_H

#include <stdint.h>

#include "formats/err.h"
#include "runtime/model.h"
#include "runtime/pool.h"

/* Debug hook: called with intermediate activations (n rows of row_len
 * floats) named like llama.cpp's graph callbacks ("attn_norm", "Qcur",
 * "Kcur", "Vcur", "Qcur_normed", "Kcur_normed", "Qcur_rope", "Kcur_rope",
 * "kqv_out", "attn_out", "ffn_inp", "ffn_out", "l_out", "result_norm"). */
typedef void (*fm_trace_fn)(void *ud, const char *name, uint32_t layer, const float *data, uint32_t n_rows,
                            size_t row_len);

typedef struct fm_state {
    const fm_model *m;
    fm_trace_fn trace; /* NULL = off */
    void *trace_ud;
    fm_pool *pool;
    uint32_t n_ctx;    /* KV cache positions */
    uint32_t n_batch;  /* most tokens per internal chunk */
    uint32_t n_past;   /* positions already in the KV cache */
    uint32_t layer_ahead; /* streamed layers: how many later ones to prefetch (default 2) */
    /* activations: n_batch rows each */
    float *x;          /* residual stream [n_batch][n_embd] */
    float *xb, *xb2;   /* [n_batch][n_embd] */
    float *q;          /* [n_batch][n_head * head_dim_k] */
    float *k, *v;      /* [n_batch][n_head_kv * head_dim_k|v] */
    float *att;        /* [n_batch][n_head * head_dim_v] */
    float *hb, *hb2;   /* [n_batch][max FFN width] */
    float *logits;     /* [n_vocab]: the last position of the last fm_forward */
    float *key_cache;  /* [n_layer][n_ctx][n_head_kv * head_dim_k] */
    float *value_cache;/* [n_layer][n_ctx][n_head_kv * head_dim_v] */
    float *scores;     /* [n_threads][n_ctx + 16] */
    float *kqv_acc;    /* [n_threads][64 * head_dim_v] */
    float *rope;       /* [n_batch][rope_dim] cos/sin pairs */
    /* MoE */
    float *router;     /* [n_batch][n_expert] */
    int32_t *sel;      /* [n_batch][n_expert_used] */
    float *selw;       /* [n_batch][n_expert_used] */
    float *xe;         /* gathered rows [n_batch][n_embd] */
    float *eout;       /* [n_batch][n_expert_used][n_embd] */
    uint32_t *rows;    /* [n_batch * n_expert_used] (token, slot) of one expert */
    float *shg;        /* [n_batch] shared-expert gate */
    uint64_t n_eval;   /* tokens evaluated so far (stats) */
} fm_state;

/* n_ctx: positions (capped to fit n_ctx_train is the caller's choice);
 * n_batch: tokens per chunk (0 = 64). pool may be NULL (single thread). */
fm_err fm_state_new(fm_state **out, const fm_model *m, fm_pool *pool, uint32_t n_ctx, uint32_t n_batch,
                    fm_error *e);
void fm_state_free(fm_state *s);
/* Forgets the KV cache (n_past = 0). */
void fm_state_reset(fm_state *s);

/* Evaluates tokens[0..n) at positions n_past .. n_past+n-1 and appends them
 * to the KV cache. logits_all: NULL, or n * n_vocab floats receiving every
 * position's logits. s->logits always gets the last position's. FM_E_RANGE
 * when the cache would overflow or a token id is >= n_vocab. */
fm_err fm_forward(fm_state *s, const int32_t *tokens, uint32_t n, float *logits_all, fm_error *e);

/* Step functions, exposed for unit tests. */
void fm_rmsnorm(float *out, const float *x, const float *w, uint32_t n, float eps);
void fm_softmax(float *x, uint32_t n);
float fm_gelu_ggml(float x); /* GELU (tanh) through f16 as ggml's table does */
float fm_gelu_tanh(float x); /* GELU (tanh) in float */

#endif
