/*
 * Batch reduction (see batch.h): folds the events of one table into one net
 * row per key so cdc-apply writes a batch with a few set-based statements.
 *
 * Layout: rows live in an array in first-seen order; each row has a
 * batch_val array, carved from one slab per growth of the row array (one
 * allocation per doubling, not one per row, since cdc-apply builds a fresh
 * batch for every flush; kept across batch_clear so a steady stream of
 * batches stops allocating). Texts are copied into one cdc_buf arena and
 * referenced by offset, because the arena moves when it grows. An
 * open-addressing map from the key's values to the row index finds a key's
 * row; keyless tables bypass it and only append.
 *
 * Key identity is compared column by column (state, length, bytes), never
 * on a concatenation, so ("ab","c") and ("a","bc") are different keys; the
 * hash mixes each column's length before its bytes for the same reason.
 */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct batch {
    const cdc_table_schema *schema; /* borrowed */
    int nf;                         /* schema->nfields */
    size_t width;                   /* batch_vals per row: nf, or 2 * nf when keyless (+ old) */
    batch_row *rows;
    uint64_t *hashes; /* key hash of each row (keyed tables) */
    size_t nrows, rows_cap;
    batch_val **slabs; /* rows[0..rows_cap).vals point into these */
    size_t nslabs;
    uint64_t *slots; /* row index + 1 in the low 32 bits (0 = empty), the key hash's high
                        32 bits above: a probe passes other keys without reading their row */
    size_t nslots;   /* power of two, more than twice the rows */
    cdc_buf arena;  /* every text of every row, NUL-terminated */
    batch_val *ev_before, *ev_after; /* the event being added, in batch column order */
    int *map;                        /* event column -> batch column */
    int map_cap;
    bool mixed; /* an event other than a read of a key new to the batch was added */
    bool binary; /* the values are in their binary form (set by the first event) */
};

batch *batch_new(const cdc_table_schema *schema)
{
    batch *b = cdc_xcalloc(1, sizeof *b);
    b->schema = schema;
    b->nf = schema->nfields;
    b->width = (size_t)b->nf * (schema->nkey == 0 ? 2 : 1);
    b->nslots = 64;
    b->slots = cdc_xcalloc(b->nslots, sizeof *b->slots);
    cdc_buf_init(&b->arena);
    b->ev_before = cdc_xcalloc((size_t)b->nf + 1, sizeof *b->ev_before);
    b->ev_after = cdc_xcalloc((size_t)b->nf + 1, sizeof *b->ev_after);
    return b;
}

void batch_destroy(batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nslabs; i++)
        free(b->slabs[i]);
    free(b->slabs);
    free(b->rows);
    free(b->hashes);
    free(b->slots);
    cdc_buf_free(&b->arena);
    free(b->ev_before);
    free(b->ev_after);
    free(b->map);
    free(b);
}

void batch_clear(batch *b)
{
    b->nrows = 0;
    b->mixed = false;
    b->binary = false;
    memset(b->slots, 0, b->nslots * sizeof *b->slots);
    cdc_buf_reset(&b->arena);
}

size_t batch_count(const batch *b)
{
    return b->nrows;
}

const batch_row *batch_row_at(const batch *b, size_t i)
{
    return i < b->nrows ? &b->rows[i] : NULL;
}

const char *batch_text(const batch *b, const batch_val *v)
{
    return v->state == CDC_COL_VALUE ? (const char *)b->arena.data + v->off : NULL;
}

bool batch_binary(const batch *b)
{
    return b->binary;
}

bool batch_keyless(const batch *b)
{
    return b->schema->nkey == 0;
}

bool batch_only_reads(const batch *b)
{
    return b->nrows > 0 && !b->mixed && b->schema->nkey > 0;
}

/*
 * Map the event schema's columns onto the batch schema by true name. The
 * common case (same schema, or an older version that only lacks trailing
 * columns) is a positional match and costs one strcmp per column.
 */
