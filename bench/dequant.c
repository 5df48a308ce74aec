/* Single-thread dequantization throughput: GB/s of float32 output for Q4_K,
 * Q6_K and Q8_0 (`_ref` and AVX2 twin), next to memcpy (and memset, the
 * write-only ceiling) of the same output size. Best of 5 runs each.
 * Two sizes: the large one (default 64 MiB of output) is DRAM-bound; the
 * 512 KiB one stays in L2 and is repeated 32 times per run, so it shows the
 * kernels' own speed. Usage: dequant [MiB of output, default 64] */
#include "formats/quant.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static volatile float sink;

/* Seconds for one call, best of 5 runs of `reps` calls each. */
static double best_of_5(fm_dequant_fn fn, const void *src, float *dst, size_t n, int reps)
{
    double best = 1e30;
    fn(src, dst, n); /* warm: page faults, caches */
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        for (int k = 0; k < reps; k++) fn(src, dst, n);
        double t = (now() - t0) / reps;
        if (t < best) best = t;
        sink = dst[rnd() % n];
    }
    return best;
}

static void cpy(const void *src, float *dst, size_t n) { memcpy(dst, src, n * sizeof(float)); }
static void set(const void *src, float *dst, size_t n)
{
    (void)src;
    memset(dst, (int)(rnd() & 0x7f), n * sizeof(float));
}

static const uint32_t types[] = {FM_Q_Q4_K, FM_Q_Q6_K, FM_Q_Q8_0};
#define NT (sizeof types / sizeof types[0])

static void run(size_t n, int reps, uint8_t *const *srcs, const float *msrc, float *dst)
{
    double out = (double)n * sizeof(float);
    printf("-- %.0f KiB of float32 output%s\n", out / 1024, reps > 1 ? " (cache-resident, repeated)" : "");
    double t = best_of_5(cpy, msrc, dst, n, reps);
    printf("%-6s %-5s %8.2f GB/s  (%.3f ms; reads and writes the size)\n", "memcpy", "", out / t / 1e9, t * 1e3);
    t = best_of_5(set, NULL, dst, n, reps);
    printf("%-6s %-5s %8.2f GB/s  (%.3f ms; write-only)\n", "memset", "", out / t / 1e9, t * 1e3);
    for (size_t k = 0; k < NT; k++) {
        const fm_qtype_traits *tr = fm_qtype_get(types[k]);
        double in = (double)n / tr->block_size * tr->type_size;
        double tref = best_of_5(tr->to_float_ref, srcs[k], dst, n, reps);
        printf("%-6s %-5s %8.2f GB/s  (%.3f ms, input %.2f GB/s)\n", tr->name, "ref", out / tref / 1e9, tref * 1e3,
               in / tref / 1e9);
        if (tr->to_float_avx2 && fm_cpu_has_avx2()) {
            double ta = best_of_5(tr->to_float_avx2, srcs[k], dst, n, reps);
            printf("%-6s %-5s %8.2f GB/s  (%.3f ms, input %.2f GB/s, %.1fx ref)\n", tr->name, "avx2", out / ta / 1e9,
                   ta * 1e3, in / ta / 1e9, tref / ta);
        }
    }
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 64;
    if (mib == 0 || mib > 4096) {
        fprintf(stderr, "usage: %s [MiB of output, 1..4096]\n", argv[0]);
        return 2;
    }
    size_t n = mib << 18; /* floats: mib * 2^20 / 4 */
    float *dst = malloc(n * sizeof(float)), *msrc = malloc(n * sizeof(float));
    if (!dst || !msrc) return 1;
    for (size_t i = 0; i < n; i++) msrc[i] = (float)(rnd() >> 40);
    uint8_t *srcs[NT];
    for (size_t k = 0; k < NT; k++) {
        const fm_qtype_traits *tr = fm_qtype_get(types[k]);
        uint64_t nbytes;
        fm_error e;
        if (fm_qtype_nbytes(types[k], n, &nbytes, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        uint8_t *src = srcs[k] = malloc(nbytes);
        if (!src) return 1;
        for (size_t i = 0; i < nbytes; i++) src[i] = (uint8_t)rnd();
        /* finite scale fields (random bits would give NaN/inf runs) */
        for (size_t b = 0; b < nbytes / tr->type_size; b++) {
            uint8_t *p = src + b * tr->type_size;
            uint16_t d = (uint16_t)(0x1000 + (rnd() & 0x0fff)); /* ~2^-11 .. 2^-10 */
            size_t off = types[k] == FM_Q_Q6_K ? 208 : 0;
            p[off] = (uint8_t)d, p[off + 1] = (uint8_t)(d >> 8);
            if (types[k] == FM_Q_Q4_K) p[2] = (uint8_t)d, p[3] = (uint8_t)(d >> 8);
        }
    }
    printf("dequant: single thread, best of 5; AVX2/FMA/F16C: %s\n", fm_cpu_has_avx2() ? "yes" : "no");
    run(n, 1, srcs, msrc, dst);
    run((size_t)128 << 10, 32, srcs, msrc, dst);
    for (size_t k = 0; k < NT; k++) free(srcs[k]);
    free(dst);
    free(msrc);
    return 0;
}
