/*
 * cdc-verify against real databases: equal tables exit 0; a changed value,
 * a missing row and an extra row exit 1 and are named by key; keyless
 * tables compare as multisets; a missing target table or column differs; a
 * missing source table or an unreachable server exits 2 (a table that
 * cannot be read is named and the others are still compared); wait.ms
 * waits for a target that catches up; SIGINT cancels a running query.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#ifndef CDC_BIN_DIR
#define CDC_BIN_DIR "build/bin"
#endif

static th_pg pg;
static PGconn *src, *dst;

/* The same schema and rows in both databases. */
static const char *const SCHEMA =
    "CREATE TABLE acc (id bigint PRIMARY KEY, balance numeric(18,2) NOT NULL, "
    "  opened timestamptz, rate float8, note text);"
    "INSERT INTO acc SELECT g, g * 1.25, '2026-01-01 00:00:00+00'::timestamptz + g * "
    "  interval '1 minute', g / 7.0, CASE WHEN g % 5 = 0 THEN NULL ELSE 'n' || g END "
    "  FROM generate_series(1, 20000) g;"
    "CREATE TABLE pair (a int, b text, v int, PRIMARY KEY (a, b));"
    "INSERT INTO pair SELECT g % 50, 'k' || g, g FROM generate_series(1, 1000) g;"
    "CREATE TABLE log (n int, msg text);" /* keyless, with duplicate rows */
    "INSERT INTO log SELECT g % 10, 'same' FROM generate_series(1, 500) g;"
    "CREATE SCHEMA \"Odd \"\"Schema\";"
    "CREATE TABLE \"Odd \"\"Schema\".\"T-1\" (\"Id\" int PRIMARY KEY, \"v;x\" text);"
    "INSERT INTO \"Odd \"\"Schema\".\"T-1\" VALUES (1, 'a'), (2, 'b')";

static void setup(void)
{
    th_pg_start_src_dst(&pg, &src, &dst);
    th_sql(src, "%s", SCHEMA);
    th_sql(dst, "%s", SCHEMA);
}

static void teardown(void)
{
    th_pg_stop_src_dst(&pg, &src, &dst);
}

TestSuite(verify, .init = setup, .fini = teardown, .timeout = 240);

/* Start cdc-verify with extra -s settings, its output going to `log`. */
static void spawn_verify(th_proc *p, const char *log, const char *const *extra)
{
    char sci[TH_PATH_MAX], tci[TH_PATH_MAX], s[TH_PATH_MAX + 32], t[TH_PATH_MAX + 32];
    th_pg_conninfo(&pg, "src", sci, sizeof sci);
    th_pg_conninfo(&pg, "dst", tci, sizeof tci);
    snprintf(s, sizeof s, "source.conninfo=%s", sci);
    snprintf(t, sizeof t, "target.conninfo=%s", tci);
    const char *argv[32] = {CDC_BIN_DIR "/cdc-verify", "-s", s, "-s", t};
    int n = 5;
    for (; extra && *extra && n < 30; extra++) {
        argv[n++] = "-s";
        argv[n++] = *extra;
    }
    argv[n] = NULL;
    th_spawn(p, log, (char *const *)argv);
}

