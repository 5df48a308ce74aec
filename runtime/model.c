/* Model loading: GGUF or bundle -> fm_config + resident fm_weights + experts. */
#include "runtime/model.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "formats/quant.h"
#include "formats/util.h"

#define U64(x) ((unsigned long long)(x))

fm_err fm_config_from_hparams(fm_config *c, const json_t *hp, fm_error *e)
{
    memset(c, 0, sizeof *c);
    const char *name;
    fm_err r = fm_arch_hp_str(hp, "name", &name, e);
    if (r) return r;
    c->arch = fm_arch_find(name);
    if (!c->arch) return fm_error_set(e, FM_E_UNSUPPORTED, "architecture \"%s\" is not supported", name);
    const fm_arch *a = c->arch;
#define GETU(field, key)                                             \
    if ((r = fm_arch_hp_u32(hp, key, &c->field, e))) return r
#define GETU_OPT(field, key, def)                                    \
    if (fm_arch_hp_u32(hp, key, &c->field, NULL)) c->field = def
#define GETF_OPT(field, key, def)                                    \
    if (fm_arch_hp_f32(hp, key, &c->field, NULL)) c->field = def
    GETU(n_vocab, "n_vocab");
    GETU(n_embd, "n_embd");
    GETU(n_layer, "n_layer");
    GETU(n_head, "n_head");
    GETU(n_head_kv, "n_head_kv");
    GETU(head_dim_k, "head_dim_k");
    GETU(head_dim_v, "head_dim_v");
    GETU_OPT(n_ctx_train, "n_ctx_train", 4096);
    GETU_OPT(n_ff, "n_ff", 0);
    GETU_OPT(n_expert, "n_expert", 0);
    GETU_OPT(n_expert_used, "n_expert_used", 0);
    GETU_OPT(n_ff_exp, "n_ff_exp", 0);
    GETU_OPT(n_ff_shexp, "n_ff_shexp", 0);
    if ((r = fm_arch_hp_f32(hp, "rms_eps", &c->rms_eps, e))) return r;
    if (fm_arch_hp_bool(hp, "expert_weights_norm", &c->expert_weights_norm, NULL)) c->expert_weights_norm = false;
    c->rope_style = a->rope;
    GETU_OPT(rope_dim, "rope_dim", c->head_dim_k);
    GETF_OPT(rope_theta, "rope_theta", 10000.0f);
    GETF_OPT(rope_theta_local, "rope_theta_local", c->rope_theta);
    const char *st = "none";
    fm_arch_hp_str(hp, "rope_scaling_type", &st, NULL);
    float factor = 1.0f;
    fm_arch_hp_f32(hp, "rope_scaling_factor", &factor, NULL);
    c->rope_freq_scale = 1.0f;
    c->rope_ext_factor = 0.0f;
    if (strcmp(st, "linear") == 0 || strcmp(st, "yarn") == 0) c->rope_freq_scale = 1.0f / factor;
    if (strcmp(st, "yarn") == 0) c->rope_ext_factor = 1.0f;
    GETF_OPT(rope_attn_factor, "rope_scaling_attn_factor", 1.0f);
    GETF_OPT(rope_beta_fast, "rope_yarn_beta_fast", 32.0f);
    GETF_OPT(rope_beta_slow, "rope_yarn_beta_slow", 1.0f);
    GETU_OPT(rope_orig_ctx, "rope_scaling_orig_ctx", c->n_ctx_train);
    GETU_OPT(sliding_window, "sliding_window", 0);
    GETU_OPT(swa_pattern, "swa_pattern", 0);
    GETF_OPT(attn_logit_softcap, "attn_logit_softcap", 0.0f);
    GETF_OPT(final_logit_softcap, "final_logit_softcap", 0.0f);
    if (a->flags & FM_ARCH_PRESCALE_Q) {
        float qs = (float)c->head_dim_k;
        fm_arch_hp_f32(hp, "query_pre_attn_scalar", &qs, NULL);
        c->q_scale = 1.0f / sqrtf(qs);
        c->kq_scale = 1.0f;
    } else {
        c->q_scale = 1.0f;
        c->kq_scale = 1.0f / sqrtf((float)c->head_dim_k);
    }
    c->embd_scale = (a->flags & FM_ARCH_EMBD_SCALE) ? sqrtf((float)c->n_embd) : 1.0f;
    c->act = a->act;
    c->qk_norm = (a->flags & FM_ARCH_QK_NORM) != 0;
    c->post_norms = (a->flags & FM_ARCH_POST_NORMS) != 0;
    c->shared_expert = (a->flags & FM_ARCH_SHARED_EXPERT) && c->n_ff_shexp > 0;
    if (c->n_expert && (c->n_expert_used == 0 || c->n_expert_used > c->n_expert))
        return fm_error_set(e, FM_E_RANGE, "n_expert_used %u with n_expert %u", c->n_expert_used, c->n_expert);
#undef GETU
#undef GETU_OPT
#undef GETF_OPT
    return FM_OK;
}

