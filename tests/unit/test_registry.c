/*
 * The schema registry that consumers decode our events with. Messages are
 * built independently of the code under test: the body is written by avro-c
 * and the single-object header by hand, so a shared misunderstanding of the
 * layout cannot hide. Loading the schemas topic runs against librdkafka's
 * in-process mock cluster, which needs no server.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "cdc/fingerprint.h"
#include "cdc/registry.h"

static const char ROW_SCHEMA[] =
    "{\"type\":\"record\",\"name\":\"Row\",\"namespace\":\"t\",\"fields\":["
    "{\"name\":\"id\",\"type\":\"long\"},"
    "{\"name\":\"name\",\"type\":\"string\"},"
    "{\"name\":\"note\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"data\",\"type\":\"bytes\"}]}";

static uint64_t fingerprint_of(const char *json)
{
    uint64_t fp;
    char err[256];
    cr_assert_eq(cdc_avro_fingerprint(json, &fp, err, sizeof err), 0, "%s", err);
    return fp;
}

static cdc_registry *registry_with_row(uint64_t *fp)
{
    char err[256];
    cdc_registry *reg = cdc_registry_new();
    *fp = fingerprint_of(ROW_SCHEMA);
    cr_assert_eq(cdc_registry_add(reg, *fp, ROW_SCHEMA, err, sizeof err), 0, "%s", err);
    return reg;
}

/*
 * A single-object message for ROW_SCHEMA: C3 01, the fingerprint as 8 bytes
 * little-endian, then the avro-c encoding of the row. Returns the length.
 */
static size_t encode_row(uint64_t fp, int64_t id, const char *name, const char *note, uint8_t *out,
                         size_t cap)
{
    avro_schema_t schema;
    cr_assert_eq(avro_schema_from_json_length(ROW_SCHEMA, strlen(ROW_SCHEMA), &schema), 0);
    avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
    avro_value_t row, field, branch;
    cr_assert_eq(avro_generic_value_new(iface, &row), 0);

    avro_value_get_by_name(&row, "id", &field, NULL);
    avro_value_set_long(&field, id);
    avro_value_get_by_name(&row, "name", &field, NULL);
    avro_value_set_string(&field, name);
    avro_value_get_by_name(&row, "note", &field, NULL);
    if (note) {
        avro_value_set_branch(&field, 1, &branch);
        avro_value_set_string(&branch, note);
    } else {
        avro_value_set_branch(&field, 0, &branch);
        avro_value_set_null(&branch);
    }
    avro_value_get_by_name(&row, "data", &field, NULL);
    avro_value_set_bytes(&field, (void *)"\x00\xff", 2);

    out[0] = 0xC3;
    out[1] = 0x01;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(fp >> (8 * i));
    avro_writer_t w = avro_writer_memory((const char *)out + 10, (int64_t)(cap - 10));
    cr_assert_eq(avro_value_write(w, &row), 0, "%s", avro_strerror());
    size_t len = 10 + (size_t)avro_writer_tell(w);

    avro_writer_free(w);
    avro_value_decref(&row);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    return len;
}

Test(registry, add_then_get_returns_the_schema)
{
    uint64_t fp;
    cdc_registry *reg = registry_with_row(&fp);

    const cdc_registry_schema *s = cdc_registry_get(reg, fp);
    cr_assert_not_null(s);
    cr_expect_eq(s->fingerprint, fp);
    cr_expect_str_eq(s->json, ROW_SCHEMA);
    cr_expect_not_null(s->schema);
    cr_expect_not_null(s->iface);
    cr_expect_null(cdc_registry_get(reg, fp ^ 1));
    cr_expect_eq(cdc_registry_count(reg), 1);
    cdc_registry_destroy(reg);
}

