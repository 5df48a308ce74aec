/* Quantization types: traits table, exact scalar conversions, `_ref`
 * dequantizers and run-time dispatch to the AVX2 twins.
 *
 * Oracle: gguf-py 0.19.0's numpy gguf.quants.dequantize(), bit for bit in
 * float32. Every `_ref` kernel below performs the same float32 operations in
 * the same order as quants.py does (the order is noted per kernel; it also
 * matches ggml-quants.c's dequantize_row_* unless noted). -ffp-contract=off
 * keeps the compiler from fusing a*b-c into an FMA. */
#include "formats/quant.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "formats/affine.h"
#include "formats/quant_blocks.h"
#include "formats/quant_impl.h"
#include "formats/quant_iq_tables.h"
#include "formats/util.h"

#if FM_QUANT_X86 && defined(__clang__)
#include <cpuid.h>
#endif

/* ------------------------------------------------------------------ scalars */

float fm_f16_to_f32(uint16_t h) { return fm_f16_to_f32_inl(h); }

/* Round to nearest even; overflow -> inf; NaN keeps sign and the top 10
 * payload bits, made non-zero if they are all zero (numpy's
 * npy_floatbits_to_halfbits, i.e. what astype(np.float16) gives). */
uint16_t fm_f32_to_f16(float f)
{
    uint32_t x = fm_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) {
        uint16_t m = (uint16_t)((ax >> 13) & 0x3ffu);
        return (uint16_t)(sign | 0x7c00u | (m ? m : 1u));
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 (and inf) */
    if (ax >= 0x38800000u) { /* normal in binary16 */
        uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);
        return (uint16_t)(sign | ((r >> 13) - (112u << 10)));
    }
    if (ax <= 0x33000000u) return sign; /* <= 2^-25: ties to even zero */
    /* subnormal: value = m * 2^(e-150); in units of 2^-24 that is m >> (126-e) */
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t h = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float fm_bf16_to_f32(uint16_t h) { return fm_bits_f32((uint32_t)h << 16); }

/* ggml_compute_fp32_to_bf16 (= gguf-py BF16.quantize_blocks): NaN -> quiet
 * NaN with the top payload bits, else round to nearest even. */
uint16_t fm_f32_to_bf16(float f)
{
    uint32_t x = fm_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64u);
    return (uint16_t)((x + (0x7fffu + ((x >> 16) & 1u))) >> 16);
}

/* OCP F8 E4M3 ("fn": no inf; S.1111.111 is NaN), decoded as torch 2.x's
 * float8_e4m3fn -> float32 does (NaN -> sign | 0x7ff00000). */
static float f8_e4m3_to_f32(uint8_t b)
{
    uint32_t sign = (uint32_t)(b & 0x80u) << 24;
    uint32_t e = (b >> 3) & 0x0fu, m = b & 7u;
    if (e == 15 && m == 7) return fm_bits_f32(sign | 0x7ff00000u);
    if (e == 0) return fm_bits_f32(sign | fm_f32_bits((float)m * 0x1p-9f));
    return fm_bits_f32(sign | (e + 120u) << 23 | m << 20);
}

/* F8 E5M2 is the top byte of a binary16; torch's float8_e5m2 -> float32 goes
 * through a quieting f16 conversion, so NaNs come out quiet. */
static float f8_e5m2_to_f32(uint8_t b)
{
    uint32_t u = fm_f32_bits(fm_f16_to_f32_inl((uint16_t)(b << 8)));
    if ((u & 0x7fffffffu) > 0x7f800000u) u |= 0x00400000u;
    return fm_bits_f32(u);
}

/* x * (neg ? -1.0f : 1.0f) exactly as a binary32 multiply gives it (what
 * numpy does with its +-1 sign arrays): NaN -> quieted, same sign; else the
 * sign flips. Done in bits so no compiler rewrite (x*-1 -> -x) can differ. */
static inline float mul_pm1(float x, unsigned neg)
{
    uint32_t u = fm_f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return fm_bits_f32(u | 0x00400000u);
    return fm_bits_f32(u ^ ((uint32_t)(neg & 1u) << 31));
}

