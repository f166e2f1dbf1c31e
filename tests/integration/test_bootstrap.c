/*
 * cdc-capture's bootstrap (the initial full load) end to end: the load is
 * exactly the database at the slot's consistent point C (every row once, as
 * an "r" event at commit_lsn C, in its key's partition), and the stream
 * takes over from C without a gap or a repeat. Also the modes (only,
 * never), --bootstrap, kill -9 during the load, types and TOAST, and
 * privileges.
 *
 * How a test knows the state at C while a workload runs during the load:
 * every data table has the shape (id bigint PRIMARY KEY, v bigint, pad
 * text); before anything starts, a copy pre_<table> is taken; the workload
 * runs serial transactions on one connection and records each row it
 * changes, with txid_current(), in the unlogged (so never published) table
 * "hist". A transaction committed after C must appear in the stream (its
 * events carry its xid); so the state at C is pre_<table> with the hist
 * entries of the transactions that did NOT appear in the stream applied on
 * top. A transaction missing from the stream therefore shows up as a
 * difference between that state and the r events, and one streamed although
 * it committed before C as an event with commit_lsn <= C.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "cdc/avro_bin.h"
#include "harness_cdc.h"

static th_pg pg;
static th_broker broker;
static th_proc cap, app, app2;
static PGconn *src, *dst;
static cdc_registry *reg;

/* Parsed value schemas by fingerprint: decoding 200,000 events must not
 * parse a schema each time. */
#define MAX_SCHEMAS 128
static struct {
    size_t n;
    uint64_t fp[MAX_SCHEMAS];
    cdc_table_schema *s[MAX_SCHEMAS];
} schemas;

static void setup(void)
{
    th_pg_start_src_dst(&pg, &src, &dst);
    th_broker_start(&broker, 1);
    reg = cdc_registry_new();
}

static void teardown(void)
{
    if (app.pid)
        th_proc_stop(&app, 10000);
    if (app2.pid)
        th_proc_stop(&app2, 10000);
    if (cap.pid)
        th_proc_stop(&cap, 10000);
    for (size_t i = 0; i < schemas.n; i++)
        cdc_table_schema_free(schemas.s[i]);
    schemas.n = 0;
    cdc_registry_destroy(reg);
    th_broker_stop(&broker);
    th_pg_stop_src_dst(&pg, &src, &dst);
}

TestSuite(bootstrap, .init = setup, .fini = teardown, .timeout = 180);

#define CONVERGE_MS 120000
#define LOAD_MS 100000 /* longest wait for a load to finish */

static const char *log_path(const char *name)
{
    static char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", th_test_dir(), name);
    return path;
}

static void kill9(th_proc *p)
{
    cr_assert_eq(th_proc_kill(p, SIGKILL), 0, "%s is not running", p->logfile);
    th_proc_wait(p, 10000, NULL);
}

/* The topic of a table of schema public gets `n` partitions (devbroker only). */
static void precreate_topic(const char *table, int n)
{
    if (!th_broker_external())
        th_broker_cmd(&broker, "create %s.public.%s %d", th_prefix(), table, n);
}

/* Wait until capture hands over to the stream; fails if it exits first. */
static void wait_streaming(th_proc *p, const char *logname, int timeout_ms)
{
    cr_assert(th_wait_log_alive(p, logname, "streaming from slot", timeout_ms),
              "%s: the load did not finish (no \"streaming from slot\") within %d s (exit "
              "status %d)",
              logname, timeout_ms / 1000, th_proc_exit_code(p));
}

/* Everything the source committed has been confirmed by capture. */
static void wait_caught_up(void)
{
    cr_assert(th_wait_slot(src, "cdc", th_wal_lsn(src), 60000),
              "capture did not confirm the WAL end within 60 s");
}

/* The primary key of `table` as "(cols)" or "none" (pg_get_constraintdef). */
static char *key_of(PGconn *c, const char *table)
{
    return th_sql_value(c,
                        "SELECT coalesce((SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                        "WHERE conrelid = to_regclass('%s') AND contype = 'p'), 'none')",
                        table);
}

/*
 * A table cdc-apply creates for a load gets its primary key once the load
 * is applied: wait for each table's key to be the source's, and for no
 * table to be left waiting.
 */
static void assert_keys_like_source(const char *const *tables)
{
    for (; *tables; tables++) {
        char *want = key_of(src, *tables), *got = NULL;
        for (int i = 0; i < 300; i++, usleep(100 * 1000)) {
            free(got);
            got = key_of(dst, *tables);
            if (strcmp(got, want) == 0)
                break;
        }
        cr_assert_str_eq(got, want, "%s: the target's primary key is %s, the source's %s",
                         *tables, got, want);
        free(got);
        free(want);
    }
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM cdc.apply_deferred_keys"), 0,
                 "tables still wait for their key");
}

static void converge_within(const char *const *tables, int timeout_ms)
{
    th_assert_converge_alive(&pg, "src", "dst", tables, timeout_ms, &app);
    assert_keys_like_source(tables);
}

static void converge(const char *const *tables)
{
    converge_within(tables, CONVERGE_MS);
}

/* ---- decoding ------------------------------------------------------------ */

/* Decode the value of `m` (not a tombstone) into ev; returns the schema (cached). */
static const cdc_table_schema *decode(const th_msg *m, cdc_event *ev)
{
    cr_assert_not_null(m->value, "tombstone where an event was expected");
    const uint8_t *p = m->value, *end = p + m->value_len;
    uint64_t fp;
    cr_assert_eq(cdc_avro_get_so_header(&p, end, &fp), 0, "%s: value is not single-object encoded",
                 m->topic);
    cdc_table_schema *s = NULL;
    for (size_t i = 0; i < schemas.n && !s; i++)
        if (schemas.fp[i] == fp)
            s = schemas.s[i];
    char err[512];
    if (!s) {
        const cdc_registry_schema *rs = cdc_registry_get(reg, fp);
        if (!rs) {
            cdc_registry_load_prefix(reg, broker.bootstrap, NULL, th_prefix(), 10000, err,
                                     sizeof err);
            rs = cdc_registry_get(reg, fp);
        }
        cr_assert_not_null(rs, "schema %016llx not in %s._schemas", (unsigned long long)fp,
                           th_prefix());
        s = cdc_table_schema_parse(rs->json, err, sizeof err);
        cr_assert_not_null(s, "%s", err);
        cr_assert_lt(schemas.n, MAX_SCHEMAS);
        schemas.fp[schemas.n] = fp;
        schemas.s[schemas.n++] = s;
    }
    cr_assert_eq(cdc_event_decode(s, p, (size_t)(end - p), ev, err, sizeof err), 0, "%s: %s",
                 m->topic, err);
    return s;
}

/* Every message of public.<table> up to the end offsets (undecoded). */
static th_msgs *read_all(const char *table, int timeout_ms)
{
    char topic[512];
    th_topic("public", table, topic, sizeof topic);
    th_consume_opts o = {
        .bootstrap = broker.bootstrap, .topic = topic, .want = 0, .timeout_ms = timeout_ms};
    return th_consume(&o);
}

/* At least `want` messages of public.<table> (undecoded). */
static th_msgs *read_some(const char *table, size_t want, int timeout_ms)
{
    char topic[512];
    th_topic("public", table, topic, sizeof topic);
    th_consume_opts o = {
        .bootstrap = broker.bootstrap, .topic = topic, .want = want, .timeout_ms = timeout_ms};
    return th_consume(&o);
}

/* ---- tables and workload --------------------------------------------------- */

typedef struct tspec {
    const char *name;
    long rows;
    /* Heap fill factor (0 = default): 10 spreads narrow rows over enough
     * pages (> 32 MB) for the load to split the table into block ranges. */
    int fillfactor;
} tspec;

#define MAX_TABLES 4
#define WL_ID_BASE 1000000000L /* ids of rows the workload inserts */

/* Create the tables (shape id, v, pad) with their rows, pre_<table> and hist. */
static void prepare_tables(const tspec *t)
{
    for (int i = 0; t[i].name; i++)
        th_sql(src,
               "CREATE TABLE %s (id bigint PRIMARY KEY, v bigint NOT NULL, pad text) "
               "WITH (fillfactor = %d);"
               "INSERT INTO %s SELECT g, g, md5(g::text) FROM generate_series(1, %ld) g;"
               "CREATE UNLOGGED TABLE pre_%s AS SELECT * FROM %s",
               t[i].name, t[i].fillfactor ? t[i].fillfactor : 100, t[i].name, t[i].rows, t[i].name,
               t[i].name);
    th_sql(src, "CREATE UNLOGGED TABLE hist (seq bigserial PRIMARY KEY, txid bigint NOT NULL, "
                "tbl text NOT NULL, id bigint NOT NULL, op text NOT NULL, v bigint, pad text)");
}

typedef struct workload {
    char conninfo[TH_PATH_MAX];
    const tspec *t;
    int ntables;
    bool deletes;
    atomic_int stop;
    pthread_t thr;
    unsigned seed;
    long next_id[MAX_TABLES]; /* next id to insert, per table */
    long txns, ops;
    char err[1024];
} workload;