/* ------------------------------------------------------------- loading */

/* Where each fm_tensor field of the weights comes from. */
typedef struct slot_def {
    const char *suffix; /* after "blk.%d." or a global name */
    size_t off;         /* offsetof in fm_layer_weights / fm_weights */
    bool f32;           /* convert to F32 at load (vectors used directly) */
} slot_def;

#define LW(f) offsetof(fm_layer_weights, f)
static const slot_def layer_slots[] = {
    {"attn_norm.weight", LW(attn_norm), true},
    {"attn_q.weight", LW(wq), false},
    {"attn_k.weight", LW(wk), false},
    {"attn_v.weight", LW(wv), false},
    {"attn_output.weight", LW(wo), false},
    {"attn_q.bias", LW(bq), true},
    {"attn_k.bias", LW(bk), true},
    {"attn_v.bias", LW(bv), true},
    {"attn_output.bias", LW(bo), true},
    {"attn_q_norm.weight", LW(q_norm), true},
    {"attn_k_norm.weight", LW(k_norm), true},
    {"post_attention_norm.weight", LW(post_attn_norm), true},
    {"ffn_norm.weight", LW(ffn_norm), true},
    {"ffn_gate.weight", LW(ffn_gate), false},
    {"ffn_up.weight", LW(ffn_up), false},
    {"ffn_down.weight", LW(ffn_down), false},
    {"post_ffw_norm.weight", LW(post_ffn_norm), true},
    {"ffn_gate_inp.weight", LW(gate_inp), false},
    {"ffn_gate_inp_shexp.weight", LW(gate_inp_shexp), true},
    {"ffn_gate_shexp.weight", LW(gate_shexp), false},
    {"ffn_up_shexp.weight", LW(up_shexp), false},
    {"ffn_down_shexp.weight", LW(down_shexp), false},
};
#undef LW
#define GW(f) offsetof(fm_weights, f)
static const slot_def global_slots[] = {
    {"token_embd.weight", GW(token_embd), false},
    {"output_norm.weight", GW(output_norm), true},
    {"output.weight", GW(output), false},
    {"rope_freqs.weight", GW(rope_freqs), true},
};
#undef GW

/* A tensor as a backend describes it. */
typedef struct src_tensor {
    const char *name;
    uint32_t qtype, n_dims;
    uint64_t ne[4];
    uint64_t size;
    const fm_gguf_tensor *gt;
    const fm_bundle_tensor *bt;
} src_tensor;

static fm_err find_src(const fm_model *m, const char *name, src_tensor *s, bool *found, fm_error *e)
{
    memset(s, 0, sizeof *s);
    *found = false;
    if (m->gguf) {
        const fm_gguf_tensor *t = fm_gguf_find_tensor(m->gguf, name);
        if (!t) return FM_OK;
        s->gt = t;
        s->name = t->name.s;
        s->qtype = t->type;
        s->n_dims = t->n_dims;
        for (int i = 0; i < 4; i++) s->ne[i] = t->ne[i];
        s->size = t->size;
    } else {
        const fm_bundle_tensor *t = fm_bundle_find_tensor(m->bundle, name);
        if (!t) return FM_OK;
        if (t->n_dims < 1 || t->n_dims > 4)
            return fm_error_set(e, FM_E_FORMAT, "%s: tensor %s has %u dims", m->path, name, t->n_dims);
        s->bt = t;
        s->name = t->name;
        s->qtype = t->qtype;
        s->n_dims = t->n_dims;
        for (int i = 0; i < 4; i++) s->ne[i] = 1;
        for (uint32_t i = 0; i < t->n_dims; i++) s->ne[i] = t->shape[t->n_dims - 1 - i];
        s->size = t->size;
    }
    *found = true;
    return FM_OK;
}

