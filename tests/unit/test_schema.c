/*
 * Generated schemas: shape, properties, fingerprints that change with
 * meaning, and an Avro round trip of an encoded event through avro-c.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <avro.h>
#include <jansson.h>

#include "cdc/avro_bin.h"
#include "cdc/event.h"
#include "cdc/fingerprint.h"
#include "cdc/pgtypes.h"
#include "encode.h"
#include "relcache.h"

#define NUMERIC_TYPMOD(p, s) ((((p) << 16) | (s)) + 4)

static relation *build(const rel_colinfo *cols, int n)
{
    relation *r = calloc(1, sizeof *r);
    r->nspname = strdup("Pay Schema");
    r->relname = strdup("select");
    char err[512];
    cr_assert_eq(relcache_build(r, cols, n, err, sizeof err), 0, "%s", err);
    return r;
}

static rel_colinfo payments_cols[] = {
    {"id", CDC_OID_INT8, -1, CDC_OID_INT8, -1, "bigint", NULL, NULL, true, true, 0},
    {"Amount", CDC_OID_NUMERIC, NUMERIC_TYPMOD(18, 2), CDC_OID_NUMERIC, NUMERIC_TYPMOD(18, 2),
     "numeric(18,2)", NULL, NULL, true, false, 0},
    {"note text", CDC_OID_TEXT, -1, CDC_OID_TEXT, -1, "text", NULL, NULL, false, false, 0},
    {"note_text", CDC_OID_TEXT, -1, CDC_OID_TEXT, -1, "text", NULL, NULL, false, false, 0},
    {"at", CDC_OID_TIMESTAMPTZ, -1, CDC_OID_TIMESTAMPTZ, -1, "timestamp with time zone", NULL, NULL,
     false, false, 0},
};

Test(schema, value_schema_has_envelope_fields_and_pg_properties)
{
    relation *r = build(payments_cols, 5);
    json_error_t jerr;
    json_t *v = json_loads(r->value_schema, 0, &jerr);
    cr_assert_not_null(v, "%s", jerr.text);
    cr_assert_str_eq(json_string_value(json_object_get(v, "name")), "Envelope");
    const char *ns = json_string_value(json_object_get(v, "namespace"));
    cr_assert(strncmp(ns, "cdc.Pay_Schema.select.v", 23) == 0, "%s", ns);
    json_t *fields = json_object_get(v, "fields");
    const char *names[] = {"before", "after",      "source",  "op",
                           "ts_ms",  "commit_lsn", "ordinal", "unchanged_toast"};
    cr_assert_eq(json_array_size(fields), 8);
    for (size_t i = 0; i < 8; i++)
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(fields, i), "name")),
                         names[i]);
    json_t *row = json_array_get(json_object_get(json_array_get(fields, 0), "type"), 1);
    cr_assert_str_eq(json_string_value(json_object_get(row, "pg.table")), "select");
    cr_assert_str_eq(json_string_value(json_object_get(row, "pg.schema")), "Pay Schema");
    json_t *rf = json_object_get(row, "fields");
    cr_assert_eq(json_array_size(rf), 5);
    /* Sanitised, unique field names; true names in pg.name. */
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(rf, 2), "name")),
                     "note_text");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(rf, 3), "name")),
                     "note_text_2");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(rf, 2), "pg.name")),
                     "note text");
    json_t *amount = json_array_get(rf, 1);
    cr_assert_str_eq(json_string_value(json_object_get(amount, "pg.type")), "numeric(18,2)");
    cr_assert(json_is_false(json_object_get(amount, "pg.nullable")));
    json_t *at = json_object_get(amount, "type");
    cr_assert_str_eq(json_string_value(json_array_get(at, 0)), "null");
    json_t *dec = json_array_get(at, 1);
    cr_assert_str_eq(json_string_value(json_object_get(dec, "logicalType")), "decimal");
    cr_assert_eq(json_integer_value(json_object_get(dec, "precision")), 18);
    cr_assert_eq(json_integer_value(json_object_get(dec, "scale")), 2);
    cr_assert(json_is_null(json_object_get(amount, "default")));
    json_decref(v);

    json_t *k = json_loads(r->key_schema, 0, &jerr);
    json_t *kf = json_object_get(k, "fields");
    cr_assert_eq(json_array_size(kf), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(kf, 0), "type")), "long");
    json_decref(k);
    relation_free(r);
}

