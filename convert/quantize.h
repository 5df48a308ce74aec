/* Affine group quantization of float rows into fm's A<bits>_<group> schemes
 * (formats/affine.h), with error statistics. */
#ifndef FM_QUANTIZE_H
#define FM_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"

typedef enum fm_quant_method {
    FM_QUANT_MINMAX = 0, /* d = (max-min)/(2^b-1), m = min: the plain scheme */
    FM_QUANT_SEARCH = 1, /* error-minimizing search over scale/offset per group */
} fm_quant_method;

typedef struct fm_quant_stats {
    double sse;     /* sum of squared error (unweighted) */
    double sum_x2;  /* sum of squared source values */
    double max_abs; /* largest absolute error */
    uint64_t n;     /* values */
} fm_quant_stats;

/* Quantizes rows x cols values (row-major) into dst (rows * row_bytes).
 * imp: NULL, or cols non-negative importance weights (e.g. mean squared
 * activation of each input column) that the search minimizes against. */
fm_err fm_quant_affine(uint32_t qtype, const float *x, size_t rows, size_t cols, const float *imp,
                       fm_quant_method method, void *dst, fm_quant_stats *st, fm_error *e);

/* GGML Q8_0 exactly as ggml's quantize_row_q8_0_ref (and gguf-py's
 * quantize): per block of 32, d = amax / 127 rounded to f16, codes
 * roundf(x * (1/d)) with 1/d computed from the unrounded d. n must be a
 * multiple of 32. Non-finite input: FM_E_RANGE. st: error statistics. */
fm_err fm_quant_q8_0(const float *x, size_t n, void *dst, fm_quant_stats *st, fm_error *e);

/* Float conversions with statistics: to F16 (FM_E_RANGE when a finite value
 * overflows binary16) or BF16 (round to nearest even), n values. */
fm_err fm_quant_f16(const float *x, size_t n, void *dst, fm_quant_stats *st, fm_error *e);
fm_err fm_quant_bf16(const float *x, size_t n, void *dst, fm_quant_stats *st, fm_error *e);

void fm_quant_stats_add(fm_quant_stats *acc, const fm_quant_stats *s);
double fm_quant_stats_rmse(const fm_quant_stats *s);
double fm_quant_stats_rel(const fm_quant_stats *s); /* rmse / rms(source) */

#endif