/* One statement; false (and w->err) on failure. */
static bool wl_exec(workload *w, PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(w->err, sizeof w->err, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* An existing-looking id of table i: mostly preloaded rows, some inserted ones. */
static long wl_pick(workload *w, int i)
{
    long inserted = w->next_id[i] - WL_ID_BASE;
    if (inserted > 0 && rand_r(&w->seed) % 5 == 0)
        return WL_ID_BASE + rand_r(&w->seed) % inserted;
    return 1 + rand_r(&w->seed) % w->t[i].rows;
}

/*
 * Serial transactions of 1 to 3 inserts, updates and deletes (no deletes
 * unless w->deletes); each changed row is recorded in hist in the same
 * transaction. Runs until w->stop; never asserts (not the test's thread).
 */
static void *wl_main(void *arg)
{
    workload *w = arg;
    PGconn *c = PQconnectdb(w->conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(w->err, sizeof w->err, "workload connection: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    char sql[1024];
    while (!atomic_load(&w->stop)) {
        if (!wl_exec(w, c, "BEGIN"))
            break;
        int nops = 1 + rand_r(&w->seed) % 3;
        bool ok = true;
        for (int k = 0; k < nops && ok; k++) {
            int i = rand_r(&w->seed) % w->ntables;
            const char *tn = w->t[i].name;
            int kind = rand_r(&w->seed) % 10;
            if (kind < 4) {
                long id = w->next_id[i]++;
                snprintf(sql, sizeof sql,
                         "WITH x AS (INSERT INTO %s VALUES (%ld, %ld, 'ins %ld') "
                         "RETURNING id, v, pad) INSERT INTO hist (txid, tbl, id, op, v, pad) "
                         "SELECT txid_current(), '%s', id, 'c', v, pad FROM x",
                         tn, id, id, id, tn);
            } else if (kind < 8 || !w->deletes) {
                snprintf(sql, sizeof sql,
                         "WITH x AS (UPDATE %s SET v = v + 1, pad = 'upd %ld' WHERE id = %ld "
                         "RETURNING id, v, pad) INSERT INTO hist (txid, tbl, id, op, v, pad) "
                         "SELECT txid_current(), '%s', id, 'u', v, pad FROM x",
                         tn, w->ops, wl_pick(w, i), tn);
            } else {
                snprintf(sql, sizeof sql,
                         "WITH x AS (DELETE FROM %s WHERE id = %ld RETURNING id) "
                         "INSERT INTO hist (txid, tbl, id, op) "
                         "SELECT txid_current(), '%s', id, 'd' FROM x",
                         tn, wl_pick(w, i), tn);
            }
            ok = wl_exec(w, c, sql);
            w->ops++;
        }
        if (!ok || !wl_exec(w, c, "COMMIT"))
            break;
        w->txns++;
        usleep(2000);
    }
    PQfinish(c);
    return NULL;
}

static void wl_start(workload *w, const tspec *t, bool deletes, unsigned seed)
{
    memset(w, 0, sizeof *w);
    th_pg_conninfo(&pg, "src", w->conninfo, sizeof w->conninfo);
    w->t = t;
    while (t[w->ntables].name)
        w->ntables++;
    cr_assert_leq(w->ntables, MAX_TABLES);
    w->deletes = deletes;
    w->seed = seed;
    for (int i = 0; i < w->ntables; i++)
        w->next_id[i] = th_sql_long(src,
                                    "SELECT coalesce(max(id) + 1, %ld) FROM hist WHERE tbl = "
                                    "'%s' AND id >= %ld",
                                    WL_ID_BASE, t[i].name, WL_ID_BASE);
    atomic_store(&w->stop, 0);
    cr_assert_eq(pthread_create(&w->thr, NULL, wl_main, w), 0);
}

static void wl_stop(workload *w)
{
    atomic_store(&w->stop, 1);
    pthread_join(w->thr, NULL);
    cr_assert_eq(w->err[0], '\0', "workload failed: %s", w->err);
    cr_log_info("workload: %ld transactions, %ld operations", w->txns, w->ops);
}

/* ---- events into SQL --------------------------------------------------------- */

static void copy_text(cdc_buf *b, const char *s)
{
    if (!s) {
        cdc_buf_puts(b, "\\N");
        return;
    }
    for (; *s; s++) {
        if (*s == '\\')
            cdc_buf_puts(b, "\\\\");
        else if (*s == '\t')
            cdc_buf_puts(b, "\\t");
        else if (*s == '\n')
            cdc_buf_puts(b, "\\n");
        else if (*s == '\r')
            cdc_buf_puts(b, "\\r");
        else
            cdc_buf_putc(b, (uint8_t)*s);
    }
}

static void copy_hex(cdc_buf *b, const void *p, size_t n)
{
    if (!p) {
        cdc_buf_puts(b, "\\N");
        return;
    }
    for (size_t i = 0; i < n; i++)
        cdc_buf_printf(b, "%02x", ((const uint8_t *)p)[i]);
}

static void copy_in(PGconn *c, const char *copy_sql, cdc_buf *data)
{
    PGresult *r = PQexec(c, copy_sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COPY_IN, "%s: %s", copy_sql, PQresultErrorMessage(r));
    PQclear(r);
    cr_assert_eq(PQputCopyData(c, (const char *)data->data, (int)data->len), 1, "%s",
                 PQerrorMessage(c));
    cr_assert_eq(PQputCopyEnd(c, NULL), 1, "%s", PQerrorMessage(c));
    while ((r = PQgetResult(c)) != NULL) {
        cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", copy_sql,
                     PQresultErrorMessage(r));
        PQclear(r);
    }
}

/*
 * Read every message of the tables' topics into temp tables of `c`:
 *   ev_r (tbl, id, v, pad, key, part, off, commit_lsn, ordinal, snap)   op r
 *   ev_s (tbl, op, id, v, pad, key, txid, commit_lsn, ordinal, part, off)
 *   ev_t (tbl, key, part, off)                                 tombstones
 * Returns the number of messages.
 */
static size_t load_events(PGconn *c, const tspec *t)
{
    th_sql(c, "CREATE TEMP TABLE ev_r (tbl text, id bigint, v bigint, pad text, key text, "
              " part int, off bigint, commit_lsn bigint, ordinal bigint, snap text);"
              "CREATE TEMP TABLE ev_s (tbl text, op text, id bigint, v bigint, pad text, "
              " key text, txid bigint, commit_lsn bigint, ordinal bigint, part int, off bigint);"
              "CREATE TEMP TABLE ev_t (tbl text, key text, part int, off bigint)");
    size_t total = 0;
    cdc_event ev;
    cdc_event_init(&ev);
    for (int i = 0; t[i].name; i++) {
        long snapshot_truncates = 0;
        th_msgs *m = read_all(t[i].name, 60000);
        total += m->n;
        cdc_buf r, s, tomb;
        cdc_buf_init(&r);
        cdc_buf_init(&s);
        cdc_buf_init(&tomb);
        for (size_t j = 0; j < m->n; j++) {
            const th_msg *x = &m->v[j];
            if (!x->value) {
                cdc_buf_printf(&tomb, "%s\t", t[i].name);
                copy_hex(&tomb, x->key, x->key_len);
                cdc_buf_printf(&tomb, "\t%d\t%lld\n", x->partition, (long long)x->offset);
                continue;
            }
            const cdc_table_schema *sc = decode(x, &ev);
            if (ev.op == 't' && strcmp(ev.snapshot, "false") != 0) {
                /* A load starts with a truncate of each table, on every
                 * partition, at the consistent point, before its rows. */
                snapshot_truncates++;
                continue;
            }
            if (ev.op == 'r') {
                cr_assert(ev.has_after, "%s: r event without a row", x->topic);
                cdc_buf_printf(&r, "%s\t", t[i].name);
                copy_text(&r, th_col(sc, &ev, true, "id"));
                cdc_buf_putc(&r, '\t');
                copy_text(&r, th_col(sc, &ev, true, "v"));
                cdc_buf_putc(&r, '\t');
                copy_text(&r, th_col(sc, &ev, true, "pad"));
                cdc_buf_putc(&r, '\t');
                copy_hex(&r, x->key, x->key_len);
                cdc_buf_printf(&r, "\t%d\t%lld\t%lld\t%lld\t", x->partition, (long long)x->offset,
                               (long long)ev.commit_lsn, (long long)ev.ordinal);
                copy_text(&r, ev.snapshot);
                cdc_buf_putc(&r, '\n');
            } else {
                cdc_buf_printf(&s, "%s\t%c\t", t[i].name, ev.op);
                if (ev.op == 't') {
                    cdc_buf_puts(&s, "\\N\t\\N\t\\N");
                } else {
                    bool after = ev.op != 'd';
                    copy_text(&s, th_col(sc, &ev, after, "id"));
                    cdc_buf_putc(&s, '\t');
                    copy_text(&s, after ? th_col(sc, &ev, true, "v") : NULL);
                    cdc_buf_putc(&s, '\t');
                    copy_text(&s, after ? th_col(sc, &ev, true, "pad") : NULL);
                }
                cdc_buf_putc(&s, '\t');
                copy_hex(&s, x->key, x->key_len);
                cdc_buf_printf(&s, "\t%lld\t%lld\t%lld\t%d\t%lld\n", (long long)ev.txid,
                               (long long)ev.commit_lsn, (long long)ev.ordinal, x->partition,
                               (long long)x->offset);
            }
        }
        if (r.len)
            copy_in(c, "COPY ev_r FROM STDIN", &r);
        if (s.len)
            copy_in(c, "COPY ev_s FROM STDIN", &s);
        if (tomb.len)
            copy_in(c, "COPY ev_t FROM STDIN", &tomb);
        /* Only a reload starts with truncates (one per partition). */
        cr_log_info("%s: %ld truncate events of loads", t[i].name, snapshot_truncates);
        cdc_buf_free(&r);
        cdc_buf_free(&s);
        cdc_buf_free(&tomb);
        th_msgs_free(m);
    }
    cdc_event_free(&ev);
    th_sql(c, "ANALYZE ev_r; ANALYZE ev_s");
    return total;
}

/* Up to 5 rows of `query` (one text column), joined by newlines, for messages. */
static char *sample(PGconn *c, const char *query)
{
    char *v = th_sql_value(c,
                           "SELECT coalesce(string_agg(x, E'\\n  '), '') FROM "
                           "(SELECT (q)::text AS x FROM (%s) q LIMIT 5) s",
                           query);
    return v ? v : cdc_xstrdup("");
}

typedef struct snap_check {
    /* The state at C: a query of (tbl, id, v, pad). NULL = from pre_* and
     * hist (see the top of the file). */
    const char *expect_sql;
    bool single_load;  /* every r event has one commit_lsn */
    bool exactly_once; /* no streamed event twice (no crash in the test) */
    bool hist_match;   /* streamed events = hist rows of the streamed transactions */
} snap_check;

typedef struct snap_result {
    int64_t lsn;    /* C: commit_lsn of the (last) load */
    long rows;      /* r events at C */
    long loads;     /* distinct commit_lsn of r events */
    long streamed;  /* streamed events (not tombstones) */
    long pre_txns;  /* workload transactions before C */
    long post_txns; /* workload transactions after C */
} snap_result;

/*
 * The events of the tables in Kafka are the state at the consistent point C
 * as r events, each row once, plus only changes committed after C; per key
 * the r event precedes the later changes in the same partition, under the
 * same Kafka key.
 */
static snap_result check_snapshot(const tspec *t, const snap_check *o)
{
    snap_result res = {0};
    PGconn *c = th_pg_connect(&pg, "src");
    size_t n = load_events(c, t);
    cr_log_info("%zu messages in the topics", n);
    res.lsn = th_sql_long(c, "SELECT max(commit_lsn) FROM ev_r");
    cr_assert_gt(res.lsn, 0, "no r events at all in %zu messages", n);
    res.loads = th_sql_long(c, "SELECT count(DISTINCT commit_lsn) FROM ev_r");
    res.rows =
        th_sql_long(c, "SELECT count(*) FROM ev_r WHERE commit_lsn = %lld", (long long)res.lsn);
    res.streamed = th_sql_long(c, "SELECT count(*) FROM ev_s");
    if (o->single_load)
        cr_assert_eq(res.loads, 1, "r events at %ld different commit LSNs: %s", res.loads,
                     sample(c, "SELECT commit_lsn || ': ' || count(*) FROM ev_r GROUP BY 1"));

    char q[4096];
    long lsn = (long)res.lsn;
    /* Each row once. */
    snprintf(q, sizeof q,
             "SELECT tbl || ' id ' || id || ' x' || count(*) FROM ev_r WHERE commit_lsn = %ld "
             "GROUP BY tbl, id HAVING count(*) > 1",
             lsn);
    long dups = th_sql_long(c, "SELECT count(*) FROM (%s) d", q);
    cr_assert_eq(dups, 0, "%ld keys have more than one r event in the load at %ld:\n  %s", dups,
                 lsn, sample(c, q));
    /* source.snapshot: "true", and "last" on exactly one event, the final one. */
    cr_assert_eq(th_sql_long(c,
                             "SELECT count(*) FROM ev_r WHERE commit_lsn = %ld "
                             "AND snap NOT IN ('true', 'last')",
                             lsn),
                 0, "r events with source.snapshot other than true/last: %s",
                 sample(c, "SELECT DISTINCT snap FROM ev_r"));
    cr_assert_eq(
        th_sql_long(c, "SELECT count(*) FROM ev_r WHERE commit_lsn = %ld AND snap = 'last'", lsn),
        1, "the load must mark exactly one event (its final one) snapshot=last");
    /*
     * Only changes committed from C on are streamed (a commit record that
     * starts at C itself is not in the snapshot), and every event of the
     * load orders before them, even before one committed at C.
     */
    snprintf(q, sizeof q,
             "SELECT tbl || ' ' || op || ' id ' || id || ' txid ' || txid || ' commit_lsn ' || "
             "commit_lsn FROM ev_s WHERE commit_lsn < %ld ORDER BY commit_lsn",
             lsn);
    long early = th_sql_long(c, "SELECT count(*) FROM (%s) e", q);
    cr_assert_eq(early, 0, "%ld streamed events before the consistent point %ld:\n  %s", early, lsn,
                 sample(c, q));
    snprintf(q, sizeof q,
             "SELECT tbl || ' id ' || id || ' ordinal ' || ordinal FROM ev_r "
             "WHERE commit_lsn = %ld AND ordinal >= 0",
             lsn);
    long late = th_sql_long(c, "SELECT count(*) FROM (%s) l", q);
    cr_assert_eq(late, 0,
                 "%ld r events do not order before a transaction committed at the consistent "
                 "point (ordinal >= 0):\n  %s",
                 late, sample(c, q));
    if (o->exactly_once) {
        snprintf(q, sizeof q,
                 "SELECT tbl || ' commit_lsn ' || commit_lsn || ' ordinal ' || ordinal || ' x' "
                 "|| count(*) FROM ev_s GROUP BY tbl, commit_lsn, ordinal HAVING count(*) > 1");
        long rep = th_sql_long(c, "SELECT count(*) FROM (%s) r", q);
        cr_assert_eq(rep, 0, "%ld streamed events sent more than once:\n  %s", rep, sample(c, q));
    }

    /* The r events are exactly the state at C. */
    cdc_buf e;
    cdc_buf_init(&e);
    if (o->expect_sql) {
        cdc_buf_puts(&e, o->expect_sql);
    } else {
        cdc_buf_puts(&e, "WITH pre AS (");
        for (int i = 0; t[i].name; i++)
            cdc_buf_printf(&e, "%sSELECT '%s'::text AS tbl, id, v, pad FROM pre_%s",
                           i ? " UNION ALL " : "", t[i].name, t[i].name);
        cdc_buf_puts(&e, "), h AS (SELECT DISTINCT ON (tbl, id) tbl, id, op, v, pad FROM hist "
                         "WHERE NOT EXISTS (SELECT 1 FROM ev_s WHERE ev_s.txid = hist.txid) "
                         "ORDER BY tbl, id, seq DESC) "
                         "SELECT tbl, id, v, pad FROM pre p WHERE NOT EXISTS "
                         "(SELECT 1 FROM h WHERE h.tbl = p.tbl AND h.id = p.id) "
                         "UNION ALL SELECT tbl, id, v, pad FROM h WHERE op <> 'd'");
        res.pre_txns = th_sql_long(c, "SELECT count(DISTINCT txid) FROM hist WHERE NOT EXISTS "
                                      "(SELECT 1 FROM ev_s WHERE ev_s.txid = hist.txid)");
        res.post_txns = th_sql_long(c, "SELECT count(DISTINCT txid) FROM hist WHERE EXISTS "
                                       "(SELECT 1 FROM ev_s WHERE ev_s.txid = hist.txid)");
    }
    th_sql(c, "CREATE TEMP TABLE expect AS %s", cdc_buf_cstr(&e));
    cdc_buf_free(&e);
    long expected = th_sql_long(c, "SELECT count(*) FROM expect");
    snprintf(q, sizeof q,
             "SELECT 'missing from the load: ' || x::text FROM (SELECT tbl, id, v, pad FROM "
             "expect EXCEPT ALL SELECT tbl, id, v, pad FROM ev_r WHERE commit_lsn = %ld) x",
             lsn);
    long missing = th_sql_long(c, "SELECT count(*) FROM (%s) m", q);
    char *missing_rows = sample(c, q);
    snprintf(q, sizeof q,
             "SELECT 'in the load only: ' || x::text FROM (SELECT tbl, id, v, pad FROM ev_r "
             "WHERE commit_lsn = %ld EXCEPT ALL SELECT tbl, id, v, pad FROM expect) x",
             lsn);
    long extra = th_sql_long(c, "SELECT count(*) FROM (%s) m", q);
    cr_assert(missing == 0 && extra == 0,
              "the load at %ld is not the state at that point: %ld rows expected, %ld r events; "
              "%ld rows missing or different, %ld extra or different:\n  %s\n  %s",
              lsn, expected, res.rows, missing, extra, missing_rows, sample(c, q));
    free(missing_rows);

    /* Per key, the r event comes first in the partition of its later changes. */
    snprintf(q, sizeof q,
             "SELECT s.tbl || ' id ' || s.id || ': r at ' || r.part || '/' || r.off || ', ' || "
             "s.op || ' at ' || s.part || '/' || s.off || CASE WHEN s.key <> r.key THEN "
             "' (different Kafka key)' ELSE '' END FROM ev_s s JOIN ev_r r ON r.tbl = s.tbl "
             "AND r.id = s.id AND r.commit_lsn = %ld WHERE s.part <> r.part OR s.off <= r.off "
             "OR s.key IS DISTINCT FROM r.key",
             lsn);
    long order = th_sql_long(c, "SELECT count(*) FROM (%s) o", q);
    cr_assert_eq(order, 0, "%ld changes not after their key's r event in one partition:\n  %s",
                 order, sample(c, q));

    if (o->hist_match) {
        /* Streamed transactions are whole: their events are their hist rows. */
        snprintf(q, sizeof q,
                 "SELECT 'not streamed: ' || x::text FROM (SELECT txid, tbl, id, op FROM hist "
                 "WHERE txid IN (SELECT txid FROM ev_s) EXCEPT SELECT txid, tbl, id, op FROM "
                 "ev_s) x UNION ALL SELECT 'streamed, not in hist: ' || y::text FROM (SELECT "
                 "txid, tbl, id, op FROM ev_s EXCEPT SELECT txid, tbl, id, op FROM hist) y");
        long diff = th_sql_long(c, "SELECT count(*) FROM (%s) d", q);
        cr_assert_eq(diff, 0, "%ld differences between streamed events and the workload:\n  %s",
                     diff, sample(c, q));
    }
    PQfinish(c);
    cr_log_info("load at %lld: %ld rows; %ld loads; %ld streamed events; workload transactions "
                "%ld before, %ld after the consistent point",
                (long long)res.lsn, res.rows, res.loads, res.streamed, res.pre_txns, res.post_txns);
    return res;
}

/*
 * The last log line with "bootstrap" and "rows" (case-insensitive) names
 * `rows` (digits, maybe with thousands separators).
 */
static void assert_summary_line(const char *logname, long rows)
{
    FILE *f = fopen(log_path(logname), "r");
    cr_assert_not_null(f, "no log %s", logname);
    char line[4096], last[4096] = "";
    while (fgets(line, sizeof line, f))
        if (strcasestr(line, "bootstrap") && strcasestr(line, "rows"))
            snprintf(last, sizeof last, "%s", line);
    fclose(f);
    cr_assert(last[0], "%s: no final line mentioning bootstrap and rows", logname);
    /* Numbers of the line, separators between digits removed. */
    char digits[4096];
    size_t k = 0;
    for (size_t i = 0; last[i] && k < sizeof digits - 1; i++) {
        if ((last[i] == ',' || last[i] == '_' || last[i] == '\'') && i > 0 && last[i - 1] >= '0' &&
            last[i - 1] <= '9' && last[i + 1] >= '0' && last[i + 1] <= '9')
            continue;
        digits[k++] = last[i];
    }
    digits[k] = '\0';
    bool found = false;
    for (const char *p = digits; *p && !found; p++) {
        if (*p >= '0' && *p <= '9' && (p == digits || p[-1] < '0' || p[-1] > '9'))
            found = strtol(p, NULL, 10) == rows;
    }
    cr_assert(found, "%s: the bootstrap summary does not give %ld rows: %s", logname, rows, last);
}

/* ---- 1. a live database: the load is the consistent point, then the stream - */

Test(bootstrap, live_load_is_the_consistent_point_exactly_then_the_stream_takes_over)
{
    static const tspec T[] = {
        {"big", 150000, 10}, {"acct", 30000, 0}, {"pay", 20000, 0}, {NULL, 0, 0}};
    precreate_topic("big", 16);
    prepare_tables(T);
    cr_log_info("big: %ld MB of heap (split into block ranges when large)",
                th_sql_long(src, "SELECT pg_relation_size('big') >> 20"));
    workload w;
    wl_start(&w, T, true, 1);
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", NULL);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL, NULL);
    wait_streaming(&cap, "capture.log", LOAD_MS);
    usleep(1500 * 1000); /* the workload goes on after the hand-over */
    wl_stop(&w);
    wait_caught_up();
    converge((const char *const[]){"big", "acct", "pay", NULL});

    snap_check o = {.single_load = true, .exactly_once = true, .hist_match = true};
    snap_result r = check_snapshot(T, &o);
    cr_assert_gt(r.post_txns, 0, "no workload transaction after the consistent point");
    cr_assert_geq(r.rows, 190000);
    assert_summary_line("capture.log", r.rows);
    cr_assert_eq(th_proc_wait(&cap, 0, NULL), -1, "capture must keep streaming");
}

/* ---- 2. bootstrap.mode=only --------------------------------------------------- */

Test(bootstrap, mode_only_exits_0_with_the_slot_at_the_consistent_point)
{
    static const tspec T[] = {{"acct", 20000, 0}, {"pay", 10000, 0}, {NULL, 0, 0}};
    prepare_tables(T);
    workload w;
    wl_start(&w, T, true, 2);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture1.log", NULL,
                     (const char *const[]){"bootstrap.mode=only", NULL});
    cr_assert_eq(th_proc_wait(&cap, LOAD_MS, NULL), 0, "mode=only did not exit after the load");
    cr_assert_eq(th_proc_exit_code(&cap), 0, "mode=only: exit status %d", th_proc_exit_code(&cap));
    cr_assert(!th_wait_log(log_path("capture1.log"), "streaming from slot", 0),
              "mode=only must not stream");
    usleep(500 * 1000); /* changes while no capture runs */
    wl_stop(&w);
    uint64_t kept = th_slot_flush(src, "cdc");
    cr_assert_gt(kept, 0, "mode=only must keep the slot");

    /* Nothing but r events so far, all at the slot's position. */
    th_msgs *m = read_all("pay", 30000);
    cr_assert_geq(m->n, 10000, "pay: %zu events after mode=only", m->n);
    cdc_event ev;
    cdc_event_init(&ev);
    for (size_t i = 0; i < m->n; i++) {
        decode(&m->v[i], &ev);
        /* The load's own truncate (one per partition) comes first. */
        cr_assert(ev.op == 'r' || (ev.op == 't' && strcmp(ev.snapshot, "true") == 0),
                  "message %zu of pay is '%c', not r", i, ev.op);
        cr_assert_eq(ev.commit_lsn, kept, "r event at %llu, the slot confirmed %llu",
                     (unsigned long long)ev.commit_lsn, (unsigned long long)kept);
    }
    cdc_event_free(&ev);
    th_msgs_free(m);

    /* A normal run streams from there: with changes during it too. */
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", NULL);
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture2.log", NULL);
    wl_start(&w, T, true, 3);
    usleep(1000 * 1000);
    wl_stop(&w);
    wait_caught_up();
    converge((const char *const[]){"acct", "pay", NULL});
    snap_check o = {.single_load = true, .exactly_once = true, .hist_match = true};
    snap_result r = check_snapshot(T, &o);
    cr_assert_eq((uint64_t)r.lsn, kept, "the slot was kept at %llu, the load is at %lld",
                 (unsigned long long)kept, (long long)r.lsn);
    cr_assert_gt(r.post_txns, 0);
    assert_summary_line("capture1.log", r.rows);
}

/* ---- 3. kill -9 during the load ------------------------------------------------ */

/* Messages now in the topic of public.<table> (sum of the high watermarks). */
static int64_t topic_count(rd_kafka_t *rk, const char *table)
{
    char topic[512];
    th_topic("public", table, topic, sizeof topic);
    const struct rd_kafka_metadata *md = NULL;
    int nparts = 0;
    /* All topics: asking for this one by name would auto-create it. */
    if (rd_kafka_metadata(rk, 1, NULL, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0 && !md->topics[i].err)
            nparts = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    int64_t total = 0;
    for (int p = 0; p < nparts; p++) {
        int64_t low, high;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high, 5000) ==
            RD_KAFKA_RESP_ERR_NO_ERROR)
            total += high;
    }
    return total;
}

/*
 * kill -9 capture once at least `min_events` events of the load of `table`
 * are in Kafka, before the load ends. Returns false (with a warning) if the
 * load finished first, so the interruption was not exercised.
 */
static bool kill_during_load(const char *logname, const char *table, int64_t min_events)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", broker.bootstrap, err, sizeof err),
                 RD_KAFKA_CONF_OK, "%s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    int64_t end = th_now_ms() + 60000, n = 0;
    while ((n = topic_count(rk, table)) < min_events &&
           !th_wait_log(log_path(logname), "streaming from slot", 0)) {
        cr_assert_eq(th_proc_wait(&cap, 0, NULL), -1, "capture exited during the load (status %d)",
                     th_proc_exit_code(&cap));
        cr_assert_lt(th_now_ms(), end, "fewer than %lld events of %s after 60 s",
                     (long long)min_events, table);
        usleep(10 * 1000);
    }
    kill9(&cap);
    rd_kafka_destroy(rk);
    bool finished = th_wait_log(log_path(logname), "streaming from slot", 0);
    if (finished)
        cr_log_warn("the load finished before the kill: the interruption was not exercised");
    else
        cr_log_info("killed during the load with %lld events of %s in Kafka", (long long)n, table);
    return !finished;
}

