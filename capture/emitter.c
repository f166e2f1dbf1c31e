/*
 * Event encoding and production (see emitter.h).
 *
 * Value body, in the field order of schemas/envelope.avsc:
 *   before  union{null, Value}      after  union{null, Value}
 *   source  version, connector, name, ts_ms, snapshot, db, schema, table,
 *           txId union{null,long}, lsn union{null,long}
 *   op      string                  ts_ms  union{null, long}
 *   commit_lsn long, ordinal long, unchanged_toast array<string>
 * Value record: one union{null, T} per column, T per cdc_pgtype_map.
 * Key body: one T per key column.
 * Both are prefixed with the single-object header (C3 01 + fingerprint).
 */
#include "emitter.h"

#include "encode.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "cdc/avro_bin.h"
#include "cdc/buf.h"
#include "cdc/fingerprint.h"
#include "cdc/kafka.h"
#include "cdc/log.h"

#ifndef CDC_VERSION
#define CDC_VERSION "dev"
#endif

#define SCHEMA_SEQ 0 /* opaque of control messages (schemas, state): not a transaction */

typedef struct known_topic {
    char *name;
    int partitions;
} known_topic;

struct emitter {
    emitter_opts opts;
    tracker *tr;
    rd_kafka_t *rk;
    char *schemas_topic;
    uint64_t *published; /* fingerprints known to be in the schemas topic */
    size_t npublished;
    known_topic *topics;
    size_t ntopics;
    int schema_pending;
    int schema_failed;
    char last_error[512];
    encoder enc;
};

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/*
 * An event's ts_ms (when cdc-capture handled it) from the coarse clock: it
 * is read for every event, and the coarse one costs a memory read where the
 * precise one costs a TSC read; it lags by at most a scheduler tick (1-4 ms).
 */
static int64_t event_ms(void)
{
#ifdef CLOCK_REALTIME_COARSE
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) == 0)
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
    return now_ms();
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    emitter *em = opaque;
    uint64_t seq = (uint64_t)(uintptr_t)m->_private;
    bool ok = m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (ok) {
        cdc_kafka_note_ok();
    } else {
        snprintf(em->last_error, sizeof em->last_error, "delivery to %s [%d] failed: %s",
                 rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
    }
    if (seq == SCHEMA_SEQ) {
        em->schema_pending--;
        if (!ok)
            em->schema_failed++;
        return;
    }
    tracker_ack(em->tr, seq, ok);
}

/*
 * The partition of a keyed event: murmur2 (the Java client's hash, as
 * librdkafka's murmur2_random) of the key's Avro body. The single-object
 * header is left out: its fingerprint covers the key schema's properties
 * (pg.type, enum labels, column names), so a key column widened from
 * varchar(32) to varchar(64) would otherwise move every key to another
 * partition, and its later changes could overtake its earlier ones.
 */
static int32_t key_partitioner(const rd_kafka_topic_t *rkt, const void *key, size_t keylen,
                               int32_t partition_cnt, void *rkt_opaque, void *msg_opaque)
{
    if (key && keylen >= CDC_AVRO_SO_HEADER_LEN) {
        key = (const uint8_t *)key + CDC_AVRO_SO_HEADER_LEN;
        keylen -= CDC_AVRO_SO_HEADER_LEN;
    }
    return rd_kafka_msg_partitioner_murmur2_random(rkt, key, keylen, partition_cnt, rkt_opaque,
                                                   msg_opaque);
}

