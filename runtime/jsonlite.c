#include "runtime/jsonlite.h"
#include "runtime/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/util.h"

#define JSON_MAX_DEPTH 64

static int jerr(jparser *j, const char *what)
{
    if (!j->err[0])
        snprintf(j->err, sizeof j->err, "%s at byte %zu", what, (size_t)(j->p - j->start));
    return -1;
}

static int64_t jnew(jparser *j, int type)
{
    if (j->n_nodes == j->cap_nodes) {
        size_t nc = j->cap_nodes ? j->cap_nodes * 2 : 1024;
        if (nc > UINT32_MAX) return jerr(j, "too many JSON values");
        jnode *p = realloc(j->nodes, nc * sizeof *p);
        if (!p) {
            j->oom = true;
            return jerr(j, "out of memory");
        }
        j->nodes = p;
        j->cap_nodes = nc;
    }
    jnode *n = &j->nodes[j->n_nodes];
    memset(n, 0, sizeof *n);
    n->type = (uint8_t)type;
    return (int64_t)j->n_nodes++;
}

static void jws(jparser *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}


static int j_u4(jparser *j, uint32_t *out)
{
    if (j->end - j->p < 4) return jerr(j, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(j->p[i]);
        if (h < 0) return jerr(j, "bad \\u escape");
        v = v << 4 | (uint32_t)h;
    }
    j->p += 4;
    *out = v;
    return 0;
}

/* Strict UTF-8 sequence length at p (1..4) or 0 when invalid. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return n;
}

static int64_t jstring(jparser *j)
{
    j->p++; /* opening quote */
    size_t off = j->n_str;
    for (;;) {
        const unsigned char *q = j->p;
        while (q < j->end && *q != '"' && *q != '\\' && *q >= 0x20 && *q < 0x80) q++;
        size_t run = (size_t)(q - j->p);
        memcpy(j->str + j->n_str, j->p, run); /* str has room for the whole input */
        j->n_str += run;
        j->p = q;
        if (q >= j->end) return jerr(j, "unterminated string");
        unsigned c = *q;
        if (c == '"') {
            j->p++;
            break;
        }
        if (c < 0x20) return jerr(j, "control character in string");
        if (c >= 0x80) {
            size_t n = utf8_seq(q, j->end);
            if (!n) return jerr(j, "invalid UTF-8 in string");
            memcpy(j->str + j->n_str, q, n);
            j->n_str += n;
            j->p += n;
            continue;
        }
        /* backslash */
        if (j->end - j->p < 2) return jerr(j, "truncated escape");
        unsigned e = j->p[1];
        j->p += 2;
        char ch;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            uint32_t u;
            if (j_u4(j, &u)) return -1;
            if (u >= 0xDC00 && u <= 0xDFFF) return jerr(j, "lone low surrogate");
            if (u >= 0xD800 && u <= 0xDBFF) {
                uint32_t lo;
                if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
                    return jerr(j, "lone high surrogate");
                j->p += 2;
                if (j_u4(j, &lo)) return -1;
                if (lo < 0xDC00 || lo > 0xDFFF) return jerr(j, "bad surrogate pair");
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            /* \u escapes decode to at most 4 bytes from at least 6 input bytes */
            j->n_str += (size_t)cpt_to_utf8(u, (unsigned char *)j->str + j->n_str);
            continue;
        }
        default: return jerr(j, "bad escape");
        }
        j->str[j->n_str++] = ch;
    }
    size_t len = j->n_str - off;
    if (len > UINT32_MAX || off > UINT32_MAX) return jerr(j, "string too long");
    j->str[j->n_str++] = 0;
    int64_t id = jnew(j, JN_STR);
    if (id < 0) return -1;
    j->nodes[id].v.s.off = (uint32_t)off;
    j->nodes[id].v.s.len = (uint32_t)len;
    return id;
}

static const double k_p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int64_t jnumber(jparser *j)
{
    const unsigned char *s = j->p;
    const unsigned char *q = s;
    bool neg = false, inexact = false, is_int = true;
    uint64_t m = 0;
    int nd = 0;
    long exp10 = 0;
    if (q < j->end && *q == '-') {
        neg = true;
        q++;
    }
    if (q >= j->end || *q < '0' || *q > '9') return jerr(j, "bad number");
    if (*q == '0') {
        q++;
    } else {
        while (q < j->end && *q >= '0' && *q <= '9') {
            unsigned d = *q++ - '0';
            if (nd < 19) {
                m = m * 10 + d;
                nd++;
            } else {
                exp10++;
                if (d) inexact = true;
            }
        }
    }
    if (q < j->end && *q == '.') {
        is_int = false;
        q++;
        if (q >= j->end || *q < '0' || *q > '9') return jerr(j, "bad number fraction");
        while (q < j->end && *q >= '0' && *q <= '9') {
            unsigned d = *q++ - '0';
            if (m == 0 && d == 0) {
                exp10--;
            } else if (nd < 19) {
                m = m * 10 + d;
                nd++;
                exp10--;
            } else if (d) {
                inexact = true;
            }
        }
    }
    if (q < j->end && (*q == 'e' || *q == 'E')) {
        is_int = false;
        q++;
        bool eneg = false;
        if (q < j->end && (*q == '+' || *q == '-')) eneg = *q++ == '-';
        if (q >= j->end || *q < '0' || *q > '9') return jerr(j, "bad number exponent");
        long e = 0;
        while (q < j->end && *q >= '0' && *q <= '9') {
            if (e < 100000) e = e * 10 + (*q - '0');
            q++;
        }
        exp10 += eneg ? -e : e;
    }
    double v;
    if (m == 0) {
        v = 0.0;
    } else if (!inexact && m <= (1ull << 53) && exp10 >= -22 && exp10 <= 22) {
        v = exp10 < 0 ? (double)m / k_p10[-exp10] : (double)m * k_p10[exp10];
    } else {
        char buf[128];
        size_t len = (size_t)(q - s);
        if (len >= sizeof buf) return jerr(j, "number literal too long");
        memcpy(buf, s, len);
        buf[len] = 0;
        v = strtod(buf, NULL);
        neg = false; /* strtod saw the sign */
    }
    if (neg) v = -v;
    j->p = q;
    int64_t id = jnew(j, JN_NUM);
    if (id < 0) return -1;
    j->nodes[id].v.num = v;
    j->nodes[id].is_int = is_int;
    return id;
}