/*
 * The replication connection idles through the load (it holds the exported
 * snapshot); if it is lost meanwhile (a firewall, a session timeout), the
 * stream starts on a new one after the load instead of cdc-capture exiting.
 */
Test(bootstrap, a_replication_connection_lost_during_the_load_is_replaced)
{
    static const tspec T[] = {{"big", 150000, 10}, {NULL, 0, 0}};
    precreate_topic("big", 16);
    prepare_tables(T);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL, NULL);
    cr_assert(th_wait_log(log_path("capture.log"), "bootstrap: ", 60000), "no load started");
    th_sql(src, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE backend_type = 'walsender' AND application_name = 'cdc-capture'");
    if (th_wait_log(log_path("capture.log"), "streaming from slot", 0))
        cr_skip_test("the load finished before the connection was cut");
    wait_streaming(&cap, "capture.log", LOAD_MS);
    th_sql(src, "INSERT INTO big (id, v, pad) VALUES (-1, -1, 'after')");
    wait_caught_up();
    cr_assert_eq(th_proc_wait(&cap, 0, NULL), -1, "capture must keep streaming");
}

Test(bootstrap, kill_9_during_the_load_then_restart_reloads_and_converges)
{
    static const tspec T[] = {{"big", 150000, 10}, {"pay", 10000, 0}, {NULL, 0, 0}};
    precreate_topic("big", 16);
    prepare_tables(T);
    workload w;
    /* Deletes during an interrupted load: next test. */
    wl_start(&w, T, false, 4);
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", NULL);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture1.log", NULL, NULL);
    bool interrupted = kill_during_load("capture1.log", "big", 2000);
    usleep(500 * 1000); /* changes while capture is down */
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture2.log", NULL, NULL);
    wait_streaming(&cap, "capture2.log", LOAD_MS);
    usleep(1000 * 1000);
    wl_stop(&w);
    wait_caught_up();
    converge((const char *const[]){"big", "pay", NULL});
    snap_check o = {.single_load = false, .exactly_once = false, .hist_match = true};
    snap_result r = check_snapshot(T, &o);
    if (interrupted) { /* the restart loaded everything again */
        cr_assert_eq(r.loads, 2,
                     "r events at %ld commit LSNs, want the partial load and the "
                     "reload",
                     r.loads);
        assert_summary_line("capture2.log", r.rows);
    }
    cr_log_info("interrupted: %d, loads seen in Kafka: %ld", interrupted, r.loads);
}

