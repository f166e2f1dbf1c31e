/*
 * cdc-capture against a real PostgreSQL and a Kafka-protocol broker: the
 * event contract (ops, keys, partitions, types, TOAST, identifiers, schema
 * topic). Fault paths are in test_capture_faults.c.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc/avro_bin.h"
#include "harness_cdc.h"

static th_pg pg;
static th_broker broker;
static th_proc cap;
static PGconn *db;
static cdc_registry *reg;

static void setup(void)
{
    th_pg_start(&pg);
    th_pg_createdb(&pg, "src");
    db = th_pg_connect(&pg, "src");
    th_broker_start(&broker, 1);
    reg = cdc_registry_new();
}

static void teardown(void)
{
    if (cap.pid)
        th_proc_stop(&cap, 10000);
    if (db)
        PQfinish(db);
    cdc_registry_destroy(reg);
    th_broker_stop(&broker);
    th_pg_stop(&pg);
}

TestSuite(capture, .init = setup, .fini = teardown, .timeout = 180);

static th_msgs *read_table(const char *schema, const char *table, size_t want)
{
    char topic[512];
    th_topic(schema, table, topic, sizeof topic);
    th_msgs *m = th_read_topic(broker.bootstrap, topic, want, 30000, reg);
    cr_assert_geq(m->n, want, "%s: %zu messages, wanted %zu", topic, m->n, want);
    return m;
}

/* The single event of `m` whose key JSON is `key` and op is `op`. */
static const th_msg *find(const th_msgs *m, const char *key, char op, int nth)
{
    for (size_t i = 0; i < m->n; i++) {
        if (!m->v[i].value || !m->v[i].key_json || strcmp(m->v[i].key_json, key) != 0)
            continue;
        cdc_event ev;
        cdc_event_init(&ev);
        cdc_table_schema *s = th_decode(broker.bootstrap, reg, &m->v[i], &ev);
        char got = ev.op;
        cdc_table_schema_free(s);
        cdc_event_free(&ev);
        if (got == op && nth-- == 0)
            return &m->v[i];
    }
    cr_assert_fail("no '%c' event with key %s", op, key);
    return NULL;
}

Test(capture, insert_update_delete_produce_keyed_events)
{
    th_sql(db, "CREATE TABLE pay (id bigint PRIMARY KEY, amount numeric(18,2) NOT NULL, "
               "memo text)");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(db, "INSERT INTO pay VALUES (1, 10.50, 'first'), (2, -0.01, NULL)");
    th_sql(db, "UPDATE pay SET amount = 99999999999999.99 WHERE id = 1");
    th_sql(db, "DELETE FROM pay WHERE id = 2");

    th_msgs *m = read_table("public", "pay", 5);
    cr_assert_eq(m->n, 5, "c, c, u, d and a tombstone: got %zu", m->n);

    cdc_event ev;
    cdc_event_init(&ev);
    const th_msg *c1 = find(m, "{\"id\": 1}", 'c', 0);
    cdc_table_schema *s = th_decode(broker.bootstrap, reg, c1, &ev);
    cr_assert_str_eq(th_col(s, &ev, true, "amount"), "10.50");
    cr_assert_str_eq(th_col(s, &ev, true, "memo"), "first");
    cr_assert_not(ev.has_before);
    cr_assert_str_eq(cdc_event_str(&ev, ev.schema_off), "public");
    cr_assert_str_eq(cdc_event_str(&ev, ev.table_off), "pay");
    char dbname[256];
    cr_assert_str_eq(cdc_event_str(&ev, ev.db_off), th_pg_dbname(&pg, "src", dbname, sizeof dbname));
    cr_assert_str_eq(ev.snapshot, "false");
    uint64_t insert_lsn = ev.commit_lsn;
    cr_assert(ev.txid > 0 && ev.lsn > 0 && ev.source_ts_ms > 1700000000000);
    cdc_table_schema_free(s);

    const th_msg *c2 = find(m, "{\"id\": 2}", 'c', 0);
    s = th_decode(broker.bootstrap, reg, c2, &ev);
    cr_assert_str_eq(th_col(s, &ev, true, "amount"), "-0.01");
    cr_assert_null(th_col(s, &ev, true, "memo"), "NULL stays NULL");
    cr_assert_eq(ev.commit_lsn, insert_lsn, "same transaction");
    cr_assert_eq(ev.ordinal, 1, "second event of its transaction");
    cdc_table_schema_free(s);

    const th_msg *u1 = find(m, "{\"id\": 1}", 'u', 0);
    cr_assert_eq(u1->partition, c1->partition, "one key, one partition");
    cr_assert_gt(u1->offset, c1->offset);
    s = th_decode(broker.bootstrap, reg, u1, &ev);
    cr_assert_str_eq(th_col(s, &ev, true, "amount"), "99999999999999.99");
    cr_assert_gt(ev.commit_lsn, insert_lsn);
    cr_assert_eq(ev.ordinal, 0);
    cdc_table_schema_free(s);

    const th_msg *d2 = find(m, "{\"id\": 2}", 'd', 0);
    cr_assert_eq(d2->partition, c2->partition);
    s = th_decode(broker.bootstrap, reg, d2, &ev);
    cr_assert(ev.has_before && !ev.has_after);
    cr_assert_str_eq(th_col(s, &ev, false, "id"), "2");
    cdc_table_schema_free(s);
    /* The tombstone follows the delete in the same partition. */
    size_t cnt;
    const th_msg *part = th_msgs_partition(m, d2->partition, &cnt);
    const th_msg *last = &part[cnt - 1];
    cr_assert_null(last->value, "delete must be followed by a tombstone");
    cr_assert_str_eq(th_key_json(last), "{\"id\": 2}");
    cr_assert_gt(last->offset, d2->offset);

    /* avro-c decodes the same bytes from the schema topic alone. */
    cr_assert_not_null(c1->value_json, "%s", c1->decode_error ? c1->decode_error : "");
    cr_assert(strstr(c1->value_json, "\"op\": \"c\"") != NULL, "%s", c1->value_json);
    cr_assert(strstr(c1->value_json, "\"connector\": \"postgresql\"") != NULL);
    cdc_event_free(&ev);
    th_msgs_free(m);
}

