/* The forward pass (see forward.h). One function per step; the layer loop
 * in fm_forward reads like the architecture:
 *
 *   x = embed(tokens) * embd_scale
 *   for each layer:
 *     h = rmsnorm(x) * attn_norm
 *     q, k, v = Wq h + bq, Wk h + bk, Wv h + bv      (qk_norm: per-head rmsnorm)
 *     rope(q, k); q *= q_scale; cache k, v
 *     a = Wo attention(q, K, V) + bo                  (post_norms: rmsnorm)
 *     x = x + a
 *     h = rmsnorm(x) * ffn_norm
 *     f = ffn(h) or moe(h) (+ shared expert)          (post_norms: rmsnorm)
 *     x = x + f
 *   logits = W_out (rmsnorm(x) * output_norm)         (softcap)
 */
#include "runtime/forward.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "formats/quant.h"
#include "formats/util.h"
#include "runtime/ggml_ops.h"
#include "runtime/kernels.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ----------------------------------------------------------- elementwise */

void fm_rmsnorm(float *out, const float *x, const float *w, uint32_t n, float eps)
{
    double sum = 0.0;
    for (uint32_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (uint32_t i = 0; i < n; i++) out[i] = x[i] * scale;
    if (w)
        for (uint32_t i = 0; i < n; i++) out[i] = out[i] * w[i];
}

void fm_softmax(float *x, uint32_t n) { fm_gg_softmax(x, n); }

static const float GELU_COEF_A = 0.044715f;
static const float SQRT_2_OVER_PI = 0.79788456080286535587989211986876f;

/* ggml_gelu_f32 as compiled in ggml (1 + a*x*x fused; checked bit for bit
 * through ggml's f16 table against llama.cpp's GEGLU output). */
float fm_gelu_tanh(float x) { return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * x * fmaf(GELU_COEF_A * x, x, 1.0f))); }

static float gelu_table[1 << 16];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static void gelu_init(void)
{
    for (uint32_t i = 0; i < (1u << 16); i++)
        gelu_table[i] = fm_f16_to_f32(fm_f32_to_f16(fm_gelu_tanh(fm_f16_to_f32((uint16_t)i))));
}

float fm_gelu_ggml(float x)
{
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    pthread_once(&gelu_once, gelu_init);
    return gelu_table[fm_f32_to_f16(x)];
}

/* out[i] = act(gate[i]) * up[i] */
static void glu(float *gate, const float *up, size_t n, fm_act act)
{
    if (act == FM_ACT_SILU) {
        fm_gg_swiglu(gate, up, n);
    } else if (fm_kernel_get_mode() == FM_KERNEL_Q8) {
        pthread_once(&gelu_once, gelu_init);
        for (size_t i = 0; i < n; i++) {
            float x = gate[i];
            if (x <= -10.0f) gate[i] = 0.0f;
            else if (x >= 10.0f) gate[i] = x * up[i];
            else gate[i] = gelu_table[fm_f32_to_f16(x)] * up[i];
        }
    } else {
        for (size_t i = 0; i < n; i++) gate[i] = fm_gelu_tanh(gate[i]) * up[i];
    }
}

/* --------------------------------------------------------------- matmul */

/* F32 weights: llama.cpp's order. ggml's mul_mat hands a batch (n >= 2)
 * to llamafile's tinyBLAS when rows % 4 == 0 and cols % 16 == 0, and uses
 * ggml_vec_dot_f32 otherwise (always for a single token). */
typedef struct f32mm_job {
    const float *W, *X;
    float *Y;
    size_t rows, cols;
    uint32_t n;
    bool tiny;
} f32mm_job;

static void f32mm_worker(void *ctx, int ith, int nth)
{
    const f32mm_job *j = ctx;
    const size_t r0 = j->rows * (size_t)ith / (size_t)nth, r1 = j->rows * (size_t)(ith + 1) / (size_t)nth;
    for (uint32_t i = 0; i < j->n; i++) {
        const float *x = j->X + (size_t)i * j->cols;
        float *y = j->Y + (size_t)i * j->rows;
        for (size_t r = r0; r < r1; r++) {
            const float *w = j->W + r * j->cols;
            y[r] = j->tiny ? fm_gg_dot_tiny(w, x, j->cols) : fm_gg_dot(w, x, j->cols);
        }
    }
}

