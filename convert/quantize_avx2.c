/* AVX2 twins of the quantizer's hot loops (quantize_impl.h): the same float
 * operations per value as the _ref versions, in the same order (no FMA),
 * and the double sums in the same 8 lanes, so results are bit-identical. */
#include "convert/quantize_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

static inline void lanes_to(const __m256d lo, const __m256d hi, double *out8)
{
    _mm256_storeu_pd(out8, lo);
    _mm256_storeu_pd(out8 + 4, hi);
}

double fm_qz_assign_avx2(const float *x, const float *w, unsigned g, unsigned nmax, float d, float m, uint8_t *q)
{
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 d8 = _mm256_set1_ps(d), m8 = _mm256_set1_ps(m), id8 = _mm256_set1_ps(id);
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 top = _mm256_set1_ps((float)nmax);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256d acc_lo = _mm256_setzero_pd(), acc_hi = _mm256_setzero_pd();
    for (unsigned i = 0; i < g; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(xv, m8), id8);
        t = _mm256_min_ps(_mm256_max_ps(t, zero), top);
        __m256 lf = _mm256_cvtepi32_ps(_mm256_cvttps_epi32(_mm256_add_ps(t, half)));
        __m256 best = _mm256_and_ps(_mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(d8, lf), m8), xv), absmask);
        /* l - 1 where l > 0 and it is nearer */
        __m256 lm = _mm256_sub_ps(lf, one);
        __m256 rm = _mm256_and_ps(_mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(d8, lm), m8), xv), absmask);
        __m256 cm = _mm256_and_ps(_mm256_cmp_ps(lf, zero, _CMP_GT_OQ), _mm256_cmp_ps(rm, best, _CMP_LT_OQ));
        best = _mm256_blendv_ps(best, rm, cm);
        lf = _mm256_blendv_ps(lf, lm, cm);
        /* l + 1 (of the updated l) where l < nmax and it is nearer */
        __m256 lp = _mm256_add_ps(lf, one);
        __m256 rp = _mm256_and_ps(_mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(d8, lp), m8), xv), absmask);
        __m256 cp = _mm256_and_ps(_mm256_cmp_ps(lf, top, _CMP_LT_OQ), _mm256_cmp_ps(rp, best, _CMP_LT_OQ));
        best = _mm256_blendv_ps(best, rp, cp);
        lf = _mm256_blendv_ps(lf, lp, cp);
        int32_t li[8];
        _mm256_storeu_si256((__m256i *)li, _mm256_cvttps_epi32(lf));
        for (int k = 0; k < 8; k++) q[i + k] = (uint8_t)li[k];
        __m256d blo = _mm256_cvtps_pd(_mm256_castps256_ps128(best));
        __m256d bhi = _mm256_cvtps_pd(_mm256_extractf128_ps(best, 1));
        __m256d wlo = _mm256_set1_pd(1.0), whi = wlo;
        if (w) {
            const __m256 wv = _mm256_loadu_ps(w + i);
            wlo = _mm256_cvtps_pd(_mm256_castps256_ps128(wv));
            whi = _mm256_cvtps_pd(_mm256_extractf128_ps(wv, 1));
        }
        acc_lo = _mm256_add_pd(acc_lo, _mm256_mul_pd(_mm256_mul_pd(wlo, blo), blo));
        acc_hi = _mm256_add_pd(acc_hi, _mm256_mul_pd(_mm256_mul_pd(whi, bhi), bhi));
    }
    double a[8];
    lanes_to(acc_lo, acc_hi, a);
    double err = 0;
    for (int k = 0; k < FM_QZ_LANES; k++) err += a[k];
    return err;
}

void fm_qz_sweep_avx2(const float *x, const float *w, unsigned g, unsigned nmax, float iscale, float mn, double out[3])
{
    const __m256 s8 = _mm256_set1_ps(iscale), mn8 = _mm256_set1_ps(mn), half = _mm256_set1_ps(0.5f);
    const __m256 top = _mm256_set1_ps((float)nmax);
    __m256d sl_lo = _mm256_setzero_pd(), sl_hi = sl_lo, sll_lo = sl_lo, sll_hi = sl_lo, slx_lo = sl_lo,
            slx_hi = sl_lo;
    for (unsigned i = 0; i < g; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        __m256 t = _mm256_min_ps(_mm256_mul_ps(s8, _mm256_sub_ps(xv, mn8)), top);
        __m256i li = _mm256_cvttps_epi32(_mm256_add_ps(t, half));
        __m256d llo = _mm256_cvtepi32_pd(_mm256_castsi256_si128(li));
        __m256d lhi = _mm256_cvtepi32_pd(_mm256_extracti128_si256(li, 1));
        __m256d wllo = llo, wlhi = lhi;
        if (w) {
            const __m256 wv = _mm256_loadu_ps(w + i);
            wllo = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(wv)), llo);
            wlhi = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(wv, 1)), lhi);
        }
        __m256d xlo = _mm256_cvtps_pd(_mm256_castps256_ps128(xv)), xhi = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
        sl_lo = _mm256_add_pd(sl_lo, wllo);
        sl_hi = _mm256_add_pd(sl_hi, wlhi);
        sll_lo = _mm256_add_pd(sll_lo, _mm256_mul_pd(wllo, llo));
        sll_hi = _mm256_add_pd(sll_hi, _mm256_mul_pd(wlhi, lhi));
        slx_lo = _mm256_add_pd(slx_lo, _mm256_mul_pd(wllo, xlo));
        slx_hi = _mm256_add_pd(slx_hi, _mm256_mul_pd(wlhi, xhi));
    }
    double a[8], b[8], c[8];
    lanes_to(sl_lo, sl_hi, a);
    lanes_to(sll_lo, sll_hi, b);
    lanes_to(slx_lo, slx_hi, c);
    out[0] = out[1] = out[2] = 0;
    for (int k = 0; k < FM_QZ_LANES; k++) {
        out[0] += a[k];
        out[1] += b[k];
        out[2] += c[k];
    }
}

#else /* not x86: never selected (fm_cpu_has_avx2 is false) */

double fm_qz_assign_avx2(const float *x, const float *w, unsigned g, unsigned nmax, float d, float m, uint8_t *q)
{
    return fm_qz_assign_ref(x, w, g, nmax, d, m, q);
}

void fm_qz_sweep_avx2(const float *x, const float *w, unsigned g, unsigned nmax, float iscale, float mn, double out[3])
{
    fm_qz_sweep_ref(x, w, g, nmax, iscale, mn, out);
}

#endif