static int map_columns(batch *b, const cdc_table_schema *es, char *errstr, size_t errstr_size)
{
    if (es->nfields > b->map_cap) {
        b->map = cdc_xrealloc(b->map, (size_t)es->nfields * sizeof *b->map);
        b->map_cap = es->nfields;
    }
    for (int j = 0; j < es->nfields; j++) {
        const char *name = es->fields[j].pg_name;
        int i = j;
        if (es != b->schema && !(j < b->nf && strcmp(b->schema->fields[j].pg_name, name) == 0))
            i = cdc_table_schema_find(b->schema, name);
        if (i < 0) {
            snprintf(errstr, errstr_size,
                     "%s.%s: the event has column \"%s\", which the batch schema lacks",
                     b->schema->schema_name, b->schema->table_name, name);
            return -1;
        }
        b->map[j] = i;
    }
    return 0;
}

/*
 * Copy one row of the event into `dst` (batch column order), texts into the
 * arena. Columns the event's schema does not have get `missing`.
 */
static void load_row(batch *b, const cdc_table_schema *es, const cdc_event *ev,
                     const cdc_colval *src, batch_val *dst, cdc_colstate missing)
{
    size_t need = 0;
    for (int j = 0; j < es->nfields; j++)
        if (src[j].state == CDC_COL_VALUE)
            need += src[j].len + 1;
    cdc_buf_reserve(&b->arena, need);
    for (int i = 0; i < b->nf; i++)
        dst[i] = (batch_val){.state = missing, .off = 0, .len = 0};
    for (int j = 0; j < es->nfields; j++) {
        batch_val *d = &dst[b->map[j]];
        d->state = src[j].state;
        if (src[j].state != CDC_COL_VALUE)
            continue;
        d->off = b->arena.len;
        d->len = src[j].len;
        /* Room reserved above: no per-value growth check. */
        memcpy(b->arena.data + b->arena.len, cdc_event_text(ev, &src[j]), src[j].len);
        b->arena.len += src[j].len;
        b->arena.data[b->arena.len++] = 0;
    }
}

static bool has_unchanged(const batch *b, const batch_val *v)
{
    for (int i = 0; i < b->nf; i++)
        if (v[i].state == CDC_COL_UNCHANGED)
            return true;
    return false;
}

static bool key_complete(const batch *b, const batch_val *v)
{
    for (int k = 0; k < b->schema->nkey; k++)
        if (v[b->schema->key_idx[k]].state != CDC_COL_VALUE)
            return false;
    return true;
}

static uint64_t mix(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(0x100000001b3); /* FNV-1a */
    return h;
}

/* Hash of a complete key; the final step spreads FNV's weak low bits. */
static uint64_t key_hash(const batch *b, const batch_val *v)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (int k = 0; k < b->schema->nkey; k++) {
        const batch_val *c = &v[b->schema->key_idx[k]];
        h = mix(h, &c->len, sizeof c->len);
        h = mix(h, b->arena.data + c->off, c->len);
    }
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    return h;
}

static bool key_eq(const batch *b, const batch_val *x, const batch_val *y)
{
    for (int k = 0; k < b->schema->nkey; k++) {
        const batch_val *a = &x[b->schema->key_idx[k]], *c = &y[b->schema->key_idx[k]];
        if (a->len != c->len || memcmp(b->arena.data + a->off, b->arena.data + c->off, a->len))
            return false;
    }
    return true;
}

#define SLOT_TAG UINT64_C(0xffffffff00000000)

static size_t slot_row(uint64_t slot)
{
    return (size_t)(uint32_t)slot - 1;
}

static uint64_t slot_of(uint64_t h, size_t row)
{
    return (h & SLOT_TAG) | (uint64_t)(row + 1);
}

/* The slot holding the key of `v`, or the empty slot where it belongs. */
static size_t find_slot(const batch *b, const batch_val *v, uint64_t h)
{
    size_t mask = b->nslots - 1, i = (size_t)h & mask;
    for (uint64_t s; (uint32_t)(s = b->slots[i]) != 0; i = (i + 1) & mask) {
        size_t r = slot_row(s);
        if ((s & SLOT_TAG) == (h & SLOT_TAG) && b->hashes[r] == h &&
            key_eq(b, b->rows[r].vals, v))
            break;
    }
    return i;
}

/* Keep the load under 1/2 so probes stay short. */
static void grow_slots(batch *b)
{
    if ((b->nrows + 1) * 2 <= b->nslots)
        return;
    free(b->slots);
    b->nslots *= 2;
    b->slots = cdc_xcalloc(b->nslots, sizeof *b->slots);
    size_t mask = b->nslots - 1;
    for (size_t r = 0; r < b->nrows; r++) {
        size_t i = (size_t)b->hashes[r] & mask;
        while ((uint32_t)b->slots[i])
            i = (i + 1) & mask;
        b->slots[i] = slot_of(b->hashes[r], r);
    }
}

