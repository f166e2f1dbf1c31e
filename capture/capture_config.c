/* cdc-capture's configuration keys: the one table --help and README use. */
#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "capture.h"
#include "cdc/buf.h"
#include "cdc/kafka.h"
#include "cdc/log.h"

#define K(field) offsetof(capture_config, field)

static const cdc_cfg_key capture_keys[] = {
    {"source.conninfo", CDC_CFG_STR, K(source_conninfo), true, NULL, 0, 0, NULL,
     "libpq connection string of the source database (key=value or postgresql:// URI)"},
    {"topic.prefix", CDC_CFG_STR, K(topic_prefix), false, "cdc", 0, 0, NULL,
     "first part of every topic name: {prefix}.{schema}.{table}, {prefix}._schemas"},
    {"slot.name", CDC_CFG_STR, K(slot_name), false, "cdc", 0, 0, NULL,
     "logical replication slot (created with plugin pgoutput when missing)"},
    {"publication.name", CDC_CFG_STR, K(publication_name), false, "cdc", 0, 0, NULL,
     "publication to stream (created when missing; used as it is when it exists)"},
    {"tables", CDC_CFG_STR, K(tables), false, "", 0, 0, NULL,
     "comma list of schema.table for a new publication; empty = all tables"},
    {"topic.partitions", CDC_CFG_INT, K(topic_partitions), false, "1", 1, 100000, NULL,
     "partitions of topics created through the Admin API"},
    {"topic.replication.factor", CDC_CFG_INT, K(topic_replication_factor), false, "-1", -1, 32767,
     NULL, "replication factor of created topics; -1 = the broker's default"},
    {"status.interval.ms", CDC_CFG_INT, K(status_interval_ms), false, "10000", 100, 10000, NULL,
     "longest time between status updates to Postgres"},
    {"stats.interval.ms", CDC_CFG_INT, K(stats_interval_ms), false, "10000", 100, 3600000, NULL,
     "how often the progress line (events published, confirmed LSN) is logged"},
    {"shutdown.timeout.ms", CDC_CFG_INT, K(shutdown_timeout_ms), false, "30000", 0, 3600000, NULL,
     "on SIGTERM, how long to wait for Kafka to acknowledge outstanding events"},
    {"bootstrap.mode", CDC_CFG_ENUM, K(bootstrap_mode), false, "initial", 0, 0,
     "initial|never|only",
     "initial: full load when the slot is new, then stream; never: stream only; only: full "
     "load, then exit"},
    {"bootstrap.workers", CDC_CFG_INT, K(bootstrap_workers), false, "2", 1, 64, NULL,
     "parallel connections reading the full load"},
    {"log.level", CDC_CFG_ENUM, K(log_level), false, "info", 0, 0, "error|warn|info|debug",
     "least severe level that is logged"},
    {NULL, 0, 0, false, NULL, 0, 0, NULL, NULL},
};

static const cdc_cfg_flag capture_flags[] = {
    {"--bootstrap", K(force_bootstrap),
     "force a new full load: drop and recreate the slot, load, then stream"},
    {NULL, 0, NULL},
};

static const char *const capture_kafka_required[] = {"kafka.bootstrap.servers", NULL};

const cdc_cfg_spec capture_config_spec = {
    .program = "cdc-capture",
    .summary = "Streams every committed change of a PostgreSQL database to Kafka as Avro "
               "change events\n(logical replication with the built-in pgoutput plugin).",
    .keys = capture_keys,
    .flags = capture_flags,
    .kafka_offset = offsetof(capture_config, kafka),
    .kafka_keys = true,
    .kafka_required = capture_kafka_required,
};

static bool valid_slot_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

static bool is_true(const char *v)
{
    return strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0;
}

static bool is_all(const char *v)
{
    return strcasecmp(v, "all") == 0 || strcmp(v, "-1") == 0;
}

static bool is_zero(const char *v)
{
    char *end = NULL;
    return strtol(v, &end, 10) == 0 && end != v && *end == '\0';
}

/* Producer properties that cdc-capture's guarantees depend on. */
#define REPEAT_WHY                                                                                 \
    "an event Kafka refuses or times out could be written behind later ones "                      \
    "when sent again, and be dropped as a repeat"
static const struct {
    const char *key, *value;
    bool (*ok)(const char *);
    const char *why;
} pinned[] = {
    /* Without either, an event Kafka refuses for good lets later ones of its
     * partition be written. */
    {"enable.idempotence", "true", is_true, REPEAT_WHY},
    {"enable.gapless.guarantee", "true", is_true, REPEAT_WHY},
    /* librdkafka would refuse to start the producer; this says why, as exit 2. */
    {"acks", "all", is_all,
     "the idempotent producer needs every in-sync replica's acknowledgement"},
    {"request.required.acks", "all", is_all,
     "the idempotent producer needs every in-sync replica's acknowledgement"},
    /* A timed-out event is outside the gapless guarantee. */
    {"message.timeout.ms", "0, no timeout", is_zero,
     REPEAT_WHY "; cdc-capture waits for Kafka instead"},
    {"delivery.timeout.ms", "0, no timeout", is_zero,
     REPEAT_WHY "; cdc-capture waits for Kafka instead"},
};

