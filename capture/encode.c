/* Change event encoding (see encode.h). */
#include "encode.h"

#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cdc/avro_bin.h"

#ifndef CDC_VERSION
#define CDC_VERSION "dev"
#endif

void encoder_init(encoder *e, const char *prefix, const char *db)
{
    e->db = db;
    cdc_buf_init(&e->source_head);
    cdc_avro_put_cstring(&e->source_head, CDC_VERSION);
    cdc_avro_put_cstring(&e->source_head, "postgresql");
    cdc_avro_put_cstring(&e->source_head, prefix);
    cdc_buf_init(&e->key);
    cdc_buf_init(&e->value);
    e->toast_idx = NULL;
    e->toast_cap = 0;
}

void encoder_free(encoder *e)
{
    cdc_buf_free(&e->source_head);
    cdc_buf_free(&e->key);
    cdc_buf_free(&e->value);
    free(e->toast_idx);
    e->toast_idx = NULL;
    e->toast_cap = 0;
}

static int encode_value(cdc_buf *b, const rel_col *c, const pgo_value *v, char *errstr,
                        size_t errstr_size)
{
    char err[256];
    if (v->kind == 'b') {
        /* A binary COPY's value (a bootstrap of a table whose every column has a binary form). */
        if (c->bin == CDC_BIN_NONE) {
            snprintf(errstr, errstr_size, "column %s: binary value where text was requested",
                     c->name);
            return -1;
        }
        if (cdc_pgtype_encode_binary(b, &c->type, c->bin, (const uint8_t *)v->data, v->len, err,
                                     sizeof err) != 0) {
            snprintf(errstr, errstr_size, "column %s: %s", c->name, err);
            return -1;
        }
        return 0;
    }
    if (cdc_pgtype_encode(b, &c->type, v->data, v->len, err, sizeof err) != 0) {
        snprintf(errstr, errstr_size, "column %s: %s", c->name, err);
        return -1;
    }
    return 0;
}

int encode_unknown_label(const relation *r, const pgo_tuple *t)
{
    if (!t)
        return -1;
    for (int i = 0; i < r->ncols && i < t->ncols; i++) {
        const rel_col *c = &r->cols[i];
        const pgo_value *v = &t->values[i];
        if (c->nlabels == 0 || v->kind != 't')
            continue;
        bool known = false;
        for (int l = 0; l < c->nlabels && !known; l++)
            known = strlen(c->labels[l]) == v->len && memcmp(c->labels[l], v->data, v->len) == 0;
        if (!known)
            return i;
    }
    return -1;
}

int encode_check_tuple(const relation *r, const pgo_tuple *t, char *errstr, size_t errstr_size)
{
    if (t && t->ncols != r->ncols) {
        snprintf(errstr, errstr_size,
                 "tuple of %s.%s has %u columns but its Relation message had %d", r->nspname,
                 r->relname, t->ncols, r->ncols);
        return -1;
    }
    return 0;
}

/* union{null, Value}; collects unchanged-TOAST columns when `toast` is set. */
static int encode_row(encoder *e, cdc_buf *b, const relation *r, const pgo_tuple *t, int *ntoast,
                      char *errstr, size_t errstr_size)
{
    if (!t) {
        cdc_avro_put_long(b, 0);
        return 0;
    }
    cdc_avro_put_long(b, 1);
    for (int i = 0; i < r->ncols; i++) {
        const pgo_value *v = &t->values[i];
        if (v->kind == 'n' || v->kind == 'u') {
            cdc_avro_put_long(b, 0);
            if (v->kind == 'u' && ntoast) {
                if (*ntoast >= e->toast_cap) {
                    e->toast_cap = e->toast_cap ? e->toast_cap * 2 : 8;
                    e->toast_idx = cdc_xrealloc(e->toast_idx, (size_t)e->toast_cap * sizeof(int));
                }
                e->toast_idx[(*ntoast)++] = i;
            }
            continue;
        }
        cdc_avro_put_long(b, 1);
        if (encode_value(b, &r->cols[i], v, errstr, errstr_size) != 0)
            return -1;
    }
    return 0;
}

int encode_key(encoder *e, const relation *r, const pgo_tuple *t, char *errstr, size_t errstr_size)
{
    cdc_buf *b = &e->key;
    cdc_buf_reset(b);
    cdc_avro_put_so_header(b, r->key_fp);
    for (int k = 0; k < r->nkey; k++) {
        int i = r->key_idx[k];
        const pgo_value *v = &t->values[i];
        if (v->kind != 't' && v->kind != 'b') {
            snprintf(errstr, errstr_size, "%s.%s: key column %s has no value in the change",
                     r->nspname, r->relname, r->cols[i].name);
            return -1;
        }
        if (encode_value(b, &r->cols[i], v, errstr, errstr_size) != 0)
            return -1;
    }
    return 0;
}

int encode_envelope(encoder *e, const relation *r, char op, const pgo_tuple *before,
                    const pgo_tuple *after, const event_ctx *ctx, int64_t now_ms, char *errstr,
                    size_t errstr_size)
{
    cdc_buf *b = &e->value;
    cdc_buf_reset(b);
    cdc_avro_put_so_header(b, r->value_fp);
    int ntoast = 0;
    if (encode_row(e, b, r, before, NULL, errstr, errstr_size) != 0 ||
        encode_row(e, b, r, after, &ntoast, errstr, errstr_size) != 0)
        return -1;
    cdc_buf_append(b, e->source_head.data, e->source_head.len);
    cdc_avro_put_long(b, ctx->commit_ms);
    cdc_avro_put_cstring(b, ctx->snapshot);
    cdc_avro_put_cstring(b, e->db);
    cdc_avro_put_cstring(b, r->nspname);
    cdc_avro_put_cstring(b, r->relname);
    cdc_avro_put_long(b, 1);
    cdc_avro_put_long(b, (int64_t)ctx->xid);
    cdc_avro_put_long(b, 1);
    cdc_avro_put_long(b, (int64_t)ctx->lsn);
    char ops[2] = {op, 0};
    cdc_avro_put_cstring(b, ops);
    cdc_avro_put_long(b, 1);
    cdc_avro_put_long(b, now_ms);
    cdc_avro_put_long(b, (int64_t)ctx->commit_lsn);
    cdc_avro_put_long(b, ctx->ordinal);
    if (ntoast > 0) {
        cdc_avro_put_long(b, ntoast);
        for (int i = 0; i < ntoast; i++)
            cdc_avro_put_cstring(b, r->cols[e->toast_idx[i]].name);
    }
    cdc_avro_put_long(b, 0);
    return 0;
}
