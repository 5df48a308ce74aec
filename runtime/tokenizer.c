/* fm tokenizer (runtime/tokenizer.h, specs/tokenizer.md).
 *
 * The algorithms follow llama.cpp (src/llama-vocab.cpp and src/unicode.cpp as
 * vendored in llama-cpp-python 0.3.36) step by step, so that the ids are
 * identical: the special-token partition, the SPM bigram queue (score, then
 * leftmost), the BPE merge queue (rank, then leftmost) per pre-token, the
 * hand-written pre-tokenizer scanners (its "custom" regex implementations) and
 * the GGUF token-type rules of token_to_piece. Where llama.cpp's behaviour is
 * undefined (an exception, a hash-order tie) fm picks one and the spec says so.
 *
 * Data structures: token texts in one arena, an open-addressing hash table
 * for text -> id, another for merge pair -> rank, a byte trie of the special
 * tokens, binary heaps for the merge queues: encoding is O(n log n). */
#include "runtime/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/tokmeta.h"
#include "formats/util.h"
#include "runtime/jsonlite.h"
#include "runtime/strbuf.h"
#include "runtime/unicode.h"

/* ------------------------------------------------------------------------ */
/* small helpers                                                            */
/* ------------------------------------------------------------------------ */

typedef struct vec_i32 {
    int32_t *v;
    size_t n, cap;
} vec_i32;

static bool vi_push(vec_i32 *a, int32_t x)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *p = realloc(a->v, nc * sizeof *p);
        if (!p) return false;
        a->v = p;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return true;
}


static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = seed ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, s, 8);
        h = mix64(h ^ k);
        s += 8;
        n -= 8;
    }
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++) k |= (uint64_t)s[i] << (8 * i);
    return mix64(h ^ k ^ 0xA5);
}

static uint32_t pow2_at_least(uint64_t x)
{
    uint64_t c = 16;
    while (c < x) c <<= 1;
    return (uint32_t)c;
}

/* ------------------------------------------------------------------------ */
/* Unicode                                                                  */
/* ------------------------------------------------------------------------ */

uint16_t fm_ucd_flags(uint32_t cp)
{
    if (cp < 128) return fm_ucd_ascii[cp];
    if (cp >= 0x110000) return FM_UCD_UNDEFINED;
    uint32_t lo = 0, hi = fm_ucd_n_ranges; /* last range with first <= cp */
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (fm_ucd_ranges[mid].first <= cp) lo = mid;
        else hi = mid;
    }
    return fm_ucd_ranges[lo].flags;
}

uint32_t fm_ucd_tolower_ascii(uint32_t cp)
{
    if (cp < 128) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    for (uint32_t i = 0; i < fm_ucd_n_lower_ascii; i++)
        if (fm_ucd_lower_ascii[i].cp == cp) return fm_ucd_lower_ascii[i].lower;
    return cp;
}

/* llama.cpp's unicode_cpt_from_utf8 + the U+FFFD substitution of
 * unicode_cpts_from_utf8: no overlong/surrogate checks, 1 byte skipped on
 * error. */
static uint32_t lc_next_cpt(const unsigned char *s, size_t n, size_t *i)
{
    size_t o = *i;
    unsigned c = s[o];
    if (!(c & 0x80)) {
        *i = o + 1;
        return c;
    }
    if (!(c & 0x40)) goto bad;
    if (!(c & 0x20)) {
        if (o + 1 >= n || (s[o + 1] & 0xC0) != 0x80) goto bad;
        *i = o + 2;
        return ((c & 0x1Fu) << 6) | (s[o + 1] & 0x3Fu);
    }
    if (!(c & 0x10)) {
        if (o + 2 >= n || (s[o + 1] & 0xC0) != 0x80 || (s[o + 2] & 0xC0) != 0x80) goto bad;
        *i = o + 3;
        return ((c & 0x0Fu) << 12) | ((s[o + 1] & 0x3Fu) << 6) | (s[o + 2] & 0x3Fu);
    }
    if (!(c & 0x08)) {
        if (o + 3 >= n || (s[o + 1] & 0xC0) != 0x80 || (s[o + 2] & 0xC0) != 0x80 ||
            (s[o + 3] & 0xC0) != 0x80)
            goto bad;
        *i = o + 4;
        return ((c & 0x07u) << 18) | ((s[o + 1] & 0x3Fu) << 12) | ((s[o + 2] & 0x3Fu) << 6) |
               (s[o + 3] & 0x3Fu);
    }
bad:
    *i = o + 1;
    return 0xFFFD;
}


/* unicode_len_utf8: sequence length by the lead byte's high nibble. */
static size_t lead_len(unsigned char c)
{
    static const unsigned char lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}

/* GPT-2 bytes_to_unicode: printable bytes map to themselves, the 68 others
 * (0x00-0x20, 0x7F-0xA0, 0xAD) to U+0100.. in byte order. */
static uint32_t byte2cp(unsigned b)
{
    if (b <= 0x20) return 256 + b;
    if (b >= 0x7F && b <= 0xA0) return 256 + 33 + (b - 0x7F);
    if (b == 0xAD) return 256 + 67;
    return b;
}

static int cp2byte(uint32_t cp)
{
    if (cp < 256) return byte2cp(cp) == cp ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(0x7F + cp - 289);
    if (cp == 256 + 67) return 0xAD;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* the tokenizer object                                                     */
/* ------------------------------------------------------------------------ */

enum { TOK_SPM = 1, TOK_BPE = 2 };
enum {
    PRE_NONE = FM_TOKPRE_NONE,
    PRE_GPT2 = FM_TOKPRE_GPT2,
    PRE_LLAMA3 = FM_TOKPRE_LLAMA3,
    PRE_QWEN2 = FM_TOKPRE_QWEN2,
    PRE_QWEN35 = FM_TOKPRE_QWEN35,
};

typedef struct trie {
    uint32_t n_nodes;
    int32_t *term;     /* per node: first special (index into sp_*) with this text, or -1 */
    int32_t *term_ud;  /* per node: first user-defined special with this text, or -1 */
    uint64_t *ekey;    /* edge hash: (node << 8 | byte) + 1, 0 = empty */
    uint32_t *echild;
    uint32_t emask;
} trie;

struct fm_tok {
    int model;
    int pre;
    char *pre_name;
    uint32_t n;
    char *text; /* token texts, each NUL-terminated */
    uint32_t *off, *len;
    float *score;
    uint8_t *type;
    uint32_t *ht; /* id + 1 */
    uint32_t ht_mask;
    /* merges */
    char *mtext;
    uint32_t n_merges;
    uint32_t *m_off, *m_l1, *m_l2;
    uint32_t *mht; /* rank + 1 */
    uint32_t mht_mask;
    /* special tokens, sorted by (length desc, id asc) = partition priority */
    uint32_t n_sp;
    int32_t *sp_id;
    uint8_t *sp_ctrl; /* 1: control/unknown (only with parse_special) */
    bool sp_first[2][256]; /* [parse_special] bytes that can start one */
    trie tr;
    int32_t byte_tok[256];
    int32_t bos, eos, eot, eom, unk, pad;
    uint8_t *eog; /* bitmap */
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    char *chat_template;
    size_t max_piece;
};

static int32_t vocab_find(const fm_tok *t, const char *s, size_t len)
{
    uint32_t i = (uint32_t)hash_bytes(s, len, 0) & t->ht_mask;
    for (;;) {
        uint32_t v = t->ht[i];
        if (!v) return -1;
        uint32_t id = v - 1;
        if (t->len[id] == len && !memcmp(t->text + t->off[id], s, len)) return (int32_t)id;
        i = (i + 1) & t->ht_mask;
    }
}

static uint64_t pair_hash(const char *a, size_t la, const char *b, size_t lb)
{
    return hash_bytes(b, lb, hash_bytes(a, la, 0x51ED27));
}

static int32_t merge_rank(const fm_tok *t, const char *a, size_t la, const char *b, size_t lb)
{
    if (!t->n_merges) return -1;
    uint32_t i = (uint32_t)pair_hash(a, la, b, lb) & t->mht_mask;
    for (;;) {
        uint32_t v = t->mht[i];
        if (!v) return -1;
        uint32_t r = v - 1;
        const char *m = t->mtext + t->m_off[r];
        if (t->m_l1[r] == la && t->m_l2[r] == lb && !memcmp(m, a, la) && !memcmp(m + la + 1, b, lb))
            return (int32_t)r;
        i = (i + 1) & t->mht_mask;
    }
}

void fm_tok_free(fm_tok *t)
{
    if (!t) return;
    free(t->pre_name);
    free(t->text);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->ht);
    free(t->mtext);
    free(t->m_off);
    free(t->m_l1);
    free(t->m_l2);
    free(t->mht);
    free(t->sp_id);
    free(t->sp_ctrl);
    free(t->tr.term);
    free(t->tr.term_ud);
    free(t->tr.ekey);
    free(t->tr.echild);
    free(t->eog);
    free(t->chat_template);
    free(t);
}

