/*
 * Target database operations of cdc-apply (see target.h). Every statement
 * goes through run()/run_params(), which classify a failure as retriable
 * (connection, serialization, deadlock) or as a rejection of the data.
 */
#include "target.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cdc/buf.h"
#include "cdc/config.h"
#include "cdc/fingerprint.h"
#include "cdc/log.h"
#include "sqlgen.h"

/*
 * No timeouts: a catch-up merge or a truncate may take long, and a statement
 * cancelled by a timeout would be retried as the same batch for ever.
 */
#define SESSION_OPTIONS                                                                            \
    "-c datestyle=ISO -c intervalstyle=postgres -c timezone=UTC -c lc_monetary=C "                 \
    "-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0"
#define COPY_CHUNK (256 * 1024)

typedef struct known_schema {
    const cdc_table_schema *s;
    bool committed;
    bool exact; /* every column of s has exactly its type in the table (binary COPY may go in) */
} known_schema;

struct target {
    char *conninfo;
    char *state_schema; /* quoted */
    char *group_id;
    bool auto_create;
    bool auto_evolve;
    PGconn *conn;
    known_schema *ready; /* tables known to match their schema */
    size_t nready, capready;
    cdc_buf sql;
    cdc_buf copy;
    char **merge_only; /* tables where a direct COPY met an existing key */
    bool stage_dirty;  /* the last target_apply_batch call filled its table's stage */
    size_t nmerge_only;
    char **direct_ok; /* tables with a unique index on the key: COPY may be tried */
    size_t ndirect_ok;
    /* Tables known to have their key (not waiting for it after a load); the
     * first nkeyed_committed were seen in committed transactions. */
    char **keyed;
    size_t nkeyed, nkeyed_committed;
};

target *target_new(const char *conninfo, const char *state_schema, const char *group_id,
                   bool auto_create, bool auto_evolve)
{
    target *t = cdc_xcalloc(1, sizeof *t);
    t->conninfo = cdc_xstrdup(conninfo);
    cdc_buf b;
    cdc_buf_init(&b);
    sql_ident(&b, state_schema);
    t->state_schema = cdc_xstrdup(cdc_buf_cstr(&b));
    cdc_buf_free(&b);
    t->group_id = cdc_xstrdup(group_id);
    t->auto_create = auto_create;
    t->auto_evolve = auto_evolve;
    return t;
}

static void forget_keyed(target *t, size_t keep)
{
    while (t->nkeyed > keep)
        free(t->keyed[--t->nkeyed]);
    t->nkeyed_committed = t->nkeyed_committed < keep ? t->nkeyed_committed : keep;
}

void target_disconnect(target *t)
{
    if (t->conn)
        PQfinish(t->conn);
    t->conn = NULL;
    t->nready = 0; /* re-check tables after a reconnect */
    forget_keyed(t, 0);
}

void target_destroy(target *t)
{
    if (!t)
        return;
    target_disconnect(t);
    free(t->conninfo);
    free(t->state_schema);
    free(t->group_id);
    free(t->ready);
    for (size_t i = 0; i < t->nmerge_only; i++)
        free(t->merge_only[i]);
    free(t->merge_only);
    for (size_t i = 0; i < t->ndirect_ok; i++)
        free(t->direct_ok[i]);
    free(t->direct_ok);
    free(t->keyed);
    cdc_buf_free(&t->sql);
    cdc_buf_free(&t->copy);
    free(t);
}

bool target_connected(const target *t)
{
    return t->conn && PQstatus(t->conn) == CONNECTION_OK;
}

static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    for (size_t n = strlen(s); n > 0 && s[n - 1] == ' '; n--)
        s[n - 1] = '\0';
}

/*
 * Classify a failed result; fills errstr with Postgres' message. An error
 * about the target that the same batch would not meet again once the
 * target is well (connection, shutdown or cancel (57), I/O (58), disk full
 * (53100), too many connections (53300), serialization, deadlock, lock
 * timeout, read-only (25006, a standby after a failover)) is retried:
 * treated as a rejected row, a full disk dead-lettered every event with
 * errors.tolerance=all. Anything else rejects the batch, which is then
 * tried event by event: also out of memory or temp_file_limit (53200,
 * 53400: a smaller write may pass), internal errors and privileges (42501
 * is also a row-level security WITH CHECK failure, about one row).
 */
static target_status failed(target *t, PGresult *res, char *errstr, size_t errstr_size)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(errstr, errstr_size, "%s%s%s", state ? state : "", state ? " " : "",
             res ? PQresultErrorMessage(res) : PQerrorMessage(t->conn));
    one_line(errstr);
    if (PQstatus(t->conn) != CONNECTION_OK || !state)
        return TARGET_RETRY;
    static const char *const classes[] = {"08", "57", "58"};
    for (size_t i = 0; i < sizeof classes / sizeof *classes; i++)
        if (strncmp(state, classes[i], 2) == 0)
            return TARGET_RETRY;
    static const char *const states[] = {"53100", "53300", "40001", "40P01", "55P03", "25006"};
    for (size_t i = 0; i < sizeof states / sizeof *states; i++)
        if (strcmp(state, states[i]) == 0)
            return TARGET_RETRY;
    return TARGET_REJECT;
}