cdc_cfg_result capture_config_load(capture_config *cfg, int argc, char **argv, char *errstr,
                                   size_t errstr_size)
{
    cdc_cfg_result r = cdc_config_parse(&capture_config_spec, cfg, argc, argv, errstr, errstr_size);
    if (r != CDC_CFG_OK)
        return r;
    if (!valid_slot_name(cfg->slot_name)) {
        snprintf(errstr, errstr_size,
                 "slot.name: invalid value '%s' (lower-case letters, digits and _; at most 63)",
                 cfg->slot_name);
        return CDC_CFG_ERROR;
    }
    if (cdc_topic_name_check("topic.prefix", cfg->topic_prefix, 200, errstr, errstr_size) != 0)
        return CDC_CFG_ERROR;
    if (!*cfg->publication_name || strlen(cfg->publication_name) > 63) {
        snprintf(errstr, errstr_size, "publication.name: must be 1 to 63 characters");
        return CDC_CFG_ERROR;
    }
    if (cdc_config_check_conninfo("source.conninfo", cfg->source_conninfo, errstr, errstr_size) != 0)
        return CDC_CFG_ERROR;
    for (size_t i = 0; i < sizeof pinned / sizeof *pinned; i++) {
        const char *v = cdc_kv_get(&cfg->kafka, pinned[i].key);
        if (v && !pinned[i].ok(v)) {
            snprintf(errstr, errstr_size, "kafka.%s: must stay %s (%s)", pinned[i].key,
                     pinned[i].value, pinned[i].why);
            return CDC_CFG_ERROR;
        }
    }
    if (cfg->force_bootstrap && strcmp(cfg->bootstrap_mode, "never") == 0) {
        snprintf(errstr, errstr_size,
                 "--bootstrap: contradicts bootstrap.mode=never (which never loads); use "
                 "bootstrap.mode=initial or only with it");
        return CDC_CFG_ERROR;
    }
    char err[256];
    char *t = capture_tables_sql(cfg->tables, err, sizeof err);
    if (!t) {
        snprintf(errstr, errstr_size, "tables: %s", err);
        return CDC_CFG_ERROR;
    }
    free(t);
    cdc_log_level lvl;
    cdc_log_parse_level(cfg->log_level, &lvl);
    cdc_log_set_level(lvl);
    return CDC_CFG_OK;
}

void capture_config_free(capture_config *cfg)
{
    cdc_config_free(&capture_config_spec, cfg);
}

/* Quote an identifier the way PQescapeIdentifier does: "..." with "" doubled. */
static void quote_ident(cdc_buf *out, const char *s, size_t n)
{
    cdc_buf_putc(out, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            cdc_buf_putc(out, '"');
        cdc_buf_putc(out, (uint8_t)s[i]);
    }
    cdc_buf_putc(out, '"');
}

/* One name part: "quoted ""name""" or bare (kept as written, case included). */
static const char *name_part(const char *p, cdc_buf *out, char *errstr, size_t errstr_size)
{
    while (*p == ' ')
        p++;
    if (*p == '"') {
        cdc_buf raw;
        cdc_buf_init(&raw);
        p++;
        for (;;) {
            if (!*p) {
                cdc_buf_free(&raw);
                snprintf(errstr, errstr_size, "unterminated quoted name");
                return NULL;
            }
            if (*p == '"' && p[1] == '"') {
                cdc_buf_putc(&raw, '"');
                p += 2;
                continue;
            }
            if (*p == '"') {
                p++;
                break;
            }
            cdc_buf_putc(&raw, (uint8_t)*p++);
        }
        quote_ident(out, (const char *)raw.data, raw.len);
        cdc_buf_free(&raw);
    } else {
        const char *s = p;
        while (*p && *p != '.' && *p != ',' && *p != ' ')
            p++;
        if (p == s) {
            snprintf(errstr, errstr_size, "empty name");
            return NULL;
        }
        quote_ident(out, s, (size_t)(p - s));
    }
    while (*p == ' ')
        p++;
    return p;
}

char *capture_tables_sql(const char *tables, char *errstr, size_t errstr_size)
{
    cdc_buf out;
    cdc_buf_init(&out);
    const char *p = tables ? tables : "";
    while (*p == ' ')
        p++;
    while (*p) {
        if (out.len)
            cdc_buf_puts(&out, ", ");
        size_t start = out.len;
        p = name_part(p, &out, errstr, errstr_size);
        if (!p)
            goto fail;
        if (*p == '.') {
            cdc_buf_putc(&out, '.');
            p = name_part(p + 1, &out, errstr, errstr_size);
            if (!p)
                goto fail;
        } else {
            /* No schema given: public. */
            cdc_buf tmp;
            cdc_buf_init(&tmp);
            cdc_buf_puts(&tmp, "\"public\".");
            cdc_buf_append(&tmp, out.data + start, out.len - start);
            out.len = start;
            cdc_buf_append(&out, tmp.data, tmp.len);
            cdc_buf_free(&tmp);
        }
        if (*p == ',') {
            p++;
            while (*p == ' ')
                p++;
            if (!*p) {
                snprintf(errstr, errstr_size, "trailing comma");
                goto fail;
            }
        } else if (*p) {
            snprintf(errstr, errstr_size, "unexpected '%c' (expected schema.table[,...])", *p);
            goto fail;
        }
    }
    cdc_buf_cstr(&out);
    return (char *)out.data; /* ownership passes to the caller */
fail:
    cdc_buf_free(&out);
    return NULL;
}
