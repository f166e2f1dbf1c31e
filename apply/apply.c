/*
 * The consumer loop of cdc-apply.
 *
 * Exactly once in effect: every batch is one target transaction that also
 * records, per topic-partition, the next Kafka offset and the highest
 * (commit_lsn, ordinal) applied. Partitions are positioned from that record
 * on every assignment, never from Kafka's committed offsets (those are
 * committed too, only so that lag tools work). Before writing, a batch
 * locks the position rows of its partitions and checks they still say what
 * this process read: if another process applied the partition meanwhile (a
 * rebalance), the batch is dropped and the partitions re-positioned.
 *
 * Events whose position is not above the recorded one are repeats (a
 * capture that re-sent after a crash) and are skipped.
 *
 * Failure handling: a lost target connection rolls back, reconnects and
 * re-reads from the recorded positions. A batch the target rejects is
 * retried event by event with savepoints to find the culprit: with
 * errors.tolerance=none the daemon records everything before it and stops
 * (exit 1) naming topic, partition, offset, table and the error; with all,
 * the culprit goes to the dead-letter topic and the rest is applied.
 */
#include "apply.h"

#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "batch.h"
#include "cdc/avro_bin.h"
#include "cdc/buf.h"
#include "cdc/event.h"
#include "cdc/fingerprint.h"
#include "cdc/kafka.h"
#include "cdc/log.h"
#include "cdc/registry.h"
#include "target.h"

/* ---- per-partition state ---- */

typedef struct part_state {
    char *topic;
    int32_t partition;
    target_pos stored; /* what the target records (as last read or written) */
    bool pending;      /* touched by the current batch */
    target_pos next;   /* position after the current batch */
    size_t events;     /* events of the current batch */
    int group;         /* the target connection that writes this partition */
    bool flying;       /* in the batch being written */
    target_pos flight; /* position after the batch being written */
    size_t flight_events;
    bool waiting; /* paused at a truncate other partitions have not reached */
    uint64_t wait_lsn;
    int64_t wait_ord;
    bool used;
} part_state;

typedef struct table_batch {
    const cdc_table_schema *schema;
    int group;
    batch *b;
} table_batch;

typedef struct write_job write_job;

/* The batch the writers are writing while the next one is decoded. */
typedef struct flight {
    bool active;
    atomic_int writing; /* writer threads not finished yet */
    write_job *jobs;    /* one per writer */
    table_batch *tables;
    size_t ntables;
    rd_kafka_message_t **msgs;
    size_t nmsgs;
} flight;

typedef struct schema_entry {
    uint64_t fp;
    cdc_table_schema *s;
    bool reads; /* the last event of this schema was a snapshot read */
} schema_entry;

/* An event the one-by-one pass dead-letters once the pass is through. */
typedef struct dead_letter {
    size_t msg; /* index in applier.msgs */
    char table[600];
    char error[1024];
} dead_letter;

/* A dead letter Kafka holds whose event's position is not committed yet. */
typedef struct sent_letter {
    char *topic;
    int32_t partition;
    int64_t offset;
    bool confirmed; /* Kafka acknowledged it */
} sent_letter;

typedef struct applier {
    const apply_config *cfg;
    volatile sig_atomic_t *stop;
    rd_kafka_t *rk;    /* the group consumer */
    rd_kafka_t *early; /* reads every partition while the group forms (start_early) */
    rd_kafka_t *rd;    /* the one events are read from: early, then rk */
    rd_kafka_t *dlq;
    int dlq_pending;
    int dlq_failed;
    dead_letter *dead; /* of the pass under way */
    size_t ndead, capdead;
    sent_letter *sent; /* sent by a pass that was then replayed: not again */
    size_t nsent;
    target *tgt;      /* writers[0]: also positions, truncates, event by event */
    target **writers; /* target.connections of them */
    int nwriters;
    cdc_registry *reg;
    schema_entry *schemas;
    size_t nschemas;
    part_state *parts;
    size_t nparts;
    target_part *tparts; /* scratch for the batch position statements, nparts long */
    table_batch *tables;
    size_t ntables;
    rd_kafka_message_t **msgs; /* raw messages of the current batch, in order */
    size_t nmsgs;
    size_t events; /* events folded into the current batch */
    size_t reads;  /* of which snapshot reads */
    char *schemas_topic;
    char *bootstrap_topic; /* capture's state topic: not events */
    flight fl;
    bool need_resync;  /* re-read positions and seek every partition */
    int exit_status;   /* set when the daemon must stop with an error */
    int seek_failures; /* in a row: the read position could not be set */
    cdc_event ev;
    /* Counters for the periodic progress line. */
    int64_t stat_since;
    uint64_t stat_events, stat_batches, total_events;
    size_t bytes; /* key and value bytes of msgs[] (batch.max.bytes) */
    int64_t stat_db_ms;
    int64_t starved_ms; /* the batch being built waited for events */
    int64_t last_busy;  /* ms the last flight's slowest writer took */
    char err[2048];
    char state_err[2048];
    int retry_ms; /* pause before the next replay after a target error (retry_pause) */
    /* Tables created for a load get their primary key once it is applied:
     * when the load's last row has been read, or after LOAD_QUIET_MS
     * without an event, once nothing is left to read (finish_loads). */
    bool assigned;      /* the group consumer had its first assignment */
    bool loads_pending; /* some may still wait (snapshot reads were written) */
    bool load_ended;    /* the last row of a load was read */
    int64_t last_event_ms;
} applier;

#define LOAD_QUIET_MS 10000

/*
 * A load arrives faster than the writers need it: a batch sent as soon as
 * the writers were free held a few thousand rows, and each batch costs the
 * target a transaction and a COPY's set-up. A batch of nothing but reads
 * waits for LOAD_BATCH_EVENTS of them (or batch.max.events, if fewer), up
 * to batch.max.ms as any batch, unless none comes for LOAD_GAP_MS: the load
 * paused or ended.
 */
#define LOAD_BATCH_EVENTS 40000
#define LOAD_GAP_MS 10

static bool land(applier *a, bool events_ok);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int pos_cmp(uint64_t lsn_a, int64_t ord_a, uint64_t lsn_b, int64_t ord_b)
{
    if (lsn_a != lsn_b)
        return lsn_a < lsn_b ? -1 : 1;
    if (ord_a != ord_b)
        return ord_a < ord_b ? -1 : 1;
    return 0;
}

/*
 * A repeat (a capture that re-sent after a crash) is at or below the
 * recorded position. Snapshot reads all carry the consistent point as
 * commit_lsn and arrive in no particular order within a partition, so for
 * them only an older consistent point (a load that was started over) makes
 * a repeat.
 */
static bool is_repeat(const cdc_event *ev, const target_pos *pos)
{
    if (pos->next_offset < 0)
        return false;
    if (ev->op == 'r')
        return ev->commit_lsn < pos->commit_lsn;
    return pos_cmp(ev->commit_lsn, ev->ordinal, pos->commit_lsn, pos->ordinal) <= 0;
}

static part_state *find_part(applier *a, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < a->nparts; i++)
        if (a->parts[i].used && a->parts[i].partition == partition &&
            strcmp(a->parts[i].topic, topic) == 0)
            return &a->parts[i];
    return NULL;
}

static void clear_parts(applier *a)
{
    for (size_t i = 0; i < a->nparts; i++)
        free(a->parts[i].topic);
    a->nparts = 0;
}

static void target_problem(applier *a, const char *what)
{
    if (strcmp(a->state_err, what) != 0) {
        cdc_warn("target unavailable: %s; retrying", what);
        snprintf(a->state_err, sizeof a->state_err, "%s", what);
    }
}

/* Connect to the target, retrying with backoff until it works or stop. */
static bool ensure_target(applier *a)
{
    int backoff = 500;
    for (;;) {
        int w = 0;
        while (w < a->nwriters && target_connected(a->writers[w]))
            w++;
        if (w == a->nwriters) {
            if (a->state_err[0])
                cdc_info("target connection restored");
            a->state_err[0] = '\0';
            return true;
        }
        if (*a->stop)
            return false;
        target_status r = target_connect(a->writers[w], a->err, sizeof a->err);
        if (r == TARGET_OK) {
            a->need_resync = true;
            continue;
        }
        if (r == TARGET_REJECT) {
            cdc_error("cannot set up the state tables in the target: %s", a->err);
            a->exit_status = 1;
            return false;
        }
        target_problem(a, a->err);
        for (int ms = 0; ms < backoff && !*a->stop; ms += 100)
            sleep_ms(100);
        backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
    }
}

/* ---- batches ---- */

static void destroy_tables(table_batch *tables, size_t n)
{
    for (size_t i = 0; i < n; i++)
        batch_destroy(tables[i].b);
}

static void destroy_msgs(rd_kafka_message_t **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rd_kafka_message_destroy(msgs[i]);
}

/* The batch holds on to m (its offset, and its bytes until the batch is written). */
static void keep_msg(applier *a, rd_kafka_message_t *m)
{
    a->msgs[a->nmsgs++] = m;
    a->bytes += m->len + m->key_len;
}

static void drop_batch(applier *a)
{
    destroy_tables(a->tables, a->ntables);
    a->ntables = 0;
    destroy_msgs(a->msgs, a->nmsgs);
    a->nmsgs = 0;
    a->bytes = 0;
    a->events = 0;
    a->reads = 0;
    for (size_t i = 0; i < a->nparts; i++) {
        a->parts[i].pending = false;
        a->parts[i].events = 0;
    }
}

