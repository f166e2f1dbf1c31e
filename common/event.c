/*
 * Envelope schema parsing and event decoding (see cdc/event.h). The body
 * layout is the one cdc-capture writes (capture/encode.h): before, after,
 * source{version, connector, name, ts_ms, snapshot, db, schema, table,
 * txId, lsn}, op, ts_ms, commit_lsn, ordinal, unchanged_toast.
 */
#include "cdc/event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cdc/avro_bin.h"

static char *dup_prop(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? cdc_xstrdup(json_string_value(v)) : NULL;
}

void cdc_table_schema_free(cdc_table_schema *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nfields; i++) {
        free(s->fields[i].name);
        free(s->fields[i].pg_name);
        free(s->fields[i].pg_type);
        free(s->fields[i].pg_domain);
        free(s->fields[i].enum_json);
    }
    free(s->fields);
    free(s->key_idx);
    free(s->json);
    free(s->schema_name);
    free(s->table_name);
    free(s);
}

int cdc_table_schema_find(const cdc_table_schema *s, const char *pg_name)
{
    for (int i = 0; i < s->nfields; i++)
        if (strcmp(s->fields[i].pg_name, pg_name) == 0)
            return i;
    return -1;
}

cdc_table_schema *cdc_table_schema_parse(const char *json, char *errstr, size_t errstr_size)
{
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    cdc_table_schema *s = cdc_xcalloc(1, sizeof *s);
    if (!root) {
        snprintf(errstr, errstr_size, "schema is not JSON: %s", jerr.text);
        goto fail;
    }
    json_t *fields = json_object_get(root, "fields");
    json_t *before = json_array_get(fields, 0);
    json_t *row = json_array_get(json_object_get(before, "type"), 1);
    json_t *rfields = json_object_get(row, "fields");
    if (!json_is_array(fields) || json_array_size(fields) != 8 || !json_is_object(row) ||
        !json_is_array(rfields) ||
        strcmp(json_string_value(json_object_get(before, "name"))
                   ? json_string_value(json_object_get(before, "name"))
                   : "",
               "before") != 0) {
        snprintf(errstr, errstr_size, "schema is not a cdc change event envelope");
        goto fail;
    }
    s->json = cdc_xstrdup(json);
    s->schema_name = dup_prop(row, "pg.schema");
    s->table_name = dup_prop(row, "pg.table");
    if (!s->schema_name || !s->table_name) {
        snprintf(errstr, errstr_size, "envelope schema lacks pg.schema/pg.table");
        goto fail;
    }
    s->nfields = (int)json_array_size(rfields);
    s->fields = cdc_xcalloc((size_t)s->nfields + 1, sizeof *s->fields);
    for (int i = 0; i < s->nfields; i++) {
        json_t *f = json_array_get(rfields, (size_t)i);
        cdc_field *cf = &s->fields[i];
        cf->name = dup_prop(f, "name");
        cf->pg_name = dup_prop(f, "pg.name");
        cf->pg_type = dup_prop(f, "pg.type");
        cf->pg_domain = dup_prop(f, "pg.domain");
        json_t *labels = json_object_get(f, "pg.enum");
        if (labels)
            cf->enum_json = json_dumps(labels, JSON_COMPACT);
        cf->nullable = !json_is_false(json_object_get(f, "pg.nullable"));
        /* The decoder reads branch 0 as null: ["T", "null"] would decode wrongly. */
        const json_t *ft = json_object_get(f, "type"), *b0 = json_array_get(ft, 0);
        if (!cf->name || !cf->pg_name || !cf->pg_type || !json_is_array(ft) ||
            !json_is_string(b0) || strcmp(json_string_value(b0), "null") != 0 ||
            cdc_pgtype_from_avro(ft, &cf->type) != 0) {
            snprintf(errstr, errstr_size, "field %d of the envelope schema is not one cdc writes",
                     i);
            goto fail;
        }
    }
    json_t *keys = json_object_get(row, "pg.key");
    s->key_idx = cdc_xcalloc(json_array_size(keys) + 1, sizeof *s->key_idx);
    for (size_t k = 0; k < json_array_size(keys); k++) {
        int idx = cdc_table_schema_find(s, json_string_value(json_array_get(keys, k))
                                               ? json_string_value(json_array_get(keys, k))
                                               : "");
        if (idx < 0) {
            snprintf(errstr, errstr_size, "pg.key names an unknown column");
            goto fail;
        }
        s->key_idx[s->nkey++] = idx;
    }
    s->binary = s->nkey > 0;
    for (int i = 0; i < s->nfields; i++) {
        cdc_field *cf = &s->fields[i];
        if (!cf->pg_domain && !cf->enum_json)
            cf->bin = cdc_pgtype_bin_kind(&cf->type, cf->pg_type);
        s->binary &= cf->bin != CDC_BIN_NONE;
    }
    json_decref(root);
    return s;
fail:
    json_decref(root);
    cdc_table_schema_free(s);
    return NULL;
}

