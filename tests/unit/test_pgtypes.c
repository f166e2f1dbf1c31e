/*
 * PostgreSQL text <-> Avro conversions: the type mapping, every conversion
 * in both directions with edge values, malformed text and truncated Avro,
 * and avro-c decoding the bytes we produce for the logical types so they are
 * known to be valid Avro, not merely self-consistent.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <jansson.h>

#include "cdc/avro_bin.h"
#include "cdc/pgtypes.h"

static cdc_coltype conv(cdc_conv c)
{
    cdc_coltype t = {.conv = c, .precision = 0, .scale = 0};
    return t;
}

static cdc_coltype dec(int precision, int scale)
{
    cdc_coltype t = {.conv = CDC_CONV_DECIMAL, .precision = precision, .scale = scale};
    return t;
}

/* typmod as Postgres 15 computes it for numeric(p,s). */
static int32_t numeric_typmod(int p, int s)
{
    return ((p << 16) | (s & 0x7ff)) + 4;
}

/* Encode text; the Avro bytes land in *out (caller frees). */
static void encode_ok(const cdc_coltype *t, const char *text, cdc_buf *out)
{
    char err[256] = "";
    cdc_buf_init(out);
    cr_assert_eq(cdc_pgtype_encode(out, t, text, strlen(text), err, sizeof err), 0,
                 "encode \"%s\": %s", text, err);
}

static void expect_encode_fails(const cdc_coltype *t, const char *text)
{
    char err[256] = "";
    cdc_buf b = {0};
    cr_expect_eq(cdc_pgtype_encode(&b, t, text, strlen(text), err, sizeof err), -1,
                 "accepted \"%s\" for conv %d", text, (int)t->conv);
    cr_expect_neq(err[0], '\0', "no message for \"%s\"", text);
    cdc_buf_free(&b);
}

/* Decode the whole of `in`, which must be exactly one value; returns text. */
static char *decode_ok(const cdc_coltype *t, const cdc_buf *in)
{
    char err[256] = "";
    cdc_buf out = {0};
    const uint8_t *p = in->data, *end = in->data + in->len;
    cr_assert_eq(cdc_pgtype_decode_text(&out, t, &p, end, err, sizeof err), 0, "decode: %s",
                 err);
    cr_expect_eq(p, end, "decode left %td bytes", end - p);
    char *s = cdc_xstrdup(cdc_buf_cstr(&out));
    cdc_buf_free(&out);
    return s;
}

/* text -> Avro -> text gives `back`. */
static void round_trip(const cdc_coltype *t, const char *text, const char *back)
{
    cdc_buf b;
    encode_ok(t, text, &b);
    char *s = decode_ok(t, &b);
    cr_expect_str_eq(s, back, "round trip of \"%s\"", text);
    free(s);
    cdc_buf_free(&b);
}

static void expect_long(const cdc_coltype *t, const char *text, int64_t want)
{
    cdc_buf b;
    encode_ok(t, text, &b);
    const uint8_t *p = b.data;
    int64_t v = 0;
    cr_assert_eq(cdc_avro_get_long(&p, b.data + b.len, &v), 0);
    cr_expect_eq(v, want, "\"%s\" -> %lld, want %lld", text, (long long)v, (long long)want);
    cr_expect_eq(p, b.data + b.len);
    cdc_buf_free(&b);
}

/* Avro bytes payload of an encoded decimal, as hex. */
static void expect_decimal_hex(const cdc_coltype *t, const char *text, const char *hex)
{
    cdc_buf b;
    encode_ok(t, text, &b);
    const uint8_t *p = b.data, *data;
    size_t len;
    cr_assert_eq(cdc_avro_get_bytes(&p, b.data + b.len, &data, &len), 0);
    char got[1024] = "";
    for (size_t i = 0; i < len && 2 * i + 2 < sizeof got; i++)
        snprintf(got + 2 * i, 3, "%02x", data[i]);
    cr_expect_str_eq(got, hex, "decimal \"%s\"", text);
    cdc_buf_free(&b);
}

/* ---- avro-c cross-check ---------------------------------------------- */

/*
 * Read `b` with avro-c using the schema cdc_pgtype_avro_type gives for t,
 * and hand back the generic value (caller releases with avro_c_release).
 */
typedef struct avro_c_val {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t val;
} avro_c_val;

static void avro_c_read(const cdc_coltype *t, const cdc_buf *b, avro_c_val *v)
{
    json_t *js = cdc_pgtype_avro_type(t);
    char *text = json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT);
    cr_assert_eq(avro_schema_from_json_length(text, strlen(text), &v->schema), 0, "%s: %s",
                 text, avro_strerror());
    free(text);
    json_decref(js);
    v->iface = avro_generic_class_from_schema(v->schema);
    cr_assert_eq(avro_generic_value_new(v->iface, &v->val), 0);
    avro_reader_t r = avro_reader_memory((const char *)b->data, (int64_t)b->len);
    cr_assert_eq(avro_value_read(r, &v->val), 0, "avro-c: %s", avro_strerror());
    avro_reader_free(r);
}

static void avro_c_release(avro_c_val *v)
{
    avro_value_decref(&v->val);
    avro_value_iface_decref(v->iface);
    avro_schema_decref(v->schema);
}

/* ---- mapping ----------------------------------------------------------- */

