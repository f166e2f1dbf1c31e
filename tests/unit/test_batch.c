/*
 * Batch reduction: every transition of the net-effect table in batch.h,
 * unchanged-TOAST merging, first-seen order, events of older schema
 * versions, keyless tables, errors that leave the batch untouched, and
 * enough keys to make the key map grow. Schemas are parsed from envelope
 * JSON shaped like the one capture/relcache.c generates; events are built
 * by hand the way cdc_event_decode fills them.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "batch.h"

/* ---- schemas ---- */

typedef struct col {
    const char *name;    /* true column name */
    const char *avro;    /* Avro type of the value */
    const char *pg_type; /* format_type */
    bool key;
} col;

/* The envelope relcache.c builds, reduced to what cdc_table_schema_parse reads. */
static cdc_table_schema *schema_of(const char *nsp, const char *rel, const col *cols, int n)
{
    json_t *fields = json_array(), *keys = json_array();
    for (int i = 0; i < n; i++) {
        char avro_name[64];
        snprintf(avro_name, sizeof avro_name, "f%d", i);
        json_array_append_new(
            fields, json_pack("{s:s, s:[s,s], s:n, s:s, s:s, s:b}", "name", avro_name, "type",
                              "null", cols[i].avro, "default", "pg.name", cols[i].name, "pg.type",
                              cols[i].pg_type, "pg.nullable", !cols[i].key));
        if (cols[i].key)
            json_array_append_new(keys, json_string(cols[i].name));
    }
    json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "type", "record", "name", "Value",
                            "pg.schema", nsp, "pg.table", rel, "pg.key", keys, "fields", fields);
    json_t *source = json_pack("{s:s, s:s, s:[]}", "type", "record", "name", "Source", "fields");
    json_t *env = json_pack(
        "{s:s, s:s, s:s, s:["
        "{s:s, s:[s,o], s:n}, {s:s, s:[s,s], s:n}, {s:s, s:o}, {s:s, s:s},"
        "{s:s, s:[s,s], s:n}, {s:s, s:s}, {s:s, s:s}, {s:s, s:{s:s, s:s}, s:[]}]}",
        "type", "record", "name", "Envelope", "namespace", "cdc.t.v0", "fields", "name", "before",
        "type", "null", row, "default", "name", "after", "type", "null", "Value", "default",
        "name", "source", "type", source, "name", "op", "type", "string", "name", "ts_ms", "type",
        "null", "long", "default", "name", "commit_lsn", "type", "long", "name", "ordinal", "type",
        "long", "name", "unchanged_toast", "type", "type", "array", "items", "string", "default");
    cr_assert_not_null(env);
    char *text = json_dumps(env, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char err[256] = "";
    cdc_table_schema *s = cdc_table_schema_parse(text, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    free(text);
    json_decref(env);
    return s;
}

/* payments(id bigint key, amount numeric(18,2), note text, memo text) */
static const col PAY[] = {
    {"id", "long", "bigint", true},
    {"amount", "string", "numeric", false},
    {"note", "string", "text", false},
    {"memo", "string", "text", false},
};
static cdc_table_schema *payments(void)
{
    return schema_of("public", "payments", PAY, 4);
}

/* ---- events ---- */

/* Column value markers: NULL pointer = SQL NULL, UNCH = unchanged TOAST. */
static const char UNCH[] = "\x01unchanged";

static void put_row(cdc_event *ev, cdc_colval *row, int n, const char *const *vals)
{
    for (int i = 0; i < n; i++) {
        if (!vals[i]) {
            row[i] = (cdc_colval){CDC_COL_NULL, 0, 0};
        } else if (vals[i] == UNCH) {
            row[i] = (cdc_colval){CDC_COL_UNCHANGED, 0, 0};
        } else {
            row[i] = (cdc_colval){CDC_COL_VALUE, ev->arena.len, strlen(vals[i])};
            cdc_buf_append(&ev->arena, vals[i], strlen(vals[i]));
            cdc_buf_putc(&ev->arena, 0);
        }
    }
}

/* Fill *ev as cdc_event_decode would; before/after NULL = absent. */
static void make_event(cdc_event *ev, char op, int n, const char *const *before,
                       const char *const *after, uint64_t commit_lsn, int64_t ordinal)
{
    cdc_event_free(ev);
    cdc_event_init(ev);
    ev->op = op;
    ev->ncols_cap = n;
    ev->before = calloc((size_t)n + 1, sizeof *ev->before);
    ev->after = calloc((size_t)n + 1, sizeof *ev->after);
    ev->has_before = before != NULL;
    ev->has_after = after != NULL;
    /* Some text first so no value sits at offset 0 by accident. */
    cdc_buf_puts(&ev->arena, "public");
    cdc_buf_putc(&ev->arena, 0);
    if (before)
        put_row(ev, ev->before, n, before);
    if (after)
        put_row(ev, ev->after, n, after);
    ev->commit_lsn = commit_lsn;
    ev->ordinal = ordinal;
    ev->txid = ev->lsn = -1;
}

#define ROW(...) ((const char *const[]){__VA_ARGS__})

typedef struct fixture {
    cdc_table_schema *s;
    batch *b;
    cdc_event ev;
    char err[256];
} fixture;

static void fx_init(fixture *f, cdc_table_schema *s)
{
    f->s = s;
    f->b = batch_new(s);
    cdc_event_init(&f->ev);
    f->err[0] = '\0';
}

static void fx_free(fixture *f)
{
    batch_destroy(f->b);
    cdc_event_free(&f->ev);
    cdc_table_schema_free(f->s);
}

/* Add an event written with schema es (the batch's own when NULL); must succeed. */
static void add(fixture *f, const cdc_table_schema *es, char op, const char *const *before,
                const char *const *after, uint64_t lsn, int64_t ord)
{
    es = es ? es : f->s;
    make_event(&f->ev, op, es->nfields, before, after, lsn, ord);
    cr_assert_eq(batch_add(f->b, es, &f->ev, f->err, sizeof f->err), 0, "%c: %s", op, f->err);
}

static int add_fails(fixture *f, const cdc_table_schema *es, char op, const char *const *before,
                     const char *const *after)
{
    es = es ? es : f->s;
    make_event(&f->ev, op, es->nfields, before, after, 1, 0);
    f->err[0] = '\0';
    int rc = batch_add(f->b, es, &f->ev, f->err, sizeof f->err);
    cr_assert_neq(f->err[0], '\0', "an error must say why");
    return rc;
}

/* Row r has op and exactly these values (UNCH / NULL markers as in events). */
static void expect_row(const fixture *f, size_t r, batch_op op, const char *const *vals)
{
    const batch_row *row = batch_row_at(f->b, r);
    cr_assert_not_null(row, "row %zu missing", r);
    cr_assert_eq(row->op, op, "row %zu: op %c, expected %c", r, row->op, op);
    for (int i = 0; i < f->s->nfields; i++) {
        const batch_val *v = &row->vals[i];
        if (!vals[i]) {
            cr_assert_eq(v->state, CDC_COL_NULL, "row %zu col %d: expected NULL", r, i);
            cr_assert_null(batch_text(f->b, v));
        } else if (vals[i] == UNCH) {
            cr_assert_eq(v->state, CDC_COL_UNCHANGED, "row %zu col %d: expected unchanged", r, i);
        } else {
            cr_assert_eq(v->state, CDC_COL_VALUE, "row %zu col %d: expected \"%s\"", r, i,
                         vals[i]);
            cr_assert_str_eq(batch_text(f->b, v), vals[i], "row %zu col %d", r, i);
            cr_assert_eq(v->len, strlen(vals[i]));
        }
    }
}

static void expect_old(const fixture *f, size_t r, const char *const *vals)
{
    const batch_row *row = batch_row_at(f->b, r);
    cr_assert_not_null(row->old, "row %zu has no old row", r);
    for (int i = 0; i < f->s->nfields; i++) {
        if (!vals[i])
            cr_assert_eq(row->old[i].state, CDC_COL_NULL, "row %zu old col %d", r, i);
        else
            cr_assert_str_eq(batch_text(f->b, &row->old[i]), vals[i], "row %zu old col %d", r, i);
    }
}

/* ---- one key, every transition ---- */

Test(batch, insert_alone_is_upsert)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'c', NULL, ROW("1", "10.00", "a", NULL), 100, 0);
    cr_assert_eq(batch_count(f.b), 1);
    cr_assert_not(batch_keyless(f.b));
    expect_row(&f, 0, BATCH_UPSERT, ROW("1", "10.00", "a", NULL));
    cr_assert_null(batch_row_at(f.b, 0)->old);
    cr_assert_null(batch_row_at(f.b, 1));
    fx_free(&f);
}

