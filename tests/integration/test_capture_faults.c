/*
 * cdc-capture under faults: kill -9, broker outage, PostgreSQL restart,
 * SIGTERM, configuration errors, idle slots and memory under a huge
 * transaction. The invariant everywhere: every committed change reaches
 * Kafka at least once.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cdc/lsn.h"
#include "harness_cdc.h"

static th_pg pg;
static th_broker broker;
static th_proc cap;
static PGconn *db;
static cdc_registry *reg;

static void setup(void)
{
    th_pg_start(&pg);
    th_pg_createdb(&pg, "src");
    db = th_pg_connect(&pg, "src");
    th_broker_start(&broker, 1);
    reg = cdc_registry_new();
    th_sql(db, "CREATE TABLE pay (id bigint PRIMARY KEY, amount numeric(18,2), memo text)");
}

static void teardown(void)
{
    if (cap.pid)
        th_proc_stop(&cap, 10000);
    if (db)
        PQfinish(db);
    cdc_registry_destroy(reg);
    th_broker_stop(&broker);
    th_pg_stop(&pg);
}

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 300);

/* Insert ids [from, to] in transactions of `per_txn` rows. */
static void insert_range(PGconn *c, int from, int to, int per_txn)
{
    for (int i = from; i <= to; i += per_txn) {
        int last = i + per_txn - 1 < to ? i + per_txn - 1 : to;
        th_sql(c, "INSERT INTO pay SELECT g, g / 100.0, 'p' || g FROM generate_series(%d, %d) g", i,
               last);
    }
}

/* Every id in [1, n] appears in the topic at least once as an insert. */
static void assert_all_ids(int n)
{
    char topic[256];
    th_topic("public", "pay", topic, sizeof topic);
    /* Everything up to the end offsets: repeats are allowed, gaps are not. */
    th_msgs *m = th_read_topic(broker.bootstrap, topic, 0, 60000, NULL);
    char *seen = calloc((size_t)n + 1, 1);
    int distinct = 0;
    for (size_t i = 0; i < m->n; i++) {
        /* Key body: single-object header (10 bytes) + zig-zag varint id. */
        const uint8_t *k = m->v[i].key;
        cr_assert(k && m->v[i].key_len > 10);
        uint64_t u = 0;
        int shift = 0;
        for (size_t j = 10; j < m->v[i].key_len; j++, shift += 7) {
            u |= (uint64_t)(k[j] & 0x7f) << shift;
            if (!(k[j] & 0x80))
                break;
        }
        int64_t id = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
        cr_assert(id >= 1 && id <= n, "unexpected id %lld", (long long)id);
        if (!seen[id]++)
            distinct++;
    }
    int missing = 0, first_missing = 0;
    for (int i = 1; i <= n; i++)
        if (!seen[i] && !missing++)
            first_missing = i;
    cr_assert_eq(missing, 0,
                 "%d of %d committed rows missing from Kafka (first: id %d); %zu "
                 "messages read",
                 missing, n, first_missing, m->n);
    cr_assert_eq(distinct, n);
    free(seen);
    th_msgs_free(m);
}

Test(faults, kill_9_mid_stream_then_restart_loses_nothing)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture1.log", NULL);
    /* A long stream: 20,000 rows in 400 transactions, capture killed twice. */
    PGconn *w = th_pg_connect(&pg, "src");
    insert_range(w, 1, 6000, 50);
    kill(cap.pid, SIGKILL);
    th_proc_wait(&cap, 10000, NULL);
    insert_range(w, 6001, 12000, 50);
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture2.log", NULL);
    insert_range(w, 12001, 16000, 50);
    usleep(200 * 1000); /* mid-stream */
    kill(cap.pid, SIGKILL);
    th_proc_wait(&cap, 10000, NULL);
    insert_range(w, 16001, 20000, 50);
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture3.log", NULL);
    uint64_t end = th_wal_lsn(w);
    cr_assert(th_wait_slot(w, "cdc", end, 120000), "slot did not catch up");
    PQfinish(w);
    assert_all_ids(20000);
}

Test(faults, broker_down_for_10s_then_up_loses_nothing)
{
    if (th_broker_external())
        cr_skip_test("fault injection needs cdc-devbroker");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    insert_range(db, 1, 2000, 100);
    cr_assert(th_wait_slot(db, "cdc", th_wal_lsn(db), 60000));
    th_broker_cmd(&broker, "down 1");
    insert_range(db, 2001, 5000, 100);
    uint64_t end = th_wal_lsn(db);
    sleep(10);
    cr_assert_lt(th_slot_flush(db, "cdc"), end, "nothing can be confirmed while Kafka is down");
    cr_assert_eq(th_proc_wait(&cap, 0, NULL), -1, "capture must keep running");
    th_broker_cmd(&broker, "up 1");
    cr_assert(th_wait_slot(db, "cdc", end, 120000), "capture did not resume by itself");
    assert_all_ids(5000);
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/capture.log", th_test_dir());
    cr_assert(th_wait_log(path, "Kafka unavailable", 1000), "the outage must be logged");
}