/* ggml_e8m0_to_fp32_half: 2^(e-128); e < 2 gives the subnormals 2^-128, 2^-127. */
static inline float e8m0_half(uint8_t e)
{
    return fm_bits_f32(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

/* ggml_ue4m3_to_fp32 (= gguf-py NVFP4.ue4m3_to_fp32): unsigned E4M3, bit 7
 * ignored, 0x00 and 0x7f -> 0, result halved. All steps are exact. */
static float ue4m3_half(uint8_t x)
{
    if (x == 0 || x == 0x7f) return 0.0f;
    int e = (x >> 3) & 0x0f, m = x & 7;
    float raw = e == 0 ? (float)m * 0x1p-9f : (1.0f + (float)m / 8.0f) * fm_bits_f32((uint32_t)(e - 7 + 127) << 23);
    return raw * 0.5f;
}

/* E2M1 doubled (ggml kvalues_mxfp4). */
static const int8_t kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* ------------------------------------------------- plain element conversions */

static void dq_f32_ref(const void *src, float *dst, size_t n) { memcpy(dst, src, n * 4); }

static void dq_f16_ref(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = fm_f16_to_f32_inl(fm_rd_u16le(s + 2 * i));
}

static void dq_bf16_ref(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = fm_bf16_to_f32(fm_rd_u16le(s + 2 * i));
}

/* numpy astype(np.float32): cvtsd2ss / cvtsi2ss, round to nearest even. */
static void dq_f64_ref(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = (float)fm_rd_f64le(s + 8 * i);
}
static void dq_i8_ref(const void *src, float *dst, size_t n)
{
    const int8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
}
static void dq_i16_ref(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = (float)(int16_t)fm_rd_u16le(s + 2 * i);
}
static void dq_i32_ref(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = (float)(int32_t)fm_rd_u32le(s + 4 * i);
}
static void dq_i64_ref(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = (float)(int64_t)fm_rd_u64le(s + 8 * i);
}
static void dq_f8_e4m3_ref(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = f8_e4m3_to_f32(s[i]);
}
static void dq_f8_e5m2_ref(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = f8_e5m2_to_f32(s[i]);
}

/* ------------------------------------------------------------ legacy quants */

/* Q4_0: d * (q - 8). */
static void dq_q4_0_ref(const void *src, float *y, size_t n)
{
    const fm_block_q4_0 *x = src;
    for (size_t i = 0; i < n / FM_QK4_0; i++, y += FM_QK4_0) {
        float d = fm_f16_to_f32_inl(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((x[i].qs[j] & 0x0f) - 8);
            y[j + 16] = d * (float)((x[i].qs[j] >> 4) - 8);
        }
    }
}

/* Q4_1: (d * q) + m. */
static void dq_q4_1_ref(const void *src, float *y, size_t n)
{
    const fm_block_q4_1 *x = src;
    for (size_t i = 0; i < n / FM_QK4_1; i++, y += FM_QK4_1) {
        float d = fm_f16_to_f32_inl(x[i].d), m = fm_f16_to_f32_inl(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(x[i].qs[j] & 0x0f) + m;
            y[j + 16] = d * (float)(x[i].qs[j] >> 4) + m;
        }
    }
}

/* Q5_0: d * (q - 16); bit j of qh is the 5th bit of value j. */
static void dq_q5_0_ref(const void *src, float *y, size_t n)
{
    const fm_block_q5_0 *x = src;
    for (size_t i = 0; i < n / FM_QK5_0; i++, y += FM_QK5_0) {
        float d = fm_f16_to_f32_inl(x[i].d);
        uint32_t qh = fm_rd_u32le(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
            y[j] = d * (float)(((x[i].qs[j] & 0x0f) | h0 << 4) - 16);
            y[j + 16] = d * (float)(((x[i].qs[j] >> 4) | h1 << 4) - 16);
        }
    }
}

/* Q5_1: (d * q) + m. */
static void dq_q5_1_ref(const void *src, float *y, size_t n)
{
    const fm_block_q5_1 *x = src;
    for (size_t i = 0; i < n / FM_QK5_1; i++, y += FM_QK5_1) {
        float d = fm_f16_to_f32_inl(x[i].d), m = fm_f16_to_f32_inl(x[i].m);
        uint32_t qh = fm_rd_u32le(x[i].qh);
        for (int j = 0; j < 16; j++) {
            int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
            y[j] = d * (float)((x[i].qs[j] & 0x0f) | h0 << 4) + m;
            y[j + 16] = d * (float)((x[i].qs[j] >> 4) | h1 << 4) + m;
        }
    }
}

/* Q8_0: q * d. */
static void dq_q8_0_ref(const void *src, float *y, size_t n)
{
    const fm_block_q8_0 *x = src;
    for (size_t i = 0; i < n / FM_QK8_0; i++, y += FM_QK8_0) {
        float d = fm_f16_to_f32_inl(x[i].d);
        for (int j = 0; j < FM_QK8_0; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

/* ------------------------------------------------------------------ K quants */

/* Q2_K: dl = d * sc, ml = dmin * m, then dl * q - ml. Value 128h + 32s + l
 * (l < 32) is bits 2s of qs[32h + l], sub-block 8h + 2s + l/16. */
static void dq_q2_K_ref(const void *src, float *y, size_t n)
{
    const fm_block_q2_K *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d), dmin = fm_f16_to_f32_inl(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int h = 0; h < 2; h++, q += 32) {
            for (int s = 0; s < 4; s++) {
                for (int half = 0; half < 2; half++) {
                    uint8_t sc = x[i].scales[is++];
                    float dl = d * (float)(sc & 0x0f), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[16 * half + l] >> (2 * s)) & 3) - ml;
                }
            }
        }
    }
}

/* Q3_K: dl = d * (scale - 32), then dl * q with q = low2 - (hbit ? 0 : 4).
 * Value 128h + 32s + l: low bits 2s of qs[32h + l], high bit (4h+s) of hmask[l]. */
static void dq_q3_K_ref(const void *src, float *y, size_t n)
{
    const fm_block_q3_K *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d), dl[16];
        for (int k = 0; k < 16; k++) dl[k] = d * (float)fm_q3k_scale(k, x[i].scales);
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int l = 0; l < 32; l++) {
                    int lo = (x[i].qs[32 * h + l] >> (2 * s)) & 3;
                    int hb = (x[i].hmask[l] >> (4 * h + s)) & 1;
                    *y++ = dl[8 * h + 2 * s + l / 16] * (float)(lo - (hb ? 0 : 4));
                }
    }
}

