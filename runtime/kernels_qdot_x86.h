/* Integer-dot tile kernels for x86, included twice by runtime/kernels_avx2.c:
 * as the AVX2 set (FM_SFX(n) = n##_avx2, FM_VNNI 0) and, under an
 * avx512f/bw/vl/vnni target pragma, as the AVX-512VL set (n##_avx512,
 * FM_VNNI 1). Same intrinsics and the same integer lanes either way; the
 * second set only lets the compiler use EVEX encodings (32 registers,
 * ternary logic, folded loads) and vpdpbusd for maddubs+madd-by-ones, which
 * gives the same int32 lanes since those maddubs never saturate here
 * (|u8| <= 128, |s8| <= 127, pairs <= 32512). No include guard on purpose. */

#define TILE(n) FM_SFX(n##_tile)
#if FM_VNNI
FM_AI __m512i FM_SFX(loadu512)(const void *p) { return _mm512_loadu_si512(p); }
#define loadu512 FM_SFX(loadu512)
#endif
#define MULSUM_I8 FM_SFX(mul_sum_i8)
#define MULSUM_U8 FM_SFX(mul_sum_u8)

/* int32 lanes of 4 products each, as float: |x| * sign(y, x) */
FM_AI __m256 MULSUM_I8(__m256i ax, __m256i x, __m256i y)
{
    const __m256i sy = _mm256_sign_epi8(y, x);
#if FM_VNNI
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy));
#else
    const __m256i dot = _mm256_maddubs_epi16(ax, sy);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot));
#endif
}

FM_AI __m256 MULSUM_U8(__m256i ux, __m256i sy)
{
#if FM_VNNI
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ux, sy));
#else
    const __m256i dot = _mm256_maddubs_epi16(ux, sy);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot));
#endif
}

/* ---- 32-block types with Q8_0 activations ---- */

FM_AI void TILE(q8_0)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                     size_t os)
{
    const fm_block_q8_0 *x = vw;
    __m256 acc[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) acc[a] = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++) {
        const float dx = f16(x[i].d);
        const __m256i qx = loadu256(x[i].qs);
        const __m256i ax = _mm256_sign_epi8(qx, qx);
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const fm_block_q8_0 *y = Y_AT(fm_block_q8_0, a, i);
            const __m256 d = _mm256_set1_ps(dx * f16(y->d));
            acc[a] = _mm256_fmadd_ps(d, MULSUM_I8(ax, qx, loadu256(y->qs)), acc[a]);
        }
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) out[(size_t)a * os] = hsum_ps(acc[a]);
}
FM_TILE_DISPATCH(q8_0)

FM_AI void TILE(q4_0)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                     size_t os)
{
    const fm_block_q4_0 *x = vw;
    __m256 acc[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) acc[a] = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++) {
        const float dx = f16(x[i].d);
        const __m256i qx = _mm256_sub_epi8(bytes_from_nibbles_32(x[i].qs), _mm256_set1_epi8(8));
        const __m256i ax = _mm256_sign_epi8(qx, qx);
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const fm_block_q8_0 *y = Y_AT(fm_block_q8_0, a, i);
            const __m256 d = _mm256_set1_ps(dx * f16(y->d));
            acc[a] = _mm256_fmadd_ps(d, MULSUM_I8(ax, qx, loadu256(y->qs)), acc[a]);
        }
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) out[(size_t)a * os] = hsum_ps(acc[a]);
}
FM_TILE_DISPATCH(q4_0)

FM_AI void TILE(q5_0)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                     size_t os)
{
    const fm_block_q5_0 *x = vw;
    __m256 acc[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) acc[a] = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++) {
        const float dx = f16(x[i].d);
        __m256i qx = bytes_from_nibbles_32(x[i].qs);
        const __m256i bxhi = _mm256_andnot_si256(bytes_from_bits_32(x[i].qh), _mm256_set1_epi8((char)0xF0));
        qx = _mm256_or_si256(qx, bxhi);
        const __m256i ax = _mm256_sign_epi8(qx, qx);
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const fm_block_q8_0 *y = Y_AT(fm_block_q8_0, a, i);
            const __m256 d = _mm256_set1_ps(dx * f16(y->d));
            acc[a] = _mm256_fmadd_ps(d, MULSUM_I8(ax, qx, loadu256(y->qs)), acc[a]);
        }
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) out[(size_t)a * os] = hsum_ps(acc[a]);
}
FM_TILE_DISPATCH(q5_0)


