/* x86 SIMD kernels (this file is compiled with -mavx2 -mfma -mf16c; called
 * only after fm_kernel_simd(), the AVX-512 set only at level 2). Each integer
 * kernel follows ggml's AVX2 ggml_vec_dot_<type>_q8_<x> operation for
 * operation in its float part, so it equals both that function and the scalar
 * twin in runtime/kernels.c bit for bit. The tile versions unpack each weight
 * block once and apply it to up to FM_NX activation rows (4 per pass in the
 * AVX2 set, 8 in the AVX-512 set); per activation row the operations are
 * unchanged. The integer tiles live in runtime/kernels_qdot_x86.h, included
 * twice below (AVX2 set, then under an AVX-512 target pragma). */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "runtime/kernels_impl.h"

#define FM_AI static inline __attribute__((always_inline))
#define FM_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* full unrolling of the small constant loops (activation rows, sub-blocks),
 * so that the per-row accumulators live in registers */
#define FM_UNROLL _Pragma("GCC unroll 8")

/* ---- helpers (ggml's, same operations) ---- */

FM_AI float hsum_ps(__m256 x)
{
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

FM_AI float hsum_ps4(__m128 m)
{
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

FM_AI int hsum_i32_8(__m256i a)
{
    const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    const __m128i h = _mm_add_epi32(_mm_unpackhi_epi64(s, s), s);
    return _mm_cvtsi128_si32(_mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1))));
}

FM_AI __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
FM_AI __m128i loadu128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

FM_AI float f16(uint16_t h) { return fm_kern_f16_table[h]; }

/* 32 nibbles -> 32 bytes: low nibbles of bytes 0..15 first, then high. */
FM_AI __m256i bytes_from_nibbles_32(const uint8_t *p)
{
    const __m128i t = loadu128(p);
    return _mm256_and_si256(_mm256_set1_epi8(0xF), _mm256_set_m128i(_mm_srli_epi16(t, 4), t));
}

/* bit j of the 32-bit word at p -> byte j = 0xFF or 0x00 */
FM_AI __m256i bytes_from_bits_32(const uint8_t *p)
{
    uint32_t x32;
    memcpy(&x32, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x32), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* Software prefetch of the weight block FM_PF_BYTES ahead (one line per 64
 * bytes of a block): the row is one sequential stream, but the hardware
 * prefetcher alone leaves DRAM bandwidth unused when the kernel is nearly as
 * fast as memory. Prefetches never fault, so reading past the matrix is fine. */
#define FM_PF_BYTES 3072
#define FM_PREFETCH_BLOCKS(p, bytes)                                                               \
    do {                                                                                           \
        const char *pf_ = (const char *)(p) + FM_PF_BYTES;                                         \
        for (size_t o_ = 0; o_ < (bytes); o_ += 64) _mm_prefetch(pf_ + o_, _MM_HINT_T0);          \
    } while (0)

#define Y_AT(T, a, i) ((const T *)(xq + (size_t)(a) * xs) + (i))

/* nx <= FM_NX_WIDE in one weight pass when the set has 32 vector registers
 * (FM_VNNI build), else in passes of 4. */
#define FM_TILE_DISPATCH(name)                                                                     \
    void FM_SFX(fm_qdot_##name)(size_t nb, const void *w, const void *xqv, size_t xs, int nx,     \
                               float *out, size_t os)                                             \
    {                                                                                              \
        const uint8_t *xq = xqv;                                                                   \
        while (nx > 0) {                                                                           \
            int step = 4;                                                                          \
            switch (FM_VNNI ? nx : (nx > 4 ? 4 : nx)) {                                            \
            case 1: TILE(name)(nb, w, xq, xs, 1, out, os); return;                                \
            case 2: TILE(name)(nb, w, xq, xs, 2, out, os); return;                                \
            case 3: TILE(name)(nb, w, xq, xs, 3, out, os); return;                                \
            case 4: TILE(name)(nb, w, xq, xs, 4, out, os); break;                                 \
            case 5: TILE(name)(nb, w, xq, xs, FM_VNNI ? 5 : 4, out, os); return;                  \
            case 6: TILE(name)(nb, w, xq, xs, FM_VNNI ? 6 : 4, out, os); return;                  \
            case 7: TILE(name)(nb, w, xq, xs, FM_VNNI ? 7 : 4, out, os); return;                  \
            default: TILE(name)(nb, w, xq, xs, FM_VNNI ? 8 : 4, out, os); step = FM_VNNI ? 8 : 4; break; \
            }                                                                                      \
            nx -= step;                                                                            \
            xq += (size_t)step * xs;                                                               \
            out += (size_t)step * os;                                                              \
        }                                                                                          \
    }

/* ---- activation quantizers ---- */

/* One 32-block the way ggml's x86 quantize_row_q8_0 does it; returns the int
 * sum of the rounded values (for Q8_1) and d. */
FM_AI int q8_block_x86(const float *x, int8_t *qs, float *dout)
{
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, v0);
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v1));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v2));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v3));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    *dout = amax / 127.f;
    const __m256 mul = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), FM_RNE));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), FM_RNE));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), FM_RNE));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), FM_RNE));
    const int sum = hsum_i32_8(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    i0 = _mm256_packs_epi32(i0, i1);
    i2 = _mm256_packs_epi32(i2, i3);
    i0 = _mm256_packs_epi16(i0, i2);
    i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)qs, i0);
    return sum;
}

