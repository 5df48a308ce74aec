/* Float operations of the forward pass, performed in exactly the order and
 * with exactly the roundings of llama.cpp's CPU backend (ggml) as built
 * natively on an x86-64 machine with AVX-512 (the machine the committed
 * llama.cpp references were made on). Same inputs give bit-identical
 * outputs, which matters more than it seems: with 8-bit activations (ggml
 * quantizes them before every quantized matmul) a 1-ulp difference anywhere
 * can flip one rounding and then grow; measured on gemma-3-270m, llama.cpp's
 * own batched and one-token paths (which differ only in float order) agree on
 * only ~97% of top-1 tokens.
 *
 * The results do not depend on the CPU fm runs on: each function has a plain
 * C twin (fmaf from libm) and an AVX2+FMA one (runtime/ggml_ops_avx2.c) that
 * give identical bits; the AVX2 one is used when fm_kernel_simd().
 *
 *  ggml_vec_dot_f32 (AVX-512): 4 x 16 lane accumulators over 64-element
 *    steps (fused multiply-add), folded 0+2, 1+3, 0+1, then
 *    _mm512_reduce_add_ps (lanes i+8, then i+4, then i+2, then i+1), then
 *    the n % 64 tail added one product at a time (not fused).
 *  llamafile tinyBLAS F32 element: one 16-lane accumulator over 16-element
 *    steps, then the same 16-lane reduction.
 *  ggml_v_expf (AVX-512 variant) and ggml_vec_soft_max_f32: 16-element
 *    chunks from index 0, each chunk's sum reduced as above and added in
 *    double; tails (n % 16) with libm expf.
 *  ggml_v_silu: x / (1 + expf(0 - x)) with the AVX-512 expf, 16 at a time. */
#ifndef FM_GGML_OPS_H
#define FM_GGML_OPS_H

#include <stddef.h>
#include <stdint.h>

float fm_gg_red16(const float a[16]);
float fm_gg_expf(float x);
/* ggml_vec_dot_f32 */
float fm_gg_dot(const float *x, const float *y, size_t n);
/* one output of tinyBLAS F32 (n % 16 == 0) */
float fm_gg_dot_tiny(const float *x, const float *y, size_t n);
/* ggml_vec_soft_max_f32 + the 1/sum scaling of ggml_soft_max, in place */
void fm_gg_softmax(float *x, size_t n);
/* The masked softmax of one attention row: x[t] for t in [lo, hi) are the
 * scores, every other position of the row is masked (-inf); chunks are
 * aligned to index 0. x must be writable on [lo & ~15, (hi + 15) & ~15). */
void fm_gg_softmax_masked(float *x, uint32_t lo, uint32_t hi);
/* out[d] = sum_t p[t] * V[t * vstride + d] for t in [lo, hi), d < hdv, as
 * ggml sums it over a row whose masked entries are 0: lanes = 16 for
 * tinyBLAS (a batch: lane t % 16), lanes = 64 for ggml_vec_dot_f32 (one
 * token, n_kv a multiple of 64: accumulator (t % 64) / 16, lane t % 16).
 * acc: scratch of lanes * hdv floats. */
void fm_gg_kqv(float *out, const float *V, size_t vstride, const float *p, uint32_t lo, uint32_t hi,
               size_t hdv, int lanes, float *acc);
/* g[i] = silu(g[i]) * u[i] as ggml_vec_swiglu_f32 */
void fm_gg_swiglu(float *g, const float *u, size_t n);

/* AVX2+FMA twins (runtime/ggml_ops_avx2.c); same results. */
float fm_gg_dot_avx2(const float *x, const float *y, size_t n);
float fm_gg_dot_tiny_avx2(const float *x, const float *y, size_t n);
void fm_gg_kqv_avx2(float *out, const float *V, size_t vstride, const float *p, uint32_t lo, uint32_t hi,
                    size_t hdv, int lanes, float *acc);
float fm_gg_expf_avx2(float x);

#endif
