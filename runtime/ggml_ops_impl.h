/* Private to runtime/ggml_ops.c and runtime/ggml_ops_avx2.c: the scalar
 * algorithms, compiled twice (plain, and with -mfma where fmaf is one
 * instruction). GG(name) names the copy. */
#ifndef FM_GGML_OPS_IMPL_H
#define FM_GGML_OPS_IMPL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* _mm512_reduce_add_ps as GCC implements it: lanes i + (i+8), then + (i+4),
 * then lane 0+2 and 1+3, then the two. */
static inline float gg_red16(const float a[16])
{
    float t3[8], t6[4];
    for (int i = 0; i < 8; i++) t3[i] = a[i] + a[i + 8];
    for (int i = 0; i < 4; i++) t6[i] = t3[i] + t3[i + 4];
    const float t80 = t6[0] + t6[2], t81 = t6[1] + t6[3];
    return t80 + t81;
}

/* ggml_v_expf, AVX-512 variant (scalef), one lane. */
static inline float gg_expf(float x)
{
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    if (isnan(n)) return x + x;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    if (fabsf(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                         fmaf(0x1.ffffecp-1f, b, 1.0f));
    return scalbnf(j, (int)n);
}

static inline void gg_softmax(float *x, size_t n)
{
    float max = -INFINITY;
    for (size_t i = 0; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0.0;
    size_t i = 0;
    for (; i + 15 < n; i += 16) {
        float v[16];
        for (int l = 0; l < 16; l++) v[l] = x[i + l] = gg_expf(x[i + l] - max);
        sum += (double)gg_red16(v);
    }
    for (; i < n; i++) {
        const float v = expf(x[i] - max);
        sum += (double)v;
        x[i] = v;
    }
    const float inv = (float)(1.0 / sum);
    for (size_t k = 0; k < n; k++) x[k] *= inv;
}

static inline void gg_softmax_masked(float *x, uint32_t lo, uint32_t hi)
{
    float max = -INFINITY;
    for (uint32_t t = lo; t < hi; t++) max = x[t] > max ? x[t] : max;
    double sum = 0.0;
    for (uint32_t c = lo & ~15u; c < hi; c += 16) {
        float v[16];
        for (uint32_t l = 0; l < 16; l++) {
            const uint32_t t = c + l;
            v[l] = (t >= lo && t < hi) ? gg_expf(x[t] - max) : 0.0f;
            x[t] = v[l];
        }
        sum += (double)gg_red16(v);
    }
    const float inv = (float)(1.0 / sum);
    for (uint32_t t = lo; t < hi; t++) x[t] *= inv;
}

static inline void gg_swiglu(float *g, const float *u, size_t n)
{
    size_t i = 0;
    for (; i + 15 < n; i += 16)
        for (int l = 0; l < 16; l++) {
            const float x = g[i + l];
            g[i + l] = (x / (1.0f + gg_expf(0.0f - x))) * u[i + l];
        }
    for (; i < n; i++) g[i] = (g[i] / (1.0f + expf(-g[i]))) * u[i];
}

#endif
