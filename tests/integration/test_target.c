/*
 * cdc-apply's target layer (apply/target.c) driven directly against a real
 * PostgreSQL, one connection per simulated process, for interleavings of
 * several cdc-apply processes that cannot be timed through the daemons.
 * The table's schema is a real one, written by cdc-capture.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness_cdc.h"
#include "cdc/avro_bin.h"
#include "target.h"

static th_pg pg;
static th_broker broker;
static th_proc cap;
static PGconn *src, *dst;
static cdc_registry *reg;
static cdc_table_schema *schema;
static target *owners[3];
static char err[1024];

static char TOPIC[256]; /* the table's topic (its prefix is per run) */

static void setup(void)
{
    th_pg_start_src_dst(&pg, &src, &dst);
    th_broker_start(&broker, 1);
    reg = cdc_registry_new();
    th_sql(src, "CREATE TABLE t (id int PRIMARY KEY)");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    th_sql(src, "INSERT INTO t VALUES (1)");
    th_msgs *m = th_read_topic(broker.bootstrap, th_topic("public", "t", TOPIC, sizeof TOPIC), 1,
                               30000, reg);
    cr_assert_eq(m->n, 1, "no event from cdc-capture");
    cdc_event ev;
    cdc_event_init(&ev);
    schema = th_decode(broker.bootstrap, reg, &m->v[0], &ev);
    cdc_event_free(&ev);
    th_msgs_free(m);
    char ci[1024];
    th_pg_conninfo(&pg, "dst", ci, sizeof ci);
    for (int i = 0; i < 3; i++) {
        owners[i] = target_new(ci, "cdc", "g", true, true);
        cr_assert_eq(target_connect(owners[i], err, sizeof err), TARGET_OK, "%s", err);
    }
}

static void teardown(void)
{
    for (int i = 0; i < 3; i++)
        if (owners[i])
            target_destroy(owners[i]);
    if (schema)
        cdc_table_schema_free(schema);
    if (cap.pid)
        th_proc_stop(&cap, 10000);
    cdc_registry_destroy(reg);
    th_broker_stop(&broker);
    th_pg_stop_src_dst(&pg, &src, &dst);
}

TestSuite(target, .init = setup, .fini = teardown, .timeout = 180);

static void save(target *t, int32_t partition, int64_t next_offset, uint64_t lsn)
{
    target_pos pos = {.next_offset = next_offset, .commit_lsn = lsn, .ordinal = 0};
    cr_assert_eq(target_begin(t, err, sizeof err), TARGET_OK, "%s", err);
    cr_assert_eq(target_save_position(t, TOPIC, partition, &pos, err, sizeof err), TARGET_OK, "%s",
                 err);
    cr_assert_eq(target_commit(t, err, sizeof err), TARGET_OK, "%s", err);
}

/* `t`, whose owner expects `expected_next`, reaches the truncate at lsn. */
static void arrive(target *t, int32_t partition, uint64_t lsn, int64_t offset,
                   int64_t expected_next, bool *done, bool *moved)
{
    cr_assert_eq(target_begin(t, err, sizeof err), TARGET_OK, "%s", err);
    cr_assert_eq(target_prepare_table(t, schema, false, err, sizeof err), TARGET_OK, "%s", err);
    cr_assert_eq(target_truncate_arrive(t, schema, TOPIC, partition, 2, lsn, 0, offset,
                                        expected_next, done, moved, err, sizeof err),
                 TARGET_OK, "%s", err);
    if (*moved)
        target_rollback(t);
    else
        cr_assert_eq(target_commit(t, err, sizeof err), TARGET_OK, "%s", err);
}

static int64_t next_offset(int32_t partition)
{
    target_pos pos;
    cr_assert_eq(target_position(owners[0], TOPIC, partition, &pos, err, sizeof err), TARGET_OK,
                 "%s", err);
    return pos.next_offset;
}

/*
 * Two partitions. Process A owns partition 0 and waits at truncate T1;
 * partition 0 is then handed to process C, which read its position before
 * process B completed T1 (for both partitions) from partition 1. When C
 * reaches T1 it must not record an arrival: the row would stand for
 * partition 0 at the next truncate T2, which would then be applied before
 * partition 0 got there, and partition 0's position would go back to T1.
 */
