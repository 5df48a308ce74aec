#include "convert/quantize.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "convert/quantize_impl.h"

#include "formats/affine.h"
#include "formats/quant.h"
#include "formats/util.h"

#define FM_QMAX_GROUP 128

typedef struct group_fit {
    uint16_t d, m; /* f16 */
    uint8_t q[FM_QMAX_GROUP];
    double err; /* weighted squared error */
} group_fit;

/* The two hot loops have AVX2 twins (quantize_avx2.c) that give bit-identical
 * results: the same float operations per value, and double sums kept in 8
 * lanes (value i in lane i % 8) added up in lane order. */
double fm_qz_assign_ref(const float *x, const float *w, unsigned g, unsigned nmax, float d, float m, uint8_t *q)
{
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    double acc[FM_QZ_LANES] = {0};
    for (unsigned i = 0; i < g; i++) {
        /* a first guess by scaling; the exact nearest level (after f16
         * rounding, float products and sums) is then found among neighbours */
        float t = (x[i] - m) * id;
        t = t < 0.0f ? 0.0f : t;
        t = t > (float)nmax ? (float)nmax : t;
        int l = (int)(t + 0.5f);
        float best = fabsf(d * (float)l + m - x[i]);
        if (l > 0) {
            float r = fabsf(d * (float)(l - 1) + m - x[i]);
            if (r < best) { best = r; l--; }
        }
        if (l < (int)nmax) {
            float r = fabsf(d * (float)(l + 1) + m - x[i]);
            if (r < best) { best = r; l++; }
        }
        q[i] = (uint8_t)l;
        double wi = w ? (double)w[i] : 1.0;
        acc[i % FM_QZ_LANES] += wi * (double)best * (double)best;
    }
    double err = 0;
    for (int k = 0; k < FM_QZ_LANES; k++) err += acc[k];
    return err;
}

void fm_qz_sweep_ref(const float *x, const float *w, unsigned g, unsigned nmax, float iscale, float mn, double out[3])
{
    double sl[FM_QZ_LANES] = {0}, sll[FM_QZ_LANES] = {0}, slx[FM_QZ_LANES] = {0};
    for (unsigned i = 0; i < g; i++) {
        float t = iscale * (x[i] - mn); /* >= 0 */
        t = t > (float)nmax ? (float)nmax : t;
        double l = (double)(int)(t + 0.5f);
        double wl = (w ? (double)w[i] : 1.0) * l;
        sl[i % FM_QZ_LANES] += wl;
        sll[i % FM_QZ_LANES] += wl * l;
        slx[i % FM_QZ_LANES] += wl * (double)x[i];
    }
    out[0] = out[1] = out[2] = 0;
    for (int k = 0; k < FM_QZ_LANES; k++) {
        out[0] += sl[k];
        out[1] += sll[k];
        out[2] += slx[k];
    }
}

typedef double (*assign_fn)(const float *, const float *, unsigned, unsigned, float, float, uint8_t *);
typedef void (*sweep_fn)(const float *, const float *, unsigned, unsigned, float, float, double *);

static atomic_int simd_state; /* 0 unknown, 1 scalar, 2 AVX2 */

static bool use_avx2(void)
{
    int st = atomic_load(&simd_state);
    if (st == 0) {
        st = fm_cpu_has_avx2() && !getenv("FM_NO_SIMD") ? 2 : 1;
        atomic_store(&simd_state, st);
    }
    return st == 2;
}

/* Assigns codes for the (f16-rounded) d, m and measures the weighted error
 * with exactly the dequantizer's float arithmetic. */
