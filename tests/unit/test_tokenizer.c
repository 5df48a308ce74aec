/* Tokenizer tests (specs/tokenizer.md rules T1..T16).
 *
 * Exact-match tests (tolerance: none, every id must be equal):
 *   - byte-level BPE families qwen2 / llama3 / gpt2 and a SentencePiece-style
 *     BPE ("spm"), small vocabularies trained by tests/gen/gen_tok_ref.py:
 *     fm from the vocab-only GGUF vs llama.cpp's ids, fm from the HF
 *     directory vs the HF tokenizer's ids, on multilingual.txt (~10 KB),
 *     edge.txt, nfd.txt and bad.bin (invalid UTF-8, llama.cpp only);
 *   - the real Gemma 3 270M vocabulary (models/gemma-3-270m-q4_k_m.gguf; the
 *     test FAILS when it is absent unless FM_NO_MODEL=1) vs llama.cpp.
 * Plus rule tests on hand-written tokenizer JSON: loader refusals, special
 * token priority, streaming UTF-8, chat templates. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "formats/file.h"
#include "formats/gguf.h"
#include "formats/tokmeta.h"
#include "formats/util.h"
#include "runtime/tokenizer.h"
#include "tests/unit/t.h"

#define FIX "tests/fixtures/tok/"
#define GEMMA "models/gemma-3-270m-q4_k_m.gguf"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static char *slurp(const char *path, size_t *len)
{
    char *buf = NULL;
    fm_error e;
    if (fm_file_slurp(path, 1u << 28, &buf, len, &e)) {
        fprintf(stderr, "cannot read %s: %s\n", path, e.msg);
        return NULL;
    }
    return buf;
}

static int32_t *read_ids(const char *path, size_t *n)
{
    size_t len;
    char *s = slurp(path, &len);
    *n = 0;
    if (!s) return NULL;
    size_t cap = len / 2 + 1, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    char *p = s;
    while (v && *p) {
        char *q;
        long x = strtol(p, &q, 10);
        if (q == p) break;
        v[k++] = (int32_t)x;
        p = q;
    }
    free(s);
    *n = k;
    return v;
}

/* canonical JSON -> text -> fm_tok (the bundle's path) */
static fm_tok *load_canon(json_t *j, const char *what)
{
    char *s;
    size_t sl;
    fm_error e;
    fm_tok *t = NULL;
    if (fm_tokmeta_dump(j, &s, &sl, &e)) {
        fprintf(stderr, "%s: dump: %s\n", what, e.msg);
        json_decref(j);
        return NULL;
    }
    json_decref(j);
    if (fm_tok_load(&t, s, sl, &e)) fprintf(stderr, "%s: load: %s\n", what, e.msg);
    free(s);
    return t;
}

static fm_tok *tok_gguf(const char *path)
{
    fm_gguf *g;
    fm_error e;
    json_t *j;
    if (fm_gguf_open(&g, path, &e)) {
        fprintf(stderr, "%s: %s\n", path, e.msg);
        return NULL;
    }
    fm_err rc = fm_tokmeta_from_gguf(g, &j, &e);
    fm_gguf_close(g);
    if (rc) {
        fprintf(stderr, "%s: tokmeta: %s\n", path, e.msg);
        return NULL;
    }
    return load_canon(j, path);
}

static fm_tok *tok_hf(const char *dir)
{
    json_t *j;
    fm_error e;
    if (fm_tokmeta_from_hf(dir, &j, &e)) {
        fprintf(stderr, "%s: tokmeta: %s\n", dir, e.msg);
        return NULL;
    }
    return load_canon(j, dir);
}

static fm_tok *tok_json(const char *json, fm_err *rc, fm_error *e)
{
    fm_tok *t = NULL;
    *rc = fm_tok_load(&t, json, strlen(json), e);
    return t;
}

/* encodes file `text` and compares with the reference id file; returns the
 * number of tokens when equal, -1 otherwise */
