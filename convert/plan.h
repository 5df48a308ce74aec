/* The conversion plan: which scheme each tensor (or expert part) is stored
 * in, and the row conversions that produce it.
 *
 * Policy (fm-convert, fm-requant):
 *  - Tensors the table marks FM_T_NO_QUANT (norms, biases, routers) and all
 *    1-D tensors are never quantized: kept as stored when the source is a
 *    GGUF or a bundle, widened to F32 (exactly) from Hugging Face.
 *  - A quantized source tensor (any non-float GGML type) is kept as is for
 *    dense modes (no double quantization); only expert modes q4/q3/q2 (and q8
 *    from a non-Q8_0 quantized source) requantize it, by request.
 *  - dense keep: the source type; q8: Q8_0 from F32/F16/BF16 (rows that are
 *    a multiple of 32; others are kept); f16: F16 from F32/BF16.
 *  - experts keep: the source type; q8: Q8_0; q4/q3/q2: A<bits>_<group>
 *    (formats/affine.h) with the error-minimizing search.
 *  - A target equal to the source type is a copy. */
#ifndef FM_CONVERT_PLAN_H
#define FM_CONVERT_PLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "convert/quantize.h"
#include "formats/err.h"

typedef enum fm_dense_mode { FM_DENSE_KEEP = 0, FM_DENSE_Q8, FM_DENSE_F16 } fm_dense_mode;
typedef enum fm_experts_mode {
    FM_EXPERTS_KEEP = 0,
    FM_EXPERTS_Q8,
    FM_EXPERTS_Q4,
    FM_EXPERTS_Q3,
    FM_EXPERTS_Q2
} fm_experts_mode;

typedef struct fm_plan_opts {
    fm_dense_mode dense;
    fm_experts_mode experts;
    unsigned group; /* 32, 64 or 128 */
    bool hf_widen;  /* source is Hugging Face: NO_QUANT and 1-D tensors become F32 */
} fm_plan_opts;

/* Parses "keep|q8|f16" / "keep|q8|q4|q3|q2"; false when unknown. */
bool fm_plan_parse_dense(const char *s, fm_dense_mode *out);
bool fm_plan_parse_experts(const char *s, fm_experts_mode *out);
const char *fm_plan_dense_name(fm_dense_mode m);
const char *fm_plan_experts_name(fm_experts_mode m);

bool fm_qtype_is_float(uint32_t qtype); /* F32, F16, BF16 */

/* Target scheme of a tensor: src_qtype, whether it is an expert part,
 * whether the table keeps it in float (FM_T_NO_QUANT), its dimensions and
 * row length. FM_E_UNSUPPORTED naming `what` when the requested scheme
 * cannot hold the rows (row length not a multiple of the block). */
fm_err fm_plan_qtype(const fm_plan_opts *o, const char *what, uint32_t src_qtype, bool expert, bool no_quant,
                     uint32_t n_dims, uint64_t row_len, uint32_t *out, fm_error *e);

/* Error statistics of one conversion (summed over chunks/experts). */
typedef struct fm_plan_err {
    fm_quant_stats st;        /* of the stored result */
    fm_quant_stats st_minmax; /* plain min/max affine at the same scheme (affine targets only) */
    bool has_minmax;
} fm_plan_err;

void fm_plan_err_add(fm_plan_err *acc, const fm_plan_err *x);

/* Converts rows x cols float32 values into dst_qtype (rows * row bytes).
 * err: statistics against x (min/max baseline too for affine targets, which
 * then needs `scratch` of the same size as dst, or NULL to allocate). */
fm_err fm_plan_convert(uint32_t dst_qtype, const float *x, size_t rows, size_t cols, void *dst,
                       void *scratch, fm_plan_err *err, fm_error *e);

/* The manifest "error" object: {"method", "scheme", "source_qtype", "n",
 * "mse", "rmse", "rel", "max_abs"[, "mse_minmax", "rmse_minmax"]}. */
json_t *fm_plan_err_json(const fm_plan_err *err, uint32_t dst_qtype, uint32_t src_qtype);

#endif
