/* Architecture tables (see arch.h). One table per architecture; the code
 * below only interprets tables. */
#include "formats/arch.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/util.h"

/* ---------------------------------------------------------------- tables */

#define U32 FM_HP_U32
#define F32 FM_HP_F32
#define BOOL FM_HP_BOOL
#define STR FM_HP_STR
#define REQ FM_HP_REQUIRED
#define FIXED FM_HP_GGUF_FIXED

/* Shape / size hyperparameters every architecture has. Order matters:
 * "=x" defaults refer to earlier entries. */
#define HP_BASE                                                                                     \
    {"n_vocab", U32, "%s.vocab_size", "vocab_size", REQ, NULL,                                      \
     "GGUF: when the key is absent, the length of tokenizer.ggml.tokens, then token_embd ne[1]"},   \
    {"n_ctx_train", U32, "%s.context_length", "max_position_embeddings", 0, "4096", NULL},          \
    {"n_embd", U32, "%s.embedding_length", "hidden_size", REQ, NULL, NULL},                         \
    {"n_layer", U32, "%s.block_count", "num_hidden_layers", REQ, NULL, NULL},                       \
    {"n_head", U32, "%s.attention.head_count", "num_attention_heads", REQ, NULL, NULL},             \
    {"n_head_kv", U32, "%s.attention.head_count_kv", "num_key_value_heads", 0, "=n_head", NULL},    \
    {"head_dim_k", U32, "%s.attention.key_length", "head_dim", 0, "=n_embd/n_head", NULL},          \
    {"head_dim_v", U32, "%s.attention.value_length", "head_dim", 0, "=head_dim_k", NULL},           \
    {"rms_eps", F32, "%s.attention.layer_norm_rms_epsilon", "rms_norm_eps", REQ, NULL, NULL}

#define HP_ROPE(theta_def)                                                                          \
    {"rope_theta", F32, "%s.rope.freq_base", "rope_theta", 0, theta_def, NULL},                     \
    {"rope_dim", U32, "%s.rope.dimension_count", NULL, 0, "=head_dim_k",                            \
     "HF: head_dim * partial_rotary_factor where config.json has one"},                            \
    {"rope_scaling_type", STR, "%s.rope.scaling.type", "rope_scaling.rope_type|rope_scaling.type", 0, \
     "\"none\"",                                                                                   \
     "none | linear | yarn. HF rope_type \"default\" is none; \"llama3\" is not a scaling type in "  \
     "GGUF: llama.cpp's converter writes a rope_freqs.weight tensor (per-pair divisors) instead"},  \
    {"rope_scaling_factor", F32, "%s.rope.scaling.factor", "rope_scaling.factor", 0, "1.0", NULL},  \
    {"rope_scaling_orig_ctx", U32, "%s.rope.scaling.original_context_length",                       \
     "rope_scaling.original_max_position_embeddings", 0, "=n_ctx_train", NULL},                     \
    {"rope_yarn_beta_fast", F32, "%s.rope.scaling.yarn_beta_fast", "rope_scaling.beta_fast", 0,     \
     "32.0", NULL},                                                                                 \
    {"rope_yarn_beta_slow", F32, "%s.rope.scaling.yarn_beta_slow", "rope_scaling.beta_slow", 0,     \
     "1.0", NULL},                                                                                  \
    {"rope_scaling_attn_factor", F32, "%s.rope.scaling.attn_factor", "rope_scaling.attention_factor", \
     0, "1.0", NULL}

#define HP_FF(flags) {"n_ff", U32, "%s.feed_forward_length", "intermediate_size", flags, NULL, NULL}

#define HP_MOE(hf_n_expert, ff_exp_hf, norm_def, norm_note)                                         \
    {"n_expert", U32, "%s.expert_count", hf_n_expert, 0, "0", NULL},                                \
    {"n_expert_used", U32, "%s.expert_used_count", "num_experts_per_tok", 0, "0", NULL},            \
    {"n_ff_exp", U32, "%s.expert_feed_forward_length", ff_exp_hf, 0, "=n_ff", NULL},                \
    {"expert_weights_norm", BOOL, NULL, "norm_topk_prob", FIXED, norm_def, norm_note},             \
    {"expert_gating", STR, NULL, NULL, FIXED, "\"softmax\"",                                        \
     "router probabilities: softmax over all experts, then top-k"}

static const fm_arch_hparam hp_llama[] = {
    HP_BASE,
    HP_ROPE("10000.0"),
    HP_FF(0),
    HP_MOE("num_local_experts", NULL, "true",
           "mixtral (llama with experts): top-k weights renormalized to sum 1 (llama.cpp hard-codes "
           "it; HF MixtralSparseMoeBlock does the same); n_ff_exp = intermediate_size"),
};

static const fm_arch_hparam hp_qwen2[] = {
    HP_BASE,
    HP_ROPE("1000000.0"),
    HP_FF(REQ),
};

static const fm_arch_hparam hp_qwen3[] = {
    HP_BASE,
    HP_ROPE("1000000.0"),
    HP_FF(REQ),
};

static const fm_arch_hparam hp_qwen2moe[] = {
    HP_BASE,
    HP_ROPE("1000000.0"),
    HP_FF(0),
    HP_MOE("num_experts", "moe_intermediate_size", "false",
           "qwen2moe does not renormalize the top-k weights (llama.cpp hard-codes false; HF "
           "norm_topk_prob is false for released models)"),
    {"n_ff_shexp", U32, "%s.expert_shared_feed_forward_length", "shared_expert_intermediate_size", 0,
     "0", "shared expert output is scaled by sigmoid(ffn_gate_inp_shexp . x)"},
};

static const fm_arch_hparam hp_qwen3moe[] = {
    HP_BASE,
    HP_ROPE("1000000.0"),
    HP_FF(0),
    HP_MOE("num_experts", "moe_intermediate_size", "true",
           "qwen3moe renormalizes the top-k weights (llama.cpp hard-codes true; HF norm_topk_prob "
           "is true for released models)"),
};

