/* Kafka configuration, logging and topic naming (see cdc/kafka.h). */
#include "cdc/kafka.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "cdc/fingerprint.h"
#include "cdc/log.h"

static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static int last_error; /* 0 = healthy */
static atomic_bool degraded;

/*
 * librdkafka logs every failed connection attempt; during a broker outage
 * that is a line per second per broker. Its own log lines are therefore kept
 * at debug level, and the error callback (which carries the same conditions
 * as error codes) logs each state change once.
 */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    cdc_log_level l = level <= 2 ? CDC_LOG_ERROR : CDC_LOG_DEBUG;
    cdc_log(l, "librdkafka %s: %s", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
        cdc_error("Kafka fatal error: %s: %s", rd_kafka_err2name(orig), buf);
        return;
    }
    pthread_mutex_lock(&state_lock);
    bool fresh = last_error != err;
    last_error = err;
    pthread_mutex_unlock(&state_lock);
    atomic_store(&degraded, true);
    if (fresh)
        cdc_warn("Kafka unavailable: %s (%s); retrying", reason, rd_kafka_err2name(err));
}

void cdc_kafka_note_ok(void)
{
    if (!atomic_load(&degraded))
        return;
    pthread_mutex_lock(&state_lock);
    bool was = last_error != 0;
    last_error = 0;
    atomic_store(&degraded, false);
    pthread_mutex_unlock(&state_lock);
    if (was)
        cdc_info("Kafka available again");
}

bool cdc_kafka_degraded(void)
{
    return atomic_load(&degraded);
}

rd_kafka_conf_t *cdc_kafka_conf_new(const cdc_kv_list *user, const cdc_kv *defaults,
                                    size_t ndefaults, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[512];
    for (size_t i = 0; i < ndefaults; i++) {
        if (cdc_kv_get(user, defaults[i].key))
            continue;
        if (rd_kafka_conf_set(conf, defaults[i].key, defaults[i].value, err, sizeof err) !=
            RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "kafka.%s (built-in default): %s", defaults[i].key, err);
            goto fail;
        }
    }
    for (size_t i = 0; i < user->n; i++) {
        if (rd_kafka_conf_set(conf, user->items[i].key, user->items[i].value, err, sizeof err) !=
            RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "kafka.%s: %s", user->items[i].key, err);
            goto fail;
        }
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static bool topic_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

#define TOPIC_MAX 249

void cdc_topic_for_table(cdc_buf *out, const char *prefix, const char *schema, const char *table)
{
    cdc_buf full;
    cdc_buf_init(&full);
    cdc_buf_printf(&full, "%s.%s.%s", prefix, schema, table);
    for (size_t i = prefix ? strlen(prefix) : 0; i < full.len; i++)
        if (!topic_char_ok((char)full.data[i]))
            full.data[i] = '_';
    if (full.len > TOPIC_MAX) {
        /* Keep it unique: cut, then a hash of the true names. */
        cdc_buf names;
        cdc_buf_init(&names);
        cdc_buf_printf(&names, "%s\n%s\n%s", prefix, schema, table);
        char hex[17];
        cdc_fingerprint_hex(cdc_crc64_avro(names.data, names.len), hex);
        cdc_buf_free(&names);
        full.len = TOPIC_MAX - 17;
        cdc_buf_putc(&full, '_');
        cdc_buf_append(&full, hex, 16);
    }
    cdc_buf_append(out, full.data, full.len);
    cdc_buf_free(&full);
}

void cdc_topic_schemas(cdc_buf *out, const char *prefix)
{
    cdc_buf_printf(out, "%s._schemas", prefix);
}
