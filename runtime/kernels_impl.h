/* Private to runtime/kernels.c and runtime/kernels_avx2.c. */
#ifndef FM_KERNELS_IMPL_H
#define FM_KERNELS_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/quant_blocks.h"

/* Most activation rows one tile call handles (weights are unpacked once per
 * tile and reused for each activation row). */
#define FM_NX 8

/* Integer-dot tile: for a in [0, nx): out[a*out_stride] = dot(weight row w of
 * nb blocks, quantized activation row xq + a*xq_stride bytes). */
typedef void (*fm_qdot_fn)(size_t nb, const void *w, const void *xq, size_t xq_stride, int nx,
                           float *out, size_t out_stride);
/* Activation quantizer: k floats -> k/bs blocks. */
typedef void (*fm_xquant_fn)(const float *x, void *y, size_t k);
/* Float tile: out[a*out_stride] = sum_c w[c] * x[a*x_stride + c] for a < nx,
 * w a row of cols values of the float type (F32/F16/BF16). */
typedef void (*fm_fdot_fn)(size_t cols, const void *w, const float *x, size_t x_stride, int nx,
                           float *out, size_t out_stride);

/* ggml's nearest_int: round half to even for |f| < 2^22 (defined for every
 * float bit pattern). */
static inline int fm_nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* f16 -> f32 for every bit pattern (exact, fm_f16_to_f32), filled once by the
 * kernels' initialisation before any kernel runs: one load instead of
 * vpinsrw + vcvtph2ps per block scale (what ggml's CPU backend does too). */
extern float fm_kern_f16_table[65536];

/* AVX2 twins (runtime/kernels_avx2.c). */
void fm_quantize_q8_K_avx2(const float *x, void *y, size_t k);
void fm_quantize_q8_0_avx2(const float *x, void *y, size_t k);
void fm_quantize_q8_1_avx2(const float *x, void *y, size_t k);

void fm_qdot_q4_0_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q4_1_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q5_0_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q5_1_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q8_0_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_iq4_nl_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q2_K_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q3_K_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q4_K_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q5_K_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q6_K_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_iq4_xs_avx2(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);

/* The same tiles compiled for AVX-512F/BW/VL + VNNI (EVEX, vpdpbusd); bit-exact
 * with the _avx2 ones. Called only when the CPU has those features. */
void fm_qdot_q4_0_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q4_1_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q5_0_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q5_1_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q8_0_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_iq4_nl_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q2_K_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q3_K_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q4_K_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q5_K_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_q6_K_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);
void fm_qdot_iq4_xs_avx512(size_t nb, const void *w, const void *xq, size_t xs, int nx, float *out, size_t os);

void fm_fdot_f32_avx2(size_t cols, const void *w, const float *x, size_t xs, int nx, float *out, size_t os);
void fm_fdot_f16_avx2(size_t cols, const void *w, const float *x, size_t xs, int nx, float *out, size_t os);
void fm_fdot_bf16_avx2(size_t cols, const void *w, const float *x, size_t xs, int nx, float *out, size_t os);

float fm_dot_f32_avx2(const float *a, const float *b, size_t n);
void fm_axpy_f32_avx2(float *y, float a, const float *x, size_t n);

/* IQ4_NL / IQ4_XS code book (ggml kvalues_iq4nl). */
static const int8_t fm_kern_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113};

#endif