Test(capture, truncate_reaches_every_partition)
{
    th_sql(db, "CREATE TABLE t (id int PRIMARY KEY)");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(db, "INSERT INTO t SELECT generate_series(1, 20)");
    th_sql(db, "TRUNCATE t");
    th_msgs *m = read_table("public", "t", 20);
    /* Wait for the truncates too: read until nothing more arrives. */
    th_msgs_free(m);
    m = read_table("public", "t", 24);
    int parts[64] = {0};
    int max_part = 0;
    for (size_t i = 0; i < m->n; i++) {
        cdc_event ev;
        cdc_event_init(&ev);
        cdc_table_schema *s = th_decode(broker.bootstrap, reg, &m->v[i], &ev);
        if (ev.op == 't') {
            cr_assert_null(m->v[i].key, "truncate has a null key");
            parts[m->v[i].partition]++;
        }
        if (m->v[i].partition > max_part)
            max_part = m->v[i].partition;
        cdc_table_schema_free(s);
        cdc_event_free(&ev);
    }
    int nparts = broker.external ? max_part + 1 : 4;
    for (int p = 0; p < nparts; p++)
        cr_assert_eq(parts[p], 1, "partition %d has %d truncate events", p, parts[p]);
    /* Every partition's truncate comes after that partition's inserts. */
    for (int p = 0; p < nparts; p++) {
        size_t cnt;
        const th_msg *run = th_msgs_partition(m, p, &cnt);
        cr_assert_null(run[cnt - 1].key, "partition %d does not end with the truncate", p);
    }
    th_msgs_free(m);
}

Test(capture, primary_key_update_becomes_delete_and_insert)
{
    th_sql(db, "CREATE TABLE acct (id int PRIMARY KEY, owner text)");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(db, "INSERT INTO acct VALUES (1, 'ann')");
    th_sql(db, "UPDATE acct SET id = 1000 WHERE id = 1");
    th_msgs *m = read_table("public", "acct", 4);
    cr_assert_eq(m->n, 4, "c, then d + tombstone + c: %zu", m->n);
    const th_msg *d = find(m, "{\"id\": 1}", 'd', 0);
    const th_msg *c = find(m, "{\"id\": 1000}", 'c', 0);
    cdc_event ev;
    cdc_event_init(&ev);
    cdc_table_schema *s = th_decode(broker.bootstrap, reg, d, &ev);
    int64_t d_ord = ev.ordinal;
    uint64_t lsn = ev.commit_lsn;
    cr_assert_str_eq(th_col(s, &ev, false, "id"), "1");
    cdc_table_schema_free(s);
    s = th_decode(broker.bootstrap, reg, c, &ev);
    cr_assert_eq(ev.commit_lsn, lsn, "one transaction");
    cr_assert_eq(ev.ordinal, d_ord + 1);
    cr_assert_str_eq(th_col(s, &ev, true, "owner"), "ann");
    cdc_table_schema_free(s);
    cdc_event_free(&ev);
    th_msgs_free(m);
}