static fm_err read_src(const fm_model *m, const src_tensor *s, void *buf, bool verify, fm_error *e)
{
    if (s->gt) return fm_gguf_read_tensor(m->gguf, s->gt, buf, e);
    return fm_bundle_read_tensor(m->bundle, s->bt, buf, verify, e);
}

static fm_err check_types(const fm_model *m, fm_error *e);

typedef struct load_item {
    src_tensor src;
    fm_tensor *dst;
    bool f32;
    int32_t layer;   /* -1: a global tensor */
    bool matrix;     /* a layer's weight matrix: may stream */
    uint64_t arena_off, bytes;
} load_item;

typedef struct dense_plan {
    load_item *it;
    size_t n;
} dense_plan;

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void plan_free(fm_model *m)
{
    dense_plan *p = m->plan;
    if (!p) return;
    free(p->it);
    free(p);
    m->plan = NULL;
}

/* Finds every dense tensor, checks its type and size, and sums the bytes
 * each layer's matrices and the always-resident rest need. */
static fm_err plan_dense(fm_model *m, fm_error *e)
{
    const fm_config *c = &m->config;
    size_t max_items = N(global_slots) + (size_t)c->n_layer * N(layer_slots);
    dense_plan *p = calloc(1, sizeof *p);
    load_item *it = calloc(max_items, sizeof *it);
    m->layer_bytes = calloc(c->n_layer ? c->n_layer : 1, sizeof *m->layer_bytes);
    if (!p || !it || !m->layer_bytes) {
        free(p);
        free(it);
        return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", m->path);
    }
    p->it = it;
    m->plan = p;
    size_t n = 0;
    fm_err r = FM_OK;
    char name[128];
    for (size_t li = 0; li < (size_t)c->n_layer + 1 && !r; li++) {
        bool global = li == 0;
        const slot_def *defs = global ? global_slots : layer_slots;
        size_t nd = global ? N(global_slots) : N(layer_slots);
        for (size_t k = 0; k < nd; k++) {
            if (global) snprintf(name, sizeof name, "%s", defs[k].suffix);
            else snprintf(name, sizeof name, "blk.%zu.%s", li - 1, defs[k].suffix);
            bool found;
            load_item *x = &it[n];
            if ((r = find_src(m, name, &x->src, &found, e))) break;
            if (!found) continue;
            x->layer = global ? -1 : (int32_t)(li - 1);
            x->matrix = !global && !defs[k].f32;
            x->dst = global ? (fm_tensor *)((char *)&m->w + defs[k].off)
                            : (fm_tensor *)((char *)&m->w.layers[li - 1] + defs[k].off);
            x->f32 = defs[k].f32 && x->src.qtype != FM_Q_F32;
            uint64_t nel = x->src.ne[0] * x->src.ne[1] * x->src.ne[2] * x->src.ne[3];
            if (x->f32) {
                if (!fm_qtype_dequant_fn(x->src.qtype)) {
                    r = fm_error_set(e, FM_E_UNSUPPORTED, "%s: tensor %s: type %u cannot be converted to F32",
                                     m->path, name, x->src.qtype);
                    break;
                }
                x->bytes = nel * 4;
            } else {
                if (!fm_qtype_dequant_fn(x->src.qtype)) {
                    const fm_qtype_traits *tr = fm_qtype_get(x->src.qtype);
                    r = fm_error_set(e, FM_E_UNSUPPORTED, "%s: tensor %s: type %s is not supported", m->path,
                                     name, tr ? tr->name : "unknown");
                    break;
                }
                x->bytes = x->src.size;
            }
            uint64_t rb;
            if ((r = fm_qtype_nbytes(x->f32 ? FM_Q_F32 : x->src.qtype, x->src.ne[0], &rb, e))) {
                fm_error_prefix(e, "%s: tensor %s", m->path, name);
                break;
            }
            uint64_t want;
            if (!fm_mul_u64(rb, nel / x->src.ne[0], &want) || (!x->f32 && want != x->src.size)) {
                r = fm_error_set(e, FM_E_FORMAT, "%s: tensor %s: %llu bytes, its shape needs %llu", m->path,
                                 name, U64(x->src.size), U64(want));
                break;
            }
            x->dst->row_bytes = rb;
            x->dst->qtype = x->f32 ? FM_Q_F32 : x->src.qtype;
            x->dst->n_dims = x->src.n_dims;
            memcpy(x->dst->ne, x->src.ne, sizeof x->dst->ne);
            x->dst->size = x->bytes;
            uint64_t padded, *sum = x->matrix ? &m->layer_bytes[x->layer] : &m->fixed_bytes;
            if (!fm_align_up(x->bytes, 64, &padded) || !fm_add_u64(*sum, padded, sum)) {
                r = fm_error_set(e, FM_E_RANGE, "%s: dense tensors too large", m->path);
                break;
            }
            n++;
        }
    }
    p->n = n;
    for (uint32_t il = 0; il < c->n_layer && !r; il++) {
        if (!fm_add_u64(m->layer_bytes_total, m->layer_bytes[il], &m->layer_bytes_total))
            r = fm_error_set(e, FM_E_RANGE, "%s: dense tensors too large", m->path);
        if (m->layer_bytes[il] > m->layer_bytes_max) m->layer_bytes_max = m->layer_bytes[il];
    }
    return r;
}

