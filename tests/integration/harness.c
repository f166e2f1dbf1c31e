/*
 * Integration-test harness (see harness.h for how it fits Criterion).
 *
 * Three kinds of cleanup, because a test can end in three ways: th_*_stop in
 * the test's .fini (normal); an atexit handler in the worker (an assertion
 * failed before .fini could stop something); and report hooks in the runner
 * process (the worker crashed or was killed, so nothing in it ran). The
 * runner finds what to clean up in the test's directory: log files, and one
 * symlink per PostgreSQL cluster pointing at the cluster directory, whose
 * data/postmaster.pid names the server to kill.
 *
 * Cluster directories are not nested in the test directory because the unix
 * socket path (dir + "/.s.PGSQL.NNNNN") must stay under 108 bytes.
 *
 * Code between fork() and exec() only makes system calls: the worker has
 * librdkafka threads, so anything that might take a lock (malloc, stdio,
 * getpwnam) happens before fork().
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "cdc/buf.h"

#ifndef CDC_BIN_DIR
#define CDC_BIN_DIR "build/bin"
#endif

#define RUN_DIR_ENV "CDC_TH_RUN_DIR"
#define DEFAULT_PG_BIN "/usr/lib/postgresql/15/bin"
#define PG_START_ATTEMPTS 5
#define MAX_CLUSTERS 16
#define FAIL_LOG_LINES 40

/* ---- small utilities ---------------------------------------------------- */

int64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static bool keep_files(void)
{
    const char *k = getenv("CDC_TEST_KEEP");
    return k && *k && strcmp(k, "0") != 0;
}

static bool path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

/* rm -rf; symlinks are removed, not followed. */
static void rmtree(const char *path)
{
    if (path_exists(path))
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Alive and not a zombie (a postmaster whose parent never reaps it). */
static bool proc_alive(pid_t pid)
{
    if (pid <= 0 || kill(pid, 0) != 0)
        return false;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return !(paren && paren[1] == ' ' && paren[2] == 'Z');
}

/* Read the first line of a file as a pid; 0 if there is none. */
static pid_t read_pid_file(const char *path)
{
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

/* SIGQUIT (PostgreSQL's immediate shutdown), then SIGKILL after 5 s. */
static void kill_postmaster(pid_t pid)
{
    if (!proc_alive(pid))
        return;
    kill(pid, SIGQUIT);
    for (int i = 0; i < 100 && proc_alive(pid); i++)
        sleep_ms(50);
    if (proc_alive(pid))
        kill(pid, SIGKILL);
}

static char *xvasprintf(const char *fmt, va_list ap)
{
    char *s;
    if (vasprintf(&s, fmt, ap) < 0) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    return s;
}

/* snprintf for paths: a truncated path would name the wrong file, so fail. */
static void fmt_path(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fmt_path(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        cr_assert_fail("path too long: %s...", out);
}

static void sanitize_name(char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
            *s = '_';
}

void th_log_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "---- %s: %s ----\n", path, strerror(errno));
        return;
    }
    /* Read the last 64 KB at most; enough for any sensible line count. */
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long start = size > 65536 ? size - 65536 : 0;
    fseek(f, start, SEEK_SET);
    char *buf = cdc_xmalloc((size_t)(size - start) + 1);
    size_t n = fread(buf, 1, (size_t)(size - start), f);
    fclose(f);
    buf[n] = '\0';
    const char *p = buf + n;
    int seen = 0;
    if (p > buf && p[-1] == '\n')
        p--;
    while (p > buf) {
        if (p[-1] == '\n' && ++seen == lines)
            break;
        p--;
    }
    fprintf(stderr, "---- last %d lines of %s ----\n%s%s---- end of %s ----\n", lines, path, p,
            (n > 0 && buf[n - 1] != '\n') ? "\n" : "", path);
    free(buf);
}

bool th_wait_log(const char *path, const char *needle, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    do {
        FILE *f = fopen(path, "r");
        if (f) {
            cdc_buf b;
            cdc_buf_init(&b);
            char chunk[4096];
            size_t n;
            while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
                cdc_buf_append(&b, chunk, n);
            fclose(f);
            bool found = b.len > 0 && strstr(cdc_buf_cstr(&b), needle) != NULL;
            cdc_buf_free(&b);
            if (found)
                return true;
        }
        sleep_ms(50);
    } while (th_now_ms() < deadline);
    return false;
}

/* ---- per-run and per-test directories ---------------------------------- */

