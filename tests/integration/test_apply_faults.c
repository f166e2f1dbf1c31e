/*
 * cdc-apply under faults: kill -9 of either daemon during a continuous
 * workload, poison events (dead-letter topic or stop), a target restart,
 * SIGTERM, configuration errors, two processes sharing one group, and
 * events Kafka deleted before they were applied (and the way back). The
 * invariant everywhere: the target ends equal to the source, and the
 * keyless insert-only table "ins" (whose row count would grow) proves that
 * nothing was applied twice.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness_cdc.h"

static th_pg pg;
static th_broker broker;
static th_proc cap, app, app2;
static PGconn *src, *dst;

static const char *const TABLES[] = {"pay", "ins", "tt", NULL};
static const char *const PAY_INS[] = {"pay", "ins", NULL}; /* tests without the workload */

static void setup(void)
{
    th_pg_start_src_dst(&pg, &src, &dst);
    th_broker_start(&broker, 1);
    th_sql(src, "CREATE TABLE pay (id bigint PRIMARY KEY, amount numeric(18,2), memo text, "
                "version int);"
                "CREATE TABLE ins (seq bigint, note text);" /* keyless, insert-only */
                "CREATE TABLE tt (id bigint PRIMARY KEY, v text);" /* truncated now and then */
                "ALTER TABLE ins REPLICA IDENTITY FULL");
}

static void teardown(void)
{
    if (app.pid)
        th_proc_stop(&app, 10000);
    if (app2.pid)
        th_proc_stop(&app2, 10000);
    if (cap.pid)
        th_proc_stop(&cap, 10000);
    th_broker_stop(&broker);
    th_pg_stop_src_dst(&pg, &src, &dst);
}

TestSuite(apply_faults, .init = setup, .fini = teardown, .timeout = 300);

#define CONVERGE_MS 120000

static char *log_path(const char *name)
{
    static char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", th_test_dir(), name);
    return path;
}

/* The first line of a log containing `needle` (static buffer), or "(none)". */
static const char *log_line(const char *log, const char *needle)
{
    static char line[2048];
    FILE *f = fopen(log_path(log), "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strstr(line, needle)) {
            fclose(f);
            line[strcspn(line, "\n")] = '\0';
            return line;
        }
    }
    if (f)
        fclose(f);
    return "(none)";
}

static void stop_clean(th_proc *p, const char *what)
{
    int st = th_proc_stop(p, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: exit status %d after SIGTERM", what,
              th_proc_exit_code(p));
}

static void kill9(th_proc *p)
{
    cr_assert_eq(th_proc_kill(p, SIGKILL), 0, "%s is not running", p->logfile);
    th_proc_wait(p, 10000, NULL);
}

/* First value of a query as a number; -1 on any error (no assertion). */
static long try_long(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static long try_long(PGconn *c, const char *fmt, ...)
{
    char q[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(c, q);
    long n = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

/* Sum of every recorded next offset: grows whenever cdc-apply commits a batch. */
static long applied(void)
{
    return try_long(dst, "SELECT coalesce(sum(next_offset), 0) FROM cdc.apply_positions");
}

/* Wait until cdc-apply commits beyond `since` (it is consuming again). */
static long wait_progress(long since, int timeout_ms, const char *what)
{
    int64_t end = th_now_ms() + timeout_ms;
    long now;
    while ((now = applied()) <= since) {
        cr_assert_lt(th_now_ms(), end, "cdc-apply made no progress in %d s (%s)",
                     timeout_ms / 1000, what);
        usleep(100 * 1000);
    }
    return now;
}

static void assert_no_double_apply(void)
{
    long n = try_long(dst, "SELECT count(*) FROM ins");
    long distinct = try_long(dst, "SELECT count(DISTINCT seq) FROM ins");
    cr_assert_eq(n, distinct, "ins: %ld rows but %ld distinct: events applied twice", n,
                 distinct);
    cr_assert_gt(n, 0);
}

/* ---- a continuous workload in a thread ---------------------------------- */

/*
 * Transactions on the source until stopped: 5 inserts, 2 updates and a
 * delete in pay, one row in ins, one in tt (and every 100th transaction
 * truncates tt after that insert, so truncates meet every fault too).
 * Plain libpq only (no Criterion assertions off the main thread);
 * reconnects when the server restarts. Ids are never reused, so a
 * transaction whose outcome is unknown does no harm.
 */
typedef struct workload {
    char conninfo[1024];
    pthread_t thr;
    atomic_int stop;
    atomic_int txns;
    atomic_int failures;
    int pause_ms;
} workload;

static void *work_main(void *arg)
{
    workload *w = arg;
    PGconn *c = NULL;
    unsigned seed = 42;
    char sql[1024];
    for (int i = 0; !atomic_load(&w->stop); i++) {
        if (!c || PQstatus(c) != CONNECTION_OK) {
            if (c)
                PQfinish(c);
            c = PQconnectdb(w->conninfo);
            if (PQstatus(c) != CONNECTION_OK) {
                usleep(100 * 1000);
                continue;
            }
        }
        int base = i * 5 + 1;
        int u1 = base > 1 ? 1 + (int)(rand_r(&seed) % (unsigned)(base - 1)) : base;
        int u2 = base > 1 ? 1 + (int)(rand_r(&seed) % (unsigned)(base - 1)) : base;
        int d = base > 1 ? 1 + (int)(rand_r(&seed) % (unsigned)(base - 1)) : 0;
        snprintf(sql, sizeof sql,
                 "BEGIN;"
                 "INSERT INTO pay SELECT g, g * 0.01, 'p' || g, 1 FROM generate_series(%d, %d) g;"
                 "UPDATE pay SET amount = amount + 1, version = version + 1 WHERE id = %d;"
                 "UPDATE pay SET memo = NULL, version = version + 1 WHERE id = %d;"
                 "DELETE FROM pay WHERE id = %d;"
                 "INSERT INTO ins VALUES (%d, 'txn ' || %d);"
                 "INSERT INTO tt VALUES (%d, 'v');"
                 "%s"
                 "COMMIT",
                 base, base + 4, u1, u2, d, i, i, i, i % 100 == 99 ? "TRUNCATE tt;" : "");
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
            atomic_fetch_add(&w->txns, 1);
        } else {
            atomic_fetch_add(&w->failures, 1);
            PQclear(PQexec(c, "ROLLBACK"));
        }
        PQclear(r);
        usleep((useconds_t)w->pause_ms * 1000);
    }
    if (c)
        PQfinish(c);
    return NULL;
}

static void work_start(workload *w)
{
    memset(w, 0, sizeof *w);
    th_pg_conninfo(&pg, "src", w->conninfo, sizeof w->conninfo);
    w->pause_ms = 20;
    cr_assert_eq(pthread_create(&w->thr, NULL, work_main, w), 0);
}

static void work_stop(workload *w)
{
    atomic_store(&w->stop, 1);
    pthread_join(w->thr, NULL);
    cr_log_info("workload: %d transactions, %d failed", atomic_load(&w->txns),
                atomic_load(&w->failures));
    cr_assert_gt(atomic_load(&w->txns), 50, "the workload hardly ran");
}

static void start_apply(th_proc *p, const char *log, const char *const *extra)
{
    th_apply_start(p, &pg, "dst", broker.bootstrap, log, extra);
}

static const char *const SMALL_BATCHES[] = {"batch.max.events=200", "batch.max.ms=100", NULL};

/* ---- 7. kill -9 of cdc-apply ------------------------------------------- */

Test(apply_faults, apply_killed_repeatedly_converges_without_double_apply)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    start_apply(&app, "apply1.log", SMALL_BATCHES);
    workload w;
    work_start(&w);
    long progress = wait_progress(0, 60000, "first start");
    unsigned seed = 7;
    for (int k = 2; k <= 4; k++) {
        /* Kill it at a random moment while it applies. */
        usleep((useconds_t)(200 + rand_r(&seed) % 1500) * 1000);
        kill9(&app);
        progress = applied(); /* the next process must move it */
        char log[32];
        snprintf(log, sizeof log, "apply%d.log", k);
        start_apply(&app, log, SMALL_BATCHES);
        progress = wait_progress(progress, 60000, log);
    }
    usleep(1000 * 1000);
    work_stop(&w);
    th_assert_converge_alive(&pg, "src", "dst", TABLES, CONVERGE_MS, &app);
    assert_no_double_apply();
    stop_clean(&app, "cdc-apply");
}

/* ---- 7b. one of cdc-apply's target connections lost --------------------- */

/* cdc-apply's connections to the target database. */
static long apply_connections(void)
{
    return try_long(dst, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                         "AND application_name = 'cdc-apply'");
}

/*
 * With two writers, a batch is two transactions: the one whose connection
 * is killed rolls back while the other commits. Its partitions must be read
 * again from their recorded positions, the other's must not.
 */
Test(apply_faults, one_writer_connection_killed_repeatedly_converges_without_double_apply)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    start_apply(&app, "apply.log",
                (const char *const[]){"batch.max.events=200", "batch.max.ms=100",
                                      "target.connections=2", NULL});
    workload w;
    work_start(&w);
    long progress = wait_progress(0, 60000, "first start");
    cr_assert_eq(apply_connections(), 2, "cdc-apply should write over 2 connections");
    unsigned seed = 5;
    int killed = 0;
    for (int k = 0; k < 6; k++) {
        usleep((useconds_t)(100 + rand_r(&seed) % 600) * 1000);
        /* One of the two, whichever the server lists first at random. */
        killed += (int)try_long(dst, "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) "
                                     "FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND application_name = 'cdc-apply' "
                                     "ORDER BY random() LIMIT 1) t");
        progress = wait_progress(progress, 60000, "after a lost connection");
    }
    work_stop(&w);
    cr_assert_geq(killed, 5, "connections were not killed (%d)", killed);
    th_assert_converge_alive(&pg, "src", "dst", TABLES, CONVERGE_MS, &app);
    assert_no_double_apply();
    cr_assert(th_wait_log(log_path("apply.log"), "target unavailable", 1000),
              "a lost connection must be logged");
    cr_assert(th_wait_log(log_path("apply.log"), "target connection restored", 1000),
              "the reconnect must be logged");
    cr_assert_eq(apply_connections(), 2, "both connections must be back");
    stop_clean(&app, "cdc-apply");
}

