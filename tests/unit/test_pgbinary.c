/*
 * Avro -> PostgreSQL binary form (what COPY ... (FORMAT binary) reads): the
 * choice of binary form per column type, and each form byte for byte
 * against what PostgreSQL 15's send functions wrote for the same value
 * (numeric_send, timestamp_send, date_send, ...: the hex below).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc/avro_bin.h"
#include "cdc/pgtypes.h"

static cdc_coltype conv(cdc_conv c)
{
    return (cdc_coltype){.conv = c, .precision = 0, .scale = 0};
}

static cdc_coltype dec(int precision, int scale)
{
    return (cdc_coltype){.conv = CDC_CONV_DECIMAL, .precision = precision, .scale = scale};
}

static char *hex_of(const cdc_buf *b)
{
    char *h = malloc(2 * b->len + 1);
    for (size_t i = 0; i < b->len; i++)
        sprintf(h + 2 * i, "%02x", b->data[i]);
    h[2 * b->len] = '\0';
    return h;
}

/* text -> Avro (as cdc-capture encodes it) -> binary form; returns 0 or -1. */
static int to_binary(const cdc_coltype *t, cdc_pgbin kind, const char *text, cdc_buf *out,
                     char *err, size_t err_size)
{
    cdc_buf avro;
    cdc_buf_init(&avro);
    cr_assert_eq(cdc_pgtype_encode(&avro, t, text, strlen(text), err, err_size), 0,
                 "encode \"%s\": %s", text, err);
    const uint8_t *p = avro.data, *end = p + avro.len;
    cdc_buf_init(out);
    int r = cdc_pgtype_decode_binary(out, t, kind, &p, end, err, err_size);
    if (r == 0)
        cr_assert_eq(p, end, "\"%s\": the Avro value was not read whole", text);
    cdc_buf_free(&avro);
    return r;
}

static void expect_binary(cdc_coltype t, cdc_pgbin kind, const char *text, const char *hex)
{
    char err[256] = "";
    cdc_buf out;
    cr_assert_eq(to_binary(&t, kind, text, &out, err, sizeof err), 0, "\"%s\": %s", text, err);
    char *got = hex_of(&out);
    cr_expect_str_eq(got, hex, "\"%s\": binary form %s, PostgreSQL's is %s", text, got, hex);
    free(got);
    cdc_buf_free(&out);
}

static void expect_binary_fails(cdc_coltype t, cdc_pgbin kind, const uint8_t *avro, size_t n,
                                const char *what)
{
    char err[256] = "";
    cdc_buf out;
    cdc_buf_init(&out);
    const uint8_t *p = avro;
    cr_expect_eq(cdc_pgtype_decode_binary(&out, &t, kind, &p, avro + n, err, sizeof err), -1,
                 "%s was accepted", what);
    cr_expect_neq(err[0], '\0', "%s: no message", what);
    cdc_buf_free(&out);
}

