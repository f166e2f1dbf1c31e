/*
 * The comparison. Per table, both databases run the same summary query:
 *
 *   range = first 28 bits of md5(key as UTF-8 text) mod R
 *   per range: count(*), sum(first 60 bits of md5(row as UTF-8 text))
 *
 * where "key" is the replica-identity key (primary key or the REPLICA
 * IDENTITY index; a keyless table uses the whole row) and "row" every
 * column of the source table, by name, in the source's order. Both queries
 * run at the same time, one on each server. Ranges whose count or sum differ
 * are read again: each side streams (single-row mode) the keys and row
 * hashes of those ranges in byte order (COLLATE "C"), and a merge of the two
 * streams names every key missing in the target, extra in the target, or
 * with a different row. Only the merge's two current rows are in memory.
 *
 * The text forms compared are made session-independent first (UTC time
 * zone, ISO dates, hex bytea, shortest exact floats).
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "cdc/buf.h"
#include "cdc/log.h"
#include "verify.h"

#define AUTO_MIN_RANGES 16
#define AUTO_MAX_RANGES 65536
#define ROWS_PER_RANGE 5000
#define SHOWN_VALUE_MAX 200 /* characters of a key or row printed */

typedef struct side {
    const char *name; /* "source" or "target" */
    PGconn *conn;
    volatile sig_atomic_t *stop; /* SIGINT/SIGTERM seen (may be NULL) */
    bool cancel_sent;            /* for the query now running */
} side;

typedef struct table_ref {
    char *nsp;
    char *rel;
} table_ref;

typedef struct table_list {
    table_ref *v;
    size_t n;
} table_list;

/* What is compared for one table, as SQL fragments with quoted identifiers. */
typedef struct table_plan {
    const table_ref *ref;
    char *from;      /* [ONLY] "nsp"."rel" (as the source has it) */
    char *from_tgt;  /* the same for the target */
    char *cols;      /* "a", "b", ... */
    char *keys;      /* key columns, or NULL for a keyless table */
    char *key_names; /* a, b (for display) */
    int ranges;
    char *problem; /* why the target cannot match (missing table/columns), else NULL */
} table_plan;

/* Per-range summaries of one side. */
typedef struct summary {
    int64_t *rows;
    char **hash; /* NULL for an empty range */
    int64_t total;
} summary;

typedef struct table_result {
    int64_t src_rows, tgt_rows; /* -1 = not counted */
    int ranges, differing_ranges;
    int64_t differing_keys;
} table_result;

/* ---- connections ------------------------------------------------------ */

static int side_connect(side *s, const char *name, const char *conninfo,
                        volatile sig_atomic_t *stop)
{
    s->name = name;
    s->stop = stop;
    const char *keys[] = {"application_name", "connect_timeout", "dbname", NULL};
    const char *vals[] = {"cdc-verify", cdc_pg_connect_timeout(conninfo), conninfo, NULL};
    s->conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        cdc_error("%s: cannot connect: %s", name, PQerrorMessage(s->conn));
        return -1;
    }
    /* Text forms that do not depend on the session or the server's settings. */
    /*
     * row_security off: a policy must make the read fail, not filter both
     * sides alike. search_path empty: format_type qualifies every type.
     */
    PGresult *r = PQexec(s->conn, "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; "
                                  "SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; "
                                  "SET bytea_output = 'hex'; SET lc_monetary = 'C'; "
                                  "SET row_security = off; SET statement_timeout = 0; "
                                  "SET idle_in_transaction_session_timeout = 0; "
                                  "SET search_path = ''; SET client_encoding = 'UTF8'; "
                                  "SET default_transaction_read_only = on");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    /* PostgreSQL 17's transaction_timeout (unknown before 17) would end a long comparison. */
    if (ok && PQserverVersion(s->conn) >= 170000) {
        r = PQexec(s->conn, "SET transaction_timeout = 0");
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (!ok)
        cdc_error("%s: %s", name, PQerrorMessage(s->conn));
    return ok ? 0 : -1;
}

