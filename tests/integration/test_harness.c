/*
 * The harness itself, against real servers: if these fail, every other
 * integration suite's failures mean nothing.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cdc/avro_bin.h"
#include "cdc/fingerprint.h"
#include "harness.h"

/* ---- PostgreSQL ----------------------------------------------------------- */

static th_pg pg;

static void pg_up(void)
{
    th_pg_start(&pg);
}

static void pg_down(void)
{
    th_pg_stop(&pg);
}

TestSuite(pg, .init = pg_up, .fini = pg_down, .timeout = 180);

Test(pg, runs_statements_and_returns_values)
{
    PGconn *c = th_pg_connect(&pg, "postgres");
    th_sql(c, "CREATE TABLE t (id int PRIMARY KEY, name text)");
    th_sql(c, "INSERT INTO t VALUES (1, 'a'), (2, %s)", "NULL");
    char *n = th_sql_value(c, "SELECT count(*) FROM t");
    cr_expect_str_eq(n, "2");
    free(n);
    cr_expect_null(th_sql_value(c, "SELECT name FROM t WHERE id = 2"), "SQL NULL is NULL");
    cr_expect_null(th_sql_value(c, "SELECT name FROM t WHERE id = 3"), "no row is NULL");
    PQfinish(c);
}

Test(pg, is_configured_for_logical_replication)
{
    PGconn *c = th_pg_connect(&pg, "postgres");
    char *level = th_sql_value(c, "SHOW wal_level");
    cr_expect_str_eq(level, "logical");
    free(level);
    char *slot = th_sql_value(
        c, "SELECT slot_name FROM pg_create_logical_replication_slot('s', 'pgoutput')");
    cr_expect_str_eq(slot, "s");
    free(slot);
    char *plugin = th_sql_value(c, "SELECT plugin FROM pg_replication_slots WHERE slot_name = 's'");
    cr_expect_str_eq(plugin, "pgoutput");
    free(plugin);
    PQfinish(c);
}

Test(pg, accepts_walsender_connections)
{
    char ci[TH_PATH_MAX];
    char repl[TH_PATH_MAX + 32];
    th_pg_conninfo(&pg, "postgres", ci, sizeof ci);
    snprintf(repl, sizeof repl, "%s replication=database", ci);
    PGconn *c = PQconnectdb(repl);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "IDENTIFY_SYSTEM");
    cr_expect_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

Test(pg, restart_keeps_data_port_and_slots)
{
    if (th_pg_external())
        cr_skip_test("about clusters the harness starts");
    PGconn *c = th_pg_connect(&pg, "postgres");
    th_sql(c, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)");
    th_sql(c, "SELECT pg_create_logical_replication_slot('r', 'pgoutput')");
    PQfinish(c);
    int port = pg.port;
    pid_t before = pg.pid;

    th_pg_restart(&pg);

    cr_expect_eq(pg.port, port);
    cr_expect_neq(pg.pid, before, "a new postmaster");
    c = th_pg_connect(&pg, "postgres");
    char *x = th_sql_value(c, "SELECT x FROM kept");
    cr_expect_str_eq(x, "42");
    free(x);
    char *slots = th_sql_value(c, "SELECT count(*) FROM pg_replication_slots");
    cr_expect_str_eq(slots, "1");
    free(slots);
    PQfinish(c);
}

Test(pg, createdb_makes_a_connectable_database)
{
    th_pg_createdb(&pg, "Target DB");
    PGconn *c = th_pg_connect(&pg, "Target DB");
    char *db = th_sql_value(c, "SELECT current_database()");
    char name[256];
    cr_expect_str_eq(db, th_pg_dbname(&pg, "Target DB", name, sizeof name));
    free(db);
    PQfinish(c);
}

Test(pg, stop_shuts_down_and_removes_the_data_directory)
{
    if (th_pg_external())
        cr_skip_test("about clusters the harness starts");
    char datadir[TH_PATH_MAX], ci[TH_PATH_MAX];
    snprintf(datadir, sizeof datadir, "%s", pg.datadir);
    th_pg_conninfo(&pg, "postgres", ci, sizeof ci);
    cr_assert_eq(PQping(ci), PQPING_OK);

    th_pg_stop(&pg);

    cr_expect_eq(PQping(ci), PQPING_NO_RESPONSE, "the server still answers");
    cr_expect_eq(pg.pid, 0);
    if (!getenv("CDC_TEST_KEEP"))
        cr_expect_neq(access(datadir, F_OK), 0, "%s still exists", datadir);
    cr_expect_eq(access(pg.logfile, F_OK), 0, "the server log is kept");
}

