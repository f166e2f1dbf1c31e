/*
 * Avro binary encoding primitives (see cdc/avro_bin.h for the layouts).
 *
 * Writers append to a cdc_buf and cannot fail (the buffer aborts on OOM).
 * Readers work on a bounded cursor and are written for hostile input: every
 * length is checked against `end` before it is used, and the cursor is only
 * advanced when the whole value was valid, so a caller that gets -1 can
 * report the offset of the bad value.
 */
#include "cdc/avro_bin.h"

#include <string.h>

/* A 64-bit varint needs at most ceil(64 / 7) = 10 groups. */
#define VARINT_MAX_BYTES CDC_AVRO_VARINT_MAX

void cdc_avro_put_bool(cdc_buf *b, bool v)
{
    cdc_buf_putc(b, v ? 1 : 0);
}

/* IEEE 754 bits in little-endian order regardless of host byte order. */
static void put_le(cdc_buf *b, uint64_t bits, size_t n)
{
    uint8_t tmp[8];
    for (size_t i = 0; i < n; i++)
        tmp[i] = (uint8_t)(bits >> (8 * i));
    cdc_buf_append(b, tmp, n);
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void cdc_avro_put_float(cdc_buf *b, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_le(b, bits, 4);
}

void cdc_avro_put_double(cdc_buf *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_le(b, bits, 8);
}

void cdc_avro_put_so_header(cdc_buf *b, uint64_t fp)
{
    cdc_buf_putc(b, 0xC3);
    cdc_buf_putc(b, 0x01);
    put_le(b, fp, 8);
}

/*
 * Varint: groups of 7 bits, least significant first, high bit set on every
 * byte but the last. The tenth byte may only carry bit 63, so anything above
 * 1 there (or an eleventh byte) does not fit in 64 bits and is rejected
 * rather than silently truncated.
 */
int cdc_avro_get_long_slow(const uint8_t **p, const uint8_t *end, int64_t *out)
{
    const uint8_t *q = *p;
    uint64_t n = 0;

    /* Room for the longest varint: no bounds check per byte. */
    if (end - q >= VARINT_MAX_BYTES) {
        for (int i = 0; i < VARINT_MAX_BYTES; i++) {
            uint8_t c = q[i];
            if (i == VARINT_MAX_BYTES - 1 && c > 1)
                return -1;
            n |= (uint64_t)(c & 0x7f) << (7 * i);
            if (!(c & 0x80)) {
                *out = (int64_t)((n >> 1) ^ (~(n & 1) + 1));
                *p = q + i + 1;
                return 0;
            }
        }
        return -1;
    }
    for (int i = 0; i < VARINT_MAX_BYTES; i++) {
        if (q >= end)
            return -1;
        uint8_t c = *q++;
        if (i == VARINT_MAX_BYTES - 1 && c > 1)
            return -1;
        n |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            /* Undo zig-zag without relying on signed shifts. */
            *out = (int64_t)((n >> 1) ^ (~(n & 1) + 1));
            *p = q;
            return 0;
        }
    }
    return -1;
}

int cdc_avro_get_int(const uint8_t **p, const uint8_t *end, int32_t *out)
{
    const uint8_t *q = *p;
    int64_t v;
    if (cdc_avro_get_long(&q, end, &v) != 0 || v < INT32_MIN || v > INT32_MAX)
        return -1;
    *out = (int32_t)v;
    *p = q;
    return 0;
}

int cdc_avro_get_bool(const uint8_t **p, const uint8_t *end, bool *out)
{
    if (*p >= end || **p > 1)
        return -1;
    *out = **p == 1;
    (*p)++;
    return 0;
}

int cdc_avro_get_float(const uint8_t **p, const uint8_t *end, float *out)
{
    if (end - *p < 4)
        return -1;
    uint32_t bits = (uint32_t)get_le(*p, 4);
    memcpy(out, &bits, sizeof bits);
    *p += 4;
    return 0;
}

int cdc_avro_get_double(const uint8_t **p, const uint8_t *end, double *out)
{
    if (end - *p < 8)
        return -1;
    uint64_t bits = get_le(*p, 8);
    memcpy(out, &bits, sizeof bits);
    *p += 8;
    return 0;
}

int cdc_avro_get_bytes(const uint8_t **p, const uint8_t *end,
                       const uint8_t **data, size_t *len)
{
    const uint8_t *q = *p;
    int64_t n;

    if (cdc_avro_get_long(&q, end, &n) != 0 || n < 0)
        return -1;
    /* Compare as unsigned sizes: a huge n must not wrap the pointer. */
    if ((uint64_t)n > (uint64_t)(end - q))
        return -1;
    *data = q;
    *len = (size_t)n;
    *p = q + n;
    return 0;
}

/* C3 01, then the fingerprint as 8 little-endian bytes. */
int cdc_avro_get_so_header(const uint8_t **p, const uint8_t *end, uint64_t *fp)
{
    const uint8_t *q = *p;
    if (end - q < CDC_AVRO_SO_HEADER_LEN || q[0] != 0xC3 || q[1] != 0x01)
        return -1;
    *fp = get_le(q + 2, 8);
    *p = q + CDC_AVRO_SO_HEADER_LEN;
    return 0;
}
