/*
 * The replication loop of cdc-capture, modelled on pg_recvlogical: wait on
 * the replication socket with a timeout set by the next status deadline,
 * track received and flushed positions separately, report as flushed only
 * what Kafka has acknowledged, and reconnect in a loop.
 *
 * Sessions: a session is one replication connection plus one producer. A
 * lost Postgres connection ends the session's stream (the producer keeps
 * delivering what it has); a broken producer (fatal idempotence error,
 * failed delivery) ends both, and the stream restarts from the last flushed
 * position so every unacknowledged transaction is read and sent again.
 */
#include "capture.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "cdc/buf.h"
#include "cdc/lsn.h"
#include "bootstrap.h"
#include "cdc/log.h"
#include "emitter.h"
#include "pgoutput.h"
#include "relcache.h"
#include "tracker.h"

/* Fixed text forms for every value pgoutput sends (see cdc/pgtypes.h). */
#define SESSION_OPTIONS                                                                            \
    "-c datestyle=ISO -c timezone=UTC -c intervalstyle=postgres -c extra_float_digits=3 "          \
    "-c bytea_output=hex -c lc_monetary=C"

typedef enum stream_result {
    STREAM_STOP,
    STREAM_PG_LOST,
    STREAM_KAFKA_BROKEN,
    STREAM_FATAL,
    STREAM_RELOAD, /* a relation's schema is stale: new session, Relation messages again */
} stream_result;

typedef struct capture {
    const capture_config *cfg;
    volatile sig_atomic_t *stop;
    PGconn *repl;
    PGconn *sql;
    pgo_parser *parser;
    relcache *rels;
    tracker tr;
    emitter *em;
    char dbname[256];
    uint64_t received_lsn;  /* highest WAL end seen from the server */
    uint64_t keepalive_lsn; /* WAL end of the last keepalive */
    uint64_t flushed_lsn;   /* durable in Kafka: what we confirm */
    uint64_t reported_lsn;  /* last flush position sent */
    int64_t last_status;    /* pgo_now() of the last status update */
    bool in_txn;
    bool streaming;       /* the replication connection is in COPY mode */
    bool force_bootstrap; /* --bootstrap, until a load has completed */
    bool slot_seen;       /* the slot existed, or was made, in this process */
    event_ctx ctx;
    uint64_t reload_lsn; /* the latest change that made us reload its relation */
    /* Counters for the periodic progress line. */
    int64_t stat_since; /* now_ms() of the last line */
    uint64_t stat_events, total_events;
    char state_err[1024]; /* last logged source problem, to log once */
    char errbuf[1024];
} capture;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        break; /* a signal: let the caller look at the stop flag */
}

/* Log a source problem once until the state changes, on one line. */
static void source_problem(capture *c, const char *what)
{
    char line[sizeof c->state_err];
    snprintf(line, sizeof line, "%s", what);
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    for (size_t n = strlen(line); n > 0 && line[n - 1] == ' '; n--)
        line[n - 1] = '\0';
    if (strcmp(c->state_err, line) != 0) {
        cdc_warn("source unavailable: %s; retrying", line);
        memcpy(c->state_err, line, sizeof line);
    }
}

/* ---- connections ---- */