Test(registry, adding_a_known_fingerprint_again_keeps_the_first)
{
    char err[256];
    uint64_t fp;
    cdc_registry *reg = registry_with_row(&fp);
    const cdc_registry_schema *first = cdc_registry_get(reg, fp);

    /* Same canonical form (docs are not part of it), different text. */
    char with_doc[sizeof ROW_SCHEMA + 64];
    snprintf(with_doc, sizeof with_doc, "{\"doc\":\"x\",%s", ROW_SCHEMA + 1);
    cr_assert_eq(cdc_registry_add(reg, fp, with_doc, err, sizeof err), 0, "%s", err);
    cr_expect_eq(cdc_registry_count(reg), 1);
    cr_expect_eq(cdc_registry_get(reg, fp), first);
    cr_expect_str_eq(first->json, ROW_SCHEMA);
    cdc_registry_destroy(reg);
}

Test(registry, add_rejects_a_fingerprint_that_does_not_match_the_schema)
{
    char err[256] = "";
    cdc_registry *reg = cdc_registry_new();
    uint64_t fp = fingerprint_of(ROW_SCHEMA) + 1;

    cr_expect_eq(cdc_registry_add(reg, fp, ROW_SCHEMA, err, sizeof err), -1);
    cr_expect(strstr(err, "fingerprint") != NULL, "errstr: %s", err);
    cr_expect_eq(cdc_registry_count(reg), 0);
    cdc_registry_destroy(reg);
}

Test(registry, add_rejects_invalid_schema_json)
{
    char err[256] = "";
    cdc_registry *reg = cdc_registry_new();

    cr_expect_eq(cdc_registry_add(reg, 42, "{\"type\":", err, sizeof err), -1);
    cr_expect_neq(err[0], '\0');
    cr_expect_eq(cdc_registry_add(reg, 42, "{\"type\":\"nosuchtype\"}", err, sizeof err), -1);
    cr_expect_eq(cdc_registry_count(reg), 0);
    cdc_registry_destroy(reg);
}

Test(registry, many_schemas_stay_reachable_as_the_table_grows)
{
    char err[256], json[256];
    uint64_t fps[200];
    cdc_registry *reg = cdc_registry_new();
    const cdc_registry_schema *first = NULL;

    for (int i = 0; i < 200; i++) {
        snprintf(
            json, sizeof json,
            "{\"type\":\"record\",\"name\":\"R%d\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}",
            i);
        fps[i] = fingerprint_of(json);
        cr_assert_eq(cdc_registry_add(reg, fps[i], json, err, sizeof err), 0, "%s", err);
        if (i == 0)
            first = cdc_registry_get(reg, fps[0]);
    }
    cr_expect_eq(cdc_registry_count(reg), 200);
    for (int i = 0; i < 200; i++)
        cr_expect_not_null(cdc_registry_get(reg, fps[i]), "schema %d lost", i);
    cr_expect_eq(cdc_registry_get(reg, fps[0]), first, "entries must not move");
    cdc_registry_destroy(reg);
}

Test(registry, decode_round_trips_an_avro_c_encoded_message)
{
    char err[256];
    uint8_t msg[256];
    uint64_t fp;
    cdc_registry *reg = registry_with_row(&fp);
    size_t len = encode_row(fp, -7, "Zoë", "hi", msg, sizeof msg);

    avro_value_t v, field, branch;
    const char *schema = NULL;
    int rc = cdc_registry_decode(reg, msg, len, &v, &schema, err, sizeof err);
    cr_assert_eq(rc, CDC_REGISTRY_OK, "%s", err);
    cr_expect_str_eq(schema, ROW_SCHEMA);

    int64_t id;
    const char *s;
    size_t n;
    const void *bytes;
    int disc;
    avro_value_get_by_name(&v, "id", &field, NULL);
    avro_value_get_long(&field, &id);
    cr_expect_eq(id, -7);
    avro_value_get_by_name(&v, "name", &field, NULL);
    avro_value_get_string(&field, &s, &n);
    cr_expect_str_eq(s, "Zoë");
    avro_value_get_by_name(&v, "note", &field, NULL);
    avro_value_get_discriminant(&field, &disc);
    cr_expect_eq(disc, 1);
    avro_value_get_current_branch(&field, &branch);
    avro_value_get_string(&branch, &s, &n);
    cr_expect_str_eq(s, "hi");
    avro_value_get_by_name(&v, "data", &field, NULL);
    avro_value_get_bytes(&field, &bytes, &n);
    cr_expect_eq(n, 2);
    cr_expect_eq(memcmp(bytes, "\x00\xff", 2), 0);

    char *json = cdc_registry_value_to_json(&v, err, sizeof err);
    cr_assert_not_null(json, "%s", err);
    cr_expect(strstr(json, "\"id\": -7") != NULL, "json: %s", json);
    cr_expect(strstr(json, "\"note\": {\"string\": \"hi\"}") != NULL, "json: %s", json);
    free(json);
    avro_value_decref(&v);
    cdc_registry_destroy(reg);
}