/* ---- 8. kill -9 of cdc-capture ----------------------------------------- */

Test(apply_faults, capture_killed_repeatedly_converges_without_double_apply)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture1.log", NULL);
    start_apply(&app, "apply.log", SMALL_BATCHES);
    workload w;
    work_start(&w);
    wait_progress(0, 60000, "first start");
    unsigned seed = 11;
    for (int k = 2; k <= 5; k++) {
        usleep((useconds_t)(500 + rand_r(&seed) % 2000) * 1000);
        kill9(&cap);
        char log[32];
        snprintf(log, sizeof log, "capture%d.log", k);
        th_capture_start(&cap, &pg, "src", broker.bootstrap, log, NULL);
    }
    usleep(1000 * 1000);
    work_stop(&w);
    th_assert_converge_alive(&pg, "src", "dst", TABLES, CONVERGE_MS, &app);
    assert_no_double_apply();
    /* The stream really held repeats (else this test proves little). */
    char topic[256];
    th_topic("public", "ins", topic, sizeof topic);
    th_consume_opts o = {.bootstrap = broker.bootstrap, .topic = topic, .timeout_ms = 30000};
    th_msgs *m = th_consume(&o);
    long rows = try_long(src, "SELECT count(*) FROM ins");
    cr_log_info("ins: %zu events in Kafka for %ld rows", m->n, rows);
    cr_assert_geq((long)m->n, rows);
    th_msgs_free(m);
    stop_clean(&app, "cdc-apply");
}

/* ---- 9 and 10. poison events ------------------------------------------- */

/* The partition and offset of the insert event of pay id `id`. */
static void find_insert(int id, int32_t *partition, int64_t *offset, th_msgs **keep)
{
    char topic[256], key[32];
    th_topic("public", "pay", topic, sizeof topic);
    snprintf(key, sizeof key, "{\"id\": %d}", id);
    cdc_registry *reg = cdc_registry_new();
    th_msgs *m = th_read_topic(broker.bootstrap, topic, 0, 30000, reg);
    *partition = -1;
    for (size_t i = 0; i < m->n; i++) {
        if (m->v[i].value && m->v[i].key_json && strcmp(m->v[i].key_json, key) == 0) {
            *partition = m->v[i].partition;
            *offset = m->v[i].offset;
            break;
        }
    }
    cr_assert_geq(*partition, 0, "no event for pay id %d in %s", id, topic);
    if (keep)
        *keep = m;
    else
        th_msgs_free(m);
    cdc_registry_destroy(reg);
}

static void insert_pay(int from, int to, const char *amount)
{
    th_sql(src, "INSERT INTO pay SELECT g, %s, 'p' || g, 1 FROM generate_series(%d, %d) g",
           amount, from, to);
}