static PGconn *connect_pg(const capture_config *cfg, bool replication, char *errstr,
                          size_t errstr_size)
{
    char *options = cdc_pg_options(cfg->source_conninfo, SESSION_OPTIONS);
    const char *keys[7], *vals[7];
    int k = 0;
    /* Before dbname, so the conninfo's own value wins. */
    keys[k] = "connect_timeout", vals[k++] = cdc_pg_connect_timeout(cfg->source_conninfo);
    keys[k] = "dbname", vals[k++] = cfg->source_conninfo;
    /* After dbname, so it wins over the conninfo's: events carry UTF-8, and
     * pgoutput and COPY convert text to the client encoding. */
    keys[k] = "client_encoding", vals[k++] = "UTF8";
    if (replication)
        keys[k] = "replication", vals[k++] = "database";
    keys[k] = "options", vals[k++] = options;
    keys[k] = "fallback_application_name", vals[k++] = "cdc-capture";
    keys[k] = NULL, vals[k] = NULL;
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    free(options);
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(errstr, errstr_size, "%s", PQerrorMessage(conn));
        size_t n = strlen(errstr);
        while (n > 0 && (errstr[n - 1] == '\n' || errstr[n - 1] == ' '))
            errstr[--n] = '\0';
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static void disconnect(capture *c)
{
    if (c->repl)
        PQfinish(c->repl);
    if (c->sql)
        PQfinish(c->sql);
    c->repl = c->sql = NULL;
    c->streaming = false;
}

/* Run a query returning at most one row; *val gets the first value or NULL. */
static int query1(PGconn *conn, const char *sql, int nparams, const char *const *params, char **val,
                  char *errstr, size_t errstr_size)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        snprintf(errstr, errstr_size, "%s", PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }
    if (val)
        *val = (st == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
                   ? cdc_xstrdup(PQgetvalue(res, 0, 0))
                   : NULL;
    PQclear(res);
    return 0;
}

typedef enum setup_result {
    SETUP_OK,
    SETUP_RETRY,
    SETUP_FATAL,
    SETUP_DONE,    /* bootstrap.mode=only: the load is complete, exit 0 */
    SETUP_STOPPED, /* stop requested */
} setup_result;

static setup_result ensure_publication(capture *c, char *errstr, size_t errstr_size)
{
    const capture_config *cfg = c->cfg;
    const char *p[1] = {cfg->publication_name};
    char *exists = NULL;
    if (query1(c->sql, "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1", 1, p, &exists,
               errstr, errstr_size) != 0)
        return SETUP_RETRY;
    if (exists) {
        free(exists);
        return SETUP_OK;
    }
    char *ident = PQescapeIdentifier(c->sql, cfg->publication_name, strlen(cfg->publication_name));
    if (!ident) {
        snprintf(errstr, errstr_size, "publication.name: cannot be quoted (%.*s)",
                 (int)strcspn(PQerrorMessage(c->sql), "\n"), PQerrorMessage(c->sql));
        return SETUP_FATAL;
    }
    cdc_buf sql;
    cdc_buf_init(&sql);
    if (*cfg->tables) {
        char *list = capture_tables_sql(cfg->tables, errstr, errstr_size);
        cdc_buf_printf(&sql, "CREATE PUBLICATION %s FOR TABLE %s", ident, list);
        free(list);
    } else {
        cdc_buf_printf(&sql, "CREATE PUBLICATION %s FOR ALL TABLES", ident);
    }
    PQfreemem(ident);
    PGresult *res = PQexec(c->sql, cdc_buf_cstr(&sql));
    cdc_buf_free(&sql);
    setup_result r = SETUP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(errstr, errstr_size, "cannot create publication %s: %s", cfg->publication_name,
                 PQresultErrorMessage(res));
        r = SETUP_FATAL;
    } else {
        cdc_info("created publication %s for %s", cfg->publication_name,
                 *cfg->tables ? cfg->tables : "all tables");
    }
    PQclear(res);
    return r;
}

/* Does the slot exist (and is it one we can use)? */
static setup_result check_slot(capture *c, bool *exists, char *errstr, size_t errstr_size)
{
    const capture_config *cfg = c->cfg;
    const char *p[1] = {cfg->slot_name};
    PGresult *res = PQexecParams(c->sql,
                                 "SELECT plugin, database, slot_type, confirmed_flush_lsn "
                                 "FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                                 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "%s", PQresultErrorMessage(res));
        PQclear(res);
        return SETUP_RETRY;
    }
    *exists = PQntuples(res) == 1;
    setup_result r = SETUP_OK;
    if (*exists && (strcmp(PQgetvalue(res, 0, 2), "logical") != 0 ||
                    strcmp(PQgetvalue(res, 0, 0), "pgoutput") != 0 ||
                    strcmp(PQgetvalue(res, 0, 1), c->dbname) != 0)) {
        snprintf(errstr, errstr_size,
                 "slot.name: slot '%s' exists but is not a pgoutput logical slot of "
                 "database %s (plugin %s, database %s)",
                 cfg->slot_name, c->dbname, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
        r = SETUP_FATAL;
    }
    PQclear(res);
    return r;
}

static setup_result create_slot(capture *c, char *errstr, size_t errstr_size)
{
    cdc_buf cmd;
    cdc_buf_init(&cmd);
    cdc_buf_printf(&cmd, "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput NOEXPORT_SNAPSHOT",
                   c->cfg->slot_name);
    PGresult *res = PQexec(c->repl, cdc_buf_cstr(&cmd));
    cdc_buf_free(&cmd);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(errstr, errstr_size, "cannot create replication slot %s: %s", c->cfg->slot_name,
                 PQresultErrorMessage(res));
        PQclear(res);
        return SETUP_FATAL;
    }
    cdc_info("created replication slot %s at %s", c->cfg->slot_name, PQgetvalue(res, 0, 1));
    PQclear(res);
    return SETUP_OK;
}