Test(batch, snapshot_read_is_upsert)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'r', NULL, ROW("1", "10.00", "a", "m"), 100, 0);
    expect_row(&f, 0, BATCH_UPSERT, ROW("1", "10.00", "a", "m"));
    fx_free(&f);
}

/*
 * Only reads of keys new to the batch: plain inserts of distinct keys, which
 * a table still waiting for its primary key takes by COPY. Anything else
 * (another op, a key seen twice, an empty batch, a keyless table) is not.
 */
Test(batch, only_reads_is_true_for_distinct_snapshot_reads_alone)
{
    fixture f;
    fx_init(&f, payments());
    cr_assert_not(batch_only_reads(f.b), "an empty batch");
    add(&f, NULL, 'r', NULL, ROW("1", "10.00", "a", "m"), 100, -10);
    add(&f, NULL, 'r', NULL, ROW("2", "20.00", "b", "m"), 100, -9);
    cr_assert(batch_only_reads(f.b));
    add(&f, NULL, 'c', NULL, ROW("3", "30.00", "c", "m"), 200, 0);
    cr_assert_not(batch_only_reads(f.b), "an insert is not a read");
    batch_clear(f.b);
    add(&f, NULL, 'r', NULL, ROW("1", "10.00", "a", "m"), 100, -10);
    cr_assert(batch_only_reads(f.b), "clear starts over");
    add(&f, NULL, 'r', NULL, ROW("1", "11.00", "a", "m"), 100, -9);
    cr_assert_not(batch_only_reads(f.b), "a key read twice");
    batch_clear(f.b);
    add(&f, NULL, 'r', NULL, ROW("1", "10.00", "a", "m"), 100, -10);
    add(&f, NULL, 'd', ROW("1", NULL, NULL, NULL), NULL, 200, 0);
    cr_assert_not(batch_only_reads(f.b), "a delete");
    fx_free(&f);

    static const col LOG[] = {{"a", "string", "text", false}};
    fx_init(&f, schema_of("public", "log", LOG, 1));
    add(&f, NULL, 'r', NULL, ROW("x"), 100, -10);
    cr_assert_not(batch_only_reads(f.b), "a keyless table");
    fx_free(&f);
}

