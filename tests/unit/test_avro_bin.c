/*
 * Avro binary primitives, checked against avro-c in both directions: what we
 * write must decode with the reference library to the same value and consume
 * exactly the bytes we wrote, and what avro-c writes must decode with our
 * readers. Truncated and over-long input must fail without reading past end.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>

#include "cdc/avro_bin.h"

#define SENTINEL INT64_C(-1234567)

/*
 * Decode buf with avro-c as `schema_json`, followed by a long sentinel we
 * appended; the sentinel proves avro-c consumed exactly the bytes of the
 * value. The caller inspects *val and releases it with release().
 */
typedef struct decoded {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t val;
} decoded;

static void avro_c_decode(const char *schema_json, cdc_buf *buf, decoded *d)
{
    cdc_avro_put_long(buf, SENTINEL);

    cr_assert_eq(avro_schema_from_json_length(schema_json, strlen(schema_json), &d->schema), 0,
                 "%s", avro_strerror());
    d->iface = avro_generic_class_from_schema(d->schema);
    cr_assert_not_null(d->iface, "%s", avro_strerror());
    cr_assert_eq(avro_generic_value_new(d->iface, &d->val), 0, "%s", avro_strerror());

    avro_reader_t r = avro_reader_memory((const char *)buf->data, (int64_t)buf->len);
    cr_assert_eq(avro_value_read(r, &d->val), 0, "avro-c read: %s", avro_strerror());

    avro_schema_t ls = avro_schema_long();
    avro_value_iface_t *li = avro_generic_class_from_schema(ls);
    avro_value_t lv;
    int64_t tail = 0;
    cr_assert_eq(avro_generic_value_new(li, &lv), 0);
    cr_assert_eq(avro_value_read(r, &lv), 0, "sentinel: %s", avro_strerror());
    avro_value_get_long(&lv, &tail);
    cr_expect_eq(tail, SENTINEL, "avro-c consumed a different number of bytes");
    avro_value_decref(&lv);
    avro_value_iface_decref(li);
    avro_schema_decref(ls);
    avro_reader_free(r);
}

static void release(decoded *d)
{
    avro_value_decref(&d->val);
    avro_value_iface_decref(d->iface);
    avro_schema_decref(d->schema);
}

/* Encode `val` (already filled by the caller) with avro-c into out. */
static void avro_c_encode(avro_value_t *val, cdc_buf *out)
{
    size_t size = 0;
    cr_assert_eq(avro_value_sizeof(val, &size), 0, "%s", avro_strerror());
    cdc_buf_reset(out);
    cdc_buf_reserve(out, size);
    avro_writer_t w = avro_writer_memory((char *)out->data, (int64_t)size);
    cr_assert_eq(avro_value_write(w, val), 0, "%s", avro_strerror());
    out->len = (size_t)avro_writer_tell(w);
    cr_assert_eq(out->len, size);
    avro_writer_free(w);
}

static const int64_t longs[] = {
    0, 1, -1, 2, -2, 63, -64, 64, -65, 127, 128, -129, 8191, 8192, -8193,
    INT32_MAX, INT32_MIN, (int64_t)INT32_MAX + 1, (int64_t)INT32_MIN - 1,
    INT64_C(1) << 53, -(INT64_C(1) << 53), INT64_C(1234567890123456789),
    INT64_MAX - 1, INT64_MIN + 1, INT64_MAX, INT64_MIN,
};

Test(avro_bin, zigzag_varint_matches_spec_examples)
{
    /* The spec's table: 0->00, -1->01, 1->02, -2->03, 2->04, -64->7f, 64->80 01. */
    static const struct { int64_t v; uint8_t bytes[3]; size_t n; } ex[] = {
        {0, {0x00}, 1}, {-1, {0x01}, 1}, {1, {0x02}, 1}, {-2, {0x03}, 1},
        {2, {0x04}, 1}, {-64, {0x7f}, 1}, {64, {0x80, 0x01}, 2},
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        cdc_buf b = {0};
        cdc_avro_put_long(&b, ex[i].v);
        cr_expect_eq(b.len, ex[i].n, "value %lld", (long long)ex[i].v);
        cr_expect_arr_eq(b.data, ex[i].bytes, ex[i].n, "value %lld", (long long)ex[i].v);
        cdc_buf_free(&b);
    }
}