/* Q4_K: d1 = d * sc, m1 = dmin * m, then d1 * q - m1. Chunk c of 64 values:
 * low nibbles of qs[32c..] (sub-block 2c), then high nibbles (2c+1). */
static void dq_q4_K_ref(const void *src, float *y, size_t n)
{
    const fm_block_q4_K *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d), dmin = fm_f16_to_f32_inl(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int c = 0; c < 4; c++, q += 32, y += 64) {
            uint8_t sc, m;
            fm_q4k_scale_min(2 * c, x[i].scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            fm_q4k_scale_min(2 * c + 1, x[i].scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) y[l] = d1 * (float)(q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++) y[l + 32] = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Q5_K: as Q4_K with a 5th bit: value 32k + l has bit k of qh[l]. */
static void dq_q5_K_ref(const void *src, float *y, size_t n)
{
    const fm_block_q5_K *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d), dmin = fm_f16_to_f32_inl(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int c = 0; c < 4; c++, q += 32, y += 64) {
            uint8_t sc, m;
            fm_q4k_scale_min(2 * c, x[i].scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            fm_q4k_scale_min(2 * c + 1, x[i].scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                int hb = (x[i].qh[l] >> (2 * c)) & 1;
                y[l] = d1 * (float)((q[l] & 0x0f) | hb << 4) - m1;
            }
            for (int l = 0; l < 32; l++) {
                int hb = (x[i].qh[l] >> (2 * c + 1)) & 1;
                y[l + 32] = d2 * (float)((q[l] >> 4) | hb << 4) - m2;
            }
        }
    }
}

/* Q6_K: (d * sc) * q, q = (4 low bits | 2 high bits << 4) - 32. For half h
 * (128 values), value 128h + 32s + l takes ql[64h + l + 32(s&1)] nibble s/2
 * and bits 2s of qh[32h + l]; sub-block (128h + 32s + l) / 16. */
static void dq_q6_K_ref(const void *src, float *y, size_t n)
{
    const fm_block_q6_K *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d), dl[16];
        for (int k = 0; k < 16; k++) dl[k] = d * (float)x[i].scales[k];
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int l = 0; l < 32; l++) {
                    int lo = (x[i].ql[64 * h + l + 32 * (s & 1)] >> (4 * (s >> 1))) & 0x0f;
                    int hi = (x[i].qh[32 * h + l] >> (2 * s)) & 3;
                    *y++ = dl[8 * h + 2 * s + l / 16] * (float)((lo | hi << 4) - 32);
                }
    }
}

/* Q8_K: d * q, d a float32. Not in gguf-py; ggml's dequantize_row_q8_K. */
static void dq_q8_K_ref(const void *src, float *y, size_t n)
{
    const fm_block_q8_K *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++, y += FM_QK_K) {
        float d = fm_rd_f32le(&x[i].d);
        for (int j = 0; j < FM_QK_K; j++) y[j] = d * (float)x[i].qs[j];
    }
}

/* ------------------------------------------------------------ ternary, FP4 */

