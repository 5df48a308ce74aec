/* AVX2 twin of fm_repack_dot_q4_K_ref (runtime/kernels_repack.c): the integer
 * sums with SIMD (exact), the float steps scalar fmaf in the same order. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "formats/quant.h"
#include "formats/quant_blocks.h"
#include "runtime/kernels_repack.h"

static inline int32_t hsum_i32x8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Q4_K's 12 packed bytes -> u[0..1] = the 8 6-bit scales, u[2..3] = the 8
 * mins, one per byte (as ggml unpacks them). */
static inline void q4k_unpack(const uint8_t *scales, uint32_t u[4])
{
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    memcpy(u, scales, 12);
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = uaux;
    u[0] &= kmask1;
}

#ifndef PF_AHEAD
#define PF_AHEAD 3072
#endif

/* Per block of the gemv order: prefetch ahead (rows are contiguous, so this
 * runs into the next rows, as the tile kernels in kernels_avx2.c do; a
 * prefetch never faults) and the 8 scales / 8 mins as int16. */
static inline __attribute__((always_inline)) void gemv_block_head(const fm_block_q4_K *x, __m128i *sc16,
                                                                  __m128i *mn16)
{
    const char *pf = (const char *)x + PF_AHEAD;
    _mm_prefetch(pf, _MM_HINT_T0);
    _mm_prefetch(pf + 64, _MM_HINT_T0);
    _mm_prefetch(pf + 128, _MM_HINT_T0);
    uint32_t u[4];
    q4k_unpack(x->scales, u); /* u[0..1]: the 8 scales, u[2..3]: the 8 mins (bytes) */
    *sc16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)((uint64_t)u[0] | ((uint64_t)u[1] << 32))));
    *mn16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)((uint64_t)u[2] | ((uint64_t)u[3] << 32))));
}

/* ... and its float steps, given the block's exact integer sum: the mins'
 * sum (bsums pairs x mins), then the two fmaf of fm_repack_dot_q4_K_ref. */
static inline __attribute__((always_inline)) void gemv_block_tail(const fm_block_q4_K *x, const fm_block_q8_K *y,
                                                                  __m128i mn16, int32_t isum, float *acc,
                                                                  float *accm)
{
    /* bsums: 16 int16, pairs summed -> 8 sums matching the 8 mins */
    const __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
    const __m128i bsp = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    __m128i mins = _mm_madd_epi16(mn16, bsp);
    mins = _mm_add_epi32(mins, _mm_shuffle_epi32(mins, 0x4e));
    mins = _mm_add_epi32(mins, _mm_shuffle_epi32(mins, 0xb1));
    const int32_t imin = _mm_cvtsi128_si32(mins);
    *acc = fmaf((float)isum, _cvtsh_ss(x->d) * y->d, *acc);
    *accm = fmaf((float)imin, _cvtsh_ss(x->dmin) * y->d, *accm);
}

/* The gemv order needs only each super-block's whole integer sums: one
 * horizontal add per block, the mins' sum by one madd. */
static float gemv_q4_K(size_t nb, const fm_block_q4_K *x, const fm_block_q8_K *y)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    /* pshufb masks: int16 scale k (bytes 2k, 2k+1 of the 8 int16 scales) in every lane */
    __m256i ks[8];
    for (int k = 0; k < 8; k++) ks[k] = _mm256_set1_epi16((short)((2 * k) | ((2 * k + 1) << 8)));
    float acc = 0.0f, accm = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        __m128i sc16, mn16;
        gemv_block_head(x + b, &sc16, &mn16);
        const __m256i scv = _mm256_broadcastsi128_si256(sc16);
        __m256i iacc = _mm256_setzero_si256();
        for (int sb = 0; sb < 4; sb++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * sb));
            const __m256i lo = _mm256_and_si256(raw, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            const __m256i a0 = _mm256_loadu_si256((const __m256i *)(y[b].qs + 64 * sb));
            const __m256i a1 = _mm256_loadu_si256((const __m256i *)(y[b].qs + 64 * sb + 32));
            /* u4 * s8 pair sums fit int16 (<= 2*15*128); times the 6-bit scale in int32 */
            iacc = _mm256_add_epi32(iacc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_shuffle_epi8(scv, ks[2 * sb])));
            iacc = _mm256_add_epi32(iacc,
                                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), _mm256_shuffle_epi8(scv, ks[2 * sb + 1])));
        }
        gemv_block_tail(x + b, y + b, mn16, hsum_i32x8(iacc), &acc, &accm);
    }
    return acc - accm;
}

