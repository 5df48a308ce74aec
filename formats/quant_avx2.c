/* AVX2 twins of the `_ref` dequantizers in formats/quant.c. Built with
 * -mavx2 -mfma -mf16c; called only after fm_cpu_has_avx2().
 *
 * Bit-exactness with `_ref`: the per-(sub)block scales are computed with the
 * same scalar code (formats/quant_impl.h), and every element then gets the
 * same binary32 operations in the same order: a multiply (d * q), followed
 * where the ref has one by a subtract (prod - m). No FMA (the build uses
 * -ffp-contract=off and no fused intrinsic is used). Integer -> float
 * conversions are of small integers and exact. */
#include "formats/quant_impl.h"

#if FM_QUANT_X86

#include <immintrin.h>

/* y[0..7] = vd * (float)q for the 8 int8 in the low half of q8. */
static inline void st_mul_i8(float *y, __m128i q8, __m256 vd)
{
    __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
    _mm256_storeu_ps(y, _mm256_mul_ps(vd, q));
}

/* y[0..7] = vd * (float)q - vm for the 8 uint8 in the low half of q8. */
static inline void st_mulsub_u8(float *y, __m128i q8, __m256 vd, __m256 vm)
{
    __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q8));
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(vd, q), vm));
}

static inline __m128i lo128(__m256i v) { return _mm256_castsi256_si128(v); }
static inline __m128i hi128(__m256i v) { return _mm256_extracti128_si256(v, 1); }
static inline __m128i hi64(__m128i v) { return _mm_srli_si128(v, 8); }

/* ---------------------------------------------------------------- F16/BF16 */

void fm_dequant_f16_avx2(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    const __m128i m7fff = _mm_set1_epi16(0x7fff), inf = _mm_set1_epi16(0x7c00);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(s + 2 * i));
        __m256 f = _mm256_cvtph_ps(h);
        /* vcvtph2ps quiets signalling NaNs; the ref keeps NaN bits as they
         * are, so rebuild NaN lanes with integer ops. */
        __m128i isnan = _mm_cmpgt_epi16(_mm_and_si128(h, m7fff), inf);
        if (_mm_movemask_epi8(isnan)) {
            __m256i w = _mm256_cvtepu16_epi32(h);
            __m256i bits = _mm256_or_si256(
                _mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x8000)), 16),
                _mm256_or_si256(_mm256_set1_epi32(0x7f800000),
                                _mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x3ff)), 13)));
            __m256 m = _mm256_castsi256_ps(_mm256_cvtepi16_epi32(isnan));
            f = _mm256_blendv_ps(f, _mm256_castsi256_ps(bits), m);
        }
        _mm256_storeu_ps(dst + i, f);
    }
    for (; i < n; i++) dst[i] = fm_f16_to_f32_inl((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
}

void fm_dequant_bf16_avx2(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + 2 * i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(w, 16));
    }
    for (; i < n; i++) dst[i] = fm_bits_f32((uint32_t)(s[2 * i] | s[2 * i + 1] << 8) << 16);
}

/* ------------------------------------------------------------ Q4_0, Q8_0 */

void fm_dequant_q4_0_avx2(const void *src, float *y, size_t n)
{
    const fm_block_q4_0 *x = src;
    const __m128i m4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    for (size_t i = 0; i < n / FM_QK4_0; i++, y += FM_QK4_0) {
        __m256 vd = _mm256_set1_ps(fm_f16_to_f32_inl(x[i].d));
        __m128i q = _mm_loadu_si128((const __m128i *)x[i].qs);
        __m128i lo = _mm_sub_epi8(_mm_and_si128(q, m4), eight);
        __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight);
        st_mul_i8(y + 0, lo, vd);
        st_mul_i8(y + 8, hi64(lo), vd);
        st_mul_i8(y + 16, hi, vd);
        st_mul_i8(y + 24, hi64(hi), vd);
    }
}

void fm_dequant_q8_0_avx2(const void *src, float *y, size_t n)
{
    const fm_block_q8_0 *x = src;
    for (size_t i = 0; i < n / FM_QK8_0; i++, y += FM_QK8_0) {
        __m256 vd = _mm256_set1_ps(fm_f16_to_f32_inl(x[i].d));
        __m256i q = _mm256_loadu_si256((const __m256i *)x[i].qs);
        __m128i a = lo128(q), b = hi128(q);
        st_mul_i8(y + 0, a, vd);
        st_mul_i8(y + 8, hi64(a), vd);
        st_mul_i8(y + 16, b, vd);
        st_mul_i8(y + 24, hi64(b), vd);
    }
}

