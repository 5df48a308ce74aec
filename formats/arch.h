/* Architecture tables: everything fm knows about a model family, in one
 * table per architecture, shared by the converter (HF -> bundle), the packer
 * and the runtime. Nothing here runs a forward pass; it names things.
 *
 * Canonical tensor names are llama.cpp's GGUF names ("blk.3.attn_q.weight").
 * Canonical hyperparameters are a flat JSON object (the bundle manifest's
 * "arch" object is exactly this object):
 *
 *   {"name": "qwen3moe", "n_layer": 48, "n_embd": 2048, ..., "rope_theta": 1e6}
 *
 * Each hyperparameter has a canonical name, a type, the GGUF key (a printf
 * pattern: "%s.block_count" with %s the architecture name) and the Hugging
 * Face config.json key ("num_hidden_layers"; a dotted path such as
 * "rope_scaling.factor" for nested objects). fm_arch_hparams_finalize fills
 * defaults and derived values and range-checks the result; both
 * fm_arch_hparams_from_gguf and a converter reading config.json end with it,
 * so the runtime sees the same object whichever way a model came in.
 *
 * Weight layout facts a converter from HF must apply (see fm_arch.notes):
 *  - FM_ARCH_HF_PERMUTE_QK (llama, mixtral): HF q_proj/k_proj rows are in
 *    "half-split" rotary order; GGUF (and fm) store them interleaved, because
 *    llama.cpp's llama arch uses NORM (adjacent-pair) rope. Permute rows as
 *    llama.cpp's convert_hf_to_gguf.py `permute` does: w.reshape(nh, 2,
 *    rows/nh/2, cols).swapaxes(1, 2).reshape(rows, cols), with nh = n_head
 *    for q_proj and nh = n_head_kv for k_proj.
 *  - FM_ARCH_HF_NORM_PLUS1 (gemma3): HF RMSNorm computes x*(1+w); GGUF and fm
 *    store w+1 for every tensor whose HF name ends in "norm.weight".
 *  - HF Linear weights are [out, in] row-major: the same bytes as GGUF ne
 *    [in, out]. Experts: HF stores one matrix per expert; GGUF fuses them
 *    into ne [in, out, n_expert] (expert e's slice is contiguous); a bundle
 *    stores them as per-expert blobs with parts "gate", "up", "down". */
#ifndef FM_ARCH_H
#define FM_ARCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"
#include "formats/gguf.h"

/* Rope styles, numbered as ggml's rope modes. */
typedef enum fm_rope_style {
    FM_ROPE_NORM = 0, /* rotate adjacent pairs (x[2i], x[2i+1]): llama on the permuted GGUF layout */
    FM_ROPE_NEOX = 2  /* rotate (x[i], x[i + rope_dim/2]): qwen2/3, qwen2moe/3moe, gemma3 */
} fm_rope_style;

typedef enum fm_act {
    FM_ACT_SILU = 0,      /* SwiGLU: silu(gate) * up */
    FM_ACT_GELU_TANH = 1  /* GeGLU: gelu_tanh(gate) * up */
} fm_act;

/* Architecture flags (facts, not hyperparameters). */
enum {
    FM_ARCH_QK_NORM = 1u << 0,        /* per-head RMSNorm of q and k before rope (attn_q_norm/attn_k_norm) */
    FM_ARCH_POST_NORMS = 1u << 1,     /* gemma: RMSNorm after attention and after the FFN, before the residual add */
    FM_ARCH_EMBD_SCALE = 1u << 2,     /* gemma: token embeddings scaled by sqrtf(n_embd) */
    FM_ARCH_MOE = 1u << 3,            /* layers may be mixture-of-experts (when n_expert > 0) */
    FM_ARCH_MOE_REQUIRED = 1u << 4,   /* n_expert > 0 is required */
    FM_ARCH_SHARED_EXPERT = 1u << 5,  /* qwen2moe: shared expert gated by sigmoid(ffn_gate_inp_shexp . x) */
    FM_ARCH_HF_PERMUTE_QK = 1u << 6,  /* converter: permute HF q/k rows (see above) */
    FM_ARCH_HF_NORM_PLUS1 = 1u << 7,  /* converter: add 1 to HF "*norm.weight" */
    FM_ARCH_PRESCALE_Q = 1u << 8,     /* gemma: q scaled by 1/sqrt(query_pre_attn_scalar) before q.k (kq scale 1) */
};

