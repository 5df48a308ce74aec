/* GGML quantization block layouts, byte for byte as ggml-common.h defines them
 * (and as gguf-py's GGML_QUANT_SIZES sizes them).
 *
 * Every struct is packed (alignment 1), so a block may sit at any address of a
 * mapped file; f16 fields are raw IEEE binary16 bits (uint16_t, little-endian
 * host). Field order is the on-disk order. Shared with the future dot-product
 * kernels: keep this header free of code other than the layouts. */
#ifndef FM_QUANT_BLOCKS_H
#define FM_QUANT_BLOCKS_H

#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fm quant blocks assume a little-endian host"
#endif

#define FM_QK_K 256        /* values per K-quant / IQ super-block */
#define FM_K_SCALE_SIZE 12 /* packed 6-bit scales+mins of Q4_K/Q5_K */
#define FM_QK4_0 32
#define FM_QK4_1 32
#define FM_QK5_0 32
#define FM_QK5_1 32
#define FM_QK8_0 32
#define FM_QK8_1 32
#define FM_QK4_NL 32
#define FM_QK_MXFP4 32
#define FM_QK_NVFP4 64
#define FM_QK_NVFP4_SUB 16
#define FM_QK1_0 128

#define FM_PACKED __attribute__((packed))

/* Q4_0: x = d * (q - 8); qs[j] low nibble = value j, high nibble = value j+16. */
typedef struct FM_PACKED fm_block_q4_0 {
    uint16_t d;
    uint8_t qs[FM_QK4_0 / 2];
} fm_block_q4_0;
_Static_assert(sizeof(fm_block_q4_0) == 18, "block_q4_0");

/* Q4_1: x = d * q + m. */
typedef struct FM_PACKED fm_block_q4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[FM_QK4_1 / 2];
} fm_block_q4_1;
_Static_assert(sizeof(fm_block_q4_1) == 20, "block_q4_1");

/* Q5_0: 5th bit of value j is bit j of qh (little-endian u32). x = d * (q - 16). */
typedef struct FM_PACKED fm_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[FM_QK5_0 / 2];
} fm_block_q5_0;
_Static_assert(sizeof(fm_block_q5_0) == 22, "block_q5_0");

typedef struct FM_PACKED fm_block_q5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[FM_QK5_1 / 2];
} fm_block_q5_1;
_Static_assert(sizeof(fm_block_q5_1) == 24, "block_q5_1");

typedef struct FM_PACKED fm_block_q8_0 {
    uint16_t d;
    int8_t qs[FM_QK8_0];
} fm_block_q8_0;
_Static_assert(sizeof(fm_block_q8_0) == 34, "block_q8_0");

/* Q8_1: s = d * sum(qs), used only as a dot-product activation format. */
typedef struct FM_PACKED fm_block_q8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[FM_QK8_1];
} fm_block_q8_1;
_Static_assert(sizeof(fm_block_q8_1) == 36, "block_q8_1");

/* Q2_K: 16 sub-blocks of 16; scales[i] low nibble = scale, high = min. */
typedef struct FM_PACKED fm_block_q2_K {
    uint8_t scales[FM_QK_K / 16];
    uint8_t qs[FM_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} fm_block_q2_K;
_Static_assert(sizeof(fm_block_q2_K) == 84, "block_q2_K");

/* Q3_K: 16 sub-blocks of 16, 6-bit signed scales (offset 32) packed in 12 bytes. */
typedef struct FM_PACKED fm_block_q3_K {
    uint8_t hmask[FM_QK_K / 8];
    uint8_t qs[FM_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} fm_block_q3_K;
_Static_assert(sizeof(fm_block_q3_K) == 110, "block_q3_K");

/* Q4_K: 8 sub-blocks of 32; 6-bit scale and min each, packed in scales[12]. */
typedef struct FM_PACKED fm_block_q4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[FM_K_SCALE_SIZE];
    uint8_t qs[FM_QK_K / 2];
} fm_block_q4_K;
_Static_assert(sizeof(fm_block_q4_K) == 144, "block_q4_K");

typedef struct FM_PACKED fm_block_q5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[FM_K_SCALE_SIZE];
    uint8_t qh[FM_QK_K / 8];
    uint8_t qs[FM_QK_K / 2];
} fm_block_q5_K;
_Static_assert(sizeof(fm_block_q5_K) == 176, "block_q5_K");

/* Q6_K: 16 sub-blocks of 16, int8 scales. */
typedef struct FM_PACKED fm_block_q6_K {
    uint8_t ql[FM_QK_K / 2];
    uint8_t qh[FM_QK_K / 4];
    int8_t scales[FM_QK_K / 16];
    uint16_t d;
} fm_block_q6_K;
_Static_assert(sizeof(fm_block_q6_K) == 210, "block_q6_K");

/* Q8_K: float32 scale (not f16), bsums only for dot products. */
typedef struct FM_PACKED fm_block_q8_K {
    float d;
    int8_t qs[FM_QK_K];
    int16_t bsums[FM_QK_K / 16];
} fm_block_q8_K;
_Static_assert(sizeof(fm_block_q8_K) == 292, "block_q8_K");