static setup_result drop_slot(capture *c, char *errstr, size_t errstr_size)
{
    const char *p[1] = {c->cfg->slot_name};
    if (query1(c->sql, "SELECT pg_catalog.pg_drop_replication_slot($1)", 1, p, NULL, errstr,
               errstr_size) != 0)
        return SETUP_RETRY; /* e.g. still active in a dying session: retry */
    cdc_info("dropped replication slot %s for a new full load", c->cfg->slot_name);
    return SETUP_OK;
}

static setup_result from_emit(emit_status st)
{
    return st == EMIT_OK ? SETUP_OK : st == EMIT_STOPPED ? SETUP_STOPPED : SETUP_RETRY;
}

/*
 * Bootstrap decision: load when the slot is new, when a previous load did
 * not finish ("loading" in the state topic), or when --bootstrap asks.
 */
static setup_result prepare_slot(capture *c, char *errstr, size_t errstr_size)
{
    const capture_config *cfg = c->cfg;
    bool exists = false;
    setup_result r = check_slot(c, &exists, errstr, errstr_size);
    if (r != SETUP_OK)
        return r;
    bool never = strcmp(cfg->bootstrap_mode, "never") == 0;
    bool seen = c->slot_seen;
    c->slot_seen = c->slot_seen || exists;

    bootstrap_state state;
    if (bootstrap_state_read(cfg, &state, errstr, errstr_size) != 0)
        return SETUP_RETRY;
    bool unfinished = strcmp(state.state, "loading") == 0;
    if (never && !exists) {
        if (seen || state.state[0]) {
            /* A new slot starts at the current WAL end: whatever was
             * committed since the old one's confirmed position would never
             * be sent. */
            char since[64] = "its last confirmed position";
            if (c->flushed_lsn)
                snprintf(since, sizeof since, CDC_LSN_FMT, CDC_LSN_ARGS(c->flushed_lsn));
            snprintf(errstr, errstr_size,
                     "replication slot %s no longer exists (dropped, or the server failed over "
                     "to one without it); a new slot would skip every change after %s, so "
                     "bootstrap.mode=never does not create one: run with "
                     "bootstrap.mode=initial for a new full load",
                     cfg->slot_name, since);
            return SETUP_FATAL;
        }
        if ((r = create_slot(c, errstr, errstr_size)) != SETUP_OK)
            return r;
        exists = c->slot_seen = true;
    }
    if (never && unfinished) {
        /* Its stream starts at the load's consistent point: rows the load
         * did not reach would never be sent. */
        snprintf(errstr, errstr_size,
                 "the full load through slot %s did not finish, so streaming from it would skip "
                 "the rows it did not load; run with bootstrap.mode=initial (or --bootstrap) to "
                 "load again",
                 cfg->slot_name);
        return SETUP_FATAL;
    }
    if (exists && (never || (!c->force_bootstrap && !unfinished))) {
        if (strcmp(cfg->bootstrap_mode, "only") == 0) {
            cdc_info("slot %s exists and its full load finished (consistent point %s); "
                     "nothing to do (use --bootstrap to load again)",
                     cfg->slot_name, state.consistent_point[0] ? state.consistent_point : "?");
            return SETUP_DONE;
        }
        /* A slot that streams without a load of ours (made by never, or
         * elsewhere): record it, so that a restart can tell a lost slot from
         * a first start, and a reload after it is lost starts with truncates. */
        if (!state.state[0])
            return from_emit(
                bootstrap_state_write(c->em, cfg, "streaming", 0, 0, errstr, errstr_size));
        return SETUP_OK;
    }
    if (unfinished)
        cdc_warn("the previous full load through slot %s did not finish; starting over",
                 cfg->slot_name);
    /* Record the intent before the slot exists: a crash from here on is
     * seen at the next start, which then starts over. */
    r = from_emit(bootstrap_state_write(c->em, cfg, "loading", 0, 0, errstr, errstr_size));
    if (r != SETUP_OK)
        return r;
    if (exists && (r = drop_slot(c, errstr, errstr_size)) != SETUP_OK)
        return r;
    /* Reset: a consumer may hold rows of an earlier load or stream. */
    bootstrap_env env = {cfg,     c->repl, c->sql,  c->em,
                         c->rels, &c->tr,  c->stop, exists || seen || state.state[0] != '\0'};
    uint64_t cp = 0;
    int64_t rows = 0;
    boot_status bs = bootstrap_load(&env, &cp, &rows, errstr, errstr_size);
    if (bs != BOOT_OK) {
        tracker_reset(&c->tr);
        if (bs == BOOT_FATAL) {
            /* Nothing will stream from this slot: do not let it pin WAL. */
            char ignore[256];
            drop_slot(c, ignore, sizeof ignore);
        }
        return bs == BOOT_STOPPED ? SETUP_STOPPED : bs == BOOT_FATAL ? SETUP_FATAL : SETUP_RETRY;
    }
    r = from_emit(bootstrap_state_write(c->em, cfg, "done", cp, rows, errstr, errstr_size));
    if (r != SETUP_OK)
        return r;
    c->force_bootstrap = false;
    c->flushed_lsn = cp;
    if (strcmp(cfg->bootstrap_mode, "only") == 0) {
        cdc_info(
            "bootstrap.mode=only: load complete; slot %s stays at its consistent point " CDC_LSN_FMT
            " so a later run streams from there",
            cfg->slot_name, CDC_LSN_ARGS(cp));
        return SETUP_DONE;
    }
    return SETUP_OK;
}