FM_AI void TILE(iq4_nl)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                       size_t os)
{
    const fm_block_iq4_nl *x = vw;
    const __m128i values = loadu128(fm_kern_iq4nl);
    __m256 acc1[FM_NX], acc2[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) acc1[a] = acc2[a] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 1 < nb; i += 2) {
        const __m256i q1 = iq4nl_bytes(x[i].qs, values);
        const __m256i q2 = iq4nl_bytes(x[i + 1].qs, values);
        const __m256i a1 = _mm256_sign_epi8(q1, q1), a2 = _mm256_sign_epi8(q2, q2);
        const float d1 = f16(x[i].d), d2 = f16(x[i + 1].d);
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const fm_block_q8_0 *y = Y_AT(fm_block_q8_0, a, i);
            acc1[a] = _mm256_fmadd_ps(_mm256_set1_ps(f16(y[0].d) * d1), MULSUM_I8(a1, q1, loadu256(y[0].qs)),
                                      acc1[a]);
            acc2[a] = _mm256_fmadd_ps(_mm256_set1_ps(f16(y[1].d) * d2), MULSUM_I8(a2, q2, loadu256(y[1].qs)),
                                      acc2[a]);
        }
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) {
        float sumf = hsum_ps(_mm256_add_ps(acc1[a], acc2[a]));
        for (size_t t = i; t < nb; t++) {
            const fm_block_q8_0 *y = Y_AT(fm_block_q8_0, a, t);
            int32_t s = 0;
            for (int j = 0; j < 16; j++) {
                s += y->qs[j] * fm_kern_iq4nl[x[t].qs[j] & 15];
                s += y->qs[j + 16] * fm_kern_iq4nl[x[t].qs[j] >> 4];
            }
            sumf += (f16(y->d) * f16(x[t].d)) * (float)s;
        }
        out[(size_t)a * os] = sumf;
    }
}
FM_TILE_DISPATCH(iq4_nl)

/* ---- Q8_1 activations ---- */

FM_AI void TILE(q4_1)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                     size_t os)
{
    const fm_block_q4_1 *x = vw;
    __m256 acc[FM_NX];
    float summs[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) {
        acc[a] = _mm256_setzero_ps();
        summs[a] = 0;
    }
    for (size_t i = 0; i < nb; i++) {
        const float d0 = f16(x[i].d), m0 = f16(x[i].m);
        const __m256i qx = bytes_from_nibbles_32(x[i].qs);
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const fm_block_q8_1 *y = Y_AT(fm_block_q8_1, a, i);
            summs[a] += m0 * f16(y->s);
            const __m256 d0d1 = _mm256_mul_ps(_mm256_set1_ps(d0), _mm256_set1_ps(f16(y->d)));
            acc[a] = _mm256_fmadd_ps(d0d1, MULSUM_U8(qx, loadu256(y->qs)), acc[a]);
        }
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) out[(size_t)a * os] = hsum_ps(acc[a]) + summs[a];
}
FM_TILE_DISPATCH(q4_1)

FM_AI void TILE(q5_1)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                     size_t os)
{
    const fm_block_q5_1 *x = vw;
    __m256 acc[FM_NX];
    float summs[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) {
        acc[a] = _mm256_setzero_ps();
        summs[a] = 0;
    }
    for (size_t i = 0; i < nb; i++) {
        const float d0 = f16(x[i].d), m0 = f16(x[i].m);
        __m256i qx = bytes_from_nibbles_32(x[i].qs);
        qx = _mm256_or_si256(qx, _mm256_and_si256(bytes_from_bits_32(x[i].qh), _mm256_set1_epi8(0x10)));
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const fm_block_q8_1 *y = Y_AT(fm_block_q8_1, a, i);
            summs[a] += m0 * f16(y->s);
            const __m256 dxdy = _mm256_mul_ps(_mm256_set1_ps(d0), _mm256_set1_ps(f16(y->d)));
            acc[a] = _mm256_fmadd_ps(MULSUM_U8(qx, loadu256(y->qs)), dxdy, acc[a]);
        }
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) out[(size_t)a * os] = hsum_ps(acc[a]) + summs[a];
}
FM_TILE_DISPATCH(q5_1)

/* ---- K-quants (Q8_K activations) ---- */