Test(apply_faults, tolerance_all_sends_poison_to_the_dlq_and_applies_the_rest)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    insert_pay(1, 20, "g");
    th_sql(src, "INSERT INTO ins VALUES (1, 'one')");
    start_apply(&app, "apply.log", (const char *const[]){"errors.tolerance=all", NULL});
    th_assert_converge_alive(&pg, "src", "dst", PAY_INS, CONVERGE_MS, &app);

    /* (a) garbage in a table topic; (b) a row the target's CHECK rejects. */
    char topic[256], dlq[256];
    th_topic("public", "pay", topic, sizeof topic);
    snprintf(dlq, sizeof dlq, "%s.dlq", th_prefix());
    int64_t junk_off = th_produce(broker.bootstrap, topic, 2, "junk-key", 8, "not avro at all", 15);
    th_sql(dst, "ALTER TABLE pay ADD CONSTRAINT small CHECK (amount < 1000)");
    insert_pay(21, 30, "g");
    insert_pay(31, 31, "5000");
    insert_pay(32, 40, "g");
    th_sql(src, "INSERT INTO ins VALUES (2, 'two')");

    /* Everything but the rejected row arrives (a dead letter too many ends the wait). */
    char diff[8192];
    bool ok = false;
    size_t dead = 0;
    char first_err[600] = "";
    for (int64_t end = th_now_ms() + 60000; !ok && th_now_ms() < end && dead <= 2;) {
        ok = th_wait_same_rows(&pg, "src", "(SELECT * FROM pay WHERE id <> 31)", "dst", "pay",
                               2000, diff, sizeof diff);
        th_hmsgs *d = th_consume_headers(broker.bootstrap, dlq, 0, 1000);
        dead = d->n;
        for (size_t i = 0; i < d->n && !first_err[0]; i++) {
            const char *e = th_hdr(&d->v[i], "cdc.error");
            if (e && !strstr(e, "23514") && !strstr(e, "Avro"))
                snprintf(first_err, sizeof first_err, "%s [%s] offset %s: %s",
                         th_hdr(&d->v[i], "cdc.topic"), th_hdr(&d->v[i], "cdc.partition"),
                         th_hdr(&d->v[i], "cdc.offset"), e);
        }
        th_hmsgs_free(d);
    }
    cr_assert(ok && dead <= 2,
              "the rows around the poison were not applied; %zu dead letters (2 expected), "
              "first unexpected: %s\n%s",
              dead, first_err[0] ? first_err : "none", diff);
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"ins", NULL}, 30000, &app);
    cr_assert_eq(try_long(dst, "SELECT count(*) FROM pay WHERE id = 31"), 0);
    cr_assert_eq(th_proc_wait(&app, 0, NULL), -1, "cdc-apply must keep running");

    int32_t bad_part;
    int64_t bad_off;
    th_msgs *pm;
    find_insert(31, &bad_part, &bad_off, &pm);
    /* Dead letters are flushed before the batch commits: all are there now. */
    th_hmsgs *d = th_consume_headers(broker.bootstrap, dlq, 0, 30000);
    cr_assert_eq(d->n, 2, "dead-letter topic %s: %zu messages, want 2", dlq, d->n);
    const th_hmsg *junk = NULL, *rej = NULL;
    for (size_t i = 0; i < d->n; i++) {
        const char *off = th_hdr(&d->v[i], "cdc.offset");
        const char *part = th_hdr(&d->v[i], "cdc.partition");
        cr_assert(off && part, "DLQ message %zu without cdc.offset/cdc.partition", i);
        if (atoi(part) == 2 && atoll(off) == junk_off)
            junk = &d->v[i];
        else if (atoi(part) == bad_part && atoll(off) == bad_off)
            rej = &d->v[i];
    }
    cr_assert_not_null(junk, "the garbage message (partition 2, offset %lld) is not in the DLQ",
                       (long long)junk_off);
    cr_assert_not_null(rej, "the rejected row (partition %d, offset %lld) is not in the DLQ",
                       bad_part, (long long)bad_off);
    cr_assert_str_eq(th_hdr(junk, "cdc.topic"), topic);
    cr_assert_not_null(th_hdr(junk, "cdc.error"));
    cr_assert(strstr(th_hdr(junk, "cdc.error"), "Avro") != NULL, "cdc.error: %s",
              th_hdr(junk, "cdc.error"));
    cr_assert_not_null(th_hdr(junk, "cdc.table"));
    cr_assert(junk->value_len == 15 && memcmp(junk->value, "not avro at all", 15) == 0,
              "the DLQ keeps the original value");
    cr_assert(junk->key_len == 8 && memcmp(junk->key, "junk-key", 8) == 0);

    cr_assert_str_eq(th_hdr(rej, "cdc.topic"), topic);
    cr_assert_str_eq(th_hdr(rej, "cdc.table"), "public.pay");
    const char *err = th_hdr(rej, "cdc.error");
    cr_assert_not_null(err);
    cr_assert(strstr(err, "23514") && strstr(err, "small"),
              "cdc.error must carry Postgres' error (check constraint \"small\"): %s", err);
    const th_msg *orig = NULL;
    for (size_t i = 0; i < pm->n; i++)
        if (pm->v[i].partition == bad_part && pm->v[i].offset == bad_off)
            orig = &pm->v[i];
    cr_assert(orig && rej->value_len == orig->value_len &&
                  memcmp(rej->value, orig->value, orig->value_len) == 0,
              "the DLQ keeps the original event bytes");
    th_hmsgs_free(d);
    th_msgs_free(pm);
    stop_clean(&app, "cdc-apply");
}

/*
 * Table letters, whose topic has one partition (cdc-devbroker would create
 * it with several when first asked), and cdc-capture streaming it.
 */
static void letters_in_one_partition(void)
{
    char topic[256];
    th_topic("public", "letters", topic, sizeof topic);
    if (!th_broker_external())
        th_broker_cmd(&broker, "create %s 1", topic);
    th_sql(src, "CREATE TABLE letters (id int PRIMARY KEY, amount int)");
    const char *const one[] = {"topic.partitions=1", NULL};
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", one);
}

/*
 * A one-by-one pass that is cut short and replayed must dead-letter its
 * rejected row once. Here the target connection dies in the pass, at the
 * event after the rejected one: a trigger kills its own backend at the
 * first one-row insert (the pass writes one row at a time; the batch
 * before it fails on the CHECK and fires no statement trigger).
 */
Test(apply_faults, a_replayed_one_by_one_pass_dead_letters_once)
{
    letters_in_one_partition(); /* the pass goes in offset order */
    th_sql(src, "INSERT INTO letters VALUES (1, 1)");
    const char *const all[] = {"errors.tolerance=all", NULL};
    start_apply(&app, "apply1.log", all);
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"letters", NULL}, CONVERGE_MS,
                             &app);
    stop_clean(&app, "cdc-apply");

    th_sql(dst, "ALTER TABLE letters ADD CONSTRAINT small CHECK (amount < 1000)");
    th_sql(dst, "CREATE SEQUENCE once");
    th_sql(dst, "CREATE FUNCTION kill_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF (SELECT count(*) FROM fresh) = 1 AND nextval('once') = 1 THEN "
                "PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NULL; END $$");
    th_sql(dst, "CREATE TRIGGER kill_once AFTER INSERT ON letters REFERENCING NEW TABLE AS fresh "
                "FOR EACH STATEMENT EXECUTE FUNCTION kill_once()");
    /* All in Kafka before cdc-apply returns, so they make one batch. */
    th_sql(src, "BEGIN; INSERT INTO letters VALUES (2, 5000); "
                "INSERT INTO letters SELECT g, g FROM generate_series(3, 10) g; COMMIT");
    cr_assert(th_wait_slot(src, "cdc", th_wal_lsn(src), 60000), "the slot did not catch up");
    start_apply(&app, "apply2.log", all);

    char diff[8192];
    cr_assert(th_wait_same_rows(&pg, "src", "(SELECT * FROM letters WHERE id <> 2)", "dst",
                                "letters", CONVERGE_MS, diff, sizeof diff),
              "the rows around the rejected one were not applied:\n%s", diff);
    cr_assert_geq(try_long(dst, "SELECT last_value FROM once"), 2,
                  "the pass was not cut short and replayed: the test proves nothing");
    char dlq[256];
    snprintf(dlq, sizeof dlq, "%s.dlq", th_prefix());
    /* Dead letters are in Kafka before their batch commits. */
    th_hmsgs *d = th_consume_headers(broker.bootstrap, dlq, 0, 10000);
    cr_assert_eq(d->n, 1, "%zu dead letters for one rejected row", d->n);
    cr_assert(strstr(th_hdr(&d->v[0], "cdc.error"), "small") != NULL, "%s",
              th_hdr(&d->v[0], "cdc.error"));
    th_hmsgs_free(d);
    stop_clean(&app, "cdc-apply");
}

