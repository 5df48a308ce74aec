/* ggml-order float operations: plain C twins and dispatch (see ggml_ops.h). */
#include "runtime/ggml_ops.h"

#include <string.h>

#include "runtime/ggml_ops_impl.h"
#include "runtime/kernels.h"

float fm_gg_red16(const float a[16]) { return gg_red16(a); }

float fm_gg_expf(float x)
{
    if (fm_kernel_simd()) return fm_gg_expf_avx2(x);
    return gg_expf(x);
}

static float dot_ref(const float *x, const float *y, size_t n)
{
    float acc[4][16] = {{0}};
    const size_t np = n & ~(size_t)63;
    for (size_t i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++) acc[j][l] = fmaf(x[i + 16 * j + l], y[i + 16 * j + l], acc[j][l]);
    for (int l = 0; l < 16; l++) {
        acc[0][l] = acc[0][l] + acc[2][l];
        acc[1][l] = acc[1][l] + acc[3][l];
    }
    for (int l = 0; l < 16; l++) acc[0][l] = acc[0][l] + acc[1][l];
    float s = gg_red16(acc[0]);
    for (size_t i = np; i < n; i++) s += x[i] * y[i]; /* not fused in ggml (checked) */
    return s;
}

float fm_gg_dot(const float *x, const float *y, size_t n)
{
    if (fm_kernel_simd()) return fm_gg_dot_avx2(x, y, n);
    return dot_ref(x, y, n);
}

static float dot_tiny_ref(const float *x, const float *y, size_t n)
{
    float acc[16] = {0};
    for (size_t i = 0; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] = fmaf(x[i + l], y[i + l], acc[l]);
    return gg_red16(acc);
}

float fm_gg_dot_tiny(const float *x, const float *y, size_t n)
{
    if (fm_kernel_simd()) return fm_gg_dot_tiny_avx2(x, y, n);
    return dot_tiny_ref(x, y, n);
}

void fm_gg_softmax(float *x, size_t n) { gg_softmax(x, n); }

void fm_gg_softmax_masked(float *x, uint32_t lo, uint32_t hi) { gg_softmax_masked(x, lo, hi); }

void fm_gg_swiglu(float *g, const float *u, size_t n) { gg_swiglu(g, u, n); }

static void kqv_ref(float *out, const float *V, size_t vstride, const float *p, uint32_t lo, uint32_t hi, size_t hdv,
                    int lanes, float *acc)
{
    const uint32_t lm = (uint32_t)lanes - 1;
    memset(acc, 0, (size_t)lanes * hdv * sizeof *acc);
    for (uint32_t t = lo; t < hi; t++) {
        float *a = acc + (size_t)(t & lm) * hdv;
        const float *v = V + (size_t)t * vstride;
        const float pt = p[t];
        for (size_t d = 0; d < hdv; d++) a[d] = fmaf(v[d], pt, a[d]);
    }
    if (lanes == 64) { /* fold accumulators 0+2, 1+3, then 0+1 */
        for (size_t k = 0; k < 16 * hdv; k++) {
            acc[k] = acc[k] + acc[k + 32 * hdv];
            acc[k + 16 * hdv] = acc[k + 16 * hdv] + acc[k + 48 * hdv];
        }
        for (size_t k = 0; k < 16 * hdv; k++) acc[k] = acc[k] + acc[k + 16 * hdv];
    }
    for (size_t d = 0; d < hdv; d++) {
        float l[16];
        for (int k = 0; k < 16; k++) l[k] = acc[(size_t)k * hdv + d];
        out[d] = gg_red16(l);
    }
}

void fm_gg_kqv(float *out, const float *V, size_t vstride, const float *p, uint32_t lo, uint32_t hi, size_t hdv,
               int lanes, float *acc)
{
    if (fm_kernel_simd()) fm_gg_kqv_avx2(out, V, vstride, p, lo, hi, hdv, lanes, acc);
    else kqv_ref(out, V, vstride, p, lo, hi, hdv, lanes, acc);
}