/*
 * A batch holds values in one form: text, or PostgreSQL's binary form (a
 * load's reads). The first event sets it; an event of the other form is
 * refused and leaves the batch as it was. Binary keys may hold NUL bytes:
 * keys that differ only after one are different keys.
 */
Test(batch, one_form_per_batch_and_binary_keys_with_nul_bytes)
{
    fixture f;
    fx_init(&f, payments());
    cr_assert(f.s->binary == false, "numeric without a typmod has no binary form");
    cr_assert_not(batch_binary(f.b));
    const char *const k1 = "\x01", *const k2 = "\x02";
    make_event(&f.ev, 'r', 4, NULL, ROW(k1, "10.00", "a", "m"), 100, -10);
    f.ev.binary = true;
    /* Values with NUL bytes: the key 00 00 00 01 vs 00 00 00 02. */
    static const char key1[] = {0, 0, 0, 1}, key2[] = {0, 0, 0, 2};
    f.ev.after[0] = (cdc_colval){CDC_COL_VALUE, f.ev.arena.len, 4};
    cdc_buf_append(&f.ev.arena, key1, 4);
    cdc_buf_putc(&f.ev.arena, 0);
    cr_assert_eq(batch_add(f.b, f.s, &f.ev, f.err, sizeof f.err), 0, "%s", f.err);
    cr_assert(batch_binary(f.b), "the first event sets the form");
    f.ev.after[0] = (cdc_colval){CDC_COL_VALUE, f.ev.arena.len, 4};
    cdc_buf_append(&f.ev.arena, key2, 4);
    cdc_buf_putc(&f.ev.arena, 0);
    cr_assert_eq(batch_add(f.b, f.s, &f.ev, f.err, sizeof f.err), 0, "%s", f.err);
    cr_assert_eq(batch_count(f.b), 2, "keys differing after a NUL byte are two keys");
    cr_assert(batch_only_reads(f.b));
    const batch_row *r = batch_row_at(f.b, 1);
    cr_assert_eq(r->vals[0].len, 4);
    cr_assert(memcmp(batch_text(f.b, &r->vals[0]), key2, 4) == 0);

    make_event(&f.ev, 'r', 4, NULL, ROW(k2, "20.00", "b", "m"), 100, -9);
    cr_assert_eq(batch_add(f.b, f.s, &f.ev, f.err, sizeof f.err), -1, "a text event");
    cr_assert(strstr(f.err, "form") != NULL, "%s", f.err);
    cr_assert_eq(batch_count(f.b), 2, "the refused event left the batch as it was");
    batch_clear(f.b);
    cr_assert_not(batch_binary(f.b), "a cleared batch takes either form");
    add(&f, NULL, 'r', NULL, ROW("1", "10.00", "a", "m"), 100, -10);
    cr_assert_not(batch_binary(f.b));
    fx_free(&f);
}