/* The whole of `log` (in the test's directory); the caller frees it. */
static char *read_log(const char *log)
{
    char path[TH_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", th_test_dir(), log);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* Run cdc-verify with extra -s settings; returns its exit code, output in *out. */
static int run_verify(const char *log, const char *const *extra, char **out)
{
    th_proc p = {0};
    spawn_verify(&p, log, extra);
    cr_assert_eq(th_proc_wait(&p, 120000, NULL), 0, "cdc-verify did not finish");
    *out = read_log(log);
    return th_proc_exit_code(&p);
}

static void assert_line(const char *out, const char *needle)
{
    cr_assert(strstr(out, needle) != NULL, "expected \"%s\" in the output:\n%s", needle, out);
}

Test(verify, equal_databases_exit_zero)
{
    char *out;
    int rc = run_verify("verify.log", NULL, &out);
    cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
    assert_line(out, "public.acc");
    assert_line(out, "20000        20000");
    assert_line(out, "Odd \"Schema.T-1");
    assert_line(out, "4 tables compared, all equal");
    cr_assert_null(strstr(out, "DIFFERENT"));
    free(out);
}

Test(verify, changed_missing_and_extra_rows_are_named_by_key)
{
    th_sql(dst, "UPDATE acc SET balance = balance + 0.01 WHERE id = 4242;" /* one cent */
                "DELETE FROM acc WHERE id = 777;"
                "INSERT INTO acc VALUES (99999, 1, now(), 0, 'x');"
                "UPDATE pair SET v = -v WHERE a = 7 AND b = 'k7'");
    char *out;
    int rc = run_verify("verify.log", NULL, &out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    assert_line(out, "public.acc (id)=(4242): different values");
    assert_line(out, "public.acc (id)=(777): missing in target");
    assert_line(out, "public.acc (id)=(99999): extra in target");
    assert_line(out, "public.pair (a, b)=(7,k7): different values");
    assert_line(out, "2 of 4 tables DIFFER");
    /* Tables that match still say so. */
    assert_line(out, "equal");
    free(out);
}

Test(verify, a_null_that_became_an_empty_string_differs)
{
    th_sql(dst, "UPDATE acc SET note = '' WHERE id = 10"); /* note was NULL */
    char *out;
    cr_assert_eq(run_verify("verify.log", NULL, &out), 1, "%s", out);
    assert_line(out, "public.acc (id)=(10): different values");
    free(out);
}

Test(verify, keyless_tables_compare_as_multisets)
{
    /* One copy fewer of a duplicated row, and one new row. */
    th_sql(dst, "DELETE FROM log WHERE ctid = (SELECT min(ctid) FROM log WHERE n = 3);"
                "INSERT INTO log VALUES (42, 'new')");
    char *out;
    int rc = run_verify("verify.log", (const char *const[]){"tables=public.log", NULL}, &out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    assert_line(out, "public.log row (3,same): missing in target");
    assert_line(out, "public.log row (42,new): extra in target");
    assert_line(out, "1 of 1 tables DIFFER");
    free(out);
}

Test(verify, max_keys_limits_the_listing_not_the_count)
{
    th_sql(dst, "DELETE FROM acc WHERE id <= 30");
    char *out;
    int rc = run_verify("verify.log", (const char *const[]){"tables=acc", "max.keys=5", NULL},
                        &out);
    cr_assert_eq(rc, 1, "%s", out);
    assert_line(out, "... and 25 more differing keys");
    int listed = 0;
    for (const char *p = out; (p = strstr(p, ": missing in target")); p++)
        listed++;
    cr_assert_eq(listed, 5, "%s", out);
    free(out);
}

Test(verify, missing_target_table_or_column_differs)
{
    th_sql(dst, "DROP TABLE log; ALTER TABLE pair DROP COLUMN v");
    char *out;
    int rc = run_verify("verify.log", NULL, &out);
    cr_assert_eq(rc, 1, "%s", out);
    assert_line(out, "public.log: table missing in target");
    assert_line(out, "public.pair: columns missing in target: v");
    free(out);
}

Test(verify, a_column_of_another_type_differs)
{
    /* float4 prints 0.1 as float8 does, but holds another number. */
    th_sql(dst, "ALTER TABLE acc ALTER COLUMN rate TYPE real");
    char *out;
    int rc = run_verify("verify.log", NULL, &out);
    cr_assert_eq(rc, 1, "%s", out);
    assert_line(out, "public.acc: column types differ: rate (double precision in source, real in "
                     "target)");
    free(out);
}

/*
 * Generated columns are not streamed, so a target without one is equal;
 * one that has it must hold the same values.
 */
Test(verify, generated_columns_are_compared_where_the_target_has_them)
{
    th_sql(src, "ALTER TABLE acc ADD COLUMN fee numeric GENERATED ALWAYS AS (balance * 0.01) "
                "STORED");
    char *out;
    int rc = run_verify("verify1.log", NULL, &out);
    cr_assert_eq(rc, 0, "a target without the generated column: %s", out);
    free(out);
    th_sql(dst, "ALTER TABLE acc ADD COLUMN fee numeric GENERATED ALWAYS AS (balance * 0.02) "
                "STORED");
    rc = run_verify("verify2.log", NULL, &out);
    cr_assert_eq(rc, 1, "another expression in the target: %s", out);
    assert_line(out, "public.acc (id)=(1): different values");
    free(out);
    th_sql(dst, "ALTER TABLE acc DROP COLUMN fee; ALTER TABLE acc ADD COLUMN fee numeric");
    rc = run_verify("verify3.log", NULL, &out);
    cr_assert_eq(rc, 1, "a plain column left NULL in the target: %s", out);
    free(out);
    th_sql(dst, "UPDATE acc SET fee = balance * 0.01");
    rc = run_verify("verify4.log", NULL, &out);
    cr_assert_eq(rc, 0, "a plain column with the values: %s", out);
    free(out);
}

/*
 * A row-level security policy hides rows from a role that does not bypass
 * it, on both sides alike: cdc-verify must fail, not compare what is left.
 */
Test(verify, row_level_security_is_an_error_not_a_filter)
{
    if (th_pg_external())
        cr_skip_test("creates a role");
    const char *policy = "CREATE POLICY mine ON acc USING (id < 100);"
                         "ALTER TABLE acc ENABLE ROW LEVEL SECURITY;"
                         "GRANT SELECT ON ALL TABLES IN SCHEMA public TO audit;"
                         "GRANT USAGE ON SCHEMA \"Odd \"\"Schema\" TO audit;"
                         "GRANT SELECT ON ALL TABLES IN SCHEMA \"Odd \"\"Schema\" TO audit";
    th_sql(src, "CREATE ROLE audit LOGIN");
    th_sql(src, "%s", policy);
    th_sql(dst, "%s", policy);
    th_sql(dst, "DELETE FROM acc WHERE id = 500"); /* hidden from audit by the policy */
    char sci[TH_PATH_MAX], tci[TH_PATH_MAX], s[TH_PATH_MAX + 64], t[TH_PATH_MAX + 64];
    snprintf(s, sizeof s, "source.conninfo=%s user=audit",
             th_pg_conninfo(&pg, "src", sci, sizeof sci));
    snprintf(t, sizeof t, "target.conninfo=%s user=audit",
             th_pg_conninfo(&pg, "dst", tci, sizeof tci));
    char *out;
    int rc = run_verify("verify.log", (const char *const[]){s, t, NULL}, &out);
    cr_assert_eq(rc, 2, "exit %d:\n%s", rc, out);
    assert_line(out, "row-level security");
    /* The table that cannot be read is named; the others are still compared. */
    assert_line(out, "ERROR (see the log)");
    char pair[128];
    snprintf(pair, sizeof pair, "%-40s %12s %12s", "public.pair", "1000", "1000");
    assert_line(out, pair);
    assert_line(out, "1 of 4 tables could not be compared, 0 DIFFER");
    free(out);
}

static long activity_count(const char *where)
{
    return th_sql_long(dst, "SELECT count(*) FROM pg_stat_activity WHERE %s", where);
}

/*
 * Ctrl-C or SIGTERM while a query runs (here it waits for a lock another
 * session holds): cdc-verify cancels the query on the server and exits 2,
 * instead of waiting on and leaving its backend behind.
 */
Test(verify, a_stop_signal_cancels_the_running_query)
{
    th_sql(src, "BEGIN; LOCK TABLE acc IN ACCESS EXCLUSIVE MODE");
    th_proc p = {0};
    spawn_verify(&p, "verify.log", (const char *const[]){"tables=public.pair,public.acc", NULL});
    /* pg_stat_activity from dst: src's open transaction would keep a snapshot of it. */
    const char *waiting = "application_name = 'cdc-verify' AND wait_event_type = 'Lock'";
    int64_t deadline = th_now_ms() + 60000;
    while (activity_count(waiting) == 0 && th_now_ms() < deadline)
        usleep(100 * 1000);
    cr_assert_eq(activity_count(waiting), 1, "cdc-verify never waited for the lock");
    th_proc_kill(&p, SIGINT);
    int waited = th_proc_wait(&p, 30000, NULL);
    if (waited != 0)
        th_proc_stop(&p, 1000);
    cr_assert_eq(waited, 0, "cdc-verify still waits for the lock after SIGINT");
    char *out = read_log("verify.log");
    cr_assert_eq(th_proc_exit_code(&p), 2, "%s", out);
    assert_line(out, "canceling statement due to user request");
    assert_line(out, "interrupted; 1 of 2 tables compared");
    /* Nothing of it is left on the server while the lock is still held. */
    deadline = th_now_ms() + 10000;
    while (activity_count("application_name = 'cdc-verify'") > 0 && th_now_ms() < deadline)
        usleep(100 * 1000);
    cr_assert_eq(activity_count("application_name = 'cdc-verify'"), 0, "%s", out);
    th_sql(src, "ROLLBACK");
    free(out);
}

Test(verify, publication_tables_are_the_default)
{
    th_sql(src, "CREATE PUBLICATION cdc FOR TABLE acc, pair");
    th_sql(dst, "DELETE FROM log"); /* not published: not compared */
    char *out;
    cr_assert_eq(run_verify("verify.log", NULL, &out), 0, "%s", out);
    assert_line(out, "2 tables compared, all equal");
    cr_assert_null(strstr(out, "public.log"));
    free(out);
}

Test(verify, errors_exit_two)
{
    char *out;
    int rc = run_verify("verify1.log", (const char *const[]){"tables=public.nope", NULL}, &out);
    cr_assert_eq(rc, 2, "%s", out);
    assert_line(out, "table public.nope does not exist");
    free(out);

    rc = run_verify("verify2.log",
                    (const char *const[]){"target.conninfo=host=127.0.0.1 port=1 user=postgres "
                                          "password=hunter2 connect_timeout=5",
                                          NULL},
                    &out);
    cr_assert_eq(rc, 2, "%s", out);
    assert_line(out, "target: cannot connect");
    cr_assert_null(strstr(out, "hunter2"), "the password was printed:\n%s", out);
    free(out);

    /* A server that accepts and never answers: cdc-verify gives up (it waited for ever). */
    int port, fd = th_silent_listener(&port);
    char ci[128];
    snprintf(ci, sizeof ci, "target.conninfo=host=127.0.0.1 port=%d sslmode=disable", port);
    rc = run_verify("verify3.log", (const char *const[]){ci, NULL}, &out);
    close(fd);
    cr_assert_eq(rc, 2, "%s", out);
    assert_line(out, "timeout expired");
    free(out);

    rc = run_verify("verify3.log", (const char *const[]){"ranges=-1", NULL}, &out);
    cr_assert_eq(rc, 2, "%s", out);
    assert_line(out, "ranges");
    free(out);
}

/*
 * A "pipeline" that runs `sql` on database `db` two seconds from now, in a
 * child process; late_sql_wait asserts that it succeeded.
 */
static pid_t late_sql_in(const char *db, const char *sql)
{
    pid_t child = fork();
    cr_assert_neq(child, -1);
    if (child == 0) {
        sleep(2);
        char ci[TH_PATH_MAX];
        PGconn *c = PQconnectdb(th_pg_conninfo(&pg, db, ci, sizeof ci));
        PGresult *r = PQexec(c, sql);
        _exit(PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : 1);
    }
    return child;
}

static pid_t late_sql(const char *sql)
{
    return late_sql_in("dst", sql);
}

static void late_sql_wait(pid_t child, const char *what)
{
    int st;
    waitpid(child, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed", what);
}

Test(verify, wait_ms_waits_for_a_target_that_catches_up)
{
    th_sql(dst, "DELETE FROM acc WHERE id = 5");
    pid_t child = late_sql("INSERT INTO acc SELECT * FROM (VALUES (5::bigint, 6.25, "
                           "'2026-01-01 00:05:00+00'::timestamptz, 5 / 7.0, NULL)) v");
    char *out;
    int rc = run_verify("verify.log", (const char *const[]){"tables=acc", "wait.ms=30000", NULL},
                        &out);
    late_sql_wait(child, "the late insert");
    cr_assert_eq(rc, 0, "%s", out);
    assert_line(out, "comparing again");
    free(out);

    /* Without wait.ms a difference is reported at once. */
    th_sql(dst, "DELETE FROM acc WHERE id = 6");
    cr_assert_eq(run_verify("verify2.log", (const char *const[]){"tables=acc", NULL}, &out), 1);
    free(out);
}

Test(verify, wait_ms_waits_for_a_target_table_that_appears)
{
    th_sql(dst, "DROP TABLE log");
    pid_t child = late_sql("CREATE TABLE log (n int, msg text);"
                           "INSERT INTO log SELECT g % 10, 'same' FROM generate_series(1, 500) g");
    char *out;
    int rc = run_verify("verify.log", (const char *const[]){"tables=log", "wait.ms=30000", NULL},
                        &out);
    late_sql_wait(child, "creating the table");
    cr_assert_eq(rc, 0, "%s", out);
    assert_line(out, "1 tables compared, all equal");
    free(out);
}

/*
 * Each comparison again reads the columns: a column added to both sides
 * while cdc-verify waits, with other values in the target, differs.
 */
Test(verify, wait_ms_compares_columns_added_while_waiting)
{
    th_sql(dst, "DELETE FROM acc WHERE id = 5");
    pid_t s = late_sql_in("src", "ALTER TABLE acc ADD COLUMN tag int DEFAULT 1");
    pid_t t = late_sql("ALTER TABLE acc ADD COLUMN tag int DEFAULT 2;"
                       "INSERT INTO acc SELECT * FROM (VALUES (5::bigint, 6.25, "
                       "'2026-01-01 00:05:00+00'::timestamptz, 5 / 7.0, NULL::text, 2)) v");
    char *out;
    int rc =
        run_verify("verify.log", (const char *const[]){"tables=acc", "wait.ms=6000", NULL}, &out);
    late_sql_wait(s, "the source's new column");
    late_sql_wait(t, "the target's new column");
    cr_assert_eq(rc, 1, "the new column's values differ:\n%s", out);
    assert_line(out, "different values");
    free(out);
}

/* A LATIN1 source and a UTF8 target hold the same text: equal. */
Test(verify, databases_of_different_encodings_compare_by_text)
{
    th_sql(src, "CREATE DATABASE latin ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' "
                "LC_CTYPE 'C'");
    char ci[TH_PATH_MAX], s[TH_PATH_MAX + 32];
    th_pg_conninfo(&pg, "latin", ci, sizeof ci);
    PGconn *latin = PQconnectdb(ci);
    cr_assert_eq(PQstatus(latin), CONNECTION_OK, "%s", PQerrorMessage(latin));
    const char *ddl = "CREATE TABLE names (id int PRIMARY KEY, name text);"
                      "INSERT INTO names VALUES (1, 'Zoë'), (2, 'Ångström'), (3, 'plain')";
    cr_assert_eq(PQsetClientEncoding(latin, "UTF8"), 0); /* this file's text */
    th_sql(latin, "%s", ddl);
    char *stored = th_sql_value(latin, "SELECT octet_length(name) FROM names WHERE id = 1");
    cr_assert_str_eq(stored, "3", "one byte per letter in LATIN1");
    free(stored);
    th_sql(dst, "%s", ddl);
    PQfinish(latin);
    snprintf(s, sizeof s, "source.conninfo=%s", ci);
    char *out;
    int rc = run_verify("verify1.log", (const char *const[]){s, "tables=names", NULL}, &out);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    th_sql(dst, "UPDATE names SET name = 'Zoe' WHERE id = 1");
    rc = run_verify("verify2.log", (const char *const[]){s, "tables=names", NULL}, &out);
    cr_assert_eq(rc, 1, "%s", out);
    assert_line(out, "public.names (id)=(1): different values");
    free(out);
}