FM_AI void TILE(q2_K)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                     size_t os)
{
    const fm_block_q2_K *x = vw;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0xF);
    __m256 acc[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) acc[a] = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++) {
        FM_PREFETCH_BLOCKS(x + i, sizeof(fm_block_q2_K));
        const float xd = f16(x[i].d), xdmin = f16(x[i].dmin);
        const uint8_t *q2 = x[i].qs;
        const __m128i mins_and_scales = loadu128(x[i].scales);
        const __m128i scales8 = _mm_and_si128(mins_and_scales, m4);
        const __m128i mins8 = _mm_and_si128(_mm_srli_epi16(mins_and_scales, 4), m4);
        const __m256i mins = _mm256_cvtepi8_epi16(mins8);
        const __m256i all_scales = _mm256_cvtepi8_epi16(scales8);
        const __m128i l_scales = _mm256_extracti128_si256(all_scales, 0);
        const __m128i h_scales = _mm256_extracti128_si256(all_scales, 1);
        const __m256i scales[2] = {_mm256_set_m128i(l_scales, l_scales), _mm256_set_m128i(h_scales, h_scales)};
        __m256i sumi[FM_NX];
        float d[FM_NX];
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const fm_block_q8_K *y = Y_AT(fm_block_q8_K, a, i);
            d[a] = y->d * xd;
            const float dmin = -y->d * xdmin;
            const __m256i prod = _mm256_madd_epi16(mins, q8k_bsums(y));
            acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc[a]);
            sumi[a] = _mm256_setzero_si256();
        }
        FM_UNROLL
        for (int j = 0; j < 2; j++) {
            const __m256i q2bits = loadu256(q2 + 32 * j);
            const __m256i q2_0 = _mm256_and_si256(q2bits, m3);
            const __m256i q2_1 = _mm256_and_si256(_mm256_srli_epi16(q2bits, 2), m3);
            const __m256i q2_2 = _mm256_and_si256(_mm256_srli_epi16(q2bits, 4), m3);
            const __m256i q2_3 = _mm256_and_si256(_mm256_srli_epi16(q2bits, 6), m3);
            const __m256i s0 = _mm256_shuffle_epi8(scales[j], shuffle_q3k(0));
            const __m256i s1 = _mm256_shuffle_epi8(scales[j], shuffle_q3k(1));
            const __m256i s2 = _mm256_shuffle_epi8(scales[j], shuffle_q3k(2));
            const __m256i s3 = _mm256_shuffle_epi8(scales[j], shuffle_q3k(3));
            FM_UNROLL
            for (int a = 0; a < NX; a++) {
                const int8_t *q8 = q8k_qs(Y_AT(fm_block_q8_K, a, i)) + 128 * j;
                __m256i p0 = _mm256_madd_epi16(s0, _mm256_maddubs_epi16(q2_0, loadu256(q8)));
                __m256i p1 = _mm256_madd_epi16(s1, _mm256_maddubs_epi16(q2_1, loadu256(q8 + 32)));
                __m256i p2 = _mm256_madd_epi16(s2, _mm256_maddubs_epi16(q2_2, loadu256(q8 + 64)));
                __m256i p3 = _mm256_madd_epi16(s3, _mm256_maddubs_epi16(q2_3, loadu256(q8 + 96)));
                p0 = _mm256_add_epi32(p0, p1);
                p2 = _mm256_add_epi32(p2, p3);
                sumi[a] = _mm256_add_epi32(sumi[a], _mm256_add_epi32(p0, p2));
            }
        }
        FM_UNROLL
        for (int a = 0; a < NX; a++)
            acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(d[a]), _mm256_cvtepi32_ps(sumi[a]), acc[a]);
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) out[(size_t)a * os] = hsum_ps(acc[a]);
}
FM_TILE_DISPATCH(q2_K)