Test(bootstrap, rows_deleted_after_an_interrupted_load_do_not_survive_in_the_target)
{
    static const tspec T[] = {{"big", 150000, 10}, {NULL, 0, 0}};
    precreate_topic("big", 16);
    prepare_tables(T);
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", NULL);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture1.log", NULL, NULL);
    /* Some rows of the first load are in Kafka (so they reach the target). */
    kill_during_load("capture1.log", "big", 2000);
    th_msgs *m = read_all("big", 30000);
    cr_assert_geq(m->n, 2000);
    /* Delete 50 of them while no capture runs, then restart. */
    cdc_buf ids;
    cdc_buf_init(&ids);
    cdc_event ev;
    cdc_event_init(&ev);
    for (size_t i = 0, k = 0; i < 50 && k < m->n; k += m->n / 60) {
        const cdc_table_schema *s = decode(&m->v[k], &ev);
        if (ev.op == 't')
            continue; /* the load's truncate */
        cr_assert_eq(ev.op, 'r');
        cdc_buf_printf(&ids, "%s%s", i ? "," : "", th_col(s, &ev, true, "id"));
        i++;
    }
    cdc_event_free(&ev);
    th_msgs_free(m);
    th_sql(src, "DELETE FROM big WHERE id IN (%s)", cdc_buf_cstr(&ids));
    cdc_buf_free(&ids);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture2.log", NULL, NULL);
    wait_streaming(&cap, "capture2.log", LOAD_MS);
    wait_caught_up();
    /* Nothing changes any more once the r events are applied: 60 s is plenty. */
    converge_within((const char *const[]){"big", NULL}, 60000);
}

/* ---- 4. empty tables, every type, TOAST ---------------------------------------- */

static const char *TYPES_DDL =
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');"
    "CREATE DOMAIN cents AS bigint CHECK (VALUE >= 0);"
    "CREATE TABLE types (id int PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, f4 float4, "
    " f8 float8, n182 numeric(18,2), n380 numeric(38,0), n numeric, nneg numeric(5,-2), "
    " d date, t time, ts timestamp, tstz timestamptz, u uuid, by bytea, tx text, "
    " vc varchar(10), ch char(3), js json, jb jsonb, arr int[], tarr text[], m mood, "
    " iv interval, ttz timetz, money_ money, inet_ inet, rng int4range, c cents, "
    " big text)";

static const char *TYPES_COLS[] = {"b",  "i2",   "i4",     "i8",    "f4",  "f8",   "n182", "n380",
                                   "n",  "nneg", "d",      "t",     "ts",  "tstz", "u",    "by",
                                   "tx", "vc",   "ch",     "js",    "jb",  "arr",  "tarr", "m",
                                   "iv", "ttz",  "money_", "inet_", "rng", "c",    "big",  NULL};

static void insert_types(PGconn *c)
{
    th_sql(c, "INSERT INTO types VALUES (1, true, -32768, 2147483647, -9223372036854775808, "
              " 3.4028235e38, 2.2250738585072014e-308, -1234567890123456.78, "
              " 99999999999999999999999999999999999999, "
              " 123456789012345678901234567890.123456789012345678901234567890, 12300, "
              " '0044-03-15 BC', '24:00:00', '2026-11-24 08:14:00.123456', "
              " '1999-12-31 23:59:59.999999-05', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', "
              " '\\x00ff10'::bytea, 'tab\there \"quoted\" ünïcödé', 'abc', 'ab', "
              " '{\"a\": [1, 2.50]}', '{\"b\": {\"c\": null}}', '{1,NULL,3}', "
              " '{\"x,y\",\"\"}', 'happy', '1 year 2 mons -3 days 04:05:06.7', '10:11:12+05:30', "
              " 12.34, '192.168.0.1/24', '[1,10)', 42, repeat('x', 100))");
    th_sql(c, "INSERT INTO types (id, f4, f8, d, ts, tstz, n) VALUES "
              "(2, 'NaN', '-Infinity', 'infinity', '-infinity', 'infinity', 'NaN'), "
              "(3, '-0', '1e-320', '2000-02-29', '294200-12-31 23:59:59', "
              " '4713-01-01 00:00:00+00 BC', '-0.000000000000000000001')");
    th_sql(c, "INSERT INTO types (id) VALUES (4)"); /* every other column NULL */
    /* Text that COPY's text format escapes: backslashes, tabs, newlines, \N. */
    th_sql(c, "INSERT INTO types (id, tx, by, js, tarr, vc) VALUES (5, "
              " E'back\\\\slash \\\\N tab\\t nl\\n cr\\r end\\\\', '\\x5c4e0009'::bytea, "
              " '\"\\\\u0000x\\\\\\\\\"', ARRAY[E'a\\\\b', 'NULL', NULL], '\\N')");
}