void fm_quantize_q8_0_avx2(const float *x, void *vy, size_t k)
{
    fm_block_q8_0 *y = vy;
    for (size_t i = 0; i < k / 32; i++) {
        float d;
        (void)q8_block_x86(x + 32 * i, y[i].qs, &d);
        y[i].d = _cvtss_sh(d, 0);
    }
}

void fm_quantize_q8_1_avx2(const float *x, void *vy, size_t k)
{
    fm_block_q8_1 *y = vy;
    for (size_t i = 0; i < k / 32; i++) {
        float d;
        const int sum = q8_block_x86(x + 32 * i, y[i].qs, &d);
        y[i].d = _cvtss_sh(d, 0);
        y[i].s = _cvtss_sh(d * (float)sum, 0);
    }
}

/* ggml quantize_row_q8_K_ref, vectorized: the sign of the first element of
 * largest magnitude sets the scale; nearest_int == round-half-even; values are
 * clamped to int8 (packs) and bsums are the sums of the stored bytes. */
void fm_quantize_q8_K_avx2(const float *x, void *vy, size_t k)
{
    fm_block_q8_K *y = vy;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (size_t i = 0; i < k / FM_QK_K; i++, x += FM_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < FM_QK_K; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (!(amax > 0.0f)) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = amax;
        const __m256 va = _mm256_set1_ps(amax);
        for (int j = 0; j < FM_QK_K; j += 8) {
            const __m256 v = _mm256_loadu_ps(x + j);
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, v), va, _CMP_EQ_OQ));
            if (mask) {
                max = x[j + __builtin_ctz((unsigned)mask)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        int8_t *qs = y[i].qs;
        for (int j = 0; j < FM_QK_K; j += 32) {
            __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(mul, _mm256_loadu_ps(x + j)), FM_RNE));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(mul, _mm256_loadu_ps(x + j + 8)), FM_RNE));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(mul, _mm256_loadu_ps(x + j + 16)), FM_RNE));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(mul, _mm256_loadu_ps(x + j + 24)), FM_RNE));
            i0 = _mm256_packs_epi32(i0, i1);
            i2 = _mm256_packs_epi32(i2, i3);
            i0 = _mm256_packs_epi16(i0, i2);
            i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(qs + j), i0);
            /* bsums of the two 16-byte groups */
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), i0), _mm256_set1_epi16(1));
            s = _mm256_hadd_epi32(s, s);
            s = _mm256_hadd_epi32(s, s);
            y[i].bsums[j / 16] = (int16_t)_mm256_extract_epi32(s, 0);
            y[i].bsums[j / 16 + 1] = (int16_t)_mm256_extract_epi32(s, 4);
        }
        y[i].d = 1 / iscale;
    }
}