/*
 * Wait until the next result can be read without blocking. A stop request
 * (Ctrl-C, SIGTERM) asks the server to cancel the running query, once, so
 * a long scan or a wait for a lock ends with an error instead of running on
 * behind an exiting cdc-verify.
 */
static void side_wait(side *s)
{
    while (PQisBusy(s->conn)) {
        if (s->stop && *s->stop && !s->cancel_sent) {
            s->cancel_sent = true;
            char err[256];
            PGcancel *c = PQgetCancel(s->conn);
            if (!c || !PQcancel(c, err, sizeof err))
                cdc_warn("%s: cannot cancel the running query: %s", s->name,
                         c ? err : "no cancel handle");
            else
                cdc_info("%s: cancelling the running query", s->name);
            PQfreeCancel(c);
        }
        struct pollfd pfd = {.fd = PQsocket(s->conn), .events = POLLIN};
        int rc = poll(&pfd, 1, 100);
        if (rc < 0 && errno != EINTR)
            return; /* PQgetResult reports the connection's state */
        /* Also after a timeout: TLS may hold decrypted bytes poll cannot see. */
        if (!PQconsumeInput(s->conn))
            return;
    }
}

/* The next result of the running query (NULL at its end), waited for as above. */
static PGresult *side_next(side *s)
{
    side_wait(s);
    return PQgetResult(s->conn);
}

/* Read the query's remaining results to the NULL that makes the connection ready again. */
static void side_drain(side *s)
{
    PGresult *r;
    while ((r = side_next(s)) != NULL)
        PQclear(r);
    s->cancel_sent = false;
}

/* Wait for the result of a query sent with PQsendQuery*; -1 (logged) on error. */
static PGresult *side_result(side *s, const char *what, ExecStatusType want)
{
    PGresult *r = side_next(s);
    side_drain(s);
    if (!r || PQresultStatus(r) != want) {
        cdc_error("%s: %s: %s", s->name, what,
                  r ? PQresultErrorMessage(r) : PQerrorMessage(s->conn));
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Run a parameterised query; NULL (logged with `what`) on error. */
static PGresult *side_query(side *s, const char *what, const char *sql, int nparams,
                            const char *const *params)
{
    if (!PQsendQueryParams(s->conn, sql, nparams, NULL, params, NULL, NULL, 0)) {
        cdc_error("%s: %s: %s", s->name, what, PQerrorMessage(s->conn));
        return NULL;
    }
    return side_result(s, what, PGRES_TUPLES_OK);
}

static char *quote_ident(side *s, const char *name)
{
    char *q = PQescapeIdentifier(s->conn, name, strlen(name));
    if (!q) {
        cdc_error("%s: cannot quote identifier: %s", s->name, PQerrorMessage(s->conn));
        return NULL;
    }
    char *copy = cdc_xstrdup(q);
    PQfreemem(q);
    return copy;
}

/* ---- the tables to compare -------------------------------------------- */

static void tables_add(table_list *l, const char *nsp, size_t nsp_len, const char *rel,
                       size_t rel_len)
{
    l->v = cdc_xrealloc(l->v, (l->n + 1) * sizeof *l->v);
    l->v[l->n].nsp = cdc_xstrndup(nsp, nsp_len);
    l->v[l->n].rel = cdc_xstrndup(rel, rel_len);
    l->n++;
}

static void tables_free(table_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].nsp);
        free(l->v[i].rel);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* "a.b, c" -> (a,b), (public,c). Returns -1 on an empty or malformed item. */
static int tables_parse(table_list *l, const char *spec)
{
    const char *p = spec;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > p && last[-1] == ' ')
            last--;
        const char *dot = memchr(p, '.', (size_t)(last - p));
        if (dot && (dot == p || dot + 1 == last)) {
            cdc_error("tables: '%.*s' is not schema.table", (int)(last - p), p);
            return -1;
        }
        if (dot)
            tables_add(l, p, (size_t)(dot - p), dot + 1, (size_t)(last - dot - 1));
        else
            tables_add(l, "public", 6, p, (size_t)(last - p));
        p = end;
    }
    if (l->n == 0) {
        cdc_error("tables: no table named");
        return -1;
    }
    return 0;
}