Test(pg, two_clusters_run_side_by_side)
{
    if (th_pg_external())
        cr_skip_test("about clusters the harness starts");
    th_pg other;
    th_pg_start(&other);
    cr_expect_neq(other.port, pg.port);
    PGconn *c = th_pg_connect(&other, "postgres");
    th_sql(c, "CREATE TABLE only_here (x int)");
    PQfinish(c);
    c = th_pg_connect(&pg, "postgres");
    char *n = th_sql_value(c, "SELECT count(*) FROM pg_class WHERE relname = 'only_here'");
    cr_expect_str_eq(n, "0");
    free(n);
    PQfinish(c);
    th_pg_stop(&other);
}

/* ---- broker --------------------------------------------------------------- */

static th_broker broker;

static void broker_up(void)
{
    th_broker_start(&broker, 2);
}

static void broker_down(void)
{
    th_broker_stop(&broker);
}

TestSuite(broker, .init = broker_up, .fini = broker_down, .timeout = 180);

Test(broker, produced_messages_are_consumed_back)
{
    const char *topic = "th.three";
    for (int i = 0; i < 3; i++) {
        char key[32], value[32];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(value, sizeof value, "value %d", i);
        th_produce(broker.bootstrap, topic, 0, key, strlen(key), value, strlen(value));
    }

    th_msgs *m = th_consume(&(th_consume_opts){.bootstrap = broker.bootstrap, .topic = topic});
    cr_assert_eq(m->n, 3);
    for (size_t i = 0; i < 3; i++) {
        char key[32], value[32];
        snprintf(key, sizeof key, "k%zu", i);
        snprintf(value, sizeof value, "value %zu", i);
        cr_expect_str_eq(m->v[i].topic, topic);
        cr_expect_eq(m->v[i].partition, 0);
        cr_expect_eq(m->v[i].offset, (int64_t)i);
        cr_expect_eq(m->v[i].key_len, strlen(key));
        cr_expect_str_eq(m->v[i].key, key);
        cr_expect_str_eq(m->v[i].value, value);
        cr_expect_null(m->v[i].value_json, "no decoding asked for");
    }
    th_msgs_free(m);
}

Test(broker, consume_waits_for_a_wanted_count_and_sees_tombstones)
{
    const char *topic = "th.tomb";
    th_produce(broker.bootstrap, topic, 0, "k", 1, "v", 1);
    th_produce(broker.bootstrap, topic, 0, "k", 1, NULL, 0);
    th_msgs *m =
        th_consume(&(th_consume_opts){.bootstrap = broker.bootstrap, .topic = topic, .want = 2});
    cr_assert_eq(m->n, 2);
    cr_expect_not_null(m->v[0].value);
    cr_expect_null(m->v[1].value, "tombstone");
    th_msgs_free(m);

    /* Wanting more than there is ends at the timeout with what there is. */
    int64_t t0 = th_now_ms();
    m = th_consume(&(th_consume_opts){
        .bootstrap = broker.bootstrap, .topic = topic, .want = 3, .timeout_ms = 2000});
    cr_expect_eq(m->n, 2);
    cr_expect_geq(th_now_ms() - t0, 2000);
    th_msgs_free(m);
}

Test(broker, consume_of_a_missing_topic_times_out_empty)
{
    th_msgs *m = th_consume(
        &(th_consume_opts){.bootstrap = broker.bootstrap, .topic = "th.never", .timeout_ms = 1500});
    cr_expect_eq(m->n, 0);
    th_msgs_free(m);
}

Test(broker, messages_are_listed_per_partition_in_offset_order)
{
    if (th_broker_external())
        cr_skip_test("needs the devbroker's create command");
    th_broker_cmd(&broker, "create %s %d", "th.parts", 2);
    th_produce(broker.bootstrap, "th.parts", 1, NULL, 0, "b0", 2);
    th_produce(broker.bootstrap, "th.parts", 0, NULL, 0, "a0", 2);
    th_produce(broker.bootstrap, "th.parts", 1, NULL, 0, "b1", 2);

    th_msgs *m = th_consume(&(th_consume_opts){.bootstrap = broker.bootstrap, .topic = "th.parts"});
    cr_assert_eq(m->n, 3);
    size_t n;
    const th_msg *p0 = th_msgs_partition(m, 0, &n);
    cr_assert_eq(n, 1);
    cr_expect_str_eq(p0[0].value, "a0");
    const th_msg *p1 = th_msgs_partition(m, 1, &n);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(p1[0].value, "b0");
    cr_expect_str_eq(p1[1].value, "b1");
    cr_expect_lt(p1[0].offset, p1[1].offset);
    cr_expect_null(th_msgs_partition(m, 2, &n));
    cr_expect_eq(n, 0);
    th_msgs_free(m);
}

