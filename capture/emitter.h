/*
 * Turns decoded changes into Avro events and hands them to Kafka: topic
 * creation, schema publication, event encoding, the idempotent producer and
 * its delivery reports (which feed the tracker).
 *
 * Blocking: when librdkafka's queue is full, or while waiting for a schema
 * or a topic, the emitter polls Kafka and calls `idle_cb` about every 100 ms
 * so the caller can keep the replication connection alive. It returns
 * EMIT_STOPPED as soon as *stop becomes true.
 */
#ifndef CDC_EMITTER_H
#define CDC_EMITTER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "cdc/config.h"
#include "encode.h"
#include "pgoutput.h"
#include "relcache.h"
#include "tracker.h"

typedef enum emit_status {
    EMIT_OK = 0,
    EMIT_RETRY = 1,   /* Kafka trouble: restart the session, nothing is lost */
    EMIT_FATAL = 2,   /* the event cannot be produced (errstr says why) */
    EMIT_STOPPED = 3, /* *stop became true while waiting */
    EMIT_STALE = 4,   /* a value the relation's schema does not describe (an enum
                       * label added since): nothing was produced; errstr says which */
} emit_status;

typedef struct emitter_opts {
    const char *topic_prefix;
    const char *db;           /* source database name (source.db) */
    const cdc_kv_list *kafka; /* user's kafka.* settings */
    int topic_partitions;
    int topic_replication_factor; /* -1 = broker default */
    volatile sig_atomic_t *stop;
    void (*idle_cb)(void *opaque);
    void *idle_opaque;
} emitter_opts;

typedef struct emitter emitter;

/* The tracker is borrowed and must outlive the emitter. */
emitter *emitter_new(const emitter_opts *opts, tracker *t, char *errstr, size_t errstr_size);
/* Waits up to timeout_ms for outstanding deliveries, then destroys. */
void emitter_destroy(emitter *em, int timeout_ms);

/* Make sure the relation's topic exists and its schemas are in Kafka. */
emit_status emitter_prepare(emitter *em, relation *r, char *errstr, size_t errstr_size);

/*
 * One row change. op: 'c' insert, 'u' update, 'd' delete, 'r' snapshot
 * read. `before`/`after` may be NULL. An update whose key changed becomes a
 * delete + tombstone + insert; a delete is followed by a tombstone.
 */
emit_status emitter_change(emitter *em, relation *r, char op, const pgo_tuple *before,
                           const pgo_tuple *after, event_ctx *ctx, char *errstr,
                           size_t errstr_size);
/* A truncate event on every partition of the relation's topic. */
emit_status emitter_truncate(emitter *em, relation *r, event_ctx *ctx, char *errstr,
                             size_t errstr_size);

/*
 * Write one record (key, value) to the compacted control topic `topic`
 * (created on first use) and wait until Kafka acknowledged it. Used for the
 * schema topic and the bootstrap state.
 */
emit_status emitter_put_control(emitter *em, const char *topic, const char *key,
                                const void *value, size_t value_len, char *errstr,
                                size_t errstr_size);

/* Serve delivery reports. */
void emitter_poll(emitter *em, int timeout_ms);
/* True when deliveries failed or the producer hit a fatal error. */
bool emitter_broken(emitter *em, char *errstr, size_t errstr_size);
/* Wait until nothing is outstanding or the timeout passes; returns outstanding count. */
int emitter_flush(emitter *em, int timeout_ms);

#endif