/*
 * A key change whose new row cannot be encoded (NaN in a numeric(p,s),
 * which an Avro decimal cannot hold) stops cdc-capture before any part of
 * the change is sent: not the delete of the old key without its insert.
 */
Test(capture, a_key_change_that_cannot_be_encoded_sends_nothing_of_it)
{
    th_sql(db, "CREATE TABLE acct (id int PRIMARY KEY, amount numeric(18,2))");
    /* No linger: an event produced leaves at once. */
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log",
                     (const char *const[]){"kafka.linger.ms=0", NULL});
    th_sql(db, "INSERT INTO acct VALUES (1, 1.50)");
    cr_assert(th_wait_slot(db, "cdc", th_wal_lsn(db), 60000));
    th_sql(db, "UPDATE acct SET id = 2, amount = 'NaN' WHERE id = 1");
    cr_assert_eq(th_proc_wait(&cap, 60000, NULL), 0, "cdc-capture must stop at the change");
    cr_assert_eq(th_proc_exit_code(&cap), 1);
    char topic[512];
    th_topic("public", "acct", topic, sizeof topic);
    th_msgs *m = th_read_topic(broker.bootstrap, topic, 0, 5000, reg);
    cr_assert_eq(m->n, 1, "only the insert of id 1 may be in Kafka: %zu messages", m->n);
    th_msgs_free(m);
    /* Nor was any of it produced and left undelivered at the exit. */
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/capture.log", th_test_dir());
    cr_assert(th_wait_log(path, "cannot encode", 100), "the log must say why");
    cr_assert_not(th_wait_log(path, "were not acknowledged", 100),
                  "part of the change was produced");
}

/*
 * Every type family: each decoded value, turned back into PostgreSQL input
 * text, must be equal to the source value when cast to the column type.
 */
static const char *TYPES_DDL =
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');"
    "CREATE DOMAIN cents AS bigint CHECK (VALUE >= 0);"
    "CREATE DOMAIN amount AS numeric(18,2);"
    "CREATE DOMAIN payout AS amount CHECK (VALUE > 0);" /* a domain over a domain */
    "CREATE DOMAIN feeling AS mood;"
    "CREATE DOMAIN verdict AS feeling;"
    "CREATE TABLE types (id int PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, f4 float4, "
    " f8 float8, n182 numeric(18,2), n380 numeric(38,0), n numeric, nneg numeric(5,-2), "
    " d date, t time, ts timestamp, tstz timestamptz, u uuid, by bytea, tx text, "
    " vc varchar(10), ch char(3), js json, jb jsonb, arr int[], tarr text[], m mood, "
    " iv interval, ttz timetz, money_ money, inet_ inet, rng int4range, c cents, "
    " big text, po payout, ve verdict)";

static const char *TYPES_COLS[] = {
    "b",  "i2",   "i4",     "i8",    "f4",  "f8", "n182", "n380", "n",  "nneg", "d",    "t",
    "ts", "tstz", "u",      "by",    "tx",  "vc", "ch",   "js",   "jb", "arr",  "tarr", "m",
    "iv", "ttz",  "money_", "inet_", "rng", "c",  "big",  "po",   "ve", NULL};

