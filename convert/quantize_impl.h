/* Internal: the quantizer's hot loops, scalar and AVX2 (bit-identical). */
#ifndef FM_QUANTIZE_IMPL_H
#define FM_QUANTIZE_IMPL_H

#include <stdint.h>

#define FM_QZ_LANES 8

/* Codes q[0..g) nearest to x for levels d * l + m (float arithmetic as the
 * dequantizer's, l in 0..nmax); returns sum w * err^2 (w NULL: 1). g % 8 == 0. */
double fm_qz_assign_ref(const float *x, const float *w, unsigned g, unsigned nmax, float d, float m, uint8_t *q);
double fm_qz_assign_avx2(const float *x, const float *w, unsigned g, unsigned nmax, float d, float m, uint8_t *q);

/* For codes l = round(min(iscale * (x - mn), nmax)): out = {sum w l, sum w l^2, sum w l x}. */
void fm_qz_sweep_ref(const float *x, const float *w, unsigned g, unsigned nmax, float iscale, float mn, double out[3]);
void fm_qz_sweep_avx2(const float *x, const float *w, unsigned g, unsigned nmax, float iscale, float mn, double out[3]);

#endif
