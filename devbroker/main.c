/*
 * cdc-devbroker: a throwaway Kafka-protocol broker for demos and tests.
 *
 * It is librdkafka's mock cluster (rd_kafka_mock_cluster_new) wrapped in a
 * process, so integration tests and `make demo` need no JVM. The mock runs in
 * its own thread inside a producer handle; this file only parses options,
 * prints the bootstrap string and turns stdin lines into fault injections.
 *
 * Protocol on stdout/stdin, for tests that drive it through pipes:
 *   - the first stdout line is the bootstrap.servers string;
 *   - each non-empty stdin line is one command, answered by exactly one
 *     stdout line, "ok" or "error: <reason>":
 *       down ID            take broker ID down (connections are closed)
 *       up ID              bring broker ID back
 *       rtt ID MS          add MS milliseconds of round-trip delay
 *       create TOPIC N     create TOPIC with N partitions (replication 1)
 *       fail-produce N ERR the next N produce requests fail with Kafka
 *                          error code ERR (e.g. 87, INVALID_RECORD)
 *   - EOF on stdin is not a stop request: tests may close the pipe early, and
 *     the broker must outlive that. Only SIGINT/SIGTERM stop it.
 *
 * The mock keeps a bounded log per partition (older message sets are dropped)
 * and is not durable; it is no substitute for a real cluster in soak tests.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "cdc/log.h"

#ifndef CDC_VERSION
#define CDC_VERSION "dev"
#endif

#define PROGRAM "cdc-devbroker"
#define MAX_BROKERS 16
#define CMD_LINE_MAX 1024

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROGRAM " [--brokers N]\n"
            "\n"
            "Run an in-process Kafka mock cluster on 127.0.0.1 until SIGINT or SIGTERM.\n"
            "The first line on stdout is the bootstrap.servers string.\n"
            "\n"
            "Options:\n"
            "  -b, --brokers N   number of brokers, 1..%d (default 1)\n"
            "  -h, --help        show this help and exit\n"
            "  -V, --version     show the version and exit\n"
            "\n"
            "Commands on stdin (each answered by \"ok\" or \"error: ...\"):\n"
            "  down ID | up ID | rtt ID MS | create TOPIC PARTITIONS\n"
            "  fail-produce COUNT ERRCODE (the next COUNT produce requests fail)\n",
            MAX_BROKERS);
}

/* Parse a whole decimal integer in [min, max]; returns 0 or -1. */
static int parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Route librdkafka's own log lines through our format on stderr. */
static void on_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* The handle only hosts the mock; it never connects anywhere, so the
     * warning that it has no bootstrap.servers is noise. */
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers"))
        return;
    cdc_log_level l = level <= 3   ? CDC_LOG_ERROR
                      : level <= 4 ? CDC_LOG_WARN
                      : level <= 6 ? CDC_LOG_INFO
                                   : CDC_LOG_DEBUG;
    cdc_log(l, "librdkafka %s: %s", fac, buf);
}

/*
 * Execute one command line (no trailing newline) against the cluster and
 * write the reply into `reply`.
 */
static void run_command(rd_kafka_mock_cluster_t *mc, int nbrokers, char *line, char *reply,
                        size_t reply_size)
{
    char *save = NULL;
    char *verb = strtok_r(line, " \t", &save);
    char *args[3] = {NULL, NULL, NULL};
    int nargs = 0;
    char *tok;
    while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
        if (nargs == 3) {
            snprintf(reply, reply_size, "error: too many arguments");
            return;
        }
        args[nargs++] = tok;
    }

    rd_kafka_resp_err_t err;
    long id, n;
    bool is_broker_cmd =
        strcmp(verb, "down") == 0 || strcmp(verb, "up") == 0 || strcmp(verb, "rtt") == 0;
    if (is_broker_cmd) {
        int want = strcmp(verb, "rtt") == 0 ? 2 : 1;
        if (nargs != want) {
            snprintf(reply, reply_size, "error: usage: %s ID%s", verb, want == 2 ? " MS" : "");
            return;
        }
        /* The mock numbers its brokers 1..N; it would silently accept an
         * unknown id for some commands, so check here. */
        if (parse_int(args[0], 1, nbrokers, &id) != 0) {
            snprintf(reply, reply_size, "error: no broker '%s' (ids are 1..%d)", args[0], nbrokers);
            return;
        }
        if (want == 2 && parse_int(args[1], 0, INT_MAX, &n) != 0) {
            snprintf(reply, reply_size, "error: bad rtt '%s' (milliseconds)", args[1]);
            return;
        }
        if (verb[0] == 'd')
            err = rd_kafka_mock_broker_set_down(mc, (int32_t)id);
        else if (verb[0] == 'u')
            err = rd_kafka_mock_broker_set_up(mc, (int32_t)id);
        else
            err = rd_kafka_mock_broker_set_rtt(mc, (int32_t)id, (int)n);
    } else if (strcmp(verb, "create") == 0) {
        if (nargs != 2) {
            snprintf(reply, reply_size, "error: usage: create TOPIC PARTITIONS");
            return;
        }
        if (parse_int(args[1], 1, 100000, &n) != 0) {
            snprintf(reply, reply_size, "error: bad partition count '%s'", args[1]);
            return;
        }
        err = rd_kafka_mock_topic_create(mc, args[0], (int)n, 1);
    } else if (strcmp(verb, "fail-produce") == 0) {
        long code;
        if (nargs != 2 || parse_int(args[0], 1, 1000000, &n) != 0 ||
            parse_int(args[1], 1, 32767, &code) != 0) {
            snprintf(reply, reply_size, "error: usage: fail-produce COUNT ERRCODE");
            return;
        }
        rd_kafka_resp_err_t *codes = calloc((size_t)n, sizeof *codes);
        if (!codes) {
            snprintf(reply, reply_size, "error: out of memory");
            return;
        }
        for (long i = 0; i < n; i++)
            codes[i] = (rd_kafka_resp_err_t)code;
        rd_kafka_mock_push_request_errors_array(mc, 0 /* Produce */, (size_t)n, codes);
        free(codes);
        err = RD_KAFKA_RESP_ERR_NO_ERROR;
    } else {
        snprintf(reply, reply_size, "error: unknown command '%s'", verb);
        return;
    }

    if (err) {
        snprintf(reply, reply_size, "error: %s", rd_kafka_err2str(err));
        cdc_warn("command '%s' failed: %s", verb, rd_kafka_err2str(err));
        return;
    }
    cdc_info("command done: %s%s%s%s%s", verb, nargs > 0 ? " " : "", nargs > 0 ? args[0] : "",
             nargs > 1 ? " " : "", nargs > 1 ? args[1] : "");
    snprintf(reply, reply_size, "ok");
}