FM_AI void TILE(q3_K)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                     size_t os)
{
    const fm_block_q3_K *x = vw;
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i mone = _mm256_set1_epi8(1);
    const __m128i m32 = _mm_set1_epi8(32);
    __m256 acc[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) acc[a] = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++) {
        FM_PREFETCH_BLOCKS(x + i, sizeof(fm_block_q3_K));
        const float xd = f16(x[i].d);
        const uint8_t *q3 = x[i].qs;
        uint32_t aux[3];
        memcpy(aux, x[i].scales, 12);
        __m128i scales128 = _mm_set_epi32((int)(((aux[1] >> 4) & kmask2) | (((aux[2] >> 6) & kmask1) << 4)),
                                          (int)(((aux[0] >> 4) & kmask2) | (((aux[2] >> 4) & kmask1) << 4)),
                                          (int)((aux[1] & kmask2) | (((aux[2] >> 2) & kmask1) << 4)),
                                          (int)((aux[0] & kmask2) | (((aux[2] >> 0) & kmask1) << 4)));
        scales128 = _mm_sub_epi8(scales128, m32);
        const __m256i all_scales = _mm256_cvtepi8_epi16(scales128);
        const __m128i l_scales = _mm256_extracti128_si256(all_scales, 0);
        const __m128i h_scales = _mm256_extracti128_si256(all_scales, 1);
        const __m256i scales[2] = {_mm256_set_m128i(l_scales, l_scales), _mm256_set_m128i(h_scales, h_scales)};
        const __m256i hbits = loadu256(x[i].hmask);
        __m256i sumi[FM_NX];
        FM_UNROLL
        for (int a = 0; a < NX; a++) sumi[a] = _mm256_setzero_si256();
        int bit = 0;
        FM_UNROLL
        for (int j = 0; j < 2; j++) {
            const __m256i q3bits = loadu256(q3 + 32 * j);
            __m256i ql[4], qh[4], sc[4];
            FM_UNROLL
            for (int l = 0; l < 4; l++) {
                ql[l] = _mm256_and_si256(_mm256_srli_epi16(q3bits, 2 * l), m3);
                qh[l] = _mm256_slli_epi16(
                    _mm256_srli_epi16(_mm256_andnot_si256(hbits, _mm256_slli_epi16(mone, bit)), bit), 2);
                ++bit;
                sc[l] = _mm256_shuffle_epi8(scales[j], shuffle_q3k(l));
            }
            FM_UNROLL
            for (int a = 0; a < NX; a++) {
                const int8_t *q8 = q8k_qs(Y_AT(fm_block_q8_K, a, i)) + 128 * j;
                __m256i p[4];
                FM_UNROLL
                for (int l = 0; l < 4; l++) {
                    const __m256i y8 = loadu256(q8 + 32 * l);
                    const __m256i s8 = _mm256_maddubs_epi16(qh[l], y8);
                    const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(ql[l], y8), s8);
                    p[l] = _mm256_madd_epi16(sc[l], p16);
                }
                p[0] = _mm256_add_epi32(p[0], p[1]);
                p[2] = _mm256_add_epi32(p[2], p[3]);
                sumi[a] = _mm256_add_epi32(sumi[a], _mm256_add_epi32(p[0], p[2]));
            }
        }
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const float d = Y_AT(fm_block_q8_K, a, i)->d * xd;
            acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[a]), acc[a]);
        }
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) out[(size_t)a * os] = hsum_ps(acc[a]);
}
FM_TILE_DISPATCH(q3_K)



FM_AI void TILE(q4_K)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                     size_t os)
{
    const fm_block_q4_K *x = vw;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc[FM_NX];
    __m128 acc_m[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) {
        acc[a] = _mm256_setzero_ps();
        acc_m[a] = _mm_setzero_ps();
    }
    for (size_t i = 0; i < nb; i++) {
        FM_PREFETCH_BLOCKS(x + i, sizeof(fm_block_q4_K));
        const float xd = f16(x[i].d), xdmin = f16(x[i].dmin);
        const __m256i mins_and_scales = k4_mins_and_scales(x[i].scales);
        const __m128i sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
        const __m256i scales = _mm256_set_m128i(sc128, sc128);
        const uint8_t *q4 = x[i].qs;
        __m256i sumi[FM_NX];
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const fm_block_q8_K *y = Y_AT(fm_block_q8_K, a, i);
            const float dmin = -y->d * xdmin;
            const __m128i prod = k4_minprod(mins_and_scales, y);
            acc_m[a] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m[a]);
            sumi[a] = _mm256_setzero_si256();
        }
