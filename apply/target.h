/*
 * The target database side of cdc-apply: connection, applied positions,
 * table creation and evolution, and writing one batch of a table.
 *
 * Positions: table {state.schema}.apply_positions holds, per consumer
 * group and topic-partition, the next Kafka offset to read and the highest
 * (commit_lsn, ordinal) applied. It is written in the same transaction as
 * the rows it covers, which is what makes the effect exactly-once.
 */
#ifndef CDC_APPLY_TARGET_H
#define CDC_APPLY_TARGET_H

#include <stdbool.h>
#include <stdint.h>

#include "batch.h"
#include "cdc/event.h"

typedef struct target target;

typedef struct target_pos {
    int64_t next_offset; /* -1 when nothing is recorded */
    uint64_t commit_lsn;
    int64_t ordinal;
} target_pos;

/* Outcome of a statement: retriable (connection) vs rejected (the data). */
typedef enum target_status {
    TARGET_OK = 0,
    TARGET_RETRY = 1,  /* connection lost or similar: reconnect, replay */
    TARGET_REJECT = 2, /* the target refused the rows: errstr and sqlstate say why */
    TARGET_FATAL = 3,  /* the target cannot be brought where the events need it (a load's
                          primary key cannot be added): no event is at fault; stop */
} target_status;

target *target_new(const char *conninfo, const char *state_schema, const char *group_id,
                   bool auto_create, bool auto_evolve);
void target_destroy(target *t);
bool target_connected(const target *t);
/* Connect and create the state tables if needed. */
target_status target_connect(target *t, char *errstr, size_t errstr_size);
void target_disconnect(target *t);

/* Read the recorded position of a partition (outside any batch). */
target_status target_position(target *t, const char *topic, int32_t partition, target_pos *out,
                              char *errstr, size_t errstr_size);

target_status target_begin(target *t, char *errstr, size_t errstr_size);
target_status target_commit(target *t, char *errstr, size_t errstr_size);
void target_rollback(target *t);
target_status target_savepoint(target *t, const char *cmd, char *errstr, size_t errstr_size);

/*
 * Inside a batch transaction: lock the position row of the partition and
 * report whether it still says `expected_next` (-1 = no row). A mismatch
 * means another process applied this partition meanwhile (a rebalance):
 * the caller must roll back and re-read.
 */
target_status target_check_position(target *t, const char *topic, int32_t partition,
                                    int64_t expected_next, bool *matches, char *errstr,
                                    size_t errstr_size);
target_status target_save_position(target *t, const char *topic, int32_t partition,
                                   const target_pos *pos, char *errstr, size_t errstr_size);

/*
 * The same two steps for every partition of a batch in one statement each
 * (one round trip instead of one per partition). The check locks the rows in
 * (topic, partition) order, so processes with overlapping partitions lock
 * them in the same order. parts[] is borrowed; the check fills `matches`.
 */
typedef struct target_part {
    const char *topic;
    int32_t partition;
    int64_t expected_next; /* check: what the row must say, -1 = no row */
    bool matches;          /* check: the result */
    target_pos pos;        /* save: the position to record */
} target_part;

target_status target_check_positions(target *t, target_part *parts, size_t n, char *errstr,
                                     size_t errstr_size);
target_status target_save_positions(target *t, const target_part *parts, size_t n, char *errstr,
                                    size_t errstr_size);

/* True if the table of `s` is known to exist with all its columns on this connection. */
bool target_table_ready(const target *t, const cdc_table_schema *s);
/*
 * Make sure the table of `s` exists with all its columns (auto.create/evolve).
 * `load`: the rows about to be written are a bootstrap's snapshot reads. A
 * table with a key that has to be created for them is created without its
 * primary key, which is added once its load is applied (below): one index
 * build instead of millions of inserts into the index in no particular
 * order. {state.schema}.apply_deferred_keys lists such tables, in the same
 * transaction as the table itself.
 */
target_status target_prepare_table(target *t, const cdc_table_schema *s, bool load, char *errstr,
                                   size_t errstr_size);
/*
 * Write the reduced rows of `b` (whose schema is `s`). A table still waiting
 * for its primary key takes a batch of nothing but reads (batch_only_reads)
 * with a plain COPY; any other batch first adds the key (in this
 * transaction), then is written as usual. A key that cannot be added (the
 * table holds a duplicate: rows from elsewhere) returns TARGET_FATAL.
 */
target_status target_apply_batch(target *t, const cdc_table_schema *s, const batch *b, char *errstr,
                                 size_t errstr_size);
/*
 * Add the primary key of every table still waiting for it, each in a
 * transaction of its own (outside any batch). TARGET_FATAL as above.
 */
target_status target_finish_loads(target *t, char *errstr, size_t errstr_size);
/* The tables still waiting for their primary key, as "schema.table, ..." (empty: none). */
target_status target_pending_loads(target *t, cdc_buf *names, char *errstr, size_t errstr_size);
/*
 * Empty the stage of `s`. The stage is ON COMMIT DELETE ROWS, so this is
 * only needed when one transaction writes the same table twice.
 */
target_status target_clear_stage(target *t, const cdc_table_schema *s, char *errstr,
                                 size_t errstr_size);
target_status target_truncate(target *t, const cdc_table_schema *s, char *errstr,
                              size_t errstr_size);

/*
 * Truncate coordination across partitions (and processes): record that
 * `partition` reached the truncate at (commit_lsn, ordinal) whose event is
 * at `offset`, then, if every one of `npartitions` partitions has, apply
 * the truncate and move each of those partitions' position past its
 * truncate event. *done tells whether the truncate is applied (by this call
 * or earlier). *moved: the partition's recorded next offset is not
 * `expected_next` (another process moved it); nothing was recorded.
 */
target_status target_truncate_arrive(target *t, const cdc_table_schema *s, const char *topic,
                                     int32_t partition, int npartitions, uint64_t commit_lsn,
                                     int64_t ordinal, int64_t offset, int64_t expected_next,
                                     bool *done, bool *moved, char *errstr, size_t errstr_size);

#endif
