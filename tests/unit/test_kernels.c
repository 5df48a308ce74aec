/* Tests for runtime/kernels.{h,c} (+ kernels_avx2.c).
 *
 * K1  activation quantizers equal ggml's CPU backend byte for byte
 *     (fixture from libggml-cpu.so: quantize_row_q8_K / _q8_0 / _q8_1), scalar
 *     and AVX2; fm_quantize_q8_0_ref equals gguf-py's Q8_0 (ggml _ref).
 * K2  integer dot products equal ggml_vec_dot_<type>_q8_<x> bit for bit, at
 *     every SIMD level (same integer lanes, same float operations in the same
 *     order, see runtime/kernels.c).
 * K3  types without an fm integer kernel (IQ2/IQ3/IQ1, TQ, MXFP4) in Q8 mode
 *     match ggml within float rounding: |y - ggml| <= 1e-5 * sum|w||x^|, x^ the
 *     quantized activations (the same integer-valued products are summed;
 *     only the order and the rounding of the per-block scale products differ,
 *     each a few ulp of the row's magnitude).
 * K4  fm_matmul vs fm_matmul_ref (dequantize, double accumulation) for every
 *     type fm can dequantize, 1 and 3 threads, n = 1 and 7, odd row counts:
 *       exact mode: |y - ref| <= 1e-5 * S, S = sum_c |w_c||x_c| (float
 *         accumulation of <= 512 products in 8..16 lanes: ~sqrt(cols) * 2^-24
 *         relative; 1e-5 leaves a wide margin yet catches any wrong term);
 *       Q8 mode: |y - ref| <= B + 1e-5 * S, B = sum_c |w_c| * e_c where e_c
 *         bounds the activation rounding of element c: d/2 for Q8_K
 *         (d = amax/127 of its 256-block, stored as float) and
 *         d/2 + 127 * d * 2^-11 for Q8_0/Q8_1 (d stored as f16), each plus
 *         2e-5 * d for the float rounding of x * iscale and d * q. Rigorous
 *         and tight; the test prints max B/S (~1e-2 for these data).
 * K5  every SIMD level (AVX2; AVX-512VL+VNNI when the CPU has it) equals the
 *     scalar twins bit for bit, both modes, every type (integer lanes; float
 *     dots with the same 16 fused lanes and fold order; bit-exact
 *     dequantizers).
 * K6  tiling and threading do not change results: n = 7 equals seven n = 1
 *     calls, and 3 threads equal 1 thread, bit for bit.
 * K7  argument errors: unsupported type, partial blocks, NULL, overflow. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/affine.h"
#include "formats/quant.h"
#include "formats/quant_blocks.h"
#include "runtime/kernels.h"
#include "runtime/pool.h"
#include "t.h"

/* ---- random numbers ---- */
static uint64_t rng_s = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    uint64_t z = (rng_s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rnd_u(void) { return (double)(rnd() >> 11) * 0x1p-53; }
static float rnd_n(void)
{
    double u1 = rnd_u(), u2 = rnd_u();
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}
/* small finite f16 of random sign, magnitude in [2^-10, 2^-4] */
static uint16_t rnd_f16(void)
{
    float m = (float)exp2(-10 + 6 * rnd_u());
    return fm_f32_to_f16(rnd() & 1 ? -m : m);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Random but valid blocks: random bytes with the scale fields set to small
 * finite values; float types from normal samples. */
static void rand_weights(uint32_t qt, uint8_t *buf, size_t nvals)
{
    const fm_qtype_traits *tr = fm_qtype_get(qt);
    const size_t nb = nvals / tr->block_size, ts = tr->type_size;
    for (size_t i = 0; i < nb * ts; i++) buf[i] = (uint8_t)rnd();
    int offs[2] = {-1, -1};
    switch (qt) {
    case FM_Q_F32:
        for (size_t i = 0; i < nvals; i++) {
            float f = rnd_n();
            memcpy(buf + 4 * i, &f, 4);
        }
        return;
    case FM_Q_F64:
        for (size_t i = 0; i < nvals; i++) {
            double f = rnd_n();
            memcpy(buf + 8 * i, &f, 8);
        }
        return;
    case FM_Q_F16:
        for (size_t i = 0; i < nvals; i++) put16(buf + 2 * i, fm_f32_to_f16(rnd_n()));
        return;
    case FM_Q_BF16:
        for (size_t i = 0; i < nvals; i++) put16(buf + 2 * i, fm_f32_to_bf16(rnd_n()));
        return;
    case FM_Q_I8:
    case FM_Q_I16:
    case FM_Q_I32:
    case FM_Q_I64:
        for (size_t i = 0; i < nvals; i++) {
            int64_t v = (int64_t)(rnd() % 201) - 100;
            memcpy(buf + ts * i, &v, ts); /* little-endian */
        }
        return;
    case FM_Q_F8_E4M3:
        for (size_t i = 0; i < nvals; i++)
            while ((buf[i] & 0x7f) == 0x7f) buf[i] = (uint8_t)rnd();
        return;
    case FM_Q_F8_E5M2:
        for (size_t i = 0; i < nvals; i++)
            while ((buf[i] & 0x7c) == 0x7c) buf[i] = (uint8_t)rnd();
        return;
    case FM_Q_Q4_1: case FM_Q_Q5_1: case FM_Q_Q4_K: case FM_Q_Q5_K:
        offs[0] = 0, offs[1] = 2;
        break;
    case FM_Q_Q2_K: offs[0] = 80, offs[1] = 82; break;
    case FM_Q_Q3_K: offs[0] = 108; break;
    case FM_Q_Q6_K: offs[0] = 208; break;
    case FM_Q_TQ1_0: offs[0] = 52; break;
    case FM_Q_TQ2_0: offs[0] = 64; break;
    case FM_Q_Q8_K:
        for (size_t b = 0; b < nb; b++) {
            float d = fm_f16_to_f32(rnd_f16());
            memcpy(buf + b * ts, &d, 4);
        }
        return;
    case FM_Q_MXFP4:
        for (size_t b = 0; b < nb; b++) buf[b * ts] = (uint8_t)(118 + rnd() % 8);
        return;
    case FM_Q_NVFP4:
        for (size_t b = 0; b < nb; b++)
            for (int k = 0; k < 4; k++) buf[b * ts + k] = (uint8_t)(0x20 + rnd() % 0x28);
        return;
    case FM_Q_IQ1_M:
        for (size_t b = 0; b < nb; b++) {
            uint16_t h = rnd_f16();
            for (int k = 0; k < 4; k++) {
                uint8_t *p = buf + b * ts + 48 + 2 * k;
                p[1] = (uint8_t)((p[1] & 0x0f) | (((h >> (4 * k)) & 0xf) << 4));
            }
        }
        return;
    default:
        if (qt >= FM_Q_A4_32 && qt <= FM_Q_A2_128) offs[0] = 0, offs[1] = 2;
        else offs[0] = 0; /* Q4_0 Q5_0 Q8_0 IQ* Q1_0: d first */
        break;
    }
    for (size_t b = 0; b < nb; b++)
        for (int k = 0; k < 2; k++)
            if (offs[k] >= 0) put16(buf + b * ts + offs[k], rnd_f16());
}

static void rand_acts(float *x, size_t n, size_t cols)
{
    for (size_t i = 0; i < n * cols; i++) x[i] = rnd_n();
    /* some outliers so that per-block scales differ */
    for (size_t i = 0; i < n * cols; i += 37) x[i] *= 8;
}

static size_t row_bytes(uint32_t qt, size_t cols)
{
    uint64_t b = 0;
    if (fm_qtype_nbytes(qt, cols, &b, NULL) != FM_OK) return 0;
    return (size_t)b;
}

static void fixture_tests(void)
{
    FILE *f = fopen(T_SRC("tests/fixtures/kernels/vecdot.bin"), "rb");
    CHECKF(f != NULL, "tests/fixtures/kernels/vecdot.bin missing (tests/gen/gen_kernels_ref.py)");
    if (f == NULL) return;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)len);
    CHECK(d != NULL && fread(d, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    size_t off = 0;
#define RD32(v) do { memcpy(&(v), d + off, 4); off += 4; } while (0)
    uint32_t nsets;
    RD32(nsets);
    const float *xs[4] = {0};
    uint32_t xcols[4] = {0}, xn[4] = {0};
    for (uint32_t s = 0; s < nsets && s < 4; s++) {
        RD32(xcols[s]);
        RD32(xn[s]);
        xs[s] = (const float *)(d + off);
        off += (size_t)xcols[s] * xn[s] * 4;
    }
    const int maxlev = fm_kernel_set_simd_level(2);
    int nrec = 0;
    for (;;) {
        uint32_t qt, act, cols, rows, n;
        RD32(qt);
        if (qt == 0) break;
        RD32(act);
        RD32(cols);
        RD32(rows);
        RD32(n);
        const float *X = NULL;
        for (uint32_t s = 0; s < nsets; s++)
            if (xcols[s] == cols && xn[s] == n) X = xs[s];
        CHECK(X != NULL);
        if (X == NULL) break;
        const fm_qtype_traits *tr = fm_qtype_get(qt);
        const size_t wrow = row_bytes(qt, cols);
        const size_t abs_ = act == FM_Q_Q8_K ? 256 : 32;
        const size_t ats = act == FM_Q_Q8_K ? sizeof(fm_block_q8_K) : act == FM_Q_Q8_1 ? sizeof(fm_block_q8_1)
                                                                                       : sizeof(fm_block_q8_0);
        const size_t arow = cols / abs_ * ats;
        const uint8_t *W = d + off;
        off += rows * wrow;
        const uint8_t *XQ = d + off;
        off += n * arow;
        const float *Y = (const float *)(d + off);
        off += (size_t)n * rows * 4;
        nrec++;
        uint8_t *q = malloc(arow);
        for (int simd = 0; simd <= maxlev; simd++) {
            fm_kernel_set_simd_level(simd);
            /* K1 */
            for (uint32_t i = 0; i < n; i++) {
                if (act == FM_Q_Q8_K) fm_quantize_q8_K(X + (size_t)i * cols, q, cols);
                else if (act == FM_Q_Q8_1) fm_quantize_q8_1(X + (size_t)i * cols, q, cols);
                else fm_quantize_q8_0(X + (size_t)i * cols, q, cols);
                CHECKF(memcmp(q, XQ + i * arow, arow) == 0, "K1 %s act row %u (simd %d) differs from ggml",
                       tr->name, i, simd);
            }
            if (fm_kernel_q8_act_type(qt) != 0) {
                CHECK(fm_kernel_q8_act_type(qt) == act);
                /* K2 */
                for (uint32_t i = 0; i < n; i++)
                    for (uint32_t r = 0; r < rows; r++) {
                        float y = fm_vec_dot_q8(qt, cols, W + r * wrow, XQ + i * arow);
                        float g = Y[i * rows + r];
                        CHECKF(memcmp(&y, &g, 4) == 0, "K2 %s row %u act %u simd %d: fm %.9g ggml %.9g", tr->name,
                               r, i, simd, (double)y, (double)g);
                    }
            } else {
                /* K3 */
                fm_kernel_set_mode(FM_KERNEL_Q8);
                float *y = malloc((size_t)n * rows * 4);
                float *wd = malloc(cols * 4);
                float *xd = malloc(cols * 4);
                fm_err rc = fm_matmul(NULL, qt, W, rows, cols, X, n, y, NULL);
                CHECK(rc == FM_OK);
                for (uint32_t r = 0; r < rows; r++) {
                    tr->to_float_ref(W + r * wrow, wd, cols);
                    for (uint32_t i = 0; i < n; i++) {
                        /* dequantize ggml's own quantized activations */
                        for (size_t b = 0; b < cols / abs_; b++) {
                            const uint8_t *blk = XQ + i * arow + b * ats;
                            float dd;
                            const int8_t *qs;
                            if (act == FM_Q_Q8_K) {
                                memcpy(&dd, blk, 4);
                                qs = (const int8_t *)blk + 4;
                            } else {
                                dd = fm_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
                                qs = (const int8_t *)blk + (act == FM_Q_Q8_1 ? 4 : 2);
                            }
                            for (size_t j = 0; j < abs_; j++) xd[b * abs_ + j] = dd * (float)qs[j];
                        }
                        double S = 0;
                        for (size_t c = 0; c < cols; c++) S += fabs((double)wd[c] * xd[c]);
                        const double err = fabs((double)y[i * rows + r] - (double)Y[i * rows + r]);
                        CHECKF(err <= 1e-5 * S + 1e-30, "K3 %s row %u act %u simd %d: fm %.9g ggml %.9g (S %.3g)",
                               tr->name, r, i, simd, (double)y[i * rows + r], (double)Y[i * rows + r], S);
                    }
                }
                free(y);
                free(wd);
                free(xd);
            }
        }
        free(q);
    }
    CHECKF(nrec >= 22, "only %d fixture records", nrec);
    fm_kernel_set_simd(true);
    free(d);

    /* K1: fm_quantize_q8_0_ref vs gguf-py */
    f = fopen(T_SRC("tests/fixtures/kernels/q8_0_ref.bin"), "rb");
    CHECK(f != NULL);
    if (f == NULL) return;
    uint32_t cols = 0, n = 0;
    CHECK(fread(&cols, 4, 1, f) == 1);
    CHECK(fread(&n, 4, 1, f) == 1);
    CHECK(cols > 0 && cols % 32 == 0 && n > 2 && n < 100);
    if (!(cols > 0 && cols % 32 == 0 && n > 2 && n < 100)) {
        fclose(f);
        return;
    }
    float *X = malloc((size_t)cols * n * 4);
    const size_t arow = cols / 32 * sizeof(fm_block_q8_0);
    uint8_t *want = malloc(arow * n), *got = malloc(arow);
    CHECK(fread(X, 4, (size_t)cols * n, f) == (size_t)cols * n);
    CHECK(fread(want, 1, arow * n, f) == arow * n);
    fclose(f);
    for (uint32_t i = 0; i < n; i++) {
        fm_quantize_q8_0_ref(X + (size_t)i * cols, got, cols);
        CHECKF(memcmp(got, want + i * arow, arow) == 0, "K1 q8_0_ref row %u differs from gguf-py", i);
    }
    /* the x86 variant rounds the exact ties of row 2 to even: it must differ there */
    fm_quantize_q8_0(X + 2 * (size_t)cols, got, cols);
    CHECK(memcmp(got, want + 2 * arow, arow) != 0);
    free(X);
    free(want);
    free(got);
}

/* Per-element bound on the activation rounding of fm's Q8 path (see K4). */
static void act_err_bound(uint32_t act, const float *x, size_t cols, double *e)
{
    const size_t bs = act == FM_Q_Q8_K ? 256 : 32;
    for (size_t b = 0; b < cols / bs; b++) {
        double amax = 0;
        for (size_t j = 0; j < bs; j++) amax = fmax(amax, fabs((double)x[b * bs + j]));
        const double dd = amax / 127;
        const double eb = act == FM_Q_Q8_K ? dd * (0.5 + 2e-5) : dd * (0.5 + 127.0 / 2048 + 2e-5);
        for (size_t j = 0; j < bs; j++) e[b * bs + j] = eb;
    }
}

/* Types fm runs in Q8 mode by quantizing activations, then a float dot. */
static bool is_emulated(uint32_t qt)
{
    static const uint32_t t[] = {FM_Q_IQ2_XXS, FM_Q_IQ2_XS, FM_Q_IQ2_S, FM_Q_IQ3_XXS, FM_Q_IQ3_S, FM_Q_IQ1_S,
                                 FM_Q_IQ1_M,   FM_Q_TQ1_0,  FM_Q_TQ2_0, FM_Q_MXFP4,   FM_Q_NVFP4, FM_Q_Q1_0};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i] == qt) return true;
    return false;
}

