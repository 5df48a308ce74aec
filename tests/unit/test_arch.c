/* formats/arch: architecture tables, canonical hparams from GGUF, defaults
 * and range checks, tensor-set validation (issue 6). Uses the committed
 * fixtures tests/fixtures/arch/ GGUF files (written by gguf-py with the keys a
 * llama.cpp conversion writes). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/arch.h"
#include "formats/gguf.h"
#include "t.h"

#define DIR "tests/fixtures/arch/"

static json_t *hp_of(const char *fixture)
{
    char path[256];
    snprintf(path, sizeof path, DIR "%s.gguf", fixture);
    fm_gguf *g = NULL;
    fm_error e = {0};
    json_t *hp = NULL;
    CHECKF(fm_gguf_open(&g, path, &e) == FM_OK, "%s", e.msg);
    if (!g) return NULL;
    fm_err r = fm_arch_hparams_from_gguf(g, &hp, &e);
    CHECKF(r == FM_OK, "%s: %s", fixture, e.msg);
    if (hp) {
        const fm_arch *a = fm_arch_find(json_string_value(json_object_get(hp, "name")));
        CHECK(a != NULL);
        r = a ? fm_arch_check_gguf(a, hp, g, &e) : FM_E_INTERNAL;
        CHECKF(r == FM_OK, "%s: tensor check: %s", fixture, e.msg);
    }
    fm_gguf_close(g);
    return hp;
}

static uint32_t u(const json_t *hp, const char *k)
{
    uint32_t v = 0xdeadbeef;
    fm_arch_hp_u32(hp, k, &v, NULL);
    return v;
}

static double f(const json_t *hp, const char *k)
{
    float v = NAN;
    fm_arch_hp_f32(hp, k, &v, NULL);
    return v;
}

static const char *s(const json_t *hp, const char *k)
{
    const char *v = "";
    fm_arch_hp_str(hp, k, &v, NULL);
    return v;
}

static bool b(const json_t *hp, const char *k)
{
    bool v = false;
    fm_arch_hp_bool(hp, k, &v, NULL);
    return v;
}

/* finalize a copy of base with one key set (NULL value: deleted) */
static fm_err with(const json_t *base, const char *k, json_t *v, fm_error *e)
{
    json_t *hp = json_deep_copy(base);
    if (v) json_object_set_new(hp, k, v);
    else json_object_del(hp, k);
    fm_err r = fm_arch_hparams_finalize(NULL, hp, e);
    json_decref(hp);
    return r;
}

static void test_tables(void)
{
    static const char *const names[] = {"llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe", "gemma3"};
    CHECK(fm_arch_count() == 6);
    for (size_t i = 0; i < 6; i++) {
        const fm_arch *a = fm_arch_find(names[i]);
        CHECKF(a != NULL && strcmp(a->name, names[i]) == 0, "%s", names[i]);
        if (!a) continue;
        /* every entry's name formats and matches back to itself */
        for (size_t t = 0; t < a->n_tensors; t++) {
            char nm[128];
            uint32_t layer = 99;
            CHECK(fm_arch_tensor_name(&a->tensors[t], 7, nm, sizeof nm));
            CHECKF(fm_arch_match(a, nm, &layer) == &a->tensors[t], "%s %s", a->name, nm);
            CHECK(layer == ((a->tensors[t].flags & FM_T_LAYER) ? 7u : 0u));
            CHECK(((a->tensors[t].flags & FM_T_EXPERT) != 0) == (a->tensors[t].part != NULL));
        }
        for (size_t h = 0; h < a->n_hparams; h++) CHECK(fm_arch_find_hparam(a, a->hparams[h].name) == &a->hparams[h]);
    }
    CHECK(fm_arch_find("gpt2") == NULL && fm_arch_find(NULL) == NULL);
    CHECK(fm_arch_find_hf("MixtralForCausalLM") == fm_arch_find("llama"));
    CHECK(fm_arch_find_hf("Qwen3MoeForCausalLM") == fm_arch_find("qwen3moe"));
    CHECK(fm_arch_find_hf("Gemma3ForCausalLM") == fm_arch_find("gemma3"));
    CHECK(fm_arch_find_hf("BertModel") == NULL);
    /* facts the runtime relies on */
    CHECK(fm_arch_find("llama")->rope == FM_ROPE_NORM && fm_arch_find("qwen3moe")->rope == FM_ROPE_NEOX);
    CHECK(fm_arch_find("gemma3")->act == FM_ACT_GELU_TANH && fm_arch_find("qwen2")->act == FM_ACT_SILU);
    CHECK((fm_arch_find("llama")->flags & FM_ARCH_HF_PERMUTE_QK) && (fm_arch_find("gemma3")->flags & FM_ARCH_HF_NORM_PLUS1));
    CHECK(fm_arch_find("qwen2moe")->flags & FM_ARCH_SHARED_EXPERT);
    /* no spurious matches */
    uint32_t l;
    const fm_arch *q = fm_arch_find("qwen3moe");
    CHECK(fm_arch_match(q, "blk.03.attn_q.weight", &l) == NULL); /* leading zero */
    CHECK(fm_arch_match(q, "blk.x.attn_q.weight", &l) == NULL);
    CHECK(fm_arch_match(q, "blk.1.attn_q.weightx", &l) == NULL);
    CHECK(fm_arch_match(q, "blk.99999999999.attn_q.weight", &l) == NULL);
    CHECK(fm_arch_match(q, "blk.1.ffn_gate.weight", &l) == NULL); /* dense FFN is not in qwen3moe */
}