Test(pgbinary, column_types_with_a_binary_form)
{
    struct {
        cdc_coltype t;
        const char *pg_type;
        cdc_pgbin want;
    } cases[] = {
        {conv(CDC_CONV_BOOL), "boolean", CDC_BIN_BOOL},
        {conv(CDC_CONV_INT), "smallint", CDC_BIN_INT2},
        {conv(CDC_CONV_INT), "integer", CDC_BIN_INT4},
        {conv(CDC_CONV_LONG), "bigint", CDC_BIN_INT8},
        {conv(CDC_CONV_FLOAT), "real", CDC_BIN_FLOAT4},
        {conv(CDC_CONV_DOUBLE), "double precision", CDC_BIN_FLOAT8},
        {dec(18, 2), "numeric(18,2)", CDC_BIN_NUMERIC},
        {conv(CDC_CONV_DATE), "date", CDC_BIN_DATE},
        {conv(CDC_CONV_TIME), "time without time zone", CDC_BIN_TIME},
        {conv(CDC_CONV_TIMESTAMP), "timestamp without time zone", CDC_BIN_TIMESTAMP},
        {conv(CDC_CONV_TIMESTAMPTZ), "timestamp with time zone", CDC_BIN_TIMESTAMP},
        {conv(CDC_CONV_STRING), "text", CDC_BIN_TEXT},
        {conv(CDC_CONV_STRING), "character varying(20)", CDC_BIN_TEXT},
        {conv(CDC_CONV_STRING), "character varying", CDC_BIN_TEXT},
        {conv(CDC_CONV_STRING), "character(3)", CDC_BIN_TEXT},
        {conv(CDC_CONV_BYTES), "bytea", CDC_BIN_BYTEA},
        {conv(CDC_CONV_UUID), "uuid", CDC_BIN_UUID},
        /* Text forms: no binary form of theirs is written. */
        {conv(CDC_CONV_STRING), "numeric", CDC_BIN_NONE},
        {conv(CDC_CONV_STRING), "jsonb", CDC_BIN_NONE},
        {conv(CDC_CONV_STRING), "integer[]", CDC_BIN_NONE},
        {conv(CDC_CONV_STRING), "character varying(20)[]", CDC_BIN_NONE},
        {conv(CDC_CONV_STRING), "interval", CDC_BIN_NONE},
        {conv(CDC_CONV_STRING), "time with time zone", CDC_BIN_NONE},
        {conv(CDC_CONV_TIME), "time(3) without time zone", CDC_BIN_NONE},
        {conv(CDC_CONV_TIMESTAMP), "timestamp(3) without time zone", CDC_BIN_NONE},
        {conv(CDC_CONV_STRING), "texts", CDC_BIN_NONE},
        /* The Avro type decides too: an int column's name with a long. */
        {conv(CDC_CONV_LONG), "integer", CDC_BIN_NONE},
        {conv(CDC_CONV_STRING), "bigint", CDC_BIN_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(cdc_pgtype_bin_kind(&cases[i].t, cases[i].pg_type), cases[i].want,
                     "%s: binary form %d, want %d", cases[i].pg_type,
                     (int)cdc_pgtype_bin_kind(&cases[i].t, cases[i].pg_type), (int)cases[i].want);
    cr_expect_eq(cdc_pgtype_bin_kind(&cases[0].t, NULL), CDC_BIN_NONE);
}

Test(pgbinary, numerics_are_what_numeric_send_writes)
{
    expect_binary(dec(10, 2), CDC_BIN_NUMERIC, "1234.50", "000200000000000204d21388");
    expect_binary(dec(18, 2), CDC_BIN_NUMERIC, "-1234567890123456.78",
                  "000500034000000204d2162e23340d801e78");
    expect_binary(dec(5, 5), CDC_BIN_NUMERIC, "0.00001", "0001fffe0000000503e8");
    expect_binary(dec(38, 0), CDC_BIN_NUMERIC, "99999999999999999999999999999999999999",
                  "000a0009000000000063270f270f270f270f270f270f270f270f270f");
    expect_binary(dec(20, 10), CDC_BIN_NUMERIC, "-0.0000000001", "0001fffd4000000a0064");
    expect_binary(dec(18, 2), CDC_BIN_NUMERIC, "0.00", "0000000000000002");
    expect_binary(dec(18, 2), CDC_BIN_NUMERIC, "-0.00", "0000000000000002");
    expect_binary(dec(12, 4), CDC_BIN_NUMERIC, "10000.0000", "00010001000000040001");
    expect_binary(dec(12, 0), CDC_BIN_NUMERIC, "100000000", "00010002000000000001");
    expect_binary(dec(30, 10), CDC_BIN_NUMERIC, "12345678901234567890.0123456789",
                  "000800040000000a04d2162e23340d801ed2007b11d722c4");
    expect_binary(dec(6, 3), CDC_BIN_NUMERIC, "-0.500", "0001ffff400000031388");
}

/* Values past 8 bytes of Avro decimal take the long-division path. */
Test(pgbinary, numerics_of_1000_digits)
{
    char text[1100], err[256];
    cdc_coltype t = dec(1000, 500);
    memset(text, '9', 500);
    text[500] = '.';
    memset(text + 501, '9', 500);
    text[1001] = '\0';
    cdc_buf out;
    cr_assert_eq(to_binary(&t, CDC_BIN_NUMERIC, text, &out, err, sizeof err), 0, "%s", err);
    /* 125 digits 9999 before the point and 125 after: weight 124, dscale 500. */
    cr_assert_eq(out.len, 8 + 2 * 250);
    cr_expect_eq(out.data[0] << 8 | out.data[1], 250);
    cr_expect_eq(out.data[2] << 8 | out.data[3], 124);
    cr_expect_eq(out.data[4] << 8 | out.data[5], 0x0000);
    cr_expect_eq(out.data[6] << 8 | out.data[7], 500);
    for (size_t i = 8; i < out.len; i += 2)
        cr_expect_eq(out.data[i] << 8 | out.data[i + 1], 9999, "digit %zu", (i - 8) / 2);
    cdc_buf_free(&out);

    /* -10^499 - 0.5: digit 1000 at weight 124, zeros between, 5000 after the point. */
    text[0] = '-';
    text[1] = '1';
    memset(text + 2, '0', 499);
    strcpy(text + 501, ".5");
    cr_assert_eq(to_binary(&t, CDC_BIN_NUMERIC, text, &out, err, sizeof err), 0, "%s", err);
    cr_assert_eq(out.len, 8 + 2 * 126);
    cr_expect_eq(out.data[0] << 8 | out.data[1], 126);
    cr_expect_eq(out.data[2] << 8 | out.data[3], 124);
    cr_expect_eq(out.data[4] << 8 | out.data[5], 0x4000);
    cr_expect_eq(out.data[8] << 8 | out.data[9], 1000);
    for (size_t i = 10; i < out.len - 2; i += 2)
        cr_expect_eq(out.data[i] << 8 | out.data[i + 1], 0, "digit %zu", (i - 8) / 2);
    cr_expect_eq(out.data[out.len - 2] << 8 | out.data[out.len - 1], 5000);
    cdc_buf_free(&out);
}

Test(pgbinary, dates_and_times_count_from_2000)
{
    cdc_coltype ts = conv(CDC_CONV_TIMESTAMP), tz = conv(CDC_CONV_TIMESTAMPTZ);
    cdc_coltype d = conv(CDC_CONV_DATE), tm = conv(CDC_CONV_TIME);
    expect_binary(ts, CDC_BIN_TIMESTAMP, "2000-01-01 00:00:00", "0000000000000000");
    expect_binary(ts, CDC_BIN_TIMESTAMP, "1999-12-31 23:59:59.999999", "ffffffffffffffff");
    expect_binary(tz, CDC_BIN_TIMESTAMP, "2026-11-24 08:14:00.123456+00", "000304000fb46440");
    expect_binary(ts, CDC_BIN_TIMESTAMP, "infinity", "7fffffffffffffff");
    expect_binary(tz, CDC_BIN_TIMESTAMP, "-infinity", "8000000000000000");
    expect_binary(d, CDC_BIN_DATE, "2000-01-01", "00000000");
    expect_binary(d, CDC_BIN_DATE, "1970-01-01", "ffffd533");
    expect_binary(d, CDC_BIN_DATE, "0044-03-15 BC", "fff49d7b");
    expect_binary(d, CDC_BIN_DATE, "infinity", "7fffffff");
    expect_binary(d, CDC_BIN_DATE, "-infinity", "80000000");
    expect_binary(tm, CDC_BIN_TIME, "24:00:00", "000000141dd76000");
    expect_binary(tm, CDC_BIN_TIME, "00:00:00.000001", "0000000000000001");

    /* Avro values beyond what 2000-based counts can hold are refused. */
    cdc_buf b;
    cdc_buf_init(&b);
    cdc_avro_put_long(&b, INT64_MIN + 1);
    expect_binary_fails(ts, CDC_BIN_TIMESTAMP, b.data, b.len, "timestamp INT64_MIN + 1");
    cdc_buf_reset(&b);
    cdc_avro_put_int(&b, INT32_MIN + 1);
    expect_binary_fails(d, CDC_BIN_DATE, b.data, b.len, "date INT32_MIN + 1");
    cdc_buf_reset(&b);
    cdc_avro_put_long(&b, INT64_C(86400000001));
    expect_binary_fails(tm, CDC_BIN_TIME, b.data, b.len, "time past 24:00");
    cdc_buf_free(&b);
}

Test(pgbinary, numbers_booleans_and_uuids)
{
    expect_binary(conv(CDC_CONV_FLOAT), CDC_BIN_FLOAT4, "-0", "80000000");
    expect_binary(conv(CDC_CONV_FLOAT), CDC_BIN_FLOAT4, "3.4028235e+38", "7f7fffff");
    expect_binary(conv(CDC_CONV_DOUBLE), CDC_BIN_FLOAT8, "1e-320", "00000000000007e8");
    expect_binary(conv(CDC_CONV_DOUBLE), CDC_BIN_FLOAT8, "-Infinity", "fff0000000000000");
    expect_binary(conv(CDC_CONV_INT), CDC_BIN_INT2, "-32768", "8000");
    expect_binary(conv(CDC_CONV_INT), CDC_BIN_INT4, "2147483647", "7fffffff");
    expect_binary(conv(CDC_CONV_LONG), CDC_BIN_INT8, "-9223372036854775808", "8000000000000000");
    expect_binary(conv(CDC_CONV_BOOL), CDC_BIN_BOOL, "t", "01");
    expect_binary(conv(CDC_CONV_BOOL), CDC_BIN_BOOL, "f", "00");
    expect_binary(conv(CDC_CONV_UUID), CDC_BIN_UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                  "a0eebc999c0b4ef8bb6d6bb9bd380a11");
    expect_binary(conv(CDC_CONV_UUID), CDC_BIN_UUID, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
                  "a0eebc999c0b4ef8bb6d6bb9bd380a11");

    cdc_buf b;
    cdc_buf_init(&b);
    cdc_avro_put_int(&b, 32768);
    expect_binary_fails(conv(CDC_CONV_INT), CDC_BIN_INT2, b.data, b.len, "smallint 32768");
    const char *bad_uuids[] = {"a0eebc999c0b4ef8bb6d6bb9bd380a11", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
                               "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g", ""};
    for (size_t i = 0; i < sizeof bad_uuids / sizeof bad_uuids[0]; i++) {
        cdc_buf_reset(&b);
        cdc_avro_put_bytes(&b, bad_uuids[i], strlen(bad_uuids[i]));
        expect_binary_fails(conv(CDC_CONV_UUID), CDC_BIN_UUID, b.data, b.len, bad_uuids[i]);
    }
    cdc_buf_free(&b);
}

Test(pgbinary, strings_and_bytes_are_their_bytes)
{
    expect_binary(conv(CDC_CONV_STRING), CDC_BIN_TEXT, "tab\there \\N", "7461620968657265205c4e");
    expect_binary(conv(CDC_CONV_STRING), CDC_BIN_TEXT, "", "");
    expect_binary(conv(CDC_CONV_BYTES), CDC_BIN_BYTEA, "\\x00ff10", "00ff10");

    cdc_buf b;
    cdc_buf_init(&b);
    cdc_avro_put_bytes(&b, "a\0b", 3);
    expect_binary_fails(conv(CDC_CONV_STRING), CDC_BIN_TEXT, b.data, b.len, "text with NUL");
    /* Truncated input: the declared length runs past the end. */
    expect_binary_fails(conv(CDC_CONV_BYTES), CDC_BIN_BYTEA, b.data, b.len - 1, "truncated bytes");
    cdc_buf_free(&b);
}

/* ---- binary form -> Avro (cdc-capture's binary COPY) ---- */

static void unhex(const char *hex, cdc_buf *out)
{
    cdc_buf_init(out);
    for (size_t i = 0; hex[i] && hex[i + 1]; i += 2) {
        unsigned b;
        sscanf(hex + i, "%2x", &b);
        cdc_buf_putc(out, (char)b);
    }
}

/* PostgreSQL's binary form `hex` of the value whose text is `text` encodes
 * to the very Avro bytes the text does. */
static void expect_same_avro(cdc_coltype t, cdc_pgbin kind, const char *text, const char *hex)
{
    char err[256] = "";
    cdc_buf from_text, from_bin, bin;
    cdc_buf_init(&from_text);
    cdc_buf_init(&from_bin);
    cr_assert_eq(cdc_pgtype_encode(&from_text, &t, text, strlen(text), err, sizeof err), 0,
                 "\"%s\": %s", text, err);
    unhex(hex, &bin);
    cr_assert_eq(cdc_pgtype_encode_binary(&from_bin, &t, kind, bin.data, bin.len, err, sizeof err),
                 0, "\"%s\" from %s: %s", text, hex, err);
    char *a = hex_of(&from_text), *b = hex_of(&from_bin);
    cr_expect_str_eq(b, a, "\"%s\": Avro %s from the binary form, %s from the text", text, b, a);
    free(a);
    free(b);
    cdc_buf_free(&from_text);
    cdc_buf_free(&from_bin);
    cdc_buf_free(&bin);
}

Test(pgbinary, binary_forms_encode_to_the_same_avro_as_their_text)
{
    expect_same_avro(dec(10, 2), CDC_BIN_NUMERIC, "1234.50", "000200000000000204d21388");
    expect_same_avro(dec(18, 2), CDC_BIN_NUMERIC, "-1234567890123456.78",
                     "000500034000000204d2162e23340d801e78");
    expect_same_avro(dec(5, 5), CDC_BIN_NUMERIC, "0.00001", "0001fffe0000000503e8");
    expect_same_avro(dec(38, 0), CDC_BIN_NUMERIC, "99999999999999999999999999999999999999",
                     "000a0009000000000063270f270f270f270f270f270f270f270f270f");
    expect_same_avro(dec(20, 10), CDC_BIN_NUMERIC, "-0.0000000001", "0001fffd4000000a0064");
    expect_same_avro(dec(18, 2), CDC_BIN_NUMERIC, "0.00", "0000000000000002");
    expect_same_avro(dec(12, 4), CDC_BIN_NUMERIC, "10000.0000", "00010001000000040001");
    expect_same_avro(dec(12, 0), CDC_BIN_NUMERIC, "100000000", "00010002000000000001");
    expect_same_avro(dec(30, 10), CDC_BIN_NUMERIC, "12345678901234567890.0123456789",
                     "000800040000000a04d2162e23340d801ed2007b11d722c4");
    expect_same_avro(dec(6, 3), CDC_BIN_NUMERIC, "-0.500", "0001ffff400000031388");
    cdc_coltype ts = conv(CDC_CONV_TIMESTAMP), tz = conv(CDC_CONV_TIMESTAMPTZ);
    expect_same_avro(ts, CDC_BIN_TIMESTAMP, "2000-01-01 00:00:00", "0000000000000000");
    expect_same_avro(ts, CDC_BIN_TIMESTAMP, "1999-12-31 23:59:59.999999", "ffffffffffffffff");
    expect_same_avro(tz, CDC_BIN_TIMESTAMP, "2026-11-24 08:14:00.123456+00", "000304000fb46440");
    expect_same_avro(ts, CDC_BIN_TIMESTAMP, "infinity", "7fffffffffffffff");
    expect_same_avro(tz, CDC_BIN_TIMESTAMP, "-infinity", "8000000000000000");
    cdc_coltype d = conv(CDC_CONV_DATE);
    expect_same_avro(d, CDC_BIN_DATE, "2000-01-01", "00000000");
    expect_same_avro(d, CDC_BIN_DATE, "1970-01-01", "ffffd533");
    expect_same_avro(d, CDC_BIN_DATE, "0044-03-15 BC", "fff49d7b");
    expect_same_avro(d, CDC_BIN_DATE, "infinity", "7fffffff");
    expect_same_avro(d, CDC_BIN_DATE, "-infinity", "80000000");
    expect_same_avro(conv(CDC_CONV_TIME), CDC_BIN_TIME, "24:00:00", "000000141dd76000");
    expect_same_avro(conv(CDC_CONV_FLOAT), CDC_BIN_FLOAT4, "-0", "80000000");
    expect_same_avro(conv(CDC_CONV_FLOAT), CDC_BIN_FLOAT4, "3.4028235e+38", "7f7fffff");
    expect_same_avro(conv(CDC_CONV_FLOAT), CDC_BIN_FLOAT4, "NaN", "ffc00001");
    expect_same_avro(conv(CDC_CONV_DOUBLE), CDC_BIN_FLOAT8, "1e-320", "00000000000007e8");
    expect_same_avro(conv(CDC_CONV_DOUBLE), CDC_BIN_FLOAT8, "-Infinity", "fff0000000000000");
    expect_same_avro(conv(CDC_CONV_INT), CDC_BIN_INT2, "-32768", "8000");
    expect_same_avro(conv(CDC_CONV_INT), CDC_BIN_INT4, "2147483647", "7fffffff");
    expect_same_avro(conv(CDC_CONV_LONG), CDC_BIN_INT8, "-9223372036854775808",
                     "8000000000000000");
    expect_same_avro(conv(CDC_CONV_BOOL), CDC_BIN_BOOL, "t", "01");
    expect_same_avro(conv(CDC_CONV_UUID), CDC_BIN_UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                     "a0eebc999c0b4ef8bb6d6bb9bd380a11");
    expect_same_avro(conv(CDC_CONV_STRING), CDC_BIN_TEXT, "tab\there \\N", "7461620968657265205c4e");
    expect_same_avro(conv(CDC_CONV_BYTES), CDC_BIN_BYTEA, "\\x00ff10", "00ff10");
}

/* Avro -> binary form -> Avro gives the same bytes, also past 36 digits. */
Test(pgbinary, numerics_survive_the_round_trip_through_their_binary_form)
{
    static char big[1100];
    memset(big, '9', 500);
    big[500] = '.';
    memset(big + 501, '9', 500);
    struct {
        cdc_coltype t;
        const char *text;
    } cases[] = {
        {dec(18, 2), "0.01"},
        {dec(18, 2), "-0.01"},
        {dec(18, 2), "9999999999999999.99"},
        {dec(38, 0), "-99999999999999999999999999999999999999"},
        {dec(38, 38), "0.00000000000000000000000000000000000001"},
        {dec(38, 10), "1234567890123456789012345678.0123456789"},
        {dec(60, 30), "-123456789012345678901234567890.123456789012345678901234567890"},
        {dec(10, 0), "10000"},
        {dec(10, 5), "10000.00000"},
        {dec(1000, 500), big},
    };
    char err[256] = "";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cdc_buf bin, avro, back;
        cdc_buf_init(&avro);
        cdc_buf_init(&back);
        cr_assert_eq(to_binary(&cases[i].t, CDC_BIN_NUMERIC, cases[i].text, &bin, err, sizeof err),
                     0, "%s: %s", cases[i].text, err);
        cr_assert_eq(cdc_pgtype_encode(&avro, &cases[i].t, cases[i].text, strlen(cases[i].text),
                                       err, sizeof err),
                     0);
        cr_assert_eq(cdc_pgtype_encode_binary(&back, &cases[i].t, CDC_BIN_NUMERIC, bin.data, bin.len,
                                              err, sizeof err),
                     0, "%.40s: %s", cases[i].text, err);
        cr_expect(avro.len == back.len && memcmp(avro.data, back.data, avro.len) == 0,
                  "%.40s: the round trip changed its Avro bytes", cases[i].text);
        cdc_buf_free(&bin);
        cdc_buf_free(&avro);
        cdc_buf_free(&back);
    }
}

Test(pgbinary, binary_forms_that_avro_cannot_hold_are_refused)
{
    char err[256];
    cdc_buf out, in;
    cdc_buf_init(&out);
    const char *bad[][2] = {
        {"0000000000c00000", "numeric NaN"},
        {"0000000000d00000", "numeric Infinity"},
        {"0000000000f00000", "numeric -Infinity"},
        {"000200000000000204d2", "numeric with a digit missing"},
        {"0001000000000002ffff", "numeric digit 65535"},
    };
    cdc_coltype n = dec(18, 2);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unhex(bad[i][0], &in);
        err[0] = '\0';
        cr_expect_eq(cdc_pgtype_encode_binary(&out, &n, CDC_BIN_NUMERIC, in.data, in.len, err,
                                              sizeof err),
                     -1, "%s accepted", bad[i][1]);
        cr_expect_neq(err[0], '\0');
        cdc_buf_free(&in);
    }
    /* 1234.567 in numeric(10,2): a fraction digit the scale has no room for. */
    unhex("000200000000000304d21626", &in);
    cr_expect_eq(cdc_pgtype_encode_binary(&out, &n, CDC_BIN_NUMERIC, in.data, in.len, err,
                                          sizeof err),
                 -1, "a third fraction digit in numeric(18,2)");
    cdc_buf_free(&in);
    unhex("00000001", &in);
    cr_expect_eq(cdc_pgtype_encode_binary(&out, &n, CDC_BIN_INT8, in.data, in.len, err, sizeof err),
                 -1, "a bigint of 4 bytes");
    cdc_buf_free(&in);
    cdc_buf_free(&out);
}