/* Y[n][rows] = X[n][cols] . W^T for a 2-D weight tensor. */
static fm_err matmul(fm_state *s, const fm_tensor *w, const float *X, uint32_t n, float *Y, fm_error *e)
{
    const size_t rows = (size_t)w->ne[1], cols = (size_t)w->ne[0];
    if (w->qtype == FM_Q_F32) {
        f32mm_job j = {w->data, X, Y, rows, cols, n, n >= 2 && rows % 4 == 0 && cols % 16 == 0};
        fm_pool_run(rows * n >= 64 ? s->pool : NULL, f32mm_worker, &j);
        return FM_OK;
    }
    return fm_matmul(s->pool, w->qtype, w->data, rows, cols, X, n, Y, e);
}

static void add_bias(float *y, const fm_tensor *b, uint32_t n, size_t dim)
{
    if (!b->data) return;
    const float *bb = b->data;
    for (uint32_t i = 0; i < n; i++)
        for (size_t j = 0; j < dim; j++) y[i * dim + j] += bb[j];
}

#define TRACE(name, layer, data, n, len)                                    \
    do {                                                                    \
        if (s->trace) s->trace(s->trace_ud, name, layer, data, n, len);     \
    } while (0)

/* ----------------------------------------------------------------- rope */

static float rope_yarn_ramp(float low, float high, int i0)
{
    const float y = (float)(i0 / 2 - low) / fmaxf(0.001f, high - low);
    return 1 - fminf(1, fmaxf(0, y));
}

static float rope_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base)
{
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * logf(base));
}

/* cos/sin pairs for one position, built as ggml_rope_cache_init does. */
static void rope_cache(float *cache, float pos, uint32_t n_dims, float freq_base, float freq_scale,
                       const float *freq_factors, float ext_factor, float attn_factor, float beta_fast,
                       float beta_slow, uint32_t n_ctx_orig)
{
    const float theta_scale = powf(freq_base, -2.0f / (float)n_dims);
    float corr[2] = {0, 0};
    if (ext_factor != 0.0f) {
        float start = floorf(rope_corr_dim((int)n_dims, (int)n_ctx_orig, beta_fast, freq_base));
        float end = ceilf(rope_corr_dim((int)n_dims, (int)n_ctx_orig, beta_slow, freq_base));
        corr[0] = fmaxf(0, start);
        corr[1] = fminf((float)n_dims - 1, end);
    }
    float theta = pos;
    for (uint32_t i0 = 0; i0 < n_dims; i0 += 2) {
        const float ff = freq_factors ? freq_factors[i0 / 2] : 1.0f;
        float theta_extrap = theta / ff;
        float theta_interp = freq_scale * theta_extrap;
        float th = theta_interp;
        float mscale = attn_factor;
        if (ext_factor != 0.0f) {
            float ramp_mix = rope_yarn_ramp(corr[0], corr[1], (int)i0) * ext_factor;
            th = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix;
            mscale *= 1.0f + 0.1f * logf(1.0f / freq_scale);
        }
        cache[i0] = cosf(th) * mscale;
        cache[i0 + 1] = sinf(th) * mscale;
        theta *= theta_scale;
    }
}

/* Rotates the first n_dims values of each of n_heads heads (stride head_dim).
 * x0*c - x1*s and x0*s + x1*c are fused as the compiler fuses them in ggml's
 * rotate_pairs (checked bit for bit against llama.cpp's rope output). */
static void rope_apply(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t n_dims, const float *cache,
                       fm_rope_style style)
{
    for (uint32_t h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        if (style == FM_ROPE_NEOX) {
            const uint32_t half = n_dims / 2;
            for (uint32_t i0 = 0; i0 < n_dims; i0 += 2) {
                const float c = cache[i0], sn = cache[i0 + 1];
                const uint32_t ic = i0 / 2;
                const float x0 = v[ic], x1 = v[ic + half];
                v[ic] = fmaf(x0, c, -(x1 * sn));
                v[ic + half] = fmaf(x0, sn, x1 * c);
            }
        } else {
            for (uint32_t i0 = 0; i0 < n_dims; i0 += 2) {
                const float c = cache[i0], sn = cache[i0 + 1];
                const float x0 = v[i0], x1 = v[i0 + 1];
                v[i0] = fmaf(x0, c, -(x1 * sn));
                v[i0 + 1] = fmaf(x0, sn, x1 * c);
            }
        }
    }
}

