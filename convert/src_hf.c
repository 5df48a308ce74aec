/* Hugging Face model source: config.json + safetensors (one file or an index
 * with shards). Hyperparameters come from config.json through the table's
 * hf_key names; tensors through the table's hf_name patterns, with the
 * architecture's layout transformations applied (see source.h). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convert/job.h"
#include "convert/source.h"
#include "formats/file.h"
#include "formats/quant.h"
#include "formats/safetensors.h"
#include "formats/util.h"

#if defined(__has_include)
#if __has_include("formats/tokmeta.h")
#include "formats/tokmeta.h"
#define FM_HAVE_TOKMETA 1
#endif
#endif

#define CONFIG_CAP (16u << 20)

enum { X_NONE = 0, X_PERMUTE = 1, X_PLUS1 = 2 };

typedef struct hf_map {
    const fm_st_tensor **st; /* 1, or n_expert (one per expert, expert order) */
    uint32_t n;
    int xform;
    uint32_t perm_nh;        /* X_PERMUTE: head count */
    fm_st_dtype dtype;       /* stored dtype (same for every expert) */
    uint64_t src_row_bytes;  /* stored bytes of one row */
} hf_map;

typedef struct hf_impl {
    fm_st *st;
    char *dir;
    hf_map *map;   /* one per presented tensor */
    fm_file *direct; /* st->n_files O_DIRECT descriptors, or NULL */
} hf_impl;

static hf_impl *H(const fm_source *s) { return s->impl; }

/* ------------------------------------------------------------------ reading */

static fm_err st_pread(const fm_source *s, const fm_st_tensor *st, void *buf, uint64_t len, uint64_t off,
                       fm_error *e)
{
    if (!fm_range_ok(off, len, st->size))
        return fm_error_set(e, FM_E_INTERNAL, "%s: %s: read beyond the tensor", s->path, st->name);
    const fm_file *f = &H(s)->st->files[st->file_index];
    if (len > SIZE_MAX) return fm_error_set(e, FM_E_RANGE, "%s: read too large", s->path);
    if (H(s)->direct)
        return fm_pread_direct(H(s)->direct[st->file_index].fd, f->size, buf, (size_t)len, st->offset + off,
                               f->path ? f->path : s->path, e);
    return fm_file_pread(f, buf, (size_t)len, st->offset + off, e);
}

/* Reads rows [row0, row0+nrows) of one expert (or of the single tensor). */
static fm_err read_plain(const fm_source *s, const hf_map *m, uint32_t idx, uint64_t row0, uint64_t nrows,
                         void *buf, fm_error *e)
{
    return st_pread(s, m->st[idx], buf, nrows * m->src_row_bytes, row0 * m->src_row_bytes, e);
}

/* FM_ARCH_HF_PERMUTE_QK, as llama.cpp's convert_hf_to_gguf.py `permute`:
 * w.reshape(nh, 2, rows/nh/2, ...).swapaxes(1, 2).reshape(w.shape): output
 * row r = h*2*half + 2*i + j comes from source row h*2*half + j*half + i. */
static uint64_t perm_src(uint64_t r, uint64_t half)
{
    uint64_t blk = 2 * half, h = r / blk, rem = r % blk, i = rem / 2, j = rem % 2;
    return h * blk + j * half + i;
}

static fm_err read_permuted(const fm_source *s, const fm_source_tensor *t, const hf_map *m, uint64_t row0,
                            uint64_t nrows, void *buf, fm_error *e)
{
    const fm_st_tensor *st = m->st[0];
    uint8_t *out = buf;
    if (t->n_dims == 1) { /* bias: permute elements; one presented row */
        uint64_t n = t->ne[0], half = n / m->perm_nh / 2, es = fm_st_dtype_size(m->dtype);
        uint8_t *tmp = malloc((size_t)st->size ? (size_t)st->size : 1);
        if (!tmp) return fm_error_set(e, FM_E_NOMEM, "out of memory");
        fm_err rc = st_pread(s, st, tmp, st->size, 0, e);
        if (!rc)
            for (uint64_t r = 0; r < n; r++) memcpy(out + r * es, tmp + perm_src(r, half) * es, (size_t)es);
        free(tmp);
        return rc;
    }
    uint64_t rows = t->ne[1], half = rows / m->perm_nh / 2, blk = 2 * half, rb = m->src_row_bytes;
    uint8_t *tmp = malloc((size_t)(blk * rb));
    if (!tmp) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    fm_err rc = FM_OK;
    uint64_t cur = UINT64_MAX;
    for (uint64_t r = row0; r < row0 + nrows && !rc; r++) {
        uint64_t h = r / blk;
        if (h != cur) {
            rc = st_pread(s, st, tmp, blk * rb, h * blk * rb, e);
            cur = h;
        }
        if (!rc) memcpy(out + (r - row0) * rb, tmp + (perm_src(r, half) - h * blk) * rb, (size_t)rb);
    }
    free(tmp);
    return rc;
}