Test(registry, decode_json_renders_a_null_union_branch)
{
    char err[256];
    uint8_t msg[256];
    uint64_t fp;
    char *json;
    cdc_registry *reg = registry_with_row(&fp);
    size_t len = encode_row(fp, 1, "a", NULL, msg, sizeof msg);

    cr_assert_eq(cdc_registry_decode_json(reg, msg, len, &json, err, sizeof err), CDC_REGISTRY_OK,
                 "%s", err);
    cr_expect(strstr(json, "\"note\": null") != NULL, "json: %s", json);
    free(json);
    cdc_registry_destroy(reg);
}

Test(registry, decode_reports_an_unknown_fingerprint_distinctly)
{
    char err[256] = "";
    uint8_t msg[256];
    uint64_t fp;
    cdc_registry *reg = registry_with_row(&fp);
    uint64_t other = UINT64_C(0x0123456789abcdef);
    size_t len = encode_row(other, 1, "a", NULL, msg, sizeof msg);

    avro_value_t v;
    cr_expect_eq(cdc_registry_decode(reg, msg, len, &v, NULL, err, sizeof err),
                 CDC_REGISTRY_UNKNOWN);
    cr_expect(strstr(err, "0123456789abcdef") != NULL, "errstr: %s", err);

    char *json = (char *)"untouched";
    cr_expect_eq(cdc_registry_decode_json(reg, msg, len, &json, err, sizeof err),
                 CDC_REGISTRY_UNKNOWN);
    cr_expect_null(json);
    cdc_registry_destroy(reg);
}

Test(registry, decode_rejects_truncated_messages)
{
    char err[256];
    uint8_t msg[256];
    uint64_t fp;
    avro_value_t v;
    cdc_registry *reg = registry_with_row(&fp);
    size_t len = encode_row(fp, 123456789, "a longer name", "note", msg, sizeof msg);

    /* Every proper prefix fails: inside the header, and inside the body. */
    for (size_t cut = 0; cut < len; cut++) {
        err[0] = '\0';
        int rc = cdc_registry_decode(reg, msg, cut, &v, NULL, err, sizeof err);
        cr_expect_eq(rc, CDC_REGISTRY_ERROR, "prefix of %zu bytes: rc %d", cut, rc);
        cr_expect_neq(err[0], '\0', "prefix of %zu bytes: no errstr", cut);
    }
    cdc_registry_destroy(reg);
}

Test(registry, decode_rejects_trailing_bytes)
{
    char err[256] = "";
    uint8_t msg[256];
    uint64_t fp;
    avro_value_t v;
    cdc_registry *reg = registry_with_row(&fp);
    size_t len = encode_row(fp, 5, "a", NULL, msg, sizeof msg);

    msg[len] = 0x02;
    cr_expect_eq(cdc_registry_decode(reg, msg, len + 1, &v, NULL, err, sizeof err),
                 CDC_REGISTRY_ERROR);
    cr_expect(strstr(err, "not written with it") != NULL, "errstr: %s", err);
    cdc_registry_destroy(reg);
}