Test(capture, every_type_family_round_trips_exactly)
{
    th_sql(db, "%s", TYPES_DDL);
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(db, "INSERT INTO types VALUES (1, true, -32768, 2147483647, -9223372036854775808, "
               " 3.4028235e38, 2.2250738585072014e-308, -1234567890123456.78, "
               " 99999999999999999999999999999999999999, "
               " 123456789012345678901234567890.123456789012345678901234567890, 12300, "
               " '0044-03-15 BC', '24:00:00', '2026-11-24 08:14:00.123456', "
               " '1999-12-31 23:59:59.999999-05', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', "
               " '\\x00ff10'::bytea, 'tab\there \"quoted\" ünïcödé', 'abc', 'ab', "
               " '{\"a\": [1, 2.50]}', '{\"b\": {\"c\": null}}', '{1,NULL,3}', "
               " '{\"x,y\",\"\"}', 'happy', '1 year 2 mons -3 days 04:05:06.7', '10:11:12+05:30', "
               " 12.34, '192.168.0.1/24', '[1,10)', 42, repeat('x', 100), 1234.5, 'ok')");
    th_sql(db, "INSERT INTO types (id, f4, f8, d, ts, tstz, n) VALUES "
               "(2, 'NaN', '-Infinity', 'infinity', '-infinity', 'infinity', 'NaN'), "
               "(3, '-0', '1e-320', '2000-02-29', '294200-12-31 23:59:59', "
               " '4713-01-01 00:00:00+00 BC', '-0.000000000000000000001')");
    th_sql(db, "INSERT INTO types (id) VALUES (4)"); /* every other column NULL */

    th_msgs *m = read_table("public", "types", 4);
    cdc_event ev;
    cdc_event_init(&ev);
    for (size_t i = 0; i < m->n; i++) {
        cdc_table_schema *s = th_decode(broker.bootstrap, reg, &m->v[i], &ev);
        const char *id = th_col(s, &ev, true, "id");
        for (const char **c = TYPES_COLS; *c; c++) {
            int f = cdc_table_schema_find(s, *c);
            const char *text = th_col(s, &ev, true, *c);
            const char *pgtype = s->fields[f].pg_type;
            char *res;
            if (text) {
                char *lit = PQescapeLiteral(db, text, strlen(text));
                /* As text: json has no equality operator, and equal values of
                 * every type have one text form. */
                res = th_sql_value(db,
                                   "SELECT %s::text IS NOT DISTINCT FROM (%s::%s)::text "
                                   "FROM types WHERE id = %s",
                                   *c, lit, pgtype, id);
                PQfreemem(lit);
            } else {
                res = th_sql_value(db, "SELECT %s IS NULL FROM types WHERE id = %s", *c, id);
            }
            cr_assert_str_eq(res, "t", "row %s column %s (%s): decoded '%s' differs from source",
                             id, *c, pgtype, text ? text : "NULL");
            free(res);
        }
        cdc_table_schema_free(s);
    }
    /* Spot-check the mapping itself, not only the round trip. */
    const th_msg *row1 = find(m, "{\"id\": 1}", 'c', 0);
    cr_assert(strstr(row1->value_json, "\"u\": {\"string\": \"a0eebc99") != NULL, "%s",
              row1->value_json);
    cdc_table_schema *s = th_decode(broker.bootstrap, reg, row1, &ev);
    int f = cdc_table_schema_find(s, "n182");
    cr_assert_eq(s->fields[f].type.conv, CDC_CONV_DECIMAL);
    cr_assert_eq(s->fields[f].type.scale, 2);
    cr_assert_eq(s->fields[cdc_table_schema_find(s, "n")].type.conv, CDC_CONV_STRING,
                 "numeric without typmod must be an exact string");
    cr_assert_eq(s->fields[cdc_table_schema_find(s, "tstz")].type.conv, CDC_CONV_TIMESTAMPTZ);
    cr_assert_eq(s->fields[cdc_table_schema_find(s, "ts")].type.conv, CDC_CONV_TIMESTAMP);
    cr_assert_eq(s->fields[cdc_table_schema_find(s, "c")].type.conv, CDC_CONV_LONG);
    cr_assert_str_eq(s->fields[cdc_table_schema_find(s, "c")].pg_domain, "public.cents");
    cr_assert_str_eq(s->fields[cdc_table_schema_find(s, "m")].pg_type, "public.mood");
    cr_assert_str_eq(s->fields[cdc_table_schema_find(s, "m")].enum_json,
                     "[\"sad\",\"ok\",\"happy\"]");
    cr_assert_str_eq(s->fields[f].pg_type, "numeric(18,2)");
    /* A domain over a domain maps as its innermost base type. */
    const cdc_field *po = &s->fields[cdc_table_schema_find(s, "po")];
    cr_assert_eq(po->type.conv, CDC_CONV_DECIMAL, "payout must be a decimal like its base");
    cr_assert_eq(po->type.scale, 2);
    cr_assert_str_eq(po->pg_type, "numeric(18,2)");
    cr_assert_str_eq(po->pg_domain, "public.payout");
    const cdc_field *ve = &s->fields[cdc_table_schema_find(s, "ve")];
    cr_assert_str_eq(ve->pg_type, "public.mood");
    cr_assert_not_null(ve->enum_json, "verdict lost its enum labels");
    cr_assert_str_eq(ve->enum_json, "[\"sad\",\"ok\",\"happy\"]");
    cdc_table_schema_free(s);
    cdc_event_free(&ev);
    th_msgs_free(m);
}