static fm_err read_plus1(const fm_source *s, const fm_source_tensor *t, const hf_map *m, uint64_t row0,
                         uint64_t nrows, void *buf, fm_error *e)
{
    uint64_t n = nrows * t->ne[0];
    void *tmp = malloc((size_t)(nrows * m->src_row_bytes) + 1);
    if (!tmp) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    fm_err rc = read_plain(s, m, 0, row0, nrows, tmp, e);
    float *f = buf;
    if (!rc) rc = fm_st_to_f32(m->dtype, tmp, n, f, e);
    if (!rc)
        for (uint64_t i = 0; i < n; i++) {
            /* Gemma3RMSNorm: x * (1.0 + weight.float()) in float32 */
            float v = f[i] + 1.0f;
            fm_wr_f32le(&f[i], v);
        }
    free(tmp);
    return rc;
}

static fm_err hf_read_rows(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                           uint64_t nrows, void *buf, fm_error *e)
{
    const hf_map *m = &H(s)->map[t->impl_index];
    fm_err rc;
    if (t->expert) {
        uint8_t *out = buf;
        uint64_t per = t->ne[1];
        if (expert >= 0) {
            rc = read_plain(s, m, (uint32_t)expert, row0, nrows, buf, e);
        } else { /* fused rows across experts */
            rc = FM_OK;
            uint64_t r = row0, end = row0 + nrows;
            while (r < end && !rc) {
                uint64_t x = r / per, k = per - r % per;
                if (k > end - r) k = end - r;
                rc = read_plain(s, m, (uint32_t)x, r % per, k, out, e);
                out += k * m->src_row_bytes;
                r += k;
            }
        }
    } else if (m->xform == X_PERMUTE) {
        rc = read_permuted(s, t, m, row0, nrows, buf, e);
    } else if (m->xform == X_PLUS1) {
        rc = read_plus1(s, t, m, row0, nrows, buf, e);
    } else {
        rc = read_plain(s, m, 0, row0, nrows, buf, e);
    }
    if (rc) fm_error_prefix(e, "tensor %s", t->name);
    return rc;
}

static void drop_range(const fm_source *s, const fm_st_tensor *st, uint64_t off, uint64_t len)
{
    uint64_t abs = st->offset + off;
    uint64_t a = (abs + 4095) & ~4095ull, b = (abs + len) & ~4095ull;
    if (b > a)
        (void)posix_fadvise(H(s)->st->files[st->file_index].fd, (off_t)a, (off_t)(b - a), POSIX_FADV_DONTNEED);
}

static void hf_drop_rows(const fm_source *s, const fm_source_tensor *t, int64_t expert, uint64_t row0,
                         uint64_t nrows)
{
    const hf_map *m = &H(s)->map[t->impl_index];
    if (H(s)->direct) return; /* nothing cached */
    if (t->expert && expert >= 0) {
        drop_range(s, m->st[expert], row0 * m->src_row_bytes, nrows * m->src_row_bytes);
    } else if (t->expert) {
        for (uint32_t x = 0; x < m->n; x++) drop_range(s, m->st[x], 0, m->st[x]->size);
    } else if (m->xform == X_PLUS1 || m->xform == X_NONE) {
        drop_range(s, m->st[0], row0 * m->src_row_bytes, nrows * m->src_row_bytes);
    } /* permuted: rows are gathered across a head; leave the cache alone */
}