/* ---- helpers of the integer tiles ---- */

FM_AI __m256i iq4nl_bytes(const uint8_t *qs, __m128i values)
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i b = loadu128(qs);
    return _mm256_set_m128i(_mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16(b, 4), m4)),
                            _mm_shuffle_epi8(values, _mm_and_si128(b, m4)));
}

static const uint8_t k_shuffle_q3k[128] = {
    0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
    4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7,
    8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11,
    12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15,
};

FM_AI __m256i shuffle_q3k(int i) { return loadu256(k_shuffle_q3k + 32 * i); }

/* 16-bit broadcast of scale i across all 16 words (ggml get_scale_shuffle_k4) */
FM_AI __m256i shuffle_k4(int i) { return _mm256_set1_epi16((short)(((2 * i + 1) << 8) | (2 * i))); }

/* int8 scale 2i in words 0..7 and 2i+1 in words 8..15 (ggml get_scale_shuffle) */
FM_AI __m128i shuffle_q6k(int i)
{
    return _mm_set_epi64x((long long)(0x0101010101010101ull * (uint64_t)(2 * i + 1)),
                          (long long)(0x0101010101010101ull * (uint64_t)(2 * i)));
}

FM_AI const int8_t *q8k_qs(const fm_block_q8_K *y) { return (const int8_t *)y + offsetof(fm_block_q8_K, qs); }

FM_AI __m256i q8k_bsums(const fm_block_q8_K *y) { return loadu256((const uint8_t *)y + offsetof(fm_block_q8_K, bsums)); }

/* The 8 6-bit scales (words 0..7) and 8 mins (words 8..15) of a Q4_K/Q5_K
 * block from its 12 packed bytes: ggml's utmp[] shuffle done in one xmm
 * (dword 0 = scales 0-3 = u0 & 0x3f.., dword 1 = scales 4-7 = (u2 & 0x0f..) |
 * ((u0 >> 2) & 0x30..), dword 2 = mins 0-3 = u1 & 0x3f.., dword 3 = mins 4-7 =
 * ((u2 >> 4) & 0x0f..) | ((u1 >> 2) & 0x30..)). Reads 16 bytes: the 4 after
 * the scales are the block's own qh/qs bytes. */
FM_AI __m256i k4_mins_and_scales(const uint8_t *s12)
{
    const __m128i v = loadu128(s12);
    const __m128i a = _mm_srlv_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0)), _mm_set_epi32(4, 0, 0, 0));
    const __m128i b = _mm_srli_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0)), 2);
    const __m128i lo = _mm_and_si128(a, _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
    const __m128i hi = _mm_and_si128(b, _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
    return _mm256_cvtepu8_epi16(_mm_or_si128(lo, hi));
}

/* madd of the 8 mins with the 8 pair sums of bsums -> 4 int32 */
FM_AI __m128i k4_minprod(__m256i mins_and_scales, const fm_block_q8_K *y)
{
    const __m256i q8sums = q8k_bsums(y);
    const __m128i q8s = _mm_hadd_epi16(_mm256_extracti128_si256(q8sums, 0), _mm256_extracti128_si256(q8sums, 1));
    return _mm_madd_epi16(_mm256_extracti128_si256(mins_and_scales, 1), q8s);
}

/* Q6_K 512-bit tiles: per-16-bit-word shift counts for the high bits of chunk
 * pairs (0,1) -> (qh << 4, qh << 2) and (2,3) -> (qh >> 0, qh >> 2), then
 * & 0x30; and the word indices of the sub-block scales of each pair. */
static const int16_t k_q6_shl[32] = {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
                                     2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
static const int16_t k_q6_shr[32] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                     2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
#define Q6I(s) s, s, s, s, s, s, s, s
static const int16_t k_q6_idx[4][32] = {
    {Q6I(0), Q6I(1), Q6I(2), Q6I(3)},
    {Q6I(4), Q6I(5), Q6I(6), Q6I(7)},
    {Q6I(8), Q6I(9), Q6I(10), Q6I(11)},
    {Q6I(12), Q6I(13), Q6I(14), Q6I(15)},
};
#undef Q6I

/* ---- integer tiles: AVX2 set, then AVX-512VL (+VNNI) set ---- */

#define FM_SFX(n) n##_avx2
#define FM_VNNI 0
#include "runtime/kernels_qdot_x86.h"
#undef FM_SFX
#undef FM_VNNI

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#endif
#define FM_SFX(n) n##_avx512
#define FM_VNNI 1
#include "runtime/kernels_qdot_x86.h"
#undef FM_SFX
#undef FM_VNNI
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* ---- float kernels ---- */

FM_AI __m256 load_f16x8(const uint16_t *p) { return _mm256_cvtph_ps(loadu128(p)); }
FM_AI __m256 load_bf16x8(const uint16_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadu128(p)), 16));
}

