/* llama.cpp's repacked Q4_K gemv/gemm float order; see kernels_repack.h. */
#include "runtime/kernels_repack.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "formats/quant.h"
#include "formats/quant_blocks.h"
#include "formats/util.h"
#include "runtime/kernels.h"

static atomic_int g_repack = -1; /* -1: not read from the environment yet */

static bool repack_on(void)
{
    int v = atomic_load(&g_repack);
    if (v < 0) {
        const char *s = getenv("FM_NO_REPACK");
        v = (s != NULL && s[0] != '\0' && strcmp(s, "0") != 0) ? 0 : 1;
        int expect = -1;
        if (!atomic_compare_exchange_strong(&g_repack, &expect, v)) v = atomic_load(&g_repack);
    }
    return v != 0;
}

bool fm_kernel_set_repack(bool on)
{
    bool prev = repack_on();
    atomic_store(&g_repack, on ? 1 : 0);
    return prev;
}

bool fm_repack_applies(uint32_t qtype, size_t rows, size_t cols)
{
    return qtype == FM_Q_Q4_K && rows % 8 == 0 && cols % FM_QK_K == 0 && cols > 0 && repack_on();
}

/* ggml's Q4_K 6-bit scale/min unpacking (the utmp dance). */
static void q4k_scales(const uint8_t *q, uint8_t sc[8], uint8_t mn[8])
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

float fm_repack_dot_q4_K_ref(size_t nb, const void *vw, const void *vy, int gemm)
{
    const fm_block_q4_K *x = vw;
    const fm_block_q8_K *y = vy;
    float acc = 0.0f, accm = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        uint8_t sc[8], mn[8];
        q4k_scales(x[b].scales, sc, mn);
        const float ds = fm_f16_to_f32(x[b].d) * y[b].d;
        const float dm = fm_f16_to_f32(x[b].dmin) * y[b].d;
        int32_t isum[4], imin[4];
        for (int sb = 0; sb < 4; sb++) {
            int32_t d0 = 0, d1 = 0;
            const uint8_t *q4 = x[b].qs + 32 * sb;
            const int8_t *q8 = y[b].qs + 64 * sb;
            for (int l = 0; l < 32; l++) {
                d0 += (q4[l] & 15) * q8[l];
                d1 += (q4[l] >> 4) * q8[32 + l];
            }
            isum[sb] = sc[2 * sb] * d0 + sc[2 * sb + 1] * d1;
            const int bs0 = y[b].bsums[4 * sb] + y[b].bsums[4 * sb + 1];
            const int bs1 = y[b].bsums[4 * sb + 2] + y[b].bsums[4 * sb + 3];
            imin[sb] = mn[2 * sb] * bs0 + mn[2 * sb + 1] * bs1;
        }
        if (gemm) {
            for (int sb = 0; sb < 4; sb++) {
                acc = fmaf((float)isum[sb], ds, acc);
                accm = fmaf((float)imin[sb], dm, accm);
            }
        } else {
            acc = fmaf((float)(isum[0] + isum[1] + isum[2] + isum[3]), ds, acc);
            accm = fmaf((float)(imin[0] + imin[1] + imin[2] + imin[3]), dm, accm);
        }
    }
    return acc - accm;
}

bool fm_tiled_applies(uint32_t qtype, size_t rows, size_t cols, size_t n)
{
    return (qtype == FM_Q_Q6_K || qtype == FM_Q_Q4_K) && n >= 8 && cols % FM_QK_K == 0 && cols > 0 &&
           !fm_repack_applies(qtype, rows, cols) && repack_on();
}