Test(capture, unchanged_toast_column_is_listed_not_sent)
{
    th_sql(db, "CREATE TABLE docs (id int PRIMARY KEY, version int, body text)");
    th_sql(db, "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(db, "INSERT INTO docs SELECT 1, 1, string_agg(md5(g::text), '') "
               "FROM generate_series(1, 300) g"); /* 9,600 bytes: stored out of line */
    th_sql(db, "UPDATE docs SET version = 2 WHERE id = 1");
    th_msgs *m = read_table("public", "docs", 2);
    cdc_event ev;
    cdc_event_init(&ev);
    const th_msg *u = find(m, "{\"id\": 1}", 'u', 0);
    cdc_table_schema *s = th_decode(broker.bootstrap, reg, u, &ev);
    cr_assert_str_eq(th_col(s, &ev, true, "version"), "2");
    int f = cdc_table_schema_find(s, "body");
    cr_assert_eq(ev.after[f].state, CDC_COL_UNCHANGED, "body must be marked unchanged");
    cr_assert(strstr(u->value_json, "\"unchanged_toast\": [\"body\"]") != NULL, "%s",
              u->value_json);
    cr_assert(strstr(u->value_json, "\"body\": null") != NULL, "no placeholder value: %s",
              u->value_json);
    cdc_table_schema_free(s);
    const th_msg *c = find(m, "{\"id\": 1}", 'c', 0);
    s = th_decode(broker.bootstrap, reg, c, &ev);
    cr_assert_eq(strlen(th_col(s, &ev, true, "body")), 9600, "the insert carries the value");
    cdc_table_schema_free(s);
    cdc_event_free(&ev);
    th_msgs_free(m);
}

/*
 * A key column stored out of line that an update leaves alone: the new row
 * lists it as unchanged, but PostgreSQL then logs the old key (flattened)
 * under any replica identity, and the event must carry the key from there.
 */
Test(capture, update_leaving_a_toasted_key_alone_carries_the_key)
{
    th_sql(db, "CREATE TABLE notes (k text PRIMARY KEY, version int)");
    th_sql(db, "ALTER TABLE notes ALTER COLUMN k SET STORAGE EXTERNAL");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    /* 2,601 bytes: out of line, yet short enough for the btree */
    th_sql(db, "INSERT INTO notes SELECT repeat('k', 2600) || g, 1 FROM generate_series(1, 2) g");
    th_sql(db, "UPDATE notes SET version = 2 WHERE k = repeat('k', 2600) || '1'");
    th_msgs *m = read_table("public", "notes", 3);
    char key[2700];
    char *ks = th_sql_value(db, "SELECT repeat('k', 2600)");
    snprintf(key, sizeof key, "{\"k\": \"%s1\"}", ks);
    free(ks);
    const th_msg *u = find(m, key, 'u', 0);
    cdc_event ev;
    cdc_event_init(&ev);
    cdc_table_schema *s = th_decode(broker.bootstrap, reg, u, &ev);
    cr_assert_str_eq(th_col(s, &ev, true, "version"), "2");
    cr_assert_eq(strlen(th_col(s, &ev, true, "k")), 2601, "after carries the key");
    cr_assert(strstr(u->value_json, "\"unchanged_toast\": []") != NULL, "%s", u->value_json);
    cdc_table_schema_free(s);
    cdc_event_free(&ev);
    th_msgs_free(m);
}

