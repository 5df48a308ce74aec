/* fm-run: runs a model (bundle or .gguf) on a prompt, or dumps logits.
 *
 *   fm-run MODEL -p PROMPT [-n N] [-t T] [--temp X] [--top-k K] [--top-p P]
 *          [--min-p M] [--repeat-penalty R] [--repeat-last-n N] [--seed S]
 *          [--ctx N] [--ram-budget B] [--io cached|direct] [--stats FILE.json]
 *          [--exact] [--chat] [--verify] [--verify-experts] [--io-threads N]
 *          [--resident-layers N]
 *   fm-run MODEL --tokens "ID ID ..." --logits-out FILE [--force]  (float32 [n][n_vocab])
 *   fm-run MODEL --tokenize TEXT                           (prints ids)
 *
 * Generated text goes to stdout as it is produced; a summary to stderr.
 * Exit: 0 ok, 2 bad usage or unreadable/invalid model, 1 other failure. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "formats/err.h"
#include "formats/file.h"
#include "formats/tokmeta.h"
#include "runtime/experts.h"
#include "runtime/forward.h"
#include "runtime/kernels.h"
#include "runtime/model.h"
#include "runtime/pool.h"
#include "runtime/sample.h"
#include "runtime/mapped.h"
#include "runtime/stream.h"
#include "runtime/tokenizer.h"
#define FM_CLI_PROG "fm-run"
#include "tools/cli.h"

enum { EXIT_USAGE = EXIT_INPUT };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fm-run MODEL -p PROMPT [-n N] [-t THREADS] [--temp X] [--top-k K] [--top-p P]\n"
            "              [--min-p M] [--repeat-penalty R] [--repeat-last-n N] [--seed S]\n"
            "              [--ctx N] [--ram-budget BYTES[K|M|G]] [--io auto|cached|direct|mmap]\n"
            "              [--stats FILE.json] [--exact] [--chat] [--verify]\n"
            "              [--verify-experts] [--io-threads N] [--resident-layers N]\n"
            "       fm-run MODEL --tokens \"ID ID ...\" --logits-out FILE [--force] [--exact] [-t T]\n"
            "       fm-run MODEL --tokenize TEXT\n"
            "MODEL: an fm bundle or a .gguf file. --temp 0 is greedy. --exact: float\n"
            "activations in quantized matmuls (default: llama.cpp's 8-bit activations).\n"
            "--ram-budget: memory for the whole run (default: from MemAvailable or the\n"
            "cgroup limit); dense layers that do not fit stream from the file like experts.\n"
            "--resident-layers N: keep only the first N layers' weights resident, stream the rest.\n"
            "--io: auto (default) maps the experts zero-copy when the whole model fits in\n"
            "memory, else streams them with pread (cached: through the page cache; direct:\n"
            "O_DIRECT); mmap always maps.\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return false;
    *out = v;
    return true;
}

static bool parse_bytes(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0)) return false;
    double mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024.0, end++;
    else if (*end == 'M' || *end == 'm') mul = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g') mul = 1024.0 * 1024 * 1024, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v * mul > 1.8e19) return false;
    *out = (uint64_t)(v * mul);
    return true;
}

static bool parse_f(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static uint64_t peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024;
}

/* The model's tokenizer: a bundle's member, or built from GGUF metadata. */
static fm_err load_tokenizer(const fm_model *m, fm_tok **out, fm_error *e)
{
    char *js = NULL;
    size_t len = 0;
    fm_err r;
    if (m->bundle) {
        r = fm_bundle_read_tokenizer(m->bundle, &js, &len, e);
    } else {
        json_t *tj = NULL;
        r = fm_tokmeta_from_gguf(m->gguf, &tj, e);
        if (!r) r = fm_tokmeta_dump(tj, &js, &len, e);
        json_decref(tj);
    }
    if (!r) r = fm_tok_load(out, js, len, e);
    free(js);
    return r;
}