/* ------------------------------------------------------------ attention */

typedef struct attn_job {
    fm_state *s;
    uint32_t layer, n;
    bool swa;
} attn_job;

/* One (token, head) pair at a time, split across threads. llama.cpp's
 * order (runtime/ggml_ops.h): q.k by ggml_vec_dot_f32 (q is permuted, not
 * contiguous, so llamafile's sgemm does not take it); masked softmax over
 * the whole row; p.V by tinyBLAS for a batch, by ggml_vec_dot_f32 for one
 * token (llamafile only serves n >= 2). */
static void attention_worker(void *ctx, int ith, int nth)
{
    attn_job *j = ctx;
    fm_state *s = j->s;
    const fm_config *c = &s->m->config;
    const uint32_t hdk = c->head_dim_k, hdv = c->head_dim_v;
    const size_t kvk = (size_t)c->n_head_kv * hdk, kvv = (size_t)c->n_head_kv * hdv;
    const uint32_t group = c->n_head / c->n_head_kv;
    const float *kc = s->key_cache + (size_t)j->layer * s->n_ctx * kvk;
    const float *vc = s->value_cache + (size_t)j->layer * s->n_ctx * kvv;
    float *sc = s->scores + (size_t)ith * (s->n_ctx + 16);
    float *acc = s->kqv_acc + (size_t)ith * 64 * hdv;
    const uint64_t total = (uint64_t)j->n * c->n_head;
    const uint64_t lo_w = total * (uint64_t)ith / (uint64_t)nth, hi_w = total * (uint64_t)(ith + 1) / (uint64_t)nth;
    const float cap = c->attn_logit_softcap;
    for (uint64_t w = lo_w; w < hi_w; w++) {
        const uint32_t i = (uint32_t)(w / c->n_head), h = (uint32_t)(w % c->n_head);
        const uint32_t kvh = h / group;
        const uint32_t pos = s->n_past + i;
        uint32_t lo = 0;
        if (j->swa && c->sliding_window > 0 && pos + 1 > c->sliding_window) lo = pos + 1 - c->sliding_window;
        const float *q = s->q + (size_t)i * c->n_head * hdk + (size_t)h * hdk;
        for (uint32_t t = lo; t <= pos; t++) {
            const float *k = kc + (size_t)t * kvk + (size_t)kvh * hdk;
            float d = fm_gg_dot(q, k, hdk);
            if (cap > 0.0f) d = tanhf(d * (1.0f / cap)) * cap;
            sc[t] = d * c->kq_scale;
        }
        fm_gg_softmax_masked(sc, lo, pos + 1);
        float *o = s->att + (size_t)i * c->n_head * hdv + (size_t)h * hdv;
        fm_gg_kqv(o, vc + (size_t)kvh * hdv, kvv, sc, lo, pos + 1, hdv, j->n == 1 ? 64 : 16, acc);
    }
}

