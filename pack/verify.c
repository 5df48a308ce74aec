/* fm-verify's engine: see pack/verify.h and specs/bundle.md B18.
 *
 * The reader (fm_bundle_open) checks the superblock and the manifest. Every
 * other byte of the file is covered here: the manifest's data ranges sorted by
 * offset partition the file into "gaps" (tar headers, fm/pad members and zero
 * padding) and data (hashed). One work item is one data range together with
 * the gap before it, so each worker reads sequentially; the tail after the
 * last range must be zero padding and the two end-of-archive blocks. */
#define _GNU_SOURCE /* O_DIRECT */
#include "pack/verify.h"
#include "formats/bundle.h"
#include "formats/sha256.h"
#include "formats/util.h"
#include "pack/sign.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define U64(x) ((unsigned long long)(x))
#define CHUNK (8u << 20)   /* data read size */
#define WIN (64u << 10)    /* header/padding window */
#define PAX_CAP (64u << 10)
#define BATCH (32u << 20)  /* bytes of consecutive items one thread takes at a time */

enum { I_SB, I_TOK, I_TENSOR, I_BLOB, I_MANIFEST, I_SIG };

typedef struct item {
    uint64_t gap_start, off, size;
    int kind;
    uint32_t a, b;               /* tensor index / (layer index, expert) */
    fm_verify_problem *gap_prob; /* malloc'd on a problem */
    fm_verify_problem *data_prob;
    uint64_t members;
} item;

typedef struct shared {
    const fm_bundle *b;
    const fm_verify_opts *opts;
    int fd, dfd;
    uint64_t file_size;
    bool allow_unknown; /* bundle minor newer than this reader: tolerate unknown members */
    const char *path;
    item *items;
    size_t n_items;
    size_t *batch; /* batch b is items [batch[b], batch[b+1]) */
    size_t n_batches;
    atomic_size_t next;
    atomic_uint_fast64_t done;
    atomic_bool direct_ok;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned finished;
    atomic_bool nomem;
} shared;

/* ---------------------------------------------------------------- reading */

static int pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *got)
{
    size_t k = 0;
    while (k < n) {
        ssize_t r = pread(fd, (uint8_t *)buf + k, n - k, (off_t)(off + k));
        if (r < 0) {
            if (errno == EINTR) continue;
            *got = k;
            return errno;
        }
        if (r == 0) break;
        k += (size_t)r;
    }
    *got = k;
    return 0;
}

/* One worker: its own descriptor, so that the kernel's readahead state
 * (per open file) follows this thread's sequential stream. */
typedef struct wk {
    shared *s;
    int fd;
    uint64_t hinted; /* POSIX_FADV_WILLNEED issued up to here */
    uint64_t limit;  /* end of the current batch */
} wk;

/* Keeps two chunks of read-ahead requested in front of `from`. */
static void ahead(wk *w, uint64_t from)
{
    uint64_t want = from + 2 * (uint64_t)CHUNK;
    if (want > w->limit) want = w->limit;
    if (w->hinted < from) w->hinted = from;
    if (want > w->hinted) {
        posix_fadvise(w->fd, (off_t)w->hinted, (off_t)(want - w->hinted), POSIX_FADV_WILLNEED);
        w->hinted = want;
    }
}

/* A window onto the file, refilled on demand. */
typedef struct win {
    const shared *s;
    int fd;
    uint8_t *buf;
    size_t cap;
    uint64_t base; /* file offset of buf[0] */
    size_t len;
} win;

/* Pointer to [off, off+n) (n <= 512 or <= cap); NULL on a read failure. */
static const uint8_t *win_get(win *w, uint64_t off, size_t n)
{
    if (off >= w->base && off + n <= w->base + w->len) return w->buf + (off - w->base);
    size_t want = w->cap;
    if (off + want > w->s->file_size) want = (size_t)(w->s->file_size - off);
    if (want < n) return NULL;
    size_t got;
    if (pread_full(w->fd, w->buf, want, off, &got) || got < n) return NULL;
    w->base = off;
    w->len = got;
    return w->buf;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

static size_t first_nonzero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return i;
    return n;
}

/* ---------------------------------------------------------------- problems */

static fm_verify_problem *new_prob(shared *s, fm_verify_kind k, uint64_t off)
{
    fm_verify_problem *p = calloc(1, sizeof *p);
    if (!p) {
        atomic_store(&s->nomem, true);
        return NULL;
    }
    p->kind = k;
    p->offset = off;
    return p;
}