/*
 * Handle every complete line in buf[0..*len); keep a trailing partial line.
 * A line longer than the buffer is answered with an error and discarded up to
 * its newline (`*skipping` remembers that across reads).
 */
static void handle_input(rd_kafka_mock_cluster_t *mc, int nbrokers, char *buf, size_t *len,
                         bool *skipping)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(buf + start, '\n', *len - start);
        if (!nl)
            break;
        *nl = '\0';
        char *line = buf + start;
        start = (size_t)(nl - buf) + 1;
        if (*skipping) {
            *skipping = false;
            continue;
        }
        size_t l = strlen(line);
        while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t'))
            line[--l] = '\0';
        if (strspn(line, " \t") == l)
            continue; /* blank lines get no answer */
        char reply[CMD_LINE_MAX + 64];
        run_command(mc, nbrokers, line, reply, sizeof reply);
        printf("%s\n", reply);
        fflush(stdout);
    }
    memmove(buf, buf + start, *len - start);
    *len -= start;
    if (*len == CMD_LINE_MAX) {
        printf("error: command line too long\n");
        fflush(stdout);
        *len = 0;
        *skipping = true;
    }
}

/*
 * Wait for commands until a stop signal. The stop signals are blocked except
 * inside ppoll(), so a signal arriving between the flag check and the wait
 * still interrupts the wait instead of being noticed only at the next line.
 */
static void serve(rd_kafka_mock_cluster_t *mc, int nbrokers, const sigset_t *unblocked)
{
    char buf[CMD_LINE_MAX];
    size_t len = 0;
    bool skipping = false;
    bool stdin_open = true;

    while (!stop_requested) {
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = ppoll(&pfd, stdin_open ? 1 : 0, NULL, unblocked);
        if (r < 0) {
            if (errno != EINTR)
                cdc_warn("ppoll: %s", strerror(errno));
            continue;
        }
        if (!stdin_open || r == 0)
            continue;
        ssize_t n = read(STDIN_FILENO, buf + len, sizeof buf - len);
        if (n < 0) {
            if (errno != EINTR && errno != EAGAIN) {
                cdc_warn("stdin: %s; no more commands", strerror(errno));
                stdin_open = false;
            }
            continue;
        }
        if (n == 0) {
            cdc_info("stdin closed; running until SIGINT/SIGTERM");
            stdin_open = false;
            continue;
        }
        len += (size_t)n;
        handle_input(mc, nbrokers, buf, &len, &skipping);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    long nbrokers = 1;
    int c;

    cdc_log_init(PROGRAM);
    opterr = 0; /* we name the bad option ourselves */
    while ((c = getopt_long(argc, argv, ":b:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (parse_int(optarg, 1, MAX_BROKERS, &nbrokers) != 0) {
                fprintf(stderr, PROGRAM ": invalid --brokers '%s' (1..%d)\n", optarg, MAX_BROKERS);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf(PROGRAM " " CDC_VERSION "\n");
            return 0;
        case ':':
            fprintf(stderr, PROGRAM ": option '%s' needs an argument\n", argv[optind - 1]);
            return 2;
        default:
            /* optopt names an unknown short option; it is 0 for long ones. */
            if (optopt)
                fprintf(stderr, PROGRAM ": unknown option '-%c'\n", optopt);
            else
                fprintf(stderr, PROGRAM ": unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROGRAM ": unexpected argument '%s'\n", argv[optind]);
        return 2;
    }

    /* Block the stop signals before librdkafka starts threads so they are
     * delivered to this thread only, inside ppoll(). */
    sigset_t stopsigs, unblocked;
    sigemptyset(&stopsigs);
    sigaddset(&stopsigs, SIGINT);
    sigaddset(&stopsigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &stopsigs, &unblocked);
    sigdelset(&unblocked, SIGINT);
    sigdelset(&unblocked, SIGTERM);
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A reader that went away must not kill us through SIGPIPE on stdout. */
    signal(SIGPIPE, SIG_IGN);

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, on_rdkafka_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        cdc_error("cannot create the librdkafka handle: %s", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)nbrokers);
    if (!mc) {
        cdc_error("cannot create the mock cluster");
        rd_kafka_destroy(rk);
        return 1;
    }
    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    printf("%s\n", bootstrap);
    fflush(stdout);
    cdc_info("%ld broker(s) listening on %s", nbrokers, bootstrap);

    serve(mc, (int)nbrokers, &unblocked);

    cdc_info("stopping");
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    cdc_info("stopped");
    return 0;
}