/* h (n rows, normed) -> s->xb2 (n rows): the attention sublayer output. */
static fm_err attention(fm_state *s, uint32_t il, const fm_layer_weights *L, const float *h, uint32_t n,
                        fm_error *e)
{
    const fm_config *c = &s->m->config;
    const uint32_t hdk = c->head_dim_k, hdv = c->head_dim_v;
    const size_t qd = (size_t)c->n_head * hdk, kvk = (size_t)c->n_head_kv * hdk,
                 kvv = (size_t)c->n_head_kv * hdv;
    fm_err r;
    if ((r = matmul(s, &L->wq, h, n, s->q, e)) || (r = matmul(s, &L->wk, h, n, s->k, e)) ||
        (r = matmul(s, &L->wv, h, n, s->v, e)))
        return r;
    add_bias(s->q, &L->bq, n, qd);
    add_bias(s->k, &L->bk, n, kvk);
    add_bias(s->v, &L->bv, n, kvv);
    TRACE("Qcur", il, s->q, n, qd);
    TRACE("Kcur", il, s->k, n, kvk);
    TRACE("Vcur", il, s->v, n, kvv);
    const float *ff = s->m->w.rope_freqs.data;
    for (uint32_t i = 0; i < n; i++) {
        float *q = s->q + i * qd, *k = s->k + i * kvk;
        if (c->qk_norm) {
            for (uint32_t hh = 0; hh < c->n_head; hh++) fm_rmsnorm(q + hh * hdk, q + hh * hdk, L->q_norm.data, hdk, c->rms_eps);
            for (uint32_t hh = 0; hh < c->n_head_kv; hh++) fm_rmsnorm(k + hh * hdk, k + hh * hdk, L->k_norm.data, hdk, c->rms_eps);
        }
        if (c->qk_norm && i == n - 1) {
            TRACE("Qcur_normed", il, s->q, n, qd);
            TRACE("Kcur_normed", il, s->k, n, kvk);
        }
        float *rc = s->rope + (size_t)i * c->rope_dim;
        rope_cache(rc, (float)(s->n_past + i), c->rope_dim, L->rope_theta, L->rope_freq_scale, L->swa ? NULL : ff,
                   c->rope_ext_factor, c->rope_attn_factor, c->rope_beta_fast, c->rope_beta_slow, c->rope_orig_ctx);
        rope_apply(q, c->n_head, hdk, c->rope_dim, rc, c->rope_style);
        rope_apply(k, c->n_head_kv, hdk, c->rope_dim, rc, c->rope_style);
        if (c->q_scale != 1.0f)
            for (size_t j = 0; j < qd; j++) q[j] *= c->q_scale;
        memcpy(s->key_cache + ((size_t)il * s->n_ctx + s->n_past + i) * kvk, k, kvk * sizeof(float));
        memcpy(s->value_cache + ((size_t)il * s->n_ctx + s->n_past + i) * kvv, s->v + i * kvv, kvv * sizeof(float));
    }
    TRACE("Qcur_rope", il, s->q, n, qd);
    TRACE("Kcur_rope", il, s->k, n, kvk);
    attn_job j = {s, il, n, L->swa};
    fm_pool_run(s->pool, attention_worker, &j);
    TRACE("kqv_out", il, s->att, n, (size_t)c->n_head * hdv);
    if ((r = matmul(s, &L->wo, s->att, n, s->xb2, e))) return r;
    add_bias(s->xb2, &L->bo, n, c->n_embd);
    return FM_OK;
}

/* ------------------------------------------------------------------ FFN */

/* Y = down(act(gate X) * up X) for n rows; uses s->hb, s->hb2. */
static fm_err glu_ffn(fm_state *s, const fm_tensor *gate, const fm_tensor *up, const fm_tensor *down,
                      const float *X, uint32_t n, float *Y, fm_error *e)
{
    fm_err r;
    const size_t ff = (size_t)gate->ne[1];
    if ((r = matmul(s, gate, X, n, s->hb, e)) || (r = matmul(s, up, X, n, s->hb2, e))) return r;
    glu(s->hb, s->hb2, ff * n, s->m->config.act);
    return matmul(s, down, s->hb, n, Y, e);
}

/* ggml's mul_mat_id (the experts) never goes through llamafile: F32
 * experts always take ggml_vec_dot_f32. */
static fm_err expert_matmul(fm_state *s, const fm_expert_mat *m, const float *X, uint32_t n, float *Y, fm_error *e)
{
    if (m->qtype == FM_Q_F32) {
        f32mm_job j = {m->data, X, Y, (size_t)m->rows, (size_t)m->cols, n, false};
        fm_pool_run(m->rows * n >= 64 ? s->pool : NULL, f32mm_worker, &j);
        return FM_OK;
    }
    return fm_matmul(s->pool, m->qtype, m->data, (size_t)m->rows, (size_t)m->cols, X, n, Y, e);
}