Test(avro_bin, extreme_longs_take_ten_bytes)
{
    cdc_buf b = {0};
    cdc_avro_put_long(&b, INT64_MIN);
    cr_expect_eq(b.len, 10);
    cdc_buf_reset(&b);
    cdc_avro_put_long(&b, INT64_MAX);
    cr_expect_eq(b.len, 10);
    cdc_buf_free(&b);
}

Test(avro_bin, longs_we_write_decode_with_avro_c)
{
    for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++) {
        cdc_buf b = {0};
        decoded d;
        int64_t got = 0;
        cdc_avro_put_long(&b, longs[i]);
        avro_c_decode("\"long\"", &b, &d);
        avro_value_get_long(&d.val, &got);
        cr_expect_eq(got, longs[i]);
        release(&d);
        cdc_buf_free(&b);
    }
}

Test(avro_bin, ints_we_write_decode_with_avro_c)
{
    static const int32_t ints[] = {0, 1, -1, 127, -128, 128, -129, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        cdc_buf b = {0};
        decoded d;
        int32_t got = 0;
        cdc_avro_put_int(&b, ints[i]);
        avro_c_decode("\"int\"", &b, &d);
        avro_value_get_int(&d.val, &got);
        cr_expect_eq(got, ints[i]);
        release(&d);
        cdc_buf_free(&b);
    }
}

Test(avro_bin, booleans_we_write_decode_with_avro_c)
{
    for (int v = 0; v <= 1; v++) {
        cdc_buf b = {0};
        decoded d;
        int got = -1;
        cdc_avro_put_bool(&b, v);
        avro_c_decode("\"boolean\"", &b, &d);
        avro_value_get_boolean(&d.val, &got);
        cr_expect_eq(got, v);
        release(&d);
        cdc_buf_free(&b);
    }
}

static const double doubles[] = {
    0.0, -0.0, 1.0, -1.5, 3.141592653589793, 1e-308, 4.9e-324, 1.7976931348623157e308,
    -2.2250738585072014e-308, INFINITY, -INFINITY,
};

Test(avro_bin, doubles_we_write_decode_with_avro_c_bit_exact)
{
    for (size_t i = 0; i < sizeof doubles / sizeof doubles[0]; i++) {
        cdc_buf b = {0};
        decoded d;
        double got = 0;
        cdc_avro_put_double(&b, doubles[i]);
        cr_expect_eq(b.len, 8);
        avro_c_decode("\"double\"", &b, &d);
        avro_value_get_double(&d.val, &got);
        cr_expect_eq(memcmp(&got, &doubles[i], sizeof got), 0, "double %a", doubles[i]);
        release(&d);
        cdc_buf_free(&b);
    }
}

Test(avro_bin, nan_double_and_float_survive_avro_c)
{
    cdc_buf b = {0};
    decoded d;
    double gd = 0;
    cdc_avro_put_double(&b, NAN);
    avro_c_decode("\"double\"", &b, &d);
    avro_value_get_double(&d.val, &gd);
    cr_expect(isnan(gd));
    release(&d);

    float gf = 0;
    cdc_buf_reset(&b);
    cdc_avro_put_float(&b, NAN);
    avro_c_decode("\"float\"", &b, &d);
    avro_value_get_float(&d.val, &gf);
    cr_expect(isnan(gf));
    release(&d);
    cdc_buf_free(&b);
}

Test(avro_bin, floats_we_write_decode_with_avro_c_bit_exact)
{
    static const float floats[] = {0.0f, -0.0f, 1.0f, -2.5f, 3.4028235e38f, 1.4e-45f,
                                   1.17549435e-38f, INFINITY, -INFINITY, 0.1f};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        cdc_buf b = {0};
        decoded d;
        float got = 0;
        cdc_avro_put_float(&b, floats[i]);
        cr_expect_eq(b.len, 4);
        avro_c_decode("\"float\"", &b, &d);
        avro_value_get_float(&d.val, &got);
        cr_expect_eq(memcmp(&got, &floats[i], sizeof got), 0, "float %a", (double)floats[i]);
        release(&d);
        cdc_buf_free(&b);
    }
}

Test(avro_bin, float_layout_is_little_endian)
{
    cdc_buf b = {0};
    cdc_avro_put_float(&b, 1.0f); /* 0x3f800000 */
    cr_expect_arr_eq(b.data, ((uint8_t[]){0x00, 0x00, 0x80, 0x3f}), 4);
    cdc_buf_reset(&b);
    cdc_avro_put_double(&b, 1.0); /* 0x3ff0000000000000 */
    cr_expect_arr_eq(b.data, ((uint8_t[]){0, 0, 0, 0, 0, 0, 0xf0, 0x3f}), 8);
    cdc_buf_free(&b);
}