static const char *tmp_base(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

static char test_dir[TH_PATH_MAX];

/* Without the runner hooks (harness used outside Criterion's runner). */
static char fallback_run_dir[TH_PATH_MAX];

static void cleanup_test_dir(const char *dir, bool failed);

static void remove_fallback_run_dir(void)
{
    if (fallback_run_dir[0] && !keep_files()) {
        cleanup_test_dir(test_dir, false); /* follows the links to clusters */
        rmtree(fallback_run_dir);
    }
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        cr_assert_fail("mkdir %s: %s", path, strerror(errno));
    /* The postgres user (when we are root) must be able to traverse it. */
    chmod(path, 0755);
}

const char *th_test_dir(void)
{
    if (test_dir[0])
        return test_dir;
    const char *run = getenv(RUN_DIR_ENV);
    if (!run || !*run) {
        snprintf(fallback_run_dir, sizeof fallback_run_dir, "%s/cdc-it-XXXXXX", tmp_base());
        if (!mkdtemp(fallback_run_dir))
            cr_assert_fail("mkdtemp %s: %s", fallback_run_dir, strerror(errno));
        chmod(fallback_run_dir, 0755);
        atexit(remove_fallback_run_dir);
        run = fallback_run_dir;
    }
    char name[256];
    if (criterion_current_test)
        snprintf(name, sizeof name, "%s.%s", criterion_current_test->category,
                 criterion_current_test->name);
    else
        snprintf(name, sizeof name, "pid%d", (int)getpid());
    sanitize_name(name);
    fmt_path(test_dir, sizeof test_dir, "%s/%s", run, name);
    make_dir(test_dir);
    return test_dir;
}

/* Relative paths are taken as relative to the test directory. */
static void test_path(char *out, size_t size, const char *path)
{
    if (path[0] == '/')
        fmt_path(out, size, "%s", path);
    else
        fmt_path(out, size, "%s/%s", th_test_dir(), path);
}

/*
 * Runner side, after each test: kill what it left running, show its logs if
 * it failed, remove its files if it passed.
 */
static void print_logs_in(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".log") == 0) {
            char path[TH_PATH_MAX * 2];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (stat(path, &st) == 0 && st.st_size > 0)
                th_log_tail(path, FAIL_LOG_LINES);
        }
    }
    closedir(d);
}

static void cleanup_test_dir(const char *dir, bool failed)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool keep = keep_files();
    if (!d)
        return;
    if (failed)
        print_logs_in(dir);
    while ((e = readdir(d)) != NULL) {
        char link[TH_PATH_MAX * 2], target[TH_PATH_MAX], pidfile[TH_PATH_MAX + 32];
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        snprintf(pidfile, sizeof pidfile, "%s/data/postmaster.pid", target);
        pid_t pid = read_pid_file(pidfile);
        /* Waiting for the worker's atexit handler would be in vain: the
         * worker blocks until this hook returns. */
        if (pid > 0 && proc_alive(pid)) {
            fprintf(stderr, "harness: killing postmaster %d still running after the test\n",
                    (int)pid);
            kill_postmaster(pid);
        }
        if (failed)
            print_logs_in(target);
        if (!keep) {
            if (failed) {
                char data[TH_PATH_MAX + 8];
                snprintf(data, sizeof data, "%s/data", target);
                rmtree(data);
            } else {
                rmtree(target);
            }
        }
    }
    closedir(d);
    if (failed)
        fprintf(stderr, "harness: logs of the failed test are in %s\n", dir);
    else if (!keep)
        rmtree(dir);
}

static void runner_test_done(struct criterion_test_stats *st, bool crashed)
{
    const char *run = getenv(RUN_DIR_ENV);
    if (!run || !st || !st->test)
        return;
    char name[256], dir[TH_PATH_MAX + 256];
    snprintf(name, sizeof name, "%s.%s", st->test->category, st->test->name);
    sanitize_name(name);
    snprintf(dir, sizeof dir, "%s/%s", run, name);
    bool failed = crashed || st->crashed || st->timed_out || st->test_status == CR_STATUS_FAILED;
    cleanup_test_dir(dir, failed);
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    char dir[TH_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/cdc-it-XXXXXX", tmp_base());
    if (!mkdtemp(dir)) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", dir, strerror(errno));
        return;
    }
    chmod(dir, 0755);
    setenv(RUN_DIR_ENV, dir, 1); /* inherited by every worker */
}

/* POST_FINI, not POST_TEST: the runner hears of the test's end before the
 * worker has run the .fini that stops the servers. */
ReportHook(POST_FINI)(struct criterion_test_stats *st)
{
    runner_test_done(st, false);
}

ReportHook(TEST_CRASH)(struct criterion_test_stats *st)
{
    runner_test_done(st, true);
}

ReportHook(POST_ALL)(struct criterion_global_stats *st)
{
    (void)st;
    const char *run = getenv(RUN_DIR_ENV);
    if (run && !keep_files())
        rmdir(run); /* only succeeds when no failed test kept its logs */
}

/* ---- running commands --------------------------------------------------- */

typedef struct run_as {
    bool drop; /* switch to uid/gid before exec */
    uid_t uid;
    gid_t gid;
} run_as;

/* As root, PostgreSQL's programs must run as `postgres`; otherwise as we are. */
static run_as pg_identity(void)
{
    run_as as = {.drop = false};
    if (geteuid() != 0)
        return as;
    struct passwd *pw = getpwnam("postgres");
    if (!pw)
        cr_assert_fail("running as root but there is no 'postgres' user to run PostgreSQL as");
    as.drop = true;
    as.uid = pw->pw_uid;
    as.gid = pw->pw_gid;
    return as;
}

static void chown_for(const char *path, run_as as)
{
    if (as.drop && chown(path, as.uid, as.gid) != 0)
        cr_assert_fail("chown %s: %s", path, strerror(errno));
}

/* In a child: become `as`; async-signal-safe calls only. */
static void child_become(run_as as)
{
    if (!as.drop)
        return;
    if (setgroups(1, &as.gid) != 0 || setgid(as.gid) != 0 || setuid(as.uid) != 0)
        _exit(126);
}

/* In a child: make stdout and stderr append to `log`, stdin /dev/null. */
static void child_redirect(const char *log)
{
    int in = open("/dev/null", O_RDONLY);
    int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0)
        _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
}

/* Close inherited descriptors (libpq and librdkafka sockets of the test). */
static void child_close_from(int fd)
{
    if (close_range((unsigned)fd, ~0U, 0) != 0) {
        for (int i = fd; i < 1024; i++)
            close(i);
    }
}

