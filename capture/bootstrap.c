/* The consistent parallel full load (see bootstrap.h). */
#include "bootstrap.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cdc/buf.h"
#include "cdc/config.h"
#include "cdc/event.h"
#include "cdc/kafka.h"
#include "cdc/log.h"
#include "cdc/lsn.h"

/* Longest wait for a table's first lock: a statement holding it may wait in
 * turn for a table the load holds. */
#define LOCK_WAIT_S 30
#define CHUNK_PAGES 4096 /* 32 MB of heap per task for large tables */
#define PROGRESS_MS 5000

/* ---- state topic ---- */

static void state_topic(cdc_buf *out, const char *prefix)
{
    cdc_buf_printf(out, "%s._bootstrap", prefix);
}

typedef struct state_ctx {
    const char *slot;
    bootstrap_state *out;
} state_ctx;

/* Keep the latest record of our slot (a compacted topic: last one wins). */
static int state_record(const rd_kafka_message_t *m, void *opaque)
{
    state_ctx *c = opaque;
    if (!m->key || m->key_len != strlen(c->slot) || memcmp(m->key, c->slot, m->key_len) != 0)
        return 0;
    memset(c->out, 0, sizeof *c->out);
    if (!m->payload)
        return 1;
    json_error_t jerr;
    json_t *v = json_loadb(m->payload, m->len, 0, &jerr);
    const char *st = json_string_value(json_object_get(v, "state"));
    const char *cp = json_string_value(json_object_get(v, "consistent_point"));
    snprintf(c->out->state, sizeof c->out->state, "%s", st ? st : "");
    snprintf(c->out->consistent_point, sizeof c->out->consistent_point, "%s", cp ? cp : "");
    json_decref(v);
    return 1;
}

int bootstrap_state_read(const capture_config *cfg, bootstrap_state *out, char *errstr,
                         size_t errstr_size)
{
    memset(out, 0, sizeof *out);
    rd_kafka_conf_t *conf = cdc_kafka_conf_new(&cfg->kafka, NULL, 0, errstr, errstr_size);
    if (!conf)
        return -1;
    cdc_buf topic;
    cdc_buf_init(&topic);
    state_topic(&topic, cfg->topic_prefix);
    state_ctx c = {cfg->slot_name, out};
    int rc = cdc_kafka_read_topic(conf, cdc_buf_cstr(&topic), 30000, state_record, &c, errstr,
                                  errstr_size);
    rd_kafka_conf_destroy(conf);
    cdc_buf_free(&topic);
    return rc < 0 ? -1 : 0;
}

emit_status bootstrap_state_write(emitter *em, const capture_config *cfg, const char *state,
                                  uint64_t consistent_point, int64_t rows, char *errstr,
                                  size_t errstr_size)
{
    char cp[32] = "";
    if (consistent_point)
        snprintf(cp, sizeof cp, CDC_LSN_FMT, CDC_LSN_ARGS(consistent_point));
    json_t *v = json_pack("{s:s, s:s, s:s, s:I}", "slot", cfg->slot_name, "state", state,
                          "consistent_point", cp, "rows", (json_int_t)rows);
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    cdc_buf topic;
    cdc_buf_init(&topic);
    state_topic(&topic, cfg->topic_prefix);
    emit_status st = emitter_put_control(em, cdc_buf_cstr(&topic), cfg->slot_name, text,
                                         strlen(text), errstr, errstr_size);
    free(text);
    cdc_buf_free(&topic);
    return st;
}

/* ---- COPY text format ---- */

/*
 * COPY's text format: fields separated by tabs, \N for NULL, and backslash
 * escapes (\b \f \n \r \t \v, \xHH, \OOO octal, any other character as
 * itself). Unescaping never makes a field longer, so the whole line fits in
 * `scratch` at once; a field without a backslash (nearly all of them) is
 * one memcpy.
 */
int bootstrap_parse_copy_line(const char *line, size_t len, cdc_buf *scratch, pgo_value *values,
                              int max_values)
{
    cdc_buf_reset(scratch);
    cdc_buf_reserve(scratch, len + 1);
    uint8_t *out = scratch->data;
    size_t i = 0;
    int n = 0;
    for (;;) {
        if (n >= max_values)
            return -1;
        const char *tab = memchr(line + i, '\t', len - i);
        size_t end = tab ? (size_t)(tab - line) : len;
        if (end - i == 2 && line[i] == '\\' && line[i + 1] == 'N') {
            values[n].kind = 'n';
            values[n].len = 0;
            values[n].data = NULL;
        } else {
            uint8_t *start = out;
            while (i < end) {
                const char *bs = memchr(line + i, '\\', end - i);
                size_t run = (bs ? (size_t)(bs - line) : end) - i;
                memcpy(out, line + i, run);
                out += run;
                i += run;
                if (i == end)
                    break;
                if (++i == end)
                    return -1; /* a backslash ending the field */
                char c = line[i++];
                switch (c) {
                case 'b':
                    *out++ = '\b';
                    break;
                case 'f':
                    *out++ = '\f';
                    break;
                case 'n':
                    *out++ = '\n';
                    break;
                case 'r':
                    *out++ = '\r';
                    break;
                case 't':
                    *out++ = '\t';
                    break;
                case 'v':
                    *out++ = '\v';
                    break;
                case 'x': {
                    int v = 0, d = 0;
                    while (d < 2 && i < end) {
                        char h = line[i];
                        int x = h >= '0' && h <= '9'   ? h - '0'
                                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                       : -1;
                        if (x < 0)
                            break;
                        v = v * 16 + x;
                        i++;
                        d++;
                    }
                    *out++ = d == 0 ? 'x' : (uint8_t)v;
                    break;
                }
                default:
                    if (c >= '0' && c <= '7') {
                        int v = c - '0', d = 1;
                        while (d < 3 && i < end && line[i] >= '0' && line[i] <= '7') {
                            v = v * 8 + (line[i++] - '0');
                            d++;
                        }
                        *out++ = (uint8_t)v;
                    } else {
                        *out++ = (uint8_t)c; /* \\ and any other char */
                    }
                }
            }
            values[n].kind = 't';
            values[n].len = (uint32_t)(out - start);
            values[n].data = (const char *)start;
        }
        n++;
        i = end;
        if (i == len)
            break;
        i++; /* the tab */
    }
    scratch->len = (size_t)(out - scratch->data);
    return n;
}