static const fm_arch_hparam hp_gemma3[] = {
    HP_BASE,
    HP_ROPE("1000000.0"),
    HP_FF(REQ),
    {"sliding_window", U32, "%s.attention.sliding_window", "sliding_window", 0, "0",
     "0 = every layer attends globally; a key position p0 is visible from p1 when p1 - p0 < window"},
    {"swa_pattern", U32, "%s.attention.sliding_window_pattern", "sliding_window_pattern", 0, "6",
     "layer il is local (sliding) when il % swa_pattern < swa_pattern - 1; newer HF configs give "
     "layer_types instead: the period of \"full_attention\" entries"},
    {"rope_theta_local", F32, "%s.rope.freq_base_swa", "rope_local_base_freq", 0, "10000.0",
     "rope base of the sliding-window layers"},
    {"final_logit_softcap", F32, "%s.final_logit_softcapping", "final_logit_softcapping", 0, "0.0",
     "0 = none; logits = cap * tanh(logits / cap). HF null means 0"},
    {"attn_logit_softcap", F32, "%s.attn_logit_softcapping", "attn_logit_softcapping", 0, "0.0",
     "0 = none (gemma3 has none)"},
    {"query_pre_attn_scalar", F32, NULL, "query_pre_attn_scalar", 0, "=head_dim_k",
     "q is multiplied by 1/sqrt(query_pre_attn_scalar) before q.k. GGUF has no key: llama.cpp uses "
     "n_embd/n_head for the 62-layer (27B) model and head_dim_k otherwise; "
     "fm_arch_hparams_from_gguf applies that rule"},
};

#undef U32
#undef F32
#undef BOOL
#undef STR
#undef REQ
#undef FIXED

#define L FM_T_LAYER
#define OPT FM_T_OPTIONAL
#define NQ FM_T_NO_QUANT
#define EXP (FM_T_EXPERT | FM_T_LAYER | FM_T_MOE)
#define DENSE (FM_T_DENSE | FM_T_LAYER)
#define MOE (FM_T_MOE | FM_T_LAYER)
#define SH (FM_T_SHEXP | FM_T_LAYER | FM_T_MOE)

#define T1(d0) 1, {d0, FM_D_NONE, FM_D_NONE}
#define T2(d0, d1) 2, {d0, d1, FM_D_NONE}
#define T3(d0, d1, d2) 3, {d0, d1, d2}

#define HFL "model.layers.%d."

#define T_GLOBAL(embd_hf, norm_hf)                                                                 \
    {"token_embd.weight", embd_hf, 0, T2(FM_D_EMBD, FM_D_VOCAB), NULL},                            \
    {"output_norm.weight", norm_hf, NQ, T1(FM_D_EMBD), NULL},                                      \
    {"output.weight", "lm_head.weight", OPT, T2(FM_D_EMBD, FM_D_VOCAB), NULL}

#define T_ATTN(pfx)                                                                                \
    {"blk.%d.attn_norm.weight", pfx "input_layernorm.weight", L | NQ, T1(FM_D_EMBD), NULL},        \
    {"blk.%d.attn_q.weight", pfx "self_attn.q_proj.weight", L, T2(FM_D_EMBD, FM_D_QDIM), NULL},    \
    {"blk.%d.attn_k.weight", pfx "self_attn.k_proj.weight", L, T2(FM_D_EMBD, FM_D_KDIM), NULL},    \
    {"blk.%d.attn_v.weight", pfx "self_attn.v_proj.weight", L, T2(FM_D_EMBD, FM_D_VDIM), NULL},    \
    {"blk.%d.attn_output.weight", pfx "self_attn.o_proj.weight", L, T2(FM_D_ODIM, FM_D_EMBD), NULL}, \
    {"blk.%d.attn_q.bias", pfx "self_attn.q_proj.bias", L | OPT | NQ, T1(FM_D_QDIM), NULL},        \
    {"blk.%d.attn_k.bias", pfx "self_attn.k_proj.bias", L | OPT | NQ, T1(FM_D_KDIM), NULL},        \
    {"blk.%d.attn_v.bias", pfx "self_attn.v_proj.bias", L | OPT | NQ, T1(FM_D_VDIM), NULL},        \
    {"blk.%d.attn_output.bias", pfx "self_attn.o_proj.bias", L | OPT | NQ, T1(FM_D_EMBD), NULL}

#define T_QK_NORM(pfx)                                                                             \
    {"blk.%d.attn_q_norm.weight", pfx "self_attn.q_norm.weight", L | NQ, T1(FM_D_HEAD_K), NULL},   \
    {"blk.%d.attn_k_norm.weight", pfx "self_attn.k_norm.weight", L | NQ, T1(FM_D_HEAD_K), NULL}

#define T_FFN(pfx, flags)                                                                          \
    {"blk.%d.ffn_gate.weight", pfx "mlp.gate_proj.weight", flags, T2(FM_D_EMBD, FM_D_FF), NULL},   \
    {"blk.%d.ffn_up.weight", pfx "mlp.up_proj.weight", flags, T2(FM_D_EMBD, FM_D_FF), NULL},       \
    {"blk.%d.ffn_down.weight", pfx "mlp.down_proj.weight", flags, T2(FM_D_FF, FM_D_EMBD), NULL}

#define T_EXPERTS(router_hf, gate_hf, up_hf, down_hf)                                              \
    {"blk.%d.ffn_gate_inp.weight", router_hf, MOE | NQ, T2(FM_D_EMBD, FM_D_EXPERT), NULL},         \
    {"blk.%d.ffn_gate_exps.weight", gate_hf, EXP, T3(FM_D_EMBD, FM_D_FF_EXP, FM_D_EXPERT), "gate"}, \
    {"blk.%d.ffn_up_exps.weight", up_hf, EXP, T3(FM_D_EMBD, FM_D_FF_EXP, FM_D_EXPERT), "up"},      \
    {"blk.%d.ffn_down_exps.weight", down_hf, EXP, T3(FM_D_FF_EXP, FM_D_EMBD, FM_D_EXPERT), "down"}

static const fm_arch_tensor t_llama[] = {
    T_GLOBAL("model.embed_tokens.weight", "model.norm.weight"),
    {"rope_freqs.weight", NULL, OPT | NQ, T1(FM_D_ROPE_HALF), NULL},
    T_ATTN(HFL),
    {"blk.%d.ffn_norm.weight", HFL "post_attention_layernorm.weight", L | NQ, T1(FM_D_EMBD), NULL},
    T_FFN(HFL, DENSE),
    T_EXPERTS(HFL "block_sparse_moe.gate.weight", HFL "block_sparse_moe.experts.%d.w1.weight",
              HFL "block_sparse_moe.experts.%d.w3.weight", HFL "block_sparse_moe.experts.%d.w2.weight"),
};