static void test_from_gguf(void)
{
    json_t *hp = hp_of("qwen3");
    if (hp) {
        CHECK(strcmp(s(hp, "name"), "qwen3") == 0);
        CHECK(u(hp, "n_layer") == 2 && u(hp, "n_embd") == 64 && u(hp, "n_head") == 4 && u(hp, "n_head_kv") == 2);
        CHECK(u(hp, "head_dim_k") == 32 && u(hp, "head_dim_v") == 32 && u(hp, "rope_dim") == 32);
        CHECK(u(hp, "n_vocab") == 320 && u(hp, "n_ff") == 128 && u(hp, "n_ctx_train") == 256);
        CHECK(strcmp(s(hp, "rope_scaling_type"), "yarn") == 0 && f(hp, "rope_scaling_factor") == 4.0);
        CHECK(u(hp, "rope_scaling_orig_ctx") == 64 && f(hp, "rope_theta") == 1e6);
        CHECK(fabs(f(hp, "rms_eps") - 1e-6) < 1e-12);
        CHECK(!json_object_get(hp, "n_expert") || u(hp, "n_expert") == 0);
        /* idempotent */
        char *d1 = json_dumps(hp, JSON_SORT_KEYS);
        fm_error e;
        CHECK(fm_arch_hparams_finalize(NULL, hp, &e) == FM_OK);
        char *d2 = json_dumps(hp, JSON_SORT_KEYS);
        CHECK(d1 && d2 && strcmp(d1, d2) == 0);
        free(d1);
        free(d2);
        json_decref(hp);
    }
    hp = hp_of("llama"); /* no key_length: head_dim = n_embd / n_head; linear scaling */
    if (hp) {
        CHECK(u(hp, "head_dim_k") == 16 && strcmp(s(hp, "rope_scaling_type"), "linear") == 0);
        CHECK(u(hp, "rope_scaling_orig_ctx") == u(hp, "n_ctx_train"));
        json_decref(hp);
    }
    hp = hp_of("mixtral"); /* llama with experts: n_ff_exp defaults to n_ff, renormalized top-k */
    if (hp) {
        CHECK(u(hp, "n_expert") == 4 && u(hp, "n_expert_used") == 2 && u(hp, "n_ff_exp") == 64);
        CHECK(b(hp, "expert_weights_norm") && strcmp(s(hp, "expert_gating"), "softmax") == 0);
        json_decref(hp);
    }
    hp = hp_of("qwen2moe");
    if (hp) {
        CHECK(u(hp, "n_ff_shexp") == 64 && u(hp, "n_ff_exp") == 32 && !b(hp, "expert_weights_norm"));
        json_decref(hp);
    }
    hp = hp_of("qwen3moe");
    if (hp) {
        CHECK(u(hp, "n_expert") == 8 && b(hp, "expert_weights_norm"));
        json_decref(hp);
    }
    hp = hp_of("gemma3");
    if (hp) {
        CHECK(u(hp, "sliding_window") == 8 && u(hp, "swa_pattern") == 6);
        CHECK(f(hp, "rope_theta_local") == 10000.0 && f(hp, "rope_theta") == 1e6);
        CHECK(f(hp, "query_pre_attn_scalar") == 16.0); /* head_dim_k, not the 27B rule */
        CHECK(f(hp, "final_logit_softcap") == 0.0);
        for (uint32_t il = 0; il < 6; il++) CHECKF(fm_arch_layer_is_swa(hp, il) == (il != 5), "layer %u", il);
        json_decref(hp);
    }
    hp = hp_of("qwen2"); /* tied output: output.weight absent is fine */
    json_decref(hp);
}