/* ---- loading ----------------------------------------------------------- */

#define TJ "tokenizer JSON: "

static fm_err need_arr(const jparser *j, const jnode *n, const char *key, uint32_t want, fm_error *e)
{
    if (!n || n->type != JN_ARR)
        return fm_error_set(e, FM_E_FORMAT, TJ "'%s': expected array, found %s", key, jtype_name(n));
    if (want != UINT32_MAX && n->v.c.n != want)
        return fm_error_set(e, FM_E_FORMAT, TJ "'%s': expected %u elements (one per token), found %u",
                            key, want, n->v.c.n);
    (void)j;
    return FM_OK;
}

static fm_err get_bool(const jparser *j, const jnode *root, const char *key, bool *out, fm_error *e)
{
    const jnode *n = jget(j, root, key);
    if (!n) return fm_error_set(e, FM_E_FORMAT, TJ "missing key '%s'", key);
    if (n->type != JN_TRUE && n->type != JN_FALSE)
        return fm_error_set(e, FM_E_FORMAT, TJ "'%s': expected true/false, found %s", key, jtype_name(n));
    *out = n->type == JN_TRUE;
    return FM_OK;
}

static fm_err get_id(const jparser *j, const jnode *sp, const char *key, uint32_t n_vocab, int32_t *out,
                     fm_error *e)
{
    const jnode *n = jget(j, sp, key);
    *out = -1;
    if (!n || n->type == JN_NULL) return FM_OK;
    if (n->type != JN_NUM || !n->is_int || n->v.num < -1 || n->v.num >= (double)n_vocab)
        return fm_error_set(e, FM_E_FORMAT, TJ "'special.%s': expected -1 or a token id below %u", key,
                            n_vocab);
    *out = (int32_t)n->v.num;
    return FM_OK;
}

typedef struct sp_sort {
    uint32_t len;
    int32_t id;
} sp_sort;

static int sp_cmp(const void *a, const void *b)
{
    const sp_sort *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static uint32_t trie_child(const trie *tr, uint32_t node, unsigned char c)
{
    uint64_t key = ((uint64_t)node << 8 | c) + 1;
    uint32_t i = (uint32_t)mix64(key) & tr->emask;
    for (;;) {
        if (!tr->ekey[i]) return 0;
        if (tr->ekey[i] == key) return tr->echild[i];
        i = (i + 1) & tr->emask;
    }
}

static fm_err build_specials(fm_tok *t, fm_error *e)
{
    uint32_t n_sp = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        int ty = t->type[i];
        if (ty == FM_TOKT_CONTROL || ty == FM_TOKT_USER_DEFINED || ty == FM_TOKT_UNKNOWN) {
            n_sp++;
            total += t->len[i];
        }
    }
    t->n_sp = n_sp;
    t->tr.n_nodes = 1;
    if (!n_sp) return FM_OK;
    if (total > FM_TOK_MAX_SPECIAL_BYTES)
        return fm_error_set(e, FM_E_RANGE, TJ "%u special tokens hold %llu bytes, more than %u", n_sp,
                            (unsigned long long)total, FM_TOK_MAX_SPECIAL_BYTES);
    sp_sort *s = malloc((size_t)n_sp * sizeof *s);
    t->sp_id = malloc((size_t)n_sp * sizeof *t->sp_id);
    t->sp_ctrl = malloc(n_sp);
    uint64_t max_nodes = total + 1;
    t->tr.term = malloc((size_t)max_nodes * sizeof *t->tr.term);
    t->tr.term_ud = malloc((size_t)max_nodes * sizeof *t->tr.term_ud);
    t->tr.emask = pow2_at_least(2 * max_nodes) - 1;
    t->tr.ekey = calloc((size_t)t->tr.emask + 1, sizeof *t->tr.ekey);
    t->tr.echild = malloc(((size_t)t->tr.emask + 1) * sizeof *t->tr.echild);
    if (!s || !t->sp_id || !t->sp_ctrl || !t->tr.term || !t->tr.term_ud || !t->tr.ekey || !t->tr.echild) {
        free(s);
        return fm_error_set(e, FM_E_NOMEM, TJ "out of memory for %u special tokens", n_sp);
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        int ty = t->type[i];
        if (ty == FM_TOKT_CONTROL || ty == FM_TOKT_USER_DEFINED || ty == FM_TOKT_UNKNOWN)
            s[k++] = (sp_sort){t->len[i], (int32_t)i};
    }
    qsort(s, n_sp, sizeof *s, sp_cmp);
    t->tr.term[0] = t->tr.term_ud[0] = -1;
    for (uint32_t r = 0; r < n_sp; r++) {
        int32_t id = s[r].id;
        t->sp_id[r] = id;
        int ctrl = t->type[id] != FM_TOKT_USER_DEFINED;
        t->sp_ctrl[r] = (uint8_t)ctrl;
        const unsigned char *p = (const unsigned char *)t->text + t->off[id];
        uint32_t len = t->len[id];
        t->sp_first[1][p[0]] = true;
        if (!ctrl) t->sp_first[0][p[0]] = true;
        uint32_t node = 0;
        for (uint32_t b = 0; b < len; b++) {
            uint32_t c = trie_child(&t->tr, node, p[b]);
            if (!c) {
                c = t->tr.n_nodes++;
                t->tr.term[c] = t->tr.term_ud[c] = -1;
                uint64_t key = ((uint64_t)node << 8 | p[b]) + 1;
                uint32_t i = (uint32_t)mix64(key) & t->tr.emask;
                while (t->tr.ekey[i]) i = (i + 1) & t->tr.emask;
                t->tr.ekey[i] = key;
                t->tr.echild[i] = c;
            }
            node = c;
        }
        /* same text twice: the first in priority order claims it (T10) */
        if (t->tr.term[node] < 0) t->tr.term[node] = (int32_t)r;
        if (!ctrl && t->tr.term_ud[node] < 0) t->tr.term_ud[node] = (int32_t)r;
    }
    free(s);
    return FM_OK;
}

