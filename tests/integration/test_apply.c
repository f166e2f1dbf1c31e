/*
 * cdc-apply end to end: PostgreSQL "src" -> cdc-capture -> Kafka ->
 * cdc-apply -> PostgreSQL "dst" (two databases of one cluster). Every test
 * ends with the target equal to the source row by row (converge()):
 * types, key changes, schema evolution, truncates, keyless tables and
 * replayed events. Fault paths are in test_apply_faults.c.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness_cdc.h"

static th_pg pg;
static th_broker broker;
static th_proc cap, app;
static PGconn *src, *dst;

static void setup(void)
{
    th_pg_start_src_dst(&pg, &src, &dst);
    th_broker_start(&broker, 1);
}

static void teardown(void)
{
    if (app.pid)
        th_proc_stop(&app, 10000);
    if (cap.pid)
        th_proc_stop(&cap, 10000);
    th_broker_stop(&broker);
    th_pg_stop_src_dst(&pg, &src, &dst);
}

TestSuite(apply, .init = setup, .fini = teardown, .timeout = 240);

#define CONVERGE_MS 60000

static void start_pipeline(const char *const *apply_extra)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", apply_extra);
}

/* SIGTERM: a clean stop is exit 0 (and, under ASan, no leak report). */
static void stop_clean(th_proc *p, const char *what)
{
    int st = th_proc_stop(p, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: exit status %d after SIGTERM", what,
              th_proc_exit_code(p));
}

/* The target equals the source for `tables`, while cdc-apply keeps running. */
static void converge(const char *const *tables, int timeout_ms)
{
    th_assert_converge_alive(&pg, "src", "dst", tables, timeout_ms, &app);
}

static void assert_running(th_proc *p, const char *what)
{
    cr_assert_eq(th_proc_wait(p, 0, NULL), -1, "%s exited (status %d)", what,
                 th_proc_exit_code(p));
}

/*
 * Columns (name, format_type, NOT NULL) and primary key of `table`, as one
 * string; the caller frees. A domain is shown as its base type: the event
 * schema names the domain but cannot carry its constraint, so the target
 * column has the base type.
 */
static char *table_shape(PGconn *c, const char *table)
{
    return th_sql_value(
        c,
        "SELECT string_agg(a.attname || ' ' || "
        "CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) "
        "ELSE format_type(a.atttypid, a.atttypmod) END || "
        "CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY a.attnum) || "
        "' | ' || coalesce((SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = '%s'::regclass AND contype = 'p'), 'no primary key') "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = '%s'::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        table, table);
}

static void assert_same_shape(const char *table)
{
    char *s = table_shape(src, table), *d = table_shape(dst, table);
    cr_assert_str_eq(d, s, "%s: target columns differ from the source:\n  target: %s\n  source: %s",
                     table, d, s);
    free(s);
    free(d);
}

/* ---- 1. every type family through inserts, updates and deletes ---------- */

static const char *MIXED_DDL =
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');"
    "CREATE TABLE pay (id bigint PRIMARY KEY, amount numeric(18,2) NOT NULL, "
    " at timestamptz, memo text, raw bytea, doc json, docb jsonb, tags text[], nums int[], "
    " st mood, ref uuid, due date, version int NOT NULL DEFAULT 1, body text);"
    "ALTER TABLE pay ALTER COLUMN body SET STORAGE EXTERNAL;"
    "CREATE TABLE acct (region text, no int, owner varchar(40) NOT NULL, "
    " balance numeric(18,2), opened date, meta jsonb, PRIMARY KEY (region, no));"
    "CREATE TABLE fx (pair char(7) PRIMARY KEY, rate float8, r4 real, since timestamp, "
    " span interval, flag bool, tiny smallint, n numeric, t time, tz timetz, m money);"
    "CREATE DOMAIN cents AS bigint CHECK (VALUE >= 0);"
    "CREATE TABLE link (a int, b text, c cents, PRIMARY KEY (a, b))";

/* Rows [from, to] of pay: every 7th has NULLs, every 10th a TOASTed body. */
static void insert_pay(PGconn *c, int from, int to)
{
    th_sql(c,
           "INSERT INTO pay (id, amount, at, memo, raw, doc, docb, tags, nums, st, ref, due, "
           " body) "
           "SELECT g, g * 1.25 - 100, "
           " timestamptz '2024-02-29 23:59:59.123456+00' + g * interval '1 hour 7.5 sec', "
           " CASE WHEN g %% 7 = 0 THEN NULL ELSE "
           "  E'tab\\there\\nnew line \\\\ back \"q\" ''s'' ünïcödé ✓ € ' || g END, "
           " CASE WHEN g %% 7 = 0 THEN NULL ELSE decode(md5(g::text) || '00ff0a09', 'hex') END, "
           " json_build_object('g', g, 'nested', json_build_array(1, 2.50, 'x\ty')), "
           " jsonb_build_object('k', g, 'u', 'ü', 'n', NULL), "
           " ARRAY['a,b', 'c\"d', NULL, 'e f'], ARRAY[g, NULL, -g], "
           " (ARRAY['sad', 'ok', 'happy'])[1 + g %% 3]::mood, "
           " CASE WHEN g %% 7 = 0 THEN NULL ELSE md5('u' || g)::uuid END, "
           " date '2000-02-28' + g, "
           " CASE WHEN g %% 10 = 0 THEN (SELECT string_agg(md5(g::text || x::text), '') "
           "   FROM generate_series(1, 300) x) ELSE 'short ' || g END "
           "FROM generate_series(%d, %d) g",
           from, to);
}