/* ------------------------------------------------------------------ K quants */

/* 32 uint8 values (0..255) -> y[0..31] = vd*q - vm, with one scale pair for
 * each 16 (vd0/vm0 for the first 16, vd1/vm1 for the rest). */
static inline void st32_mulsub(float *y, __m256i q, __m256 vd0, __m256 vm0, __m256 vd1, __m256 vm1)
{
    __m128i a = lo128(q), b = hi128(q);
    st_mulsub_u8(y + 0, a, vd0, vm0);
    st_mulsub_u8(y + 8, hi64(a), vd0, vm0);
    st_mulsub_u8(y + 16, b, vd1, vm1);
    st_mulsub_u8(y + 24, hi64(b), vd1, vm1);
}

void fm_dequant_q2_K_avx2(const void *src, float *y, size_t n)
{
    const fm_block_q2_K *x = src;
    const __m256i m3 = _mm256_set1_epi8(3);
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d), dmin = fm_f16_to_f32_inl(x[i].dmin);
        float dl[16], ml[16];
        for (int k = 0; k < 16; k++) {
            dl[k] = d * (float)(x[i].scales[k] & 0x0f);
            ml[k] = dmin * (float)(x[i].scales[k] >> 4);
        }
        for (int h = 0; h < 2; h++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            for (int s = 0; s < 4; s++, y += 32) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), m3);
                int is = 8 * h + 2 * s;
                st32_mulsub(y, v, _mm256_set1_ps(dl[is]), _mm256_set1_ps(ml[is]), _mm256_set1_ps(dl[is + 1]),
                            _mm256_set1_ps(ml[is + 1]));
            }
        }
    }
}

void fm_dequant_q3_K_avx2(const void *src, float *y, size_t n)
{
    const fm_block_q3_K *x = src;
    const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        float dl[16];
        for (int k = 0; k < 16; k++) dl[k] = d * (float)fm_q3k_scale(k, x[i].scales);
        __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        for (int h = 0; h < 2; h++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            for (int s = 0; s < 4; s++, y += 32) {
                __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), m3);
                __m256i bit = _mm256_set1_epi8((char)(1u << (4 * h + s)));
                __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
                __m256i v = _mm256_sub_epi8(lo, _mm256_andnot_si256(set, four)); /* -4..3 */
                int is = 8 * h + 2 * s;
                __m256 d0 = _mm256_set1_ps(dl[is]), d1 = _mm256_set1_ps(dl[is + 1]);
                __m128i a = lo128(v), b = hi128(v);
                st_mul_i8(y + 0, a, d0);
                st_mul_i8(y + 8, hi64(a), d0);
                st_mul_i8(y + 16, b, d1);
                st_mul_i8(y + 24, hi64(b), d1);
            }
        }
    }
}

void fm_dequant_q4_K_avx2(const void *src, float *y, size_t n)
{
    const fm_block_q4_K *x = src;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d), dmin = fm_f16_to_f32_inl(x[i].dmin);
        for (int c = 0; c < 4; c++, y += 64) {
            uint8_t sc, m;
            fm_q4k_scale_min(2 * c, x[i].scales, &sc, &m);
            __m256 d1 = _mm256_set1_ps(d * (float)sc), m1 = _mm256_set1_ps(dmin * (float)m);
            fm_q4k_scale_min(2 * c + 1, x[i].scales, &sc, &m);
            __m256 d2 = _mm256_set1_ps(d * (float)sc), m2 = _mm256_set1_ps(dmin * (float)m);
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * c));
            st32_mulsub(y, _mm256_and_si256(q, m4), d1, m1, d1, m1);
            st32_mulsub(y + 32, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4), d2, m2, d2, m2);
        }
    }
}