static void set_eog(fm_tok *t, int32_t id)
{
    if (id >= 0 && (uint32_t)id < t->n) t->eog[id >> 3] |= (uint8_t)(1u << (id & 7));
}

fm_err fm_tok_load(fm_tok **out, const char *json, size_t len, fm_error *e)
{
    *out = NULL;
    if (!json) return fm_error_set(e, FM_E_ARG, TJ "NULL text");
    if (len > FM_TOK_MAX_JSON)
        return fm_error_set(e, FM_E_RANGE, TJ "%zu bytes, more than the %llu limit", len,
                            (unsigned long long)FM_TOK_MAX_JSON);
    jparser j;
    if (jparse(&j, json, len)) {
        fm_err rc = fm_error_set(e, j.oom ? FM_E_NOMEM : FM_E_FORMAT, TJ "%s", j.err);
        jfree(&j);
        return rc;
    }
    fm_err rc = FM_OK;
    fm_tok *t = calloc(1, sizeof *t);
    if (!t) {
        jfree(&j);
        return fm_error_set(e, FM_E_NOMEM, TJ "out of memory");
    }
    const jnode *root = &j.nodes[0];
    const jnode *n;
#define FAIL(code, ...)                               \
    do {                                              \
        rc = fm_error_set(e, code, TJ __VA_ARGS__);   \
        goto done;                                    \
    } while (0)
#define CHK(x)                 \
    do {                       \
        if ((rc = (x))) goto done; \
    } while (0)
    if (root->type != JN_OBJ) FAIL(FM_E_FORMAT, "top level: expected object, found %s", jtype_name(root));
    n = jget(&j, root, "format");
    if (!n || n->type != JN_STR || strcmp(j.str + n->v.s.off, "fm-tokenizer"))
        FAIL(FM_E_FORMAT, "'format': expected \"fm-tokenizer\"");
    n = jget(&j, root, "version");
    if (!n || n->type != JN_NUM || !n->is_int) FAIL(FM_E_FORMAT, "'version': expected an integer");
    if (n->v.num != FM_TOK_FORMAT_VERSION)
        FAIL(FM_E_VERSION, "'version': expected %d, found %.0f", FM_TOK_FORMAT_VERSION, n->v.num);

    n = jget(&j, root, "model");
    if (!n || n->type != JN_STR) FAIL(FM_E_FORMAT, "'model': expected \"spm\" or \"bpe\", found %s", jtype_name(n));
    if (!strcmp(j.str + n->v.s.off, "spm")) t->model = TOK_SPM;
    else if (!strcmp(j.str + n->v.s.off, "bpe")) t->model = TOK_BPE;
    else FAIL(FM_E_UNSUPPORTED, "'model': expected \"spm\" or \"bpe\", found \"%.64s\"", j.str + n->v.s.off);
    n = jget(&j, root, "pre");
    if (!n || n->type != JN_STR) FAIL(FM_E_FORMAT, "'pre': expected string, found %s", jtype_name(n));
    t->pre_name = strdup(j.str + n->v.s.off);
    if (!t->pre_name) FAIL(FM_E_NOMEM, "out of memory");
    if (t->model == TOK_BPE) {
        t->pre = fm_tokmeta_pre_family(t->pre_name);
        if (t->pre == PRE_NONE)
            FAIL(FM_E_UNSUPPORTED,
                 "'pre': pre-tokenizer \"%.64s\" is not supported (supported: qwen2, llama-bpe/llama3, "
                 "gpt-2, qwen35 and their aliases)",
                 t->pre_name);
    }

    const jnode *toks = jget(&j, root, "tokens");
    CHK(need_arr(&j, toks, "tokens", UINT32_MAX, e));
    if (toks->v.c.n == 0 || toks->v.c.n > FM_TOK_MAX_VOCAB)
        FAIL(FM_E_FORMAT, "'tokens': expected 1..%u tokens, found %u", FM_TOK_MAX_VOCAB, toks->v.c.n);
    t->n = toks->v.c.n;
    size_t nv = t->n;
    t->off = malloc(nv * sizeof *t->off);
    t->len = malloc(nv * sizeof *t->len);
    t->score = calloc(nv, sizeof *t->score);
    t->type = malloc(nv);
    t->eog = calloc((nv + 7) / 8, 1);
    t->ht_mask = pow2_at_least(2 * (uint64_t)nv) - 1;
    t->ht = calloc((size_t)t->ht_mask + 1, sizeof *t->ht);
    if (!t->off || !t->len || !t->score || !t->type || !t->eog || !t->ht) FAIL(FM_E_NOMEM, "out of memory");
    {
        uint64_t total = 0;
        uint32_t c = toks->v.c.first;
        for (uint32_t i = 0; i < t->n; i++) {
            const jnode *tn = &j.nodes[c];
            if (tn->type != JN_STR) FAIL(FM_E_FORMAT, "'tokens'[%u]: expected string, found %s", i, jtype_name(tn));
            if (tn->v.s.len == 0 || tn->v.s.len > FM_TOK_MAX_TOKEN_LEN)
                FAIL(FM_E_FORMAT, "'tokens'[%u]: length %u outside 1..%u", i, tn->v.s.len, FM_TOK_MAX_TOKEN_LEN);
            total += tn->v.s.len + 1;
            c = tn->next;
        }
        if (total > UINT32_MAX) FAIL(FM_E_RANGE, "'tokens': %llu bytes in all, more than 4 GiB", (unsigned long long)total);
        t->text = malloc((size_t)total);
        if (!t->text) FAIL(FM_E_NOMEM, "out of memory for %llu bytes of tokens", (unsigned long long)total);
        uint32_t pos = 0;
        c = toks->v.c.first;
        for (uint32_t i = 0; i < t->n; i++) {
            const jnode *tn = &j.nodes[c];
            memcpy(t->text + pos, j.str + tn->v.s.off, (size_t)tn->v.s.len + 1);
            t->off[i] = pos;
            t->len[i] = tn->v.s.len;
            if (tn->v.s.len > t->max_piece) t->max_piece = tn->v.s.len;
            pos += tn->v.s.len + 1;
            /* insert; a later duplicate text replaces the earlier id, as
             * llama.cpp's token_to_id[word] = i does (T3) */
            uint32_t h = (uint32_t)hash_bytes(t->text + t->off[i], t->len[i], 0) & t->ht_mask;
            for (;;) {
                uint32_t v = t->ht[h];
                if (!v) {
                    t->ht[h] = i + 1;
                    break;
                }
                if (t->len[v - 1] == t->len[i] && !memcmp(t->text + t->off[v - 1], t->text + t->off[i], t->len[i])) {
                    t->ht[h] = i + 1;
                    break;
                }
                h = (h + 1) & t->ht_mask;
            }
            c = tn->next;
        }
    }
    n = jget(&j, root, "types");
    CHK(need_arr(&j, n, "types", t->n, e));
    {
        uint32_t c = n->v.c.first;
        for (uint32_t i = 0; i < t->n; i++) {
            const jnode *x = &j.nodes[c];
            if (x->type != JN_NUM || !x->is_int || x->v.num < 0 || x->v.num > 6)
                FAIL(FM_E_FORMAT, "'types'[%u]: expected an integer 0..6", i);
            t->type[i] = (uint8_t)x->v.num;
            c = x->next;
        }
    }
    n = jget(&j, root, "scores");
    if (n && n->type != JN_NULL) {
        CHK(need_arr(&j, n, "scores", t->n, e));
        uint32_t c = n->v.c.first;
        for (uint32_t i = 0; i < t->n; i++) {
            const jnode *x = &j.nodes[c];
            if (x->type != JN_NUM) FAIL(FM_E_FORMAT, "'scores'[%u]: expected number, found %s", i, jtype_name(x));
            t->score[i] = (float)x->v.num;
            c = x->next;
        }
    } else if (t->model == TOK_SPM) {
        FAIL(FM_E_FORMAT, "'scores': required for model \"spm\"");
    }
    n = jget(&j, root, "merges");
    if (t->model == TOK_BPE) {
        CHK(need_arr(&j, n, "merges", UINT32_MAX, e));
        uint32_t nm = n->v.c.n;
        if (nm > FM_TOK_MAX_MERGES) FAIL(FM_E_RANGE, "'merges': %u entries, more than %u", nm, FM_TOK_MAX_MERGES);
        uint64_t total = 0;
        uint32_t c = n->v.c.first;
        for (uint32_t i = 0; i < nm; i++) {
            const jnode *x = &j.nodes[c];
            if (x->type != JN_STR) FAIL(FM_E_FORMAT, "'merges'[%u]: expected string, found %s", i, jtype_name(x));
            total += x->v.s.len + 1;
            c = x->next;
        }
        if (total > UINT32_MAX) FAIL(FM_E_RANGE, "'merges': more than 4 GiB");
        t->mtext = malloc((size_t)total + 1);
        t->m_off = malloc(((size_t)nm + 1) * sizeof *t->m_off);
        t->m_l1 = malloc(((size_t)nm + 1) * sizeof *t->m_l1);
        t->m_l2 = malloc(((size_t)nm + 1) * sizeof *t->m_l2);
        t->mht_mask = pow2_at_least(2 * (uint64_t)nm + 2) - 1;
        t->mht = calloc((size_t)t->mht_mask + 1, sizeof *t->mht);
        if (!t->mtext || !t->m_off || !t->m_l1 || !t->m_l2 || !t->mht) FAIL(FM_E_NOMEM, "out of memory for merges");
        uint32_t pos = 0;
        c = n->v.c.first;
        for (uint32_t i = 0; i < nm; i++) {
            const jnode *x = &j.nodes[c];
            const char *s = j.str + x->v.s.off;
            uint32_t l = x->v.s.len;
            c = x->next;
            /* split at the first ' ' from position 1 (llama.cpp word.find(' ', 1));
             * an entry without one becomes ("", "") and never matches */
            const char *sp = l > 1 ? memchr(s + 1, ' ', l - 1) : NULL;
            if (!sp) continue;
            uint32_t l1 = (uint32_t)(sp - s), l2 = l - l1 - 1;
            uint32_t r = t->n_merges;
            memcpy(t->mtext + pos, s, (size_t)l + 1);
            t->m_off[r] = pos;
            t->m_l1[r] = l1;
            t->m_l2[r] = l2;
            pos += l + 1;
            /* a repeated pair keeps its first (lowest) rank: std::map::emplace */
            uint32_t h = (uint32_t)pair_hash(s, l1, sp + 1, l2) & t->mht_mask;
            bool dup = false;
            for (;;) {
                uint32_t v = t->mht[h];
                if (!v) break;
                uint32_t q = v - 1;
                if (t->m_l1[q] == l1 && t->m_l2[q] == l2 && !memcmp(t->mtext + t->m_off[q], s, l)) {
                    dup = true;
                    break;
                }
                h = (h + 1) & t->mht_mask;
            }
            if (!dup) t->mht[h] = r + 1;
            /* ranks are only compared with each other: numbering the kept
             * entries keeps llama.cpp's order (T7) */
            t->n_merges++;
        }
    }

    const jnode *sp = jget(&j, root, "special");
    if (!sp || sp->type != JN_OBJ) FAIL(FM_E_FORMAT, "'special': expected object, found %s", jtype_name(sp));
    CHK(get_id(&j, sp, "bos", t->n, &t->bos, e));
    CHK(get_id(&j, sp, "eos", t->n, &t->eos, e));
    CHK(get_id(&j, sp, "eot", t->n, &t->eot, e));
    CHK(get_id(&j, sp, "eom", t->n, &t->eom, e));
    CHK(get_id(&j, sp, "unk", t->n, &t->unk, e));
    CHK(get_id(&j, sp, "pad", t->n, &t->pad, e));
    n = jget(&j, root, "eog");
    if (n && n->type != JN_NULL) {
        CHK(need_arr(&j, n, "eog", UINT32_MAX, e));
        uint32_t c = n->v.c.first;
        for (uint32_t i = 0; i < n->v.c.n; i++) {
            const jnode *x = &j.nodes[c];
            if (x->type != JN_NUM || !x->is_int || x->v.num < 0 || x->v.num >= (double)t->n)
                FAIL(FM_E_FORMAT, "'eog'[%u]: expected a token id below %u", i, t->n);
            set_eog(t, (int32_t)x->v.num);
            c = x->next;
        }
    }
    set_eog(t, t->eos);
    set_eog(t, t->eot);
    set_eog(t, t->eom);
    CHK(get_bool(&j, root, "add_bos", &t->add_bos, e));
    CHK(get_bool(&j, root, "add_eos", &t->add_eos, e));
    CHK(get_bool(&j, root, "add_space_prefix", &t->add_space_prefix, e));
    CHK(get_bool(&j, root, "ignore_merges", &t->ignore_merges, e));
    if (t->add_bos && t->bos < 0) FAIL(FM_E_FORMAT, "'add_bos' is true but 'special.bos' is -1");
    if (t->add_eos && t->eos < 0) FAIL(FM_E_FORMAT, "'add_eos' is true but 'special.eos' is -1");
    n = jget(&j, root, "chat_template");
    if (n && n->type == JN_STR) {
        t->chat_template = strdup(j.str + n->v.s.off);
        if (!t->chat_template) FAIL(FM_E_NOMEM, "out of memory");
    } else if (n && n->type != JN_NULL) {
        FAIL(FM_E_FORMAT, "'chat_template': expected string, found %s", jtype_name(n));
    }

    /* byte tokens: spm "<0xNN>" (else the byte itself), bpe the mapped char */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int32_t id;
        if (t->model == TOK_SPM) {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            id = vocab_find(t, buf, 6);
            if (id < 0) {
                buf[0] = (char)b;
                id = vocab_find(t, buf, 1);
            }
        } else {
            unsigned char u[4];
            int l = cpt_to_utf8(byte2cp((unsigned)b), u);
            id = vocab_find(t, (const char *)u, (size_t)l);
        }
        t->byte_tok[b] = id;
    }
    CHK(build_specials(t, e));
