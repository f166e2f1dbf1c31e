/*
 * Encoding of change events into Avro single-object messages (pure: no
 * Kafka, no I/O), shared by streaming and bootstrap and unit-tested by
 * decoding its output with avro-c.
 *
 * Value body, in the field order of schemas/envelope.avsc:
 *   before  union{null, Value}      after  union{null, Value}
 *   source  version, connector, name, ts_ms, snapshot, db, schema, table,
 *           txId union{null,long}, lsn union{null,long}
 *   op      string                  ts_ms  union{null, long}
 *   commit_lsn long, ordinal long, unchanged_toast array<string>
 * Value record: one union{null, T} per column, T per cdc_pgtype_map; an
 * unchanged TOASTed value is null there and named in unchanged_toast.
 * Key body: one T per key column.
 */
#ifndef CDC_ENCODE_H
#define CDC_ENCODE_H

#include <stdint.h>

#include "cdc/buf.h"
#include "pgoutput.h"
#include "relcache.h"

/* Position of one event (see the event contract in README.md). */
typedef struct event_ctx {
    uint64_t seq; /* tracker entry of the transaction */
    uint64_t commit_lsn;
    int64_t commit_ms; /* commit time, ms since the Unix epoch */
    uint32_t xid;
    uint64_t lsn;         /* LSN of the change record */
    int64_t ordinal;      /* ordinal of the next event in the transaction */
    const char *snapshot; /* "false" when streaming */
} event_ctx;

/* Reusable output buffers; `db` is borrowed (the prefix is copied into source_head). */
typedef struct encoder {
    const char *db;
    cdc_buf source_head; /* source.version, .connector, .name: the same in every event */
    cdc_buf key;
    cdc_buf value;
    int *toast_idx;
    int toast_cap;
} encoder;

void encoder_init(encoder *e, const char *prefix, const char *db);
void encoder_free(encoder *e);

/* Check a tuple has the relation's column count. */
int encode_check_tuple(const relation *r, const pgo_tuple *t, char *errstr, size_t errstr_size);
/*
 * -1 if every enum value of `t` (may be NULL) is one of the labels its
 * column's schema lists, else the index of the first column whose value is
 * not: an enum label added after the schema was built.
 */
int encode_unknown_label(const relation *r, const pgo_tuple *t);
/* Key of `t` into e->key. Fails if a key column has no value. */
int encode_key(encoder *e, const relation *r, const pgo_tuple *t, char *errstr, size_t errstr_size);
/* Envelope into e->value; op is 'c','u','d','t' or 'r'; now_ms fills ts_ms. */
int encode_envelope(encoder *e, const relation *r, char op, const pgo_tuple *before,
                    const pgo_tuple *after, const event_ctx *ctx, int64_t now_ms, char *errstr,
                    size_t errstr_size);

#endif
