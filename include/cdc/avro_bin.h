/*
 * Avro binary encoding primitives (Avro 1.11 specification, "Binary
 * Encoding") and the single-object encoding header.
 *
 * The hot path of cdc-capture writes event bodies with these functions
 * straight into a reusable buffer instead of building avro-c generic values:
 * the encoding is a handful of varints and length-prefixed byte strings, and
 * the tests decode every body we write with avro-c, so interoperability is
 * checked against the reference library rather than assumed.
 *
 *   int/long : zig-zag, then base-128 varint, least significant group first
 *   float    : 4 bytes little-endian IEEE 754
 *   double   : 8 bytes little-endian IEEE 754
 *   boolean  : one byte 0 or 1
 *   bytes    : long length, then the bytes; string is the same in UTF-8
 *   union    : long branch index, then the value of that branch
 *   array    : blocks of (long count, items), ended by a count of 0
 *
 * Single-object encoding: C3 01, the 8-byte little-endian CRC-64-AVRO
 * fingerprint of the schema's Parsing Canonical Form, then the body.
 */
#ifndef CDC_AVRO_BIN_H
#define CDC_AVRO_BIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdc/buf.h"

#define CDC_AVRO_SO_HEADER_LEN 10
#define CDC_AVRO_VARINT_MAX 10

/*
 * Longs and byte strings are inline: an event is a few dozen of them (union
 * branches, the source record), and out of line they were 8% of the
 * instructions cdc-capture spent on a loaded row.
 */
static inline void cdc_avro_put_long(cdc_buf *b, int64_t v)
{
    /* Zig-zag maps small magnitudes of either sign to small unsigned values;
     * done on uint64_t because shifting a negative int64_t is not portable. */
    uint64_t n = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    cdc_buf_reserve(b, CDC_AVRO_VARINT_MAX);
    uint8_t *p = b->data + b->len;
    while (n & ~(uint64_t)0x7f) {
        *p++ = (uint8_t)((n & 0x7f) | 0x80);
        n >>= 7;
    }
    *p++ = (uint8_t)n;
    b->len = (size_t)(p - b->data);
}
static inline void cdc_avro_put_int(cdc_buf *b, int32_t v) { cdc_avro_put_long(b, v); }
void cdc_avro_put_bool(cdc_buf *b, bool v);
void cdc_avro_put_float(cdc_buf *b, float v);
void cdc_avro_put_double(cdc_buf *b, double v);
static inline void cdc_avro_put_bytes(cdc_buf *b, const void *data, size_t len)
{
    cdc_avro_put_long(b, (int64_t)len);
    cdc_buf_append(b, data, len);
}
static inline void cdc_avro_put_string(cdc_buf *b, const char *s, size_t len)
{
    cdc_avro_put_bytes(b, s, len);
}
static inline void cdc_avro_put_cstring(cdc_buf *b, const char *s)
{
    cdc_avro_put_bytes(b, s, strlen(s));
}
/* The 10-byte single-object header for a schema with fingerprint `fp`. */
void cdc_avro_put_so_header(cdc_buf *b, uint64_t fp);

/*
 * Read side, used by tests and by cdc-apply's fast paths. Each reader takes a
 * cursor (*p, end) and advances it; returns 0 or -1 on truncated/invalid input.
 */
int cdc_avro_get_long_slow(const uint8_t **p, const uint8_t *end, int64_t *out);
/* The one-byte varint (-64..63: union branches, small values) inline. */
static inline int cdc_avro_get_long(const uint8_t **p, const uint8_t *end, int64_t *out)
{
    const uint8_t *q = *p;
    if (q < end && !(*q & 0x80)) {
        uint64_t n = *q;
        *out = (int64_t)((n >> 1) ^ (~(n & 1) + 1));
        *p = q + 1;
        return 0;
    }
    return cdc_avro_get_long_slow(p, end, out);
}
/* An int is a long whose value must fit in 32 bits. */
int cdc_avro_get_int(const uint8_t **p, const uint8_t *end, int32_t *out);
/* Only the bytes 0 and 1 are valid booleans. */
int cdc_avro_get_bool(const uint8_t **p, const uint8_t *end, bool *out);
int cdc_avro_get_float(const uint8_t **p, const uint8_t *end, float *out);
int cdc_avro_get_double(const uint8_t **p, const uint8_t *end, double *out);
/* *data points into the input buffer (no copy); it is valid as long as the
 * input is. Used for strings too. */
int cdc_avro_get_bytes(const uint8_t **p, const uint8_t *end,
                       const uint8_t **data, size_t *len);
/* Parse a single-object header; returns 0 and the fingerprint, or -1. */
int cdc_avro_get_so_header(const uint8_t **p, const uint8_t *end, uint64_t *fp);

#endif
