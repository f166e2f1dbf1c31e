/*
 * Batch reduction for cdc-apply: many change events of one table, in
 * stream order, reduced to one net effect per key, so a batch is written
 * with a few set-based statements instead of one round trip per event.
 *
 * Net effect of a key's events (each later event applied to the earlier
 * effect):
 *   (none)  + c/r          -> UPSERT  full row
 *   (none)  + u            -> REPLACE full row (an update of a row that
 *                             should exist: written as an UPDATE, and
 *                             inserted only if the target lacks it), or
 *                             UPDATE when some columns are unchanged
 *                             TOASTed values (their current target value
 *                             must be kept, so the row must exist: no
 *                             insert)
 *   (none)  + d            -> DELETE
 *   UPSERT  + u            -> UPSERT  with the update's values; columns the
 *                             update left unchanged keep the UPSERT's value
 *   REPLACE + u            -> REPLACE merged the same way
 *   UPDATE  + u            -> UPDATE  merged the same way (a column stays
 *                             "unchanged" only if no event gave it a value)
 *   UPSERT/REPLACE/UPDATE + d -> DELETE
 *   DELETE  + c/r          -> UPSERT  (the row is replaced as a whole)
 *   DELETE  + u            -> DELETE then the u as above (kept as REPLACE /
 *                             UPDATE: an update of a deleted key is a
 *                             stream inconsistency, the later event wins)
 * The key of an event is the values of the schema's key columns, taken from
 * `after` for c/u/r and from `before` for d.
 *
 * Tables without a key (REPLICA IDENTITY FULL, null Kafka key) are not
 * reduced: every event is kept in order (batch_rows_ordered).
 *
 * Memory: texts are copied into the batch's own arena; a batch holds at most
 * the events the caller adds (the caller bounds that by batch.max.events).
 */
#ifndef CDC_APPLY_BATCH_H
#define CDC_APPLY_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdc/buf.h"
#include "cdc/event.h"

typedef enum batch_op {
    BATCH_UPSERT = 'U',  /* insert, or replace every column given */
    BATCH_REPLACE = 'W', /* update every column; insert if the row is missing */
    BATCH_UPDATE = 'P', /* partial: update the columns given, row must exist */
    BATCH_DELETE = 'D',
    /* keyless tables only, in order: */
    BATCH_INSERT = 'I',     /* plain insert */
    BATCH_ROW_UPDATE = 'R', /* update one row equal to `old` to `vals` */
    BATCH_ROW_DELETE = 'X', /* delete one row equal to `old` */
} batch_op;

/* A column value in a reduced row. */
typedef struct batch_val {
    cdc_colstate state; /* CDC_COL_NULL, CDC_COL_UNCHANGED or CDC_COL_VALUE */
    size_t off;         /* CDC_COL_VALUE: NUL-terminated text in the batch arena */
    size_t len;
} batch_val;

typedef struct batch_row {
    batch_op op;
    batch_val *vals; /* nfields entries: the new row (UPSERT/UPDATE/INSERT/ROW_UPDATE),
                        or the key columns' values for DELETE (others NULL) */
    batch_val *old;  /* ROW_UPDATE/ROW_DELETE: the old row (nfields entries), else NULL */
    uint64_t commit_lsn; /* position of the last event folded into this row */
    int64_t ordinal;
} batch_row;

typedef struct batch batch;

/*
 * A batch for one table schema (borrowed: must outlive the batch). Events
 * written with an older schema version of the same table are added after
 * mapping their columns by true name (batch_add takes the event's schema).
 */
batch *batch_new(const cdc_table_schema *schema);
void batch_destroy(batch *b);
/* Forget every row, keep the allocations. */
void batch_clear(batch *b);

/*
 * Fold one decoded event (op c/u/d/r; not t) into the batch. `ev_schema` is
 * the schema the event was written with; its columns are matched to the
 * batch schema by true name (a column the batch schema lacks is an error; a
 * column the event lacks is CDC_COL_UNCHANGED in an update and NULL in an
 * insert or read, which has no earlier value to keep). The event is
 * borrowed: its texts are copied. Returns 0, or -1 with errstr (e.g. a key
 * column without a value); after an error the batch is as it was.
 */
int batch_add(batch *b, const cdc_table_schema *ev_schema, const cdc_event *ev, char *errstr,
              size_t errstr_size);

/*
 * Number of reduced rows, and row i (in first-seen order of their key; NULL
 * when out of range). Rows and texts belong to the batch and stay valid
 * until the next batch_add, batch_clear or batch_destroy (storage moves).
 */
size_t batch_count(const batch *b);
const batch_row *batch_row_at(const batch *b, size_t i);
/* Text of a value (NUL-terminated), or NULL unless v->state is CDC_COL_VALUE. */
const char *batch_text(const batch *b, const batch_val *v);
/*
 * True when the values are in PostgreSQL's binary form (the events were
 * decoded with cdc_event_decode_as(binary)): the batch is written with
 * COPY ... (FORMAT binary), and batch_text is not text. A batch holds one
 * form: the first event sets it, and batch_add refuses an event of the other.
 */
bool batch_binary(const batch *b);
/* True when the table has no key: rows are in event order, unreduced. */
bool batch_keyless(const batch *b);
/*
 * True when the batch holds rows and every event added was a snapshot read
 * ('r') of a key not already in the batch (a table with a key): its rows are
 * plain inserts of distinct keys, which a table whose primary key waits for
 * the end of its load (target.h) takes without a conflict check.
 */
bool batch_only_reads(const batch *b);

#endif