Test(registry, decode_rejects_bad_magic)
{
    char err[256] = "";
    uint8_t msg[256];
    uint64_t fp;
    avro_value_t v;
    cdc_registry *reg = registry_with_row(&fp);
    size_t len = encode_row(fp, 5, "a", NULL, msg, sizeof msg);

    msg[1] = 0x02;
    cr_expect_eq(cdc_registry_decode(reg, msg, len, &v, NULL, err, sizeof err), CDC_REGISTRY_ERROR);
    cr_expect(strstr(err, "magic") != NULL, "errstr: %s", err);
    /* A Confluent wire-format message (magic 0, 4-byte id) is not ours either. */
    static const uint8_t confluent[] = {0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x02, 0x61};
    cr_expect_eq(cdc_registry_decode(reg, confluent, sizeof confluent, &v, NULL, err, sizeof err),
                 CDC_REGISTRY_ERROR);
    cdc_registry_destroy(reg);
}

/* Header for `fp` followed by `body`; returns the message length. */
static size_t with_header(uint64_t fp, const uint8_t *body, size_t n, uint8_t *out)
{
    out[0] = 0xC3;
    out[1] = 0x01;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(fp >> (8 * i));
    memcpy(out + 10, body, n);
    return 10 + n;
}

/*
 * Length prefixes that lie must fail cheaply: a negative string length, one
 * of ~1 TB in a 20-byte message (ASan aborts on such an allocation), and an
 * array claiming 2^40 null items.
 */
Test(registry, decode_rejects_lying_lengths_without_allocating_them)
{
    char err[256];
    uint8_t msg[64];
    avro_value_t v;
    uint64_t fp;
    cdc_registry *reg = registry_with_row(&fp);
    /* id = 0, name length -1 */
    static const uint8_t negative[] = {0x00, 0x01, 'a', 'b', 0x00, 0x00};
    /* id = 0, name length 2^40 (zig-zag 2^41, varint) */
    static const uint8_t huge[] = {0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 'a', 0x00, 0x00};

    size_t len = with_header(fp, negative, sizeof negative, msg);
    cr_expect_eq(cdc_registry_decode(reg, msg, len, &v, NULL, err, sizeof err), CDC_REGISTRY_ERROR);
    len = with_header(fp, huge, sizeof huge, msg);
    cr_expect_eq(cdc_registry_decode(reg, msg, len, &v, NULL, err, sizeof err), CDC_REGISTRY_ERROR);

    const char *nulls = "{\"type\":\"array\",\"items\":\"null\"}";
    uint64_t fpn = fingerprint_of(nulls);
    cr_assert_eq(cdc_registry_add(reg, fpn, nulls, err, sizeof err), 0, "%s", err);
    /* count 2^40, then the end-of-array 0 */
    static const uint8_t many[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0x00};
    len = with_header(fpn, many, sizeof many, msg);
    cr_expect_eq(cdc_registry_decode(reg, msg, len, &v, NULL, err, sizeof err), CDC_REGISTRY_ERROR);
    /* A sane array of nulls still decodes. */
    static const uint8_t three[] = {0x06, 0x00};
    len = with_header(fpn, three, sizeof three, msg);
    cr_assert_eq(cdc_registry_decode(reg, msg, len, &v, NULL, err, sizeof err), CDC_REGISTRY_OK,
                 "%s", err);
    size_t n = 0;
    avro_value_get_size(&v, &n);
    cr_expect_eq(n, 3);
    avro_value_decref(&v);
    cdc_registry_destroy(reg);
}

/* ---- loading from the schemas topic (in-process mock cluster) ---------- */

typedef struct mock {
    rd_kafka_t *rk; /* producer hosting the mock cluster and writing to it */
    rd_kafka_mock_cluster_t *mc;
    char bootstrap[256];
} mock;

static void mock_start(mock *m)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "4", NULL, 0); /* no "no bootstrap.servers" notice */
    /* One handle hosts the cluster (it has no bootstrap.servers of its own);
     * a second producer, pointed at the cluster, writes the test data. */
    rd_kafka_t *host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cr_assert_not_null(host, "%s", err);
    m->mc = rd_kafka_mock_cluster_new(host, 1);
    cr_assert_not_null(m->mc);
    snprintf(m->bootstrap, sizeof m->bootstrap, "%s", rd_kafka_mock_cluster_bootstraps(m->mc));

    conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", m->bootstrap, err, sizeof err),
                 RD_KAFKA_CONF_OK);
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cr_assert_not_null(m->rk, "%s", err);
}