static fm_err hf_tokenizer(const fm_source *s, json_t **out, fm_error *e)
{
#ifdef FM_HAVE_TOKMETA
    return fm_tokmeta_from_hf(H(s)->dir, out, e);
#else
    /* TOKENIZER: formats/tokmeta.h (fm_tokmeta_from_hf) is not there yet;
     * bundles made by this build carry no tokenizer. */
    *out = NULL;
    return fm_error_set(e, FM_E_UNSUPPORTED, "%s: fm was built without formats/tokmeta", s->path);
#endif
}

static void hf_close(fm_source *s)
{
    hf_impl *h = H(s);
    if (!h) return;
    if (h->map)
        for (size_t i = 0; i < s->n_tensors; i++) free(h->map[i].st);
    free(h->map);
    if (h->direct)
        for (uint32_t i = 0; i < h->st->n_files; i++) fm_file_close(&h->direct[i]);
    free(h->direct);
    fm_st_close(h->st);
    free(h->dir);
    free(h);
    s->impl = NULL;
}

static fm_err hf_set_direct(fm_source *s, fm_error *e)
{
    hf_impl *h = H(s);
    if (h->direct) return FM_OK;
    fm_file *d = calloc(h->st->n_files ? h->st->n_files : 1, sizeof *d);
    if (!d) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    for (uint32_t i = 0; i < h->st->n_files; i++) d[i].fd = -1;
    for (uint32_t i = 0; i < h->st->n_files; i++)
        if (fm_file_open(&d[i], h->st->files[i].path, FM_FILE_DIRECT, NULL) != FM_OK) {
            for (uint32_t k = 0; k < i; k++) fm_file_close(&d[k]);
            free(d);
            return fm_error_set(e, FM_E_UNSUPPORTED, "%s: O_DIRECT refused", h->st->files[i].path);
        }
    h->direct = d;
    return FM_OK;
}

static const fm_source_ops hf_ops = {hf_read_rows, hf_drop_rows, hf_tokenizer, hf_close, hf_set_direct};