Test(pgtypes, builtin_types_map_to_their_avro_conversion)
{
    static const struct { uint32_t oid; cdc_conv conv; } m[] = {
        {CDC_OID_BOOL, CDC_CONV_BOOL},         {CDC_OID_INT2, CDC_CONV_INT},
        {CDC_OID_INT4, CDC_CONV_INT},          {CDC_OID_INT8, CDC_CONV_LONG},
        {CDC_OID_FLOAT4, CDC_CONV_FLOAT},      {CDC_OID_FLOAT8, CDC_CONV_DOUBLE},
        {CDC_OID_BYTEA, CDC_CONV_BYTES},       {CDC_OID_DATE, CDC_CONV_DATE},
        {CDC_OID_TIME, CDC_CONV_TIME},         {CDC_OID_TIMESTAMP, CDC_CONV_TIMESTAMP},
        {CDC_OID_TIMESTAMPTZ, CDC_CONV_TIMESTAMPTZ}, {CDC_OID_UUID, CDC_CONV_UUID},
        {CDC_OID_TEXT, CDC_CONV_STRING},       {CDC_OID_VARCHAR, CDC_CONV_STRING},
        {CDC_OID_BPCHAR, CDC_CONV_STRING},     {114 /* json */, CDC_CONV_STRING},
        {1186 /* interval */, CDC_CONV_STRING}, {CDC_OID_NUMERIC, CDC_CONV_STRING},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        cr_expect_eq(cdc_pgtype_map(m[i].oid, -1).conv, m[i].conv, "oid %u", m[i].oid);
    cr_expect_eq(cdc_pgtype_map(CDC_OID_TIMESTAMPTZ, 3).conv, CDC_CONV_TIMESTAMPTZ);
    cr_expect_eq(cdc_pgtype_map(CDC_OID_VARCHAR, 24).conv, CDC_CONV_STRING);
}

Test(pgtypes, numeric_typmod_gives_precision_and_scale)
{
    cdc_coltype t = cdc_pgtype_map(CDC_OID_NUMERIC, numeric_typmod(18, 2));
    cr_expect_eq(t.conv, CDC_CONV_DECIMAL);
    cr_expect_eq(t.precision, 18);
    cr_expect_eq(t.scale, 2);
    t = cdc_pgtype_map(CDC_OID_NUMERIC, numeric_typmod(1000, 1000));
    cr_expect_eq(t.conv, CDC_CONV_DECIMAL);
    cr_expect_eq(t.precision, 1000);
    cr_expect_eq(t.scale, 1000);
    t = cdc_pgtype_map(CDC_OID_NUMERIC, numeric_typmod(5, 0));
    cr_expect_eq(t.conv, CDC_CONV_DECIMAL);
    cr_expect_eq(t.scale, 0);
}

Test(pgtypes, numeric_without_avro_decimal_equivalent_is_string)
{
    cr_expect_eq(cdc_pgtype_map(CDC_OID_NUMERIC, -1).conv, CDC_CONV_STRING);
    /* PG15 numeric(5,-2) and numeric(3,5): sign-extended 11-bit scale. */
    cr_expect_eq(cdc_pgtype_map(CDC_OID_NUMERIC, numeric_typmod(5, -2)).conv, CDC_CONV_STRING);
    cr_expect_eq(cdc_pgtype_map(CDC_OID_NUMERIC, numeric_typmod(3, 5)).conv, CDC_CONV_STRING);
    cr_expect_eq(cdc_pgtype_map(CDC_OID_NUMERIC, numeric_typmod(1000, -1000)).conv,
                 CDC_CONV_STRING);
}

static void expect_avro_type(cdc_coltype t, const char *json)
{
    json_t *got = cdc_pgtype_avro_type(&t);
    json_t *want = json_loads(json, JSON_DECODE_ANY, NULL);
    cr_assert_not_null(got);
    cr_assert_not_null(want);
    char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
    cr_expect(json_equal(got, want), "conv %d gave %s, want %s", (int)t.conv, g, json);
    free(g);

    /* and the mapping is recoverable, bare or inside a nullable union */
    cdc_coltype back = {.conv = CDC_CONV_STRING};
    cr_expect_eq(cdc_pgtype_from_avro(got, &back), 0);
    cr_expect_eq(back.conv, t.conv);
    cr_expect_eq(back.precision, t.precision);
    cr_expect_eq(back.scale, t.scale);
    json_t *u = json_pack("[s, O]", "null", got);
    back.conv = CDC_CONV_STRING;
    cr_expect_eq(cdc_pgtype_from_avro(u, &back), 0);
    cr_expect_eq(back.conv, t.conv);
    json_decref(u);
    json_decref(got);
    json_decref(want);
}

Test(pgtypes, avro_types_are_as_documented_and_reversible)
{
    expect_avro_type(conv(CDC_CONV_STRING), "\"string\"");
    expect_avro_type(conv(CDC_CONV_BOOL), "\"boolean\"");
    expect_avro_type(conv(CDC_CONV_INT), "\"int\"");
    expect_avro_type(conv(CDC_CONV_LONG), "\"long\"");
    expect_avro_type(conv(CDC_CONV_FLOAT), "\"float\"");
    expect_avro_type(conv(CDC_CONV_DOUBLE), "\"double\"");
    expect_avro_type(conv(CDC_CONV_BYTES), "\"bytes\"");
    expect_avro_type(dec(18, 2),
                     "{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":18,\"scale\":2}");
    expect_avro_type(conv(CDC_CONV_DATE), "{\"type\":\"int\",\"logicalType\":\"date\"}");
    expect_avro_type(conv(CDC_CONV_TIME), "{\"type\":\"long\",\"logicalType\":\"time-micros\"}");
    expect_avro_type(conv(CDC_CONV_TIMESTAMP),
                     "{\"type\":\"long\",\"logicalType\":\"local-timestamp-micros\"}");
    expect_avro_type(conv(CDC_CONV_TIMESTAMPTZ),
                     "{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}");
    expect_avro_type(conv(CDC_CONV_UUID), "{\"type\":\"string\",\"logicalType\":\"uuid\"}");
}

Test(pgtypes, foreign_avro_types_are_refused)
{
    static const char *const bad[] = {
        "\"null\"",
        "[\"null\"]",
        "[\"int\",\"long\"]",
        "[\"null\",\"int\",\"long\"]",
        "{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}",
        "{\"type\":\"int\",\"logicalType\":\"time-millis\"}",
        "{\"type\":\"fixed\",\"name\":\"f\",\"size\":4}",
        "{\"type\":\"bytes\",\"logicalType\":\"decimal\"}",
        "{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":2,\"scale\":3}",
        "{\"type\":\"record\",\"name\":\"r\",\"fields\":[]}",
        "42",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        cr_assert_not_null(j, "%s", bad[i]);
        cdc_coltype t;
        cr_expect_eq(cdc_pgtype_from_avro(j, &t), -1, "accepted %s", bad[i]);
        json_decref(j);
    }
    /* scale defaults to 0 as in the Avro spec, and either union order works */
    json_t *j = json_loads("[{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":7},"
                           "\"null\"]",
                           0, NULL);
    cdc_coltype t;
    cr_expect_eq(cdc_pgtype_from_avro(j, &t), 0);
    cr_expect_eq(t.conv, CDC_CONV_DECIMAL);
    cr_expect_eq(t.precision, 7);
    cr_expect_eq(t.scale, 0);
    json_decref(j);
}