/* TQ1_0: base-3 digits; digit n of byte b is ((uint8_t)(b * 3^n) * 3) >> 8.
 * d * (digit - 1). Values: qs[0..31] digits 0..4 (32 each), qs[32..47]
 * digits 0..4 (16 each), qh[0..3] digits 0..3 (4 each). */
static void dq_tq1_0_ref(const void *src, float *y, size_t n)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const fm_block_tq1_0 *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        for (int p = 0; p < 5; p++)
            for (int m = 0; m < 32; m++) {
                uint8_t q = (uint8_t)(x[i].qs[m] * pow3[p]);
                *y++ = d * (float)((((uint16_t)q * 3) >> 8) - 1);
            }
        for (int p = 0; p < 5; p++)
            for (int m = 0; m < 16; m++) {
                uint8_t q = (uint8_t)(x[i].qs[32 + m] * pow3[p]);
                *y++ = d * (float)((((uint16_t)q * 3) >> 8) - 1);
            }
        for (int p = 0; p < 4; p++)
            for (int m = 0; m < 4; m++) {
                uint8_t q = (uint8_t)(x[i].qh[m] * pow3[p]);
                *y++ = d * (float)((((uint16_t)q * 3) >> 8) - 1);
            }
    }
}

/* TQ2_0: d * (q - 1), value 128h + 32s + m is bits 2s of qs[32h + m]. */
static void dq_tq2_0_ref(const void *src, float *y, size_t n)
{
    const fm_block_tq2_0 *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int m = 0; m < 32; m++) *y++ = d * (float)(((x[i].qs[32 * h + m] >> (2 * s)) & 3) - 1);
    }
}

/* MXFP4: d * kvalue, d = 2^(e-128) (doubled codebook, halved scale). */
static void dq_mxfp4_ref(const void *src, float *y, size_t n)
{
    const fm_block_mxfp4 *x = src;
    for (size_t i = 0; i < n / FM_QK_MXFP4; i++, y += FM_QK_MXFP4) {
        float d = e8m0_half(x[i].e);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)kvalues_mxfp4[x[i].qs[j] & 0x0f];
            y[j + 16] = d * (float)kvalues_mxfp4[x[i].qs[j] >> 4];
        }
    }
}

/* NVFP4: per 16 values d = ue4m3(d[s]) / 2, then d * kvalue. */
static void dq_nvfp4_ref(const void *src, float *y, size_t n)
{
    const fm_block_nvfp4 *x = src;
    for (size_t i = 0; i < n / FM_QK_NVFP4; i++) {
        for (int s = 0; s < 4; s++, y += 16) {
            float d = ue4m3_half(x[i].d[s]);
            for (int j = 0; j < 8; j++) {
                y[j] = d * (float)kvalues_mxfp4[x[i].qs[8 * s + j] & 0x0f];
                y[j + 8] = d * (float)kvalues_mxfp4[x[i].qs[8 * s + j] >> 4];
            }
        }
    }
}

/* Q1_0: bit ? d : -d, as ggml's dequantize_row_q1_0 (a negation, not a
 * multiply: a NaN d comes out with its sign flipped for 0 bits). gguf-py has
 * no Q1_0 dequantizer; the fixture mirrors ggml in numpy. */
static void dq_q1_0_ref(const void *src, float *y, size_t n)
{
    const fm_block_q1_0 *x = src;
    for (size_t i = 0; i < n / FM_QK1_0; i++, y += FM_QK1_0) {
        float d = fm_f16_to_f32_inl(x[i].d);
        float nd = fm_bits_f32(fm_f32_bits(d) ^ 0x80000000u);
        for (int j = 0; j < FM_QK1_0; j++) y[j] = ((x[i].qs[j / 8] >> (j % 8)) & 1) ? d : nd;
    }
}

/* ------------------------------------------------------------------ IQ quants */

/* The 7 stored sign bits plus an 8th that makes the parity even (ggml's
 * ksigns_iq2xs table). */
static inline unsigned ksigns(unsigned i) { return (i & 127u) | ((unsigned)__builtin_parity(i & 127u) << 7); }

static inline unsigned gbyte64(uint64_t g, int j) { return (unsigned)(g >> (8 * j)) & 0xffu; }

/* IQ2_XXS: db = d * (0.5 + s) * 0.25, then (db * grid) * sign. */
static void dq_iq2_xxs_ref(const void *src, float *y, size_t n)
{
    const fm_block_iq2_xxs *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *p = (const uint8_t *)x[i].qs + 8 * ib;
            uint32_t a1 = fm_rd_u32le(p + 4);
            float db = d * (0.5f + (float)(a1 >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8) {
                uint64_t g = fm_iq2xxs_grid[p[l]];
                unsigned sg = ksigns(a1 >> (7 * l));
                for (int j = 0; j < 8; j++) y[j] = mul_pm1(db * (float)gbyte64(g, j), sg >> j);
            }
        }
    }
}