uint32_t fm_model_resident_layers_for(const fm_model *m, uint64_t bytes)
{
    uint32_t r = 0;
    uint64_t sum = 0;
    while (r < m->config.n_layer && m->layer_bytes[r] <= bytes - sum) sum += m->layer_bytes[r++];
    return r;
}

static uint64_t src_file_offset(const src_tensor *s)
{
    return s->gt ? s->gt->abs_offset : s->bt->offset;
}

/* The layer catalog: the matrices of each streamed layer, one piece each,
 * as expert 0 of that layer. */
static fm_err build_layer_catalog(fm_model *m, const dense_plan *p, fm_error *e)
{
    const fm_config *c = &m->config;
    fm_expert_catalog *cat;
    fm_err r = fm_expert_catalog_new(m->path, c->n_layer, 1, &cat, e);
    if (r) return r;
    m->layer_catalog = cat;
    if (m->gguf) {
        cat->fd = m->gguf->file.fd;
        cat->alignment = (uint32_t)(m->gguf->alignment <= UINT32_MAX ? m->gguf->alignment : 0);
    } else {
        cat->fd = fm_bundle_fd(m->bundle);
        cat->direct_fd = fm_bundle_direct_fd(m->bundle);
        cat->alignment = fm_bundle_alignment(m->bundle);
        uint8_t(*sha)[32] = calloc((size_t)c->n_layer * FM_EXPERT_MAX_PIECES, 32);
        if (!sha) return fm_error_set(e, FM_E_NOMEM, "%s: out of memory", m->path);
        cat->piece_sha256 = (const uint8_t(*)[32])sha;
    }
    for (size_t i = 0; i < p->n; i++) {
        const load_item *x = &p->it[i];
        if (!x->matrix || (uint32_t)x->layer < m->n_resident_layers) continue;
        const uint32_t il = (uint32_t)x->layer;
        fm_expert_layer_desc *L = &cat->layers[il];
        fm_layer_weights *W = &m->w.layers[il];
        if (L->n_mats == FM_EXPERT_MAX_MATS)
            return fm_error_set(e, FM_E_RANGE, "%s: layer %u has more than %d matrices", m->path, il, FM_EXPERT_MAX_MATS);
        const uint32_t k = L->n_mats++;
        L->present = true;
        L->n_expert = 1;
        L->n_pieces = L->n_mats;
        fm_expert_mat *mt = &L->mats[k];
        mt->qtype = x->dst->qtype;
        mt->cols = x->src.ne[0];
        mt->rows = x->src.ne[1] * x->src.ne[2] * x->src.ne[3];
        mt->row_bytes = x->dst->row_bytes;
        mt->data = NULL;
        L->mat_off[k] = L->blob_size;
        L->mat_name[k] = x->src.name;
        fm_expert_piece *pc = &cat->pieces[(uint64_t)il * FM_EXPERT_MAX_PIECES + k];
        pc->file_off = src_file_offset(&x->src);
        pc->size = x->src.size;
        pc->blob_off = L->blob_size;
        if (x->src.bt) memcpy((void *)cat->piece_sha256[(uint64_t)il * FM_EXPERT_MAX_PIECES + k], x->src.bt->sha256, 32);
        if (!fm_add_u64(L->blob_size, x->src.size, &L->blob_size) || !fm_align_up(L->blob_size, 64, &L->blob_size))
            return fm_error_set(e, FM_E_RANGE, "%s: layer %u too large", m->path, il);
        if (L->blob_size > cat->max_blob_size) cat->max_blob_size = L->blob_size;
        W->streamed = true;
        W->stream_off[k] = (uint16_t)((char *)x->dst - (char *)W);
        W->n_stream = L->n_mats;
    }
    return FM_OK;
}