/* h (n rows) -> s->xb2: softmax top-k mixture of experts (+ shared expert). */
static fm_err moe(fm_state *s, uint32_t il, const fm_layer_weights *L, const float *h, uint32_t n, fm_error *e)
{
    const fm_config *c = &s->m->config;
    const uint32_t E = c->n_expert, K = c->n_expert_used, D = c->n_embd;
    fm_err r;
    /* router */
    if ((r = matmul(s, &L->gate_inp, h, n, s->router, e))) return r;
    TRACE("ffn_moe_logits", il, s->router, n, E);
    for (uint32_t i = 0; i < n; i++) {
        float *p = s->router + (size_t)i * E;
        fm_softmax(p, E);
        int32_t *sel = s->sel + (size_t)i * K;
        float *w = s->selw + (size_t)i * K;
        for (uint32_t k = 0; k < K; k++) { /* top-k by probability, ties to the lower id */
            int32_t best = -1;
            for (uint32_t x = 0; x < E; x++) {
                bool taken = false;
                for (uint32_t kk = 0; kk < k; kk++) taken |= sel[kk] == (int32_t)x;
                if (!taken && (best < 0 || p[x] > p[best])) best = (int32_t)x;
            }
            sel[k] = best;
            w[k] = p[best];
        }
        if (c->expert_weights_norm) {
            double sum = 0.0;
            for (uint32_t k = 0; k < K; k++) sum += (double)w[k];
            float fs = (float)sum;
            if (fs < 6.103515625e-5f) fs = 6.103515625e-5f;
            for (uint32_t k = 0; k < K; k++) w[k] = w[k] / fs;
        }
    }
    TRACE("ffn_moe_probs", il, s->router, n, E);
    TRACE("ffn_moe_weights_norm", il, s->selw, n, K);
    /* experts used by this batch, ascending */
    uint32_t used[1024];
    uint32_t n_used = 0;
    for (uint32_t x = 0; x < E; x++) {
        bool any = false;
        for (uint32_t i = 0; i < n * K && !any; i++) any = s->sel[i] == (int32_t)x;
        if (any) used[n_used++] = x;
    }
    fm_experts *xs = s->m->experts;
    fm_experts_prefetch(xs, il, used, n_used);
    for (uint32_t u = 0; u < n_used; u++) {
        const uint32_t x = used[u];
        uint32_t m = 0;
        for (uint32_t i = 0; i < n * K; i++)
            if (s->sel[i] == (int32_t)x) {
                s->rows[m] = i;
                memcpy(s->xe + (size_t)m * D, h + (size_t)(i / K) * D, D * sizeof(float));
                m++;
            }
        fm_expert ex;
        if ((r = fm_experts_acquire(xs, il, &x, 1, &ex, e))) return r;
        const fm_expert_mat *g = &ex.m[FM_EXPERT_GATE], *up = &ex.m[FM_EXPERT_UP], *dn = &ex.m[FM_EXPERT_DOWN];
        if (g->rows != c->n_ff_exp || g->cols != D || up->rows != g->rows || up->cols != D || dn->rows != D ||
            dn->cols != g->rows) {
            fm_experts_release(xs, il, &x, 1);
            return fm_error_set(e, FM_E_FORMAT, "layer %u expert %u: unexpected matrix shapes", il, x);
        }
        if (!(r = expert_matmul(s, g, s->xe, m, s->hb, e)) && !(r = expert_matmul(s, up, s->xe, m, s->hb2, e))) {
            glu(s->hb, s->hb2, (size_t)g->rows * m, c->act);
            r = expert_matmul(s, dn, s->hb, m, s->xe, e); /* xe is free again: reuse for the output */
        }
        fm_experts_release(xs, il, &x, 1);
        if (r) return r;
        for (uint32_t j = 0; j < m; j++) memcpy(s->eout + (size_t)s->rows[j] * D, s->xe + (size_t)j * D, D * sizeof(float));
    }
    /* weighted sum in selection order, as llama.cpp adds the scaled experts */
    for (uint32_t i = 0; i < n; i++) {
        float *y = s->xb2 + (size_t)i * D;
        const float *w = s->selw + (size_t)i * K;
        const float *eo = s->eout + (size_t)i * K * D;
        for (uint32_t d = 0; d < D; d++) y[d] = w[0] * eo[d];
        for (uint32_t k = 1; k < K; k++)
            for (uint32_t d = 0; d < D; d++) y[d] = y[d] + w[k] * eo[(size_t)k * D + d];
    }
    TRACE("ffn_moe_out", il, s->xb2, n, D);
    if (c->shared_expert) {
        /* sigmoid(ffn_gate_inp_shexp . h) * ffn_shexp(h); xe holds the result */
        fm_tensor gi = L->gate_inp_shexp;
        gi.ne[1] = 1; /* a [n_embd] vector as a 1-row matrix */
        if ((r = matmul(s, &gi, h, n, s->shg, e))) return r;
        TRACE("ffn_shexp_gate_inp", il, s->shg, n, 1);
        if ((r = glu_ffn(s, &L->gate_shexp, &L->up_shexp, &L->down_shexp, h, n, s->xe, e))) return r;
        TRACE("ffn_shexp", il, s->xe, n, D);
        for (uint32_t i = 0; i < n; i++) {
            const float g = 1.0f / (1.0f + expf(-s->shg[i]));
            float *y = s->xb2 + (size_t)i * D;
            const float *sh = s->xe + (size_t)i * D;
            for (uint32_t d = 0; d < D; d++) y[d] = y[d] + sh[d] * g;
        }
    }
    return FM_OK;
}