/*
 * Kafka refuses a produce request for good: the gapless guarantee stops the
 * producer, and cdc-capture rebuilds it and reads the slot again. The
 * server's keepalives of the failed session carry a WAL end past the
 * undelivered rows: the next session must not confirm it before it has
 * delivered them again. Kafka then answers slowly (1.5 s per request), and
 * cdc-capture is killed the moment the slot moves: whatever it confirmed
 * must be in Kafka.
 */
Test(faults, failed_deliveries_restart_the_stream_without_confirming_undelivered_rows)
{
    if (th_broker_external())
        cr_skip_test("fault injection needs cdc-devbroker");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture1.log", NULL);
    insert_range(db, 1, 1000, 100);
    cr_assert(th_wait_slot(db, "cdc", th_wal_lsn(db), 60000));
    th_broker_cmd(&broker, "fail-produce 1 87"); /* INVALID_RECORD */
    insert_range(db, 1001, 2000, 100);
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/capture1.log", th_test_dir());
    cr_assert(th_wait_log(path, "restarting the stream", 30000),
              "failed deliveries must restart the stream");
    uint64_t before = th_slot_flush(db, "cdc");
    th_broker_cmd(&broker, "rtt 1 1500");
    int64_t end = th_now_ms() + 60000;
    while (th_slot_flush(db, "cdc") <= before) {
        cr_assert_lt(th_now_ms(), end, "capture confirmed nothing after the outage");
        usleep(20 * 1000);
    }
    kill(cap.pid, SIGKILL);
    th_proc_wait(&cap, 10000, NULL);
    th_broker_cmd(&broker, "rtt 1 0");
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture2.log", NULL);
    cr_assert(th_wait_slot(db, "cdc", th_wal_lsn(db), 120000), "capture did not catch up");
    assert_all_ids(2000);
}

Test(faults, postgres_restart_mid_stream_reconnects_and_resumes)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    insert_range(db, 1, 3000, 100);
    PQfinish(db);
    th_pg_restart(&pg);
    db = th_pg_connect(&pg, "src");
    insert_range(db, 3001, 6000, 100);
    cr_assert(th_wait_slot(db, "cdc", th_wal_lsn(db), 120000), "capture did not resume");
    assert_all_ids(6000);
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/capture.log", th_test_dir());
    cr_assert(th_wait_log(path, "source connection restored", 1000));
    cr_assert_eq(th_proc_wait(&cap, 0, NULL), -1, "capture must keep running");
}

Test(faults, sigterm_exits_zero_and_confirms_what_kafka_has)
{
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL);
    insert_range(db, 1, 1000, 100);
    cr_assert(th_wait_slot(db, "cdc", th_wal_lsn(db), 60000));
    th_proc_kill(&cap, SIGTERM);
    int status;
    cr_assert_eq(th_proc_wait(&cap, 40000, &status), 0, "no exit after SIGTERM");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    char path[TH_PATH_MAX], buf[65536];
    snprintf(path, sizeof path, "%s/capture.log", th_test_dir());
    FILE *f = fopen(path, "r");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    const char *line = strstr(buf, "stopped; confirmed flush LSN ");
    cr_assert_not_null(line, "%s", buf);
    char lsn_text[32];
    sscanf(line + strlen("stopped; confirmed flush LSN "), "%31s", lsn_text);
    cdc_lsn lsn;
    cr_assert_eq(cdc_lsn_parse(lsn_text, &lsn), 0, "%s", lsn_text);
    cr_assert_eq(th_slot_flush(db, "cdc"), lsn, "the slot holds the reported position");
    assert_all_ids(1000);
}

/*
 * A server (or pooler) that accepts the connection and never answers held
 * both daemons in libpq's connect for ever, deaf to SIGTERM: without a
 * connect_timeout of their own, none was set. They now give up after 10 s,
 * say so, retry, and stop on SIGTERM.
 */