/* Connect both sessions, check the server, set up and start streaming. */
static setup_result start_session(capture *c, char *errstr, size_t errstr_size)
{
    const capture_config *cfg = c->cfg;
    c->sql = connect_pg(cfg, false, errstr, errstr_size);
    if (!c->sql)
        return SETUP_RETRY;
    int version = PQserverVersion(c->sql);
    if (version < 150000 && strcmp(cfg->bootstrap_mode, "never") != 0) {
        /* The load reads pg_publication_tables' column lists and row filters. */
        snprintf(errstr, errstr_size,
                 "the source server runs PostgreSQL %d; cdc-capture needs 15 or later "
                 "for a full load (bootstrap.mode=never streams only)",
                 version / 10000);
        return SETUP_FATAL;
    }
    char *v = NULL;
    if (query1(c->sql, "SELECT pg_catalog.current_setting('wal_level')", 0, NULL, &v, errstr,
               errstr_size) != 0)
        return SETUP_RETRY;
    bool logical = v && strcmp(v, "logical") == 0;
    if (!logical) {
        snprintf(errstr, errstr_size,
                 "the source server runs with wal_level=%s; logical replication needs "
                 "wal_level=logical (set it in postgresql.conf and restart the server)",
                 v ? v : "?");
        free(v);
        return SETUP_FATAL;
    }
    free(v);
    if (query1(c->sql, "SELECT pg_catalog.current_database()", 0, NULL, &v, errstr, errstr_size) !=
        0)
        return SETUP_RETRY;
    snprintf(c->dbname, sizeof c->dbname, "%s", v ? v : "");
    free(v);
    /* format_type() qualifies every type outside pg_catalog. */
    if (query1(c->sql, "SELECT pg_catalog.set_config('search_path', '', false)", 0, NULL, NULL,
               errstr, errstr_size) != 0)
        return SETUP_RETRY;

    setup_result r = ensure_publication(c, errstr, errstr_size);
    if (r != SETUP_OK)
        return r;
    c->repl = connect_pg(cfg, true, errstr, errstr_size);
    if (!c->repl)
        return SETUP_RETRY;
    r = prepare_slot(c, errstr, errstr_size);
    if (r != SETUP_OK)
        return r;

    /* Publication names are identifiers inside a quoted literal. */
    cdc_buf cmd;
    cdc_buf_init(&cmd);
    cdc_buf_printf(&cmd,
                   "START_REPLICATION SLOT \"%s\" LOGICAL " CDC_LSN_FMT
                   " (proto_version '1', publication_names '\"",
                   cfg->slot_name, CDC_LSN_ARGS(c->flushed_lsn));
    for (const char *p = cfg->publication_name; *p; p++) {
        if (*p == '"')
            cdc_buf_putc(&cmd, '"');
        if (*p == '\'')
            cdc_buf_putc(&cmd, '\'');
        cdc_buf_putc(&cmd, (uint8_t)*p);
    }
    cdc_buf_puts(&cmd, "\"')");
    PGresult *res = PQexec(c->repl, cdc_buf_cstr(&cmd));
    cdc_buf_free(&cmd);
    if (PQresultStatus(res) != PGRES_COPY_BOTH) {
        snprintf(errstr, errstr_size, "START_REPLICATION failed: %s", PQresultErrorMessage(res));
        /*
         * A slot in use by another process, or a connection lost (it idled
         * through a long load: a firewall, a session timeout), is worth
         * retrying; the rest is not.
         */
        const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        bool lost = PQstatus(c->repl) != CONNECTION_OK || !code || strncmp(code, "08", 2) == 0 ||
                    strncmp(code, "57P", 3) == 0 || strcmp(code, "25P03") == 0;
        r = lost || strcmp(code, "55006") == 0 ? SETUP_RETRY : SETUP_FATAL;
        PQclear(res);
        return r;
    }
    PQclear(res);
    c->streaming = true;
    return SETUP_OK;
}