Test(apply, mixed_workload_converges_with_types_kept)
{
    th_sql(src, "%s", MIXED_DDL);
    start_pipeline((const char *const[]){"batch.max.events=300", NULL});

    insert_pay(src, 1, 150);
    insert_pay(src, 151, 300);
    th_sql(src, "INSERT INTO acct SELECT r, g, 'owner ' || g, g * 10.01, date '2020-01-01' + g, "
                "jsonb_build_object('g', g) FROM generate_series(1, 40) g, "
                "unnest(ARRAY['eu', 'us', 'Zürich']) r");
    th_sql(src, "INSERT INTO fx VALUES "
                "('EUR/USD', 1.0842, 1.0842, '2024-01-01 10:00:00.5', '1 day 02:03:04', true, "
                " -32768, 'NaN', '24:00:00', '10:11:12+05:30', 12.34), "
                "('USD/JPY', 'Infinity', '-Infinity', 'infinity', '-1 year -2 mons +3 days', "
                " false, 32767, '-0.000000000000000000001', '00:00:00', '23:59:59.999999-12', "
                " -0.01), "
                "('GBP/CHF', -0.0, 'NaN', '-infinity', NULL, NULL, NULL, "
                " 123456789012345678901234567890.123456789, NULL, NULL, NULL)");
    /* Updates that leave the TOASTed body alone (sent as unchanged), in
     * separate transactions and together with other columns. */
    th_sql(src, "UPDATE pay SET version = version + 1 WHERE id %% 10 = 0");
    th_sql(src, "UPDATE pay SET version = version + 1, amount = amount + 0.01 WHERE id %% 20 = 0");
    th_sql(src, "UPDATE pay SET amount = -amount, memo = NULL, tags = '{}' WHERE id %% 3 = 0");
    th_sql(src, "UPDATE pay SET body = body || 'tail' WHERE id = 30");
    th_sql(src, "DELETE FROM pay WHERE id %% 11 = 0");
    th_sql(src, "BEGIN;"
                "UPDATE pay SET st = 'sad', docb = docb || '{\"z\": [true]}' WHERE id = 40;"
                "DELETE FROM pay WHERE id = 41;"
                "INSERT INTO pay (id, amount) VALUES (1000, 0), (1001, 1);"
                "UPDATE pay SET memo = 'inserted then updated' WHERE id = 1000;"
                "DELETE FROM pay WHERE id = 1001;"
                "UPDATE pay SET version = 9 WHERE id = 50;"
                "COMMIT");
    th_sql(src, "UPDATE acct SET balance = NULL, meta = meta || '{\"x\": 1}' WHERE no %% 4 = 0");
    th_sql(src, "DELETE FROM acct WHERE region = 'us' AND no > 30");
    th_sql(src, "UPDATE fx SET rate = 'NaN', t = NULL WHERE pair = 'EUR/USD'");
    th_sql(src, "INSERT INTO link SELECT g %% 5, 'b' || g, g FROM generate_series(1, 30) g");
    th_sql(src, "DELETE FROM link WHERE a = 2; UPDATE link SET b = b || '!' WHERE a = 3");
    th_sql(src, "INSERT INTO link VALUES (2, 'b2', 0)");
    insert_pay(src, 301, 400);

    converge((const char *const[]){"pay", "acct", "fx", "link", NULL}, CONVERGE_MS);
    assert_same_shape("pay");
    assert_same_shape("acct");
    assert_same_shape("fx");
    assert_same_shape("link");
    char *sl = th_sql_value(src, "SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) "
                                 "FROM pg_enum WHERE enumtypid = 'mood'::regtype");
    char *dl = th_sql_value(dst, "SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) "
                                 "FROM pg_enum WHERE enumtypid = 'mood'::regtype");
    cr_assert_str_eq(dl, sl, "enum labels");
    free(sl);
    free(dl);
    /* The TOASTed bodies are really there, not NULL or a placeholder. */
    long big = th_sql_long(src, "SELECT count(*) FROM pay WHERE length(body) >= 9600");
    cr_assert_gt(big, 30);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM pay WHERE length(body) >= 9600"), big);
    assert_running(&app, "cdc-apply");
    stop_clean(&app, "cdc-apply");
}

/*
 * target.connections: the batches are written over that many connections
 * (partitions spread over them), and a restart with another number resumes
 * from the same recorded positions.
 */
Test(apply, batches_are_written_over_the_configured_connections)
{
    th_sql(src, "CREATE TABLE pay (id int PRIMARY KEY, amount numeric(18,2), memo text)");
    start_pipeline((const char *const[]){"target.connections=3", "batch.max.events=500", NULL});
    th_sql(src, "INSERT INTO pay SELECT g, g * 0.25, 'm' || g FROM generate_series(1, 3000) g");
    th_sql(src, "UPDATE pay SET amount = -amount WHERE id %% 3 = 0");
    th_sql(src, "DELETE FROM pay WHERE id %% 7 = 0");
    const char *const tables[] = {"pay", NULL};
    converge(tables, CONVERGE_MS);
    const char *conns = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND application_name = 'cdc-apply'";
    cr_assert_eq(th_sql_long(dst, "%s", conns), 3, "cdc-apply should hold 3 target connections");
    /* Every partition of the topic got events and a recorded position. */
    char topic[256];
    th_topic("public", "pay", topic, sizeof topic);
    long parts =
        th_sql_long(dst, "SELECT count(*) FROM cdc.apply_positions WHERE topic = '%s'", topic);
    cr_assert_geq(parts, 3, "only %ld partitions recorded: the writers were not all used", parts);
    stop_clean(&app, "cdc-apply");

    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply2.log",
                   (const char *const[]){"target.connections=1", NULL});
    th_sql(src, "UPDATE pay SET memo = 'one connection' WHERE id %% 2 = 0");
    th_sql(src, "INSERT INTO pay SELECT g, g, 'late' FROM generate_series(3001, 3500) g");
    converge(tables, CONVERGE_MS);
    cr_assert_eq(th_sql_long(dst, "%s", conns), 1);
    stop_clean(&app, "cdc-apply");
}

/*
 * A quiet stream does not wait for batch.max.ms: with the writers free, what
 * has arrived is applied at once. batch.max.ms is ten minutes here, so each
 * step would wait that long if a batch only went out when full or late.
 */
Test(apply, a_quiet_stream_is_applied_without_waiting_for_batch_max_ms)
{
    th_sql(src, "CREATE TABLE pay (id int PRIMARY KEY, amount numeric(18,2))");
    start_pipeline((const char *const[]){"batch.max.ms=600000", NULL});
    const char *const tables[] = {"pay", NULL};
    th_sql(src, "INSERT INTO pay VALUES (1, 1.00)");
    converge(tables, CONVERGE_MS);
    for (int i = 2; i <= 4; i++) {
        th_sql(src, "UPDATE pay SET amount = amount + 1");
        th_sql(src, "INSERT INTO pay VALUES (%d, %d.25)", i, i);
        converge(tables, CONVERGE_MS);
    }
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM pay"), 4);
    stop_clean(&app, "cdc-apply");
}

/*
 * Six new tables sharing one new enum type, one row each, in one batch: the
 * rows land on different writers, and the type must be created once, not
 * by two writers at the same time (the loser would fail on a duplicate
 * pg_type row and send the batch down the event-by-event path).
 */