/*
 * Run argv to completion with output appended to `log`, in `cwd`, as `as`.
 * Returns the exit code, or 128 + signal.
 */
static int run_cmd(const char *const argv[], const char *log, const char *cwd, run_as as)
{
    pid_t pid = fork();
    if (pid < 0)
        cr_assert_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        child_become(as);
        if (cwd && chdir(cwd) != 0)
            _exit(126);
        child_redirect(log);
        child_close_from(3);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            cr_assert_fail("waitpid: %s", strerror(errno));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- child processes ----------------------------------------------------- */

/*
 * Fork a child that dies with the worker, wiring fds 0/1/2 to in/out/err
 * (-1 = /dev/null for in, the log file for out and err).
 */
static pid_t spawn_child(char *const argv[], const char *log, int in_fd, int out_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        cr_assert_fail("fork: %s", strerror(errno));
    if (pid != 0)
        return pid;

    /* Die with the test worker, even if it crashes: no orphan daemons. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(126);
    signal(SIGPIPE, SIG_DFL);
    child_redirect(log);
    if (in_fd >= 0)
        dup2(in_fd, 0);
    if (out_fd >= 0)
        dup2(out_fd, 1);
    child_close_from(3);
    if (strchr(argv[0], '/'))
        execv(argv[0], argv);
    else
        execvp(argv[0], argv);
    static const char msg[] = "harness: exec failed\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(127);
}

void th_spawn(th_proc *p, const char *logfile, char *const argv[])
{
    memset(p, 0, sizeof *p);
    test_path(p->logfile, sizeof p->logfile, logfile);
    p->pid = spawn_child(argv, p->logfile, -1, -1);
}

int th_proc_kill(th_proc *p, int sig)
{
    if (p->pid <= 0)
        return -1;
    return kill(p->pid, sig);
}

int th_proc_wait(th_proc *p, int timeout_ms, int *status)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    if (p->pid <= 0) {
        if (status)
            *status = p->status;
        return p->pid == 0 ? 0 : -1;
    }
    for (;;) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            p->status = st;
            if (status)
                *status = st;
            return 0;
        }
        if (r < 0 && errno != EINTR)
            cr_assert_fail("waitpid %d: %s", (int)p->pid, strerror(errno));
        if (timeout_ms >= 0 && th_now_ms() >= deadline)
            return -1;
        sleep_ms(10);
    }
}

int th_proc_stop(th_proc *p, int timeout_ms)
{
    int st = 0;
    if (p->pid <= 0)
        return p->status;
    kill(p->pid, SIGTERM);
    if (th_proc_wait(p, timeout_ms, &st) != 0) {
        fprintf(stderr, "harness: pid %d ignored SIGTERM for %d ms; killing it\n", (int)p->pid,
                timeout_ms);
        kill(p->pid, SIGKILL);
        th_proc_wait(p, -1, &st);
    }
    return st;
}

int th_proc_exit_code(const th_proc *p)
{
    if (p->pid != 0)
        return -1;
    if (WIFEXITED(p->status))
        return WEXITSTATUS(p->status);
    return 128 + WTERMSIG(p->status);
}

/* ---- PostgreSQL ----------------------------------------------------------- */

/*
 * Running clusters of this worker, by value: the atexit handler must not
 * follow pointers into a test's (possibly gone) stack.
 */
static struct {
    pid_t pid;
    char datadir[TH_PATH_MAX];
} clusters[MAX_CLUSTERS];
static bool clusters_atexit;

static void kill_clusters_at_exit(void)
{
    for (int i = 0; i < MAX_CLUSTERS; i++) {
        if (clusters[i].pid <= 0)
            continue;
        kill_postmaster(clusters[i].pid);
        if (!keep_files())
            rmtree(clusters[i].datadir);
        clusters[i].pid = 0;
    }
}

static void find_bindir(char *out, size_t size)
{
    const char *env = getenv("CDC_PG_BIN");
    char probe[TH_PATH_MAX + 16];
    if (env && *env) {
        snprintf(out, size, "%s", env);
    } else {
        snprintf(out, size, "%s", DEFAULT_PG_BIN);
        snprintf(probe, sizeof probe, "%s/initdb", out);
        if (access(probe, X_OK) != 0) {
            FILE *f = popen("pg_config --bindir 2>/dev/null", "r");
            out[0] = '\0';
            if (f) {
                if (fgets(out, (int)size, f))
                    out[strcspn(out, "\r\n")] = '\0';
                pclose(f);
            }
        }
    }
    snprintf(probe, sizeof probe, "%s/initdb", out);
    if (!out[0] || access(probe, X_OK) != 0)
        cr_assert_fail("no PostgreSQL initdb in '%s' (set CDC_PG_BIN)", out);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
    return h;
}

/*
 * initdb takes seconds, copying its result a fraction of that; every cluster
 * is therefore a copy of one template per user and bin directory. flock
 * keeps parallel test processes from building it twice or copying a
 * half-built one; the "ok" marker is written only after initdb succeeded.
 */
static void ensure_template(const char *bindir, char *tmpl_data, size_t size, run_as as)
{
    char tmpl[TH_PATH_MAX], lock[TH_PATH_MAX + 8], ok[TH_PATH_MAX + 8], log[TH_PATH_MAX + 16];
    fmt_path(tmpl, sizeof tmpl, "%s/cdc-test-template-%d-%016llx", tmp_base(), (int)geteuid(),
             (unsigned long long)hash_str(bindir));
    fmt_path(lock, sizeof lock, "%s.lock", tmpl);
    fmt_path(ok, sizeof ok, "%s/ok", tmpl);
    fmt_path(log, sizeof log, "%s/initdb.log", tmpl);
    fmt_path(tmpl_data, size, "%s/data", tmpl);

    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        cr_assert_fail("open %s: %s", lock, strerror(errno));
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR)
            cr_assert_fail("flock %s: %s", lock, strerror(errno));

    if (!path_exists(ok)) {
        rmtree(tmpl);
        if (mkdir(tmpl, 0755) != 0) {
            int e = errno;
            close(fd);
            cr_assert_fail("mkdir %s: %s", tmpl, strerror(e));
        }
        chown_for(tmpl, as);
        char initdb[TH_PATH_MAX + 16];
        snprintf(initdb, sizeof initdb, "%s/initdb", bindir);
        const char *argv[] = {
            initdb, "-D",   tmpl_data,    "-U",        "postgres",          "-A", "trust",
            "-E",   "UTF8", "--locale=C", "--no-sync", "--no-instructions", NULL};
        int rc = run_cmd(argv, log, tmpl, as);
        if (rc != 0) {
            th_log_tail(log, FAIL_LOG_LINES);
            close(fd);
            cr_assert_fail("initdb failed with status %d (log above: %s)", rc, log);
        }
        FILE *f = fopen(ok, "w");
        if (f)
            fclose(f);
    }
    close(fd); /* releases the lock */
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &len) != 0)
        cr_assert_fail("cannot find a free port: %s", strerror(errno));
    close(s);
    return ntohs(a.sin_port);
}