static const fm_arch_tensor t_qwen2[] = {
    T_GLOBAL("model.embed_tokens.weight", "model.norm.weight"),
    T_ATTN(HFL),
    {"blk.%d.ffn_norm.weight", HFL "post_attention_layernorm.weight", L | NQ, T1(FM_D_EMBD), NULL},
    T_FFN(HFL, L),
};

static const fm_arch_tensor t_qwen3[] = {
    T_GLOBAL("model.embed_tokens.weight", "model.norm.weight"),
    T_ATTN(HFL),
    T_QK_NORM(HFL),
    {"blk.%d.ffn_norm.weight", HFL "post_attention_layernorm.weight", L | NQ, T1(FM_D_EMBD), NULL},
    T_FFN(HFL, L),
};

static const fm_arch_tensor t_qwen2moe[] = {
    T_GLOBAL("model.embed_tokens.weight", "model.norm.weight"),
    T_ATTN(HFL),
    {"blk.%d.ffn_norm.weight", HFL "post_attention_layernorm.weight", L | NQ, T1(FM_D_EMBD), NULL},
    T_EXPERTS(HFL "mlp.gate.weight", HFL "mlp.experts.%d.gate_proj.weight",
              HFL "mlp.experts.%d.up_proj.weight", HFL "mlp.experts.%d.down_proj.weight"),
    {"blk.%d.ffn_gate_inp_shexp.weight", HFL "mlp.shared_expert_gate.weight", SH | NQ,
     T1(FM_D_EMBD), NULL},
    {"blk.%d.ffn_gate_shexp.weight", HFL "mlp.shared_expert.gate_proj.weight", SH,
     T2(FM_D_EMBD, FM_D_FF_SHEXP), NULL},
    {"blk.%d.ffn_up_shexp.weight", HFL "mlp.shared_expert.up_proj.weight", SH,
     T2(FM_D_EMBD, FM_D_FF_SHEXP), NULL},
    {"blk.%d.ffn_down_shexp.weight", HFL "mlp.shared_expert.down_proj.weight", SH,
     T2(FM_D_FF_SHEXP, FM_D_EMBD), NULL},
};

static const fm_arch_tensor t_qwen3moe[] = {
    T_GLOBAL("model.embed_tokens.weight", "model.norm.weight"),
    T_ATTN(HFL),
    T_QK_NORM(HFL),
    {"blk.%d.ffn_norm.weight", HFL "post_attention_layernorm.weight", L | NQ, T1(FM_D_EMBD), NULL},
    T_EXPERTS(HFL "mlp.gate.weight", HFL "mlp.experts.%d.gate_proj.weight",
              HFL "mlp.experts.%d.up_proj.weight", HFL "mlp.experts.%d.down_proj.weight"),
};

/* Gemma3ForCausalLM names; Gemma3ForConditionalGeneration prefixes
 * "language_model." (converters strip it and drop vision tensors). */
static const fm_arch_tensor t_gemma3[] = {
    T_GLOBAL("model.embed_tokens.weight", "model.norm.weight"),
    T_ATTN(HFL),
    T_QK_NORM(HFL),
    {"blk.%d.post_attention_norm.weight", HFL "post_attention_layernorm.weight", L | NQ,
     T1(FM_D_EMBD), NULL},
    {"blk.%d.ffn_norm.weight", HFL "pre_feedforward_layernorm.weight", L | NQ, T1(FM_D_EMBD), NULL},
    {"blk.%d.post_ffw_norm.weight", HFL "post_feedforward_layernorm.weight", L | NQ, T1(FM_D_EMBD),
     NULL},
    T_FFN(HFL, L),
};

#undef L
#undef OPT
#undef NQ
#undef EXP
#undef DENSE
#undef MOE
#undef SH

static const char *const hf_llama[] = {"LlamaForCausalLM", "MixtralForCausalLM", "MistralForCausalLM", NULL};
static const char *const hf_qwen2[] = {"Qwen2ForCausalLM", NULL};
static const char *const hf_qwen3[] = {"Qwen3ForCausalLM", NULL};
static const char *const hf_qwen2moe[] = {"Qwen2MoeForCausalLM", NULL};
static const char *const hf_qwen3moe[] = {"Qwen3MoeForCausalLM", NULL};
static const char *const hf_gemma3[] = {"Gemma3ForCausalLM", "Gemma3ForConditionalGeneration", NULL};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const fm_arch archs[] = {
    {"llama", hf_llama, FM_ROPE_NORM, FM_ACT_SILU,
     FM_ARCH_MOE | FM_ARCH_HF_PERMUTE_QK, hp_llama, N(hp_llama), t_llama, N(t_llama),
     "Dense llama and mixtral (llama with experts: n_expert > 0, ffn_*_exps). NORM rope on the "
     "permuted q/k rows. rope_freqs.weight (llama 3.x) divides each pair's frequency."},
    {"qwen2", hf_qwen2, FM_ROPE_NEOX, FM_ACT_SILU, 0, hp_qwen2, N(hp_qwen2), t_qwen2, N(t_qwen2),
     "q/k/v biases. HF use_sliding_window is false for released models and ignored."},
    {"qwen3", hf_qwen3, FM_ROPE_NEOX, FM_ACT_SILU, FM_ARCH_QK_NORM, hp_qwen3, N(hp_qwen3), t_qwen3,
     N(t_qwen3), "Per-head q/k RMSNorm before rope; head_dim may differ from n_embd/n_head."},
    {"qwen2moe", hf_qwen2moe, FM_ROPE_NEOX, FM_ACT_SILU,
     FM_ARCH_MOE | FM_ARCH_MOE_REQUIRED | FM_ARCH_SHARED_EXPERT, hp_qwen2moe, N(hp_qwen2moe),
     t_qwen2moe, N(t_qwen2moe),
     "Every layer is MoE (HF decoder_sparse_step must be 1, mlp_only_layers empty). Softmax top-k "
     "without renormalization, plus a shared SwiGLU expert scaled by sigmoid(ffn_gate_inp_shexp . x)."},
    {"qwen3moe", hf_qwen3moe, FM_ROPE_NEOX, FM_ACT_SILU,
     FM_ARCH_QK_NORM | FM_ARCH_MOE | FM_ARCH_MOE_REQUIRED, hp_qwen3moe, N(hp_qwen3moe), t_qwen3moe,
     N(t_qwen3moe),
     "Every layer is MoE (HF decoder_sparse_step 1, mlp_only_layers empty). Softmax top-k, "
     "renormalized. q/k RMSNorm per head before rope."},
    {"gemma3", hf_gemma3, FM_ROPE_NEOX, FM_ACT_GELU_TANH,
     FM_ARCH_QK_NORM | FM_ARCH_POST_NORMS | FM_ARCH_EMBD_SCALE | FM_ARCH_HF_NORM_PLUS1 |
         FM_ARCH_PRESCALE_Q,
     hp_gemma3, N(hp_gemma3), t_gemma3, N(t_gemma3),
     "Embeddings scaled by sqrtf(n_embd); q/k RMSNorm per head; post-attention and post-FFN "
     "RMSNorm before each residual add; GeGLU (tanh GELU); local layers use rope_theta_local and a "
     "sliding window; output tied to token_embd. HF norm weights +1."},
};