static void set_struct(shared *s, fm_verify_problem **slot, uint64_t off, const char *what_fmt,
                       uint64_t what_off, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void set_struct(shared *s, fm_verify_problem **slot, uint64_t off, const char *what_fmt,
                       uint64_t what_off, const char *fmt, ...)
{
    if (*slot) return; /* first problem of a region wins: later ones follow from it */
    fm_verify_problem *p = new_prob(s, FM_VK_STRUCTURE, off);
    if (!p) return;
    snprintf(p->what, sizeof p->what, what_fmt, U64(what_off));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->msg, sizeof p->msg, fmt, ap);
    va_end(ap);
    *slot = p;
}

static void item_label(const shared *s, const item *it, char *buf, size_t n)
{
    switch (it->kind) {
    case I_SB: snprintf(buf, n, "superblock"); break;
    case I_TOK: snprintf(buf, n, "tokenizer"); break;
    case I_TENSOR: snprintf(buf, n, "tensor %s", fm_bundle_tensor_at(s->b, it->a)->name); break;
    case I_BLOB: snprintf(buf, n, "blk.%u expert %u", fm_bundle_expert_layer_at(s->b, it->a)->layer, it->b); break;
    case I_MANIFEST: snprintf(buf, n, "manifest"); break;
    default: snprintf(buf, n, "signature"); break;
    }
}

static void item_member(const shared *s, const item *it, char *buf, size_t n)
{
    fm_bundle_info in;
    switch (it->kind) {
    case I_SB: snprintf(buf, n, "%s", FM_BUNDLE_MEMBER_SUPERBLOCK); break;
    case I_TOK:
        fm_bundle_get_info(s->b, &in);
        snprintf(buf, n, "%s", in.tokenizer_member);
        break;
    case I_TENSOR: fm_bundle_tensor_member(fm_bundle_tensor_at(s->b, it->a)->name, buf, n); break;
    case I_BLOB: fm_bundle_expert_member(fm_bundle_expert_layer_at(s->b, it->a)->layer, it->b, buf, n); break;
    case I_MANIFEST:
        fm_bundle_get_info(s->b, &in);
        snprintf(buf, n, "%s", in.sb.manifest_encoding == FM_BUNDLE_ENC_ZSTD ? FM_BUNDLE_MEMBER_MANIFEST_ZST
                                                                           : FM_BUNDLE_MEMBER_MANIFEST);
        break;
    default: snprintf(buf, n, "%s", FM_BUNDLE_MEMBER_SIG); break;
    }
}

/* ---------------------------------------------------------------- structure (B1, B15, B16) */

/* Parses pax extended header records (B16): "LEN key=value\n", LEN the
 * record's exact decimal length; only path and size (and mtime) allowed. */
static bool pax_parse(const uint8_t *d, size_t n, bool allow_unknown, char *path, size_t path_cap,
                      bool *has_path, uint64_t *size, bool *has_size, char *err, size_t errn)
{
    size_t p = 0;
    *has_path = *has_size = false;
    while (p < n) {
        size_t q = p, len = 0;
        if (d[q] < '1' || d[q] > '9') return snprintf(err, errn, "record at +%zu: bad length", p), false;
        while (q < n && d[q] >= '0' && d[q] <= '9' && q - p < 8) len = len * 10 + (size_t)(d[q++] - '0');
        if (q >= n || d[q] != ' ' || len > n - p || len < 5 || d[p + len - 1] != '\n')
            return snprintf(err, errn, "record at +%zu: malformed", p), false;
        const uint8_t *k = d + q + 1, *end = d + p + len - 1;
        const uint8_t *eq = memchr(k, '=', (size_t)(end - k));
        if (!eq || eq == k) return snprintf(err, errn, "record at +%zu: no key", p), false;
        size_t kl = (size_t)(eq - k), vl = (size_t)(end - eq - 1);
        const uint8_t *v = eq + 1;
        if (kl == 4 && memcmp(k, "path", 4) == 0) {
            if (vl == 0 || vl >= path_cap || memchr(v, 0, vl))
                return snprintf(err, errn, "bad path record"), false;
            memcpy(path, v, vl);
            path[vl] = '\0';
            *has_path = true;
        } else if (kl == 4 && memcmp(k, "size", 4) == 0) {
            uint64_t x = 0;
            if (vl == 0 || vl > 19) return snprintf(err, errn, "bad size record"), false;
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9') return snprintf(err, errn, "bad size record"), false;
                x = x * 10 + (uint64_t)(v[i] - '0');
            }
            *size = x;
            *has_size = true;
        } else if (kl == 5 && memcmp(k, "mtime", 5) == 0) {
            for (size_t i = 0; i < vl; i++)
                if (!((v[i] >= '0' && v[i] <= '9') || v[i] == '.'))
                    return snprintf(err, errn, "bad mtime record"), false;
        } else if (!allow_unknown) {
            return snprintf(err, errn, "unexpected record '%.*s'", (int)(kl > 40 ? 40 : kl), (const char *)k), false;
        }
        p += len;
    }
    return true;
}