/* ------------------------------------------------------ layer streaming */

/* The next streamed layer after il, cyclically (the next token starts at
 * layer 0 again), or -1 when none streams. */
static int64_t next_streamed(const fm_model *m, uint32_t il)
{
    const uint32_t nl = m->config.n_layer, r = m->n_resident_layers;
    if (r >= nl) return -1;
    return il + 1 < nl ? (int64_t)(il + 1 < r ? r : il + 1) : (int64_t)r;
}

/* The weights of layer il: the resident ones, or (streamed) a copy in *tmp
 * pointing into the layer source's buffer, held until layer_release. Hints
 * the source to read the next s->layer_ahead streamed layers meanwhile. */
static fm_err layer_acquire(fm_state *s, uint32_t il, fm_layer_weights *tmp, const fm_layer_weights **out,
                            fm_error *e)
{
    const fm_model *m = s->m;
    const fm_layer_weights *W = &m->w.layers[il];
    *out = W;
    if (!W->streamed) return FM_OK;
    static const uint32_t zero = 0;
    int64_t nx = (int64_t)il;
    for (uint32_t d = 0; d < s->layer_ahead; d++) {
        nx = next_streamed(m, (uint32_t)nx);
        if (nx < 0 || nx == (int64_t)il) break;
        fm_experts_prefetch(m->layers, (uint32_t)nx, &zero, 1);
    }
    fm_expert ex;
    fm_err r = fm_experts_acquire(m->layers, il, &zero, 1, &ex, e);
    if (r) return r;
    *tmp = *W;
    for (uint32_t k = 0; k < W->n_stream; k++) {
        fm_tensor *t = (fm_tensor *)((char *)tmp + W->stream_off[k]);
        if (ex.m[k].qtype != t->qtype || ex.m[k].cols != t->ne[0] || ex.m[k].row_bytes != t->row_bytes) {
            fm_experts_release(m->layers, il, &zero, 1);
            return fm_error_set(e, FM_E_FORMAT, "layer %u: streamed matrix %u does not match its tensor", il, k);
        }
        t->data = ex.m[k].data;
    }
    *out = tmp;
    return FM_OK;
}

static void layer_release(fm_state *s, uint32_t il)
{
    static const uint32_t zero = 0;
    if (s->m->w.layers[il].streamed) fm_experts_release(s->m->layers, il, &zero, 1);
}

/* -------------------------------------------------------------- forward */