size_t fm_arch_count(void) { return N(archs); }

const fm_arch *fm_arch_at(size_t i) { return i < N(archs) ? &archs[i] : NULL; }

const fm_arch *fm_arch_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < N(archs); i++)
        if (strcmp(archs[i].name, name) == 0) return &archs[i];
    return NULL;
}

const fm_arch *fm_arch_find_hf(const char *hf_arch)
{
    if (!hf_arch) return NULL;
    for (size_t i = 0; i < N(archs); i++)
        for (const char *const *h = archs[i].hf_archs; h && *h; h++)
            if (strcmp(*h, hf_arch) == 0) return &archs[i];
    return NULL;
}

const fm_arch_hparam *fm_arch_find_hparam(const fm_arch *a, const char *name)
{
    for (size_t i = 0; i < a->n_hparams; i++)
        if (strcmp(a->hparams[i].name, name) == 0) return &a->hparams[i];
    return NULL;
}

/* -------------------------------------------------------------- hparams */

fm_err fm_arch_hp_u32(const json_t *hp, const char *name, uint32_t *out, fm_error *e)
{
    const json_t *v = json_object_get(hp, name);
    if (!v) return fm_error_set(e, FM_E_NOTFOUND, "arch hparams: \"%s\" missing", name);
    if (!json_is_integer(v))
        return fm_error_set(e, FM_E_FORMAT, "arch hparams: \"%s\" must be an integer", name);
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > UINT32_MAX)
        return fm_error_set(e, FM_E_FORMAT, "arch hparams: \"%s\" = %lld out of range [0, 2^32)",
                            name, (long long)x);
    *out = (uint32_t)x;
    return FM_OK;
}

fm_err fm_arch_hp_f32(const json_t *hp, const char *name, float *out, fm_error *e)
{
    const json_t *v = json_object_get(hp, name);
    if (!v) return fm_error_set(e, FM_E_NOTFOUND, "arch hparams: \"%s\" missing", name);
    if (!json_is_number(v))
        return fm_error_set(e, FM_E_FORMAT, "arch hparams: \"%s\" must be a number", name);
    double d = json_number_value(v);
    if (!isfinite(d) || fabs(d) > 3.0e38)
        return fm_error_set(e, FM_E_FORMAT, "arch hparams: \"%s\" = %g is not a finite float", name, d);
    *out = (float)d;
    return FM_OK;
}

fm_err fm_arch_hp_bool(const json_t *hp, const char *name, bool *out, fm_error *e)
{
    const json_t *v = json_object_get(hp, name);
    if (!v) return fm_error_set(e, FM_E_NOTFOUND, "arch hparams: \"%s\" missing", name);
    if (!json_is_boolean(v))
        return fm_error_set(e, FM_E_FORMAT, "arch hparams: \"%s\" must be true or false", name);
    *out = json_is_true(v);
    return FM_OK;
}

fm_err fm_arch_hp_str(const json_t *hp, const char *name, const char **out, fm_error *e)
{
    const json_t *v = json_object_get(hp, name);
    if (!v) return fm_error_set(e, FM_E_NOTFOUND, "arch hparams: \"%s\" missing", name);
    if (!json_is_string(v))
        return fm_error_set(e, FM_E_FORMAT, "arch hparams: \"%s\" must be a string", name);
    *out = json_string_value(v);
    return FM_OK;
}

static uint32_t hp_u32_or(const json_t *hp, const char *name, uint32_t def)
{
    uint32_t v = 0;
    return fm_arch_hp_u32(hp, name, &v, NULL) == FM_OK ? v : def;
}

static bool type_ok(fm_hp_type t, const json_t *v)
{
    switch (t) {
    case FM_HP_U32: return json_is_integer(v) && json_integer_value(v) >= 0 &&
                           (uint64_t)json_integer_value(v) <= UINT32_MAX;
    case FM_HP_F32: return json_is_number(v) && isfinite(json_number_value(v)) &&
                           fabs(json_number_value(v)) <= 3.0e38;
    case FM_HP_BOOL: return json_is_boolean(v);
    case FM_HP_STR: return json_is_string(v);
    }
    return false;
}

static const char *type_name(fm_hp_type t)
{
    switch (t) {
    case FM_HP_U32: return "an unsigned 32-bit integer";
    case FM_HP_F32: return "a finite number";
    case FM_HP_BOOL: return "a boolean";
    case FM_HP_STR: return "a string";
    }
    return "?";
}

/* Applies one default; absent stays absent when the default source is absent. */
static fm_err apply_default(const fm_arch_hparam *p, json_t *hp, fm_error *e)
{
    const char *d = p->def;
    json_t *v = NULL;
    if (!d) return FM_OK;
    if (d[0] == '=') {
        const char *src = d + 1;
        const char *slash = strchr(src, '/');
        if (slash) { /* "=a/b" integer division */
            char a[64];
            size_t la = (size_t)(slash - src);
            if (la >= sizeof a) return fm_error_set(e, FM_E_INTERNAL, "arch table: default %s", d);
            memcpy(a, src, la);
            a[la] = 0;
            uint32_t x, y;
            if (fm_arch_hp_u32(hp, a, &x, NULL) || fm_arch_hp_u32(hp, slash + 1, &y, NULL) || y == 0)
                return FM_OK;
            v = json_integer(x / y);
        } else {
            const json_t *s = json_object_get(hp, src);
            if (!s) return FM_OK;
            v = json_deep_copy(s);
        }
    } else {
        json_error_t je;
        v = json_loads(d, JSON_DECODE_ANY, &je);
        if (!v) return fm_error_set(e, FM_E_INTERNAL, "arch table: bad default %s for %s", d, p->name);
    }
    if (!v) return fm_error_set(e, FM_E_NOMEM, "arch hparams: out of memory");
    if (p->type == FM_HP_F32 && json_is_integer(v)) {
        json_t *r = json_real((double)json_integer_value(v));
        json_decref(v);
        v = r;
        if (!v) return fm_error_set(e, FM_E_NOMEM, "arch hparams: out of memory");
    }
    if (json_object_set_new(hp, p->name, v))
        return fm_error_set(e, FM_E_NOMEM, "arch hparams: out of memory");
    return FM_OK;
}