done:
#undef FAIL
#undef CHK
    jfree(&j);
    if (rc) {
        fm_tok_free(t);
        return rc;
    }
    *out = t;
    return FM_OK;
}

/* ---- accessors ---------------------------------------------------------- */

uint32_t fm_tok_n_vocab(const fm_tok *t) { return t->n; }
const char *fm_tok_model(const fm_tok *t) { return t->model == TOK_SPM ? "spm" : "bpe"; }
const char *fm_tok_pre(const fm_tok *t) { return t->pre_name; }
int32_t fm_tok_bos(const fm_tok *t) { return t->bos; }
int32_t fm_tok_eos(const fm_tok *t) { return t->eos; }
int32_t fm_tok_eot(const fm_tok *t) { return t->eot; }
int32_t fm_tok_unk(const fm_tok *t) { return t->unk; }
int32_t fm_tok_pad(const fm_tok *t) { return t->pad; }
bool fm_tok_add_bos(const fm_tok *t) { return t->add_bos; }
bool fm_tok_add_eos(const fm_tok *t) { return t->add_eos; }
size_t fm_tok_max_piece(const fm_tok *t) { return t->max_piece; }

bool fm_tok_is_eog(const fm_tok *t, int32_t id)
{
    return id >= 0 && (uint32_t)id < t->n && (t->eog[id >> 3] >> (id & 7) & 1);
}