static void write_config(const th_pg *pg)
{
    char conf[TH_PATH_MAX + 32];
    snprintf(conf, sizeof conf, "%s/postgresql.conf", pg->datadir);
    FILE *f = fopen(conf, "a");
    if (!f)
        cr_assert_fail("open %s: %s", conf, strerror(errno));
    /* Later lines win, so a restart after a port change only appends. */
    fprintf(f,
            "\n# cdc test harness\n"
            "listen_addresses = '127.0.0.1'\n"
            "port = %d\n"
            "unix_socket_directories = '%s'\n"
            "wal_level = logical\n"
            "max_replication_slots = 20\n"
            "max_wal_senders = 20\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "shared_buffers = 32MB\n"
            "logging_collector = off\n"
            "log_line_prefix = '%%m [%%p] %%q%%a '\n",
            pg->port, pg->dir);
    fclose(f);
}

static int pg_ctl(const th_pg *pg, const char *action, run_as as)
{
    char bin[TH_PATH_MAX + 16];
    snprintf(bin, sizeof bin, "%s/pg_ctl", pg->bindir);
    const char *argv[] = {bin,   "-D", pg->datadir, "-l", pg->logfile, "-w", "-t",
                          "120", "-m", "fast",      "-s", action,      NULL};
    return run_cmd(argv, pg->logfile, pg->dir, as);
}

static bool log_mentions(const char *path, const char *needle)
{
    return th_wait_log(path, needle, 0);
}

static void register_cluster(th_pg *pg)
{
    char pidfile[TH_PATH_MAX + 32];
    snprintf(pidfile, sizeof pidfile, "%s/postmaster.pid", pg->datadir);
    pg->pid = read_pid_file(pidfile);
    if (pg->pid <= 0)
        cr_assert_fail("no postmaster pid in %s", pidfile);
    if (pg->slot < 0) {
        for (int i = 0; i < MAX_CLUSTERS; i++) {
            if (clusters[i].pid <= 0) {
                pg->slot = i;
                break;
            }
        }
        if (pg->slot < 0)
            cr_assert_fail("more than %d clusters in one test", MAX_CLUSTERS);
    }
    clusters[pg->slot].pid = pg->pid;
    snprintf(clusters[pg->slot].datadir, sizeof clusters[pg->slot].datadir, "%s", pg->datadir);
    if (!clusters_atexit) {
        atexit(kill_clusters_at_exit);
        clusters_atexit = true;
    }
}

static void unregister_cluster(th_pg *pg)
{
    if (pg->slot >= 0)
        clusters[pg->slot].pid = 0;
    pg->slot = -1;
    pg->pid = 0;
}

static void start_failed(th_pg *pg, const char *what, int rc)
{
    th_log_tail(pg->logfile, FAIL_LOG_LINES);
    cr_assert_fail("%s failed with status %d (server log above: %s)", what, rc, pg->logfile);
}

bool th_pg_external(void)
{
    const char *e = getenv("CDC_TEST_PG");
    return e && *e;
}

/* A connection to the external server's maintenance database; asserts. */
static PGconn *external_admin(void)
{
    char ci[TH_PATH_MAX * 2];
    snprintf(ci, sizeof ci, "%s dbname=postgres", getenv("CDC_TEST_PG"));
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        PQfinish(c);
        cr_assert_fail("CDC_TEST_PG: cannot connect: %s", msg);
    }
    return c;
}

/*
 * Drop the test databases whose names match `like` (a LIKE pattern), their
 * replication slots first (a database with a slot cannot be dropped), and
 * the sessions using either.
 */