Test(bootstrap, empty_tables_every_type_and_toasted_values_load_exactly)
{
    th_sql(src, "%s", TYPES_DDL);
    insert_types(src);
    th_sql(src, "CREATE TABLE empty1 (id int PRIMARY KEY, note text);"
                "CREATE TABLE empty2 (k text PRIMARY KEY);"
                "CREATE TABLE docs (id int PRIMARY KEY, version int, body text);"
                "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;"
                "INSERT INTO docs SELECT d, 1, (SELECT string_agg(md5((d * 1000 + g)::text), '') "
                " FROM generate_series(1, 320) g) FROM generate_series(1, 3) d");
    cr_assert_gt(th_sql_long(src, "SELECT pg_relation_size(reltoastrelid) FROM pg_class "
                                  "WHERE relname = 'docs'"),
                 0, "docs.body must be stored out of line");
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", NULL);
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    converge((const char *const[]){"types", "docs", NULL});

    /* Every value of the r events, cast back, equals the source value. */
    /* 5 rows, and the load's truncate on each of the 4 partitions. */
    size_t want = 5; /* a first load: no leading truncates */
    th_msgs *m = read_some("types", want, 30000);
    cr_assert_geq(m->n, want, "types: %zu events, want 5 r events and the truncates", m->n);
    cdc_event ev;
    cdc_event_init(&ev);
    for (size_t i = 0; i < m->n; i++) {
        const cdc_table_schema *s = decode(&m->v[i], &ev);
        if (ev.op == 't')
            continue;
        cr_assert_eq(ev.op, 'r', "types: '%c' event in the load", ev.op);
        const char *id = th_col(s, &ev, true, "id");
        for (const char **c = TYPES_COLS; *c; c++) {
            int f = cdc_table_schema_find(s, *c);
            cr_assert_geq(f, 0, "no field %s", *c);
            const char *text = th_col(s, &ev, true, *c);
            char *res;
            if (text) {
                char *lit = PQescapeLiteral(src, text, strlen(text));
                res = th_sql_value(src,
                                   "SELECT %s::text IS NOT DISTINCT FROM (%s::%s)::text "
                                   "FROM types WHERE id = %s",
                                   *c, lit, s->fields[f].pg_type, id);
                PQfreemem(lit);
            } else {
                res = th_sql_value(src, "SELECT %s IS NULL FROM types WHERE id = %s", *c, id);
            }
            cr_assert_str_eq(res, "t", "row %s column %s (%s): loaded '%s' differs from source", id,
                             *c, s->fields[f].pg_type, text ? text : "NULL");
            free(res);
        }
    }
    th_msgs_free(m);

    /* The TOASTed value travels whole. */
    want = 3;
    m = read_some("docs", want, 30000);
    cr_assert_geq(m->n, want, "docs: %zu events", m->n);
    size_t docs_rows = 0;
    for (size_t i = 0; i < m->n; i++) {
        const cdc_table_schema *s = decode(&m->v[i], &ev);
        if (ev.op == 't')
            continue;
        docs_rows++;
        cr_assert_eq(ev.op, 'r');
        cr_assert_eq(ev.has_after, true);
        int f = cdc_table_schema_find(s, "body");
        cr_assert_eq(ev.after[f].state, CDC_COL_VALUE, "docs.body not sent in the r event");
        const char *body = th_col(s, &ev, true, "body");
        cr_assert_eq(strlen(body), 10240, "docs.body: %zu bytes in the r event", strlen(body));
        char *lit = PQescapeLiteral(src, body, strlen(body));
        char *same = th_sql_value(src, "SELECT body = %s FROM docs WHERE id = %s", lit,
                                  th_col(s, &ev, true, "id"));
        PQfreemem(lit);
        cr_assert_str_eq(same, "t", "docs.body in the r event differs from the source");
        free(same);
    }
    cr_assert_eq(docs_rows, 3, "docs: %zu r events, want 3", docs_rows);
    th_msgs_free(m);

    /* Empty tables load nothing, and then stream. */
    th_sql(src, "INSERT INTO empty1 VALUES (1, 'after the load')");
    wait_caught_up();
    converge((const char *const[]){"empty1", NULL});
    /* Besides the load's truncates (one per partition), only the insert. */
    m = read_all("empty1", 30000);
    size_t others = 0, inserts = 0;
    for (size_t i = 0; i < m->n; i++) {
        decode(&m->v[i], &ev);
        if (ev.op == 'c')
            inserts++;
        else if (!(ev.op == 't' && strcmp(ev.snapshot, "true") == 0))
            others++;
    }
    cr_assert(inserts == 1 && others == 0, "empty1: %zu inserts and %zu other events, want only "
              "the insert", inserts, others);
    th_msgs_free(m);
    m = read_all("empty2", 3000);
    for (size_t i = 0; i < m->n; i++) {
        decode(&m->v[i], &ev);
        cr_assert(ev.op == 't', "empty2: a '%c' event from an empty table", ev.op);
    }
    th_msgs_free(m);
    cdc_event_free(&ev);
    cr_assert_eq(th_proc_wait(&cap, 0, NULL), -1, "capture must keep streaming");
}

/*
 * Tables whose every column has a binary form are loaded in it (COPY ...
 * (FORMAT binary)): edge values of each such type arrive exactly, into a
 * table cdc-apply creates for the load and into one the user made with
 * other column types (the binary rows then go through the stage, which
 * converts them as text would have been).
 */
#define BIN_DDL                                                                                    \
    "CREATE TABLE bin (id bigint PRIMARY KEY, b bool, i2 int2, i4 int4, f4 float4, f8 float8, "    \
    " n182 numeric(18,2), n380 numeric(38,0), n2010 numeric(20,10), n55 numeric(5,5), "           \
    " nbig numeric(1000,500), d date, t time, ts timestamp, tstz timestamptz, u uuid, by bytea, "  \
    " tx text, vc varchar(10), ch char(4));"                                                       \
    "CREATE TABLE conv (id bigint PRIMARY KEY, n numeric(18,2), i int4, vc varchar(10), "         \
    " d date);"                                                                                    \
    "CREATE DOMAIN posint AS int CHECK (VALUE > 0);"                                                \
    "CREATE TABLE bkey (n numeric(20,6), ts timestamptz, u uuid, c char(5), f float8, v int, "     \
    " dm posint, PRIMARY KEY (n, ts, u, c, f));"

Test(bootstrap, binary_loads_are_exact_also_into_a_target_of_other_types)
{
    th_sql(src, "%s", BIN_DDL);
    th_sql(src, "INSERT INTO bin VALUES "
                "(1, true, -32768, 2147483647, 3.4028235e38, 2.2250738585072014e-308, "
                " -1234567890123456.78, 99999999999999999999999999999999999999, "
                " 1234567890.0123456789, 0.00001, (repeat('9', 500) || '.' || repeat('9', 500))::numeric, "
                " '0044-03-15 BC', '24:00:00', '2026-11-24 08:14:00.123456', "
                " '1999-12-31 23:59:59.999999-05', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', "
                " '\\x00ff10', E'tab\\there \"q\" ünïcödé \\\\N', 'abc', 'ab'), "
                "(2, false, 32767, -2147483648, 'NaN', '-Infinity', 0, 0, -0.0000000001, "
                " -0.99999, ('-1' || repeat('0', 499) || '.5')::numeric, 'infinity', '00:00:00', "
                " '-infinity', 'infinity', '00000000-0000-0000-0000-000000000000', '\\x', '', '', "
                " ''), "
                "(3, NULL, 0, 0, '-0', '1e-320', 0.01, -1, 9999999999.9999999999, 0.1, 0, "
                " '2000-01-01', '00:00:00.000001', '294200-12-31 23:59:59', "
                " '4713-01-01 00:00:00+00 BC', NULL, '\\x00005c4e', E'back\\\\slash\\nnl\\r', "
                " '0123456789', 'abcd'), "
                "(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
                " NULL, NULL, NULL, NULL, NULL, NULL)");
    th_sql(src, "INSERT INTO conv SELECT g, g * 1000.01, g - 5000, 'v' || g, "
                "date '2000-01-01' + (g * 37) FROM generate_series(1, 3000) g");
    th_sql(src, "INSERT INTO bkey SELECT (g * 12345.678901 - 500000)::numeric(20,6), "
                "timestamptz '1999-12-31 23:59:59.999999+00' + g * interval '1 day 1 microsecond', "
                "md5(g::text)::uuid, left(md5(g::text), g %% 6), g / 7.0, 0, g "
                "FROM generate_series(1, 200) g");
    /* The user's table: wider types, a key already there. */
    th_sql(dst, "CREATE TABLE conv (id bigint PRIMARY KEY, n numeric(30,6), i bigint, vc text, "
                "d timestamp)");
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", NULL);
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    converge((const char *const[]){"bin", "bkey", NULL});
    static char diff[16384];
    bool same = th_wait_same_rows(&pg, "src", "conv", "dst",
                                  "(SELECT id, n::numeric(18,2) AS n, i::int4 AS i, "
                                  "vc::varchar(10) AS vc, d::date AS d FROM conv)",
                                  CONVERGE_MS, diff, sizeof diff);
    cr_assert(same, "conv did not converge: %s", diff);
    char *types = th_sql_value(dst, "SELECT string_agg(format_type(atttypid, atttypmod), ', ' "
                                    "ORDER BY attnum) FROM pg_attribute WHERE attrelid = "
                                    "'conv'::regclass AND attnum > 0");
    cr_assert_str_eq(types, "bigint, numeric(30,6), bigint, text, timestamp without time zone",
                     "the user's column types stay");
    free(types);

    /* After the load, changes stream in text form into both. */
    th_sql(src, "UPDATE bin SET n182 = n182 + 1, tx = 'after' WHERE id = 3;"
                "INSERT INTO bin (id, n55) VALUES (5, -0.5);"
                "DELETE FROM conv WHERE id %% 7 = 0; UPDATE conv SET n = -n WHERE id %% 5 = 0;"
                "UPDATE bkey SET v = 1");
    converge((const char *const[]){"bin", "bkey", NULL});

    /*
     * cdc-capture read bkey with a binary COPY (its domain column dm in its
     * base type's form; cdc-apply writes the table as text, domains having
     * no binary form there) and streams its updates from pgoutput's text:
     * each row's key must be the same bytes both ways, or its changes would
     * land in another partition than its snapshot row.
     */
    th_msgs *m = read_some("bkey", 400, 30000);
    size_t pairs = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->v[i].key || !m->v[i].value)
            continue;
        cdc_event ev;
        cdc_event_init(&ev);
        decode(&m->v[i], &ev);
        char op = ev.op;
        cdc_event_free(&ev);
        if (op != 'r')
            continue;
        size_t same = 0;
        for (size_t j = 0; j < m->n; j++)
            if (j != i && m->v[j].key && m->v[j].key_len == m->v[i].key_len &&
                memcmp(m->v[j].key, m->v[i].key, m->v[i].key_len) == 0) {
                cr_assert_eq(m->v[j].partition, m->v[i].partition,
                             "bkey: a row's update is in partition %d, its snapshot row in %d",
                             m->v[j].partition, m->v[i].partition);
                same++;
            }
        cr_assert_eq(same, 1, "bkey: %zu other events with the key of snapshot row %zu (%s), "
                     "want its update", same, i, m->v[i].key_json ? m->v[i].key_json : "?");
        pairs++;
    }
    cr_assert_eq(pairs, 200, "bkey: %zu snapshot rows, want 200", pairs);
    th_msgs_free(m);
    same = th_wait_same_rows(&pg, "src", "conv", "dst",
                             "(SELECT id, n::numeric(18,2) AS n, i::int4 AS i, "
                             "vc::varchar(10) AS vc, d::date AS d FROM conv)",
                             CONVERGE_MS, diff, sizeof diff);
    cr_assert(same, "conv did not converge after the changes: %s", diff);
    cr_assert_eq(th_proc_wait(&app, 0, NULL), -1, "cdc-apply must keep running");
}