static double g_max_bs, g_max_err_b; /* informational */

typedef struct shape {
    size_t rows, cols;
} shape;

static void matmul_tests(void)
{
    fm_pool *p3 = NULL;
    CHECK(fm_pool_new(&p3, 3, NULL) == FM_OK);
    fm_pool *p1 = NULL;
    CHECK(fm_pool_new(&p1, 1, NULL) == FM_OK);
    const int maxlev = fm_kernel_set_simd_level(2);
    int ntypes = 0, nq8diff = 0;
    for (uint32_t qt = 0; qt < FM_Q_MAX_; qt++) {
        if (!fm_kernel_supported(qt)) continue;
        const fm_qtype_traits *tr = fm_qtype_get(qt);
        ntypes++;
        const uint32_t act = fm_kernel_q8_act_type(qt);
        /* activation type of the emulated types: as ggml (Q8_K for 256-blocks) */
        uint32_t qact = act;
        const bool emulated = is_emulated(qt);
        if (emulated) qact = (qt == FM_Q_MXFP4 || qt == FM_Q_NVFP4 || qt == FM_Q_Q1_0) ? FM_Q_Q8_0 : FM_Q_Q8_K;
        size_t bs = tr->block_size;
        size_t cols = bs == 1 ? 67 : (bs == 32 ? 288 : (bs == 256 ? 512 : bs * 4));
        if (qact == FM_Q_Q8_K && cols % 256) cols = 512;
        if (qact != 0 && cols % 32) cols = 256;
        const shape shapes[] = {{1, cols}, {37, cols}, {5, bs == 1 ? 256 : cols}};
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const size_t rows = shapes[si].rows, C = shapes[si].cols;
            const size_t wrow = row_bytes(qt, C);
            const size_t N = 7;
            uint8_t *W = malloc(rows * wrow);
            float *X = malloc(N * C * 4), *R = malloc(N * rows * 4), *Y = malloc(N * rows * 4),
                  *Y1 = malloc(N * rows * 4), *wd = malloc(C * 4);
            double *S = malloc(N * rows * sizeof(double)), *B = malloc(N * rows * sizeof(double)),
                   *e = malloc(C * sizeof(double));
            rand_weights(qt, W, rows * C);
            rand_acts(X, N, C);
            fm_matmul_ref(qt, W, rows, C, X, N, R);
            for (size_t r = 0; r < rows; r++) {
                tr->to_float_ref(W + r * wrow, wd, C);
                for (size_t i = 0; i < N; i++) {
                    double s = 0, b = 0;
                    if (qact) act_err_bound(qact, X + i * C, C, e);
                    for (size_t c = 0; c < C; c++) {
                        s += fabs((double)wd[c] * X[i * C + c]);
                        if (qact) b += fabs((double)wd[c]) * e[c];
                    }
                    S[i * rows + r] = s;
                    B[i * rows + r] = b;
                }
            }
            for (int mode = 0; mode < 2; mode++) {
                fm_kernel_set_mode(mode == 0 ? FM_KERNEL_EXACT : FM_KERNEL_Q8);
                float *Ys[3] = {NULL, NULL, NULL};
                for (int simd = 0; simd <= maxlev; simd++) {
                    fm_kernel_set_simd_level(simd);
                    for (int th = 0; th < 2; th++) {
                        fm_pool *pool = th ? p3 : p1;
                        for (int nn = 1; nn >= 0; nn--) {
                            const size_t n = nn ? N : 1;
                            float *out = (th == 0 && nn == 1) ? Y : Y1;
                            memset(out, 0xff, N * rows * 4);
                            if (n == 1) {
                                /* seven single-row calls (K6 compares them with the n = 7 call) */
                                for (size_t i = 0; i < N; i++) {
                                    fm_err rc = fm_matmul(pool, qt, W, rows, C, X + i * C, 1, out + i * rows, NULL);
                                    CHECK(rc == FM_OK);
                                }
                            } else {
                                fm_err rc = fm_matmul(pool, qt, W, rows, C, X, n, out, NULL);
                                CHECK(rc == FM_OK);
                            }
                            int bad = 0;
                            double worst = 0;
                            for (size_t k = 0; k < N * rows; k++) {
                                const double err = fabs((double)out[k] - R[k]);
                                const double tol = 1e-5 * S[k] + (mode == 1 ? B[k] : 0) + 1e-30;
                                if (!(err <= tol)) bad++;
                                if (mode == 1 && B[k] > 0) {
                                    if (S[k] > 0 && B[k] / S[k] > g_max_bs) g_max_bs = B[k] / S[k];
                                    if (err / B[k] > g_max_err_b) g_max_err_b = err / B[k];
                                }
                                if (S[k] > 0 && err / S[k] > worst) worst = err / S[k];
                            }
                            CHECKF(bad == 0, "K4 %s %zux%zu mode %s simd %d threads %d n %zu: %d outputs off (worst %.3g of S)",
                                   tr->name, rows, C, mode ? "q8" : "exact", simd, th ? 3 : 1, n, bad, worst);
                            if (!(th == 0 && nn == 1)) {
                                /* K6: equal to the 1-thread n = 7 result (computed first) */
                                CHECKF(memcmp(out, Y, N * rows * 4) == 0, "K6 %s %zux%zu mode %d simd %d threads %d n %zu differs",
                                       tr->name, rows, C, mode, simd, th ? 3 : 1, n);
                            }
                        }
                    }
                    Ys[simd] = malloc(N * rows * 4);
                    memcpy(Ys[simd], Y, N * rows * 4);
                }
                for (int lv = 1; lv <= maxlev; lv++) {
                    /* K5: bit-exact at every level (integer lanes, and float lanes
                     * with the same fused operations; dequantizers are bit-exact) */
                    CHECKF(memcmp(Ys[0], Ys[lv], N * rows * 4) == 0, "K5 %s %zux%zu mode %s: SIMD level %d != scalar twin",
                           tr->name, rows, C, mode ? "q8" : "exact", lv);
                }
                if (mode == 1 && qact != 0 && si == 1) {
                    /* the Q8 path really rounds activations: it differs from exact */
                    fm_kernel_set_mode(FM_KERNEL_EXACT);
                    fm_matmul(p1, qt, W, rows, C, X, N, Y1, NULL);
                    if (memcmp(Y1, Y, N * rows * 4) != 0) nq8diff++;
                    else CHECKF(0, "%s: Q8 mode equals exact mode", tr->name);
                }
                for (int lv = 0; lv < 3; lv++) free(Ys[lv]);
            }
            free(W);
            free(X);
            free(R);
            free(Y);
            free(Y1);
            free(wd);
            free(S);
            free(B);
            free(e);
        }
    }
    CHECKF(ntypes >= 30, "only %d supported types", ntypes);
    printf("test_kernels: %d weight types; Q8-mode bound B/S: max %.3g, max observed error/B %.3g\n", ntypes,
           g_max_bs, g_max_err_b);
    CHECK(nq8diff >= 20);
    fm_kernel_set_simd(true);
    fm_kernel_set_mode(FM_KERNEL_Q8);
    fm_pool_free(p1);
    fm_pool_free(p3);
}