const char *fm_tok_text(const fm_tok *t, int32_t id, size_t *len)
{
    if (id < 0 || (uint32_t)id >= t->n) return NULL;
    if (len) *len = t->len[id];
    return t->text + t->off[id];
}

int fm_tok_type(const fm_tok *t, int32_t id)
{
    if (id < 0 || (uint32_t)id >= t->n) return -1;
    return t->type[id];
}

int32_t fm_tok_lookup(const fm_tok *t, const char *s, size_t len) { return vocab_find(t, s, len); }

/* ------------------------------------------------------------------------ */
/* encoding                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct sym {
    const char *text;
    uint32_t n;
    int32_t prev, next;
} sym;

typedef struct bigram {
    float score;   /* spm */
    int32_t rank;  /* bpe */
    int32_t left, right;
    uint32_t ln, rn; /* symbol sizes when queued */
} bigram;

/* scratch buffers of one encode call */
typedef struct work {
    const fm_tok *t;
    vec_i32 *out;
    sym *syms;
    size_t n_syms, cap_syms;
    bigram *heap;
    size_t n_heap, cap_heap;
    uint32_t *cpts;
    uint16_t *flags;
    uint32_t *ends;
    size_t cap_cpts;
    sbuf tmp;  /* spm escaped text / bpe re-encoded fragment */
    sbuf word; /* byte-encoded word */
} work;

static bool w_sym_reserve(work *w, size_t n)
{
    if (n <= w->cap_syms) return true;
    size_t nc = w->cap_syms ? w->cap_syms : 256;
    while (nc < n) nc *= 2;
    sym *p = realloc(w->syms, nc * sizeof *p);
    if (!p) return false;
    w->syms = p;
    w->cap_syms = nc;
    return true;
}

/* heap order: spm: higher score first, then lower left; bpe: lower rank
 * first, then lower left (llama.cpp's comparators). */
static bool bg_before(const fm_tok *t, const bigram *a, const bigram *b)
{
    if (t->model == TOK_SPM) {
        if (a->score != b->score) return a->score > b->score;
    } else {
        if (a->rank != b->rank) return a->rank < b->rank;
    }
    return a->left < b->left;
}

static bool heap_push(work *w, bigram b)
{
    if (w->n_heap == w->cap_heap) {
        size_t nc = w->cap_heap ? w->cap_heap * 2 : 256;
        bigram *p = realloc(w->heap, nc * sizeof *p);
        if (!p) return false;
        w->heap = p;
        w->cap_heap = nc;
    }
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t par = (i - 1) / 2;
        if (!bg_before(w->t, &b, &w->heap[par])) break;
        w->heap[i] = w->heap[par];
        i = par;
    }
    w->heap[i] = b;
    return true;
}

static bigram heap_pop(work *w)
{
    bigram top = w->heap[0];
    bigram last = w->heap[--w->n_heap];
    size_t n = w->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bg_before(w->t, &w->heap[c + 1], &w->heap[c])) c++;
        if (!bg_before(w->t, &w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static bool emit(work *w, int32_t id) { return vi_push(w->out, id); }

/* Split s[0..n) into symbols of unicode_len_utf8 bytes each. */
static bool split_syms(work *w, const char *s, size_t n)
{
    w->n_syms = 0;
    if (!w_sym_reserve(w, n)) return false;
    size_t off = 0;
    int32_t idx = 0;
    while (off < n) {
        size_t l = lead_len((unsigned char)s[off]);
        if (l > n - off) l = n - off;
        sym *y = &w->syms[w->n_syms++];
        y->text = s + off;
        y->n = (uint32_t)l;
        off += l;
        y->prev = idx - 1;
        y->next = off == n ? -1 : idx + 1;
        idx++;
    }
    return true;
}

/* ---- SPM (llm_tokenizer_spm_session) ---- */

static bool spm_try_bigram(work *w, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return true;
    const sym *l = &w->syms[left], *r = &w->syms[right];
    int32_t id = vocab_find(w->t, l->text, (size_t)l->n + r->n);
    if (id < 0) return true;
    bigram b = {w->t->score[id], 0, left, right, l->n, r->n};
    return heap_push(w, b);
}

static bool spm_byte(work *w, unsigned char c)
{
    int32_t id = w->t->byte_tok[c];
    if (id < 0) id = w->t->unk; /* llama.cpp throws here (T12) */
    return id < 0 || emit(w, id);
}

static bool spm_encode(work *w, const char *s, size_t n)
{
    if (!split_syms(w, s, n)) return false;
    w->n_heap = 0;
    for (size_t i = 1; i < w->n_syms; i++)
        if (!spm_try_bigram(w, (int32_t)i - 1, (int32_t)i)) return false;
    while (w->n_heap) {
        bigram b = heap_pop(w);
        sym *l = &w->syms[b.left], *r = &w->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.ln + b.rn) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->syms[r->next].prev = b.left;
        if (!spm_try_bigram(w, l->prev, b.left) || !spm_try_bigram(w, b.left, l->next)) return false;
    }
    if (!w->n_syms) return true;
    for (int32_t i = 0; i != -1; i = w->syms[i].next) {
        const sym *y = &w->syms[i];
        int32_t id = vocab_find(w->t, y->text, y->n);
        if (id >= 0) {
            if (!emit(w, id)) return false;
            continue;
        }
        /* resegment: a merged symbol is always a token, so only unknown
         * single characters get here; they become byte tokens */
        for (uint32_t k = 0; k < y->n; k++)
            if (!spm_byte(w, (unsigned char)y->text[k])) return false;
    }
    return true;
}

/* ---- BPE (llm_tokenizer_bpe_session) ---- */

static bool bpe_try_bigram(work *w, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return true;
    const sym *l = &w->syms[left], *r = &w->syms[right];
    int32_t rank = merge_rank(w->t, l->text, l->n, r->text, r->n);
    if (rank < 0) return true;
    bigram b = {0, rank, left, right, l->n, r->n};
    return heap_push(w, b);
}

static bool bpe_word(work *w, const char *s, size_t n)
{
    const fm_tok *t = w->t;
    if (t->ignore_merges) {
        int32_t id = vocab_find(t, s, n);
        if (id >= 0) return emit(w, id);
    }
    if (!split_syms(w, s, n)) return false;
    w->n_heap = 0;
    for (size_t i = 1; i < w->n_syms; i++)
        if (!bpe_try_bigram(w, (int32_t)i - 1, (int32_t)i)) return false;
    while (w->n_heap) {
        bigram b = heap_pop(w);
        sym *l = &w->syms[b.left], *r = &w->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n != b.ln || r->n != b.rn) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->syms[r->next].prev = b.left;
        if (!bpe_try_bigram(w, l->prev, b.left) || !bpe_try_bigram(w, b.left, l->next)) return false;
    }
    for (size_t i = 0; i < w->n_syms; i++) {
        const sym *y = &w->syms[i];
        if (!y->n) continue;
        int32_t id = vocab_find(t, y->text, y->n);
        if (id >= 0) {
            if (!emit(w, id)) return false;
            continue;
        }
        /* llama.cpp looks up each single byte of the (byte-encoded) text
         * and drops the ones that are not tokens */
        for (uint32_t k = 0; k < y->n; k++) {
            int32_t b1 = vocab_find(t, y->text + k, 1);
            if (b1 >= 0 && !emit(w, b1)) return false;
        }
    }
    return true;
}