static fm_err forward_chunk(fm_state *s, const int32_t *tokens, uint32_t n, float *logits_all, bool want_last,
                            fm_error *e)
{
    const fm_model *m = s->m;
    const fm_config *c = &m->config;
    const fm_weights *w = &m->w;
    const uint32_t D = c->n_embd;
    fm_err r;
    fm_dequant_fn deq = fm_qtype_dequant_fn(w->token_embd.qtype);
    for (uint32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= c->n_vocab || (uint64_t)tokens[i] >= w->token_embd.ne[1])
            return fm_error_set(e, FM_E_RANGE, "token id %d out of range [0, %u)", tokens[i], c->n_vocab);
        float *x = s->x + (size_t)i * D;
        deq((const uint8_t *)w->token_embd.data + (size_t)tokens[i] * w->token_embd.row_bytes, x, D);
        if (c->embd_scale != 1.0f)
            for (uint32_t d = 0; d < D; d++) x[d] *= c->embd_scale;
    }
    for (uint32_t il = 0; il < c->n_layer; il++) {
        fm_layer_weights lw;
        const fm_layer_weights *L;
        if ((r = layer_acquire(s, il, &lw, &L, e))) return fm_error_prefix(e, "layer %u weights", il);
        for (uint32_t i = 0; i < n; i++) fm_rmsnorm(s->xb + (size_t)i * D, s->x + (size_t)i * D, L->attn_norm.data, D, c->rms_eps);
        TRACE("attn_norm", il, s->xb, n, D);
        if ((r = attention(s, il, L, s->xb, n, e))) {
            layer_release(s, il);
            return fm_error_prefix(e, "layer %u attention", il);
        }
        for (uint32_t i = 0; i < n; i++) {
            float *a = s->xb2 + (size_t)i * D, *x = s->x + (size_t)i * D;
            if (c->post_norms) fm_rmsnorm(a, a, L->post_attn_norm.data, D, c->rms_eps);
            for (uint32_t d = 0; d < D; d++) x[d] = a[d] + x[d];
            fm_rmsnorm(s->xb + (size_t)i * D, x, L->ffn_norm.data, D, c->rms_eps);
        }
        TRACE("attn_out", il, s->xb2, n, D);
        TRACE("ffn_inp", il, s->xb, n, D);
        if (L->moe) r = moe(s, il, L, s->xb, n, e);
        else r = glu_ffn(s, &L->ffn_gate, &L->ffn_up, &L->ffn_down, s->xb, n, s->xb2, e);
        layer_release(s, il);
        if (r) return fm_error_prefix(e, "layer %u ffn", il);
        for (uint32_t i = 0; i < n; i++) {
            float *f = s->xb2 + (size_t)i * D, *x = s->x + (size_t)i * D;
            if (c->post_norms) fm_rmsnorm(f, f, L->post_ffn_norm.data, D, c->rms_eps);
            for (uint32_t d = 0; d < D; d++) x[d] = f[d] + x[d];
        }
        TRACE("ffn_out", il, s->xb2, n, D);
        TRACE("l_out", il, s->x, n, D);
    }
    if (!logits_all && !want_last) { /* an inner chunk of a long prompt: no logits needed */
        s->n_past += n;
        s->n_eval += n;
        return FM_OK;
    }
    /* logits: every row when asked, else only the last */
    const uint32_t first = logits_all ? 0 : n - 1;
    const uint32_t nr = n - first;
    for (uint32_t i = first; i < n; i++)
        fm_rmsnorm(s->xb + (size_t)(i - first) * D, s->x + (size_t)i * D, w->output_norm.data, D, c->rms_eps);
    TRACE("result_norm", c->n_layer, s->xb, nr, D);
    const fm_tensor *out = w->output.data ? &w->output : &w->token_embd;
    float *dst = logits_all ? logits_all : s->logits;
    if ((r = matmul(s, out, s->xb, nr, dst, e))) return fm_error_prefix(e, "output");
    if (c->final_logit_softcap > 0.0f) {
        const float cap = c->final_logit_softcap;
        for (size_t j = 0; j < (size_t)nr * c->n_vocab; j++) dst[j] = tanhf(dst[j] * (1.0f / cap)) * cap;
    }
    if (logits_all) memcpy(s->logits, logits_all + (size_t)(n - 1) * c->n_vocab, c->n_vocab * sizeof(float));
    s->n_past += n;
    s->n_eval += n;
    return FM_OK;
}

fm_err fm_forward(fm_state *s, const int32_t *tokens, uint32_t n, float *logits_all, fm_error *e)
{
    if (n == 0) return FM_OK;
    if ((uint64_t)s->n_past + n > s->n_ctx)
        return fm_error_set(e, FM_E_RANGE, "context full: %u + %u tokens > n_ctx %u", s->n_past, n, s->n_ctx);
    const uint32_t V = s->m->config.n_vocab;
    for (uint32_t i = 0; i < n; i += s->n_batch) {
        uint32_t k = n - i < s->n_batch ? n - i : s->n_batch;
        fm_err r = forward_chunk(s, tokens + i, k, logits_all ? logits_all + (size_t)i * V : NULL, i + k == n, e);
        if (r) return r;
    }
    return FM_OK;
}

/* ---------------------------------------------------------------- state */