static batch_row *new_row(batch *b, uint64_t h)
{
    if (b->nrows == b->rows_cap) {
        size_t old = b->rows_cap;
        b->rows_cap = old ? old * 2 : 16;
        b->rows = cdc_xrealloc(b->rows, b->rows_cap * sizeof *b->rows);
        b->hashes = cdc_xrealloc(b->hashes, b->rows_cap * sizeof *b->hashes);
        batch_val *slab = cdc_xcalloc((b->rows_cap - old) * b->width + 1, sizeof *slab);
        b->slabs = cdc_xrealloc(b->slabs, (b->nslabs + 1) * sizeof *b->slabs);
        b->slabs[b->nslabs++] = slab;
        for (size_t i = old; i < b->rows_cap; i++)
            b->rows[i].vals = slab + (i - old) * b->width;
    }
    batch_row *r = &b->rows[b->nrows];
    b->hashes[b->nrows++] = h;
    r->old = NULL;
    return r;
}

static void copy_vals(batch_val *dst, const batch_val *src, int n)
{
    if (n > 0)
        memcpy(dst, src, (size_t)n * sizeof *dst);
}

static int add_keyed(batch *b, const cdc_event *ev, char *errstr, size_t errstr_size)
{
    const cdc_table_schema *s = b->schema;
    const batch_val *src = ev->op == 'd' ? b->ev_before : b->ev_after;
    if (!key_complete(b, src)) {
        snprintf(errstr, errstr_size, "%s.%s: '%c' event without a value for every key column",
                 s->schema_name, s->table_name, ev->op);
        return -1;
    }
    /*
     * cdc-capture sends a key change as delete + insert; an update whose old
     * key differs would otherwise leave the old row behind.
     */
    if (ev->op == 'u' && ev->has_before && key_complete(b, b->ev_before) &&
        !key_eq(b, b->ev_before, b->ev_after)) {
        snprintf(errstr, errstr_size,
                 "%s.%s: update changes the key (expected a delete and an insert)",
                 s->schema_name, s->table_name);
        return -1;
    }
    uint64_t h = key_hash(b, src);
    grow_slots(b);
    size_t slot = find_slot(b, src, h);
    bool fresh = (uint32_t)b->slots[slot] == 0;
    if (fresh)
        b->slots[slot] = slot_of(h, b->nrows);
    batch_row *r = fresh ? new_row(b, h) : &b->rows[slot_row(b->slots[slot])];
    b->mixed |= ev->op != 'r' || !fresh;

    if (ev->op == 'd') {
        r->op = BATCH_DELETE;
        for (int i = 0; i < b->nf; i++)
            r->vals[i] = (batch_val){.state = CDC_COL_NULL, .off = 0, .len = 0};
        for (int k = 0; k < s->nkey; k++)
            r->vals[s->key_idx[k]] = src[s->key_idx[k]];
    } else if (ev->op == 'u' && !fresh &&
               (r->op == BATCH_UPSERT || r->op == BATCH_REPLACE || r->op == BATCH_UPDATE)) {
        /* Later values win; an unchanged column keeps what an earlier event gave. */
        for (int i = 0; i < b->nf; i++)
            if (src[i].state != CDC_COL_UNCHANGED)
                r->vals[i] = src[i];
    } else {
        /* c/r on anything, or u on nothing/DELETE: the event's row as a whole. */
        copy_vals(r->vals, src, b->nf);
        r->op = ev->op != 'u'              ? BATCH_UPSERT
                : has_unchanged(b, src)    ? BATCH_UPDATE
                                           : BATCH_REPLACE;
    }
    r->commit_lsn = ev->commit_lsn;
    r->ordinal = ev->ordinal;
    return 0;
}

/*
 * Keyless tables have REPLICA IDENTITY FULL: `before` is the whole old row,
 * with TOASTed values flattened by PostgreSQL, so an unchanged column of
 * the new row is filled from it and ROW_UPDATE values are always complete.
 */
