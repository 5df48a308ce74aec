/* AVX2+FMA twins of runtime/ggml_ops.c: a 16-lane accumulator is two
 * __m256 (lanes 0-7, 8-15); results are bit-identical to the plain ones. */
#include <immintrin.h>
#include <string.h>

#include "runtime/ggml_ops.h"
#include "runtime/ggml_ops_impl.h"

float fm_gg_expf_avx2(float x) { return gg_expf(x); }

/* lanes (lo, hi) -> sum in _mm512_reduce_add_ps order */
static inline float red16v(__m256 lo, __m256 hi)
{
    const __m256 t3 = _mm256_add_ps(lo, hi);                                          /* i + (i+8) */
    const __m128 t6 = _mm_add_ps(_mm256_castps256_ps128(t3), _mm256_extractf128_ps(t3, 1)); /* i + (i+4) */
    const __m128 t8 = _mm_add_ps(t6, _mm_movehl_ps(t6, t6));                          /* 0+2, 1+3 */
    const __m128 t10 = _mm_add_ss(t8, _mm_shuffle_ps(t8, t8, 1));
    return _mm_cvtss_f32(t10);
}

float fm_gg_dot_avx2(const float *x, const float *y, size_t n)
{
    __m256 a[8];
    for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_ps();
    const size_t np = n & ~(size_t)63;
    for (size_t i = 0; i < np; i += 64)
        for (int j = 0; j < 8; j++)
            a[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * j), _mm256_loadu_ps(y + i + 8 * j), a[j]);
    /* accumulator j (16 lanes) = a[2j], a[2j+1] */
    a[0] = _mm256_add_ps(a[0], a[4]);
    a[1] = _mm256_add_ps(a[1], a[5]);
    a[2] = _mm256_add_ps(a[2], a[6]);
    a[3] = _mm256_add_ps(a[3], a[7]);
    a[0] = _mm256_add_ps(a[0], a[2]);
    a[1] = _mm256_add_ps(a[1], a[3]);
    float s = red16v(a[0], a[1]);
    for (size_t i = np; i < n; i++) s += x[i] * y[i]; /* not fused in ggml (checked) */
    return s;
}

float fm_gg_dot_tiny_avx2(const float *x, const float *y, size_t n)
{
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (size_t i = 0; i + 16 <= n; i += 16) {
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), hi);
    }
    return red16v(lo, hi);
}

void fm_gg_kqv_avx2(float *out, const float *V, size_t vstride, const float *p, uint32_t lo, uint32_t hi, size_t hdv,
                    int lanes, float *acc)
{
    const uint32_t lm = (uint32_t)lanes - 1;
    memset(acc, 0, (size_t)lanes * hdv * sizeof *acc);
    const size_t d8 = hdv & ~(size_t)7;
    for (uint32_t t = lo; t < hi; t++) {
        float *a = acc + (size_t)(t & lm) * hdv;
        const float *v = V + (size_t)t * vstride;
        const float pt = p[t];
        const __m256 pv = _mm256_set1_ps(pt);
        size_t d = 0;
        for (; d < d8; d += 8)
            _mm256_storeu_ps(a + d, _mm256_fmadd_ps(_mm256_loadu_ps(v + d), pv, _mm256_loadu_ps(a + d)));
        for (; d < hdv; d++) a[d] = fmaf(v[d], pt, a[d]);
    }
    if (lanes == 64) { /* fold accumulators 0+2, 1+3, then 0+1 (elementwise: exact twins) */
        for (size_t k = 0; k < 16 * hdv; k++) {
            acc[k] = acc[k] + acc[k + 32 * hdv];
            acc[k + 16 * hdv] = acc[k + 16 * hdv] + acc[k + 48 * hdv];
        }
        for (size_t k = 0; k < 16 * hdv; k++) acc[k] = acc[k] + acc[k + 16 * hdv];
    }
    size_t d = 0;
    for (; d < d8; d += 8) {
        __m256 l[16];
        for (int k = 0; k < 16; k++) l[k] = _mm256_loadu_ps(acc + (size_t)k * hdv + d);
        __m256 t3[8], t6[4];
        for (int i = 0; i < 8; i++) t3[i] = _mm256_add_ps(l[i], l[i + 8]);
        for (int i = 0; i < 4; i++) t6[i] = _mm256_add_ps(t3[i], t3[i + 4]);
        const __m256 t80 = _mm256_add_ps(t6[0], t6[2]), t81 = _mm256_add_ps(t6[1], t6[3]);
        _mm256_storeu_ps(out + d, _mm256_add_ps(t80, t81));
    }
    for (; d < hdv; d++) {
        float l[16];
        for (int k = 0; k < 16; k++) l[k] = acc[(size_t)k * hdv + d];
        out[d] = gg_red16(l);
    }
}