/* Caps: far above any released model, low enough that products of them fit
 * comfortably in 64 bits and allocations stay bounded by the file size. */
#define CAP_EMBD (1u << 17)
#define CAP_LAYER 1024u
#define CAP_HEAD 1024u
#define CAP_HEAD_DIM 4096u
#define CAP_VOCAB (1u << 24)
#define CAP_FF (1u << 20)
#define CAP_EXPERT 1024u
#define CAP_CTX (1u << 24)

static fm_err range_u32(const json_t *hp, const char *name, uint32_t lo, uint32_t hi, fm_error *e)
{
    uint32_t v;
    fm_err r = fm_arch_hp_u32(hp, name, &v, e);
    if (r) return r;
    if (v < lo || v > hi)
        return fm_error_set(e, FM_E_RANGE, "arch hparams: %s = %u, expected %u..%u", name, v, lo, hi);
    return FM_OK;
}

fm_err fm_arch_hparams_finalize(const fm_arch *a, json_t *hp, fm_error *e)
{
    fm_err r;
    if (!json_is_object(hp)) return fm_error_set(e, FM_E_ARG, "arch hparams: not a JSON object");
    const json_t *nm = json_object_get(hp, "name");
    if (!a) {
        if (!json_is_string(nm)) return fm_error_set(e, FM_E_FORMAT, "arch hparams: \"name\" missing");
        a = fm_arch_find(json_string_value(nm));
        if (!a)
            return fm_error_set(e, FM_E_UNSUPPORTED, "arch hparams: unknown architecture \"%s\"",
                                json_string_value(nm));
    } else if (nm && (!json_is_string(nm) || strcmp(json_string_value(nm), a->name) != 0)) {
        return fm_error_set(e, FM_E_FORMAT, "arch hparams: \"name\" is not \"%s\"", a->name);
    }
    if (!nm && json_object_set_new(hp, "name", json_string(a->name)))
        return fm_error_set(e, FM_E_NOMEM, "arch hparams: out of memory");

    for (size_t i = 0; i < a->n_hparams; i++) {
        const fm_arch_hparam *p = &a->hparams[i];
        json_t *v = json_object_get(hp, p->name);
        if (v && json_is_null(v)) {
            json_object_del(hp, p->name);
            v = NULL;
        }
        if (v && p->type == FM_HP_F32 && json_is_integer(v)) { /* 10000 -> 10000.0 */
            if (json_object_set_new(hp, p->name, json_real((double)json_integer_value(v))))
                return fm_error_set(e, FM_E_NOMEM, "arch hparams: out of memory");
            v = json_object_get(hp, p->name);
        }
        if (v && !type_ok(p->type, v))
            return fm_error_set(e, FM_E_FORMAT, "arch %s: hparam \"%s\" must be %s", a->name, p->name,
                                type_name(p->type));
        if (!v && (r = apply_default(p, hp, e))) return r;
        if ((p->flags & FM_HP_REQUIRED) && !json_object_get(hp, p->name))
            return fm_error_set(e, FM_E_NOTFOUND, "arch %s: required hparam \"%s\" missing%s%s%s",
                                a->name, p->name, p->gguf_key ? " (GGUF key " : "",
                                p->gguf_key ? p->gguf_key : "", p->gguf_key ? ")" : "");
    }

    /* Ranges and relations. */
    if ((r = range_u32(hp, "n_vocab", 1, CAP_VOCAB, e)) || (r = range_u32(hp, "n_embd", 1, CAP_EMBD, e)) ||
        (r = range_u32(hp, "n_layer", 1, CAP_LAYER, e)) || (r = range_u32(hp, "n_head", 1, CAP_HEAD, e)) ||
        (r = range_u32(hp, "n_head_kv", 1, CAP_HEAD, e)) ||
        (r = range_u32(hp, "head_dim_k", 1, CAP_HEAD_DIM, e)) ||
        (r = range_u32(hp, "head_dim_v", 1, CAP_HEAD_DIM, e)) ||
        (r = range_u32(hp, "n_ctx_train", 1, CAP_CTX, e)))
        return fm_error_prefix(e, "arch %s", a->name);
    uint32_t n_head = hp_u32_or(hp, "n_head", 1), n_head_kv = hp_u32_or(hp, "n_head_kv", 1);
    if (n_head % n_head_kv)
        return fm_error_set(e, FM_E_RANGE, "arch %s: n_head %u is not a multiple of n_head_kv %u",
                            a->name, n_head, n_head_kv);
    uint32_t hdk = hp_u32_or(hp, "head_dim_k", 0);
    if (json_object_get(hp, "rope_dim")) {
        uint32_t rd = hp_u32_or(hp, "rope_dim", 0);
        if (rd == 0 || rd > hdk || rd % 2)
            return fm_error_set(e, FM_E_RANGE, "arch %s: rope_dim %u must be even and in 2..head_dim_k (%u)",
                                a->name, rd, hdk);
    }
    float f;
    if (fm_arch_hp_f32(hp, "rms_eps", &f, NULL) == FM_OK && !(f > 0 && f < 1))
        return fm_error_set(e, FM_E_RANGE, "arch %s: rms_eps %g must be in (0, 1)", a->name, f);
    if (fm_arch_hp_f32(hp, "rope_theta", &f, NULL) == FM_OK && !(f > 1))
        return fm_error_set(e, FM_E_RANGE, "arch %s: rope_theta %g must be > 1", a->name, f);
    if (fm_arch_hp_f32(hp, "rope_theta_local", &f, NULL) == FM_OK && !(f > 1))
        return fm_error_set(e, FM_E_RANGE, "arch %s: rope_theta_local %g must be > 1", a->name, f);
    if (fm_arch_hp_f32(hp, "rope_scaling_factor", &f, NULL) == FM_OK && !(f > 0))
        return fm_error_set(e, FM_E_RANGE, "arch %s: rope_scaling_factor %g must be > 0", a->name, f);
    if (fm_arch_hp_f32(hp, "final_logit_softcap", &f, NULL) == FM_OK && f < 0)
        return fm_error_set(e, FM_E_RANGE, "arch %s: final_logit_softcap %g must be >= 0", a->name, f);
    if (fm_arch_hp_f32(hp, "attn_logit_softcap", &f, NULL) == FM_OK && f < 0)
        return fm_error_set(e, FM_E_RANGE, "arch %s: attn_logit_softcap %g must be >= 0", a->name, f);
    if (fm_arch_hp_f32(hp, "query_pre_attn_scalar", &f, NULL) == FM_OK && !(f > 0))
        return fm_error_set(e, FM_E_RANGE, "arch %s: query_pre_attn_scalar %g must be > 0", a->name, f);
    const char *s;
    if (fm_arch_hp_str(hp, "rope_scaling_type", &s, NULL) == FM_OK) {
        if (strcmp(s, "default") == 0) {
            json_object_set_new(hp, "rope_scaling_type", json_string("none"));
        } else if (strcmp(s, "none") && strcmp(s, "linear") && strcmp(s, "yarn")) {
            return fm_error_set(e, FM_E_UNSUPPORTED,
                                "arch %s: rope_scaling_type \"%s\" (supported: none, linear, yarn)",
                                a->name, s);
        }
    }
    if (fm_arch_hp_str(hp, "expert_gating", &s, NULL) == FM_OK && strcmp(s, "softmax"))
        return fm_error_set(e, FM_E_UNSUPPORTED, "arch %s: expert_gating \"%s\" (supported: softmax)",
                            a->name, s);
    if (json_object_get(hp, "swa_pattern") && (r = range_u32(hp, "swa_pattern", 1, CAP_LAYER, e)))
        return fm_error_prefix(e, "arch %s", a->name);

    uint32_t n_expert = hp_u32_or(hp, "n_expert", 0);
    if ((a->flags & FM_ARCH_MOE_REQUIRED) && n_expert == 0)
        return fm_error_set(e, FM_E_NOTFOUND, "arch %s: n_expert missing or 0 (GGUF key %%s.expert_count)",
                            a->name);
    if (n_expert) {
        if (!(a->flags & FM_ARCH_MOE))
            return fm_error_set(e, FM_E_FORMAT, "arch %s: has no experts but n_expert = %u", a->name,
                                n_expert);
        if ((r = range_u32(hp, "n_expert", 1, CAP_EXPERT, e)) ||
            (r = range_u32(hp, "n_expert_used", 1, n_expert, e)) ||
            (r = range_u32(hp, "n_ff_exp", 1, CAP_FF, e)))
            return fm_error_prefix(e, "arch %s", a->name);
        if (json_object_get(hp, "n_ff_shexp") && (r = range_u32(hp, "n_ff_shexp", 0, CAP_FF, e)))
            return fm_error_prefix(e, "arch %s", a->name);
    } else {
        if (!json_object_get(hp, "n_ff"))
            return fm_error_set(e, FM_E_NOTFOUND, "arch %s: dense model without n_ff (GGUF key "
                                "%s.feed_forward_length)", a->name, a->name);
    }
    if (json_object_get(hp, "n_ff") && (r = range_u32(hp, "n_ff", 1, CAP_FF, e)))
        return fm_error_prefix(e, "arch %s", a->name);
    return FM_OK;
}