fm_err fm_model_load_dense(fm_model *m, uint32_t n_resident_layers, fm_error *e)
{
    if (m->dense_loaded) return fm_error_set(e, FM_E_ARG, "%s: dense tensors already loaded", m->path);
    const dense_plan *p = m->plan;
    const fm_config *c = &m->config;
    m->n_resident_layers = n_resident_layers < c->n_layer ? n_resident_layers : c->n_layer;
    fm_err r = FM_OK;
    uint64_t total = 0;
    for (size_t i = 0; i < p->n; i++) {
        load_item *x = &p->it[i];
        if (x->matrix && (uint32_t)x->layer >= m->n_resident_layers) continue;
        if (!fm_align_up(total, 64, &x->arena_off) || !fm_add_u64(x->arena_off, x->bytes, &total))
            return fm_error_set(e, FM_E_RANGE, "%s: dense tensors too large", m->path);
    }
    /* 2 MiB-aligned and advised for transparent huge pages (where the
     * system leaves THP to madvise): the decode pass streams every dense
     * matrix each token, and 4 KiB pages cost a TLB miss every 4 KiB */
    uint64_t alloc;
    const uint64_t huge = 2u << 20, al = total >= 4 * huge ? huge : 64;
    if (!fm_align_up(total ? total : 64, al, &alloc) || alloc > SIZE_MAX ||
        !(m->arena = aligned_alloc((size_t)al, (size_t)alloc)))
        return fm_error_set(e, FM_E_NOMEM, "%s: cannot allocate %llu bytes for dense tensors", m->path, U64(total));
#ifdef MADV_HUGEPAGE
    if (al == huge) (void)madvise(m->arena, (size_t)alloc, MADV_HUGEPAGE); /* a hint */
#endif
    m->dense_bytes = total;
    for (size_t i = 0; i < p->n && !r; i++) {
        load_item *x = &p->it[i];
        if (x->matrix && (uint32_t)x->layer >= m->n_resident_layers) continue;
        uint8_t *dst = (uint8_t *)m->arena + x->arena_off;
        if (x->f32) {
            void *tmp = malloc(x->src.size ? (size_t)x->src.size : 1);
            if (!tmp) {
                r = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", m->path);
                break;
            }
            r = read_src(m, &x->src, tmp, m->verify, e);
            if (!r) r = fm_dequantize(x->src.qtype, tmp, (size_t)x->src.size, (float *)dst, x->bytes / 4, e);
            free(tmp);
        } else {
            r = read_src(m, &x->src, dst, m->verify, e);
        }
        if (r) {
            fm_error_prefix(e, "%s: tensor %s", m->path, x->src.name);
            break;
        }
        x->dst->data = dst;
    }
    if (!r && (r = check_types(m, e)) == FM_OK && m->n_resident_layers < c->n_layer) {
        if ((r = build_layer_catalog(m, p, e))) return r;
        fm_experts_simple_opts so = {m->layer_catalog->max_blob_size, 1, m->verify};
        r = fm_experts_open_simple(m->layer_catalog, &so, &m->layers, e);
    }
    if (!r) m->dense_loaded = true;
    return r;
}