Test(apply, new_tables_sharing_a_new_enum_type_are_created_once)
{
    th_sql(src, "CREATE TYPE state AS ENUM ('open', 'settled', 'void')");
    for (int i = 1; i <= 6; i++)
        th_sql(src, "CREATE TABLE e%d (id int PRIMARY KEY, s state NOT NULL)", i);
    start_pipeline((const char *const[]){"target.connections=2", NULL});
    th_sql(src, "BEGIN; INSERT INTO e1 VALUES (1, 'open'); INSERT INTO e2 VALUES (2, 'settled');"
                "INSERT INTO e3 VALUES (3, 'void'); INSERT INTO e4 VALUES (4, 'open');"
                "INSERT INTO e5 VALUES (5, 'settled'); INSERT INTO e6 VALUES (6, 'void'); COMMIT");
    converge((const char *const[]){"e1", "e2", "e3", "e4", "e5", "e6", NULL}, CONVERGE_MS);
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/apply.log", th_test_dir());
    cr_assert(!th_wait_log(path, "rejected a batch", 100),
              "creating the tables collided between the writers");
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM pg_type WHERE typname = 'state'"), 1);
    stop_clean(&app, "cdc-apply");
}

/* Names that need quoting everywhere: schema, table, columns, a key column. */
Test(apply, hostile_identifiers_keep_their_true_names)
{
    th_sql(src, "CREATE SCHEMA \"My Schema\";"
                "CREATE TABLE \"My Schema\".\"Select \"\"x\"\"\" (\"User Id\" int, "
                "\"select\" text, \"a-b\" text, \"a_b\" text, \"9lives\" int, \"Größe\" text, "
                "PRIMARY KEY (\"User Id\", \"select\"))");
    start_pipeline(NULL);
    const char *t = "\"My Schema\".\"Select \"\"x\"\"\"";
    th_sql(src, "INSERT INTO %s SELECT g, 'from', 'dash' || g, 'under', g, 'ß' FROM "
                "generate_series(1, 20) g",
           t);
    th_sql(src, "UPDATE %s SET \"a-b\" = NULL, \"Größe\" = 'XL' WHERE \"User Id\" < 5", t);
    th_sql(src, "DELETE FROM %s WHERE \"User Id\" = 7", t);
    th_sql(src, "UPDATE %s SET \"select\" = 'where' WHERE \"User Id\" = 8", t);
    converge((const char *const[]){t, NULL}, CONVERGE_MS);
    assert_same_shape(t);
    stop_clean(&app, "cdc-apply");
}

/* ---- 2. primary-key updates -------------------------------------------- */

Test(apply, primary_key_update_moves_the_row)
{
    th_sql(src, "CREATE TABLE acct (id int PRIMARY KEY, owner text NOT NULL, "
                "balance numeric(18,2), note text)");
    start_pipeline(NULL);
    th_sql(src, "INSERT INTO acct SELECT g, 'owner ' || g, g * 1.5, 'n' || g "
                "FROM generate_series(1, 20) g");
    th_sql(src, "UPDATE acct SET id = 1000 WHERE id = 1");
    th_sql(src, "UPDATE acct SET id = id + 100, balance = balance + 1 WHERE id BETWEEN 2 AND 5");
    /* Inserted, moved and updated under the new key in one transaction. */
    th_sql(src, "BEGIN; INSERT INTO acct VALUES (30, 'thirty', 30, NULL);"
                "UPDATE acct SET id = 31 WHERE id = 30;"
                "UPDATE acct SET owner = 'thirty-one' WHERE id = 31; COMMIT");
    /* A chain of moves, and a key that comes back to an old value. */
    th_sql(src, "UPDATE acct SET id = 700 WHERE id = 7");
    th_sql(src, "UPDATE acct SET id = 7000 WHERE id = 700");
    th_sql(src, "UPDATE acct SET id = 8000 WHERE id = 8");
    th_sql(src, "UPDATE acct SET id = 8 WHERE id = 8000");
    converge((const char *const[]){"acct", NULL}, CONVERGE_MS);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM acct WHERE id IN "
                                  "(1, 2, 3, 4, 5, 7, 30, 700, 8000)"),
                 0, "old keys must be gone");
    char *row = th_sql_value(dst, "SELECT acct::text FROM acct WHERE id = 1000");
    cr_assert_str_eq(row, "(1000,\"owner 1\",1.50,n1)", "all values under the new key");
    free(row);
    row = th_sql_value(dst, "SELECT acct::text FROM acct WHERE id = 103");
    cr_assert_str_eq(row, "(103,\"owner 3\",5.50,n3)");
    free(row);
    row = th_sql_value(dst, "SELECT acct::text FROM acct WHERE id = 31");
    cr_assert_str_eq(row, "(31,thirty-one,30.00,)");
    free(row);
    stop_clean(&app, "cdc-apply");
}

/*
 * A key change of a row whose TOASTed column is not touched, under REPLICA
 * IDENTITY FULL: the new key's row must still carry that column's value
 * (the old row is gone, so nothing in the target can supply it; the full
 * old image in the event does).
 */
static const char *DOCS_DDL = "CREATE TABLE docs (id int PRIMARY KEY, version int, body text);"
                              "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL";
static const char *DOCS_ROWS =
    "INSERT INTO docs SELECT g, 1, (SELECT string_agg(md5(g::text || x::text), '') "
    "FROM generate_series(1, 300) x) FROM generate_series(1, 3) g";

Test(apply, primary_key_update_keeps_unchanged_toasted_value_under_full_identity)
{
    th_sql(src, "%s", DOCS_DDL);
    th_sql(src, "ALTER TABLE docs REPLICA IDENTITY FULL");
    start_pipeline(NULL);
    th_sql(src, "%s", DOCS_ROWS);
    th_sql(src, "UPDATE docs SET id = 10 WHERE id = 1");
    th_sql(src, "UPDATE docs SET id = 20, version = 2 WHERE id = 2");
    th_sql(src, "INSERT INTO docs VALUES (4, 1, 'after the key changes')");
    converge((const char *const[]){"docs", NULL}, CONVERGE_MS);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM docs WHERE length(body) = 9600"), 3);
    stop_clean(&app, "cdc-apply");
}

/*
 * The same under REPLICA IDENTITY DEFAULT, a documented limit: the stream
 * cannot carry the value, so cdc-apply must stop at that event (never write
 * the row without it).
 */
