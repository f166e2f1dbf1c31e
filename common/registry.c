/*
 * Writer-schema registry for decoding our events (see cdc/registry.h).
 *
 * Schemas live in an open-addressing hash map keyed by fingerprint. Slots
 * hold pointers to separately allocated entries so that the pointers handed
 * out by cdc_registry_get stay valid when the table grows. Fingerprints are
 * CRCs, already well spread, so a multiplicative mix is all the hashing they
 * need.
 */
#include "cdc/registry.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cdc/avro_bin.h"
#include "cdc/buf.h"
#include "cdc/fingerprint.h"
#include "cdc/kafka.h"
#include "cdc/log.h"

#define INITIAL_SLOTS 16

struct cdc_registry {
    cdc_registry_schema **slots; /* NULL = empty */
    size_t nslots;               /* power of two */
    size_t count;
};

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (!errstr || errstr_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/* avro-c reports errors through a per-thread string; keep messages one line. */
static const char *avro_err(void)
{
    static _Thread_local char buf[256];
    snprintf(buf, sizeof buf, "%s", avro_strerror());
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

static size_t slot_of(uint64_t fp, size_t nslots)
{
    return (size_t)((fp * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (nslots - 1);
}

cdc_registry *cdc_registry_new(void)
{
    cdc_registry *reg = cdc_xcalloc(1, sizeof *reg);
    reg->nslots = INITIAL_SLOTS;
    reg->slots = cdc_xcalloc(reg->nslots, sizeof *reg->slots);
    return reg;
}

static void entry_free(cdc_registry_schema *e)
{
    if (!e)
        return;
    if (e->iface)
        avro_value_iface_decref(e->iface);
    if (e->schema)
        avro_schema_decref(e->schema);
    free((char *)e->json);
    free(e);
}

void cdc_registry_destroy(cdc_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->nslots; i++)
        entry_free(reg->slots[i]);
    free(reg->slots);
    free(reg);
}

size_t cdc_registry_count(const cdc_registry *reg)
{
    return reg->count;
}

const cdc_registry_schema *cdc_registry_get(const cdc_registry *reg, uint64_t fp)
{
    for (size_t i = slot_of(fp, reg->nslots);; i = (i + 1) & (reg->nslots - 1)) {
        cdc_registry_schema *e = reg->slots[i];
        if (!e)
            return NULL;
        if (e->fingerprint == fp)
            return e;
    }
}

/* Place an entry known to be absent; the table has a free slot. */
static void insert_slot(cdc_registry_schema **slots, size_t nslots, cdc_registry_schema *e)
{
    size_t i = slot_of(e->fingerprint, nslots);
    while (slots[i])
        i = (i + 1) & (nslots - 1);
    slots[i] = e;
}

/* Keep the load factor at or below one half so probe chains stay short. */
static void grow_if_needed(cdc_registry *reg)
{
    if ((reg->count + 1) * 2 <= reg->nslots)
        return;
    size_t n = reg->nslots * 2;
    cdc_registry_schema **slots = cdc_xcalloc(n, sizeof *slots);
    for (size_t i = 0; i < reg->nslots; i++)
        if (reg->slots[i])
            insert_slot(slots, n, reg->slots[i]);
    free(reg->slots);
    reg->slots = slots;
    reg->nslots = n;
}

int cdc_registry_add(cdc_registry *reg, uint64_t fp, const char *json, char *errstr,
                     size_t errstr_size)
{
    char hex[17];
    char why[256];
    uint64_t computed;
    cdc_registry_schema *e = NULL;

    cdc_fingerprint_hex(fp, hex);
    if (cdc_registry_get(reg, fp))
        return 0;
    if (cdc_avro_fingerprint(json, &computed, why, sizeof why) != 0) {
        set_err(errstr, errstr_size, "schema %s: %s", hex, why);
        goto fail;
    }
    if (computed != fp) {
        char chex[17];
        cdc_fingerprint_hex(computed, chex);
        set_err(errstr, errstr_size, "schema %s: its fingerprint is %s, not the key it came with",
                hex, chex);
        goto fail;
    }

    e = cdc_xcalloc(1, sizeof *e);
    e->fingerprint = fp;
    e->json = cdc_xstrdup(json);
    if (avro_schema_from_json_length(e->json, strlen(e->json), &e->schema) != 0) {
        e->schema = NULL;
        set_err(errstr, errstr_size, "schema %s: avro-c rejects it: %s", hex, avro_err());
        goto fail;
    }
    e->iface = avro_generic_class_from_schema(e->schema);
    if (!e->iface) {
        set_err(errstr, errstr_size, "schema %s: no generic class: %s", hex, avro_err());
        goto fail;
    }

    grow_if_needed(reg);
    insert_slot(reg->slots, reg->nslots, e);
    reg->count++;
    return 0;

fail:
    entry_free(e);
    return -1;
}

/* ---- decoding ---------------------------------------------------------- */

/*
 * Check that body[*p..end) holds one value of `schema` before avro-c reads
 * it. avro-c trusts length prefixes: it allocates whatever a string, bytes or
 * block length says and leaks that buffer when the bytes then run out, and
 * an array of zero-size items can claim billions of them. Corrupt or hostile
 * input must cost no more than its own size, so every length and count is
 * bounded by the bytes that remain, and every union and enum index by the
 * schema, here, without allocating.
 */
#define MAX_DEPTH 64
#define MAX_EMPTY_ITEMS 65536 /* items that take no bytes, e.g. an array of null */

static int walk(avro_schema_t schema, const uint8_t **p, const uint8_t *end, int depth,
                size_t *empty_items);

/* Array or map blocks: count, or -count then the block's size in bytes. */
static int walk_blocks(avro_schema_t items, bool is_map, const uint8_t **p, const uint8_t *end,
                       int depth, size_t *empty_items)
{
    for (;;) {
        int64_t count, bytes;
        if (cdc_avro_get_long(p, end, &count) != 0)
            return -1;
        if (count == 0)
            return 0;
        if (count < 0) {
            if (count == INT64_MIN || cdc_avro_get_long(p, end, &bytes) != 0 || bytes < 0 ||
                (uint64_t)bytes > (uint64_t)(end - *p))
                return -1;
            count = -count;
        }
        for (int64_t i = 0; i < count; i++) {
            const uint8_t *before = *p;
            const uint8_t *key;
            size_t keylen;
            if (is_map && cdc_avro_get_bytes(p, end, &key, &keylen) != 0)
                return -1;
            if (walk(items, p, end, depth + 1, empty_items) != 0)
                return -1;
            if (*p == before && ++*empty_items > MAX_EMPTY_ITEMS)
                return -1;
        }
    }
}

static int walk(avro_schema_t schema, const uint8_t **p, const uint8_t *end, int depth,
                size_t *empty_items)
{
    int64_t n;
    const uint8_t *data;
    size_t len;

    if (depth > MAX_DEPTH)
        return -1;
    switch (avro_typeof(schema)) {
    case AVRO_NULL:
        return 0;
    case AVRO_BOOLEAN:
        if (*p >= end)
            return -1;
        (*p)++;
        return 0;
    case AVRO_INT32:
        return cdc_avro_get_long(p, end, &n) != 0 || n < INT32_MIN || n > INT32_MAX ? -1 : 0;
    case AVRO_INT64:
        return cdc_avro_get_long(p, end, &n);
    case AVRO_FLOAT:
    case AVRO_DOUBLE:
        len = avro_typeof(schema) == AVRO_FLOAT ? 4 : 8;
        if ((size_t)(end - *p) < len)
            return -1;
        *p += len;
        return 0;
    case AVRO_STRING:
    case AVRO_BYTES:
        return cdc_avro_get_bytes(p, end, &data, &len);
    case AVRO_FIXED:
        n = avro_schema_fixed_size(schema);
        if (n < 0 || (uint64_t)n > (uint64_t)(end - *p))
            return -1;
        *p += n;
        return 0;
    case AVRO_ENUM:
        if (cdc_avro_get_long(p, end, &n) != 0 || n < 0 ||
            n >= avro_schema_enum_number_of_symbols(schema))
            return -1;
        return 0;
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(schema); i++) {
            avro_schema_t f = avro_schema_record_field_get_by_index(schema, (int)i);
            if (!f || walk(f, p, end, depth + 1, empty_items) != 0)
                return -1;
        }
        return 0;
    case AVRO_UNION:
        if (cdc_avro_get_long(p, end, &n) != 0 || n < 0 ||
            (uint64_t)n >= avro_schema_union_size(schema))
            return -1;
        return walk(avro_schema_union_branch(schema, (int)n), p, end, depth + 1, empty_items);
    case AVRO_ARRAY:
        return walk_blocks(avro_schema_array_items(schema), false, p, end, depth, empty_items);
    case AVRO_MAP:
        return walk_blocks(avro_schema_map_values(schema), true, p, end, depth, empty_items);
    case AVRO_LINK:
        return walk(avro_schema_link_target(schema), p, end, depth + 1, empty_items);
    default:
        return -1;
    }
}

int cdc_registry_decode(cdc_registry *reg, const void *msg, size_t len, avro_value_t *out,
                        const char **json_schema_out, char *errstr, size_t errstr_size)
{
    const uint8_t *p = msg;
    const uint8_t *end = p + len;
    uint64_t fp;
    char hex[17];
    avro_reader_t reader = NULL;
    bool have_value = false;
    int rc = CDC_REGISTRY_ERROR;

    if (len >= 2 && (p[0] != 0xC3 || p[1] != 0x01)) {
        set_err(errstr, errstr_size,
                "not an Avro single-object message: magic %02x %02x, expected c3 01", p[0], p[1]);
        goto done;
    }
    if (cdc_avro_get_so_header(&p, end, &fp) != 0) {
        set_err(errstr, errstr_size, "truncated single-object header: %zu of %d bytes", len,
                CDC_AVRO_SO_HEADER_LEN);
        goto done;
    }
    cdc_fingerprint_hex(fp, hex);
    const cdc_registry_schema *e = cdc_registry_get(reg, fp);
    if (!e) {
        set_err(errstr, errstr_size, "unknown schema fingerprint %s", hex);
        rc = CDC_REGISTRY_UNKNOWN;
        goto done;
    }

    const uint8_t *q = p;
    size_t empty_items = 0;
    if (walk(e->schema, &q, end, 0, &empty_items) != 0) {
        set_err(errstr, errstr_size, "body is truncated or corrupt for schema %s (%zu bytes)", hex,
                (size_t)(end - p));
        goto done;
    }
    if (q != end) {
        set_err(errstr, errstr_size,
                "body has %zu bytes but a value of schema %s takes %zu: not written with it",
                (size_t)(end - p), hex, (size_t)(q - p));
        goto done;
    }

    if (avro_generic_value_new(e->iface, out) != 0) {
        set_err(errstr, errstr_size, "schema %s: cannot create a value: %s", hex, avro_err());
        goto done;
    }
    have_value = true;
    reader = avro_reader_memory((const char *)p, (int64_t)(end - p));
    if (!reader) {
        set_err(errstr, errstr_size, "cannot create an avro-c reader: %s", avro_err());
        goto done;
    }
    if (avro_value_read(reader, out) != 0) {
        set_err(errstr, errstr_size, "body does not decode with schema %s: %s", hex, avro_err());
        goto done;
    }
    if (json_schema_out)
        *json_schema_out = e->json;
    rc = CDC_REGISTRY_OK;

done:
    if (reader)
        avro_reader_free(reader);
    if (rc != CDC_REGISTRY_OK && have_value)
        avro_value_decref(out);
    return rc;
}

char *cdc_registry_value_to_json(const avro_value_t *value, char *errstr, size_t errstr_size)
{
    char *json = NULL;
    if (avro_value_to_json(value, 1, &json) != 0) {
        set_err(errstr, errstr_size, "cannot render the value as JSON: %s", avro_err());
        return NULL;
    }
    return json;
}

int cdc_registry_decode_json(cdc_registry *reg, const void *msg, size_t len, char **json_out,
                             char *errstr, size_t errstr_size)
{
    avro_value_t v;
    *json_out = NULL;
    int rc = cdc_registry_decode(reg, msg, len, &v, NULL, errstr, errstr_size);
    if (rc != CDC_REGISTRY_OK)
        return rc;
    *json_out = cdc_registry_value_to_json(&v, errstr, errstr_size);
    avro_value_decref(&v);
    return *json_out ? CDC_REGISTRY_OK : CDC_REGISTRY_ERROR;
}

/* ---- loading the schemas topic ---------------------------------------- */

/* One record of the schemas topic; invalid ones are logged and skipped. */
static int load_record(cdc_registry *reg, const char *topic, const rd_kafka_message_t *m)
{
    char key[17];
    uint64_t fp;
    char why[512];

    if (!m->key || m->key_len != 16) {
        cdc_warn("%s [%" PRId32 "] offset %" PRId64 ": key is not a 16-digit fingerprint; "
                 "skipped",
                 topic, m->partition, m->offset);
        return 0;
    }
    memcpy(key, m->key, 16);
    key[16] = '\0';
    if (cdc_fingerprint_parse_hex(key, &fp) != 0) {
        cdc_warn("%s [%" PRId32 "] offset %" PRId64 ": key '%s' is not hex; skipped", topic,
                 m->partition, m->offset, key);
        return 0;
    }
    if (!m->payload)
        return 0; /* tombstone: schemas never retire (see header) */
    if (cdc_registry_get(reg, fp))
        return 0;
    char *json = cdc_xstrndup(m->payload, m->len);
    int rc = cdc_registry_add(reg, fp, json, why, sizeof why);
    free(json);
    if (rc != 0) {
        cdc_warn("%s [%" PRId32 "] offset %" PRId64 ": %s; skipped", topic, m->partition, m->offset,
                 why);
        return 0;
    }
    return 1;
}

typedef struct load_ctx {
    cdc_registry *reg;
    const char *topic;
} load_ctx;

static int load_cb(const rd_kafka_message_t *m, void *opaque)
{
    load_ctx *c = opaque;
    return load_record(c->reg, c->topic, m);
}

int cdc_registry_load(cdc_registry *reg, const rd_kafka_conf_t *conf, const char *topic,
                      int timeout_ms, char *errstr, size_t errstr_size)
{
    /* Stop at the end offsets of now: later schemas belong to later events,
     * which will come back here through CDC_REGISTRY_UNKNOWN. */
    load_ctx c = {reg, topic};
    int added = cdc_kafka_read_topic(conf, topic, timeout_ms, load_cb, &c, errstr, errstr_size);
    if (added >= 0)
        cdc_debug("%s: %d new schema(s), %zu known", topic, added, reg->count);
    return added;
}

int cdc_registry_load_prefix(cdc_registry *reg, const char *bootstrap, const cdc_kv_list *extra,
                             const char *prefix, int timeout_ms, char *errstr, size_t errstr_size)
{
    static const cdc_kv_list none = {NULL, 0};
    /* An explicit bootstrap.servers in `extra` wins, as for the daemons. */
    cdc_kv defaults[] = {{(char *)"bootstrap.servers", (char *)bootstrap}};
    cdc_buf topic;
    int rc = -1;

    rd_kafka_conf_t *conf =
        cdc_kafka_conf_new(extra ? extra : &none, defaults, 1, errstr, errstr_size);
    if (!conf)
        return -1;
    cdc_buf_init(&topic);
    cdc_topic_schemas(&topic, prefix);
    rc = cdc_registry_load(reg, conf, cdc_buf_cstr(&topic), timeout_ms, errstr, errstr_size);
    rd_kafka_conf_destroy(conf);
    cdc_buf_free(&topic);
    return rc;
}
