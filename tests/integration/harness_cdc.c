/* cdc-specific integration helpers (see harness_cdc.h). */
#include "harness_cdc.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "cdc/avro_bin.h"
#include "cdc/buf.h"
#include "cdc/lsn.h"

#ifndef CDC_BIN_DIR
#define CDC_BIN_DIR "build/bin"
#endif

const char *th_prefix(void)
{
    static char prefix[64];
    if (!prefix[0])
        snprintf(prefix, sizeof prefix, "it%d", (int)getpid());
    return prefix;
}

void th_capture_start(th_proc *p, const th_pg *pg, const char *db, const char *bootstrap,
                      const char *logname, const char *const *extra)
{
    static char conninfo[1024], ci[1200], bs[1200], pf[200];
    th_pg_conninfo(pg, db, conninfo, sizeof conninfo);
    snprintf(ci, sizeof ci, "source.conninfo=%s", conninfo);
    snprintf(bs, sizeof bs, "kafka.bootstrap.servers=%s", bootstrap);
    snprintf(pf, sizeof pf, "topic.prefix=%s", th_prefix());
    const char *argv[64] = {CDC_BIN_DIR "/cdc-capture", "-s", ci, "-s", bs, "-s", pf};
    int n = 7;
    for (int i = 0; extra && extra[i] && n < 60; i++) {
        argv[n++] = "-s";
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    th_spawn(p, logname, (char *const *)argv);
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", th_test_dir(), logname);
    cr_assert(th_wait_log(path, "streaming from slot", 30000),
              "cdc-capture did not start streaming");
}

static uint64_t lsn_of(char *s)
{
    cdc_lsn l = 0;
    if (s)
        cdc_lsn_parse(s, &l);
    free(s);
    return l;
}

uint64_t th_wal_lsn(PGconn *conn)
{
    /* The insert position: with synchronous_commit off the write position can
     * still be before the last commit record. */
    return lsn_of(th_sql_value(conn, "SELECT pg_current_wal_insert_lsn()"));
}

uint64_t th_slot_flush(PGconn *conn, const char *slot)
{
    return lsn_of(th_sql_value(
        conn, "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '%s'", slot));
}

bool th_wait_slot(PGconn *conn, const char *slot, uint64_t lsn, int timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        if (th_slot_flush(conn, slot) >= lsn)
            return true;
        usleep(100 * 1000);
    }
    return false;
}

const char *th_topic(const char *schema, const char *table, char *buf, size_t size)
{
    snprintf(buf, size, "%s.%s.%s", th_prefix(), schema, table);
    return buf;
}

th_msgs *th_read_topic(const char *bootstrap, const char *topic, size_t want, int timeout_ms,
                       cdc_registry *reg)
{
    th_consume_opts o = {
        .bootstrap = bootstrap,
        .topic = topic,
        .want = want,
        .timeout_ms = timeout_ms,
        .schema_prefix = th_prefix(),
        .registry = reg,
    };
    return th_consume(&o);
}