static void error_tests(void)
{
    float x[64] = {0}, y[4];
    uint8_t w[256] = {0};
    fm_error e;
    CHECK(!fm_kernel_supported(FM_Q_Q8_1)); /* no dequantizer (activation-only type) */
    CHECK(!fm_kernel_supported(300));
    CHECK(fm_matmul(NULL, FM_Q_Q8_1, w, 1, 32, x, 1, y, &e) == FM_E_UNSUPPORTED);
    CHECK(fm_matmul(NULL, 999, w, 1, 32, x, 1, y, &e) == FM_E_UNSUPPORTED);
    CHECK(fm_matmul(NULL, FM_Q_Q4_0, w, 1, 33, x, 1, y, &e) == FM_E_FORMAT);
    CHECK(strstr(e.msg, "Q4_0") != NULL);
    CHECK(fm_matmul(NULL, FM_Q_Q4_K, w, 1, 64, x, 1, y, &e) == FM_E_FORMAT);
    CHECK(fm_matmul(NULL, FM_Q_Q4_0, NULL, 1, 32, x, 1, y, &e) == FM_E_ARG);
    CHECK(fm_matmul(NULL, FM_Q_Q4_0, w, 1, 32, NULL, 1, y, &e) == FM_E_ARG);
    CHECK(fm_matmul(NULL, FM_Q_Q4_0, w, 1, 32, x, 1, NULL, &e) == FM_E_ARG);
    CHECK(fm_matmul(NULL, FM_Q_F32, w, SIZE_MAX / 2, 32, x, 1, y, &e) == FM_E_RANGE);
    CHECK(fm_matmul(NULL, FM_Q_F32, w, 1, 32, x, SIZE_MAX / 8, y, &e) == FM_E_RANGE);
    /* empty shapes are fine and write nothing (rows or n = 0) */
    y[0] = 42;
    CHECK(fm_matmul(NULL, FM_Q_Q4_0, w, 0, 32, x, 1, y, &e) == FM_OK && y[0] == 42);
    CHECK(fm_matmul(NULL, FM_Q_Q4_0, w, 1, 32, x, 0, y, &e) == FM_OK && y[0] == 42);
    CHECK(fm_matmul(NULL, FM_Q_F32, w, 2, 0, x, 2, y, &e) == FM_OK && y[0] == 0 && y[3] == 0);
    CHECK(fm_matmul(NULL, FM_Q_F32, NULL, 2, 0, NULL, 2, y, &e) == FM_OK);
    CHECK(fm_matmul(NULL, FM_Q_F32, w, 2, 0, x, 2, NULL, &e) == FM_E_ARG);
}