/* ---- the load ---- */

typedef struct table_info {
    uint32_t relid;
    char *nsp, *rel;
    char replident;
    char *columns;   /* quoted column list for the SELECT */
    char *rowfilter; /* publication row filter or NULL */
    int64_t pages;   /* 0 for a partitioned table: one task, no block ranges */
    bool partitioned;
    double estimate; /* reltuples */
    pgo_msg relmsg;  /* a Relation message built from the catalog */
    pgo_relcol *cols;
    char **colnames;
    relation *r;
    bool locked; /* a worker holds its lock (lock_table) */
    bool binary; /* every column has a binary form: COPY ... (FORMAT binary) */
} table_info;

typedef struct task {
    int table;
    int64_t from, to; /* block range; to < 0 = to the end; from < 0 = whole table */
} task;

typedef struct worker {
    PGconn *conn;
    int task;    /* -1 when idle */
    bool header; /* a binary COPY's header is still to come */
} worker;

typedef struct loader {
    bootstrap_env *env;
    table_info *tables;
    int ntables;
    task *tasks;
    int ntasks, next_task;
    worker *workers;
    int nworkers;
    event_ctx ctx;
    /* The most recent row is held back so the final one can say "last". */
    bool held;
    int held_table;
    cdc_buf held_data;
    pgo_value *held_values;
    int held_n;
    pgo_value *values;
    cdc_buf scratch;
    int64_t rows, bytes;
    double estimate;
    int64_t started_ms, last_progress_ms;
    bool tty;
    char *err;
    size_t errsz;
    bool refused; /* a table cannot be read (see hopeless()): retrying will not help */
} loader;

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n')
            *p = ' ';
    for (size_t n = strlen(s); n > 0 && s[n - 1] == ' '; n--)
        s[n - 1] = '\0';
}