/* IQ2_XS: db = d * (0.5 + nibble) * 0.25 per 16 values; 9-bit grid index,
 * 7-bit sign index per 8 values. */
static void dq_iq2_xs_ref(const void *src, float *y, size_t n)
{
    const fm_block_iq2_xs *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        const uint8_t *qs = (const uint8_t *)x[i].qs;
        for (int ib = 0; ib < 8; ib++) {
            float db[2];
            db[0] = d * (0.5f + (float)(x[i].scales[ib] & 0x0f)) * 0.25f;
            db[1] = d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8) {
                uint16_t q = fm_rd_u16le(qs + 2 * (4 * ib + l));
                uint64_t g = fm_iq2xs_grid[q & 511];
                unsigned sg = ksigns(q >> 9);
                for (int j = 0; j < 8; j++) y[j] = mul_pm1(db[l / 2] * (float)gbyte64(g, j), sg >> j);
            }
        }
    }
}

/* IQ2_S: 10-bit grid index (2 high bits from qh), explicit sign bytes. */
static void dq_iq2_s_ref(const void *src, float *y, size_t n)
{
    const fm_block_iq2_s *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        const uint8_t *qs = x[i].qs, *signs = x[i].qs + FM_QK_K / 8;
        for (int ib = 0; ib < 8; ib++) {
            float db[2];
            db[0] = d * (0.5f + (float)(x[i].scales[ib] & 0x0f)) * 0.25f;
            db[1] = d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8) {
                unsigned idx = qs[4 * ib + l] | (((unsigned)x[i].qh[ib] >> (2 * l)) & 3u) << 8;
                uint64_t g = fm_iq2s_grid[idx];
                unsigned sg = signs[4 * ib + l];
                for (int j = 0; j < 8; j++) y[j] = mul_pm1(db[l / 2] * (float)gbyte64(g, j), sg >> j);
            }
        }
    }
}

/* IQ3_XXS: db = d * (0.5 + s) * 0.5; 4-value grid entries. */
static void dq_iq3_xxs_ref(const void *src, float *y, size_t n)
{
    const fm_block_iq3_xxs *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        const uint8_t *qs = x[i].qs, *ss = x[i].qs + FM_QK_K / 4;
        for (int ib = 0; ib < 8; ib++) {
            uint32_t a = fm_rd_u32le(ss + 4 * ib);
            float db = d * (0.5f + (float)(a >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++, y += 8) {
                unsigned sg = ksigns(a >> (7 * l));
                uint32_t g1 = fm_iq3xxs_grid[qs[8 * ib + 2 * l]], g2 = fm_iq3xxs_grid[qs[8 * ib + 2 * l + 1]];
                for (int j = 0; j < 4; j++) {
                    y[j] = mul_pm1(db * (float)((g1 >> (8 * j)) & 0xffu), sg >> j);
                    y[j + 4] = mul_pm1(db * (float)((g2 >> (8 * j)) & 0xffu), sg >> (j + 4));
                }
            }
        }
    }
}

/* IQ3_S: db = d * (1 + 2 * nibble) per 32 values; 9-bit grid index. */
static void dq_iq3_s_ref(const void *src, float *y, size_t n)
{
    const fm_block_iq3_s *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        for (int ib = 0; ib < 8; ib++) {
            unsigned sc = (x[i].scales[ib / 2] >> (4 * (ib % 2))) & 0x0fu;
            float db = d * (float)(1 + 2 * sc);
            for (int l = 0; l < 4; l++, y += 8) {
                int k = 8 * ib + 2 * l; /* grid entries k, k+1 */
                unsigned i1 = x[i].qs[k] | ((x[i].qh[k / 8] >> (k % 8)) & 1u) << 8;
                unsigned i2 = x[i].qs[k + 1] | ((x[i].qh[(k + 1) / 8] >> ((k + 1) % 8)) & 1u) << 8;
                uint32_t g1 = fm_iq3s_grid[i1], g2 = fm_iq3s_grid[i2];
                unsigned sg = x[i].signs[4 * ib + l];
                for (int j = 0; j < 4; j++) {
                    y[j] = mul_pm1(db * (float)((g1 >> (8 * j)) & 0xffu), sg >> j);
                    y[j + 4] = mul_pm1(db * (float)((g2 >> (8 * j)) & 0xffu), sg >> (j + 4));
                }
            }
        }
    }
}

