/*
 * Mapping between PostgreSQL column types and Avro, and conversion of
 * values between Postgres' text form and Avro binary.
 *
 * pgoutput (text mode) sends every value in the type's text output form.
 * cdc-capture runs its replication session with DateStyle=ISO, TimeZone=UTC,
 * IntervalStyle=postgres, extra_float_digits=3 and bytea_output=hex so these
 * forms are fixed and parseable without loss. The reverse direction (Avro to
 * Postgres input text) is used by cdc-apply.
 *
 * Mapping (the event contract in README.md is the user-facing copy):
 *   bool                    -> boolean
 *   int2, int4              -> int
 *   int8                    -> long
 *   float4 / float8         -> float / double
 *   numeric(p,s), 0<=s<=p   -> bytes, logicalType decimal (precision p, scale s)
 *   numeric (no typmod) and
 *   numeric with s<0 or s>p -> string with the exact decimal text
 *   date                    -> int, logicalType date (days since 1970-01-01)
 *   time                    -> long, logicalType time-micros
 *   timestamp               -> long, logicalType local-timestamp-micros
 *   timestamptz             -> long, logicalType timestamp-micros
 *   uuid                    -> string, logicalType uuid
 *   bytea                   -> bytes
 *   text, varchar, bpchar,
 *   and every other type    -> string, the exact text form
 *
 * Special values: date/timestamp 'infinity' and '-infinity' map to the
 * largest and smallest value of the Avro type (INT32_MAX/INT32_MIN for date,
 * INT64_MAX/INT64_MIN for the timestamps) and back. float NaN/Infinity are
 * IEEE values. numeric NaN in a numeric(p,s) column cannot be represented as
 * an Avro decimal: encoding fails with an error naming the value.
 */
#ifndef CDC_PGTYPES_H
#define CDC_PGTYPES_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cdc/buf.h"

/* Built-in type OIDs we treat specially (stable across PostgreSQL versions). */
#define CDC_OID_BOOL 16
#define CDC_OID_BYTEA 17
#define CDC_OID_INT8 20
#define CDC_OID_INT2 21
#define CDC_OID_INT4 23
#define CDC_OID_TEXT 25
#define CDC_OID_FLOAT4 700
#define CDC_OID_FLOAT8 701
#define CDC_OID_BPCHAR 1042
#define CDC_OID_VARCHAR 1043
#define CDC_OID_DATE 1082
#define CDC_OID_TIME 1083
#define CDC_OID_TIMESTAMP 1114
#define CDC_OID_TIMESTAMPTZ 1184
#define CDC_OID_NUMERIC 1700
#define CDC_OID_UUID 2950

typedef enum cdc_conv {
    CDC_CONV_STRING = 0, /* exact text form */
    CDC_CONV_BOOL,
    CDC_CONV_INT,
    CDC_CONV_LONG,
    CDC_CONV_FLOAT,
    CDC_CONV_DOUBLE,
    CDC_CONV_BYTES,       /* bytea, text form \x<hex> */
    CDC_CONV_DECIMAL,     /* numeric(p,s) */
    CDC_CONV_DATE,
    CDC_CONV_TIME,
    CDC_CONV_TIMESTAMP,   /* without time zone: local-timestamp-micros */
    CDC_CONV_TIMESTAMPTZ, /* with time zone: timestamp-micros (UTC) */
    CDC_CONV_UUID,
} cdc_conv;

typedef struct cdc_coltype {
    cdc_conv conv;
    int precision; /* CDC_CONV_DECIMAL only */
    int scale;     /* CDC_CONV_DECIMAL only */
} cdc_coltype;

/*
 * Choose the Avro mapping for a column of base type `typoid` with modifier
 * `typmod` (-1 when none), as sent in a pgoutput Relation message. Domains
 * must be resolved to their base type by the caller.
 */
cdc_coltype cdc_pgtype_map(uint32_t typoid, int32_t typmod);

/*
 * The Avro type for `t` as a new jansson value owned by the caller
 * (e.g. "long", or {"type":"bytes","logicalType":"decimal",...}). Does not
 * include the null union or any pg.* property.
 */