typedef enum fm_hp_type { FM_HP_U32 = 1, FM_HP_F32 = 2, FM_HP_BOOL = 3, FM_HP_STR = 4 } fm_hp_type;

enum {
    FM_HP_REQUIRED = 1u << 0, /* must be present (after defaults) */
    FM_HP_GGUF_FIXED = 1u << 1 /* llama.cpp does not read the GGUF key for this arch: the table default wins */
};

typedef struct fm_arch_hparam {
    const char *name;     /* canonical name: the JSON key */
    fm_hp_type type;
    const char *gguf_key; /* printf pattern, %s = architecture name; NULL: not in GGUF */
    const char *hf_key;   /* config.json key or dotted path; "a|b" = first present; NULL: none */
    uint32_t flags;       /* FM_HP_* */
    /* Default when absent: a JSON literal ("10000.0", "true", "\"none\"") or
     * "=other" (copy the canonical hparam `other`), or "=n_embd/n_head".
     * NULL: no default (stays absent, or an error when FM_HP_REQUIRED). */
    const char *def;
    const char *note;     /* transformation notes for converters; NULL when none */
} fm_arch_hparam;

/* Symbolic dimensions used in tensor shapes. */
typedef enum fm_dim {
    FM_D_NONE = 0,
    FM_D_EMBD,     /* n_embd */
    FM_D_VOCAB,    /* n_vocab */
    FM_D_QDIM,     /* n_head * head_dim_k */
    FM_D_KDIM,     /* n_head_kv * head_dim_k */
    FM_D_VDIM,     /* n_head_kv * head_dim_v */
    FM_D_ODIM,     /* n_head * head_dim_v (attn_output input) */
    FM_D_HEAD_K,   /* head_dim_k */
    FM_D_FF,       /* n_ff */
    FM_D_FF_EXP,   /* n_ff_exp */
    FM_D_FF_SHEXP, /* n_ff_shexp */
    FM_D_EXPERT,   /* n_expert */
    FM_D_ROPE_HALF /* rope_dim / 2 (rope_freqs) */
} fm_dim;

enum {
    FM_T_OPTIONAL = 1u << 0, /* may be absent */
    FM_T_LAYER = 1u << 1,    /* per layer: name has one %d (the layer) */
    FM_T_EXPERT = 1u << 2,   /* fused expert tensor ne [in, out, n_expert]; in a bundle: blob part */
    FM_T_MOE = 1u << 3,      /* present only in MoE models (n_expert > 0) */
    FM_T_DENSE = 1u << 4,    /* present only in dense-FFN models (n_expert == 0) */
    FM_T_SHEXP = 1u << 5,    /* present only when n_ff_shexp > 0 */
    FM_T_NO_QUANT = 1u << 6  /* keep in float (norms, biases, router): quantizers skip it */
};

typedef struct fm_arch_tensor {
    const char *name;    /* canonical pattern: "token_embd.weight", "blk.%d.attn_q.weight" */
    /* HF pattern: "model.layers.%d.self_attn.q_proj.weight"; for FM_T_EXPERT
     * the per-expert name with a second %d (the expert); NULL: no HF source
     * (derived, e.g. rope_freqs). "a|b" lists alternatives (first that exists). */
    const char *hf_name;
    uint32_t flags;      /* FM_T_* */
    uint32_t n_dims;
    fm_dim ne[3];        /* GGUF ne order: ne[0] is the row length */
    const char *part;    /* FM_T_EXPERT: bundle blob part name ("gate", "up", "down"), else NULL */
} fm_arch_tensor;

typedef struct fm_arch {
    const char *name;              /* GGUF general.architecture and the manifest "name" */
    const char *const *hf_archs;   /* config.json "architectures" values, NULL-terminated */
    fm_rope_style rope;
    fm_act act;
    uint32_t flags;                /* FM_ARCH_* */
    const fm_arch_hparam *hparams;
    size_t n_hparams;
    const fm_arch_tensor *tensors;
    size_t n_tensors;
    const char *notes;             /* free text for converter writers */
} fm_arch;