Test(capture, keyless_full_identity_table_uses_partition_zero)
{
    th_sql(db, "CREATE TABLE ledger (account int, amount numeric(10,2))");
    th_sql(db, "ALTER TABLE ledger REPLICA IDENTITY FULL");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(db, "INSERT INTO ledger SELECT g, g FROM generate_series(1, 30) g");
    th_sql(db, "UPDATE ledger SET amount = -1 WHERE account = 7");
    th_sql(db, "DELETE FROM ledger WHERE account = 8");
    th_msgs *m = read_table("public", "ledger", 32);
    cr_assert_eq(m->n, 32, "no tombstone for keyless tables: %zu", m->n);
    cdc_event ev;
    cdc_event_init(&ev);
    for (size_t i = 0; i < m->n; i++) {
        cr_assert_eq(m->v[i].partition, 0, "keyless events go to partition 0");
        cr_assert_null(m->v[i].key);
        cdc_table_schema *s = th_decode(broker.bootstrap, reg, &m->v[i], &ev);
        if (i < 30) {
            cr_assert_eq(ev.op, 'c');
            char want[16];
            snprintf(want, sizeof want, "%zu", i + 1);
            cr_assert_str_eq(th_col(s, &ev, true, "account"), want, "order must hold");
        } else if (i == 30) {
            cr_assert_eq(ev.op, 'u');
            cr_assert_str_eq(th_col(s, &ev, false, "amount"), "7.00", "full old row");
            cr_assert_str_eq(th_col(s, &ev, true, "amount"), "-1.00");
        } else {
            cr_assert_eq(ev.op, 'd');
            cr_assert_str_eq(th_col(s, &ev, false, "amount"), "8.00", "full old row");
        }
        cdc_table_schema_free(s);
    }
    cdc_event_free(&ev);
    th_msgs_free(m);
}

Test(capture, hostile_identifiers_keep_their_true_names)
{
    th_sql(db, "CREATE SCHEMA \"My Schema\"");
    th_sql(db, "CREATE TABLE \"My Schema\".\"Select \"\"x\"\"\" (\"User Id\" int PRIMARY KEY, "
               "\"select\" text, \"a-b\" text, \"a_b\" text, \"9lives\" int)");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(db, "INSERT INTO \"My Schema\".\"Select \"\"x\"\"\" VALUES (7, 'from', 'dash', "
               "'under', 9)");
    char topic[512];
    snprintf(topic, sizeof topic, "%s.My_Schema.Select__x_", th_prefix());
    th_msgs *m = th_read_topic(broker.bootstrap, topic, 1, 30000, reg);
    cr_assert_eq(m->n, 1, "topic %s (sanitised) must hold the event", topic);
    cdc_event ev;
    cdc_event_init(&ev);
    cdc_table_schema *s = th_decode(broker.bootstrap, reg, &m->v[0], &ev);
    cr_assert_str_eq(cdc_event_str(&ev, ev.schema_off), "My Schema");
    cr_assert_str_eq(cdc_event_str(&ev, ev.table_off), "Select \"x\"");
    cr_assert_str_eq(s->table_name, "Select \"x\"");
    cr_assert_str_eq(th_col(s, &ev, true, "User Id"), "7");
    cr_assert_str_eq(th_col(s, &ev, true, "select"), "from");
    cr_assert_str_eq(th_col(s, &ev, true, "a-b"), "dash");
    cr_assert_str_eq(th_col(s, &ev, true, "a_b"), "under");
    cr_assert_str_eq(th_col(s, &ev, true, "9lives"), "9");
    cr_assert_str_eq(s->fields[cdc_table_schema_find(s, "a_b")].name, "a_b_2");
    cr_assert_str_eq(th_key_json(&m->v[0]), "{\"User_Id\": 7}");
    cdc_table_schema_free(s);
    cdc_event_free(&ev);
    th_msgs_free(m);
}

Test(capture, new_column_publishes_a_new_schema_before_use)
{
    th_sql(db, "CREATE TABLE evo (id int PRIMARY KEY, a text)");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(db, "INSERT INTO evo VALUES (1, 'one')");
    th_sql(db, "ALTER TABLE evo ADD COLUMN amount numeric(12,4) NOT NULL DEFAULT 0");
    th_sql(db, "INSERT INTO evo VALUES (2, 'two', 3.1416)");
    th_msgs *m = read_table("public", "evo", 2);
    cdc_event ev;
    cdc_event_init(&ev);
    cdc_table_schema *s1 = th_decode(broker.bootstrap, reg, &m->v[0], &ev);
    cdc_table_schema *s2 = th_decode(broker.bootstrap, reg, &m->v[1], &ev);
    /* Messages are sorted by partition: find which is which. */
    cdc_table_schema *older = s1->nfields == 2 ? s1 : s2, *newer = s1->nfields == 2 ? s2 : s1;
    cr_assert_eq(older->nfields, 2);
    cr_assert_eq(newer->nfields, 3);
    cr_assert_str_eq(newer->fields[2].pg_type, "numeric(12,4)");
    cr_assert_not(newer->fields[2].nullable);
    cr_assert_str_neq(older->json, newer->json);
    cdc_table_schema_free(s1);
    cdc_table_schema_free(s2);
    cdc_event_free(&ev);
    th_msgs_free(m);

    /* The schema topic holds each schema under its fingerprint. */
    char topic[256];
    snprintf(topic, sizeof topic, "%s._schemas", th_prefix());
    th_msgs *sm = th_read_topic(broker.bootstrap, topic, 4, 10000, NULL);
    cr_assert_geq(sm->n, 3, "one key schema (unchanged by ADD COLUMN) and two value schemas");
    for (size_t i = 0; i < sm->n; i++) {
        cr_assert_eq(sm->v[i].key_len, 16, "key is 16 hex digits");
        cr_assert_not_null(sm->v[i].value);
    }
    th_msgs_free(sm);
}