void cdc_event_init(cdc_event *ev)
{
    memset(ev, 0, sizeof *ev);
    cdc_buf_init(&ev->arena);
}

void cdc_event_free(cdc_event *ev)
{
    free(ev->before);
    free(ev->after);
    cdc_buf_free(&ev->arena);
    memset(ev, 0, sizeof *ev);
}

static int bad(char *errstr, size_t errstr_size, const char *what)
{
    snprintf(errstr, errstr_size, "%s", what);
    return -1;
}

/* A string into the arena; returns its offset. */
static int get_str(const uint8_t **p, const uint8_t *end, cdc_buf *arena, size_t *off)
{
    const uint8_t *d;
    size_t n;
    if (cdc_avro_get_bytes(p, end, &d, &n) != 0)
        return -1;
    *off = arena->len;
    cdc_buf_reserve(arena, n + 1);
    if (n)
        memcpy(arena->data + arena->len, d, n);
    arena->data[arena->len + n] = 0;
    arena->len += n + 1;
    return 0;
}

/* A string the event does not keep (source.version and the like). */
static int skip_str(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *d;
    size_t n;
    return cdc_avro_get_bytes(p, end, &d, &n);
}

/*
 * A ["null", T] union's branch index: 0 or 1. Every column starts with
 * one, so their one-byte forms (zig-zag 00 and 02) are read here without
 * the general varint call.
 */
static bool get_branch(const uint8_t **p, const uint8_t *end, int64_t *branch)
{
    if (*p < end && (**p == 0 || **p == 2)) {
        *branch = **p >> 1;
        (*p)++;
        return true;
    }
    return cdc_avro_get_long(p, end, branch) == 0 && (*branch == 0 || *branch == 1);
}

static int get_row(const cdc_table_schema *s, const uint8_t **p, const uint8_t *end, cdc_event *ev,
                   cdc_colval *row, bool *present, char *errstr, size_t errstr_size)
{
    int64_t branch;
    if (!get_branch(p, end, &branch))
        return bad(errstr, errstr_size, "truncated or invalid row union");
    *present = branch == 1;
    if (!*present)
        return 0;
    for (int i = 0; i < s->nfields; i++) {
        if (!get_branch(p, end, &branch))
            return bad(errstr, errstr_size, "truncated or invalid column union");
        if (branch == 0) {
            row[i].state = CDC_COL_NULL;
            continue;
        }
        row[i].state = CDC_COL_VALUE;
        row[i].off = ev->arena.len;
        char err[256];
        const cdc_field *f = &s->fields[i];
        if ((ev->binary ? cdc_pgtype_decode_binary(&ev->arena, &f->type, f->bin, p, end, err,
                                                   sizeof err)
                        : cdc_pgtype_decode_text(&ev->arena, &f->type, p, end, err, sizeof err)) !=
            0) {
            snprintf(errstr, errstr_size, "column %s: %s", s->fields[i].pg_name, err);
            return -1;
        }
        row[i].len = ev->arena.len - row[i].off;
        cdc_buf_reserve(&ev->arena, 1);
        ev->arena.data[ev->arena.len++] = 0;
    }
    return 0;
}

int cdc_event_decode(const cdc_table_schema *s, const uint8_t *body, size_t len, cdc_event *ev,
                     char *errstr, size_t errstr_size)
{
    return cdc_event_decode_as(s, body, len, false, ev, errstr, errstr_size);
}