void fm_dequant_q5_K_avx2(const void *src, float *y, size_t n)
{
    const fm_block_q5_K *x = src;
    const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d), dmin = fm_f16_to_f32_inl(x[i].dmin);
        __m256i qh = _mm256_loadu_si256((const __m256i *)x[i].qh);
        for (int c = 0; c < 4; c++, y += 64) {
            uint8_t sc, m;
            fm_q4k_scale_min(2 * c, x[i].scales, &sc, &m);
            __m256 d1 = _mm256_set1_ps(d * (float)sc), m1 = _mm256_set1_ps(dmin * (float)m);
            fm_q4k_scale_min(2 * c + 1, x[i].scales, &sc, &m);
            __m256 d2 = _mm256_set1_ps(d * (float)sc), m2 = _mm256_set1_ps(dmin * (float)m);
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * c));
            __m256i bl = _mm256_set1_epi8((char)(1u << (2 * c))), bh = _mm256_set1_epi8((char)(1u << (2 * c + 1)));
            __m256i hl = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bl), bl), b4);
            __m256i hh = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bh), bh), b4);
            st32_mulsub(y, _mm256_or_si256(_mm256_and_si256(q, m4), hl), d1, m1, d1, m1);
            st32_mulsub(y + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), hh), d2, m2, d2, m2);
        }
    }
}

void fm_dequant_q6_K_avx2(const void *src, float *y, size_t n)
{
    const fm_block_q6_K *x = src;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        float dl[16];
        for (int k = 0; k < 16; k++) dl[k] = d * (float)x[i].scales[k];
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(x[i].ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            for (int s = 0; s < 4; s++, y += 32) {
                __m256i l = (s & 1) ? ql1 : ql0;
                __m256i lo = _mm256_and_si256(s >= 2 ? _mm256_srli_epi16(l, 4) : l, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * s), m3);
                __m256i v = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), k32); /* -32..31 */
                int is = 8 * h + 2 * s;
                __m256 d0 = _mm256_set1_ps(dl[is]), d1 = _mm256_set1_ps(dl[is + 1]);
                __m128i a = lo128(v), b = hi128(v);
                st_mul_i8(y + 0, a, d0);
                st_mul_i8(y + 8, hi64(a), d0);
                st_mul_i8(y + 16, b, d1);
                st_mul_i8(y + 24, hi64(b), d1);
            }
        }
    }
}

/* ------------------------------------------------------------------ IQ4 */

void fm_dequant_iq4_nl_avx2(const void *src, float *y, size_t n)
{
    const fm_block_iq4_nl *x = src;
    const __m128i tab = _mm_loadu_si128((const __m128i *)fm_kvalues_iq4nl), m4 = _mm_set1_epi8(0x0f);
    for (size_t i = 0; i < n / FM_QK4_NL; i++, y += FM_QK4_NL) {
        __m256 vd = _mm256_set1_ps(fm_f16_to_f32_inl(x[i].d));
        __m128i q = _mm_loadu_si128((const __m128i *)x[i].qs);
        __m128i lo = _mm_shuffle_epi8(tab, _mm_and_si128(q, m4));
        __m128i hi = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(q, 4), m4));
        st_mul_i8(y + 0, lo, vd);
        st_mul_i8(y + 8, hi64(lo), vd);
        st_mul_i8(y + 16, hi, vd);
        st_mul_i8(y + 24, hi64(hi), vd);
    }
}

void fm_dequant_iq4_xs_avx2(const void *src, float *y, size_t n)
{
    const fm_block_iq4_xs *x = src;
    const __m128i tab = _mm_loadu_si128((const __m128i *)fm_kvalues_iq4nl), m4 = _mm_set1_epi8(0x0f);
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        for (int ib = 0; ib < 8; ib++, y += 32) {
            int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) | ((x[i].scales_h >> (2 * ib)) & 3) << 4;
            __m256 vd = _mm256_set1_ps(d * (float)(ls - 32));
            __m128i q = _mm_loadu_si128((const __m128i *)(x[i].qs + 16 * ib));
            __m128i lo = _mm_shuffle_epi8(tab, _mm_and_si128(q, m4));
            __m128i hi = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(q, 4), m4));
            st_mul_i8(y + 0, lo, vd);
            st_mul_i8(y + 8, hi64(lo), vd);
            st_mul_i8(y + 16, hi, vd);
            st_mul_i8(y + 24, hi64(hi), vd);
        }
    }
}

#endif
