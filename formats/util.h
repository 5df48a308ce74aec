/* Checked arithmetic and little-endian access. Everything read from a file
 * goes through these before it is used as a size, offset or count. */
#ifndef FM_UTIL_H
#define FM_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Each returns true on success, false on overflow (then *out is unspecified). */
static inline bool fm_add_u64(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool fm_mul_u64(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool fm_add_size(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool fm_mul_size(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }

static inline bool fm_is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* Rounds x up to a multiple of align (a power of two). false on overflow. */
static inline bool fm_align_up(uint64_t x, uint64_t align, uint64_t *out)
{
    uint64_t t;
    if (!fm_add_u64(x, align - 1, &t)) return false;
    *out = t & ~(align - 1);
    return true;
}

/* [off, off+len) lies within [0, total). */
static inline bool fm_range_ok(uint64_t off, uint64_t len, uint64_t total)
{
    uint64_t end;
    return fm_add_u64(off, len, &end) && end <= total;
}

static inline uint16_t fm_rd_u16le(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] | (uint16_t)b[1] << 8);
}
static inline uint32_t fm_rd_u32le(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static inline uint64_t fm_rd_u64le(const void *p)
{
    const uint8_t *b = p;
    return (uint64_t)fm_rd_u32le(b) | (uint64_t)fm_rd_u32le(b + 4) << 32;
}
static inline float fm_rd_f32le(const void *p)
{
    uint32_t u = fm_rd_u32le(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline double fm_rd_f64le(const void *p)
{
    uint64_t u = fm_rd_u64le(p);
    double d;
    memcpy(&d, &u, 8);
    return d;
}
static inline void fm_wr_u16le(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
}
static inline void fm_wr_u32le(void *p, uint32_t v)
{
    uint8_t *b = p;
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}
static inline void fm_wr_u64le(void *p, uint64_t v)
{
    uint8_t *b = p;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}
static inline void fm_wr_f32le(void *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    fm_wr_u32le(p, u);
}

/* Validates UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool fm_utf8_valid(const char *s, size_t len);

#endif
