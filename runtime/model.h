/* A loaded model: hyperparameters (fm_config), resident dense weights
 * (fm_weights) and an expert source (runtime/experts.h), from a bundle or
 * directly from a GGUF file. Canonical tensor names are GGUF names in both
 * cases (formats/arch.h), so the rest of the runtime does not care which. */
#ifndef FM_MODEL_H
#define FM_MODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "formats/arch.h"
#include "formats/bundle.h"
#include "formats/err.h"
#include "formats/gguf.h"
#include "runtime/experts.h"

typedef struct fm_config {
    const fm_arch *arch;
    uint32_t n_vocab, n_embd, n_layer, n_ctx_train;
    uint32_t n_head, n_head_kv, head_dim_k, head_dim_v;
    uint32_t n_ff;                      /* dense FFN (0 in MoE-only models) */
    uint32_t n_expert, n_expert_used, n_ff_exp, n_ff_shexp;
    bool expert_weights_norm;
    float rms_eps;
    /* rope */
    fm_rope_style rope_style;
    uint32_t rope_dim;
    float rope_theta, rope_theta_local;
    float rope_freq_scale;              /* 1 / rope_scaling_factor (linear, yarn), else 1 */
    float rope_ext_factor;              /* 1 for yarn, else 0 */
    float rope_attn_factor;
    float rope_beta_fast, rope_beta_slow;
    uint32_t rope_orig_ctx;
    /* attention */
    uint32_t sliding_window, swa_pattern;
    float kq_scale;                     /* applied to q.k (1 when q is prescaled) */
    float q_scale;                      /* applied to q before q.k (gemma), else 1 */
    float attn_logit_softcap, final_logit_softcap;
    /* embeddings / FFN */
    float embd_scale;                   /* gemma: sqrtf(n_embd), else 1 */
    fm_act act;
    bool qk_norm, post_norms, shared_expert;
} fm_config;

/* Fills c from finalized canonical hparams. */
fm_err fm_config_from_hparams(fm_config *c, const json_t *hp, fm_error *e);

/* A resident tensor: ne in GGUF order (ne[0] = row length); data NULL when
 * absent (optional tensors). */
typedef struct fm_tensor {
    uint32_t qtype;
    uint32_t n_dims;
    uint64_t ne[4];
    uint64_t row_bytes;
    uint64_t size;
    const void *data;
} fm_tensor;

typedef struct fm_layer_weights {
    fm_tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, bo, q_norm, k_norm, post_attn_norm;
    fm_tensor ffn_norm, ffn_gate, ffn_up, ffn_down, post_ffn_norm;
    fm_tensor gate_inp, gate_inp_shexp, gate_shexp, up_shexp, down_shexp;
    bool moe;           /* experts via fm_model.experts */
    bool streamed;      /* the matrices below are read through fm_model.layers (data NULL here) */
    uint32_t n_stream;  /* streamed: layer catalog matrix k is the fm_tensor at byte offset */
    uint16_t stream_off[FM_EXPERT_MAX_MATS]; /* stream_off[k] of this struct */
    bool swa;           /* sliding-window attention layer */
    float rope_theta;   /* this layer's base */
    float rope_freq_scale;
} fm_layer_weights;

typedef struct fm_weights {
    fm_tensor token_embd, output_norm, output, rope_freqs;
    fm_layer_weights *layers; /* n_layer */
} fm_weights;

typedef struct fm_model_opts {
    /* Expert cache for the simple source: bytes (0 = unbounded). */
    uint64_t expert_cache_bytes;
    uint32_t expert_pinned_max; /* most experts the forward pass holds at once; 0 = 1 */
    bool verify;                /* check SHA-256 of bundle tensors and experts */
    bool io_direct;             /* bundles: also open an O_DIRECT descriptor */
    bool defer_dense;           /* read no dense tensor yet: the caller sizes the budget from
                                   the fm_model's figures, then calls fm_model_load_dense */
} fm_model_opts;

typedef struct fm_model {
    char *path;
    bool is_gguf;
    json_t *hparams;     /* canonical, finalized (owned) */
    fm_config config;
    fm_weights w;
    fm_gguf *gguf;       /* exactly one of gguf / bundle is set */
    fm_bundle *bundle;
    fm_expert_catalog *catalog;
    fm_experts *experts; /* NULL for dense models; may be replaced by the caller (another source) */
    void *arena;         /* dense tensor memory */
    uint64_t dense_bytes;   /* bytes in the arena */
    /* Layer streaming (dense weights that do not fit): the weight matrices
     * of layers n_resident_layers.. are not in the arena; each such layer is
     * "expert 0" of its layer in layer_catalog and the forward pass acquires
     * it from `layers` (the simple source here; fm-run installs the stream
     * source). Norms, biases and the global tensors always stay resident. */
    uint64_t fixed_bytes;   /* dense bytes that are always resident (globals, norms, biases) */
    uint64_t *layer_bytes;  /* [n_layer]: bytes of each layer's weight matrices */
    uint64_t layer_bytes_total, layer_bytes_max;
    uint32_t n_resident_layers; /* == n_layer when nothing streams */
    bool dense_loaded;
    fm_expert_catalog *layer_catalog; /* NULL when nothing streams */
    fm_experts *layers;     /* NULL when nothing streams; may be replaced by the caller */
    void *plan;             /* internal: the dense tensor list (until closed) */
    bool verify;            /* opts.verify */
} fm_model;

/* Opens a bundle or a .gguf file (by content: GGUF magic, else a bundle),
 * validates hparams and tensors against the architecture table, reads all
 * dense tensors into memory and sets up the simple expert source. opts may be
 * NULL. */
fm_err fm_model_open(fm_model **out, const char *path, const fm_model_opts *opts, fm_error *e);
/* With defer_dense: reads the global tensors, every layer's norms/biases and
 * the weight matrices of layers [0, n_resident_layers) into memory; the
 * matrices of the other layers stream (layer_catalog + a simple source that
 * keeps one layer). n_resident_layers >= n_layer: everything resident. Once. */
fm_err fm_model_load_dense(fm_model *m, uint32_t n_resident_layers, fm_error *e);
/* Layers [0, r) whose matrices fit in `bytes` (their sum), at most n_layer. */
uint32_t fm_model_resident_layers_for(const fm_model *m, uint64_t bytes);
void fm_model_close(fm_model *m);

#endif