/*
 * The event-by-event pass emptied the stage after each event whenever any
 * earlier batch of the writer had used one: after an event that went
 * straight into its table (a direct COPY), that TRUNCATE met a stage this
 * session never made, and the good row went to the DLQ as rejected (42P01),
 * lost from the target.
 */
Test(apply_faults, a_good_row_of_an_event_by_event_pass_is_applied_not_dead_lettered)
{
    letters_in_one_partition();
    th_sql(src, "CREATE TABLE acc (id int PRIMARY KEY, bal int);"
                "INSERT INTO acc SELECT g, 0 FROM generate_series(1, 20) g;"
                "INSERT INTO letters SELECT g, g FROM generate_series(1, 20) g");
    start_apply(&app, "apply.log",
                (const char *const[]){"errors.tolerance=all", "target.connections=1", NULL});
    const char *const both[] = {"acc", "letters", NULL};
    th_assert_converge_alive(&pg, "src", "dst", both, CONVERGE_MS, &app);
    th_sql(src, "UPDATE acc SET bal = bal + 1"); /* a staged batch on the only writer */
    th_assert_converge_alive(&pg, "src", "dst", both, CONVERGE_MS, &app);
    th_sql(dst, "ALTER TABLE letters ADD CONSTRAINT small CHECK (amount < 1000)");
    th_sql(src,
           "BEGIN; INSERT INTO letters VALUES (21, 21); INSERT INTO letters VALUES (22, 5000); "
           "COMMIT");
    char dlq[256];
    snprintf(dlq, sizeof dlq, "%s.dlq", th_prefix());
    th_hmsgs *d = th_consume_headers(broker.bootstrap, dlq, 1, 30000);
    cr_assert_geq(d->n, 1, "no dead letter for the rejected row");
    th_hmsgs_free(d);
    d = th_consume_headers(broker.bootstrap, dlq, 0, 5000);
    for (size_t i = 0; i < d->n; i++)
        cr_assert(strstr(th_hdr(&d->v[i], "cdc.error"), "small") != NULL,
                  "a dead letter that is not the rejected row: offset %s: %s",
                  th_hdr(&d->v[i], "cdc.offset"), th_hdr(&d->v[i], "cdc.error"));
    cr_assert_eq(d->n, 1, "%zu dead letters for one rejected row", d->n);
    th_hmsgs_free(d);
    char diff[4096];
    cr_assert(th_wait_same_rows(&pg, "src", "(SELECT * FROM letters WHERE id <> 22)", "dst",
                                "letters", CONVERGE_MS, diff, sizeof diff),
              "the good row of the pass is missing:\n%s", diff);
    stop_clean(&app, "cdc-apply");
}

/*
 * An error about the target, not the row (here a disk full, 53100, raised by
 * a trigger; also out of memory, I/O, internal, read-only, privilege) is
 * waited out and retried: taken for rejected rows, it dead-lettered every
 * event with errors.tolerance=all, and the target lost them all.
 */
Test(apply_faults, a_full_disk_on_the_target_is_retried_not_dead_lettered)
{
    letters_in_one_partition();
    th_sql(src, "INSERT INTO letters VALUES (1, 1)");
    start_apply(&app, "apply.log", (const char *const[]){"errors.tolerance=all", NULL});
    const char *const letters[] = {"letters", NULL};
    th_assert_converge_alive(&pg, "src", "dst", letters, CONVERGE_MS, &app);
    th_sql(dst, "CREATE SEQUENCE tries;"
                "CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "PERFORM nextval('tries'); "
                "RAISE EXCEPTION 'could not extend file: No space left on device' "
                "USING ERRCODE = '53100'; END $$;"
                "CREATE TRIGGER full_disk BEFORE INSERT OR UPDATE ON letters "
                "FOR EACH ROW EXECUTE FUNCTION full_disk()");
    th_sql(src, "INSERT INTO letters SELECT g, g FROM generate_series(2, 10) g");
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/apply.log", th_test_dir());
    cr_assert(th_wait_log(path, "No space left on device", 30000),
              "the target's error is not logged");
    sleep(5);                                         /* a few retries */
    th_sql(dst, "DROP TRIGGER full_disk ON letters"); /* space freed */
    /* Paced 0.5, 1, 2 s... apart: about 5 tries (without a pause: 9 in 4 s, measured). */
    long tries = th_sql_long(dst, "SELECT last_value FROM tries");
    cr_assert_leq(tries, 7, "%ld tries in about 5 s: the retries are not paced", tries);
    th_assert_converge_alive(&pg, "src", "dst", letters, CONVERGE_MS, &app);
    char dlq[256];
    snprintf(dlq, sizeof dlq, "%s.dlq", th_prefix());
    th_hmsgs *d = th_consume_headers(broker.bootstrap, dlq, 0, 3000);
    cr_assert_eq(d->n, 0, "%zu events dead-lettered for a full disk", d->n);
    th_hmsgs_free(d);
    stop_clean(&app, "cdc-apply");
}

/*
 * The dead-letter topic unavailable when a pass is through: the pass is
 * rolled back and read again once Kafka is back, and the letter arrives
 * once. A trigger holds the pass (pg_sleep) while the broker goes down.
 */