static void test_finalize(void)
{
    fm_error e;
    json_t *base = json_pack("{s:s, s:i, s:i, s:i, s:i, s:f, s:i}", "name", "qwen2", "n_vocab", 100, "n_embd", 64,
                             "n_layer", 2, "n_head", 4, "rms_eps", 1e-5, "n_ff", 128);
    json_t *hp = json_deep_copy(base);
    CHECKF(fm_arch_hparams_finalize(NULL, hp, &e) == FM_OK, "%s", e.msg);
    CHECK(u(hp, "n_head_kv") == 4 && u(hp, "head_dim_k") == 16 && u(hp, "head_dim_v") == 16);
    CHECK(u(hp, "rope_dim") == 16 && f(hp, "rope_theta") == 1e6 && u(hp, "n_ctx_train") == 4096);
    CHECK(strcmp(s(hp, "rope_scaling_type"), "none") == 0);
    json_decref(hp);
    /* wrong name for the table */
    hp = json_deep_copy(base);
    CHECK(fm_arch_hparams_finalize(fm_arch_find("llama"), hp, &e) == FM_E_FORMAT);
    json_decref(hp);
    CHECK(with(base, "name", json_string("bert"), &e) == FM_E_UNSUPPORTED);
    CHECK(with(base, "n_embd", NULL, &e) == FM_E_NOTFOUND && strstr(e.msg, "n_embd") && strstr(e.msg, "embedding_length"));
    CHECK(with(base, "n_layer", json_string("2"), &e) == FM_E_FORMAT && strstr(e.msg, "n_layer"));
    CHECK(with(base, "n_layer", json_integer(-1), &e) == FM_E_FORMAT);
    CHECK(with(base, "n_layer", json_integer(100000), &e) == FM_E_RANGE);
    CHECK(with(base, "n_head_kv", json_integer(3), &e) == FM_E_RANGE && strstr(e.msg, "multiple"));
    CHECK(with(base, "rms_eps", json_real(0.0), &e) == FM_E_RANGE);
    CHECK(with(base, "rope_scaling_type", json_string("longrope"), &e) == FM_E_UNSUPPORTED);
    CHECK(with(base, "rope_scaling_type", json_string("default"), &e) == FM_OK);
    CHECK(with(base, "rope_dim", json_integer(7), &e) == FM_E_RANGE);
    CHECK(with(base, "n_ff", NULL, &e) == FM_E_NOTFOUND); /* qwen2 is dense */
    CHECK(with(base, "rope_theta", json_integer(500000), &e) == FM_OK); /* integer accepted for a float */
    CHECK(with(base, "n_expert", json_integer(4), &e) == FM_E_FORMAT); /* qwen2 has no experts */
    json_decref(base);

    base = json_pack("{s:s, s:i, s:i, s:i, s:i, s:f, s:i, s:i, s:i}", "name", "qwen3moe", "n_vocab", 100, "n_embd",
                     64, "n_layer", 2, "n_head", 4, "rms_eps", 1e-6, "n_expert", 8, "n_expert_used", 2, "n_ff_exp", 32);
    CHECK(with(base, "n_layer", json_integer(2), &e) == FM_OK);
    CHECK(with(base, "n_expert", NULL, &e) == FM_E_NOTFOUND);
    CHECK(with(base, "n_expert_used", json_integer(9), &e) == FM_E_RANGE);
    CHECK(with(base, "n_expert_used", json_integer(0), &e) == FM_E_RANGE);
    CHECK(with(base, "n_ff_exp", NULL, &e) == FM_E_NOTFOUND); /* no n_ff to default from */
    CHECK(with(base, "n_expert", json_integer(100000), &e) == FM_E_RANGE);
    json_decref(base);
}

