/*
 * Reading change events back: the envelope schema of a table (as published
 * to {prefix}._schemas) and the decoding of an event body into the
 * PostgreSQL text form of every column. Used by cdc-apply and by the tests;
 * outside consumers use any Avro library instead.
 */
#ifndef CDC_EVENT_H
#define CDC_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdc/buf.h"
#include "cdc/pgtypes.h"

typedef struct cdc_field {
    char *name;      /* Avro field name */
    char *pg_name;   /* true column name */
    char *pg_type;   /* format_type, e.g. numeric(18,2) */
    char *pg_domain; /* domain name or NULL */
    char *enum_json; /* JSON array of enum labels or NULL */
    bool nullable;   /* pg.nullable */
    cdc_coltype type;
    cdc_pgbin bin;   /* binary form of pg_type, CDC_BIN_NONE for domains and enums */
} cdc_field;

typedef struct cdc_table_schema {
    char *json;        /* the schema text */
    char *schema_name; /* pg.schema */
    char *table_name;  /* pg.table */
    int nfields;
    cdc_field *fields;
    int nkey;
    int *key_idx; /* indices into fields, from pg.key */
    bool binary;  /* a key, and every field has a binary form: events can be
                     decoded in PostgreSQL's binary form (cdc_event_decode_as) */
} cdc_table_schema;

/* Parse an envelope schema produced by cdc-capture. Returns NULL with errstr. */
cdc_table_schema *cdc_table_schema_parse(const char *json, char *errstr, size_t errstr_size);
void cdc_table_schema_free(cdc_table_schema *s);
/* Index of the field whose true column name is `pg_name`, or -1. */
int cdc_table_schema_find(const cdc_table_schema *s, const char *pg_name);

typedef enum cdc_colstate {
    CDC_COL_NULL = 'n',
    CDC_COL_UNCHANGED = 'u', /* unchanged TOASTed value: leave the target as it is */
    CDC_COL_VALUE = 'v',
} cdc_colstate;

typedef struct cdc_colval {
    cdc_colstate state;
    size_t off; /* CDC_COL_VALUE: text at event->arena.data + off, NUL-terminated */
    size_t len;
} cdc_colval;

/*
 * Ordinal of the first event of a bootstrap (its truncates, then its rows),
 * which all carry the consistent point as commit_lsn. A transaction whose
 * commit record starts exactly at the consistent point is not in the
 * snapshot and is streamed with that same commit_lsn, its ordinals from 0:
 * a load counting from here orders before it, so (commit_lsn, ordinal)
 * stays unique and ordered. 2^48 events per load before reaching 0.
 */
#define CDC_SNAPSHOT_ORDINAL0 (-(INT64_C(1) << 48))

typedef struct cdc_event {
    char op; /* c u d t r */
    bool has_before, has_after;
    cdc_colval *before; /* nfields entries when has_before */
    cdc_colval *after;
    int ncols_cap;
    int64_t source_ts_ms;
    char snapshot[8]; /* true / last / false */
    int64_t txid;     /* -1 when absent */
    int64_t lsn;      /* -1 when absent */
    int64_t ts_ms;
    uint64_t commit_lsn;
    int64_t ordinal;
    size_t db_off, schema_off, table_off; /* NUL-terminated strings in arena */
    bool binary; /* column values are in their binary form (cdc_event_decode_as) */
    cdc_buf arena;
} cdc_event;

void cdc_event_init(cdc_event *ev);
void cdc_event_free(cdc_event *ev);
/*
 * Decode the Avro body (after the single-object header) of an event written
 * with schema `s`. Returns 0 or -1 with errstr. `ev` is reused across calls.
 */
int cdc_event_decode(const cdc_table_schema *s, const uint8_t *body, size_t len, cdc_event *ev,
                     char *errstr, size_t errstr_size);
/*
 * The same, with `binary` (only for a schema with s->binary): each column
 * value is PostgreSQL's binary form of its type (s->fields[i].bin, see
 * cdc_pgtype_decode_binary) instead of its text, for COPY ... (FORMAT
 * binary). Values still end with a NUL byte, which `len` does not count;
 * a binary value may hold NUL bytes of its own.
 */
int cdc_event_decode_as(const cdc_table_schema *s, const uint8_t *body, size_t len, bool binary,
                        cdc_event *ev, char *errstr, size_t errstr_size);
static inline const char *cdc_event_text(const cdc_event *ev, const cdc_colval *v)
{
    return (const char *)ev->arena.data + v->off;
}
static inline const char *cdc_event_str(const cdc_event *ev, size_t off)
{
    return (const char *)ev->arena.data + off;
}

#endif