Test(apply, primary_key_update_without_toasted_value_stops_under_default_identity)
{
    th_sql(src, "%s", DOCS_DDL);
    start_pipeline(NULL);
    th_sql(src, "%s", DOCS_ROWS);
    th_sql(src, "UPDATE docs SET id = 10 WHERE id = 1");
    int st;
    cr_assert_eq(th_proc_wait(&app, 60000, &st), 0, "cdc-apply did not stop at the event");
    cr_assert_eq(th_proc_exit_code(&app), 1, "exit status %d", th_proc_exit_code(&app));
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/apply.log", th_test_dir());
    cr_assert(th_wait_log(path, "table public.docs", 100), "the log must name the table");
    cr_assert(th_wait_log(path, "TOAST", 100), "the log must say why");
    if (th_sql_long(dst, "SELECT count(*) FROM pg_class WHERE oid = to_regclass('public.docs')"))
        cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM docs WHERE id = 10 AND body IS NULL"),
                     0, "the row must not be written without its value");
}

/*
 * An update that leaves a TOASTed column unchanged needs the target's row
 * (the value comes from there). A target that lost the row (deleted by
 * hand here) must not swallow the update: cdc-apply stops at that event.
 */
Test(apply, update_keeping_a_toasted_value_of_a_missing_row_stops)
{
    th_sql(src, "%s", DOCS_DDL);
    start_pipeline(NULL);
    th_sql(src, "%s", DOCS_ROWS);
    converge((const char *const[]){"docs", NULL}, CONVERGE_MS);
    th_sql(dst, "DELETE FROM docs WHERE id = 2");
    th_sql(src, "UPDATE docs SET version = 2 WHERE id IN (1, 2)");
    cr_assert_eq(th_proc_wait(&app, 60000, NULL), 0, "cdc-apply did not stop at the event");
    cr_assert_eq(th_proc_exit_code(&app), 1, "exit status %d", th_proc_exit_code(&app));
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/apply.log", th_test_dir());
    cr_assert(th_wait_log(path, "found no row in the target", 100), "the log must say why");
    cr_assert(th_wait_log(path, "offset", 100), "the log must name the event");
}

/*
 * A whole-row update is written as an UPDATE; one whose row the target
 * lacks (deleted by hand here) inserts it whole, as an upsert did, while
 * the others in the same batch update theirs.
 */
Test(apply, an_update_of_a_row_the_target_lacks_inserts_it)
{
    th_sql(src, "CREATE TABLE acct (id int PRIMARY KEY, bal numeric(18,2), note text);"
                "CREATE TABLE keys_only (a int, b text, PRIMARY KEY (a, b))");
    start_pipeline(NULL);
    th_sql(src, "INSERT INTO acct SELECT g, g, 'n' FROM generate_series(1, 50) g;"
                "INSERT INTO keys_only SELECT g, 'x' FROM generate_series(1, 5) g");
    converge((const char *const[]){"acct", "keys_only", NULL}, CONVERGE_MS);
    th_sql(dst, "DELETE FROM acct WHERE id IN (7, 8)");
    th_sql(src, "UPDATE acct SET bal = bal + 0.01, note = 'paid' WHERE id BETWEEN 5 AND 10");
    th_sql(src, "ALTER TABLE keys_only REPLICA IDENTITY FULL");
    th_sql(dst, "DELETE FROM keys_only WHERE a = 2");
    th_sql(src, "UPDATE keys_only SET b = 'x' WHERE a <= 3");
    converge((const char *const[]){"acct", "keys_only", NULL}, CONVERGE_MS);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM acct WHERE note = 'paid'"), 6);
    assert_running(&app, "cdc-apply");
}

/*
 * Updates that leave an out-of-line key alone, under REPLICA IDENTITY
 * DEFAULT: the events carry the key from the old key PostgreSQL logs, and
 * the target gets the new values in the right rows.
 */
Test(apply, update_leaving_a_toasted_key_alone_applies)
{
    th_sql(src, "CREATE TABLE notes (k text PRIMARY KEY, version int, memo text)");
    th_sql(src, "ALTER TABLE notes ALTER COLUMN k SET STORAGE EXTERNAL");
    start_pipeline(NULL);
    th_sql(src, "INSERT INTO notes SELECT repeat('k', 2600) || g, 1, 'm' || g "
                "FROM generate_series(1, 20) g");
    th_sql(src, "UPDATE notes SET version = 2 WHERE k LIKE '%%1'");
    th_sql(src, "UPDATE notes SET memo = NULL WHERE k LIKE '%%2'");
    th_sql(src, "DELETE FROM notes WHERE k LIKE '%%3'");
    converge((const char *const[]){"notes", NULL}, CONVERGE_MS);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM notes WHERE version = 2"), 2);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM notes"), 18);
    stop_clean(&app, "cdc-apply");
}

/* id:hex of the UTF-8 bytes of `name`, for every row of `table` in `db`; NULL without the table. */
static char *names_utf8(const char *db, const char *table)
{
    PGconn *c = th_pg_connect(&pg, db);
    char *v = NULL;
    if (th_sql_long(c, "SELECT count(*) FROM pg_class WHERE relname = '%s'", table) == 1)
        v = th_sql_value(c,
                         "SELECT string_agg(id || ':' || encode(convert_to(name, 'UTF8'), 'hex'), "
                         "',' ORDER BY id) FROM %s",
                         table);
    PQfinish(c);
    return v;
}

static void wait_same_names(const char *sdb, const char *ddb, const char *table)
{
    char *want = names_utf8(sdb, table), *got = NULL;
    cr_assert_not_null(want);
    for (int64_t end = th_now_ms() + CONVERGE_MS; th_now_ms() < end; usleep(200 * 1000)) {
        free(got);
        got = names_utf8(ddb, table);
        if (got && strcmp(got, want) == 0)
            break;
        assert_running(&app, "cdc-apply");
    }
    cr_assert(got && strcmp(got, want) == 0, "%s in %s: %s, want %s", table, ddb, got, want);
    free(want);
    free(got);
}

/*
 * Events carry UTF-8 text whatever the databases' encodings: a UTF8 source
 * into a LATIN1 target, then a LATIN1 source into a UTF8 target, loaded and
 * streamed, keep every letter (without client_encoding set by the daemons
 * the first target stored each UTF-8 byte as a LATIN1 letter, and the
 * second failed on invalid UTF-8).
 */