Test(apply_faults, an_unavailable_dlq_rolls_the_pass_back_and_sends_once)
{
    if (th_broker_external())
        cr_skip_test("stops the broker");
    letters_in_one_partition();
    th_sql(src, "INSERT INTO letters VALUES (1, 1)");
    const char *const opts[] = {"errors.tolerance=all", "kafka.message.timeout.ms=2000", NULL};
    start_apply(&app, "apply.log", opts);
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"letters", NULL}, CONVERGE_MS,
                             &app);
    th_sql(dst, "ALTER TABLE letters ADD CONSTRAINT small CHECK (amount < 1000)");
    th_sql(dst, "CREATE SEQUENCE once");
    th_sql(dst, "CREATE FUNCTION hold_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF (SELECT count(*) FROM fresh) = 1 AND nextval('once') = 1 THEN "
                "PERFORM pg_sleep(4); END IF; RETURN NULL; END $$");
    th_sql(dst, "CREATE TRIGGER hold_once AFTER INSERT ON letters REFERENCING NEW TABLE AS fresh "
                "FOR EACH STATEMENT EXECUTE FUNCTION hold_once()");
    th_sql(src, "BEGIN; INSERT INTO letters VALUES (2, 5000); "
                "INSERT INTO letters SELECT g, g FROM generate_series(3, 10) g; COMMIT");
    int64_t end = th_now_ms() + 60000;
    while (try_long(dst, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") == 0)
        cr_assert_lt(th_now_ms(), end, "the pass never reached the held insert");
    th_broker_cmd(&broker, "down 1");
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/apply.log", th_test_dir());
    cr_assert(th_wait_log(path, "unavailable; the batch is read again", 30000),
              "the failed dead letter was not noticed");
    th_broker_cmd(&broker, "up 1");

    char diff[8192];
    cr_assert(th_wait_same_rows(&pg, "src", "(SELECT * FROM letters WHERE id <> 2)", "dst",
                                "letters", CONVERGE_MS, diff, sizeof diff),
              "the rows around the rejected one were not applied:\n%s", diff);
    char dlq[256];
    snprintf(dlq, sizeof dlq, "%s.dlq", th_prefix());
    th_hmsgs *d = th_consume_headers(broker.bootstrap, dlq, 0, 10000);
    cr_assert_eq(d->n, 1, "%zu dead letters for one rejected row", d->n);
    th_hmsgs_free(d);
    cr_assert_eq(th_proc_wait(&app, 0, NULL), -1, "cdc-apply must keep running");
    stop_clean(&app, "cdc-apply");
}

Test(apply_faults, tolerance_none_stops_at_the_rejected_row_and_resumes_there)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    insert_pay(1, 20, "g");
    start_apply(&app, "apply1.log", NULL);
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"pay", NULL}, CONVERGE_MS,
                             &app);
    th_sql(dst, "ALTER TABLE pay ADD CONSTRAINT small CHECK (amount < 1000)");
    insert_pay(21, 30, "g");
    insert_pay(31, 31, "5000");
    insert_pay(32, 40, "g");
    th_sql(src, "INSERT INTO ins VALUES (1, 'after')");

    int st;
    cr_assert_eq(th_proc_wait(&app, 60000, &st), 0, "cdc-apply did not stop at the rejected row");
    cr_assert_eq(th_proc_exit_code(&app), 1, "exit status %d", th_proc_exit_code(&app));

    int32_t bad_part;
    int64_t bad_off;
    th_msgs *pm;
    find_insert(31, &bad_part, &bad_off, &pm);
    char topic[256], want[512];
    th_topic("public", "pay", topic, sizeof topic);
    snprintf(want, sizeof want, "%s [%d] offset %lld, table public.pay", topic, bad_part,
             (long long)bad_off);
    cr_assert(th_wait_log(log_path("apply1.log"), want, 1000),
              "the log must name \"%s\"; it says: %s", want, log_line("apply1.log", "stopping at"));
    cr_assert(th_wait_log(log_path("apply1.log"), "violates check constraint \"small\"", 100),
              "the log must carry Postgres' error");

    /* Everything before it in its partition is applied, and recorded. */
    for (size_t i = 0; i < pm->n; i++) {
        const th_msg *m = &pm->v[i];
        if (m->partition != bad_part || m->offset >= bad_off || !m->value || !m->key_json)
            continue; /* other partitions, tombstones, truncates */
        int id = 0;
        cr_assert(sscanf(m->key_json, "{\"id\": %d}", &id) == 1);
        cr_assert_eq(try_long(dst, "SELECT count(*) FROM pay WHERE id = %d", id), 1,
                     "pay id %d (offset %lld, before the rejected one) is not applied", id,
                     (long long)m->offset);
    }
    cr_assert_eq(try_long(dst, "SELECT count(*) FROM pay WHERE id = 31"), 0);
    cr_assert_eq(try_long(dst,
                          "SELECT next_offset FROM cdc.apply_positions WHERE topic = '%s' "
                          "AND partition = %d",
                          topic, bad_part),
                 (long)bad_off, "the position must stop just before the rejected event");
    th_msgs_free(pm);

    /* Fixed: a restart resumes at that event. */
    th_sql(dst, "ALTER TABLE pay DROP CONSTRAINT small");
    start_apply(&app, "apply2.log", NULL);
    th_assert_converge_alive(&pg, "src", "dst", PAY_INS, CONVERGE_MS, &app);
    stop_clean(&app, "cdc-apply");
}

/* ---- 11. target restart ------------------------------------------------ */

Test(apply_faults, target_restart_while_applying_reconnects_and_converges)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    start_apply(&app, "apply.log", SMALL_BATCHES);
    workload w;
    work_start(&w);
    wait_progress(0, 60000, "first start");
    usleep(500 * 1000);
    PQfinish(src);
    PQfinish(dst);
    th_pg_restart(&pg); /* source and target: one cluster */
    src = th_pg_connect(&pg, "src");
    dst = th_pg_connect(&pg, "dst");
    wait_progress(applied(), 60000, "after the restart");
    usleep(1000 * 1000);
    work_stop(&w);
    th_assert_converge_alive(&pg, "src", "dst", TABLES, CONVERGE_MS, &app);
    assert_no_double_apply();
    cr_assert(th_wait_log(log_path("apply.log"), "target connection restored", 1000),
              "the reconnect must be logged");
    stop_clean(&app, "cdc-apply");
}

/* ---- 12. SIGTERM and configuration ------------------------------------- */

Test(apply_faults, sigterm_exits_zero_and_a_restart_loses_nothing)
{
    /* In the middle of a stream: the batch being collected is abandoned and
     * read again by the next start, nothing lost, nothing twice. */
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    start_apply(&app, "apply.log", NULL);
    workload w;
    work_start(&w);
    wait_progress(0, 60000, "first start");
    usleep(700 * 1000);
    th_proc_kill(&app, SIGTERM);
    int st;
    cr_assert_eq(th_proc_wait(&app, 20000, &st), 0, "no exit after SIGTERM");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", th_proc_exit_code(&app));
    cr_assert(th_wait_log(log_path("apply.log"), "stopped", 100));
    start_apply(&app, "apply2.log", NULL);
    usleep(1000 * 1000);
    work_stop(&w);
    th_assert_converge_alive(&pg, "src", "dst", TABLES, CONVERGE_MS, &app);
    assert_no_double_apply();
    stop_clean(&app, "cdc-apply");

    /* Also while it waits for a target that is not there. */
    char bs[1200];
    snprintf(bs, sizeof bs, "kafka.bootstrap.servers=%s", broker.bootstrap);
    char *argv[] = {CDC_BIN_DIR "/cdc-apply", "-s",
                    "target.conninfo=host=127.0.0.1 port=1 dbname=x connect_timeout=2", "-s", bs,
                    NULL};
    th_proc p;
    th_spawn(&p, "down.log", argv);
    cr_assert(th_wait_log(log_path("down.log"), "target unavailable", 20000));
    th_proc_kill(&p, SIGTERM);
    cr_assert_eq(th_proc_wait(&p, 20000, &st), 0, "no exit after SIGTERM while retrying");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", th_proc_exit_code(&p));
}