/* An update of a row that should exist: written as an UPDATE (cheaper than
 * an upsert), the row inserted only if the target lacks it. */
Test(batch, full_update_alone_is_replace)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'u', NULL, ROW("1", "11.00", "b", "m"), 100, 0);
    expect_row(&f, 0, BATCH_REPLACE, ROW("1", "11.00", "b", "m"));
    add(&f, NULL, 'u', NULL, ROW("1", "12.00", UNCH, "n"), 100, 1);
    expect_row(&f, 0, BATCH_REPLACE, ROW("1", "12.00", "b", "n"));
    add(&f, NULL, 'd', ROW("1", NULL, NULL, NULL), NULL, 100, 2);
    expect_row(&f, 0, BATCH_DELETE, ROW("1", NULL, NULL, NULL));
    fx_free(&f);
}

Test(batch, update_with_unchanged_toast_alone_is_partial_update)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'u', NULL, ROW("1", "11.00", UNCH, "m"), 100, 0);
    expect_row(&f, 0, BATCH_UPDATE, ROW("1", "11.00", UNCH, "m"));
    fx_free(&f);
}

Test(batch, delete_alone_keeps_only_the_key)
{
    fixture f;
    fx_init(&f, payments());
    /* REPLICA IDENTITY FULL sends the whole old row: only the key is kept. */
    add(&f, NULL, 'd', ROW("1", "10.00", "a", "m"), NULL, 100, 0);
    expect_row(&f, 0, BATCH_DELETE, ROW("1", NULL, NULL, NULL));
    fx_free(&f);
}

Test(batch, upsert_then_update_keeps_values_the_update_left_unchanged)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'c', NULL, ROW("1", "10.00", "big text", NULL), 100, 0);
    add(&f, NULL, 'u', NULL, ROW("1", "12.00", UNCH, "m"), 200, 3);
    cr_assert_eq(batch_count(f.b), 1);
    expect_row(&f, 0, BATCH_UPSERT, ROW("1", "12.00", "big text", "m"));
    fx_free(&f);
}

Test(batch, partial_update_then_update_stays_partial_and_merges)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'u', NULL, ROW("1", "11.00", UNCH, UNCH), 100, 0);
    add(&f, NULL, 'u', NULL, ROW("1", "12.00", UNCH, "m"), 100, 1);
    expect_row(&f, 0, BATCH_UPDATE, ROW("1", "12.00", UNCH, "m"));
    /* A value given earlier survives a later unchanged marker. */
    add(&f, NULL, 'u', NULL, ROW("1", "13.00", UNCH, UNCH), 100, 2);
    expect_row(&f, 0, BATCH_UPDATE, ROW("1", "13.00", UNCH, "m"));
    fx_free(&f);
}

Test(batch, upsert_then_delete_is_delete)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'c', NULL, ROW("1", "10.00", "a", NULL), 100, 0);
    add(&f, NULL, 'd', ROW("1", NULL, NULL, NULL), NULL, 100, 1);
    cr_assert_eq(batch_count(f.b), 1);
    expect_row(&f, 0, BATCH_DELETE, ROW("1", NULL, NULL, NULL));
    fx_free(&f);
}

Test(batch, partial_update_then_delete_is_delete)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'u', NULL, ROW("1", "10.00", UNCH, NULL), 100, 0);
    add(&f, NULL, 'd', ROW("1", NULL, NULL, NULL), NULL, 100, 1);
    expect_row(&f, 0, BATCH_DELETE, ROW("1", NULL, NULL, NULL));
    fx_free(&f);
}

Test(batch, delete_then_insert_replaces_the_whole_row)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'u', NULL, ROW("1", "9.00", UNCH, "old memo"), 100, 0);
    add(&f, NULL, 'd', ROW("1", NULL, NULL, NULL), NULL, 100, 1);
    add(&f, NULL, 'c', NULL, ROW("1", "10.00", "a", NULL), 200, 0);
    expect_row(&f, 0, BATCH_UPSERT, ROW("1", "10.00", "a", NULL));
    fx_free(&f);
}