static void check_bytes_with_avro_c(const uint8_t *data, size_t len)
{
    cdc_buf b = {0};
    decoded d;
    const void *got = NULL;
    size_t got_len = 99;
    cdc_avro_put_bytes(&b, data, len);
    avro_c_decode("\"bytes\"", &b, &d);
    cr_assert_eq(avro_value_get_bytes(&d.val, &got, &got_len), 0);
    cr_expect_eq(got_len, len);
    if (len)
        cr_expect_eq(memcmp(got, data, len), 0);
    release(&d);
    cdc_buf_free(&b);
}

Test(avro_bin, bytes_we_write_decode_with_avro_c)
{
    static const uint8_t small[] = {0x00, 0xff, 0x80, 0x7f, 0x01};
    check_bytes_with_avro_c(NULL, 0);
    check_bytes_with_avro_c(small, sizeof small);

    size_t big = 300000; /* a 3-byte length varint */
    uint8_t *data = malloc(big);
    cr_assert_not_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    check_bytes_with_avro_c(data, big);
    free(data);
}

Test(avro_bin, strings_we_write_decode_with_avro_c)
{
    static const char *const strs[] = {"", "hello", "h\xc3\xa9llo \xe2\x82\xac", "a\"b\\c"};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        cdc_buf b = {0};
        decoded d;
        const char *got = NULL;
        size_t got_size = 0;
        cdc_avro_put_cstring(&b, strs[i]);
        avro_c_decode("\"string\"", &b, &d);
        cr_assert_eq(avro_value_get_string(&d.val, &got, &got_size), 0);
        /* avro-c's size counts a terminating NUL. */
        cr_expect_eq(got_size, strlen(strs[i]) + 1);
        cr_expect_str_eq(got, strs[i]);
        release(&d);
        cdc_buf_free(&b);
    }
}

Test(avro_bin, union_record_body_decodes_with_avro_c)
{
    /* A record of ["null","long"], string, ["null","string"]: the shape of
     * our event bodies (branch index, then the value). */
    cdc_buf b = {0};
    decoded d;
    cdc_avro_put_long(&b, 1);
    cdc_avro_put_long(&b, -42);
    cdc_avro_put_cstring(&b, "x");
    cdc_avro_put_long(&b, 0);
    avro_c_decode("{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                  "{\"name\":\"a\",\"type\":[\"null\",\"long\"]},"
                  "{\"name\":\"b\",\"type\":\"string\"},"
                  "{\"name\":\"c\",\"type\":[\"null\",\"string\"]}]}",
                  &b, &d);
    avro_value_t field, branch;
    int disc = -1;
    int64_t a = 0;
    cr_assert_eq(avro_value_get_by_index(&d.val, 0, &field, NULL), 0);
    avro_value_get_discriminant(&field, &disc);
    cr_expect_eq(disc, 1);
    avro_value_get_current_branch(&field, &branch);
    avro_value_get_long(&branch, &a);
    cr_expect_eq(a, -42);
    cr_assert_eq(avro_value_get_by_index(&d.val, 2, &field, NULL), 0);
    avro_value_get_discriminant(&field, &disc);
    cr_expect_eq(disc, 0);
    release(&d);
    cdc_buf_free(&b);
}

/* ---- avro-c writes, we read ------------------------------------------- */

typedef struct writer_value {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t val;
} writer_value;

static void wv_new(writer_value *w, avro_schema_t schema)
{
    w->schema = schema;
    w->iface = avro_generic_class_from_schema(schema);
    cr_assert_eq(avro_generic_value_new(w->iface, &w->val), 0);
}

static void wv_free(writer_value *w)
{
    avro_value_decref(&w->val);
    avro_value_iface_decref(w->iface);
    avro_schema_decref(w->schema);
}

Test(avro_bin, we_read_longs_written_by_avro_c)
{
    writer_value w;
    wv_new(&w, avro_schema_long());
    cdc_buf b = {0};
    for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++) {
        avro_value_set_long(&w.val, longs[i]);
        avro_c_encode(&w.val, &b);
        const uint8_t *p = b.data, *end = b.data + b.len;
        int64_t got = 0;
        cr_assert_eq(cdc_avro_get_long(&p, end, &got), 0);
        cr_expect_eq(got, longs[i]);
        cr_expect_eq(p, end);
    }
    cdc_buf_free(&b);
    wv_free(&w);
}