#define IQ1S_DELTA 0.125f

/* IQ1_S: dl = d * (2s + 1), then dl * (grid + delta); grid in {-1, 0, 1}. */
static void dq_iq1_s_ref(const void *src, float *y, size_t n)
{
    const fm_block_iq1_s *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        for (int ib = 0; ib < 8; ib++) {
            uint16_t qh = x[i].qh[ib];
            float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
            float delta = (qh & 0x8000) ? -IQ1S_DELTA : IQ1S_DELTA;
            for (int l = 0; l < 4; l++, y += 8) {
                uint64_t g = fm_iq1s_grid[x[i].qs[4 * ib + l] | ((qh >> (3 * l)) & 7u) << 8];
                for (int j = 0; j < 8; j++) y[j] = dl * ((float)(int8_t)gbyte64(g, j) + delta);
            }
        }
    }
}

/* IQ1_M: d from the top nibbles of the four scale words; per 16 values
 * dl = d * (2s + 1); per 8 values a delta sign bit in qh. */
static void dq_iq1_m_ref(const void *src, float *y, size_t n)
{
    const fm_block_iq1_m *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        uint16_t sc[4];
        for (int k = 0; k < 4; k++) sc[k] = fm_rd_u16le(x[i].scales + 2 * k);
        uint16_t dh = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
        float d = fm_f16_to_f32_inl(dh);
        for (int ib = 0; ib < 8; ib++) {
            for (int l = 0; l < 4; l++, y += 8) {
                unsigned s = (sc[ib / 2] >> (6 * (ib % 2) + 3 * (l / 2))) & 7u;
                float dl = d * (float)(2 * s + 1);
                uint8_t qh = (uint8_t)(x[i].qh[2 * ib + l / 2] >> (4 * (l % 2)));
                float delta = (qh & 0x08) ? -IQ1S_DELTA : IQ1S_DELTA;
                uint64_t g = fm_iq1s_grid[x[i].qs[4 * ib + l] | (qh & 7u) << 8];
                for (int j = 0; j < 8; j++) y[j] = dl * ((float)(int8_t)gbyte64(g, j) + delta);
            }
        }
    }
}

/* IQ4_NL: d * kvalue. */
static void dq_iq4_nl_ref(const void *src, float *y, size_t n)
{
    const fm_block_iq4_nl *x = src;
    for (size_t i = 0; i < n / FM_QK4_NL; i++, y += FM_QK4_NL) {
        float d = fm_f16_to_f32_inl(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)fm_kvalues_iq4nl[x[i].qs[j] & 0x0f];
            y[j + 16] = d * (float)fm_kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

/* IQ4_XS: dl = d * (ls - 32) per 32 values, then dl * kvalue. */
static void dq_iq4_xs_ref(const void *src, float *y, size_t n)
{
    const fm_block_iq4_xs *x = src;
    for (size_t i = 0; i < n / FM_QK_K; i++) {
        float d = fm_f16_to_f32_inl(x[i].d);
        for (int ib = 0; ib < 8; ib++, y += 32) {
            int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) | ((x[i].scales_h >> (2 * ib)) & 3) << 4;
            float dl = d * (float)(ls - 32);
            const uint8_t *q = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)fm_kvalues_iq4nl[q[j] & 0x0f];
                y[j + 16] = dl * (float)fm_kvalues_iq4nl[q[j] >> 4];
            }
        }
    }
}

/* ------------------------------------------------- fm affine A<b>_<g> */

/* specs/quant.md A1-A4; the kernel is formats/affine.c's. */
#define AFFINE(b, g)                                                                                \
    static void dq_a##b##_##g##_ref(const void *src, float *dst, size_t n)                         \
    {                                                                                               \
        fm_affine_dequant_ref(b, g, src, dst, n);                                                   \
    }
AFFINE(4, 32)
AFFINE(4, 64)
AFFINE(4, 128)
AFFINE(3, 32)
AFFINE(3, 64)
AFFINE(3, 128)
AFFINE(2, 32)
AFFINE(2, 64)
AFFINE(2, 128)
#undef AFFINE

/* ------------------------------------------------------------------- traits */

#if FM_QUANT_X86
#define AVX2(f) f
#else
#define AVX2(f) NULL
#endif

#define T(id, nm, bs, ts, ref, simd) [id] = {nm, bs, ts, ref, simd}