/* Builds the fused-name tensor list of a bundle for fm_arch_check_tensors. */
static fm_err check_bundle_tensors(fm_model *m, fm_error *e)
{
    static const char *const parts[3] = {"gate", "up", "down"};
    static const char *const fused[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    const fm_bundle *b = m->bundle;
    uint64_t nt = fm_bundle_n_tensors(b);
    uint32_t nl = fm_bundle_n_expert_layers(b);
    size_t n = (size_t)nt + 3 * (size_t)nl;
    fm_arch_tinfo *ti = calloc(n ? n : 1, sizeof *ti);
    char(*names)[64] = calloc(3 * (size_t)nl + 1, 64);
    fm_err r = FM_OK;
    if (!ti || !names) {
        r = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", m->path);
        goto out;
    }
    size_t k = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const fm_bundle_tensor *t = fm_bundle_tensor_at(b, i);
        if (t->n_dims < 1 || t->n_dims > 4) {
            r = fm_error_set(e, FM_E_FORMAT, "%s: tensor %s has %u dims", m->path, t->name, t->n_dims);
            goto out;
        }
        ti[k].name = t->name;
        ti[k].n_dims = t->n_dims;
        for (int d = 0; d < 4; d++) ti[k].ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) ti[k].ne[d] = t->shape[t->n_dims - 1 - d];
        k++;
    }
    for (uint32_t i = 0; i < nl; i++) {
        const fm_bundle_expert_layer *l = fm_bundle_expert_layer_at(b, i);
        for (int p = 0; p < 3; p++) {
            const fm_bundle_part *pt = fm_bundle_find_part(l, parts[p]);
            if (!pt || pt->n_dims != 2) {
                r = fm_error_set(e, FM_E_FORMAT, "%s: expert layer %u: part \"%s\" missing or not 2-D", m->path,
                                 l->layer, parts[p]);
                goto out;
            }
            snprintf(names[3 * i + (unsigned)p], 64, "blk.%u.%s.weight", l->layer, fused[p]);
            ti[k].name = names[3 * i + (unsigned)p];
            ti[k].n_dims = 3;
            ti[k].ne[0] = pt->shape[1];
            ti[k].ne[1] = pt->shape[0];
            ti[k].ne[2] = l->n_expert;
            ti[k].ne[3] = 1;
            k++;
        }
    }
    r = fm_arch_check_tensors(m->config.arch, m->hparams, ti, k, m->path, e);
out:
    free(ti);
    free(names);
    return r;
}

static fm_err is_gguf_file(const char *path, bool *yes, fm_error *e)
{
    fm_file f = FM_FILE_INIT;
    fm_err r = fm_file_open(&f, path, 0, e);
    if (r) return r;
    char magic[4] = {0};
    *yes = f.size >= 4 && fm_file_pread(&f, magic, 4, 0, NULL) == FM_OK && memcmp(magic, "GGUF", 4) == 0;
    fm_file_close(&f);
    return FM_OK;
}

static fm_err check_types(const fm_model *m, fm_error *e)
{
    const fm_config *c = &m->config;
    const fm_weights *w = &m->w;
    if (w->token_embd.ne[0] != c->n_embd)
        return fm_error_set(e, FM_E_FORMAT, "%s: token_embd ne[0] %llu != n_embd %u", m->path,
                            U64(w->token_embd.ne[0]), c->n_embd);
    if (!fm_qtype_dequant_fn(w->token_embd.qtype))
        return fm_error_set(e, FM_E_UNSUPPORTED, "%s: token_embd type %u cannot be dequantized", m->path,
                            w->token_embd.qtype);
    return FM_OK;
}

