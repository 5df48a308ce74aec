#include "formats/affine.h"

#include "formats/quant.h"
#include "formats/util.h"

static const unsigned fm_affine_groups[3] = {32, 64, 128};

bool fm_affine_params(uint32_t qtype, unsigned *bits, unsigned *group)
{
    if (qtype < FM_Q_A4_32 || qtype > FM_Q_A2_128) return false;
    unsigned k = qtype - FM_Q_A4_32;
    *bits = 4 - k / 3;
    *group = fm_affine_groups[k % 3];
    return true;
}

int fm_affine_qtype(unsigned bits, unsigned group)
{
    if (bits < 2 || bits > 4) return -1;
    for (int g = 0; g < 3; g++)
        if (fm_affine_groups[g] == group) return FM_Q_A4_32 + (int)(4 - bits) * 3 + g;
    return -1;
}

void fm_affine_dequant_ref(unsigned bits, unsigned group, const void *src, float *dst, size_t n)
{
    const uint8_t *b = src;
    const size_t bb = fm_affine_block_bytes(bits, group);
    for (size_t i = 0; i < n; i += group, b += bb, dst += group) {
        const float d = fm_f16_to_f32(fm_rd_u16le(b));
        const float m = fm_f16_to_f32(fm_rd_u16le(b + 2));
        for (unsigned j = 0; j < group; j++) {
            const float dq = d * (float)fm_affine_code(b + 4, bits, j);
            dst[j] = dq + m;
        }
    }
}
