/* Tests for runtime/kernels_repack.{h,c} (+ kernels_repack_avx2.c): fm's
 * emulation of llama.cpp's repacked Q4_K matmul (block_q4_Kx8 with
 * ggml_gemm_q4_K_8x8_q8_K / ggml_gemv_q4_K_8x8_q8_K, chosen by llama.cpp's
 * CPU backend on AVX2 machines for Q4_K weights with rows % 8 == 0).
 *
 * R1  fm_matmul on Q4_K weights with rows % 8 == 0 equals llama.cpp's
 *     repacked mul_mat bit for bit: the first n - n % 4 activation rows in the
 *     gemm order, the rest in the gemv order (fixture
 *     tests/fixtures/kernels/repack.bin from tests/gen/gen_repack_ref.py:
 *     llama.cpp's own ggml_quantize_mat_q8_K_4x8 / quantize_row_q8_K /
 *     gemm / gemv through ctypes, n = 1, 4, 6, 23 and 8..32 rows). Exact
 *     equality: the integer sums are exact and every float operation is
 *     reproduced in llama.cpp's order, so no tolerance.
 * R2  the same with 1 and 3 threads and with the scalar twins (SIMD off):
 *     the result does not depend on the thread split or SIMD level.
 * R3  fm_repack_dot_q4_K_ref, _avx2 and (where the CPU has it) _avx512 equal the
 *     fixture per output.
 * R4  the test can fail: llama.cpp's vec_dot order (fixture V) differs from
 *     the repacked order in many outputs, and with the emulation switched off
 *     (fm_kernel_set_repack(false)) fm_matmul gives V bit for bit.
 * R5  fm_matmul equals llama.cpp's mul_mat of a real ggml graph (fixture
 *     tests/fixtures/kernels/mulmat_graph.bin, plain CPU buffer): Q6_K and Q4_K
 *     with n >= 8 take ggml-cpu/tiled (fm_tiled_dot_ref order), n = 7 vec_dot;
 *     Q8_0 / Q5_0 with n >= 2 take llamafile_sgemm (tinyBLAS_Q0_AVX), whose
 *     bits equal vec_dot's on x86 (fm's existing kernels). Exact equality,
 *     1 and 3 threads, SIMD on and off. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/quant.h"
#include "formats/quant_blocks.h"
#include "runtime/kernels.h"
#include "runtime/kernels_repack.h"
#include "runtime/pool.h"
#include "tests/unit/t.h"

static int rd(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

static size_t ndiff(const float *a, const float *b, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], 4) != 0;
    return d;
}

static void check_graph(fm_pool *pool)
{
    FILE *f = fopen(T_SRC("tests/fixtures/kernels/mulmat_graph.bin"), "rb");
    CHECKF(f != NULL, "tests/fixtures/kernels/mulmat_graph.bin missing (tests/gen/gen_repack_ref.py)");
    if (f == NULL) return;
    fm_error e;
    uint32_t ncases = 0;
    CHECK(rd(f, &ncases, 4) && ncases > 0 && ncases < 100);
    size_t tiled_vs_vecdot = 0;
    for (uint32_t c = 0; c < ncases; c++) {
        uint32_t h[4];
        if (!rd(f, h, sizeof h)) {
            CHECKF(0, "graph case %u: short header", c);
            break;
        }
        const uint32_t qtype = h[0], cols = h[1], rows = h[2], n = h[3];
        uint64_t rb = 0;
        CHECK(fm_qtype_nbytes(qtype, cols, &rb, &e) == FM_OK && rows <= 256 && n <= 64 && cols <= 4096);
        uint8_t *W = malloc((size_t)rows * rb);
        float *X = malloc((size_t)n * cols * 4), *Y = malloc((size_t)n * rows * 4),
              *V = malloc((size_t)n * rows * 4), *out = malloc((size_t)n * rows * 4);
        if (!W || !X || !Y || !V || !out || !rd(f, W, (size_t)rows * rb) || !rd(f, X, (size_t)n * cols * 4) ||
            !rd(f, Y, (size_t)n * rows * 4) || !rd(f, V, (size_t)n * rows * 4)) {
            CHECKF(0, "graph case %u: short data or no memory", c);
            break;
        }
        if (fm_tiled_applies(qtype, rows, cols, n)) tiled_vs_vecdot += ndiff(Y, V, (size_t)n * rows);
        for (int simd = 1; simd >= 0; simd--) {
            bool was = fm_kernel_simd();
            if (!simd) fm_kernel_set_simd(false);
            for (int th = 0; th < 2; th++) {
                memset(out, 0xff, (size_t)n * rows * 4);
                CHECK(fm_matmul(th ? pool : NULL, qtype, W, rows, cols, X, n, out, &e) == FM_OK);
                size_t d = ndiff(out, Y, (size_t)n * rows);
                CHECKF(d == 0, "R5 type %u cols %u rows %u n %u (simd %d, %d threads): %zu of %u outputs differ", qtype,
                       cols, rows, n, simd, th ? 3 : 1, d, n * rows);
            }
            fm_kernel_set_simd(was);
        }
        free(W);
        free(X);
        free(Y);
        free(V);
        free(out);
    }
    CHECKF(tiled_vs_vecdot > 0, "R5: tiled and vec_dot results never differ in the fixture");
    printf("tiled vs vec_dot order: %zu outputs differ\n", tiled_vs_vecdot);
    fclose(f);
}

int main(void)
{
    FILE *f = fopen(T_SRC("tests/fixtures/kernels/repack.bin"), "rb");
    CHECKF(f != NULL, "tests/fixtures/kernels/repack.bin missing (tests/gen/gen_repack_ref.py)");
    if (f == NULL) T_DONE();
    fm_pool *pool = NULL;
    fm_error e;
    CHECK(fm_pool_new(&pool, 3, &e) == FM_OK);
    uint32_t ncases = 0;
    CHECK(rd(f, &ncases, 4) && ncases > 0 && ncases < 100);
    size_t vdiff_total = 0;
    size_t n512 = 0; /* outputs checked through the AVX-512 twin */
    for (uint32_t c = 0; c < ncases; c++) {
        uint32_t h[4];
        if (!rd(f, h, sizeof h)) {
            CHECKF(0, "case %u: short header", c);
            break;
        }
        const uint32_t qtype = h[0], cols = h[1], rows = h[2], n = h[3];
        CHECK(qtype == FM_Q_Q4_K && cols % 256 == 0 && rows % 8 == 0 && n > 0 && cols <= 4096 && rows <= 256 &&
              n <= 64);
        const size_t nb = cols / 256, wbytes = (size_t)rows * nb * sizeof(fm_block_q4_K);
        uint8_t *W = malloc(wbytes);
        float *X = malloc((size_t)n * cols * 4), *Y = malloc((size_t)n * rows * 4),
              *V = malloc((size_t)n * rows * 4), *out = malloc((size_t)n * rows * 4);
        fm_block_q8_K *xq = malloc((size_t)n * nb * sizeof(fm_block_q8_K));
        if (!W || !X || !Y || !V || !out || !xq || !rd(f, W, wbytes) || !rd(f, X, (size_t)n * cols * 4) ||
            !rd(f, Y, (size_t)n * rows * 4) || !rd(f, V, (size_t)n * rows * 4)) {
            CHECKF(0, "case %u: short data or no memory", c);
            break;
        }
        CHECK(fm_repack_applies(FM_Q_Q4_K, rows, cols));
        /* R1 + R2 */
        for (int simd = 1; simd >= 0; simd--) {
            bool was = fm_kernel_simd();
            if (!simd) fm_kernel_set_simd(false);
            for (int th = 0; th < 2; th++) {
                memset(out, 0xff, (size_t)n * rows * 4);
                fm_err rc = fm_matmul(th ? pool : NULL, FM_Q_Q4_K, W, rows, cols, X, n, out, &e);
                CHECK(rc == FM_OK);
                size_t d = ndiff(out, Y, (size_t)n * rows);
                CHECKF(d == 0, "R1/R2 case %u (cols %u rows %u n %u, simd %d, %s): %zu of %u outputs differ", c,
                       cols, rows, n, simd, th ? "3 threads" : "1 thread", d, n * rows);
            }
            fm_kernel_set_simd(was);
        }
        /* R3 */
        for (uint32_t a = 0; a < n; a++) fm_quantize_q8_K(X + (size_t)a * cols, xq + (size_t)a * nb, cols);
        size_t dr = 0, da = 0, dz = 0;
        for (uint32_t a = 0; a < n; a++)
            for (uint32_t r = 0; r < rows; r++) {
                const int gemm = a < n - n % 4;
                const void *wr = W + (size_t)r * nb * sizeof(fm_block_q4_K);
                float yr = fm_repack_dot_q4_K_ref(nb, wr, xq + (size_t)a * nb, gemm);
                dr += memcmp(&yr, &Y[(size_t)a * rows + r], 4) != 0;
                if (fm_kernel_simd()) {
                    float ya = fm_repack_dot_q4_K_avx2(nb, wr, xq + (size_t)a * nb, gemm);
                    da += memcmp(&ya, &Y[(size_t)a * rows + r], 4) != 0;
                }
                if (fm_kernel_simd_level() >= 2) {
                    float yz = fm_repack_dot_q4_K_avx512(nb, wr, xq + (size_t)a * nb, gemm);
                    dz += memcmp(&yz, &Y[(size_t)a * rows + r], 4) != 0;
                    n512++;
                }
            }
        CHECKF(dr == 0 && da == 0 && dz == 0, "R3 case %u: ref %zu, avx2 %zu, avx512 %zu outputs differ", c, dr, da,
               dz);
        /* R4 */
        vdiff_total += ndiff(V, Y, (size_t)n * rows);
        bool prev = fm_kernel_set_repack(false);
        CHECK(!fm_repack_applies(FM_Q_Q4_K, rows, cols));
        CHECK(fm_matmul(pool, FM_Q_Q4_K, W, rows, cols, X, n, out, &e) == FM_OK);
        size_t dv = ndiff(out, V, (size_t)n * rows);
        CHECKF(dv == 0, "R4 case %u: repack off: %zu outputs differ from ggml_vec_dot_q4_K_q8_K", c, dv);
        fm_kernel_set_repack(prev);
        free(W);
        free(X);
        free(Y);
        free(V);
        free(out);
        free(xq);
    }
    CHECKF(vdiff_total > 0, "R4: the fixture's repacked and vec_dot results never differ");
    if (fm_kernel_simd_level() >= 2) CHECKF(n512 > 0, "R3: the AVX-512 twin was never run");
    printf("R3: %zu outputs also through the AVX-512 twin\n", n512);
    printf("repacked vs vec_dot order: %zu outputs differ\n", vdiff_total);
    /* not repacked: rows % 8 != 0, other types */
    CHECK(!fm_repack_applies(FM_Q_Q4_K, 12, 256));
    CHECK(!fm_repack_applies(FM_Q_Q6_K, 16, 256));
    CHECK(fm_tiled_applies(FM_Q_Q6_K, 16, 256, 8) && !fm_tiled_applies(FM_Q_Q6_K, 16, 256, 7));
    CHECK(!fm_tiled_applies(FM_Q_Q4_K, 16, 256, 8)); /* repacked instead */
    fclose(f);
    check_graph(pool);
    fm_pool_free(pool);
    T_DONE();
}
