/*
 * Integration-test harness (library cdcharness, prefix th_): real
 * PostgreSQL clusters, a Kafka broker, child processes and Kafka reading for
 * the Criterion suites in tests/integration/.
 *
 * How it fits Criterion. Criterion runs every Test in its own forked worker
 * process (unless --debug/--no-fork), so process-wide state here is per
 * test. The th_* functions that can fail report through cr_assert and stop
 * the test, so they may only be called from a test body or its .init/.fini
 * fixtures. Start servers in .init and stop them in .fini: a failed
 * assertion skips the rest of the test body, not the .fini.
 *
 * Files. Every test gets a directory of its own, th_test_dir(), for logs
 * (devbroker.log, whatever a test passes to th_spawn) and links to its
 * PostgreSQL clusters. Hooks in the runner process act when a test ends:
 *   - if the test failed or crashed, the last lines of every log of the test
 *     are printed and the directory is kept (its path is printed);
 *   - postmasters the test left running are killed (a crashed test never
 *     reached its .fini), data directories are removed;
 *   - the directory of a passing test is removed.
 * (The hooks are Criterion ReportHooks in harness.c; Criterion names hook
 * symbols by line number, so a ReportHook in a test file could clash.)
 * CDC_TEST_KEEP=1 keeps everything. Also, inside the worker, th_pg_stop and
 * an atexit handler kill postmasters, and every process started with
 * th_spawn/th_broker_start is killed by the kernel when the worker dies
 * (PR_SET_PDEATHSIG; so spawn from the test's main thread only).
 *
 * Environment:
 *   CDC_PG_BIN        PostgreSQL bin directory (else /usr/lib/postgresql/15/bin,
 *                     else `pg_config --bindir`)
 *   CDC_TEST_BROKERS  bootstrap servers of a real Kafka; th_broker_start then
 *                     starts nothing and fault-injection tests should skip
 *                     (th_broker_external())
 *   CDC_TEST_PG       libpq key=value conninfo of a running PostgreSQL
 *                     (superuser, wal_level=logical) to use instead of
 *                     starting clusters: th_pg_start then starts nothing and
 *                     every database a test creates is named
 *                     cdct<pid>_<n>_<name> and dropped (with its replication
 *                     slots) by th_pg_stop; leftovers of earlier runs are
 *                     dropped at the next start, so one test run at a time
 *                     per server. Tests that restart the server are skipped.
 *   CDC_TEST_KEEP     keep data directories and logs
 *   TMPDIR            where clusters and logs go (default /tmp); when running
 *                     as root it must be traversable by the postgres user
 */
#ifndef CDC_TEST_HARNESS_H
#define CDC_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include "cdc/registry.h"

#define TH_PATH_MAX 512

/* The directory of the running test (created on first use; harness-owned). */
const char *th_test_dir(void);
/* Milliseconds on a monotonic clock. */
int64_t th_now_ms(void);

/* ---- child processes --------------------------------------------------- */

typedef struct th_proc {
    pid_t pid;                 /* 0 once reaped (or never started) */
    char logfile[TH_PATH_MAX]; /* where its stdout and stderr go */
    int status;                /* wait status, valid once reaped */
} th_proc;

/*
 * Start argv[0] (looked up in PATH if it has no '/') with argv, stdin from
 * /dev/null, stdout and stderr appended to `logfile` (relative paths are
 * under th_test_dir()). argv is not retained. Asserts on failure; an exec
 * failure shows up as exit status 127 and a line in the log.
 */
void th_spawn(th_proc *p, const char *logfile, char *const argv[]);
/* Send `sig`; returns 0, or -1 if the process is already reaped or gone. */
int th_proc_kill(th_proc *p, int sig);
/*
 * Wait up to timeout_ms (< 0: forever) for the process to exit. Returns 0
 * and its wait status in *status (may be NULL; also kept in p->status), or
 * -1 on timeout.
 */
int th_proc_wait(th_proc *p, int timeout_ms, int *status);
/* SIGTERM, wait up to timeout_ms, then SIGKILL. Returns the wait status. */
int th_proc_stop(th_proc *p, int timeout_ms);
/* Exit code if it exited normally, else 128 + signal; -1 if not reaped. */
int th_proc_exit_code(const th_proc *p);

/* Print the last `lines` lines of `path` to stderr, framed by its name. */
void th_log_tail(const char *path, int lines);
/* Wait until `path` contains `needle`; returns true if it did in time. */
bool th_wait_log(const char *path, const char *needle, int timeout_ms);

/* ---- PostgreSQL -------------------------------------------------------- */

typedef struct th_pg {
    char dir[TH_PATH_MAX];     /* cluster directory; also the unix socket directory */
    char datadir[TH_PATH_MAX]; /* dir/data */
    char logfile[TH_PATH_MAX]; /* dir/postgresql.log (kept after stop) */
    char bindir[TH_PATH_MAX];
    int port;  /* TCP port on 127.0.0.1 */
    pid_t pid; /* postmaster, 0 when stopped */
    int slot;  /* index in the harness's table of running clusters */
    bool external;      /* CDC_TEST_PG: a server the harness did not start */
    char dbprefix[64];  /* external: prefix of this "cluster's" databases */
} th_pg;

/* True when CDC_TEST_PG names a server to use instead of starting clusters. */
bool th_pg_external(void);

/*
 * Create and start a cluster: superuser "postgres", trust authentication,
 * wal_level=logical, 20 replication slots and WAL senders, fsync off, a free
 * port on 127.0.0.1. The first call for a given bin directory runs initdb
 * into a cached template (TMPDIR/cdc-test-template-<uid>-<hash>, guarded by
 * flock), every cluster is a copy of it. As root, initdb and the server run
 * as the `postgres` user. Asserts on failure with the server log.
 */
