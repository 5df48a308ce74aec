/* Quantization types: one traits table, dequantization kernels with a scalar
 * `_ref` reference and AVX2 twins where it matters.
 *
 * Type ids are pinned. Ids below 256 are GGML's own type ids (so a GGUF tensor's
 * type field maps directly); ids from 256 up are fm's own schemes. */
#ifndef FM_QUANT_H
#define FM_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"

typedef enum fm_qtype {
    FM_Q_F32 = 0,
    FM_Q_F16 = 1,
    FM_Q_Q4_0 = 2,
    FM_Q_Q4_1 = 3,
    FM_Q_Q5_0 = 6,
    FM_Q_Q5_1 = 7,
    FM_Q_Q8_0 = 8,
    FM_Q_Q8_1 = 9,
    FM_Q_Q2_K = 10,
    FM_Q_Q3_K = 11,
    FM_Q_Q4_K = 12,
    FM_Q_Q5_K = 13,
    FM_Q_Q6_K = 14,
    FM_Q_Q8_K = 15,
    FM_Q_IQ2_XXS = 16,
    FM_Q_IQ2_XS = 17,
    FM_Q_IQ3_XXS = 18,
    FM_Q_IQ1_S = 19,
    FM_Q_IQ4_NL = 20,
    FM_Q_IQ3_S = 21,
    FM_Q_IQ2_S = 22,
    FM_Q_IQ4_XS = 23,
    FM_Q_I8 = 24,
    FM_Q_I16 = 25,
    FM_Q_I32 = 26,
    FM_Q_I64 = 27,
    FM_Q_F64 = 28,
    FM_Q_IQ1_M = 29,
    FM_Q_BF16 = 30,
    FM_Q_TQ1_0 = 34,
    FM_Q_TQ2_0 = 35,
    FM_Q_MXFP4 = 39,
    FM_Q_NVFP4 = 40, /* added: GGML NVFP4 (gguf-py 0.19 knows it) */
    FM_Q_Q1_0 = 41,  /* added: GGML Q1_0 (sizes only in gguf-py 0.19) */
    /* fm's own, >= 256 */
    FM_Q_F8_E4M3 = 256, /* safetensors F8_E4M3 (OCP e4m3fn: no inf, 0x7f/0xff NaN) */
    FM_Q_F8_E5M2 = 257, /* safetensors F8_E5M2 (IEEE-like, with inf) */
    FM_Q_MAX_ = 512     /* ids are < FM_Q_MAX_ */
} fm_qtype;

/* Dequantizes n values (n a multiple of block_size) from src to dst. */
typedef void (*fm_dequant_fn)(const void *src, float *dst, size_t n);

typedef struct fm_qtype_traits {
    const char *name;          /* "Q4_K", as GGML names it */
    uint32_t block_size;       /* values per block */
    uint32_t type_size;        /* bytes per block */
    fm_dequant_fn to_float_ref; /* NULL when fm cannot dequantize this type */
    fm_dequant_fn to_float_avx2; /* NULL when there is no SIMD twin */
} fm_qtype_traits;

/* NULL for an id that is not a known type. */
const fm_qtype_traits *fm_qtype_get(uint32_t id);
/* Looks a type up by name ("Q4_K", case-insensitive); -1 when unknown. */
int fm_qtype_from_name(const char *name);

/* Bytes needed for n values of type t: n must be a multiple of the block
 * size; FM_E_RANGE on overflow, FM_E_FORMAT when not a whole block count,
 * FM_E_UNSUPPORTED for an unknown type. */
fm_err fm_qtype_nbytes(uint32_t t, uint64_t n, uint64_t *bytes, fm_error *e);

/* The fastest dequantizer usable on this CPU (AVX2 when supported and the
 * environment variable FM_NO_SIMD is unset), else the _ref one. NULL when the
 * type cannot be dequantized. */
fm_dequant_fn fm_qtype_dequant_fn(uint32_t t);
bool fm_cpu_has_avx2(void);

/* Checks sizes, then dequantizes n values of src (src_bytes long) to dst.
 * FM_E_UNSUPPORTED: unknown type or no dequantizer; FM_E_FORMAT: n not a whole
 * number of blocks; FM_E_RANGE: src_bytes smaller than the n values need (extra
 * bytes are ignored) or a size overflows; FM_E_ARG: NULL src/dst with n > 0.
 * src and dst must not overlap. */
fm_err fm_dequantize(uint32_t t, const void *src, size_t src_bytes, float *dst, uint64_t n,
                     fm_error *e);

/* Scalar conversions, exact (round-to-nearest-even where narrowing). */
float fm_f16_to_f32(uint16_t h);
uint16_t fm_f32_to_f16(float f);
float fm_bf16_to_f32(uint16_t h);
uint16_t fm_f32_to_bf16(float f);

#endif