/* ---- pre-tokenizers (unicode_regex_split_custom_*) ---- */

#define OOR 0xFFFFFFFFu

typedef struct pre_ctx {
    const uint32_t *cp;
    const uint16_t *fl;
    size_t n;
    uint32_t *ends;
    size_t n_ends;
    size_t prev_end;
} pre_ctx;

static inline uint32_t P_C(const pre_ctx *c, size_t p) { return p < c->n ? c->cp[p] : OOR; }
static inline uint16_t P_F(const pre_ctx *c, size_t p) { return p < c->n ? c->fl[p] : 0; }

static size_t p_add(pre_ctx *c, size_t end)
{
    size_t len = end - c->prev_end;
    if (len > 0) c->ends[c->n_ends++] = (uint32_t)end;
    c->prev_end = end;
    return len;
}

enum { F_N = FM_UCD_NUMBER, F_L = FM_UCD_LETTER, F_M = FM_UCD_MARK, F_WS = FM_UCD_WHITESPACE };

/* 's|'t|'re|'ve|'m|'ll|'d (case-insensitive when ci): returns the new
 * position or 0 when no contraction starts at pos. */
static size_t p_contraction(const pre_ctx *c, size_t pos, bool ci)
{
    if (c->cp[pos] != '\'' || pos + 1 >= c->n) return 0;
    uint32_t nx = P_C(c, pos + 1);
    if (ci) nx = fm_ucd_tolower_ascii(nx);
    if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') return pos + 2;
    if (pos + 2 < c->n) {
        uint32_t nn = P_C(c, pos + 2);
        if (ci) nn = fm_ucd_tolower_ascii(nn);
        if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') || (nx == 'l' && nn == 'l')) return pos + 3;
    }
    return 0;
}