/* ------------------------------------------------------------------ config */

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (k == 0 || p[k - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

/* A dotted path ("rope_scaling.factor") in obj; NULL when absent or null. */
static json_t *cfg_path(json_t *obj, const char *path)
{
    char buf[256];
    size_t n = strlen(path);
    if (n >= sizeof buf) return NULL;
    memcpy(buf, path, n + 1);
    json_t *cur = obj;
    for (char *tok = buf, *dot; cur && tok; tok = dot ? dot + 1 : NULL) {
        dot = strchr(tok, '.');
        if (dot) *dot = 0;
        if (!json_is_object(cur)) return NULL;
        cur = json_object_get(cur, tok);
    }
    return cur && !json_is_null(cur) ? cur : NULL;
}

/* "a|b": the first alternative present; *which gets its text. */
static json_t *cfg_lookup(json_t *cfg, const char *key, char *which, size_t wn)
{
    const char *p = key;
    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        char one[256];
        if (n < sizeof one) {
            memcpy(one, p, n);
            one[n] = 0;
            json_t *v = cfg_path(cfg, one);
            if (v) {
                snprintf(which, wn, "%s", one);
                return v;
            }
        }
        p = bar ? bar + 1 : NULL;
    }
    return NULL;
}

static void set_if_absent(json_t *cfg, const char *key, json_t *v)
{
    if (v && !cfg_path(cfg, key)) json_object_set(cfg, key, v);
}

/* Spellings of config.json that the table's hf_key names do not cover
 * (transformers 5 writes rope_parameters and, for qwen MoE models,
 * num_local_experts; Gemma 3 multimodal checkpoints nest text_config).
 * Rewritten here into the keys the table names. */
static fm_err normalize_config(const fm_arch *a, json_t *cfg, const char *cpath, fm_error *e)
{
    json_t *rp = json_object_get(cfg, "rope_parameters");
    if (json_is_object(rp)) {
        json_t *full = json_object_get(rp, "full_attention"), *slide = json_object_get(rp, "sliding_attention");
        if (json_is_object(full)) {
            set_if_absent(cfg, "rope_theta", json_object_get(full, "rope_theta"));
            set_if_absent(cfg, "rope_scaling", full);
            if (json_is_object(slide)) set_if_absent(cfg, "rope_local_base_freq", json_object_get(slide, "rope_theta"));
        } else {
            set_if_absent(cfg, "rope_theta", json_object_get(rp, "rope_theta"));
            set_if_absent(cfg, "rope_scaling", rp);
        }
    }
    json_t *rs = cfg_path(cfg, "rope_scaling");
    if (rs) {
        json_t *ty = json_object_get(rs, "rope_type");
        if (!ty) ty = json_object_get(rs, "type");
        if (json_is_string(ty) && strcmp(json_string_value(ty), "llama3") == 0)
            return fm_error_set(e, FM_E_UNSUPPORTED,
                                "%s: rope_scaling type \"llama3\" (a rope_freqs tensor) is not supported yet",
                                cpath);
    }
    set_if_absent(cfg, "num_experts", json_object_get(cfg, "num_local_experts"));
    /* Every layer must be MoE in the qwen MoE tables. */
    if (a->flags & FM_ARCH_MOE_REQUIRED) {
        json_t *step = json_object_get(cfg, "decoder_sparse_step"), *only = json_object_get(cfg, "mlp_only_layers");
        if (step && !json_is_null(step) && !(json_is_integer(step) && json_integer_value(step) == 1))
            return fm_error_set(e, FM_E_UNSUPPORTED,
                                "%s: decoder_sparse_step must be 1 (every layer MoE) for %s", cpath, a->name);
        if (only && !json_is_null(only) && !(json_is_array(only) && json_array_size(only) == 0))
            return fm_error_set(e, FM_E_UNSUPPORTED, "%s: mlp_only_layers must be empty for %s", cpath,
                                a->name);
    }
    /* Gemma 3: transformers 5 writes _sliding_window_pattern and layer_types. */
    set_if_absent(cfg, "sliding_window_pattern", json_object_get(cfg, "_sliding_window_pattern"));
    json_t *lt = json_object_get(cfg, "layer_types");
    if (fm_arch_find_hparam(a, "swa_pattern") && json_is_array(lt) && json_array_size(lt) > 0) {
        size_t n = json_array_size(lt), p = 0;
        json_t *swp = cfg_path(cfg, "sliding_window_pattern");
        if (json_is_integer(swp) && json_integer_value(swp) > 0) p = (size_t)json_integer_value(swp);
        for (size_t i = 0; i < n && !p; i++) {
            const char *v = json_string_value(json_array_get(lt, i));
            if (v && strcmp(v, "full_attention") == 0) p = i + 1;
        }
        if (p == 0) p = n + 1; /* no global layer at all */
        for (size_t i = 0; i < n; i++) {
            const char *v = json_string_value(json_array_get(lt, i));
            bool local = (i % p) < p - 1;
            if (!v || strcmp(v, local ? "sliding_attention" : "full_attention") != 0)
                return fm_error_set(e, FM_E_UNSUPPORTED,
                                    "%s: layer_types[%zu] = %s breaks the periodic pattern (period %zu) fm supports",
                                    cpath, i, v ? v : "(not a string)", p);
        }
        if (!swp) json_object_set_new(cfg, "sliding_window_pattern", json_integer((json_int_t)p));
    }
    return FM_OK;
}

static bool hp_type_ok(fm_hp_type t, const json_t *v)
{
    switch (t) {
    case FM_HP_U32: return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= (json_int_t)UINT32_MAX;
    case FM_HP_F32: return json_is_number(v);
    case FM_HP_BOOL: return json_is_boolean(v);
    case FM_HP_STR: return json_is_string(v);
    }
    return false;
}

static const char *hp_type_word(fm_hp_type t)
{
    switch (t) {
    case FM_HP_U32: return "a non-negative 32-bit integer";
    case FM_HP_F32: return "a number";
    case FM_HP_BOOL: return "true or false";
    case FM_HP_STR: return "a string";
    }
    return "?";
}

static fm_err hparams_from_config(const fm_arch *a, json_t *cfg, const char *cpath, json_t **out, fm_error *e)
{
    json_t *hp = json_object();
    if (!hp || json_object_set_new(hp, "name", json_string(a->name))) {
        json_decref(hp);
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    fm_err rc;
    for (size_t i = 0; i < a->n_hparams; i++) {
        const fm_arch_hparam *p = &a->hparams[i];
        if (!p->hf_key) continue;
        char which[256] = "";
        json_t *v = cfg_lookup(cfg, p->hf_key, which, sizeof which);
        if (!v) continue;
        if (!hp_type_ok(p->type, v)) {
            json_decref(hp);
            return fm_error_set(e, FM_E_FORMAT, "%s: \"%s\" (hparam %s) must be %s", cpath, which, p->name,
                                hp_type_word(p->type));
        }
        /* float hparams as float32, as GGUF stores them: both sources give the same object */
        json_t *c = p->type == FM_HP_F32 ? json_real((double)(float)json_number_value(v)) : json_deep_copy(v);
        if (p->type == FM_HP_STR && strcmp(p->name, "rope_scaling_type") == 0 && strcmp(json_string_value(v), "default") == 0) {
            json_decref(c);
            c = json_string("none");
        }
        json_object_set_new(hp, p->name, c);
    }
    /* rope_dim: head_dim * partial_rotary_factor */
    json_t *prf = cfg_path(cfg, "partial_rotary_factor");
    if (prf && fm_arch_find_hparam(a, "rope_dim")) {
        if (!json_is_number(prf) || !(json_number_value(prf) > 0) || json_number_value(prf) > 1) {
            json_decref(hp);
            return fm_error_set(e, FM_E_FORMAT, "%s: partial_rotary_factor must be in (0, 1]", cpath);
        }
        json_t *hd = json_object_get(hp, "head_dim_k");
        uint64_t d = 0;
        if (hd) d = (uint64_t)json_integer_value(hd);
        else {
            json_t *ne = json_object_get(hp, "n_embd"), *nh = json_object_get(hp, "n_head");
            if (ne && nh && json_integer_value(nh) > 0) d = (uint64_t)(json_integer_value(ne) / json_integer_value(nh));
        }
        if (d) json_object_set_new(hp, "rope_dim", json_integer((json_int_t)((double)d * json_number_value(prf))));
    }
    if ((rc = fm_arch_hparams_finalize(a, hp, e))) {
        json_decref(hp);
        return fm_error_prefix(e, "%s", cpath);
    }
    *out = hp;
    return FM_OK;
}

/* ------------------------------------------------------------------ tensors */

/* Looks an HF tensor up, trying the multimodal prefixes too. */
static const fm_st_tensor *st_lookup(const fm_st *st, const char *name)
{
    const fm_st_tensor *t = fm_st_find(st, name);
    if (t) return t;
    char buf[560];
    if (strncmp(name, "model.", 6) == 0) {
        snprintf(buf, sizeof buf, "model.language_model.%s", name + 6);
        if ((t = fm_st_find(st, buf))) return t;
        snprintf(buf, sizeof buf, "language_model.%s", name);
        if ((t = fm_st_find(st, buf))) return t;
    } else if (strncmp(name, "lm_head.", 8) == 0) {
        snprintf(buf, sizeof buf, "language_model.%s", name);
        if ((t = fm_st_find(st, buf))) return t;
    }
    return NULL;
}

/* Formats an hf_name pattern (possibly "a|b") and finds the first present
 * alternative; *shown gets the first alternative's name for messages. */
static const fm_st_tensor *find_hf(const fm_st *st, const char *pat, uint32_t layer, uint32_t expert, char *shown,
                                   size_t sn)
{
    const char *p = pat;
    bool first = true;
    while (p && *p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        char one[256], name[512];
        if (n < sizeof one) {
            memcpy(one, p, n);
            one[n] = 0;
            snprintf(name, sizeof name, one, (int)layer, (int)expert);
            if (first) snprintf(shown, sn, "%s", name);
            first = false;
            const fm_st_tensor *t = st_lookup(st, name);
            if (t) return t;
        }
        p = bar ? bar + 1 : NULL;
    }
    return NULL;
}

static bool ignorable(const char *name)
{
    size_t n = strlen(name);
    static const char *const suffixes[] = {".rotary_emb.inv_freq", NULL};
    static const char *const prefixes[] = {"vision_tower.", "multi_modal_projector.", "model.vision_tower.",
                                           "model.multi_modal_projector.", NULL};
    for (int i = 0; suffixes[i]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0) return true;
    }
    for (int i = 0; prefixes[i]; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) return true;
    return false;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

typedef struct builder {
    fm_source *s;
    hf_impl *h;
    unsigned char *used; /* per st tensor */
    size_t cap;
} builder;

static size_t st_index(const fm_st *st, const fm_st_tensor *t) { return (size_t)(t - st->tensors); }

static fm_err add_tensor(builder *b, const fm_arch_tensor *ent, uint32_t layer, fm_error *e)
{
    fm_source *s = b->s;
    hf_impl *h = b->h;
    const json_t *hp = s->hparams;
    uint32_t n_expert = 0;
    bool expert = (ent->flags & FM_T_EXPERT) != 0;
    if (expert && fm_arch_hp_u32(hp, "n_expert", &n_expert, e)) return fm_error_prefix(e, "%s", s->path);
    uint32_t n = expert ? n_expert : 1;
    const fm_st_tensor **sts = calloc(n, sizeof *sts);
    if (!sts) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    char cname[256];
    fm_arch_tensor_name(ent, layer, cname, sizeof cname);
    fm_err rc = FM_OK;
    uint32_t found = 0;
    char shown[512] = "", missing[512] = "";
    for (uint32_t x = 0; x < n; x++) {
        char sh[512];
        sts[x] = find_hf(h->st, ent->hf_name, layer, x, sh, sizeof sh);
        if (x == 0) snprintf(shown, sizeof shown, "%s", sh);
        if (sts[x]) found++;
        else if (!missing[0]) snprintf(missing, sizeof missing, "%s", sh);
    }
    if (found == 0) {
        free(sts);
        if (ent->flags & FM_T_OPTIONAL) return FM_OK;
        return fm_error_set(e, FM_E_NOTFOUND, "%s: tensor %s (%s) missing from the safetensors", s->path, shown,
                            cname);
    }
    if (found < n) {
        free(sts);
        return fm_error_set(e, FM_E_NOTFOUND, "%s: tensor %s (an expert of %s) missing from the safetensors",
                            s->path, missing, cname);
    }
    const fm_st_tensor *t0 = sts[0];
    for (uint32_t x = 0; x < n && !rc; x++) {
        const fm_st_tensor *t = sts[x];
        b->used[st_index(h->st, t)] = 1;
        int q = fm_st_dtype_qtype(t->dtype);
        if (q != FM_Q_F32 && q != FM_Q_F16 && q != FM_Q_BF16)
            rc = fm_error_set(e, FM_E_UNSUPPORTED,
                              "%s: tensor %s: dtype %s is not supported (F32, F16 and BF16 are; FP8 "
                              "checkpoints need their scale tensors)",
                              s->path, t->name, fm_st_dtype_name(t->dtype));
        else if (t->n_dims < 1 || t->n_dims > (expert ? 2u : 3u))
            rc = fm_error_set(e, FM_E_FORMAT, "%s: tensor %s: %u dimensions", s->path, t->name, t->n_dims);
        else if (t->dtype != t0->dtype || t->n_dims != t0->n_dims ||
                 memcmp(t->shape, t0->shape, sizeof t->shape) != 0)
            rc = fm_error_set(e, FM_E_FORMAT, "%s: tensor %s: dtype or shape differs from %s", s->path, t->name,
                              t0->name);
    }
    if (rc) {
        free(sts);
        return rc;
    }
    if (s->n_tensors == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        fm_source_tensor *nt = realloc(s->tensors, nc * sizeof *nt);
        hf_map *nm = nt ? realloc(h->map, nc * sizeof *nm) : NULL;
        if (nt) s->tensors = nt;
        if (nm) h->map = nm;
        if (!nt || !nm) {
            free(sts);
            return fm_error_set(e, FM_E_NOMEM, "out of memory");
        }
        b->cap = nc;
    }
    fm_source_tensor *st = &s->tensors[s->n_tensors];
    hf_map *m = &h->map[s->n_tensors];
    memset(st, 0, sizeof *st);
    memset(m, 0, sizeof *m);
    if (!(st->name = strdup(cname))) {
        free(sts);
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    m->st = sts;
    m->n = n;
    m->dtype = t0->dtype;
    st->impl_index = s->n_tensors;
    s->n_tensors++;
    st->entry = ent;
    st->layer = layer;
    st->expert = expert;
    st->qtype = (uint32_t)fm_st_dtype_qtype(t0->dtype);
    st->n_dims = expert ? 3 : t0->n_dims;
    for (uint32_t k = 0; k < t0->n_dims; k++) st->ne[k] = t0->shape[t0->n_dims - 1 - k];
    if (expert) st->ne[2] = n;
    m->src_row_bytes = st->ne[0] * fm_st_dtype_size(t0->dtype);
    if ((s->arch->flags & FM_ARCH_HF_NORM_PLUS1) && ends_with(shown, "norm.weight")) {
        m->xform = X_PLUS1;
        st->qtype = FM_Q_F32;
    }
    if ((s->arch->flags & FM_ARCH_HF_PERMUTE_QK) && !expert) {
        bool q = strstr(cname, ".attn_q.") != NULL, k = strstr(cname, ".attn_k.") != NULL;
        if (q || k) {
            uint32_t nh = 0;
            if ((rc = fm_arch_hp_u32(hp, q ? "n_head" : "n_head_kv", &nh, e))) return fm_error_prefix(e, "%s", s->path);
            uint64_t rows = t0->n_dims == 1 ? st->ne[0] : st->ne[1];
            if (nh == 0 || rows % (2ull * nh))
                return fm_error_set(e, FM_E_FORMAT, "%s: tensor %s: %llu rows do not split into %u heads of pairs",
                                    s->path, t0->name, (unsigned long long)rows, nh);
            m->xform = X_PERMUTE;
            m->perm_nh = nh;
        }
    }
    return fm_source_tensor_sizes(st, s->path, e);
}

static fm_err build_tensors(fm_source *s, fm_error *e)
{
    hf_impl *h = H(s);
    const fm_arch *a = s->arch;
    uint32_t n_layer = 0;
    fm_err rc = fm_arch_hp_u32(s->hparams, "n_layer", &n_layer, e);
    if (rc) return rc;
    builder b = {s, h, calloc(h->st->n_tensors ? (size_t)h->st->n_tensors : 1, 1), 0};
    if (!b.used) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    /* global tensors, then layer by layer, each in table order */
    for (size_t i = 0; i < a->n_tensors && !rc; i++) {
        const fm_arch_tensor *t = &a->tensors[i];
        if ((t->flags & FM_T_LAYER) || !t->hf_name || !fm_arch_tensor_applies(t, s->hparams)) continue;
        rc = add_tensor(&b, t, 0, e);
    }
    for (uint32_t l = 0; l < n_layer && !rc; l++)
        for (size_t i = 0; i < a->n_tensors && !rc; i++) {
            const fm_arch_tensor *t = &a->tensors[i];
            if (!(t->flags & FM_T_LAYER) || !t->hf_name || !fm_arch_tensor_applies(t, s->hparams)) continue;
            rc = add_tensor(&b, t, l, e);
        }
    for (uint64_t i = 0; i < h->st->n_tensors && !rc; i++) {
        const char *nm = h->st->tensors[i].name;
        if (b.used[i] || ignorable(nm)) continue;
        rc = fm_error_set(e, FM_E_FORMAT,
                          "%s: tensor %s is not part of a %s model with this config.json (unknown name, or a "
                          "layer/expert beyond num_hidden_layers/num_experts)",
                          s->path, nm, a->name);
    }
    free(b.used);
    if (rc) return rc;
    /* shapes against config.json */
    fm_arch_tinfo *ti = calloc(s->n_tensors ? s->n_tensors : 1, sizeof *ti);
    if (!ti) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_tensors; i++) {
        ti[i].name = s->tensors[i].name;
        ti[i].n_dims = s->tensors[i].n_dims;
        for (int k = 0; k < 4; k++) ti[i].ne[k] = s->tensors[i].ne[k];
    }
    char what[600];
    snprintf(what, sizeof what, "%s (config.json vs safetensors)", s->path);
    rc = fm_arch_check_tensors(a, s->hparams, ti, s->n_tensors, what, e);
    free(ti);
    return rc;
}

static fm_err add_if_present(fm_source *s, const char *dir, const char *name, fm_error *e)
{
    char *p = path_join(dir, name);
    if (!p) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    struct stat sb;
    fm_err rc = FM_OK;
    if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) rc = fm_source_add_file(s, p, e);
    free(p);
    return rc;
}

fm_err fm_source_open_hf(fm_source **out, const char *dir, fm_error *e)
{
    *out = NULL;
    fm_source *s = fm_source_alloc(FM_SOURCE_HF, dir);
    hf_impl *h = calloc(1, sizeof *h);
    if (!s || !h) {
        free(h);
        fm_source_close(s);
        return fm_error_set(e, FM_E_NOMEM, "out of memory");
    }
    s->ops = &hf_ops;
    s->impl = h;
    fm_err rc = FM_OK;
    json_t *root = NULL, *cfg = NULL;
    char *cpath = path_join(dir, "config.json");
    char *text = NULL;
    if (!(h->dir = strdup(dir)) || !cpath) {
        rc = fm_error_set(e, FM_E_NOMEM, "out of memory");
        goto done;
    }
    struct stat sb;
    if (stat(cpath, &sb) != 0) {
        rc = fm_error_set(e, FM_E_NOTFOUND, "%s: no config.json (a Hugging Face model directory needs one)", dir);
        goto done;
    }
    size_t len;
    if ((rc = fm_file_slurp(cpath, CONFIG_CAP, &text, &len, e))) goto done;
    json_error_t je;
    root = json_loadb(text, len, 0, &je);
    if (!json_is_object(root)) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: not a JSON object (%s, line %d)", cpath, je.text, je.line);
        goto done;
    }
    json_t *archs = json_object_get(root, "architectures");
    const char *an = json_string_value(json_array_get(archs, 0));
    if (!an) {
        rc = fm_error_set(e, FM_E_FORMAT, "%s: \"architectures\" must be a non-empty array of strings", cpath);
        goto done;
    }
    s->arch = fm_arch_find_hf(an);
    if (!s->arch) {
        rc = fm_error_set(e, FM_E_UNSUPPORTED, "%s: architecture %s is not supported", cpath, an);
        goto done;
    }
    /* text_config (multimodal wrappers) over the top level */
    json_t *tc = json_object_get(root, "text_config");
    cfg = json_is_object(tc) ? json_deep_copy(tc) : json_deep_copy(root);
    if (!cfg) {
        rc = fm_error_set(e, FM_E_NOMEM, "out of memory");
        goto done;
    }
    if (json_is_object(tc)) {
        const char *k;
        json_t *v;
        json_object_foreach(root, k, v) if (!json_object_get(cfg, k) && strcmp(k, "vision_config")) json_object_set(cfg, k, v);
    }
    if ((rc = normalize_config(s->arch, cfg, cpath, e))) goto done;
    if ((rc = hparams_from_config(s->arch, cfg, cpath, &s->hparams, e))) goto done;
    if ((rc = fm_source_add_file(s, cpath, e))) goto done;
    static const char *const extra[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                        "special_tokens_map.json", "generation_config.json",
                                        "chat_template.jinja", "chat_template.json", NULL};
    for (int i = 0; extra[i] && !rc; i++) rc = add_if_present(s, dir, extra[i], e);
    if (rc) goto done;
    if ((rc = fm_st_open(&h->st, dir, e))) goto done;
    if ((rc = add_if_present(s, dir, "model.safetensors.index.json", e))) goto done;
    for (uint32_t i = 0; i < h->st->n_files && !rc; i++) rc = fm_source_add_file(s, h->st->files[i].path, e);
    if (rc) goto done;
    rc = build_tensors(s, e);
done:
    free(text);
    free(cpath);
    json_decref(root);
    json_decref(cfg);
    if (rc) {
        fm_source_close(s);
        return rc;
    }
    *out = s;
    return FM_OK;
}
