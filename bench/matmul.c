/* fm_matmul throughput: GFLOP/s and GB/s of weights for matvec (n = 1) and a
 * prompt-sized matmul (n = 64), 1 and 2 threads, FM_KERNEL_Q8 mode.
 *   hot:  the same weight matrix every call (it stays in L2/L3)
 *   cold: calls rotate over copies of the matrix totalling >= 256 MiB, so the
 *         weights stream from DRAM (what decode of a big model sees)
 * With FM_BENCH_GGML=/path/to/libggml-cpu.so (llama.cpp's CPU backend, e.g.
 * llama-cpp-python's llama_cpp/lib/libggml-cpu.so) the same shapes also run
 * llama.cpp's kernels: its quantize_row_q8_* once per call, then its
 * ggml_vec_dot_<type>_q8_<x> per output (nrc = 1, what ggml's mul_mat does for
 * these types when the weights are not repacked), on fm's thread pool.
 * Best of 25 short runs each. Usage: matmul [TYPE...] (default Q4_K Q6_K Q8_0 F32) */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "formats/quant.h"
#include "runtime/kernels.h"
#include "runtime/pool.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

/* random bytes, then every 2-byte scale field of the block types set to a
 * small f16 (0x1400 ~ 2^-10 .. 0x2000 ~ 2^-7) so nothing is inf/NaN */
static void fill_weights(uint32_t qt, uint8_t *w, size_t bytes, size_t nvals)
{
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)rnd();
    const fm_qtype_traits *tr = fm_qtype_get(qt);
    if (qt == FM_Q_F32) {
        for (size_t i = 0; i < nvals; i++) {
            float f = (float)((double)(rnd() >> 11) * 0x1p-53 - 0.5);
            memcpy(w + 4 * i, &f, 4);
        }
        return;
    }
    if (qt == FM_Q_F16 || qt == FM_Q_BF16) {
        for (size_t i = 0; i < nvals; i++) {
            uint16_t h = (uint16_t)(0x3000 + rnd() % 0x800);
            memcpy(w + 2 * i, &h, 2);
        }
        return;
    }
    int offs[2] = {0, -1};
    if (qt == FM_Q_Q4_K || qt == FM_Q_Q5_K || qt == FM_Q_Q4_1 || qt == FM_Q_Q5_1) offs[1] = 2;
    if (qt == FM_Q_Q2_K) offs[0] = 80, offs[1] = 82;
    if (qt == FM_Q_Q3_K) offs[0] = 108;
    if (qt == FM_Q_Q6_K) offs[0] = 208;
    for (size_t b = 0; b < nvals / tr->block_size; b++)
        for (int k = 0; k < 2; k++)
            if (offs[k] >= 0) {
                uint16_t h = (uint16_t)(0x1400 + rnd() % 0xc00);
                memcpy(w + b * tr->type_size + offs[k], &h, 2);
            }
}

/* ---- optional llama.cpp baseline ---- */
typedef void (*ggml_vec_dot_t)(int n, float *s, size_t bs, const void *x, size_t bx, const void *y, size_t by,
                               int nrc);
typedef void (*ggml_from_float_t)(const float *x, void *y, int64_t k);
static void *g_lib;

static int ggml_fns(uint32_t qt, ggml_vec_dot_t *dot, ggml_from_float_t *quant, size_t *act_bs, size_t *act_ts)
{
    if (g_lib == NULL) return 0;
    const char *dn = NULL, *qn = NULL;
    switch (qt) {
    case FM_Q_Q4_0: dn = "ggml_vec_dot_q4_0_q8_0"; qn = "quantize_row_q8_0"; break;
    case FM_Q_Q8_0: dn = "ggml_vec_dot_q8_0_q8_0"; qn = "quantize_row_q8_0"; break;
    case FM_Q_Q2_K: dn = "ggml_vec_dot_q2_K_q8_K"; qn = "quantize_row_q8_K"; break;
    case FM_Q_Q3_K: dn = "ggml_vec_dot_q3_K_q8_K"; qn = "quantize_row_q8_K"; break;
    case FM_Q_Q4_K: dn = "ggml_vec_dot_q4_K_q8_K"; qn = "quantize_row_q8_K"; break;
    case FM_Q_Q5_K: dn = "ggml_vec_dot_q5_K_q8_K"; qn = "quantize_row_q8_K"; break;
    case FM_Q_Q6_K: dn = "ggml_vec_dot_q6_K_q8_K"; qn = "quantize_row_q8_K"; break;
    case FM_Q_IQ4_XS: dn = "ggml_vec_dot_iq4_xs_q8_K"; qn = "quantize_row_q8_K"; break;
    case FM_Q_F32: dn = "ggml_vec_dot_f32"; break;
    default: return 0;
    }
    *dot = (ggml_vec_dot_t)(uintptr_t)dlsym(g_lib, dn);
    *quant = qn ? (ggml_from_float_t)(uintptr_t)dlsym(g_lib, qn) : NULL;
    *act_bs = qn == NULL ? 1 : strcmp(qn, "quantize_row_q8_K") == 0 ? 256 : 32;
    *act_ts = qn == NULL ? 4 : *act_bs == 256 ? 292 : 34;
    return *dot != NULL && (qn == NULL || *quant != NULL);
}

