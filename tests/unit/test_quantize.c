/* Affine group schemes (formats/affine.h, spec rules A1..A4) and the
 * error-minimizing quantizer (convert/quantize.h). */
#include <math.h>
#include <stdint.h>

#include "convert/quantize.h"
#include "formats/affine.h"
#include "formats/quant.h"
#include "formats/util.h"
#include "t.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float gauss(void)
{
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v));
}

int main(void)
{
    /* A1: ids and block sizes */
    unsigned bits, g;
    CHECK(fm_affine_params(FM_Q_A4_32, &bits, &g) && bits == 4 && g == 32);
    CHECK(fm_affine_params(FM_Q_A3_64, &bits, &g) && bits == 3 && g == 64);
    CHECK(fm_affine_params(FM_Q_A2_128, &bits, &g) && bits == 2 && g == 128);
    CHECK(!fm_affine_params(FM_Q_Q4_K, &bits, &g));
    CHECK(fm_affine_qtype(3, 128) == FM_Q_A3_128 && fm_affine_qtype(5, 32) == -1);
    CHECK(fm_affine_block_bytes(3, 32) == 16 && fm_affine_block_bytes(2, 128) == 36);

    /* A2: bit-stream packing: every code of every width round-trips */
    for (unsigned b = 2; b <= 4; b++) {
        uint8_t blk[4 + 128 * 4 / 8] = {0};
        for (unsigned i = 0; i < 128; i++) {
            unsigned v = (i * 7 + 3) & ((1u << b) - 1), bit = i * b;
            blk[4 + bit / 8] |= (uint8_t)(v << (bit & 7));
            if ((bit & 7) + b > 8) blk[4 + bit / 8 + 1] |= (uint8_t)(v >> (8 - (bit & 7)));
        }
        int ok = 1;
        for (unsigned i = 0; i < 128; i++) ok &= fm_affine_code(blk + 4, b, i) == ((i * 7 + 3) & ((1u << b) - 1));
        CHECKF(ok, "bits %u", b);
    }

    /* A3: dequant formula d*q + m, multiply rounded first */
    uint8_t blk[20];
    fm_wr_u16le(blk, fm_f32_to_f16(0.5f));
    fm_wr_u16le(blk + 2, fm_f32_to_f16(-1.0f));
    for (int i = 0; i < 16; i++) blk[4 + i] = (uint8_t)((2 * i + 1) << 4 | (2 * i) % 16);
    float out[32];
    fm_affine_dequant_ref(4, 32, blk, out, 32);
    CHECK(out[0] == -1.0f && out[1] == -0.5f && out[2] == 0.0f && out[3] == 0.5f);

    /* quantizer: stats equal a re-measurement from the dequantized output, and
     * the search is never worse than min/max; report the MSE ratio */
    const size_t rows = 64, cols = 512;
    static float x[64 * 512], deq[512];
    for (size_t i = 0; i < rows * cols; i++) x[i] = 0.02f * gauss() + (urand() < 0.002 ? 0.2f : 0.0f);
    static uint8_t buf[64 * 512];
    fm_error e;
    const int types[] = {FM_Q_A4_32, FM_Q_A4_64, FM_Q_A4_128, FM_Q_A3_64, FM_Q_A2_32, FM_Q_A2_64, FM_Q_A2_128};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        fm_quant_stats smm, sse;
        fm_affine_params((uint32_t)types[k], &bits, &g);
        CHECK(fm_quant_affine((uint32_t)types[k], x, rows, cols, NULL, FM_QUANT_MINMAX, buf, &smm, &e) == FM_OK);
        CHECK(fm_quant_affine((uint32_t)types[k], x, rows, cols, NULL, FM_QUANT_SEARCH, buf, &sse, &e) == FM_OK);
        double sse2 = 0;
        size_t rb = cols / g * fm_affine_block_bytes(bits, g);
        for (size_t r = 0; r < rows; r++) {
            fm_affine_dequant_ref(bits, g, buf + r * rb, deq, cols);
            for (size_t c = 0; c < cols; c++) {
                double d = (double)deq[c] - x[r * cols + c];
                sse2 += d * d;
            }
        }
        CHECKF(fabs(sse2 - sse.sse) <= 1e-9 * sse.sse, "stats %g vs measured %g", sse.sse, sse2);
        CHECKF(sse.sse <= smm.sse, "A%u_%u: search %g > minmax %g", bits, g, sse.sse, smm.sse);
        printf("A%u_%-3u minmax rel %.4f  search rel %.4f  mse ratio %.3f\n", bits, g, fm_quant_stats_rel(&smm),
               fm_quant_stats_rel(&sse), sse.sse / smm.sse);
    }
    /* non-finite input is an error, not garbage */
    x[5] = NAN;
    CHECK(fm_quant_affine(FM_Q_A4_32, x, 1, 32, NULL, FM_QUANT_SEARCH, buf, NULL, &e) == FM_E_RANGE);
    CHECK(fm_quant_affine(FM_Q_A4_32, x, 1, 48, NULL, FM_QUANT_SEARCH, buf, NULL, &e) == FM_E_ARG);
    T_DONE();
}