Test(batch, delete_then_update_is_the_update_alone)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'c', NULL, ROW("1", "10.00", "a", "m"), 100, 0);
    add(&f, NULL, 'd', ROW("1", NULL, NULL, NULL), NULL, 100, 1);
    add(&f, NULL, 'u', NULL, ROW("1", "11.00", UNCH, "n"), 100, 2);
    expect_row(&f, 0, BATCH_UPDATE, ROW("1", "11.00", UNCH, "n"));
    add(&f, NULL, 'd', ROW("1", NULL, NULL, NULL), NULL, 100, 3);
    add(&f, NULL, 'u', NULL, ROW("1", "12.00", "b", "o"), 100, 4);
    expect_row(&f, 0, BATCH_REPLACE, ROW("1", "12.00", "b", "o"));
    fx_free(&f);
}

Test(batch, insert_over_an_existing_row_replaces_it)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'u', NULL, ROW("1", "10.00", UNCH, "m"), 100, 0);
    add(&f, NULL, 'r', NULL, ROW("1", "11.00", "a", NULL), 100, 1);
    expect_row(&f, 0, BATCH_UPSERT, ROW("1", "11.00", "a", NULL));
    fx_free(&f);
}

Test(batch, delete_twice_is_one_delete)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'd', ROW("1", NULL, NULL, NULL), NULL, 100, 0);
    add(&f, NULL, 'd', ROW("1", NULL, NULL, NULL), NULL, 200, 0);
    cr_assert_eq(batch_count(f.b), 1);
    expect_row(&f, 0, BATCH_DELETE, ROW("1", NULL, NULL, NULL));
    fx_free(&f);
}

Test(batch, row_remembers_the_position_of_its_last_event)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'c', NULL, ROW("1", "10.00", "a", NULL), 100, 0);
    add(&f, NULL, 'c', NULL, ROW("2", "10.00", "a", NULL), 100, 1);
    add(&f, NULL, 'u', NULL, ROW("1", "11.00", UNCH, NULL), 300, 7);
    cr_assert_eq(batch_row_at(f.b, 0)->commit_lsn, 300);
    cr_assert_eq(batch_row_at(f.b, 0)->ordinal, 7);
    cr_assert_eq(batch_row_at(f.b, 1)->commit_lsn, 100);
    cr_assert_eq(batch_row_at(f.b, 1)->ordinal, 1);
    fx_free(&f);
}

/* ---- several keys ---- */

Test(batch, interleaved_keys_keep_first_seen_order)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'c', NULL, ROW("2", "2.00", NULL, NULL), 1, 0);
    add(&f, NULL, 'c', NULL, ROW("1", "1.00", NULL, NULL), 1, 1);
    add(&f, NULL, 'u', NULL, ROW("2", "2.50", NULL, NULL), 1, 2);
    add(&f, NULL, 'd', ROW("3", NULL, NULL, NULL), NULL, 1, 3);
    add(&f, NULL, 'u', NULL, ROW("1", "1.50", UNCH, NULL), 1, 4);
    add(&f, NULL, 'd', ROW("2", NULL, NULL, NULL), NULL, 1, 5);
    add(&f, NULL, 'c', NULL, ROW("2", "2.75", "x", NULL), 1, 6);
    cr_assert_eq(batch_count(f.b), 3);
    expect_row(&f, 0, BATCH_UPSERT, ROW("2", "2.75", "x", NULL));
    expect_row(&f, 1, BATCH_UPSERT, ROW("1", "1.50", NULL, NULL));
    expect_row(&f, 2, BATCH_DELETE, ROW("3", NULL, NULL, NULL));
    fx_free(&f);
}

Test(batch, composite_key_values_are_not_concatenated)
{
    static const col cols[] = {
        {"a", "string", "text", true},
        {"b", "string", "text", true},
        {"v", "string", "text", false},
    };
    fixture f;
    fx_init(&f, schema_of("public", "pairs", cols, 3));
    add(&f, NULL, 'c', NULL, ROW("ab", "c", "1"), 1, 0);
    add(&f, NULL, 'c', NULL, ROW("a", "bc", "2"), 1, 1);
    add(&f, NULL, 'c', NULL, ROW("", "abc", "3"), 1, 2);
    add(&f, NULL, 'u', NULL, ROW("ab", "c", "4"), 1, 3);
    cr_assert_eq(batch_count(f.b), 3);
    expect_row(&f, 0, BATCH_UPSERT, ROW("ab", "c", "4"));
    expect_row(&f, 1, BATCH_UPSERT, ROW("a", "bc", "2"));
    expect_row(&f, 2, BATCH_UPSERT, ROW("", "abc", "3"));
    fx_free(&f);
}