Test(schema, fingerprint_changes_when_decimal_scale_changes)
{
    relation *a = build(payments_cols, 5);
    rel_colinfo cols[5];
    memcpy(cols, payments_cols, sizeof cols);
    cols[1].typmod = cols[1].base_typmod = NUMERIC_TYPMOD(18, 4);
    cols[1].pg_type = "numeric(18,4)";
    relation *b = build(cols, 5);
    cr_assert_neq(a->value_fp, b->value_fp,
                  "same fingerprint for different scales would misread amounts");
    relation *c = build(payments_cols, 5);
    cr_assert_eq(a->value_fp, c->value_fp, "fingerprints must be deterministic");
    cr_assert_eq(a->key_fp, c->key_fp);
    uint64_t fp;
    char err[256];
    cr_assert_eq(cdc_avro_fingerprint(a->value_schema, &fp, err, sizeof err), 0);
    cr_assert_eq(fp, a->value_fp);
    relation_free(a);
    relation_free(b);
    relation_free(c);
}

/*
 * pg.key names the key in its index's order (a target's primary key is made
 * from it); the Key record keeps the table's column order, on which its
 * bytes and so the partitions depend.
 */
Test(schema, pg_key_follows_the_index_order_and_the_key_record_the_table_order)
{
    rel_colinfo cols[] = {
        {"a", CDC_OID_INT4, -1, CDC_OID_INT4, -1, "integer", NULL, NULL, true, true, 3},
        {"v", CDC_OID_TEXT, -1, CDC_OID_TEXT, -1, "text", NULL, NULL, false, false, 0},
        {"b", CDC_OID_TEXT, -1, CDC_OID_TEXT, -1, "text", NULL, NULL, true, true, 1},
        {"c", CDC_OID_INT8, -1, CDC_OID_INT8, -1, "bigint", NULL, NULL, true, true, 2},
    };
    relation *r = build(cols, 4);
    cr_assert(strstr(r->value_schema, "\"pg.key\":[\"b\",\"c\",\"a\"]") != NULL, "%s",
              r->value_schema);
    json_error_t jerr;
    json_t *k = json_loads(r->key_schema, 0, &jerr);
    cr_assert_not_null(k, "%s", jerr.text);
    json_t *kf = json_object_get(k, "fields");
    cr_assert_eq(json_array_size(kf), 3);
    const char *want[] = {"a", "b", "c"};
    for (size_t i = 0; i < 3; i++)
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(kf, i), "name")),
                         want[i]);
    json_decref(k);
    relation_free(r);
}

Test(schema, keyless_table_has_no_key_schema)
{
    rel_colinfo cols[] = {
        {"a", CDC_OID_INT4, -1, CDC_OID_INT4, -1, "integer", NULL, NULL, false, false, 0},
    };
    relation *r = build(cols, 1);
    cr_assert_null(r->key_schema);
    cr_assert_eq(r->nkey, 0);
    relation_free(r);
}

Test(schema, enum_labels_and_domain_are_recorded)
{
    json_t *labels = json_pack("[s s s]", "new", "paid", "void");
    rel_colinfo cols[] = {
        {"id", CDC_OID_INT4, -1, CDC_OID_INT4, -1, "integer", NULL, NULL, true, true, 0},
        {"state", 90001, -1, 90001, -1, "public.pay_state", NULL, labels, false, false, 0},
        {"cents", 90002, -1, CDC_OID_INT8, -1, "bigint", "public.cents", NULL, false, false, 0},
    };
    relation *r = build(cols, 3);
    cr_assert(strstr(r->value_schema, "\"pg.enum\":[\"new\",\"paid\",\"void\"]") != NULL, "%s",
              r->value_schema);
    cr_assert(strstr(r->value_schema, "\"pg.domain\":\"public.cents\"") != NULL);
    cr_assert_eq(r->cols[2].type.conv, CDC_CONV_LONG, "domain maps by its base type");
    cr_assert_eq(r->cols[1].type.conv, CDC_CONV_STRING, "enum travels as its label");
    json_decref(labels);
    relation_free(r);
}

static pgo_value T(const char *s)
{
    return (pgo_value){'t', s, (uint32_t)strlen(s)};
}