/* ---- bool / int / long ------------------------------------------------- */

Test(pgtypes, booleans_round_trip)
{
    cdc_coltype t = conv(CDC_CONV_BOOL);
    round_trip(&t, "t", "t");
    round_trip(&t, "f", "f");
    cdc_buf b;
    encode_ok(&t, "t", &b);
    cr_expect_eq(b.len, 1);
    cr_expect_eq(b.data[0], 1);
    cdc_buf_free(&b);
    expect_encode_fails(&t, "yes");
    expect_encode_fails(&t, "");
    expect_encode_fails(&t, "tt");
}

Test(pgtypes, ints_round_trip_at_the_limits)
{
    cdc_coltype t = conv(CDC_CONV_INT);
    static const char *const ok[] = {"0", "1", "-1", "32767", "-32768", "2147483647",
                                     "-2147483648"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        round_trip(&t, ok[i], ok[i]);
    expect_long(&t, "-2147483648", INT32_MIN);
    expect_encode_fails(&t, "2147483648");
    expect_encode_fails(&t, "-2147483649");
    expect_encode_fails(&t, "99999999999999999999999");
}

Test(pgtypes, longs_round_trip_at_the_limits)
{
    cdc_coltype t = conv(CDC_CONV_LONG);
    round_trip(&t, "9223372036854775807", "9223372036854775807");
    round_trip(&t, "-9223372036854775808", "-9223372036854775808");
    round_trip(&t, "0", "0");
    round_trip(&t, "-42", "-42");
    expect_long(&t, "-9223372036854775808", INT64_MIN);
    expect_encode_fails(&t, "9223372036854775808");
    expect_encode_fails(&t, "-9223372036854775809");
    expect_encode_fails(&t, "18446744073709551616");
}

Test(pgtypes, integer_garbage_is_refused)
{
    cdc_coltype ti = conv(CDC_CONV_INT), tl = conv(CDC_CONV_LONG);
    static const char *const bad[] = {"", "-", "+1", " 1", "1 ", "1.0", "0x10", "1e3", "abc",
                                      "--1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_encode_fails(&ti, bad[i]);
        expect_encode_fails(&tl, bad[i]);
    }
}

/* ---- float / double -------------------------------------------------- */

static void float_round_trip_exact(const char *text, const char *back)
{
    cdc_coltype t = conv(CDC_CONV_FLOAT);
    cdc_buf b;
    encode_ok(&t, text, &b);
    const uint8_t *p = b.data;
    float f;
    cr_assert_eq(cdc_avro_get_float(&p, b.data + b.len, &f), 0);
    char *s = decode_ok(&t, &b);
    cr_expect_str_eq(s, back, "float \"%s\"", text);
    /* the printed form reads back to the same bits */
    float again = strtof(s, NULL);
    if (!isnan(f))
        cr_expect_eq(memcmp(&again, &f, sizeof f), 0, "float \"%s\" -> \"%s\"", text, s);
    free(s);
    cdc_buf_free(&b);
}

static void double_round_trip_exact(const char *text, const char *back)
{
    cdc_coltype t = conv(CDC_CONV_DOUBLE);
    cdc_buf b;
    encode_ok(&t, text, &b);
    const uint8_t *p = b.data;
    double d;
    cr_assert_eq(cdc_avro_get_double(&p, b.data + b.len, &d), 0);
    char *s = decode_ok(&t, &b);
    cr_expect_str_eq(s, back, "double \"%s\"", text);
    double again = strtod(s, NULL);
    if (!isnan(d))
        cr_expect_eq(memcmp(&again, &d, sizeof d), 0, "double \"%s\" -> \"%s\"", text, s);
    free(s);
    cdc_buf_free(&b);
}

Test(pgtypes, doubles_round_trip_bit_exact_in_shortest_form)
{
    double_round_trip_exact("0", "0");
    double_round_trip_exact("-0", "-0");
    double_round_trip_exact("0.1", "0.1");
    double_round_trip_exact("-1.5", "-1.5");
    double_round_trip_exact("3.141592653589793", "3.141592653589793");
    double_round_trip_exact("1.7976931348623157e+308", "1.7976931348623157e+308");
    double_round_trip_exact("2.2250738585072014e-308", "2.2250738585072014e-308");
    double_round_trip_exact("4.9406564584124654e-324", "5e-324");
    double_round_trip_exact("123456789012345680000", "1.2345678901234568e+20");
    double_round_trip_exact("NaN", "NaN");
    double_round_trip_exact("Infinity", "Infinity");
    double_round_trip_exact("-Infinity", "-Infinity");
}

Test(pgtypes, floats_round_trip_bit_exact_in_shortest_form)
{
    float_round_trip_exact("0", "0");
    float_round_trip_exact("-0", "-0");
    float_round_trip_exact("0.1", "0.1");
    float_round_trip_exact("3.40282347e+38", "3.4028235e+38");
    float_round_trip_exact("1.40129846e-45", "1e-45");
    float_round_trip_exact("1.17549435e-38", "1.1754944e-38");
    float_round_trip_exact("16777217", "16777216");
    float_round_trip_exact("NaN", "NaN");
    float_round_trip_exact("Infinity", "Infinity");
    float_round_trip_exact("-Infinity", "-Infinity");
}

Test(pgtypes, float_nan_is_an_ieee_nan_in_avro)
{
    cdc_coltype t = conv(CDC_CONV_DOUBLE);
    cdc_buf b;
    encode_ok(&t, "NaN", &b);
    avro_c_val v;
    avro_c_read(&t, &b, &v);
    double d = 0;
    avro_value_get_double(&v.val, &d);
    cr_expect(isnan(d));
    avro_c_release(&v);
    cdc_buf_free(&b);
}

Test(pgtypes, float_garbage_and_overflow_are_refused)
{
    cdc_coltype tf = conv(CDC_CONV_FLOAT), td = conv(CDC_CONV_DOUBLE);
    static const char *const bad[] = {"", "abc", "0x10", "inf", "nan", " 1", "1 ", "1e",
                                      "--1", ".", "e5", "1e999", "-1e999", "1e-999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_encode_fails(&tf, bad[i]);
        expect_encode_fails(&td, bad[i]);
    }
    expect_encode_fails(&tf, "1e39");
}

/* ---- bytea ----------------------------------------------------------- */

Test(pgtypes, bytea_hex_round_trips)
{
    cdc_coltype t = conv(CDC_CONV_BYTES);
    round_trip(&t, "\\x", "\\x");
    round_trip(&t, "\\x0a1bff00", "\\x0a1bff00");
    round_trip(&t, "\\xDEADbeef", "\\xdeadbeef");
    cdc_buf b;
    encode_ok(&t, "\\x0a1bff00", &b);
    cr_expect_arr_eq(b.data, ((uint8_t[]){0x08, 0x0a, 0x1b, 0xff, 0x00}), 5);
    cdc_buf_free(&b);
    encode_ok(&t, "\\x", &b);
    cr_expect_eq(b.len, 1);
    cr_expect_eq(b.data[0], 0);
    cdc_buf_free(&b);
}

Test(pgtypes, bytea_malformed_is_refused)
{
    cdc_coltype t = conv(CDC_CONV_BYTES);
    expect_encode_fails(&t, "");
    expect_encode_fails(&t, "0a1b");
    expect_encode_fails(&t, "\\x0");
    expect_encode_fails(&t, "\\x0g");
    expect_encode_fails(&t, "\\001\\002"); /* escape format */
    expect_encode_fails(&t, "\\X0a");
}

/* ---- numeric --------------------------------------------------------- */

Test(pgtypes, decimal_bytes_are_minimal_twos_complement)
{
    cdc_coltype s0 = dec(3, 0), s2 = dec(10, 2);
    expect_decimal_hex(&s0, "0", "00");
    expect_decimal_hex(&s0, "127", "7f");
    expect_decimal_hex(&s0, "128", "0080");
    expect_decimal_hex(&s0, "-128", "80");
    expect_decimal_hex(&s0, "-129", "ff7f");
    expect_decimal_hex(&s0, "255", "00ff");
    expect_decimal_hex(&s0, "256", "0100");
    expect_decimal_hex(&s0, "-1", "ff");
    expect_decimal_hex(&s2, "-12345.67", "ed2979");
    expect_decimal_hex(&s2, "-0.01", "ff");
    expect_decimal_hex(&s2, "0.00", "00");
    expect_decimal_hex(&s2, "-0.00", "00");
    cdc_coltype wide = dec(38, 0);
    expect_decimal_hex(&wide, "99999999999999999999999999999999999999",
                       "4b3b4ca85a86c47a098a223fffffffff");
    cdc_coltype s10 = dec(40, 10);
    expect_decimal_hex(&s10, "-123456789012345678901234567890.0123456789",
                       "fc5f36df8a3f240c475343a06973fb2aeb");
}

Test(pgtypes, decimals_round_trip_with_exact_scale)
{
    cdc_coltype s0 = dec(3, 0), s2 = dec(10, 2), s4 = dec(10, 4), s10 = dec(40, 10);
    round_trip(&s0, "128", "128");
    round_trip(&s0, "-129", "-129");
    round_trip(&s0, "0", "0");
    round_trip(&s2, "-12345.67", "-12345.67");
    round_trip(&s2, "-0.01", "-0.01");
    round_trip(&s2, "0.10", "0.10");
    round_trip(&s2, "0", "0.00");
    round_trip(&s2, "-0.00", "0.00");
    round_trip(&s2, "00012.5", "12.50");
    round_trip(&s4, "1.5", "1.5000");
    round_trip(&s4, "-1", "-1.0000");
    round_trip(&s10, "-123456789012345678901234567890.0123456789",
               "-123456789012345678901234567890.0123456789");
    round_trip(&s10, "0.0000000001", "0.0000000001");
    cdc_coltype all_frac = dec(5, 5);
    round_trip(&all_frac, "-0.00001", "-0.00001");
    round_trip(&all_frac, "0.99999", "0.99999");
}

Test(pgtypes, decimal_of_1000_digits_round_trips_and_reads_in_avro_c)
{
    char text[1003];
    text[0] = '-';
    memset(text + 1, '9', 500);
    text[501] = '.';
    memset(text + 502, '9', 500);
    text[1002] = '\0';
    cdc_coltype t = dec(1000, 500);
    round_trip(&t, text, text);

    cdc_buf b;
    encode_ok(&t, text, &b);
    avro_c_val v;
    avro_c_read(&t, &b, &v);
    const void *data;
    size_t len;
    cr_assert_eq(avro_value_get_bytes(&v.val, &data, &len), 0);
    cr_expect_leq(len, 416);
    cr_expect_eq(((const uint8_t *)data)[0] & 0x80, 0x80, "negative sign bit");
    avro_c_release(&v);
    cdc_buf_free(&b);
}

Test(pgtypes, decimal_text_that_cannot_be_exact_is_refused)
{
    cdc_coltype t = dec(5, 2);
    static const char *const bad[] = {
        "NaN", "Infinity", "-Infinity", "1e5", "1E5", "1.234", "+1", "1.", ".5", "", "-",
        "12a", "1 ", " 1", "1,5", "--1", "1234.00", "-1000.00", "0x10",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_encode_fails(&t, bad[i]);
    /* the message names the value */
    char err[256] = "";
    cdc_buf b = {0};
    cr_expect_eq(cdc_pgtype_encode(&b, &t, "NaN", 3, err, sizeof err), -1);
    cr_expect_not_null(strstr(err, "NaN"), "%s", err);
    cdc_buf_free(&b);
}

Test(pgtypes, decimal_precision_is_checked_on_both_sides)
{
    cdc_coltype t = dec(5, 2);
    round_trip(&t, "999.99", "999.99");
    round_trip(&t, "-999.99", "-999.99");
    expect_encode_fails(&t, "1000.00");
    /* 100000 (7 digits at scale 2) read as numeric(5,2) */
    cdc_buf b = {0};
    cdc_avro_put_bytes(&b, "\x01\x86\xa0", 3);
    char err[256] = "";
    cdc_buf out = {0};
    const uint8_t *p = b.data;
    cr_expect_eq(cdc_pgtype_decode_text(&out, &t, &p, b.data + b.len, err, sizeof err), -1);
    cr_expect_neq(err[0], '\0');
    cdc_buf_free(&out);
    cdc_buf_free(&b);
}

Test(pgtypes, decimal_written_by_avro_c_decodes)
{
    /* avro-c writes bytes 0xff 0x7f: -129, which at scale 2 is -1.29 */
    avro_schema_t s = avro_schema_bytes();
    avro_value_iface_t *iface = avro_generic_class_from_schema(s);
    avro_value_t v;
    avro_generic_value_new(iface, &v);
    avro_value_set_bytes(&v, (void *)"\xff\x7f", 2);
    char mem[16];
    avro_writer_t w = avro_writer_memory(mem, sizeof mem);
    cr_assert_eq(avro_value_write(w, &v), 0);
    cdc_buf b = {0};
    cdc_buf_append(&b, mem, (size_t)avro_writer_tell(w));
    cdc_coltype t = dec(6, 2);
    char *text = decode_ok(&t, &b);
    cr_expect_str_eq(text, "-1.29");
    free(text);
    cdc_buf_free(&b);
    avro_writer_free(w);
    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    avro_schema_decref(s);
}

Test(pgtypes, decimal_encoding_reads_back_in_avro_c)
{
    static const struct { const char *text; const char *bytes; size_t n; } cases[] = {
        {"-12345.67", "\xed\x29\x79", 3},
        {"1.28", "\x00\x80", 2},
        {"0.00", "\x00", 1},
    };
    cdc_coltype t = dec(18, 2);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cdc_buf b;
        encode_ok(&t, cases[i].text, &b);
        avro_c_val v;
        avro_c_read(&t, &b, &v);
        const void *data;
        size_t len;
        cr_assert_eq(avro_value_get_bytes(&v.val, &data, &len), 0);
        cr_expect_eq(len, cases[i].n, "%s", cases[i].text);
        cr_expect_eq(memcmp(data, cases[i].bytes, cases[i].n), 0, "%s", cases[i].text);
        avro_c_release(&v);
        cdc_buf_free(&b);
    }
}

/* ---- date ------------------------------------------------------------ */

static void expect_date(const char *text, int32_t days)
{
    cdc_coltype t = conv(CDC_CONV_DATE);
    cdc_buf b;
    encode_ok(&t, text, &b);
    const uint8_t *p = b.data;
    int32_t v = 0;
    cr_assert_eq(cdc_avro_get_int(&p, b.data + b.len, &v), 0);
    cr_expect_eq(v, days, "date \"%s\" -> %d, want %d", text, v, days);
    /* avro-c reads the same int */
    avro_c_val av;
    avro_c_read(&t, &b, &av);
    int32_t got = 0;
    avro_value_get_int(&av.val, &got);
    cr_expect_eq(got, days);
    avro_c_release(&av);
    cdc_buf_free(&b);
    round_trip(&t, text, text);
}

Test(pgtypes, dates_are_days_since_epoch_both_ways)
{
    expect_date("1970-01-01", 0);
    expect_date("1969-12-31", -1);
    expect_date("2026-11-24", 20781);
    expect_date("2000-02-29", 11016);
    expect_date("2024-02-29", 19782);
    expect_date("0001-01-01", -719162);
    expect_date("0001-12-31 BC", -719163);      /* the day before 1 AD */
    expect_date("0001-02-29 BC", -719469);      /* 1 BC is a leap year */
    expect_date("0044-03-15 BC", -735160);
    expect_date("4714-11-24 BC", -2440588);     /* Julian day 0, Postgres' minimum */
    expect_date("10000-01-01", 2932897);
    expect_date("5874897-12-31", 2145042905);   /* Postgres' maximum */
    expect_date("infinity", INT32_MAX);
    expect_date("-infinity", INT32_MIN);
}

Test(pgtypes, malformed_dates_are_refused)
{
    cdc_coltype t = conv(CDC_CONV_DATE);
    static const char *const bad[] = {
        "", "2026-13-01", "2026-00-10", "2026-11-31", "2026-11-00", "1900-02-29",
        "0002-02-29 BC", "26-11-24", "2026-1-24", "2026/11/24", "0000-01-01",
        "2026-11-24 AD", "2026-11-24 BCX", "2026-11-24BC", "2026-11-24 ", "Infinity",
        "2026-11-24 00:00:00", "9999999999-01-01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_encode_fails(&t, bad[i]);
}

/* ---- time ------------------------------------------------------------ */

Test(pgtypes, times_are_micros_since_midnight_both_ways)
{
    cdc_coltype t = conv(CDC_CONV_TIME);
    expect_long(&t, "00:00:00", 0);
    expect_long(&t, "12:34:56.5", INT64_C(45296500000));
    expect_long(&t, "23:59:59.999999", INT64_C(86399999999));
    expect_long(&t, "24:00:00", INT64_C(86400000000));
    expect_long(&t, "00:00:00.000001", 1);
    round_trip(&t, "00:00:00", "00:00:00");
    round_trip(&t, "12:34:56.5", "12:34:56.5");
    round_trip(&t, "12:34:56.500000", "12:34:56.5");
    round_trip(&t, "23:59:59.999999", "23:59:59.999999");
    round_trip(&t, "24:00:00", "24:00:00");
    round_trip(&t, "08:05:03.000120", "08:05:03.00012");
}

Test(pgtypes, malformed_times_are_refused)
{
    cdc_coltype t = conv(CDC_CONV_TIME);
    static const char *const bad[] = {
        "", "24:00:01", "24:00:00.000001", "25:00:00", "12:60:00", "12:00:60", "12:00",
        "12:00:00.1234567", "12:00:00+00", "1:00:00", "12:00:00.", "noon",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_encode_fails(&t, bad[i]);

    /* Avro values outside a day have no time text */
    cdc_buf b = {0};
    cdc_buf out = {0};
    char err[256] = "";
    cdc_avro_put_long(&b, -1);
    const uint8_t *p = b.data;
    cr_expect_eq(cdc_pgtype_decode_text(&out, &t, &p, b.data + b.len, err, sizeof err), -1);
    cdc_buf_reset(&b);
    cdc_avro_put_long(&b, INT64_C(86400000001));
    p = b.data;
    cr_expect_eq(cdc_pgtype_decode_text(&out, &t, &p, b.data + b.len, err, sizeof err), -1);
    cdc_buf_free(&out);
    cdc_buf_free(&b);
}

/* ---- timestamp / timestamptz ------------------------------------------ */

static void check_with_avro_c_long(const cdc_coltype *t, const char *text, int64_t want)
{
    cdc_buf b;
    encode_ok(t, text, &b);
    avro_c_val v;
    avro_c_read(t, &b, &v);
    int64_t got = 0;
    avro_value_get_long(&v.val, &got);
    cr_expect_eq(got, want, "avro-c read of \"%s\"", text);
    avro_c_release(&v);
    cdc_buf_free(&b);
}

Test(pgtypes, timestamps_are_local_micros_since_epoch_both_ways)
{
    cdc_coltype t = conv(CDC_CONV_TIMESTAMP);
    expect_long(&t, "1970-01-01 00:00:00", 0);
    expect_long(&t, "1969-12-31 23:59:59.999999", -1);
    expect_long(&t, "2026-11-24 08:14:00.123456", INT64_C(1795508040123456));
    expect_long(&t, "0044-03-15 12:00:00 BC", INT64_C(-63517780800000000));
    expect_long(&t, "10000-01-01 00:00:00", INT64_C(253402300800000000));
    expect_long(&t, "infinity", INT64_MAX);
    expect_long(&t, "-infinity", INT64_MIN);
    /* The last microsecond before INT64_MAX, which stands for infinity. */
    expect_long(&t, "294247-01-10 04:00:54.775806", INT64_MAX - 1);
    check_with_avro_c_long(&t, "2026-11-24 08:14:00.123456", INT64_C(1795508040123456));
    check_with_avro_c_long(&t, "0044-03-15 12:00:00 BC", INT64_C(-63517780800000000));

    static const char *const same[] = {
        "1970-01-01 00:00:00", "1969-12-31 23:59:59.999999", "2026-11-24 08:14:00.123456",
        "2024-02-29 23:59:59.5", "0044-03-15 12:00:00 BC", "0001-12-31 23:59:59 BC",
        "4714-11-24 00:00:00 BC", "10000-01-01 00:00:00", "infinity", "-infinity",
        "294247-01-10 04:00:54.775806",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        round_trip(&t, same[i], same[i]);
}

Test(pgtypes, timestamptz_applies_the_offset_and_decodes_as_utc)
{
    cdc_coltype t = conv(CDC_CONV_TIMESTAMPTZ);
    expect_long(&t, "2026-11-24 08:14:00.123456+00", INT64_C(1795508040123456));
    expect_long(&t, "1970-01-01 00:00:00+00", 0);
    expect_long(&t, "1970-01-01 00:00:00-05:30", INT64_C(19800000000));
    expect_long(&t, "1970-01-01 05:30:15+05:30:15", 0);
    expect_long(&t, "1970-01-01 00:00:00+15:59:59", -INT64_C(57599000000));
    expect_long(&t, "0044-03-15 12:00:00+00 BC", INT64_C(-63517780800000000));
    expect_long(&t, "infinity", INT64_MAX);
    expect_long(&t, "-infinity", INT64_MIN);
    check_with_avro_c_long(&t, "2026-11-24 13:44:00.123456+05:30", INT64_C(1795508040123456));

    round_trip(&t, "2026-11-24 08:14:00.123456+00", "2026-11-24 08:14:00.123456+00");
    round_trip(&t, "2026-11-24 03:14:00-05", "2026-11-24 08:14:00+00");
    round_trip(&t, "2026-01-01 00:00:00+05:30:15", "2025-12-31 18:29:45+00");
    round_trip(&t, "0044-03-15 12:00:00+00 BC", "0044-03-15 12:00:00+00 BC");
    round_trip(&t, "0001-01-01 00:30:00+01", "0001-12-31 23:30:00+00 BC");
    round_trip(&t, "10000-01-01 00:00:00+00", "10000-01-01 00:00:00+00");
    round_trip(&t, "infinity", "infinity");
    round_trip(&t, "-infinity", "-infinity");
}

Test(pgtypes, timestamps_beyond_int64_micros_are_refused)
{
    cdc_coltype t = conv(CDC_CONV_TIMESTAMP), tz = conv(CDC_CONV_TIMESTAMPTZ);
    /* Postgres accepts up to 294276 AD, but micros since 1970 end earlier. */
    expect_encode_fails(&t, "294247-01-10 04:00:54.775807"); /* would be INT64_MAX */
    expect_encode_fails(&t, "294247-01-10 04:00:54.775808");
    expect_encode_fails(&t, "294276-12-31 23:59:59.999999");
    expect_encode_fails(&tz, "294276-12-31 23:59:59.999999+00");
    expect_encode_fails(&t, "999999999-12-31 00:00:00");
    expect_encode_fails(&t, "999999999-12-31 00:00:00 BC");
}

Test(pgtypes, malformed_timestamps_are_refused)
{
    cdc_coltype t = conv(CDC_CONV_TIMESTAMP), tz = conv(CDC_CONV_TIMESTAMPTZ);
    static const char *const bad_both[] = {
        "", "2026-11-24", "2026-11-24T08:14:00", "2026-11-24 8:14:00", "2026-02-30 00:00:00",
        "2026-11-24 08:14", "2026-11-24 08:14:00.1234567", "2026-11-24 25:00:00",
        "now", "Infinity", "2026-11-24 08:14:00 AD",
    };
    for (size_t i = 0; i < sizeof bad_both / sizeof bad_both[0]; i++) {
        expect_encode_fails(&t, bad_both[i]);
        expect_encode_fails(&tz, bad_both[i]);
    }
    expect_encode_fails(&t, "2026-11-24 08:14:00+00");  /* timestamp has no offset */
    expect_encode_fails(&tz, "2026-11-24 08:14:00");    /* timestamptz needs one */
    expect_encode_fails(&tz, "2026-11-24 08:14:00+16");
    expect_encode_fails(&tz, "2026-11-24 08:14:00+5");
    expect_encode_fails(&tz, "2026-11-24 08:14:00+05:3");
    expect_encode_fails(&tz, "2026-11-24 08:14:00+05:60");
    expect_encode_fails(&tz, "2026-11-24 08:14:00 BC+00");
    expect_encode_fails(&tz, "2026-11-24 08:14:00+00 UTC");
}

/* ---- string / uuid --------------------------------------------------- */

Test(pgtypes, strings_and_uuids_are_copied_exactly)
{
    cdc_coltype s = conv(CDC_CONV_STRING), u = conv(CDC_CONV_UUID);
    round_trip(&s, "", "");
    round_trip(&s, "h\xc3\xa9llo, 'world' \\ \"x\"", "h\xc3\xa9llo, 'world' \\ \"x\"");
    round_trip(&s, "1 day 02:03:04", "1 day 02:03:04");
    round_trip(&u, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");

    /* text is length-delimited, not NUL-terminated */
    cdc_buf b = {0};
    char err[256];
    cr_assert_eq(cdc_pgtype_encode(&b, &s, "abcdef", 3, err, sizeof err), 0);
    char *text = decode_ok(&s, &b);
    cr_expect_str_eq(text, "abc");
    free(text);
    cdc_buf_free(&b);
}

Test(pgtypes, string_with_nul_byte_is_refused_on_decode)
{
    cdc_coltype s = conv(CDC_CONV_STRING);
    cdc_buf b = {0}, out = {0};
    char err[256] = "";
    cdc_avro_put_bytes(&b, "a\0b", 3);
    const uint8_t *p = b.data;
    cr_expect_eq(cdc_pgtype_decode_text(&out, &s, &p, b.data + b.len, err, sizeof err), -1);
    cr_expect_neq(err[0], '\0');
    cdc_buf_free(&out);
    cdc_buf_free(&b);
}

/* ---- malformed Avro --------------------------------------------------- */

static const cdc_conv all_convs[] = {
    CDC_CONV_STRING, CDC_CONV_BOOL,      CDC_CONV_INT,  CDC_CONV_LONG,
    CDC_CONV_FLOAT,  CDC_CONV_DOUBLE,    CDC_CONV_BYTES, CDC_CONV_DECIMAL,
    CDC_CONV_DATE,   CDC_CONV_TIME,      CDC_CONV_TIMESTAMP, CDC_CONV_TIMESTAMPTZ,
    CDC_CONV_UUID,
};

static cdc_coltype coltype_for(cdc_conv c)
{
    return c == CDC_CONV_DECIMAL ? dec(30, 4) : conv(c);
}

static const char *sample_text(cdc_conv c)
{
    switch (c) {
    case CDC_CONV_BOOL: return "t";
    case CDC_CONV_INT: return "-2147483648";
    case CDC_CONV_LONG: return "-9223372036854775808";
    case CDC_CONV_FLOAT: return "-1.5e-07";
    case CDC_CONV_DOUBLE: return "1.7976931348623157e+308";
    case CDC_CONV_BYTES: return "\\x00112233445566778899";
    case CDC_CONV_DECIMAL: return "-12345678901234567890.1234";
    case CDC_CONV_DATE: return "0044-03-15 BC";
    case CDC_CONV_TIME: return "23:59:59.999999";
    case CDC_CONV_TIMESTAMP: return "2026-11-24 08:14:00.123456";
    case CDC_CONV_TIMESTAMPTZ: return "2026-11-24 08:14:00.123456+00";
    case CDC_CONV_UUID: return "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    case CDC_CONV_STRING: break;
    }
    return "some text";
}

Test(pgtypes, truncated_avro_fails_for_every_type)
{
    for (size_t i = 0; i < sizeof all_convs / sizeof all_convs[0]; i++) {
        cdc_coltype t = coltype_for(all_convs[i]);
        cdc_buf b;
        encode_ok(&t, sample_text(all_convs[i]), &b);
        for (size_t cut = 0; cut < b.len; cut++) {
            /* exact-size copy so ASan catches any read past end */
            uint8_t *copy = malloc(cut ? cut : 1);
            memcpy(copy, b.data, cut);
            const uint8_t *p = copy;
            char err[256] = "";
            cdc_buf out = {0};
            cr_expect_eq(cdc_pgtype_decode_text(&out, &t, &p, copy + cut, err, sizeof err), -1,
                         "conv %d cut %zu", (int)t.conv, cut);
            cr_expect_neq(err[0], '\0', "conv %d cut %zu", (int)t.conv, cut);
            cr_expect_eq(p, copy, "cursor moved on failure");
            cdc_buf_free(&out);
            free(copy);
        }
        cdc_buf_free(&b);
    }
}

Test(pgtypes, sample_values_round_trip_for_every_type)
{
    for (size_t i = 0; i < sizeof all_convs / sizeof all_convs[0]; i++) {
        cdc_coltype t = coltype_for(all_convs[i]);
        round_trip(&t, sample_text(all_convs[i]), sample_text(all_convs[i]));
    }
}

Test(pgtypes, garbage_text_fails_for_every_typed_conversion)
{
    static const char *const garbage[] = {"", "garbage", "\xff\xfe", "1 2", "-"};
    for (size_t i = 0; i < sizeof all_convs / sizeof all_convs[0]; i++) {
        if (all_convs[i] == CDC_CONV_STRING || all_convs[i] == CDC_CONV_UUID)
            continue;
        cdc_coltype t = coltype_for(all_convs[i]);
        for (size_t g = 0; g < sizeof garbage / sizeof garbage[0]; g++)
            expect_encode_fails(&t, garbage[g]);
    }
}

/* Deterministic pseudo-random bytes: decode must never crash or over-read. */
Test(pgtypes, random_avro_input_never_crashes)
{
    uint64_t state = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 3000; round++) {
        size_t len = (size_t)(round % 24);
        uint8_t *buf = malloc(len ? len : 1);
        for (size_t k = 0; k < len; k++) {
            state = state * 6364136223846793005u + 1442695040888963407u;
            buf[k] = (uint8_t)(state >> 56);
        }
        for (size_t i = 0; i < sizeof all_convs / sizeof all_convs[0]; i++) {
            cdc_coltype t = coltype_for(all_convs[i]);
            const uint8_t *p = buf;
            char err[128];
            cdc_buf out = {0};
            int rc = cdc_pgtype_decode_text(&out, &t, &p, buf + len, err, sizeof err);
            cr_assert(rc == 0 || rc == -1);
            cr_assert(p >= buf && p <= buf + len);
            cdc_buf_free(&out);
        }
        free(buf);
    }
}

Test(pgtypes, zero_length_and_oversized_decimals_are_refused)
{
    cdc_coltype t = dec(1000, 0);
    char err[256] = "";
    cdc_buf b = {0}, out = {0};
    cdc_avro_put_bytes(&b, "", 0);
    const uint8_t *p = b.data;
    cr_expect_eq(cdc_pgtype_decode_text(&out, &t, &p, b.data + b.len, err, sizeof err), -1);
    cdc_buf_reset(&b);
    uint8_t big[2000];
    memset(big, 0x11, sizeof big);
    cdc_avro_put_bytes(&b, big, sizeof big);
    p = b.data;
    err[0] = '\0';
    cr_expect_eq(cdc_pgtype_decode_text(&out, &t, &p, b.data + b.len, err, sizeof err), -1);
    cr_expect_neq(err[0], '\0');
    cdc_buf_free(&out);
    cdc_buf_free(&b);
}