static int parse_ids(const char *s, int32_t **ids, uint32_t *n)
{
    size_t cap = 64, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            free(v);
            return -1;
        }
        if (k == cap) {
            int32_t *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
            cap *= 2;
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    if (k == 0 || k > UINT32_MAX) {
        free(v);
        return -1;
    }
    *ids = v;
    *n = (uint32_t)k;
    return 0;
}

enum { IO_AUTO = 0, IO_CACHED, IO_DIRECT, IO_MMAP };

typedef struct opts {
    const char *model, *prompt, *tokens, *logits_out, *tokenize, *stats;
    uint64_t n_predict, threads, ctx, ram_budget, seed;
    bool have_seed, exact, chat, verify, io_direct, force;
    int io;               /* IO_AUTO, IO_CACHED, IO_DIRECT, IO_MMAP */
    uint64_t io_threads;  /* streaming expert source (runtime/stream.h) */
    uint64_t resident_layers; /* --resident-layers N (+1; 0 = from the budget) */
    bool verify_experts;
    fm_sampler_params sp;
} opts;

static int write_stats(const opts *o, const fm_model *m, uint32_t n_prompt, double t_prompt, uint32_t n_gen,
                       double t_gen, const fm_experts_stats *x_prompt, const fm_experts_stats *x_all,
                       const fm_experts_stats *l_prompt, const fm_experts_stats *l_all)
{
    json_t *j = json_object();
    uint64_t dec_bytes = x_all->bytes_read - x_prompt->bytes_read;
    uint64_t dec_acq = x_all->acquired - x_prompt->acquired, dec_hits = x_all->hits - x_prompt->hits;
    json_object_set_new(j, "model", json_string(o->model));
    json_object_set_new(j, "arch", json_string(m->config.arch->name));
    json_object_set_new(j, "threads", json_integer((json_int_t)o->threads));
    json_object_set_new(j, "kernel_mode", json_string(o->exact ? "exact" : "q8"));
    json_object_set_new(j, "prompt_tokens", json_integer(n_prompt));
    json_object_set_new(j, "prompt_seconds", json_real(t_prompt));
    json_object_set_new(j, "prompt_tok_s", json_real(t_prompt > 0 ? n_prompt / t_prompt : 0));
    json_object_set_new(j, "decode_tokens", json_integer(n_gen));
    json_object_set_new(j, "decode_seconds", json_real(t_gen));
    json_object_set_new(j, "decode_tok_s", json_real(t_gen > 0 ? n_gen / t_gen : 0));
    json_object_set_new(j, "dense_bytes", json_integer((json_int_t)m->dense_bytes));
    json_object_set_new(j, "expert_bytes_read", json_integer((json_int_t)x_all->bytes_read));
    json_object_set_new(j, "prompt_bytes_read_per_token",
                        json_real(n_prompt ? (double)x_prompt->bytes_read / n_prompt : 0));
    json_object_set_new(j, "decode_bytes_read_per_token", json_real(n_gen ? (double)dec_bytes / n_gen : 0));
    json_object_set_new(j, "expert_acquired", json_integer((json_int_t)x_all->acquired));
    json_object_set_new(j, "expert_cache_hit_rate",
                        json_real(x_all->acquired ? (double)x_all->hits / (double)x_all->acquired : 0));
    json_object_set_new(j, "decode_expert_cache_hit_rate", json_real(dec_acq ? (double)dec_hits / (double)dec_acq : 0));
    json_object_set_new(j, "expert_cache_bytes", json_integer((json_int_t)x_all->cache_bytes));
    json_object_set_new(j, "expert_read_seconds", json_real(x_all->read_seconds));
    json_object_set_new(j, "layers_total", json_integer(m->config.n_layer));
    json_object_set_new(j, "layers_resident", json_integer(m->n_resident_layers));
    json_object_set_new(j, "layer_bytes_read", json_integer((json_int_t)l_all->bytes_read));
    uint64_t streamed = 0;
    for (uint32_t i = m->n_resident_layers; i < m->config.n_layer; i++) streamed += m->layer_bytes[i];
    json_object_set_new(j, "layer_bytes_streamed", json_integer((json_int_t)streamed));
    json_object_set_new(j, "decode_layer_bytes_read_per_token",
                        json_real(n_gen ? (double)(l_all->bytes_read - l_prompt->bytes_read) / n_gen : 0));
    json_object_set_new(j, "peak_rss_bytes", json_integer((json_int_t)peak_rss_bytes()));
    int rc = json_dump_file(j, o->stats, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(j);
    if (rc) return fail(EXIT_FAIL, "%s: cannot write stats", o->stats);
    return 0;
}

static int run_logits(const opts *o, fm_model *m, fm_pool *pool)
{
    int32_t *ids;
    uint32_t n;
    if (parse_ids(o->tokens, &ids, &n)) return fail(EXIT_USAGE, "--tokens: expected space-separated ids");
    fm_error e = {0};
    const uint32_t V = m->config.n_vocab;
    fm_state *s = NULL;
    float *lg = NULL;
    int rc = 0;
    if ((uint64_t)n * V > (1ull << 34) / 4) {
        free(ids);
        return fail(EXIT_USAGE, "--tokens: %u positions x %u logits is too much", n, V);
    }
    lg = malloc((size_t)n * V * sizeof *lg);
    fm_err r = lg ? fm_state_new(&s, m, pool, n, 64, &e) : fm_error_set(&e, FM_E_NOMEM, "out of memory");
    if (!r) r = fm_forward(s, ids, n, lg, &e);
    if (r) {
        rc = fail(r == FM_E_RANGE ? EXIT_USAGE : EXIT_FAIL, "%s", e.msg);
    } else {
        fm_outfile of;
        r = fm_outfile_open(&of, o->logits_out, o->force, &e);
        /* little-endian float32, as the host stores them (x86) */
        if (!r) r = fm_outfile_write(&of, lg, (size_t)n * V * sizeof *lg, &e);
        if (!r) r = fm_outfile_commit(&of, &e);
        else fm_outfile_abort(&of);
        if (r) rc = fail(EXIT_FAIL, "%s", e.msg);
    }
    fm_state_free(s);
    free(lg);
    free(ids);
    return rc;
}

static int run_tokenize(const opts *o, const fm_tok *tok)
{
    fm_error e = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (fm_tok_encode(tok, o->tokenize, strlen(o->tokenize), true, true, &ids, &n, &e))
        return fail(EXIT_FAIL, "tokenize: %s", e.msg);
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    printf("\n");
    free(ids);
    return 0;
}

static int run_generate(const opts *o, fm_model *m, fm_pool *pool, const fm_tok *tok)
{
    fm_error e = {0};
    int rc = 0;
    char *text = NULL;
    size_t tlen = 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    fm_state *s = NULL;
    fm_sampler *smp = NULL;
    char *piece = NULL;
    fm_err r = FM_OK;
    if (o->chat) {
        fm_chat_msg msg = {"user", o->prompt};
        r = fm_chat_apply(fm_tok_chat_family(tok), &msg, 1, true, &text, &tlen, &e);
        if (r) return fail(EXIT_FAIL, "chat template: %s", e.msg);
    }
    const char *ptext = text ? text : o->prompt;
    r = fm_tok_encode(tok, ptext, strlen(ptext), true, true, &ids, &n_ids, &e);
    free(text);
    if (r) return fail(EXIT_FAIL, "tokenize: %s", e.msg);
    if (n_ids == 0) return fail(EXIT_USAGE, "empty prompt");
    uint64_t n_ctx = o->ctx ? o->ctx : n_ids + o->n_predict;
    if (n_ctx > m->config.n_ctx_train && !o->ctx) n_ctx = m->config.n_ctx_train;
    if (n_ctx < n_ids + 1 || n_ctx > UINT32_MAX) {
        free(ids);
        return fail(EXIT_USAGE, "prompt of %zu tokens does not fit a context of %llu", n_ids, (unsigned long long)n_ctx);
    }
    if ((r = fm_state_new(&s, m, pool, (uint32_t)n_ctx, 64, &e)) ||
        (r = fm_sampler_new(&smp, &o->sp, m->config.n_vocab, &e))) {
        rc = fail(EXIT_FAIL, "%s", e.msg);
        goto out;
    }
    for (size_t i = 0; i < n_ids; i++) fm_sampler_accept(smp, ids[i]);
    size_t cap = fm_tok_max_piece(tok) + 8;
    piece = malloc(cap);
    fm_experts_stats x0 = {0}, x1 = {0}, x2 = {0}, l1 = {0}, l2 = {0};
    if (m->experts) fm_experts_get_stats(m->experts, &x0);
    double t0 = now_s();
    if ((r = fm_forward(s, ids, (uint32_t)n_ids, NULL, &e))) {
        rc = fail(EXIT_FAIL, "prompt: %s", e.msg);
        goto out;
    }
    double t1 = now_s();
    if (m->experts) fm_experts_get_stats(m->experts, &x1);
    if (m->layers) fm_experts_get_stats(m->layers, &l1);
    fm_tok_stream ts;
    fm_tok_stream_init(&ts, 0);
    uint32_t n_gen = 0;
    double t_gen0 = now_s();
    for (uint64_t i = 0; i < o->n_predict; i++) {
        int32_t t = fm_sampler_sample(smp, s->logits);
        if (fm_tok_is_eog(tok, t)) break;
        fm_sampler_accept(smp, t);
        size_t k = 0;
        if (fm_tok_stream_push(tok, &ts, t, piece, cap, &k, &e) == FM_OK && k) {
            fwrite(piece, 1, k, stdout);
            fflush(stdout);
        }
        n_gen++;
        if (s->n_past >= s->n_ctx) break;
        if ((r = fm_forward(s, &t, 1, NULL, &e))) {
            rc = fail(EXIT_FAIL, "decode: %s", e.msg);
            goto out;
        }
    }
    char tail[8];
    size_t k = fm_tok_stream_flush(&ts, tail);
    if (k) fwrite(tail, 1, k, stdout);
    printf("\n");
    fflush(stdout);
    double t2 = now_s();
    if (m->experts) fm_experts_get_stats(m->experts, &x2);
    if (m->layers) fm_experts_get_stats(m->layers, &l2);
    x1.bytes_read -= x0.bytes_read;
    x1.acquired -= x0.acquired;
    x1.hits -= x0.hits;
    double tp = t1 - t0, tg = t2 - t_gen0;
    fprintf(stderr, "fm-run: prompt %zu tokens in %.3f s (%.2f tok/s), generated %u tokens in %.3f s (%.2f tok/s)",
            n_ids, tp, tp > 0 ? n_ids / tp : 0, n_gen, tg, tg > 0 ? n_gen / tg : 0);
    if (m->experts)
        fprintf(stderr, ", expert cache hit rate %.3f, %.1f MiB read per decoded token",
                x2.acquired ? (double)x2.hits / (double)x2.acquired : 0,
                n_gen ? (double)(x2.bytes_read - x1.bytes_read - x0.bytes_read) / n_gen / 1048576.0 : 0);
    if (m->layers)
        fprintf(stderr, ", layers %u/%u resident, %.1f MiB of layers read per decoded token", m->n_resident_layers,
                m->config.n_layer, n_gen ? (double)(l2.bytes_read - l1.bytes_read) / n_gen / 1048576.0 : 0);
    fprintf(stderr, ", peak RSS %.1f MiB\n", (double)peak_rss_bytes() / 1048576.0);
    if (o->stats) rc = write_stats(o, m, (uint32_t)n_ids, tp, n_gen, tg, &x1, &x2, &l1, &l2);
out:
    free(piece);
    free(ids);
    fm_sampler_free(smp);
    fm_state_free(s);
    return rc;
}

/* The KV cache fm-run will allocate (f32 keys and values, every layer). */
static uint64_t kv_bytes(const opts *o, const fm_model *m)
{
    const fm_config *c = &m->config;
    uint64_t ctx = o->ctx ? o->ctx : (o->tokens ? 4096 : o->n_predict + 512);
    if (!o->ctx && ctx > c->n_ctx_train) ctx = c->n_ctx_train;
    return (uint64_t)c->n_layer * ctx * ((uint64_t)c->n_head_kv * (c->head_dim_k + c->head_dim_v)) * 4;
}

#define SCRATCH_BYTES (64ull << 20)
#define LAYER_SLOTS 4 /* streamed layers: the current one, FM's 2 read ahead, one spare */

/* Bytes a stream slab of n slots for the layer catalog takes (each piece
 * rounded to FM_STREAM_DIO_ALIGN on both ends, as the stream source lays
 * slots out). */
static uint64_t layer_slot_bytes(const fm_model *m)
{
    return m->layer_bytes_max + (uint64_t)FM_EXPERT_MAX_MATS * 2 * FM_STREAM_DIO_ALIGN;
}

/* Stream-source options both fm-run's sources share (experts, layers). */
static void stream_opts_common(const opts *o, fm_experts_stream_opts *so)
{
    fm_experts_stream_opts_init(so);
    so->n_threads = (uint32_t)o->io_threads;
    so->n_pinned_max = 1;
    so->io = o->io_direct ? FM_STREAM_IO_DIRECT : FM_STREAM_IO_CACHED;
    so->verify = o->verify || o->verify_experts;
}

/* The memory plan. --ram-budget B is the whole process: the KV cache, 64
 * MiB of scratch, the always-resident dense tensors (embeddings, output,
 * norms), then the layers' weight matrices, then the expert cache. Without
 * it, B = 3/4 of what a memory cgroup limit leaves (v1 or v2, ancestors
 * included), else MemAvailable (dense models) or half of it (MoE: the page
 * cache keeps the rest of the experts warm). When the layers' matrices do
 * not fit, the first layers that do stay resident and the rest stream
 * (LAYER_SLOTS buffers); a MoE model keeps a quarter of B (at least 3
 * experts) for its expert cache. Loads the dense tensors; sets *expert_budget. */
static int plan_memory(const opts *o, fm_model *m, uint64_t *expert_budget, bool *limited, bool *experts_fit)
{
    const fm_config *c = &m->config;
    const bool moe = m->catalog != NULL;
    uint64_t kv = kv_bytes(o, m), B, all;
    *limited = false;
    if (o->ram_budget) {
        B = all = o->ram_budget;
    } else {
        uint64_t avail = 0;
        if (!fm_stream_mem_available(&avail, limited)) avail = 4ull << 30;
        B = *limited ? avail / 4 * 3 : (moe ? avail / 2 : avail);
        all = *limited ? B : avail / 10 * 9;
    }
    uint64_t fixed = kv + SCRATCH_BYTES + m->fixed_bytes;
    uint64_t expert_min = moe ? m->catalog->max_blob_size * 3 : 0, expert_want = expert_min;
    if (moe && B / 4 > expert_want) expert_want = B / 4;
    uint32_t R = c->n_layer;
    const uint64_t slab = LAYER_SLOTS * layer_slot_bytes(m);
    if (fixed + m->layer_bytes_total + expert_want > B) { /* the layers do not all fit: stream some */
        if (fixed + slab + expert_min > B)
            return fail(EXIT_USAGE,
                        "--ram-budget %llu B is below the minimum %llu B (KV cache, scratch, resident tensors, %d "
                        "layer buffers%s)",
                        (unsigned long long)B, (unsigned long long)(fixed + slab + expert_min), LAYER_SLOTS,
                        moe ? ", 3 experts" : "");
        uint64_t room = B - fixed - slab - (fixed + slab + expert_want <= B ? expert_want : expert_min);
        R = fm_model_resident_layers_for(m, room);
    }
    if (o->resident_layers && o->resident_layers - 1 < R) R = (uint32_t)(o->resident_layers - 1); /* asked for fewer */
    uint64_t resident = 0;
    for (uint32_t i = 0; i < R; i++) resident += m->layer_bytes[i];
    const uint64_t layer_mem = R < c->n_layer ? resident + slab : resident;
    fm_error e = {0};
    if (fm_model_load_dense(m, R, &e)) return fail(EXIT_FAIL, "%s", e.msg);
    *expert_budget = B > fixed + layer_mem ? B - fixed - layer_mem : 1; /* 1 -> the minimum: 2 slots */
    *experts_fit = false;
    if (moe && R == c->n_layer) { /* the whole model fits what we may use: the page cache can hold it */
        uint64_t total = 0;
        for (uint32_t i = 0; i < c->n_layer; i++)
            total += m->catalog->layers[i].present ? m->catalog->layers[i].blob_size * m->catalog->layers[i].n_expert : 0;
        *experts_fit = fixed + layer_mem + total <= all;
    }
    if (!m->layers) return 0;
    fm_experts_stream_opts so;
    stream_opts_common(o, &so);
    so.budget_bytes = slab;
    so.evict = FM_STREAM_EVICT_LRU;
    so.chunk_bytes = 1u << 20; /* a layer's matrices are large: many reads in flight */
    fm_experts *x = NULL;
    if (fm_experts_open_stream(m->layer_catalog, &so, &x, &e)) return fail(EXIT_FAIL, "%s", e.msg);
    fm_experts_free(m->layers);
    m->layers = x;
    fm_experts_stream_info in;
    fm_experts_stream_info_get(x, &in);
    fprintf(stderr,
            "fm-run: layers: %u of %u resident (%.1f MiB), %u stream (%.1f MiB per token), %llu buffers of %.2f MiB, "
            "%u I/O threads, io %s\n",
            R, c->n_layer, (double)resident / 1048576.0, c->n_layer - R,
            (double)(m->layer_bytes_total - resident) / 1048576.0,
            (unsigned long long)in.n_slots, (double)in.slot_bytes / 1048576.0, in.n_threads,
            in.io == FM_STREAM_IO_DIRECT ? "direct" : "cached");
    return 0;
}

/* Replaces the model's expert source: the mapped one (runtime/mapped.h;
 * --io mmap, or --io auto when the whole model fits the memory fm-run may
 * use: no copies, the page cache holds the experts), else the streaming one
 * (runtime/stream.h) over `budget` bytes of expert cache. */
static int use_experts(const opts *o, fm_model *m, uint64_t budget, bool limited, bool fit)
{
    const fm_config *c = &m->config;
    fm_error e = {0};
    fm_experts *x = NULL;
    if (o->io == IO_MMAP || (o->io == IO_AUTO && fit)) {
        fm_experts_mapped_opts mo = {1, o->verify || o->verify_experts, true};
        if (fm_experts_open_mapped(m->catalog, &mo, &x, &e)) return fail(EXIT_FAIL, "%s", e.msg);
        fm_experts_free(m->experts);
        m->experts = x;
        fprintf(stderr, "fm-run: experts: mapped (zero-copy, the page cache holds them)%s\n",
                o->io == IO_AUTO ? ": the model fits in memory" : "");
        return 0;
    }
    fm_experts_stream_opts so;
    stream_opts_common(o, &so);
    so.budget_bytes = budget;
    so.n_expert_used_hint = c->n_expert_used;
    const char *ev = getenv("FM_EVICT"); /* measurement knob: lru | lfru */
    if (ev && !strcmp(ev, "lru")) so.evict = FM_STREAM_EVICT_LRU;
    so.fadvise = getenv("FM_FADVISE") && !strcmp(getenv("FM_FADVISE"), "1"); /* cached: drop pages read */
    /* 256 KiB reads: a layer's few missing experts become many requests in
     * flight (8-layer bench model under 1 GiB, --io direct: 8.4 tok/s vs 7.3-7.8
     * reading whole experts); FM_IO_CHUNK=bytes (0 = whole pieces) to measure */
    so.chunk_bytes = 256u << 10;
    if (getenv("FM_IO_CHUNK")) fm_stream_parse_bytes(getenv("FM_IO_CHUNK"), &so.chunk_bytes);
    if (fm_experts_open_stream(m->catalog, &so, &x, &e)) return fail(EXIT_FAIL, "%s", e.msg);
    fm_experts_free(m->experts);
    m->experts = x;
    fm_experts_stream_info in;
    if (fm_experts_stream_info_get(x, &in))
        fprintf(stderr, "fm-run: experts: stream, %llu slots of %.2f MiB = %.1f MiB%s, %u I/O threads, io %s, %s\n",
                (unsigned long long)in.n_slots, (double)in.slot_bytes / 1048576.0,
                (double)in.budget_bytes / 1048576.0, o->ram_budget ? "" : (limited ? " (cgroup limit)" : " (MemAvailable)"),
                in.n_threads, in.io == FM_STREAM_IO_DIRECT ? "direct" : "cached",
                in.evict == FM_STREAM_EVICT_LRU ? "lru" : "lfru");
    return 0;
}

int main(int argc, char **argv)
{
    opts o = {0};
    o.n_predict = 128;
    o.sp = fm_sampler_default_params();
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = nproc > 0 ? (uint64_t)nproc : 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                              \
    do {                                                                    \
        if (!v) return fail(EXIT_USAGE, "%s needs a value", a);             \
        i++;                                                                \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            NEED();
            o.prompt = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            NEED();
            if (!parse_u64(v, &o.n_predict)) return fail(EXIT_USAGE, "-n: bad number %s", v);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED();
            if (!parse_u64(v, &o.threads) || o.threads < 1 || o.threads > FM_POOL_MAX_THREADS)
                return fail(EXIT_USAGE, "-t: expected 1..%d", FM_POOL_MAX_THREADS);
        } else if (!strcmp(a, "--temp")) {
            NEED();
            if (!parse_f(v, &o.sp.temp)) return fail(EXIT_USAGE, "--temp: bad number %s", v);
        } else if (!strcmp(a, "--top-k")) {
            NEED();
            uint64_t k;
            if (!parse_u64(v, &k) || k > INT32_MAX) return fail(EXIT_USAGE, "--top-k: bad number %s", v);
            o.sp.top_k = (int32_t)k;
        } else if (!strcmp(a, "--top-p")) {
            NEED();
            if (!parse_f(v, &o.sp.top_p)) return fail(EXIT_USAGE, "--top-p: bad number %s", v);
        } else if (!strcmp(a, "--min-p")) {
            NEED();
            if (!parse_f(v, &o.sp.min_p)) return fail(EXIT_USAGE, "--min-p: bad number %s", v);
        } else if (!strcmp(a, "--repeat-penalty")) {
            NEED();
            if (!parse_f(v, &o.sp.repeat_penalty) || !(o.sp.repeat_penalty > 0))
                return fail(EXIT_USAGE, "--repeat-penalty: expected a number > 0");
        } else if (!strcmp(a, "--repeat-last-n")) {
            NEED();
            uint64_t k;
            if (!parse_u64(v, &k) || k > 1u << 20) return fail(EXIT_USAGE, "--repeat-last-n: bad number %s", v);
            o.sp.repeat_last_n = (int32_t)k;
        } else if (!strcmp(a, "--seed")) {
            NEED();
            if (!parse_u64(v, &o.seed)) return fail(EXIT_USAGE, "--seed: bad number %s", v);
            o.have_seed = true;
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            NEED();
            if (!parse_u64(v, &o.ctx) || o.ctx == 0 || o.ctx > (1u << 24)) return fail(EXIT_USAGE, "--ctx: bad number %s", v);
        } else if (!strcmp(a, "--ram-budget")) {
            NEED();
            if (!parse_bytes(v, &o.ram_budget)) return fail(EXIT_USAGE, "--ram-budget: bad size %s", v);
        } else if (!strcmp(a, "--io")) {
            NEED();
            if (!strcmp(v, "direct")) o.io = IO_DIRECT;
            else if (!strcmp(v, "cached")) o.io = IO_CACHED;
            else if (!strcmp(v, "mmap")) o.io = IO_MMAP;
            else if (!strcmp(v, "auto")) o.io = IO_AUTO;
            else return fail(EXIT_USAGE, "--io: expected auto, cached, direct or mmap");
            o.io_direct = o.io == IO_DIRECT;
        } else if (!strcmp(a, "--stats")) {
            NEED();
            o.stats = v;
        } else if (!strcmp(a, "--tokens")) {
            NEED();
            o.tokens = v;
        } else if (!strcmp(a, "--logits-out")) {
            NEED();
            o.logits_out = v;
        } else if (!strcmp(a, "--tokenize")) {
            NEED();
            o.tokenize = v;
        } else if (!strcmp(a, "--exact")) {
            o.exact = true;
        } else if (!strcmp(a, "--chat")) {
            o.chat = true;
        } else if (!strcmp(a, "--force")) {
            o.force = true;
        } else if (!strcmp(a, "--verify")) {
            o.verify = true;
        } else if (!strcmp(a, "--verify-experts")) {
            o.verify_experts = true;
        } else if (!strcmp(a, "--resident-layers")) {
            NEED();
            if (!parse_u64(v, &o.resident_layers) || o.resident_layers > UINT32_MAX)
                return fail(EXIT_USAGE, "--resident-layers: bad number %s", v);
            o.resident_layers++;
        } else if (!strcmp(a, "--io-threads")) {
            NEED();
            if (!parse_u64(v, &o.io_threads) || o.io_threads < 1 || o.io_threads > FM_STREAM_MAX_THREADS)
                return fail(EXIT_USAGE, "--io-threads: expected 1..%d", FM_STREAM_MAX_THREADS);
        } else if (a[0] == '-' && a[1]) {
            usage(stderr);
            return fail(EXIT_USAGE, "unknown option %s", a);
        } else if (!o.model) {
            o.model = a;
        } else {
            return fail(EXIT_USAGE, "unexpected argument %s", a);
        }
#undef NEED
    }
    if (!o.model) {
        usage(stderr);
        return EXIT_USAGE;
    }
    int modes = (o.prompt != NULL) + (o.tokens != NULL) + (o.tokenize != NULL);
    if (modes != 1) return fail(EXIT_USAGE, "give exactly one of -p, --tokens, --tokenize");
    if (!!o.tokens != !!o.logits_out) return fail(EXIT_USAGE, "--tokens and --logits-out go together");
    if (!o.have_seed) o.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    o.sp.seed = o.seed;
    fm_kernel_set_mode(o.exact ? FM_KERNEL_EXACT : FM_KERNEL_Q8);

    fm_error e = {0};
    fm_model_opts mo = {0};
    mo.verify = o.verify;
    mo.io_direct = o.io_direct;
    mo.defer_dense = true;
    fm_model *m = NULL;
    int rc0;
    fm_err r = fm_model_open(&m, o.model, &mo, &e);
    if (r) return fail(r == FM_E_NOMEM ? EXIT_FAIL : EXIT_USAGE, "%s", e.msg); /* unreadable or invalid: 2 */
    uint64_t expert_budget = 0;
    bool limited = false, fit = false;
    if ((rc0 = plan_memory(&o, m, &expert_budget, &limited, &fit)) != 0 ||
        (m->catalog && (rc0 = use_experts(&o, m, expert_budget, limited, fit)) != 0)) {
        fm_model_close(m);
        return rc0;
    }
    fm_pool *pool = NULL;
    if ((r = fm_pool_new(&pool, (int)o.threads, &e))) {
        fm_model_close(m);
        return fail(EXIT_FAIL, "%s", e.msg);
    }
    int rc;
    if (o.tokens) {
        rc = run_logits(&o, m, pool);
    } else {
        fm_tok *tok = NULL;
        if ((r = load_tokenizer(m, &tok, &e))) {
            rc = fail(EXIT_FAIL, "tokenizer: %s", e.msg);
        } else {
            rc = o.tokenize ? run_tokenize(&o, tok) : run_generate(&o, m, pool, tok);
            fm_tok_free(tok);
        }
    }
    fm_pool_free(pool);
    fm_model_close(m);
    return rc;
}