cdc_table_schema *th_decode(const char *bootstrap, cdc_registry *reg, const th_msg *m,
                            cdc_event *ev)
{
    cr_assert_not_null(m->value, "tombstone where an event was expected");
    const uint8_t *p = m->value, *end = p + m->value_len;
    uint64_t fp;
    cr_assert_eq(cdc_avro_get_so_header(&p, end, &fp), 0, "value is not single-object encoded");
    const cdc_registry_schema *rs = cdc_registry_get(reg, fp);
    if (!rs) {
        char err[512];
        cdc_registry_load_prefix(reg, bootstrap, NULL, th_prefix(), 10000, err, sizeof err);
        rs = cdc_registry_get(reg, fp);
    }
    cr_assert_not_null(rs, "schema %016llx not in %s._schemas", (unsigned long long)fp,
                       th_prefix());
    char err[512];
    cdc_table_schema *s = cdc_table_schema_parse(rs->json, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cr_assert_eq(cdc_event_decode(s, p, (size_t)(end - p), ev, err, sizeof err), 0, "%s", err);
    return s;
}

const char *th_col(const cdc_table_schema *s, const cdc_event *ev, bool after, const char *pg_name)
{
    int i = cdc_table_schema_find(s, pg_name);
    cr_assert(i >= 0, "no column %s", pg_name);
    const cdc_colval *row = after ? ev->after : ev->before;
    cr_assert(after ? ev->has_after : ev->has_before, "event has no %s row",
              after ? "after" : "before");
    if (row[i].state != CDC_COL_VALUE)
        return NULL;
    return cdc_event_text(ev, &row[i]);
}

const char *th_key_json(const th_msg *m)
{
    return m->key_json ? m->key_json : "(null)";
}

/* ---- cdc-apply ---------------------------------------------------------- */

void th_apply_start(th_proc *p, const th_pg *pg, const char *db, const char *bootstrap,
                    const char *logname, const char *const *extra)
{
    char conninfo[1024], ci[1200], bs[1200], pf[200];
    th_pg_conninfo(pg, db, conninfo, sizeof conninfo);
    snprintf(ci, sizeof ci, "target.conninfo=%s", conninfo);
    snprintf(bs, sizeof bs, "kafka.bootstrap.servers=%s", bootstrap);
    snprintf(pf, sizeof pf, "topic.prefix=%s", th_prefix());
    const char *argv[64] = {CDC_BIN_DIR "/cdc-apply", "-s", ci, "-s", bs, "-s", pf,
                            "-s", "kafka.session.timeout.ms=6000"};
    int n = 9;
    for (int i = 0; extra && extra[i] && n < 60; i++) {
        argv[n++] = "-s";
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    th_spawn(p, logname, (char *const *)argv);
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", th_test_dir(), logname);
    int64_t end = th_now_ms() + 30000;
    while (!th_wait_log(path, "starting: target", 100)) {
        cr_assert_eq(th_proc_wait(p, 0, NULL), -1, "cdc-apply exited at start (status %d)",
                     th_proc_exit_code(p));
        cr_assert_lt(th_now_ms(), end, "cdc-apply did not start");
    }
}

/* ---- table comparison ---------------------------------------------------- */

static PGconn *cmp_connect(const th_pg *pg, const char *db)
{
    char ci[1024];
    th_pg_conninfo(pg, db, ci, sizeof ci);
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* "count md5" of rel's rows, or NULL (missing table, connection down). */
static char *rel_digest(PGconn *c, const char *rel)
{
    cdc_buf q;
    cdc_buf_init(&q);
    cdc_buf_printf(&q,
                   "SELECT count(*)::text || ' ' || coalesce(md5(string_agg(t::text, '|' "
                   "ORDER BY t::text COLLATE \"C\")), '-') FROM %s t",
                   rel);
    PGresult *r = PQexec(c, cdc_buf_cstr(&q));
    cdc_buf_free(&q);
    char *out = NULL;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        out = cdc_xstrdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

static PGresult *rel_rows(PGconn *c, const char *rel)
{
    cdc_buf q;
    cdc_buf_init(&q);
    cdc_buf_printf(&q, "SELECT t::text FROM %s t ORDER BY t::text COLLATE \"C\" LIMIT 200000", rel);
    PGresult *r = PQexec(c, cdc_buf_cstr(&q));
    cdc_buf_free(&q);
    return r;
}

/* Counts and the first rows on only one side, by a merge of sorted texts. */
static void describe_diff(PGconn *s, const char *src_rel, PGconn *d, const char *dst_rel,
                          char *diff, size_t diff_size)
{
    cdc_buf b;
    cdc_buf_init(&b);
    PGresult *rs = s ? rel_rows(s, src_rel) : NULL, *rd = d ? rel_rows(d, dst_rel) : NULL;
    if (PQresultStatus(rs) != PGRES_TUPLES_OK || PQresultStatus(rd) != PGRES_TUPLES_OK) {
        cdc_buf_printf(&b, "cannot read rows: source: %s; target: %s",
                       rs ? PQresultErrorMessage(rs) : "no connection",
                       rd ? PQresultErrorMessage(rd) : "no connection");
    } else {
        int ns = PQntuples(rs), nd = PQntuples(rd), i = 0, j = 0, shown = 0;
        cdc_buf_printf(&b, "%s: %d rows in the source, %s: %d in the target", src_rel, ns,
                       dst_rel, nd);
        while ((i < ns || j < nd) && shown < 12) {
            int c = i >= ns ? 1 : j >= nd ? -1 : strcmp(PQgetvalue(rs, i, 0), PQgetvalue(rd, j, 0));
            if (c == 0) {
                i++, j++;
            } else if (c < 0) {
                cdc_buf_printf(&b, "\n  only in source: %.300s", PQgetvalue(rs, i++, 0));
                shown++;
            } else {
                cdc_buf_printf(&b, "\n  only in target: %.300s", PQgetvalue(rd, j++, 0));
                shown++;
            }
        }
    }
    PQclear(rs);
    PQclear(rd);
    snprintf(diff, diff_size, "%s", cdc_buf_cstr(&b));
    cdc_buf_free(&b);
}

bool th_wait_same_rows(const th_pg *pg, const char *src_db, const char *src_rel,
                       const char *dst_db, const char *dst_rel, int timeout_ms, char *diff,
                       size_t diff_size)
{
    int64_t end = th_now_ms() + timeout_ms;
    PGconn *s = NULL, *d = NULL;
    bool same = false;
    for (;;) {
        if (s && PQstatus(s) != CONNECTION_OK) {
            PQfinish(s);
            s = NULL;
        }
        if (d && PQstatus(d) != CONNECTION_OK) {
            PQfinish(d);
            d = NULL;
        }
        if (!s)
            s = cmp_connect(pg, src_db);
        if (!d)
            d = cmp_connect(pg, dst_db);
        char *ds = s ? rel_digest(s, src_rel) : NULL, *dd = d ? rel_digest(d, dst_rel) : NULL;
        same = ds && dd && strcmp(ds, dd) == 0;
        free(ds);
        free(dd);
        if (same || th_now_ms() >= end)
            break;
        usleep(250 * 1000);
    }
    if (!same && diff)
        describe_diff(s, src_rel, d, dst_rel, diff, diff_size);
    if (s)
        PQfinish(s);
    if (d)
        PQfinish(d);
    return same;
}

void th_assert_converge(const th_pg *pg, const char *src_db, const char *dst_db,
                        const char *const *tables, int timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    static char diff[16384];
    for (int i = 0; tables[i]; i++) {
        int left = (int)(end - th_now_ms());
        bool ok = th_wait_same_rows(pg, src_db, tables[i], dst_db, tables[i], left > 0 ? left : 0,
                                    diff, sizeof diff);
        cr_assert(ok, "target did not converge to the source in %d s: %s", timeout_ms / 1000,
                  diff);
    }
}

void th_assert_converge_alive(const th_pg *pg, const char *src_db, const char *dst_db,
                              const char *const *tables, int timeout_ms, th_proc *alive)
{
    int64_t end = th_now_ms() + timeout_ms;
    static char diff[16384];
    for (int i = 0; tables[i]; i++) {
        for (;;) {
            int left = (int)(end - th_now_ms());
            int slice = left < 2000 ? (left > 0 ? left : 0) : 2000;
            if (th_wait_same_rows(pg, src_db, tables[i], dst_db, tables[i], slice, diff,
                                  sizeof diff))
                break;
            bool gone = th_proc_wait(alive, 0, NULL) == 0;
            cr_assert(!gone, "%s exited with status %d before the target converged: %s",
                      alive->logfile, th_proc_exit_code(alive), diff);
            cr_assert(left > slice, "target did not converge to the source in %d s: %s",
                      timeout_ms / 1000, diff);
        }
    }
}

/* ---- Kafka headers and re-production ------------------------------------- */

static void conf_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
        cr_assert_fail("kafka config %s=%s: %s", k, v, err);
}

static void *copy_bytes(const void *p, size_t n)
{
    if (!p)
        return NULL;
    void *c = cdc_xmalloc(n + 1);
    memcpy(c, p, n);
    ((char *)c)[n] = '\0';
    return c;
}

static int hmsg_cmp(const void *a, const void *b)
{
    const th_hmsg *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Partition count of `topic` from a full listing (never auto-creates it). */
static int listed_partitions(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    int n = 0;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0 && !md->topics[i].err)
            n = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

th_hmsgs *th_consume_headers(const char *bootstrap, const char *topic, size_t want,
                             int timeout_ms)
{
    static int counter;
    char err[512], group[64];
    int64_t deadline = th_now_ms() + (timeout_ms > 0 ? timeout_ms : 30000);
    th_hmsgs *res = cdc_xcalloc(1, sizeof *res);
    size_t cap = 0;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    conf_set(conf, "bootstrap.servers", bootstrap);
    snprintf(group, sizeof group, "cdc-thh-%d-%d", (int)getpid(), ++counter);
    conf_set(conf, "group.id", group);
    conf_set(conf, "enable.auto.commit", "false");
    conf_set(conf, "enable.partition.eof", "true");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        cr_assert_fail("consumer: %s", err);
    }
    int nparts = 0;
    while ((nparts = listed_partitions(rk, topic)) == 0 && th_now_ms() < deadline)
        usleep(100 * 1000);
    int64_t *high = cdc_xcalloc((size_t)nparts + 1, sizeof *high);
    bool *done = cdc_xcalloc((size_t)nparts + 1, sizeof *done);
    int pending = 0;
    if (nparts > 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
        for (int32_t p = 0; p < nparts; p++) {
            int64_t low;
            rd_kafka_resp_err_t e =
                rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high[p], 10000);
            if (e)
                cr_assert_fail("%s [%d]: watermarks: %s", topic, p, rd_kafka_err2str(e));
            done[p] = high[p] <= low;
            pending += !done[p];
            rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
    }
    while (nparts > 0 && th_now_ms() < deadline) {
        if (want > 0 ? res->n >= want : pending == 0)
            break;
        rd_kafka_message_t *km = rd_kafka_consumer_poll(rk, 100);
        if (!km)
            continue;
        int32_t p = km->partition;
        bool ours = p >= 0 && p < nparts;
        if (km->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (ours && !done[p] && km->offset >= high[p]) {
                done[p] = true;
                pending--;
            }
        } else if (!km->err) {
            if (res->n == cap) {
                cap = cap ? cap * 2 : 16;
                res->v = cdc_xrealloc(res->v, cap * sizeof *res->v);
            }
            th_hmsg *m = &res->v[res->n++];
            memset(m, 0, sizeof *m);
            m->partition = p;
            m->offset = km->offset;
            m->key = copy_bytes(km->key, km->key_len);
            m->key_len = km->key ? km->key_len : 0;
            m->value = copy_bytes(km->payload, km->len);
            m->value_len = km->payload ? km->len : 0;
            rd_kafka_headers_t *h = NULL;
            if (rd_kafka_message_headers(km, &h) == RD_KAFKA_RESP_ERR_NO_ERROR && h) {
                size_t n = rd_kafka_header_cnt(h);
                m->hdr_name = cdc_xcalloc(n + 1, sizeof *m->hdr_name);
                m->hdr_value = cdc_xcalloc(n + 1, sizeof *m->hdr_value);
                const char *name;
                const void *val;
                size_t size;
                for (size_t i = 0; i < n && !rd_kafka_header_get_all(h, i, &name, &val, &size);
                     i++) {
                    m->hdr_name[m->nhdr] = cdc_xstrdup(name);
                    m->hdr_value[m->nhdr] = copy_bytes(val, size);
                    m->nhdr++;
                }
            }
            if (ours && !done[p] && km->offset >= high[p] - 1) {
                done[p] = true;
                pending--;
            }
        }
        rd_kafka_message_destroy(km);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(high);
    free(done);
    if (res->n > 1)
        qsort(res->v, res->n, sizeof *res->v, hmsg_cmp);
    return res;
}

void th_hmsgs_free(th_hmsgs *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        th_hmsg *x = &m->v[i];
        for (size_t h = 0; h < x->nhdr; h++) {
            free(x->hdr_name[h]);
            free(x->hdr_value[h]);
        }
        free(x->hdr_name);
        free(x->hdr_value);
        free(x->key);
        free(x->value);
    }
    free(m->v);
    free(m);
}

const char *th_hdr(const th_hmsg *m, const char *name)
{
    for (size_t i = 0; i < m->nhdr; i++)
        if (strcmp(m->hdr_name[i], name) == 0)
            return m->hdr_value[i];
    return NULL;
}

typedef struct reproduce_state {
    size_t delivered;
    size_t failed;
    rd_kafka_resp_err_t first_err;
} reproduce_state;

static void reproduce_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    reproduce_state *st = opaque;
    if (m->err) {
        if (!st->failed++)
            st->first_err = m->err;
    } else {
        st->delivered++;
    }
}

void th_reproduce(const char *bootstrap, const th_msgs *m)
{
    char err[512];
    reproduce_state st = {0, 0, RD_KAFKA_RESP_ERR_NO_ERROR};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    conf_set(conf, "bootstrap.servers", bootstrap);
    conf_set(conf, "enable.idempotence", "true");
    conf_set(conf, "message.timeout.ms", "30000");
    rd_kafka_conf_set_dr_msg_cb(conf, reproduce_dr);
    rd_kafka_conf_set_opaque(conf, &st);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        cr_assert_fail("producer: %s", err);
    }
    for (size_t i = 0; i < m->n; i++) {
        const th_msg *x = &m->v[i];
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC(x->topic), RD_KAFKA_V_PARTITION(x->partition),
                    RD_KAFKA_V_KEY(x->key, x->key ? x->key_len : 0),
                    RD_KAFKA_V_VALUE(x->value, x->value ? x->value_len : 0),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 100);
        if (e) {
            rd_kafka_destroy(rk);
            cr_assert_fail("produce to %s: %s", x->topic, rd_kafka_err2str(e));
        }
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 35000);
    rd_kafka_destroy(rk);
    cr_assert_eq(st.failed, 0, "%zu of %zu messages not re-produced: %s", st.failed, m->n,
                 rd_kafka_err2str(st.first_err));
    cr_assert_eq(st.delivered, m->n, "%zu of %zu messages re-produced", st.delivered, m->n);
}

