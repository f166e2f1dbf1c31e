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

#endif