typedef struct gjob {
    ggml_vec_dot_t dot;
    const uint8_t *W;
    size_t rows, cols, wstride, n, xstride;
    const uint8_t *xq;
    float *Y;
} gjob;

static void gjob_fn(void *ctx, int ith, int nth)
{
    gjob *j = ctx;
    size_t per = (j->rows + (size_t)nth - 1) / (size_t)nth;
    size_t r0 = (size_t)ith * per, r1 = r0 + per < j->rows ? r0 + per : j->rows;
    for (size_t rb = r0; rb < r1; rb += 16) /* ggml's 16-row blocking */
        for (size_t i = 0; i < j->n; i++)
            for (size_t r = rb; r < r1 && r < rb + 16; r++)
                j->dot((int)j->cols, &j->Y[i * j->rows + r], 0, j->W + r * j->wstride, 0, j->xq + i * j->xstride,
                       0, 1);
}

typedef struct bcase {
    uint32_t qt;
    size_t rows, cols, n;
    int threads, cold, ggml;
    uint8_t **mats;
    size_t nmats, wbytes;
    const float *X;
    float *Y;
    fm_pool *pool;
    uint8_t *xq;
} bcase;

static int run_once(bcase *c, size_t k)
{
    const uint8_t *W = c->mats[k % c->nmats];
    if (!c->ggml) return fm_matmul(c->pool, c->qt, W, c->rows, c->cols, c->X, c->n, c->Y, NULL) == FM_OK;
    ggml_vec_dot_t dot;
    ggml_from_float_t quant;
    size_t abs_, ats;
    if (!ggml_fns(c->qt, &dot, &quant, &abs_, &ats)) return 0;
    gjob j = {dot, W, c->rows, c->cols, c->wbytes / c->rows, c->n, 0, NULL, c->Y};
    if (quant != NULL) {
        j.xstride = c->cols / abs_ * ats;
        for (size_t i = 0; i < c->n; i++) quant(c->X + i * c->cols, c->xq + i * j.xstride, (int64_t)c->cols);
        j.xq = c->xq;
    } else {
        j.xstride = c->cols * 4;
        j.xq = (const uint8_t *)c->X;
    }
    fm_pool_run(c->pool, gjob_fn, &j);
    return 1;
}

/* seconds per call: best of 25 runs of ~5 ms each (short runs, so that some
 * of them see an otherwise idle machine) */
