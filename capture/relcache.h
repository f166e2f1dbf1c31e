/*
 * Relation cache: what cdc-capture knows about each published table, built
 * from pgoutput Relation messages plus a few catalog facts, and the Avro
 * schemas (key and envelope) derived from it.
 *
 * The Relation message is authoritative for the column list, types and
 * type modifiers, because it describes the table as of the WAL being decoded
 * (the catalog may have changed since). The catalog supplies what the
 * message lacks: the text name of each type (format_type), domain base
 * types, enum labels, NOT NULL, and the primary key under REPLICA IDENTITY
 * FULL.
 */
#ifndef CDC_RELCACHE_H
#define CDC_RELCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "cdc/pgtypes.h"
#include "pgoutput.h"

/* One column as schema building needs it (input of relcache_build). */
typedef struct rel_colinfo {
    const char *name;  /* true column name */
    uint32_t type_oid; /* from the Relation message */
    int32_t typmod;
    uint32_t base_oid; /* type_oid, or the base type of a domain */
    int32_t base_typmod;
    const char *pg_type; /* format_type(base_oid, base_typmod) */
    const char *domain;  /* format_type of the domain, or NULL */
    json_t *enum_labels; /* JSON array of labels for enums, else NULL (borrowed) */
    bool notnull;
    bool key;    /* part of the event key */
    int key_pos; /* its place in the key's index (1-based; 0: unknown, table order) */
} rel_colinfo;

typedef struct rel_col {
    char *name;  /* true column name */
    char *field; /* Avro field name (sanitised, unique in the record) */
    cdc_coltype type;
    cdc_pgbin bin;  /* its binary form (for a binary COPY), CDC_BIN_NONE for enums */
    char **labels; /* an enum's labels as the schema lists them (pg.enum), else NULL */
    int nlabels;
} rel_col;

typedef struct relation {
    uint32_t relid;
    char *nspname;
    char *relname;
    char replident;
    int ncols;
    rel_col *cols;
    int nkey;
    int *key_idx; /* column indices of the key, in key order */
    char *topic;
    char *key_schema;   /* JSON, NULL when the table has no key */
    char *value_schema; /* JSON */
    uint64_t key_fp;
    uint64_t value_fp;
    int partitions; /* cached partition count of the topic, 0 = unknown */
} relation;

typedef struct relcache relcache;

relcache *relcache_new(void);
void relcache_destroy(relcache *rc);
/* Forget every relation (a new replication session resends Relation messages). */
void relcache_clear(relcache *rc);
relation *relcache_get(relcache *rc, uint32_t relid);

/*
 * Build (or rebuild) the relation for Relation message `m`, querying the
 * catalog through `sql` (a normal, non-replication connection). Returns the
 * relation owned by the cache, or NULL with errstr (catalog query failed:
 * retriable, sets *retriable) or an invalid schema (not retriable).
 */
relation *relcache_update(relcache *rc, const pgo_msg *m, PGconn *sql, const char *topic_prefix,
                          bool *retriable, char *errstr, size_t errstr_size);

/*
 * Pure part, exposed for unit tests: fill r->cols, key, schemas and
 * fingerprints from column descriptions. r->nspname and r->relname must be
 * set. Returns 0 or -1 with errstr.
 */
int relcache_build(relation *r, const rel_colinfo *cols, int ncols, char *errstr,
                   size_t errstr_size);
void relation_free(relation *r);
/* Drop a column's label list: its values are no longer checked against it. */
void relation_forget_labels(rel_col *c);

/* Avro name from an arbitrary identifier: [A-Za-z_][A-Za-z0-9_]*. Appends to out. */
void relcache_avro_name(const char *ident, char *out, size_t out_size);

#endif