static long cmp_file(const fm_tok *t, const char *text, bool add, bool sp, const char *ref)
{
    size_t len, nr = 0, ng = 0;
    char *s = slurp(text, &len);
    int32_t *want = read_ids(ref, &nr), *got = NULL;
    fm_error e;
    long res = -1;
    if (!s || !want) goto out;
    if (fm_tok_encode(t, s, len, add, sp, &got, &ng, &e)) {
        fprintf(stderr, "%s: encode: %s\n", text, e.msg);
        goto out;
    }
    size_t i = 0;
    while (i < ng && i < nr && got[i] == want[i]) i++;
    if (i == ng && i == nr) res = (long)ng;
    else
        fprintf(stderr, "%s vs %s: %zu vs %zu tokens, first difference at %zu (fm %d, ref %d)\n", text, ref, ng,
                nr, i, i < ng ? got[i] : -1, i < nr ? want[i] : -1);
out:
    free(s);
    free(want);
    free(got);
    return res;
}

/* decode(encode(text)) == text, and the stream gives the same bytes, every
 * chunk ending on a character boundary for valid UTF-8 (T16) */
static void check_roundtrip(const fm_tok *t, const char *path, int flags)
{
    size_t len, n = 0, dl = 0;
    char *s = slurp(path, &len), *d = NULL;
    int32_t *ids = NULL;
    fm_error e;
    CHECK(s != NULL);
    if (!s) return;
    CHECK(fm_tok_encode(t, s, len, false, false, &ids, &n, &e) == FM_OK);
    CHECK(fm_tok_decode(t, ids, n, flags, &d, &dl, &e) == FM_OK);
    CHECKF(d && dl == len && !memcmp(d, s, len), "%s: decode(encode) differs (%zu vs %zu bytes)", path, dl, len);
    size_t cap = fm_tok_max_piece(t) + 3;
    char *buf = malloc(cap), *acc = malloc(len + 64);
    size_t al = 0;
    bool chunks_ok = true;
    fm_tok_stream st;
    fm_tok_stream_init(&st, flags);
    for (size_t i = 0; i < n && buf && acc; i++) {
        size_t k;
        if (fm_tok_stream_push(t, &st, ids[i], buf, cap, &k, &e) || al + k > len + 60) {
            chunks_ok = false;
            break;
        }
        if (k && !fm_utf8_valid(buf, k)) chunks_ok = false;
        memcpy(acc + al, buf, k);
        al += k;
    }
    if (buf && acc) al += fm_tok_stream_flush(&st, acc + al);
    CHECKF(chunks_ok, "%s: a stream chunk was not complete UTF-8", path);
    CHECKF(acc && al == len && !memcmp(acc, s, len), "%s: stream output differs from the text", path);
    free(buf);
    free(acc);
    free(s);
    free(d);
    free(ids);
}

/* the pre-tokenizer's word ends vs the HF pre-tokenizer's (T5) */
static bool cmp_split(const fm_tok *t, const char *text, const char *ref)
{
    size_t len, nr = 0, ng = 0;
    char *s = slurp(text, &len);
    int32_t *want = read_ids(ref, &nr);
    size_t *got = NULL;
    fm_error e;
    bool ok = false;
    if (s && want && !fm_tok_pretokenize(t, s, len, &got, &ng, &e)) {
        size_t i = 0;
        while (i < ng && i < nr && got[i] == (size_t)want[i]) i++;
        ok = i == ng && i == nr;
        if (!ok)
            fprintf(stderr, "%s vs %s: %zu vs %zu words, first difference at word %zu (fm end %zu, ref %d)\n",
                    text, ref, ng, nr, i, i < ng ? got[i] : 0, i < nr ? want[i] : -1);
    }
    free(s);
    free(want);
    free(got);
    return ok;
}