static double bench(bcase *c)
{
    size_t next = 0; /* rotates over all copies across runs (cold) */
    if (!run_once(c, next++)) return -1;
    double t0 = now();
    size_t reps = 0;
    while (now() - t0 < 0.005) {
        run_once(c, next++);
        reps++;
    }
    reps = reps + 1;
    double best = 1e30;
    for (int r = 0; r < 25; r++) {
        double t = now();
        for (size_t k = 0; k < reps; k++) run_once(c, next++);
        t = (now() - t) / (double)reps;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    const char *deftypes[] = {"Q4_K", "Q6_K", "Q8_0", "F32"};
    const char **types = argc > 1 ? (const char **)argv + 1 : deftypes;
    const int ntypes = argc > 1 ? argc - 1 : 4;
    const char *gl = getenv("FM_BENCH_GGML");
    if (gl != NULL && *gl) {
        char base[4096];
        snprintf(base, sizeof base, "%s", gl);
        char *slash = strrchr(base, '/');
        if (slash != NULL) {
            snprintf(slash + 1, sizeof base - (size_t)(slash + 1 - base), "libggml-base.so");
            dlopen(base, RTLD_NOW | RTLD_GLOBAL);
        }
        g_lib = dlopen(gl, RTLD_NOW);
        if (g_lib == NULL) fprintf(stderr, "matmul: cannot load %s: %s\n", gl, dlerror());
        else {
            void (*init)(void) = (void (*)(void))(uintptr_t)dlsym(g_lib, "ggml_cpu_init");
            if (init) init();
        }
    }
    fm_kernel_set_mode(FM_KERNEL_Q8);
    static const char *lv[] = {"scalar", "AVX2", "AVX-512VL+VNNI"};
    printf("fm_matmul, mode Q8, %s kernels; GB/s = weight bytes / time; best of 25 runs\n", lv[fm_kernel_simd_level()]);
    printf("%-6s %-10s %3s %2s %-4s %-6s %10s %9s %8s\n", "type", "rows x cols", "n", "t", "mem", "impl",
           "us/call", "GFLOP/s", "GB/s");
    fm_pool *pools[3] = {NULL, NULL, NULL};
    if (fm_pool_new(&pools[1], 1, NULL) != FM_OK || fm_pool_new(&pools[2], 2, NULL) != FM_OK) return 1;
    const size_t shapes[2][2] = {{2048, 2048}, {768, 2048}};
    const size_t N = 64;
    float *X = malloc(N * 2048 * sizeof(float)), *Y = malloc(N * 2048 * sizeof(float));
    uint8_t *xq = malloc(N * 2048 * 2);
    for (size_t i = 0; i < N * 2048; i++) X[i] = (float)((double)(rnd() >> 11) * 0x1p-53 * 2 - 1);
    for (int ti = 0; ti < ntypes; ti++) {
        const int qt = fm_qtype_from_name(types[ti]);
        if (qt < 0 || !fm_kernel_supported((uint32_t)qt)) {
            fprintf(stderr, "matmul: unknown or unsupported type %s\n", types[ti]);
            continue;
        }
        for (int s = 0; s < 2; s++) {
            const size_t rows = shapes[s][0], cols = shapes[s][1];
            uint64_t rb;
            if (fm_qtype_nbytes((uint32_t)qt, cols, &rb, NULL) != FM_OK) continue;
            const size_t wbytes = (size_t)rb * rows;
            size_t ncold = (256u << 20) / wbytes + 1;
            uint8_t **mats = malloc(ncold * sizeof *mats);
            for (size_t k = 0; k < ncold; k++) {
                mats[k] = malloc(wbytes);
                fill_weights((uint32_t)qt, mats[k], wbytes, rows * cols);
            }
            struct {
                size_t n;
                int cold;
            } modes[3] = {{1, 0}, {1, 1}, {N, 0}};
            for (int m = 0; m < 3; m++)
                for (int th = 1; th <= 2; th++)
                    for (int g = 0; g <= (g_lib ? 1 : 0); g++) {
                        bcase c = {(uint32_t)qt, rows, cols, modes[m].n, th, modes[m].cold, g, mats,
                                   modes[m].cold ? ncold : 1, wbytes, X, Y, pools[th], xq};
                        double t = bench(&c);
                        if (t < 0) continue;
                        const double flop = 2.0 * (double)rows * (double)cols * (double)c.n;
                        char shp[32];
                        snprintf(shp, sizeof shp, "%zux%zu", rows, cols);
                        printf("%-6s %-10s %3zu %2d %-4s %-6s %10.1f %9.1f %8.1f\n", types[ti], shp, c.n, th,
                               c.cold ? "cold" : "hot", g ? "ggml" : "fm", t * 1e6, flop / t * 1e-9,
                               (double)wbytes / t * 1e-9);
                        fflush(stdout);
                    }
            for (size_t k = 0; k < ncold; k++) free(mats[k]);
            free(mats);
        }
    }
    fm_pool_free(pools[1]);
    fm_pool_free(pools[2]);
    free(X);
    free(Y);
    free(xq);
    return 0;
}