static int tables_from_result(table_list *l, PGresult *r)
{
    for (int i = 0; i < PQntuples(r); i++)
        tables_add(l, PQgetvalue(r, i, 0), strlen(PQgetvalue(r, i, 0)), PQgetvalue(r, i, 1),
                   strlen(PQgetvalue(r, i, 1)));
    PQclear(r);
    return 0;
}

/* The tables: as configured, else the publication's, else every table of the source. */
static int tables_find(const verify_config *cfg, side *src, table_list *l)
{
    if (*cfg->tables)
        return tables_parse(l, cfg->tables);
    const char *params[] = {cfg->publication_name};
    PGresult *r = side_query(src, "looking up the publication",
                             "SELECT 1 FROM pg_publication WHERE pubname = $1", 1, params);
    if (!r)
        return -1;
    bool has_pub = PQntuples(r) > 0;
    PQclear(r);
    if (has_pub) {
        r = side_query(src, "listing the publication's tables",
                       "SELECT schemaname, tablename FROM pg_publication_tables "
                       "WHERE pubname = $1 ORDER BY 1, 2",
                       1, params);
        if (!r)
            return -1;
        cdc_info("comparing the tables of publication %s", cfg->publication_name);
        return tables_from_result(l, r);
    }
    r = side_query(src, "listing tables",
                   "SELECT n.nspname, c.relname FROM pg_class c "
                   "JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
                   "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                   "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2",
                   0, NULL);
    if (!r)
        return -1;
    cdc_info("no publication %s in the source: comparing every table", cfg->publication_name);
    return tables_from_result(l, r);
}

/* ---- planning one table ----------------------------------------------- */

static void plan_free(table_plan *p)
{
    free(p->from);
    free(p->from_tgt);
    free(p->cols);
    free(p->keys);
    free(p->key_names);
    free(p->problem);
    memset(p, 0, sizeof *p);
}