static void external_drop(PGconn *c, const char *like, bool except_mine)
{
    char mine[64];
    snprintf(mine, sizeof mine, "cdct%d\\_%%", (int)getpid());
    const char *params[] = {like, except_mine ? mine : ""};
    static const char *const steps[] = {
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
        "WHERE database LIKE $1 AND database NOT LIKE $2 AND active_pid IS NOT NULL",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        "WHERE database LIKE $1 AND database NOT LIKE $2",
        "SELECT datname FROM pg_database WHERE datname LIKE $1 AND datname NOT LIKE $2",
    };
    for (int attempt = 0; attempt < 50; attempt++) {
        /* A terminated walsender may still hold its slot for a moment. */
        PGresult *r = PQexecParams(c, steps[0], 2, NULL, params, NULL, NULL, 0);
        PQclear(r);
        r = PQexecParams(c, steps[1], 2, NULL, params, NULL, NULL, 0);
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (ok)
            break;
        usleep(100 * 1000);
    }
    PGresult *dbs = PQexecParams(c, steps[2], 2, NULL, params, NULL, NULL, 0);
    for (int i = 0; PQresultStatus(dbs) == PGRES_TUPLES_OK && i < PQntuples(dbs); i++) {
        const char *name = PQgetvalue(dbs, i, 0);
        char *q = PQescapeIdentifier(c, name, strlen(name));
        char *sql;
        if (!q || asprintf(&sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", q) < 0)
            abort();
        PQfreemem(q);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fprintf(stderr, "harness: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        free(sql);
    }
    PQclear(dbs);
}

static void external_start(th_pg *pg)
{
    static int count;
    pg->external = true;
    snprintf(pg->dbprefix, sizeof pg->dbprefix, "cdct%d_%d_", (int)getpid(), count++);
    /* Leftovers of earlier (crashed) runs hold slot names tests use. */
    PGconn *c = external_admin();
    external_drop(c, "cdct%", true);
    /* The test's own "postgres" database, so tests may create objects there. */
    char *q = PQescapeIdentifier(c, pg->dbprefix, strlen(pg->dbprefix));
    char *sql;
    if (!q || asprintf(&sql, "CREATE DATABASE %.*spostgres\"", (int)strlen(q) - 1, q) < 0)
        abort();
    PQfreemem(q);
    PGresult *r = PQexec(c, sql);
    free(sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    cr_assert(ok, "CDC_TEST_PG: creating a database: %s", msg);
}

void th_pg_start(th_pg *pg)
{
    char tmpl_data[TH_PATH_MAX], link[TH_PATH_MAX * 2];
    run_as as = pg_identity();
    const char *tdir = th_test_dir();

    memset(pg, 0, sizeof *pg);
    pg->slot = -1;
    if (th_pg_external()) {
        external_start(pg);
        return;
    }
    find_bindir(pg->bindir, sizeof pg->bindir);
    ensure_template(pg->bindir, tmpl_data, sizeof tmpl_data, as);

    snprintf(pg->dir, sizeof pg->dir, "%s/cdc-pg-XXXXXX", tmp_base());
    if (!mkdtemp(pg->dir))
        cr_assert_fail("mkdtemp %s: %s", pg->dir, strerror(errno));
    chown_for(pg->dir, as);
    fmt_path(pg->datadir, sizeof pg->datadir, "%s/data", pg->dir);
    fmt_path(pg->logfile, sizeof pg->logfile, "%s/postgresql.log", pg->dir);
    /* The runner's hook finds (and if need be kills) the cluster through this. */
    snprintf(link, sizeof link, "%s/%s", tdir, strrchr(pg->dir, '/') + 1);
    if (symlink(pg->dir, link) != 0)
        cr_assert_fail("symlink %s: %s", link, strerror(errno));

    /* cp -a keeps the owner (postgres when we are root) and the 0700 mode. */
    const char *cp[] = {"/bin/cp", "-a", tmpl_data, pg->datadir, NULL};
    char cplog[TH_PATH_MAX + 16];
    snprintf(cplog, sizeof cplog, "%s/copy.log", pg->dir);
    int rc = run_cmd(cp, cplog, NULL, (run_as){.drop = false});
    if (rc != 0) {
        th_log_tail(cplog, FAIL_LOG_LINES);
        cr_assert_fail("copying the template cluster failed with status %d", rc);
    }

    /* The port was free a moment ago; another process may take it first. */
    for (int attempt = 1;; attempt++) {
        pg->port = free_port();
        write_config(pg);
        rc = pg_ctl(pg, "start", as);
        if (rc == 0)
            break;
        if (attempt < PG_START_ATTEMPTS && log_mentions(pg->logfile, "could not bind")) {
            fprintf(stderr, "harness: port %d taken, retrying\n", pg->port);
            continue;
        }
        start_failed(pg, "pg_ctl start", rc);
    }
    register_cluster(pg);
}

void th_pg_stop(th_pg *pg)
{
    if (pg->external) {
        char like[96];
        snprintf(like, sizeof like, "%s%%", pg->dbprefix);
        for (char *u = like; *u; u++)
            if (*u == '_') { /* literal _ in LIKE */
                memmove(u + 1, u, strlen(u) + 1);
                *u++ = '\\';
            }
        PGconn *c = external_admin();
        external_drop(c, like, false);
        PQfinish(c);
        pg->external = false;
        return;
    }
    if (pg->pid <= 0 && pg->datadir[0] == '\0')
        return;
    run_as as = pg_identity();
    if (pg->pid > 0 && proc_alive(pg->pid)) {
        int rc = pg_ctl(pg, "stop", as);
        if (rc != 0) {
            fprintf(stderr, "harness: pg_ctl stop failed (%d); killing postmaster %d\n", rc,
                    (int)pg->pid);
            kill_postmaster(pg->pid);
        }
    }
    unregister_cluster(pg);
    if (!keep_files())
        rmtree(pg->datadir);
}

int th_silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(fd, 16), 0, "listen: %s", strerror(errno));
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

void th_pg_restart(th_pg *pg)
{
    if (pg->external)
        cr_skip_test("restarts the server: not possible on CDC_TEST_PG");
    run_as as = pg_identity();
    int rc = pg_ctl(pg, "restart", as);
    if (rc != 0)
        start_failed(pg, "pg_ctl restart", rc);
    register_cluster(pg);
}

/* A conninfo value in single quotes, with \ and ' escaped. */
static void quote_value(cdc_buf *b, const char *v)
{
    cdc_buf_putc(b, '\'');
    for (; *v; v++) {
        if (*v == '\\' || *v == '\'')
            cdc_buf_putc(b, '\\');
        cdc_buf_putc(b, (uint8_t)*v);
    }
    cdc_buf_putc(b, '\'');
}

const char *th_pg_conninfo(const th_pg *pg, const char *dbname, char *buf, size_t size)
{
    cdc_buf b;
    cdc_buf_init(&b);
    if (pg->external) {
        /* The last dbname in a conninfo wins. */
        cdc_buf_printf(&b, "%s connect_timeout=10 dbname=", getenv("CDC_TEST_PG"));
        char name[256];
        quote_value(&b, th_pg_dbname(pg, dbname, name, sizeof name));
    } else {
        cdc_buf_printf(&b, "host=127.0.0.1 port=%d user=postgres connect_timeout=10 dbname=",
                       pg->port);
        quote_value(&b, dbname);
    }
    snprintf(buf, size, "%s", cdc_buf_cstr(&b));
    cdc_buf_free(&b);
    return buf;
}

PGconn *th_pg_connect(const th_pg *pg, const char *dbname)
{
    char ci[TH_PATH_MAX];
    PGconn *c = PQconnectdb(th_pg_conninfo(pg, dbname, ci, sizeof ci));
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        PQfinish(c);
        cr_assert_fail("connect to %s: %s", ci, msg);
    }
    return c;
}

void th_pg_start_src_dst(th_pg *pg, PGconn **src, PGconn **dst)
{
    th_pg_start(pg);
    th_pg_createdb(pg, "src");
    th_pg_createdb(pg, "dst");
    *src = th_pg_connect(pg, "src");
    *dst = th_pg_connect(pg, "dst");
}

void th_pg_stop_src_dst(th_pg *pg, PGconn **src, PGconn **dst)
{
    if (*src)
        PQfinish(*src);
    if (*dst)
        PQfinish(*dst);
    *src = *dst = NULL;
    th_pg_stop(pg);
}

const char *th_pg_dbname(const th_pg *pg, const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s", pg->external ? pg->dbprefix : "", name);
    return buf;
}

void th_pg_createdb(const th_pg *pg, const char *name)
{
    char prefixed[256];
    name = th_pg_dbname(pg, name, prefixed, sizeof prefixed);
    PGconn *c = th_pg_connect(pg, "postgres");
    char *quoted = PQescapeIdentifier(c, name, strlen(name));
    if (!quoted) {
        PQfinish(c);
        cr_assert_fail("cannot quote database name '%s'", name);
    }
    char *sql;
    if (asprintf(&sql, "CREATE DATABASE %s", quoted) < 0)
        abort();
    PQfreemem(quoted);
    PGresult *r = PQexec(c, sql);
    free(sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
        cr_assert_fail("CREATE DATABASE %s: %s", name, msg);
    }
    PQclear(r);
    PQfinish(c);
}

/* Run sql; on error fail the test with Postgres' message and the SQL. */
static PGresult *exec_or_fail(PGconn *conn, char *sql)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
        PQclear(r);
        cr_assert_fail("SQL failed: %s\n  in: %.1000s", msg, sql);
    }
    return r;
}