Test(apply_faults, bad_configuration_exits_2_naming_the_key)
{
    char target[1200], bs[1200];
    char ci[1024];
    snprintf(target, sizeof target, "target.conninfo=%s", th_pg_conninfo(&pg, "dst", ci, sizeof ci));
    snprintf(bs, sizeof bs, "kafka.bootstrap.servers=%s", broker.bootstrap);
    struct {
        const char *args[3];
        const char *expect;
    } cases[] = {
        {{target, bs, "no.such.key=1"}, "no.such.key"},
        {{bs, NULL, NULL}, "target.conninfo"},
        {{target, bs, "errors.tolerance=maybe"}, "errors.tolerance"},
        {{target, bs, "batch.max.events=0"}, "batch.max.events"},
        {{target, bs, "auto.create=perhaps"}, "auto.create"},
        {{"target.conninfo=this is not a conninfo", bs, NULL}, "target.conninfo"},
        {{target, NULL, NULL}, "kafka.bootstrap.servers"},
        {{target, bs, "kafka.bogus.property=1"}, "kafka.bogus.property"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char log[64];
        snprintf(log, sizeof log, "config%zu.log", i);
        char *argv[10] = {CDC_BIN_DIR "/cdc-apply"};
        int n = 1;
        for (int k = 0; k < 3 && cases[i].args[k]; k++) {
            argv[n++] = "-s";
            argv[n++] = (char *)cases[i].args[k];
        }
        argv[n] = NULL;
        th_proc p;
        th_spawn(&p, log, argv);
        int st;
        cr_assert_eq(th_proc_wait(&p, 15000, &st), 0, "case %zu (%s) did not exit", i,
                     cases[i].expect);
        cr_assert_eq(th_proc_exit_code(&p), 2, "case %zu (%s): exit %d", i, cases[i].expect,
                     th_proc_exit_code(&p));
        cr_assert(th_wait_log(log_path(log), cases[i].expect, 100), "case %zu: error must name %s",
                  i, cases[i].expect);
    }
    /* None of them touched the target. */
    cr_assert_eq(try_long(dst, "SELECT count(*) FROM pg_namespace WHERE nspname = 'cdc'"), 0);
}

/* ---- 13. two processes in one group ------------------------------------ */

/*
 * How many partitions a cdc-apply holds according to its log: the last
 * "assigned N partitions" / "revoked N partitions" line, read as its
 * "(M in all)" / "(M left)" total when it has one; -1 before any.
 */
static int last_assigned(const char *log)
{
    FILE *f = fopen(log_path(log), "r");
    int n = -1;
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        const char *a = strstr(line, "cdc-apply: assigned ");
        const char *r = strstr(line, "cdc-apply: revoked ");
        int k, total;
        if (a && sscanf(a, "cdc-apply: assigned %d partitions (%d in all)", &k, &total) == 2)
            n = total;
        else if (a && sscanf(a, "cdc-apply: assigned %d partitions", &k) == 1)
            n = k;
        else if (r && sscanf(r, "cdc-apply: revoked %d partitions (%d left)", &k, &total) == 2)
            n = total;
        else if (r)
            n = 0;
    }
    if (f)
        fclose(f);
    return n;
}

/* Sum of the end offsets of a topic's partitions (messages from offset 0). */
static long topic_end(const char *table)
{
    char topic[256];
    th_topic("public", table, topic, sizeof topic);
    th_consume_opts o = {.bootstrap = broker.bootstrap, .topic = topic, .timeout_ms = 30000};
    th_msgs *m = th_consume(&o);
    long n = (long)m->n;
    th_msgs_free(m);
    return n;
}

static void assert_positions_at_end(const char *table)
{
    char topic[256];
    th_topic("public", table, topic, sizeof topic);
    long end = topic_end(table);
    long got = -1;
    for (int64_t t = th_now_ms() + 30000; th_now_ms() < t; usleep(200 * 1000))
        if ((got = try_long(dst,
                            "SELECT coalesce(sum(next_offset), 0) FROM cdc.apply_positions "
                            "WHERE topic = '%s'",
                            topic)) == end)
            break;
    cr_assert_eq(got, end, "%s: positions sum to %ld, the topic holds %ld messages", topic, got,
                 end);
}

Test(apply_faults, two_processes_share_a_group_and_one_takes_over)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    workload w;
    work_start(&w);
    start_apply(&app, "apply1.log", SMALL_BATCHES);
    start_apply(&app2, "apply2.log", SMALL_BATCHES);
    /* Both get a share of the partitions. */
    int64_t end = th_now_ms() + 60000;
    while (!(last_assigned("apply1.log") > 0 && last_assigned("apply2.log") > 0)) {
        cr_assert_lt(th_now_ms(), end, "the partitions were not shared: %d and %d",
                     last_assigned("apply1.log"), last_assigned("apply2.log"));
        usleep(200 * 1000);
    }
    long progress = wait_progress(0, 60000, "both members");
    usleep(1500 * 1000);
    progress = wait_progress(progress, 30000, "both members");
    kill9(&app2);
    wait_progress(applied(), 60000, "after the kill");
    usleep(1000 * 1000);
    work_stop(&w);
    th_assert_converge_alive(&pg, "src", "dst", TABLES, CONVERGE_MS, &app);
    assert_no_double_apply();
    assert_positions_at_end("pay");
    assert_positions_at_end("ins");
    stop_clean(&app, "cdc-apply");
}

/* Recorded next offset of the keyless table's only partition (ins [0]). */
static long ins_position(void)
{
    char topic[256];
    th_topic("public", "ins", topic, sizeof topic);
    return try_long(dst,
                    "SELECT next_offset FROM cdc.apply_positions WHERE topic = '%s' "
                    "AND partition = 0",
                    topic);
}

/* True if ins [0] does not move for `ms` while the workload writes to it. */
static bool ins_position_stalls(int ms)
{
    long before = ins_position();
    usleep((useconds_t)ms * 1000);
    return ins_position() == before;
}

/*
 * A member frozen (SIGSTOP) past its session timeout loses its partitions
 * to the other; when it wakes up with a batch in hand (long batch.max.ms)
 * it must not apply that batch over the new owner's work. The frozen member
 * is the owner of ins [0], whose events would show up twice. The two
 * rebalances also move partitions that wait at one of tt's truncates.
 */