/* ---- status updates ---- */

static int send_status(capture *c, bool reply_requested)
{
    if (!c->repl || !c->streaming)
        return 0;
    uint8_t msg[PGO_STATUS_LEN];
    int64_t now = pgo_now();
    uint64_t written = c->received_lsn > c->flushed_lsn ? c->received_lsn : c->flushed_lsn;
    size_t n = pgo_build_status(msg, written, c->flushed_lsn, c->flushed_lsn, now, reply_requested);
    if (PQputCopyData(c->repl, (const char *)msg, (int)n) <= 0 || PQflush(c->repl) != 0)
        return -1;
    c->last_status = now;
    if (c->reported_lsn != c->flushed_lsn)
        cdc_debug("confirmed flush " CDC_LSN_FMT, CDC_LSN_ARGS(c->flushed_lsn));
    c->reported_lsn = c->flushed_lsn;
    return 0;
}

/* Advance the flush position from Kafka's acknowledgements. */
static void advance_flush(capture *c)
{
    uint64_t l = tracker_release(&c->tr);
    if (l > c->flushed_lsn)
        c->flushed_lsn = l;
    /*
     * Nothing open and nothing awaiting Kafka: every transaction the server
     * decoded before its last keepalive is in Kafka, so the slot may move to
     * the server's WAL end and the server can recycle WAL of idle tables.
     */
    if (!c->in_txn && tracker_idle(&c->tr) && c->keepalive_lsn > c->flushed_lsn)
        c->flushed_lsn = c->keepalive_lsn;
}

static int maybe_send_status(capture *c)
{
    int64_t now = pgo_now();
    int64_t since = now - c->last_status;
    bool due = since >= (int64_t)c->cfg->status_interval_ms * 1000;
    /*
     * Report progress promptly (the server can then recycle WAL and a
     * restart re-reads less), but at most ten times a second.
     */
    bool progress = c->flushed_lsn != c->reported_lsn && since >= 100000;
    if (due || progress)
        return send_status(c, false);
    return 0;
}

/* Called by the emitter while it waits for Kafka: keep the walsender alive. */
static void idle_cb(void *opaque)
{
    capture *c = opaque;
    if (!c->repl || !c->streaming)
        return;
    advance_flush(c);
    if (maybe_send_status(c) != 0)
        cdc_debug("status update failed while waiting for Kafka");
}

/* ---- the stream ---- */

static stream_result emit_result(capture *c, emit_status st, const char *what)
{
    switch (st) {
    case EMIT_OK:
        return STREAM_STOP; /* unused */
    case EMIT_STOPPED:
        return STREAM_STOP;
    case EMIT_RETRY:
        cdc_warn("Kafka: %s; restarting the stream from " CDC_LSN_FMT, c->errbuf,
                 CDC_LSN_ARGS(c->flushed_lsn));
        return STREAM_KAFKA_BROKEN;
    case EMIT_STALE:
    case EMIT_FATAL:
        cdc_error("%s at LSN " CDC_LSN_FMT " (transaction %u, commit " CDC_LSN_FMT
                  "): %s; stopping without confirming it",
                  what, CDC_LSN_ARGS(c->ctx.lsn), c->ctx.xid, CDC_LSN_ARGS(c->ctx.commit_lsn),
                  c->errbuf);
        return STREAM_FATAL;
    }
    return STREAM_FATAL;
}

static relation *need_relation(capture *c, uint32_t relid)
{
    relation *r = relcache_get(c->rels, relid);
    if (!r)
        snprintf(c->errbuf, sizeof c->errbuf, "change for relation %u before its Relation message",
                 relid);
    return r;
}

static emit_status emit_change(capture *c, relation *r, const pgo_msg *m)
{
    if (m->type == 'I')
        return emitter_change(c->em, r, 'c', NULL, &m->new_tuple, &c->ctx, c->errbuf,
                              sizeof c->errbuf);
    if (m->type == 'U')
        return emitter_change(c->em, r, 'u', m->old_kind ? &m->old_tuple : NULL, &m->new_tuple,
                              &c->ctx, c->errbuf, sizeof c->errbuf);
    return emitter_change(c->em, r, 'd', &m->old_tuple, NULL, &c->ctx, c->errbuf,
                          sizeof c->errbuf);
}