#if FM_VNNI
        /* 512-bit: chunk pair (2p, 2p+1) per step; int32 lanes 0-7 hold chunk 2p,
         * lanes 8-15 chunk 2p+1, folded into the same 8 lanes at the end */
        (void)scales;
        const __m512i msc = _mm512_castsi256_si512(mins_and_scales);
        const __m512i m4z = _mm512_set1_epi8(0xF);
        __m512i sumz[FM_NX];
        FM_UNROLL
        for (int a = 0; a < NX; a++) sumz[a] = _mm512_setzero_si512();
        FM_UNROLL
        for (int p = 0; p < 2; p++) {
            const __m512i scl = _mm512_permutexvar_epi16(
                _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * p)), _mm256_set1_epi16((short)(4 * p + 2)), 1), msc);
            const __m512i sch = _mm512_permutexvar_epi16(
                _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * p + 1)), _mm256_set1_epi16((short)(4 * p + 3)), 1), msc);
            const __m512i bits = _mm512_loadu_si512((const void *)(q4 + 64 * p));
            const __m512i ql = _mm512_and_si512(bits, m4z);
            const __m512i qh = _mm512_and_si512(_mm512_srli_epi16(bits, 4), m4z);
            FM_UNROLL
            for (int a = 0; a < NX; a++) {
                const int8_t *q8 = q8k_qs(Y_AT(fm_block_q8_K, a, i)) + 128 * p;
                const __m512i L = _mm512_loadu_si512((const void *)q8), M = _mm512_loadu_si512((const void *)(q8 + 64));
                const __m512i pl = _mm512_madd_epi16(scl, _mm512_maddubs_epi16(ql, _mm512_shuffle_i64x2(L, M, 0x44)));
                const __m512i ph = _mm512_madd_epi16(sch, _mm512_maddubs_epi16(qh, _mm512_shuffle_i64x2(L, M, 0xEE)));
                sumz[a] = _mm512_add_epi32(sumz[a], _mm512_add_epi32(pl, ph));
            }
        }
        FM_UNROLL
        for (int a = 0; a < NX; a++)
            sumi[a] = _mm256_add_epi32(_mm512_castsi512_si256(sumz[a]), _mm512_extracti64x4_epi64(sumz[a], 1));
        (void)m4;
#else
        FM_UNROLL
        for (int j = 0; j < 4; j++) {
            const __m256i scale_l = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j));
            const __m256i scale_h = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j + 1));
            const __m256i q4bits = loadu256(q4 + 32 * j);
            const __m256i q4l = _mm256_and_si256(q4bits, m4);
            const __m256i q4h = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
            FM_UNROLL
            for (int a = 0; a < NX; a++) {
                const int8_t *q8 = q8k_qs(Y_AT(fm_block_q8_K, a, i)) + 64 * j;
                const __m256i p16l = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, loadu256(q8)));
                const __m256i p16h = _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, loadu256(q8 + 32)));
                sumi[a] = _mm256_add_epi32(sumi[a], _mm256_add_epi32(p16l, p16h));
            }
        }
#endif
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const float d = Y_AT(fm_block_q8_K, a, i)->d * xd;
            acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[a]), acc[a]);
        }
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) out[(size_t)a * os] = hsum_ps(acc[a]) + hsum_ps4(acc_m[a]);
}
FM_TILE_DISPATCH(q4_K)