/* oid, relkind and estimated rows of the table on one side; 0 = found, 1 = absent, -1 = error. */
static int table_lookup(side *s, const table_ref *t, char *oid, size_t oid_size, char *relkind,
                        int64_t *estimate)
{
    const char *params[] = {t->nsp, t->rel};
    PGresult *r = side_query(s, "looking up a table",
                             "SELECT c.oid, c.relkind, greatest(c.reltuples, 0)::bigint "
                             "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                             2, params);
    if (!r)
        return -1;
    int found = PQntuples(r) > 0 ? 0 : 1;
    if (found == 0) {
        snprintf(oid, oid_size, "%s", PQgetvalue(r, 0, 0));
        *relkind = PQgetvalue(r, 0, 1)[0];
        *estimate = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    }
    PQclear(r);
    return found;
}

/*
 * Name, generated (t/f) and type of each column. The type is a domain's base
 * type, as cdc-capture records it and cdc-apply creates it; with the empty
 * search_path every type outside pg_catalog comes schema-qualified.
 */
static PGresult *columns_of(side *s, const char *oid)
{
    const char *params[] = {oid};
    return side_query(
        s, "reading columns",
        "SELECT a.attname, a.attgenerated <> '', pg_catalog.format_type("
        "  CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, "
        "  CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) "
        "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        1, params);
}

/* Row of `name` in a columns_of result, or -1. */
static int column_row(const PGresult *cols, const char *name)
{
    if (!cols)
        return -1;
    for (int j = 0; j < PQntuples(cols); j++)
        if (strcmp(name, PQgetvalue(cols, j, 0)) == 0)
            return j;
    return -1;
}

static char *from_clause(side *s, const table_ref *t, char relkind)
{
    char *n = quote_ident(s, t->nsp), *r = quote_ident(s, t->rel);
    char *out = NULL;
    if (n && r) {
        cdc_buf b;
        cdc_buf_init(&b);
        /* ONLY: inheritance children are tables of their own; a partitioned
         * table is read with its partitions. */
        cdc_buf_printf(&b, "%s%s.%s", relkind == 'p' ? "" : "ONLY ", n, r);
        out = (char *)b.data;
    }
    free(n);
    free(r);
    return out;
}

/* Append `name` quoted to b (", "-separated); -1 if it cannot be quoted. */
static int append_ident(side *s, cdc_buf *b, const char *name)
{
    char *q = quote_ident(s, name);
    if (!q)
        return -1;
    if (b->len)
        cdc_buf_puts(b, ", ");
    cdc_buf_puts(b, q);
    free(q);
    return 0;
}

static int plan_table(const verify_config *cfg, side *src, side *tgt, const table_ref *t,
                      table_plan *p)
{
    char oid[32], toid[32], relkind = 'r', trelkind = 'r';
    int64_t estimate = 0, test = 0;
    PGresult *cols = NULL, *keys = NULL, *tcols = NULL;
    cdc_buf b, missing, retyped;
    cdc_buf_init(&b);
    cdc_buf_init(&missing);
    cdc_buf_init(&retyped);
    int rc = -1;

    memset(p, 0, sizeof *p);
    p->ref = t;
    int found = table_lookup(src, t, oid, sizeof oid, &relkind, &estimate);
    if (found != 0) {
        if (found > 0)
            cdc_error("source: table %s.%s does not exist", t->nsp, t->rel);
        goto done;
    }
    if (!(p->from = from_clause(src, t, relkind)))
        goto done;
    if (!(cols = columns_of(src, oid)))
        goto done;

    /* The key cdc-capture uses: the REPLICA IDENTITY index, else the primary key. */
    const char *params[] = {oid};
    keys =
        side_query(src, "reading the key",
                   "SELECT a.attname FROM pg_index i "
                   "JOIN pg_class c ON c.oid = i.indrelid "
                   "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) "
                   "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                   "WHERE i.indrelid = $1::oid AND CASE WHEN c.relreplident = 'i' "
                   "THEN i.indisreplident ELSE i.indisprimary END "
                   "AND k.ord <= i.indnkeyatts ORDER BY k.ord", /* not INCLUDE columns */
                   1, params);
    if (!keys)
        goto done;
    if (PQntuples(keys) > 0) {
        cdc_buf_reset(&b);
        cdc_buf names;
        cdc_buf_init(&names);
        for (int i = 0; i < PQntuples(keys); i++) {
            if (append_ident(src, &b, PQgetvalue(keys, i, 0)) != 0) {
                cdc_buf_free(&names);
                goto done;
            }
            cdc_buf_printf(&names, "%s%s", i ? ", " : "", PQgetvalue(keys, i, 0));
        }
        p->keys = cdc_xstrdup(cdc_buf_cstr(&b));
        p->key_names = (char *)names.data;
    }

    p->ranges = cfg->ranges;
    if (p->ranges == 0) {
        int64_t r = estimate / ROWS_PER_RANGE;
        p->ranges = (int)(r < AUTO_MIN_RANGES ? AUTO_MIN_RANGES
                          : r > AUTO_MAX_RANGES ? AUTO_MAX_RANGES
                                                : r);
    }

    /*
     * The target must have the table and every column of the source's, of
     * the same type. A generated column is compared when the target has it
     * (its value there is computed, or plain and filled, or wrong); the
     * stream does not carry generated columns, so a target without one is
     * not short of anything.
     */
    found = table_lookup(tgt, t, toid, sizeof toid, &trelkind, &test);
    if (found < 0)
        goto done;
    if (found == 0) {
        if (!(p->from_tgt = from_clause(tgt, t, trelkind)))
            goto done;
        if (!(tcols = columns_of(tgt, toid)))
            goto done;
    }
    cdc_buf_reset(&b);
    for (int i = 0; i < PQntuples(cols); i++) {
        const char *name = PQgetvalue(cols, i, 0);
        bool generated = PQgetvalue(cols, i, 1)[0] == 't';
        int j = column_row(tcols, name);
        if (j < 0 && generated)
            continue;
        if (append_ident(src, &b, name) != 0)
            goto done;
        if (!tcols)
            continue;
        if (j < 0)
            cdc_buf_printf(&missing, "%s%s", missing.len ? ", " : "", name);
        else if (strcmp(PQgetvalue(cols, i, 2), PQgetvalue(tcols, j, 2)) != 0)
            cdc_buf_printf(&retyped, "%s%s (%s in source, %s in target)", retyped.len ? ", " : "",
                           name, PQgetvalue(cols, i, 2), PQgetvalue(tcols, j, 2));
    }
    if (b.len == 0) {
        cdc_error("source: table %s.%s has no columns to compare", t->nsp, t->rel);
        goto done;
    }
    p->cols = cdc_xstrdup(cdc_buf_cstr(&b));
    if (found > 0) {
        p->problem = cdc_xstrdup("table missing in target");
    } else if (missing.len || retyped.len) {
        cdc_buf c;
        cdc_buf_init(&c);
        if (missing.len)
            cdc_buf_printf(&c, "columns missing in target: %s", cdc_buf_cstr(&missing));
        if (retyped.len)
            cdc_buf_printf(&c, "%scolumn types differ: %s", c.len ? "; " : "",
                           cdc_buf_cstr(&retyped));
        p->problem = (char *)c.data;
    }
    rc = 0;
done:
    PQclear(cols);
    PQclear(keys);
    PQclear(tcols);
    cdc_buf_free(&b);
    cdc_buf_free(&missing);
    cdc_buf_free(&retyped);
    return rc;
}

/* ---- summaries -------------------------------------------------------- */

/*
 * SELECT ... FROM (SELECT range, k, r FROM table) s: the inner select every
 * query of a table shares. 28 bits of md5 keep the range number positive.
 */
static void hashed_rows_sql(cdc_buf *b, const table_plan *p, const char *from)
{
    const char *keys = p->keys ? p->keys : p->cols;
    cdc_buf_printf(
        b,
        "(SELECT (('x' || substr(md5(convert_to(k, 'UTF8')), 1, 7))::bit(28)::int %% %d) "
        "AS b, k, r "
        "FROM (SELECT ROW(%s)::text AS k, ROW(%s)::text AS r FROM %s) s0) s1",
        p->ranges, keys, p->cols, from);
}

static void summary_free(summary *s, int ranges)
{
    if (s->hash)
        for (int i = 0; i < ranges; i++)
            free(s->hash[i]);
    free(s->hash);
    free(s->rows);
    memset(s, 0, sizeof *s);
}

static int summary_fill(summary *s, PGresult *r, int ranges)
{
    s->rows = cdc_xcalloc((size_t)ranges, sizeof *s->rows);
    s->hash = cdc_xcalloc((size_t)ranges, sizeof *s->hash);
    s->total = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        long b = strtol(PQgetvalue(r, i, 0), NULL, 10);
        if (b < 0 || b >= ranges)
            return -1;
        s->rows[b] = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        s->hash[b] = cdc_xstrdup(PQgetvalue(r, i, 2));
        s->total += s->rows[b];
    }
    return 0;
}

/* Both summaries, computed at the same time (target NULL when it has no table). */
static int summarize(side *src, side *tgt, const table_plan *p, summary *ss, summary *ts)
{
    side *sides[2] = {src, p->problem ? NULL : tgt};
    summary *out[2] = {ss, ts};
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (!sides[i])
            continue;
        cdc_buf b;
        cdc_buf_init(&b);
        cdc_buf_puts(&b, "SELECT b, count(*), "
                         "sum(('x' || substr(md5(convert_to(r, 'UTF8')), 1, 15))::bit(60)::bigint)"
                         "::text FROM ");
        hashed_rows_sql(&b, p, i == 0 ? p->from : p->from_tgt);
        cdc_buf_puts(&b, " GROUP BY b");
        if (!PQsendQuery(sides[i]->conn, cdc_buf_cstr(&b))) {
            cdc_error("%s: %s", sides[i]->name, PQerrorMessage(sides[i]->conn));
            rc = -1;
            sides[i] = NULL;
        }
        cdc_buf_free(&b);
    }
    for (int i = 0; i < 2; i++) {
        if (!sides[i])
            continue;
        PGresult *r = side_result(sides[i], "summarizing a table", PGRES_TUPLES_OK);
        if (!r || summary_fill(out[i], r, p->ranges) != 0)
            rc = -1;
        PQclear(r);
    }
    return rc;
}