/* The same sums with 512-bit vectors: per step, 64 weight bytes = the
 * sub-blocks (4p, 4p+2) in the low nibbles and (4p+1, 4p+3) in the high
 * ones, against the matching halves of 128 activations; exact int32 lanes,
 * reduced per block, then the same two scalar fmaf. */
__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl"))) static float
gemv_q4_K_512(size_t nb, const fm_block_q4_K *x, const fm_block_q8_K *y)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i il[2], ih[2];
    for (int p = 0; p < 2; p++) {
        il[p] = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * p)), _mm256_set1_epi16((short)(4 * p + 2)), 1);
        ih[p] = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * p + 1)), _mm256_set1_epi16((short)(4 * p + 3)), 1);
    }
    float acc = 0.0f, accm = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        __m128i sc16, mn16;
        gemv_block_head(x + b, &sc16, &mn16);
        const __m512i msc = _mm512_castsi128_si512(sc16);
        __m512i sum = _mm512_setzero_si512();
        for (int p = 0; p < 2; p++) {
            const __m512i bits = _mm512_loadu_si512((const void *)(x[b].qs + 64 * p));
            const __m512i ql = _mm512_and_si512(bits, m4);
            const __m512i qh = _mm512_and_si512(_mm512_srli_epi16(bits, 4), m4);
            const __m512i L = _mm512_loadu_si512((const void *)(y[b].qs + 128 * p));
            const __m512i M = _mm512_loadu_si512((const void *)(y[b].qs + 128 * p + 64));
            const __m512i pl = _mm512_madd_epi16(_mm512_permutexvar_epi16(il[p], msc),
                                                 _mm512_maddubs_epi16(ql, _mm512_shuffle_i64x2(L, M, 0x44)));
            const __m512i ph = _mm512_madd_epi16(_mm512_permutexvar_epi16(ih[p], msc),
                                                 _mm512_maddubs_epi16(qh, _mm512_shuffle_i64x2(L, M, 0xEE)));
            sum = _mm512_add_epi32(sum, _mm512_add_epi32(pl, ph));
        }
        gemv_block_tail(x + b, y + b, mn16, _mm512_reduce_add_epi32(sum), &acc, &accm);
    }
    return acc - accm;
}

float fm_repack_dot_q4_K_avx512(size_t nb, const void *vw, const void *vy, int gemm)
{
    if (!gemm) return gemv_q4_K_512(nb, vw, vy);
    return fm_repack_dot_q4_K_avx2(nb, vw, vy, gemm);
}

float fm_repack_dot_q4_K_avx2(size_t nb, const void *vw, const void *vy, int gemm)
{
    const fm_block_q4_K *x = vw;
    const fm_block_q8_K *y = vy;
    if (!gemm) return gemv_q4_K(nb, x, y);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float acc = 0.0f, accm = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        uint32_t u[4];
        q4k_unpack(x[b].scales, u);
        uint8_t sc[8], mn[8];
        memcpy(sc, u, 8);
        memcpy(mn, u + 2, 8);
        const float ds = fm_f16_to_f32(x[b].d) * y[b].d;
        const float dm = fm_f16_to_f32(x[b].dmin) * y[b].d;
        int32_t isum[4], imin[4];
        for (int sb = 0; sb < 4; sb++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * sb));
            const __m256i lo = _mm256_and_si256(raw, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            const __m256i a0 = _mm256_loadu_si256((const __m256i *)(y[b].qs + 64 * sb));
            const __m256i a1 = _mm256_loadu_si256((const __m256i *)(y[b].qs + 64 * sb + 32));
            /* u4 * s8 pair sums fit int16 (<= 2*15*128); times the 6-bit scale in int32 */
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_set1_epi16(sc[2 * sb]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), _mm256_set1_epi16(sc[2 * sb + 1]));
            isum[sb] = hsum_i32x8(_mm256_add_epi32(p0, p1));
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