static fm_err gguf_value_to_json(const fm_arch *a, const fm_arch_hparam *p, const char *key,
                                 const fm_gguf_kv *kv, json_t **out, fm_error *e)
{
    const fm_gguf_value *v = &kv->val;
    *out = NULL;
    if (v->type == FM_GGUF_ARRAY)
        return fm_error_set(e, FM_E_UNSUPPORTED,
                            "arch %s: GGUF key %s is an array (per-layer values are not supported)",
                            a->name, key);
    bool is_uint = v->type == FM_GGUF_UINT8 || v->type == FM_GGUF_UINT16 || v->type == FM_GGUF_UINT32 ||
                   v->type == FM_GGUF_UINT64;
    bool is_int = v->type == FM_GGUF_INT8 || v->type == FM_GGUF_INT16 || v->type == FM_GGUF_INT32 ||
                  v->type == FM_GGUF_INT64;
    bool is_float = v->type == FM_GGUF_FLOAT32 || v->type == FM_GGUF_FLOAT64;
    switch (p->type) {
    case FM_HP_U32: {
        uint64_t x;
        if (is_uint) x = v->v.u64;
        else if (is_int && v->v.i64 >= 0) x = (uint64_t)v->v.i64;
        else
            return fm_error_set(e, FM_E_FORMAT, "arch %s: GGUF key %s is %s, expected a non-negative integer",
                                a->name, key, fm_gguf_vtype_name(v->type));
        if (x > UINT32_MAX)
            return fm_error_set(e, FM_E_RANGE, "arch %s: GGUF key %s = %llu does not fit 32 bits",
                                a->name, key, (unsigned long long)x);
        *out = json_integer((json_int_t)x);
        break;
    }
    case FM_HP_F32: {
        double d;
        if (is_float) d = v->v.f64;
        else if (is_uint) d = (double)v->v.u64;
        else if (is_int) d = (double)v->v.i64;
        else
            return fm_error_set(e, FM_E_FORMAT, "arch %s: GGUF key %s is %s, expected a number", a->name,
                                key, fm_gguf_vtype_name(v->type));
        if (!isfinite(d) || fabs(d) > 3.0e38)
            return fm_error_set(e, FM_E_RANGE, "arch %s: GGUF key %s = %g is not a finite float",
                                a->name, key, d);
        *out = json_real(d);
        break;
    }
    case FM_HP_BOOL:
        if (v->type != FM_GGUF_BOOL)
            return fm_error_set(e, FM_E_FORMAT, "arch %s: GGUF key %s is %s, expected bool", a->name,
                                key, fm_gguf_vtype_name(v->type));
        *out = json_boolean(v->v.u64 != 0);
        break;
    case FM_HP_STR:
        if (v->type != FM_GGUF_STRING)
            return fm_error_set(e, FM_E_FORMAT, "arch %s: GGUF key %s is %s, expected string", a->name,
                                key, fm_gguf_vtype_name(v->type));
        *out = json_stringn(v->v.str.s, (size_t)v->v.str.len);
        if (!*out)
            return fm_error_set(e, FM_E_FORMAT, "arch %s: GGUF key %s is not valid UTF-8", a->name, key);
        break;
    }
    if (!*out) return fm_error_set(e, FM_E_NOMEM, "arch hparams: out of memory");
    return FM_OK;
}