FM_AI void TILE(q5_K)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                     size_t os)
{
    const fm_block_q5_K *x = vw;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const __m128i mzero = _mm_setzero_si128();
    const __m256i mone = _mm256_set1_epi8(1);
    __m256 acc[FM_NX];
    float summs[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) {
        acc[a] = _mm256_setzero_ps();
        summs[a] = 0;
    }
    for (size_t i = 0; i < nb; i++) {
        FM_PREFETCH_BLOCKS(x + i, sizeof(fm_block_q5_K));
        const float xd = f16(x[i].d), xdmin = f16(x[i].dmin);
        const __m256i mins_and_scales = k4_mins_and_scales(x[i].scales);
        const __m128i sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
        const __m256i scales = _mm256_set_m128i(sc128, sc128);
        const uint8_t *q5 = x[i].qs;
        __m256i sumi[FM_NX];
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const fm_block_q8_K *y = Y_AT(fm_block_q8_K, a, i);
            const float dmin = -y->d * xdmin;
            const __m128i prod = k4_minprod(mins_and_scales, y);
            const __m128i hsum = _mm_hadd_epi32(_mm_hadd_epi32(prod, mzero), mzero);
            /* fused: ggml's build contracts `summs += dmin * x` (gcc's default -ffp-contract=fast) */
            summs[a] = fmaf(dmin, (float)_mm_extract_epi32(hsum, 0), summs[a]);
            sumi[a] = _mm256_setzero_si256();
        }
#if FM_VNNI
        /* 512-bit, chunk pairs as in the Q4_K tile; the 5th bit of chunk c's
         * low / high nibbles is bit 2c / 2c+1 of qh */
        (void)mone;
        const __m512i msc = _mm512_castsi256_si512(scales);
        const __m512i m4z = _mm512_set1_epi8(0xF), m1z = _mm512_set1_epi8(1);
        const __m512i H = _mm512_broadcast_i64x4(loadu256(x[i].qh));
        __m512i sumz[FM_NX];
        FM_UNROLL
        for (int a = 0; a < NX; a++) sumz[a] = _mm512_setzero_si512();
        FM_UNROLL
        for (int p = 0; p < 2; p++) {
            const __m512i scl = _mm512_permutexvar_epi16(
                _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * p)), _mm256_set1_epi16((short)(4 * p + 2)), 1), msc);
            const __m512i sch = _mm512_permutexvar_epi16(
                _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * p + 1)), _mm256_set1_epi16((short)(4 * p + 3)), 1), msc);
            const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * p)), _mm256_set1_epi16((short)(4 * p + 2)), 1);
            const __m512i shh = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * p + 1)), _mm256_set1_epi16((short)(4 * p + 3)), 1);
            const __m512i bits = _mm512_loadu_si512((const void *)(q5 + 64 * p));
            const __m512i hl = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, shl), m1z), 4);
            const __m512i hh = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, shh), m1z), 4);
            const __m512i ql = _mm512_add_epi8(_mm512_and_si512(bits, m4z), hl);
            const __m512i qh = _mm512_add_epi8(_mm512_and_si512(_mm512_srli_epi16(bits, 4), m4z), hh);
            FM_UNROLL
            for (int a = 0; a < NX; a++) {
                const int8_t *q8 = q8k_qs(Y_AT(fm_block_q8_K, a, i)) + 128 * p;
                const __m512i L = loadu512(q8), M = loadu512(q8 + 64);
                const __m512i pl = _mm512_madd_epi16(scl, _mm512_maddubs_epi16(ql, _mm512_shuffle_i64x2(L, M, 0x44)));
                const __m512i ph = _mm512_madd_epi16(sch, _mm512_maddubs_epi16(qh, _mm512_shuffle_i64x2(L, M, 0xEE)));
                sumz[a] = _mm512_add_epi32(sumz[a], _mm512_add_epi32(pl, ph));
            }
        }
        FM_UNROLL
        for (int a = 0; a < NX; a++)
            sumi[a] = _mm256_add_epi32(_mm512_castsi512_si256(sumz[a]), _mm512_extracti64x4_epi64(sumz[a], 1));
        (void)m4;
#else
        const __m256i hbits = loadu256(x[i].qh);
        __m256i hmask = mone;
        int bit = 0;
        FM_UNROLL
        for (int j = 0; j < 4; j++) {
            const __m256i scale_0 = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j));
            const __m256i scale_1 = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j + 1));
            const __m256i q5bits = loadu256(q5 + 32 * j);
            const __m256i q5l_0 = _mm256_and_si256(q5bits, m4);
            const __m256i q5h_0 = _mm256_slli_epi16(_mm256_srli_epi16(_mm256_and_si256(hbits, hmask), bit++), 4);
            const __m256i q5_0 = _mm256_add_epi8(q5l_0, q5h_0);
            hmask = _mm256_slli_epi16(hmask, 1);
            const __m256i q5l_1 = _mm256_and_si256(_mm256_srli_epi16(q5bits, 4), m4);
            const __m256i q5h_1 = _mm256_slli_epi16(_mm256_srli_epi16(_mm256_and_si256(hbits, hmask), bit++), 4);
            const __m256i q5_1 = _mm256_add_epi8(q5l_1, q5h_1);
            hmask = _mm256_slli_epi16(hmask, 1);
            FM_UNROLL
            for (int a = 0; a < NX; a++) {
                const int8_t *q8 = q8k_qs(Y_AT(fm_block_q8_K, a, i)) + 64 * j;
                const __m256i p0 = _mm256_madd_epi16(scale_0, _mm256_maddubs_epi16(q5_0, loadu256(q8)));
                const __m256i p1 = _mm256_madd_epi16(scale_1, _mm256_maddubs_epi16(q5_1, loadu256(q8 + 32)));
                sumi[a] = _mm256_add_epi32(sumi[a], _mm256_add_epi32(p0, p1));
            }
        }
#endif
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const float d = Y_AT(fm_block_q8_K, a, i)->d * xd;
            acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[a]), acc[a]);
        }
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) out[(size_t)a * os] = hsum_ps(acc[a]) + summs[a];
}
FM_TILE_DISPATCH(q5_K)