void th_sql(PGconn *conn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = xvasprintf(fmt, ap);
    va_end(ap);
    PGresult *r = exec_or_fail(conn, sql);
    free(sql);
    PQclear(r);
}

char *th_sql_value(PGconn *conn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = xvasprintf(fmt, ap);
    va_end(ap);
    PGresult *r = exec_or_fail(conn, sql);
    free(sql);
    char *v = NULL;
    if (PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0))
        v = cdc_xstrdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

long th_sql_long(PGconn *conn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = xvasprintf(fmt, ap);
    va_end(ap);
    char *v = th_sql_value(conn, "%s", sql);
    free(sql);
    long n = v ? strtol(v, NULL, 10) : -1;
    free(v);
    return n;
}

/* ---- Kafka broker ------------------------------------------------------- */

bool th_broker_external(void)
{
    const char *b = getenv("CDC_TEST_BROKERS");
    return b && *b;
}

/*
 * Read one line from the devbroker's stdout within timeout_ms into line
 * (without the newline). Returns 0, or -1 on timeout or EOF.
 */
static int broker_read_line(th_broker *b, char *line, size_t size, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(b->out, '\n', b->out_len);
        if (nl) {
            size_t n = (size_t)(nl - b->out);
            snprintf(line, size, "%.*s", (int)n, b->out);
            memmove(b->out, nl + 1, b->out_len - n - 1);
            b->out_len -= n + 1;
            return 0;
        }
        if (b->out_len == sizeof b->out)
            b->out_len = 0; /* an overlong line: drop it */
        int wait = (int)(deadline - th_now_ms());
        if (wait <= 0)
            return -1;
        struct pollfd pfd = {.fd = b->out_fd, .events = POLLIN};
        int r = poll(&pfd, 1, wait);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t n = read(b->out_fd, b->out + b->out_len, sizeof b->out - b->out_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        b->out_len += (size_t)n;
    }
}