static const fm_qtype_traits traits[FM_Q_MAX_] = {
    T(FM_Q_F32, "F32", 1, 4, dq_f32_ref, NULL),
    T(FM_Q_F16, "F16", 1, 2, dq_f16_ref, AVX2(fm_dequant_f16_avx2)),
    T(FM_Q_Q4_0, "Q4_0", 32, 18, dq_q4_0_ref, AVX2(fm_dequant_q4_0_avx2)),
    T(FM_Q_Q4_1, "Q4_1", 32, 20, dq_q4_1_ref, NULL),
    T(FM_Q_Q5_0, "Q5_0", 32, 22, dq_q5_0_ref, NULL),
    T(FM_Q_Q5_1, "Q5_1", 32, 24, dq_q5_1_ref, NULL),
    T(FM_Q_Q8_0, "Q8_0", 32, 34, dq_q8_0_ref, AVX2(fm_dequant_q8_0_avx2)),
    T(FM_Q_Q8_1, "Q8_1", 32, 36, NULL, NULL),
    T(FM_Q_Q2_K, "Q2_K", 256, 84, dq_q2_K_ref, AVX2(fm_dequant_q2_K_avx2)),
    T(FM_Q_Q3_K, "Q3_K", 256, 110, dq_q3_K_ref, AVX2(fm_dequant_q3_K_avx2)),
    T(FM_Q_Q4_K, "Q4_K", 256, 144, dq_q4_K_ref, AVX2(fm_dequant_q4_K_avx2)),
    T(FM_Q_Q5_K, "Q5_K", 256, 176, dq_q5_K_ref, AVX2(fm_dequant_q5_K_avx2)),
    T(FM_Q_Q6_K, "Q6_K", 256, 210, dq_q6_K_ref, AVX2(fm_dequant_q6_K_avx2)),
    T(FM_Q_Q8_K, "Q8_K", 256, 292, dq_q8_K_ref, NULL),
    T(FM_Q_IQ2_XXS, "IQ2_XXS", 256, 66, dq_iq2_xxs_ref, NULL),
    T(FM_Q_IQ2_XS, "IQ2_XS", 256, 74, dq_iq2_xs_ref, NULL),
    T(FM_Q_IQ3_XXS, "IQ3_XXS", 256, 98, dq_iq3_xxs_ref, NULL),
    T(FM_Q_IQ1_S, "IQ1_S", 256, 50, dq_iq1_s_ref, NULL),
    T(FM_Q_IQ4_NL, "IQ4_NL", 32, 18, dq_iq4_nl_ref, AVX2(fm_dequant_iq4_nl_avx2)),
    T(FM_Q_IQ3_S, "IQ3_S", 256, 110, dq_iq3_s_ref, NULL),
    T(FM_Q_IQ2_S, "IQ2_S", 256, 82, dq_iq2_s_ref, NULL),
    T(FM_Q_IQ4_XS, "IQ4_XS", 256, 136, dq_iq4_xs_ref, AVX2(fm_dequant_iq4_xs_avx2)),
    T(FM_Q_I8, "I8", 1, 1, dq_i8_ref, NULL),
    T(FM_Q_I16, "I16", 1, 2, dq_i16_ref, NULL),
    T(FM_Q_I32, "I32", 1, 4, dq_i32_ref, NULL),
    T(FM_Q_I64, "I64", 1, 8, dq_i64_ref, NULL),
    T(FM_Q_F64, "F64", 1, 8, dq_f64_ref, NULL),
    T(FM_Q_IQ1_M, "IQ1_M", 256, 56, dq_iq1_m_ref, NULL),
    T(FM_Q_BF16, "BF16", 1, 2, dq_bf16_ref, AVX2(fm_dequant_bf16_avx2)),
    T(FM_Q_TQ1_0, "TQ1_0", 256, 54, dq_tq1_0_ref, NULL),
    T(FM_Q_TQ2_0, "TQ2_0", 256, 66, dq_tq2_0_ref, NULL),
    T(FM_Q_MXFP4, "MXFP4", 32, 17, dq_mxfp4_ref, NULL),
    T(FM_Q_NVFP4, "NVFP4", 64, 36, dq_nvfp4_ref, NULL),
    T(FM_Q_Q1_0, "Q1_0", 128, 18, dq_q1_0_ref, NULL),
    T(FM_Q_F8_E4M3, "F8_E4M3", 1, 1, dq_f8_e4m3_ref, NULL),
    T(FM_Q_F8_E5M2, "F8_E5M2", 1, 1, dq_f8_e5m2_ref, NULL),
    T(FM_Q_A4_32, "A4_32", 32, 20, dq_a4_32_ref, NULL),
    T(FM_Q_A4_64, "A4_64", 64, 36, dq_a4_64_ref, NULL),
    T(FM_Q_A4_128, "A4_128", 128, 68, dq_a4_128_ref, NULL),
    T(FM_Q_A3_32, "A3_32", 32, 16, dq_a3_32_ref, NULL),
    T(FM_Q_A3_64, "A3_64", 64, 28, dq_a3_64_ref, NULL),
    T(FM_Q_A3_128, "A3_128", 128, 52, dq_a3_128_ref, NULL),
    T(FM_Q_A2_32, "A2_32", 32, 12, dq_a2_32_ref, NULL),
    T(FM_Q_A2_64, "A2_64", 64, 20, dq_a2_64_ref, NULL),
    T(FM_Q_A2_128, "A2_128", 128, 36, dq_a2_128_ref, NULL),
};