/* ---- differing keys ----------------------------------------------------- */

typedef struct stream {
    side *s;
    PGresult *row; /* current row, NULL at the end */
    bool failed;
} stream;

static void stream_next(stream *st, const char *what)
{
    PQclear(st->row);
    st->row = NULL;
    if (st->failed)
        return;
    PGresult *r = side_next(st->s);
    if (!r)
        return;
    if (PQresultStatus(r) == PGRES_SINGLE_TUPLE) {
        st->row = r;
        return;
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cdc_error("%s: %s: %s", st->s->name, what, PQresultErrorMessage(r));
        st->failed = true;
    }
    PQclear(r);
    side_drain(st->s); /* the end */
}

static void print_value(FILE *out, const char *v)
{
    size_t n = strlen(v);
    if (n > SHOWN_VALUE_MAX)
        fprintf(out, "%.*s...", SHOWN_VALUE_MAX, v);
    else
        fputs(v, out);
}

static void report_key(FILE *out, const verify_config *cfg, const table_plan *p,
                       table_result *res, const char *value, const char *what, long copies)
{
    res->differing_keys++;
    if (res->differing_keys > cfg->max_keys)
        return;
    fprintf(out, "    %s.%s ", p->ref->nsp, p->ref->rel);
    if (p->keys) {
        fprintf(out, "(%s)=", p->key_names);
        print_value(out, value);
    } else {
        fputs("row ", out);
        print_value(out, value);
        if (copies > 1)
            fprintf(out, " x%ld", copies);
    }
    fprintf(out, ": %s\n", what);
}