void th_broker_start(th_broker *b, int nbrokers)
{
    memset(b, 0, sizeof *b);
    b->cmd_fd = b->out_fd = -1;
    if (th_broker_external()) {
        b->external = true;
        snprintf(b->bootstrap, sizeof b->bootstrap, "%s", getenv("CDC_TEST_BROKERS"));
        return;
    }
    /* A devbroker that died must fail the test, not kill it with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);

    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
        cr_assert_fail("pipe: %s", strerror(errno));
    char n[16];
    snprintf(n, sizeof n, "%d", nbrokers);
    char *argv[] = {(char *)CDC_BIN_DIR "/cdc-devbroker", (char *)"--brokers", n, NULL};
    test_path(b->proc.logfile, sizeof b->proc.logfile, "devbroker.log");
    /* dup2 in the child clears O_CLOEXEC on the copies it makes 0 and 1. */
    b->proc.pid = spawn_child(argv, b->proc.logfile, in[0], out[1]);
    close(in[0]);
    close(out[1]);
    b->cmd_fd = in[1];
    b->out_fd = out[0];

    if (broker_read_line(b, b->bootstrap, sizeof b->bootstrap, 30000) != 0 || !b->bootstrap[0]) {
        th_log_tail(b->proc.logfile, FAIL_LOG_LINES);
        th_proc_stop(&b->proc, 5000);
        cr_assert_fail("%s gave no bootstrap line (log above)", argv[0]);
    }
}

int th_broker_request(th_broker *b, const char *line, char *reply, size_t reply_size)
{
    if (b->external) {
        snprintf(reply, reply_size, "error: external broker (CDC_TEST_BROKERS)");
        return -1;
    }
    cdc_buf msg;
    cdc_buf_init(&msg);
    cdc_buf_printf(&msg, "%s\n", line);
    ssize_t w = write(b->cmd_fd, msg.data, msg.len);
    bool sent = w == (ssize_t)msg.len;
    cdc_buf_free(&msg);
    if (!sent) {
        snprintf(reply, reply_size, "error: cannot write to cdc-devbroker: %s",
                 w < 0 ? strerror(errno) : "short write");
        return -1;
    }
    if (broker_read_line(b, reply, reply_size, 30000) != 0) {
        snprintf(reply, reply_size, "error: no answer from cdc-devbroker");
        return -1;
    }
    return strcmp(reply, "ok") == 0 ? 0 : -1;
}

void th_broker_cmd(th_broker *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = xvasprintf(fmt, ap);
    va_end(ap);
    char reply[1024];
    int rc = th_broker_request(b, line, reply, sizeof reply);
    if (rc != 0) {
        char what[256];
        snprintf(what, sizeof what, "%s", line);
        free(line);
        th_log_tail(b->proc.logfile, FAIL_LOG_LINES);
        cr_assert_fail("devbroker command '%s': %s", what, reply);
    }
    free(line);
}

int th_broker_stop(th_broker *b)
{
    if (b->external)
        return 0;
    if (b->cmd_fd >= 0)
        close(b->cmd_fd);
    b->cmd_fd = -1;
    int code = 0;
    if (b->proc.pid > 0) {
        th_proc_stop(&b->proc, 10000);
        code = th_proc_exit_code(&b->proc);
    }
    if (b->out_fd >= 0)
        close(b->out_fd);
    b->out_fd = -1;
    return code;
}

/* ---- Kafka reading and writing ------------------------------------------ */

static void kafka_set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != RD_KAFKA_CONF_OK)
        cr_assert_fail("librdkafka %s=%s: %s", key, value, err);
}

typedef struct delivery {
    rd_kafka_resp_err_t err;
    int64_t offset;
    bool done;
} delivery;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    delivery *d = m->_private;
    d->err = m->err;
    d->offset = m->offset;
    d->done = true;
}

int64_t th_produce(const char *bootstrap, const char *topic, int32_t partition, const void *key,
                   size_t key_len, const void *value, size_t value_len)
{
    char err[512];
    delivery d = {.err = RD_KAFKA_RESP_ERR_NO_ERROR, .offset = -1};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    kafka_set(conf, "bootstrap.servers", bootstrap);
    kafka_set(conf, "message.timeout.ms", "30000");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        cr_assert_fail("producer: %s", err);
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY((void *)key, key ? key_len : 0),
        RD_KAFKA_V_VALUE((void *)value, value ? value_len : 0),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
    if (!e) {
        rd_kafka_flush(rk, 35000);
        e = d.done ? d.err : RD_KAFKA_RESP_ERR__TIMED_OUT;
    }
    rd_kafka_destroy(rk);
    if (e)
        cr_assert_fail("produce to %s: %s", topic, rd_kafka_err2str(e));
    return d.offset;
}

