/*
 * Consumer side of the event contract: the writer schemas of Avro
 * single-object encoded messages, by fingerprint.
 *
 * cdc-capture publishes every schema it writes with to the compacted topic
 * "{prefix}._schemas" before the first event that uses it:
 *   key   = the CRC-64-AVRO fingerprint as 16 lowercase hex digits
 *   value = the schema JSON (a tombstone is ignored: schemas never retire,
 *           old events keep referring to them)
 * A consumer loads that topic into a cdc_registry, then decodes events with
 * cdc_registry_decode. An event whose fingerprint is not known yet returns
 * CDC_REGISTRY_UNKNOWN: the caller re-reads the schemas topic (the schema
 * was published before the event, so one more read finds it) and retries.
 *
 * Not thread-safe: one registry per thread, or serialise calls.
 */
#ifndef CDC_REGISTRY_H
#define CDC_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include <avro.h>
#include <librdkafka/rdkafka.h>

#include "cdc/config.h"

/* Status of cdc_registry_decode and friends. */
#define CDC_REGISTRY_OK 0
#define CDC_REGISTRY_ERROR (-1) /* bad input or library failure; errstr says which */
#define CDC_REGISTRY_UNKNOWN 1  /* fingerprint not in the registry; reload and retry */

typedef struct cdc_registry cdc_registry;

/*
 * One known writer schema. Owned by the registry and valid, unchanged, until
 * cdc_registry_destroy (entries are never replaced or removed). Callers must
 * not decref `schema` or `iface`; take their own reference if they need one
 * beyond the registry's lifetime.
 */
typedef struct cdc_registry_schema {
    uint64_t fingerprint;
    const char *json;          /* the schema text as published, NUL-terminated */
    avro_schema_t schema;      /* parsed by avro-c */
    avro_value_iface_t *iface; /* generic value class for `schema` */
} cdc_registry_schema;

/* Empty registry, owned by the caller; never NULL (allocation failure aborts). */
cdc_registry *cdc_registry_new(void);
/* Release the registry, its schemas and their avro-c objects. NULL is a no-op. */
void cdc_registry_destroy(cdc_registry *reg);

/* Number of schemas held. */
size_t cdc_registry_count(const cdc_registry *reg);

/*
 * Add the schema `json` (NUL-terminated, copied) under fingerprint `fp`.
 * The fingerprint is recomputed from the JSON and must match: a mismatch
 * means the schemas topic holds a record under the wrong key, and decoding
 * events with it would produce garbage. Adding a fingerprint that is already
 * present keeps the first schema (texts with the same canonical form only
 * differ in docs and other attributes that do not change the encoding) and
 * succeeds. Returns 0, or -1 with errstr filled (invalid schema, mismatch).
 */
int cdc_registry_add(cdc_registry *reg, uint64_t fp, const char *json, char *errstr,
                     size_t errstr_size);

/* The schema with fingerprint `fp`, or NULL. Borrowed (see cdc_registry_schema). */
const cdc_registry_schema *cdc_registry_get(const cdc_registry *reg, uint64_t fp);

/*
 * Read the schemas topic `topic` from the beginning up to the end offsets it
 * has when the call starts, with a short-lived consumer of its own (no
 * consumer group, nothing committed), and add every valid record. Records
 * that are not a valid schema under a valid key are logged (cdc_warn) and
 * skipped, so one bad record cannot block every consumer.
 *
 * `conf` is not consumed: it is duplicated, so the caller keeps ownership
 * and may reuse it. It must at least set bootstrap.servers.
 * A topic that does not exist yet is not an error (nothing was published).
 * The topic is found by listing all topics, never by asking for it by name,
 * because brokers with auto-creation (and librdkafka's mock) would create it.
 *
 * Returns the number of schemas added (>= 0), or -1 with errstr filled; a
 * timeout or broker error is retriable.
 */
int cdc_registry_load(cdc_registry *reg, const rd_kafka_conf_t *conf, const char *topic,
                      int timeout_ms, char *errstr, size_t errstr_size);

/*
 * cdc_registry_load with a consumer configured by cdc_kafka_conf_new from
 * `bootstrap` plus the optional librdkafka pass-through settings `extra`
 * (may be NULL; borrowed; a bootstrap.servers in it wins). librdkafka's logs
 * go through cdc_log. The topic is "{prefix}._schemas" (cdc_topic_schemas).
 */
int cdc_registry_load_prefix(cdc_registry *reg, const char *bootstrap, const cdc_kv_list *extra,
                             const char *prefix, int timeout_ms, char *errstr, size_t errstr_size);

/*
 * Decode one single-object encoded message msg[0..len) (not retained).
 *
 *   C3 01 | fingerprint: 8 bytes little-endian | Avro binary body
 *
 * On CDC_REGISTRY_OK, *out is a new generic value that the caller owns and
 * releases with avro_value_decref(out); *json_schema_out (if not NULL) points
 * at the writer schema text, borrowed from the registry. The body must be
 * consumed exactly: trailing bytes mean the message was not written with
 * this schema. On CDC_REGISTRY_UNKNOWN or CDC_REGISTRY_ERROR, *out holds
 * nothing to release and errstr says why (the unknown fingerprint in hex, or
 * bad magic / truncated header / avro-c's reason).
 */
int cdc_registry_decode(cdc_registry *reg, const void *msg, size_t len, avro_value_t *out,
                        const char **json_schema_out, char *errstr, size_t errstr_size);

/*
 * avro-c's JSON rendering of `value` on one line (bytes become JSON strings
 * with \u00XX escapes, unions {"type": value}). Returns a string the caller
 * frees with free(), or NULL with errstr filled.
 */
char *cdc_registry_value_to_json(const avro_value_t *value, char *errstr, size_t errstr_size);

/*
 * cdc_registry_decode followed by cdc_registry_value_to_json. On
 * CDC_REGISTRY_OK, *json_out is a string the caller frees with free();
 * otherwise *json_out is NULL. Same statuses as cdc_registry_decode.
 */
int cdc_registry_decode_json(cdc_registry *reg, const void *msg, size_t len, char **json_out,
                             char *errstr, size_t errstr_size);

#endif