Test(faults, a_server_that_never_answers_times_out_and_sigterm_still_stops)
{
    int port, fd = th_silent_listener(&port);
    char ci[256], ti[256];
    snprintf(ci, sizeof ci, "source.conninfo=host=127.0.0.1 port=%d dbname=src sslmode=disable",
             port);
    snprintf(ti, sizeof ti, "target.conninfo=host=127.0.0.1 port=%d dbname=dst sslmode=disable",
             port);
    th_capture_spawn(&cap, &pg, "src", broker.bootstrap, "capture.log", NULL,
                     (const char *const[]){ci, NULL});
    th_proc app = {0};
    th_apply_start(&app, &pg, "src", broker.bootstrap, "apply.log",
                   (const char *const[]){ti, NULL});
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/capture.log", th_test_dir());
    cr_assert(th_wait_log(path, "timeout expired", 30000), "cdc-capture never gave up");
    snprintf(path, sizeof path, "%s/apply.log", th_test_dir());
    cr_assert(th_wait_log(path, "timeout expired", 30000), "cdc-apply never gave up");
    th_proc *procs[] = {&cap, &app};
    for (int i = 0; i < 2; i++) {
        th_proc_kill(procs[i], SIGTERM);
        int status;
        cr_assert_eq(th_proc_wait(procs[i], 15000, &status), 0, "%s: no exit after SIGTERM",
                     procs[i]->logfile);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    }
    close(fd);
}

Test(faults, idle_published_table_does_not_pin_wal)
{
    th_sql(db, "CREATE TABLE other (id int, pad text)");
    const char *extra[] = {"tables=public.pay", NULL};
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", extra);
    insert_range(db, 1, 10, 10);
    /* Lots of WAL from a table that is not published. */
    th_sql(db, "INSERT INTO other SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g");
    uint64_t end = th_wal_lsn(db);
    cr_assert(th_wait_slot(db, "cdc", end, 60000),
              "the slot must follow the WAL end from keepalives when nothing is in flight");
}

Test(faults, bad_configuration_exits_2_naming_the_key)
{
    struct {
        const char *arg;
        const char *expect;
    } cases[] = {
        {"no.such.key=1", "no.such.key"},
        {"topic.partitions=many", "topic.partitions"},
        {"kafka.bogus.property=1", "kafka.bogus.property"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char log[64];
        snprintf(log, sizeof log, "config%zu.log", i);
        char *argv[] = {CDC_BIN_DIR "/cdc-capture",
                        "-s",
                        "source.conninfo=dbname=x",
                        "-s",
                        "kafka.bootstrap.servers=127.0.0.1:1",
                        "-s",
                        (char *)cases[i].arg,
                        NULL};
        th_proc p;
        th_spawn(&p, log, argv);
        int status;
        cr_assert_eq(th_proc_wait(&p, 10000, &status), 0);
        cr_assert_eq(th_proc_exit_code(&p), 2, "%s: exit %d", cases[i].arg, th_proc_exit_code(&p));
        char path[TH_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", th_test_dir(), log);
        cr_assert(th_wait_log(path, cases[i].expect, 1000), "error must name %s", cases[i].expect);
    }
    char *argv[] = {CDC_BIN_DIR "/cdc-capture", "-s", "kafka.bootstrap.servers=x:1", NULL};
    th_proc p;
    th_spawn(&p, "missing.log", argv);
    th_proc_wait(&p, 10000, NULL);
    cr_assert_eq(th_proc_exit_code(&p), 2);
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/missing.log", th_test_dir());
    cr_assert(th_wait_log(path, "source.conninfo", 1000));
}

static long rss_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, strlen(field)) == 0)
            v = strtol(line + strlen(field) + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

Test(faults, one_huge_transaction_keeps_memory_bounded)
{
    /* 400,000 rows in one transaction, with a 4 MB producer queue: memory
     * must stay near the queue bound, not grow with the transaction. */
    const char *extra[] = {"kafka.queue.buffering.max.kbytes=4096", NULL};
    th_capture_start(&cap, &pg, "src", broker.bootstrap, "capture.log", extra);
    long base = rss_kib(cap.pid, "VmRSS:");
    th_sql(db, "INSERT INTO pay SELECT g, g / 100.0, repeat('m', 100) "
               "FROM generate_series(1, 400000) g");
    cr_assert(th_wait_slot(db, "cdc", th_wal_lsn(db), 240000), "huge transaction not confirmed");
    long peak = rss_kib(cap.pid, "VmHWM:");
    cr_log_info("capture RSS: %ld KiB at start, %ld KiB peak for ~60 MB of events", base, peak);
#if defined(__SANITIZE_ADDRESS__)
    long bound = 400 * 1024; /* ASan's shadow memory and quarantine */
#else
    long bound = 64 * 1024;
#endif
    cr_assert_lt(peak, bound, "peak RSS %ld KiB: memory grows with the transaction", peak);
}