fm_err fm_arch_hparams_from_gguf(const fm_gguf *g, json_t **out, fm_error *e)
{
    const char *an;
    const char *path = g->file.path ? g->file.path : "gguf";
    *out = NULL;
    fm_err r = fm_gguf_get_str(g, "general.architecture", &an, e);
    if (r) return fm_error_prefix(e, "%s", path);
    const fm_arch *a = fm_arch_find(an);
    if (!a) return fm_error_set(e, FM_E_UNSUPPORTED, "%s: architecture \"%s\" is not supported", path, an);
    json_t *hp = json_object();
    if (!hp || json_object_set_new(hp, "name", json_string(a->name))) {
        json_decref(hp);
        return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
    }
    char key[256];
    for (size_t i = 0; i < a->n_hparams; i++) {
        const fm_arch_hparam *p = &a->hparams[i];
        if (!p->gguf_key || (p->flags & FM_HP_GGUF_FIXED)) continue;
        snprintf(key, sizeof key, p->gguf_key, a->name);
        const fm_gguf_kv *kv = fm_gguf_find_kv(g, key);
        if (!kv) continue;
        json_t *v;
        if ((r = gguf_value_to_json(a, p, key, kv, &v, e))) goto fail;
        if (json_object_set_new(hp, p->name, v)) {
            r = fm_error_set(e, FM_E_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (!json_object_get(hp, "n_vocab")) {
        const fm_gguf_value *toks;
        const fm_gguf_tensor *te = fm_gguf_find_tensor(g, "token_embd.weight");
        if (fm_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks, NULL) == FM_OK && toks->v.arr.n > 0 &&
            toks->v.arr.n <= UINT32_MAX)
            json_object_set_new(hp, "n_vocab", json_integer((json_int_t)toks->v.arr.n));
        else if (te && te->n_dims == 2 && te->ne[1] <= UINT32_MAX)
            json_object_set_new(hp, "n_vocab", json_integer((json_int_t)te->ne[1]));
    }
    if ((a->flags & FM_ARCH_PRESCALE_Q) && !json_object_get(hp, "query_pre_attn_scalar")) {
        /* llama.cpp: the 62-layer gemma (27B) scales by n_embd/n_head. */
        uint32_t nl = hp_u32_or(hp, "n_layer", 0), ne = hp_u32_or(hp, "n_embd", 0),
                 nh = hp_u32_or(hp, "n_head", 0);
        if (nl == 62 && nh) json_object_set_new(hp, "query_pre_attn_scalar", json_real((double)(ne / nh)));
    }
    if ((r = fm_arch_hparams_finalize(a, hp, e))) goto fail;
    *out = hp;
    return FM_OK;
fail:
    json_decref(hp);
    return fm_error_prefix(e, "%s", path);
}

bool fm_arch_layer_is_swa(const json_t *hp, uint32_t il)
{
    uint32_t w = hp_u32_or(hp, "sliding_window", 0), p = hp_u32_or(hp, "swa_pattern", 0);
    return w > 0 && p > 0 && il % p < p - 1;
}

/* --------------------------------------------------------------- tensors */

fm_err fm_arch_dim(const json_t *hp, fm_dim d, uint64_t *out, fm_error *e)
{
    uint32_t a = 0, b = 0;
    fm_err r = FM_OK;
    switch (d) {
    case FM_D_NONE: *out = 1; return FM_OK;
    case FM_D_EMBD: r = fm_arch_hp_u32(hp, "n_embd", &a, e); *out = a; break;
    case FM_D_VOCAB: r = fm_arch_hp_u32(hp, "n_vocab", &a, e); *out = a; break;
    case FM_D_QDIM:
    case FM_D_ODIM:
        if (!(r = fm_arch_hp_u32(hp, "n_head", &a, e)))
            r = fm_arch_hp_u32(hp, d == FM_D_QDIM ? "head_dim_k" : "head_dim_v", &b, e);
        *out = (uint64_t)a * b;
        break;
    case FM_D_KDIM:
    case FM_D_VDIM:
        if (!(r = fm_arch_hp_u32(hp, "n_head_kv", &a, e)))
            r = fm_arch_hp_u32(hp, d == FM_D_KDIM ? "head_dim_k" : "head_dim_v", &b, e);
        *out = (uint64_t)a * b;
        break;
    case FM_D_HEAD_K: r = fm_arch_hp_u32(hp, "head_dim_k", &a, e); *out = a; break;
    case FM_D_FF: r = fm_arch_hp_u32(hp, "n_ff", &a, e); *out = a; break;
    case FM_D_FF_EXP: r = fm_arch_hp_u32(hp, "n_ff_exp", &a, e); *out = a; break;
    case FM_D_FF_SHEXP: r = fm_arch_hp_u32(hp, "n_ff_shexp", &a, e); *out = a; break;
    case FM_D_EXPERT: r = fm_arch_hp_u32(hp, "n_expert", &a, e); *out = a; break;
    case FM_D_ROPE_HALF: r = fm_arch_hp_u32(hp, "rope_dim", &a, e); *out = a / 2; break;
    default: return fm_error_set(e, FM_E_INTERNAL, "arch: unknown dim %d", (int)d);
    }
    return r;
}

bool fm_arch_tensor_name(const fm_arch_tensor *t, uint32_t layer, char *buf, size_t n)
{
    int k = (t->flags & FM_T_LAYER) ? snprintf(buf, n, t->name, (int)layer) : snprintf(buf, n, "%s", t->name);
    return k >= 0 && (size_t)k < n;
}

/* Matches "pre%dsuf" against name; *layer gets the number. */
static bool match_layer_pattern(const char *pat, const char *name, uint32_t *layer)
{
    const char *pd = strstr(pat, "%d");
    if (!pd) return false;
    size_t lp = (size_t)(pd - pat);
    if (strncmp(name, pat, lp) != 0) return false;
    const char *p = name + lp;
    if (!isdigit((unsigned char)*p)) return false;
    if (p[0] == '0' && isdigit((unsigned char)p[1])) return false; /* no leading zeros */
    uint64_t v = 0;
    while (isdigit((unsigned char)*p)) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX) return false;
        p++;
    }
    if (strcmp(p, pd + 2) != 0) return false;
    *layer = (uint32_t)v;
    return true;
}