Test(apply, text_keeps_its_letters_across_database_encodings)
{
    if (th_pg_external())
        cr_skip_test("creates databases with another encoding");
    const char *latin = "ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'";
    th_sql(src, "CREATE DATABASE l1src %s", latin);
    th_sql(src, "CREATE DATABASE l1dst %s", latin);
    PGconn *l1 = th_pg_connect(&pg, "l1src");
    cr_assert_eq(PQsetClientEncoding(l1, "UTF8"), 0); /* this file's text */
    cr_assert_eq(PQsetClientEncoding(src, "UTF8"), 0);
    const char *rows = "(1, 'Zo\u00eb'), (2, '\u00c5ngstr\u00f6m'), (3, 'plain')";
    th_sql(src,
           "CREATE TABLE names_a (id int PRIMARY KEY, name text); "
           "INSERT INTO names_a VALUES %s",
           rows);
    th_sql(l1,
           "CREATE TABLE names_b (id int PRIMARY KEY, name text); "
           "INSERT INTO names_b VALUES %s",
           rows);

    /* UTF8 -> LATIN1: loaded, then streamed. */
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture1.log", NULL);
    th_apply_start(&app, &pg, "l1dst", broker.bootstrap, "apply1.log", NULL);
    th_sql(src, "INSERT INTO names_a VALUES (4, 'caf\u00e9 cr\u00e8me')");
    wait_same_names("src", "l1dst", "names_a");
    stop_clean(&app, "cdc-apply");
    stop_clean(&cap, "cdc-capture");

    /* LATIN1 -> UTF8 (a slot of its own: slot names are per cluster). */
    th_capture_start(&cap, &pg, "l1src", broker.bootstrap, "capture2.log",
                     (const char *const[]){"slot.name=l1", NULL});
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply2.log", NULL);
    th_sql(l1, "INSERT INTO names_b VALUES (4, 'caf\u00e9 cr\u00e8me')");
    wait_same_names("l1src", "dst", "names_b");
    stop_clean(&app, "cdc-apply");
    PQfinish(l1);
}
/*
 * money's text form follows lc_monetary: a source database in de_DE wrote
 * "1.234,56 \u20ac", which a target in C could not read, so cdc-apply
 * stopped (and a target with fewer fraction digits would scale the
 * amount). Both daemons read and write money with lc_monetary=C, so the
 * stored amount travels exactly. The locale is compiled into the test's
 * directory and handed to the server through LOCPATH.
 */
Test(apply, money_travels_exactly_whatever_lc_monetary_the_databases_use)
{
    if (th_pg_external())
        cr_skip_test("restarts the server with a locale of its own");
    char loc[TH_PATH_MAX], cmd[2 * TH_PATH_MAX + 128];
    snprintf(loc, sizeof loc, "%s/locales", th_test_dir());
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && localedef -c -i de_DE -f UTF-8 '%s/de_DE.UTF-8' >/dev/null 2>&1",
             loc, loc);
    cr_assert_eq(system(cmd), 0, "localedef de_DE failed (Debian package locales)");
    setenv("LOCPATH", loc, 1);
    th_pg_restart(&pg);
    /* The server has it; the daemons need none (glibc leaks a path list, which
     * LeakSanitizer reports, when setlocale runs under LOCPATH). */
    unsetenv("LOCPATH");
    PQreset(src);
    PQreset(dst);
    th_sql(src, "ALTER DATABASE src SET lc_monetary = 'de_DE.UTF-8'");
    PGconn *de = th_pg_connect(&pg, "src");
    char *shown = th_sql_value(de, "SELECT 1234.56::money::text");
    cr_assert(strstr(shown, "1.234,56") != NULL, "the source writes %s", shown);
    free(shown);
    PQfinish(de);
    th_sql(src, "CREATE TABLE fees (id int PRIMARY KEY, amount money);"
                "INSERT INTO fees VALUES (1, 1234.56), (2, -0.07)");
    start_pipeline(NULL);
    th_sql(src, "INSERT INTO fees VALUES (3, 92233720368547758.07); "
                "UPDATE fees SET amount = amount + 1000::money WHERE id = 1");
    const char *amounts = "(SELECT id, amount::numeric FROM fees)";
    char diff[2048];
    bool same =
        th_wait_same_rows(&pg, "src", amounts, "dst", amounts, CONVERGE_MS, diff, sizeof diff);
    assert_running(&app, "cdc-apply");
    cr_assert(same, "%s", diff);
    stop_clean(&app, "cdc-apply");
}

/*
 * Topic names are cut to Kafka's 249 characters (and end in a hash of the
 * true names); a cut that takes the dot after the schema must still name a
 * table topic cdc-apply subscribes to (before, its rows never arrived).
 */
Test(apply, a_table_whose_topic_name_is_cut_is_applied)
{
    char prefix[201], pf[220], schema[64];
    snprintf(prefix, sizeof prefix, "%s_%0190d", th_prefix(), 0);
    prefix[190] = '\0';
    snprintf(pf, sizeof pf, "topic.prefix=%s", prefix);
    memset(schema, 's', 63);
    schema[63] = '\0';
    char table[80];
    snprintf(table, sizeof table, "%s.t", schema);
    th_sql(src, "CREATE SCHEMA %s; CREATE TABLE %s (id int PRIMARY KEY, v int)", schema, table);
    const char *const extra[] = {pf, NULL};
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", extra);
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", extra);
    th_sql(src, "INSERT INTO %s SELECT g, g FROM generate_series(1, 20) g", table);
    converge((const char *const[]){table, NULL}, CONVERGE_MS);
    stop_clean(&app, "cdc-apply");
}

/* ---- 3. schema evolution ------------------------------------------------ */

/*
 * A column whose type changes at the source (numeric(18,2) -> numeric(20,4))
 * keeps every digit in a target column the operator widened first: events
 * of the new version get a batch of their own instead of the old version's
 * staging types (which rounded 1.2345 to 1.23). A target column left
 * narrower than the source's is warned about.
 */
