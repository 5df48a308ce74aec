/* Canonical tokenizer JSON from GGUF metadata or a Hugging Face directory
 * (formats/tokmeta.h, specs/tokenizer.md). The load-time rules are those of
 * llama.cpp's llama_vocab::impl::load (llama-cpp-python 0.3.36); the HF
 * mapping follows llama.cpp's convert_hf_to_gguf.py / gguf-py SpecialVocab,
 * except that the pre-tokenizer is recognised by its Split regex instead of
 * by hashing token ids. */
#include "formats/tokmeta.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/file.h"
#include "formats/util.h"

#define TM_MAX_VOCAB (1u << 24)
#define TM_MAX_TOKEN_LEN 65536u
#define TM_HF_JSON_CAP (1u << 30)
#define TM_HF_SMALL_CAP (64u << 20)

enum { TM_SPM = 1, TM_BPE = 2 };
enum { T_UNDEF = 0, T_NORMAL = 1, T_UNKNOWN = 2, T_CONTROL = 3, T_USER = 4, T_UNUSED = 5, T_BYTE = 6 };

/* special ids, in the order of the canonical "special" object */
enum { S_BOS, S_EOS, S_EOT, S_EOM, S_UNK, S_SEP, S_PAD, S_MASK, S_FIM_PRE, S_FIM_SUF, S_FIM_MID, S_FIM_PAD,
       S_FIM_REP, S_FIM_SEP, S_COUNT };
static const char *const k_sp_names[S_COUNT] = {"bos", "eos", "eot", "eom", "unk", "sep", "pad", "mask",
                                                 "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep"};
static const char *const k_sp_gguf[S_COUNT] = {
    "tokenizer.ggml.bos_token_id",     "tokenizer.ggml.eos_token_id",     "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",     "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.mask_token_id",    "tokenizer.ggml.fim_pre_token_id",
    "tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.fim_pad_token_id",
    "tokenizer.ggml.fim_rep_token_id", "tokenizer.ggml.fim_sep_token_id"};

int fm_tokmeta_pre_family(const char *pre)
{
    static const char *const llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                         "midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe", "chatglm-bpe"};
    static const char *const qwen2[] = {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2",
                                        "hunyuan", "solar-open", "grok-2"};
    static const char *const gpt2[] = {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
                                       "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "mpt", "olmo",
                                       "jais", "trillion", "granite-docling"};
    if (!pre) return FM_TOKPRE_NONE;
    for (size_t i = 0; i < sizeof llama3 / sizeof *llama3; i++)
        if (!strcmp(pre, llama3[i])) return FM_TOKPRE_LLAMA3;
    for (size_t i = 0; i < sizeof qwen2 / sizeof *qwen2; i++)
        if (!strcmp(pre, qwen2[i])) return FM_TOKPRE_QWEN2;
    for (size_t i = 0; i < sizeof gpt2 / sizeof *gpt2; i++)
        if (!strcmp(pre, gpt2[i])) return FM_TOKPRE_GPT2;
    if (!strcmp(pre, "qwen35")) return FM_TOKPRE_QWEN35;
    return FM_TOKPRE_NONE;
}

/* ------------------------------------------------------------------------ */
/* the source-independent description                                       */
/* ------------------------------------------------------------------------ */

typedef struct raw {
    const char *src; /* file/dir for messages */
    int model;
    char *pre;
    uint32_t n;
    char **tok; /* owned copies (NUL-terminated; may contain NULs) */
    uint32_t *tlen;
    float *score;
    bool has_scores;
    uint8_t *type;
    uint32_t n_merges;
    char **merge;
    uint32_t *mlen;
    int64_t id[S_COUNT]; /* from the source; -1 = not given */
    int add_bos, add_eos, add_sep, add_space_prefix, remove_extra_ws; /* -1 = not given */
    char *chat_template;
    int32_t *eog_extra;
    size_t n_eog_extra;
    /* name lookup built by tm_index */
    uint32_t *ht;
    uint32_t ht_mask;
} raw;

static void raw_free(raw *r)
{
    for (uint32_t i = 0; r->tok && i < r->n; i++) free(r->tok[i]);
    for (uint32_t i = 0; r->merge && i < r->n_merges; i++) free(r->merge[i]);
    free(r->tok);
    free(r->tlen);
    free(r->score);
    free(r->type);
    free(r->merge);
    free(r->mlen);
    free(r->pre);
    free(r->chat_template);
    free(r->eog_extra);
    free(r->ht);
}

static void raw_init(raw *r, const char *src)
{
    memset(r, 0, sizeof *r);
    r->src = src;
    for (int i = 0; i < S_COUNT; i++) r->id[i] = -1;
    r->add_bos = r->add_eos = r->add_sep = r->add_space_prefix = r->remove_extra_ws = -1;
}

static fm_err raw_alloc(raw *r, uint32_t n, fm_error *e)
{
    r->n = n;
    r->tok = calloc(n, sizeof *r->tok);
    r->tlen = calloc(n, sizeof *r->tlen);
    r->score = calloc(n, sizeof *r->score);
    r->type = malloc(n);
    if (!r->tok || !r->tlen || !r->score || !r->type)
        return fm_error_set(e, FM_E_NOMEM, "%s: out of memory for %u tokens", r->src, n);
    memset(r->type, T_NORMAL, n);
    return FM_OK;
}

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static uint64_t h64(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* text -> id with llama.cpp's token_to_id semantics (last duplicate wins) */
static fm_err tm_index(raw *r, fm_error *e)
{
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)r->n) cap <<= 1;
    r->ht_mask = (uint32_t)cap - 1;
    r->ht = calloc(cap, sizeof *r->ht);
    if (!r->ht) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", r->src);
    for (uint32_t i = 0; i < r->n; i++) {
        uint32_t h = (uint32_t)h64(r->tok[i], r->tlen[i]) & r->ht_mask;
        for (;;) {
            uint32_t v = r->ht[h];
            if (!v || (r->tlen[v - 1] == r->tlen[i] && !memcmp(r->tok[v - 1], r->tok[i], r->tlen[i]))) {
                r->ht[h] = i + 1;
                break;
            }
            h = (h + 1) & r->ht_mask;
        }
    }
    return FM_OK;
}

static int64_t tm_find(const raw *r, const char *s)
{
    size_t n = strlen(s);
    uint32_t h = (uint32_t)h64(s, n) & r->ht_mask;
    for (;;) {
        uint32_t v = r->ht[h];
        if (!v) return -1;
        if (r->tlen[v - 1] == n && !memcmp(r->tok[v - 1], s, n)) return v - 1;
        h = (h + 1) & r->ht_mask;
    }
}

