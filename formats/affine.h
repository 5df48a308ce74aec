/* fm's affine group quantization schemes (used by fm-requant for experts).
 *
 * A block holds `group` consecutive values of a row:
 *   bytes 0..1  d  (IEEE binary16, little-endian)   scale
 *   bytes 2..3  m  (IEEE binary16, little-endian)   offset (value of q = 0)
 *   bytes 4..   q  group*bits/8 bytes: unsigned bits-bit codes, packed as a
 *               little-endian bit stream (value i occupies bits
 *               [i*bits, (i+1)*bits) of the stream, least significant first)
 * Dequantized value i = f32(d) * (float)q[i] + f32(m), computed in float32
 * with the multiply rounded before the add (no fused multiply-add).
 * See specs/quant.md, rules A1..A4. */
#ifndef FM_AFFINE_H
#define FM_AFFINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* qtype ids (pinned; registered in the formats/quant.c traits table). */
enum {
    FM_Q_A4_32 = 260, FM_Q_A4_64 = 261, FM_Q_A4_128 = 262,
    FM_Q_A3_32 = 263, FM_Q_A3_64 = 264, FM_Q_A3_128 = 265,
    FM_Q_A2_32 = 266, FM_Q_A2_64 = 267, FM_Q_A2_128 = 268,
};

/* false when qtype is not an affine scheme. */
bool fm_affine_params(uint32_t qtype, unsigned *bits, unsigned *group);
/* The qtype for (bits, group), or -1. */
int fm_affine_qtype(unsigned bits, unsigned group);
static inline size_t fm_affine_block_bytes(unsigned bits, unsigned group) { return 4 + (size_t)group * bits / 8; }

/* Reads code i (0 <= i < group) of a block's packed q bytes. */
static inline unsigned fm_affine_code(const uint8_t *q, unsigned bits, unsigned i)
{
    unsigned bit = i * bits, byte = bit >> 3, sh = bit & 7;
    unsigned v = q[byte] | (sh + bits > 8 ? (unsigned)q[byte + 1] << 8 : 0u);
    return (v >> sh) & ((1u << bits) - 1);
}

/* Dequantizers for the traits table (n is a multiple of the group size). */
void fm_affine_dequant_ref(unsigned bits, unsigned group, const void *src, float *dst, size_t n);

#endif