static int topic_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms)
{
    const struct rd_kafka_metadata *md;
    int n = 0;
    /* All topics: asking for this one by name would auto-create it. */
    if (rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0 && !md->topics[i].err)
            n = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

static void *dup_bytes(const void *p, size_t n)
{
    if (!p)
        return NULL;
    void *d = cdc_xmalloc(n + 1); /* +1: a NUL, so text can be printed as is */
    memcpy(d, p, n);
    ((char *)d)[n] = '\0';
    return d;
}

/* Decode one Avro single-object field, reloading the schemas once if needed. */
static char *decode_part(cdc_registry *reg, const th_consume_opts *o, const void *data, size_t len,
                         const char *what, cdc_buf *errors, int64_t deadline)
{
    char err[512], *json = NULL;
    int rc = cdc_registry_decode_json(reg, data, len, &json, err, sizeof err);
    if (rc == CDC_REGISTRY_UNKNOWN) {
        int64_t left = deadline - th_now_ms();
        char lerr[512];
        if (cdc_registry_load_prefix(reg, o->bootstrap, NULL, o->schema_prefix,
                                     left > 1000 ? (int)left : 1000, lerr, sizeof lerr) < 0)
            cdc_buf_printf(errors, "%s: reading the schemas: %s; ", what, lerr);
        rc = cdc_registry_decode_json(reg, data, len, &json, err, sizeof err);
    }
    if (rc != CDC_REGISTRY_OK)
        cdc_buf_printf(errors, "%s: %s; ", what, err);
    return json;
}

static void decode_msg(th_msg *m, cdc_registry *reg, const th_consume_opts *o, int64_t deadline)
{
    cdc_buf errors;
    cdc_buf_init(&errors);
    const uint8_t *k = m->key;
    /* Keys that are not Avro (plain strings) are not an error. */
    if (k && m->key_len >= 2 && k[0] == 0xC3 && k[1] == 0x01)
        m->key_json = decode_part(reg, o, m->key, m->key_len, "key", &errors, deadline);
    if (m->value)
        m->value_json = decode_part(reg, o, m->value, m->value_len, "value", &errors, deadline);
    if (errors.len > 0)
        m->decode_error = cdc_xstrdup(cdc_buf_cstr(&errors));
    cdc_buf_free(&errors);
}

static int msg_cmp(const void *a, const void *b)
{
    const th_msg *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

th_msgs *th_consume(const th_consume_opts *o)
{
    static int counter;
    char err[512], group[64];
    int timeout = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    int64_t deadline = th_now_ms() + timeout;
    th_msgs *res = cdc_xcalloc(1, sizeof *res);
    size_t cap = 0;
    cdc_registry *own_reg = NULL;
    cdc_registry *reg = o->registry;

    if (!o->bootstrap || !o->topic)
        cr_assert_fail("th_consume needs bootstrap and topic");
    if (o->schema_prefix && !reg)
        reg = own_reg = cdc_registry_new();

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    kafka_set(conf, "bootstrap.servers", o->bootstrap);
    /* librdkafka 2.0 needs a group.id for assign(); nothing is committed. */
    snprintf(group, sizeof group, "cdc-th-%d-%d", (int)getpid(), ++counter);
    kafka_set(conf, "group.id", group);
    kafka_set(conf, "enable.auto.commit", "false");
    kafka_set(conf, "enable.partition.eof", "true");
    kafka_set(conf, "auto.offset.reset", "earliest");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        cr_assert_fail("consumer: %s", err);
    }

    int nparts = 0;
    while ((nparts = topic_partition_count(rk, o->topic, 5000)) == 0 && th_now_ms() < deadline)
        sleep_ms(100);

    int64_t *high = nparts > 0 ? cdc_xcalloc((size_t)nparts, sizeof *high) : NULL;
    bool *done = nparts > 0 ? cdc_xcalloc((size_t)nparts, sizeof *done) : NULL;
    int pending = 0;
    if (nparts > 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
        for (int32_t p = 0; p < nparts; p++) {
            int64_t low;
            rd_kafka_resp_err_t e =
                rd_kafka_query_watermark_offsets(rk, o->topic, p, &low, &high[p], 10000);
            if (e)
                cr_assert_fail("%s [%d]: watermarks: %s", o->topic, p, rd_kafka_err2str(e));
            done[p] = high[p] <= low;
            pending += !done[p];
            rd_kafka_topic_partition_list_add(l, o->topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (e)
            cr_assert_fail("assign %s: %s", o->topic, rd_kafka_err2str(e));
    }

    while (nparts > 0 && th_now_ms() < deadline) {
        if (o->want > 0 ? res->n >= o->want : pending == 0)
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
        } else if (km->err) {
            fprintf(stderr, "harness: consuming %s: %s\n", o->topic, rd_kafka_message_errstr(km));
        } else {
            if (res->n == cap) {
                cap = cap ? cap * 2 : 64;
                res->v = cdc_xrealloc(res->v, cap * sizeof *res->v);
            }
            th_msg *m = &res->v[res->n++];
            memset(m, 0, sizeof *m);
            m->topic = cdc_xstrdup(rd_kafka_topic_name(km->rkt));
            m->partition = p;
            m->offset = km->offset;
            m->timestamp = rd_kafka_message_timestamp(km, NULL);
            m->key = dup_bytes(km->key, km->key_len);
            m->key_len = km->key ? km->key_len : 0;
            m->value = dup_bytes(km->payload, km->len);
            m->value_len = km->payload ? km->len : 0;
            if (reg)
                decode_msg(m, reg, o, deadline);
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
    cdc_registry_destroy(own_reg);
    if (res->n > 1)
        qsort(res->v, res->n, sizeof *res->v, msg_cmp);
    return res;
}

void th_msgs_free(th_msgs *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        th_msg *x = &m->v[i];
        free(x->topic);
        free(x->key);
        free(x->value);
        free(x->key_json);
        free(x->value_json);
        free(x->decode_error);
    }
    free(m->v);
    free(m);
}

const th_msg *th_msgs_partition(const th_msgs *m, int32_t partition, size_t *count)
{
    size_t i = 0, j;
    while (i < m->n && m->v[i].partition != partition)
        i++;
    for (j = i; j < m->n && m->v[j].partition == partition; j++)
        ;
    *count = j - i;
    return *count ? &m->v[i] : NULL;
}