/* ---- 5. privileges ---------------------------------------------------------------- */

Test(bootstrap, unreadable_table_stops_capture_naming_it_unless_excluded)
{
    if (th_pg_external())
        cr_skip_test("creates a role, which outlives the test's databases");
    th_sql(src, "CREATE TABLE a (id bigint PRIMARY KEY, v bigint NOT NULL, pad text);"
                "CREATE TABLE b (id bigint PRIMARY KEY, v bigint NOT NULL, pad text);"
                "CREATE TABLE secret (id bigint PRIMARY KEY, v bigint NOT NULL, pad text);"
                "INSERT INTO a SELECT g, g, md5(g::text) FROM generate_series(1, 1000) g;"
                "INSERT INTO b SELECT g, g, md5(g::text) FROM generate_series(1, 500) g;"
                "INSERT INTO secret SELECT g, g, 'card ' || g FROM generate_series(1, 10) g;"
                "CREATE ROLE cdcuser LOGIN REPLICATION;"
                "GRANT SELECT ON a, b TO cdcuser;"
                "CREATE PUBLICATION cdc FOR TABLE a, b, secret;"
                "CREATE PUBLICATION pub_ab FOR TABLE a, b");
    cr_assert_eq(th_sql_long(src, "SELECT count(*) FROM pg_roles WHERE rolname = 'cdcuser' AND "
                                  "NOT rolsuper"),
                 1);
    char conninfo[1024], ci[1200];
    th_pg_conninfo(&pg, "src", conninfo, sizeof conninfo);
    snprintf(ci, sizeof ci, "source.conninfo=%s user=cdcuser", conninfo);

    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture1.log", NULL,
                     (const char *const[]){ci, NULL});
    cr_assert_eq(th_proc_wait(&cap, 30000, NULL), 0, "capture did not stop");
    cr_assert_eq(th_proc_exit_code(&cap), 1, "exit status %d, want 1", th_proc_exit_code(&cap));
    cr_assert(th_wait_log(log_path("capture1.log"), "secret", 0),
              "the error must name the table secret");
    cr_assert(!th_wait_log(log_path("capture1.log"), "streaming from slot", 0));

    /* Excluded (tables and a publication without it): the load succeeds. */
    th_capture_spawn(
        &cap, &pg, "src", broker.bootstrap, "capture2.log", NULL,
        (const char *const[]){ci, "tables=public.a,public.b", "publication.name=pub_ab", NULL});
    wait_streaming(&cap, "capture2.log", LOAD_MS);
    th_sql(src, "INSERT INTO a VALUES (5000, 5000, 'after')");
    wait_caught_up();
    static const tspec T[] = {{"a", 1000, 0}, {"b", 500, 0}, {NULL, 0, 0}};
    snap_check o = {.expect_sql = "SELECT 'a'::text AS tbl, id, v, pad FROM a WHERE id < 5000 "
                                  "UNION ALL SELECT 'b', id, v, pad FROM b",
                    .exactly_once = true};
    snap_result r = check_snapshot(T, &o);
    cr_assert_eq(r.rows, 1500);
    cr_assert_eq(r.streamed, 1, "the insert after the load: %ld streamed events", r.streamed);
    cr_assert_eq(th_proc_wait(&cap, 0, NULL), -1, "capture must keep streaming");
}

/*
 * A row-level security policy on a table the capture role may read would
 * filter the load, while the stream is not filtered: the read must fail
 * instead, naming the table, and cdc-capture stop before it streams.
 */
Test(bootstrap, a_row_level_security_policy_stops_the_load_naming_the_table)
{
    if (th_pg_external())
        cr_skip_test("creates a role, which outlives the test's databases");
    th_sql(src, "CREATE TABLE ledger (id bigint PRIMARY KEY, owner text NOT NULL);"
                "INSERT INTO ledger SELECT g, CASE WHEN g %% 2 = 0 THEN 'cdcuser' ELSE 'x' END "
                "  FROM generate_series(1, 100) g;"
                "CREATE ROLE cdcuser LOGIN REPLICATION;"
                "GRANT SELECT ON ledger TO cdcuser;"
                "CREATE POLICY own ON ledger USING (owner = current_user);"
                "ALTER TABLE ledger ENABLE ROW LEVEL SECURITY;"
                "CREATE PUBLICATION cdc FOR TABLE ledger");
    char conninfo[1024], ci[1200];
    th_pg_conninfo(&pg, "src", conninfo, sizeof conninfo);
    snprintf(ci, sizeof ci, "source.conninfo=%s user=cdcuser", conninfo);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL,
                     (const char *const[]){ci, NULL});
    cr_assert_eq(th_proc_wait(&cap, 30000, NULL), 0, "capture did not stop");
    cr_assert_eq(th_proc_exit_code(&cap), 1, "exit status %d, want 1", th_proc_exit_code(&cap));
    cr_assert(th_wait_log(log_path("capture.log"), "public.ledger", 0), "name the table");
    cr_assert(th_wait_log(log_path("capture.log"), "row-level security", 0), "say why");
    cr_assert(!th_wait_log(log_path("capture.log"), "streaming from slot", 0));
}

/*
 * A primary key with INCLUDE columns: the event key is its key columns only,
 * in the load as in the stream (pgoutput's), so a row's snapshot and its
 * later changes share one key, hence one partition.
 */
Test(bootstrap, include_columns_are_not_part_of_the_key)
{
    th_sql(src, "CREATE TABLE t (id bigint, acct int NOT NULL, v int, "
                "  PRIMARY KEY (id) INCLUDE (acct));"
                "INSERT INTO t SELECT g, g %% 7, g FROM generate_series(1, 50) g");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(src, "UPDATE t SET v = -1 WHERE id = 7");
    wait_caught_up();
    th_msgs *m = read_all("t", 30000);
    cdc_event ev;
    cdc_event_init(&ev);
    const th_msg *r = NULL, *u = NULL;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->v[i].value)
            continue;
        const cdc_table_schema *s = decode(&m->v[i], &ev);
        cr_assert_eq(s->nkey, 1, "the key is id alone");
        if (strcmp(th_col(s, &ev, true, "id"), "7") == 0) {
            if (ev.op == 'r')
                r = &m->v[i];
            else if (ev.op == 'u')
                u = &m->v[i];
        }
    }
    cdc_event_free(&ev);
    cr_assert(r && u, "the snapshot row and the update of id 7");
    cr_assert_eq(r->key_len, u->key_len);
    cr_assert_eq(memcmp(r->key, u->key, r->key_len), 0, "one key for the load and the stream");
    cr_assert_eq(r->partition, u->partition);
    th_msgs_free(m);
}

/*
 * DDL on table b between the slot's consistent point and the load's first
 * read of b. The window is held open by post_auth_delay: each of
 * cdc-capture's connections waits 2 s after logging in, so the load's
 * workers (connected one after the other once the slot exists) read
 * nothing for 4 s after "created replication slot" is logged; `ddl` runs
 * meanwhile (one statement after the other). Returns once the load has handed over to the stream
 * and the target has converged.
 */
static void ddl_at_the_start_of_a_load(const char *const *ddl)
{
    th_sql(src, "CREATE TABLE a (id bigint PRIMARY KEY, v int);"
                "CREATE TABLE b (id bigint PRIMARY KEY, v int);"
                "INSERT INTO a SELECT g, g FROM generate_series(1, 100) g;"
                "INSERT INTO b SELECT g, g FROM generate_series(1, 500) g;"
                "CREATE PUBLICATION cdc FOR TABLE a, b");
    char conninfo[1024], ci[1200];
    th_pg_conninfo(&pg, "src", conninfo, sizeof conninfo);
    snprintf(ci, sizeof ci, "source.conninfo=%s options='-c post_auth_delay=2'", conninfo);
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", NULL);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL,
                     (const char *const[]){ci, NULL});
    cr_assert(th_wait_log_alive(&cap, "capture.log", "created replication slot", 30000));
    for (; *ddl; ddl++)
        th_sql(src, "%s", *ddl);
    cr_assert_eq(th_sql_long(src, "SELECT count(*) FROM pg_stat_activity WHERE backend_xmin "
                                  "IS NOT NULL AND backend_type = 'client backend' "
                                  "AND datname = current_database() AND pid <> pg_backend_pid()"),
                 0, "the load had already started reading: the DDL came too late");
    wait_streaming(&cap, "capture.log", LOAD_MS);
    th_sql(src, "INSERT INTO b VALUES (1001, 1001)");
    wait_caught_up();
    converge((const char *const[]){"a", "b", NULL});
}

/*
 * A table-rewriting ALTER TABLE: the rewrite's new file holds the rows under
 * its own xid, so the snapshot would read b as empty, and the stream carries
 * no rows for it either (the target lacked all 500 before). The load must
 * notice (b's file and columns changed) and start over.
 */
Test(bootstrap, a_table_rewritten_after_the_consistent_point_starts_the_load_over)
{
    ddl_at_the_start_of_a_load(
        (const char *const[]){"ALTER TABLE b ALTER COLUMN v TYPE bigint", NULL});
    cr_assert(th_wait_log(log_path("capture.log"), "public.b was rewritten", 0),
              "the restart names the table");
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM b"), 501);
}

/*
 * A TRUNCATE (or VACUUM FULL) in the same window changes b's file too, but
 * needs no new load: the truncate is in the stream, and VACUUM FULL keeps
 * the rows the snapshot sees. Restarting for them would let a table that is
 * truncated often restart a long load for ever.
 */
Test(bootstrap, a_truncate_or_vacuum_full_after_the_consistent_point_needs_no_new_load)
{
    ddl_at_the_start_of_a_load((const char *const[]){"DELETE FROM a WHERE id > 50", "VACUUM FULL a",
                                                     "TRUNCATE b", "INSERT INTO b VALUES (7, 7)",
                                                     NULL});
    cr_assert_not(th_wait_log(log_path("capture.log"), "was rewritten", 0), "a needless new load");
    cr_assert(th_wait_log(log_path("capture.log"), "public.b: its file changed", 0));
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM b"), 2);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM a"), 50);
}

/*
 * A statement queued behind the load's lock on a split table: a worker that
 * has not read the table yet would queue its COPY behind that statement,
 * which waits for the load to end (it holds the lock): a hang, with the
 * application's queries on the table queued too. A worker's first lock on a
 * table another worker already holds is taken with NOWAIT, so the load
 * starts over and the statement runs.
 *
 * Tables are read largest first, in 32 MB block ranges: y makes ranges y1
 * (4,096 pages) and y2 (a few pages), x (a little smaller) x1 and x2. Worker
 * A reads y1 while B reads the short y2 and goes on to x1, locking x. The
 * ALTER on x then queues behind B, and A's next task is x2: its first lock
 * on x. y holds one wide row per page (fillfactor 10), x forty narrow ones,
 * so A finishes y1 long before B finishes x1. The load is held (the broker
 * down, a short producer queue full) while the ALTER is queued.
 */