Test(batch, values_keep_tabs_newlines_and_backslashes)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'c', NULL, ROW("1", "1.00", "a\tb\nc\\d\r", "\\N"), 1, 0);
    expect_row(&f, 0, BATCH_UPSERT, ROW("1", "1.00", "a\tb\nc\\d\r", "\\N"));
    fx_free(&f);
}

Test(batch, clear_forgets_rows_and_keys)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'c', NULL, ROW("1", "1.00", NULL, NULL), 1, 0);
    add(&f, NULL, 'c', NULL, ROW("2", "2.00", NULL, NULL), 1, 1);
    batch_clear(f.b);
    cr_assert_eq(batch_count(f.b), 0);
    cr_assert_null(batch_row_at(f.b, 0));
    /* The old key must not be found: a partial update stays partial. */
    add(&f, NULL, 'u', NULL, ROW("1", "3.00", UNCH, NULL), 2, 0);
    cr_assert_eq(batch_count(f.b), 1);
    expect_row(&f, 0, BATCH_UPDATE, ROW("1", "3.00", UNCH, NULL));
    fx_free(&f);
}

Test(batch, hundred_thousand_keys_grow_the_map)
{
    enum { N = 100000 };
    fixture f;
    fx_init(&f, payments());
    char id[32], amount[32];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            snprintf(id, sizeof id, "%d", i);
            snprintf(amount, sizeof amount, "%d.00", i);
            add(&f, NULL, 'c', NULL, ROW(id, amount, "n", NULL), 1, i);
        }
        for (int i = N - 1; i >= 0; i -= 2) {
            snprintf(id, sizeof id, "%d", i);
            add(&f, NULL, 'u', NULL, ROW(id, "0.01", UNCH, "m"), 2, i);
        }
        for (int i = 0; i < N; i += 3) {
            snprintf(id, sizeof id, "%d", i);
            add(&f, NULL, 'd', ROW(id, NULL, NULL, NULL), NULL, 3, i);
        }
        cr_assert_eq(batch_count(f.b), N);
        for (int i = 0; i < N; i++) {
            const batch_row *r = batch_row_at(f.b, (size_t)i);
            snprintf(id, sizeof id, "%d", i);
            snprintf(amount, sizeof amount, "%d.00", i);
            cr_assert_str_eq(batch_text(f.b, &r->vals[0]), id);
            if (i % 3 == 0) {
                cr_assert_eq(r->op, BATCH_DELETE);
            } else if (i % 2 == 1) {
                cr_assert_eq(r->op, BATCH_UPSERT);
                cr_assert_str_eq(batch_text(f.b, &r->vals[1]), "0.01");
                cr_assert_str_eq(batch_text(f.b, &r->vals[2]), "n");
            } else {
                cr_assert_str_eq(batch_text(f.b, &r->vals[1]), amount);
            }
        }
        batch_clear(f.b); /* the second round reuses every allocation */
    }
    fx_free(&f);
}

/* ---- older schema versions ---- */

Test(batch, older_schema_update_leaves_new_columns_unchanged)
{
    fixture f;
    fx_init(&f, payments());
    cdc_table_schema *v1 = schema_of("public", "payments", PAY, 2); /* id, amount */
    add(&f, v1, 'u', NULL, ROW("1", "5.00"), 1, 0);
    expect_row(&f, 0, BATCH_UPDATE, ROW("1", "5.00", UNCH, UNCH));
    /* ...and a later full update fills them in. */
    add(&f, NULL, 'u', NULL, ROW("1", "6.00", "a", "m"), 1, 1);
    expect_row(&f, 0, BATCH_UPDATE, ROW("1", "6.00", "a", "m"));
    cdc_table_schema_free(v1);
    fx_free(&f);
}

Test(batch, older_schema_insert_has_null_new_columns)
{
    fixture f;
    fx_init(&f, payments());
    cdc_table_schema *v1 = schema_of("public", "payments", PAY, 2);
    add(&f, v1, 'c', NULL, ROW("1", "5.00"), 1, 0);
    expect_row(&f, 0, BATCH_UPSERT, ROW("1", "5.00", NULL, NULL));
    add(&f, v1, 'd', ROW("2", NULL), NULL, 1, 1);
    expect_row(&f, 1, BATCH_DELETE, ROW("2", NULL, NULL, NULL));
    cdc_table_schema_free(v1);
    fx_free(&f);
}