/* Returns -1 to continue, else the stream result to end with. */
static int handle_message(capture *c, const pgo_msg *m, uint64_t wal_start)
{
    emit_status st = EMIT_OK;
    relation *r;
    switch (m->type) {
    case 'B':
        c->in_txn = true;
        c->ctx.seq = tracker_begin(&c->tr);
        c->ctx.commit_lsn = m->lsn;
        c->ctx.commit_ms = pgo_time_to_unix_ms(m->ts);
        c->ctx.xid = m->xid;
        c->ctx.ordinal = 0;
        c->ctx.lsn = wal_start;
        c->ctx.snapshot = "false";
        return -1;
    case 'C':
        tracker_commit(&c->tr, c->ctx.seq, m->end_lsn);
        c->in_txn = false;
        return -1;
    case 'R': {
        bool retriable;
        r = relcache_update(c->rels, m, c->sql, c->cfg->topic_prefix, &retriable, c->errbuf,
                            sizeof c->errbuf);
        if (!r) {
            if (retriable) {
                source_problem(c, c->errbuf);
                return STREAM_PG_LOST;
            }
            cdc_error("%s", c->errbuf);
            return STREAM_FATAL;
        }
        st = emitter_prepare(c->em, r, c->errbuf, sizeof c->errbuf);
        if (st != EMIT_OK)
            return emit_result(c, st, "preparing topic and schemas");
        return -1;
    }
    case 'Y':
    case 'O':
    case 'M':
        return -1;
    case 'I':
    case 'U':
    case 'D':
        if (!c->in_txn) {
            snprintf(c->errbuf, sizeof c->errbuf, "change outside a transaction");
            cdc_error("protocol error: %s", c->errbuf);
            return STREAM_FATAL;
        }
        if (!(r = need_relation(c, m->relid))) {
            cdc_error("protocol error: %s", c->errbuf);
            return STREAM_FATAL;
        }
        c->ctx.lsn = wal_start;
        st = emit_change(c, r, m);
        if (st == EMIT_STALE) {
            /*
             * An enum label added after the table's schema was built
             * (ALTER TYPE ... ADD VALUE sends no Relation message). A new
             * session makes pgoutput send the Relation messages again, and
             * the schema is rebuilt with the labels the catalog has now.
             * Should the catalog still lack it (a label renamed since this
             * WAL), the value goes out under the schema as it is. Only a
             * change past the last reload reloads: the stream restarts
             * before earlier ones, which would otherwise reload in turn.
             */
            if (wal_start > c->reload_lsn) {
                c->reload_lsn = wal_start;
                cdc_info("%s; reloading the table's schema (stream restarts from " CDC_LSN_FMT
                         ")",
                         c->errbuf, CDC_LSN_ARGS(c->flushed_lsn));
                return STREAM_RELOAD;
            }
            cdc_warn("%s even after reloading it from the catalog; sending the value with the "
                     "schema as it is",
                     c->errbuf);
            for (int i = 0; i < r->ncols; i++)
                relation_forget_labels(&r->cols[i]);
            st = emit_change(c, r, m);
        }
        if (st != EMIT_OK) {
            char what[600];
            snprintf(what, sizeof what, "cannot encode a change of %s.%s", r->nspname, r->relname);
            return emit_result(c, st, what);
        }
        c->stat_events++;
        return -1;
    case 'T':
        c->ctx.lsn = wal_start;
        for (uint32_t i = 0; i < m->nrelids; i++) {
            if (!(r = need_relation(c, m->relids[i]))) {
                cdc_error("protocol error: %s", c->errbuf);
                return STREAM_FATAL;
            }
            st = emitter_truncate(c->em, r, &c->ctx, c->errbuf, sizeof c->errbuf);
            if (st != EMIT_OK)
                return emit_result(c, st, "cannot produce a truncate");
        }
        return -1;
    default:
        /* Streaming and two-phase messages are never requested. */
        cdc_error("protocol error: unexpected pgoutput message '%c'", m->type);
        return STREAM_FATAL;
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Every stats.interval.ms: events handed to Kafka since the last line and
 * in all, and the position confirmed to PostgreSQL (what a restart resumes
 * from). Silent while nothing happens.
 */
static void report_progress(capture *c)
{
    int64_t now = now_ms();
    if (c->stat_since == 0)
        c->stat_since = now;
    if (now - c->stat_since < c->cfg->stats_interval_ms)
        return;
    if (c->stat_events > 0) {
        c->total_events += c->stat_events;
        cdc_info("published %llu events in the last %.0f s (%.0f events/s), %llu in all; "
                 "confirmed LSN " CDC_LSN_FMT,
                 (unsigned long long)c->stat_events, (double)(now - c->stat_since) / 1000.0,
                 (double)c->stat_events * 1000.0 / (double)(now - c->stat_since),
                 (unsigned long long)c->total_events, CDC_LSN_ARGS(c->flushed_lsn));
    }
    c->stat_since = now;
    c->stat_events = 0;
}

static stream_result stream(capture *c)
{
    unsigned since_poll = 0;
    for (;;) {
        if (*c->stop)
            return STREAM_STOP;
        if (emitter_broken(c->em, c->errbuf, sizeof c->errbuf)) {
            cdc_warn("Kafka: %s; restarting the stream from " CDC_LSN_FMT, c->errbuf,
                     CDC_LSN_ARGS(c->flushed_lsn));
            return STREAM_KAFKA_BROKEN;
        }
        advance_flush(c);
        if (maybe_send_status(c) != 0) {
            source_problem(c, PQerrorMessage(c->repl));
            return STREAM_PG_LOST;
        }

        char *buf = NULL;
        int n = PQgetCopyData(c->repl, &buf, 1);
        if (n == 0) {
            /* Nothing buffered: serve Kafka, then wait for the socket. */
            emitter_poll(c->em, 0);
            since_poll = 0;
            struct pollfd pfd = {.fd = PQsocket(c->repl), .events = POLLIN};
            int rc = poll(&pfd, 1, 100);
            if (rc < 0 && errno != EINTR) {
                source_problem(c, strerror(errno));
                return STREAM_PG_LOST;
            }
            if (rc > 0 && !PQconsumeInput(c->repl)) {
                source_problem(c, PQerrorMessage(c->repl));
                return STREAM_PG_LOST;
            }
            report_progress(c);
            continue;
        }
        if (n < 0) {
            /* -1: the server ended the copy (shutdown); -2: connection error. */
            PGresult *res = PQgetResult(c->repl);
            const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
            if (state && strncmp(state, "22", 2) == 0) {
                /* Class 22: the server cannot send this change (an invalid
                 * byte in an SQL_ASCII database, say); every retry would
                 * stop at the same record. */
                snprintf(c->errbuf, sizeof c->errbuf, "(SQLSTATE %s) %s", state,
                         PQresultErrorMessage(res));
                PQclear(res);
                for (char *p = c->errbuf; *p; p++)
                    if (*p == '\n')
                        *p = ' ';
                cdc_error("the source server cannot send the change after " CDC_LSN_FMT
                          " %s; stopping without confirming it",
                          CDC_LSN_ARGS(c->received_lsn), c->errbuf);
                return STREAM_FATAL;
            }
            const char *msg = n == -1 && res && PQresultStatus(res) == PGRES_COMMAND_OK
                                  ? "the server ended replication"
                                  : PQerrorMessage(c->repl);
            source_problem(c, msg);
            PQclear(res);
            return STREAM_PG_LOST;
        }
        if (++since_poll >= 1000) {
            emitter_poll(c->em, 0);
            report_progress(c);
            since_poll = 0;
        }

        pgo_copydata cd;
        if (pgo_parse_copydata((const uint8_t *)buf, (size_t)n, &cd, c->errbuf, sizeof c->errbuf) !=
            0) {
            cdc_error("protocol error: %s", c->errbuf);
            PQfreemem(buf);
            return STREAM_FATAL;
        }
        int result = -1;
        if (cd.kind == 'k') {
            if (cd.wal_end > c->received_lsn)
                c->received_lsn = cd.wal_end;
            c->keepalive_lsn = cd.wal_end;
            cdc_debug("keepalive: server WAL end " CDC_LSN_FMT "%s, in transaction: %d, idle: %d",
                      CDC_LSN_ARGS(cd.wal_end), cd.reply_requested ? " (reply requested)" : "",
                      c->in_txn, tracker_idle(&c->tr));
            if (cd.reply_requested) {
                advance_flush(c);
                if (send_status(c, false) != 0) {
                    source_problem(c, PQerrorMessage(c->repl));
                    result = STREAM_PG_LOST;
                }
            }
        } else {
            if (cd.wal_end > c->received_lsn)
                c->received_lsn = cd.wal_end;
            pgo_msg m;
            if (pgo_parse(c->parser, cd.payload, cd.payload_len, &m, c->errbuf, sizeof c->errbuf) !=
                0) {
                cdc_error("protocol error at LSN " CDC_LSN_FMT ": %s", CDC_LSN_ARGS(cd.wal_start),
                          c->errbuf);
                result = STREAM_FATAL;
            } else {
                result = handle_message(c, &m, cd.wal_start);
            }
        }
        PQfreemem(buf);
        if (result >= 0)
            return (stream_result)result;
    }
}

/* ---- the daemon ---- */

static void end_session(capture *c, bool producer_too)
{
    disconnect(c);
    /* The open transaction will be read again from the slot. */
    if (c->in_txn)
        tracker_abort_open(&c->tr);
    c->in_txn = false;
    /*
     * A keepalive vouches only for what this session's tracker holds: with
     * the producer rebuilt (tracker reset), the next session would confirm
     * the old WAL end before re-delivering what the failed producer lost.
     */
    c->keepalive_lsn = 0;
    c->received_lsn = 0;
    relcache_clear(c->rels);
    pgo_parser_reset(c->parser);
    if (producer_too && c->em) {
        emitter_destroy(c->em, 0);
        c->em = NULL;
        tracker_reset(&c->tr);
    }
}

static int backoff_wait(capture *c, int *backoff_ms)
{
    for (int waited = 0; waited < *backoff_ms && !*c->stop; waited += 100)
        sleep_ms(100);
    *backoff_ms = *backoff_ms * 2 > 30000 ? 30000 : *backoff_ms * 2;
    return *c->stop ? -1 : 0;
}

int capture_run(const capture_config *cfg, volatile sig_atomic_t *stop)
{
    capture c;
    memset(&c, 0, sizeof c);
    c.cfg = cfg;
    c.stop = stop;
    c.force_bootstrap = cfg->force_bootstrap;
    c.parser = pgo_parser_new();
    c.rels = relcache_new();
    tracker_init(&c.tr);
    int status = 0;
    int backoff = 1000;
    char conninfo[1024];
    cdc_redact_conninfo(cfg->source_conninfo, conninfo, sizeof conninfo);
    cdc_info("starting: source %s, slot %s, publication %s, topic prefix %s", conninfo,
             cfg->slot_name, cfg->publication_name, cfg->topic_prefix);

    while (!*stop) {
        if (!c.em) {
            emitter_opts eo = {
                .topic_prefix = cfg->topic_prefix,
                .db = c.dbname,
                .kafka = &cfg->kafka,
                .topic_partitions = cfg->topic_partitions,
                .topic_replication_factor = cfg->topic_replication_factor,
                .stop = stop,
                .idle_cb = idle_cb,
                .idle_opaque = &c,
            };
            c.em = emitter_new(&eo, &c.tr, c.errbuf, sizeof c.errbuf);
            if (!c.em) {
                cdc_error("%s", c.errbuf);
                status = 1;
                break;
            }
        }
        setup_result sr = start_session(&c, c.errbuf, sizeof c.errbuf);
        if (sr == SETUP_FATAL) {
            cdc_error("%s", c.errbuf);
            status = 1;
            break;
        }
        if (sr == SETUP_DONE || sr == SETUP_STOPPED)
            break;
        if (sr == SETUP_RETRY) {
            source_problem(&c, c.errbuf);
            /* A producer that failed a delivery (a load's row, a control
             * record) stays failed: start the next attempt with a new one. */
            char why[512];
            end_session(&c, c.em && emitter_broken(c.em, why, sizeof why));
            if (backoff_wait(&c, &backoff) != 0)
                break;
            continue;
        }
        if (c.state_err[0])
            cdc_info("source connection restored");
        c.state_err[0] = '\0';
        if (c.flushed_lsn)
            cdc_info("streaming from slot %s at " CDC_LSN_FMT, cfg->slot_name,
                     CDC_LSN_ARGS(c.flushed_lsn));
        else
            cdc_info("streaming from slot %s at its confirmed position", cfg->slot_name);
        backoff = 1000;
        c.last_status = pgo_now();

        stream_result r = stream(&c);
        if (r == STREAM_STOP)
            break;
        if (r == STREAM_FATAL) {
            status = 1;
            break;
        }
        end_session(&c, r == STREAM_KAFKA_BROKEN);
        if (r != STREAM_RELOAD && backoff_wait(&c, &backoff) != 0)
            break;
    }

    /* Shutdown: deliver what we can (bounded), confirm it, leave. */
    if (c.em) {
        int left = emitter_flush(c.em, status == 0 ? cfg->shutdown_timeout_ms : 0);
        advance_flush(&c);
        if (c.repl)
            send_status(&c, false);
        emitter_destroy(c.em, 0);
        c.em = NULL;
        if (left > 0)
            cdc_warn("%d events were not acknowledged by Kafka before the shutdown timeout; "
                     "they will be sent again on restart",
                     left);
    }
    cdc_info("stopped; confirmed flush LSN " CDC_LSN_FMT, CDC_LSN_ARGS(c.flushed_lsn));
    disconnect(&c);
    relcache_destroy(c.rels);
    pgo_parser_destroy(c.parser);
    tracker_free(&c.tr);
    return status;
}