/* ---- bootstrap tests (test_bootstrap.c) ---------------------------------- */

void th_capture_spawn(th_proc *p, const th_pg *pg, const char *db, const char *bootstrap,
                      const char *logname, const char *const *flags, const char *const *extra)
{
    char conninfo[1024], ci[1200], bs[1200], pf[200];
    th_pg_conninfo(pg, db, conninfo, sizeof conninfo);
    snprintf(ci, sizeof ci, "source.conninfo=%s", conninfo);
    snprintf(bs, sizeof bs, "kafka.bootstrap.servers=%s", bootstrap);
    snprintf(pf, sizeof pf, "topic.prefix=%s", th_prefix());
    const char *argv[80] = {CDC_BIN_DIR "/cdc-capture"};
    int n = 1;
    for (int i = 0; flags && flags[i] && n < 16; i++)
        argv[n++] = flags[i];
    const char *base[] = {ci, bs, pf};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
        argv[n++] = "-s";
        argv[n++] = base[i];
    }
    for (int i = 0; extra && extra[i] && n < 76; i++) {
        argv[n++] = "-s";
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    th_spawn(p, logname, (char *const *)argv);
}

bool th_wait_log_alive(th_proc *p, const char *logname, const char *needle, int timeout_ms)
{
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", th_test_dir(), logname);
    int64_t end = th_now_ms() + timeout_ms;
    for (;;) {
        if (th_wait_log(path, needle, 100))
            return true;
        if (th_proc_wait(p, 0, NULL) == 0)
            return th_wait_log(path, needle, 0);
        if (th_now_ms() >= end)
            return false;
    }
}