static double assign(const float *x, const float *w, unsigned g, unsigned nmax, uint16_t hd, uint16_t hm,
                     uint8_t *q)
{
    const float d = fm_f16_to_f32(hd), m = fm_f16_to_f32(hm);
    return (use_avx2() ? fm_qz_assign_avx2 : fm_qz_assign_ref)(x, w, g, nmax, d, m, q);
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
    if (hd == best->d && hm == best->m && best->err < INFINITY) return; /* already measured */
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

/* The sweep's N_TOP best fits (by closed-form error) are measured exactly,
 * each refined N_REF times (re-assign codes, least squares). 16 and 1 give a
 * lower error than measuring all 25 fits exactly without refinement (the
 * first version) on every scheme of test_quantize and of a Gaussian
 * benchmark, at less cost. */
#define N_TOP 16
#define N_REF 1

static void fit_group(const float *x, const float *w, unsigned g, unsigned nmax, fm_quant_method method,
                      group_fit *best)
{
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (unsigned i = 0; i < g; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
    best->err = INFINITY;
    best->d = best->m = 0xffff;
    /* plain min/max: always a candidate, so the search is never worse */
    try_fit(x, w, g, nmax, (mx - mn) / (float)nmax, mn, best);
    if (!(best->err < INFINITY)) { /* range overflows f16: clamp */
        best->d = fm_f32_to_f16(65504.0f / (float)nmax);
        best->m = fm_f32_to_f16(mn < -65504.0f ? -65504.0f : mn);
        best->err = assign(x, w, g, nmax, best->d, best->m, best->q);
    }
    if (method == FM_QUANT_MINMAX || mx == mn) return;

    /* search: vary the scale around the min/max one (as llama.cpp's make_qkx2
     * does), fit (d, m) by least squares to each code assignment and rank the
     * fits by their closed-form weighted error with d, m rounded to f16 (one
     * pass per scale); the best few are then measured exactly. */
    const int nstep = 24;
    const float range = mx - mn;
    double sw = 0, sx = 0, sxx = 0;
    for (unsigned i = 0; i < g; i++) {
        double wi = w ? w[i] : 1.0;
        sw += wi;
        sx += wi * x[i];
        sxx += wi * (double)x[i] * x[i];
    }
    float top_d[N_TOP], top_m[N_TOP];
    double top_e[N_TOP];
    int ntop = 0;
    for (int is = 0; is <= nstep; is++) {
        const float iscale = ((float)nmax - 1.0f + 2.0f * (float)is / (float)nstep) / range;
        double sums[3];
        (use_avx2() ? fm_qz_sweep_avx2 : fm_qz_sweep_ref)(x, w, g, nmax, iscale, mn, sums);
        const double sl = sums[0], sll = sums[1], slx = sums[2];
        double det = sw * sll - sl * sl;
        if (!(det > 0)) continue;
        float d = (float)((sw * slx - sl * sx) / det), m = (float)((sll * sx - sl * slx) / det);
        uint16_t hd, hm;
        if (!isfinite(d) || !isfinite(m) || !finite_f16(d, &hd) || !finite_f16(m, &hm)) continue;
        double D = fm_f16_to_f32(hd), M = fm_f16_to_f32(hm);
        double err = sxx - 2 * D * slx - 2 * M * sx + D * D * sll + 2 * D * M * sl + M * M * sw;
        /* keep the N_TOP smallest, sorted */
        int pos;
        if (ntop < N_TOP) pos = ntop++;
        else if (err < top_e[N_TOP - 1]) pos = N_TOP - 1;
        else continue;
        top_e[pos] = err;
        top_d[pos] = d;
        top_m[pos] = m;
        for (int k = pos; k > 0 && top_e[k] < top_e[k - 1]; k--) {
            double te = top_e[k]; top_e[k] = top_e[k - 1]; top_e[k - 1] = te;
            float td = top_d[k]; top_d[k] = top_d[k - 1]; top_d[k - 1] = td;
            float tm = top_m[k]; top_m[k] = top_m[k - 1]; top_m[k - 1] = tm;
        }
    }
    for (int k = 0; k < ntop; k++) {
        group_fit c;
        c.err = INFINITY;
        c.d = c.m = 0xffff;
        try_fit(x, w, g, nmax, top_d[k], top_m[k], &c);
        for (int it = 0; it < N_REF && c.err < INFINITY; it++) {
            float d, m;
            double prev = c.err;
            if (!lsq(x, w, c.q, g, &d, &m)) break;
            try_fit(x, w, g, nmax, d, m, &c);
            if (c.err >= prev) break;
        }
        if (c.err < best->err) *best = c;
    }
    /* refine: alternate re-assignment and least squares from the best */
    for (int it = 0; it < 4; it++) {
        float d, m;
        double prev = best->err;
        if (!lsq(x, w, best->q, g, &d, &m)) break;
        try_fit(x, w, g, nmax, d, m, best);
        if (best->err >= prev) break;
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

static void stats_acc(fm_quant_stats *s, const float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double err = (double)y[i] - (double)x[i];
        s->sse += err * err;
        s->sum_x2 += (double)x[i] * (double)x[i];
        if (fabs(err) > s->max_abs) s->max_abs = fabs(err);
    }
    s->n += n;
}

fm_err fm_quant_q8_0(const float *x, size_t n, void *dst, fm_quant_stats *st, fm_error *e)
{
    if (n % 32) return fm_error_set(e, FM_E_ARG, "quantize Q8_0: %zu values is not a multiple of 32", n);
    uint8_t *out = dst;
    fm_quant_stats s = {0, 0, 0, 0};
    float deq[32];
    for (size_t b = 0; b < n; b += 32, out += 34) {
        const float *xb = x + b;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (!isfinite(xb[j])) return fm_error_set(e, FM_E_RANGE, "quantize Q8_0: non-finite value at %zu", b + (size_t)j);
            float a = fabsf(xb[j]);
            if (a > amax) amax = a;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t hd = fm_f32_to_f16(d);
        fm_wr_u16le(out, hd);
        const float dd = fm_f16_to_f32(hd);
        for (int j = 0; j < 32; j++) {
            const float v = roundf(xb[j] * id);
            const int8_t q = (int8_t)v;
            out[2 + j] = (uint8_t)q;
            deq[j] = (float)q * dd;
        }
        if (st) stats_acc(&s, xb, deq, 32);
    }
    if (st) *st = s;
    return FM_OK;
}

fm_err fm_quant_f16(const float *x, size_t n, void *dst, fm_quant_stats *st, fm_error *e)
{
    uint8_t *out = dst;
    fm_quant_stats s = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        uint16_t h = fm_f32_to_f16(x[i]);
        float y = fm_f16_to_f32(h);
        if (isfinite(x[i]) && !isfinite(y))
            return fm_error_set(e, FM_E_RANGE, "convert to F16: value %g at %zu exceeds the binary16 range",
                                (double)x[i], i);
        fm_wr_u16le(out + 2 * i, h);
        if (st && isfinite(x[i])) stats_acc(&s, &x[i], &y, 1);
    }
    if (st) *st = s;
    return FM_OK;
}

fm_err fm_quant_bf16(const float *x, size_t n, void *dst, fm_quant_stats *st, fm_error *e)
{
    (void)e;
    uint8_t *out = dst;
    fm_quant_stats s = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        uint16_t h = fm_f32_to_bf16(x[i]);
        float y = fm_bf16_to_f32(h);
        fm_wr_u16le(out + 2 * i, h);
        if (st && isfinite(x[i]) && isfinite(y)) stats_acc(&s, &x[i], &y, 1);
    }
    if (st) *st = s;
    return FM_OK;
}
