/* runtime/ggml_ops: float operations in llama.cpp's (ggml CPU, AVX-512
 * build) order. The plain C and AVX2+FMA twins must give identical bits
 * (fm's results may not depend on the CPU); the order itself is checked
 * against llama.cpp end to end by test_logits (bit-exact fixtures), here by
 * hand-made cases where another order gives another float.
 * expf: ggml's polynomial is within 2 ulp of libm's expf (its stated bound is
 * 1.45 ulp + 0.5 for the rounding). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/forward.h"
#include "runtime/ggml_ops.h"
#include "runtime/kernels.h"
#include "t.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int32_t ulp_diff(float a, float b)
{
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x > y ? x - y : y - x;
}

int main(void)
{
    const bool has_simd = fm_kernel_simd();
    static float x[1024], y[1024], v[300 * 72], p[300], o1[72], o2[72], acc[64 * 72];
    for (int i = 0; i < 1024; i++) {
        x[i] = frand() * 3;
        y[i] = frand() * 3;
    }
    for (int i = 0; i < 300 * 72; i++) v[i] = frand();
    for (int i = 0; i < 300; i++) p[i] = fabsf(frand());

    /* twins agree bit for bit */
    static const size_t ns[] = {1, 15, 16, 17, 63, 64, 65, 100, 128, 256, 1000};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        size_t n = ns[k];
        fm_kernel_set_simd(false);
        float a = fm_gg_dot(x, y, n), at = fm_gg_dot_tiny(x, y, n & ~(size_t)15);
        fm_kernel_set_simd(true);
        float b = fm_gg_dot(x, y, n), bt = fm_gg_dot_tiny(x, y, n & ~(size_t)15);
        CHECKF(memcmp(&a, &b, 4) == 0 && memcmp(&at, &bt, 4) == 0, "n %zu", n);
        double ex = 0;
        for (size_t i = 0; i < n; i++) ex += (double)x[i] * y[i];
        CHECKF(fabs(a - ex) <= 1e-5 * (1 + fabs(ex)), "dot n %zu: %g vs %g", n, a, ex);
    }
    for (int lanes = 16; lanes <= 64; lanes *= 4) {
        const uint32_t lo[3] = {0, 5, 37}, hi[3] = {1, 200, 300};
        for (int c = 0; c < 3; c++) {
            fm_kernel_set_simd(false);
            fm_gg_kqv(o1, v, 72, p, lo[c], hi[c], 70, lanes, acc);
            fm_kernel_set_simd(true);
            fm_gg_kqv(o2, v, 72, p, lo[c], hi[c], 70, lanes, acc);
            CHECKF(memcmp(o1, o2, 70 * sizeof(float)) == 0, "kqv lanes %d case %d", lanes, c);
            double ex = 0;
            for (uint32_t t = lo[c]; t < hi[c]; t++) ex += (double)p[t] * v[t * 72 + 3];
            CHECK(fabs(o1[3] - ex) <= 1e-5 * (1 + fabs(ex)));
        }
    }
    /* expf: twins equal, close to libm, special values */
    int32_t worst = 0;
    for (int i = 0; i < 20000; i++) {
        float t = -87.0f + 175.0f * (float)i / 20000.0f;
        fm_kernel_set_simd(false);
        float a = fm_gg_expf(t);
        fm_kernel_set_simd(true);
        float b = fm_gg_expf(t);
        CHECK(memcmp(&a, &b, 4) == 0);
        int32_t d = ulp_diff(a, expf(t));
        if (d > worst) worst = d;
    }
    CHECKF(worst <= 2, "expf: %d ulp from libm", worst);
    CHECK(fm_gg_expf(-INFINITY) == 0.0f && fm_gg_expf(INFINITY) == INFINITY && isnan(fm_gg_expf(NAN)));
    CHECK(fm_gg_expf(-200.0f) == 0.0f && fm_gg_expf(200.0f) == INFINITY);
    fm_kernel_set_simd(has_simd);

    /* the reduction order is ggml's (_mm512_reduce_add_ps), not left to right */
    float l[16];
    memset(l, 0, sizeof l);
    l[0] = 16777216.0f; /* 2^24 */
    l[4] = 1.0f;
    l[12] = 1.0f;
    /* ggml: t3[4] = l4 + l12 = 2, t6[0] = l0 + t3[4] = 2^24 + 2; left to right: 2^24 + 1 + 1 = 2^24 */
    CHECK(fm_gg_red16(l) == 16777218.0f);

    /* softmax: sums to 1, masked entries ignored, chunk padding written */
    float sc[64 + 16];
    for (int i = 0; i < 64; i++) sc[i] = frand() * 5;
    float ref[64];
    memcpy(ref, sc, sizeof ref);
    fm_gg_softmax_masked(sc, 5, 41);
    double tot = 0;
    for (int i = 5; i < 41; i++) tot += sc[i];
    CHECK(fabs(tot - 1.0) < 1e-6);
    double m = -INFINITY, z = 0;
    for (int i = 5; i < 41; i++) m = ref[i] > m ? ref[i] : m;
    for (int i = 5; i < 41; i++) z += exp(ref[i] - m);
    CHECK(fabs(sc[7] - exp(ref[7] - m) / z) < 1e-6);
    float sm[37];
    for (int i = 0; i < 37; i++) sm[i] = frand() * 4;
    fm_softmax(sm, 37);
    tot = 0;
    for (int i = 0; i < 37; i++) tot += sm[i];
    CHECK(fabs(tot - 1.0) < 1e-6);

    /* swiglu: silu(g) * u */
    float g[40], u[40];
    for (int i = 0; i < 40; i++) {
        g[i] = frand() * 6;
        u[i] = frand();
    }
    float g0[40];
    memcpy(g0, g, sizeof g);
    fm_gg_swiglu(g, u, 40);
    for (int i = 0; i < 40; i++) CHECK(fabsf(g[i] - g0[i] / (1 + expf(-g0[i])) * u[i]) <= 1e-6f * (1 + fabsf(g[i])));

    /* GELU through ggml's f16 table: within f16 rounding of the float one */
    for (int i = 0; i < 2000; i++) {
        float t = -12.0f + 24.0f * (float)i / 2000.0f;
        float a = fm_gelu_ggml(t), b = fm_gelu_tanh(t);
        CHECKF(fabsf(a - b) <= 2e-3f * (1 + fabsf(b)), "gelu(%g): %g vs %g", t, a, b);
    }
    CHECK(fm_gelu_ggml(-10.5f) == 0.0f && fm_gelu_ggml(11.0f) == 11.0f);

    /* RMSNorm: double sum of squares */
    float xs[8] = {1, 2, 3, 4, 5, 6, 7, 8}, w[8] = {1, 1, 1, 1, 2, 2, 2, 2}, out[8];
    fm_rmsnorm(out, xs, w, 8, 1e-6f);
    const double r = 1.0 / sqrt((1 + 4 + 9 + 16 + 25 + 36 + 49 + 64) / 8.0 + 1e-6);
    CHECK(fabs(out[0] - r) < 1e-6 && fabs(out[7] - 16 * r) < 1e-5);
    T_DONE();
}
