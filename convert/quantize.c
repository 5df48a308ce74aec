#include "convert/quantize.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "formats/affine.h"
#include "formats/quant.h"
#include "formats/util.h"

#define FM_QMAX_GROUP 128

typedef struct group_fit {
    uint16_t d, m; /* f16 */
    uint8_t q[FM_QMAX_GROUP];
    double err; /* weighted squared error */
} group_fit;

/* Assigns codes for the (f16-rounded) d, m and measures the weighted error
 * with exactly the dequantizer's float arithmetic. */
static double assign(const float *x, const float *w, unsigned g, unsigned nmax, uint16_t hd, uint16_t hm,
                     uint8_t *q)
{
    const float d = fm_f16_to_f32(hd), m = fm_f16_to_f32(hm);
    double err = 0;
    for (unsigned i = 0; i < g; i++) {
        int l = 0;
        if (d != 0.0f) {
            float t = roundf((x[i] - m) / d);
            l = t < 0 ? 0 : t > (float)nmax ? (int)nmax : (int)t;
        }
        /* the rounded code may not be the nearest level after f16 rounding; check neighbours */
        float best = fabsf(d * (float)l + m - x[i]);
        for (int c = l - 1; c <= l + 1; c += 2) {
            if (c < 0 || c > (int)nmax) continue;
            float dq = d * (float)c;
            float r = fabsf(dq + m - x[i]);
            if (r < best) { best = r; l = c; }
        }
        q[i] = (uint8_t)l;
        double wi = w ? w[i] : 1.0;
        err += wi * (double)best * (double)best;
    }
    return err;
}

static bool finite_f16(float v, uint16_t *h)
{
    *h = fm_f32_to_f16(v);
    float back = fm_f16_to_f32(*h);
    return isfinite(back);
}

static void try_fit(const float *x, const float *w, unsigned g, unsigned nmax, float d, float m, group_fit *best)
{
    uint16_t hd, hm;
    if (!isfinite(d) || !isfinite(m) || !finite_f16(d, &hd) || !finite_f16(m, &hm)) return;
    group_fit cand;
    cand.d = hd;
    cand.m = hm;
    cand.err = assign(x, w, g, nmax, hd, hm, cand.q);
    if (cand.err < best->err) *best = cand;
}

/* Weighted least squares for (d, m) given codes: min sum w (d*q + m - x)^2. */
static bool lsq(const float *x, const float *w, const uint8_t *q, unsigned g, float *d, float *m)
{
    double sw = 0, sl = 0, sll = 0, sx = 0, slx = 0;
    for (unsigned i = 0; i < g; i++) {
        double wi = w ? w[i] : 1.0, l = q[i];
        sw += wi;
        sl += wi * l;
        sll += wi * l * l;
        sx += wi * x[i];
        slx += wi * l * x[i];
    }
    double det = sw * sll - sl * sl;
    if (!(det > 0)) return false;
    *d = (float)((sw * slx - sl * sx) / det);
    *m = (float)((sll * sx - sl * slx) / det);
    return true;
}