static void *alloc_f(size_t n, bool *ok)
{
    if (n == 0) n = 1;
    void *p = NULL;
    size_t bytes;
    if (!fm_mul_size(n, sizeof(float), &bytes) || !fm_mul_size(bytes, 1, &bytes) ||
        !(p = aligned_alloc(64, (bytes + 63) & ~(size_t)63)))
        *ok = false;
    return p;
}

fm_err fm_state_new(fm_state **out, const fm_model *m, fm_pool *pool, uint32_t n_ctx, uint32_t n_batch, fm_error *e)
{
    const fm_config *c = &m->config;
    *out = NULL;
    if (n_ctx == 0) return fm_error_set(e, FM_E_ARG, "n_ctx must be > 0");
    if (n_batch == 0) n_batch = 64;
    fm_state *s = calloc(1, sizeof *s);
    if (!s) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    s->m = m;
    s->pool = pool;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    s->layer_ahead = 2;
    const size_t B = n_batch, D = c->n_embd;
    const size_t qd = (size_t)c->n_head * c->head_dim_k, kvk = (size_t)c->n_head_kv * c->head_dim_k,
                 kvv = (size_t)c->n_head_kv * c->head_dim_v, od = (size_t)c->n_head * c->head_dim_v;
    size_t ff = c->n_ff;
    if (c->n_ff_exp > ff) ff = c->n_ff_exp;
    if (c->n_ff_shexp > ff) ff = c->n_ff_shexp;
    const size_t K = c->n_expert_used ? c->n_expert_used : 1;
    const int nth = fm_pool_size(pool);
    bool ok = true;
    uint64_t cache_k, cache_v;
    if (!fm_mul_u64((uint64_t)c->n_layer * n_ctx, kvk, &cache_k) || !fm_mul_u64((uint64_t)c->n_layer * n_ctx, kvv, &cache_v) ||
        cache_k > SIZE_MAX / 8 || cache_v > SIZE_MAX / 8) {
        free(s);
        return fm_error_set(e, FM_E_RANGE, "KV cache too large for n_ctx %u", n_ctx);
    }
    s->x = alloc_f(B * D, &ok);
    s->xb = alloc_f(B * D, &ok);
    s->xb2 = alloc_f(B * D, &ok);
    s->q = alloc_f(B * qd, &ok);
    s->k = alloc_f(B * kvk, &ok);
    s->v = alloc_f(B * kvv, &ok);
    s->att = alloc_f(B * od, &ok);
    s->hb = alloc_f(B * K * ff, &ok);
    s->hb2 = alloc_f(B * K * ff, &ok);
    s->logits = alloc_f(c->n_vocab, &ok);
    s->key_cache = alloc_f((size_t)cache_k, &ok);
    s->value_cache = alloc_f((size_t)cache_v, &ok);
    s->scores = alloc_f((size_t)nth * (n_ctx + 16), &ok);
    s->kqv_acc = alloc_f((size_t)nth * 64 * c->head_dim_v, &ok);
    s->rope = alloc_f(B * c->rope_dim, &ok);
    if (c->n_expert) {
        s->router = alloc_f(B * c->n_expert, &ok);
        s->sel = calloc(B * K, sizeof *s->sel);
        s->selw = alloc_f(B * K, &ok);
        s->xe = alloc_f(B * K * D, &ok);
        s->eout = alloc_f(B * K * D, &ok);
        s->rows = calloc(B * K, sizeof *s->rows);
        s->shg = alloc_f(B, &ok);
        ok = ok && s->sel && s->rows;
        if (c->n_expert > 1024) ok = false;
    }
    if (!ok) {
        fm_state_free(s);
        return fm_error_set(e, FM_E_NOMEM, "cannot allocate the state for n_ctx %u, n_batch %u", n_ctx, n_batch);
    }
    *out = s;
    return FM_OK;
}

void fm_state_reset(fm_state *s) { s->n_past = 0; }

void fm_state_free(fm_state *s)
{
    if (!s) return;
    free(s->x);
    free(s->xb);
    free(s->xb2);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->hb);
    free(s->hb2);
    free(s->logits);
    free(s->key_cache);
    free(s->value_cache);
    free(s->scores);
    free(s->kqv_acc);
    free(s->rope);
    free(s->router);
    free(s->sel);
    free(s->selw);
    free(s->xe);
    free(s->eout);
    free(s->rows);
    free(s->shg);
    free(s);
}
