/* Bundle weights under canonical names (see bundle_view.h). */
#include "formats/bundle_view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/arch.h"
#include "formats/quant.h"
#include "formats/util.h"

#define VIEW_CHUNK (1u << 20) /* values dequantized per sink call */

fm_err fm_bundle_views(const fm_bundle *b, fm_bundle_view **out, size_t *n, fm_error *e)
{
    *out = NULL;
    *n = 0;
    uint64_t nt = fm_bundle_n_tensors(b);
    uint32_t nl = fm_bundle_n_expert_layers(b);
    uint64_t cap = nt + (uint64_t)nl * FM_BUNDLE_MAX_PARTS;
    if (cap > SIZE_MAX / sizeof(fm_bundle_view)) return fm_error_set(e, FM_E_RANGE, "too many tensors");
    fm_bundle_view *v = calloc(cap ? (size_t)cap : 1, sizeof *v);
    if (!v) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    size_t k = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const fm_bundle_tensor *t = fm_bundle_tensor_at(b, i);
        fm_bundle_view *x = &v[k++];
        snprintf(x->name, sizeof x->name, "%s", t->name);
        x->qtype = t->qtype;
        x->n_dims = t->n_dims;
        for (int d = 0; d < 4; d++) x->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) x->ne[d] = t->shape[t->n_dims - 1 - d];
        x->tensor = t;
    }
    const fm_arch *a = fm_arch_find(fm_bundle_arch_name(b));
    for (uint32_t li = 0; li < nl; li++) {
        const fm_bundle_expert_layer *l = fm_bundle_expert_layer_at(b, li);
        for (uint32_t p = 0; p < l->n_parts; p++) {
            const fm_bundle_part *pt = &l->parts[p];
            fm_bundle_view *x = &v[k++];
            const fm_arch_tensor *ent = NULL;
            for (size_t j = 0; a && j < a->n_tensors && !ent; j++)
                if ((a->tensors[j].flags & FM_T_EXPERT) && a->tensors[j].part &&
                    strcmp(a->tensors[j].part, pt->name) == 0)
                    ent = &a->tensors[j];
            if (!ent || !fm_arch_tensor_name(ent, l->layer, x->name, sizeof x->name))
                snprintf(x->name, sizeof x->name, "blk.%u.exps.%s", l->layer, pt->name);
            x->qtype = pt->qtype;
            x->n_dims = 3;
            x->ne[0] = pt->n_dims >= 1 ? pt->shape[pt->n_dims - 1] : 1;
            x->ne[1] = pt->n_elems / (x->ne[0] ? x->ne[0] : 1);
            x->ne[2] = l->n_expert;
            x->ne[3] = 1;
            x->xl = l;
            x->part = p;
        }
    }
    *out = v;
    *n = k;
    return FM_OK;
}

static fm_err dequant_sink(uint32_t qtype, const uint8_t *src, uint64_t bytes, uint64_t n_elems, float *buf,
                           fm_f32_sink sink, void *ctx, const char *what, fm_error *e)
{
    const fm_qtype_traits *tr = fm_qtype_get(qtype);
    if (!tr || !tr->to_float_ref)
        return fm_error_set(e, FM_E_UNSUPPORTED, "%s: fm cannot dequantize %s", what, tr && tr->name ? tr->name : "?");
    uint64_t per = VIEW_CHUNK / tr->block_size * tr->block_size;
    if (per == 0) per = tr->block_size;
    for (uint64_t done = 0; done < n_elems; done += per) {
        uint64_t k = n_elems - done < per ? n_elems - done : per;
        uint64_t off = done / tr->block_size * tr->type_size;
        fm_err rc = fm_dequantize(qtype, src + off, (size_t)(bytes - off), buf, k, e);
        if (rc) return fm_error_prefix(e, "%s", what);
        if ((rc = sink(ctx, buf, (size_t)k, e))) return rc;
    }
    return FM_OK;
}

fm_err fm_bundle_view_f32(const fm_bundle *b, const fm_bundle_view *v, int64_t expert, fm_f32_sink sink, void *ctx,
                          fm_error *e)
{
    float *buf = malloc(VIEW_CHUNK * sizeof(float));
    if (!buf) return fm_error_set(e, FM_E_NOMEM, "out of memory");
    fm_err rc = FM_OK;
    if (v->tensor) {
        const fm_bundle_tensor *t = v->tensor;
        if (expert >= 0) rc = fm_error_set(e, FM_E_ARG, "%s is not an expert tensor", v->name);
        uint8_t *raw = rc ? NULL : malloc(t->size ? (size_t)t->size : 1);
        if (!rc && !raw) rc = fm_error_set(e, FM_E_NOMEM, "%s: out of memory", t->name);
        if (!rc) rc = fm_bundle_read_tensor(b, t, raw, true, e);
        if (!rc) rc = dequant_sink(t->qtype, raw, t->size, t->n_elems, buf, sink, ctx, t->name, e);
        free(raw);
    } else {
        const fm_bundle_expert_layer *l = v->xl;
        const fm_bundle_part *pt = &l->parts[v->part];
        uint8_t *blob = malloc(l->blob_size ? (size_t)l->blob_size : 1);
        if (!blob) rc = fm_error_set(e, FM_E_NOMEM, "out of memory");
        if (!rc && expert >= (int64_t)l->n_expert)
            rc = fm_error_set(e, FM_E_ARG, "%s: expert %lld, the layer has %u", v->name, (long long)expert, l->n_expert);
        uint32_t x0 = expert >= 0 ? (uint32_t)expert : 0, x1 = expert >= 0 ? (uint32_t)expert + 1 : l->n_expert;
        for (uint32_t x = x0; x < x1 && !rc; x++) {
            char what[256];
            snprintf(what, sizeof what, "%s expert %u", v->name, x);
            rc = fm_bundle_read_expert(b, l, x, blob, true, e);
            if (!rc) rc = dequant_sink(pt->qtype, blob + pt->offset, pt->size, pt->n_elems, buf, sink, ctx, what, e);
        }
        free(blob);
    }
    free(buf);
    return rc;
}