Test(apply, a_widened_numeric_keeps_its_digits)
{
    const char *const tables[] = {"acct", NULL};
    th_sql(src, "CREATE TABLE acct (id int PRIMARY KEY, amount numeric(18,2) NOT NULL)");
    th_sql(src, "INSERT INTO acct VALUES (1, 1.25)");
    start_pipeline(NULL);
    converge(tables, CONVERGE_MS);
    stop_clean(&app, "cdc-apply");
    /* Old and new versions' updates of one row wait in Kafka together, in
     * one partition: one fetch, one batch, written through the stage. */
    th_sql(dst, "ALTER TABLE acct ALTER amount TYPE numeric(20,4)");
    th_sql(src, "UPDATE acct SET amount = 2.5 WHERE id = 1");
    th_sql(src, "ALTER TABLE acct ALTER amount TYPE numeric(20,4)");
    th_sql(src, "UPDATE acct SET amount = 1.2345 WHERE id = 1");
    cr_assert(th_wait_slot(src, "cdc", th_wal_lsn(src), 60000));
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply2.log", NULL);
    converge(tables, CONVERGE_MS);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM acct WHERE amount = 1.2345"), 1);

    th_sql(src, "ALTER TABLE acct ALTER amount TYPE numeric(24,6)");
    th_sql(src, "INSERT INTO acct VALUES (4, 4.5)");
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/apply2.log", th_test_dir());
    cr_assert(
        th_wait_log(path, "numeric(24,6) in the source but numeric(20,4) in the target", 60000),
        "a narrower target column must be warned about");
    stop_clean(&app, "cdc-apply");
}

Test(apply, column_added_while_streaming_appears_with_values)
{
    th_sql(src, "CREATE TABLE evo (id int PRIMARY KEY, a text)");
    start_pipeline(NULL);
    th_sql(src, "INSERT INTO evo SELECT g, 'a' || g FROM generate_series(1, 50) g");
    /* Old-schema and new-schema events close together (one batch likely). */
    th_sql(src, "ALTER TABLE evo ADD COLUMN amount numeric(12,4), ADD COLUMN tags text[]");
    th_sql(src, "INSERT INTO evo SELECT g, 'a' || g, g / 3.0, ARRAY['t' || g] "
                "FROM generate_series(51, 100) g");
    th_sql(src, "UPDATE evo SET amount = id * 1.0001 WHERE id <= 10");
    th_sql(src, "UPDATE evo SET a = 'changed' WHERE id BETWEEN 11 AND 15");
    /*
     * Diagnosis first (not fatal): the contract keeps each key's events in
     * one partition, in order; that is what lets cdc-apply apply partitions
     * independently. A key whose events are split over two partitions
     * across the schema change can have its update overtaken by its
     * insert, which the convergence check below then shows.
     */
    char topic[256];
    th_topic("public", "evo", topic, sizeof topic);
    cdc_registry *reg = cdc_registry_new();
    int split = 0, first_split = 0, keyed = 0;
    for (int64_t end = th_now_ms() + 30000; keyed < 115 && th_now_ms() < end;) {
        /* The 115 row events (whatever else the topic holds, e.g. truncates). */
        th_msgs *m = th_read_topic(broker.bootstrap, topic, 0, 30000, reg);
        int32_t part_of[101];
        for (int i = 0; i <= 100; i++)
            part_of[i] = -1;
        split = keyed = 0;
        for (size_t i = 0; i < m->n; i++) {
            int id = 0;
            if (!m->v[i].value || !m->v[i].key_json ||
                sscanf(m->v[i].key_json, "{\"id\": %d}", &id) != 1 || id < 1 || id > 100)
                continue;
            keyed++;
            if (part_of[id] >= 0 && part_of[id] != m->v[i].partition && !split++)
                first_split = id;
            part_of[id] = m->v[i].partition;
        }
        th_msgs_free(m);
        if (keyed < 115)
            usleep(300 * 1000);
    }
    cr_expect_eq(keyed, 115, "%d row events in %s", keyed, topic);
    cr_expect_eq(split, 0,
                 "%d keys have events in two partitions after ADD COLUMN (first: id %d): the "
                 "key's Avro schema (hence its bytes and partition) changed with the table",
                 split, first_split);
    cdc_registry_destroy(reg);
    converge((const char *const[]){"evo", NULL}, 30000);
    assert_same_shape("evo");

    /* Once more after the target caught up: a new enum-typed column. */
    th_sql(src, "CREATE TYPE tier AS ENUM ('bronze', 'silver', 'gold');"
                "ALTER TABLE evo ADD COLUMN t tier");
    th_sql(src, "UPDATE evo SET t = 'gold', amount = -1 WHERE id %% 9 = 0");
    th_sql(src, "INSERT INTO evo VALUES (101, 'new', 0.0001, '{}', 'silver')");
    converge((const char *const[]){"evo", NULL}, CONVERGE_MS);
    assert_same_shape("evo");
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM evo WHERE t = 'gold'"), 11);
    stop_clean(&app, "cdc-apply");
}

/*
 * ALTER TYPE ... ADD VALUE sends no Relation message: cdc-capture sees the
 * new label in a row, reloads the table's schema (with the labels the
 * catalog has now), and cdc-apply adds the labels to the target's type at
 * the source's positions before it writes the rows.
 */
/*
 * A NOT NULL column dropped or renamed at the source: the target kept its
 * NOT NULL (taken at auto-create), so every later insert and full-row update
 * of the table was a rejected row. cdc-apply now drops that NOT NULL
 * (auto.evolve), and leaves alone the primary key, a target column with a
 * default, an identity column, and a column the source still has.
 */
Test(apply, a_not_null_column_dropped_or_renamed_at_the_source_does_not_reject_rows)
{
    th_sql(src, "CREATE TABLE acct (id int PRIMARY KEY, note text NOT NULL, "
                "  kind text NOT NULL, v int NOT NULL);"
                "INSERT INTO acct SELECT g, 'n', 'k', g FROM generate_series(1, 10) g");
    start_pipeline(NULL);
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"acct", NULL}, CONVERGE_MS,
                             &app);
    /* Columns of the target's own, which always get a value: not to be touched. */
    th_sql(dst, "ALTER TABLE acct ADD COLUMN loaded_at timestamptz NOT NULL DEFAULT now(), "
                "ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY");
    th_sql(src, "ALTER TABLE acct DROP COLUMN note;"
                "ALTER TABLE acct RENAME COLUMN kind TO category;"
                "INSERT INTO acct VALUES (11, 'c', 11);"
                "UPDATE acct SET v = v + 100 WHERE id <= 5");
    /* A rename is a new column to the target: rows not written since have it NULL. */
    const char *cols = "(SELECT id, v, CASE WHEN id <= 5 OR id = 11 THEN category END FROM acct)";
    char diff[4096];
    bool same = th_wait_same_rows(&pg, "src", cols, "dst", cols, CONVERGE_MS, diff, sizeof diff);
    assert_running(&app, "cdc-apply");
    cr_assert(same, "%s", diff);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM pg_attribute WHERE attrelid = "
                                  "'acct'::regclass AND attnotnull AND attname IN "
                                  "('note', 'kind')"),
                 0, "NOT NULL left on a dropped or renamed column");
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM pg_attribute WHERE attrelid = "
                                  "'acct'::regclass AND attnotnull AND attname IN "
                                  "('id', 'loaded_at', 'seq', 'v')"),
                 4, "the key's, the defaulted, the identity and a kept column's NOT NULL stay");
    stop_clean(&app, "cdc-apply");
}

