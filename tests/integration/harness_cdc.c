/* cdc-specific integration helpers (see harness_cdc.h). */
#include "harness_cdc.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cdc/avro_bin.h"
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