static void mock_stop(mock *m)
{
    rd_kafka_destroy(m->rk);
    rd_kafka_t *host = rd_kafka_mock_cluster_handle(m->mc);
    rd_kafka_mock_cluster_destroy(m->mc);
    rd_kafka_destroy(host);
}

static void produce(mock *m, const char *topic, const char *key, const char *value)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        m->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
        RD_KAFKA_V_VALUE((void *)value, value ? strlen(value) : 0),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "%s", rd_kafka_err2str(err));
}

Test(registry, load_reads_valid_schemas_and_skips_bad_records)
{
    char err[512], hex[17], badhex[17];
    mock m;
    mock_start(&m);
    const char *other = "{\"type\":\"record\",\"name\":\"Other\",\"fields\":[]}";
    uint64_t fp_row = fingerprint_of(ROW_SCHEMA), fp_other = fingerprint_of(other);

    cdc_fingerprint_hex(fp_row, hex);
    produce(&m, "t1._schemas", hex, ROW_SCHEMA);
    produce(&m, "t1._schemas", hex, ROW_SCHEMA); /* republished after a restart */
    produce(&m, "t1._schemas", "not-a-fingerprint", ROW_SCHEMA);
    cdc_fingerprint_hex(fp_other + 1, badhex);
    produce(&m, "t1._schemas", badhex, other); /* key does not match */
    produce(&m, "t1._schemas", badhex, NULL);  /* tombstone */
    cdc_fingerprint_hex(fp_other, hex);
    produce(&m, "t1._schemas", hex, other);
    cr_assert_eq(rd_kafka_flush(m.rk, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);

    cdc_registry *reg = cdc_registry_new();
    int n = cdc_registry_load_prefix(reg, m.bootstrap, NULL, "t1", 20000, err, sizeof err);
    cr_expect_eq(n, 2, "load: %d %s", n, n < 0 ? err : "");
    cr_expect_not_null(cdc_registry_get(reg, fp_row));
    cr_expect_not_null(cdc_registry_get(reg, fp_other));
    cr_expect_eq(cdc_registry_count(reg), 2);

    /* Reading again adds nothing new. */
    n = cdc_registry_load_prefix(reg, m.bootstrap, NULL, "t1", 20000, err, sizeof err);
    cr_expect_eq(n, 0, "reload: %d %s", n, n < 0 ? err : "");

    cdc_registry_destroy(reg);
    mock_stop(&m);
}

Test(registry, load_of_a_missing_topic_finds_nothing_and_creates_nothing)
{
    char err[512];
    mock m;
    mock_start(&m);
    cdc_registry *reg = cdc_registry_new();

    int n = cdc_registry_load_prefix(reg, m.bootstrap, NULL, "absent", 20000, err, sizeof err);
    cr_expect_eq(n, 0, "load: %d %s", n, n < 0 ? err : "");

    /* Listing all topics must not have auto-created it. */
    const struct rd_kafka_metadata *md;
    cr_assert_eq(rd_kafka_metadata(m.rk, 1, NULL, &md, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int i = 0; i < md->topic_cnt; i++)
        cr_expect_str_neq(md->topics[i].topic, "absent._schemas");
    rd_kafka_metadata_destroy(md);

    cdc_registry_destroy(reg);
    mock_stop(&m);
}

Test(registry, load_with_a_bad_extra_setting_fails_with_its_name)
{
    char err[512] = "";
    cdc_kv kv = {(char *)"no.such.property", (char *)"1"};
    cdc_kv_list extra = {&kv, 1};
    cdc_registry *reg = cdc_registry_new();

    cr_expect_eq(cdc_registry_load_prefix(reg, "127.0.0.1:1", &extra, "x", 1000, err, sizeof err),
                 -1);
    cr_expect(strstr(err, "no.such.property") != NULL, "errstr: %s", err);
    cdc_registry_destroy(reg);
}