/* AVX2 twin of fm_tiled_dot_ref: exact integer sums with SIMD, the float
 * steps scalar in the same order (fmaf is one vfmadd here). */
float fm_tiled_dot_avx2(uint32_t qtype, size_t nb, const void *vw, const void *vy)
{
    const fm_block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    float acc = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        const int8_t *q8 = y[b].qs;
        float res;
        if (qtype == FM_Q_Q6_K) {
            const fm_block_q6_K *x = (const fm_block_q6_K *)vw + b;
            __m256i iacc = _mm256_setzero_si256();
            int32_t bias = 0;
            for (int sb = 0; sb < 16; sb++) bias += x->scales[sb] * y[b].bsums[sb];
            for (int h = 0; h < 2; h++) {
                const __m256i QL0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
                const __m256i QL1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
                const __m256i QH = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
                __m256i c[4];
                c[0] = _mm256_or_si256(_mm256_and_si256(QL0, m4), _mm256_and_si256(_mm256_slli_epi16(QH, 4), m30));
                c[1] = _mm256_or_si256(_mm256_and_si256(QL1, m4), _mm256_and_si256(_mm256_slli_epi16(QH, 2), m30));
                c[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(QL0, 4), m4), _mm256_and_si256(QH, m30));
                c[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(QL1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(QH, 2), m30));
                for (int k = 0; k < 4; k++) {
                    const int s0 = 8 * h + 2 * k;
                    const __m256i a = _mm256_loadu_si256((const __m256i *)(q8 + 128 * h + 32 * k));
                    const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(x->scales[s0 + 1]), _mm_set1_epi16(x->scales[s0]));
                    /* u6 * s8 pair sums <= 2*63*128: int16 exact */
                    iacc = _mm256_add_epi32(iacc, _mm256_madd_epi16(_mm256_maddubs_epi16(c[k], a), sc));
                }
            }
            const int32_t isum = hsum_i32x8(iacc) - 32 * bias;
            res = (float)isum * fm_f16_to_f32(x->d);
        } else {
            const fm_block_q4_K *x = (const fm_block_q4_K *)vw + b;
            uint32_t u[4];
            q4k_unpack(x->scales, u);
            uint8_t sc[8], mn[8];
            memcpy(sc, u, 8);
            memcpy(mn, u + 2, 8);
            __m256i iacc = _mm256_setzero_si256();
            for (int j = 0; j < 4; j++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * j));
                const __m256i lo = _mm256_and_si256(raw, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                const __m256i a0 = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j));
                const __m256i a1 = _mm256_loadu_si256((const __m256i *)(q8 + 64 * j + 32));
                iacc = _mm256_add_epi32(iacc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_set1_epi16(sc[2 * j])));
                iacc = _mm256_add_epi32(iacc,
                                        _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), _mm256_set1_epi16(sc[2 * j + 1])));
            }
            int32_t imin = 0;
            for (int j = 0; j < 8; j++) imin += mn[j] * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
            res = fmaf(-fm_f16_to_f32(x->dmin), (float)imin, (float)hsum_i32x8(iacc) * fm_f16_to_f32(x->d));
        }
        acc = fmaf(res, y[b].d, acc);
    }
    return acc;
}