Test(apply_faults, frozen_member_that_lost_its_partitions_applies_nothing_twice)
{
    const char *const slow_batches[] = {"batch.max.ms=1500", NULL};
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    workload w;
    work_start(&w);
    start_apply(&app, "apply1.log", slow_batches);
    start_apply(&app2, "apply2.log", slow_batches);
    int64_t end = th_now_ms() + 60000;
    while (!(last_assigned("apply1.log") > 0 && last_assigned("apply2.log") > 0)) {
        cr_assert_lt(th_now_ms(), end, "the partitions were not shared: %d and %d",
                     last_assigned("apply1.log"), last_assigned("apply2.log"));
        usleep(200 * 1000);
    }
    end = th_now_ms() + 60000;
    while (ins_position() < 1) {
        cr_assert_lt(th_now_ms(), end, "ins is not being applied");
        usleep(200 * 1000);
    }
    usleep(1000 * 1000);
    /* Freeze the owner of ins [0]: try app2; if ins [0] still moves (well
     * within the 6 s session timeout, so nothing is reassigned), it is app1. */
    th_proc *frozen = &app2, *other = &app;
    th_proc_kill(frozen, SIGSTOP);
    usleep(500 * 1000);
    if (!ins_position_stalls(2500)) {
        th_proc_kill(frozen, SIGCONT);
        frozen = &app, other = &app2;
        usleep(1000 * 1000); /* mid-batch again */
        th_proc_kill(frozen, SIGSTOP);
        usleep(500 * 1000);
        cr_assert(ins_position_stalls(2500), "neither member seems to own ins [0]");
    }
    /* The other member takes ins [0] over once the session expired. */
    long stalled = ins_position();
    end = th_now_ms() + 60000;
    while (ins_position() <= stalled) {
        cr_assert_lt(th_now_ms(), end, "%s did not take over ins [0]", other->logfile);
        usleep(200 * 1000);
    }
    usleep(1000 * 1000);
    th_proc_kill(frozen, SIGCONT);
    usleep(1500 * 1000);
    work_stop(&w);
    th_assert_converge_alive(&pg, "src", "dst", TABLES, 60000, other);
    assert_no_double_apply();
    stop_clean(&app, "cdc-apply (1)");
    stop_clean(&app2, "cdc-apply (2)");
}

/*
 * A member that waits at a truncate for the partitions of a member that
 * died (they can only arrive once its session expired and they were handed
 * over) must go on past the truncate once the rendezvous completes, on
 * every partition, including those it held (and paused) before the
 * rebalance. With the eager protocol every partition is revoked and
 * assigned again in that rebalance.
 */
static void truncate_rendezvous_across_rebalance(const char *strategy)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(src, "INSERT INTO tt SELECT g, 'before' FROM generate_series(1, 100) g");
    const char *const extra[] = {"batch.max.events=200", "batch.max.ms=100", strategy, NULL};
    start_apply(&app, "apply1.log", extra);
    start_apply(&app2, "apply2.log", extra);
    int64_t end = th_now_ms() + 60000;
    while (!(last_assigned("apply1.log") > 0 && last_assigned("apply2.log") > 0)) {
        cr_assert_lt(th_now_ms(), end, "the partitions were not shared: %d and %d",
                     last_assigned("apply1.log"), last_assigned("apply2.log"));
        usleep(200 * 1000);
    }
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"tt", NULL}, CONVERGE_MS,
                             &app);
    /* apply2 dies; apply1 reaches the truncate on its partitions and waits
     * there for apply2's until the group hands them over. */
    kill9(&app2);
    th_sql(src, "INSERT INTO tt SELECT g, 'gone' FROM generate_series(101, 200) g");
    th_sql(src, "TRUNCATE tt");
    th_sql(src, "INSERT INTO tt SELECT g, 'after' FROM generate_series(201, 300) g");
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"tt", NULL}, 60000, &app);
    th_sql(src, "INSERT INTO tt SELECT g, 'later' FROM generate_series(301, 400) g");
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"tt", NULL}, 30000, &app);
    stop_clean(&app, "cdc-apply");
}

Test(apply_faults, truncate_rendezvous_completes_across_a_cooperative_rebalance)
{
    truncate_rendezvous_across_rebalance("kafka.partition.assignment.strategy=cooperative-sticky");
}

Test(apply_faults, truncate_rendezvous_completes_across_an_eager_rebalance)
{
    truncate_rendezvous_across_rebalance("kafka.partition.assignment.strategy=range");
}

/* ---- 14. events deleted before they were applied ----------------------- */

/*
 * cdc-devbroker (librdkafka's mock) keeps about 5 MB per partition and
 * drops older data: 8 MB of uncompressible events into a one-partition
 * topic make Kafka's log start past offset 0. `from`..`to` rows of 1 KB.
 */
static void insert_big(int from, int to)
{
    th_sql(src,
           "INSERT INTO big SELECT g, (SELECT string_agg(md5(random()::text || g || i), '') "
           "FROM generate_series(1, 32) i) FROM generate_series(%d, %d) g",
           from, to);
    cr_assert(th_wait_slot(src, "cdc", th_wal_lsn(src), 60000), "the slot did not catch up");
}

static void big_setup(void)
{
    if (th_broker_external())
        cr_skip_test("needs cdc-devbroker's 5 MB limit per partition");
    char topic[256];
    th_topic("public", "big", topic, sizeof topic);
    th_broker_cmd(&broker, "create %s 1", topic);
    th_sql(src, "CREATE TABLE big (id bigint PRIMARY KEY, blob text)");
    const char *const extra[] = {"kafka.compression.type=none", NULL};
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", extra);
}

static void assert_stops_with(const char *log, const char *needle)
{
    int st;
    cr_assert_eq(th_proc_wait(&app, 60000, &st), 0,
                 "cdc-apply must stop: Kafka lost events it never applied");
    cr_assert_eq(th_proc_exit_code(&app), 1, "exit status %d", th_proc_exit_code(&app));
    cr_assert(th_wait_log(log_path(log), needle, 1000), "the log must say \"%s\"; it says: %s",
              needle, log_line(log, "ERROR"));
}

Test(apply_faults, a_new_target_refuses_a_partition_whose_first_events_were_deleted)
{
    big_setup();
    insert_big(1, 8000);
    start_apply(&app, "apply.log", NULL);
    assert_stops_with("apply.log", "Kafka's log starts at offset");
    cr_assert_eq(try_long(dst, "SELECT count(*) FROM cdc.apply_positions WHERE topic LIKE "
                               "'%%.big'"),
                 0, "nothing may be recorded for the damaged partition");
    long rows = try_long(dst, "SELECT count(*) FROM big");
    cr_assert(rows <= 0, "no row may be applied from a partition missing its start (%ld)", rows);
}

Test(apply_faults, a_recorded_position_deleted_by_retention_stops_cdc_apply)
{
    big_setup();
    insert_big(1, 100);
    start_apply(&app, "apply1.log", NULL);
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"big", NULL}, CONVERGE_MS,
                             &app);
    stop_clean(&app, "cdc-apply");
    insert_big(101, 8100);
    start_apply(&app, "apply2.log", NULL);
    assert_stops_with("apply2.log", "the recorded position is no longer in Kafka");
    cr_assert_eq(try_long(dst, "SELECT count(*) FROM big"), 100,
                 "nothing past the deleted events may be applied");

    /* The way back the README gives: a new load into new topics (its own
     * topic.prefix), which begins with a truncate of every table. */
    stop_clean(&cap, "cdc-capture");
    char prefix[96];
    snprintf(prefix, sizeof prefix, "topic.prefix=%s_reload", th_prefix());
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture2.log",
                     (const char *const[]){"--bootstrap", NULL},
                     (const char *const[]){"kafka.compression.type=none", prefix, NULL});
    cr_assert(th_wait_log_alive(&cap, "capture2.log", "streaming from slot", 60000),
              "the new load did not hand over to streaming");
    th_sql(src, "UPDATE big SET blob = 'after the reload' WHERE id <= 10");
    start_apply(&app, "apply3.log", (const char *const[]){prefix, NULL});
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"big", NULL}, CONVERGE_MS,
                             &app);
    stop_clean(&app, "cdc-apply");
}