/*
 * batch.max.bytes ends a batch by the size of its messages: with large rows
 * the event count alone (50,000 by default) let one batch hold gigabytes.
 * 30 rows of 100 kB with a 300 kB limit: no batch may hold more than 3.
 */
Test(apply, batch_max_bytes_bounds_a_batch_of_large_rows)
{
    th_sql(src, "CREATE TABLE blobs (id int PRIMARY KEY, body text)");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(src, "INSERT INTO blobs SELECT g, repeat(md5(g::text), 3125) "
                "FROM generate_series(1, 30) g");
    cr_assert(th_wait_slot(src, "cdc", th_wal_lsn(src), 60000), "capture did not catch up");
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log",
                   (const char *const[]){"batch.max.bytes=300000", "log.level=debug", NULL});
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"blobs", NULL}, CONVERGE_MS,
                             &app);
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/apply.log", th_test_dir());
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[4096];
    int batches = 0, largest = 0;
    while (fgets(line, sizeof line, f)) {
        const char *w = strstr(line, "writing ");
        int n;
        if (w && sscanf(w, "writing %d events", &n) == 1) {
            batches++;
            largest = n > largest ? n : largest;
        }
    }
    fclose(f);
    cr_assert_geq(batches, 10, "%d batches for 30 rows of 100 kB", batches);
    cr_assert_leq(largest, 3, "a batch of %d rows of 100 kB, over 300 kB", largest);
    stop_clean(&app, "cdc-apply");
}

Test(apply, enum_labels_added_at_the_source_reach_the_target)
{
    th_sql(src, "CREATE TYPE st8 AS ENUM ('new', 'paid');"
                "CREATE TABLE inv (id int PRIMARY KEY, s st8 NOT NULL, note text)");
    start_pipeline(NULL);
    th_sql(src, "INSERT INTO inv VALUES (1, 'new', 'a'), (2, 'paid', 'b')");
    converge((const char *const[]){"inv", NULL}, CONVERGE_MS);

    th_sql(src, "ALTER TYPE st8 ADD VALUE 'refunded' AFTER 'paid'");
    th_sql(src, "ALTER TYPE st8 ADD VALUE 'draft' BEFORE 'new'");
    th_sql(src, "ALTER TYPE st8 ADD VALUE 'sent' BEFORE 'paid'");
    th_sql(src, "BEGIN; INSERT INTO inv VALUES (3, 'refunded', 'c'), (4, 'draft', 'd');"
                "UPDATE inv SET s = 'sent' WHERE id = 1; COMMIT");
    th_sql(src, "INSERT INTO inv VALUES (5, 'paid', 'e')");
    converge((const char *const[]){"inv", NULL}, CONVERGE_MS);

    const char *labels = "SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) "
                         "FROM pg_enum WHERE enumtypid = 'st8'::regtype";
    char *sl = th_sql_value(src, "%s", labels), *dl = th_sql_value(dst, "%s", labels);
    cr_assert_str_eq(sl, "draft,new,sent,paid,refunded");
    cr_assert_str_eq(dl, sl, "the target's labels, in the source's order");
    free(sl);
    free(dl);
    /* Enum order is the labels' order: the same rows sort the same way. */
    const char *order = "SELECT string_agg(id::text, ',' ORDER BY s, id) FROM inv";
    char *so = th_sql_value(src, "%s", order), *dO = th_sql_value(dst, "%s", order);
    cr_assert_str_eq(dO, so);
    free(so);
    free(dO);
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/capture.log", th_test_dir());
    cr_assert(th_wait_log(path, "reloading the table's schema", 100), "capture must say why");
    snprintf(path, sizeof path, "%s/apply.log", th_test_dir());
    cr_assert(th_wait_log(path, "added label 'refunded' to enum", 100));
    stop_clean(&app, "cdc-apply");
    stop_clean(&cap, "cdc-capture");
}

/* ---- 4. truncate across partitions -------------------------------------- */

static void insert_tr(int from, int to, int per_txn)
{
    for (int i = from; i <= to; i += per_txn) {
        int last = i + per_txn - 1 < to ? i + per_txn - 1 : to;
        th_sql(src, "INSERT INTO tr SELECT g, 'v' || g FROM generate_series(%d, %d) g", i, last);
    }
}

Test(apply, truncate_with_inserts_in_flight_on_every_partition)
{
    th_sql(src, "CREATE TABLE tr (id int PRIMARY KEY, v text)");
    start_pipeline((const char *const[]){"batch.max.events=100", "batch.max.ms=50", NULL});
    insert_tr(1, 2000, 50);
    th_sql(src, "TRUNCATE tr");
    insert_tr(2001, 3000, 50);
    th_sql(src, "BEGIN;"
                "INSERT INTO tr SELECT g, 'x' || g FROM generate_series(3001, 3100) g;"
                "TRUNCATE tr;"
                "INSERT INTO tr SELECT g, 'y' || g FROM generate_series(3101, 3200) g;"
                "COMMIT");
    insert_tr(3201, 3500, 50);
    converge((const char *const[]){"tr", NULL}, CONVERGE_MS);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM tr WHERE id <= 3100"), 0);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM tr WHERE id > 3100"), 400);
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/apply.log", th_test_dir());
    cr_assert(th_wait_log(path, "truncated public.tr", 1000));
    /* Every partition went on past the last truncate. */
    char topic[256];
    th_topic("public", "tr", topic, sizeof topic);
    cr_assert_eq(
        th_sql_long(dst, "SELECT count(*) FROM cdc.apply_truncates WHERE topic = '%s'", topic), 0,
        "no truncate left half-done");
    stop_clean(&app, "cdc-apply");
}

/* ---- 5. keyless tables -------------------------------------------------- */