/* Checks [start, data) — padding after the previous member's data, then tar
 * headers ending with the one of the member whose data starts at `data`
 * (name `want`, `want_size` bytes). With want == NULL (the tail) the region
 * ends at `data` with no member, and the two end blocks are checked by the
 * caller. Counts members. */
static void check_gap(shared *s, win *w, uint64_t start, uint64_t data, const char *want,
                      uint64_t want_size, fm_verify_problem **slot, uint64_t *members)
{
    uint64_t p;
    const uint8_t *q;
    if (!fm_align_up(start, 512, &p) || p > data) {
        set_struct(s, slot, start, "member at offset %llu", start, "data overruns the next member");
        return;
    }
    if (p > start) {
        if (!(q = win_get(w, start, (size_t)(p - start)))) goto io;
        size_t z = first_nonzero(q, (size_t)(p - start));
        if (z < p - start) {
            set_struct(s, slot, start + z, "padding at offset %llu", start + z,
                       "nonzero byte after member data");
            return;
        }
    }
    char pax_path[512];
    bool has_path = false, has_size = false, pending = false;
    uint64_t pax_size = 0, pax_at = 0;
    while (p < data || (want && p == data)) {
        if (data - p < 512) {
            if (want)
                set_struct(s, slot, p, "tar header at offset %llu", p,
                           "no member header for %s at data offset %llu", want, U64(data));
            else
                set_struct(s, slot, p, "end of archive at offset %llu", p, "misplaced end-of-archive");
            return;
        }
        if (!(q = win_get(w, p, 512))) goto io;
        if (all_zero(q, 512)) {
            set_struct(s, slot, p, "tar header at offset %llu", p,
                       want ? "unexpected zero block (end of archive) before %s" : "unexpected zero block%s",
                       want ? want : "");
            return;
        }
        fm_tar_header h;
        fm_error te;
        if (fm_bundle_tar_parse(q, &h, &te) != FM_OK) {
            set_struct(s, slot, p, "tar header at offset %llu", p, "%s", te.msg);
            return;
        }
        uint64_t dstart = p + 512, pad_end;
        if (h.typeflag == 'x') {
            if (pending) {
                set_struct(s, slot, p, "tar header at offset %llu", p, "two pax extended headers in a row");
                return;
            }
            if (h.size == 0 || h.size > PAX_CAP || !fm_align_up(dstart + h.size, 512, &pad_end) ||
                pad_end > data) {
                set_struct(s, slot, p, "tar header at offset %llu", p, "pax extended header of %llu bytes",
                           U64(h.size));
                return;
            }
            if (!(q = win_get(w, dstart, (size_t)(pad_end - dstart)))) goto io;
            char err[160];
            if (!pax_parse(q, (size_t)h.size, s->allow_unknown, pax_path, sizeof pax_path, &has_path,
                           &pax_size, &has_size, err, sizeof err)) {
                set_struct(s, slot, dstart, "pax extended header at offset %llu", p, "%s", err);
                return;
            }
            size_t z = first_nonzero(q + h.size, (size_t)(pad_end - dstart - h.size));
            if (z < pad_end - dstart - h.size) {
                set_struct(s, slot, dstart + h.size + z, "padding at offset %llu", dstart + h.size + z,
                           "nonzero byte after pax extended header");
                return;
            }
            pending = true;
            pax_at = p;
            p = pad_end;
            continue;
        }
        if (h.typeflag != '0') {
            set_struct(s, slot, p, "tar header at offset %llu", p, "member type '%c' (only regular files allowed)",
                       h.typeflag >= 0x21 && h.typeflag < 0x7f ? h.typeflag : '?');
            return;
        }
        const char *name = pending && has_path ? pax_path : h.name;
        uint64_t size = pending && has_size ? pax_size : h.size;
        (void)pax_at;
        pending = false;
        (*members)++;
        if (want && dstart == data) {
            if (strcmp(name, want) != 0 || size != want_size)
                set_struct(s, slot, p, "tar header at offset %llu", p,
                           "expected member %s of %llu bytes, found '%.100s' of %llu bytes", want,
                           U64(want_size), name, U64(size));
            return;
        }
        if (!fm_add_u64(dstart, size, &pad_end) || !fm_align_up(pad_end, 512, &pad_end) || pad_end > data) {
            set_struct(s, slot, p, "tar header at offset %llu", p,
                       "member '%.100s' of %llu bytes overruns %s at %llu", name, U64(size),
                       want ? want : "the end of the archive", U64(data));
            return;
        }
        bool is_pad = strcmp(name, FM_BUNDLE_MEMBER_PAD) == 0;
        if (!is_pad && !s->allow_unknown) {
            set_struct(s, slot, p, "tar header at offset %llu", p, "unexpected member '%.100s'", name);
            return;
        }
        /* B15/B16: pad data and every member's tail padding are zero (the
         * data of an unknown member of a newer minor version is not ours to judge). */
        uint64_t zlo = is_pad ? dstart : dstart + size;
        for (uint64_t z0 = zlo; z0 < pad_end;) {
            size_t kk = pad_end - z0 > WIN ? WIN : (size_t)(pad_end - z0);
            if (!(q = win_get(w, z0, kk))) goto io;
            size_t z = first_nonzero(q, kk);
            if (z < kk) {
                set_struct(s, slot, z0 + z, "padding at offset %llu", z0 + z, "nonzero byte in %s",
                           is_pad ? "a padding member" : "member padding");
                return;
            }
            z0 += kk;
        }
        p = pad_end;
    }
    if (pending) set_struct(s, slot, p, "tar header at offset %llu", p, "pax extended header without a member");
    return;
io:
    set_struct(s, slot, p, "read at offset %llu", p, "I/O error: %s", strerror(errno ? errno : EIO));
}