static void add_keyless(batch *b, const cdc_event *ev)
{
    batch_row *r = new_row(b, 0);
    b->mixed = true;
    switch (ev->op) {
    case 'u':
        r->op = BATCH_ROW_UPDATE;
        r->old = r->vals + b->nf;
        copy_vals(r->old, b->ev_before, b->nf);
        for (int i = 0; i < b->nf; i++)
            r->vals[i] = b->ev_after[i].state == CDC_COL_UNCHANGED ? b->ev_before[i]
                                                                  : b->ev_after[i];
        break;
    case 'd':
        r->op = BATCH_ROW_DELETE;
        r->old = r->vals + b->nf;
        copy_vals(r->old, b->ev_before, b->nf);
        for (int i = 0; i < b->nf; i++)
            r->vals[i] = (batch_val){.state = CDC_COL_NULL, .off = 0, .len = 0};
        break;
    default:
        r->op = BATCH_INSERT;
        copy_vals(r->vals, b->ev_after, b->nf);
        break;
    }
    r->commit_lsn = ev->commit_lsn;
    r->ordinal = ev->ordinal;
}

/*
 * Columns the event's (older) schema lacks: for an update they are
 * CDC_COL_UNCHANGED, so the target keeps whatever it has. For an insert or
 * snapshot read they are NULL: an insert has no earlier value to keep, and
 * UNCHANGED would turn it into a partial UPDATE that silently does nothing
 * when the row is absent. The source row really holds the ADD COLUMN
 * default, which the stream never carries; a target column added by
 * sql_add_column has no default either, so NULL is also what the target
 * holds for rows that predate the column (and what keyless matching on the
 * old row must compare with).
 */
int batch_add(batch *b, const cdc_table_schema *ev_schema, const cdc_event *ev, char *errstr,
              size_t errstr_size)
{
    const cdc_table_schema *s = b->schema;
    size_t mark = b->arena.len;
    bool keyless = s->nkey == 0;
    if (ev_schema != s && (strcmp(ev_schema->schema_name, s->schema_name) != 0 ||
                           strcmp(ev_schema->table_name, s->table_name) != 0)) {
        snprintf(errstr, errstr_size, "event of %s.%s added to the batch of %s.%s",
                 ev_schema->schema_name, ev_schema->table_name, s->schema_name, s->table_name);
        goto fail;
    }
    if (!(ev->op == 'c' || ev->op == 'u' || ev->op == 'd' || ev->op == 'r')) {
        snprintf(errstr, errstr_size, "%s.%s: op '%c' cannot be batched", s->schema_name,
                 s->table_name, ev->op ? ev->op : '?');
        goto fail;
    }
    if (b->nrows == 0)
        b->binary = ev->binary;
    if (ev->binary != b->binary) {
        snprintf(errstr, errstr_size, "%s.%s: an event decoded in %s form added to a batch in %s form",
                 s->schema_name, s->table_name, ev->binary ? "binary" : "text",
                 b->binary ? "binary" : "text");
        goto fail;
    }
    if (map_columns(b, ev_schema, errstr, errstr_size) != 0)
        goto fail;
    if ((ev->op != 'd' && !ev->has_after) ||
        ((ev->op == 'd' || (keyless && ev->op == 'u')) && !ev->has_before)) {
        snprintf(errstr, errstr_size, "%s.%s: '%c' event without its %s row", s->schema_name,
                 s->table_name, ev->op, ev->op != 'd' && !ev->has_after ? "after" : "before");
        goto fail;
    }
    if (ev->has_after)
        load_row(b, ev_schema, ev, ev->after, b->ev_after,
                 ev->op == 'u' ? CDC_COL_UNCHANGED : CDC_COL_NULL);
    if (ev->has_before)
        load_row(b, ev_schema, ev, ev->before, b->ev_before, CDC_COL_NULL);
    if (ev->op != 'u' && ev->op != 'd' && has_unchanged(b, b->ev_after)) {
        snprintf(errstr, errstr_size, "%s.%s: '%c' event with an unchanged TOAST value",
                 s->schema_name, s->table_name, ev->op);
        goto fail;
    }
    if (keyless)
        add_keyless(b, ev);
    else if (add_keyed(b, ev, errstr, errstr_size) != 0)
        goto fail;
    return 0;
fail:
    b->arena.len = mark; /* the rows are untouched: drop this event's texts */
    return -1;
}