Test(target, a_stale_owner_does_not_arrive_at_a_completed_truncate)
{
    bool done, moved;
    save(owners[0], 0, 5, 90);
    save(owners[1], 1, 7, 90);
    arrive(owners[0], 0, 100, 5, 5, &done, &moved);
    cr_assert(!done && !moved, "partition 0 waits for partition 1");
    arrive(owners[1], 1, 100, 7, 7, &done, &moved);
    cr_assert(done && !moved, "partition 1 completes T1");
    cr_assert_eq(next_offset(0), 6);
    cr_assert_eq(next_offset(1), 8);

    th_sql(dst, "INSERT INTO t VALUES (42)");       /* partition 1 applies a row after T1 */
    arrive(owners[2], 0, 100, 5, 5, &done, &moved); /* C read offset 5 before T1 completed */
    cr_assert(moved, "C's position is stale: it must read again, not arrive");
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM cdc.apply_truncates"), 0,
                 "no arrival may be left behind");

    arrive(owners[1], 1, 200, 20, 8, &done, &moved);
    cr_assert(!done && !moved, "T2 must wait for partition 0");
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM t"), 1,
                 "the row after T1 must stay until T2");
    cr_assert_eq(next_offset(0), 6, "partition 0 must not go back");

    arrive(owners[2], 0, 200, 15, 6, &done, &moved); /* C, having read its position again */
    cr_assert(done && !moved, "partition 0 completes T2");
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM t"), 0);
    cr_assert_eq(next_offset(0), 16);
    cr_assert_eq(next_offset(1), 21);
}

/* A partition with no recorded position may arrive (its owner expects none). */
Test(target, a_partition_without_a_position_arrives)
{
    bool done, moved;
    save(owners[1], 1, 7, 90);
    arrive(owners[0], 0, 100, 0, -1, &done, &moved);
    cr_assert(!done && !moved);
    arrive(owners[1], 1, 100, 7, 7, &done, &moved);
    cr_assert(done && !moved);
    cr_assert_eq(next_offset(0), 1);
    arrive(owners[2], 0, 300, 3, -1, &done, &moved);
    cr_assert(moved, "partition 0 has a position now: an owner expecting none is stale");
}

/*
 * Snapshot reads go in binary form (PostgreSQL's send format), which
 * carries no type: a column whose type changed under a load (here int to
 * real, the same four bytes) must not take them as they are. The row
 * goes through the stage instead, which converts, and the table keeps
 * waiting for its key.
 */
static void add_read(batch *b, const th_msg *m, cdc_event *ev)
{
    const uint8_t *p = m->value, *end = p + m->value_len;
    uint64_t fp;
    cr_assert_eq(cdc_avro_get_so_header(&p, end, &fp), 0);
    cr_assert(schema->binary, "t (id int PRIMARY KEY) has a binary form");
    cr_assert_eq(cdc_event_decode_as(schema, p, (size_t)(end - p), true, ev, err, sizeof err), 0,
                 "%s", err);
    ev->op = 'r'; /* the insert stands for a load's read of the same row */
    cr_assert_eq(batch_add(b, schema, ev, err, sizeof err), 0, "%s", err);
    cr_assert(batch_binary(b) && batch_only_reads(b));
}

static void write_batch(target *t, const batch *b)
{
    cr_assert_eq(target_begin(t, err, sizeof err), TARGET_OK, "%s", err);
    cr_assert_eq(target_prepare_table(t, schema, true, err, sizeof err), TARGET_OK, "%s", err);
    cr_assert_eq(target_apply_batch(t, schema, b, err, sizeof err), TARGET_OK, "%s", err);
    cr_assert_eq(target_commit(t, err, sizeof err), TARGET_OK, "%s", err);
}

Test(target, binary_reads_go_through_the_stage_into_a_column_whose_type_changed)
{
    th_sql(src, "INSERT INTO t VALUES (2), (70000)");
    th_msgs *m = th_read_topic(broker.bootstrap, TOPIC, 3, 30000, reg);
    cr_assert_eq(m->n, 3, "%zu events, want 3", m->n);
    cdc_event ev;
    cdc_event_init(&ev);

    /* Created for the load with the source's types: straight in. */
    batch *b = batch_new(schema);
    add_read(b, &m->v[0], &ev);
    write_batch(owners[0], b);
    cr_assert_eq(th_sql_long(dst, "SELECT id FROM t"), 1);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM cdc.apply_deferred_keys"), 1);

    th_sql(dst, "ALTER TABLE t ALTER COLUMN id TYPE real");
    batch_clear(b);
    add_read(b, &m->v[1], &ev);
    add_read(b, &m->v[2], &ev);
    write_batch(owners[0], b);
    char *ids = th_sql_value(dst, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t");
    cr_assert_str_eq(ids, "1,2,70000", "read as real's bits, 2 would be 2.8e-45");
    free(ids);
    cr_assert_eq(th_sql_long(dst, "SELECT count(*) FROM cdc.apply_deferred_keys"), 1,
                 "the table still waits for its key");

    batch_destroy(b);
    cdc_event_free(&ev);
    th_msgs_free(m);
}