static target_status run(target *t, const char *sql, char *errstr, size_t errstr_size)
{
    PGresult *res = PQexec(t->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    target_status r = TARGET_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        r = failed(t, res, errstr, errstr_size);
    PQclear(res);
    return r;
}

static target_status run_params(target *t, const char *sql, int n, const char *const *vals,
                                PGresult **out, char *errstr, size_t errstr_size)
{
    PGresult *res = PQexecParams(t->conn, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        target_status r = failed(t, res, errstr, errstr_size);
        PQclear(res);
        return r;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return TARGET_OK;
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    cdc_debug("target: %s", msg);
}

/* A new connection to the target with these server options (check its status). */
static PGconn *open_conn(const target *t, const char *ours)
{
    char *options = cdc_pg_options(t->conninfo, ours);
    /* After dbname, so it wins over the conninfo's: event text is UTF-8, and
     * the server converts it to the target database's encoding. */
    const char *keys[] = {"connect_timeout",           "dbname", "client_encoding", "options",
                          "fallback_application_name", NULL};
    const char *vals[] = {
        cdc_pg_connect_timeout(t->conninfo), t->conninfo, "UTF8", options, "cdc-apply", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    free(options);
    return c;
}

target_status target_connect(target *t, char *errstr, size_t errstr_size)
{
    target_disconnect(t);
    t->conn = open_conn(t, SESSION_OPTIONS);
    if (PQstatus(t->conn) != CONNECTION_OK) {
        snprintf(errstr, errstr_size, "%s", PQerrorMessage(t->conn));
        one_line(errstr);
        target_disconnect(t);
        return TARGET_RETRY;
    }
    PQsetNoticeProcessor(t->conn, quiet, NULL);
    /* PostgreSQL 17's transaction_timeout, unknown before 17 (see SESSION_OPTIONS). */
    if (PQserverVersion(t->conn) >= 170000 &&
        run(t, "SET transaction_timeout = 0", errstr, errstr_size) != TARGET_OK) {
        target_disconnect(t);
        return TARGET_RETRY;
    }
    cdc_buf *b = &t->sql;
    cdc_buf_reset(b);
    cdc_buf_printf(b,
                   "BEGIN; SELECT pg_catalog.pg_advisory_xact_lock(7461, 1);"
                   "CREATE SCHEMA IF NOT EXISTS %s;"
                   "CREATE TABLE IF NOT EXISTS %s.apply_positions ("
                   " group_id text NOT NULL, topic text NOT NULL, partition int NOT NULL,"
                   " next_offset bigint NOT NULL, commit_lsn bigint NOT NULL,"
                   " ordinal bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),"
                   " PRIMARY KEY (group_id, topic, partition));"
                   "CREATE TABLE IF NOT EXISTS %s.apply_truncates ("
                   " group_id text NOT NULL, topic text NOT NULL, partition int NOT NULL,"
                   " commit_lsn bigint NOT NULL, ordinal bigint NOT NULL,"
                   " event_offset bigint NOT NULL,"
                   " PRIMARY KEY (group_id, topic, commit_lsn, ordinal, partition));"
                   "CREATE TABLE IF NOT EXISTS %s.apply_deferred_keys ("
                   " schema_name text NOT NULL, table_name text NOT NULL,"
                   " key_columns text[] NOT NULL,"
                   " created_at timestamptz NOT NULL DEFAULT now(),"
                   " PRIMARY KEY (schema_name, table_name));"
                   "COMMIT",
                   t->state_schema, t->state_schema, t->state_schema, t->state_schema);
    target_status r = run(t, cdc_buf_cstr(b), errstr, errstr_size);
    if (r != TARGET_OK) {
        target_disconnect(t);
        return r == TARGET_REJECT ? TARGET_REJECT : TARGET_RETRY;
    }
    return TARGET_OK;
}

target_status target_position(target *t, const char *topic, int32_t partition, target_pos *out,
                              char *errstr, size_t errstr_size)
{
    char part[16];
    snprintf(part, sizeof part, "%d", partition);
    const char *vals[] = {t->group_id, topic, part};
    cdc_buf_reset(&t->sql);
    cdc_buf_printf(&t->sql,
                   "SELECT next_offset, commit_lsn, ordinal FROM %s.apply_positions "
                   "WHERE group_id = $1 AND topic = $2 AND partition = $3",
                   t->state_schema);
    PGresult *res = NULL;
    target_status r = run_params(t, cdc_buf_cstr(&t->sql), 3, vals, &res, errstr, errstr_size);
    if (r != TARGET_OK)
        return r;
    out->next_offset = -1;
    out->commit_lsn = 0;
    out->ordinal = -1;
    if (PQntuples(res) == 1) {
        out->next_offset = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        out->commit_lsn = (uint64_t)strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        out->ordinal = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    }
    PQclear(res);
    return TARGET_OK;
}

target_status target_begin(target *t, char *errstr, size_t errstr_size)
{
    return run(t, "BEGIN", errstr, errstr_size);
}

target_status target_commit(target *t, char *errstr, size_t errstr_size)
{
    target_status r = run(t, "COMMIT", errstr, errstr_size);
    if (r == TARGET_OK) {
        for (size_t i = 0; i < t->nready; i++)
            t->ready[i].committed = true;
        t->nkeyed_committed = t->nkeyed;
    } else {
        /* A failed COMMIT leaves nothing: the transaction is gone either way. */
        r = TARGET_RETRY;
    }
    return r;
}

void target_rollback(target *t)
{
    if (t->conn && PQstatus(t->conn) == CONNECTION_OK) {
        PGresult *res = PQexec(t->conn, "ROLLBACK");
        PQclear(res);
    }
    /* Tables prepared inside the transaction may be gone again, and keys
     * added in it are not there. */
    forget_keyed(t, t->nkeyed_committed);
    size_t k = 0;
    for (size_t i = 0; i < t->nready; i++)
        if (t->ready[i].committed)
            t->ready[k++] = t->ready[i];
    t->nready = k;
}

target_status target_savepoint(target *t, const char *cmd, char *errstr, size_t errstr_size)
{
    return run(t, cmd, errstr, errstr_size);
}

static void part_arrays(cdc_buf *topics, cdc_buf *nums, const target_part *parts, size_t n);

/* Run `sql` with $1 = the group, $2/$3 = the parts' topics and partitions as arrays. */
static target_status run_on_parts(target *t, const char *sql, const target_part *parts, size_t n,
                                  PGresult **res, char *errstr, size_t errstr_size)
{
    cdc_buf topics, nums;
    cdc_buf_init(&topics);
    cdc_buf_init(&nums);
    part_arrays(&topics, &nums, parts, n);
    const char *vals[] = {t->group_id, cdc_buf_cstr(&topics), cdc_buf_cstr(&nums)};
    target_status r = run_params(t, sql, 3, vals, res, errstr, errstr_size);
    cdc_buf_free(&topics);
    cdc_buf_free(&nums);
    return r;
}

/*
 * A partition with no row yet has nothing to lock: two processes that both
 * believe they own it (one lost it in a rebalance it has not noticed) would
 * both pass the check, and the later save would overwrite the earlier one
 * instead of failing. So the batch first inserts the row it will save
 * (uncommitted, holding -1); a rival's insert waits for this transaction,
 * then finds the row and fails its check.
 */
static target_status claim_new_positions(target *t, const target_part *parts, size_t n,
                                         char *errstr, size_t errstr_size)
{
    target_part *fresh = cdc_xmalloc(n * sizeof *fresh);
    size_t nf = 0;
    for (size_t i = 0; i < n; i++)
        if (parts[i].expected_next < 0 && parts[i].pos.next_offset >= 0)
            fresh[nf++] = parts[i];
    target_status r = TARGET_OK;
    if (nf > 0) {
        cdc_buf_reset(&t->sql);
        cdc_buf_printf(&t->sql,
                       "INSERT INTO %s.apply_positions "
                       "(group_id, topic, partition, next_offset, commit_lsn, ordinal) "
                       "SELECT $1, u.topic, u.partition, -1, 0, -1 "
                       "FROM unnest($2::text[], $3::int[]) AS u(topic, partition) "
                       "ORDER BY 2, 3 ON CONFLICT DO NOTHING",
                       t->state_schema);
        r = run_on_parts(t, cdc_buf_cstr(&t->sql), fresh, nf, NULL, errstr, errstr_size);
    }
    free(fresh);
    return r;
}

/* The one-partition form of target_check_positions (same claim, same lock). */
target_status target_check_position(target *t, const char *topic, int32_t partition,
                                    int64_t expected_next, bool *matches, char *errstr,
                                    size_t errstr_size)
{
    target_part part = {.topic = topic,
                        .partition = partition,
                        .expected_next = expected_next,
                        .pos = {.next_offset = 0}}; /* a position will be saved: claim it */
    target_status r = target_check_positions(t, &part, 1, errstr, errstr_size);
    *matches = part.matches;
    return r;
}

target_status target_save_position(target *t, const char *topic, int32_t partition,
                                   const target_pos *pos, char *errstr, size_t errstr_size)
{
    char part[16], off[24], lsn[24], ord[24];
    snprintf(part, sizeof part, "%d", partition);
    snprintf(off, sizeof off, "%lld", (long long)pos->next_offset);
    snprintf(lsn, sizeof lsn, "%lld", (long long)pos->commit_lsn);
    snprintf(ord, sizeof ord, "%lld", (long long)pos->ordinal);
    const char *vals[] = {t->group_id, topic, part, off, lsn, ord};
    cdc_buf_reset(&t->sql);
    cdc_buf_printf(&t->sql,
                   "INSERT INTO %s.apply_positions AS p "
                   "(group_id, topic, partition, next_offset, commit_lsn, ordinal) "
                   "VALUES ($1, $2, $3, $4, $5, $6) "
                   "ON CONFLICT (group_id, topic, partition) DO UPDATE SET "
                   "next_offset = EXCLUDED.next_offset, commit_lsn = EXCLUDED.commit_lsn, "
                   "ordinal = EXCLUDED.ordinal, updated_at = now()",
                   t->state_schema);
    target_status r = run_params(t, cdc_buf_cstr(&t->sql), 6, vals, NULL, errstr, errstr_size);
    return r;
}

/*
 * Append `v`, always quoted, to a PostgreSQL array literal being built in `b`
 * (which holds "{" and the elements so far).
 */
static void array_elem(cdc_buf *b, const char *v)
{
    if (b->len > 1)
        cdc_buf_putc(b, ',');
    cdc_buf_putc(b, '"');
    for (const char *c = v; *c; c++) {
        if (*c == '"' || *c == '\\')
            cdc_buf_putc(b, '\\');
        cdc_buf_putc(b, (uint8_t)*c);
    }
    cdc_buf_putc(b, '"');
}

static void array_int(cdc_buf *b, long long v)
{
    char num[24];
    snprintf(num, sizeof num, "%lld", v);
    array_elem(b, num);
}

/* {"a","b"}: the key columns' true names as a text[] literal. */
static void key_array(cdc_buf *out, const cdc_table_schema *s)
{
    cdc_buf_puts(out, "{");
    for (int k = 0; k < s->nkey; k++)
        array_elem(out, s->fields[s->key_idx[k]].pg_name);
    cdc_buf_putc(out, '}');
}

/* "{...}" array literals of the partitions' topics and numbers. */
static void part_arrays(cdc_buf *topics, cdc_buf *nums, const target_part *parts, size_t n)
{
    cdc_buf_puts(topics, "{");
    cdc_buf_puts(nums, "{");
    for (size_t i = 0; i < n; i++) {
        array_elem(topics, parts[i].topic);
        array_int(nums, parts[i].partition);
    }
    cdc_buf_putc(topics, '}');
    cdc_buf_putc(nums, '}');
}

target_status target_check_positions(target *t, target_part *parts, size_t n, char *errstr,
                                     size_t errstr_size)
{
    if (n == 0)
        return TARGET_OK;
    target_status r = claim_new_positions(t, parts, n, errstr, errstr_size);
    if (r != TARGET_OK)
        return r;
    cdc_buf_reset(&t->sql);
    cdc_buf_printf(&t->sql,
                   "SELECT p.topic, p.partition, p.next_offset FROM %s.apply_positions p "
                   "JOIN unnest($2::text[], $3::int[]) AS u(topic, partition) "
                   "ON p.topic = u.topic AND p.partition = u.partition "
                   "WHERE p.group_id = $1 ORDER BY p.topic, p.partition FOR UPDATE OF p",
                   t->state_schema);
    PGresult *res = NULL;
    r = run_on_parts(t, cdc_buf_cstr(&t->sql), parts, n, &res, errstr, errstr_size);
    if (r != TARGET_OK)
        return r;
    for (size_t i = 0; i < n; i++) {
        int64_t stored = -1;
        for (int row = 0; row < PQntuples(res); row++)
            if (strtol(PQgetvalue(res, row, 1), NULL, 10) == parts[i].partition &&
                strcmp(PQgetvalue(res, row, 0), parts[i].topic) == 0)
                stored = strtoll(PQgetvalue(res, row, 2), NULL, 10);
        /* Our own claim reads -1: as expected. A rival's reads its offset. */
        parts[i].matches = stored == parts[i].expected_next;
    }
    PQclear(res);
    return TARGET_OK;
}

target_status target_save_positions(target *t, const target_part *parts, size_t n, char *errstr,
                                    size_t errstr_size)
{
    if (n == 0)
        return TARGET_OK;
    cdc_buf topics, nums, offs, lsns, ords;
    cdc_buf_init(&topics);
    cdc_buf_init(&nums);
    cdc_buf_init(&offs);
    cdc_buf_init(&lsns);
    cdc_buf_init(&ords);
    part_arrays(&topics, &nums, parts, n);
    cdc_buf_puts(&offs, "{");
    cdc_buf_puts(&lsns, "{");
    cdc_buf_puts(&ords, "{");
    for (size_t i = 0; i < n; i++) {
        array_int(&offs, (long long)parts[i].pos.next_offset);
        array_int(&lsns, (long long)parts[i].pos.commit_lsn);
        array_int(&ords, (long long)parts[i].pos.ordinal);
    }
    cdc_buf_putc(&offs, '}');
    cdc_buf_putc(&lsns, '}');
    cdc_buf_putc(&ords, '}');
    const char *vals[] = {t->group_id,         cdc_buf_cstr(&topics), cdc_buf_cstr(&nums),
                          cdc_buf_cstr(&offs), cdc_buf_cstr(&lsns),   cdc_buf_cstr(&ords)};
    cdc_buf_reset(&t->sql);
    cdc_buf_printf(&t->sql,
                   "INSERT INTO %s.apply_positions AS p "
                   "(group_id, topic, partition, next_offset, commit_lsn, ordinal) "
                   "SELECT $1, u.* FROM unnest($2::text[], $3::int[], $4::bigint[], "
                   "$5::bigint[], $6::bigint[]) AS u "
                   "ON CONFLICT (group_id, topic, partition) DO UPDATE SET "
                   "next_offset = EXCLUDED.next_offset, commit_lsn = EXCLUDED.commit_lsn, "
                   "ordinal = EXCLUDED.ordinal, updated_at = now()",
                   t->state_schema);
    target_status r = run_params(t, cdc_buf_cstr(&t->sql), 6, vals, NULL, errstr, errstr_size);
    cdc_buf_free(&topics);
    cdc_buf_free(&nums);
    cdc_buf_free(&offs);
    cdc_buf_free(&lsns);
    cdc_buf_free(&ords);
    /* Two processes inserting the first row: the loser re-reads. */
    if (r == TARGET_REJECT && strncmp(errstr, "23505", 5) == 0)
        r = TARGET_RETRY;
    return r;
}

/* ---- tables ---- */

/*
 * The columns of table $1: name, and the built-in type (a domain's base
 * type) as format_type prints it (NULL for other types), and whether a
 * NOT NULL would break a row without the column (relax_not_null).
 */
#define COLUMNS_SQL                                                                                \
    "SELECT a.attname, CASE WHEN bt.typnamespace = 'pg_catalog'::regnamespace "                    \
    "THEN pg_catalog.format_type(bt.oid, CASE WHEN t.typtype = 'd' "                               \
    "THEN t.typtypmod ELSE a.atttypmod END) END, "                                                 \
    "a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' "                                     \
    "AND a.attgenerated = '' AND NOT EXISTS (SELECT 1 FROM "                                       \
    "pg_catalog.pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary "                      \
    "AND a.attnum = ANY (i.indkey)) "                                                              \
    "FROM pg_catalog.pg_attribute a "                                                              \
    "JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "                                             \
    "JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' "                            \
    "THEN t.typbasetype ELSE t.oid END "                                                           \
    "WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 "                              \
    "AND NOT a.attisdropped"

/* The column of `res` (a COLUMNS_SQL result) named `name`, or -1. */
static int column_row(const PGresult *res, const char *name)
{
    for (int row = 0; row < PQntuples(res); row++)
        if (strcmp(PQgetvalue(res, row, 0), name) == 0)
            return row;
    return -1;
}

static known_schema *find_ready(const target *t, const cdc_table_schema *s)
{
    for (size_t i = 0; i < t->nready; i++)
        if (t->ready[i].s == s)
            return &t->ready[i];
    return NULL;
}

static bool is_ready(const target *t, const cdc_table_schema *s)
{
    return find_ready(t, s) != NULL;
}

bool target_table_ready(const target *t, const cdc_table_schema *s)
{
    return is_ready(t, s);
}

static void mark_ready(target *t, const cdc_table_schema *s, bool exact)
{
    if (t->nready == t->capready) {
        t->capready = t->capready ? t->capready * 2 : 16;
        t->ready = cdc_xrealloc(t->ready, t->capready * sizeof *t->ready);
    }
    t->ready[t->nready].s = s;
    t->ready[t->nready].committed = false;
    t->ready[t->nready].exact = exact;
    t->nready++;
}

/*
 * Labels the source added to an enum after the target's type was created
 * (the pg.enum list of a newer schema) are added, at the source's position.
 * ALTER TYPE ... ADD VALUE runs on a connection of its own and commits at
 * once: a label added in the batch's transaction could not be used before
 * that transaction commits.
 */
static target_status sync_enum_labels(target *t, const cdc_table_schema *s, char *errstr,
                                      size_t errstr_size)
{
    target_status r = TARGET_OK;
    PGconn *side = NULL;
    for (int i = 0; i < s->nfields && r == TARGET_OK; i++) {
        const cdc_field *f = &s->fields[i];
        char lerr[256];
        char **want = f->enum_json ? sql_enum_labels(f, lerr, sizeof lerr) : NULL;
        if (!want)
            continue; /* not a plain enum: nothing to compare */
        const char *tv[] = {f->pg_type};
        PGresult *have = NULL;
        r = run_params(t,
                       "SELECT e.enumlabel FROM pg_catalog.pg_enum e "
                       "WHERE e.enumtypid = pg_catalog.to_regtype($1) ORDER BY e.enumsortorder",
                       1, tv, &have, errstr, errstr_size);
        size_t nwant = 0;
        while (want[nwant])
            nwant++;
        bool *present = cdc_xcalloc(nwant + 1, sizeof *present);
        bool missing = false;
        for (size_t l = 0; r == TARGET_OK && l < nwant; l++) {
            for (int row = 0; row < PQntuples(have) && !present[l]; row++)
                present[l] = strcmp(PQgetvalue(have, row, 0), want[l]) == 0;
            missing |= !present[l];
        }
        /* No row at all: the type does not exist yet (it is created whole). */
        if (r == TARGET_OK && missing && PQntuples(have) > 0) {
            if (!t->auto_evolve) {
                snprintf(errstr, errstr_size, "enum type %s lacks labels of the source's "
                         "(auto.evolve is false)", f->pg_type);
                r = TARGET_REJECT;
            }
            if (r == TARGET_OK && !side) {
                side = open_conn(t, "-c lock_timeout=10000");
                if (PQstatus(side) != CONNECTION_OK) {
                    snprintf(errstr, errstr_size, "%s", PQerrorMessage(side));
                    r = TARGET_RETRY;
                }
            }
            for (size_t l = 0; r == TARGET_OK && l < nwant; l++) {
                if (present[l])
                    continue;
                /* After the nearest earlier label the target has, else before
                 * the nearest later one. */
                const char *other = NULL;
                bool after = true;
                for (size_t k = l; k-- > 0 && !other;)
                    if (present[k])
                        other = want[k];
                for (size_t k = l + 1; k < nwant && !other; k++)
                    if (present[k]) {
                        other = want[k];
                        after = false;
                    }
                cdc_buf_reset(&t->sql);
                sql_add_enum_label(&t->sql, f, want[l], other, after);
                PGresult *res = PQexec(side, cdc_buf_cstr(&t->sql));
                if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                    snprintf(errstr, errstr_size, "adding label '%s' to enum %s: %s", want[l],
                             f->pg_type, PQerrorMessage(side));
                    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                    bool lock_timeout = state && strcmp(state, "55P03") == 0;
                    r = PQstatus(side) == CONNECTION_OK && !lock_timeout ? TARGET_REJECT
                                                                         : TARGET_RETRY;
                } else {
                    present[l] = true;
                    cdc_info("added label '%s' to enum %s", want[l], f->pg_type);
                }
                PQclear(res);
            }
        }
        free(present);
        PQclear(have);
        sql_free_labels(want);
    }
    if (side)
        PQfinish(side);
    return r;
}

/*
 * A column dropped or renamed at the source is absent from its newer
 * events: a NOT NULL the target took from an older version (no default, not
 * the primary key's, not an identity or generated column: those never lack
 * a value) would reject every later insert and full-row update of the
 * table. With auto.evolve it is dropped, under a savepoint: where the
 * target refuses (another owner, a partition, a replica identity index) a
 * warning says so and the rows meet the NOT NULL as before. A column the
 * source made nullable is left alone: the target's NOT NULL may be
 * deliberate, and a NULL then stops cdc-apply naming it. `cols` is
 * target_prepare_table's column query.
 */
static target_status relax_not_null(target *t, const cdc_table_schema *s, PGresult *cols,
                                    const char *qname, char *errstr, size_t errstr_size)
{
    if (!t->auto_evolve)
        return TARGET_OK;
    for (int row = 0; row < PQntuples(cols); row++) {
        const char *col = PQgetvalue(cols, row, 0);
        bool present = false;
        for (int i = 0; i < s->nfields && !present; i++)
            present = strcmp(s->fields[i].pg_name, col) == 0;
        if (present || PQgetvalue(cols, row, 2)[0] != 't')
            continue;
        cdc_buf *sql = &t->sql;
        cdc_buf_reset(sql);
        cdc_buf_printf(sql, "SAVEPOINT cdc_relax; ALTER TABLE %s ALTER COLUMN ", qname);
        sql_ident(sql, col);
        cdc_buf_puts(sql, " DROP NOT NULL");
        target_status r = run(t, cdc_buf_cstr(sql), errstr, errstr_size);
        if (r == TARGET_RETRY)
            return r;
        if (r == TARGET_REJECT) {
            cdc_warn("%s.%s is NOT NULL in the target but no longer at the source, and the "
                     "target refuses to drop the NOT NULL (%s): rows without it will be rejected",
                     qname, col, errstr);
            if ((r = run(t, "ROLLBACK TO SAVEPOINT cdc_relax", errstr, errstr_size)) != TARGET_OK)
                return r;
            continue;
        }
        if ((r = run(t, "RELEASE SAVEPOINT cdc_relax", errstr, errstr_size)) != TARGET_OK)
            return r;
        cdc_info("%s.%s: dropped NOT NULL (the column is no longer at the source)", qname, col);
    }
    return TARGET_OK;
}

static void name_add(char ***names, size_t *n, const char *name);
static bool name_in(char *const *names, size_t n, const char *name);

target_status target_prepare_table(target *t, const cdc_table_schema *s, bool load, char *errstr,
                                   size_t errstr_size)
{
    if (is_ready(t, s))
        return TARGET_OK;
    cdc_buf qname;
    cdc_buf_init(&qname);
    sql_qualified(&qname, s->schema_name, s->table_name);
    const char *vals[] = {cdc_buf_cstr(&qname)};
    target_status r;
    PGresult *res = NULL;
    /* Serialise DDL on this table across cdc-apply processes. */
    r = run_params(t, "SELECT pg_catalog.pg_advisory_xact_lock(7461, pg_catalog.hashtext($1))", 1,
                   vals, NULL, errstr, errstr_size);
    if (r != TARGET_OK)
        goto done;
    r = run_params(t, COLUMNS_SQL, 1, vals, &res, errstr, errstr_size);
    if (r != TARGET_OK)
        goto done;
    char *exists = NULL;
    {
        PGresult *e = NULL;
        r = run_params(t, "SELECT pg_catalog.to_regclass($1) IS NOT NULL", 1, vals, &e, errstr,
                       errstr_size);
        if (r != TARGET_OK)
            goto done;
        exists = cdc_xstrdup(PQgetvalue(e, 0, 0));
        PQclear(e);
    }
    bool table_exists = exists[0] == 't';
    free(exists);
    /* Created here, or every column found (or added) with its type. */
    bool exact = true;
    if ((r = sync_enum_labels(t, s, errstr, errstr_size)) != TARGET_OK)
        goto done;
    cdc_buf *sql = &t->sql;
    if (!table_exists) {
        if (!t->auto_create) {
            snprintf(errstr, errstr_size, "table %s does not exist (auto.create is false)",
                     cdc_buf_cstr(&qname));
            r = TARGET_REJECT;
            goto done;
        }
        /* Enum types first: CREATE TYPE only where the type is missing. */
        for (int i = 0; i < s->nfields; i++) {
            const cdc_field *f = &s->fields[i];
            if (!f->enum_json)
                continue;
            const char *tv[] = {f->pg_type};
            PGresult *e = NULL;
            r = run_params(t, "SELECT pg_catalog.to_regtype($1) IS NULL", 1, tv, &e, errstr,
                           errstr_size);
            if (r != TARGET_OK)
                goto done;
            bool missing = PQgetvalue(e, 0, 0)[0] == 't';
            PQclear(e);
            if (!missing)
                continue;
            cdc_buf_reset(sql);
            if (sql_create_enum(sql, f, errstr, errstr_size) != 0) {
                r = TARGET_REJECT;
                goto done;
            }
            if ((r = run(t, cdc_buf_cstr(sql), errstr, errstr_size)) != TARGET_OK)
                goto done;
        }
        bool defer = load && s->nkey > 0;
        cdc_buf_reset(sql);
        if (sql_create_table(sql, s, !defer, errstr, errstr_size) != 0) {
            r = TARGET_REJECT;
            goto done;
        }
        if ((r = run(t, cdc_buf_cstr(sql), errstr, errstr_size)) != TARGET_OK)
            goto done;
        if (defer) {
            cdc_buf keys;
            cdc_buf_init(&keys);
            key_array(&keys, s);
            const char *dv[] = {s->schema_name, s->table_name, cdc_buf_cstr(&keys)};
            cdc_buf_reset(sql);
            cdc_buf_printf(sql,
                           "INSERT INTO %s.apply_deferred_keys (schema_name, table_name, "
                           "key_columns) VALUES ($1, $2, $3::text[]) ON CONFLICT DO NOTHING",
                           t->state_schema);
            r = run_params(t, cdc_buf_cstr(sql), 3, dv, NULL, errstr, errstr_size);
            cdc_buf_free(&keys);
            if (r != TARGET_OK)
                goto done;
            /* A table of that name seen keyed earlier was dropped meanwhile. */
            for (size_t i = 0; i < t->nkeyed; i++)
                if (strcmp(t->keyed[i], cdc_buf_cstr(&qname)) == 0)
                    t->keyed[i][0] = '\0';
            cdc_info("created table %s for a load: its primary key is added once the load is "
                     "applied",
                     cdc_buf_cstr(&qname));
        } else {
            cdc_info("created table %s", cdc_buf_cstr(&qname));
        }
    } else {
        for (int i = 0; i < s->nfields; i++) {
            int have = column_row(res, s->fields[i].pg_name);
            /*
             * A type changed at the source is not applied to the target:
             * say so, since the target converts (a narrower numeric
             * rounds) or rejects the values.
             */
            if (have >= 0 && !PQgetisnull(res, have, 1) &&
                strcmp(PQgetvalue(res, have, 1), s->fields[i].pg_type) != 0)
                cdc_warn("%s.%s is %s in the source but %s in the target: values are converted "
                         "to the target's type (a narrower numeric or timestamp rounds them); "
                         "ALTER the target column to match",
                         cdc_buf_cstr(&qname), s->fields[i].pg_name, s->fields[i].pg_type,
                         PQgetvalue(res, have, 1));
            if (have >= 0) {
                exact &= !PQgetisnull(res, have, 1) &&
                         strcmp(PQgetvalue(res, have, 1), s->fields[i].pg_type) == 0;
                continue;
            }
            if (!t->auto_evolve) {
                snprintf(errstr, errstr_size, "table %s has no column %s (auto.evolve is false)",
                         cdc_buf_cstr(&qname), s->fields[i].pg_name);
                r = TARGET_REJECT;
                goto done;
            }
            cdc_buf_reset(sql);
            if (sql_add_column(sql, s, i, errstr, errstr_size) != 0) {
                r = TARGET_REJECT;
                goto done;
            }
            if ((r = run(t, cdc_buf_cstr(sql), errstr, errstr_size)) != TARGET_OK)
                goto done;
            cdc_info("added column %s to %s", s->fields[i].pg_name, cdc_buf_cstr(&qname));
        }
        if ((r = relax_not_null(t, s, res, cdc_buf_cstr(&qname), errstr, errstr_size)) != TARGET_OK)
            goto done;
    }
    mark_ready(t, s, exact);
    r = TARGET_OK;
done:
    PQclear(res);
    cdc_buf_free(&qname);
    return r;
}

target_status target_truncate(target *t, const cdc_table_schema *s, char *errstr,
                              size_t errstr_size)
{
    cdc_buf_reset(&t->sql);
    sql_truncate(&t->sql, s);
    return run(t, cdc_buf_cstr(&t->sql), errstr, errstr_size);
}

/* ---- batches ---- */

static void stage_name(const cdc_table_schema *s, char out[40])
{
    char hex[17];
    cdc_fingerprint_hex(cdc_crc64_avro(s->json, strlen(s->json)), hex);
    snprintf(out, 40, "cdc_stage_%s", hex);
}

static const char *val_text(const batch *b, const batch_val *v)
{
    return v->state == CDC_COL_VALUE ? batch_text(b, v) : NULL;
}

static target_status apply_keyless(target *t, const cdc_table_schema *s, const batch *b,
                                   char *errstr, size_t errstr_size)
{
    int n = s->nfields;
    const char **params = cdc_xcalloc((size_t)(2 * n + 1), sizeof *params);
    cdc_buf ins, upd, del;
    cdc_buf_init(&ins);
    cdc_buf_init(&upd);
    cdc_buf_init(&del);
    sql_keyless_insert(&ins, s);
    sql_keyless_update(&upd, s);
    sql_keyless_delete(&del, s);
    target_status r = TARGET_OK;
    for (size_t i = 0; i < batch_count(b) && r == TARGET_OK; i++) {
        const batch_row *row = batch_row_at(b, i);
        const char *sql;
        int np = n;
        if (row->op == BATCH_INSERT) {
            for (int c = 0; c < n; c++)
                params[c] = val_text(b, &row->vals[c]);
            sql = cdc_buf_cstr(&ins);
        } else if (row->op == BATCH_ROW_UPDATE) {
            for (int c = 0; c < n; c++) {
                params[c] = val_text(b, &row->old[c]);
                /* An unchanged TOASTed value keeps the old one. */
                const batch_val *v =
                    row->vals[c].state == CDC_COL_UNCHANGED ? &row->old[c] : &row->vals[c];
                params[n + c] = val_text(b, v);
            }
            np = 2 * n;
            sql = cdc_buf_cstr(&upd);
        } else {
            for (int c = 0; c < n; c++)
                params[c] = val_text(b, &row->old[c]);
            sql = cdc_buf_cstr(&del);
        }
        PGresult *res = NULL;
        r = run_params(t, sql, np, params, &res, errstr, errstr_size);
        /* Exactly one row must match the old image; none means divergence. */
        if (r == TARGET_OK && row->op != BATCH_INSERT && strcmp(PQcmdTuples(res), "1") != 0) {
            snprintf(errstr, errstr_size, "no row of %s.%s equals the old row of the %s",
                     s->schema_name, s->table_name,
                     row->op == BATCH_ROW_UPDATE ? "update" : "delete");
            r = TARGET_REJECT;
        }
        PQclear(res);
    }
    free(params);
    cdc_buf_free(&ins);
    cdc_buf_free(&upd);
    cdc_buf_free(&del);
    return r;
}

/* COPY's binary format: signature, flags, header extension length. */
static const uint8_t copy_bin_header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};

static void put_be32(cdc_buf *out, uint32_t v)
{
    cdc_buf_reserve(out, 4);
    for (int i = 3; i >= 0; i--)
        out->data[out->len++] = (uint8_t)(v >> (8 * i));
}

/* One field of a binary COPY row: its length (-1: NULL), then its bytes. */
static void copy_bin_field(cdc_buf *out, const uint8_t *data, size_t len)
{
    if (!data) {
        put_be32(out, UINT32_MAX);
        return;
    }
    put_be32(out, (uint32_t)len);
    cdc_buf_append(out, data, len);
}

/* A row of a binary batch, with the stage's op and keep columns if staged. */
static void copy_bin_row(cdc_buf *out, const batch *b, const batch_row *row, int n, bool staged,
                         const char *keep)
{
    int nout = n + (staged ? 2 : 0);
    cdc_buf_reserve(out, 2);
    out->data[out->len++] = (uint8_t)(nout >> 8);
    out->data[out->len++] = (uint8_t)nout;
    for (int c = 0; c < n; c++) {
        const batch_val *v = &row->vals[c];
        copy_bin_field(out, v->state == CDC_COL_VALUE ? (const uint8_t *)batch_text(b, v) : NULL,
                       v->len);
    }
    if (staged) {
        uint8_t op = (uint8_t)row->op; /* "char": one byte */
        copy_bin_field(out, &op, 1);
        copy_bin_field(out, (const uint8_t *)keep, (size_t)n);
    }
}

/*
 * Send the batch's rows through `copy_sql` (a COPY ... FROM STDIN, with
 * (FORMAT binary) for a binary batch): with op/keep columns for the stage,
 * or the table's columns only for a direct COPY. Marks in any[] which ops
 * occur.
 */
static target_status copy_rows(target *t, const cdc_table_schema *s, const batch *b,
                               const char *copy_sql, bool staged, size_t ops[128], char *errstr,
                               size_t errstr_size)
{
    PGresult *res = PQexec(t->conn, copy_sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        target_status r = failed(t, res, errstr, errstr_size);
        PQclear(res);
        return r;
    }
    PQclear(res);
    int n = s->nfields;
    const char **vals = cdc_xcalloc((size_t)n + 1, sizeof *vals);
    char *keep = cdc_xmalloc((size_t)n + 1);
    cdc_buf *copy = &t->copy;
    cdc_buf_reset(copy);
    bool binary = batch_binary(b);
    if (binary)
        cdc_buf_append(copy, copy_bin_header, sizeof copy_bin_header);
    bool sent_ok = true;
    for (size_t i = 0; i < batch_count(b) && sent_ok; i++) {
        const batch_row *row = batch_row_at(b, i);
        for (int c = 0; c < n; c++) {
            if (!binary)
                vals[c] = val_text(b, &row->vals[c]);
            keep[c] = row->vals[c].state == CDC_COL_UNCHANGED ? '1' : '0';
        }
        keep[n] = '\0';
        ops[(unsigned char)row->op & 127]++;
        if (binary)
            copy_bin_row(copy, b, row, n, staged, keep);
        else if (staged)
            sql_copy_line(copy, n, vals, (char)row->op, keep);
        else
            sql_copy_row(copy, n, vals);
        if (copy->len >= COPY_CHUNK) {
            sent_ok = PQputCopyData(t->conn, (const char *)copy->data, (int)copy->len) == 1;
            cdc_buf_reset(copy);
        }
    }
    free(vals);
    free(keep);
    if (binary) {
        cdc_buf_reserve(copy, 2);
        copy->data[copy->len++] = 0xff; /* trailer: a field count of -1 */
        copy->data[copy->len++] = 0xff;
    }
    if (sent_ok && copy->len > 0)
        PQputCopyData(t->conn, (const char *)copy->data, (int)copy->len);
    PQputCopyEnd(t->conn, NULL);
    target_status r = TARGET_OK;
    while ((res = PQgetResult(t->conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && r == TARGET_OK)
            r = failed(t, res, errstr, errstr_size);
        PQclear(res);
    }
    return r;
}

static bool name_in(char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

static void name_add(char ***names, size_t *n, const char *name)
{
    *names = cdc_xrealloc(*names, (*n + 1) * sizeof **names);
    (*names)[(*n)++] = cdc_xstrdup(name);
}

/*
 * A binary batch goes straight into the table only if each of its columns
 * has exactly the type its binary form was made for: a binary value carries
 * no type, and one of another type of the same width would be read as that
 * type. The table is locked first (ROW EXCLUSIVE, which the COPY takes
 * anyway), so no ALTER can come between this look and the COPY. Otherwise
 * the batch goes through the stage, whose columns have the source's types,
 * and the INSERT from it converts.
 */
static target_status binary_fits(target *t, const cdc_table_schema *s, const char *qname,
                                 bool *fits, char *errstr, size_t errstr_size)
{
    known_schema *k = find_ready(t, s);
    *fits = k && k->exact;
    if (!*fits)
        return TARGET_OK;
    cdc_buf_reset(&t->sql);
    cdc_buf_printf(&t->sql, "LOCK TABLE %s IN ROW EXCLUSIVE MODE", qname);
    target_status r = run(t, cdc_buf_cstr(&t->sql), errstr, errstr_size);
    if (r != TARGET_OK)
        return r;
    const char *vals[] = {qname};
    PGresult *res = NULL;
    if ((r = run_params(t, COLUMNS_SQL, 1, vals, &res, errstr, errstr_size)) != TARGET_OK)
        return r;
    for (int i = 0; i < s->nfields && *fits; i++) {
        int row = column_row(res, s->fields[i].pg_name);
        *fits = row >= 0 && !PQgetisnull(res, row, 1) &&
                strcmp(PQgetvalue(res, row, 1), s->fields[i].pg_type) == 0;
    }
    PQclear(res);
    if (!*fits) {
        k->exact = false;
        cdc_info("%s: a column's type is no longer the source's; its rows go through the stage",
                 qname);
    }
    return TARGET_OK;
}

/*
 * A direct COPY stands in for INSERT ... ON CONFLICT (key) only if an
 * existing key makes it fail: the table needs a unique, immediate,
 * non-partial index on exactly the key columns (the one ON CONFLICT would
 * use). A table created by hand without one gets the merge path, whose
 * ON CONFLICT then fails loudly, instead of a second row per key.
 */
static target_status check_direct(target *t, const cdc_table_schema *s, const char *qname, bool *ok,
                                  char *errstr, size_t errstr_size)
{
    *ok = false;
    if (name_in(t->merge_only, t->nmerge_only, qname))
        return TARGET_OK;
    if (name_in(t->direct_ok, t->ndirect_ok, qname)) {
        *ok = true;
        return TARGET_OK;
    }
    cdc_buf keys;
    cdc_buf_init(&keys);
    key_array(&keys, s);
    const char *vals[] = {qname, cdc_buf_cstr(&keys)};
    PGresult *res = NULL;
    target_status r =
        run_params(t,
                   "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i "
                   "WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indimmediate "
                   "AND i.indpred IS NULL AND i.indexprs IS NULL AND "
                   "(SELECT array_agg(a.attname::text ORDER BY a.attname::text) "
                   " FROM pg_catalog.pg_attribute a WHERE a.attrelid = i.indrelid "
                   " AND a.attnum = ANY (i.indkey[0:i.indnkeyatts - 1])) = "
                   "(SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) AS k))",
                   2, vals, &res, errstr, errstr_size);
    cdc_buf_free(&keys);
    if (r != TARGET_OK)
        return r;
    *ok = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (*ok) {
        name_add(&t->direct_ok, &t->ndirect_ok, qname);
    } else {
        cdc_debug("%s: no unique index on exactly the key columns; merging", qname);
        name_add(&t->merge_only, &t->nmerge_only, qname);
    }
    return TARGET_OK;
}

/*
 * A batch of nothing but whole-row inserts (a bootstrap, an insert-heavy
 * workload) is copied straight into the table: one pass instead of stage +
 * merge. If a key already exists (a replayed load, a row inserted by hand)
 * the COPY fails with unique_violation, the savepoint undoes it, and the
 * table uses the merge path for the rest of the session.
 */
static target_status try_direct(target *t, const cdc_table_schema *s, const batch *b, bool *done,
                                char *errstr, size_t errstr_size)
{
    *done = false;
    for (size_t i = 0; i < batch_count(b); i++) {
        const batch_row *row = batch_row_at(b, i);
        if (row->op != BATCH_UPSERT)
            return TARGET_OK;
        for (int c = 0; c < s->nfields; c++)
            if (row->vals[c].state == CDC_COL_UNCHANGED)
                return TARGET_OK;
    }
    cdc_buf qname;
    cdc_buf_init(&qname);
    sql_qualified(&qname, s->schema_name, s->table_name);
    bool ok = false;
    target_status r = check_direct(t, s, cdc_buf_cstr(&qname), &ok, errstr, errstr_size);
    if (r == TARGET_OK && ok && batch_binary(b))
        r = binary_fits(t, s, cdc_buf_cstr(&qname), &ok, errstr, errstr_size);
    if (r != TARGET_OK || !ok)
        goto out;
    if ((r = run(t, "SAVEPOINT cdc_direct", errstr, errstr_size)) != TARGET_OK)
        goto out;
    cdc_buf_reset(&t->sql);
    sql_copy_table(&t->sql, s);
    if (batch_binary(b))
        cdc_buf_puts(&t->sql, " (FORMAT binary)");
    size_t ops[128] = {0};
    r = copy_rows(t, s, b, cdc_buf_cstr(&t->sql), false, ops, errstr, errstr_size);
    if (r == TARGET_OK) {
        r = run(t, "RELEASE SAVEPOINT cdc_direct", errstr, errstr_size);
        *done = r == TARGET_OK;
    } else if (r == TARGET_REJECT && strncmp(errstr, "23505", 5) == 0) {
        cdc_debug("%s: a key exists already; merging from now on", cdc_buf_cstr(&qname));
        name_add(&t->merge_only, &t->nmerge_only, cdc_buf_cstr(&qname));
        r = run(t, "ROLLBACK TO SAVEPOINT cdc_direct", errstr, errstr_size);
    }
out:
    cdc_buf_free(&qname);
    return r;
}

/* ---- loads: the primary key after the rows ---- */

/*
 * Take the table off the list of those waiting for their key and add the
 * key, in the caller's transaction. The DELETE locks the row: writers of
 * the load (who hold it FOR KEY SHARE) have committed, and later ones wait
 * for this transaction, then see no row. *had: the table was waiting.
 */
#define TAKE_DEFERRED_SQL                                                                          \
    "WITH d AS (DELETE FROM %s.apply_deferred_keys WHERE schema_name = $1 AND table_name = $2 "   \
    "RETURNING key_columns) "                                                                      \
    "SELECT k.col FROM d, unnest(d.key_columns) WITH ORDINALITY AS k(col, n) ORDER BY k.n"

static target_status add_key(target *t, const char *nsp, const char *rel, bool *had, char *errstr,
                             size_t errstr_size)
{
    const char *vals[] = {nsp, rel};
    cdc_buf_reset(&t->sql);
    cdc_buf_printf(&t->sql, TAKE_DEFERRED_SQL, t->state_schema);
    PGresult *res = NULL;
    target_status r = run_params(t, cdc_buf_cstr(&t->sql), 2, vals, &res, errstr, errstr_size);
    if (r != TARGET_OK)
        return r;
    int ncols = PQntuples(res);
    *had = ncols > 0;
    if (ncols > 0) {
        const char **cols = cdc_xcalloc((size_t)ncols, sizeof *cols);
        for (int i = 0; i < ncols; i++)
            cols[i] = PQgetvalue(res, i, 0);
        cdc_buf_reset(&t->sql);
        sql_add_primary_key(&t->sql, nsp, rel, cols, ncols);
        free(cols);
        r = run(t, cdc_buf_cstr(&t->sql), errstr, errstr_size);
    }
    PQclear(res);
    if (r == TARGET_REJECT) {
        char pgerr[1536];
        snprintf(pgerr, sizeof pgerr, "%s", errstr);
        snprintf(errstr, errstr_size,
                 "cannot add the primary key of %s.%s after its load: %s (the table holds rows "
                 "that are not the load's: fix them, then restart cdc-apply, which adds the key "
                 "again)",
                 nsp, rel, pgerr);
        r = TARGET_FATAL;
    }
    if (r == TARGET_OK && *had)
        cdc_info("added the primary key of %s.%s (its load is applied)", nsp, rel);
    return r;
}

/*
 * Whether the table of `s` still waits for its key. With `finish` the key
 * is added now (in this transaction) and *waiting comes back false;
 * without, the row is locked FOR KEY SHARE so the key cannot be added under
 * this transaction's COPY. Tables known to have their key ask nothing.
 */
static target_status deferred_key(target *t, const cdc_table_schema *s, const char *qname,
                                  bool finish, bool *waiting, char *errstr, size_t errstr_size)
{
    *waiting = false;
    if (name_in(t->keyed, t->nkeyed, qname))
        return TARGET_OK;
    target_status r;
    if (finish) {
        bool had;
        r = add_key(t, s->schema_name, s->table_name, &had, errstr, errstr_size);
    } else {
        const char *vals[] = {s->schema_name, s->table_name};
        cdc_buf_reset(&t->sql);
        cdc_buf_printf(&t->sql,
                       "SELECT 1 FROM %s.apply_deferred_keys WHERE schema_name = $1 AND "
                       "table_name = $2 FOR KEY SHARE",
                       t->state_schema);
        PGresult *res = NULL;
        r = run_params(t, cdc_buf_cstr(&t->sql), 2, vals, &res, errstr, errstr_size);
        if (r == TARGET_OK)
            *waiting = PQntuples(res) == 1;
        PQclear(res);
    }
    if (r == TARGET_OK && !*waiting)
        name_add(&t->keyed, &t->nkeyed, qname);
    return r;
}

/* The tables waiting for their key, in name order (the order locks are taken in). */
static target_status deferred_tables(target *t, PGresult **res, char *errstr, size_t errstr_size)
{
    cdc_buf_reset(&t->sql);
    cdc_buf_printf(&t->sql,
                   "SELECT schema_name, table_name FROM %s.apply_deferred_keys "
                   "ORDER BY schema_name, table_name",
                   t->state_schema);
    return run_params(t, cdc_buf_cstr(&t->sql), 0, NULL, res, errstr, errstr_size);
}

target_status target_finish_loads(target *t, char *errstr, size_t errstr_size)
{
    PGresult *list = NULL;
    target_status r = deferred_tables(t, &list, errstr, errstr_size);
    if (r != TARGET_OK)
        return r;
    for (int i = 0; i < PQntuples(list) && r == TARGET_OK; i++) {
        if ((r = target_begin(t, errstr, errstr_size)) != TARGET_OK)
            break;
        bool had = false;
        r = add_key(t, PQgetvalue(list, i, 0), PQgetvalue(list, i, 1), &had, errstr, errstr_size);
        if (r == TARGET_OK)
            r = target_commit(t, errstr, errstr_size);
        else
            target_rollback(t);
    }
    PQclear(list);
    return r;
}

target_status target_pending_loads(target *t, cdc_buf *names, char *errstr, size_t errstr_size)
{
    PGresult *res = NULL;
    target_status r = deferred_tables(t, &res, errstr, errstr_size);
    if (r != TARGET_OK)
        return r;
    for (int i = 0; i < PQntuples(res); i++)
        cdc_buf_printf(names, "%s%s.%s", i ? ", " : "", PQgetvalue(res, i, 0),
                       PQgetvalue(res, i, 1));
    PQclear(res);
    return TARGET_OK;
}

target_status target_apply_batch(target *t, const cdc_table_schema *s, const batch *b, char *errstr,
                                 size_t errstr_size)
{
    /* Only this call's own stage may be cleared after it (target_clear_stage). */
    t->stage_dirty = false;
    if (batch_count(b) == 0)
        return TARGET_OK;
    if (batch_keyless(b))
        return apply_keyless(t, s, b, errstr, errstr_size);
    cdc_buf qname;
    cdc_buf_init(&qname);
    sql_qualified(&qname, s->schema_name, s->table_name);
    bool reads = batch_only_reads(b), waiting = false, fits = true;
    target_status r =
        deferred_key(t, s, cdc_buf_cstr(&qname), !reads, &waiting, errstr, errstr_size);
    if (r == TARGET_OK && waiting && batch_binary(b))
        r = binary_fits(t, s, cdc_buf_cstr(&qname), &fits, errstr, errstr_size);
    cdc_buf_free(&qname);
    if (r != TARGET_OK)
        return r;
    if (waiting && fits) {
        /* Distinct new keys into a table without its key yet: nothing to
         * merge and no index to maintain. */
        size_t ops[128] = {0};
        cdc_buf_reset(&t->sql);
        sql_copy_table(&t->sql, s);
        if (batch_binary(b))
            cdc_buf_puts(&t->sql, " (FORMAT binary)");
        return copy_rows(t, s, b, cdc_buf_cstr(&t->sql), false, ops, errstr, errstr_size);
    }
    bool done = false;
    if (!waiting)
        r = try_direct(t, s, b, &done, errstr, errstr_size);
    if (r != TARGET_OK || done)
        return r;
    t->stage_dirty = true;

    char stage[40];
    stage_name(s, stage);
    cdc_buf *sql = &t->sql;
    cdc_buf_reset(sql);
    if (sql_create_stage(sql, s, stage, errstr, errstr_size) != 0)
        return TARGET_REJECT;
    r = run(t, cdc_buf_cstr(sql), errstr, errstr_size);
    if (r != TARGET_OK)
        return r;

    cdc_buf_reset(sql);
    sql_copy_stage(sql, s, stage);
    if (batch_binary(b))
        cdc_buf_puts(sql, " (FORMAT binary)");
    size_t ops[128] = {0};
    r = copy_rows(t, s, b, cdc_buf_cstr(sql), true, ops, errstr, errstr_size);
    if (r != TARGET_OK)
        return r;
    if (waiting) {
        /* A binary load into a table whose column types are not the
         * source's: the stage converts, and no key is there to merge on. */
        cdc_buf_reset(sql);
        sql_insert_stage(sql, s, stage);
        return run(t, cdc_buf_cstr(sql), errstr, errstr_size);
    }

    /* Deletes first: a key deleted and re-inserted in one batch is an upsert. */
    if (ops[BATCH_DELETE]) {
        cdc_buf_reset(sql);
        sql_merge_delete(sql, s, stage);
        if ((r = run(t, cdc_buf_cstr(sql), errstr, errstr_size)) != TARGET_OK)
            return r;
    }
    if (ops[BATCH_UPSERT]) {
        cdc_buf_reset(sql);
        sql_merge_upsert(sql, s, stage);
        if ((r = run(t, cdc_buf_cstr(sql), errstr, errstr_size)) != TARGET_OK)
            return r;
    }
    if (ops[BATCH_REPLACE]) {
        size_t updated = 0;
        cdc_buf_reset(sql);
        sql_merge_replace(sql, s, stage);
        if (sql->len > 0) {
            PGresult *res = NULL;
            if ((r = run_params(t, cdc_buf_cstr(sql), 0, NULL, &res, errstr, errstr_size)) !=
                TARGET_OK)
                return r;
            updated = strtoull(PQcmdTuples(res), NULL, 10);
            PQclear(res);
        }
        /* A row the target lacks (deleted by hand, say) is inserted whole,
         * as an upsert would have. */
        if (updated < ops[BATCH_REPLACE]) {
            cdc_buf_reset(sql);
            sql_merge_replace_missing(sql, s, stage);
            if ((r = run(t, cdc_buf_cstr(sql), errstr, errstr_size)) != TARGET_OK)
                return r;
        }
    }
    if (ops[BATCH_UPDATE]) {
        /*
         * These rows keep an unchanged TOASTed value from the target's row:
         * without that row the update cannot be applied, and must not
         * vanish silently (the event-by-event pass then names the event).
         */
        cdc_buf_reset(sql);
        sql_merge_update(sql, s, stage);
        PGresult *res = NULL;
        if ((r = run_params(t, cdc_buf_cstr(sql), 0, NULL, &res, errstr, errstr_size)) != TARGET_OK)
            return r;
        size_t updated = strtoull(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        if (updated < ops[BATCH_UPDATE]) {
            snprintf(errstr, errstr_size,
                     "%zu of %zu updates that leave a TOASTed column unchanged found no row in "
                     "the target: its old value is needed to apply them",
                     ops[BATCH_UPDATE] - updated, ops[BATCH_UPDATE]);
            return TARGET_REJECT;
        }
    }
    return TARGET_OK;
}

target_status target_clear_stage(target *t, const cdc_table_schema *s, char *errstr,
                                 size_t errstr_size)
{
    /* Keyless tables and direct COPYs use no stage, and a stage made in a
     * savepoint that was rolled back no longer exists. */
    if (s->nkey == 0 || !t->stage_dirty)
        return TARGET_OK;
    t->stage_dirty = false;
    char stage[40];
    stage_name(s, stage);
    cdc_buf_reset(&t->sql);
    cdc_buf_printf(&t->sql, "TRUNCATE pg_temp.%s", stage);
    return run(t, cdc_buf_cstr(&t->sql), errstr, errstr_size);
}

/* ---- truncates ---- */

target_status target_truncate_arrive(target *t, const cdc_table_schema *s, const char *topic,
                                     int32_t partition, int npartitions, uint64_t commit_lsn,
                                     int64_t ordinal, int64_t offset, int64_t expected_next,
                                     bool *done, bool *moved, char *errstr, size_t errstr_size)
{
    char part[16], lsn[24], ord[24], off[24];
    snprintf(part, sizeof part, "%d", partition);
    snprintf(lsn, sizeof lsn, "%lld", (long long)commit_lsn);
    snprintf(ord, sizeof ord, "%lld", (long long)ordinal);
    snprintf(off, sizeof off, "%lld", (long long)offset);
    *done = false;
    *moved = false;
    /*
     * One completer per truncate, whichever process arrives last: arrivals
     * of one topic take turns, so none can see a truncate half completed.
     */
    const char *v2[] = {t->group_id, topic};
    target_status r = run_params(t,
                                 "SELECT pg_catalog.pg_advisory_xact_lock(7462, "
                                 "pg_catalog.hashtext($1 || '/' || $2))",
                                 2, v2, NULL, errstr, errstr_size);
    if (r != TARGET_OK)
        return r;
    /*
     * The partition's position must still be the one its owner read. If
     * another process completed this truncate since, it moved the position
     * past it; arriving now would leave a row that a later truncate would
     * count as this partition's arrival there.
     */
    target_part me = {.topic = topic,
                      .partition = partition,
                      .expected_next = expected_next,
                      .pos = {.next_offset = -1}}; /* nothing saved: no claim */
    r = target_check_positions(t, &me, 1, errstr, errstr_size);
    if (r != TARGET_OK)
        return r;
    if (!me.matches) {
        *moved = true;
        return TARGET_OK;
    }
    const char *v6[] = {t->group_id, topic, part, lsn, ord, off};
    cdc_buf *sql = &t->sql;
    cdc_buf_reset(sql);
    cdc_buf_printf(sql,
                   "INSERT INTO %s.apply_truncates "
                   "(group_id, topic, partition, commit_lsn, ordinal, event_offset) "
                   "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                   t->state_schema);
    r = run_params(t, cdc_buf_cstr(sql), 6, v6, NULL, errstr, errstr_size);
    if (r != TARGET_OK)
        return r;
    /*
     * Complete every pending truncate that can be, oldest first. A partition
     * has reached a truncate when it waits at it or at a later one: a
     * capture interrupted while writing a truncate to every partition leaves
     * some partitions without it, and the truncate it writes after
     * restarting stands in for it there. Checking from the oldest on every
     * arrival means no combination of arrivals can leave one waiting.
     */
    for (;;) {
        cdc_buf_reset(sql);
        cdc_buf_printf(sql,
                       "SELECT commit_lsn, ordinal FROM %s.apply_truncates "
                       "WHERE group_id = $1 AND topic = $2 ORDER BY commit_lsn, ordinal LIMIT 1",
                       t->state_schema);
        PGresult *res = NULL;
        r = run_params(t, cdc_buf_cstr(sql), 2, v2, &res, errstr, errstr_size);
        if (r != TARGET_OK)
            return r;
        if (PQntuples(res) == 0) {
            PQclear(res);
            return TARGET_OK;
        }
        char mlsn[24], mord[24];
        snprintf(mlsn, sizeof mlsn, "%s", PQgetvalue(res, 0, 0));
        snprintf(mord, sizeof mord, "%s", PQgetvalue(res, 0, 1));
        PQclear(res);
        const char *v4[] = {t->group_id, topic, mlsn, mord};
        cdc_buf_reset(sql);
        cdc_buf_printf(sql,
                       "SELECT partition, event_offset, (commit_lsn, ordinal) = ($3, $4) "
                       "FROM %s.apply_truncates "
                       "WHERE group_id = $1 AND topic = $2 AND (commit_lsn, ordinal) >= ($3, $4)",
                       t->state_schema);
        r = run_params(t, cdc_buf_cstr(sql), 4, v4, &res, errstr, errstr_size);
        if (r != TARGET_OK)
            return r;
        int arrived = 0;
        bool *seen = cdc_xcalloc((size_t)npartitions + 1, sizeof *seen);
        for (int i = 0; i < PQntuples(res); i++) {
            long part_no = strtol(PQgetvalue(res, i, 0), NULL, 10);
            if (part_no >= 0 && part_no < npartitions && !seen[part_no]) {
                seen[part_no] = true;
                arrived++;
            }
        }
        free(seen);
        if (arrived < npartitions) {
            PQclear(res);
            return TARGET_OK; /* the oldest one still waits for others */
        }
        uint64_t m_lsn = (uint64_t)strtoll(mlsn, NULL, 10);
        int64_t m_ord = strtoll(mord, NULL, 10);
        r = target_truncate(t, s, errstr, errstr_size);
        for (int i = 0; i < PQntuples(res) && r == TARGET_OK; i++) {
            if (PQgetvalue(res, i, 2)[0] != 't')
                continue; /* waits at a later truncate: stays */
            target_pos pos = {
                .next_offset = strtoll(PQgetvalue(res, i, 1), NULL, 10) + 1,
                .commit_lsn = m_lsn,
                .ordinal = m_ord,
            };
            r = target_save_position(t, topic, (int32_t)strtol(PQgetvalue(res, i, 0), NULL, 10),
                                     &pos, errstr, errstr_size);
        }
        PQclear(res);
        if (r != TARGET_OK)
            return r;
        cdc_buf_reset(sql);
        cdc_buf_printf(sql,
                       "DELETE FROM %s.apply_truncates "
                       "WHERE group_id = $1 AND topic = $2 AND commit_lsn = $3 AND ordinal = $4",
                       t->state_schema);
        r = run_params(t, cdc_buf_cstr(sql), 4, v4, NULL, errstr, errstr_size);
        if (r != TARGET_OK)
            return r;
        if (m_lsn == commit_lsn && m_ord == ordinal)
            *done = true;
        cdc_info("truncated %s.%s (all %d partitions of %s reached the truncate)", s->schema_name,
                 s->table_name, npartitions, topic);
    }
}
