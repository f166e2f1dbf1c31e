/* Kafka configuration, logging and topic naming (see cdc/kafka.h). */
#include "cdc/kafka.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
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
    /*
     * A configuration warning (a SASL setting without sasl.mechanism, a
     * deprecated property) says a kafka.* key does not do what it seems.
     * Except "... will be ignored by this producer/consumer instance":
     * every kafka.* key goes to each client a daemon makes, so a consumer
     * property is expected to be ignored by its producer; and "... is
     * experimental", which cdc-capture's own enable.gapless.guarantee meets.
     */
    if (strcmp(fac, "CONFWARN") == 0 && !strstr(buf, "will be ignored by this") &&
        !strstr(buf, "is experimental"))
        l = CDC_LOG_WARN;
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

int cdc_topic_name_check(const char *key, const char *s, size_t max, char *errstr,
                         size_t errstr_size)
{
    size_t n = strlen(s);
    bool ok = n > 0 && n <= max && n <= TOPIC_MAX && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
    for (const char *p = s; ok && *p; p++)
        ok = topic_char_ok(*p);
    if (ok)
        return 0;
    snprintf(errstr, errstr_size,
             "%s: invalid value '%s' (letters, digits, '.', '_', '-'; at most %zu)", key, s, max);
    return -1;
}

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

/* ---- reading a topic to its end ---- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
    int64_t r = deadline - mono_ms();
    return r < 0 ? 0 : r > 60000 ? 60000 : (int)r;
}

/*
 * Partition count of `topic` from a listing of all topics: 0 if it does not
 * exist, -1 on error.
 */
static int topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                            size_t errstr_size)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (err) {
        snprintf(errstr, errstr_size, "cannot list topics: %s (retriable)", rd_kafka_err2str(err));
        return -1;
    }
    int n = 0;
    for (int i = 0; i < md->topic_cnt; i++) {
        if (strcmp(md->topics[i].topic, topic) != 0)
            continue;
        rd_kafka_resp_err_t terr = md->topics[i].err;
        if (terr && terr != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            /* Listed but not readable now (no leader yet, not authorised):
             * not the same as absent. */
            snprintf(errstr, errstr_size, "%s: %s (retriable)", topic, rd_kafka_err2str(terr));
            n = -1;
        } else if (!terr) {
            n = md->topics[i].partition_cnt;
        }
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

int cdc_kafka_read_topic(const rd_kafka_conf_t *conf, const char *topic, int timeout_ms,
                         int (*record)(const rd_kafka_message_t *m, void *opaque), void *opaque,
                         char *errstr, size_t errstr_size)
{
    int64_t deadline = mono_ms() + timeout_ms;
    char kerr[512];
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *assignment = NULL;
    int64_t *high = NULL;
    bool *done = NULL;
    int nparts, pending = 0, seen = 0, rc = -1;

    rd_kafka_conf_t *c = rd_kafka_conf_dup(conf);
    /* Reading is repeatable from the beginning each time; nothing to commit. */
    static const char *const overrides[][2] = {
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "true"},
        /* Compaction may move the start while we read; restart from there. */
        {"auto.offset.reset", "earliest"},
    };
    for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++) {
        if (rd_kafka_conf_set(c, overrides[i][0], overrides[i][1], kerr, sizeof kerr) !=
            RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "consumer for %s: %s", topic, kerr);
            rd_kafka_conf_destroy(c);
            goto done;
        }
    }
    /* librdkafka 2.0 refuses rd_kafka_assign() without a group.id even when
     * nothing joins the group or commits to it; any name will do. */
    char group[64];
    size_t glen = sizeof group;
    if (rd_kafka_conf_get(c, "group.id", group, &glen) != RD_KAFKA_CONF_OK || group[0] == '\0') {
        snprintf(group, sizeof group, "cdc-reader-%ld", (long)getpid());
        rd_kafka_conf_set(c, "group.id", group, NULL, 0);
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, kerr, sizeof kerr);
    if (!rk) {
        rd_kafka_conf_destroy(c);
        snprintf(errstr, errstr_size, "consumer for %s: %s", topic, kerr);
        goto done;
    }

    nparts = topic_partitions(rk, topic, remaining_ms(deadline), errstr, errstr_size);
    if (nparts < 0)
        goto done;
    if (nparts == 0) {
        cdc_debug("%s does not exist yet", topic);
        rc = 0;
        goto done;
    }

    /* Stop at the end offsets of now. */
    high = cdc_xcalloc((size_t)nparts, sizeof *high);
    done = cdc_xcalloc((size_t)nparts, sizeof *done);
    assignment = rd_kafka_topic_partition_list_new(nparts);
    for (int32_t p = 0; p < nparts; p++) {
        int64_t low;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high[p], remaining_ms(deadline));
        if (err) {
            snprintf(errstr, errstr_size, "%s [%" PRId32 "]: end offsets: %s (retriable)", topic, p,
                    rd_kafka_err2str(err));
            goto done;
        }
        if (high[p] <= low) {
            done[p] = true;
            continue;
        }
        rd_kafka_topic_partition_list_add(assignment, topic, p)->offset = low;
        pending++;
    }
    if (pending > 0) {
        rd_kafka_resp_err_t err = rd_kafka_assign(rk, assignment);
        if (err) {
            snprintf(errstr, errstr_size, "%s: assign: %s", topic, rd_kafka_err2str(err));
            goto done;
        }
    }

    while (pending > 0) {
        int wait = remaining_ms(deadline);
        if (wait == 0) {
            snprintf(errstr, errstr_size,
                    "%s: timed out with %d of %d partitions not read to the end (retriable)", topic,
                    pending, nparts);
            goto done;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, wait < 100 ? wait : 100);
        if (!m)
            continue;
        int32_t p = m->partition;
        bool ours = m->rkt && p >= 0 && p < nparts;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* Also covers a tail that is not a record (transaction markers). */
            if (ours && !done[p] && m->offset >= high[p]) {
                done[p] = true;
                pending--;
            }
        } else if (m->err) {
            /* Transient broker errors are retried by librdkafka; a topic
             * deleted under us or an offset gone is not. */
            bool fatal = m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                         m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                         m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
                         m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE;
            cdc_warn("%s: %s", topic, rd_kafka_message_errstr(m));
            if (fatal) {
                snprintf(errstr, errstr_size, "%s: %s", topic, rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                goto done;
            }
        } else if (ours) {
            seen += record(m, opaque);
            if (!done[p] && m->offset >= high[p] - 1) {
                done[p] = true;
                pending--;
            }
        }
        rd_kafka_message_destroy(m);
    }
    rc = seen;

done:
    if (assignment)
        rd_kafka_topic_partition_list_destroy(assignment);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    free(high);
    free(done);
    return rc;
}

