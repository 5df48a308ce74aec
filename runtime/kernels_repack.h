/* llama.cpp's repacked Q4_K matmul order (private to runtime/kernels*.c and
 * tests).
 *
 * On x86 with AVX2, llama.cpp's CPU backend repacks every Q4_K weight matrix
 * whose row count is a multiple of 8 into block_q4_Kx8 (ggml-cpu/repack.cpp,
 * ggml_repack_get_optimal_repack_type; on this ggml version Q6_K, Q5_0 and
 * Q8_0 are repacked only on ARM, Q2_K only with AVX-512, Q4_0/IQ4_NL/MXFP4
 * have their own kernels not reproduced here) and multiplies with
 *  - ggml_gemm_q4_K_8x8_q8_K for the first n - n % 4 activation rows: per
 *    super-block, per pair of sub-blocks (sb = 0..3)
 *      acc  = fma((float)(sc[2sb]*dot[2sb] + sc[2sb+1]*dot[2sb+1]), d_w*d_a, acc)
 *      accm = fma((float)(mn[2sb]*bsum[2sb] + mn[2sb+1]*bsum[2sb+1]), dmin_w*d_a, accm)
 *  - ggml_gemv_q4_K_8x8_q8_K for the n % 4 remaining rows: the same with one
 *    fma of each kind per super-block (integer sums over all 8 sub-blocks);
 *  result = acc - accm (every output is independent of thread split and tiling).
 * The activations are quantized to Q8_K exactly as fm_quantize_q8_K (the
 * 4-row quantizer ggml_quantize_mat_q8_K_4x8 may flip the sign of a block's
 * d and quants when +amax and -amax both occur, which cancels exactly). */
#ifndef FM_KERNELS_REPACK_H
#define FM_KERNELS_REPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/err.h"
#include "runtime/pool.h"

/* true when llama.cpp would repack this weight (Q4_K, rows % 8 == 0, whole
 * super-blocks) and the emulation is enabled (default; FM_NO_REPACK=1 in the
 * environment or fm_kernel_set_repack(false) turns it off). */
bool fm_repack_applies(uint32_t qtype, size_t rows, size_t cols);
bool fm_kernel_set_repack(bool on); /* returns the previous setting */

/* llama.cpp's "tiled" K-quant matmul (ggml-cpu/tiled, on by default,
 * GGML_CPU_TILED_MM=0 turns it off there) takes Q6_K/Q5_K/Q4_K/Q3_K/Q2_K/IQ*
 * weights that are not repacked when n >= 8 activation rows. Its VNNI
 * microkernel (the path on this CPU) sums per 256-block b in integers, then
 *   acc = acc + ((float)isum_b * d_w [- dmin_w * (float)imin_b, fused]) * d_a
 * from acc = 0, blocks in order (GCC contracts the microkernel's
 * add(acc, mul(r, d_a)) into that FMA). fm reproduces Q6_K and Q4_K; the
 * switch FM_NO_REPACK also turns this off. */
bool fm_tiled_applies(uint32_t qtype, size_t rows, size_t cols, size_t n);
float fm_tiled_dot_ref(uint32_t qtype, size_t nb, const void *w, const void *xq);
float fm_tiled_dot_avx2(uint32_t qtype, size_t nb, const void *w, const void *xq); /* same bits */

/* fm_matmul for a weight where fm_repack_applies or fm_tiled_applies: same contract. */
fm_err fm_matmul_repack(fm_pool *pool, uint32_t qtype, const void *W, size_t rows, size_t cols,
                        const float *X, size_t n, float *Y, fm_error *e);

/* One output: weight row w (nb Q4_K blocks) with activation row xq (nb Q8_K
 * blocks); gemm != 0 selects the gemm order, 0 the gemv order. _ref is plain C
 * (fmaf), _avx2 the SIMD twin (same bits). */
float fm_repack_dot_q4_K_ref(size_t nb, const void *w, const void *xq, int gemm);
float fm_repack_dot_q4_K_avx2(size_t nb, const void *w, const void *xq, int gemm);
/* AVX-512BW twin (same bits; the gemv order with 512-bit vectors, gemm as
 * _avx2): only where fm_kernel_simd_level() >= 2. */
float fm_repack_dot_q4_K_avx512(size_t nb, const void *w, const void *xq, int gemm);

#endif