static void float_helper_tests(void)
{
    float a[1003], b[1003], y[1003], y2[1003], ys[1003];
    float dots[1003];
    for (int i = 0; i < 1003; i++) {
        a[i] = rnd_n();
        b[i] = rnd_n();
        y[i] = y2[i] = rnd_n();
    }
    for (int simd = 0; simd < 2; simd++) {
        fm_kernel_set_simd(simd != 0);
        int k = 0;
        for (size_t n = 0; n <= 1003; n += (n < 40 ? 1 : 137), k++) {
            double s = 0, S = 0;
            for (size_t i = 0; i < n; i++) {
                s += (double)a[i] * b[i];
                S += fabs((double)a[i] * b[i]);
            }
            const float d = fm_dot_f32(a, b, n);
            CHECKF(fabs(d - s) <= 1e-6 * S + 1e-30, "fm_dot_f32 n %zu simd %d", n, simd);
            if (simd == 0) dots[k] = d;
            else CHECKF(memcmp(&dots[k], &d, 4) == 0, "fm_dot_f32 n %zu: AVX2 != scalar", n);
        }
        memcpy(y2, y, sizeof y);
        fm_axpy_f32(y2, 0.75f, a, 1001);
        int bad = 0;
        for (int i = 0; i < 1003; i++) {
            double want = i < 1001 ? (double)y[i] + 0.75 * (double)a[i] : y[i];
            if (!(fabs(y2[i] - want) <= 1e-6 * (fabs(y[i]) + fabs(a[i])))) bad++;
        }
        CHECKF(bad == 0, "fm_axpy_f32 simd %d: %d off", simd, bad);
        if (simd == 0) memcpy(ys, y2, sizeof ys);
        else CHECK(memcmp(ys, y2, sizeof ys) == 0);
    }
    fm_kernel_set_simd(true);
}

int main(void)
{
    const char *m = getenv("FM_KERNEL");
    CHECK(fm_kernel_get_mode() == ((m && strcmp(m, "exact") == 0) ? FM_KERNEL_EXACT : FM_KERNEL_Q8));
    static const char *lvname[] = {"scalar", "AVX2", "AVX-512VL+VNNI"};
    printf("test_kernels: SIMD level %d (%s); levels 0..%d tested\n", fm_kernel_simd_level(),
           lvname[fm_kernel_simd_level()], fm_kernel_simd_level());
    fixture_tests();
    matmul_tests();
    error_tests();
    float_helper_tests();
    T_DONE();
}