const fm_arch_tensor *fm_arch_match(const fm_arch *a, const char *name, uint32_t *layer)
{
    for (size_t i = 0; i < a->n_tensors; i++) {
        const fm_arch_tensor *t = &a->tensors[i];
        if (t->flags & FM_T_LAYER) {
            if (match_layer_pattern(t->name, name, layer)) return t;
        } else if (strcmp(t->name, name) == 0) {
            *layer = 0;
            return t;
        }
    }
    return NULL;
}

bool fm_arch_tensor_applies(const fm_arch_tensor *t, const json_t *hp)
{
    uint32_t n_expert = hp_u32_or(hp, "n_expert", 0);
    if ((t->flags & FM_T_MOE) && n_expert == 0) return false;
    if ((t->flags & FM_T_DENSE) && n_expert > 0) return false;
    if ((t->flags & FM_T_SHEXP) && hp_u32_or(hp, "n_ff_shexp", 0) == 0) return false;
    return true;
}

fm_err fm_arch_tensor_shape(const fm_arch_tensor *t, const json_t *hp, uint32_t *n_dims, uint64_t ne[3],
                            fm_error *e)
{
    *n_dims = t->n_dims;
    for (uint32_t i = 0; i < 3; i++) {
        fm_err r = fm_arch_dim(hp, i < t->n_dims ? t->ne[i] : FM_D_NONE, &ne[i], e);
        if (r) return r;
    }
    return FM_OK;
}

static void fmt_ne(char *buf, size_t n, uint32_t nd, const uint64_t *ne)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (uint32_t i = 0; i < nd && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? ", " : "", (unsigned long long)ne[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

fm_err fm_arch_check_tensors(const fm_arch *a, const json_t *hp, const fm_arch_tinfo *t, size_t n,
                             const char *what, fm_error *e)
{
    uint32_t n_layer;
    fm_err r = fm_arch_hp_u32(hp, "n_layer", &n_layer, e);
    if (r) return fm_error_prefix(e, "%s", what);
    /* seen[i * (n_layer) + l] for each table entry */
    size_t nseen;
    if (!fm_mul_size(a->n_tensors, (size_t)n_layer, &nseen))
        return fm_error_set(e, FM_E_RANGE, "%s: too many layers", what);
    unsigned char *seen = calloc(nseen ? nseen : 1, 1);
    if (!seen) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < n; i++) {
        uint32_t layer;
        const fm_arch_tensor *d = fm_arch_match(a, t[i].name, &layer);
        if (!d) {
            r = fm_error_set(e, FM_E_FORMAT, "%s: unknown tensor \"%s\" for architecture %s", what,
                             t[i].name, a->name);
            goto out;
        }
        if ((d->flags & FM_T_LAYER) && layer >= n_layer) {
            r = fm_error_set(e, FM_E_FORMAT, "%s: tensor \"%s\": layer %u >= n_layer %u", what, t[i].name,
                             layer, n_layer);
            goto out;
        }
        if (!fm_arch_tensor_applies(d, hp)) {
            r = fm_error_set(e, FM_E_FORMAT, "%s: tensor \"%s\" does not belong in a %s model", what,
                             t[i].name, hp_u32_or(hp, "n_expert", 0) ? "MoE" : "dense");
            goto out;
        }
        size_t idx = (size_t)(d - a->tensors) * n_layer + layer;
        if (seen[idx]) {
            r = fm_error_set(e, FM_E_FORMAT, "%s: tensor \"%s\" appears twice", what, t[i].name);
            goto out;
        }
        seen[idx] = 1;
        uint32_t nd;
        uint64_t ne[3];
        if ((r = fm_arch_tensor_shape(d, hp, &nd, ne, e))) {
            fm_error_prefix(e, "%s: tensor \"%s\"", what, t[i].name);
            goto out;
        }
        /* Compare as 4-D with trailing ones (llama.cpp's rule). */
        bool ok = t[i].n_dims <= 4;
        for (uint32_t k = 0; ok && k < 4; k++) {
            uint64_t want = k < 3 ? ne[k] : 1;
            uint64_t got = k < t[i].n_dims ? t[i].ne[k] : 1;
            if (want != got) ok = false;
        }
        if (!ok) {
            char w[96], g[96];
            fmt_ne(w, sizeof w, nd, ne);
            fmt_ne(g, sizeof g, t[i].n_dims > 4 ? 4 : t[i].n_dims, t[i].ne);
            r = fm_error_set(e, FM_E_FORMAT, "%s: tensor \"%s\": shape (ne) expected %s, found %s", what,
                             t[i].name, w, g);
            goto out;
        }
    }
    for (size_t i = 0; i < a->n_tensors; i++) {
        const fm_arch_tensor *d = &a->tensors[i];
        if ((d->flags & FM_T_OPTIONAL) || !fm_arch_tensor_applies(d, hp)) continue;
        uint32_t nl = (d->flags & FM_T_LAYER) ? n_layer : 1;
        for (uint32_t l = 0; l < nl; l++) {
            if (!seen[i * n_layer + l]) {
                char nm[128];
                fm_arch_tensor_name(d, l, nm, sizeof nm);
                r = fm_error_set(e, FM_E_NOTFOUND, "%s: required tensor \"%s\" missing (%s)", what, nm,
                                 a->name);
                goto out;
            }
        }
    }
    r = FM_OK;
out:
    free(seen);
    return r;
}

fm_err fm_arch_check_gguf(const fm_arch *a, const json_t *hp, const fm_gguf *g, fm_error *e)
{
    if (g->n_tensors > SIZE_MAX / sizeof(fm_arch_tinfo))
        return fm_error_set(e, FM_E_RANGE, "too many tensors");
    fm_arch_tinfo *ti = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *ti);
    if (!ti) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        ti[i].name = g->tensors[i].name.s;
        ti[i].n_dims = g->tensors[i].n_dims;
        for (int k = 0; k < 4; k++) ti[i].ne[k] = g->tensors[i].ne[k];
    }
    fm_err r = fm_arch_check_tensors(a, hp, ti, (size_t)g->n_tensors, g->file.path ? g->file.path : "gguf", e);
    free(ti);
    return r;
}