FM_AI void TILE(q6_K)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                     size_t os)
{
    const fm_block_q6_K *x = vw;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i m15 = _mm256_set1_epi8(15);
    __m256 acc[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) acc[a] = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++) {
        FM_PREFETCH_BLOCKS(x + i, sizeof(fm_block_q6_K));
        const float xd = f16(x[i].d);
        const uint8_t *q4 = x[i].ql;
        const uint8_t *qh = x[i].qh;
        const __m128i scales = loadu128(x[i].scales);
        const __m256i scales_16 = _mm256_cvtepi8_epi16(scales);
        __m256i sumi[FM_NX];
        FM_UNROLL
        for (int a = 0; a < NX; a++) sumi[a] = _mm256_setzero_si256();
#if FM_VNNI
        /* 512-bit: chunks (l, l+1) of half j per step, lanes 0-7 chunk l, 8-15
         * chunk l+1, folded at the end (same integer lanes) */
        const __m512i sc16z = _mm512_castsi256_si512(scales_16);
        const __m512i m15z = _mm512_set1_epi8(15), m30z = _mm512_set1_epi8(0x30);
        __m512i sumz[FM_NX];
        FM_UNROLL
        for (int a = 0; a < NX; a++) sumz[a] = _mm512_setzero_si512();
        FM_UNROLL
        for (int j = 0; j < 2; j++) {
            const __m512i QL = _mm512_loadu_si512((const void *)(q4 + 64 * j));
            const __m512i H = _mm512_broadcast_i64x4(loadu256(qh + 32 * j));
            const __m512i hA = _mm512_and_si512(_mm512_sllv_epi16(H, loadu512(k_q6_shl)), m30z);
            const __m512i hB = _mm512_and_si512(_mm512_srlv_epi16(H, loadu512(k_q6_shr)), m30z);
            const __m512i qA = _mm512_or_si512(_mm512_and_si512(QL, m15z), hA);
            const __m512i qB = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(QL, 4), m15z), hB);
            const __m512i scA = _mm512_permutexvar_epi16(loadu512(k_q6_idx[2 * j]), sc16z);
            const __m512i scB = _mm512_permutexvar_epi16(loadu512(k_q6_idx[2 * j + 1]), sc16z);
            FM_UNROLL
            for (int a = 0; a < NX; a++) {
                const int8_t *q8 = q8k_qs(Y_AT(fm_block_q8_K, a, i)) + 128 * j;
                const __m512i pA = _mm512_madd_epi16(scA, _mm512_maddubs_epi16(qA, loadu512(q8)));
                const __m512i pB = _mm512_madd_epi16(scB, _mm512_maddubs_epi16(qB, loadu512(q8 + 64)));
                sumz[a] = _mm512_add_epi32(sumz[a], _mm512_add_epi32(pA, pB));
            }
        }
        FM_UNROLL
        for (int a = 0; a < NX; a++)
            sumi[a] = _mm256_add_epi32(_mm512_castsi512_si256(sumz[a]), _mm512_extracti64x4_epi64(sumz[a], 1));
        (void)m3;
        (void)m15;
#else
        FM_UNROLL
        for (int j = 0; j < 2; j++) {
            const __m256i q4bits1 = loadu256(q4 + 64 * j);
            const __m256i q4bits2 = loadu256(q4 + 64 * j + 32);
            const __m256i q4bitsH = loadu256(qh + 32 * j);
            const __m256i q4h_0 = _mm256_slli_epi16(_mm256_and_si256(q4bitsH, m3), 4);
            const __m256i q4h_1 = _mm256_slli_epi16(_mm256_and_si256(q4bitsH, _mm256_set1_epi8(12)), 2);
            const __m256i q4h_2 = _mm256_and_si256(q4bitsH, _mm256_set1_epi8(48));
            const __m256i q4h_3 = _mm256_srli_epi16(_mm256_and_si256(q4bitsH, _mm256_set1_epi8(-64)), 2);
            const __m256i q4_0 = _mm256_or_si256(_mm256_and_si256(q4bits1, m15), q4h_0);
            const __m256i q4_1 = _mm256_or_si256(_mm256_and_si256(q4bits2, m15), q4h_1);
            const __m256i q4_2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m15), q4h_2);
            const __m256i q4_3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m15), q4h_3);
            const __m256i sc0 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuffle_q6k(4 * j + 0)));
            const __m256i sc1 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuffle_q6k(4 * j + 1)));
            const __m256i sc2 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuffle_q6k(4 * j + 2)));
            const __m256i sc3 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuffle_q6k(4 * j + 3)));
            FM_UNROLL
            for (int a = 0; a < NX; a++) {
                const int8_t *q8 = q8k_qs(Y_AT(fm_block_q8_K, a, i)) + 128 * j;
                const __m256i p0 = _mm256_madd_epi16(sc0, _mm256_maddubs_epi16(q4_0, loadu256(q8)));
                const __m256i p1 = _mm256_madd_epi16(sc1, _mm256_maddubs_epi16(q4_1, loadu256(q8 + 32)));
                const __m256i p2 = _mm256_madd_epi16(sc2, _mm256_maddubs_epi16(q4_2, loadu256(q8 + 64)));
                const __m256i p3 = _mm256_madd_epi16(sc3, _mm256_maddubs_epi16(q4_3, loadu256(q8 + 96)));
                sumi[a] = _mm256_add_epi32(sumi[a], _mm256_add_epi32(p0, p1));
                sumi[a] = _mm256_add_epi32(sumi[a], _mm256_add_epi32(p2, p3));
            }
        }