Test(avro_bin, we_read_ints_written_by_avro_c)
{
    static const int32_t ints[] = {0, -1, 1, 300, -300, INT32_MAX, INT32_MIN};
    writer_value w;
    wv_new(&w, avro_schema_int());
    cdc_buf b = {0};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        avro_value_set_int(&w.val, ints[i]);
        avro_c_encode(&w.val, &b);
        const uint8_t *p = b.data, *end = b.data + b.len;
        int32_t got = 0;
        cr_assert_eq(cdc_avro_get_int(&p, end, &got), 0);
        cr_expect_eq(got, ints[i]);
        cr_expect_eq(p, end);
    }
    cdc_buf_free(&b);
    wv_free(&w);
}

Test(avro_bin, we_read_doubles_and_floats_written_by_avro_c)
{
    writer_value w;
    cdc_buf b = {0};
    wv_new(&w, avro_schema_double());
    for (size_t i = 0; i < sizeof doubles / sizeof doubles[0]; i++) {
        avro_value_set_double(&w.val, doubles[i]);
        avro_c_encode(&w.val, &b);
        const uint8_t *p = b.data, *end = b.data + b.len;
        double got = 0;
        cr_assert_eq(cdc_avro_get_double(&p, end, &got), 0);
        cr_expect_eq(memcmp(&got, &doubles[i], 8), 0);
        cr_expect_eq(p, end);
    }
    wv_free(&w);

    wv_new(&w, avro_schema_float());
    avro_value_set_float(&w.val, -0.15625f);
    avro_c_encode(&w.val, &b);
    const uint8_t *p = b.data, *end = b.data + b.len;
    float f = 0;
    cr_assert_eq(cdc_avro_get_float(&p, end, &f), 0);
    cr_expect_eq(f, -0.15625f);
    cr_expect_eq(p, end);
    wv_free(&w);
    cdc_buf_free(&b);
}

Test(avro_bin, we_read_booleans_written_by_avro_c)
{
    writer_value w;
    cdc_buf b = {0};
    wv_new(&w, avro_schema_boolean());
    for (int v = 0; v <= 1; v++) {
        avro_value_set_boolean(&w.val, v);
        avro_c_encode(&w.val, &b);
        const uint8_t *p = b.data, *end = b.data + b.len;
        bool got = !v;
        cr_assert_eq(cdc_avro_get_bool(&p, end, &got), 0);
        cr_expect_eq(got, (bool)v);
    }
    wv_free(&w);
    cdc_buf_free(&b);
}

Test(avro_bin, we_read_bytes_and_strings_written_by_avro_c)
{
    writer_value w;
    cdc_buf b = {0};
    wv_new(&w, avro_schema_bytes());
    static uint8_t blob[1000];
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (uint8_t)i;
    size_t sizes[] = {0, 1, 63, 64, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        avro_value_set_bytes(&w.val, blob, sizes[i]);
        avro_c_encode(&w.val, &b);
        const uint8_t *p = b.data, *end = b.data + b.len, *data = NULL;
        size_t len = 12345;
        cr_assert_eq(cdc_avro_get_bytes(&p, end, &data, &len), 0);
        cr_expect_eq(len, sizes[i]);
        if (len)
            cr_expect_eq(memcmp(data, blob, len), 0);
        cr_expect_eq(p, end);
    }
    wv_free(&w);

    wv_new(&w, avro_schema_string());
    avro_value_set_string(&w.val, "gr\xc3\xbc\xc3\x9f");
    avro_c_encode(&w.val, &b);
    const uint8_t *p = b.data, *end = b.data + b.len, *data = NULL;
    size_t len = 0;
    cr_assert_eq(cdc_avro_get_bytes(&p, end, &data, &len), 0);
    cr_expect_eq(len, 6);
    cr_expect_eq(memcmp(data, "gr\xc3\xbc\xc3\x9f", 6), 0);
    wv_free(&w);
    cdc_buf_free(&b);
}

/* ---- malformed input -------------------------------------------------- */

Test(avro_bin, truncated_long_fails_at_every_cut)
{
    cdc_buf b = {0};
    cdc_avro_put_long(&b, INT64_MIN);
    for (size_t cut = 0; cut < b.len; cut++) {
        /* Copy to an exact-size allocation so ASan sees any over-read. */
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, b.data, cut);
        const uint8_t *p = copy;
        int64_t v = 5;
        cr_expect_eq(cdc_avro_get_long(&p, copy + cut, &v), -1, "cut %zu", cut);
        cr_expect_eq(p, copy, "cursor moved on failure");
        cr_expect_eq(v, 5);
        free(copy);
    }
    cdc_buf_free(&b);
}

