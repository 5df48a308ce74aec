/* Private to formats/quant.c and formats/quant_avx2.c: the AVX2 twins'
 * prototypes and the small exact helpers both must share, so that the scalar
 * and SIMD paths compute every scale with identical code. */
#ifndef FM_QUANT_IMPL_H
#define FM_QUANT_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/quant_blocks.h"

#if defined(__x86_64__) || defined(__i386__)
#define FM_QUANT_X86 1
#else
#define FM_QUANT_X86 0
#endif

static inline float fm_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t fm_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Exact binary16 -> binary32. NaNs keep sign and payload (a signalling NaN
 * stays signalling), as numpy's npy_halfbits_to_floatbits does. */
static inline float fm_f16_to_f32_inl(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = h & 0x7fffu;
    if (em >= 0x7c00u) return fm_bits_f32(sign | 0x7f800000u | ((em & 0x3ffu) << 13));
    if (em >= 0x0400u) return fm_bits_f32(sign | ((em << 13) + 0x38000000u));
    /* zero or subnormal: em * 2^-24 is exact and a normal binary32 (or 0) */
    return fm_bits_f32(sign | fm_f32_bits((float)em * 0x1p-24f));
}

/* Q4_K/Q5_K 6-bit scale j and min j from the 12 packed bytes (ggml's
 * get_scale_min_k4). */
static inline void fm_q4k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q3_K scale i (0..15) as the signed value (6-bit field - 32). */
static inline int fm_q3k_scale(int i, const uint8_t *s)
{
    int lo = i < 8 ? (s[i] & 0x0f) : (s[i - 8] >> 4);
    int hi = (s[8 + (i % 4)] >> (2 * (i / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* IQ4_NL / IQ4_XS non-linear codebook. */
static const int8_t fm_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

/* AVX2 + FMA + F16C twins (formats/quant_avx2.c). Only called after
 * fm_cpu_has_avx2(); bit-exact with the _ref functions. */
#if FM_QUANT_X86
void fm_dequant_f16_avx2(const void *src, float *dst, size_t n);
void fm_dequant_bf16_avx2(const void *src, float *dst, size_t n);
void fm_dequant_q4_0_avx2(const void *src, float *dst, size_t n);
void fm_dequant_q8_0_avx2(const void *src, float *dst, size_t n);
void fm_dequant_q2_K_avx2(const void *src, float *dst, size_t n);
void fm_dequant_q3_K_avx2(const void *src, float *dst, size_t n);
void fm_dequant_q4_K_avx2(const void *src, float *dst, size_t n);
void fm_dequant_q5_K_avx2(const void *src, float *dst, size_t n);
void fm_dequant_q6_K_avx2(const void *src, float *dst, size_t n);
void fm_dequant_iq4_nl_avx2(const void *src, float *dst, size_t n);
void fm_dequant_iq4_xs_avx2(const void *src, float *dst, size_t n);
#endif

#endif