Test(batch, columns_are_matched_by_true_name_not_position)
{
    static const col reordered[] = {
        {"memo", "string", "text", false},
        {"id", "long", "bigint", true},
        {"note", "string", "text", false},
    };
    fixture f;
    fx_init(&f, payments());
    cdc_table_schema *old = schema_of("public", "payments", reordered, 3);
    add(&f, old, 'c', NULL, ROW("m", "7", "n"), 1, 0);
    expect_row(&f, 0, BATCH_UPSERT, ROW("7", NULL, "n", "m"));
    add(&f, old, 'u', NULL, ROW(UNCH, "7", "n2"), 1, 1);
    expect_row(&f, 0, BATCH_UPSERT, ROW("7", NULL, "n2", "m"));
    cdc_table_schema_free(old);
    fx_free(&f);
}

Test(batch, event_column_missing_from_batch_schema_is_an_error)
{
    static const col newer[] = {
        {"id", "long", "bigint", true},
        {"amount", "string", "numeric", false},
        {"note", "string", "text", false},
        {"memo", "string", "text", false},
        {"added", "string", "text", false},
    };
    fixture f;
    fx_init(&f, payments());
    cdc_table_schema *v3 = schema_of("public", "payments", newer, 5);
    cr_assert_eq(add_fails(&f, v3, 'c', NULL, ROW("1", "1.00", NULL, NULL, "x")), -1);
    cr_assert(strstr(f.err, "added") != NULL, "%s", f.err);
    cr_assert_eq(batch_count(f.b), 0);
    cdc_table_schema_free(v3);
    fx_free(&f);
}

Test(batch, event_of_another_table_is_an_error)
{
    fixture f;
    fx_init(&f, payments());
    cdc_table_schema *other = schema_of("public", "refunds", PAY, 4);
    cr_assert_eq(add_fails(&f, other, 'c', NULL, ROW("1", "1.00", NULL, NULL)), -1);
    cdc_table_schema_free(other);
    fx_free(&f);
}

/* ---- errors leave the batch as it was ---- */

Test(batch, key_column_without_value_is_an_error)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'c', NULL, ROW("1", "1.00", "a", NULL), 1, 0);
    size_t before = batch_count(f.b);
    cr_assert_eq(add_fails(&f, NULL, 'c', NULL, ROW(NULL, "1.00", NULL, NULL)), -1);
    cr_assert_eq(add_fails(&f, NULL, 'u', NULL, ROW(UNCH, "1.00", NULL, NULL)), -1);
    cr_assert_eq(add_fails(&f, NULL, 'd', ROW(NULL, "1.00", NULL, NULL), NULL), -1);
    /* An older version without the key column cannot name the row either. */
    static const col nokey[] = {{"amount", "string", "numeric", false}};
    cdc_table_schema *v0 = schema_of("public", "payments", nokey, 1);
    cr_assert_eq(add_fails(&f, v0, 'u', NULL, ROW("1.00")), -1);
    cdc_table_schema_free(v0);
    cr_assert_eq(batch_count(f.b), before);
    expect_row(&f, 0, BATCH_UPSERT, ROW("1", "1.00", "a", NULL));
    fx_free(&f);
}

Test(batch, event_without_its_row_is_an_error)
{
    fixture f;
    fx_init(&f, payments());
    cr_assert_eq(add_fails(&f, NULL, 'd', NULL, ROW("1", NULL, NULL, NULL)), -1);
    cr_assert_eq(add_fails(&f, NULL, 'c', ROW("1", NULL, NULL, NULL), NULL), -1);
    cr_assert_eq(add_fails(&f, NULL, 'u', NULL, NULL), -1);
    cr_assert_eq(batch_count(f.b), 0);
    fx_free(&f);
}

Test(batch, truncate_and_unknown_ops_are_refused)
{
    fixture f;
    fx_init(&f, payments());
    cr_assert_eq(add_fails(&f, NULL, 't', NULL, NULL), -1);
    cr_assert_eq(add_fails(&f, NULL, 'x', NULL, ROW("1", NULL, NULL, NULL)), -1);
    fx_free(&f);
}

Test(batch, insert_with_unchanged_value_is_an_error)
{
    fixture f;
    fx_init(&f, payments());
    cr_assert_eq(add_fails(&f, NULL, 'c', NULL, ROW("1", "1.00", UNCH, NULL)), -1);
    cr_assert_eq(batch_count(f.b), 0);
    fx_free(&f);
}