/*
 * Merge the key-ordered streams of the differing ranges of both sides.
 * Keyed tables: (key, md5 of row). Keyless: (row, number of copies).
 */
static int diff_keys(const verify_config *cfg, side *src, side *tgt, const table_plan *p,
                     const int *ranges, int nranges, table_result *res, FILE *out)
{
    cdc_buf arr;
    cdc_buf_init(&arr);
    cdc_buf_putc(&arr, '{');
    for (int i = 0; i < nranges; i++)
        cdc_buf_printf(&arr, "%s%d", i ? "," : "", ranges[i]);
    cdc_buf_putc(&arr, '}');
    const char *params[] = {cdc_buf_cstr(&arr)};

    stream st[2] = {{.s = src}, {.s = tgt}};
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        cdc_buf b;
        cdc_buf_init(&b);
        cdc_buf_puts(&b, p->keys ? "SELECT k, md5(convert_to(r, 'UTF8')) FROM "
                                 : "SELECT r, count(*) FROM ");
        hashed_rows_sql(&b, p, i == 0 ? p->from : p->from_tgt);
        cdc_buf_puts(&b, p->keys ? " WHERE b = ANY($1::int[]) ORDER BY k COLLATE \"C\""
                                 : " WHERE b = ANY($1::int[]) GROUP BY r ORDER BY r COLLATE \"C\"");
        if (!PQsendQueryParams(st[i].s->conn, cdc_buf_cstr(&b), 1, NULL, params, NULL, NULL, 0) ||
            !PQsetSingleRowMode(st[i].s->conn)) {
            cdc_error("%s: %s", st[i].s->name, PQerrorMessage(st[i].s->conn));
            st[i].failed = true;
            rc = -1;
        }
        cdc_buf_free(&b);
    }
    const char *what = "reading differing rows";
    stream_next(&st[0], what);
    stream_next(&st[1], what);
    while (rc == 0 && (st[0].row || st[1].row)) {
        const char *a = st[0].row ? PQgetvalue(st[0].row, 0, 0) : NULL;
        const char *b = st[1].row ? PQgetvalue(st[1].row, 0, 0) : NULL;
        int cmp = !a ? 1 : !b ? -1 : strcmp(a, b);
        if (cmp < 0) {
            long n = p->keys ? 1 : strtol(PQgetvalue(st[0].row, 0, 1), NULL, 10);
            report_key(out, cfg, p, res, a, "missing in target", n);
            stream_next(&st[0], what);
        } else if (cmp > 0) {
            long n = p->keys ? 1 : strtol(PQgetvalue(st[1].row, 0, 1), NULL, 10);
            report_key(out, cfg, p, res, b, "extra in target", n);
            stream_next(&st[1], what);
        } else {
            const char *ha = PQgetvalue(st[0].row, 0, 1), *hb = PQgetvalue(st[1].row, 0, 1);
            if (strcmp(ha, hb) != 0) {
                if (p->keys) {
                    report_key(out, cfg, p, res, a, "different values", 1);
                } else {
                    long na = strtol(ha, NULL, 10), nb = strtol(hb, NULL, 10);
                    report_key(out, cfg, p, res, a,
                               na > nb ? "missing in target" : "extra in target",
                               na > nb ? na - nb : nb - na);
                }
            }
            stream_next(&st[0], what);
            stream_next(&st[1], what);
        }
        if (st[0].failed || st[1].failed)
            rc = -1;
    }
    /* On an error, read both connections to their end. */
    for (int i = 0; i < 2; i++) {
        while (st[i].row)
            stream_next(&st[i], what);
        if (st[i].failed)
            rc = -1;
    }
    cdc_buf_free(&arr);
    return rc;
}