static long granted_on(const char *table)
{
    return th_sql_long(src,
                       "SELECT count(*) FROM pg_locks WHERE granted AND relation = '%s'::regclass "
                       "AND mode = 'AccessShareLock'",
                       table);
}

Test(bootstrap, ddl_queued_behind_a_split_table_restarts_the_load_instead_of_hanging)
{
    if (th_broker_external())
        cr_skip_test("fault injection needs cdc-devbroker");
    /*
     * y: a row on every fourth of its pages (the others emptied by VACUUM),
     * so that once Kafka is back, worker A's rest of y1 (at most ~1,000
     * rows) ends long before B's x1 (82,000): A, not B, then takes x's
     * second range. With y full, under a loaded machine's I/O B sometimes
     * won that race, read both ranges itself, and nothing waited.
     */
    th_sql(src, "CREATE TABLE y (id bigint PRIMARY KEY, pad text) WITH (fillfactor = 10);"
                "CREATE TABLE x (id bigint PRIMARY KEY, pad text) WITH (fillfactor = 50);"
                "INSERT INTO y SELECT g, repeat('y', 800) FROM generate_series(1, 4116) g;"
                "DELETE FROM y WHERE id %% 4 <> 0;"
                "INSERT INTO x SELECT g, repeat('x', 60) FROM generate_series(1, 164240) g;"
                "CREATE PUBLICATION cdc FOR TABLE y, x");
    th_sql(src, "VACUUM y");
    long ypages = th_sql_long(src, "SELECT pg_relation_size('y') / 8192");
    long xpages = th_sql_long(src, "SELECT pg_relation_size('x') / 8192");
    cr_assert(ypages > 4096 && ypages < 4096 + 100 && xpages > 4096 && xpages < ypages,
              "y (%ld pages) must be a little larger than x (%ld pages), both split in two",
              ypages, xpages);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL,
                     (const char *const[]){"kafka.queue.buffering.max.messages=500",
                                           "bootstrap.workers=2", NULL});
    cr_assert(th_wait_log_alive(&cap, "capture.log", "bootstrap: 2 tables", 60000));
    th_broker_cmd(&broker, "down 1");
    /* Let the load on in short steps until B holds x (it has a few pages of
     * y2 to read, A some 1,000 rows of y1). */
    for (int i = 0; granted_on("x") == 0; i++) {
        cr_assert_lt(i, 40, "no worker started on x");
        th_broker_cmd(&broker, "up 1");
        usleep(30 * 1000);
        th_broker_cmd(&broker, "down 1");
        usleep(200 * 1000);
    }
    cr_assert_eq(granted_on("x"), 1, "one worker reads x");
    cr_assert_eq(granted_on("y"), 2, "both workers read y");
    PGconn *ddl = th_pg_connect(&pg, "src");
    cr_assert_eq(PQsendQuery(ddl, "ALTER TABLE x ADD COLUMN extra int"), 1);
    long waiting = 0;
    for (int i = 0; i < 100 && !waiting; i++, usleep(50 * 1000))
        waiting = th_sql_long(src, "SELECT count(*) FROM pg_locks WHERE NOT granted "
                                   "AND relation = 'x'::regclass");
    cr_assert_eq(waiting, 1, "the ALTER should wait behind the load");
    th_broker_cmd(&broker, "up 1");
    cr_assert(th_wait_log_alive(&cap, "capture.log", "a statement waits for a lock on public.x",
                                LOAD_MS),
              "the load should start over for the queued ALTER");
    PGresult *res = PQgetResult(ddl); /* blocks until the ALTER ran */
    cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
    PQclear(res);
    while ((res = PQgetResult(ddl)))
        PQclear(res);
    PQfinish(ddl);
    wait_streaming(&cap, "capture.log", LOAD_MS);
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", NULL);
    wait_caught_up();
    converge((const char *const[]){"y", "x", NULL});
}

/* ---- 5b. the primary key of a table created for a load ------------------------------ */

/*
 * A load of `rows` rows of big (bootstrap.mode=only) sits in Kafka; then
 * cdc-apply applies it in batches of 500, each held 0.2 s by a statement
 * trigger that an event trigger adds when cdc-apply creates big, and is
 * killed once some batches are in: big then has rows and no primary key,
 * and is listed in cdc.apply_deferred_keys. The trigger is dropped again.
 */
static void apply_killed_during_a_load(long rows)
{
    const tspec T[] = {{"big", rows, 0}, {NULL, 0, 0}};
    precreate_topic("big", 4);
    prepare_tables(T);
    th_sql(dst, "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END$$;"
                "CREATE FUNCTION add_slow() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN "
                " IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() WHERE command_tag = "
                "  'CREATE TABLE' AND object_identity = 'public.big') THEN "
                "  CREATE TRIGGER slow AFTER INSERT ON public.big "
                "  FOR EACH STATEMENT EXECUTE FUNCTION slow(); END IF; END$$;"
                "CREATE EVENT TRIGGER add_slow ON ddl_command_end EXECUTE FUNCTION add_slow()");
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL,
                     (const char *const[]){"bootstrap.mode=only", NULL});
    cr_assert_eq(th_proc_wait(&cap, LOAD_MS, NULL), 0, "the load did not end");
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply1.log",
                   (const char *const[]){"batch.max.events=500", NULL});
    long n = 0;
    for (int i = 0; i < 600 && n < rows / 10; i++, usleep(50 * 1000))
        if (th_sql_long(dst, "SELECT count(*) FROM pg_class WHERE relname = 'big'") > 0)
            n = th_sql_long(dst, "SELECT count(*) FROM big");
    kill9(&app);
    n = th_sql_long(dst, "SELECT count(*) FROM big");
    cr_assert(n >= rows / 10 && n < rows, "killed with %ld of %ld rows applied", n, rows);
    char *key = key_of(dst, "big");
    cr_assert_str_eq(key, "none", "big has its key before its load is applied");
    free(key);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM cdc.apply_deferred_keys WHERE "
                                  "schema_name = 'public' AND table_name = 'big'"),
                 1);
    th_sql(dst, "DROP EVENT TRIGGER add_slow; DROP TRIGGER slow ON big");
}

/*
 * cdc-apply is killed while a table it created for a load waits for its
 * primary key: the restart goes on loading it without the key, then adds it.
 */
Test(bootstrap, apply_killed_during_a_load_goes_on_and_adds_the_key_at_the_end)
{
    apply_killed_during_a_load(20000);
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply2.log", NULL);
    converge((const char *const[]){"big", NULL});
    cr_assert(th_wait_log(log_path("apply1.log"), "created table \"public\".\"big\" for a load", 0));
    cr_assert(th_wait_log(log_path("apply2.log"), "added the primary key of public.big", 0));
}

/*
 * Rows that are not the load's in a table waiting for its key (here a
 * duplicate of a loaded row, written by hand) make adding the key fail:
 * cdc-apply stops with exit status 1 naming the table, even with
 * errors.tolerance=all (no event is at fault: none is dead-lettered), and
 * adds the key once the duplicate is gone.
 */
Test(bootstrap, a_duplicate_in_a_table_waiting_for_its_key_stops_apply_until_fixed)
{
    apply_killed_during_a_load(20000);
    th_sql(dst, "INSERT INTO big SELECT * FROM big WHERE id = (SELECT min(id) FROM big)");
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply2.log",
                   (const char *const[]){"errors.tolerance=all", NULL});
    int status = 0;
    cr_assert_neq(th_proc_wait(&app, 60000, &status), -1, "cdc-apply did not stop");
    cr_assert_eq(th_proc_exit_code(&app), 1, "exit status %d", th_proc_exit_code(&app));
    cr_assert(th_wait_log(log_path("apply2.log"), "cannot add the primary key of public.big", 0));
    char dlq[256];
    snprintf(dlq, sizeof dlq, "%s.dlq", th_prefix());
    th_consume_opts o = {.bootstrap = broker.bootstrap, .topic = dlq, .want = 1, .timeout_ms = 2000};
    th_msgs *m = th_consume(&o);
    cr_assert_eq(m->n, 0, "%zu events dead-lettered", m->n);
    th_msgs_free(m);
    th_sql(dst, "DELETE FROM big a USING big b WHERE a.id = b.id AND a.ctid > b.ctid");
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply3.log", NULL);
    converge((const char *const[]){"big", NULL});
}

/*
 * Two cdc-apply processes of one group load the same new table from their
 * own partitions, while the workload changes it: both COPY into the table
 * while it waits for its key, one of them adds the key (at the first change
 * after the load it meets), and the other goes on through it.
 */
Test(bootstrap, two_apply_processes_share_a_load_and_its_key)
{
    static const tspec T[] = {{"big", 60000, 0}, {NULL, 0, 0}};
    precreate_topic("big", 4);
    prepare_tables(T);
    workload w;
    wl_start(&w, T, true, 5);
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply1.log",
                   (const char *const[]){"batch.max.events=2000", NULL});
    th_apply_start(&app2, &pg, "dst", broker.bootstrap, "apply2.log",
                   (const char *const[]){"batch.max.events=2000", NULL});
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL, NULL);
    wait_streaming(&cap, "capture.log", LOAD_MS);
    usleep(1500 * 1000);
    wl_stop(&w);
    wait_caught_up();
    th_assert_converge_alive(&pg, "src", "dst", (const char *const[]){"big", NULL}, CONVERGE_MS,
                             &app2);
    converge((const char *const[]){"big", NULL});
    cr_assert(th_wait_log(log_path("apply1.log"), "added the primary key of public.big", 0) ||
                  th_wait_log(log_path("apply2.log"), "added the primary key of public.big", 0),
              "neither process added the key");
    snap_check o = {.single_load = true, .exactly_once = true, .hist_match = true};
    check_snapshot(T, &o);
}

/*
 * A table whose key has several columns, with names that need quoting,
 * gets the same key as the source's, columns in the source's order.
 */
Test(bootstrap, a_loaded_table_gets_the_sources_key_with_every_column_in_order)
{
    th_sql(src, "CREATE TABLE \"Odd \"\"Tab\" (\"z col\" text, a int, \"Mixed\" bigint, v text, "
                "PRIMARY KEY (\"z col\", \"Mixed\", a));"
                "INSERT INTO \"Odd \"\"Tab\" SELECT 'k' || (g %% 7), g, g * 2, 'v' "
                "FROM generate_series(1, 3000) g;"
                "CREATE PUBLICATION cdc FOR TABLE \"Odd \"\"Tab\"");
    th_apply_start(&app, &pg, "dst", broker.bootstrap, "apply.log", NULL);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL, NULL);
    wait_streaming(&cap, "capture.log", LOAD_MS);
    converge((const char *const[]){"\"Odd \"\"Tab\"", NULL});
    cr_assert(th_wait_log(log_path("apply.log"), "for a load", 0), "not created for a load");
    /* Changes after the load meet the key. */
    th_sql(src, "UPDATE \"Odd \"\"Tab\" SET v = 'w' WHERE a < 100; "
                "DELETE FROM \"Odd \"\"Tab\" WHERE a > 2900");
    wait_caught_up();
    converge((const char *const[]){"\"Odd \"\"Tab\"", NULL});
}