Test(batch, update_that_changes_the_key_is_an_error)
{
    fixture f;
    fx_init(&f, payments());
    add(&f, NULL, 'c', NULL, ROW("1", "1.00", NULL, NULL), 1, 0);
    cr_assert_eq(
        add_fails(&f, NULL, 'u', ROW("1", "1.00", NULL, NULL), ROW("2", "1.00", NULL, NULL)), -1);
    cr_assert_eq(batch_count(f.b), 1);
    /* Same key in before (REPLICA IDENTITY FULL) is a plain update. */
    add(&f, NULL, 'u', ROW("1", "1.00", NULL, NULL), ROW("1", "2.00", NULL, NULL), 1, 1);
    expect_row(&f, 0, BATCH_UPSERT, ROW("1", "2.00", NULL, NULL));
    fx_free(&f);
}

/* ---- keyless tables ---- */

static const col LOG[] = {
    {"at", "string", "text", false},
    {"msg", "string", "text", false},
    {"payload", "string", "jsonb", false},
};

Test(batch, keyless_rows_stay_in_event_order_unreduced)
{
    fixture f;
    fx_init(&f, schema_of("audit", "log", LOG, 3));
    cr_assert(batch_keyless(f.b));
    add(&f, NULL, 'c', NULL, ROW("t1", "a", "{}"), 1, 0);
    add(&f, NULL, 'c', NULL, ROW("t1", "a", "{}"), 1, 1); /* a duplicate row is a second row */
    add(&f, NULL, 'u', ROW("t1", "a", "{}"), ROW("t2", "b", "{}"), 1, 2);
    add(&f, NULL, 'd', ROW("t1", "a", "{}"), NULL, 1, 3);
    add(&f, NULL, 'r', NULL, ROW("t3", NULL, NULL), 1, 4);
    cr_assert_eq(batch_count(f.b), 5);
    expect_row(&f, 0, BATCH_INSERT, ROW("t1", "a", "{}"));
    cr_assert_null(batch_row_at(f.b, 0)->old);
    expect_row(&f, 1, BATCH_INSERT, ROW("t1", "a", "{}"));
    expect_row(&f, 2, BATCH_ROW_UPDATE, ROW("t2", "b", "{}"));
    expect_old(&f, 2, ROW("t1", "a", "{}"));
    expect_row(&f, 3, BATCH_ROW_DELETE, ROW(NULL, NULL, NULL));
    expect_old(&f, 3, ROW("t1", "a", "{}"));
    expect_row(&f, 4, BATCH_INSERT, ROW("t3", NULL, NULL));
    cr_assert_eq(batch_row_at(f.b, 4)->ordinal, 4);
    fx_free(&f);
}

Test(batch, keyless_update_takes_unchanged_values_from_the_old_row)
{
    fixture f;
    fx_init(&f, schema_of("audit", "log", LOG, 3));
    add(&f, NULL, 'u', ROW("t1", "a", "{\"big\":1}"), ROW("t2", "b", UNCH), 1, 0);
    expect_row(&f, 0, BATCH_ROW_UPDATE, ROW("t2", "b", "{\"big\":1}"));
    expect_old(&f, 0, ROW("t1", "a", "{\"big\":1}"));
    fx_free(&f);
}

Test(batch, keyless_update_needs_the_old_row)
{
    fixture f;
    fx_init(&f, schema_of("audit", "log", LOG, 3));
    cr_assert_eq(add_fails(&f, NULL, 'u', NULL, ROW("t2", "b", "{}")), -1);
    cr_assert_eq(batch_count(f.b), 0);
    fx_free(&f);
}

Test(batch, keyless_older_schema_compares_missing_columns_as_null)
{
    fixture f;
    fx_init(&f, schema_of("audit", "log", LOG, 3));
    cdc_table_schema *v1 = schema_of("audit", "log", LOG, 2);
    add(&f, v1, 'u', ROW("t1", "a"), ROW("t2", "b"), 1, 0);
    expect_row(&f, 0, BATCH_ROW_UPDATE, ROW("t2", "b", NULL));
    expect_old(&f, 0, ROW("t1", "a", NULL));
    add(&f, v1, 'c', NULL, ROW("t3", "c"), 1, 1);
    expect_row(&f, 1, BATCH_INSERT, ROW("t3", "c", NULL));
    cdc_table_schema_free(v1);
    fx_free(&f);
}