/* Encode with our writer, decode with avro-c from the schema JSON alone. */
Test(schema, encoded_event_decodes_with_avro_c)
{
    relation *r = build(payments_cols, 5);
    pgo_value vals[5] = {
        T("42"), T("-1234.50"), {'u', NULL, 0}, {'n', NULL, 0}, T("2026-11-24 08:14:00.123456+00")};
    pgo_tuple after = {5, vals};
    encoder e;
    encoder_init(&e, "cdc", "paydb");
    event_ctx ctx = {.seq = 1,
                     .commit_lsn = 0x16B374D848,
                     .commit_ms = 1795000000000,
                     .xid = 777,
                     .lsn = 0x16B374D800,
                     .ordinal = 3,
                     .snapshot = "false"};
    char err[512];
    cr_assert_eq(encode_envelope(&e, r, 'u', NULL, &after, &ctx, 1795000000123, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(encode_key(&e, r, &after, err, sizeof err), 0, "%s", err);

    const uint8_t *p = e.value.data, *end = e.value.data + e.value.len;
    uint64_t fp;
    cr_assert_eq(cdc_avro_get_so_header(&p, end, &fp), 0);
    cr_assert_eq(fp, r->value_fp);

    avro_schema_t schema;
    cr_assert_eq(avro_schema_from_json_length(r->value_schema, strlen(r->value_schema), &schema), 0,
                 "%s", avro_strerror());
    avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
    avro_value_t v;
    avro_generic_value_new(iface, &v);
    avro_reader_t rd = avro_reader_memory((const char *)p, (int64_t)(end - p));
    cr_assert_eq(avro_value_read(rd, &v), 0, "%s", avro_strerror());

    avro_value_t f, br, x;
    int64_t l;
    const char *s;
    size_t sz;
    avro_value_get_by_name(&v, "before", &f, NULL);
    int disc;
    avro_value_get_discriminant(&f, &disc);
    cr_assert_eq(disc, 0, "before is null for a plain update");
    avro_value_get_by_name(&v, "after", &f, NULL);
    avro_value_get_discriminant(&f, &disc);
    cr_assert_eq(disc, 1);
    avro_value_get_current_branch(&f, &br);
    avro_value_get_by_name(&br, "id", &x, NULL);
    avro_value_get_current_branch(&x, &x);
    avro_value_get_long(&x, &l);
    cr_assert_eq(l, 42);
    avro_value_get_by_name(&br, "Amount", &x, NULL);
    avro_value_get_current_branch(&x, &x);
    const void *bytes;
    avro_value_get_bytes(&x, &bytes, &sz);
    /* -123450 as two's complement big-endian: FE 1D C6 */
    cr_assert_eq(sz, 3);
    cr_assert_eq(((const uint8_t *)bytes)[0], 0xFE);
    cr_assert_eq(((const uint8_t *)bytes)[1], 0x1D);
    cr_assert_eq(((const uint8_t *)bytes)[2], 0xC6);
    avro_value_get_by_name(&br, "note_text", &x, NULL);
    avro_value_get_discriminant(&x, &disc);
    cr_assert_eq(disc, 0, "unchanged TOAST value is null, never a placeholder");
    avro_value_get_by_name(&br, "at", &x, NULL);
    avro_value_get_current_branch(&x, &x);
    avro_value_get_long(&x, &l);
    cr_assert_eq(l, INT64_C(1795508040123456));

    avro_value_get_by_name(&v, "source", &f, NULL);
    avro_value_get_by_name(&f, "connector", &x, NULL);
    avro_value_get_string(&x, &s, &sz);
    cr_assert_str_eq(s, "postgresql");
    avro_value_get_by_name(&f, "db", &x, NULL);
    avro_value_get_string(&x, &s, &sz);
    cr_assert_str_eq(s, "paydb");
    avro_value_get_by_name(&f, "schema", &x, NULL);
    avro_value_get_string(&x, &s, &sz);
    cr_assert_str_eq(s, "Pay Schema");
    avro_value_get_by_name(&f, "ts_ms", &x, NULL);
    avro_value_get_long(&x, &l);
    cr_assert_eq(l, 1795000000000);
    avro_value_get_by_name(&f, "txId", &x, NULL);
    avro_value_get_current_branch(&x, &x);
    avro_value_get_long(&x, &l);
    cr_assert_eq(l, 777);
    avro_value_get_by_name(&v, "op", &x, NULL);
    avro_value_get_string(&x, &s, &sz);
    cr_assert_str_eq(s, "u");
    avro_value_get_by_name(&v, "commit_lsn", &x, NULL);
    avro_value_get_long(&x, &l);
    cr_assert_eq(l, 0x16B374D848);
    avro_value_get_by_name(&v, "ordinal", &x, NULL);
    avro_value_get_long(&x, &l);
    cr_assert_eq(l, 3);
    avro_value_get_by_name(&v, "unchanged_toast", &f, NULL);
    avro_value_get_size(&f, &sz);
    cr_assert_eq(sz, 1);
    avro_value_get_by_index(&f, 0, &x, NULL);
    avro_value_get_string(&x, &s, &sz);
    cr_assert_str_eq(s, "note text", "true column name, not the Avro field name");

    /* Key: single-object header + the id. */
    p = e.key.data;
    end = e.key.data + e.key.len;
    cr_assert_eq(cdc_avro_get_so_header(&p, end, &fp), 0);
    cr_assert_eq(fp, r->key_fp);
    cr_assert_eq(cdc_avro_get_long(&p, end, &l), 0);
    cr_assert_eq(l, 42);
    cr_assert_eq(p, end);

    avro_reader_free(rd);
    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    encoder_free(&e);
    relation_free(r);
}

Test(schema, key_column_without_value_is_an_error)
{
    relation *r = build(payments_cols, 5);
    pgo_value vals[5] = {{'n', NULL, 0}, T("1.00"), {'n', NULL, 0}, {'n', NULL, 0}, {'n', NULL, 0}};
    pgo_tuple t = {5, vals};
    encoder e;
    encoder_init(&e, "cdc", "db");
    char err[512];
    cr_assert_eq(encode_key(&e, r, &t, err, sizeof err), -1);
    cr_assert(strstr(err, "id") != NULL, "%s", err);
    pgo_tuple shortt = {2, vals};
    cr_assert_eq(encode_check_tuple(r, &shortt, err, sizeof err), -1);
    encoder_free(&e);
    relation_free(r);
}

Test(schema, bad_value_names_the_column)
{
    relation *r = build(payments_cols, 5);
    pgo_value vals[5] = {T("1"), T("NaN"), {'n', NULL, 0}, {'n', NULL, 0}, {'n', NULL, 0}};
    pgo_tuple t = {5, vals};
    encoder e;
    encoder_init(&e, "cdc", "db");
    event_ctx ctx = {.snapshot = "false"};
    char err[512];
    cr_assert_eq(encode_envelope(&e, r, 'c', NULL, &t, &ctx, 0, err, sizeof err), -1);
    cr_assert(strstr(err, "Amount") != NULL, "%s", err);
    encoder_free(&e);
    relation_free(r);
}

Test(schema, key_fingerprint_survives_an_added_column)
{
    /* The key bytes choose the partition: they must not move when the table grows. */
    relation *a = build(payments_cols, 4);
    relation *b = build(payments_cols, 5);
    cr_assert_neq(a->value_fp, b->value_fp, "a new column is a new value schema");
    cr_assert_eq(a->key_fp, b->key_fp, "but the same key schema");
    relation_free(a);
    relation_free(b);
}

/*
 * The decoder reads union branch 0 of a value field as null: a schema with
 * ["T", "null"] (not one cdc-capture writes) is refused rather than decoded
 * into wrong values.
 */
Test(schema, a_value_field_union_with_null_second_is_refused)
{
    relation *r = build(payments_cols, 5);
    char err[512];
    cdc_table_schema *s = cdc_table_schema_parse(r->value_schema, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cdc_table_schema_free(s);
    json_t *v = json_loads(r->value_schema, 0, NULL);
    json_t *row =
        json_array_get(json_object_get(json_array_get(json_object_get(v, "fields"), 0), "type"), 1);
    json_t *type = json_object_get(json_array_get(json_object_get(row, "fields"), 0), "type");
    json_t *t = json_incref(json_array_get(type, 1));
    json_array_set(type, 1, json_array_get(type, 0));
    json_array_set_new(type, 0, t);
    char *swapped = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    cr_assert_null(cdc_table_schema_parse(swapped, err, sizeof err),
                   "[\"long\", \"null\"] accepted");
    free(swapped);
    json_decref(v);
    relation_free(r);
}

/* An unchanged_toast block count of INT64_MIN is an error, not a negation overflow. */
Test(schema, an_int64_min_block_count_is_refused)
{
    relation *r = build(payments_cols, 5);
    pgo_value vals[5] = {T("42"), T("1.50"), {'n', NULL, 0}, {'n', NULL, 0}, {'n', NULL, 0}};
    pgo_tuple after = {5, vals};
    encoder e;
    encoder_init(&e, "cdc", "paydb");
    event_ctx ctx = {.seq = 1, .commit_lsn = 100, .lsn = 90, .snapshot = "false"};
    char err[512];
    cr_assert_eq(encode_envelope(&e, r, 'c', NULL, &after, &ctx, 1, err, sizeof err), 0, "%s", err);
    const uint8_t *p = e.value.data, *end = e.value.data + e.value.len;
    uint64_t fp;
    cr_assert_eq(cdc_avro_get_so_header(&p, end, &fp), 0);
    cdc_table_schema *s = cdc_table_schema_parse(r->value_schema, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cdc_event ev;
    cdc_event_init(&ev);
    cr_assert_eq(cdc_event_decode(s, p, (size_t)(end - p), &ev, err, sizeof err), 0, "%s", err);
    /* The last byte is the empty unchanged_toast array: replace it with a
     * block of count INT64_MIN (zig-zag FF x9 01), a byte size and the end. */
    size_t n = (size_t)(end - p) - 1;
    uint8_t *bad = malloc(n + 12);
    memcpy(bad, p, n);
    memset(bad + n, 0xFF, 9);
    bad[n + 9] = 0x01;
    bad[n + 10] = 0x00;
    bad[n + 11] = 0x00;
    cr_assert_neq(cdc_event_decode(s, bad, n + 12, &ev, err, sizeof err), 0);
    free(bad);
    cdc_event_free(&ev);
    cdc_table_schema_free(s);
    encoder_free(&e);
    relation_free(r);
}
