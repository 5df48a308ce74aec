/* Matmul kernels: scalar twins, activation quantizers, the threaded driver.
 *
 * Q8 mode semantics (see runtime/kernels.h). For every integer kernel the
 * float result is defined by ggml's AVX2 kernel structure: per block (or
 * super-block) eight int32 lanes, lane k collecting the products of the
 * elements e with (e mod 32) / 4 == k (times their sub-block scales), then
 * acc[k] = fma(d, (float)lane[k], acc[k]) and a fixed horizontal sum
 * ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). The scalar twins below compute the
 * same integers in plain C (integer sums are exact in any order) and the same
 * float operations with fmaf, so scalar and AVX2 agree bit for bit. */
#include "runtime/kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "formats/quant.h"
#include "formats/util.h"
#include "runtime/kernels_impl.h"
#include "runtime/kernels_repack.h"

/* ------------------------------------------------------------------ */
/* mode and SIMD state                                                 */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static atomic_int g_mode;  /* fm_kernel_mode */
static atomic_int g_level; /* SIMD level in use: 0 scalar, 1 AVX2, 2 AVX-512VL+VNNI */
static int g_level_hw;     /* best level this CPU (and the environment) allows */

static bool env_set(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

float fm_kern_f16_table[65536];

static void fm_kernel_init(void)
{
    for (uint32_t h = 0; h < 65536; h++) fm_kern_f16_table[h] = fm_f16_to_f32((uint16_t)h);
    const char *m = getenv("FM_KERNEL");
    atomic_store(&g_mode, (m != NULL && strcmp(m, "exact") == 0) ? FM_KERNEL_EXACT : FM_KERNEL_Q8);
    g_level_hw = 0;
#if defined(__x86_64__) || defined(__i386__)
    if (fm_cpu_has_avx2() && !env_set("FM_NO_SIMD")) {
        g_level_hw = 1;
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") && !env_set("FM_NO_AVX512"))
            g_level_hw = 2;
    }
#endif
    atomic_store(&g_level, g_level_hw);
}

void fm_kernel_set_mode(fm_kernel_mode m)
{
    pthread_once(&g_once, fm_kernel_init);
    atomic_store(&g_mode, m == FM_KERNEL_EXACT ? FM_KERNEL_EXACT : FM_KERNEL_Q8);
}

fm_kernel_mode fm_kernel_get_mode(void)
{
    pthread_once(&g_once, fm_kernel_init);
    return (fm_kernel_mode)atomic_load(&g_mode);
}

int fm_kernel_simd_level(void)
{
    pthread_once(&g_once, fm_kernel_init);
    return atomic_load(&g_level);
}

int fm_kernel_set_simd_level(int level)
{
    pthread_once(&g_once, fm_kernel_init);
    if (level < 0) level = 0;
    atomic_store(&g_level, level < g_level_hw ? level : g_level_hw);
    return atomic_load(&g_level);
}

bool fm_kernel_simd(void) { return fm_kernel_simd_level() > 0; }

bool fm_kernel_set_simd(bool on) { return fm_kernel_set_simd_level(on ? 2 : 0) > 0; }

static inline float f16f(uint16_t h) { return fm_f16_to_f32(h); }

/* ------------------------------------------------------------------ */
/* activation quantizers (scalar)                                      */

static void quantize_q8_K_scalar(const float *x, void *vy, size_t k)
{
    fm_block_q8_K *y = vy;
    for (size_t i = 0; i < k / FM_QK_K; i++, x += FM_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < FM_QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            y[i].d = 0;
            memset(y[i].qs, 0, sizeof y[i].qs);
            memset(y[i].bsums, 0, sizeof y[i].bsums);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < FM_QK_K; j++) {
            int v = fm_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v > 127 ? 127 : (v < -128 ? -128 : v));
        }
        for (int j = 0; j < FM_QK_K / 16; j++) {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

static inline int8_t sat8(int v) { return (int8_t)(v > 127 ? 127 : (v < -128 ? -128 : v)); }

/* x86 ggml quantize_row_q8_0 / _q8_1 (AVX path) for one 32-block: sets *d,
 * returns the int sum of the rounded values (before int8 saturation). */
static int quantize_block_q8_x86(const float *x, int8_t *qs, float *d)
{
    float amax = 0;
    for (int j = 0; j < 32; j++) {
        float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    *d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        int v = fm_nearest_int(x[j] * id);
        sum += v;
        qs[j] = sat8(v);
    }
    return sum;
}

static void quantize_q8_0_scalar(const float *x, void *vy, size_t k)
{
    fm_block_q8_0 *y = vy;
    for (size_t i = 0; i < k / 32; i++) {
        float d;
        (void)quantize_block_q8_x86(x + 32 * i, y[i].qs, &d);
        y[i].d = fm_f32_to_f16(d);
    }
}

static void quantize_q8_1_scalar(const float *x, void *vy, size_t k)
{
    fm_block_q8_1 *y = vy;
    for (size_t i = 0; i < k / 32; i++) {
        float d;
        int sum = quantize_block_q8_x86(x + 32 * i, y[i].qs, &d);
        y[i].d = fm_f32_to_f16(d);
        y[i].s = fm_f32_to_f16(d * (float)sum);
    }
}

void fm_quantize_q8_0_ref(const float *x, void *vy, size_t k)
{
    fm_block_q8_0 *y = vy;
    for (size_t i = 0; i < k / 32; i++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(x[j]);
            amax = a > amax ? a : amax;
        }
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fm_f32_to_f16(d);
        for (int j = 0; j < 32; j++) {
            float v = roundf(x[j] * id);
            if (!(v >= -128.0f)) v = -128.0f; /* also NaN: defined, unspecified */
            if (v > 127.0f) v = 127.0f;
            y[i].qs[j] = (int8_t)v;
        }
    }
}

void fm_quantize_q8_K(const float *x, void *y, size_t k)
{
    if (fm_kernel_simd()) fm_quantize_q8_K_avx2(x, y, k);
    else quantize_q8_K_scalar(x, y, k);
}
void fm_quantize_q8_0(const float *x, void *y, size_t k)
{
    if (fm_kernel_simd()) fm_quantize_q8_0_avx2(x, y, k);
    else quantize_q8_0_scalar(x, y, k);
}
void fm_quantize_q8_1(const float *x, void *y, size_t k)
{
    if (fm_kernel_simd()) fm_quantize_q8_1_avx2(x, y, k);
    else quantize_q8_1_scalar(x, y, k);
}

/* ------------------------------------------------------------------ */
/* scalar integer-dot twins                                            */

static inline float hsum8(const float a[8])
{
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

static inline void lanes_fma(float acc[8], float d, const int32_t lane[8])
{
    for (int k = 0; k < 8; k++) acc[k] = fmaf(d, (float)lane[k], acc[k]);
}

/* Q4_0 / Q5_0 / Q8_0 / IQ4_NL values of one 32-block, natural order. */
static inline void vals_q4_0(const fm_block_q4_0 *b, int v[32])
{
    for (int j = 0; j < 16; j++) {
        v[j] = (b->qs[j] & 15) - 8;
        v[j + 16] = (b->qs[j] >> 4) - 8;
    }
}
static inline void vals_q4_1(const fm_block_q4_1 *b, int v[32])
{
    for (int j = 0; j < 16; j++) {
        v[j] = b->qs[j] & 15;
        v[j + 16] = b->qs[j] >> 4;
    }
}
static inline void vals_q5_0(const fm_block_q5_0 *b, int v[32])
{
    uint32_t qh = fm_rd_u32le(b->qh);
    for (int j = 0; j < 16; j++) {
        v[j] = ((b->qs[j] & 15) | (int)(((qh >> j) & 1) << 4)) - 16;
        v[j + 16] = ((b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16;
    }
}
static inline void vals_q5_1(const fm_block_q5_1 *b, int v[32])
{
    uint32_t qh = fm_rd_u32le(b->qh);
    for (int j = 0; j < 16; j++) {
        v[j] = (b->qs[j] & 15) | (int)(((qh >> j) & 1) << 4);
        v[j + 16] = (b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
    }
}
static inline void vals_iq4_nl(const fm_block_iq4_nl *b, int v[32])
{
    for (int j = 0; j < 16; j++) {
        v[j] = fm_kern_iq4nl[b->qs[j] & 15];
        v[j + 16] = fm_kern_iq4nl[b->qs[j] >> 4];
    }
}

static inline void lanes32(const int v[32], const int8_t *q8, int32_t lane[8])
{
    for (int k = 0; k < 8; k++) {
        int32_t s = 0;
        for (int j = 4 * k; j < 4 * k + 4; j++) s += v[j] * q8[j];
        lane[k] = s;
    }
}

static float dot1_q4_0(size_t nb, const void *vw, const void *vy)
{
    const fm_block_q4_0 *x = vw;
    const fm_block_q8_0 *y = vy;
    float acc[8] = {0};
    for (size_t i = 0; i < nb; i++) {
        int v[32];
        int32_t lane[8];
        vals_q4_0(&x[i], v);
        lanes32(v, y[i].qs, lane);
        lanes_fma(acc, f16f(x[i].d) * f16f(y[i].d), lane);
    }
    return hsum8(acc);
}

static float dot1_q5_0(size_t nb, const void *vw, const void *vy)
{
    const fm_block_q5_0 *x = vw;
    const fm_block_q8_0 *y = vy;
    float acc[8] = {0};
    for (size_t i = 0; i < nb; i++) {
        int v[32];
        int32_t lane[8];
        vals_q5_0(&x[i], v);
        lanes32(v, y[i].qs, lane);
        lanes_fma(acc, f16f(x[i].d) * f16f(y[i].d), lane);
    }
    return hsum8(acc);
}

static float dot1_q8_0(size_t nb, const void *vw, const void *vy)
{
    const fm_block_q8_0 *x = vw;
    const fm_block_q8_0 *y = vy;
    float acc[8] = {0};
    for (size_t i = 0; i < nb; i++) {
        int v[32];
        int32_t lane[8];
        for (int j = 0; j < 32; j++) v[j] = x[i].qs[j];
        lanes32(v, y[i].qs, lane);
        lanes_fma(acc, f16f(x[i].d) * f16f(y[i].d), lane);
    }
    return hsum8(acc);
}

static float dot1_q4_1(size_t nb, const void *vw, const void *vy)
{
    const fm_block_q4_1 *x = vw;
    const fm_block_q8_1 *y = vy;
    float acc[8] = {0};
    float summs = 0;
    for (size_t i = 0; i < nb; i++) {
        int v[32];
        int32_t lane[8];
        summs += f16f(x[i].m) * f16f(y[i].s);
        vals_q4_1(&x[i], v);
        lanes32(v, y[i].qs, lane);
        lanes_fma(acc, f16f(x[i].d) * f16f(y[i].d), lane);
    }
    return hsum8(acc) + summs;
}

static float dot1_q5_1(size_t nb, const void *vw, const void *vy)
{
    const fm_block_q5_1 *x = vw;
    const fm_block_q8_1 *y = vy;
    float acc[8] = {0};
    float summs = 0;
    for (size_t i = 0; i < nb; i++) {
        int v[32];
        int32_t lane[8];
        summs += f16f(x[i].m) * f16f(y[i].s);
        vals_q5_1(&x[i], v);
        lanes32(v, y[i].qs, lane);
        lanes_fma(acc, f16f(x[i].d) * f16f(y[i].d), lane);
    }
    return hsum8(acc) + summs;
}

/* ggml's AVX2 IQ4_NL kernel: even blocks in one accumulator, odd in another,
 * pairs only; an odd last block is added in scalar after the reduction. */
static float dot1_iq4_nl(size_t nb, const void *vw, const void *vy)
{
    const fm_block_iq4_nl *x = vw;
    const fm_block_q8_0 *y = vy;
    float acc1[8] = {0}, acc2[8] = {0};
    size_t i = 0;
    for (; i + 1 < nb; i += 2) {
        int v[32];
        int32_t lane[8];
        vals_iq4_nl(&x[i], v);
        lanes32(v, y[i].qs, lane);
        lanes_fma(acc1, f16f(y[i].d) * f16f(x[i].d), lane);
        vals_iq4_nl(&x[i + 1], v);
        lanes32(v, y[i + 1].qs, lane);
        lanes_fma(acc2, f16f(y[i + 1].d) * f16f(x[i + 1].d), lane);
    }
    float a[8];
    for (int k = 0; k < 8; k++) a[k] = acc1[k] + acc2[k];
    float sumf = hsum8(a);
    for (; i < nb; i++) {
        int v[32];
        vals_iq4_nl(&x[i], v);
        int32_t s = 0;
        for (int j = 0; j < 32; j++) s += v[j] * y[i].qs[j];
        sumf += (f16f(y[i].d) * f16f(x[i].d)) * (float)s;
    }
    return sumf;
}

/* Q4_K/Q5_K: 8 scales and 8 mins from the 12 packed bytes (ggml's utmp dance). */
static inline void k4_scales(const uint8_t *q, uint8_t sc[8], uint8_t mn[8])
{
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t u[4];
    memcpy(u, q, 12);
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = uaux;
    u[0] &= kmask1;
    memcpy(sc, u, 8);
    memcpy(mn, u + 2, 8);
}

static inline int q4k_minsum4(const fm_block_q8_K *y, const uint8_t mn[8], int32_t prod[4])
{
    int q8s[8];
    for (int t = 0; t < 8; t++) q8s[t] = y->bsums[2 * t] + y->bsums[2 * t + 1];
    int tot = 0;
    for (int m = 0; m < 4; m++) {
        prod[m] = mn[2 * m] * q8s[2 * m] + mn[2 * m + 1] * q8s[2 * m + 1];
        tot += prod[m];
    }
    return tot;
}

static float dot1_q4_K(size_t nb, const void *vw, const void *vy)
{
    const fm_block_q4_K *x = vw;
    const fm_block_q8_K *y = vy;
    float acc[8] = {0}, accm[4] = {0};
    for (size_t i = 0; i < nb; i++) {
        const float d = y[i].d * f16f(x[i].d);
        const float dmin = -y[i].d * f16f(x[i].dmin);
        uint8_t sc[8], mn[8];
        k4_scales(x[i].scales, sc, mn);
        int32_t prod[4];
        (void)q4k_minsum4(&y[i], mn, prod);
        for (int m = 0; m < 4; m++) accm[m] = fmaf(dmin, (float)prod[m], accm[m]);
        int32_t lane[8] = {0};
        const uint8_t *q4 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        for (int j = 0; j < 4; j++)
            for (int b = 0; b < 32; b++) {
                lane[b / 4] += sc[2 * j] * (q4[32 * j + b] & 15) * q8[64 * j + b] +
                               sc[2 * j + 1] * (q4[32 * j + b] >> 4) * q8[64 * j + 32 + b];
            }
        lanes_fma(acc, d, lane);
    }
    return hsum8(acc) + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
}

static float dot1_q5_K(size_t nb, const void *vw, const void *vy)
{
    const fm_block_q5_K *x = vw;
    const fm_block_q8_K *y = vy;
    float acc[8] = {0};
    float summs = 0;
    for (size_t i = 0; i < nb; i++) {
        const float d = y[i].d * f16f(x[i].d);
        const float dmin = -y[i].d * f16f(x[i].dmin);
        uint8_t sc[8], mn[8];
        k4_scales(x[i].scales, sc, mn);
        int32_t prod[4];
        int tot = q4k_minsum4(&y[i], mn, prod);
        summs = fmaf(dmin, (float)tot, summs); /* ggml's build contracts this (gcc -ffp-contract=fast) */
        int32_t lane[8] = {0};
        const uint8_t *q5 = x[i].qs;
        const uint8_t *qh = x[i].qh;
        const int8_t *q8 = y[i].qs;
        for (int j = 0; j < 4; j++)
            for (int b = 0; b < 32; b++) {
                int lo = (q5[32 * j + b] & 15) | (((qh[b] >> (2 * j)) & 1) << 4);
                int hi = (q5[32 * j + b] >> 4) | (((qh[b] >> (2 * j + 1)) & 1) << 4);
                lane[b / 4] += sc[2 * j] * lo * q8[64 * j + b] + sc[2 * j + 1] * hi * q8[64 * j + 32 + b];
            }
        lanes_fma(acc, d, lane);
    }
    return hsum8(acc) + summs;
}

static float dot1_q6_K(size_t nb, const void *vw, const void *vy)
{
    const fm_block_q6_K *x = vw;
    const fm_block_q8_K *y = vy;
    float acc[8] = {0};
    for (size_t i = 0; i < nb; i++) {
        const float d = y[i].d * f16f(x[i].d);
        const int8_t *sc = x[i].scales;
        int32_t lane[8];
        for (int k = 0; k < 8; k++)
            lane[k] = -32 * (y[i].bsums[2 * k] * sc[2 * k] + y[i].bsums[2 * k + 1] * sc[2 * k + 1]);
        const int8_t *q8 = y[i].qs;
        for (int j = 0; j < 2; j++)
            for (int l = 0; l < 4; l++)
                for (int b = 0; b < 32; b++) {
                    const int e = 128 * j + 32 * l + b;
                    const uint8_t ql = x[i].ql[64 * j + 32 * (l & 1) + b];
                    const int nib = l < 2 ? (ql & 15) : (ql >> 4);
                    const int v = nib | (((x[i].qh[32 * j + b] >> (2 * l)) & 3) << 4);
                    lane[b / 4] += sc[e / 16] * v * q8[e];
                }
        lanes_fma(acc, d, lane);
    }
    return hsum8(acc);
}

static inline void q3k_scales(const uint8_t *s12, int sc[16])
{
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[3], e[4];
    memcpy(aux, s12, 12);
    e[0] = (aux[0] & kmask2) | (((aux[2] >> 0) & kmask1) << 4);
    e[1] = (aux[1] & kmask2) | (((aux[2] >> 2) & kmask1) << 4);
    e[2] = ((aux[0] >> 4) & kmask2) | (((aux[2] >> 4) & kmask1) << 4);
    e[3] = ((aux[1] >> 4) & kmask2) | (((aux[2] >> 6) & kmask1) << 4);
    int8_t b[16];
    memcpy(b, e, 16);
    for (int t = 0; t < 16; t++) sc[t] = (int8_t)(b[t] - 32);
}

static float dot1_q3_K(size_t nb, const void *vw, const void *vy)
{
    const fm_block_q3_K *x = vw;
    const fm_block_q8_K *y = vy;
    float acc[8] = {0};
    for (size_t i = 0; i < nb; i++) {
        const float d = y[i].d * f16f(x[i].d);
        int sc[16];
        q3k_scales(x[i].scales, sc);
        int32_t lane[8] = {0};
        const int8_t *q8 = y[i].qs;
        for (int j = 0; j < 2; j++)
            for (int l = 0; l < 4; l++)
                for (int b = 0; b < 32; b++) {
                    const int e = 128 * j + 32 * l + b;
                    int v = (x[i].qs[32 * j + b] >> (2 * l)) & 3;
                    if (!((x[i].hmask[b] >> (4 * j + l)) & 1)) v -= 4;
                    lane[b / 4] += sc[e / 16] * v * q8[e];
                }
        lanes_fma(acc, d, lane);
    }
    return hsum8(acc);
}

static float dot1_q2_K(size_t nb, const void *vw, const void *vy)
{
    const fm_block_q2_K *x = vw;
    const fm_block_q8_K *y = vy;
    float acc[8] = {0};
    for (size_t i = 0; i < nb; i++) {
        const float d = y[i].d * f16f(x[i].d);
        const float dmin = -y[i].d * f16f(x[i].dmin);
        const uint8_t *sc = x[i].scales;
        int32_t prod[8];
        for (int k = 0; k < 8; k++)
            prod[k] = (sc[2 * k] >> 4) * y[i].bsums[2 * k] + (sc[2 * k + 1] >> 4) * y[i].bsums[2 * k + 1];
        lanes_fma(acc, dmin, prod);
        int32_t lane[8] = {0};
        const int8_t *q8 = y[i].qs;
        for (int j = 0; j < 2; j++)
            for (int l = 0; l < 4; l++)
                for (int b = 0; b < 32; b++) {
                    const int e = 128 * j + 32 * l + b;
                    const int v = (x[i].qs[32 * j + b] >> (2 * l)) & 3;
                    lane[b / 4] += (sc[e / 16] & 15) * v * q8[e];
                }
        lanes_fma(acc, d, lane);
    }
    return hsum8(acc);
}

static float dot1_iq4_xs(size_t nb, const void *vw, const void *vy)
{
    const fm_block_iq4_xs *x = vw;
    const fm_block_q8_K *y = vy;
    float acc[8] = {0};
    for (size_t i = 0; i < nb; i++) {
        int32_t lane[8] = {0};
        const int8_t *q8 = y[i].qs;
        for (int s = 0; s < 8; s++) {
            const int ls = (((x[i].scales_l[s / 2] >> (4 * (s & 1))) & 15) |
                            (((x[i].scales_h >> (2 * s)) & 3) << 4)) - 32;
            for (int b = 0; b < 32; b++) {
                const uint8_t q = x[i].qs[16 * s + (b & 15)];
                const int v = fm_kern_iq4nl[b < 16 ? (q & 15) : (q >> 4)];
                lane[b / 4] += ls * v * q8[32 * s + b];
            }
        }
        lanes_fma(acc, f16f(x[i].d) * y[i].d, lane);
    }
    return hsum8(acc);
}

#define FM_QDOT_REF(name)                                                                          \
    static void qdot_##name##_ref(size_t nb, const void *w, const void *xq, size_t xs, int nx,    \
                                  float *out, size_t os)                                          \
    {                                                                                              \
        for (int a = 0; a < nx; a++) out[(size_t)a * os] = dot1_##name(nb, w, (const uint8_t *)xq + (size_t)a * xs); \
    }
FM_QDOT_REF(q4_0)
FM_QDOT_REF(q4_1)
FM_QDOT_REF(q5_0)
FM_QDOT_REF(q5_1)
FM_QDOT_REF(q8_0)
FM_QDOT_REF(iq4_nl)
FM_QDOT_REF(q2_K)
FM_QDOT_REF(q3_K)
FM_QDOT_REF(q4_K)
FM_QDOT_REF(q5_K)
FM_QDOT_REF(q6_K)
FM_QDOT_REF(iq4_xs)

/* ------------------------------------------------------------------ */
/* float kernels (scalar)                                              */

/* Float tiles, the scalar twins of FM_FDOT_TILE in runtime/kernels_avx2.c:
 * one 16-lane accumulator (lanes 0-7 and 8-15) over 16-value steps with
 * fused multiply-adds, one 8-value step, the lanes folded i+8, i+4, i+2, i+1,
 * then the last cols % 8 products added unfused. For cols % 16 == 0 this is
 * also the order of llama.cpp's F32 matmul (llamafile tinyBLAS, AVX-512). */
#define FM_FDOT_SCALAR(name, WT, CONV)                                                            \
    static void name(size_t cols, const void *vw, const float *x, size_t xs, int nx, float *out, \
                     size_t os)                                                                   \
    {                                                                                             \
        const WT *w = vw;                                                                         \
        for (int a = 0; a < nx; a++) {                                                            \
            const float *xa = x + (size_t)a * xs;                                                 \
            float lo[8] = {0}, hi[8] = {0};                                                       \
            size_t c = 0;                                                                         \
            for (; c + 16 <= cols; c += 16)                                                       \
                for (int k = 0; k < 8; k++) {                                                     \
                    lo[k] = fmaf(CONV(w[c + k]), xa[c + k], lo[k]);                               \
                    hi[k] = fmaf(CONV(w[c + 8 + k]), xa[c + 8 + k], hi[k]);                       \
                }                                                                                 \
            for (; c + 8 <= cols; c += 8)                                                         \
                for (int k = 0; k < 8; k++) lo[k] = fmaf(CONV(w[c + k]), xa[c + k], lo[k]);       \
            for (int k = 0; k < 8; k++) lo[k] += hi[k];                                           \
            float s = hsum8(lo);                                                                  \
            for (; c < cols; c++) s += CONV(w[c]) * xa[c];                                        \
            out[(size_t)a * os] = s;                                                              \
        }                                                                                         \
    }

static inline float conv_f32(float v) { return v; }
FM_FDOT_SCALAR(fdot_f32_scalar, float, conv_f32)
FM_FDOT_SCALAR(fdot_f16_scalar, uint16_t, fm_f16_to_f32)
FM_FDOT_SCALAR(fdot_bf16_scalar, uint16_t, fm_bf16_to_f32)

float fm_dot_f32(const float *a, const float *b, size_t n)
{
    if (fm_kernel_simd()) return fm_dot_f32_avx2(a, b, n);
    float out;
    fdot_f32_scalar(n, a, b, 0, 1, &out, 0);
    return out;
}

void fm_axpy_f32(float *y, float a, const float *x, size_t n)
{
    if (fm_kernel_simd()) {
        fm_axpy_f32_avx2(y, a, x, n);
        return;
    }
    for (size_t i = 0; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

/* ------------------------------------------------------------------ */
/* type table                                                          */

typedef struct fm_ktype {
    uint32_t qtype;
    uint32_t act;           /* FM_Q_Q8_K / Q8_0 / Q8_1 */
    fm_qdot_fn ref, avx2, avx512; /* integer kernels; NULL = emulated (quantize, dequantize, float dot) */
} fm_ktype;

static const fm_ktype g_ktypes[] = {
    {FM_Q_Q4_0, FM_Q_Q8_0, qdot_q4_0_ref, fm_qdot_q4_0_avx2, fm_qdot_q4_0_avx512},
    {FM_Q_Q4_1, FM_Q_Q8_1, qdot_q4_1_ref, fm_qdot_q4_1_avx2, fm_qdot_q4_1_avx512},
    {FM_Q_Q5_0, FM_Q_Q8_0, qdot_q5_0_ref, fm_qdot_q5_0_avx2, fm_qdot_q5_0_avx512},
    {FM_Q_Q5_1, FM_Q_Q8_1, qdot_q5_1_ref, fm_qdot_q5_1_avx2, fm_qdot_q5_1_avx512},
    {FM_Q_Q8_0, FM_Q_Q8_0, qdot_q8_0_ref, fm_qdot_q8_0_avx2, fm_qdot_q8_0_avx512},
    {FM_Q_IQ4_NL, FM_Q_Q8_0, qdot_iq4_nl_ref, fm_qdot_iq4_nl_avx2, fm_qdot_iq4_nl_avx512},
    {FM_Q_Q2_K, FM_Q_Q8_K, qdot_q2_K_ref, fm_qdot_q2_K_avx2, fm_qdot_q2_K_avx512},
    {FM_Q_Q3_K, FM_Q_Q8_K, qdot_q3_K_ref, fm_qdot_q3_K_avx2, fm_qdot_q3_K_avx512},
    {FM_Q_Q4_K, FM_Q_Q8_K, qdot_q4_K_ref, fm_qdot_q4_K_avx2, fm_qdot_q4_K_avx512},
    {FM_Q_Q5_K, FM_Q_Q8_K, qdot_q5_K_ref, fm_qdot_q5_K_avx2, fm_qdot_q5_K_avx512},
    {FM_Q_Q6_K, FM_Q_Q8_K, qdot_q6_K_ref, fm_qdot_q6_K_avx2, fm_qdot_q6_K_avx512},
    {FM_Q_IQ4_XS, FM_Q_Q8_K, qdot_iq4_xs_ref, fm_qdot_iq4_xs_avx2, fm_qdot_iq4_xs_avx512},
    /* ggml vec_dot type Q8_K / Q8_0 without an fm integer kernel */
    {FM_Q_IQ2_XXS, FM_Q_Q8_K, NULL, NULL, NULL},
    {FM_Q_IQ2_XS, FM_Q_Q8_K, NULL, NULL, NULL},
    {FM_Q_IQ2_S, FM_Q_Q8_K, NULL, NULL, NULL},
    {FM_Q_IQ3_XXS, FM_Q_Q8_K, NULL, NULL, NULL},
    {FM_Q_IQ3_S, FM_Q_Q8_K, NULL, NULL, NULL},
    {FM_Q_IQ1_S, FM_Q_Q8_K, NULL, NULL, NULL},
    {FM_Q_IQ1_M, FM_Q_Q8_K, NULL, NULL, NULL},
    {FM_Q_TQ1_0, FM_Q_Q8_K, NULL, NULL, NULL},
    {FM_Q_TQ2_0, FM_Q_Q8_K, NULL, NULL, NULL},
    {FM_Q_MXFP4, FM_Q_Q8_0, NULL, NULL, NULL},
    {FM_Q_NVFP4, FM_Q_Q8_0, NULL, NULL, NULL},
    {FM_Q_Q1_0, FM_Q_Q8_0, NULL, NULL, NULL},
};

static fm_qdot_fn qdot_pick(const fm_ktype *kt, int level)
{
    return level >= 2 ? kt->avx512 : level == 1 ? kt->avx2 : kt->ref;
}

static const fm_ktype *ktype_get(uint32_t qtype)
{
    for (size_t i = 0; i < sizeof g_ktypes / sizeof g_ktypes[0]; i++)
        if (g_ktypes[i].qtype == qtype) return &g_ktypes[i];
    return NULL;
}

static size_t act_block(uint32_t act) { return act == FM_Q_Q8_K ? FM_QK_K : 32; }
static size_t act_bytes(uint32_t act)
{
    return act == FM_Q_Q8_K ? sizeof(fm_block_q8_K) : act == FM_Q_Q8_1 ? sizeof(fm_block_q8_1) : sizeof(fm_block_q8_0);
}

static void act_quantize(uint32_t act, const float *x, void *y, size_t k)
{
    if (act == FM_Q_Q8_K) fm_quantize_q8_K(x, y, k);
    else if (act == FM_Q_Q8_1) fm_quantize_q8_1(x, y, k);
    else fm_quantize_q8_0(x, y, k);
}

/* Dequantizes an activation row quantized by act_quantize (for the emulated types). */
static void act_dequantize(uint32_t act, const void *vq, float *x, size_t k)
{
    if (act == FM_Q_Q8_K) {
        const fm_block_q8_K *q = vq;
        for (size_t i = 0; i < k / FM_QK_K; i++)
            for (int j = 0; j < FM_QK_K; j++) x[i * FM_QK_K + j] = q[i].d * (float)q[i].qs[j];
    } else {
        const fm_block_q8_0 *q = vq;
        for (size_t i = 0; i < k / 32; i++) {
            const float d = fm_f16_to_f32(q[i].d);
            for (int j = 0; j < 32; j++) x[i * 32 + j] = d * (float)q[i].qs[j];
        }
    }
}

uint32_t fm_kernel_q8_act_type(uint32_t qtype)
{
    const fm_ktype *kt = ktype_get(qtype);
    return kt != NULL && kt->ref != NULL ? kt->act : 0;
}

float fm_vec_dot_q8(uint32_t qtype, size_t cols, const void *w, const void *xq)
{
    const fm_ktype *kt = ktype_get(qtype);
    const fm_qtype_traits *tr = fm_qtype_get(qtype);
    if (kt == NULL || kt->ref == NULL || tr == NULL || tr->block_size == 0) return 0;
    float out = 0;
    fm_qdot_fn f = qdot_pick(kt, fm_kernel_simd_level());
    f(cols / tr->block_size, w, xq, 0, 1, &out, 0);
    return out;
}

bool fm_kernel_supported(uint32_t qtype)
{
    const fm_qtype_traits *tr = fm_qtype_get(qtype);
    return tr != NULL && tr->to_float_ref != NULL && tr->block_size > 0;
}

/* ------------------------------------------------------------------ */
/* reference matmul                                                    */

void fm_matmul_ref(uint32_t qtype, const void *W, size_t rows, size_t cols, const float *X, size_t n,
                   float *Y)
{
    const fm_qtype_traits *tr = fm_qtype_get(qtype);
    uint64_t stride;
    if (tr == NULL || tr->to_float_ref == NULL || fm_qtype_nbytes(qtype, cols, &stride, NULL) != FM_OK) return;
    float *row = malloc((cols ? cols : 1) * sizeof(float));
    if (row == NULL) return;
    for (size_t r = 0; r < rows; r++) {
        tr->to_float_ref((const uint8_t *)W + r * (size_t)stride, row, cols);
        for (size_t i = 0; i < n; i++) {
            const float *x = X + i * cols;
            double s = 0;
            for (size_t c = 0; c < cols; c++) s += (double)row[c] * (double)x[c];
            Y[i * rows + r] = (float)s;
        }
    }
    free(row);
}

/* ------------------------------------------------------------------ */
/* threaded driver                                                     */

enum { PATH_Q8, PATH_FLOAT, PATH_DEQ };

typedef struct mm_job {
    int path;
    const uint8_t *W;
    size_t rows, cols, wstride, nb;
    size_t n;
    float *Y;
    /* PATH_Q8 */
    fm_qdot_fn qdot;
    const uint8_t *Xq;
    size_t xq_stride;
    /* PATH_FLOAT / PATH_DEQ */
    fm_fdot_fn fdot;
    fm_dequant_fn deq;
    const float *Xf;
    /* quantization pre-pass */
    uint32_t act;
    const float *X;
    uint8_t *Xq_w;
    float *Xf_w; /* dequantized activations (emulated types) */
    /* work split */
    size_t chunk_rows, n_chunks;
    atomic_size_t next;
    atomic_int failed;
    fm_pool *pool;
} mm_job;

/* Rows of one dequantized sub-chunk in the PATH_DEQ scratch (<= 256 KiB). */
static size_t deq_rows(size_t cols, size_t chunk_rows)
{
    size_t r = (256u * 1024u) / (cols * sizeof(float) + 1);
    if (r < 1) r = 1;
    return r < chunk_rows ? r : chunk_rows;
}

static void mm_chunk(mm_job *j, int ith, size_t r0, size_t r1)
{
    const size_t n = j->n, rows = j->rows;
    if (j->path == PATH_Q8) {
        for (size_t a0 = 0; a0 < n; a0 += FM_NX) {
            const int nx = (int)(n - a0 < FM_NX ? n - a0 : FM_NX);
            const uint8_t *xq = j->Xq + a0 * j->xq_stride;
            for (size_t r = r0; r < r1; r++)
                j->qdot(j->nb, j->W + r * j->wstride, xq, j->xq_stride, nx, j->Y + a0 * rows + r, rows);
        }
    } else if (j->path == PATH_FLOAT) {
        for (size_t a0 = 0; a0 < n; a0 += FM_NX) {
            const int nx = (int)(n - a0 < FM_NX ? n - a0 : FM_NX);
            const float *x = j->Xf + a0 * j->cols;
            for (size_t r = r0; r < r1; r++)
                j->fdot(j->cols, j->W + r * j->wstride, x, j->cols, nx, j->Y + a0 * rows + r, rows);
        }
    } else {
        const size_t sub = deq_rows(j->cols, r1 - r0);
        float *buf = j->pool != NULL ? fm_pool_scratch(j->pool, ith, 1, sub * j->cols * sizeof(float))
                                     : NULL;
        float *own = NULL;
        if (buf == NULL) {
            own = malloc(sub * j->cols * sizeof(float));
            if (own == NULL) {
                atomic_store(&j->failed, 1);
                return;
            }
            buf = own;
        }
        for (size_t s0 = r0; s0 < r1; s0 += sub) {
            const size_t s1 = s0 + sub < r1 ? s0 + sub : r1;
            for (size_t r = s0; r < s1; r++) j->deq(j->W + r * j->wstride, buf + (r - s0) * j->cols, j->cols);
            for (size_t a0 = 0; a0 < n; a0 += FM_NX) {
                const int nx = (int)(n - a0 < FM_NX ? n - a0 : FM_NX);
                const float *x = j->Xf + a0 * j->cols;
                for (size_t r = s0; r < s1; r++)
                    j->fdot(j->cols, buf + (r - s0) * j->cols, x, j->cols, nx, j->Y + a0 * rows + r, rows);
            }
        }
        free(own);
    }
}

static void mm_worker(void *ctx, int ith, int nth)
{
    mm_job *j = ctx;
    /* chunk ith first, then claim the rest dynamically */
    size_t c = (size_t)ith;
    while (c < j->n_chunks) {
        const size_t r0 = c * j->chunk_rows;
        const size_t r1 = r0 + j->chunk_rows < j->rows ? r0 + j->chunk_rows : j->rows;
        mm_chunk(j, ith, r0, r1);
        c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
    }
    (void)nth;
}

/* Quantization pre-pass over activation rows, split by rows. */
static void mm_quant_worker(void *ctx, int ith, int nth)
{
    mm_job *j = ctx;
    const size_t per = (j->n + (size_t)nth - 1) / (size_t)nth;
    const size_t i0 = (size_t)ith * per;
    const size_t i1 = i0 + per < j->n ? i0 + per : j->n;
    for (size_t i = i0; i < i1; i++) {
        act_quantize(j->act, j->X + i * j->cols, j->Xq_w + i * j->xq_stride, j->cols);
        if (j->Xf_w != NULL) act_dequantize(j->act, j->Xq_w + i * j->xq_stride, j->Xf_w + i * j->cols, j->cols);
    }
}

static fm_fdot_fn fdot_for(uint32_t qtype, bool simd)
{
    if (qtype == FM_Q_F32) return simd ? fm_fdot_f32_avx2 : fdot_f32_scalar;
    if (qtype == FM_Q_F16) return simd ? fm_fdot_f16_avx2 : fdot_f16_scalar;
    if (qtype == FM_Q_BF16) return simd ? fm_fdot_bf16_avx2 : fdot_bf16_scalar;
    return NULL;
}

fm_err fm_matmul(fm_pool *pool, uint32_t qtype, const void *W, size_t rows, size_t cols, const float *X,
                 size_t n, float *Y, fm_error *e)
{
    const fm_qtype_traits *tr = fm_qtype_get(qtype);
    if (tr == NULL || tr->to_float_ref == NULL || tr->block_size == 0)
        return fm_error_set(e, FM_E_UNSUPPORTED, "fm_matmul: weight type %u (%s) cannot be dequantized",
                            qtype, tr != NULL ? tr->name : "unknown");
    if (cols % tr->block_size != 0)
        return fm_error_set(e, FM_E_FORMAT, "fm_matmul: %s row of %zu values is not a whole number of %u-value blocks",
                            tr->name, cols, tr->block_size);
    uint64_t wstride, wbytes, nx, ny;
    fm_err rc = fm_qtype_nbytes(qtype, cols, &wstride, e);
    if (rc != FM_OK) return rc;
    if (!fm_mul_u64(wstride, rows, &wbytes) || !fm_mul_u64(n, cols, &nx) || !fm_mul_u64(n, rows, &ny) ||
        wbytes > SIZE_MAX || nx > SIZE_MAX / sizeof(float) || ny > SIZE_MAX / sizeof(float))
        return fm_error_set(e, FM_E_RANGE, "fm_matmul: %s %zu x %zu times %zu rows overflows", tr->name, rows,
                            cols, n);
    if (rows == 0 || n == 0) return FM_OK;
    if (Y == NULL || (cols > 0 && (W == NULL || X == NULL)))
        return fm_error_set(e, FM_E_ARG, "fm_matmul: NULL %s for %s %zu x %zu, n %zu",
                            Y == NULL ? "Y" : W == NULL ? "W" : "X", tr->name, rows, cols, n);
    if (cols == 0) {
        memset(Y, 0, (size_t)ny * sizeof(float));
        return FM_OK;
    }

    const int level = fm_kernel_simd_level();
    const bool simd = level > 0;
    const fm_kernel_mode mode = fm_kernel_get_mode();
    /* llama.cpp repacks Q4_K (rows % 8 == 0) / runs K-quants tiled (n >= 8): its float order */
    if (mode == FM_KERNEL_Q8 && (fm_repack_applies(qtype, rows, cols) || fm_tiled_applies(qtype, rows, cols, n)))
        return fm_matmul_repack(pool, qtype, W, rows, cols, X, n, Y, e);
    const int nth = fm_pool_size(pool);

    mm_job j;
    memset(&j, 0, sizeof j);
    j.W = W;
    j.rows = rows;
    j.cols = cols;
    j.wstride = (size_t)wstride;
    j.nb = cols / tr->block_size;
    j.n = n;
    j.Y = Y;
    j.X = X;
    j.pool = pool;
    atomic_init(&j.next, (size_t)nth);
    atomic_init(&j.failed, 0);

    const fm_ktype *kt = ktype_get(qtype);
    fm_fdot_fn fd = fdot_for(qtype, simd);
    void *own_q = NULL;
    float *own_f = NULL;
    if (fd != NULL) {
        j.path = PATH_FLOAT;
        j.fdot = fd;
        j.Xf = X;
    } else if (mode == FM_KERNEL_Q8 && kt != NULL && cols % act_block(kt->act) == 0) {
        j.act = kt->act;
        j.xq_stride = cols / act_block(kt->act) * act_bytes(kt->act);
        size_t qbytes;
        if (!fm_mul_size(j.xq_stride, n, &qbytes))
            return fm_error_set(e, FM_E_RANGE, "fm_matmul: activation buffer for %zu x %zu overflows", n, cols);
        uint8_t *q = pool != NULL ? fm_pool_scratch(pool, 0, 0, qbytes) : NULL;
        if (q == NULL) q = own_q = malloc(qbytes);
        if (q == NULL)
            return fm_error_set(e, FM_E_NOMEM, "fm_matmul: no memory for %zu bytes of quantized activations", qbytes);
        j.Xq_w = q;
        j.Xq = q;
        if (kt->ref != NULL) {
            j.path = PATH_Q8;
            j.qdot = qdot_pick(kt, level);
        } else {
            j.path = PATH_DEQ;
            j.deq = fm_qtype_dequant_fn(qtype);
            if (!simd) j.deq = tr->to_float_ref;
            j.fdot = fdot_for(FM_Q_F32, simd);
            own_f = malloc((size_t)nx * sizeof(float));
            if (own_f == NULL) {
                free(own_q);
                return fm_error_set(e, FM_E_NOMEM, "fm_matmul: no memory for %zu x %zu activations", n, cols);
            }
            j.Xf_w = own_f;
            j.Xf = own_f;
        }
        if (n >= 4 && nth > 1) fm_pool_run(pool, mm_quant_worker, &j);
        else mm_quant_worker(&j, 0, 1);
    } else {
        j.path = PATH_DEQ;
        j.deq = simd ? fm_qtype_dequant_fn(qtype) : tr->to_float_ref;
        j.fdot = fdot_for(FM_Q_F32, simd);
        j.Xf = X;
    }

    /* Row chunks: about 8 per thread for dynamic balance, at least 16 rows, and
     * for prompt batches small enough that a chunk of weights stays in L2. */
    size_t cr = rows / ((size_t)nth * 8);
    if (cr < 16) cr = 16;
    if (n > 1) {
        size_t l2 = (256u * 1024u) / (j.wstride + 1);
        if (l2 < 4) l2 = 4;
        if (cr > l2) cr = l2;
    }
    if (cr > rows) cr = rows;
    j.chunk_rows = cr;
    j.n_chunks = (rows + cr - 1) / cr;
    if (nth > 1 && j.n_chunks > 1) fm_pool_run(pool, mm_worker, &j);
    else mm_worker(&j, 0, 1);

    free(own_q);
    free(own_f);
    if (atomic_load(&j.failed))
        return fm_error_set(e, FM_E_NOMEM, "fm_matmul: no memory for the dequantization scratch (%s, %zu columns)",
                            tr->name, cols);
    return FM_OK;
}