static void test_family(const char *fam)
{
    char p1[256], p2[256], p3[256];
    snprintf(p1, sizeof p1, FIX "%s.gguf", fam);
    fm_tok *g = tok_gguf(p1);
    snprintf(p1, sizeof p1, FIX "%s", fam);
    fm_tok *h = tok_hf(p1);
    CHECKF(g != NULL, "%s: from GGUF", fam);
    CHECKF(h != NULL, "%s: from HF", fam);
    if (!g || !h) {
        fm_tok_free(g);
        fm_tok_free(h);
        return;
    }
    CHECKF(fm_tok_n_vocab(g) == fm_tok_n_vocab(h), "%s: vocab %u (gguf) vs %u (hf)", fam, fm_tok_n_vocab(g),
           fm_tok_n_vocab(h));
    static const char *texts[] = {"multilingual", "edge", "nfd"};
    for (int k = 0; k < 3; k++) {
        snprintf(p1, sizeof p1, FIX "%s.txt", texts[k]);
        long r;
        snprintf(p2, sizeof p2, FIX "%s.%s.raw.llama.ids", fam, texts[k]);
        r = cmp_file(g, p1, false, false, p2);
        CHECKF(r >= 0, "%s %s: fm(gguf) == llama.cpp, add_special=0 parse_special=0", fam, texts[k]);
        if (r >= 0 && k == 0) printf("%s: %s, gguf, raw: %ld tokens identical to llama.cpp\n", fam, texts[k], r);
        snprintf(p2, sizeof p2, FIX "%s.%s.special.llama.ids", fam, texts[k]);
        r = cmp_file(g, p1, true, true, p2);
        CHECKF(r >= 0, "%s %s: fm(gguf) == llama.cpp, add_special=1 parse_special=1", fam, texts[k]);
        if (r >= 0 && k == 0) printf("%s: %s, gguf, special: %ld tokens identical to llama.cpp\n", fam, texts[k], r);
        if (strcmp(fam, "spm")) {
            snprintf(p3, sizeof p3, FIX "%s.%s.split", fam, texts[k]);
            CHECKF(cmp_split(g, p1, p3), "%s %s: pre-tokenizer words == HF pre_tokenize_str", fam, texts[k]);
        }
        /* HF always splits special tokens; its NFC normalizer (qwen2) composes
         * nfd.txt, which llama.cpp and fm do not (T14) */
        if (!strcmp(fam, "qwen2") && k == 2) continue;
        snprintf(p3, sizeof p3, FIX "%s.%s.raw.hf.ids", fam, texts[k]);
        r = cmp_file(h, p1, false, true, p3);
        CHECKF(r >= 0, "%s %s: fm(hf) == HF, add_special_tokens=False", fam, texts[k]);
        snprintf(p3, sizeof p3, FIX "%s.%s.special.hf.ids", fam, texts[k]);
        r = cmp_file(h, p1, true, true, p3);
        CHECKF(r >= 0, "%s %s: fm(hf) == HF, add_special_tokens=True", fam, texts[k]);
        if (r >= 0 && k == 0) printf("%s: %s, hf, special: %ld tokens identical to HF tokenizers\n", fam, texts[k], r);
    }
    snprintf(p2, sizeof p2, FIX "%s.bad.raw.llama.ids", fam);
    CHECKF(cmp_file(g, FIX "bad.bin", false, false, p2) >= 0, "%s: invalid UTF-8 like llama.cpp (T12)", fam);
    check_roundtrip(g, FIX "multilingual.txt", 0);
    /* spm merges "<s>" written in the text into the control token (as
     * llama.cpp does), which only renders with DECODE_SPECIAL */
    check_roundtrip(g, FIX "edge.txt", FM_TOK_DECODE_SPECIAL);
    fm_tok_free(g);
    fm_tok_free(h);
}