static int64_t jvalue(jparser *j, int depth);

static int64_t jcontainer(jparser *j, int depth, bool obj)
{
    if (depth >= JSON_MAX_DEPTH) return jerr(j, "nesting too deep");
    int64_t id = jnew(j, obj ? JN_OBJ : JN_ARR);
    if (id < 0) return -1;
    j->p++;
    jws(j);
    uint32_t n = 0, prev = 0;
    if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
        j->p++;
        return id;
    }
    for (;;) {
        int64_t k = -1;
        jws(j);
        if (obj) {
            if (j->p >= j->end || *j->p != '"') return jerr(j, "expected object key");
            k = jstring(j);
            if (k < 0) return -1;
            jws(j);
            if (j->p >= j->end || *j->p != ':') return jerr(j, "expected ':'");
            j->p++;
            jws(j);
        }
        int64_t v = jvalue(j, depth + 1);
        if (v < 0) return -1;
        uint32_t head = (uint32_t)(obj ? k : v);
        if (obj) j->nodes[k].next = (uint32_t)v;
        if (n == 0) j->nodes[id].v.c.first = head;
        else j->nodes[prev].next = head;
        prev = (uint32_t)v;
        if (n == UINT32_MAX) return jerr(j, "too many members");
        n++;
        jws(j);
        if (j->p >= j->end) return jerr(j, "unterminated container");
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p == (obj ? '}' : ']')) {
            j->p++;
            break;
        }
        return jerr(j, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    j->nodes[id].v.c.n = n;
    return id;
}

static int64_t jvalue(jparser *j, int depth)
{
    jws(j);
    if (j->p >= j->end) return jerr(j, "unexpected end of JSON");
    switch (*j->p) {
    case '{': return jcontainer(j, depth, true);
    case '[': return jcontainer(j, depth, false);
    case '"': return jstring(j);
    case 't':
        if (j->end - j->p >= 4 && !memcmp(j->p, "true", 4)) {
            j->p += 4;
            return jnew(j, JN_TRUE);
        }
        break;
    case 'f':
        if (j->end - j->p >= 5 && !memcmp(j->p, "false", 5)) {
            j->p += 5;
            return jnew(j, JN_FALSE);
        }
        break;
    case 'n':
        if (j->end - j->p >= 4 && !memcmp(j->p, "null", 4)) {
            j->p += 4;
            return jnew(j, JN_NULL);
        }
        break;
    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) return jnumber(j);
    }
    return jerr(j, "unexpected character");
}

void jfree(jparser *j)
{
    free(j->nodes);
    free(j->str);
}

int jparse(jparser *j, const char *text, size_t len)
{
    memset(j, 0, sizeof *j);
    j->start = j->p = (const unsigned char *)text;
    j->end = j->p + len;
    j->cap_str = len + 1;
    j->str = malloc(j->cap_str);
    if (!j->str) {
        j->oom = true;
        return jerr(j, "out of memory");
    }
    int64_t root = jvalue(j, 0);
    if (root < 0) return -1;
    jws(j);
    if (j->p != j->end) return jerr(j, "trailing characters after JSON value");
    return 0;
}

/* member of object node o named key, or NULL */
const jnode *jget(const jparser *j, const jnode *o, const char *key)
{
    if (!o || o->type != JN_OBJ) return NULL;
    size_t kl = strlen(key);
    uint32_t k = o->v.c.first;
    for (uint32_t i = 0; i < o->v.c.n; i++) {
        const jnode *kn = &j->nodes[k];
        const jnode *vn = &j->nodes[kn->next];
        if (kn->v.s.len == kl && !memcmp(j->str + kn->v.s.off, key, kl)) return vn;
        k = vn->next;
    }
    return NULL;
}

const char *jtype_name(const jnode *n)
{
    static const char *names[] = {"null", "false", "true", "number", "string", "array", "object"};
    return n ? names[n->type] : "nothing";
}

