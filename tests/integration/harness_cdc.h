/*
 * Integration-test helpers specific to cdc (on top of harness.h): running
 * the daemons, waiting for the slot, and decoding events with our own
 * decoder (exact PostgreSQL text of every column) next to avro-c's.
 */
#ifndef CDC_TEST_HARNESS_CDC_H
#define CDC_TEST_HARNESS_CDC_H

#include "cdc/event.h"
#include "cdc/registry.h"
#include "harness.h"

/* A unique topic prefix for this test process (safe on a shared real Kafka). */
const char *th_prefix(void);

/*
 * Start cdc-capture on database `db` of `pg` into `bootstrap` with topic
 * prefix th_prefix(), logging to `logname` in the test directory; `extra` is
 * a NULL-terminated list of further KEY=VALUE settings (may be NULL). Waits
 * until it streams (asserts after 30 s).
 */
void th_capture_start(th_proc *p, const th_pg *pg, const char *db, const char *bootstrap,
                      const char *logname, const char *const *extra);

/* Current WAL insert position of the server (pg_current_wal_insert_lsn) as a number. */
uint64_t th_wal_lsn(PGconn *conn);
/* Confirmed flush position of `slot`, 0 if it does not exist. */
uint64_t th_slot_flush(PGconn *conn, const char *slot);
/* Wait until `slot` confirmed at least `lsn`; returns false on timeout. */
bool th_wait_slot(PGconn *conn, const char *slot, uint64_t lsn, int timeout_ms);

/* "{prefix}.{schema}.{table}" for this test's prefix (no sanitising). */
const char *th_topic(const char *schema, const char *table, char *buf, size_t size);

/* Read every message of a topic currently there (or at least `want`). */
th_msgs *th_read_topic(const char *bootstrap, const char *topic, size_t want, int timeout_ms,
                       cdc_registry *reg);

/*
 * Decode the value of `m` with cdc's decoder: finds the writer schema in
 * `reg` (loading {prefix}._schemas again if needed). Returns the parsed table
 * schema (caller frees) and fills ev; asserts on failure.
 */
cdc_table_schema *th_decode(const char *bootstrap, cdc_registry *reg, const th_msg *m,
                            cdc_event *ev);
/* Text of column `pg_name` in the after (or before) row; NULL if null/unchanged. */
const char *th_col(const cdc_table_schema *s, const cdc_event *ev, bool after, const char *pg_name);
/* The key message decoded to JSON by avro-c, e.g. {"id": 1}. */
const char *th_key_json(const th_msg *m);

/* ---- cdc-apply ----------------------------------------------------------- */

/*
 * Start cdc-apply writing to database `db` of `pg`, reading `bootstrap` with
 * topic prefix th_prefix() and kafka.session.timeout.ms=6000 (so a member
 * killed with -9 is replaced quickly), logging to `logname` in the test
 * directory; `extra` is a NULL-terminated list of further KEY=VALUE
 * settings (may be NULL; they come last, so they override). Waits until it
 * logged its start line (asserts after 30 s or if it exits first); it does
 * not wait for the consumer group.
 */
void th_apply_start(th_proc *p, const th_pg *pg, const char *db, const char *bootstrap,
                    const char *logname, const char *const *extra);

/*
 * Row-by-row comparison of two relations of one cluster: `src_rel` in
 * database `src_db` and `dst_rel` in `dst_db` (SQL text usable after FROM,
 * e.g. "public.pay" or "(SELECT * FROM pay WHERE id <> 3)"). Rows are
 * compared as their text (t::text), as multisets: count and md5 of the
 * sorted texts. Polls until equal or timeout_ms; returns true when equal.
 * On timeout, writes to diff (diff_size bytes) the counts and the first
 * rows found on only one side. Connection failures count as "not yet".
 */
bool th_wait_same_rows(const th_pg *pg, const char *src_db, const char *src_rel,
                       const char *dst_db, const char *dst_rel, int timeout_ms, char *diff,
                       size_t diff_size);
/*
 * th_wait_same_rows for every table of the NULL-terminated list (same name
 * in both databases) within one overall timeout; asserts with the
 * differences of the first table that did not converge.
 */
void th_assert_converge(const th_pg *pg, const char *src_db, const char *dst_db,
                        const char *const *tables, int timeout_ms);
/*
 * th_assert_converge that also fails as soon as `alive` (e.g. cdc-apply)
 * exits, instead of waiting out the timeout for a target that can no
 * longer change.
 */
void th_assert_converge_alive(const th_pg *pg, const char *src_db, const char *dst_db,
                              const char *const *tables, int timeout_ms, th_proc *alive);

/* ---- Kafka headers and re-production ------------------------------------ */

typedef struct th_hmsg {
    int32_t partition;
    int64_t offset;
    void *key; /* NULL when absent */
    size_t key_len;
    void *value; /* NULL for a tombstone */
    size_t value_len;
    size_t nhdr;
    char **hdr_name;  /* nhdr names */
    char **hdr_value; /* nhdr values, NUL-terminated copies (NULL for a null value) */
} th_hmsg;

typedef struct th_hmsgs {
    th_hmsg *v; /* sorted by partition, then offset */
    size_t n;
} th_hmsgs;

/*
 * Read `topic` from the beginning like th_consume (without decoding) but
 * keep the headers: at least `want` messages, or (want 0) everything up to
 * the end offsets; caller frees with th_hmsgs_free.
 */
th_hmsgs *th_consume_headers(const char *bootstrap, const char *topic, size_t want,
                             int timeout_ms);
void th_hmsgs_free(th_hmsgs *m);
/* Value of the first header `name` of m, or NULL. Borrowed. */
const char *th_hdr(const th_hmsg *m, const char *name);

/*
 * Produce every message of `m` again, to the same topic and partition with
 * the same key and value (tombstones stay tombstones), in order, with one
 * idempotent producer; asserts that all were delivered.
 */
void th_reproduce(const char *bootstrap, const th_msgs *m);

/* ---- bootstrap tests (test_bootstrap.c) ---------------------------------- */

/*
 * Start cdc-capture like th_capture_start but without waiting for anything:
 * `flags` (NULL-terminated, may be NULL) are command-line arguments placed
 * before the settings (e.g. "--bootstrap"), `extra` further KEY=VALUE
 * settings (may be NULL; they come last, so they override). For runs that
 * are killed during the load or exit by themselves (bootstrap.mode=only).
 */
void th_capture_spawn(th_proc *p, const th_pg *pg, const char *db, const char *bootstrap,
                      const char *logname, const char *const *flags, const char *const *extra);
/*
 * Wait until the log `logname` (in the test directory) of `p` contains
 * `needle`; false on timeout or if `p` exited first (its log is checked once
 * more after the exit).
 */
bool th_wait_log_alive(th_proc *p, const char *logname, const char *needle, int timeout_ms);

#endif