/*
 * An enum label the catalog no longer has (added, used, then renamed while
 * cdc-capture was stopped) in two tables of one transaction: each change
 * makes cdc-capture reload its table once, then send the value with the
 * schema as it is. Before, the second table's reload sent the stream back
 * before the first change, whose reload came round again: forever.
 */
Test(capture, a_renamed_enum_label_in_two_tables_of_one_transaction_is_sent)
{
    th_sql(db, "CREATE TYPE mood AS ENUM ('calm', 'busy');"
               "CREATE TABLE m1 (id int PRIMARY KEY, m mood);"
               "CREATE TABLE m2 (id int PRIMARY KEY, m mood)");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture1.log", NULL);
    th_sql(db, "INSERT INTO m1 VALUES (1, 'calm'); INSERT INTO m2 VALUES (1, 'busy')");
    cr_assert(th_wait_slot(db, "cdc", th_wal_lsn(db), 60000));
    int st = th_proc_stop(&cap, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    th_sql(db, "ALTER TYPE mood ADD VALUE 'odd'");
    th_sql(db, "BEGIN; INSERT INTO m1 VALUES (2, 'odd'); INSERT INTO m2 VALUES (2, 'odd'); COMMIT");
    th_sql(db, "ALTER TYPE mood RENAME VALUE 'odd' TO 'strange'");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture2.log", NULL);
    cr_assert(th_wait_slot(db, "cdc", th_wal_lsn(db), 60000),
              "cdc-capture did not get past the transaction");
    const char *tables[] = {"m1", "m2"};
    for (int t = 0; t < 2; t++) {
        th_msgs *m = read_table("public", tables[t], 2);
        cdc_event ev;
        cdc_event_init(&ev);
        cdc_table_schema *sc =
            th_decode(broker.bootstrap, reg, find(m, "{\"id\": 2}", 'c', 0), &ev);
        cr_assert_str_eq(th_col(sc, &ev, true, "m"), "odd", "%s", tables[t]);
        cdc_table_schema_free(sc);
        cdc_event_free(&ev);
        th_msgs_free(m);
    }
}

Test(capture, password_is_never_logged)
{
    if (th_pg_external())
        cr_skip_test("creates a role, which outlives the test's databases");
    th_sql(db, "CREATE ROLE cdcuser LOGIN REPLICATION SUPERUSER PASSWORD 'Sup3rS3cret'");
    th_sql(db, "CREATE TABLE p (id int PRIMARY KEY)");
    char conninfo[1024], ci[1200];
    th_pg_conninfo(&pg, "src", conninfo, sizeof conninfo);
    /* conninfo uses user postgres; override user and add the password. */
    snprintf(ci, sizeof ci, "source.conninfo=%s user=cdcuser password=Sup3rS3cret", conninfo);
    const char *extra[] = {ci, NULL};
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", extra);
    th_sql(db, "INSERT INTO p VALUES (1)");
    th_msgs *m = read_table("public", "p", 1);
    th_msgs_free(m);
    th_proc_stop(&cap, 10000);
    char path[TH_PATH_MAX], buf[65536];
    snprintf(path, sizeof path, "%s/capture.log", th_test_dir());
    FILE *f = fopen(path, "r");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    cr_assert(strstr(buf, "Sup3rS3cret") == NULL, "password in the log:\n%s", buf);
    cr_assert(strstr(buf, "password=********") != NULL, "%s", buf);
}

/*
 * Widening a key column changes the key schema (its pg.type) and so the
 * fingerprint in the key's header, not the key's Avro body. Every event of
 * one key must stay in one partition, or a consumer of the new partition
 * could apply a key's later change before its earlier ones.
 */
Test(capture, a_key_keeps_its_partition_when_the_key_schema_changes)
{
    th_sql(db, "CREATE TABLE wk (id varchar(32) PRIMARY KEY, v int)");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(db, "INSERT INTO wk SELECT 'key-' || g, g FROM generate_series(1, 64) g");
    th_sql(db, "ALTER TABLE wk ALTER COLUMN id TYPE varchar(64)");
    th_sql(db, "UPDATE wk SET v = v + 1000");
    cr_assert(th_wait_slot(db, "cdc", th_wal_lsn(db), 60000), "the slot did not catch up");
    th_msgs *m = read_table("public", "wk", 128);
    uint64_t fp_first = 0, fp_last = 0;
    int moved = 0;
    for (size_t i = 0; i < m->n; i++) {
        const th_msg *a = &m->v[i];
        cr_assert(a->key && a->key_len > CDC_AVRO_SO_HEADER_LEN);
        uint64_t fp = 0;
        memcpy(&fp, a->key + 2, sizeof fp);
        if (!fp_first)
            fp_first = fp;
        fp_last = fp;
        for (size_t j = i + 1; j < m->n; j++) {
            const th_msg *b = &m->v[j];
            if (b->key_len == a->key_len &&
                memcmp(b->key + CDC_AVRO_SO_HEADER_LEN, a->key + CDC_AVRO_SO_HEADER_LEN,
                       a->key_len - CDC_AVRO_SO_HEADER_LEN) == 0 &&
                b->partition != a->partition)
                moved++;
        }
    }
    cr_assert_neq(fp_first, fp_last, "the key schema was expected to change with the column type");
    cr_assert_eq(moved, 0, "%d pairs of events of one key are in different partitions", moved);
    th_msgs_free(m);
}

/*
 * Data the server cannot send as UTF-8 (a byte that is not UTF-8 in an
 * SQL_ASCII database) fails the same way at every try: cdc-capture must stop
 * saying so, not retry for ever with the slot pinned. In the stream, it
 * stops without confirming the change; in the load, it names the table and
 * drops the slot it made.
 */
static PGconn *sql_ascii_db(const char *name)
{
    th_sql(db,
           "CREATE DATABASE %s ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' "
           "LC_CTYPE 'C'",
           name);
    PGconn *c = th_pg_connect(&pg, name);
    th_sql(c, "CREATE TABLE notes (id int PRIMARY KEY, body text)");
    return c;
}

static void assert_stops(const char *needle)
{
    cr_assert_eq(th_proc_wait(&cap, 30000, NULL), 0, "capture kept retrying");
    cr_assert_eq(th_proc_exit_code(&cap), 1, "exit status %d, want 1", th_proc_exit_code(&cap));
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/capture.log", th_test_dir());
    cr_assert(th_wait_log(path, needle, 0), "no '%s' in the log", needle);
    cr_assert(th_wait_log(path, "invalid byte sequence", 0), "the server's reason");
}

Test(capture, a_change_the_server_cannot_send_as_utf8_stops_capture)
{
    if (th_pg_external())
        cr_skip_test("creates a database");
    PGconn *c = sql_ascii_db("ascii");
    th_sql(c, "INSERT INTO notes VALUES (1, 'plain')");
    th_capture_start(&cap, &pg, "ascii", broker.bootstrap, "capture.log",
                     (const char *const[]){"slot.name=ascii", NULL});
    th_sql(c, "INSERT INTO notes VALUES (2, E'caf\\xe9')");
    assert_stops("cannot send the change after");
    cr_assert_eq(th_sql_long(c, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = "
                                "'ascii' AND confirmed_flush_lsn < pg_current_wal_lsn()"),
                 1, "the slot stays before the change");
    PQfinish(c);
}

Test(capture, a_row_the_server_cannot_send_as_utf8_stops_the_load)
{
    if (th_pg_external())
        cr_skip_test("creates a database");
    PGconn *c = sql_ascii_db("ascii");
    th_sql(c, "INSERT INTO notes VALUES (1, 'plain'), (2, E'caf\\xe9')");
    th_capture_spawn(&cap, &pg, "ascii", broker.bootstrap, "capture.log", NULL,
                     (const char *const[]){"slot.name=ascii", NULL});
    assert_stops("reading public.notes");
    cr_assert_eq(th_sql_long(c, "SELECT count(*) FROM pg_replication_slots"), 0,
                 "the load's slot is dropped");
    PQfinish(c);
}