Test(avro_bin, overlong_varint_is_rejected)
{
    /* Eleven continuation bytes, and a tenth byte carrying more than bit 63. */
    static const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                     0x80, 0x80, 0x80, 0x80, 0x00};
    static const uint8_t wide[] = {0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0x02};
    static const uint8_t max[] = {0xfe, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0x01};
    const uint8_t *p = eleven;
    int64_t v;
    cr_expect_eq(cdc_avro_get_long(&p, eleven + sizeof eleven, &v), -1);
    p = wide;
    cr_expect_eq(cdc_avro_get_long(&p, wide + sizeof wide, &v), -1);
    p = max;
    cr_expect_eq(cdc_avro_get_long(&p, max + sizeof max, &v), 0);
    cr_expect_eq(v, INT64_MAX);
}

Test(avro_bin, int_reader_rejects_values_beyond_32_bits)
{
    cdc_buf b = {0};
    cdc_avro_put_long(&b, (int64_t)INT32_MAX + 1);
    const uint8_t *p = b.data;
    int32_t v;
    cr_expect_eq(cdc_avro_get_int(&p, b.data + b.len, &v), -1);
    cr_expect_eq(p, b.data);
    cdc_buf_free(&b);
}

Test(avro_bin, bytes_length_beyond_buffer_is_rejected)
{
    cdc_buf b = {0};
    cdc_avro_put_bytes(&b, "abcdef", 6);
    const uint8_t *data;
    size_t len;
    for (size_t cut = 0; cut < b.len; cut++) {
        const uint8_t *p = b.data;
        cr_expect_eq(cdc_avro_get_bytes(&p, b.data + cut, &data, &len), -1, "cut %zu", cut);
        cr_expect_eq(p, b.data);
    }
    cdc_buf_reset(&b);
    cdc_avro_put_long(&b, -1); /* negative length */
    const uint8_t *p = b.data;
    cr_expect_eq(cdc_avro_get_bytes(&p, b.data + b.len, &data, &len), -1);
    cdc_buf_reset(&b);
    cdc_avro_put_long(&b, INT64_MAX); /* must not wrap the pointer */
    p = b.data;
    cr_expect_eq(cdc_avro_get_bytes(&p, b.data + b.len, &data, &len), -1);
    cdc_buf_free(&b);
}

Test(avro_bin, fixed_width_readers_reject_short_input)
{
    static const uint8_t four[4] = {0};
    const uint8_t *p = four;
    double d;
    float f;
    bool bl;
    cr_expect_eq(cdc_avro_get_double(&p, four + 4, &d), -1);
    cr_expect_eq(cdc_avro_get_float(&p, four + 3, &f), -1);
    cr_expect_eq(cdc_avro_get_bool(&p, four, &bl), -1);
    cr_expect_eq(p, four);
    static const uint8_t two = 2;
    p = &two;
    cr_expect_eq(cdc_avro_get_bool(&p, &two + 1, &bl), -1, "2 is not a boolean");
}

Test(avro_bin, single_object_header_round_trips_little_endian)
{
    cdc_buf b = {0};
    uint64_t fp = UINT64_C(0x0123456789abcdef);
    cdc_avro_put_so_header(&b, fp);
    cr_assert_eq(b.len, CDC_AVRO_SO_HEADER_LEN);
    cr_expect_arr_eq(b.data, ((uint8_t[]){0xc3, 0x01, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45,
                                          0x23, 0x01}),
                     10);
    const uint8_t *p = b.data;
    uint64_t got = 0;
    cr_expect_eq(cdc_avro_get_so_header(&p, b.data + b.len, &got), 0);
    cr_expect_eq(got, fp);
    cr_expect_eq(p, b.data + 10);
    cdc_buf_free(&b);
}

Test(avro_bin, single_object_header_rejects_bad_magic_and_short_input)
{
    uint8_t hdr[10] = {0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8};
    const uint8_t *p = hdr;
    uint64_t fp;
    cr_expect_eq(cdc_avro_get_so_header(&p, hdr + 9, &fp), -1);
    hdr[1] = 0x02;
    cr_expect_eq(cdc_avro_get_so_header(&p, hdr + 10, &fp), -1);
    hdr[1] = 0x01;
    hdr[0] = 0xc2;
    cr_expect_eq(cdc_avro_get_so_header(&p, hdr + 10, &fp), -1);
    cr_expect_eq(p, hdr);
}