static void test_gemma(void)
{
    FILE *f = fopen(GEMMA, "rb");
    if (!f) {
        const char *nm = getenv("FM_NO_MODEL");
        bool skip = nm && !strcmp(nm, "1");
        CHECKF(skip, "%s is absent (symlink or fetch it: sh scripts/get-gemma.sh; FM_NO_MODEL=1 skips)", GEMMA);
        if (skip) printf("gemma3: skipped (FM_NO_MODEL=1)\n");
        return;
    }
    fclose(f);
    fm_gguf *g;
    fm_error e;
    json_t *j;
    char *s = NULL;
    size_t sl = 0;
    CHECK(fm_gguf_open(&g, GEMMA, &e) == FM_OK);
    CHECK(fm_tokmeta_from_gguf(g, &j, &e) == FM_OK);
    fm_gguf_close(g);
    CHECK(fm_tokmeta_dump(j, &s, &sl, &e) == FM_OK);
    json_decref(j);
    fm_tok *t = NULL;
    double t0 = now_ms();
    CHECK(fm_tok_load(&t, s, sl, &e) == FM_OK);
    double t1 = now_ms();
    free(s);
    if (!t) return;
    printf("gemma3: canonical JSON %zu bytes, %u tokens loaded in %.1f ms\n", sl, fm_tok_n_vocab(t), t1 - t0);
    CHECK(fm_tok_n_vocab(t) == 262144);
    CHECK(fm_tok_bos(t) == 2 && fm_tok_eos(t) == 1 && fm_tok_eot(t) == 106 && fm_tok_add_bos(t));
    CHECK(fm_tok_is_eog(t, 1) && fm_tok_is_eog(t, 106) && !fm_tok_is_eog(t, 2));
    static const char *texts[] = {"multilingual", "edge", "nfd"};
    for (int k = 0; k < 3; k++) {
        char p1[256], p2[256];
        snprintf(p1, sizeof p1, FIX "%s.txt", texts[k]);
        snprintf(p2, sizeof p2, FIX "gemma3.%s.raw.llama.ids", texts[k]);
        long r = cmp_file(t, p1, false, false, p2);
        CHECKF(r >= 0, "gemma3 %s: identical to llama.cpp (raw)", texts[k]);
        if (r >= 0 && k == 0) printf("gemma3: multilingual.txt, raw: %ld tokens identical to llama.cpp\n", r);
        snprintf(p2, sizeof p2, FIX "gemma3.%s.special.llama.ids", texts[k]);
        r = cmp_file(t, p1, true, true, p2);
        CHECKF(r >= 0, "gemma3 %s: identical to llama.cpp (add_special, parse_special)", texts[k]);
        if (r >= 0 && k == 0) printf("gemma3: multilingual.txt, special: %ld tokens identical to llama.cpp\n", r);
    }
    CHECKF(cmp_file(t, FIX "bad.bin", false, false, FIX "gemma3.bad.raw.llama.ids") >= 0,
           "gemma3: invalid UTF-8 as byte tokens like llama.cpp");
    /* chat: the family from the vocabulary (this GGUF has no template) */
    CHECK(fm_tok_chat_family(t) == FM_CHAT_GEMMA);
    fm_chat_msg msgs[] = {{"system", " You are terse. "}, {"user", "Hello, wie geht's? \xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x81\n"}};
    char *prompt = NULL;
    size_t pl = 0;
    CHECK(fm_chat_apply(FM_CHAT_GEMMA, msgs, 2, true, &prompt, &pl, &e) == FM_OK);
    const char *want = "<start_of_turn>user\nYou are terse.\n\nHello, wie geht's? \xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x81"
                       "<end_of_turn>\n<start_of_turn>model\n";
    CHECKF(prompt && !strcmp(prompt, want), "gemma chat prompt: [%s]", prompt ? prompt : "");
    if (prompt) {
        int32_t *ids = NULL;
        size_t n = 0, nr = 0;
        int32_t *ref = read_ids(FIX "gemma3.chat.special.llama.ids", &nr);
        CHECK(fm_tok_encode(t, prompt, pl, true, true, &ids, &n, &e) == FM_OK);
        CHECKF(ref && n == nr && !memcmp(ids, ref, n * sizeof *ids), "gemma chat ids == llama.cpp");
        free(ids);
        free(ref);
    }
    free(prompt);
    check_roundtrip(t, FIX "multilingual.txt", 0);
    /* speed: best of 5 on the 10 KB text (report only) */
    size_t len;
    char *txt = slurp(FIX "multilingual.txt", &len);
    double best = 1e9;
    for (int r = 0; txt && r < 5; r++) {
        int32_t *ids = NULL;
        size_t n = 0;
        double a = now_ms();
        fm_tok_encode(t, txt, len, false, true, &ids, &n, &e);
        double b = now_ms();
        if (b - a < best) best = b - a;
        free(ids);
    }
    if (txt) printf("gemma3: encode %zu bytes in %.2f ms (%.1f MB/s)\n", len, best, len / best / 1e3);
    free(txt);
    fm_tok_free(t);
}