#define FM_FDOT_TILE(name, WT, LOAD8, SCALAR)                                                      \
    FM_AI void name##_tile(size_t cols, const void *vw, const float *x, size_t xs, const int NX,  \
                           float *out, size_t os)                                                 \
    {                                                                                              \
        const WT *w = vw;                                                                          \
        __m256 acc[FM_NX][2];                                                                      \
        FM_UNROLL for (int a = 0; a < NX; a++) acc[a][0] = acc[a][1] = _mm256_setzero_ps();                  \
        size_t c = 0;                                                                              \
        for (; c + 16 <= cols; c += 16) {                                                          \
            const __m256 w0 = LOAD8(w + c), w1 = LOAD8(w + c + 8);                                 \
            FM_UNROLL for (int a = 0; a < NX; a++) {                                                         \
                acc[a][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + (size_t)a * xs + c), acc[a][0]); \
                acc[a][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + (size_t)a * xs + c + 8), acc[a][1]); \
            }                                                                                      \
        }                                                                                          \
        for (; c + 8 <= cols; c += 8) {                                                            \
            const __m256 w0 = LOAD8(w + c);                                                        \
            FM_UNROLL for (int a = 0; a < NX; a++)                                                           \
                acc[a][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + (size_t)a * xs + c), acc[a][0]); \
        }                                                                                          \
        FM_UNROLL for (int a = 0; a < NX; a++) {                                                             \
            float s = hsum_ps(_mm256_add_ps(acc[a][0], acc[a][1]));                                \
            for (size_t t = c; t < cols; t++) s += SCALAR(w[t]) * x[(size_t)a * xs + t];           \
            out[(size_t)a * os] = s;                                                               \
        }                                                                                          \
    }                                                                                              \
    void fm_fdot_##name##_avx2(size_t cols, const void *w, const float *x, size_t xs, int nx,    \
                               float *out, size_t os)                                             \
    {                                                                                              \
        while (nx > 0) {                                                                           \
            switch (nx) {                                                                          \
            case 1: name##_tile(cols, w, x, xs, 1, out, os); return;                               \
            case 2: name##_tile(cols, w, x, xs, 2, out, os); return;                               \
            case 3: name##_tile(cols, w, x, xs, 3, out, os); return;                               \
            default: name##_tile(cols, w, x, xs, 4, out, os); break;                               \
            }                                                                                      \
            nx -= 4;                                                                               \
            x += 4 * xs;                                                                           \
            out += 4 * os;                                                                         \
        }                                                                                          \
    }

FM_AI float f32_id(float v) { return v; }
FM_AI float f16_sc(uint16_t h) { return _cvtsh_ss(h); }
FM_AI float bf16_sc(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

FM_FDOT_TILE(f32, float, _mm256_loadu_ps, f32_id)
FM_FDOT_TILE(f16, uint16_t, load_f16x8, f16_sc)
FM_FDOT_TILE(bf16, uint16_t, load_bf16x8, bf16_sc)

float fm_dot_f32_avx2(const float *a, const float *b, size_t n)
{
    float out;
    f32_tile(n, a, b, 0, 1, &out, 0);
    return out;
}

void fm_axpy_f32_avx2(float *y, float a, const float *x, size_t n)
{
    const __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}
