/* Conversion plan (see plan.h). */
#include "convert/plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/affine.h"
#include "formats/quant.h"

bool fm_plan_parse_dense(const char *s, fm_dense_mode *out)
{
    if (!strcmp(s, "keep")) *out = FM_DENSE_KEEP;
    else if (!strcmp(s, "q8")) *out = FM_DENSE_Q8;
    else if (!strcmp(s, "f16")) *out = FM_DENSE_F16;
    else return false;
    return true;
}

bool fm_plan_parse_experts(const char *s, fm_experts_mode *out)
{
    if (!strcmp(s, "keep")) *out = FM_EXPERTS_KEEP;
    else if (!strcmp(s, "q8")) *out = FM_EXPERTS_Q8;
    else if (!strcmp(s, "q4")) *out = FM_EXPERTS_Q4;
    else if (!strcmp(s, "q3")) *out = FM_EXPERTS_Q3;
    else if (!strcmp(s, "q2")) *out = FM_EXPERTS_Q2;
    else return false;
    return true;
}

const char *fm_plan_dense_name(fm_dense_mode m)
{
    static const char *const n[] = {"keep", "q8", "f16"};
    return (unsigned)m < 3 ? n[m] : "?";
}

const char *fm_plan_experts_name(fm_experts_mode m)
{
    static const char *const n[] = {"keep", "q8", "q4", "q3", "q2"};
    return (unsigned)m < 5 ? n[m] : "?";
}

bool fm_qtype_is_float(uint32_t q) { return q == FM_Q_F32 || q == FM_Q_F16 || q == FM_Q_BF16; }

static const char *qname(uint32_t q)
{
    const fm_qtype_traits *t = fm_qtype_get(q);
    return t && t->name ? t->name : "?";
}

fm_err fm_plan_qtype(const fm_plan_opts *o, const char *what, uint32_t src, bool expert, bool no_quant,
                     uint32_t n_dims, uint64_t row_len, uint32_t *out, fm_error *e)
{
    *out = src;
    if (no_quant || n_dims <= 1) {
        if (o->hf_widen && fm_qtype_is_float(src)) *out = FM_Q_F32;
        return FM_OK;
    }
    uint32_t want = src;
    if (expert) {
        switch (o->experts) {
        case FM_EXPERTS_KEEP: return FM_OK;
        case FM_EXPERTS_Q8: want = FM_Q_Q8_0; break;
        case FM_EXPERTS_Q4: want = (uint32_t)fm_affine_qtype(4, o->group); break;
        case FM_EXPERTS_Q3: want = (uint32_t)fm_affine_qtype(3, o->group); break;
        case FM_EXPERTS_Q2: want = (uint32_t)fm_affine_qtype(2, o->group); break;
        }
        if ((int)want < 0) return fm_error_set(e, FM_E_ARG, "group size %u (32, 64 or 128)", o->group);
    } else {
        if (!fm_qtype_is_float(src)) return FM_OK; /* no double quantization */
        switch (o->dense) {
        case FM_DENSE_KEEP: return FM_OK;
        case FM_DENSE_Q8:
            if (row_len % 32) return FM_OK; /* Q8_0 cannot hold such rows: keep */
            want = FM_Q_Q8_0;
            break;
        case FM_DENSE_F16:
            if (src == FM_Q_F16) return FM_OK;
            want = FM_Q_F16;
            break;
        }
    }
    if (want == src) return FM_OK;
    const fm_qtype_traits *tr = fm_qtype_get(want);
    if (!tr || row_len % tr->block_size)
        return fm_error_set(e, FM_E_UNSUPPORTED, "%s: row length %llu is not a multiple of the %s block size %u",
                            what, (unsigned long long)row_len, qname(want), tr ? tr->block_size : 0);
    *out = want;
    return FM_OK;
}

void fm_plan_err_add(fm_plan_err *acc, const fm_plan_err *x)
{
    fm_quant_stats_add(&acc->st, &x->st);
    if (x->has_minmax) {
        fm_quant_stats_add(&acc->st_minmax, &x->st_minmax);
        acc->has_minmax = true;
    }
}

fm_err fm_plan_convert(uint32_t dst, const float *x, size_t rows, size_t cols, void *out, void *scratch,
                       fm_plan_err *err, fm_error *e)
{
    fm_plan_err z;
    memset(&z, 0, sizeof z);
    size_t n = rows * cols;
    fm_err rc;
    unsigned bits, g;
    if (fm_affine_params(dst, &bits, &g)) {
        if ((rc = fm_quant_affine(dst, x, rows, cols, NULL, FM_QUANT_SEARCH, out, &z.st, e))) return rc;
        uint64_t bytes = 0;
        if ((rc = fm_qtype_nbytes(dst, n, &bytes, e))) return rc;
        void *tmp = scratch ? scratch : malloc((size_t)bytes + 1);
        if (!tmp) return fm_error_set(e, FM_E_NOMEM, "out of memory");
        rc = fm_quant_affine(dst, x, rows, cols, NULL, FM_QUANT_MINMAX, tmp, &z.st_minmax, e);
        if (!scratch) free(tmp);
        if (rc) return rc;
        z.has_minmax = true;
    } else if (dst == FM_Q_Q8_0) {
        if ((rc = fm_quant_q8_0(x, n, out, &z.st, e))) return rc;
    } else if (dst == FM_Q_F16) {
        if ((rc = fm_quant_f16(x, n, out, &z.st, e))) return rc;
    } else if (dst == FM_Q_BF16) {
        if ((rc = fm_quant_bf16(x, n, out, &z.st, e))) return rc;
    } else if (dst == FM_Q_F32) {
        memcpy(out, x, n * sizeof(float));
        z.st.n = n;
        for (size_t i = 0; i < n; i++) z.st.sum_x2 += (double)x[i] * (double)x[i];
    } else {
        return fm_error_set(e, FM_E_UNSUPPORTED, "fm cannot quantize to %s", qname(dst));
    }
    if (err) fm_plan_err_add(err, &z);
    return FM_OK;
}

static double mse(const fm_quant_stats *s) { return s->n ? s->sse / (double)s->n : 0.0; }

json_t *fm_plan_err_json(const fm_plan_err *err, uint32_t dst, uint32_t src)
{
    unsigned bits, g;
    bool aff = fm_affine_params(dst, &bits, &g);
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "method", json_string(aff ? "search" : dst == FM_Q_Q8_0 ? "q8_0" : "round"));
    json_object_set_new(o, "scheme", json_string(qname(dst)));
    json_object_set_new(o, "source_qtype", json_string(qname(src)));
    json_object_set_new(o, "n", json_integer((json_int_t)err->st.n));
    json_object_set_new(o, "mse", json_real(mse(&err->st)));
    json_object_set_new(o, "rmse", json_real(fm_quant_stats_rmse(&err->st)));
    json_object_set_new(o, "rel", json_real(fm_quant_stats_rel(&err->st)));
    json_object_set_new(o, "max_abs", json_real(err->st.max_abs));
    if (err->has_minmax) {
        json_object_set_new(o, "mse_minmax", json_real(mse(&err->st_minmax)));
        json_object_set_new(o, "rmse_minmax", json_real(fm_quant_stats_rmse(&err->st_minmax)));
        json_object_set_new(o, "max_abs_minmax", json_real(err->st_minmax.max_abs));
    }
    return o;
}