/* ---- one table ---------------------------------------------------------- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_row(FILE *out, const table_plan *p, const table_result *res, const char *result)
{
    char name[256], src[32], tgt[32];
    snprintf(name, sizeof name, "%s.%s", p->ref->nsp, p->ref->rel);
    snprintf(src, sizeof src, "%lld", (long long)res->src_rows);
    if (res->tgt_rows < 0)
        snprintf(tgt, sizeof tgt, "-");
    else
        snprintf(tgt, sizeof tgt, "%lld", (long long)res->tgt_rows);
    fprintf(out, "%-40s %12s %12s %7d %9d  %s\n", name, src, tgt, res->ranges,
            res->differing_ranges, result);
}

/*
 * Compare one table; prints its row (and differing keys after it).
 * Returns VERIFY_EQUAL, VERIFY_DIFFERENT or VERIFY_ERROR.
 */
static int compare_table(const verify_config *cfg, side *src, side *tgt, const table_ref *t,
                         FILE *out, volatile sig_atomic_t *stop)
{
    table_plan p;
    if (plan_table(cfg, src, tgt, t, &p) != 0) {
        plan_free(&p);
        return VERIFY_ERROR;
    }
    int64_t deadline = now_ms() + cfg->wait_ms;
    int status = VERIFY_ERROR;
    int *differing = NULL;
    for (int attempt = 0;; attempt++) {
        summary ss = {0}, ts = {0};
        table_result res = {.src_rows = -1, .tgt_rows = -1, .ranges = p.ranges};
        if (summarize(src, tgt, &p, &ss, &ts) != 0) {
            summary_free(&ss, p.ranges);
            summary_free(&ts, p.ranges);
            break;
        }
        res.src_rows = ss.total;
        free(differing);
        differing = cdc_xcalloc((size_t)p.ranges, sizeof *differing);
        if (!p.problem) {
            res.tgt_rows = ts.total;
            for (int i = 0; i < p.ranges; i++) {
                bool same = ss.rows[i] == ts.rows[i] &&
                            ((!ss.hash[i] && !ts.hash[i]) ||
                             (ss.hash[i] && ts.hash[i] && strcmp(ss.hash[i], ts.hash[i]) == 0));
                if (!same)
                    differing[res.differing_ranges++] = i;
            }
        }
        summary_free(&ss, p.ranges);
        summary_free(&ts, p.ranges);

        bool equal = !p.problem && res.differing_ranges == 0;
        bool retry = !equal && now_ms() < deadline && !(stop && *stop);
        if (retry) {
            if (attempt == 0)
                cdc_info("%s.%s differs; comparing again for up to %d ms", t->nsp, t->rel,
                         cfg->wait_ms);
            sleep_ms(1000);
            /* Columns (and the target's table) may have come or changed meanwhile. */
            plan_free(&p);
            if (plan_table(cfg, src, tgt, t, &p) != 0)
                break;
            continue;
        }
        if (equal) {
            print_row(out, &p, &res, "equal");
            status = VERIFY_EQUAL;
            break;
        }
        if (p.problem) {
            print_row(out, &p, &res, "DIFFERENT");
            fprintf(out, "    %s.%s: %s\n", t->nsp, t->rel, p.problem);
            status = VERIFY_DIFFERENT;
            break;
        }
        /* The row goes first; the keys follow it. Buffer the keys to count them. */
        char *keys_text = NULL;
        size_t keys_len = 0;
        FILE *keys = open_memstream(&keys_text, &keys_len);
        if (!keys)
            abort();
        int rc = diff_keys(cfg, src, tgt, &p, differing, res.differing_ranges, &res, keys);
        fclose(keys);
        if (rc != 0) {
            free(keys_text);
            break;
        }
        print_row(out, &p, &res, "DIFFERENT");
        fputs(keys_text, out);
        free(keys_text);
        if (res.differing_keys > cfg->max_keys)
            fprintf(out, "    ... and %lld more differing keys (max.keys=%d)\n",
                    (long long)(res.differing_keys - cfg->max_keys), cfg->max_keys);
        if (res.differing_keys == 0)
            fprintf(out, "    %s.%s: the differing rows changed while they were read "
                         "(a live source? see wait.ms)\n",
                    t->nsp, t->rel);
        status = VERIFY_DIFFERENT;
        break;
    }
    fflush(out);
    free(differing);
    plan_free(&p);
    return status;
}