typedef struct FM_PACKED fm_block_iq2_xxs {
    uint16_t d;
    uint16_t qs[FM_QK_K / 8];
} fm_block_iq2_xxs;
_Static_assert(sizeof(fm_block_iq2_xxs) == 66, "block_iq2_xxs");

typedef struct FM_PACKED fm_block_iq2_xs {
    uint16_t d;
    uint16_t qs[FM_QK_K / 8];
    uint8_t scales[FM_QK_K / 32];
} fm_block_iq2_xs;
_Static_assert(sizeof(fm_block_iq2_xs) == 74, "block_iq2_xs");

/* IQ2_S: qs[0..31] grid index low bits, qs[32..63] sign bytes. */
typedef struct FM_PACKED fm_block_iq2_s {
    uint16_t d;
    uint8_t qs[FM_QK_K / 4];
    uint8_t qh[FM_QK_K / 32];
    uint8_t scales[FM_QK_K / 32];
} fm_block_iq2_s;
_Static_assert(sizeof(fm_block_iq2_s) == 82, "block_iq2_s");

/* IQ3_XXS: qs[0..63] grid indices, qs[64..95] 8 u32 of signs+scale. */
typedef struct FM_PACKED fm_block_iq3_xxs {
    uint16_t d;
    uint8_t qs[3 * FM_QK_K / 8];
} fm_block_iq3_xxs;
_Static_assert(sizeof(fm_block_iq3_xxs) == 98, "block_iq3_xxs");

typedef struct FM_PACKED fm_block_iq3_s {
    uint16_t d;
    uint8_t qs[FM_QK_K / 4];
    uint8_t qh[FM_QK_K / 32];
    uint8_t signs[FM_QK_K / 8];
    uint8_t scales[FM_QK_K / 64];
} fm_block_iq3_s;
_Static_assert(sizeof(fm_block_iq3_s) == 110, "block_iq3_s");

typedef struct FM_PACKED fm_block_iq1_s {
    uint16_t d;
    uint8_t qs[FM_QK_K / 8];
    uint16_t qh[FM_QK_K / 32];
} fm_block_iq1_s;
_Static_assert(sizeof(fm_block_iq1_s) == 50, "block_iq1_s");

/* IQ1_M: no separate scale field; the f16 d is spread over the top nibbles of
 * the four u16 words of scales[]. */
typedef struct FM_PACKED fm_block_iq1_m {
    uint8_t qs[FM_QK_K / 8];
    uint8_t qh[FM_QK_K / 16];
    uint8_t scales[FM_QK_K / 32];
} fm_block_iq1_m;
_Static_assert(sizeof(fm_block_iq1_m) == 56, "block_iq1_m");

typedef struct FM_PACKED fm_block_iq4_nl {
    uint16_t d;
    uint8_t qs[FM_QK4_NL / 2];
} fm_block_iq4_nl;
_Static_assert(sizeof(fm_block_iq4_nl) == 18, "block_iq4_nl");

typedef struct FM_PACKED fm_block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[FM_QK_K / 64];
    uint8_t qs[FM_QK_K / 2];
} fm_block_iq4_xs;
_Static_assert(sizeof(fm_block_iq4_xs) == 136, "block_iq4_xs");

/* TQ1_0: base-3 packed ternaries, 5 per byte in qs, 4 per byte in qh. */
typedef struct FM_PACKED fm_block_tq1_0 {
    uint8_t qs[(FM_QK_K - 4 * FM_QK_K / 64) / 5];
    uint8_t qh[FM_QK_K / 64];
    uint16_t d;
} fm_block_tq1_0;
_Static_assert(sizeof(fm_block_tq1_0) == 54, "block_tq1_0");

typedef struct FM_PACKED fm_block_tq2_0 {
    uint8_t qs[FM_QK_K / 4];
    uint16_t d;
} fm_block_tq2_0;
_Static_assert(sizeof(fm_block_tq2_0) == 66, "block_tq2_0");

/* MXFP4: E8M0 exponent e, then E2M1 nibbles (low = value j, high = j+16). */
typedef struct FM_PACKED fm_block_mxfp4 {
    uint8_t e;
    uint8_t qs[FM_QK_MXFP4 / 2];
} fm_block_mxfp4;
_Static_assert(sizeof(fm_block_mxfp4) == 17, "block_mxfp4");

/* NVFP4: four UE4M3 sub-block scales, then E2M1 nibbles (sub-block s uses
 * qs[8s..8s+7]: low nibble = value j, high nibble = value j+8). */
typedef struct FM_PACKED fm_block_nvfp4 {
    uint8_t d[FM_QK_NVFP4 / FM_QK_NVFP4_SUB];
    uint8_t qs[FM_QK_NVFP4 / 2];
} fm_block_nvfp4;
_Static_assert(sizeof(fm_block_nvfp4) == 36, "block_nvfp4");

/* Q1_0: one sign bit per value (LSB first), x = bit ? +d : -d. */
typedef struct FM_PACKED fm_block_q1_0 {
    uint16_t d;
    uint8_t qs[FM_QK1_0 / 8];
} fm_block_q1_0;
_Static_assert(sizeof(fm_block_q1_0) == 18, "block_q1_0");

#endif