emitter *emitter_new(const emitter_opts *opts, tracker *t, char *errstr, size_t errstr_size)
{
    static const cdc_kv defaults[] = {
        {"enable.idempotence", "true"},
        /* A message that fails for good stops the producer before anything
         * after it in its partition is written: no gap that the re-sent
         * message would then land behind. */
        {"enable.gapless.guarantee", "true"},
        {"acks", "all"},
        /* Never give up on a message: the stream waits for Kafka instead. */
        {"message.timeout.ms", "0"},
        {"queue.buffering.max.kbytes", "65536"},
        {"queue.buffering.max.messages", "100000"},
        {"linger.ms", "20"},
        {"batch.num.messages", "10000"},
        {"compression.type", "lz4"},
        {"client.id", "cdc-capture"},
    };
    emitter *em = cdc_xcalloc(1, sizeof *em);
    em->opts = *opts;
    em->tr = t;
    encoder_init(&em->enc, opts->topic_prefix, opts->db);
    rd_kafka_conf_t *conf = cdc_kafka_conf_new(
        opts->kafka, defaults, sizeof defaults / sizeof defaults[0], errstr, errstr_size);
    if (!conf)
        goto fail;
    /* kafka.partitioner, when given, is the user's choice and stays. */
    if (!cdc_kv_get(opts->kafka, "partitioner")) {
        rd_kafka_topic_conf_t *tc = rd_kafka_conf_get_default_topic_conf(conf);
        if (tc) {
            rd_kafka_topic_conf_set_partitioner_cb(tc, key_partitioner);
        } else {
            tc = rd_kafka_topic_conf_new();
            rd_kafka_topic_conf_set_partitioner_cb(tc, key_partitioner);
            rd_kafka_conf_set_default_topic_conf(conf, tc);
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, em);
    char err[512];
    em->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!em->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "cannot create Kafka producer: %s", err);
        goto fail;
    }
    cdc_buf b;
    cdc_buf_init(&b);
    cdc_topic_schemas(&b, opts->topic_prefix);
    em->schemas_topic = cdc_xstrdup(cdc_buf_cstr(&b));
    cdc_buf_free(&b);
    return em;
fail:
    free(em);
    return NULL;
}

int emitter_flush(emitter *em, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (rd_kafka_outq_len(em->rk) > 0 && now_ms() < deadline)
        rd_kafka_poll(em->rk, 100);
    return rd_kafka_outq_len(em->rk);
}

void emitter_destroy(emitter *em, int timeout_ms)
{
    if (!em)
        return;
    if (em->rk) {
        int left = emitter_flush(em, timeout_ms);
        if (left > 0) {
            cdc_warn("%d Kafka messages still undelivered at shutdown; they will be sent "
                     "again after restart",
                     left);
            rd_kafka_purge(em->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_poll(em->rk, 0);
        }
        rd_kafka_destroy(em->rk);
    }
    for (size_t i = 0; i < em->ntopics; i++)
        free(em->topics[i].name);
    free(em->topics);
    free(em->published);
    free(em->schemas_topic);
    encoder_free(&em->enc);
    free(em);
}

void emitter_poll(emitter *em, int timeout_ms)
{
    rd_kafka_poll(em->rk, timeout_ms);
}

bool emitter_broken(emitter *em, char *errstr, size_t errstr_size)
{
    char buf[512];
    rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(em->rk, buf, sizeof buf);
    if (fatal) {
        snprintf(errstr, errstr_size, "Kafka producer fatal error: %s", buf);
        return true;
    }
    if (em->tr->failed > 0 || em->schema_failed > 0) {
        snprintf(errstr, errstr_size, "%s", em->last_error);
        return true;
    }
    return false;
}

/* Poll Kafka, let the caller keep Postgres alive, honour stop. */
static bool wait_step(emitter *em)
{
    rd_kafka_poll(em->rk, 100);
    if (em->opts.idle_cb)
        em->opts.idle_cb(em->opts.idle_opaque);
    return !(em->opts.stop && *em->opts.stop);
}

static emit_status produce(emitter *em, const char *topic, int32_t partition, const void *key,
                           size_t klen, const void *val, size_t vlen, uint64_t seq, char *errstr,
                           size_t errstr_size)
{
    for (;;) {
        rd_kafka_resp_err_t err =
            rd_kafka_producev(em->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, klen),
                              RD_KAFKA_V_VALUE((void *)val, vlen),
                              /* Given, librdkafka skips a gettimeofday() per message. */
                              RD_KAFKA_V_TIMESTAMP(event_ms()),
                              RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (seq == SCHEMA_SEQ)
                em->schema_pending++;
            else
                tracker_add(em->tr, seq);
            return EMIT_OK;
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            /* Backpressure: librdkafka's queue bounds our memory. */
            if (!wait_step(em))
                return EMIT_STOPPED;
            continue;
        }
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
            emitter_broken(em, errstr, errstr_size);
            return EMIT_RETRY;
        }
        snprintf(errstr, errstr_size, "cannot produce to %s: %s", topic, rd_kafka_err2str(err));
        return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? EMIT_FATAL : EMIT_RETRY;
    }
}