/* NULL when unknown. */
const fm_arch *fm_arch_find(const char *name);
/* By a config.json "architectures" entry ("Qwen3MoeForCausalLM"); NULL when unknown. */
const fm_arch *fm_arch_find_hf(const char *hf_arch);
size_t fm_arch_count(void);
const fm_arch *fm_arch_at(size_t i);

const fm_arch_hparam *fm_arch_find_hparam(const fm_arch *a, const char *name);

/* Reads the canonical hparams of a GGUF file (general.architecture selects
 * the table) into a new JSON object with "name"; finalized. n_vocab falls
 * back to the length of tokenizer.ggml.tokens, then to token_embd's ne[1]. */
fm_err fm_arch_hparams_from_gguf(const fm_gguf *g, json_t **out, fm_error *e);

/* Fills defaults and derived values in hp (which must hold "name" or be
 * given a), rejects unknown keys of the wrong type, and checks ranges
 * (n_head % n_head_kv == 0, n_expert_used <= n_expert, sizes below caps...).
 * Idempotent. */
fm_err fm_arch_hparams_finalize(const fm_arch *a, json_t *hp, fm_error *e);

/* Typed reads of a finalized object: FM_E_NOTFOUND when absent, FM_E_FORMAT
 * on a wrong type or a value out of range for the type. */
fm_err fm_arch_hp_u32(const json_t *hp, const char *name, uint32_t *out, fm_error *e);
fm_err fm_arch_hp_f32(const json_t *hp, const char *name, float *out, fm_error *e);
fm_err fm_arch_hp_bool(const json_t *hp, const char *name, bool *out, fm_error *e);
fm_err fm_arch_hp_str(const json_t *hp, const char *name, const char **out, fm_error *e);

/* Value of a symbolic dimension under hp. */
fm_err fm_arch_dim(const json_t *hp, fm_dim d, uint64_t *out, fm_error *e);

/* Formats a tensor's canonical name for layer (ignored for global tensors).
 * false when buf is too small. */
bool fm_arch_tensor_name(const fm_arch_tensor *t, uint32_t layer, char *buf, size_t n);

/* Finds the table entry for a concrete canonical name; *layer gets the layer
 * (0 for global tensors). NULL when the name is not in the table. */
const fm_arch_tensor *fm_arch_match(const fm_arch *a, const char *name, uint32_t *layer);

/* Whether a tensor entry applies to this model (MoE/dense/shared-expert
 * conditions) — applicable entries without FM_T_OPTIONAL are required. */
bool fm_arch_tensor_applies(const fm_arch_tensor *t, const json_t *hp);

/* Expected ne[] of an entry under hp; *n_dims set. */
fm_err fm_arch_tensor_shape(const fm_arch_tensor *t, const json_t *hp, uint32_t *n_dims,
                            uint64_t ne[3], fm_error *e);

/* One tensor of a set to validate: canonical name and GGUF-order ne.
 * Expert tensors are passed fused (ne[2] = n_expert) whatever the storage. */
typedef struct fm_arch_tinfo {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[4];
} fm_arch_tinfo;

/* Validates a tensor set against the table under hp: every tensor is known
 * (FM_E_FORMAT "unknown tensor"), in a layer < n_layer, with the expected
 * shape (FM_E_FORMAT naming the tensor, expected vs found), and every
 * required tensor is present (FM_E_NOTFOUND naming it). `what` names the
 * source file in messages. */
fm_err fm_arch_check_tensors(const fm_arch *a, const json_t *hp, const fm_arch_tinfo *t, size_t n,
                             const char *what, fm_error *e);

/* Convenience: the tensor set of a GGUF file, checked as above. */
fm_err fm_arch_check_gguf(const fm_arch *a, const json_t *hp, const fm_gguf *g, fm_error *e);

/* Layer il uses sliding-window attention (llama.cpp's STANDARD pattern:
 * sliding_window > 0 and il % swa_pattern < swa_pattern - 1). */
bool fm_arch_layer_is_swa(const json_t *hp, uint32_t il);

#endif
