/* Matrix-vector / matrix-matrix kernels over quantized weights.
 *
 * W is rows x cols, row-major, each row stored as cols values in qtype blocks;
 * row stride in bytes = fm_qtype_nbytes(qtype, cols). X is n x cols float32
 * (row-major), Y is n x rows float32. Y[i][r] = sum_c W[r][c] * X[i][c].
 *
 * Two modes:
 *  FM_KERNEL_Q8 (default): llama.cpp's CPU arithmetic. Each activation row is
 *    quantized to the weight type's "vec_dot type" exactly as ggml's x86 CPU
 *    backend does (Q8_K for Q2_K..Q6_K and IQ4_XS; Q8_0 for Q4_0, Q5_0, Q8_0,
 *    IQ4_NL; Q8_1 for Q4_1, Q5_1), then integer dot products per block with
 *    ggml's scale math. Every dot product equals ggml's AVX2
 *    ggml_vec_dot_<type>_q8_<x> bit for bit (same integer lanes, same float
 *    operations in the same order), at every SIMD level: scalar twins, AVX2,
 *    and the AVX-512 set (tests/unit/test_kernels.c checks all against
 *    libggml-cpu's own output). For n > 1 each output is still that same dot
 *    product, except where llama.cpp itself sums in another order and
 *    runtime/kernels_repack.h reproduces it: Q4_K weights with a row count
 *    divisible by 8 (CPU_REPACK gemv for n < 4 rows of activations, gemm
 *    for the first n - n%4), and Q4_K/Q6_K in batches of n >= 8 (the tiled
 *    K-quant path). So in Q8 mode those results depend on n (as llama.cpp's
 *    do), never on tiling or thread count; FM_NO_REPACK=1 turns that off.
 *    Other quantized types whose ggml vec_dot type is Q8_K / Q8_0 (IQ2/IQ3/IQ1,
 *    TQ1_0/TQ2_0, MXFP4, NVFP4, Q1_0) get the same activation rounding
 *    (quantize, dequantize) followed by a float dot with the dequantized
 *    weights. F32/F16/BF16 (and fm's F8 types) always use float activations.
 *    Float dots (F32/F16/BF16 weights, and dequantized rows) use 16 lanes of
 *    fused multiply-adds folded i+8, i+4, i+2, i+1 (then the cols % 8 tail
 *    unfused), the same at every SIMD level; for F32 weights with
 *    cols % 16 == 0 that is llama.cpp's F32 matmul order (tinyBLAS).
 *  FM_KERNEL_EXACT: dequantized weights x float activations, float
 *    accumulation (no activation rounding).
 * The initial mode comes from the environment: FM_KERNEL=exact selects
 * FM_KERNEL_EXACT. FM_NO_SIMD=1 forces the scalar kernels. */
#ifndef FM_KERNELS_H
#define FM_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"
#include "runtime/pool.h"

/* Any type fm can dequantize. */
bool fm_kernel_supported(uint32_t qtype);

/* Plain scalar reference: dequantize a row (fm_qtype_get(qtype)->to_float_ref),
 * float dot with double accumulation. Preconditions as fm_matmul (not checked;
 * an unsupported type or bad shape leaves Y untouched). */
void fm_matmul_ref(uint32_t qtype, const void *W, size_t rows, size_t cols, const float *X, size_t n,
                   float *Y);

/* Fastest, multithreaded over pool (NULL = single-threaded). Errors:
 * FM_E_UNSUPPORTED (type), FM_E_FORMAT (cols not a whole number of blocks),
 * FM_E_ARG (NULL pointers with a non-empty shape), FM_E_RANGE (size overflow),
 * FM_E_NOMEM (scratch). Y must not overlap W or X. Rows are split into chunks
 * claimed dynamically by the pool's threads; for n > 1 each weight row is
 * applied to up to 8 activation rows per pass (tiles). */
fm_err fm_matmul(fm_pool *pool, uint32_t qtype, const void *W, size_t rows, size_t cols,
                 const float *X, size_t n, float *Y, fm_error *e);

typedef enum { FM_KERNEL_Q8 = 0, FM_KERNEL_EXACT = 1 } fm_kernel_mode;
void fm_kernel_set_mode(fm_kernel_mode m);
fm_kernel_mode fm_kernel_get_mode(void);

/* Small float helpers the forward pass uses (AVX2 where available; the scalar
 * twins give the same bits). fm_dot_f32 sums like one output of the F32
 * matmul (see fm_matmul: 16 fused lanes, folded i+8, i+4, i+2, i+1, then the
 * n % 8 tail); fm_axpy_f32 computes each y[i] = fmaf(a, x[i], y[i]). */
float fm_dot_f32(const float *a, const float *b, size_t n);
void fm_axpy_f32(float *y, float a, const float *x, size_t n); /* y += a*x */

/* ---- additions (tests, benches, other kernels) ---- */

/* SIMD level in use: 0 scalar twins, 1 AVX2 (+FMA, F16C), 2 the integer
 * kernels compiled for AVX-512F/BW/VL + VNNI (EVEX encodings, vpdpbusd, and
 * 512-bit main loops for Q4_K/Q5_K/Q6_K that fold into the same int32 lanes:
 * bit-exact with levels 0 and 1; float paths stay AVX2). Starts at the best
 * level the CPU has; FM_NO_SIMD=1 forces 0, FM_NO_AVX512=1 caps it at 1. */
int fm_kernel_simd_level(void);
/* Test/bench hook: sets the level (capped at what the CPU allows), returns
 * the level now in use. Not thread-safe against concurrent fm_matmul calls. */
int fm_kernel_set_simd_level(int level);
/* fm_kernel_simd_level() > 0; fm_kernel_set_simd(false) = level 0,
 * (true) = the best level. Returns fm_kernel_simd(). */
bool fm_kernel_simd(void);
bool fm_kernel_set_simd(bool on);

/* The activation type fm_matmul uses for qtype in FM_KERNEL_Q8 mode with
 * integer dot products (FM_Q_Q8_K, FM_Q_Q8_0 or FM_Q_Q8_1), or 0 when qtype
 * has no integer kernel. */
uint32_t fm_kernel_q8_act_type(uint32_t qtype);

/* Activation quantizers (k a multiple of the block size: 256 for Q8_K, 32
 * otherwise; y holds k/bs blocks of formats/quant_blocks.h layout).
 *  fm_quantize_q8_K: ggml quantize_row_q8_K_ref (what ggml's x86 CPU backend
 *    uses), bit for bit.
 *  fm_quantize_q8_0 / _q8_1: ggml's x86 AVX quantize_row_q8_0 / _q8_1 (the
 *    CPU backend's code on this hardware): d = amax/127, id = 127/amax,
 *    round-half-to-even, int8 saturation.
 *  fm_quantize_q8_0_ref: ggml quantize_row_q8_0_ref (= gguf-py Q8_0):
 *    id = 1/d, roundf (half away from zero). Differs from fm_quantize_q8_0
 *    only on exact ties and 1-ulp differences of id. */
void fm_quantize_q8_K(const float *x, void *y, size_t k);
void fm_quantize_q8_0(const float *x, void *y, size_t k);
void fm_quantize_q8_1(const float *x, void *y, size_t k);
void fm_quantize_q8_0_ref(const float *x, void *y, size_t k);

/* One integer dot product of a weight row (cols values of qtype) with an
 * activation row already quantized to fm_kernel_q8_act_type(qtype). Returns
 * 0 when qtype has no integer kernel. Uses the AVX2 twin when fm_kernel_simd(). */
float fm_vec_dot_q8(uint32_t qtype, size_t cols, const void *w, const void *xq);

#endif