/* ---- topics ---- */

static known_topic *find_topic(emitter *em, const char *name)
{
    for (size_t i = 0; i < em->ntopics; i++)
        if (strcmp(em->topics[i].name, name) == 0)
            return &em->topics[i];
    return NULL;
}

/*
 * Whether the cluster can create topics, learnt once per process: 0 not
 * known yet, 1 yes, -1 no. CreateTopics goes to the controller named in the
 * metadata; librdkafka's mock cluster (cdc-devbroker) names a broker id that
 * does not exist, so there the request could only time out.
 */
static int admin_state;
#define ADMIN_TIMEOUT_MS 30000

static void probe_admin(emitter *em)
{
    const struct rd_kafka_metadata *md = NULL;
    while (rd_kafka_metadata(em->rk, 0, NULL, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (!wait_step(em))
            return;
    }
    int32_t controller = rd_kafka_controllerid(em->rk, 0);
    bool known = false;
    for (int i = 0; i < md->broker_cnt; i++)
        if (md->brokers[i].id == controller)
            known = true;
    rd_kafka_metadata_destroy(md);
    if (known) {
        admin_state = 1;
    } else {
        admin_state = -1;
        cdc_info("the Kafka cluster names no reachable controller, so it cannot create "
                 "topics (cdc-devbroker); topics are created by broker auto-creation");
    }
}

/*
 * CreateTopics through the Admin API. Returns false if the broker does not
 * support it (cdc-devbroker): the caller then relies on auto-creation.
 */
static bool create_topic(emitter *em, const char *name, int partitions, bool compact)
{
    if (admin_state == 0)
        probe_admin(em);
    if (admin_state < 0)
        return false;
    char err[512];
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(name, partitions, em->opts.topic_replication_factor, err, sizeof err);
    if (!nt) {
        cdc_warn("cannot describe topic %s for creation: %s", name, err);
        return false;
    }
    if (compact)
        rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
    rd_kafka_queue_t *q = rd_kafka_queue_new(em->rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(em->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(ao, ADMIN_TIMEOUT_MS, err, sizeof err);
    rd_kafka_CreateTopics(em->rk, &nt, 1, ao, q);
    rd_kafka_event_t *ev = NULL;
    while (!(ev = rd_kafka_queue_poll(q, 100))) {
        if (!wait_step(em))
            break;
    }
    bool created = false;
    if (ev) {
        rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
        if (e == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE ||
            e == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION || e == RD_KAFKA_RESP_ERR_INVALID_REQUEST) {
            admin_state = -1;
            cdc_info("the Kafka cluster does not support CreateTopics (%s); topics are "
                     "created by broker auto-creation",
                     rd_kafka_event_error_string(ev));
        } else if (e) {
            cdc_warn("creating topic %s: %s; relying on auto-creation", name,
                     rd_kafka_event_error_string(ev));
        } else {
            const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
            size_t n;
            const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
            for (size_t i = 0; i < n; i++) {
                rd_kafka_resp_err_t te = rd_kafka_topic_result_error(tr[i]);
                if (te == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    created = true;
                    cdc_info("created topic %s (%d partitions%s)", name, partitions,
                             compact ? ", compacted" : "");
                } else if (te != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                    cdc_warn("creating topic %s: %s; relying on auto-creation", name,
                             rd_kafka_topic_result_error_string(tr[i]));
                }
            }
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    return created;
}

/* Partition count from metadata; asking also triggers auto-creation. */
static emit_status topic_partitions(emitter *em, const char *name, int *out, char *errstr,
                                    size_t errstr_size)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(em->rk, name, NULL);
    int64_t start = now_ms();
    emit_status st = EMIT_OK;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(em->rk, 0, rkt, &md, 5000);
        int n = 0;
        if (!err && md->topic_cnt == 1 && !md->topics[0].err)
            n = md->topics[0].partition_cnt;
        else if (!err && md->topic_cnt == 1)
            err = md->topics[0].err;
        if (md)
            rd_kafka_metadata_destroy(md);
        if (n > 0) {
            *out = n;
            break;
        }
        if (now_ms() - start > 60000) {
            snprintf(errstr, errstr_size, "topic %s: no partition metadata after 60 s: %s", name,
                     rd_kafka_err2str(err));
            st = EMIT_RETRY;
            break;
        }
        if (!wait_step(em)) {
            st = EMIT_STOPPED;
            break;
        }
    }
    rd_kafka_topic_destroy(rkt);
    return st;
}

static emit_status ensure_topic(emitter *em, const char *name, bool compact, int partitions,
                                int *partitions_out, char *errstr, size_t errstr_size)
{
    known_topic *kt = find_topic(em, name);
    if (kt) {
        *partitions_out = kt->partitions;
        return EMIT_OK;
    }
    create_topic(em, name, partitions, compact);
    int n = 0;
    emit_status st = topic_partitions(em, name, &n, errstr, errstr_size);
    if (st != EMIT_OK)
        return st;
    em->topics = cdc_xrealloc(em->topics, (em->ntopics + 1) * sizeof *em->topics);
    em->topics[em->ntopics].name = cdc_xstrdup(name);
    em->topics[em->ntopics].partitions = n;
    em->ntopics++;
    *partitions_out = n;
    return EMIT_OK;
}

/* ---- schemas ---- */

static bool is_published(emitter *em, uint64_t fp)
{
    for (size_t i = 0; i < em->npublished; i++)
        if (em->published[i] == fp)
            return true;
    return false;
}

/*
 * Produce one record to a compacted control topic (created on first use)
 * and wait for Kafka's acknowledgement.
 */
emit_status emitter_put_control(emitter *em, const char *topic, const char *key,
                                const void *value, size_t value_len, char *errstr,
                                size_t errstr_size)
{
    if (!find_topic(em, topic)) {
        int n;
        emit_status st = ensure_topic(em, topic, true, 1, &n, errstr, errstr_size);
        if (st != EMIT_OK)
            return st;
    }
    int failed_before = em->schema_failed;
    emit_status st = produce(em, topic, RD_KAFKA_PARTITION_UA, key, strlen(key), value,
                             value_len, SCHEMA_SEQ, errstr, errstr_size);
    if (st != EMIT_OK)
        return st;
    while (em->schema_pending > 0) {
        if (!wait_step(em))
            return EMIT_STOPPED;
    }
    if (em->schema_failed > failed_before) {
        snprintf(errstr, errstr_size, "writing %s to %s: %s", key, topic, em->last_error);
        return EMIT_RETRY;
    }
    return EMIT_OK;
}

/*
 * Publish a schema and wait for Kafka's acknowledgement, so that no event
 * can be read before the schema that decodes it is available.
 */
static emit_status publish_schema(emitter *em, uint64_t fp, const char *json, char *errstr,
                                  size_t errstr_size)
{
    if (is_published(em, fp))
        return EMIT_OK;
    char hex[17];
    cdc_fingerprint_hex(fp, hex);
    emit_status st =
        emitter_put_control(em, em->schemas_topic, hex, json, strlen(json), errstr, errstr_size);
    if (st != EMIT_OK)
        return st;
    em->published = cdc_xrealloc(em->published, (em->npublished + 1) * sizeof *em->published);
    em->published[em->npublished++] = fp;
    cdc_debug("published schema %s", hex);
    return EMIT_OK;
}

emit_status emitter_prepare(emitter *em, relation *r, char *errstr, size_t errstr_size)
{
    emit_status st;
    if (r->partitions == 0) {
        st = ensure_topic(em, r->topic, false, em->opts.topic_partitions, &r->partitions, errstr,
                          errstr_size);
        if (st != EMIT_OK)
            return st;
    }
    if (r->key_schema) {
        st = publish_schema(em, r->key_fp, r->key_schema, errstr, errstr_size);
        if (st != EMIT_OK)
            return st;
    }
    return publish_schema(em, r->value_fp, r->value_schema, errstr, errstr_size);
}

/* One event (and its tombstone for deletes). keyt: tuple holding the key. */
static emit_status emit_one(emitter *em, relation *r, char op, const pgo_tuple *before,
                            const pgo_tuple *after, const pgo_tuple *keyt, event_ctx *ctx,
                            char *errstr, size_t errstr_size)
{
    const void *key = NULL;
    size_t klen = 0;
    int32_t partition = 0; /* keyless tables: one partition keeps their order */
    if (r->nkey > 0) {
        if (encode_key(&em->enc, r, keyt, errstr, errstr_size) != 0)
            return EMIT_FATAL;
        key = em->enc.key.data;
        klen = em->enc.key.len;
        partition = RD_KAFKA_PARTITION_UA;
    }
    if (encode_envelope(&em->enc, r, op, before, after, ctx, event_ms(), errstr, errstr_size) != 0)
        return EMIT_FATAL;
    emit_status st = produce(em, r->topic, partition, key, klen, em->enc.value.data,
                             em->enc.value.len, ctx->seq, errstr, errstr_size);
    if (st != EMIT_OK)
        return st;
    ctx->ordinal++;
    if (op == 'd' && key)
        st = produce(em, r->topic, partition, key, klen, NULL, 0, ctx->seq, errstr, errstr_size);
    return st;
}

static bool key_changed(const relation *r, const pgo_tuple *old, const pgo_tuple *new_)
{
    for (int k = 0; k < r->nkey; k++) {
        int i = r->key_idx[k];
        const pgo_value *a = &old->values[i], *b = &new_->values[i];
        if (b->kind == 'u')
            continue; /* unchanged TOASTed key: same value */
        if (a->kind != b->kind || a->len != b->len ||
            (a->len && memcmp(a->data, b->data, a->len) != 0))
            return true;
    }
    return false;
}

static bool key_unchanged_toast(const relation *r, const pgo_tuple *t)
{
    for (int k = 0; k < r->nkey; k++)
        if (t->values[r->key_idx[k]].kind == 'u')
            return true;
    return false;
}

/*
 * A copy of `after` (to free: its values) whose unchanged TOASTed values are
 * taken from `before` where it has them; only the key columns if key_only.
 */
static pgo_tuple fill_unchanged(const relation *r, const pgo_tuple *before, const pgo_tuple *after,
                                bool key_only)
{
    pgo_value *vals = cdc_xmalloc((size_t)after->ncols * sizeof *vals);
    memcpy(vals, after->values, (size_t)after->ncols * sizeof *vals);
    if (key_only) {
        for (int k = 0; k < r->nkey; k++) {
            int i = r->key_idx[k];
            if (vals[i].kind == 'u' && before->values[i].kind == 't')
                vals[i] = before->values[i];
        }
    } else {
        for (uint16_t i = 0; i < after->ncols; i++)
            if (vals[i].kind == 'u' && before->values[i].kind == 't')
                vals[i] = before->values[i];
    }
    return (pgo_tuple){after->ncols, vals};
}

emit_status emitter_change(emitter *em, relation *r, char op, const pgo_tuple *before,
                           const pgo_tuple *after, event_ctx *ctx, char *errstr, size_t errstr_size)
{
    if (encode_check_tuple(r, before, errstr, errstr_size) != 0 ||
        encode_check_tuple(r, after, errstr, errstr_size) != 0)
        return EMIT_FATAL;
    int col = encode_unknown_label(r, before);
    const pgo_tuple *t = before;
    if (col < 0) {
        col = encode_unknown_label(r, after);
        t = after;
    }
    if (col >= 0) {
        snprintf(errstr, errstr_size, "%s.%s column %s: enum label '%.*s' is not in its schema",
                 r->nspname, r->relname, r->cols[col].name, (int)t->values[col].len,
                 t->values[col].data);
        return EMIT_STALE;
    }
    if (op == 'u' && before && after && r->nkey > 0 && key_changed(r, before, after)) {
        /*
         * Keep each key's history in one partition: delete old, insert new.
         * The insert must be a whole row. An unchanged TOASTed value is not
         * in the new tuple; under REPLICA IDENTITY FULL the old tuple has it
         * (flattened), so take it from there. Under DEFAULT it stays listed
         * as unchanged and a consumer cannot fill it (cdc-apply stops and
         * says so): see README, "Known limits".
         */
        pgo_tuple whole = fill_unchanged(r, before, after, false);
        /* Encode the insert once before the delete goes out: a new row that
         * cannot be encoded must stop the change whole, not after its delete. */
        if (encode_key(&em->enc, r, &whole, errstr, errstr_size) != 0 ||
            encode_envelope(&em->enc, r, 'c', NULL, &whole, ctx, event_ms(), errstr, errstr_size) !=
                0) {
            free(whole.values);
            return EMIT_FATAL;
        }
        emit_status st = emit_one(em, r, 'd', before, NULL, before, ctx, errstr, errstr_size);
        if (st != EMIT_OK) {
            free(whole.values);
            return st;
        }
        st = emit_one(em, r, 'c', NULL, &whole, &whole, ctx, errstr, errstr_size);
        free(whole.values);
        return st;
    }
    if (op == 'u' && before && after && key_unchanged_toast(r, after)) {
        /*
         * A key column that is an unchanged TOASTed value is not in the new
         * tuple, but PostgreSQL then logs the old key (flattened) whatever
         * the replica identity: take the key from there, for the event's
         * key and its `after`.
         */
        pgo_tuple keyed = fill_unchanged(r, before, after, true);
        emit_status st = emit_one(em, r, op, before, &keyed, &keyed, ctx, errstr, errstr_size);
        free(keyed.values);
        return st;
    }
    const pgo_tuple *keyt = op == 'd' ? before : after;
    return emit_one(em, r, op, before, after, keyt, ctx, errstr, errstr_size);
}

emit_status emitter_truncate(emitter *em, relation *r, event_ctx *ctx, char *errstr,
                             size_t errstr_size)
{
    /*
     * Every partition gets the truncate, so a consumer of any partition sees
     * it in order with that partition's rows. Refresh the count: partitions
     * may have been added since the topic was first seen.
     */
    known_topic *kt = find_topic(em, r->topic);
    if (kt) {
        int n = 0;
        emit_status st = topic_partitions(em, r->topic, &n, errstr, errstr_size);
        if (st != EMIT_OK)
            return st;
        kt->partitions = r->partitions = n;
    }
    if (encode_envelope(&em->enc, r, 't', NULL, NULL, ctx, event_ms(), errstr, errstr_size) != 0)
        return EMIT_FATAL;
    for (int p = 0; p < r->partitions; p++) {
        emit_status st = produce(em, r->topic, p, NULL, 0, em->enc.value.data, em->enc.value.len,
                                 ctx->seq, errstr, errstr_size);
        if (st != EMIT_OK)
            return st;
    }
    ctx->ordinal++;
    return EMIT_OK;
}