fm_err fm_model_open(fm_model **out, const char *path, const fm_model_opts *opts, fm_error *e)
{
    fm_model_opts o = {0};
    if (opts) o = *opts;
    *out = NULL;
    fm_model *m = calloc(1, sizeof *m);
    if (!m) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    fm_err r;
    m->path = strdup(path);
    if (!m->path) {
        r = fm_error_set(e, FM_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((r = is_gguf_file(path, &m->is_gguf, e))) goto fail;
    if (m->is_gguf) {
        if ((r = fm_gguf_open(&m->gguf, path, e))) goto fail;
        if ((r = fm_arch_hparams_from_gguf(m->gguf, &m->hparams, e))) goto fail;
    } else {
        if ((r = fm_bundle_open(&m->bundle, path, o.io_direct ? FM_BUNDLE_OPEN_DIRECT : 0, e))) goto fail;
        const json_t *a = fm_bundle_arch(m->bundle);
        if (!a) {
            r = fm_error_set(e, FM_E_FORMAT, "%s: manifest has no \"arch\" object", path);
            goto fail;
        }
        m->hparams = json_deep_copy(a);
        if (!m->hparams) {
            r = fm_error_set(e, FM_E_NOMEM, "out of memory");
            goto fail;
        }
        if ((r = fm_arch_hparams_finalize(NULL, m->hparams, e))) {
            fm_error_prefix(e, "%s: manifest arch", path);
            goto fail;
        }
    }
    if ((r = fm_config_from_hparams(&m->config, m->hparams, e))) {
        fm_error_prefix(e, "%s", path);
        goto fail;
    }
    if (m->is_gguf) r = fm_arch_check_gguf(m->config.arch, m->hparams, m->gguf, e);
    else r = check_bundle_tensors(m, e);
    if (r) goto fail;

    const fm_config *c = &m->config;
    m->w.layers = calloc(c->n_layer, sizeof *m->w.layers);
    if (!m->w.layers) {
        r = fm_error_set(e, FM_E_NOMEM, "out of memory");
        goto fail;
    }
    m->verify = o.verify;
    if ((r = plan_dense(m, e))) goto fail;
    if (!o.defer_dense && (r = fm_model_load_dense(m, c->n_layer, e))) goto fail;
    if (c->n_expert) {
        if (m->is_gguf) r = fm_expert_catalog_from_gguf(m->gguf, m->hparams, &m->catalog, e);
        else r = fm_expert_catalog_from_bundle(m->bundle, m->hparams, &m->catalog, e);
        if (r) goto fail;
        fm_experts_simple_opts so = {o.expert_cache_bytes, o.expert_pinned_max, o.verify};
        if ((r = fm_experts_open_simple(m->catalog, &so, &m->experts, e))) goto fail;
    }
    for (uint32_t il = 0; il < c->n_layer; il++) {
        fm_layer_weights *L = &m->w.layers[il];
        L->moe = m->catalog && m->catalog->layers[il].present;
        if (c->n_expert && !L->moe) {
            r = fm_error_set(e, FM_E_FORMAT, "%s: layer %u has no experts", path, il);
            goto fail;
        }
        L->swa = fm_arch_layer_is_swa(m->hparams, il);
        L->rope_theta = L->swa ? c->rope_theta_local : c->rope_theta;
        L->rope_freq_scale = L->swa ? 1.0f : c->rope_freq_scale;
    }
    *out = m;
    return FM_OK;
fail:
    fm_model_close(m);
    return r;
}

void fm_model_close(fm_model *m)
{
    if (!m) return;
    fm_experts_free(m->experts);
    fm_expert_catalog_free(m->catalog);
    fm_experts_free(m->layers);
    fm_expert_catalog_free(m->layer_catalog);
    free(m->layer_bytes);
    plan_free(m);
    free(m->arena);
    free(m->w.layers);
    json_decref(m->hparams);
    if (m->gguf) fm_gguf_close(m->gguf);
    if (m->bundle) fm_bundle_close(m->bundle);
    free(m->path);
    free(m);
}