Test(broker, consume_decodes_avro_through_the_schemas_topic)
{
    static const char schema[] = "{\"type\":\"record\",\"name\":\"K\",\"namespace\":\"th\","
                                 "\"fields\":[{\"name\":\"id\",\"type\":\"long\"},"
                                 "{\"name\":\"s\",\"type\":\"string\"}]}";
    char err[256], hex[17];
    uint64_t fp;
    cr_assert_eq(cdc_avro_fingerprint(schema, &fp, err, sizeof err), 0, "%s", err);
    cdc_fingerprint_hex(fp, hex);

    cdc_buf b;
    cdc_buf_init(&b);
    cdc_avro_put_so_header(&b, fp);
    cdc_avro_put_long(&b, 7);
    cdc_avro_put_cstring(&b, "seven");
    /* th_consume starts with an empty registry: the first event makes it read
     * the schemas topic. */
    th_produce(broker.bootstrap, "thx.public.k", 0, b.data, b.len, b.data, b.len);
    th_produce(broker.bootstrap, "thx.public.k", 0, "plain", 5, NULL, 0);
    th_produce(broker.bootstrap, "thx._schemas", 0, hex, 16, schema, strlen(schema));
    cdc_buf_free(&b);

    th_msgs *m = th_consume(&(th_consume_opts){
        .bootstrap = broker.bootstrap, .topic = "thx.public.k", .schema_prefix = "thx"});
    cr_assert_eq(m->n, 2);
    cr_expect_null(m->v[0].decode_error, "%s", m->v[0].decode_error);
    cr_expect_str_eq(m->v[0].value_json, "{\"id\": 7, \"s\": \"seven\"}");
    cr_expect_str_eq(m->v[0].key_json, "{\"id\": 7, \"s\": \"seven\"}");
    cr_expect_null(m->v[1].key_json, "a plain key is left alone");
    cr_expect_null(m->v[1].value_json, "tombstone");
    cr_expect_null(m->v[1].decode_error);
    th_msgs_free(m);
}

Test(broker, fault_commands_take_a_broker_down_and_up)
{
    if (th_broker_external())
        cr_skip_test("fault injection needs cdc-devbroker");
    char reply[256];
    th_broker_cmd(&broker, "down 1");
    th_broker_cmd(&broker, "up 1");
    th_broker_cmd(&broker, "rtt 2 10");
    cr_expect_eq(th_broker_request(&broker, "down 9", reply, sizeof reply), -1);
    cr_expect(strncmp(reply, "error: ", 7) == 0, "reply: %s", reply);
    cr_expect_eq(th_broker_request(&broker, "explode", reply, sizeof reply), -1);
    cr_expect(strstr(reply, "explode") != NULL, "reply: %s", reply);

    /* Still serving after the fault. */
    th_produce(broker.bootstrap, "th.after", 0, NULL, 0, "x", 1);
    th_msgs *m = th_consume(&(th_consume_opts){.bootstrap = broker.bootstrap, .topic = "th.after"});
    cr_expect_eq(m->n, 1);
    th_msgs_free(m);
}

Test(broker, devbroker_exits_cleanly_on_sigterm)
{
    if (th_broker_external())
        cr_skip_test("needs cdc-devbroker");
    cr_expect_eq(th_broker_stop(&broker), 0);
    cr_expect(th_wait_log(broker.proc.logfile, "stopped", 0), "log says it stopped");
}

/* ---- processes ------------------------------------------------------------- */

Test(proc, spawn_logs_output_and_reports_the_exit_code, .timeout = 60)
{
    th_proc p;
    char *argv[] = {"sh", "-c", "echo hello from the child; echo oops >&2; exit 3", NULL};
    th_spawn(&p, "child.log", argv);
    int status;
    cr_assert_eq(th_proc_wait(&p, 10000, &status), 0);
    cr_expect(WIFEXITED(status));
    cr_expect_eq(th_proc_exit_code(&p), 3);
    cr_expect(th_wait_log(p.logfile, "hello from the child", 1000));
    cr_expect(th_wait_log(p.logfile, "oops", 1000));
}

Test(proc, stop_kills_a_process_that_ignores_sigterm, .timeout = 60)
{
    th_proc p;
    char *argv[] = {"sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done", NULL};
    th_spawn(&p, "stubborn.log", argv);
    cr_assert(th_wait_log(p.logfile, "ready", 10000));
    cr_expect_eq(th_proc_wait(&p, 100, NULL), -1, "still running");
    th_proc_stop(&p, 500);
    cr_expect_eq(th_proc_exit_code(&p), 128 + SIGKILL);
    cr_expect_eq(th_proc_kill(&p, SIGTERM), -1, "reaped");
}

Test(proc, exec_failure_exits_127, .timeout = 60)
{
    th_proc p;
    char *argv[] = {"/nonexistent/program", NULL};
    th_spawn(&p, "missing.log", argv);
    cr_assert_eq(th_proc_wait(&p, 10000, NULL), 0);
    cr_expect_eq(th_proc_exit_code(&p), 127);
}