int verify_run(const verify_config *cfg, FILE *out, volatile sig_atomic_t *stop)
{
    side src = {0}, tgt = {0};
    table_list tables = {0};
    int status = VERIFY_ERROR;
    if (side_connect(&src, "source", cfg->source_conninfo, stop) != 0 ||
        side_connect(&tgt, "target", cfg->target_conninfo, stop) != 0)
        goto done;
    if (tables_find(cfg, &src, &tables) != 0)
        goto done;
    if (tables.n == 0) {
        cdc_error("source: no table to compare");
        goto done;
    }
    fprintf(out, "%-40s %12s %12s %7s %9s  %s\n", "table", "source rows", "target rows", "ranges",
            "differing", "result");
    /*
     * A table that cannot be compared (a policy, a permission, a lock wait
     * cut short) is reported and the others are still compared; the run
     * then exits 2. A lost connection or a stop request ends the run.
     */
    size_t compared = 0, different = 0, failed = 0;
    for (size_t i = 0; i < tables.n && !(stop && *stop); i++) {
        int s = compare_table(cfg, &src, &tgt, &tables.v[i], out, stop);
        if (s == VERIFY_DIFFERENT)
            different++;
        if (s != VERIFY_ERROR) {
            compared++;
            continue;
        }
        failed++;
        char name[256];
        snprintf(name, sizeof name, "%s.%s", tables.v[i].nsp, tables.v[i].rel);
        fprintf(out, "%-40s %12s %12s %7s %9s  %s\n", name, "-", "-", "-", "-",
                "ERROR (see the log)");
        if (PQstatus(src.conn) != CONNECTION_OK || PQstatus(tgt.conn) != CONNECTION_OK) {
            cdc_error("%s: the connection is lost; the remaining tables are not compared",
                      PQstatus(src.conn) != CONNECTION_OK ? src.name : tgt.name);
            failed += tables.n - i - 1;
            break;
        }
    }
    if (stop && *stop) {
        cdc_error("interrupted");
        fprintf(out, "cdc-verify: interrupted; %zu of %zu tables compared\n", compared, tables.n);
        failed++;
    } else if (failed)
        fprintf(out, "cdc-verify: %zu of %zu tables could not be compared, %zu DIFFER\n", failed,
                tables.n, different);
    else if (different)
        fprintf(out, "cdc-verify: %zu of %zu tables DIFFER\n", different, tables.n);
    else
        fprintf(out, "cdc-verify: %zu tables compared, all equal\n", tables.n);
    status = failed ? VERIFY_ERROR : different ? VERIFY_DIFFERENT : VERIFY_EQUAL;
done:
    fflush(out);
    tables_free(&tables);
    PQfinish(src.conn);
    PQfinish(tgt.conn);
    return status;
}