/* ---- hand-written tokenizer JSON ---------------------------------------- */

/* spm vocabulary: 0 <unk> 1 <s> 2 </s> 3..8 a b c d ▁ x 9 "ab" (user) 10 "bcd"
 * (user) 11 <ctl> (control) 12 ▁a 13 <0xE4> 14 <0xBD> 15 <0xA0> 16 cd */
static const char *k_spm =
    "{\"format\":\"fm-tokenizer\",\"version\":1,\"model\":\"spm\",\"pre\":\"default\","
    "\"tokens\":[\"<unk>\",\"<s>\",\"</s>\",\"a\",\"b\",\"c\",\"d\",\"\\u2581\",\"x\",\"ab\",\"bcd\",\"<ctl>\","
    "\"\\u2581a\",\"<0xE4>\",\"<0xBD>\",\"<0xA0>\",\"cd\"],"
    "\"types\":[2,3,3,1,1,1,1,1,1,4,4,3,1,6,6,6,1],"
    "\"scores\":[0,0,0,0,0,0,0,0,0,0,0,0,-1.0,0,0,0,-2.5e0],"
    "\"special\":{\"bos\":1,\"eos\":2,\"eot\":-1,\"eom\":-1,\"unk\":0,\"pad\":-1},\"eog\":[11],"
    "\"add_bos\":true,\"add_eos\":false,\"add_space_prefix\":%s,\"ignore_merges\":false%s}";

static fm_tok *spm_tok(const char *space_prefix, const char *extra)
{
    char buf[2048];
    snprintf(buf, sizeof buf, k_spm, space_prefix, extra);
    fm_error e;
    fm_err rc;
    fm_tok *t = tok_json(buf, &rc, &e);
    if (rc) fprintf(stderr, "spm_tok: %s\n", e.msg);
    return t;
}