#undef T

const fm_qtype_traits *fm_qtype_get(uint32_t id)
{
    if (id >= FM_Q_MAX_ || !traits[id].name) return NULL;
    return &traits[id];
}

int fm_qtype_from_name(const char *name)
{
    if (!name) return -1;
    for (int id = 0; id < FM_Q_MAX_; id++) {
        const char *a = traits[id].name, *b = name;
        if (!a) continue;
        while (*a && *b && toupper((unsigned char)*a) == toupper((unsigned char)*b)) a++, b++;
        if (!*a && !*b) return id;
    }
    return -1;
}

fm_err fm_qtype_nbytes(uint32_t t, uint64_t n, uint64_t *bytes, fm_error *e)
{
    const fm_qtype_traits *tr = fm_qtype_get(t);
    if (!tr) return fm_error_set(e, FM_E_UNSUPPORTED, "quant type %u: unknown type id", t);
    if (n % tr->block_size)
        return fm_error_set(e, FM_E_FORMAT, "%s: %llu values is not a multiple of the block size %u", tr->name,
                            (unsigned long long)n, tr->block_size);
    if (!fm_mul_u64(n / tr->block_size, tr->type_size, bytes))
        return fm_error_set(e, FM_E_RANGE, "%s: byte size of %llu values overflows 64 bits", tr->name,
                            (unsigned long long)n);
    return FM_OK;
}

bool fm_cpu_has_avx2(void)
{
#if FM_QUANT_X86
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
#if defined(__clang__)
    /* clang (<= 15) rejects "f16c" as a __builtin_cpu_supports feature:
     * read CPUID.1:ECX bit 29 directly (AVX2 above implies OS YMM support). */
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    return (c >> 29) & 1u;
#else
    return __builtin_cpu_supports("f16c");
#endif
#else
    return false;
#endif
}

fm_dequant_fn fm_qtype_dequant_fn(uint32_t t)
{
    const fm_qtype_traits *tr = fm_qtype_get(t);
    if (!tr || !tr->to_float_ref) return NULL;
    if (tr->to_float_avx2 && !getenv("FM_NO_SIMD") && fm_cpu_has_avx2()) return tr->to_float_avx2;
    return tr->to_float_ref;
}

fm_err fm_dequantize(uint32_t t, const void *src, size_t src_bytes, float *dst, uint64_t n, fm_error *e)
{
    const fm_qtype_traits *tr = fm_qtype_get(t);
    if (!tr) return fm_error_set(e, FM_E_UNSUPPORTED, "dequantize: unknown quant type id %u", t);
    fm_dequant_fn fn = fm_qtype_dequant_fn(t);
    if (!fn) return fm_error_set(e, FM_E_UNSUPPORTED, "dequantize: no dequantizer for type %s", tr->name);
    uint64_t need, outb;
    fm_err rc = fm_qtype_nbytes(t, n, &need, e);
    if (rc) {
        fm_error_prefix(e, "dequantize");
        return rc;
    }
    if (need > src_bytes)
        return fm_error_set(e, FM_E_RANGE, "dequantize: %llu %s values need %llu bytes, source has %zu", (unsigned long long)n,
                            tr->name, (unsigned long long)need, src_bytes);
    if (!fm_mul_u64(n, sizeof(float), &outb) || n > SIZE_MAX || outb > SIZE_MAX)
        return fm_error_set(e, FM_E_RANGE, "dequantize: %llu %s values do not fit in memory", (unsigned long long)n, tr->name);
    if (n == 0) return FM_OK;
    if (!src || !dst) return fm_error_set(e, FM_E_ARG, "dequantize: NULL %s buffer", src ? "destination" : "source");
    fn(src, dst, (size_t)n);
    return FM_OK;
}