/*
 * Pause or resume one partition. Only a partition paused at a truncate is
 * ever resumed: each pause or resume makes librdkafka drop what it has
 * fetched for the partition and any offset lookup under way.
 */
static void pause_part(applier *a, part_state *p, bool pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
    if (pause)
        rd_kafka_pause_partitions(a->rd, l);
    else
        rd_kafka_resume_partitions(a->rd, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Seek one partition to its recorded position (re-read from the target). */
static bool reposition(applier *a, part_state *p)
{
    if (target_position(a->tgt, p->topic, p->partition, &p->stored, a->err, sizeof a->err) !=
        TARGET_OK) {
        target_problem(a, a->err);
        target_disconnect(a->tgt);
        return false;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
    tp->offset = p->stored.next_offset >= 0 ? p->stored.next_offset : RD_KAFKA_OFFSET_BEGINNING;
    /*
     * A seek that did not happen leaves the consumer reading on from where
     * it was, past events that were read but not applied: never go on
     * without it. The caller tries again; a partition that cannot be
     * positioned at all stops the daemon (a restart re-reads the record).
     */
    rd_kafka_error_t *e = rd_kafka_seek_partitions(a->rd, l, 5000);
    const char *why = e                 ? rd_kafka_error_string(e)
                      : l->elems[0].err ? rd_kafka_err2str(l->elems[0].err)
                                        : NULL;
    bool ok = why == NULL;
    if (!ok) {
        cdc_warn("cannot set the read position of %s [%d] to its record: %s", p->topic,
                 p->partition, why);
        if (++a->seek_failures >= 5) {
            cdc_error("%s [%d]: the read position could not be set %d times in a row; stopping",
                      p->topic, p->partition, a->seek_failures);
            a->exit_status = 1;
        }
        sleep_ms(200);
    } else {
        a->seek_failures = 0;
    }
    if (e)
        rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(l);
    return ok;
}

/*
 * Seek every assigned partition to its recorded position and forget the
 * batch: what was read but not applied is read again.
 */
static bool resync(applier *a)
{
    if (!land(a, true))
        return false;
    drop_batch(a);
    for (size_t i = 0; i < a->nparts; i++)
        if (!reposition(a, &a->parts[i]))
            return false;
    a->need_resync = false;
    return true;
}

/* Read a newly assigned partition's position from the target. */
static void add_part(applier *a, rd_kafka_topic_partition_t *tp, int64_t lookup_deadline)
{
    part_state *p = &a->parts[a->nparts++];
    memset(p, 0, sizeof *p);
    p->used = true;
    p->topic = cdc_xstrdup(tp->topic);
    p->partition = tp->partition;
    /* Topic and partition both pick the writer: tables whose topics have a
     * single partition are spread over the writers too. */
    uint32_t h = 2166136261u;
    for (const char *c = p->topic; *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    p->group = (int)((h + (uint32_t)tp->partition) % (uint32_t)a->nwriters);
    p->stored.next_offset = -1;
    /* Positions come from the target; wait for it if it is down. */
    while (!*a->stop) {
        if (ensure_target(a) && target_position(a->tgt, p->topic, p->partition, &p->stored, a->err,
                                                sizeof a->err) == TARGET_OK)
            break;
        if (a->exit_status)
            break;
        target_problem(a, a->err);
        target_disconnect(a->tgt);
    }
    tp->offset = p->stored.next_offset;
    if (tp->offset >= 0)
        return;
    /*
     * Never applied: from the start of the partition, looked up here. Given
     * the logical RD_KAFKA_OFFSET_BEGINNING, librdkafka 2.0 delivered the
     * first event of a new topic half a second after the assignment; with
     * the offset it is a few milliseconds. The lookups of one assignment
     * share a deadline; past it (a leader unreachable) librdkafka looks up
     * the rest itself.
     */
    int64_t low, high, left = lookup_deadline - now_ms();
    if (left > 0 && rd_kafka_query_watermark_offsets(a->rd, p->topic, p->partition, &low, &high,
                                                     (int)left) == RD_KAFKA_RESP_ERR_NO_ERROR)
        tp->offset = low;
    else
        tp->offset = RD_KAFKA_OFFSET_BEGINNING;
}

static void end_early(applier *a);

/*
 * With the cooperative protocol (the default assignor, cooperative-sticky)
 * a rebalance only adds or removes the partitions that move: a new table
 * topic joins without interrupting the others. Revocation drops the batch
 * (it may hold events of a partition that now belongs to another process)
 * and re-reads the remaining partitions from their recorded positions.
 */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    applier *a = opaque;
    /* The partitions change: the batch in flight lands first (a rejected
     * one is read again rather than retried event by event in here). */
    land(a, false);
    if (a->early)
        end_early(a);
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS && *a->stop) {
        /* Stopping (see apply_run): take the assignment, read nothing. */
        a->assigned = true;
        rd_kafka_error_t *e = cooperative ? rd_kafka_incremental_assign(rk, parts) : NULL;
        if (!cooperative)
            rd_kafka_assign(rk, parts);
        if (e)
            rd_kafka_error_destroy(e);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        a->assigned = true;
        if (!cooperative) {
            drop_batch(a);
            clear_parts(a);
        }
        a->parts = cdc_xrealloc(a->parts, (a->nparts + (size_t)parts->cnt + 1) * sizeof *a->parts);
        a->tparts =
            cdc_xrealloc(a->tparts, (a->nparts + (size_t)parts->cnt + 1) * sizeof *a->tparts);
        int64_t lookup_deadline = now_ms() + 2000;
        for (int i = 0; i < parts->cnt; i++)
            add_part(a, &parts->elems[i], lookup_deadline);
        cdc_info("assigned %d partitions (%zu in all)", parts->cnt, a->nparts);
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e) {
                cdc_error("incremental assign: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, parts);
            a->need_resync = false;
        }
        return;
    }
    drop_batch(a);
    /* librdkafka keeps a partition's pause across a revoke and a new
     * assignment: one paused at a truncate would never deliver again if it
     * came back. What leaves is resumed first. */
    for (size_t i = 0; i < a->nparts; i++) {
        bool leaves = !cooperative;
        for (int j = 0; j < parts->cnt && !leaves; j++)
            leaves = parts->elems[j].partition == a->parts[i].partition &&
                     strcmp(parts->elems[j].topic, a->parts[i].topic) == 0;
        if (leaves && a->parts[i].waiting)
            pause_part(a, &a->parts[i], false);
    }
    if (!cooperative) {
        clear_parts(a);
        rd_kafka_assign(rk, NULL);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < a->nparts; i++) {
        bool revoked = false;
        for (int j = 0; j < parts->cnt; j++)
            if (parts->elems[j].partition == a->parts[i].partition &&
                strcmp(parts->elems[j].topic, a->parts[i].topic) == 0)
                revoked = true;
        if (revoked)
            free(a->parts[i].topic);
        else
            a->parts[k++] = a->parts[i];
    }
    a->nparts = k;
    cdc_info("revoked %d partitions (%zu left)", parts->cnt, a->nparts);
    rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
    if (e) {
        cdc_error("incremental unassign: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    a->need_resync = a->nparts > 0;
}

/* ---- schemas ---- */

/* *transient: the schemas topic could not be read (Kafka), not a bad event. */
static schema_entry *schema_for(applier *a, uint64_t fp, bool *transient, char *errstr,
                                size_t errstr_size)
{
    for (size_t i = 0; i < a->nschemas; i++)
        if (a->schemas[i].fp == fp)
            return &a->schemas[i];
    const cdc_registry_schema *rs = cdc_registry_get(a->reg, fp);
    if (!rs) {
        /* Published before the event: one more read of the topic finds it. */
        if (cdc_registry_load_prefix(a->reg, cdc_kv_get(&a->cfg->kafka, "bootstrap.servers"),
                                     &a->cfg->kafka, a->cfg->topic_prefix, 30000, errstr,
                                     errstr_size) < 0) {
            *transient = true;
            return NULL;
        }
        rs = cdc_registry_get(a->reg, fp);
    }
    if (!rs && cdc_registry_count(a->reg) == 0) {
        /* An event exists, so its schema was published: a schemas topic
         * that reads as empty or absent is one we cannot see yet. */
        snprintf(errstr, errstr_size, "%s reads as empty or absent", a->schemas_topic);
        *transient = true;
        return NULL;
    }
    if (!rs) {
        char hex[17];
        cdc_fingerprint_hex(fp, hex);
        snprintf(errstr, errstr_size, "schema %s is not in %s", hex, a->schemas_topic);
        return NULL;
    }
    cdc_table_schema *s = cdc_table_schema_parse(rs->json, errstr, errstr_size);
    if (!s)
        return NULL;
    a->schemas = cdc_xrealloc(a->schemas, (a->nschemas + 1) * sizeof *a->schemas);
    a->schemas[a->nschemas] = (schema_entry){.fp = fp, .s = s, .reads = false};
    return &a->schemas[a->nschemas++];
}

/* Decode in binary form if asked, else (or if a value has none) as text. */
static int decode_form(const cdc_table_schema *s, const uint8_t *body, size_t len, bool binary,
                       cdc_event *ev, char *errstr, size_t errstr_size)
{
    if (binary && cdc_event_decode_as(s, body, len, true, ev, errstr, errstr_size) == 0)
        return 0;
    return cdc_event_decode_as(s, body, len, false, ev, errstr, errstr_size);
}

/*
 * Decode a message's value; returns its schema or NULL with errstr. With
 * *transient set the event may be fine: its schema could not be read.
 */
static const cdc_table_schema *decode(applier *a, const rd_kafka_message_t *m, cdc_event *ev,
                                      bool *transient, char *errstr, size_t errstr_size)
{
    *transient = false;
    const uint8_t *p = m->payload, *end = p + m->len;
    uint64_t fp;
    if (cdc_avro_get_so_header(&p, end, &fp) != 0) {
        snprintf(errstr, errstr_size, "not an Avro single-object message");
        return NULL;
    }
    schema_entry *e = schema_for(a, fp, transient, errstr, errstr_size);
    if (!e)
        return NULL;
    /*
     * Snapshot reads are decoded in PostgreSQL's binary form, which the
     * target takes without parsing text (a third less of its work in a
     * load). The op comes after the row, so the form is guessed from the
     * last event of this schema: a load's first event, and the first
     * change after it, are decoded twice. A value without a binary form
     * (a date beyond PostgreSQL's range) leaves its event in text form,
     * for the target to judge.
     */
    const cdc_table_schema *s = e->s;
    size_t n = (size_t)(end - p);
    bool guess = s->binary && e->reads;
    if (decode_form(s, p, n, guess, ev, errstr, errstr_size) != 0)
        return NULL;
    e->reads = ev->op == 'r';
    bool want = s->binary && e->reads;
    if (ev->binary == guess && want != guess &&
        decode_form(s, p, n, want, ev, errstr, errstr_size) != 0)
        return NULL;
    return s;
}

static bool same_table(const cdc_table_schema *x, const cdc_table_schema *y)
{
    return strcmp(x->schema_name, y->schema_name) == 0 && strcmp(x->table_name, y->table_name) == 0;
}

/*
 * True if `s` has a column the batch schema lacks, or one of another type
 * (a newer version): its events need a batch of their own, or the staging
 * table, typed by the batch schema, would convert (round) their values.
 */
static bool has_new_columns(const cdc_table_schema *batch_s, const cdc_table_schema *s)
{
    for (int i = 0; i < s->nfields; i++) {
        int j = cdc_table_schema_find(batch_s, s->fields[i].pg_name);
        if (j < 0 || strcmp(batch_s->fields[j].pg_type, s->fields[i].pg_type) != 0)
            return true;
    }
    return false;
}

/* ---- dead-letter topic ---- */

static void dlq_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    applier *a = opaque;
    a->dlq_pending--;
    size_t letter = (size_t)(uintptr_t)m->_private; /* index in a->sent + 1 */
    if (m->err) {
        a->dlq_failed++;
        cdc_error("dead-letter delivery failed: %s", rd_kafka_err2str(m->err));
    } else if (letter > 0 && letter <= a->nsent) {
        a->sent[letter - 1].confirmed = true;
    }
}

static int dlq_send(applier *a, const rd_kafka_message_t *m, const char *table, const char *error,
                    size_t letter)
{
    if (!a->dlq) {
        static const cdc_kv defaults[] = {{"enable.idempotence", "true"},
                                          {"client.id", "cdc-apply-dlq"}};
        char err[512];
        rd_kafka_conf_t *conf = cdc_kafka_conf_new(&a->cfg->kafka, defaults, 2, err, sizeof err);
        if (!conf) {
            cdc_error("dead-letter producer: %s", err);
            return -1;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, dlq_dr);
        rd_kafka_conf_set_opaque(conf, a);
        a->dlq = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (!a->dlq) {
            rd_kafka_conf_destroy(conf);
            cdc_error("dead-letter producer: %s", err);
            return -1;
        }
    }
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    char part[16], off[24];
    snprintf(part, sizeof part, "%d", m->partition);
    snprintf(off, sizeof off, "%lld", (long long)m->offset);
    rd_kafka_header_add(h, "cdc.error", -1, error, -1);
    rd_kafka_header_add(h, "cdc.topic", -1, rd_kafka_topic_name(m->rkt), -1);
    rd_kafka_header_add(h, "cdc.partition", -1, part, -1);
    rd_kafka_header_add(h, "cdc.offset", -1, off, -1);
    rd_kafka_header_add(h, "cdc.table", -1, table ? table : "", -1);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        a->dlq, RD_KAFKA_V_TOPIC(a->cfg->dlq_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE((void *)(uintptr_t)letter), RD_KAFKA_V_END);
    if (e) {
        rd_kafka_headers_destroy(h);
        cdc_error("dead-letter produce: %s", rd_kafka_err2str(e));
        return -1;
    }
    a->dlq_pending++;
    cdc_warn("sent %s [%d] offset %lld (%s) to %s: %s", rd_kafka_topic_name(m->rkt), m->partition,
             (long long)m->offset, table ? table : "?", a->cfg->dlq_topic, error);
    return 0;
}

/* Wait until the dead-letter topic holds what was sent; false if it failed. */
static bool dlq_flush(applier *a)
{
    if (!a->dlq)
        return true;
    while (a->dlq_pending > 0 && !*a->stop)
        rd_kafka_poll(a->dlq, 100);
    bool ok = a->dlq_failed == 0 && a->dlq_pending == 0;
    a->dlq_failed = 0;
    return ok;
}

static bool letter_sent(const applier *a, const rd_kafka_message_t *m)
{
    for (size_t i = 0; i < a->nsent; i++)
        if (a->sent[i].offset == m->offset && a->sent[i].partition == m->partition &&
            strcmp(a->sent[i].topic, rd_kafka_topic_name(m->rkt)) == 0)
            return true;
    return false;
}

/*
 * Send the pass's dead letters, all at once when the pass has been through
 * every event: a pass cut short (target lost, schema unreadable) and
 * replayed sent nothing. One that Kafka confirmed for a pass whose commit
 * then failed is remembered, and not sent again by the replay.
 */
static bool send_dead_letters(applier *a)
{
    size_t first_new = a->nsent;
    bool ok = true;
    for (size_t i = 0; i < a->ndead && ok; i++) {
        const rd_kafka_message_t *m = a->msgs[a->dead[i].msg];
        if (letter_sent(a, m))
            continue;
        a->sent = cdc_xrealloc(a->sent, (a->nsent + 1) * sizeof *a->sent);
        a->sent[a->nsent++] =
            (sent_letter){cdc_xstrdup(rd_kafka_topic_name(m->rkt)), m->partition, m->offset, false};
        ok = dlq_send(a, m, a->dead[i].table, a->dead[i].error, a->nsent) == 0;
    }
    /* Settle what was queued even after a failure, then keep only the
     * letters Kafka acknowledged: the others are sent again by the replay. */
    ok = dlq_flush(a) && ok;
    size_t keep = first_new;
    for (size_t i = first_new; i < a->nsent; i++) {
        if (a->sent[i].confirmed)
            a->sent[keep++] = a->sent[i];
        else
            free(a->sent[i].topic);
    }
    a->nsent = keep;
    return ok;
}

/* After a commit: forget the letters of events now behind the positions. */
static void forget_sent_letters(applier *a)
{
    size_t keep = 0;
    for (size_t i = 0; i < a->nsent; i++) {
        const part_state *p = find_part(a, a->sent[i].topic, a->sent[i].partition);
        if (!p || a->sent[i].offset < p->stored.next_offset)
            free(a->sent[i].topic);
        else
            a->sent[keep++] = a->sent[i];
    }
    a->nsent = keep;
}

/* ---- writing ---- */

/* The pending partitions of the batch, for the batch position statements. */
static size_t pending_parts(applier *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->nparts; i++) {
        part_state *p = &a->parts[i];
        if (!p->pending)
            continue;
        a->tparts[n] = (target_part){.topic = p->topic,
                                     .partition = p->partition,
                                     .expected_next = p->stored.next_offset,
                                     .matches = false,
                                     .pos = p->next};
        n++;
    }
    return n;
}

static target_status save_positions(applier *a)
{
    size_t n = 0, k = pending_parts(a);
    for (size_t i = 0; i < k; i++)
        if (a->tparts[i].pos.next_offset >= 0)
            a->tparts[n++] = a->tparts[i];
    return target_save_positions(a->tgt, a->tparts, n, a->err, sizeof a->err);
}

static void positions_committed(applier *a)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (size_t i = 0; i < a->nparts; i++) {
        part_state *p = &a->parts[i];
        if (!p->pending)
            continue;
        p->stored = p->next;
        p->pending = false;
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = p->next.next_offset;
    }
    /* Informational only (lag tools); positions live in the target. */
    if (l->cnt > 0 && !a->early)
        rd_kafka_commit(a->rk, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Kafka failed us, not the events: read what is not applied again shortly. */
static void read_again_later(applier *a)
{
    drop_batch(a);
    a->need_resync = true;
    if (!*a->stop)
        sleep_ms(1000);
}

/*
 * The schemas topic could not be read for event m: the event is not at
 * fault, so it is neither dead-lettered nor a reason to stop.
 */
static void schemas_unreadable(applier *a, const rd_kafka_message_t *m, const char *why)
{
    cdc_warn("%s [%d] offset %lld: cannot read its schema (%s); reading again",
             rd_kafka_topic_name(m->rkt), m->partition, (long long)m->offset, why);
    read_again_later(a);
}

/*
 * A batch failed for a reason of the target's (target_problem): pause before
 * it is replayed, 0.5 s doubling to 30 s until a batch commits, so that an
 * error met after a good connect (a full disk) is not hammered.
 */
static void retry_pause(applier *a)
{
    for (int ms = 0; ms < a->retry_ms && !*a->stop; ms += 100)
        sleep_ms(100);
    a->retry_ms = a->retry_ms ? (a->retry_ms * 2 > 30000 ? 30000 : a->retry_ms * 2) : 500;
}

static void handle_retry(applier *a)
{
    target_rollback(a->tgt);
    target_problem(a, a->err);
    retry_pause(a);
    target_disconnect(a->tgt);
    drop_batch(a);
    a->need_resync = true;
}

static bool apply_one_by_one(applier *a);

/*
 * End the savepoint `name` after a step that returned `st`: release it on
 * success; on a rejection roll back to it, keep the step's error in *error
 * (a->err) and report success so the caller can decide about the event.
 * The caller sets the SAVEPOINT before the step.
 */
static target_status guarded(applier *a, const char *name, const char **error, target_status st)
{
    char cmd[96], scratch[256];
    if (st == TARGET_OK) {
        snprintf(cmd, sizeof cmd, "RELEASE SAVEPOINT %s", name);
        return target_savepoint(a->tgt, cmd, a->err, sizeof a->err);
    }
    if (st != TARGET_REJECT)
        return st;
    *error = a->err;
    snprintf(cmd, sizeof cmd, "ROLLBACK TO SAVEPOINT %s", name);
    return target_savepoint(a->tgt, cmd, scratch, sizeof scratch) == TARGET_OK ? TARGET_OK
                                                                               : TARGET_RETRY;
}

/*
 * Writing. A full batch is handed to the writers and the consumer loop goes
 * on decoding the next one meanwhile (the batch "in flight"); the next
 * flush, and every other use of the target, first waits for it to land.
 *
 * Each topic-partition belongs to one writer (part_state.group); each
 * writer's transaction holds the rows and the positions of its own
 * partitions only, so every partition still moves atomically with its rows,
 * and the writers commit independently. Keys map to partitions, so the
 * writers touch different rows. What a batch lacks in the target (tables,
 * enum types, columns) is created on the first connection before the
 * writers start; each writer then writes its tables in name order.
 *
 * The batch being built starts from the positions the flight will record.
 * If the flight does not commit whole, that batch is dropped and every
 * partition re-read from the recorded positions.
 */
struct write_job {
    target *tgt;
    const table_batch **tables; /* of this group, in name order */
    size_t ntables;
    target_part *parts; /* the group's partitions in the batch */
    size_t nparts;
    target_status r;
    bool moved;        /* a partition was applied by another process meanwhile */
    const char *table; /* being written when it failed */
    int64_t ms;        /* time it took */
    char err[2048];
    pthread_t thread;
    bool threaded;
    atomic_int *writing; /* the flight's count, decreased when done */
};

static int table_order(const void *x, const void *y)
{
    const cdc_table_schema *a = (*(const table_batch *const *)x)->schema;
    const cdc_table_schema *b = (*(const table_batch *const *)y)->schema;
    int c = strcmp(a->schema_name, b->schema_name);
    return c ? c : strcmp(a->table_name, b->table_name);
}

/* One writer's transaction. Runs on its own thread; touches only the job. */
static void *write_group(void *arg)
{
    write_job *j = arg;
    int64_t t0 = now_ms();
    j->r = target_begin(j->tgt, j->err, sizeof j->err);
    if (j->r == TARGET_OK)
        j->r = target_check_positions(j->tgt, j->parts, j->nparts, j->err, sizeof j->err);
    for (size_t i = 0; j->r == TARGET_OK && i < j->nparts; i++)
        j->moved |= !j->parts[i].matches;
    if (j->r == TARGET_OK && j->moved) {
        target_rollback(j->tgt);
        goto done;
    }
    for (size_t i = 0; i < j->ntables && j->r == TARGET_OK; i++) {
        const table_batch *tb = j->tables[i];
        j->table = tb->schema->table_name;
        j->r = target_prepare_table(j->tgt, tb->schema, batch_only_reads(tb->b), j->err,
                                    sizeof j->err);
        if (j->r == TARGET_OK)
            j->r = target_apply_batch(j->tgt, tb->schema, tb->b, j->err, sizeof j->err);
    }
    /* Partitions that saw only tombstones and never had a position stay
     * unrecorded. */
    size_t n = 0;
    for (size_t i = 0; i < j->nparts; i++)
        if (j->parts[i].pos.next_offset >= 0)
            j->parts[n++] = j->parts[i];
    if (j->r == TARGET_OK)
        j->r = target_save_positions(j->tgt, j->parts, n, j->err, sizeof j->err);
    if (j->r == TARGET_OK)
        j->r = target_commit(j->tgt, j->err, sizeof j->err);
    if (j->r != TARGET_OK)
        target_rollback(j->tgt);
done:
    j->ms = now_ms() - t0;
    if (j->threaded)
        atomic_fetch_sub(j->writing, 1);
    return NULL;
}

/* Keep only the messages of partitions marked pending. */
static void keep_pending_msgs(applier *a)
{
    size_t k = 0;
    for (size_t i = 0; i < a->nmsgs; i++) {
        rd_kafka_message_t *m = a->msgs[i];
        part_state *p = find_part(a, rd_kafka_topic_name(m->rkt), m->partition);
        if (p && p->pending)
            a->msgs[k++] = m;
        else
            rd_kafka_message_destroy(m);
    }
    a->nmsgs = k;
}

/*
 * Wait for the batch in flight and take its outcome: committed partitions
 * get their new positions (and Kafka's informational commit); anything else
 * drops the batch being built and re-reads every partition. Events of a
 * writer whose rows the target rejected are retried one by one if
 * `events_ok`, else (inside a rebalance callback) read again like the rest.
 * Returns false if the daemon must stop.
 */
static bool land(applier *a, bool events_ok)
{
    flight *f = &a->fl;
    if (!f->active)
        return true;
    f->active = false;
    int64_t busy = 0;
    for (int g = 0; g < a->nwriters; g++) {
        write_job *j = &f->jobs[g];
        if (j->threaded)
            pthread_join(j->thread, NULL);
        busy = j->ms > busy ? j->ms : busy;
    }
    a->stat_db_ms += busy;
    a->last_busy = busy;

    bool failed = false, committed = false, retried = false;
    const write_job *rejected = NULL;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (int g = 0; g < a->nwriters; g++) {
        write_job *j = &f->jobs[g];
        if (j->nparts == 0)
            continue;
        if (j->r == TARGET_OK && !j->moved) {
            committed = true;
            for (size_t i = 0; i < a->nparts; i++) {
                part_state *p = &a->parts[i];
                if (!p->flying || p->group != g)
                    continue;
                p->stored = p->flight;
                p->flying = false;
                a->stat_events += p->flight_events;
                if (p->stored.next_offset >= 0)
                    rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset =
                        p->stored.next_offset;
            }
            continue;
        }
        failed = true;
        if (j->r == TARGET_FATAL) {
            cdc_error("%s", j->err);
            a->exit_status = 1;
        } else if (j->r == TARGET_OK) {
            for (size_t i = 0; i < j->nparts; i++)
                if (!j->parts[i].matches)
                    cdc_warn("%s [%d] was applied by another process; re-reading its position",
                             j->parts[i].topic, j->parts[i].partition);
        } else if (j->r == TARGET_RETRY) {
            target_problem(a, j->err);
            target_disconnect(j->tgt);
            retried = true;
        } else if (!rejected) {
            rejected = j;
        }
    }
    a->stat_batches += committed;
    if (retried && !a->exit_status)
        retry_pause(a);
    else if (committed)
        a->retry_ms = 0;
    /* Informational only (lag tools); positions live in the target. */
    if (l->cnt > 0 && !a->early)
        rd_kafka_commit(a->rk, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
    destroy_tables(f->tables, f->ntables);
    f->ntables = 0;
    if (!failed) {
        destroy_msgs(f->msgs, f->nmsgs);
        f->nmsgs = 0;
        return true;
    }
    drop_batch(a);
    a->need_resync = true;
    char why[2400] = "";
    if (rejected && !a->exit_status) /* a fatal outcome stops without retrying */
        snprintf(why, sizeof why, "%s: %s", rejected->table ? rejected->table : "?", rejected->err);
    if (why[0] && !events_ok) {
        cdc_info("the target rejected a batch (%s); its events are read again", why);
        why[0] = '\0';
    }
    if (why[0]) {
        for (size_t i = 0; i < a->nparts; i++) {
            part_state *p = &a->parts[i];
            p->pending = p->flying && f->jobs[p->group].r == TARGET_REJECT;
        }
        /* The flight's messages become the batch, for the event-by-event path. */
        rd_kafka_message_t **m = a->msgs;
        a->msgs = f->msgs;
        a->nmsgs = f->nmsgs;
        f->msgs = m;
        f->nmsgs = 0;
        keep_pending_msgs(a);
    } else {
        destroy_msgs(f->msgs, f->nmsgs);
        f->nmsgs = 0;
    }
    for (size_t i = 0; i < a->nparts; i++)
        a->parts[i].flying = false;
    if (!why[0])
        return !a->exit_status;
    cdc_info("the target rejected a batch (%s); retrying event by event", why);
    return apply_one_by_one(a);
}

/*
 * Tables, columns and enum types the batch lacks in the target are made on
 * the first connection, committed, before the writers start: two writers
 * creating one enum type for two tables would otherwise collide. Best
 * effort: on failure the writers meet the same problem and report it for
 * the events concerned.
 */
static void prepare_tables(applier *a)
{
    const table_batch **lacking = cdc_xcalloc(a->ntables + 1, sizeof *lacking);
    size_t n = 0;
    for (size_t i = 0; i < a->ntables; i++)
        if (!target_table_ready(a->tgt, a->tables[i].schema))
            lacking[n++] = &a->tables[i];
    if (n > 0) {
        qsort(lacking, n, sizeof *lacking, table_order);
        char err[2048];
        target_status r = target_begin(a->tgt, err, sizeof err);
        for (size_t i = 0; i < n && r == TARGET_OK; i++)
            r = target_prepare_table(a->tgt, lacking[i]->schema, batch_only_reads(lacking[i]->b),
                                     err, sizeof err);
        if (r == TARGET_OK)
            r = target_commit(a->tgt, err, sizeof err);
        if (r != TARGET_OK) {
            target_rollback(a->tgt);
            cdc_debug("preparing tables ahead: %s", err);
        }
    }
    free(lacking);
}

/*
 * Land the batch in flight, then send the current one. Returns false if the
 * daemon must stop.
 */
static bool flush_batch(applier *a)
{
    int64_t t0 = now_ms();
    if (!land(a, true))
        return false;
    int64_t waited = now_ms() - t0;
    bool any = false;
    for (size_t i = 0; i < a->nparts; i++)
        any |= a->parts[i].pending;
    if (!any || a->need_resync) {
        drop_batch(a);
        return true;
    }
    if (a->nwriters > 1)
        prepare_tables(a);
    flight *f = &a->fl;
    for (int g = 0; g < a->nwriters; g++) {
        write_job *j = &f->jobs[g];
        target_part *parts = j->parts;
        const table_batch **tables = j->tables;
        memset(j, 0, sizeof *j);
        j->tgt = a->writers[g];
        j->parts = cdc_xrealloc(parts, (a->nparts + 1) * sizeof *j->parts);
        j->tables = cdc_xrealloc(tables, (a->ntables + 1) * sizeof *j->tables);
    }
    for (size_t i = 0; i < a->nparts; i++) {
        part_state *p = &a->parts[i];
        if (!p->pending)
            continue;
        write_job *j = &f->jobs[p->group];
        j->parts[j->nparts++] = (target_part){.topic = p->topic,
                                              .partition = p->partition,
                                              .expected_next = p->stored.next_offset,
                                              .pos = p->next};
        p->flying = true;
        p->flight = p->next;
        p->flight_events = p->events;
        p->pending = false;
        p->events = 0;
    }
    /* The batch's tables and messages move to the flight. */
    table_batch *tables = f->tables;
    f->tables = a->tables;
    f->ntables = a->ntables;
    a->tables = tables;
    a->ntables = 0;
    rd_kafka_message_t **msgs = f->msgs;
    f->msgs = a->msgs;
    f->nmsgs = a->nmsgs;
    a->msgs = msgs;
    a->nmsgs = 0;
    a->bytes = 0;
    cdc_debug("writing %zu events (waited %lld ms for messages, %lld ms for the previous batch, "
              "which was written in %lld ms)",
              a->events, (long long)a->starved_ms, (long long)waited, (long long)a->last_busy);
    a->starved_ms = 0;
    a->events = 0;
    a->reads = 0;
    for (size_t i = 0; i < f->ntables; i++) {
        write_job *j = &f->jobs[f->tables[i].group];
        j->tables[j->ntables++] = &f->tables[i];
    }
    f->active = true;
    for (int g = 0; g < a->nwriters; g++) {
        write_job *j = &f->jobs[g];
        if (j->nparts == 0)
            continue;
        qsort(j->tables, j->ntables, sizeof *j->tables, table_order);
        j->writing = &f->writing;
        j->threaded = true;
        atomic_fetch_add(&f->writing, 1);
        if (pthread_create(&j->thread, NULL, write_group, j) != 0) {
            atomic_fetch_sub(&f->writing, 1);
            j->threaded = false;
            write_group(j); /* no thread to be had: write it here */
        }
    }
    return true;
}

/* Send the current batch and wait for it. */
static bool flush_now(applier *a)
{
    return flush_batch(a) && land(a, true);
}

/*
 * The error path: one event at a time, each under a savepoint, so the
 * culprit is identified and everything before it is kept.
 */
static bool apply_one_by_one(applier *a)
{
    bool tolerate = strcmp(a->cfg->errors_tolerance, "all") == 0;
    a->ndead = 0;
    for (size_t i = 0; i < a->nparts; i++)
        a->parts[i].pending = false;
    target_status r = target_begin(a->tgt, a->err, sizeof a->err);
    bool ok = true;
    /* Positions must still be ours: check all assigned partitions we touch. */
    for (size_t i = 0; i < a->nmsgs && r == TARGET_OK && ok; i++) {
        part_state *p = find_part(a, rd_kafka_topic_name(a->msgs[i]->rkt), a->msgs[i]->partition);
        if (p && !p->pending) {
            p->pending = true;
            p->next = p->stored;
            r = target_check_position(a->tgt, p->topic, p->partition, p->stored.next_offset, &ok,
                                      a->err, sizeof a->err);
        }
    }
    if (r == TARGET_OK && !ok) {
        target_rollback(a->tgt);
        drop_batch(a);
        a->need_resync = true;
        return true;
    }
    batch *single = NULL;
    bool stop = false;
    for (size_t i = 0; i < a->nmsgs && r == TARGET_OK && !stop; i++) {
        rd_kafka_message_t *m = a->msgs[i];
        part_state *p = find_part(a, rd_kafka_topic_name(m->rkt), m->partition);
        if (!p)
            continue;
        target_pos after = p->next;
        after.next_offset = m->offset + 1;
        if (!m->payload) {
            p->next = after;
            continue;
        }
        char derr[1024];
        bool transient;
        const cdc_table_schema *s = decode(a, m, &a->ev, &transient, derr, sizeof derr);
        if (!s && transient) {
            target_rollback(a->tgt);
            schemas_unreadable(a, m, derr);
            return true;
        }
        if (s && is_repeat(&a->ev, &p->next)) {
            p->next.next_offset = after.next_offset; /* a repeat */
            continue;
        }
        const char *error = s ? NULL : derr;
        if (s) {
            after.commit_lsn = a->ev.commit_lsn;
            after.ordinal = a->ev.ordinal;
            /*
             * The table is prepared outside the event's savepoint: a rejected
             * row must not roll back the table it was about to be written to.
             */
            r = target_savepoint(a->tgt, "SAVEPOINT cdc_prepare", a->err, sizeof a->err);
            if (r == TARGET_OK)
                r = guarded(a, "cdc_prepare", &error,
                            target_prepare_table(a->tgt, s, a->ev.op == 'r', a->err,
                                                 sizeof a->err));
            if (r == TARGET_OK && !error) {
                single = batch_new(s);
                target_status ar = TARGET_OK;
                if (target_savepoint(a->tgt, "SAVEPOINT cdc_event", a->err, sizeof a->err) !=
                    TARGET_OK)
                    ar = TARGET_RETRY;
                if (ar == TARGET_OK && batch_add(single, s, &a->ev, a->err, sizeof a->err) != 0)
                    ar = TARGET_REJECT;
                if (ar == TARGET_OK)
                    ar = target_apply_batch(a->tgt, s, single, a->err, sizeof a->err);
                if (ar == TARGET_OK)
                    ar = target_clear_stage(a->tgt, s, a->err, sizeof a->err);
                batch_destroy(single);
                single = NULL;
                r = ar == TARGET_RETRY ? TARGET_RETRY : guarded(a, "cdc_event", &error, ar);
            }
            if (r != TARGET_OK)
                break;
        }
        if (error) {
            char tname[600];
            snprintf(tname, sizeof tname, "%s.%s", s ? s->schema_name : "?",
                     s ? s->table_name : "?");
            if (!tolerate) {
                cdc_error("stopping at %s [%d] offset %lld, table %s: %s (errors.tolerance=none; "
                          "fix the cause and restart: cdc-apply resumes at this event)",
                          rd_kafka_topic_name(m->rkt), m->partition, (long long)m->offset, tname,
                          error);
                stop = true;
                break;
            }
            if (a->ndead == a->capdead) {
                a->capdead = a->capdead ? a->capdead * 2 : 8;
                a->dead = cdc_xrealloc(a->dead, a->capdead * sizeof *a->dead);
            }
            dead_letter *d = &a->dead[a->ndead++];
            d->msg = i;
            snprintf(d->table, sizeof d->table, "%s", tname);
            snprintf(d->error, sizeof d->error, "%s", error);
        }
        p->next = after;
    }
    if (r == TARGET_FATAL) {
        target_rollback(a->tgt);
        cdc_error("%s", a->err);
        drop_batch(a);
        a->exit_status = 1;
        return false;
    }
    bool letters_sent = r != TARGET_OK || send_dead_letters(a);
    a->ndead = 0;
    if (!letters_sent) {
        target_rollback(a->tgt);
        if (!*a->stop)
            cdc_warn("dead-letter topic %s unavailable; the batch is read again",
                     a->cfg->dlq_topic);
        read_again_later(a);
        return true;
    }
    if (r == TARGET_OK)
        r = save_positions(a);
    if (r == TARGET_OK)
        r = target_commit(a->tgt, a->err, sizeof a->err);
    if (r == TARGET_OK) {
        positions_committed(a);
        forget_sent_letters(a);
        drop_batch(a);
        if (stop)
            a->exit_status = 1;
        return !stop;
    }
    handle_retry(a);
    return true;
}

/* ---- truncates ---- */

static int topic_partitions(applier *a, const char *topic)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(a->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int n = 0;
    if (rd_kafka_metadata(a->rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1)
        n = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
}

/*
 * A truncate is a barrier: it is applied once every partition of the topic
 * has reached it, so no older row from a slower partition lands after it.
 */
static bool handle_truncate(applier *a, part_state *p, const cdc_table_schema *s,
                            rd_kafka_message_t *m)
{
    if (!flush_now(a) || a->need_resync)
        return !a->exit_status;
    int n = topic_partitions(a, p->topic);
    if (n <= 0) {
        snprintf(a->err, sizeof a->err, "no partition count for %s", p->topic);
        handle_retry(a);
        return true;
    }
    bool done = false, moved = false;
    target_status r = target_begin(a->tgt, a->err, sizeof a->err);
    if (r == TARGET_OK)
        r = target_prepare_table(a->tgt, s, strcmp(a->ev.snapshot, "false") != 0, a->err,
                                 sizeof a->err);
    if (r == TARGET_OK)
        r = target_truncate_arrive(a->tgt, s, p->topic, p->partition, n, a->ev.commit_lsn,
                                   a->ev.ordinal, m->offset, p->stored.next_offset, &done, &moved,
                                   a->err, sizeof a->err);
    if (r == TARGET_OK && moved) {
        /* Another owner got further (or completed this truncate): read on
         * from where the target says. */
        target_rollback(a->tgt);
        cdc_info("%s [%d] was moved on by another process; reading from its position", p->topic,
                 p->partition);
        drop_batch(a);
        a->need_resync = true;
        return true;
    }
    if (r == TARGET_OK)
        r = target_commit(a->tgt, a->err, sizeof a->err);
    if (r == TARGET_RETRY) {
        handle_retry(a);
        return true;
    }
    if (r == TARGET_REJECT) {
        target_rollback(a->tgt);
        cdc_error("cannot truncate %s.%s (%s [%d] offset %lld): %s", s->schema_name, s->table_name,
                  p->topic, p->partition, (long long)m->offset, a->err);
        a->exit_status = 1;
        return false;
    }
    if (done) {
        /* This partition goes on after the truncate event; the others that
         * waited for it are released by check_waiting. */
        p->stored.next_offset = m->offset + 1;
        p->stored.commit_lsn = a->ev.commit_lsn;
        p->stored.ordinal = a->ev.ordinal;
        return true;
    }
    p->waiting = true;
    p->wait_lsn = a->ev.commit_lsn;
    p->wait_ord = a->ev.ordinal;
    cdc_debug("%s [%d] waits at a truncate for the other partitions", p->topic, p->partition);
    pause_part(a, p, true);
    return true;
}

/* Release partitions whose truncate another partition has completed. */
static void check_waiting(applier *a)
{
    for (size_t i = 0; i < a->nparts; i++) {
        part_state *p = &a->parts[i];
        if (!p->waiting)
            continue;
        if (a->fl.active && (!land(a, true) || a->need_resync))
            return;
        target_pos pos;
        if (target_position(a->tgt, p->topic, p->partition, &pos, a->err, sizeof a->err) !=
            TARGET_OK)
            return;
        if (pos_cmp(pos.commit_lsn, pos.ordinal, p->wait_lsn, p->wait_ord) >= 0) {
            if (!reposition(a, p))
                return; /* still paused and waiting: tried again next time */
            p->waiting = false;
            pause_part(a, p, false);
        }
    }
}

/*
 * Nothing is left to read: add the primary keys of tables whose load is
 * applied. A load has ended when its last row was read; without that (its
 * last row went to another process, or this one restarted after it) only
 * once no event came for LOAD_QUIET_MS, so that a pause in the load does
 * not make the rest of it pay for the index row by row.
 */
static bool finish_loads(applier *a)
{
    if (!a->loads_pending || (!a->load_ended && now_ms() - a->last_event_ms < LOAD_QUIET_MS))
        return true;
    if (!land(a, true))
        return false;
    if (a->need_resync)
        return true;
    target_status r = target_finish_loads(a->tgt, a->err, sizeof a->err);
    if (r == TARGET_FATAL) {
        cdc_error("%s", a->err);
        a->exit_status = 1;
        return false;
    }
    if (r == TARGET_RETRY) {
        target_problem(a, a->err);
        target_disconnect(a->tgt);
        return true;
    }
    if (r == TARGET_REJECT) {
        /* Reading the list failed (a privilege): say so, try again later. */
        cdc_warn("cannot read the tables waiting for their primary key: %s", a->err);
        a->last_event_ms = now_ms();
        a->load_ended = false;
        return true;
    }
    a->loads_pending = false;
    a->load_ended = false;
    return true;
}

/* ---- the loop ---- */

static bool poison(applier *a, rd_kafka_message_t *m, part_state *p, const char *why)
{
    /* The event-by-event path keeps the order and decides about it. */
    if (!land(a, true)) {
        rd_kafka_message_destroy(m);
        return false;
    }
    if (a->need_resync) {
        rd_kafka_message_destroy(m);
        return true;
    }
    keep_msg(a, m);
    cdc_warn("cannot decode %s [%d] offset %lld: %s", p->topic, p->partition, (long long)m->offset,
             why);
    return apply_one_by_one(a);
}

/*
 * The first event read from a partition this target has never applied must
 * be the partition's first: if Kafka's log starts later, retention deleted
 * events before they reached the target, and starting from what is left
 * would silently lose them. (A compacted topic may begin with a gap while
 * its log still starts at 0: that is checked here and accepted.)
 */
static bool start_intact(applier *a, const part_state *p, const rd_kafka_message_t *m)
{
    int64_t low = -1, high = -1;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int tries = 0; tries < 3 && !*a->stop; tries++) {
        err = rd_kafka_query_watermark_offsets(a->rd, p->topic, p->partition, &low, &high, 5000);
        if (!err)
            break;
    }
    if (err) {
        cdc_error("%s [%d]: this target has applied nothing of it and its first event read is at "
                  "offset %lld; cannot check where the partition starts: %s",
                  p->topic, p->partition, (long long)m->offset, rd_kafka_err2str(err));
        return false;
    }
    if (low > 0) {
        cdc_error("%s [%d]: this target has applied nothing of it, but Kafka's log starts at "
                  "offset %lld: events were deleted before they were applied (retention); the "
                  "target needs a new bootstrap",
                  p->topic, p->partition, (long long)low);
        return false;
    }
    return true;
}

/* Returns false when the daemon must stop. Takes ownership of m. */
static bool process(applier *a, rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    part_state *p = find_part(a, topic, m->partition);
    if (!p || p->waiting || strcmp(topic, a->schemas_topic) == 0 ||
        strcmp(topic, a->bootstrap_topic) == 0 || strcmp(topic, a->cfg->dlq_topic) == 0) {
        rd_kafka_message_destroy(m);
        return true;
    }
    if (!p->pending) {
        p->pending = true;
        p->next = p->flying ? p->flight : p->stored;
    }
    if (p->next.next_offset < 0 && m->offset > 0 && !start_intact(a, p, m)) {
        a->exit_status = 1;
        rd_kafka_message_destroy(m);
        return false;
    }
    if (!m->payload) { /* tombstone: nothing to apply */
        p->next.next_offset = m->offset + 1;
        keep_msg(a, m);
        return true;
    }
    char derr[1024];
    bool transient;
    const cdc_table_schema *s = decode(a, m, &a->ev, &transient, derr, sizeof derr);
    if (!s && transient) {
        schemas_unreadable(a, m, derr);
        rd_kafka_message_destroy(m);
        return true;
    }
    if (!s)
        return poison(a, m, p, derr);
    if (is_repeat(&a->ev, &p->next)) {
        p->next.next_offset = m->offset + 1; /* repeat from a capture restart */
        keep_msg(a, m);
        return true;
    }
    if (a->ev.op == 't') {
        bool ok = handle_truncate(a, p, s, m);
        rd_kafka_message_destroy(m);
        return ok;
    }
    table_batch *tb = NULL;
    for (size_t i = 0; i < a->ntables; i++)
        if (a->tables[i].group == p->group && same_table(a->tables[i].schema, s))
            tb = &a->tables[i];
    if (tb && ((tb->schema != s && has_new_columns(tb->schema, s)) ||
               batch_binary(tb->b) != a->ev.binary)) {
        /* A newer table version, or the end of a load (its reads are in
         * binary form): write what we have first. */
        if (!flush_batch(a)) {
            rd_kafka_message_destroy(m);
            return false;
        }
        if (a->need_resync) {
            rd_kafka_message_destroy(m);
            return true;
        }
        p->pending = true;
        p->next = p->flying ? p->flight : p->stored;
        tb = NULL;
    }
    if (!tb) {
        a->tables = cdc_xrealloc(a->tables, (a->ntables + 1) * sizeof *a->tables);
        tb = &a->tables[a->ntables++];
        tb->schema = s;
        tb->group = p->group;
        tb->b = batch_new(s);
    }
    if (batch_add(tb->b, s, &a->ev, derr, sizeof derr) != 0)
        return poison(a, m, p, derr);
    if (a->ev.op == 'r') {
        a->loads_pending = true;
        a->load_ended |= strcmp(a->ev.snapshot, "last") == 0;
    }
    p->next.next_offset = m->offset + 1;
    p->next.commit_lsn = a->ev.commit_lsn;
    p->next.ordinal = a->ev.ordinal;
    keep_msg(a, m);
    a->events++;
    a->reads += a->ev.op == 'r';
    p->events++;
    return true;
}

/* The consumer configuration both consumers use (see make_consumer). */
static rd_kafka_conf_t *consumer_conf(applier *a, char *errstr, size_t errstr_size)
{
    const apply_config *cfg = a->cfg;
    cdc_kv defaults[] = {
        {"group.id", cfg->group_id},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        /* Never skip silently: an offset Kafka no longer has is an error. */
        {"auto.offset.reset", "error"},
        {"client.id", "cdc-apply"},
        {"partition.assignment.strategy", "cooperative-sticky"},
        /* New table topics are found by the regex on each metadata refresh. */
        {"topic.metadata.refresh.interval.ms", "5000"},
        /*
         * Prefetch. librdkafka stops fetching when its queue holds
         * queued.min.messages (default 100,000, counted over all partitions
         * of this consumer) or queued.max.messages.kbytes (64 MiB by
         * default, which bounds the memory) and looks again only when its
         * broker thread next wakes up, up to a second later: the queue must
         * hold a second of events or a catch-up stalls. At ~450,000 events/s
         * 100,000 events lasted a fifth of a second and 32 MiB half a second
         * (a 2,000,000-row load took 8.5 s instead of 7.4 s).
         */
        {"queued.min.messages", "500000"},
        {"queued.max.messages.kbytes", "65536"},
        /*
         * How long a fetch of partitions with nothing new waits. Kafka answers
         * as soon as data arrives anyway; cdc-devbroker (librdkafka 2.0's
         * mock) waits it out, so the first events of a load arrived up to
         * half a second late, and a quiet stream's events as late.
         */
        {"fetch.wait.max.ms", "100"},
    };
    rd_kafka_conf_t *conf = cdc_kafka_conf_new(
        &cfg->kafka, defaults, sizeof defaults / sizeof defaults[0], errstr, errstr_size);
    if (conf)
        rd_kafka_conf_set_opaque(conf, a);
    return conf;
}

static rd_kafka_t *new_consumer(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
{
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "cannot create Kafka consumer: %s", err);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

/*
 * Every table topic of the prefix: "{prefix}.{schema}.{table}" has a dot
 * after the schema part, the control topics ({prefix}._schemas,
 * {prefix}._bootstrap, {prefix}.dlq) have none, so creating them does not
 * trigger a rebalance. (A dead-letter topic named otherwise is skipped
 * message by message.) The same expression, a POSIX extended one, picks the
 * topics start_early reads.
 */
static void topics_regex(const apply_config *cfg, cdc_buf *re)
{
    cdc_buf_putc(re, '^');
    for (const char *c = cfg->topic_prefix; *c; c++) {
        if (strchr(".^$*+?()[]{}|\\", *c))
            cdc_buf_putc(re, '\\');
        cdc_buf_putc(re, (uint8_t)*c);
    }
    /* The second form: a name cut to Kafka's 249 characters, whose cut may
     * have taken the dot after the schema, ends in "_" and 16 hex digits. */
    cdc_buf_puts(re, "\\.([^.]+\\..+|[^.]+_");
    for (int i = 0; i < 16; i++) /* no counted repetition in librdkafka's regex */
        cdc_buf_puts(re, "[0-9a-f]");
    cdc_buf_puts(re, ")$");
}

static rd_kafka_t *make_consumer(applier *a, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = consumer_conf(a, errstr, errstr_size);
    if (!conf)
        return NULL;
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_t *rk = new_consumer(conf, errstr, errstr_size);
    if (!rk)
        return NULL;
    cdc_buf re;
    cdc_buf_init(&re);
    topics_regex(a->cfg, &re);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, cdc_buf_cstr(&re), RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    cdc_buf_free(&re);
    if (e) {
        snprintf(errstr, errstr_size, "cannot subscribe: %s", rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

/*
 * Starting before the group forms. A consumer group's first join waits
 * group.initial.rebalance.delay.ms (3 s by default, in Kafka and in
 * cdc-devbroker) before it assigns anything: a catch-up would sit idle that
 * long. When the group has no members, a second consumer, outside the
 * group, reads every partition of the table topics that exist meanwhile,
 * each from its position in the target like any assigned partition; the
 * group's first assignment ends it (end_early), and the group's partitions
 * are positioned from the target again. Exactly once does not rest on the
 * group: each batch checks, holding the position rows' locks, that its
 * partitions are where it read them, so a process that starts at the same
 * moment and applies some of the same partitions costs a re-read, never a
 * repeat. (A group whose members cannot be listed, as in cdc-devbroker,
 * counts as empty.)
 */
static void start_early(applier *a)
{
    if (!a->cfg->read_before_assignment)
        return;
    const struct rd_kafka_group_list *gl = NULL;
    int members = 0;
    if (rd_kafka_list_groups(a->rk, a->cfg->group_id, &gl, 3000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < gl->group_cnt; i++)
            if (strcmp(gl->groups[i].group, a->cfg->group_id) == 0)
                members += gl->groups[i].member_cnt;
    }
    if (gl)
        rd_kafka_group_list_destroy(gl);
    if (members > 0) {
        cdc_info("consumer group %s has %d members: waiting for its assignment", a->cfg->group_id,
                 members);
        return;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(a->rk, 1, NULL, &md, 10000);
    if (e) {
        cdc_debug("no early start: cannot list the topics (%s)", rd_kafka_err2str(e));
        return;
    }
    cdc_buf re;
    cdc_buf_init(&re);
    topics_regex(a->cfg, &re);
    regex_t rx;
    int rc = regcomp(&rx, cdc_buf_cstr(&re), REG_EXTENDED | REG_NOSUB);
    cdc_buf_free(&re);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    int ntopics = 0;
    for (int i = 0; rc == 0 && i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *t = &md->topics[i];
        if (t->err || regexec(&rx, t->topic, 0, NULL, 0) != 0)
            continue;
        ntopics++;
        for (int k = 0; k < t->partition_cnt; k++)
            rd_kafka_topic_partition_list_add(l, t->topic, t->partitions[k].id);
    }
    if (rc == 0)
        regfree(&rx);
    rd_kafka_metadata_destroy(md);
    rd_kafka_conf_t *conf = l->cnt > 0 ? consumer_conf(a, a->err, sizeof a->err) : NULL;
    rd_kafka_t *early = conf ? new_consumer(conf, a->err, sizeof a->err) : NULL;
    if (!early) {
        if (l->cnt > 0)
            cdc_debug("no early start: %s", a->err);
        rd_kafka_topic_partition_list_destroy(l);
        return;
    }
    a->early = a->rd = early;
    a->parts = cdc_xrealloc(a->parts, (a->nparts + (size_t)l->cnt + 1) * sizeof *a->parts);
    a->tparts = cdc_xrealloc(a->tparts, (a->nparts + (size_t)l->cnt + 1) * sizeof *a->tparts);
    int64_t lookup_deadline = now_ms() + 2000;
    for (int i = 0; i < l->cnt && !*a->stop && !a->exit_status; i++)
        add_part(a, &l->elems[i], lookup_deadline);
    e = rd_kafka_assign(early, l);
    if (e)
        cdc_warn("early start: %s", rd_kafka_err2str(e));
    else
        cdc_info("reading %d partitions of %d topics while consumer group %s forms", l->cnt,
                 ntopics, a->cfg->group_id);
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        end_early(a);
}

/* The group assigned partitions (or the early start failed): its consumer takes over. */
static void end_early(applier *a)
{
    drop_batch(a);
    clear_parts(a);
    a->need_resync = false;
    rd_kafka_t *early = a->early;
    a->early = NULL;
    a->rd = a->rk;
    rd_kafka_consumer_close(early);
    rd_kafka_destroy(early);
    cdc_debug("consumer group %s formed: reading its assignment", a->cfg->group_id);
}

int apply_run(const apply_config *cfg, volatile sig_atomic_t *stop)
{
    applier a;
    memset(&a, 0, sizeof a);
    atomic_init(&a.fl.writing, 0);
    a.cfg = cfg;
    a.stop = stop;
    a.reg = cdc_registry_new();
    cdc_event_init(&a.ev);
    a.nwriters = cfg->target_connections > 0 ? cfg->target_connections : 1;
    a.writers = cdc_xcalloc((size_t)a.nwriters, sizeof *a.writers);
    for (int w = 0; w < a.nwriters; w++)
        a.writers[w] = target_new(cfg->target_conninfo, cfg->state_schema, cfg->group_id,
                                  cfg->auto_create, cfg->auto_evolve);
    a.tgt = a.writers[0];
    a.fl.jobs = cdc_xcalloc((size_t)a.nwriters, sizeof *a.fl.jobs);
    a.msgs = cdc_xcalloc((size_t)cfg->batch_max_events + 2, sizeof *a.msgs);
    a.fl.msgs = cdc_xcalloc((size_t)cfg->batch_max_events + 2, sizeof *a.fl.msgs);
    cdc_buf b;
    cdc_buf_init(&b);
    cdc_topic_schemas(&b, cfg->topic_prefix);
    a.schemas_topic = (char *)b.data;
    cdc_buf_init(&b);
    cdc_buf_printf(&b, "%s._bootstrap", cfg->topic_prefix);
    a.bootstrap_topic = (char *)b.data;
    char conninfo[1024];
    cdc_redact_conninfo(cfg->target_conninfo, conninfo, sizeof conninfo);
    cdc_info("starting: target %s (%d connections), group %s, topics %s.*, errors.tolerance=%s",
             conninfo, a.nwriters, cfg->group_id, cfg->topic_prefix, cfg->errors_tolerance);

    /* Tables left waiting for their key by an earlier run are looked at
     * once nothing comes for a while. */
    a.loads_pending = true;
    a.last_event_ms = now_ms();
    if (ensure_target(&a))
        a.rd = a.rk = make_consumer(&a, a.err, sizeof a.err);
    if (!a.rk && !*stop && !a.exit_status) {
        cdc_error("%s", a.err);
        a.exit_status = 1;
    }
    /*
     * Read the schemas published so far while the consumer joins its group
     * (seconds, in the background): otherwise the first event waits for this
     * read after the assignment. Failing here is harmless: an unknown
     * schema is looked up again when an event needs it.
     */
    if (a.rk &&
        cdc_registry_load_prefix(a.reg, cdc_kv_get(&cfg->kafka, "bootstrap.servers"), &cfg->kafka,
                                 cfg->topic_prefix, 10000, a.err, sizeof a.err) < 0)
        cdc_debug("schemas not read ahead: %s", a.err);
    if (a.rk)
        start_early(&a);
    while (a.rk && !*stop && !a.exit_status) {
        /* (The writers' connections are checked when no batch is in flight;
         * one lost meanwhile shows in the flight's outcome.) */
        if (!a.fl.active && !ensure_target(&a))
            break;
        if (a.need_resync && !resync(&a))
            continue;
        int64_t deadline = 0, gap_since = 0;
        size_t load_batch = (size_t)cfg->batch_max_events < LOAD_BATCH_EVENTS
                                ? (size_t)cfg->batch_max_events
                                : LOAD_BATCH_EVENTS;
        unsigned since_clock = 0;
        bool idle = false;
        while (!*stop && a.nmsgs < (size_t)cfg->batch_max_events &&
               a.bytes < (size_t)cfg->batch_max_bytes && !a.need_resync && !a.exit_status) {
            /*
             * A catch-up finds messages waiting: take them without a timeout
             * (librdkafka then skips its clock reads) and look at the clock
             * every 256 of them; it was a tenth of the loop's time.
             */
            rd_kafka_message_t *m = NULL;
            if (deadline && ++since_clock < 256)
                m = rd_kafka_consumer_poll(a.rd, 0);
            /* While the group forms its consumer is polled too: that is
             * where its assignment arrives (on_rebalance). */
            if (!m && a.early)
                m = rd_kafka_consumer_poll(a.rk, 0);
            if (!m) {
                since_clock = 0;
                int64_t now = now_ms();
                if (deadline && now >= deadline)
                    break;
                /*
                 * Nothing more has arrived: if the writers are free the
                 * batch goes now (a quiet stream is applied within
                 * milliseconds); while they write it keeps filling, up to
                 * batch.max.ms, and the writers are looked at every few ms.
                 */
                if (deadline && !(a.fl.active && atomic_load(&a.fl.writing) > 0)) {
                    /* A load's batches fill up while its reads keep coming. */
                    if (!(a.reads > 0 && a.reads == a.events && a.events < load_batch))
                        break;
                    if (!gap_since)
                        gap_since = now;
                    else if (now - gap_since >= LOAD_GAP_MS)
                        break;
                }
                /* After a load's last row, a short wait finds the end of
                 * the stream soon, and with it the moment to add the keys. */
                int idle_wait = a.loads_pending && a.load_ended ? 20 : 200;
                int wait = deadline ? (int)(deadline - now) : idle_wait;
                m = rd_kafka_consumer_poll(a.rd, deadline && wait > 5 ? 5 : wait);
                if (deadline)
                    a.starved_ms += now_ms() - now;
            }
            if (!m) {
                if (!deadline) {
                    idle = true; /* look at waiting partitions and loads */
                    break;
                }
                continue;
            }
            gap_since = 0;
            if (m->err) {
                /* A regex subscription with no matching topic yet is normal. */
                if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                    cdc_debug("Kafka: %s", rd_kafka_message_errstr(m));
                } else if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
                    cdc_error("%s [%d]: the recorded position is no longer in Kafka (%s): "
                              "events were deleted before they were applied (retention); the "
                              "target needs a new bootstrap",
                              m->rkt ? rd_kafka_topic_name(m->rkt) : "?", m->partition,
                              rd_kafka_message_errstr(m));
                    a.exit_status = 1;
                    rd_kafka_message_destroy(m);
                    break;
                } else if ((m->err == RD_KAFKA_RESP_ERR__BAD_MSG ||
                            m->err == RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED) &&
                           m->rkt) {
                    /* librdkafka skips what it cannot read: going on would
                     * record positions past events never applied. */
                    cdc_error("%s [%d] offset %lld: Kafka returned data that cannot be read (%s); "
                              "stopping before anything after it is applied",
                              rd_kafka_topic_name(m->rkt), m->partition, (long long)m->offset,
                              rd_kafka_message_errstr(m));
                    a.exit_status = 1;
                    rd_kafka_message_destroy(m);
                    break;
                } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    cdc_warn("Kafka: %s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                continue;
            }
            cdc_kafka_note_ok();
            if (!deadline)
                deadline = now_ms() + cfg->batch_max_ms;
            if (!process(&a, m))
                break;
        }
        if (a.exit_status || *stop)
            break;
        if (deadline) /* events came */
            a.last_event_ms = now_ms();
        if (!a.need_resync && !flush_batch(&a))
            break;
        check_waiting(&a);
        if (idle && !a.need_resync && !finish_loads(&a))
            break;
        int64_t now = now_ms();
        if (now - a.stat_since >= cfg->stats_interval_ms) {
            a.total_events += a.stat_events;
            if (a.stat_events > 0)
                cdc_info("applied %llu events in %llu batches in the last %.0f s (%.0f events/s, "
                         "%.0f%% of the time writing to the target), %llu in all",
                         (unsigned long long)a.stat_events, (unsigned long long)a.stat_batches,
                         (double)(now - a.stat_since) / 1000.0,
                         (double)a.stat_events * 1000.0 / (double)(now - a.stat_since),
                         100.0 * (double)a.stat_db_ms / (double)(now - a.stat_since),
                         (unsigned long long)a.total_events);
            a.stat_since = now;
            a.stat_events = a.stat_batches = 0;
            a.stat_db_ms = 0;
        }
    }

    land(&a, false); /* a batch in flight is finished, the one being built abandoned */
    drop_batch(&a);
    if (a.loads_pending && target_connected(a.tgt)) {
        cdc_buf names;
        cdc_buf_init(&names);
        if (target_pending_loads(a.tgt, &names, a.err, sizeof a.err) == TARGET_OK && names.len)
            cdc_warn("still without their primary key (their load is not applied yet): %s; "
                     "cdc-apply adds it when it runs again and the load is applied",
                     cdc_buf_cstr(&names));
        cdc_buf_free(&names);
    }
    if (a.early)
        end_early(&a);
    if (a.rk && !a.assigned) {
        /*
         * librdkafka 2.0 aborts (an assertion in the cooperative-sticky
         * assignor) when a consumer is destroyed after its JoinGroup
         * response but before its first assignment; 2.3 fixed it. A stop
         * during the start (the early read makes that likely) waits for
         * that assignment, which on_rebalance takes without reading. (A
         * consumer without a member id has no JoinGroup response yet.)
         */
        char *member = rd_kafka_memberid(a.rk);
        bool joining = member && *member;
        if (member)
            rd_kafka_mem_free(a.rk, member);
        int64_t until = now_ms() + 30000;
        while (joining && !a.assigned && now_ms() < until) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(a.rk, 100);
            if (m)
                rd_kafka_message_destroy(m);
        }
    }
    if (a.rk) {
        rd_kafka_consumer_close(a.rk);
        rd_kafka_destroy(a.rk);
    }
    if (a.dlq) {
        /* Letters still pending belong to a pass that did not commit (a
         * pass commits only once its letters are in Kafka): the restart
         * sends them again, so do not deliver these now. */
        rd_kafka_purge(a.dlq, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(a.dlq, 10000);
        rd_kafka_destroy(a.dlq);
    }
    clear_parts(&a);
    free(a.parts);
    free(a.tparts);
    free(a.dead);
    for (size_t i = 0; i < a.nsent; i++)
        free(a.sent[i].topic);
    free(a.sent);
    free(a.tables);
    free(a.msgs);
    free(a.fl.msgs);
    free(a.fl.tables);
    for (int w = 0; w < a.nwriters; w++) {
        free(a.fl.jobs[w].parts);
        free(a.fl.jobs[w].tables);
    }
    free(a.fl.jobs);
    for (size_t i = 0; i < a.nschemas; i++)
        cdc_table_schema_free(a.schemas[i].s);
    free(a.schemas);
    free(a.schemas_topic);
    free(a.bootstrap_topic);
    cdc_event_free(&a.ev);
    cdc_registry_destroy(a.reg);
    for (int w = 0; w < a.nwriters; w++)
        target_destroy(a.writers[w]);
    free(a.writers);
    cdc_info("stopped");
    return a.exit_status;
}