static bool enc_is(const fm_tok *t, const char *s, bool add, bool sp, const int32_t *want, size_t nw)
{
    int32_t *ids = NULL;
    size_t n = 0;
    fm_error e;
    if (fm_tok_encode(t, s, strlen(s), add, sp, &ids, &n, &e)) return false;
    bool ok = n == nw && (!n || !memcmp(ids, want, n * sizeof *ids));
    if (!ok) {
        fprintf(stderr, "encode(\"%s\") =", s);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

static void test_rules(void)
{
    fm_tok *t = spm_tok("false", "");
    CHECK(t != NULL);
    if (!t) return;
    /* T10: longer special tokens claim first: "abcd" -> a, [bcd] (not [ab], cd) */
    CHECK(enc_is(t, "abcd", false, false, (const int32_t[]){3, 10}, 2));
    /* user-defined tokens are split even without parse_special; control
     * tokens only with it (T10) */
    CHECK(enc_is(t, "x<ctl>", false, true, (const int32_t[]){8, 11}, 2));
    CHECK(enc_is(t, "ab", true, false, (const int32_t[]){1, 9}, 2));
    /* T11: spaces -> U+2581, bigram "▁a" (score -1) merges; "cd" merges */
    CHECK(enc_is(t, " a cd", false, false, (const int32_t[]){12, 7, 16}, 3));
    /* byte fallback: 你 = E4 BD A0 is not a token */
    CHECK(enc_is(t, "\xe4\xbd\xa0", false, false, (const int32_t[]){13, 14, 15}, 3));
    /* a byte with no byte token and no text token -> unk (T12) */
    CHECK(enc_is(t, "\xc3\xa9", false, false, (const int32_t[]){0, 0}, 2));
    CHECK(enc_is(t, "", true, false, (const int32_t[]){1}, 1));
    CHECK(enc_is(t, "", false, false, NULL, 0));
    /* pieces and the stream (T16) */
    char buf[64];
    size_t cap = fm_tok_max_piece(t) + 3;
    CHECK(fm_tok_piece(t, 12, buf, sizeof buf, false) == 2 && !memcmp(buf, " a", 2));
    CHECK(fm_tok_piece(t, 11, buf, sizeof buf, false) == 0);
    CHECK(fm_tok_piece(t, 11, buf, sizeof buf, true) == 5);
    CHECK(fm_tok_piece(t, 14, buf, sizeof buf, false) == 1 && (unsigned char)buf[0] == 0xBD);
    CHECK(fm_tok_piece(t, 99, buf, sizeof buf, false) == 0);
    CHECK(fm_tok_piece(t, 12, buf, 1, false) == 2); /* needed length even when truncated */
    fm_tok_stream st;
    fm_error e;
    size_t k = 99;
    fm_tok_stream_init(&st, 0);
    CHECK(fm_tok_stream_push(t, &st, 13, buf, cap, &k, &e) == FM_OK && k == 0);
    CHECK(fm_tok_stream_push(t, &st, 14, buf, cap, &k, &e) == FM_OK && k == 0);
    CHECK(fm_tok_stream_push(t, &st, 15, buf, cap, &k, &e) == FM_OK && k == 3 && !memcmp(buf, "\xe4\xbd\xa0", 3));
    CHECK(fm_tok_stream_push(t, &st, 13, buf, cap, &k, &e) == FM_OK && k == 0);
    CHECK(fm_tok_stream_push(t, &st, 3, buf, cap, &k, &e) == FM_OK && k == 2 && !memcmp(buf, "\xe4" "a", 2));
    CHECK(fm_tok_stream_push(t, &st, 13, buf, cap, &k, &e) == FM_OK && k == 0);
    CHECK(fm_tok_stream_flush(&st, buf) == 1 && (unsigned char)buf[0] == 0xE4);
    CHECK(fm_tok_stream_push(t, &st, 3, buf, 2, &k, &e) == FM_E_ARG);
    fm_tok_stream_init(&st, FM_TOK_DECODE_STRIP_SPACE);
    CHECK(fm_tok_stream_push(t, &st, 12, buf, cap, &k, &e) == FM_OK && k == 1 && buf[0] == 'a');
    CHECK(fm_tok_stream_push(t, &st, 12, buf, cap, &k, &e) == FM_OK && k == 2 && buf[0] == ' ');
    CHECK(fm_tok_is_eog(t, 11) && fm_tok_is_eog(t, 2) && !fm_tok_is_eog(t, 1));
    fm_tok_free(t);
    /* add_space_prefix: a space before the first text and after each special */
    t = spm_tok("true", ",\"chat_template\":\"{{ '[INST]' }}\"");
    CHECK(t != NULL);
    if (t) {
        CHECK(enc_is(t, "a<ctl>a", true, true, (const int32_t[]){1, 12, 11, 12}, 4));
        CHECK(fm_tok_chat_family(t) == FM_CHAT_LLAMA2);
        int32_t ids[] = {12, 3};
        char *d;
        size_t dl;
        CHECK(fm_tok_decode(t, ids, 2, FM_TOK_DECODE_STRIP_SPACE, &d, &dl, &e) == FM_OK && dl == 2 &&
              !strcmp(d, "aa"));
        free(d);
        fm_tok_free(t);
    }
}

static void test_refusals(void)
{
    fm_error e;
    fm_err rc;
    char buf[2048];
    struct {
        const char *json;
        fm_err want;
        const char *why;
    } cases[] = {
        {"", FM_E_FORMAT, "empty text (T1)"},
        {"{\"format\":\"fm-tokenizer\",\"version\":1", FM_E_FORMAT, "truncated JSON (T1)"},
        {"[1,2]", FM_E_FORMAT, "top level not an object (T1)"},
        {"{\"format\":\"fm-tokenizer\",\"version\":2}", FM_E_VERSION, "version 2 (T2)"},
        {"{\"format\":\"other\",\"version\":1}", FM_E_FORMAT, "wrong format name (T2)"},
        {"{\"format\":\"fm-tokenizer\",\"version\":1,\"model\":\"wpm\"}", FM_E_UNSUPPORTED, "model wpm (T2)"},
        {"{\"format\":\"fm-tokenizer\",\"version\":1,\"model\":\"bpe\",\"pre\":\"default\"}", FM_E_UNSUPPORTED,
         "bpe pre 'default' (T5)"},
        {"{\"a\":\"\\ud800\"}", FM_E_FORMAT, "lone surrogate escape (T1)"},
        {"{\"a\":\"\xc0\xaf\"}", FM_E_FORMAT, "overlong UTF-8 in a string (T1)"},
        {"{\"a\":01}", FM_E_FORMAT, "leading zero (T1)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fm_tok *t = tok_json(cases[i].json, &rc, &e);
        CHECKF(rc == cases[i].want && !t, "%s: got %d (%s)", cases[i].why, rc, e.msg);
        fm_tok_free(t);
    }
    /* mutations of a valid spm JSON */
    struct {
        const char *from, *to;
        fm_err want;
        const char *why;
    } muts[] = {
        {"\"types\":[2,3,3,1,1,1,1,1,1,4,4,3,1,6,6,6,1]", "\"types\":[2,3,3,1,1,1,1,1,1,4,4,3,1,6,6,6]", FM_E_FORMAT,
         "types shorter than tokens (T4)"},
        {"\"types\":[2,", "\"types\":[7,", FM_E_FORMAT, "type 7 (T4)"},
        {"\"tokens\":[\"<unk>\"", "\"tokens\":[\"\"", FM_E_FORMAT, "empty token text (T3)"},
        {"\"bos\":1", "\"bos\":17", FM_E_FORMAT, "bos out of range (T8)"},
        {"\"bos\":1", "\"bos\":-1", FM_E_FORMAT, "add_bos without bos (T8)"},
        {"\"scores\":[0,", "\"scores\":[\"x\",", FM_E_FORMAT, "score not a number (T6)"},
        {"\"eog\":[11]", "\"eog\":[1.5]", FM_E_FORMAT, "eog id not an integer (T8)"},
        {"\"add_bos\":true", "\"add_bos\":1", FM_E_FORMAT, "flag not a boolean (T8)"},
    };
    for (size_t i = 0; i < sizeof muts / sizeof *muts; i++) {
        snprintf(buf, sizeof buf, k_spm, "false", "");
        char *p = strstr(buf, muts[i].from);
        CHECKF(p != NULL, "mutation %zu applies", i);
        if (!p) continue;
        char out[2048];
        size_t pre = (size_t)(p - buf);
        snprintf(out, sizeof out, "%.*s%s%s", (int)pre, buf, muts[i].to, p + strlen(muts[i].from));
        fm_tok *t = tok_json(out, &rc, &e);
        CHECKF(rc == muts[i].want && !t, "%s: got %d (%s)", muts[i].why, rc, e.msg);
        fm_tok_free(t);
    }
    /* tokmeta refuses unknown HF pre-tokenizers and GGUF models clearly */
    json_t *j = NULL;
    rc = fm_tokmeta_from_hf(FIX "no-such-dir", &j, &e);
    CHECKF(rc != FM_OK && j == NULL && strstr(e.msg, "tokenizer.json"), "missing HF dir: %s", e.msg);
    CHECK(fm_tokmeta_pre_family("qwen2") == FM_TOKPRE_QWEN2 && fm_tokmeta_pre_family("llama-bpe") == FM_TOKPRE_LLAMA3 &&
          fm_tokmeta_pre_family("gpt-2") == FM_TOKPRE_GPT2 && fm_tokmeta_pre_family("default") == FM_TOKPRE_NONE &&
          fm_tokmeta_pre_family(NULL) == FM_TOKPRE_NONE);
}

static void test_chat(void)
{
    fm_chat_msg m[] = {{"system", "Be brief."}, {"user", " Hi! "}, {"assistant", "Hello. "}, {"user", "Bye"}};
    struct {
        fm_chat_family f;
        const char *want;
    } cases[] = {
        {FM_CHAT_CHATML, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi! <|im_end|>\n"
                         "<|im_start|>assistant\nHello. <|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
                         "<|im_start|>assistant\n"},
        {FM_CHAT_GEMMA, "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
                        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"},
        {FM_CHAT_LLAMA3, "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                         "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                         "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                         "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                         "<|start_header_id|>assistant<|end_header_id|>\n\n"},
        {FM_CHAT_LLAMA2_SYS, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi!  [/INST]Hello. </s>[INST] Bye [/INST]"},
        {FM_CHAT_LLAMA2, "[INST] Be brief.\n Hi!  [/INST]Hello. </s>[INST] Bye [/INST]"},
        {FM_CHAT_MISTRAL_V3, "[INST] Be brief.\n\n Hi! [/INST] Hello.</s>[INST] Bye[/INST]"},
        {FM_CHAT_MISTRAL_V7, "[SYSTEM_PROMPT] Be brief.[/SYSTEM_PROMPT][INST]  Hi! [/INST] Hello. </s>[INST] Bye[/INST]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *s = NULL;
        size_t l = 0;
        fm_error e;
        CHECK(fm_chat_apply(cases[i].f, m, 4, true, &s, &l, &e) == FM_OK);
        CHECKF(s && !strcmp(s, cases[i].want) && l == strlen(cases[i].want), "chat %s: [%s]",
               fm_chat_family_name(cases[i].f), s ? s : "");
        free(s);
    }
    /* detection by the llama.cpp substring rules */
    CHECK(fm_chat_detect("{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}") == FM_CHAT_CHATML);
    CHECK(fm_chat_detect("{{ bos_token }}<start_of_turn>user") == FM_CHAT_GEMMA);
    CHECK(fm_chat_detect("<|start_header_id|>x<|end_header_id|>") == FM_CHAT_LLAMA3);
    CHECK(fm_chat_detect("[INST] <<SYS>> x") == FM_CHAT_LLAMA2_SYS);
    CHECK(fm_chat_detect("[SYSTEM_PROMPT] [INST]") == FM_CHAT_MISTRAL_V7);
    CHECK(fm_chat_detect("<|im_start|><|im_sep|>") == FM_CHAT_UNKNOWN);
    CHECK(fm_chat_detect("<|user|><|assistant|><|end|>") == FM_CHAT_UNKNOWN);
    CHECK(fm_chat_detect("gemma") == FM_CHAT_GEMMA && fm_chat_detect("llama3") == FM_CHAT_LLAMA3);
    CHECK(fm_chat_detect("something else") == FM_CHAT_UNKNOWN && fm_chat_detect(NULL) == FM_CHAT_UNKNOWN);
    char *s = NULL;
    size_t l;
    fm_error e;
    CHECK(fm_chat_apply(FM_CHAT_UNKNOWN, m, 4, true, &s, &l, &e) == FM_E_UNSUPPORTED && !s);
    /* HF fixtures carry their templates through tokmeta */
    fm_tok *q = tok_hf(FIX "qwen2");
    fm_tok *ll = tok_hf(FIX "llama3");
    CHECK(q && fm_tok_chat_family(q) == FM_CHAT_CHATML);
    CHECK(ll && fm_tok_chat_family(ll) == FM_CHAT_LLAMA3);
    /* qwen2 (HF): eos <|im_end|>, eog also <|endoftext|>, no BOS added */
    if (q) {
        int32_t im_end = fm_tok_lookup(q, "<|im_end|>", 10), eot = fm_tok_lookup(q, "<|endoftext|>", 13);
        CHECK(im_end >= 0 && fm_tok_eos(q) == im_end && fm_tok_is_eog(q, eot) && !fm_tok_add_bos(q));
        CHECK(fm_tok_type(q, im_end) == FM_TOKT_CONTROL);
    }
    /* llama3 (HF): BOS from TemplateProcessing, eos <|eot_id|> */
    if (ll) {
        CHECK(fm_tok_add_bos(ll) && fm_tok_bos(ll) == fm_tok_lookup(ll, "<|begin_of_text|>", 17));
        CHECK(fm_tok_eos(ll) == fm_tok_lookup(ll, "<|eot_id|>", 10));
    }
    fm_tok_free(q);
    fm_tok_free(ll);
}

int main(void)
{
    test_rules();
    test_refusals();
    test_chat();
    test_family("qwen2");
    test_family("llama3");
    test_family("gpt2");
    test_family("spm");
    test_gemma();
    T_DONE();
}