json_t *cdc_pgtype_avro_type(const cdc_coltype *t);

/*
 * Append the Avro binary encoding of the value whose Postgres text form is
 * text[0..len) (not NUL-terminated) to `out`, encoded as type `t` (without any
 * union branch index). Returns 0, or -1 with errstr naming the bad value; on
 * error `out` may hold a partial value and the caller discards it.
 */
int cdc_pgtype_encode(cdc_buf *out, const cdc_coltype *t, const char *text,
                      size_t len, char *errstr, size_t errstr_size);

/*
 * Reverse of cdc_pgtype_encode for cdc-apply: read one value of type `t` from
 * the Avro binary cursor (*p, end), advance the cursor, and append the
 * Postgres input text form to `out` (no NUL counted). The text is accepted by
 * the column's input function whatever the target's DateStyle (ISO forms with
 * explicit offsets). Returns 0, or -1 with errstr on truncated/invalid input.
 */
int cdc_pgtype_decode_text(cdc_buf *out, const cdc_coltype *t,
                           const uint8_t **p, const uint8_t *end, char *errstr,
                           size_t errstr_size);

/*
 * PostgreSQL's binary form of a column (what its type's send function
 * writes and COPY ... (FORMAT binary) reads), for the column types whose
 * Avro value converts to it exactly. cdc-apply writes bootstrap loads this
 * way: the target then skips parsing text (integers, timestamps, numerics).
 * The binary form carries no type, so it may only go into a column of
 * exactly the type the kind was chosen for.
 */
typedef enum cdc_pgbin {
    CDC_BIN_NONE = 0, /* no binary form here: use text */
    CDC_BIN_BOOL,
    CDC_BIN_INT2,
    CDC_BIN_INT4,
    CDC_BIN_INT8,
    CDC_BIN_FLOAT4,
    CDC_BIN_FLOAT8,
    CDC_BIN_NUMERIC, /* numeric(p,s) from an Avro decimal */
    CDC_BIN_DATE,
    CDC_BIN_TIME,
    CDC_BIN_TIMESTAMP, /* timestamp and timestamptz: microseconds since 2000 */
    CDC_BIN_TEXT,      /* text, varchar, bpchar: the bytes themselves */
    CDC_BIN_BYTEA,
    CDC_BIN_UUID,
} cdc_pgbin;

/*
 * The binary form for a column mapped as `t` whose type format_type prints
 * as `pg_type` ("bigint", "numeric(18,2)", "character varying(20)", ...), or
 * CDC_BIN_NONE. Other types (arrays, json, enums, intervals, ...) and
 * numerics without a typmod stay text.
 */
cdc_pgbin cdc_pgtype_bin_kind(const cdc_coltype *t, const char *pg_type);

/*
 * Like cdc_pgtype_encode, from the binary form `kind` that COPY ... (FORMAT
 * binary) sends, data[0..len): the Avro bytes are exactly those the text
 * form of the same value encodes to (keys and partitions depend on them).
 */
int cdc_pgtype_encode_binary(cdc_buf *out, const cdc_coltype *t, cdc_pgbin kind,
                             const uint8_t *data, size_t len, char *errstr, size_t errstr_size);

/*
 * Like cdc_pgtype_decode_text, but append the binary form `kind` (from
 * cdc_pgtype_bin_kind for this column) without its length word. A value
 * the binary form cannot hold (a date or timestamp beyond PostgreSQL's
 * range, a smallint out of range, a uuid not in its canonical text form)
 * is an error, as its text would be for the target.
 */
int cdc_pgtype_decode_binary(cdc_buf *out, const cdc_coltype *t, cdc_pgbin kind,
                             const uint8_t **p, const uint8_t *end, char *errstr,
                             size_t errstr_size);

/*
 * Recover the mapping from a field's Avro type JSON (as produced by
 * cdc_pgtype_avro_type, possibly inside a ["null", T] union which is
 * unwrapped). Returns 0, or -1 if the type is not one we produce.
 */
int cdc_pgtype_from_avro(const json_t *avro_type, cdc_coltype *out);

#endif
