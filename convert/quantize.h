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

void fm_quant_stats_add(fm_quant_stats *acc, const fm_quant_stats *s);
double fm_quant_stats_rmse(const fm_quant_stats *s);
double fm_quant_stats_rel(const fm_quant_stats *s); /* rmse / rms(source) */

#endif
