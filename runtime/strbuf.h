/* Text helpers private to the tokenizer, its JSON reader and the chat
 * templates (runtime/tokenizer.c, jsonlite.c, chat.c): a growable
 * NUL-terminated byte string, hex digits, UTF-8 encoding. */
#ifndef FM_RUNTIME_STRBUF_H
#define FM_RUNTIME_STRBUF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/util.h"

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static inline bool sb_reserve(sbuf *b, size_t extra)
{
    size_t need;
    if (!fm_add_size(b->n, extra, &need) || !fm_add_size(need, 1, &need)) return false;
    if (need <= b->cap) return true;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return false;
        nc *= 2;
    }
    char *p = realloc(b->s, nc);
    if (!p) return false;
    b->s = p;
    b->cap = nc;
    return true;
}

static inline bool sb_add(sbuf *b, const void *p, size_t n)
{
    if (!sb_reserve(b, n)) return false;
    if (n) memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
    return true;
}

static inline bool sb_adds(sbuf *b, const char *s) { return sb_add(b, s, strlen(s)); }

static inline int hexval(unsigned c)
{
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* unicode_cpt_to_utf8; a codepoint above U+10FFFF (llama.cpp throws) is
 * written as U+FFFD (spec T12). Returns the byte count. */
static inline int cpt_to_utf8(uint32_t c, unsigned char *o)
{
    if (c <= 0x7F) {
        o[0] = (unsigned char)c;
        return 1;
    }
    if (c <= 0x7FF) {
        o[0] = (unsigned char)(0xC0 | (c >> 6));
        o[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c > 0x10FFFF) c = 0xFFFD;
    if (c <= 0xFFFF) {
        o[0] = (unsigned char)(0xE0 | (c >> 12));
        o[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (c >> 18));
    o[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

#endif