/* first token of list (in list order) that exists; -1 if none (T9) */
static int64_t tm_first(const raw *r, const char *const *list)
{
    for (size_t i = 0; list[i]; i++) {
        int64_t id = tm_find(r, list[i]);
        if (id >= 0) return id;
    }
    return -1;
}

static void force_control(raw *r, int64_t id)
{
    if (id >= 0 && r->type[id] != T_CONTROL) r->type[id] = T_CONTROL;
}

static bool has_id(const int32_t *v, size_t n, int32_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x) return true;
    return false;
}

/* Applies llama.cpp's load-time rules and builds the canonical JSON. */
static fm_err tm_build(raw *r, json_t *source, json_t **out, fm_error *e)
{
    fm_err rc = tm_index(r, e);
    if (rc) return rc;
    int fam = r->model == TM_BPE ? fm_tokmeta_pre_family(r->pre) : FM_TOKPRE_NONE;

    /* defaults (llama_vocab::impl::load), then the source's values */
    int64_t id[S_COUNT];
    for (int i = 0; i < S_COUNT; i++) id[i] = -1;
    bool add_bos, add_eos = false, add_sep = false, add_space_prefix, ignore_merges = false;
    if (r->model == TM_SPM) {
        id[S_BOS] = 1;
        id[S_EOS] = 2;
        id[S_UNK] = 0;
        add_space_prefix = true;
        add_bos = true;
    } else {
        id[S_BOS] = 11;
        id[S_EOS] = 11;
        add_space_prefix = false;
        add_bos = fam == FM_TOKPRE_LLAMA3;
        ignore_merges = fam == FM_TOKPRE_LLAMA3;
    }
    if (r->add_space_prefix >= 0) add_space_prefix = r->add_space_prefix;
    bool remove_extra_ws = r->remove_extra_ws > 0;
    for (int i = 0; i < S_COUNT; i++) {
        if (id[i] >= (int64_t)r->n) id[i] = -1;                           /* default out of range */
        if (r->id[i] >= 0 && r->id[i] < (int64_t)r->n) id[i] = r->id[i]; /* else keep the default */
    }
    if (r->add_bos >= 0) add_bos = r->add_bos;
    if (r->add_eos >= 0) add_eos = r->add_eos;
    if (r->add_sep >= 0) add_sep = r->add_sep;
    if (add_bos && id[S_BOS] < 0)
        return fm_error_set(e, FM_E_FORMAT, "%s: add_bos_token is true but there is no BOS token", r->src);
    if (add_eos && id[S_EOS] < 0)
        return fm_error_set(e, FM_E_FORMAT, "%s: add_eos_token is true but there is no EOS token", r->src);

    /* special tokens found by their text, made control tokens (T9) */
    static const char *const eot_l[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                        "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                                        "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        "<end_of_utterance>", NULL};
    static const char *const eom_l[] = {"<|eom_id|>", NULL};
    static const char *const pre_l[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                        "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>",
                                        "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
    static const char *const suf_l[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                        "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>",
                                        "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
    static const char *const mid_l[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                        "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>",
                                        "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
    static const char *const pad_l[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
    static const char *const rep_l[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
                                        NULL};
    static const char *const sep_l[] = {"<|file_sep|>", NULL};
    static const struct {
        int slot;
        const char *const *list;
    } autodet[] = {{S_EOT, eot_l},     {S_EOM, eom_l},     {S_FIM_PRE, pre_l}, {S_FIM_SUF, suf_l},
                   {S_FIM_MID, mid_l}, {S_FIM_PAD, pad_l}, {S_FIM_REP, rep_l}, {S_FIM_SEP, sep_l}};
    for (size_t i = 0; i < sizeof autodet / sizeof *autodet; i++) {
        int s = autodet[i].slot;
        if (id[s] >= 0) continue;
        id[s] = tm_first(r, autodet[i].list);
        force_control(r, id[s]);
    }

    /* end-of-generation set */
    static const char *const eog_l[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                                        "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
                                        "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
                                        "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                                        "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        "[e~[", NULL};
    int32_t *eog = calloc(sizeof eog_l / sizeof *eog_l + 8 + r->n_eog_extra, sizeof *eog);
    size_t n_eog = 0;
    if (!eog) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", r->src);
#define EOG_ADD(x)                                                          \
    do {                                                                    \
        int64_t x_ = (x);                                                   \
        if (x_ >= 0 && !has_id(eog, n_eog, (int32_t)x_)) eog[n_eog++] = (int32_t)x_; \
    } while (0)
    EOG_ADD(id[S_FIM_PAD]);
    EOG_ADD(id[S_FIM_REP]);
    EOG_ADD(id[S_FIM_SEP]);
    for (size_t i = 0; eog_l[i]; i++) {
        int64_t t = tm_find(r, eog_l[i]);
        if (t >= 0) {
            EOG_ADD(t);
            force_control(r, t);
        }
    }
    /* gpt-oss: always rendered */
    static const char *const ud_l[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};
    for (size_t i = 0; ud_l[i]; i++) {
        int64_t t = tm_find(r, ud_l[i]);
        if (t >= 0) r->type[t] = T_USER;
    }
    EOG_ADD(id[S_EOS]);
    EOG_ADD(id[S_EOT]);
    EOG_ADD(id[S_EOM]);
    {
        bool has_return = false, has_call = false, has_flush = false;
        int64_t end_id = -1;
        for (size_t i = 0; i < n_eog; i++) {
            const char *s = r->tok[eog[i]];
            if (!strcmp(s, "<|return|>")) has_return = true;
            else if (!strcmp(s, "<|call|>") || !strcmp(s, "<|calls|>")) has_call = true;
            else if (!strcmp(s, "<|flush|>")) has_flush = true;
            else if (!strcmp(s, "<|end|>")) end_id = eog[i];
        }
        if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
            size_t k = 0;
            for (size_t i = 0; i < n_eog; i++)
                if (eog[i] != end_id) eog[k++] = eog[i];
            n_eog = k;
            r->type[end_id] = T_USER;
        }
    }
    for (size_t i = 0; i < r->n_eog_extra; i++)
        if (r->eog_extra[i] >= 0 && (uint32_t)r->eog_extra[i] < r->n) EOG_ADD(r->eog_extra[i]);
#undef EOG_ADD
    for (size_t a = 1; a < n_eog; a++) { /* sort */
        int32_t v = eog[a];
        size_t b = a;
        while (b > 0 && eog[b - 1] > v) {
            eog[b] = eog[b - 1];
            b--;
        }
        eog[b] = v;
    }

    /* the JSON */
    json_t *o = json_object(), *toks = json_array(), *types = json_array(), *sp = json_object(),
           *eoga = json_array();
    json_t *scores = r->model == TM_SPM || r->has_scores ? json_array() : NULL;
    json_t *merges = r->model == TM_BPE ? json_array() : NULL;
    bool ok = o && toks && types && sp && eoga && (scores || !(r->model == TM_SPM || r->has_scores)) &&
              (merges || r->model != TM_BPE);
    for (uint32_t i = 0; ok && i < r->n; i++) {
        json_t *s = json_stringn(r->tok[i], r->tlen[i]);
        if (!s) {
            free(eog);
            json_decref(o);
            json_decref(toks);
            json_decref(types);
            json_decref(sp);
            json_decref(eoga);
            json_decref(scores);
            json_decref(merges);
            return fm_error_set(e, FM_E_UNSUPPORTED, "%s: token %u is not valid UTF-8 (fm stores token texts as JSON strings)",
                                r->src, i);
        }
        ok = !json_array_append_new(toks, s) && !json_array_append_new(types, json_integer(r->type[i]));
        if (ok && scores) ok = !json_array_append_new(scores, json_real(r->score[i]));
    }
    for (uint32_t i = 0; ok && merges && i < r->n_merges; i++) {
        json_t *s = json_stringn(r->merge[i], r->mlen[i]);
        if (!s) {
            free(eog);
            json_decref(o);
            json_decref(toks);
            json_decref(types);
            json_decref(sp);
            json_decref(eoga);
            json_decref(scores);
            json_decref(merges);
            return fm_error_set(e, FM_E_UNSUPPORTED, "%s: merge %u is not valid UTF-8", r->src, i);
        }
        ok = !json_array_append_new(merges, s);
    }
    for (int i = 0; ok && i < S_COUNT; i++) ok = !json_object_set_new(sp, k_sp_names[i], json_integer(id[i]));
    for (size_t i = 0; ok && i < n_eog; i++) ok = !json_array_append_new(eoga, json_integer(eog[i]));
    free(eog);
    if (ok) {
        ok = !json_object_set_new(o, "format", json_string("fm-tokenizer")) &&
             !json_object_set_new(o, "version", json_integer(1)) &&
             !json_object_set_new(o, "model", json_string(r->model == TM_SPM ? "spm" : "bpe")) &&
             !json_object_set_new(o, "pre", json_string(r->model == TM_SPM ? "default" : r->pre)) &&
             !json_object_set_new(o, "tokens", toks) && !json_object_set_new(o, "types", types) &&
             !json_object_set_new(o, "special", sp) && !json_object_set_new(o, "eog", eoga) &&
             !json_object_set_new(o, "add_bos", json_boolean(add_bos)) &&
             !json_object_set_new(o, "add_eos", json_boolean(add_eos)) &&
             !json_object_set_new(o, "add_sep", json_boolean(add_sep)) &&
             !json_object_set_new(o, "add_space_prefix", json_boolean(add_space_prefix)) &&
             !json_object_set_new(o, "remove_extra_whitespaces", json_boolean(remove_extra_ws)) &&
             !json_object_set_new(o, "ignore_merges", json_boolean(ignore_merges));
        toks = types = sp = eoga = NULL;
        if (ok && scores) {
            ok = !json_object_set_new(o, "scores", scores);
            scores = NULL;
        }
        if (ok && merges) {
            ok = !json_object_set_new(o, "merges", merges);
            merges = NULL;
        }
        if (ok && r->chat_template) {
            json_t *ct = json_string(r->chat_template);
            ok = ct && !json_object_set_new(o, "chat_template", ct);
        }
        if (ok && source) {
            ok = !json_object_set_new(o, "source", source);
            source = NULL;
        }
    }
    json_decref(toks);
    json_decref(types);
    json_decref(sp);
    json_decref(eoga);
    json_decref(scores);
    json_decref(merges);
    json_decref(source);
    if (!ok) {
        json_decref(o);
        return fm_error_set(e, FM_E_NOMEM, "%s: out of memory building the tokenizer JSON", r->src);
    }
    *out = o;
    return FM_OK;
}

fm_err fm_tokmeta_dump(const json_t *tok, char **out, size_t *len, fm_error *e)
{
    *out = NULL;
    *len = 0;
    char *s = json_dumps(tok, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    if (!s) return fm_error_set(e, FM_E_NOMEM, "tokenizer JSON: serialization failed (out of memory?)");
    *out = s;
    *len = strlen(s);
    return FM_OK;
}

/* ------------------------------------------------------------------------ */
/* GGUF                                                                     */
/* ------------------------------------------------------------------------ */

static const fm_gguf_value *gg_arr(const fm_gguf *g, const char *key, uint32_t elem, uint64_t min_n, bool req,
                                   fm_err *rc, fm_error *e)
{
    *rc = FM_OK;
    const fm_gguf_kv *kv = fm_gguf_find_kv(g, key);
    if (!kv) {
        if (req) *rc = fm_error_set(e, FM_E_NOTFOUND, "%s: key '%s' not found", g->file.path, key);
        return NULL;
    }
    if (kv->val.type != FM_GGUF_ARRAY || (elem != UINT32_MAX && kv->val.v.arr.type != elem)) {
        *rc = fm_error_set(e, FM_E_FORMAT, "%s: key '%s' has type %s of %s, expected an array of %s",
                           g->file.path, key, fm_gguf_vtype_name(kv->val.type),
                           kv->val.type == FM_GGUF_ARRAY ? fm_gguf_vtype_name(kv->val.v.arr.type) : "-",
                           fm_gguf_vtype_name(elem));
        return NULL;
    }
    if (kv->val.v.arr.n < min_n) {
        *rc = fm_error_set(e, FM_E_FORMAT, "%s: key '%s' has %llu elements, expected at least %llu", g->file.path,
                           key, (unsigned long long)kv->val.v.arr.n, (unsigned long long)min_n);
        return NULL;
    }
    return &kv->val;
}

static fm_err gg_opt_bool(const fm_gguf *g, const char *key, int *out, fm_error *e)
{
    if (!fm_gguf_find_kv(g, key)) return FM_OK;
    bool b;
    fm_err rc = fm_gguf_get_bool(g, key, &b, e);
    if (!rc) *out = b;
    return rc;
}

fm_err fm_tokmeta_from_gguf(const fm_gguf *g, json_t **out, fm_error *e)
{
    *out = NULL;
    if (!g) return fm_error_set(e, FM_E_ARG, "fm_tokmeta_from_gguf: NULL file");
    const char *path = g->file.path ? g->file.path : "(gguf)";
    raw r;
    raw_init(&r, path);
    fm_err rc;
    const char *model;
    if ((rc = fm_gguf_get_str(g, "tokenizer.ggml.model", &model, e))) goto done;
    if (!strcmp(model, "llama")) r.model = TM_SPM;
    else if (!strcmp(model, "gpt2")) r.model = TM_BPE;
    else {
        rc = fm_error_set(e, FM_E_UNSUPPORTED,
                          "%s: tokenizer.ggml.model is '%.64s', fm supports 'llama' (SentencePiece BPE) and "
                          "'gpt2' (byte-level BPE)",
                          path, model);
        goto done;
    }
    const fm_gguf_kv *pk = fm_gguf_find_kv(g, "tokenizer.ggml.pre");
    if (pk) {
        const char *pre;
        if ((rc = fm_gguf_get_str(g, "tokenizer.ggml.pre", &pre, e))) goto done;
        r.pre = strdup(pre);
        if (!r.pre) {
            rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    if (r.model == TM_BPE && fm_tokmeta_pre_family(r.pre) == FM_TOKPRE_NONE) {
        rc = fm_error_set(e, FM_E_UNSUPPORTED,
                          "%s: tokenizer.ggml.pre is '%.64s', fm supports qwen2, llama-bpe (llama3), gpt-2, qwen35 "
                          "and their llama.cpp aliases",
                          path, r.pre ? r.pre : "(missing: llama.cpp 'default')");
        goto done;
    }
    const fm_gguf_value *tv = gg_arr(g, "tokenizer.ggml.tokens", FM_GGUF_STRING, 1, true, &rc, e);
    if (rc) goto done;
    if (tv->v.arr.n > TM_MAX_VOCAB) {
        rc = fm_error_set(e, FM_E_RANGE, "%s: tokenizer.ggml.tokens has %llu tokens, more than %u", path,
                          (unsigned long long)tv->v.arr.n, TM_MAX_VOCAB);
        goto done;
    }
    uint32_t n = (uint32_t)tv->v.arr.n;
    if ((rc = raw_alloc(&r, n, e))) goto done;
    for (uint32_t i = 0; i < n; i++) {
        const fm_gguf_str *s = &tv->v.arr.vals[i].v.str;
        if (s->len > TM_MAX_TOKEN_LEN) {
            rc = fm_error_set(e, FM_E_RANGE, "%s: tokenizer.ggml.tokens[%u] is %llu bytes, more than %u", path, i,
                              (unsigned long long)s->len, TM_MAX_TOKEN_LEN);
            goto done;
        }
        if (s->len == 0) { /* llama.cpp: "[EMPTY_i]" */
            char buf[32];
            int l = snprintf(buf, sizeof buf, "[EMPTY_%u]", i);
            r.tok[i] = dupn(buf, (size_t)l);
            r.tlen[i] = (uint32_t)l;
        } else {
            r.tok[i] = dupn(s->s, (size_t)s->len);
            r.tlen[i] = (uint32_t)s->len;
        }
        if (!r.tok[i]) {
            rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    const fm_gguf_value *sv = gg_arr(g, "tokenizer.ggml.scores", UINT32_MAX, n, false, &rc, e);
    if (rc) goto done;
    if (sv) {
        if (sv->v.arr.type != FM_GGUF_FLOAT32 && sv->v.arr.type != FM_GGUF_INT32) {
            rc = fm_error_set(e, FM_E_FORMAT, "%s: tokenizer.ggml.scores is an array of %s, expected FLOAT32 or INT32",
                              path, fm_gguf_vtype_name(sv->v.arr.type));
            goto done;
        }
        r.has_scores = true;
        for (uint32_t i = 0; i < n; i++)
            r.score[i] = sv->v.arr.type == FM_GGUF_FLOAT32 ? (float)sv->v.arr.vals[i].v.f64
                                                           : (float)sv->v.arr.vals[i].v.i64;
    }
    const fm_gguf_value *yv = gg_arr(g, "tokenizer.ggml.token_type", FM_GGUF_INT32, n, false, &rc, e);
    if (rc) goto done;
    for (uint32_t i = 0; yv && i < n; i++) {
        int64_t t = yv->v.arr.vals[i].v.i64;
        r.type[i] = t >= 1 && t <= 6 ? (uint8_t)t : T_UNDEF;
    }
    if (r.model == TM_BPE) {
        const fm_gguf_value *mv = gg_arr(g, "tokenizer.ggml.merges", FM_GGUF_STRING, 0, true, &rc, e);
        if (rc) goto done;
        if (mv->v.arr.n > UINT32_MAX / 2) {
            rc = fm_error_set(e, FM_E_RANGE, "%s: too many merges", path);
            goto done;
        }
        r.n_merges = (uint32_t)mv->v.arr.n;
        r.merge = calloc(r.n_merges ? r.n_merges : 1, sizeof *r.merge);
        r.mlen = calloc(r.n_merges ? r.n_merges : 1, sizeof *r.mlen);
        if (!r.merge || !r.mlen) {
            rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
            goto done;
        }
        for (uint32_t i = 0; i < r.n_merges; i++) {
            const fm_gguf_str *s = &mv->v.arr.vals[i].v.str;
            if (s->len > 2 * (uint64_t)TM_MAX_TOKEN_LEN) {
                rc = fm_error_set(e, FM_E_RANGE, "%s: tokenizer.ggml.merges[%u] is too long", path, i);
                goto done;
            }
            r.merge[i] = dupn(s->s, (size_t)s->len);
            r.mlen[i] = (uint32_t)s->len;
            if (!r.merge[i]) {
                rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
                goto done;
            }
        }
    }
    for (int i = 0; i < S_COUNT; i++) {
        if (!fm_gguf_find_kv(g, k_sp_gguf[i])) continue;
        uint64_t v;
        if ((rc = fm_gguf_get_u64(g, k_sp_gguf[i], &v, e))) goto done;
        r.id[i] = v < n ? (int64_t)v : -1; /* llama.cpp: out of range keeps the default */
    }
    /* deprecated names of the FIM ids */
    static const char *const old_fim[3] = {"tokenizer.ggml.prefix_token_id", "tokenizer.ggml.suffix_token_id",
                                           "tokenizer.ggml.middle_token_id"};
    for (int i = 0; i < 3; i++) {
        if (!fm_gguf_find_kv(g, old_fim[i])) continue;
        uint64_t v;
        if ((rc = fm_gguf_get_u64(g, old_fim[i], &v, e))) goto done;
        if (v < n) r.id[S_FIM_PRE + i] = (int64_t)v;
    }
    if ((rc = gg_opt_bool(g, "tokenizer.ggml.add_bos_token", &r.add_bos, e)) ||
        (rc = gg_opt_bool(g, "tokenizer.ggml.add_eos_token", &r.add_eos, e)) ||
        (rc = gg_opt_bool(g, "tokenizer.ggml.add_sep_token", &r.add_sep, e)) ||
        (rc = gg_opt_bool(g, "tokenizer.ggml.add_space_prefix", &r.add_space_prefix, e)) ||
        (rc = gg_opt_bool(g, "tokenizer.ggml.remove_extra_whitespaces", &r.remove_extra_ws, e)))
        goto done;
    if (fm_gguf_find_kv(g, "tokenizer.chat_template")) {
        const char *ct;
        if ((rc = fm_gguf_get_str(g, "tokenizer.chat_template", &ct, e))) goto done;
        r.chat_template = strdup(ct);
        if (!r.chat_template) {
            rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    {
        json_t *src = json_pack("{s:s}", "from", "gguf");
        rc = tm_build(&r, src, out, e);
    }
done:
    raw_free(&r);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Hugging Face                                                             */
/* ------------------------------------------------------------------------ */

/* Pre-tokenizer Split regexes, as the JSON strings decode (T14). */
static const char k_re_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
static const char k_re_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char k_re_qwen35[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static fm_err hf_load(const char *dir, const char *name, bool req, size_t cap, json_t **out, fm_error *e)
{
    *out = NULL;
    size_t dl = strlen(dir), nl = strlen(name);
    char *p = malloc(dl + nl + 2);
    if (!p) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", dir);
    snprintf(p, dl + nl + 2, "%s/%s", dir, name);
    char *buf = NULL;
    size_t len = 0;
    fm_error e2;
    fm_err rc = fm_file_slurp(p, cap, &buf, &len, &e2);
    if (rc) {
        if (!req && rc == FM_E_IO && access(p, F_OK) != 0) {
            free(p);
            return FM_OK; /* absent optional file */
        }
        rc = fm_error_set(e, rc, "%s", e2.msg);
        free(p);
        return rc;
    }
    json_error_t je;
    json_t *j = json_loadb(buf, len, JSON_ALLOW_NUL, &je);
    free(buf);
    if (!j) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: invalid JSON at line %d column %d: %s", p, je.line, je.column, je.text);
        free(p);
        return rc;
    }
    free(p);
    *out = j;
    return FM_OK;
}

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* "bos_token": "<s>" or {"content": "<s>", ...} */
static const char *tok_content(const json_t *v)
{
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return jstr(v, "content");
    return NULL;
}

static bool looks_special(const char *s)
{
    size_t n = strlen(s);
    if (!strcmp(s, "<pad>") || !strcmp(s, "<mask>") || !strcmp(s, "<2mass>") || !strcmp(s, "[@BOS@]")) return true;
    if (n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>")) return true;
    if (n >= 7 && !strncmp(s, "<\xef\xbd\x9c", 4) && !strcmp(s + n - 4, "\xef\xbd\x9c>")) return true;
    if (n >= 8 && !strncmp(s, "<unused", 7) && s[n - 1] == '>') return true;
    return false;
}

static bool is_byte_token(const char *s, size_t n)
{
    if (n != 6 || strncmp(s, "<0x", 3) || s[5] != '>') return false;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
    }
    return true;
}

/* replace every U+2581 by ' ' (convert_hf_to_gguf does it for user-defined
 * added tokens) */
static char *unescape_space(const char *s, size_t n, size_t *out_n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
            p[k++] = ' ';
            i += 3;
        } else {
            p[k++] = s[i++];
        }
    }
    p[k] = 0;
    *out_n = k;
    return p;
}

typedef struct hf_kind {
    int model;
    const char *pre;
    int add_space_prefix; /* spm */
} hf_kind;

static bool is_type(const json_t *o, const char *t) { return json_is_object(o) && jstr(o, "type") && !strcmp(jstr(o, "type"), t); }

static fm_err hf_classify(const char *path, const json_t *tj, hf_kind *k, fm_error *e)
{
    const json_t *model = json_object_get(tj, "model");
    if (!is_type(model, "BPE"))
        return fm_error_set(e, FM_E_UNSUPPORTED, "%s: model.type is '%s', fm supports 'BPE'", path,
                            json_is_object(model) && jstr(model, "type") ? jstr(model, "type") : "(missing)");
    const json_t *norm = json_object_get(tj, "normalizer");
    const json_t *pre = json_object_get(tj, "pre_tokenizer");
    bool byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    if (byte_fallback) {
        /* SentencePiece-style: spaces become U+2581 in the normalizer */
        k->model = TM_SPM;
        k->pre = "default";
        int prepend = -1;
        bool replace = false;
        const json_t *list = is_type(norm, "Sequence") ? json_object_get(norm, "normalizers") : NULL;
        size_t nn = list ? json_array_size(list) : (norm && !json_is_null(norm) ? 1 : 0);
        for (size_t i = 0; i < nn; i++) {
            const json_t *x = list ? json_array_get(list, i) : norm;
            if (is_type(x, "Prepend") && jstr(x, "prepend") && !strcmp(jstr(x, "prepend"), "\xE2\x96\x81")) {
                prepend = 1;
            } else if (is_type(x, "Replace") && json_is_object(json_object_get(x, "pattern")) &&
                       jstr(json_object_get(x, "pattern"), "String") &&
                       !strcmp(jstr(json_object_get(x, "pattern"), "String"), " ") && jstr(x, "content") &&
                       !strcmp(jstr(x, "content"), "\xE2\x96\x81")) {
                replace = true;
            } else {
                return fm_error_set(e, FM_E_UNSUPPORTED,
                                    "%s: SentencePiece-style normalizer step '%s' is not supported (expected "
                                    "Prepend U+2581 and Replace ' ' -> U+2581)",
                                    path, json_is_object(x) && jstr(x, "type") ? jstr(x, "type") : "?");
            }
        }
        if (pre && !json_is_null(pre)) {
            if (is_type(pre, "Metaspace") && !json_is_true(json_object_get(pre, "split")) && !replace) {
                const char *ps = jstr(pre, "prepend_scheme");
                prepend = !(ps && !strcmp(ps, "never"));
                replace = true;
            } else {
                return fm_error_set(e, FM_E_UNSUPPORTED,
                                    "%s: pre_tokenizer '%s' is not supported with a SentencePiece-style model "
                                    "(expected none, or Metaspace without split)",
                                    path, json_is_object(pre) && jstr(pre, "type") ? jstr(pre, "type") : "?");
            }
        }
        if (!replace)
            return fm_error_set(e, FM_E_UNSUPPORTED,
                                "%s: byte_fallback BPE without the ' ' -> U+2581 replacement is not supported", path);
        k->add_space_prefix = prepend > 0;
        return FM_OK;
    }
    /* byte-level BPE */
    k->model = TM_BPE;
    k->add_space_prefix = -1;
    if (norm && !json_is_null(norm) && !is_type(norm, "NFC"))
        return fm_error_set(e, FM_E_UNSUPPORTED, "%s: normalizer '%s' is not supported for byte-level BPE (null or NFC)",
                            path, json_is_object(norm) && jstr(norm, "type") ? jstr(norm, "type") : "?");
    if (is_type(pre, "ByteLevel")) {
        if (json_is_true(json_object_get(pre, "add_prefix_space")) ||
            json_is_false(json_object_get(pre, "use_regex")))
            return fm_error_set(e, FM_E_UNSUPPORTED,
                                "%s: ByteLevel pre-tokenizer with add_prefix_space or without its regex is not "
                                "supported",
                                path);
        k->pre = "gpt-2";
        return FM_OK;
    }
    const json_t *list = is_type(pre, "Sequence") ? json_object_get(pre, "pretokenizers") : NULL;
    if (json_array_size(list) == 2) {
        const json_t *sp = json_array_get(list, 0), *bl = json_array_get(list, 1);
        const json_t *pat = json_object_get(sp, "pattern");
        const char *re = json_is_object(pat) ? jstr(pat, "Regex") : NULL;
        const char *beh = jstr(sp, "behavior");
        if (is_type(sp, "Split") && re && beh && !strcmp(beh, "Isolated") &&
            !json_is_true(json_object_get(sp, "invert")) && is_type(bl, "ByteLevel") &&
            !json_is_true(json_object_get(bl, "add_prefix_space")) && !json_is_true(json_object_get(bl, "use_regex"))) {
            if (!strcmp(re, k_re_qwen2)) k->pre = "qwen2";
            else if (!strcmp(re, k_re_llama3)) k->pre = "llama-bpe";
            else if (!strcmp(re, k_re_qwen35)) k->pre = "qwen35";
            else
                return fm_error_set(e, FM_E_UNSUPPORTED,
                                    "%s: pre-tokenizer Split regex \"%.120s\" is not one fm implements (qwen2, "
                                    "llama3, qwen35)",
                                    path, re);
            return FM_OK;
        }
    }
    return fm_error_set(e, FM_E_UNSUPPORTED,
                        "%s: pre_tokenizer '%s' is not supported (expected ByteLevel, or Sequence[Split regex, "
                        "ByteLevel])",
                        path, json_is_object(pre) && jstr(pre, "type") ? jstr(pre, "type") : "(none)");
}

/* the id of the first added token whose content is s (SpecialVocab) */
static int64_t added_id(const json_t *added, const char *s)
{
    if (!s) return -1;
    size_t i;
    const json_t *a;
    json_array_foreach(added, i, a)
    {
        const char *c = jstr(a, "content");
        const json_t *id = json_object_get(a, "id");
        if (c && !strcmp(c, s) && json_is_integer(id)) return json_integer_value(id);
    }
    return -1;
}

static char *read_text_file(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    char *p = malloc(dl + nl + 2);
    if (!p) return NULL;
    snprintf(p, dl + nl + 2, "%s/%s", dir, name);
    char *buf = NULL;
    size_t len;
    fm_error e2;
    if (fm_file_slurp(p, TM_HF_SMALL_CAP, &buf, &len, &e2)) buf = NULL;
    free(p);
    return buf;
}

fm_err fm_tokmeta_from_hf(const char *dir, json_t **out, fm_error *e)
{
    *out = NULL;
    if (!dir) return fm_error_set(e, FM_E_ARG, "fm_tokmeta_from_hf: NULL directory");
    raw r;
    raw_init(&r, dir);
    json_t *tj = NULL, *tc = NULL, *cfg = NULL, *gen = NULL;
    uint32_t *mr_ht = NULL;
    fm_err rc;
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", dir);
    if ((rc = hf_load(dir, "tokenizer.json", true, TM_HF_JSON_CAP, &tj, e)) ||
        (rc = hf_load(dir, "tokenizer_config.json", false, TM_HF_SMALL_CAP, &tc, e)) ||
        (rc = hf_load(dir, "config.json", false, TM_HF_SMALL_CAP, &cfg, e)) ||
        (rc = hf_load(dir, "generation_config.json", false, TM_HF_SMALL_CAP, &gen, e)))
        goto done;
    hf_kind kind = {0, NULL, -1};
    if ((rc = hf_classify(tpath, tj, &kind, e))) goto done;
    r.model = kind.model;
    r.pre = strdup(kind.pre);
    r.add_space_prefix = kind.add_space_prefix;
    const json_t *model = json_object_get(tj, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *added = json_object_get(tj, "added_tokens");
    if (!json_is_object(vocab)) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: model.vocab: expected object", tpath);
        goto done;
    }
    if (added && !json_is_array(added)) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: added_tokens: expected array", tpath);
        goto done;
    }
    /* vocabulary size: largest id + 1, or config.json vocab_size when larger */
    int64_t max_id = -1;
    {
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)vocab, key, v)
        {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TM_MAX_VOCAB) {
                rc = fm_error_set(e, FM_E_FORMAT, "%s: model.vocab['%.64s']: expected an id 0..%u", tpath, key,
                                  TM_MAX_VOCAB - 1);
                goto done;
            }
            if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
        }
        size_t i;
        const json_t *a;
        json_array_foreach(added, i, a)
        {
            const json_t *id = json_object_get(a, "id");
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= TM_MAX_VOCAB ||
                !jstr(a, "content")) {
                rc = fm_error_set(e, FM_E_FORMAT, "%s: added_tokens[%zu]: expected id 0..%u and content", tpath, i,
                                  TM_MAX_VOCAB - 1);
                goto done;
            }
            if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
        }
    }
    int64_t nv = max_id + 1;
    {
        const json_t *vs = json_object_get(cfg, "vocab_size");
        if (!vs) vs = json_object_get(json_object_get(cfg, "text_config"), "vocab_size");
        if (json_is_integer(vs)) {
            int64_t c = json_integer_value(vs);
            if (c < nv) {
                rc = fm_error_set(e, FM_E_FORMAT, "%s/config.json: vocab_size %lld is smaller than the tokenizer's %lld tokens",
                                  dir, (long long)c, (long long)nv);
                goto done;
            }
            if (c > TM_MAX_VOCAB) {
                rc = fm_error_set(e, FM_E_RANGE, "%s/config.json: vocab_size %lld is larger than %u", dir, (long long)c,
                                  TM_MAX_VOCAB);
                goto done;
            }
            nv = c;
        }
    }
    if (nv <= 0) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: empty vocabulary", tpath);
        goto done;
    }
    if ((rc = raw_alloc(&r, (uint32_t)nv, e))) goto done;
    memset(r.type, T_UNUSED, r.n); /* gaps: "[PAD<i>]", UNUSED (convert_hf_to_gguf) */
    {
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)vocab, key, v)
        {
            uint32_t id = (uint32_t)json_integer_value(v);
            size_t kl = strlen(key); /* keys are NUL-free here: JSON_ALLOW_NUL applies to values only */
            free(r.tok[id]);
            r.tok[id] = dupn(key, kl);
            r.tlen[id] = (uint32_t)kl;
            r.type[id] = T_NORMAL;
            if (!r.tok[id]) goto nomem;
        }
        const char *unk = jstr(model, "unk_token");
        size_t i;
        const json_t *a;
        json_array_foreach(added, i, a)
        {
            uint32_t id = (uint32_t)json_integer_value(json_object_get(a, "id"));
            const char *c = jstr(a, "content");
            size_t cl = json_string_length(json_object_get(a, "content"));
            bool special = json_is_true(json_object_get(a, "special")) || looks_special(c);
            free(r.tok[id]);
            if (special) {
                r.tok[id] = dupn(c, cl);
                r.tlen[id] = (uint32_t)cl;
                r.type[id] = T_CONTROL;
            } else {
                size_t ul = 0;
                r.tok[id] = unescape_space(c, cl, &ul);
                r.tlen[id] = (uint32_t)ul;
                r.type[id] = T_USER;
            }
            if (!r.tok[id]) goto nomem;
            r.score[id] = -1000.0f;
        }
        for (uint32_t t = 0; t < r.n; t++) {
            if (!r.tok[t]) {
                char buf[32];
                int l = snprintf(buf, sizeof buf, "[PAD%u]", t);
                r.tok[t] = dupn(buf, (size_t)l);
                r.tlen[t] = (uint32_t)l;
                if (!r.tok[t]) goto nomem;
                continue;
            }
            if (r.tlen[t] == 0) { /* llama.cpp: "[EMPTY_i]" */
                char buf[32];
                int l = snprintf(buf, sizeof buf, "[EMPTY_%u]", t);
                free(r.tok[t]);
                r.tok[t] = dupn(buf, (size_t)l);
                r.tlen[t] = (uint32_t)l;
                if (!r.tok[t]) goto nomem;
            }
            if (r.tlen[t] > TM_MAX_TOKEN_LEN) {
                rc = fm_error_set(e, FM_E_FORMAT, "%s: token %u has length %u (at most %u allowed)", tpath, t, r.tlen[t],
                                  TM_MAX_TOKEN_LEN);
                goto done;
            }
            if (r.model == TM_SPM && r.type[t] == T_NORMAL) {
                if (is_byte_token(r.tok[t], r.tlen[t])) r.type[t] = T_BYTE;
                else if (unk && !strcmp(r.tok[t], unk)) r.type[t] = T_UNKNOWN;
            }
        }
    }
    /* merges: "a b" strings, or [a, b] pairs (spaces inside encoded as U+0120) */
    {
        const json_t *ml = json_object_get(model, "merges");
        size_t nm = json_array_size(ml);
        if (nm > UINT32_MAX / 2) {
            rc = fm_error_set(e, FM_E_RANGE, "%s: too many merges", tpath);
            goto done;
        }
        r.n_merges = (uint32_t)nm;
        r.merge = calloc(nm ? nm : 1, sizeof *r.merge);
        r.mlen = calloc(nm ? nm : 1, sizeof *r.mlen);
        if (!r.merge || !r.mlen) goto nomem;
        for (size_t i = 0; i < nm; i++) {
            const json_t *m = json_array_get(ml, i);
            char *s = NULL;
            size_t sl = 0;
            if (json_is_string(m)) {
                s = dupn(json_string_value(m), json_string_length(m));
                sl = json_string_length(m);
            } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                       json_is_string(json_array_get(m, 1))) {
                const char *p[2] = {json_string_value(json_array_get(m, 0)), json_string_value(json_array_get(m, 1))};
                size_t cap = 3 * (strlen(p[0]) + strlen(p[1])) + 2;
                s = malloc(cap);
                if (!s) goto nomem;
                for (int h = 0; h < 2; h++) {
                    if (h) s[sl++] = ' ';
                    for (const char *q = p[h]; *q; q++) {
                        if (*q == ' ') {
                            s[sl++] = '\xC4'; /* U+0120 */
                            s[sl++] = '\xA0';
                        } else {
                            s[sl++] = *q;
                        }
                    }
                }
                s[sl] = 0;
            } else {
                rc = fm_error_set(e, FM_E_FORMAT, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", tpath, i);
                goto done;
            }
            if (!s) goto nomem;
            r.merge[i] = s;
            r.mlen[i] = (uint32_t)sl;
        }
    }
    if (r.model == TM_SPM) {
        /* scores: -(1 + rank of the first merge that makes the token); the
         * runtime's SentencePiece queue then merges in the same order (T15) */
        r.has_scores = true;
        uint64_t cap = 16;
        while (cap < 2 * (uint64_t)r.n_merges + 2) cap <<= 1;
        uint32_t mask = (uint32_t)cap - 1;
        mr_ht = calloc(cap, sizeof *mr_ht); /* token id + 1 */
        if (!mr_ht || tm_index(&r, e)) goto nomem;
        for (uint32_t i = 0; i < r.n_merges; i++) {
            const char *s = r.merge[i];
            const char *sp = r.mlen[i] > 1 ? memchr(s + 1, ' ', r.mlen[i] - 1) : NULL;
            if (!sp) continue;
            size_t l1 = (size_t)(sp - s);
            char *cat = malloc(r.mlen[i]);
            if (!cat) goto nomem;
            memcpy(cat, s, l1);
            memcpy(cat + l1, sp + 1, r.mlen[i] - l1 - 1);
            cat[r.mlen[i] - 1] = 0;
            int64_t id = tm_find(&r, cat);
            free(cat);
            if (id < 0 || r.type[id] != T_NORMAL) continue;
            uint32_t h = (uint32_t)h64((const char *)&id, sizeof id) & mask;
            bool seen = false;
            while (mr_ht[h]) {
                if (mr_ht[h] == (uint32_t)id + 1) {
                    seen = true;
                    break;
                }
                h = (h + 1) & mask;
            }
            if (seen) continue;
            mr_ht[h] = (uint32_t)id + 1;
            r.score[id] = -(float)(i + 1);
        }
        free(r.ht);
        r.ht = NULL;
        /* merges are not part of an spm tokenizer */
        for (uint32_t i = 0; i < r.n_merges; i++) free(r.merge[i]);
        r.n_merges = 0;
    }
    /* special tokens (gguf-py SpecialVocab) */
    {
        static const struct {
            int slot;
            const char *name;
        } st[] = {{S_BOS, "bos"}, {S_EOS, "eos"}, {S_UNK, "unk"}, {S_SEP, "sep"}, {S_PAD, "pad"}, {S_MASK, "mask"}};
        const char *bos_c = tok_content(json_object_get(tc, "bos_token"));
        const char *eos_c = tok_content(json_object_get(tc, "eos_token"));
        if (!bos_c) bos_c = tok_content(json_object_get(tc, "cls_token"));
        if (!eos_c) eos_c = tok_content(json_object_get(tc, "sep_token"));
        /* post_processor TemplateProcessing: BOS first / EOS last */
        const json_t *pp = json_object_get(tj, "post_processor");
        const json_t *procs = is_type(pp, "Sequence") ? json_object_get(pp, "processors") : NULL;
        size_t np = procs ? json_array_size(procs) : (pp ? 1 : 0);
        for (size_t i = 0; i < np; i++) {
            const json_t *p = procs ? json_array_get(procs, i) : pp;
            if (!is_type(p, "TemplateProcessing")) continue;
            const json_t *single = json_object_get(p, "single");
            size_t ns = json_array_size(single);
            if (ns <= 1) continue;
            const char *first = jstr(json_object_get(json_array_get(single, 0), "SpecialToken"), "id");
            const char *last = jstr(json_object_get(json_array_get(single, ns - 1), "SpecialToken"), "id");
            if (first) {
                if (!tc) bos_c = first;
                r.add_bos = bos_c && !strcmp(first, bos_c);
            }
            if (last) {
                if (!tc) eos_c = last;
                r.add_eos = eos_c && !strcmp(last, eos_c);
            }
        }
        for (size_t i = 0; i < sizeof st / sizeof *st; i++) {
            char key[32];
            snprintf(key, sizeof key, "%s_token", st[i].name);
            const char *c = st[i].slot == S_BOS ? bos_c : st[i].slot == S_EOS ? eos_c : tok_content(json_object_get(tc, key));
            int64_t id = added_id(added, c);
            if (id >= 0) r.id[st[i].slot] = id;
            snprintf(key, sizeof key, "add_%s_token", st[i].name);
            const json_t *ab = json_object_get(tc, key);
            if (json_is_boolean(ab)) {
                if (st[i].slot == S_BOS) r.add_bos = json_is_true(ab);
                if (st[i].slot == S_EOS) r.add_eos = json_is_true(ab);
                if (st[i].slot == S_SEP) r.add_sep = json_is_true(ab);
            }
        }
        for (size_t i = 0; i < sizeof st / sizeof *st; i++) { /* config.json fills the rest */
            char key[32];
            snprintf(key, sizeof key, "%s_token_id", st[i].name);
            const json_t *v = json_object_get(cfg, key);
            if (!v) v = json_object_get(json_object_get(cfg, "text_config"), key);
            if (r.id[st[i].slot] < 0 && json_is_integer(v) && json_integer_value(v) >= 0)
                r.id[st[i].slot] = json_integer_value(v);
        }
        /* generation_config.json eos_token_id: more end-of-generation ids */
        const json_t *ge = json_object_get(gen, "eos_token_id");
        size_t ng = json_is_array(ge) ? json_array_size(ge) : json_is_integer(ge) ? 1 : 0;
        r.eog_extra = calloc(ng ? ng : 1, sizeof *r.eog_extra);
        if (!r.eog_extra) goto nomem;
        for (size_t i = 0; i < ng; i++) {
            const json_t *x = json_is_array(ge) ? json_array_get(ge, i) : ge;
            if (json_is_integer(x) && json_integer_value(x) >= 0 && json_integer_value(x) < (json_int_t)r.n)
                r.eog_extra[r.n_eog_extra++] = (int32_t)json_integer_value(x);
        }
    }
    /* chat template */
    {
        const json_t *ct = json_object_get(tc, "chat_template");
        const char *s = NULL;
        if (json_is_string(ct)) {
            s = json_string_value(ct);
        } else if (json_is_array(ct)) {
            size_t i;
            const json_t *x;
            json_array_foreach(ct, i, x)
            {
                const char *nm = jstr(x, "name");
                if (!s || (nm && !strcmp(nm, "default"))) s = jstr(x, "template");
            }
        }
        if (s) {
            r.chat_template = strdup(s);
            if (!r.chat_template) goto nomem;
        } else {
            r.chat_template = read_text_file(dir, "chat_template.jinja");
            if (!r.chat_template) {
                json_t *cj = NULL;
                fm_error e3;
                if (!hf_load(dir, "chat_template.json", false, TM_HF_SMALL_CAP, &cj, &e3) && cj) {
                    const char *x = jstr(cj, "chat_template");
                    if (x) r.chat_template = strdup(x);
                    json_decref(cj);
                }
            }
        }
    }
    {
        json_t *src = json_pack("{s:s}", "from", "hf");
        rc = tm_build(&r, src, out, e);
    }
    goto done;
nomem:
    rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", dir);
done:
    free(mr_ht);
    json_decref(tj);
    json_decref(tc);
    json_decref(cfg);
    json_decref(gen);
    raw_free(&r);
    return rc;
}