Test(apply, keyless_table_with_duplicate_rows_converges)
{
    th_sql(src, "CREATE TABLE led (account int, amount numeric(10,2), memo text, big text);"
                "ALTER TABLE led REPLICA IDENTITY FULL;"
                "ALTER TABLE led ALTER COLUMN big SET STORAGE EXTERNAL");
    start_pipeline(NULL);
    th_sql(src, "INSERT INTO led VALUES (1, 10, 'dup', NULL), (1, 10, 'dup', NULL), "
                "(1, 10, 'dup', NULL), (2, NULL, NULL, NULL), (2, NULL, NULL, NULL), "
                "(3, 5, 'x', (SELECT string_agg(md5(x::text), '') FROM generate_series(1, 300) x)), "
                "(3, 5, 'x', (SELECT string_agg(md5(x::text), '') FROM generate_series(1, 300) x))");
    /* One of identical rows changes or goes: exactly one must, on the target too. */
    th_sql(src, "UPDATE led SET amount = 11 WHERE ctid = "
                "(SELECT ctid FROM led WHERE account = 1 LIMIT 1)");
    th_sql(src, "DELETE FROM led WHERE ctid = (SELECT ctid FROM led WHERE account = 2 LIMIT 1)");
    th_sql(src, "UPDATE led SET memo = 'y' WHERE ctid = "
                "(SELECT ctid FROM led WHERE account = 3 LIMIT 1)"); /* big: unchanged TOAST */
    th_sql(src, "UPDATE led SET amount = amount + 1 WHERE account = 1");
    th_sql(src, "DELETE FROM led WHERE account = 1 AND amount = 11");
    th_sql(src, "INSERT INTO led SELECT g %% 3, g, NULL, NULL FROM generate_series(1, 30) g");
    th_sql(src, "UPDATE led SET memo = 'three' WHERE account = 0 AND memo IS NULL");
    th_sql(src, "INSERT INTO led VALUES (2, NULL, NULL, NULL)");
    converge((const char *const[]){"led", NULL}, CONVERGE_MS);
    assert_same_shape("led");
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM led WHERE account = 2 AND amount IS NULL"),
                 2);
    stop_clean(&app, "cdc-apply");
}

/* ---- 6. replays --------------------------------------------------------- */

/* Sum of the recorded next offsets of `topic` in the target. */
static long applied_offsets(const char *topic)
{
    return th_sql_long(dst,
                       "SELECT coalesce(sum(next_offset), 0) FROM cdc.apply_positions "
                       "WHERE topic = '%s'",
                       topic);
}

static bool wait_applied_offsets(const char *topic, long want, int timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        if (applied_offsets(topic) >= want)
            return true;
        usleep(200 * 1000);
    }
    return false;
}

/* Every message of `topic` (raw), and the sum of the partitions' end offsets. */
static th_msgs *read_raw(const char *topic, long *end_sum)
{
    th_consume_opts o = {.bootstrap = broker.bootstrap, .topic = topic, .timeout_ms = 30000};
    th_msgs *m = th_consume(&o);
    long sum = 0;
    for (size_t i = 0; i < m->n; i++)
        if (i + 1 == m->n || m->v[i + 1].partition != m->v[i].partition)
            sum += (long)m->v[i].offset + 1;
    cr_assert_eq(sum, (long)m->n, "%s: offsets are not contiguous from 0", topic);
    *end_sum = sum;
    return m;
}

Test(apply, replayed_events_change_nothing)
{
    th_sql(src, "CREATE TABLE pay (id int PRIMARY KEY, amount numeric(18,2), memo text);"
                "CREATE TABLE ins (seq int, note text)"); /* keyless, insert-only */
    th_sql(src, "ALTER TABLE ins REPLICA IDENTITY FULL");
    start_pipeline(NULL);
    for (int t = 0; t < 10; t++) {
        th_sql(src, "INSERT INTO pay SELECT g, g * 0.5, 'm' FROM generate_series(%d, %d) g",
               t * 30 + 1, t * 30 + 30);
        th_sql(src, "INSERT INTO ins SELECT g, 'n' FROM generate_series(%d, %d) g", t * 10 + 1,
               t * 10 + 10);
    }
    th_sql(src, "UPDATE pay SET amount = amount + 1, memo = NULL WHERE id %% 4 = 0");
    th_sql(src, "DELETE FROM pay WHERE id %% 5 = 0");
    th_sql(src, "INSERT INTO pay VALUES (5, -5, 're-inserted')");
    const char *const tables[] = {"pay", "ins", NULL};
    converge(tables, CONVERGE_MS);

    char pay_topic[256], ins_topic[256];
    th_topic("public", "pay", pay_topic, sizeof pay_topic);
    th_topic("public", "ins", ins_topic, sizeof ins_topic);
    long pay_end, ins_end;
    th_msgs *pm = read_raw(pay_topic, &pay_end);
    th_msgs *im = read_raw(ins_topic, &ins_end);
    cr_assert(wait_applied_offsets(pay_topic, pay_end, 30000) &&
                  wait_applied_offsets(ins_topic, ins_end, 30000),
              "positions did not reach the end of the topics");
    char *before = th_sql_value(dst, "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) "
                                     "FROM (SELECT p::text FROM pay p UNION ALL "
                                     "SELECT i::text FROM ins i) t");

    /* (a) Every message once more, at the end of its partition. */
    th_reproduce(broker.bootstrap, pm);
    th_reproduce(broker.bootstrap, im);
    cr_assert(wait_applied_offsets(pay_topic, 2 * pay_end, 60000),
              "pay: positions did not advance over the repeats (%ld of %ld)",
              applied_offsets(pay_topic), 2 * pay_end);
    cr_assert(wait_applied_offsets(ins_topic, 2 * ins_end, 60000),
              "ins: positions did not advance over the repeats (%ld of %ld)",
              applied_offsets(ins_topic), 2 * ins_end);
    char *after = th_sql_value(dst, "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) "
                                    "FROM (SELECT p::text FROM pay p UNION ALL "
                                    "SELECT i::text FROM ins i) t");
    cr_assert_str_eq(after, before, "replayed events changed the target");
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM ins"), 100, "ins applied twice");
    converge(tables, 1000);
    free(after);

    /* (b) A restart resumes at the recorded positions, applying nothing twice. */
    stop_clean(&app, "cdc-apply");
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply2.log", NULL);
    th_sql(src, "INSERT INTO ins VALUES (101, 'after restart')");
    th_sql(src, "UPDATE pay SET memo = 'after restart' WHERE id = 1");
    converge(tables, CONVERGE_MS);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM ins"), 101);
    cr_assert(wait_applied_offsets(ins_topic, 2 * ins_end + 1, 30000));
    cr_assert_eq(applied_offsets(ins_topic), 2 * ins_end + 1, "positions went past the end");
    free(before);
    th_msgs_free(pm);
    th_msgs_free(im);
    stop_clean(&app, "cdc-apply");
}