/* ---------------------------------------------------------------- data */

static void hash_item(wk *wc, item *it, uint8_t *buf)
{
    shared *s = wc->s;
    const uint8_t *want;
    fm_bundle_info in;
    fm_bundle_get_info(s->b, &in);
    fm_verify_kind kind;
    switch (it->kind) {
    case I_TENSOR:
        want = fm_bundle_tensor_at(s->b, it->a)->sha256;
        kind = FM_VK_TENSOR;
        break;
    case I_BLOB:
        want = fm_bundle_expert_layer_at(s->b, it->a)->blobs[it->b].sha256;
        kind = FM_VK_EXPERT;
        break;
    case I_TOK:
        want = in.tokenizer_sha256;
        kind = FM_VK_TOKENIZER;
        break;
    case I_SIG:
        want = in.sb.signature_sha256;
        kind = FM_VK_SIGNATURE;
        break;
    default: return; /* superblock and manifest: checked by the reader */
    }
    fm_sha256 h;
    if (fm_sha256_init(&h, NULL) != FM_OK) {
        atomic_store(&s->nomem, true);
        return;
    }
    uint64_t off = it->off, left = it->size;
    int err = 0;
    while (left > 0) {
        size_t k = left > CHUNK ? CHUNK : (size_t)left, got = 0;
        bool done = false;
        if (s->dfd >= 0 && atomic_load(&s->direct_ok) && off % 4096 == 0) {
            uint64_t kk;
            fm_align_up(k, 4096, &kk);
            if (off + kk > s->file_size) kk = s->file_size - off; /* a multiple of 512 */
            size_t g;
            int r = pread_full(s->dfd, buf, (size_t)kk, off, &g);
            if (r == 0 && g >= k) done = true;
            else if (r == EINVAL) atomic_store(&s->direct_ok, false);
            else if (r) err = r;
        }
        if (!done && !err) {
            ahead(wc, off);
            err = pread_full(wc->fd, buf, k, off, &got);
            if (!err && got < k) err = EIO;
        }
        if (err) break;
        fm_sha256_update(&h, buf, k);
        off += k;
        left -= k;
        atomic_fetch_add(&s->done, k);
    }
    uint8_t d[32];
    fm_sha256_final(&h, d);
    if (!err && memcmp(d, want, 32) == 0) return;
    fm_verify_problem *p = new_prob(s, kind, it->off);
    if (!p) return;
    if (it->kind == I_BLOB) {
        p->layer = fm_bundle_expert_layer_at(s->b, it->a)->layer;
        p->expert = it->b;
    }
    item_label(s, it, p->what, sizeof p->what);
    if (err) snprintf(p->msg, sizeof p->msg, "read error at offset %llu: %s", U64(off), strerror(err));
    else snprintf(p->msg, sizeof p->msg, "sha256 mismatch");
    it->data_prob = p;
}