/* ---- 6. bootstrap.mode=never -------------------------------------------------------- */

Test(bootstrap, mode_never_streams_only_later_changes)
{
    th_sql(src, "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL, pad text);"
                "INSERT INTO t SELECT g, g, md5(g::text) FROM generate_series(1, 1000) g");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log",
                     (const char *const[]){"bootstrap.mode=never", NULL});
    th_sql(src, "INSERT INTO t VALUES (2001, 1, 'new'), (2002, 2, 'new')");
    th_sql(src, "UPDATE t SET v = -5 WHERE id = 5");
    th_sql(src, "DELETE FROM t WHERE id = 6");
    wait_caught_up();
    th_msgs *m = read_all("t", 30000);
    cr_assert_eq(m->n, 5, "t: %zu messages, want c, c, u, d and a tombstone", m->n);
    cdc_event ev;
    cdc_event_init(&ev);
    char ops[8] = "";
    for (size_t i = 0; i < m->n; i++) {
        if (!m->v[i].value)
            continue;
        const cdc_table_schema *s = decode(&m->v[i], &ev);
        cr_assert_neq(ev.op, 'r', "mode=never sent an r event");
        cr_assert_str_eq(ev.snapshot, "false");
        const char *id = th_col(s, &ev, ev.op != 'd', "id");
        cr_assert(strcmp(id, "2001") == 0 || strcmp(id, "2002") == 0 || strcmp(id, "5") == 0 ||
                      strcmp(id, "6") == 0,
                  "event for id %s, which did not change", id);
        ops[strlen(ops)] = ev.op;
    }
    cdc_event_free(&ev);
    th_msgs_free(m);
    cr_assert(strchr(ops, 'u') && strchr(ops, 'd') && strlen(ops) == 4, "ops %s", ops);
}

/* Drop slot cdc while cdc-capture streams from it (ending its walsender first). */
static void drop_slot_under_capture(void)
{
    bool dropped = false;
    for (int64_t end = th_now_ms() + 30000; !dropped && th_now_ms() < end;) {
        PQclear(PQexec(src, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                            "WHERE slot_name = 'cdc' AND active_pid IS NOT NULL"));
        PGresult *r = PQexec(src, "SELECT pg_drop_replication_slot('cdc')");
        dropped = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
    }
    cr_assert(dropped, "could not drop the slot");
}

/*
 * A slot made outside cdc-capture (nothing in the state topic) is streamed
 * from, and recorded as streaming; once it is lost while cdc-capture is
 * stopped, bootstrap.mode=initial loads again, and that load starts with
 * truncates, so a consumer drops rows deleted in between.
 */
Test(bootstrap, a_lost_adopted_slot_reloads_starting_with_truncates)
{
    th_sql(src, "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL);"
                "INSERT INTO t SELECT g, g FROM generate_series(1, 10) g;"
                "CREATE PUBLICATION cdc FOR TABLE t");
    th_sql(src, "SELECT 1 FROM pg_create_logical_replication_slot('cdc', 'pgoutput')");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(src, "INSERT INTO t VALUES (11, 11)");
    wait_caught_up();
    int st = th_proc_stop(&cap, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    drop_slot_under_capture();
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture2.log", NULL);
    cr_assert(th_wait_log(log_path("capture2.log"), "bootstrap done", LOAD_MS), "no new load");
    wait_caught_up();
    th_msgs *m = read_all("t", 30000);
    cdc_event ev;
    cdc_event_init(&ev);
    long truncates = 0, loaded = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->v[i].value)
            continue;
        decode(&m->v[i], &ev);
        truncates += ev.op == 't';
        loaded += ev.op == 'r';
    }
    cdc_event_free(&ev);
    th_msgs_free(m);
    cr_assert_eq(loaded, 11, "the new load");
    cr_assert_gt(truncates, 0, "the new load must start with a truncate");
}

/*
 * A slot that disappears (dropped, or a failover to a server without it)
 * must not be replaced silently in bootstrap.mode=never: a new slot starts
 * at the current WAL end and would skip what was committed in between.
 * cdc-capture stops, and a restart refuses too (the state topic remembers
 * that the slot streamed).
 */
Test(bootstrap, mode_never_stops_when_its_slot_disappears)
{
    th_sql(src, "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL)");
    const char *const never[] = {"bootstrap.mode=never", NULL};
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture1.log", never);
    th_sql(src, "INSERT INTO t VALUES (1, 1)");
    wait_caught_up();
    drop_slot_under_capture();
    th_sql(src, "INSERT INTO t VALUES (2, 2)"); /* committed while no slot exists */
    cr_assert_eq(th_proc_wait(&cap, 60000, NULL), 0, "cdc-capture must stop, not make a new slot");
    cr_assert_eq(th_proc_exit_code(&cap), 1);
    cr_assert(th_wait_log(log_path("capture1.log"), "no longer exists", 1000));
    cr_assert_eq(th_sql_long(src, "SELECT count(*) FROM pg_replication_slots"), 0);
    /* A restart knows that the slot streamed before. */
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture2.log", NULL, never);
    cr_assert_eq(th_proc_wait(&cap, 60000, NULL), 0, "the restart must stop too");
    cr_assert_eq(th_proc_exit_code(&cap), 1);
    cr_assert(th_wait_log(log_path("capture2.log"), "no longer exists", 1000));
    cr_assert_eq(th_sql_long(src, "SELECT count(*) FROM pg_replication_slots"), 0);
}

/*
 * The slot of an interrupted load streams from the load's consistent point:
 * with bootstrap.mode=never it would skip every row the load did not reach.
 * cdc-capture must refuse, naming the remedy.
 */
Test(bootstrap, mode_never_refuses_the_slot_of_an_unfinished_load)
{
    static const tspec T[] = {{"big", 150000, 10}, {NULL, 0, 0}};
    precreate_topic("big", 16);
    prepare_tables(T);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture1.log", NULL, NULL);
    if (!kill_during_load("capture1.log", "big", 2000))
        cr_skip_test("the load finished before the kill");
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture2.log", NULL,
                     (const char *const[]){"bootstrap.mode=never", NULL});
    int st;
    cr_assert_eq(th_proc_wait(&cap, 60000, &st), 0, "capture must not stream from that slot");
    cr_assert_eq(th_proc_exit_code(&cap), 1, "exit status %d", th_proc_exit_code(&cap));
    cr_assert(th_wait_log(log_path("capture2.log"), "did not finish", 1000),
              "the log must say why");
}

/*
 * A publication WITH (publish_via_partition_root = true) lists the
 * partitioned table, which holds no rows itself: the load must read it
 * through its partitions, under the root's name, like the stream does.
 */
Test(bootstrap, partitioned_table_published_via_its_root_is_loaded_whole)
{
    th_sql(src, "CREATE TABLE pt (id bigint PRIMARY KEY, v int) PARTITION BY RANGE (id);"
                "CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (1000);"
                "CREATE TABLE pt_2 PARTITION OF pt FOR VALUES FROM (1000) TO (MAXVALUE);"
                "INSERT INTO pt SELECT g, g FROM generate_series(1, 2000) g;"
                "CREATE PUBLICATION cdc FOR TABLE pt WITH (publish_via_partition_root = true)");
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL, NULL);
    wait_streaming(&cap, "capture.log", LOAD_MS);
    th_sql(src, "INSERT INTO pt VALUES (5000, 1)");
    wait_caught_up();
    th_msgs *m = read_all("pt", 30000);
    cdc_event ev;
    cdc_event_init(&ev);
    long r = 0, c = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->v[i].value)
            continue;
        decode(&m->v[i], &ev);
        r += ev.op == 'r';
        c += ev.op == 'c';
    }
    cdc_event_free(&ev);
    th_msgs_free(m);
    cr_assert_eq(r, 2000, "%ld r events for the 2,000 rows of pt's partitions", r);
    cr_assert_eq(c, 1, "%ld inserts streamed after the load", c);
}

/* ---- 7. --bootstrap on an existing slot ----------------------------------------------- */

Test(bootstrap, bootstrap_flag_reloads_everything_at_a_newer_point)
{
    th_sql(src, "CREATE TABLE t (id bigint PRIMARY KEY, v bigint NOT NULL, pad text);"
                "CREATE TABLE u (id bigint PRIMARY KEY, v bigint NOT NULL, pad text);"
                "INSERT INTO t SELECT g, g, md5(g::text) FROM generate_series(1, 1000) g;"
                "INSERT INTO u SELECT g, g, md5(g::text) FROM generate_series(1, 500) g");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture1.log", NULL);
    th_msgs *m = read_some("t", 1000, 30000);
    cr_assert_eq(m->n, 1000, "first load of t: %zu events", m->n);
    cdc_event ev;
    cdc_event_init(&ev);
    decode(&m->v[0], &ev);
    uint64_t first = ev.commit_lsn;
    cdc_event_free(&ev);
    th_msgs_free(m);
    wait_caught_up();
    int st = th_proc_stop(&cap, 20000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: status %d", st);
    uint64_t old_slot = th_slot_flush(src, "cdc");
    cr_assert_gt(old_slot, 0);

    th_sql(src, "INSERT INTO t SELECT g, g, 'while stopped' FROM generate_series(1001, 1010) g");
    th_sql(src, "UPDATE u SET v = -v WHERE id <= 5");
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture2.log",
                     (const char *const[]){"--bootstrap", NULL}, NULL);
    wait_streaming(&cap, "capture2.log", LOAD_MS);
    th_sql(src, "INSERT INTO u VALUES (9000, 9000, 'after the reload')");
    wait_caught_up();

    static const tspec T[] = {{"t", 1010, 0}, {"u", 500, 0}, {NULL, 0, 0}};
    snap_check o = {.expect_sql = "SELECT 't'::text AS tbl, id, v, pad FROM t "
                                  "UNION ALL SELECT 'u', id, v, pad FROM u WHERE id <> 9000",
                    .exactly_once = true};
    snap_result r = check_snapshot(T, &o);
    cr_assert_eq(r.loads, 2, "r events at %ld commit LSNs, want the first load and the reload",
                 r.loads);
    cr_assert_eq(r.rows, 1510);
    cr_assert_gt((uint64_t)r.lsn, old_slot, "the reload must be at a newer point");
    cr_assert_gt((uint64_t)r.lsn, first);
    cr_assert_eq(r.streamed, 1, "only the insert after the reload is streamed: %ld", r.streamed);
    cr_assert_geq(th_slot_flush(src, "cdc"), (uint64_t)r.lsn);
    assert_summary_line("capture2.log", r.rows);
}