static void fit_group(const float *x, const float *w, unsigned g, unsigned nmax, fm_quant_method method,
                      group_fit *best)
{
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (unsigned i = 0; i < g; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
    best->err = INFINITY;
    /* plain min/max: always a candidate, so the search is never worse */
    try_fit(x, w, g, nmax, (mx - mn) / (float)nmax, mn, best);
    if (!(best->err < INFINITY)) { /* range overflows f16: clamp */
        best->d = fm_f32_to_f16(65504.0f / (float)nmax);
        best->m = fm_f32_to_f16(mn < -65504.0f ? -65504.0f : mn);
        best->err = assign(x, w, g, nmax, best->d, best->m, best->q);
    }
    if (method == FM_QUANT_MINMAX || mx == mn) return;

    /* search: vary the scale around the min/max one (as llama.cpp's make_qkx2
     * does), fit (d, m) by least squares to each assignment, keep the best */
    const int nstep = 24;
    const float range = mx - mn;
    uint8_t q[FM_QMAX_GROUP];
    for (int is = 0; is <= nstep; is++) {
        float iscale = ((float)nmax - 1.0f + 2.0f * (float)is / (float)nstep) / range;
        for (unsigned i = 0; i < g; i++) {
            float t = roundf(iscale * (x[i] - mn));
            q[i] = (uint8_t)(t < 0 ? 0 : t > (float)nmax ? nmax : (unsigned)t);
        }
        float d, m;
        if (lsq(x, w, q, g, &d, &m)) try_fit(x, w, g, nmax, d, m, best);
    }
    /* refine: alternate re-assignment and least squares from the best */
    for (int it = 0; it < 4; it++) {
        float d, m;
        group_fit prev = *best;
        if (!lsq(x, w, best->q, g, &d, &m)) break;
        try_fit(x, w, g, nmax, d, m, best);
        if (best->err >= prev.err) break;
    }
}

static void pack(const group_fit *f, unsigned bits, unsigned g, uint8_t *out)
{
    fm_wr_u16le(out, f->d);
    fm_wr_u16le(out + 2, f->m);
    uint8_t *q = out + 4;
    memset(q, 0, (size_t)g * bits / 8);
    for (unsigned i = 0; i < g; i++) {
        unsigned bit = i * bits, byte = bit >> 3, sh = bit & 7;
        unsigned v = (unsigned)f->q[i] << sh;
        q[byte] |= (uint8_t)v;
        if (sh + bits > 8) q[byte + 1] |= (uint8_t)(v >> 8);
    }
}

fm_err fm_quant_affine(uint32_t qtype, const float *x, size_t rows, size_t cols, const float *imp,
                       fm_quant_method method, void *dst, fm_quant_stats *st, fm_error *e)
{
    unsigned bits, g;
    if (!fm_affine_params(qtype, &bits, &g))
        return fm_error_set(e, FM_E_ARG, "quantize: qtype %u is not an affine scheme", qtype);
    if (cols % g != 0)
        return fm_error_set(e, FM_E_ARG, "quantize: row length %zu is not a multiple of the group size %u",
                            cols, g);
    const unsigned nmax = (1u << bits) - 1;
    const size_t bb = fm_affine_block_bytes(bits, g);
    uint8_t *out = dst;
    fm_quant_stats s = {0, 0, 0, 0};
    float deq[FM_QMAX_GROUP];
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < cols; c += g, out += bb) {
            const float *xg = x + r * cols + c;
            for (unsigned i = 0; i < g; i++)
                if (!isfinite(xg[i]))
                    return fm_error_set(e, FM_E_RANGE, "quantize: non-finite value at row %zu col %zu", r,
                                        c + i);
            group_fit f;
            fit_group(xg, imp ? imp + c : NULL, g, nmax, method, &f);
            pack(&f, bits, g, out);
            fm_affine_dequant_ref(bits, g, out, deq, g);
            for (unsigned i = 0; i < g; i++) {
                double err = (double)deq[i] - (double)xg[i];
                s.sse += err * err;
                s.sum_x2 += (double)xg[i] * (double)xg[i];
                if (fabs(err) > s.max_abs) s.max_abs = fabs(err);
            }
            s.n += g;
        }
    }
    if (st) *st = s;
    return FM_OK;
}

void fm_quant_stats_add(fm_quant_stats *acc, const fm_quant_stats *s)
{
    acc->sse += s->sse;
    acc->sum_x2 += s->sum_x2;
    if (s->max_abs > acc->max_abs) acc->max_abs = s->max_abs;
    acc->n += s->n;
}

double fm_quant_stats_rmse(const fm_quant_stats *s) { return s->n ? sqrt(s->sse / (double)s->n) : 0.0; }

double fm_quant_stats_rel(const fm_quant_stats *s)
{
    return s->sum_x2 > 0 ? sqrt(s->sse / s->sum_x2) : 0.0;
}