static int exec_ok(PGconn *c, const char *sql, char *errstr, size_t errstr_size)
{
    PGresult *res = PQexec(c, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok) {
        snprintf(errstr, errstr_size, "%s", PQresultErrorMessage(res));
        one_line(errstr);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

static PGconn *connect_worker(const capture_config *cfg, char *errstr, size_t errstr_size)
{
    /*
     * row_security=off: a policy must fail the read, not filter it (the
     * stream is not filtered). No timeouts: one COPY may take hours, and
     * the snapshot's transaction idles while Kafka is slow.
     */
    char *options = cdc_pg_options(cfg->source_conninfo,
                                   "-c datestyle=ISO -c timezone=UTC -c intervalstyle=postgres "
                                   "-c extra_float_digits=3 -c bytea_output=hex -c lc_monetary=C "
                                   "-c row_security=off -c statement_timeout=0 -c lock_timeout=0 "
                                   "-c idle_in_transaction_session_timeout=0");
    /* client_encoding after dbname: COPY sends UTF-8 whatever the conninfo says. */
    const char *keys[] = {"connect_timeout",           "dbname", "client_encoding", "options",
                          "fallback_application_name", NULL};
    const char *vals[] = {cdc_pg_connect_timeout(cfg->source_conninfo),
                          cfg->source_conninfo,
                          "UTF8",
                          options,
                          "cdc-capture bootstrap",
                          NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    free(options);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(errstr, errstr_size, "%s", PQerrorMessage(c));
        one_line(errstr);
        PQfinish(c);
        return NULL;
    }
    /* PostgreSQL 17's transaction_timeout (unknown before 17) would end the load too. */
    if (PQserverVersion(c) >= 170000 &&
        exec_ok(c, "SET transaction_timeout = 0", errstr, errstr_size) != 0) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

static void free_tables(loader *L)
{
    for (int i = 0; i < L->ntables; i++) {
        table_info *t = &L->tables[i];
        free(t->nsp);
        free(t->rel);
        free(t->columns);
        free(t->rowfilter);
        for (int c = 0; c < t->relmsg.ncols; c++)
            free(t->colnames[c]);
        free(t->colnames);
        free(t->cols);
    }
    free(L->tables);
}

/* Published tables and their columns, as of the snapshot (worker 0). */
static boot_status load_catalog(loader *L, PGconn *c)
{
    const capture_config *cfg = L->env->cfg;
    const char *p[1] = {cfg->publication_name};
    PGresult *res = PQexecParams(
        c,
        "SELECT cl.oid, pt.schemaname, pt.tablename, cl.relreplident, "
        "  pg_catalog.pg_relation_size(cl.oid) / pg_catalog.current_setting('block_size')::int, "
        "  cl.reltuples, pg_catalog.has_table_privilege(cl.oid, 'SELECT'), pt.rowfilter, "
        "  cl.relkind "
        "FROM pg_catalog.pg_publication_tables pt "
        "JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname "
        "JOIN pg_catalog.pg_class cl ON cl.relnamespace = n.oid AND cl.relname = pt.tablename "
        "WHERE pt.pubname = $1 ORDER BY 5 DESC",
        1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(L->err, L->errsz, "listing the published tables: %s", PQresultErrorMessage(res));
        one_line(L->err);
        PQclear(res);
        return BOOT_RETRY;
    }
    L->ntables = PQntuples(res);
    L->tables = cdc_xcalloc((size_t)L->ntables + 1, sizeof *L->tables);
    for (int i = 0; i < L->ntables; i++) {
        table_info *t = &L->tables[i];
        t->relid = (uint32_t)strtoul(PQgetvalue(res, i, 0), NULL, 10);
        t->nsp = cdc_xstrdup(PQgetvalue(res, i, 1));
        t->rel = cdc_xstrdup(PQgetvalue(res, i, 2));
        t->replident = PQgetvalue(res, i, 3)[0];
        t->pages = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        t->estimate = strtod(PQgetvalue(res, i, 5), NULL);
        if (t->estimate < 0)
            t->estimate = 0;
        t->rowfilter = PQgetisnull(res, i, 7) ? NULL : cdc_xstrdup(PQgetvalue(res, i, 7));
        /* A partitioned table (listed under publish_via_partition_root) has
         * no rows of its own: it is read whole, through its partitions. */
        t->partitioned = PQgetvalue(res, i, 8)[0] == 'p';
        if (PQgetvalue(res, i, 6)[0] != 't') {
            snprintf(L->err, L->errsz,
                     "table %s.%s cannot be read (no SELECT privilege); grant it, or leave the "
                     "table out of the publication (tables = ...)",
                     t->nsp, t->rel);
            PQclear(res);
            return BOOT_FATAL;
        }
    }
    PQclear(res);

    /* Columns as pgoutput sends them: not dropped, not generated, in attnum order. */
    for (int i = 0; i < L->ntables; i++) {
        table_info *t = &L->tables[i];
        char relid[16];
        snprintf(relid, sizeof relid, "%u", t->relid);
        const char *pp[2] = {relid, cfg->publication_name};
        res = PQexecParams(
            c,
            "SELECT a.attname, a.atttypid, a.atttypmod, "
            "  CASE c.relreplident "
            "    WHEN 'f' THEN true "
            "    WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE "
            "      i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY "
            "((i.indkey::int2[])[0:i.indnkeyatts - 1])) "
            "    WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE "
            "      i.indrelid = c.oid AND i.indisreplident AND a.attnum = ANY "
            "((i.indkey::int2[])[0:i.indnkeyatts - 1])) "
            "    ELSE false END, "
            "  pg_catalog.quote_ident(a.attname) "
            "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped "
            "  AND a.attgenerated = '' "
            "  AND (SELECT pt.attnames FROM pg_catalog.pg_publication_tables pt "
            "       WHERE pt.pubname = $2 AND pt.schemaname = "
            "       (SELECT nspname FROM pg_catalog.pg_namespace WHERE oid = c.relnamespace) "
            "       AND pt.tablename = c.relname) @> ARRAY[a.attname] "
            "ORDER BY a.attnum",
            2, NULL, pp, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            snprintf(L->err, L->errsz, "columns of %s.%s: %s", t->nsp, t->rel,
                     PQresultErrorMessage(res));
            one_line(L->err);
            PQclear(res);
            return BOOT_RETRY;
        }
        int n = PQntuples(res);
        t->cols = cdc_xcalloc((size_t)n + 1, sizeof *t->cols);
        t->colnames = cdc_xcalloc((size_t)n + 1, sizeof *t->colnames);
        cdc_buf list;
        cdc_buf_init(&list);
        for (int k = 0; k < n; k++) {
            t->colnames[k] = cdc_xstrdup(PQgetvalue(res, k, 0));
            t->cols[k].name = t->colnames[k];
            t->cols[k].type_oid = (uint32_t)strtoul(PQgetvalue(res, k, 1), NULL, 10);
            t->cols[k].typmod = (int32_t)strtol(PQgetvalue(res, k, 2), NULL, 10);
            t->cols[k].flags = PQgetvalue(res, k, 3)[0] == 't' ? 1 : 0;
            cdc_buf_printf(&list, "%s%s", k ? ", " : "", PQgetvalue(res, k, 4));
        }
        cdc_buf_cstr(&list);
        t->columns = (char *)list.data; /* owned by the table entry */
        PQclear(res);
        t->relmsg.type = 'R';
        t->relmsg.relid = t->relid;
        t->relmsg.nspname = t->nsp;
        t->relmsg.relname = t->rel;
        t->relmsg.replident = t->replident;
        t->relmsg.ncols = (uint16_t)n;
        t->relmsg.cols = t->cols;
        L->estimate += t->estimate;
    }
    return BOOT_OK;
}

/*
 * Take the table's ACCESS SHARE lock before its first COPY (the COPY would
 * take it anyway; it is held until the load ends), and check that the
 * table was not rewritten between the consistent point and that lock.
 *
 * A table-rewriting ALTER TABLE (a column's type, a column added with a
 * volatile default) writes every row again under its own xid: the snapshot
 * would read the table as empty, and the stream carries no rows for it. A
 * relfilenode that differs between the snapshot's pg_class and the current
 * one (pg_relation_filenode() reads the catalog as of now) shows that the
 * file changed; the columns then tell a rewriting ALTER (they changed:
 * start over) from a TRUNCATE (its truncate is in the stream), VACUUM FULL,
 * CLUSTER or SET TABLESPACE (these keep the rows the snapshot sees): the
 * columns as of now are those of a query's result description, compared
 * with the snapshot's pg_attribute.
 *
 * Later COPYs of the table (block ranges, on other workers too) lock it
 * with NOWAIT: a DDL statement queued behind the first lock would otherwise
 * queue them too, and wait for a load that waits for them. The load then
 * starts over, letting the DDL run.
 */
static int lock_table(loader *L, worker *w, table_info *t, const char *qname)
{
    cdc_buf sql;
    cdc_buf_init(&sql);
    if (t->locked)
        cdc_buf_printf(&sql, "LOCK TABLE %s IN ACCESS SHARE MODE NOWAIT", qname);
    else
        cdc_buf_printf(&sql,
                       "SET lock_timeout = '%d s'; LOCK TABLE %s IN ACCESS SHARE MODE; "
                       "SET lock_timeout = 0",
                       LOCK_WAIT_S, qname);
    PGresult *res = PQexec(w->conn, cdc_buf_cstr(&sql));
    cdc_buf_free(&sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (t->locked && state && strcmp(state, "55P03") == 0)
            snprintf(L->err, L->errsz,
                     "a statement waits for a lock on %s.%s, which the load holds (ALTER TABLE, "
                     "TRUNCATE, ...); starting the load over so that it can run",
                     t->nsp, t->rel);
        else if (state && strcmp(state, "55P03") == 0)
            snprintf(L->err, L->errsz,
                     "%s.%s stayed locked by another session (ALTER TABLE, TRUNCATE, ...) for "
                     "%d s; starting the load over rather than wait behind it with the other "
                     "tables' locks held",
                     t->nsp, t->rel, LOCK_WAIT_S);
        else
            snprintf(L->err, L->errsz, "locking %s.%s: %s", t->nsp, t->rel,
                     PQresultErrorMessage(res));
        one_line(L->err);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    if (t->locked)
        return 0;
    t->locked = true;

    char relid[16];
    snprintf(relid, sizeof relid, "%u", t->relid);
    const char *p[1] = {relid};
    res = PQexecParams(w->conn,
                       "SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relkind = 'r' "
                       "AND (c.oid = $1::oid OR c.oid IN "
                       "  (SELECT relid FROM pg_catalog.pg_partition_tree($1::oid))) "
                       "AND c.relfilenode IS DISTINCT FROM pg_catalog.pg_relation_filenode(c.oid)",
                       1, NULL, p, NULL, NULL, 0);
    bool moved = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "0");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    if (!ok || !moved) {
        if (!ok)
            snprintf(L->err, L->errsz, "checking %s.%s: %s", t->nsp, t->rel,
                     PQerrorMessage(w->conn));
        return ok ? 0 : -1;
    }
    /* The file changed: did the columns? */
    PGresult *then =
        PQexecParams(w->conn,
                     "SELECT attname, atttypid, atttypmod FROM pg_catalog.pg_attribute "
                     "WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped "
                     "ORDER BY attnum",
                     1, NULL, p, NULL, NULL, 0);
    cdc_buf_init(&sql);
    cdc_buf_printf(&sql, "SELECT * FROM %s LIMIT 0", qname);
    PGresult *now = PQexec(w->conn, cdc_buf_cstr(&sql));
    cdc_buf_free(&sql);
    int rc = 0;
    if (PQresultStatus(then) != PGRES_TUPLES_OK || PQresultStatus(now) != PGRES_TUPLES_OK) {
        snprintf(L->err, L->errsz, "checking %s.%s: %s", t->nsp, t->rel, PQerrorMessage(w->conn));
        rc = -1;
    } else {
        bool same = PQntuples(then) == PQnfields(now);
        for (int i = 0; same && i < PQntuples(then); i++)
            same = strcmp(PQgetvalue(then, i, 0), PQfname(now, i)) == 0 &&
                   strtoul(PQgetvalue(then, i, 1), NULL, 10) == PQftype(now, i) &&
                   strtol(PQgetvalue(then, i, 2), NULL, 10) == PQfmod(now, i);
        if (!same) {
            snprintf(L->err, L->errsz,
                     "table %s.%s was rewritten by an ALTER TABLE after the load's snapshot "
                     "was taken, so the snapshot cannot read its rows; starting the load over",
                     t->nsp, t->rel);
            rc = -1;
        } else {
            cdc_info("%s.%s: its file changed after the load's snapshot (TRUNCATE, VACUUM FULL, "
                     "CLUSTER, SET TABLESPACE): the snapshot still reads it, and a truncate "
                     "follows in the stream",
                     t->nsp, t->rel);
        }
    }
    one_line(L->err);
    PQclear(then);
    PQclear(now);
    return rc;
}

static void plan_tasks(loader *L)
{
    int cap = 16;
    L->tasks = cdc_xmalloc((size_t)cap * sizeof *L->tasks);
    for (int i = 0; i < L->ntables; i++) {
        table_info *t = &L->tables[i];
        int64_t chunks = t->pages > CHUNK_PAGES ? (t->pages + CHUNK_PAGES - 1) / CHUNK_PAGES : 1;
        for (int64_t k = 0; k < chunks; k++) {
            if (L->ntasks == cap) {
                cap *= 2;
                L->tasks = cdc_xrealloc(L->tasks, (size_t)cap * sizeof *L->tasks);
            }
            task *tk = &L->tasks[L->ntasks++];
            tk->table = i;
            tk->from = chunks == 1 ? -1 : k * CHUNK_PAGES;
            /* The last range is open: the file may have grown since. */
            tk->to = chunks == 1 || k == chunks - 1 ? -1 : (k + 1) * CHUNK_PAGES;
        }
    }
}

/*
 * An error that a new load would meet again: 42501, no privilege (on the
 * schema, say) or a row-level security policy that would filter the read
 * (row_security=off); class 22, data the server cannot send as UTF-8 (an
 * invalid byte in an SQL_ASCII database, say). Other errors, a table
 * dropped meanwhile included, start a new load.
 */
static bool hopeless(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return state && (strcmp(state, "42501") == 0 || strncmp(state, "22", 2) == 0);
}

static int start_task(loader *L, worker *w)
{
    if (L->next_task >= L->ntasks) {
        w->task = -1;
        return 0;
    }
    w->task = L->next_task++;
    task *tk = &L->tasks[w->task];
    table_info *t = &L->tables[tk->table];
    char *nsp = PQescapeIdentifier(w->conn, t->nsp, strlen(t->nsp));
    char *rel = PQescapeIdentifier(w->conn, t->rel, strlen(t->rel));
    cdc_buf sql;
    cdc_buf_init(&sql);
    cdc_buf_printf(&sql, "%s.%s", nsp, rel);
    if (lock_table(L, w, t, cdc_buf_cstr(&sql)) != 0) {
        PQfreemem(nsp);
        PQfreemem(rel);
        cdc_buf_free(&sql);
        return -1;
    }
    cdc_buf_reset(&sql);
    cdc_buf_printf(&sql, "COPY (SELECT %s FROM %s%s.%s", t->columns, t->partitioned ? "" : "ONLY ",
                   nsp, rel);
    const char *and = " WHERE ";
    if (tk->from >= 0) {
        cdc_buf_printf(&sql, "%sctid >= '(%lld,0)'::tid", and, (long long)tk->from);
        and = " AND ";
    }
    if (tk->to >= 0) {
        cdc_buf_printf(&sql, "%sctid < '(%lld,0)'::tid", and, (long long)tk->to);
        and = " AND ";
    }
    if (t->rowfilter)
        cdc_buf_printf(&sql, "%s(%s)", and, t->rowfilter);
    /* Binary: integers, timestamps and numerics travel without being
     * printed as text by the source and parsed back here. */
    cdc_buf_puts(&sql, t->binary ? ") TO STDOUT (FORMAT binary)" : ") TO STDOUT");
    w->header = t->binary;
    PQfreemem(nsp);
    PQfreemem(rel);
    int rc = PQsendQuery(w->conn, cdc_buf_cstr(&sql)) == 1 ? 0 : -1;
    cdc_buf_free(&sql);
    if (rc != 0) {
        snprintf(L->err, L->errsz, "%s", PQerrorMessage(w->conn));
        one_line(L->err);
        return -1;
    }
    PGresult *res = PQgetResult(w->conn);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        snprintf(L->err, L->errsz, "reading %s.%s: %s", t->nsp, t->rel, PQresultErrorMessage(res));
        one_line(L->err);
        L->refused = hopeless(res);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    if (PQsetnonblocking(w->conn, 1) != 0)
        return -1;
    return 0;
}

static emit_status emit_held(loader *L, const char *snapshot)
{
    if (!L->held)
        return EMIT_OK;
    table_info *t = &L->tables[L->held_table];
    /* Re-point the held values at the held copy of the data. */
    pgo_tuple tup = {(uint16_t)L->held_n, L->held_values};
    L->ctx.snapshot = snapshot;
    L->held = false;
    return emitter_change(L->env->em, t->r, 'r', NULL, &tup, &L->ctx, L->err, L->errsz);
}

/* The row parsed into L->values (n of them, in L->scratch): emit the held one, hold this one. */
static emit_status hold_row(loader *L, int table, int n, size_t len)
{
    emit_status st = emit_held(L, "true");
    if (st != EMIT_OK)
        return st;
    /* Hold the row: its buffer becomes the held one (the values point into
     * it), the held one is the next row's scratch. */
    cdc_buf swap = L->held_data;
    L->held_data = L->scratch;
    L->scratch = swap;
    memcpy(L->held_values, L->values, (size_t)n * sizeof *L->values);
    L->held_n = n;
    L->held_table = table;
    L->held = true;
    L->rows++;
    L->bytes += (int64_t)len;
    return EMIT_OK;
}

/* One row of a text COPY. */
static emit_status take_row(loader *L, int table, const char *line, size_t len)
{
    table_info *t = &L->tables[table];
    size_t size = len;
    if (len > 0 && line[len - 1] == '\n')
        len--;
    int n = bootstrap_parse_copy_line(line, len, &L->scratch, L->values, t->relmsg.ncols + 1);
    if (n != t->relmsg.ncols) {
        snprintf(L->err, L->errsz, "%s.%s: malformed COPY row (%d fields, expected %d)", t->nsp,
                 t->rel, n, t->relmsg.ncols);
        return EMIT_FATAL;
    }
    return hold_row(L, table, n, size);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * One message of a binary COPY: a row (a 16-bit field count, then each
 * field's 32-bit length, -1 for NULL, and bytes). The first message starts
 * with the format's header; the last is the trailer, a field count of -1.
 * The row is copied to L->scratch, where its values point.
 */
static emit_status take_binary_row(loader *L, worker *w, int table, const char *msg, size_t len)
{
    static const uint8_t signature[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
    table_info *t = &L->tables[table];
    const uint8_t *p = (const uint8_t *)msg, *end = p + len;
    const char *what = "row";
    if (w->header) {
        what = "header";
        if (len < 19 || memcmp(p, signature, sizeof signature) != 0 ||
            be32(p + 15) > (size_t)(end - p - 19))
            goto malformed;
        p += 19 + be32(p + 15); /* flags, then a header extension to skip */
        w->header = false;
        if (p == end)
            return EMIT_OK;
        what = "row";
    }
    if (end - p < 2)
        goto malformed;
    int nf = (int16_t)(p[0] << 8 | p[1]);
    p += 2;
    if (nf == -1) {
        what = "trailer";
        if (p != end)
            goto malformed;
        return EMIT_OK;
    }
    if (nf != t->relmsg.ncols)
        goto malformed;
    cdc_buf_reset(&L->scratch);
    cdc_buf_append(&L->scratch, p, (size_t)(end - p));
    p = L->scratch.data;
    end = p + L->scratch.len;
    for (int i = 0; i < nf; i++) {
        if (end - p < 4)
            goto malformed;
        uint32_t flen = be32(p);
        p += 4;
        if (flen == UINT32_MAX) {
            L->values[i] = (pgo_value){'n', NULL, 0};
            continue;
        }
        if (flen > (size_t)(end - p))
            goto malformed;
        L->values[i] = (pgo_value){'b', (const char *)p, flen};
        p += flen;
    }
    if (p != end)
        goto malformed;
    return hold_row(L, table, nf, len);
malformed:
    snprintf(L->err, L->errsz, "%s.%s: malformed binary COPY %s (%zu bytes)", t->nsp, t->rel,
             what, len);
    return EMIT_FATAL;
}

static void progress(loader *L, bool final)
{
    int64_t now = wall_ms();
    if (!final && now - L->last_progress_ms < (L->tty ? 500 : PROGRESS_MS))
        return;
    L->last_progress_ms = now;
    double secs = (double)(now - L->started_ms) / 1000.0;
    double rate = secs > 0 ? (double)L->rows / secs : 0;
    double total = L->estimate > (double)L->rows ? L->estimate : (double)L->rows;
    double pct = total > 0 ? 100.0 * (double)L->rows / total : 100.0;
    double eta = rate > 0 ? (total - (double)L->rows) / rate : 0;
    if (final) {
        if (L->tty)
            fprintf(stderr, "\r\033[K");
        cdc_info("bootstrap done: %d tables, %" PRId64 " rows, %" PRId64
                 " bytes in %.1f s (%.0f rows/s)",
                 L->ntables, L->rows, L->bytes, secs, rate);
        return;
    }
    if (L->tty) {
        int width = 30, filled = (int)(pct / 100.0 * width);
        char bar[64];
        for (int i = 0; i < width; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr,
                "\rbootstrap [%s] %5.1f%% %" PRId64 "/%.0f rows %.0f rows/s ETA %.0f s\033[K", bar,
                pct, L->rows, total, rate, eta);
        fflush(stderr);
    } else {
        cdc_info("bootstrap: %" PRId64 " of ~%.0f rows (%.1f%%), %.0f rows/s, ETA %.0f s", L->rows,
                 total, pct, rate, eta);
    }
}

/* Drain what a worker's connection has; returns -1 on error, 1 when its task ended. */
static int drain(loader *L, worker *w, emit_status *st)
{
    *st = EMIT_OK;
    if (!PQconsumeInput(w->conn)) {
        snprintf(L->err, L->errsz, "%s", PQerrorMessage(w->conn));
        one_line(L->err);
        return -1;
    }
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(w->conn, &buf, 1);
        if (n > 0) {
            int table = L->tasks[w->task].table;
            *st = L->tables[table].binary ? take_binary_row(L, w, table, buf, (size_t)n)
                                          : take_row(L, table, buf, (size_t)n);
            PQfreemem(buf);
            if (*st != EMIT_OK)
                return -1;
            continue;
        }
        if (n == 0)
            return 0;
        if (n == -2) {
            snprintf(L->err, L->errsz, "%s", PQerrorMessage(w->conn));
            one_line(L->err);
            return -1;
        }
        /* -1: this COPY is complete. */
        PGresult *res = PQgetResult(w->conn);
        int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok) {
            const table_info *t = &L->tables[L->tasks[w->task].table];
            snprintf(L->err, L->errsz, "reading %s.%s: %s", t->nsp, t->rel,
                     PQresultErrorMessage(res));
            one_line(L->err);
            L->refused = hopeless(res);
        }
        PQclear(res);
        while ((res = PQgetResult(w->conn)) != NULL)
            PQclear(res);
        PQsetnonblocking(w->conn, 0);
        return ok ? 1 : -1;
    }
}

static boot_status to_boot(emit_status st)
{
    switch (st) {
    case EMIT_OK:
        return BOOT_OK;
    case EMIT_STOPPED:
        return BOOT_STOPPED;
    case EMIT_FATAL:
        return BOOT_FATAL;
    default:
        return BOOT_RETRY;
    }
}

boot_status bootstrap_load(bootstrap_env *env, uint64_t *consistent_point, int64_t *rows,
                           char *errstr, size_t errstr_size)
{
    const capture_config *cfg = env->cfg;
    loader L;
    memset(&L, 0, sizeof L);
    L.env = env;
    L.err = errstr;
    L.errsz = errstr_size;
    L.tty = isatty(STDERR_FILENO);
    cdc_buf_init(&L.scratch);
    cdc_buf_init(&L.held_data);
    boot_status bs = BOOT_OK;

    /* 1. The slot, with the snapshot the load reads. */
    cdc_buf cmd;
    cdc_buf_init(&cmd);
    cdc_buf_printf(&cmd, "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput EXPORT_SNAPSHOT",
                   cfg->slot_name);
    PGresult *res = PQexec(env->repl, cdc_buf_cstr(&cmd));
    cdc_buf_free(&cmd);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "cannot create replication slot %s: %s", cfg->slot_name,
                 PQresultErrorMessage(res));
        one_line(errstr);
        PQclear(res);
        return BOOT_RETRY;
    }
    cdc_lsn cp = 0;
    cdc_lsn_parse(PQgetvalue(res, 0, 1), &cp);
    char snapshot[128];
    snprintf(snapshot, sizeof snapshot, "%s", PQgetvalue(res, 0, 2));
    PQclear(res);
    *consistent_point = cp;
    cdc_info("created replication slot %s at " CDC_LSN_FMT " with snapshot %s; loading",
             cfg->slot_name, CDC_LSN_ARGS(cp), snapshot);

    /* 2. Workers import the snapshot (the slot's connection must stay idle until then). */
    L.nworkers = cfg->bootstrap_workers;
    L.workers = cdc_xcalloc((size_t)L.nworkers, sizeof *L.workers);
    char *lit = NULL;
    for (int i = 0; i < L.nworkers; i++) {
        L.workers[i].task = -1;
        L.workers[i].conn = connect_worker(cfg, errstr, errstr_size);
        if (!L.workers[i].conn) {
            bs = BOOT_RETRY;
            goto done;
        }
        if (!lit)
            lit = PQescapeLiteral(L.workers[i].conn, snapshot, strlen(snapshot));
        cdc_buf_init(&cmd);
        cdc_buf_printf(&cmd,
                       "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                       "SET TRANSACTION SNAPSHOT %s",
                       lit);
        int rc = exec_ok(L.workers[i].conn, cdc_buf_cstr(&cmd), errstr, errstr_size);
        cdc_buf_free(&cmd);
        if (rc != 0) {
            bs = BOOT_RETRY;
            goto done;
        }
    }

    /* 3. What to load, as of the snapshot. */
    bs = load_catalog(&L, L.workers[0].conn);
    if (bs != BOOT_OK)
        goto done;
    int maxcols = 1;
    for (int i = 0; i < L.ntables; i++) {
        table_info *t = &L.tables[i];
        bool retriable;
        t->r = relcache_update(env->rels, &t->relmsg, env->sql, cfg->topic_prefix, &retriable,
                               errstr, errstr_size);
        if (!t->r) {
            bs = retriable ? BOOT_RETRY : BOOT_FATAL;
            goto done;
        }
        emit_status st = emitter_prepare(env->em, t->r, errstr, errstr_size);
        if (st != EMIT_OK) {
            bs = to_boot(st);
            goto done;
        }
        t->binary = t->r->ncols > 0;
        for (int c = 0; c < t->r->ncols; c++)
            t->binary &= t->r->cols[c].bin != CDC_BIN_NONE;
        if (t->relmsg.ncols + 1 > maxcols)
            maxcols = t->relmsg.ncols + 1;
    }
    L.values = cdc_xcalloc((size_t)maxcols, sizeof *L.values);
    L.held_values = cdc_xcalloc((size_t)maxcols, sizeof *L.held_values);
    plan_tasks(&L);
    cdc_info("bootstrap: %d tables, ~%.0f rows, %d tasks on %d workers", L.ntables, L.estimate,
             L.ntasks, L.nworkers);

    /* 4. Rows become "r" events of one pseudo-transaction at the consistent point. */
    L.ctx.seq = tracker_begin(env->tr);
    L.ctx.commit_lsn = cp;
    L.ctx.commit_ms = wall_ms();
    L.ctx.xid = 0;
    L.ctx.lsn = cp;
    L.ctx.ordinal = CDC_SNAPSHOT_ORDINAL0;
    L.started_ms = L.last_progress_ms = wall_ms();
    /*
     * A reload starts with a truncate of each table (on every partition,
     * like any truncate): a consumer that holds rows of an earlier, abandoned
     * load or of an older slot is reset, so keys deleted meanwhile do not
     * survive there. The truncate and the rows share the consistent point;
     * the truncate has the lower ordinals. A first load needs none.
     */
    L.ctx.snapshot = "true";
    for (int i = 0; i < L.ntables && env->reset; i++) {
        emit_status st = emitter_truncate(env->em, L.tables[i].r, &L.ctx, errstr, errstr_size);
        if (st != EMIT_OK) {
            bs = to_boot(st);
            goto done;
        }
    }
    for (int i = 0; i < L.nworkers; i++)
        if (start_task(&L, &L.workers[i]) != 0) {
            bs = L.refused ? BOOT_FATAL : BOOT_RETRY;
            goto done;
        }
    struct pollfd *pfd = cdc_xcalloc((size_t)L.nworkers, sizeof *pfd);
    for (;;) {
        int active = 0;
        for (int i = 0; i < L.nworkers; i++) {
            pfd[i].fd = L.workers[i].task >= 0 ? PQsocket(L.workers[i].conn) : -1;
            pfd[i].events = POLLIN;
            active += L.workers[i].task >= 0;
        }
        if (active == 0)
            break;
        if (*env->stop) {
            bs = BOOT_STOPPED;
            break;
        }
        int prc = poll(pfd, (nfds_t)L.nworkers, 100);
        if (prc < 0 && errno != EINTR) {
            snprintf(errstr, errstr_size, "poll: %s", strerror(errno));
            bs = BOOT_RETRY;
            break;
        }
        emitter_poll(env->em, 0);
        bool failed = false;
        for (int i = 0; i < L.nworkers && !failed; i++) {
            worker *w = &L.workers[i];
            /* Not only on POLLIN: libpq may already hold the whole COPY
             * (a small table arrives with the COPY response itself). */
            if (w->task < 0)
                continue;
            emit_status st;
            int d = drain(&L, w, &st);
            if (d < 0) {
                bs = st != EMIT_OK ? to_boot(st) : L.refused ? BOOT_FATAL : BOOT_RETRY;
                failed = true;
            } else if (d == 1 && start_task(&L, w) != 0) {
                bs = L.refused ? BOOT_FATAL : BOOT_RETRY;
                failed = true;
            }
        }
        if (failed)
            break;
        if (emitter_broken(env->em, errstr, errstr_size)) {
            bs = BOOT_RETRY;
            break;
        }
        progress(&L, false);
    }
    free(pfd);
    if (bs != BOOT_OK)
        goto done;
    emit_status st = emit_held(&L, "last");
    if (st != EMIT_OK) {
        bs = to_boot(st);
        goto done;
    }
    tracker_commit(env->tr, L.ctx.seq, cp);

    /* 5. Everything in Kafka before the stream may start. */
    while (!tracker_idle(env->tr) && tracker_in_flight(env->tr) > 0) {
        if (*env->stop) {
            bs = BOOT_STOPPED;
            goto done;
        }
        emitter_poll(env->em, 100);
        if (emitter_broken(env->em, errstr, errstr_size)) {
            bs = BOOT_RETRY;
            goto done;
        }
    }
    tracker_release(env->tr);
    if (L.tty)
        fprintf(stderr, "\r\033[K");
    progress(&L, true);
    *rows = L.rows;

done:
    if (L.tty && bs != BOOT_OK)
        fprintf(stderr, "\n");
    for (int i = 0; i < L.nworkers; i++)
        if (L.workers[i].conn)
            PQfinish(L.workers[i].conn);
    if (lit)
        PQfreemem(lit);
    free(L.workers);
    free(L.tasks);
    free(L.values);
    free(L.held_values);
    free_tables(&L);
    cdc_buf_free(&L.scratch);
    cdc_buf_free(&L.held_data);
    return bs;
}