#endif
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const fm_block_q8_K *y = Y_AT(fm_block_q8_K, a, i);
            const __m256i q8sclsub = _mm256_slli_epi32(_mm256_madd_epi16(q8k_bsums(y), scales_16), 5);
            const __m256i s = _mm256_sub_epi32(sumi[a], q8sclsub);
            acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * xd), _mm256_cvtepi32_ps(s), acc[a]);
        }
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) out[(size_t)a * os] = hsum_ps(acc[a]);
}
FM_TILE_DISPATCH(q6_K)

FM_AI void TILE(iq4_xs)(size_t nb, const void *vw, const uint8_t *xq, size_t xs, const int NX, float *out,
                       size_t os)
{
    const fm_block_iq4_xs *x = vw;
    const __m128i values = loadu128(fm_kern_iq4nl);
    __m256 acc[FM_NX];
    FM_UNROLL
    for (int a = 0; a < NX; a++) acc[a] = _mm256_setzero_ps();
    for (size_t i = 0; i < nb; i++) {
        FM_PREFETCH_BLOCKS(x + i, sizeof(fm_block_iq4_xs));
        const uint8_t *qs = x[i].qs;
        uint16_t sh = x[i].scales_h;
        __m256i sumi1[FM_NX], sumi2[FM_NX];
        FM_UNROLL
        for (int a = 0; a < NX; a++) sumi1[a] = sumi2[a] = _mm256_setzero_si256();
        FM_UNROLL
        for (int ib = 0; ib < 8; ib += 2) {
            const __m256i q1 = iq4nl_bytes(qs + 16 * ib, values);
            const __m256i q2 = iq4nl_bytes(qs + 16 * ib + 16, values);
            const __m256i a1 = _mm256_sign_epi8(q1, q1), a2 = _mm256_sign_epi8(q2, q2);
            const int16_t ls1 = (int16_t)(((x[i].scales_l[ib / 2] & 0xf) | ((sh << 4) & 0x30)) - 32);
            const int16_t ls2 = (int16_t)(((x[i].scales_l[ib / 2] >> 4) | ((sh << 2) & 0x30)) - 32);
            sh >>= 4;
            const __m256i s1 = _mm256_set1_epi16(ls1), s2 = _mm256_set1_epi16(ls2);
            FM_UNROLL
            for (int a = 0; a < NX; a++) {
                const int8_t *q8 = q8k_qs(Y_AT(fm_block_q8_K, a, i)) + 32 * ib;
                const __m256i p16_1 = _mm256_maddubs_epi16(a1, _mm256_sign_epi8(loadu256(q8), q1));
                const __m256i p16_2 = _mm256_maddubs_epi16(a2, _mm256_sign_epi8(loadu256(q8 + 32), q2));
                sumi1[a] = _mm256_add_epi32(_mm256_madd_epi16(p16_1, s1), sumi1[a]);
                sumi2[a] = _mm256_add_epi32(_mm256_madd_epi16(p16_2, s2), sumi2[a]);
            }
        }
        const float xd = f16(x[i].d);
        FM_UNROLL
        for (int a = 0; a < NX; a++) {
            const float d = xd * Y_AT(fm_block_q8_K, a, i)->d;
            acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi1[a], sumi2[a])), acc[a]);
        }
    }
    FM_UNROLL
    for (int a = 0; a < NX; a++) out[(size_t)a * os] = hsum_ps(acc[a]);
}
FM_TILE_DISPATCH(iq4_xs)


#undef TILE
#undef loadu512
#undef MULSUM_I8
#undef MULSUM_U8