void th_pg_start(th_pg *pg);
/* Fast shutdown; removes the data directory unless CDC_TEST_KEEP is set. */
void th_pg_stop(th_pg *pg);
/* Fast restart on the same port and data; asserts on failure. Skips the
 * test on an external server (CDC_TEST_PG). */
void th_pg_restart(th_pg *pg);
/*
 * libpq conninfo for `dbname` over TCP as the superuser, written to buf
 * (TH_PATH_MAX bytes is plenty); returns buf. Append " replication=database"
 * for a walsender connection.
 */
const char *th_pg_conninfo(const th_pg *pg, const char *dbname, char *buf, size_t size);
/* The server-side name of the test database `name` (prefixed on CDC_TEST_PG). */
const char *th_pg_dbname(const th_pg *pg, const char *name, char *buf, size_t size);
/* Connect to `dbname`; asserts on failure. The caller PQfinish()es it. */
/*
 * A TCP port on 127.0.0.1 that accepts connections (the kernel's backlog)
 * and never answers, like a hung server or pooler. Returns the socket (close
 * it when done); the port goes to *port.
 */
int th_silent_listener(int *port);

PGconn *th_pg_connect(const th_pg *pg, const char *dbname);
/* CREATE DATABASE `name` (quoted as an identifier); asserts on failure. */
void th_pg_createdb(const th_pg *pg, const char *name);
/* The usual fixture: start `pg`, create databases src and dst, connect to both. */
void th_pg_start_src_dst(th_pg *pg, PGconn **src, PGconn **dst);
/* Close the two connections (those open) and stop `pg`. */
void th_pg_stop_src_dst(th_pg *pg, PGconn **src, PGconn **dst);

/* Run one or more statements; on error the test fails with Postgres' message. */
void th_sql(PGconn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Run a query and return the first column of its first row as a string the
 * caller free()s, or NULL if there is no row or the value is NULL. Asserts
 * on error.
 */
char *th_sql_value(PGconn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same value as a number: -1 if there is no row or the value is NULL. */
long th_sql_long(PGconn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Kafka broker ------------------------------------------------------ */

typedef struct th_broker {
    char bootstrap[1024];
    bool external; /* CDC_TEST_BROKERS: a real cluster, no fault injection */
    th_proc proc;  /* cdc-devbroker */
    int cmd_fd;    /* its stdin */
    int out_fd;    /* its stdout */
    char out[1024];
    size_t out_len;
} th_broker;

/* True when CDC_TEST_BROKERS names a real cluster. */
bool th_broker_external(void);
/*
 * Start cdc-devbroker with `nbrokers` brokers (log: th_test_dir()/devbroker.log)
 * and read its bootstrap string, or use CDC_TEST_BROKERS. Asserts on failure.
 */
void th_broker_start(th_broker *b, int nbrokers);
/*
 * Send one devbroker command ("down 1", "up 1", "rtt 1 500",
 * "create TOPIC N") and wait for its answer. th_broker_cmd asserts that the
 * answer is "ok"; th_broker_request returns 0 for "ok" and -1 otherwise with
 * the answer in reply. Neither is possible on an external broker.
 */
void th_broker_cmd(th_broker *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int th_broker_request(th_broker *b, const char *line, char *reply, size_t reply_size);
/* SIGTERM the devbroker and wait; returns its exit code (0 = clean), or 0 if external. */
int th_broker_stop(th_broker *b);

/* ---- Kafka reading and writing ----------------------------------------- */

typedef struct th_msg {
    char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp; /* ms since the epoch, -1 if unknown */
    void *key;         /* NULL when the message has no key */
    size_t key_len;
    void *value; /* NULL for a tombstone */
    size_t value_len;
    char *key_json;     /* key decoded through the registry, else NULL */
    char *value_json;   /* value decoded through the registry, else NULL */
    char *decode_error; /* why key or value did not decode, else NULL */
} th_msg;

/* Messages sorted by partition, then offset. Owned by the caller: th_msgs_free. */
typedef struct th_msgs {
    th_msg *v;
    size_t n;
} th_msgs;

typedef struct th_consume_opts {
    const char *bootstrap; /* required */
    const char *topic;     /* required; waited for if it does not exist yet */
    /* Stop once this many messages arrived; 0 = read every partition up to
     * the end offsets it has when the topic is first seen. */
    size_t want;
    int timeout_ms; /* overall; 0 = 30000 */
    /* Decode Avro single-object keys and values with the schemas of
     * "{schema_prefix}._schemas" (re-read when a fingerprint is unknown).
     * NULL = no decoding. */
    const char *schema_prefix;
    /* Optional, borrowed: a registry to use and extend across calls. */
    cdc_registry *registry;
} th_consume_opts;

/*
 * Read o->topic (all partitions) from the beginning with a consumer of its
 * own (no commits). The topic is looked for in a listing of all topics:
 * asking for it by name would make the devbroker (and brokers with
 * auto.create.topics.enable) create it with default settings. Never returns NULL; fewer messages
 * than wanted means the timeout passed. The test asserts on the count it expects.
 */
th_msgs *th_consume(const th_consume_opts *o);
void th_msgs_free(th_msgs *m);
/* The run of messages of `partition` (offset order) and its length in *count. */
const th_msg *th_msgs_partition(const th_msgs *m, int32_t partition, size_t *count);

/*
 * Produce one message synchronously with a plain producer (partition -1 =
 * partitioner's choice; value NULL = tombstone). Asserts on failure; returns
 * the offset it got.
 */
int64_t th_produce(const char *bootstrap, const char *topic, int32_t partition, const void *key,
                   size_t key_len, const void *value, size_t value_len);

#endif