static void run_item(wk *wc, item *it, win *w, uint8_t *buf)
{
    shared *s = wc->s;
    char member[320];
    item_member(s, it, member, sizeof member);
    check_gap(s, w, it->gap_start, it->off, member, it->size, &it->gap_prob, &it->members);
    atomic_fetch_add(&s->done, it->off - it->gap_start);
    if (it->kind == I_SB || it->kind == I_MANIFEST) {
        if (!s->opts->quick) atomic_fetch_add(&s->done, it->size); /* read and checked by the reader */
    } else if (!s->opts->quick || it->kind == I_SIG) {
        hash_item(wc, it, buf);
    }
}

static void *worker(void *arg)
{
    shared *s = arg;
    wk wc = {s, open(s->path, O_RDONLY | O_CLOEXEC), 0, 0};
    if (wc.fd < 0) wc.fd = s->fd; /* share the reader's descriptor */
    else posix_fadvise(wc.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint8_t *buf = NULL, *wbuf = malloc(WIN);
    if (posix_memalign((void **)&buf, 4096, CHUNK) != 0) buf = NULL;
    if (!buf || !wbuf) atomic_store(&s->nomem, true);
    win w = {s, wc.fd, wbuf, WIN, 0, 0};
    while (buf && wbuf) {
        size_t bi = atomic_fetch_add(&s->next, 1);
        if (bi >= s->n_batches) break;
        size_t i0 = s->batch[bi], i1 = s->batch[bi + 1];
        const item *last = &s->items[i1 - 1];
        wc.hinted = s->items[i0].gap_start;
        wc.limit = s->opts->quick ? wc.hinted : last->off + last->size;
        for (size_t i = i0; i < i1; i++) run_item(&wc, &s->items[i], &w, buf);
    }
    if (wc.fd != s->fd) close(wc.fd);
    free(buf);
    free(wbuf);
    pthread_mutex_lock(&s->mu);
    s->finished++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---------------------------------------------------------------- driver */

static int item_cmp(const void *x, const void *y)
{
    const item *p = x, *q = y;
    return p->off < q->off ? -1 : p->off > q->off;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static fm_err add_problem(fm_verify_report *r, const fm_verify_problem *p, fm_error *e)
{
    fm_verify_problem *np = realloc(r->problems, (r->n_problems + 1) * sizeof *np);
    if (!np) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    r->problems = np;
    r->problems[r->n_problems++] = *p;
    return FM_OK;
}

static fm_err check_signature(const char *path, const fm_bundle *b, const fm_verify_opts *o,
                              fm_verify_report *r, int fd, fm_error *e)
{
    fm_bundle_info in;
    fm_bundle_get_info(b, &in);
    fm_verify_problem p;
    memset(&p, 0, sizeof p);
    p.kind = FM_VK_SIGNATURE;
    p.offset = in.sb.manifest_offset;
    snprintf(p.what, sizeof p.what, "manifest signature");
    uint8_t sig[FM_SIG_LEN];
    char *detached = NULL;
    fm_err rc = FM_OK;
    r->sig_checked = true;
    if (!o->sig_path && in.sb.signature_size == FM_SIG_LEN) {
        size_t got;
        if (pread_full(fd, sig, FM_SIG_LEN, in.sb.signature_offset, &got) || got != FM_SIG_LEN) {
            snprintf(p.msg, sizeof p.msg, "cannot read the embedded signature");
            return add_problem(r, &p, e);
        }
        snprintf(r->sig_source, sizeof r->sig_source, "embedded");
    } else {
        char sp[1024];
        if (o->sig_path) snprintf(sp, sizeof sp, "%s", o->sig_path);
        else snprintf(sp, sizeof sp, "%s.sig", path);
        snprintf(r->sig_source, sizeof r->sig_source, "%.500s", sp);
        size_t len = 0;
        fm_error se;
        if (fm_file_slurp(sp, 4096, &detached, &len, &se) != FM_OK) {
            snprintf(p.msg, sizeof p.msg, "no embedded signature and no detached signature (%s)", se.msg);
            return add_problem(r, &p, e);
        }
        if (len != FM_SIG_LEN) {
            snprintf(p.msg, sizeof p.msg, "detached signature %.400s is %zu bytes, expected %u raw bytes", sp,
                     len, FM_SIG_LEN);
            free(detached);
            return add_problem(r, &p, e);
        }
        memcpy(sig, detached, FM_SIG_LEN);
        free(detached);
    }
    void *m;
    size_t ml;
    fm_error me;
    if (fm_bundle_read_manifest_bytes(b, &m, &ml, &me) != FM_OK) {
        snprintf(p.msg, sizeof p.msg, "%s", me.msg);
        return add_problem(r, &p, e);
    }
    fm_error ve;
    rc = fm_sign_verify_ed25519(o->pubkey_pem, m, ml, sig, &ve);
    free(m);
    if (rc == FM_OK) {
        r->sig_ok = true;
        return FM_OK;
    }
    if (rc != FM_E_SIGNATURE) { /* the key file itself is unusable */
        if (e) *e = ve;
        return rc;
    }
    /* a key that is not Ed25519 / not PEM is the caller's error, not damage */
    if (strstr(ve.msg, "not a PEM") || strstr(ve.msg, "not Ed25519")) {
        if (e) *e = ve;
        return rc;
    }
    snprintf(p.msg, sizeof p.msg, "%s", ve.msg);
    return add_problem(r, &p, e);
}

static int prob_cmp(const void *x, const void *y)
{
    const fm_verify_problem *p = x, *q = y;
    return p->offset < q->offset ? -1 : p->offset > q->offset;
}

fm_err fm_verify_bundle(const char *path, const fm_verify_opts *opts, fm_verify_report *r,
                        fm_error *e)
{
    static const fm_verify_opts def;
    if (!opts) opts = &def;
    memset(r, 0, sizeof *r);
    r->quick = opts->quick;
    double t0 = now_s();
    fm_bundle *b = NULL;
    fm_error oe;
    fm_err orc = fm_bundle_open(&b, path, 0, &oe);
    if (orc != FM_OK) {
        if (orc == FM_E_NOMEM) {
            if (e) *e = oe;
            return orc;
        }
        r->status = FM_VERIFY_UNREADABLE;
        r->error_code = orc;
        snprintf(r->error, sizeof r->error, "%s", oe.msg);
        r->seconds = now_s() - t0;
        return FM_OK;
    }
    fm_bundle_info in;
    fm_bundle_get_info(b, &in);
    fm_bundle_version(b, &r->major, &r->minor);
    r->alignment = fm_bundle_alignment(b);
    r->file_size = fm_bundle_file_size(b);
    r->n_tensors = fm_bundle_n_tensors(b);
    r->n_blobs = in.n_blobs;
    r->sig_embedded = in.sb.signature_size != 0;

    shared s;
    memset(&s, 0, sizeof s);
    s.b = b;
    s.opts = opts;
    s.fd = fm_bundle_fd(b);
    s.dfd = -1;
    s.file_size = r->file_size;
    s.allow_unknown = r->minor > FM_BUNDLE_MINOR;
    atomic_init(&s.next, 0);
    atomic_init(&s.done, 0);
    atomic_init(&s.direct_ok, true);
    atomic_init(&s.nomem, false);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    fm_err rc = FM_OK;

    size_t n = 2 + (size_t)r->n_tensors + (size_t)r->n_blobs + (in.has_tokenizer ? 1 : 0) +
               (r->sig_embedded ? 1 : 0);
    s.items = calloc(n, sizeof *s.items);
    if (!s.items) {
        rc = fm_error_set(e, FM_E_NOMEM, "out of memory");
        goto out;
    }
    size_t k = 0;
    s.items[k++] = (item){.off = FM_BUNDLE_SB_OFFSET, .size = FM_BUNDLE_SB_SIZE, .kind = I_SB};
    s.items[k++] = (item){.off = in.sb.manifest_offset, .size = in.sb.manifest_size, .kind = I_MANIFEST};
    if (r->sig_embedded)
        s.items[k++] = (item){.off = in.sb.signature_offset, .size = in.sb.signature_size, .kind = I_SIG};
    if (in.has_tokenizer)
        s.items[k++] = (item){.off = in.tokenizer_offset, .size = in.tokenizer_size, .kind = I_TOK};
    for (uint64_t i = 0; i < r->n_tensors; i++) {
        const fm_bundle_tensor *t = fm_bundle_tensor_at(b, i);
        s.items[k++] = (item){.off = t->offset, .size = t->size, .kind = I_TENSOR, .a = (uint32_t)i};
    }
    for (uint32_t l = 0; l < fm_bundle_n_expert_layers(b); l++) {
        const fm_bundle_expert_layer *L = fm_bundle_expert_layer_at(b, l);
        for (uint32_t x = 0; x < L->n_expert; x++)
            s.items[k++] = (item){.off = L->blobs[x].offset, .size = L->blobs[x].size, .kind = I_BLOB, .a = l, .b = x};
    }
    s.n_items = k;
    qsort(s.items, k, sizeof *s.items, item_cmp);
    uint64_t total = 0;
    for (size_t i = 0; i < k; i++) {
        s.items[i].gap_start = i ? s.items[i - 1].off + s.items[i - 1].size : 0;
        total += s.items[i].off - s.items[i].gap_start;
        if (!opts->quick) total += s.items[i].size;
    }
    unsigned nt = opts->threads;
    if (nt == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        nt = c > 0 ? (unsigned)c : 1;
    }
    if (nt > 256) nt = 256;
    /* Batches: runs of consecutive items of about BATCH bytes (less for small
     * files: at least 4 batches per thread), so each thread reads long
     * sequential stretches. */
    s.path = path;
    s.batch = malloc((k + 1) * sizeof *s.batch);
    if (!s.batch) {
        rc = fm_error_set(e, FM_E_NOMEM, "out of memory");
        goto out;
    }
    {
        uint64_t acc = 0, target = r->file_size / ((uint64_t)nt * 4);
        if (target > BATCH) target = BATCH;
        s.n_batches = 0;
        for (size_t i = 0; i < k; i++) {
            if (i == 0 || acc >= target) {
                s.batch[s.n_batches++] = i;
                acc = 0;
            }
            acc += s.items[i].off + s.items[i].size - s.items[i].gap_start;
        }
        s.batch[s.n_batches] = k;
    }
    if (opts->direct) {
        s.dfd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    }
    posix_fadvise(s.fd, 0, 0, POSIX_FADV_SEQUENTIAL);

    if (nt > s.n_batches) nt = (unsigned)s.n_batches;
    pthread_t *th = calloc(nt, sizeof *th);
    unsigned started = 0;
    if (th)
        for (; started < nt; started++)
            if (pthread_create(&th[started], NULL, worker, &s) != 0) break;
    r->threads = started ? started : 1;
    if (started == 0) {
        worker(&s); /* no threads: do it here */
    } else {
        pthread_mutex_lock(&s.mu);
        while (s.finished < started) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&s.cv, &s.mu, &ts);
            if (opts->progress && s.finished < started) {
                pthread_mutex_unlock(&s.mu);
                opts->progress(opts->progress_ctx, atomic_load(&s.done), total);
                pthread_mutex_lock(&s.mu);
            }
        }
        pthread_mutex_unlock(&s.mu);
        for (unsigned i = 0; i < started; i++) pthread_join(th[i], NULL);
    }
    free(th);
    if (opts->progress) opts->progress(opts->progress_ctx, atomic_load(&s.done), total);
    if (atomic_load(&s.nomem)) {
        rc = fm_error_set(e, FM_E_NOMEM, "out of memory while verifying");
        goto out;
    }

    /* The tail: padding after the last member, exactly two zero blocks, EOF. */
    {
        fm_verify_problem *tp = NULL;
        uint8_t *wb = malloc(WIN);
        if (!wb) {
            rc = fm_error_set(e, FM_E_NOMEM, "out of memory");
            goto out;
        }
        win w = {&s, s.fd, wb, WIN, 0, 0};
        uint64_t last = s.items[k - 1].off + s.items[k - 1].size, eoa = r->file_size - 1024;
        check_gap(&s, &w, last, eoa, NULL, 0, &tp, &r->n_members);
        if (!tp) {
            const uint8_t *q = win_get(&w, eoa, 1024);
            size_t z = q ? first_nonzero(q, 1024) : 0;
            if (!q) set_struct(&s, &tp, eoa, "end of archive at offset %llu", eoa, "read error");
            else if (z < 1024)
                set_struct(&s, &tp, eoa + z, "end of archive at offset %llu", eoa,
                           "nonzero byte at offset %llu in the two end blocks", U64(eoa + z));
        }
        free(wb);
        r->bytes_read += r->file_size - last;
        if (tp) {
            rc = add_problem(r, tp, e);
            free(tp);
            if (rc) goto out;
        }
    }
    for (size_t i = 0; i < k; i++) {
        r->n_members += s.items[i].members;
        if (s.items[i].gap_prob && (rc = add_problem(r, s.items[i].gap_prob, e))) goto out;
        if (s.items[i].data_prob && (rc = add_problem(r, s.items[i].data_prob, e))) goto out;
    }
    r->bytes_read += atomic_load(&s.done);
    if (opts->pubkey_pem && (rc = check_signature(path, b, opts, r, s.fd, e))) goto out;
    if (r->n_problems) qsort(r->problems, r->n_problems, sizeof *r->problems, prob_cmp);
    r->status = r->n_problems ? FM_VERIFY_DAMAGED : FM_VERIFY_INTACT;
out:
    if (s.items)
        for (size_t i = 0; i < s.n_items; i++) {
            free(s.items[i].gap_prob);
            free(s.items[i].data_prob);
        }
    free(s.items);
    free(s.batch);
    if (s.dfd >= 0) close(s.dfd);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    fm_bundle_close(b);
    r->seconds = now_s() - t0;
    if (rc != FM_OK) fm_verify_report_free(r);
    return rc;
}

void fm_verify_report_free(fm_verify_report *r)
{
    free(r->problems);
    r->problems = NULL;
    r->n_problems = 0;
}

json_t *fm_verify_report_json(const fm_verify_report *r, const char *path)
{
    static const char *const st[] = {"intact", "damaged", "unreadable"};
    static const char *const kinds[] = {"tensor", "expert", "tokenizer", "signature", "structure"};
    json_t *o = json_object();
    json_object_set_new(o, "bundle", json_string(path));
    json_object_set_new(o, "status", json_string(st[r->status]));
    json_object_set_new(o, "exit", json_integer(r->status));
    if (r->status == FM_VERIFY_UNREADABLE) {
        json_object_set_new(o, "error", json_string(r->error));
        json_object_set_new(o, "error_code", json_string(fm_strerror(r->error_code)));
        return o;
    }
    json_object_set_new(o, "version", json_pack("{s:i,s:i}", "major", (int)r->major, "minor", (int)r->minor));
    json_object_set_new(o, "alignment", json_integer(r->alignment));
    json_object_set_new(o, "file_size", json_integer((json_int_t)r->file_size));
    json_object_set_new(o, "members", json_integer((json_int_t)r->n_members));
    json_object_set_new(o, "tensors", json_integer((json_int_t)r->n_tensors));
    json_object_set_new(o, "expert_blobs", json_integer((json_int_t)r->n_blobs));
    json_object_set_new(o, "quick", json_boolean(r->quick));
    json_object_set_new(o, "threads", json_integer(r->threads));
    json_object_set_new(o, "bytes_read", json_integer((json_int_t)r->bytes_read));
    json_object_set_new(o, "seconds", json_real(r->seconds));
    json_t *sig = json_object();
    json_object_set_new(sig, "embedded", json_boolean(r->sig_embedded));
    json_object_set_new(sig, "checked", json_boolean(r->sig_checked));
    if (r->sig_checked) {
        json_object_set_new(sig, "source", json_string(r->sig_source));
        json_object_set_new(sig, "ok", json_boolean(r->sig_ok));
    }
    json_object_set_new(o, "signature", sig);
    json_t *ps = json_array();
    for (size_t i = 0; i < r->n_problems; i++) {
        const fm_verify_problem *p = &r->problems[i];
        json_t *po = json_object();
        json_object_set_new(po, "kind", json_string(kinds[p->kind]));
        json_object_set_new(po, "what", json_string(p->what));
        json_object_set_new(po, "message", json_string(p->msg));
        json_object_set_new(po, "offset", json_integer((json_int_t)p->offset));
        if (p->kind == FM_VK_TENSOR && strncmp(p->what, "tensor ", 7) == 0)
            json_object_set_new(po, "tensor", json_string(p->what + 7));
        if (p->kind == FM_VK_EXPERT) {
            json_object_set_new(po, "layer", json_integer(p->layer));
            json_object_set_new(po, "expert", json_integer(p->expert));
        }
        json_array_append_new(ps, po);
    }
    json_object_set_new(o, "problems", ps);
    return o;
}