int cdc_event_decode_as(const cdc_table_schema *s, const uint8_t *body, size_t len, bool binary,
                        cdc_event *ev, char *errstr, size_t errstr_size)
{
    const uint8_t *p = body, *end = body + len;
    if (binary && !s->binary)
        return bad(errstr, errstr_size, "the table has columns without a binary form");
    ev->binary = binary;
    cdc_buf_reset(&ev->arena);
    if (ev->ncols_cap < s->nfields) {
        ev->ncols_cap = s->nfields;
        ev->before = cdc_xrealloc(ev->before, (size_t)s->nfields * sizeof *ev->before);
        ev->after = cdc_xrealloc(ev->after, (size_t)s->nfields * sizeof *ev->after);
    }
    if (get_row(s, &p, end, ev, ev->before, &ev->has_before, errstr, errstr_size) != 0 ||
        get_row(s, &p, end, ev, ev->after, &ev->has_after, errstr, errstr_size) != 0)
        return -1;
    int64_t v;
    if (!(skip_str(&p, end) == 0))
        return bad(errstr, errstr_size, "truncated source.version");
    if (!(skip_str(&p, end) == 0))
        return bad(errstr, errstr_size, "truncated source.connector");
    if (!(skip_str(&p, end) == 0))
        return bad(errstr, errstr_size, "truncated source.name");
    if (!(cdc_avro_get_long(&p, end, &ev->source_ts_ms) == 0))
        return bad(errstr, errstr_size, "truncated source.ts_ms");
    /* snapshot and op are read in place, as the C strings they would be in
     * the arena (up to a NUL byte); snapshot cut to fit, always ended. */
    const uint8_t *d;
    size_t n, k;
    if (!(cdc_avro_get_bytes(&p, end, &d, &n) == 0))
        return bad(errstr, errstr_size, "truncated source.snapshot");
    for (k = 0; k < n && k < sizeof ev->snapshot - 1 && d[k]; k++)
        ev->snapshot[k] = (char)d[k];
    ev->snapshot[k] = '\0';
    if (!(get_str(&p, end, &ev->arena, &ev->db_off) == 0))
        return bad(errstr, errstr_size, "truncated source.db");
    if (!(get_str(&p, end, &ev->arena, &ev->schema_off) == 0))
        return bad(errstr, errstr_size, "truncated source.schema");
    if (!(get_str(&p, end, &ev->arena, &ev->table_off) == 0))
        return bad(errstr, errstr_size, "truncated source.table");
    if (!get_branch(&p, end, &v))
        return bad(errstr, errstr_size, "invalid source.txId");
    ev->txid = -1;
    if (v == 1 && cdc_avro_get_long(&p, end, &ev->txid) != 0)
        return bad(errstr, errstr_size, "truncated source.txId");
    if (!get_branch(&p, end, &v))
        return bad(errstr, errstr_size, "invalid source.lsn");
    ev->lsn = -1;
    if (v == 1 && cdc_avro_get_long(&p, end, &ev->lsn) != 0)
        return bad(errstr, errstr_size, "truncated source.lsn");
    if (!(cdc_avro_get_bytes(&p, end, &d, &n) == 0))
        return bad(errstr, errstr_size, "truncated op");
    ev->op = n > 0 ? (char)d[0] : '\0';
    if (!(strchr("cudtr", ev->op) && ev->op && (n < 2 || d[1] == 0)))
        return bad(errstr, errstr_size, "invalid op");
    if (!get_branch(&p, end, &v))
        return bad(errstr, errstr_size, "invalid ts_ms");
    ev->ts_ms = 0;
    if (v == 1 && cdc_avro_get_long(&p, end, &ev->ts_ms) != 0)
        return bad(errstr, errstr_size, "truncated ts_ms");
    if (!(cdc_avro_get_long(&p, end, &v) == 0))
        return bad(errstr, errstr_size, "truncated commit_lsn");
    ev->commit_lsn = (uint64_t)v;
    if (!(cdc_avro_get_long(&p, end, &ev->ordinal) == 0))
        return bad(errstr, errstr_size, "truncated ordinal");
    /* unchanged_toast: blocks of names; a negative count carries a byte size. */
    for (;;) {
        int64_t count;
        if (!(cdc_avro_get_long(&p, end, &count) == 0))
            return bad(errstr, errstr_size, "truncated unchanged_toast");
        if (count == 0)
            break;
        if (count < 0) {
            int64_t bytes;
            if (!(cdc_avro_get_long(&p, end, &bytes) == 0))
                return bad(errstr, errstr_size, "truncated unchanged_toast");
            if (count == INT64_MIN)
                return bad(errstr, errstr_size, "bad unchanged_toast block count");
            count = -count;
        }
        for (int64_t i = 0; i < count; i++) {
            const uint8_t *d;
            size_t n;
            if (!(cdc_avro_get_bytes(&p, end, &d, &n) == 0))
                return bad(errstr, errstr_size, "truncated unchanged_toast name");
            int idx = -1;
            for (int f = 0; f < s->nfields; f++)
                if (strlen(s->fields[f].pg_name) == n && memcmp(s->fields[f].pg_name, d, n) == 0)
                    idx = f;
            if (!(idx >= 0 && ev->has_after))
                return bad(errstr, errstr_size, "unchanged_toast names an unknown column");
            ev->after[idx].state = CDC_COL_UNCHANGED;
        }
    }
    if (!(p == end))
        return bad(errstr, errstr_size, "trailing bytes after the event");
    return 0;
}
