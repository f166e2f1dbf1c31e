/*
 * Bootstrap: the consistent full load of every published table, handed
 * over to streaming with no gap and no overlap.
 *
 * The slot is created with an exported snapshot; every worker connection
 * imports it (REPEATABLE READ + SET TRANSACTION SNAPSHOT) and reads with
 * COPY, so the load is exactly the database at the slot's consistent point,
 * and streaming from the slot starts at that point. Large tables are split
 * into ctid block ranges so one table also loads in parallel. Workers are
 * connections, not threads: one thread multiplexes their COPY streams, so
 * the server scans in parallel while encoding stays in the capture thread.
 *
 * Rows become events with op "r", source.snapshot "true" ("last" on the
 * final one), commit_lsn = the consistent point, keyed and partitioned like
 * streamed events. When an earlier load went through the slot (interrupted,
 * or --bootstrap), each table first gets a truncate event at the same
 * point, so a consumer holding rows of that load is reset.
 *
 * State: the compacted topic {prefix}._bootstrap records, per slot,
 * "loading" before the slot is created and "done" once Kafka acknowledged
 * every row. A restart that finds "loading" drops the slot and starts over:
 * the stream never starts from a slot whose rows were not all loaded.
 */
#ifndef CDC_BOOTSTRAP_H
#define CDC_BOOTSTRAP_H

#include <signal.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "capture.h"
#include "emitter.h"
#include "relcache.h"
#include "tracker.h"

typedef enum boot_status {
    BOOT_OK = 0,
    BOOT_RETRY,   /* Postgres or Kafka trouble: start over */
    BOOT_FATAL,   /* errstr says why (e.g. a table that cannot be read) */
    BOOT_STOPPED, /* *stop became true */
} boot_status;

typedef struct bootstrap_env {
    const capture_config *cfg;
    PGconn *repl; /* replication connection: creates the slot */
    PGconn *sql;  /* catalog queries */
    emitter *em;
    relcache *rels;
    tracker *tr;
    volatile sig_atomic_t *stop;
    bool reset; /* a load went through this slot before: start with truncates */
} bootstrap_env;

/* The state of `slot` in {prefix}._bootstrap: "", "loading" or "done". */
typedef struct bootstrap_state {
    char state[16];
    char consistent_point[32];
} bootstrap_state;

int bootstrap_state_read(const capture_config *cfg, bootstrap_state *out, char *errstr,
                         size_t errstr_size);
emit_status bootstrap_state_write(emitter *em, const capture_config *cfg, const char *state,
                                  uint64_t consistent_point, int64_t rows, char *errstr,
                                  size_t errstr_size);

/*
 * Create the slot with an exported snapshot, load every published table
 * and wait until Kafka acknowledged every row. On BOOT_OK *consistent_point
 * is where streaming starts. The slot must not exist.
 */
boot_status bootstrap_load(bootstrap_env *env, uint64_t *consistent_point, int64_t *rows,
                           char *errstr, size_t errstr_size);

/*
 * Decode one COPY text-format line (without its newline) into `values`,
 * unescaping into `scratch`; pointers in values point into scratch. Returns
 * the number of fields, or -1 if the line is malformed. Exposed for tests.
 */
int bootstrap_parse_copy_line(const char *line, size_t len, cdc_buf *scratch, pgo_value *values,
                              int max_values);

#endif
