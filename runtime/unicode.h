/* Unicode character classes for fm's pre-tokenizers, as llama.cpp defines
 * them (tables generated from llama.cpp's unicode-data.cpp by
 * scripts/gen_unicode_tables.py into runtime/unicode_tables.c). */
#ifndef FM_UNICODE_H
#define FM_UNICODE_H

#include <stdint.h>

enum {
    FM_UCD_UNDEFINED = 0x0001,
    FM_UCD_NUMBER = 0x0002,      /* \p{N} */
    FM_UCD_LETTER = 0x0004,      /* \p{L} */
    FM_UCD_SEPARATOR = 0x0008,   /* \p{Z} */
    FM_UCD_MARK = 0x0010,        /* \p{M} */
    FM_UCD_PUNCTUATION = 0x0020, /* \p{P} */
    FM_UCD_SYMBOL = 0x0040,      /* \p{S} */
    FM_UCD_CONTROL = 0x0080,     /* \p{C} */
    FM_UCD_WHITESPACE = 0x0100,  /* \s */
};

typedef struct fm_ucd_range {
    uint32_t first;
    uint16_t flags;
} fm_ucd_range;

typedef struct fm_ucd_pair {
    uint32_t cp;
    uint32_t lower;
} fm_ucd_pair;

extern const uint16_t fm_ucd_ascii[128];
extern const fm_ucd_range fm_ucd_ranges[];
extern const uint32_t fm_ucd_n_ranges;
extern const fm_ucd_pair fm_ucd_lower_ascii[];
extern const uint32_t fm_ucd_n_lower_ascii;

/* Flags of codepoint cp; FM_UCD_UNDEFINED for cp >= 0x110000. */
uint16_t fm_ucd_flags(uint32_t cp);
/* llama.cpp's unicode_tolower restricted to results below 0x80: the ASCII
 * lowercase of cp, or cp itself when its lowercase is not ASCII. */
uint32_t fm_ucd_tolower_ascii(uint32_t cp);

#endif