/* Q6_K: 256 unsigned 6-bit codes in element order. */
static void q6k_codes(const fm_block_q6_K *x, int q[256])
{
    const uint8_t *ql = x->ql, *qh = x->qh;
    for (int h = 0; h < 2; h++) {
        for (int l = 0; l < 32; l++) {
            q[128 * h + l] = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
            q[128 * h + l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            q[128 * h + l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            q[128 * h + l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
        ql += 64;
        qh += 32;
    }
}

float fm_tiled_dot_ref(uint32_t qtype, size_t nb, const void *vw, const void *vy)
{
    const fm_block_q8_K *y = vy;
    float acc = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        const int8_t *q8 = y[b].qs;
        float res;
        if (qtype == FM_Q_Q6_K) {
            const fm_block_q6_K *x = (const fm_block_q6_K *)vw + b;
            int q[256];
            q6k_codes(x, q);
            int32_t isum = 0;
            for (int sb = 0; sb < 16; sb++) {
                int32_t d = 0;
                for (int l = 0; l < 16; l++) d += (q[16 * sb + l] - 32) * q8[16 * sb + l];
                isum += x->scales[sb] * d;
            }
            res = (float)isum * fm_f16_to_f32(x->d);
        } else {
            const fm_block_q4_K *x = (const fm_block_q4_K *)vw + b;
            uint8_t sc[8], mn[8];
            q4k_scales(x->scales, sc, mn);
            int32_t isum = 0, imin = 0;
            for (int j = 0; j < 4; j++) {
                int32_t d0 = 0, d1 = 0;
                for (int l = 0; l < 32; l++) {
                    d0 += (x->qs[32 * j + l] & 15) * q8[64 * j + l];
                    d1 += (x->qs[32 * j + l] >> 4) * q8[64 * j + 32 + l];
                }
                isum += sc[2 * j] * d0 + sc[2 * j + 1] * d1;
            }
            for (int j = 0; j < 8; j++) imin += mn[j] * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
            res = fmaf(-fm_f16_to_f32(x->dmin), (float)imin, (float)isum * fm_f16_to_f32(x->d));
        }
        acc = fmaf(res, y[b].d, acc); /* GCC contracts the add(mul) of the microkernel into an FMA */
    }
    return acc;
}

typedef float (*repack_dot_fn)(size_t nb, const void *w, const void *xq, int gemm);

typedef float (*tiled_dot_fn)(uint32_t qtype, size_t nb, const void *w, const void *xq);

typedef struct {
    repack_dot_fn dot;
    tiled_dot_fn tdot;
    uint32_t tiled; /* 0: repacked gemm/gemv; else the qtype of a tiled matmul */
    const uint8_t *W;
    const uint8_t *Xq;
    float *Y;
    size_t rows, n, n_gemm, nb, wstride, xstride, chunk, n_chunks;
    atomic_size_t next;
} rp_job;

static void rp_chunk(rp_job *j, size_t r0, size_t r1)
{
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *w = j->W + r * j->wstride;
        for (size_t a = 0; a < j->n; a++)
            j->Y[a * j->rows + r] = j->tiled ? j->tdot(j->tiled, j->nb, w, j->Xq + a * j->xstride)
                                             : j->dot(j->nb, w, j->Xq + a * j->xstride, a < j->n_gemm);
    }
}

static void rp_worker(void *ctx, int ith, int nth)
{
    rp_job *j = ctx;
    size_t c = (size_t)ith;
    while (c < j->n_chunks) {
        const size_t r0 = c * j->chunk;
        const size_t r1 = r0 + j->chunk < j->rows ? r0 + j->chunk : j->rows;
        rp_chunk(j, r0, r1);
        c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
    }
    (void)nth;
}

typedef struct {
    const float *X;
    uint8_t *Xq;
    size_t n, cols, xstride;
} rq_job;

static void rq_worker(void *ctx, int ith, int nth)
{
    rq_job *q = ctx;
    const size_t per = (q->n + (size_t)nth - 1) / (size_t)nth;
    const size_t i0 = (size_t)ith * per;
    const size_t i1 = i0 + per < q->n ? i0 + per : q->n;
    for (size_t i = i0; i < i1; i++) fm_quantize_q8_K(q->X + i * q->cols, q->Xq + i * q->xstride, q->cols);
}

fm_err fm_matmul_repack(fm_pool *pool, uint32_t qtype, const void *W, size_t rows, size_t cols,
                        const float *X, size_t n, float *Y, fm_error *e)
{
    const bool rp = fm_repack_applies(qtype, rows, cols);
    if (!rp && !fm_tiled_applies(qtype, rows, cols, n))
        return fm_error_set(e, FM_E_ARG, "fm_matmul_repack: type %u, %zu x %zu, n %zu is neither a repacked Q4_K "
                            "nor a tiled K-quant shape", qtype, rows, cols, n);
    if (rows == 0 || n == 0) return FM_OK;
    if (W == NULL || X == NULL || Y == NULL)
        return fm_error_set(e, FM_E_ARG, "fm_matmul_repack: NULL %s for Q4_K %zu x %zu, n %zu",
                            Y == NULL ? "Y" : W == NULL ? "W" : "X", rows, cols, n);
    const size_t nb = cols / FM_QK_K;
    const size_t xstride = nb * sizeof(fm_block_q8_K);
    size_t qbytes;
    if (!fm_mul_size(xstride, n, &qbytes))
        return fm_error_set(e, FM_E_RANGE, "fm_matmul_repack: activation buffer for %zu x %zu overflows", n, cols);
    uint8_t *xq = pool != NULL ? fm_pool_scratch(pool, 0, 0, qbytes) : NULL;
    uint8_t *own = NULL;
    if (xq == NULL) xq = own = malloc(qbytes);
    if (xq == NULL)
        return fm_error_set(e, FM_E_NOMEM, "fm_matmul_repack: no memory for %zu bytes of quantized activations",
                            qbytes);
    const int nth = fm_pool_size(pool);
    rq_job q = {X, xq, n, cols, xstride};
    if (n >= 4 && nth > 1) fm_pool_run(pool, rq_worker, &q);
    else rq_worker(&q, 0, 1);

    rp_job j;
    memset(&j, 0, sizeof j);
    j.dot = fm_kernel_simd_level() >= 2 ? fm_repack_dot_q4_K_avx512
            : fm_kernel_simd()          ? fm_repack_dot_q4_K_avx2
                                        : fm_repack_dot_q4_K_ref;
    j.tdot = fm_kernel_simd() ? fm_tiled_dot_avx2 : fm_tiled_dot_ref;
    j.tiled = rp ? 0 : qtype;
    j.W = W;
    j.Xq = xq;
    j.Y = Y;
    j.rows = rows;
    j.n = n;
    j.n_gemm = n - n % 4; /* llama.cpp: gemm for whole groups of 4 rows, gemv for the rest */
    j.nb = nb;
    j.wstride = nb * (qtype == FM_Q_Q6_K ? sizeof(fm_block_q6_K) : sizeof(fm_block_q4_K));
    j.xstride = xstride;
    size_t cr = rows / ((size_t)nth * 8);
    if (cr < 16) cr = 16;
    if (cr > rows) cr = rows;
    j.chunk = cr;
    j.n_chunks = (rows + cr - 1) / cr;
    atomic_init(&j.next, (size_t)nth);
    if (nth > 1 && j.n_chunks > 1) fm_pool_run(pool, rp_worker, &j);
    else rp_worker(&j, 0, 1);
    free(own);
    return FM_OK;
}