/* ---- 15. two owners of a partition that has no position yet ------------ */

/*
 * Both cdc-apply processes hold a first batch of ins [0] behind `locker`'s
 * lock: release it, add 100 rows, and check that the 200 rows of ins were
 * each applied once (`alive` must keep running meanwhile).
 */
static void release_then_each_event_once(PGconn *locker, th_proc *alive)
{
    th_sql(locker, "COMMIT");
    PQfinish(locker);
    th_sql(src, "INSERT INTO ins SELECT g, 'later' FROM generate_series(101, 200) g");
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"ins", NULL}, CONVERGE_MS,
                             alive);
    usleep(2000 * 1000); /* anything applied twice would have landed by now */
    assert_no_double_apply();
    cr_assert_eq(try_long(dst, "SELECT count(*) FROM ins"), 200);
    stop_clean(&app, "cdc-apply (1)");
    stop_clean(&app2, "cdc-apply (2)");
}

/*
 * cdc-apply A holds the first batch of ins [0] (no position recorded yet)
 * in its write transaction, stuck behind a lock the test holds (SHARE:
 * writes wait, reads do not), until it misses max.poll.interval.ms and the
 * group gives the partition to B. B reads "no position" too, starts from
 * offset 0 and gets stuck the same way. When the lock goes, only one of the
 * two may apply those events: the other must find the position row the
 * first one wrote and read again from there. (Before the fix both did.)
 * The group hands the partition over here, so neither reads before its
 * group forms (the next test has both do that).
 */
Test(apply_faults, two_owners_of_a_partition_without_a_position_apply_it_once)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(dst, "CREATE TABLE ins (seq bigint, note text)");
    PGconn *locker = th_pg_connect(&pg, "dst");
    th_sql(locker, "BEGIN; LOCK TABLE ins IN SHARE MODE");
    const char *const extra[] = {"kafka.max.poll.interval.ms=7000", "read.before.assignment=false",
                                 NULL};
    start_apply(&app, "apply1.log", extra);
    th_sql(src, "INSERT INTO ins SELECT g, 'first' FROM generate_series(1, 100) g");
    /* A blocks in its batch; past 7 s the group drops it. */
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/apply1.log", th_test_dir());
    cr_assert(th_wait_log(path, "assigned", 30000), "cdc-apply (1) never joined");
    sleep(9);
    start_apply(&app2, "apply2.log", extra);
    int64_t end = th_now_ms() + 60000;
    while (last_assigned("apply2.log") <= 0) {
        cr_assert_lt(th_now_ms(), end, "cdc-apply (2) got no partition");
        usleep(200 * 1000);
    }
    sleep(3); /* B's first batch of ins [0] is under way too */
    release_then_each_event_once(locker, &app2);
}

/*
 * Two processes started together both read every partition while their
 * group forms (cdc-devbroker cannot list a group's members, so each finds
 * it empty) and both hold a first batch of the same partitions, stuck
 * behind the test's lock. When it goes, each event is applied once: the
 * positions, not the group, decide.
 */
Test(apply_faults, two_processes_reading_before_their_group_forms_apply_each_event_once)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(dst, "CREATE TABLE ins (seq bigint, note text)");
    th_sql(src, "INSERT INTO ins SELECT g, 'before' FROM generate_series(1, 100) g");
    char topic[256];
    th_topic("public", "ins", topic, sizeof topic);
    th_consume_opts o = {
        .bootstrap = broker.bootstrap, .topic = topic, .want = 100, .timeout_ms = 30000};
    th_msgs *m = th_consume(&o);
    cr_assert_eq(m->n, 100, "the topic should hold the 100 inserts first");
    th_msgs_free(m);
    PGconn *locker = th_pg_connect(&pg, "dst");
    th_sql(locker, "BEGIN; LOCK TABLE ins IN SHARE MODE");
    start_apply(&app, "apply1.log", NULL);
    start_apply(&app2, "apply2.log", NULL);
    cr_assert(th_wait_log(log_path("apply1.log"), "while consumer group", 30000) &&
                  th_wait_log(log_path("apply2.log"), "while consumer group", 30000),
              "both should read before their group forms");
    long stuck = 0;
    for (int i = 0; i < 300 && stuck < 2; i++, usleep(50 * 1000))
        stuck = try_long(dst, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                              "'Lock' AND application_name = 'cdc-apply'");
    /* One waits for the lock on ins, the other for the first one's claim of
     * the partition's position row. */
    cr_assert_geq(stuck, 2, "both processes should be writing ins");
    cr_assert_eq(last_assigned("apply1.log"), -1, "cdc-apply (1) was assigned partitions already");
    release_then_each_event_once(locker, &app);
}

/* ---- 16. a hand-made target table without the key's unique index ------- */

/*
 * An event whose schemas topic reads as empty or absent (not visible yet:
 * no leader, no Describe permission) is not a bad event: its schema was
 * published before it. cdc-apply reads again a second later instead of
 * stopping at it (errors.tolerance=none) or dead-lettering it.
 */
Test(apply_faults, an_unreadable_schemas_topic_is_waited_for_not_taken_for_a_bad_event)
{
    char topic[256];
    th_topic("public", "t", topic, sizeof topic);
    /* Single-object encoding: C3 01, a fingerprint, then the body. */
    static const uint8_t msg[] = {0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0};
    th_produce(broker.bootstrap, topic, 0, "k", 1, msg, sizeof msg);
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", NULL);
    cr_assert(th_wait_log(log_path("apply.log"), "reads as empty or absent", 60000), "%s",
              log_line("apply.log", "ERROR"));
    cr_assert_eq(th_proc_wait(&app, 0, NULL), -1, "cdc-apply must wait, not stop");
    int st = th_proc_stop(&app, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert_eq(th_sql_long(dst,
                             "SELECT count(*) FROM cdc.apply_positions WHERE topic = '%s' "
                             "AND next_offset > 0",
                             topic),
                 0, "nothing may be recorded past the event");
}

/*
 * Upserts need a unique index on the key. Without one, the merge's
 * ON CONFLICT fails: cdc-apply must stop there, not copy the rows straight
 * in (which would add a second row for every updated key).
 */
Test(apply_faults, a_target_table_without_a_key_index_stops_instead_of_duplicating)
{
    th_sql(dst, "CREATE TABLE pay (id bigint, amount numeric(18,2), memo text, version int)");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    insert_pay(1, 10, "g");
    th_sql(src, "UPDATE pay SET amount = amount + 1, version = version + 1");
    start_apply(&app, "apply.log", NULL);
    int st;
    cr_assert_eq(th_proc_wait(&app, 60000, &st), 0,
                 "cdc-apply must stop: the target cannot upsert by key");
    cr_assert_eq(th_proc_exit_code(&app), 1, "exit status %d", th_proc_exit_code(&app));
    cr_assert(th_wait_log(log_path("apply.log"), "no unique or exclusion constraint", 1000),
              "the log must carry PostgreSQL's error; it says: %s",
              log_line("apply.log", "stopping at"));
    cr_assert_eq(try_long(dst, "SELECT count(*) - count(DISTINCT id) FROM pay"), 0,
                 "no key may have two rows");
}