static void pre_gpt2(pre_ctx *c)
{
    size_t pos = 0;
    while (pos < c->n) {
        uint32_t cpt = c->cp[pos];
        uint16_t flags = c->fl[pos];
        size_t q = p_contraction(c, pos, false);
        if (q) {
            p_add(c, q);
            pos = q;
            continue;
        }
        uint16_t f2 = cpt == ' ' ? P_F(c, pos + 1) : flags;
        if (f2 & F_L) {
            pos += cpt == ' ';
            while (f2 & F_L) f2 = P_F(c, ++pos);
            p_add(c, pos);
            continue;
        }
        if (f2 & F_N) {
            pos += cpt == ' ';
            while (f2 & F_N) f2 = P_F(c, ++pos);
            p_add(c, pos);
            continue;
        }
        if (!(f2 & (F_WS | F_L | F_N)) && f2) {
            pos += cpt == ' ';
            while (!(f2 & (F_WS | F_L | F_N)) && f2) f2 = P_F(c, ++pos);
            p_add(c, pos);
            continue;
        }
        size_t nws = 0;
        while (P_F(c, pos + nws) & F_WS) nws++;
        if (nws > 1 && P_C(c, pos + nws) != OOR) {
            pos += nws - 1;
            p_add(c, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            p_add(c, pos);
            continue;
        }
        p_add(c, ++pos);
    }
}

/* llama3 (digits 1..3), qwen2 (single digits), qwen35 (qwen2 with marks in
 * letter runs) */
static void pre_llama3_family(pre_ctx *c, int kind)
{
    const uint16_t LM = kind == PRE_QWEN35 ? (F_L | F_M) : F_L;
    size_t pos = 0;
    while (pos < c->n) {
        uint32_t cpt = c->cp[pos];
        uint16_t flags = c->fl[pos];
        size_t q = p_contraction(c, pos, true);
        if (q) {
            p_add(c, q);
            pos = q;
            continue;
        }
        /* [^\r\n\p{L}\p{N}]?\p{L}+  (qwen35: [\p{L}\p{M}]+) */
        if (!(cpt == '\r' || cpt == '\n' || (flags & F_N))) {
            if ((flags & LM) || (P_F(c, pos + 1) & LM)) {
                pos++;
                while (P_F(c, pos) & LM) pos++;
                p_add(c, pos);
                continue;
            }
        }
        if (flags & F_N) {
            if (kind == PRE_LLAMA3) { /* \p{N}{1,3} */
                size_t ini = pos;
                while (P_F(c, pos) & F_N) {
                    if (++pos - ini >= 3) {
                        p_add(c, pos);
                        ini = pos;
                    }
                }
                p_add(c, pos);
            } else { /* \p{N} */
                pos++;
                p_add(c, pos);
            }
            continue;
        }
        /* <space>?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests flags, not f2, for != 0) */
        const uint16_t EX = F_WS | LM | F_N;
        uint16_t f2 = cpt == ' ' ? P_F(c, pos + 1) : flags;
        if (!(f2 & EX) && flags) {
            pos += cpt == ' ';
            while (!(f2 & EX) && f2) f2 = P_F(c, ++pos);
            uint32_t c2 = P_C(c, pos);
            while (c2 == '\r' || c2 == '\n') c2 = P_C(c, ++pos);
            p_add(c, pos);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (P_F(c, pos + nws) & F_WS) {
            uint32_t c2 = P_C(c, pos + nws);
            if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) { /* \s*[\r\n]+ */
            pos = last_rn;
            p_add(c, pos);
            continue;
        }
        if (nws > 1 && P_C(c, pos + nws) != OOR) { /* \s+(?!\S) */
            pos += nws - 1;
            p_add(c, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            p_add(c, pos);
            continue;
        }
        p_add(c, ++pos);
    }
}

/* One raw-text fragment through the BPE path: decode (U+FFFD for invalid
 * bytes), split, then byte-encode and merge every word. */
static bool bpe_fragment(work *w, const char *s, size_t n)
{
    if (n + 1 > w->cap_cpts) {
        size_t nc = n + 1;
        uint32_t *a = realloc(w->cpts, nc * sizeof *a);
        if (a) w->cpts = a;
        uint16_t *b = realloc(w->flags, nc * sizeof *b);
        if (b) w->flags = b;
        uint32_t *d = realloc(w->ends, nc * sizeof *d);
        if (d) w->ends = d;
        if (!a || !b || !d) return false;
        w->cap_cpts = nc;
    }
    size_t nc = 0, i = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (i < n) {
        uint32_t cp = lc_next_cpt(u, n, &i);
        w->cpts[nc] = cp;
        w->flags[nc] = fm_ucd_flags(cp);
        nc++;
    }
    pre_ctx c = {w->cpts, w->flags, nc, w->ends, 0, 0};
    if (w->t->pre == PRE_GPT2) pre_gpt2(&c);
    else pre_llama3_family(&c, w->t->pre);
    size_t start = 0;
    for (size_t k = 0; k < c.n_ends; k++) {
        size_t end = c.ends[k];
        w->word.n = 0;
        for (size_t p = start; p < end; p++) {
            unsigned char b8[4], m[8];
            int l = cpt_to_utf8(w->cpts[p], b8);
            int ml = 0;
            for (int q = 0; q < l; q++) ml += cpt_to_utf8(byte2cp(b8[q]), m + ml); /* <= 2 bytes each */
            if (!sb_add(&w->word, m, (size_t)ml)) return false;
        }
        start = end;
        if (w->word.n && !bpe_word(w, w->word.s, w->word.n)) return false;
    }
    return true;
}

fm_err fm_tok_pretokenize(const fm_tok *t, const char *text, size_t len, size_t **ends, size_t *n_ends,
                          fm_error *e)
{
    *ends = NULL;
    *n_ends = 0;
    if (t->model != TOK_BPE) return fm_error_set(e, FM_E_ARG, "tokenizer: pretokenize needs a \"bpe\" tokenizer");
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    uint16_t *fl = malloc((len + 1) * sizeof *fl);
    uint32_t *we = malloc((len + 1) * sizeof *we);
    size_t *boff = malloc((len + 1) * sizeof *boff);
    size_t *out = malloc((len + 1) * sizeof *out);
    fm_err rc = FM_OK;
    if (!cp || !fl || !we || !boff || !out) {
        rc = fm_error_set(e, FM_E_NOMEM, "tokenizer: out of memory");
        goto done;
    }
    size_t nc = 0, i = 0;
    while (i < len) {
        cp[nc] = lc_next_cpt((const unsigned char *)text, len, &i);
        fl[nc] = fm_ucd_flags(cp[nc]);
        boff[nc++] = i; /* byte end of this codepoint */
    }
    pre_ctx c = {cp, fl, nc, we, 0, 0};
    if (t->pre == PRE_GPT2) pre_gpt2(&c);
    else pre_llama3_family(&c, t->pre);
    for (size_t k = 0; k < c.n_ends; k++) out[k] = boff[we[k] - 1];
    *ends = out;
    *n_ends = c.n_ends;
    out = NULL;
done:
    free(cp);
    free(fl);
    free(we);
    free(boff);
    free(out);
    return rc;
}

/* ---- special-token partition (tokenizer_st_partition) ---- */

typedef struct frag {
    size_t off, len;
    int32_t id; /* -1: raw text */
} frag;

typedef struct acc {
    size_t pos;
    int32_t id;
    uint32_t len;
} acc;

static int acc_cmp(const void *a, const void *b)
{
    const acc *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Fragments of text[0..n): special tokens in priority order (length desc,
 * id asc) each claim their leftmost non-overlapping occurrences that lie in
 * text not claimed before -- the same result as llama.cpp's repeated
 * find() over the fragment list. */
static fm_err partition(const fm_tok *t, const char *text, size_t n, bool parse_special, frag **out,
                        size_t *n_out, fm_error *e)
{
    *out = NULL;
    *n_out = 0;
    acc *accs = NULL;
    size_t n_acc = 0, cap_acc = 0;
    uint8_t *claimed = NULL;
    uint8_t *seen = NULL;
    uint32_t *occ = NULL;
    size_t n_occ = 0;
    fm_err rc = FM_OK;
    const bool *first = t->sp_first[parse_special ? 1 : 0];
    if (t->n_sp && n) {
        seen = calloc(t->n_sp, 1);
        occ = malloc((size_t)t->n_sp * sizeof *occ);
        if (!seen || !occ) goto nomem;
        /* 1: which special tokens occur at all (trie walk from each start) */
        for (size_t p = 0; p < n; p++) {
            if (!first[(unsigned char)text[p]]) continue;
            uint32_t node = 0;
            for (size_t q = p; q < n; q++) {
                node = trie_child(&t->tr, node, (unsigned char)text[q]);
                if (!node) break;
                int32_t r = parse_special ? t->tr.term[node] : t->tr.term_ud[node];
                if (r >= 0 && !seen[r]) {
                    seen[r] = 1;
                    occ[n_occ++] = (uint32_t)r;
                }
            }
        }
    }
    if (n_occ) {
        /* 2: claims in priority order */
        for (size_t a = 1; a < n_occ; a++) { /* insertion sort: few distinct tokens */
            uint32_t v = occ[a];
            size_t b = a;
            while (b > 0 && occ[b - 1] > v) {
                occ[b] = occ[b - 1];
                b--;
            }
            occ[b] = v;
        }
        claimed = calloc(n, 1);
        if (!claimed) goto nomem;
        for (size_t k = 0; k < n_occ; k++) {
            int32_t id = t->sp_id[occ[k]];
            const char *s = t->text + t->off[id];
            size_t L = t->len[id];
            size_t p = 0;
            while (p + L <= n) {
                const char *hit = memchr(text + p, (unsigned char)s[0], n - L + 1 - p);
                if (!hit) break;
                size_t q = (size_t)(hit - text);
                if (memcmp(hit, s, L)) {
                    p = q + 1;
                    continue;
                }
                /* claimed runs are at least L long, so checking both ends
                 * tells whether [q, q+L) is free */
                if (claimed[q] || claimed[q + L - 1]) {
                    p = q + 1;
                    continue;
                }
                memset(claimed + q, 1, L);
                if (n_acc == cap_acc) {
                    size_t nc = cap_acc ? cap_acc * 2 : 16;
                    acc *np = realloc(accs, nc * sizeof *np);
                    if (!np) goto nomem;
                    accs = np;
                    cap_acc = nc;
                }
                accs[n_acc++] = (acc){q, id, (uint32_t)L};
                p = q + L;
            }
        }
        qsort(accs, n_acc, sizeof *accs, acc_cmp);
    }
    {
        frag *f = malloc((2 * n_acc + 1) * sizeof *f);
        if (!f) goto nomem;
        size_t nf = 0, p = 0;
        for (size_t k = 0; k < n_acc; k++) {
            if (accs[k].pos > p) f[nf++] = (frag){p, accs[k].pos - p, -1};
            f[nf++] = (frag){accs[k].pos, accs[k].len, accs[k].id};
            p = accs[k].pos + accs[k].len;
        }
        if (p < n) f[nf++] = (frag){p, n - p, -1};
        *out = f;
        *n_out = nf;
    }
    goto done;
nomem:
    rc = fm_error_set(e, FM_E_NOMEM, "tokenizer: out of memory splitting special tokens (%zu bytes of text)", n);
done:
    free(accs);
    free(claimed);
    free(seen);
    free(occ);
    return rc;
}

fm_err fm_tok_encode(const fm_tok *t, const char *text, size_t len, bool add_special, bool parse_special,
                     int32_t **ids, size_t *n_ids, fm_error *e)
{
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len)) return fm_error_set(e, FM_E_ARG, "tokenizer: NULL argument");
    if (len > FM_TOK_MAX_TEXT)
        return fm_error_set(e, FM_E_RANGE, "tokenizer: text of %zu bytes is longer than the %llu limit", len,
                            (unsigned long long)FM_TOK_MAX_TEXT);
    vec_i32 out = {0};
    work w;
    memset(&w, 0, sizeof w);
    w.t = t;
    w.out = &out;
    frag *fr = NULL;
    size_t n_fr = 0;
    fm_err rc = FM_OK;
    if (len) {
        rc = partition(t, text, len, parse_special, &fr, &n_fr, e);
        if (rc) goto fail;
    }
    bool ok = true;
    if (add_special && t->add_bos) ok = emit(&w, t->bos);
    if (t->model == TOK_SPM) {
        bool prev_special = true;
        for (size_t k = 0; ok && k < n_fr; k++) {
            if (fr[k].id >= 0) {
                ok = emit(&w, fr[k].id);
                prev_special = true;
                continue;
            }
            /* prefix a space after a special token (or at the start) when
             * add_space_prefix, then escape ' ' as U+2581 */
            w.tmp.n = 0;
            ok = sb_reserve(&w.tmp, fr[k].len * 3 + 3);
            if (!ok) break;
            if (t->add_space_prefix && prev_special) sb_add(&w.tmp, "\xE2\x96\x81", 3);
            const char *s = text + fr[k].off;
            for (size_t i = 0; i < fr[k].len; i++) {
                if (s[i] == ' ') {
                    memcpy(w.tmp.s + w.tmp.n, "\xE2\x96\x81", 3);
                    w.tmp.n += 3;
                } else {
                    w.tmp.s[w.tmp.n++] = s[i];
                }
            }
            ok = spm_encode(&w, w.tmp.s, w.tmp.n);
            prev_special = false;
        }
    } else {
        for (size_t k = 0; ok && k < n_fr; k++) {
            if (fr[k].id >= 0) ok = emit(&w, fr[k].id);
            else ok = bpe_fragment(&w, text + fr[k].off, fr[k].len);
        }
    }
    if (ok && add_special && t->add_eos) ok = emit(&w, t->eos);
    if (!ok) {
        rc = fm_error_set(e, FM_E_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
        goto fail;
    }
    *ids = out.v;
    *n_ids = out.n;
    out.v = NULL;
fail:
    free(out.v);
    free(fr);
    free(w.syms);
    free(w.heap);
    free(w.cpts);
    free(w.flags);
    free(w.ends);
    free(w.tmp.s);
    free(w.word.s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* decoding                                                                 */
/* ------------------------------------------------------------------------ */

static size_t put(char *buf, size_t cap, size_t at, const void *p, size_t n)
{
    if (at < cap) memcpy(buf + at, p, n < cap - at ? n : cap - at);
    return at + n;
}

size_t fm_tok_piece(const fm_tok *t, int32_t id, char *buf, size_t cap, bool special)
{
    if (!t || id < 0 || (uint32_t)id >= t->n) return 0;
    const char *s = t->text + t->off[id];
    size_t len = t->len[id];
    switch (t->type[id]) {
    case FM_TOKT_CONTROL:
    case FM_TOKT_UNKNOWN:
        if (!special) return 0;
        return put(buf, cap, 0, s, len);
    case FM_TOKT_USER_DEFINED: return put(buf, cap, 0, s, len);
    case FM_TOKT_BYTE: {
        /* strtol(text.substr(3, 2), 16) */
        unsigned v = 0;
        for (size_t i = 3; i < 5 && i < len; i++) {
            int h = hexval((unsigned char)s[i]);
            if (h < 0) break;
            v = v * 16 + (unsigned)h;
        }
        char b = (char)v;
        return put(buf, cap, 0, &b, 1);
    }
    case FM_TOKT_NORMAL: break;
    default: return 0; /* undefined, unused */
    }
    size_t at = 0;
    if (t->model == TOK_SPM) {
        size_t i = 0;
        while (i < len) {
            if (i + 3 <= len && !memcmp(s + i, "\xE2\x96\x81", 3)) {
                at = put(buf, cap, at, " ", 1);
                i += 3;
            } else {
                at = put(buf, cap, at, s + i, 1);
                i++;
            }
        }
        return at;
    }
    /* byte-level: each codepoint maps back to one byte; one that does not
     * (never in a real vocabulary) is copied as UTF-8 (T13) */
    size_t i = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (i < len) {
        size_t i0 = i;
        uint32_t cp = lc_next_cpt(u, len, &i);
        int bv = cp2byte(cp);
        if (bv >= 0) {
            char b = (char)bv;
            at = put(buf, cap, at, &b, 1);
        } else {
            at = put(buf, cap, at, s + i0, i - i0);
        }
    }
    return at;
}

fm_err fm_tok_decode(const fm_tok *t, const int32_t *ids, size_t n, int flags, char **out, size_t *len,
                     fm_error *e)
{
    *out = NULL;
    *len = 0;
    sbuf b = {0};
    if (!sb_reserve(&b, 16)) return fm_error_set(e, FM_E_NOMEM, "tokenizer: out of memory decoding");
    for (size_t i = 0; i < n; i++) {
        if (!sb_reserve(&b, t->max_piece)) {
            free(b.s);
            return fm_error_set(e, FM_E_NOMEM, "tokenizer: out of memory decoding %zu tokens", n);
        }
        size_t l = fm_tok_piece(t, ids[i], b.s + b.n, t->max_piece, (flags & FM_TOK_DECODE_SPECIAL) != 0);
        if (i == 0 && (flags & FM_TOK_DECODE_STRIP_SPACE) && l && b.s[b.n] == ' ') {
            memmove(b.s + b.n, b.s + b.n + 1, l - 1);
            l--;
        }
        b.n += l;
        b.s[b.n] = 0;
    }
    *out = b.s;
    *len = b.n;
    return FM_OK;
}

void fm_tok_stream_init(fm_tok_stream *s, int flags)
{
    memset(s, 0, sizeof *s);
    s->flags = flags;
}

fm_err fm_tok_stream_push(const fm_tok *t, fm_tok_stream *s, int32_t id, char *buf, size_t cap, size_t *n_out,
                          fm_error *e)
{
    *n_out = 0;
    if (cap < t->max_piece + 3)
        return fm_error_set(e, FM_E_ARG, "tokenizer stream: buffer of %zu bytes, need %zu", cap, t->max_piece + 3);
    memcpy(buf, s->pend, s->n_pend);
    size_t l = fm_tok_piece(t, id, buf + s->n_pend, cap - s->n_pend, (s->flags & FM_TOK_DECODE_SPECIAL) != 0);
    if (!s->started && (s->flags & FM_TOK_DECODE_STRIP_SPACE) && l && buf[s->n_pend] == ' ') {
        memmove(buf + s->n_pend, buf + s->n_pend + 1, l - 1);
        l--;
    }
    s->started = true;
    size_t total = s->n_pend + l;
    /* hold back a trailing lead byte whose continuation bytes are missing */
    size_t hold = 0;
    for (size_t k = 1; k <= 3 && k <= total; k++) {
        unsigned char c = (unsigned char)buf[total - k];
        if ((c & 0xC0) == 0x80) continue;
        if (c >= 0xC0 && c < 0xF8) {
            size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (need > k) hold = k;
        }
        break;
    }
    memcpy(s->pend, buf + total - hold, hold);
    s->n_pend = (unsigned)hold;
    *n_out = total - hold;
    return FM_OK;
}

size_t fm_tok_stream_flush(fm_tok_stream *s, char *buf)
{
    size_t n = s->n_pend;
    memcpy(buf, s->pend, n);
    s->n_pend = 0;
    return n;
}

/* The chat family of a vocabulary: its stored template, else its special tokens. */
fm_chat_family fm_tok_chat_family(const fm_tok *t)
{
    if (t->chat_template) return fm_chat_detect(t->chat_template);
    if (vocab_find(t, "<start_of_turn>", 15) >= 0) return FM_CHAT_GEMMA;
    if (vocab_find(t, "<|im_start|>", 12) >= 0) return FM_CHAT_CHATML;
    if (vocab_find(t, "<|start_header_id|>", 19) >= 0) return FM_CHAT_LLAMA3;
    if (vocab_find(t, "[INST]", 6) >= 0 || vocab_find(t, "\xE2\x96\x81[INST]", 9) >= 0) return FM_CHAT_LLAMA2;
    return FM_CHAT_UNKNOWN;
}