static void test_check_tensors(void)
{
    fm_error e;
    json_t *hp = hp_of("qwen3moe");
    fm_gguf *g = NULL;
    CHECK(fm_gguf_open(&g, DIR "qwen3moe.gguf", &e) == FM_OK);
    if (!hp || !g) return;
    const fm_arch *a = fm_arch_find("qwen3moe");
    size_t n = (size_t)g->n_tensors;
    fm_arch_tinfo *t = calloc(n + 1, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        t[i].name = g->tensors[i].name.s;
        t[i].n_dims = g->tensors[i].n_dims;
        for (int k = 0; k < 4; k++) t[i].ne[k] = g->tensors[i].ne[k];
    }
    CHECK(fm_arch_check_tensors(a, hp, t, n, "x", &e) == FM_OK);
    /* a missing required tensor is named */
    size_t iq = n;
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, "blk.1.attn_k_norm.weight") == 0) iq = i;
    CHECK(iq < n);
    if (iq < n) {
        fm_arch_tinfo saved = t[iq];
        t[iq] = t[n - 1];
        CHECK(fm_arch_check_tensors(a, hp, t, n - 1, "x", &e) == FM_E_NOTFOUND &&
              strstr(e.msg, "blk.1.attn_k_norm.weight"));
        t[n - 1] = t[iq];
        t[iq] = saved;
        /* wrong shape: expected vs found in the message */
        t[iq].ne[0] = 31;
        CHECK(fm_arch_check_tensors(a, hp, t, n, "x", &e) == FM_E_FORMAT && strstr(e.msg, "[32]") && strstr(e.msg, "[31]"));
        t[iq].ne[0] = 32;
        /* trailing ones are fine (llama.cpp's rule) */
        t[iq].n_dims = 2;
        t[iq].ne[1] = 1;
        CHECK(fm_arch_check_tensors(a, hp, t, n, "x", &e) == FM_OK);
        t[iq].n_dims = 1;
    }
    /* unknown, out-of-range layer, duplicate, dense tensor in a MoE model */
    t[n] = t[0];
    t[n].name = "blk.0.attn_qkv.weight";
    CHECK(fm_arch_check_tensors(a, hp, t, n + 1, "x", &e) == FM_E_FORMAT && strstr(e.msg, "unknown"));
    t[n].name = "blk.2.attn_norm.weight";
    CHECK(fm_arch_check_tensors(a, hp, t, n + 1, "x", &e) == FM_E_FORMAT && strstr(e.msg, "layer 2"));
    t[n] = t[0];
    CHECK(fm_arch_check_tensors(a, hp, t, n + 1, "x", &e) == FM_E_FORMAT && strstr(e.msg, "twice"));
    const fm_arch *l = fm_arch_find("llama");
    json_t *hl = hp_of("mixtral");
    fm_gguf *gm = NULL;
    CHECK(fm_gguf_open(&gm, DIR "mixtral.gguf", &e) == FM_OK);
    if (hl && gm) {
        size_t m = (size_t)gm->n_tensors;
        fm_arch_tinfo *tm = calloc(m + 1, sizeof *tm);
        for (size_t i = 0; i < m; i++) {
            tm[i].name = gm->tensors[i].name.s;
            tm[i].n_dims = gm->tensors[i].n_dims;
            for (int k = 0; k < 4; k++) tm[i].ne[k] = gm->tensors[i].ne[k];
        }
        tm[m] = tm[0];
        tm[m].name = "blk.0.ffn_gate.weight";
        tm[m].n_dims = 2;
        tm[m].ne[0] = 64;
        tm[m].ne[1] = 64;
        CHECK(fm_arch_check_tensors(l, hl, tm, m + 1, "x", &e) == FM_E_FORMAT && strstr(e.msg, "MoE"));
        /* a fused expert tensor with the wrong expert count */
        for (size_t i = 0; i < m; i++)
            if (strcmp(tm[i].name, "blk.1.ffn_down_exps.weight") == 0) tm[i].ne[2] = 3;
        CHECK(fm_arch_check_tensors(l, hl, tm, m, "x", &e) == FM_E_FORMAT && strstr(e.msg, "ffn_down_exps"));
        free(tm);
    }
    json_decref(hl);
    fm_gguf_close(gm);
    free(t);
    fm_gguf_close(g);
    json_decref(hp);
}

int main(void)
{
    test_tables();
    test_from_gguf();
    test_finalize();
    test_check_tensors();
    T_DONE();
}
