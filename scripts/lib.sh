# Shared shell helpers for scripts/demo and bench/: a throw-away PostgreSQL
# cluster and cdc-devbroker. Source it; it defines functions only.

PG_BIN="${CDC_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"

# Run a command as the postgres user when we are root (initdb refuses root).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@") # the postgres user may not read our cwd
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

# pg_start DIR PORT [extra postgresql.conf lines...]: initdb + start, logical WAL.
pg_start() {
    local dir=$1 port=$2
    shift 2
    if [ ! -x "$PG_BIN/initdb" ]; then
        echo "PostgreSQL server binaries not found (Debian package postgresql; or set CDC_PG_BIN)" >&2
        return 1
    fi
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
    {
        echo "wal_level = logical"
        echo "max_replication_slots = 20"
        echo "max_wal_senders = 20"
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$dir'"
        echo "fsync = off"
        echo "synchronous_commit = off"
        echo "full_page_writes = off"
        echo "shared_buffers = 256MB"
        echo "max_wal_size = 4GB"
        echo "logical_decoding_work_mem = 256MB"
        for line in "$@"; do echo "$line"; done
    } >>"$dir/data/postgresql.conf"
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w start >/dev/null
}

pg_stop() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# Peak resident set size of a running process in MiB.
peak_rss_mib() {
    awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"
}

# CPU seconds (user + system, all threads) used so far by running processes;
# one that has exited counts nothing.
cpu_s() {
    local p
    for p in "$@"; do
        # Fields after "(comm) ": utime is the 12th, stime the 13th, in ticks.
        sed 's/.*) //' "/proc/$p/stat" 2>/dev/null || true
    done | awk -v tck="$(getconf CLK_TCK)" '{ t += $12 + $13 } END { printf "%.2f", t / tck }'
}

# CPU seconds (user + system, every core) the whole machine has used since
# boot: the difference over a run counts processes that exit during it too.
busy_s() {
    awk -v tck="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8) / tck }' /proc/stat
}

# pids_of WHERE PSQL...: pids from pg_stat_activity matching WHERE.
pids_of() {
    local where=$1
    shift
    "$@" -d postgres -Atc "SELECT pid FROM pg_stat_activity WHERE $where"
}

# payments_fingerprint DB PSQL...: row count and md5 of every row of the
# benchmarks' payments table in key order, for a row-by-row comparison.
payments_fingerprint() {
    local db=$1
    shift
    "$@" -d "$db" -Atc "SELECT count(*) || ' ' || md5(string_agg(p::text, '|' ORDER BY id)) FROM payments p"
}

# poller_start PSQL...: one psql session kept open for the benchmarks' wait
# loops. Starting psql for every poll (a process, a connection and a server
# backend five times a second) took a good part of a core from the
# pipeline being timed on a two-core machine; the COPY pipe it is compared
# with polls nothing. Pass psql without ON_ERROR_STOP (a query on a table
# that does not exist yet must not end the session).
poller_start() {
    coproc POLLER { "$@" -X -A -t -q 2>&1; }
}

# poller_sql SQL: the first line of the query's output (an error message
# when it failed: the table does not exist yet, say).
poller_sql() {
    printf '%s;\nSELECT %s;\n' "$1" "'__end__'" >&"${POLLER[1]}"
    local line first=
    while IFS= read -r line <&"${POLLER[0]}"; do
        [ "$line" = "__end__" ] && break
        [ -z "$first" ] && first=$line
    done
    printf '%s\n' "$first"
}

# poller_num SQL: the query's number, or 0 when it gave none.
poller_num() {
    local v
    v=$(poller_sql "$1")
    case "$v" in
    '' | *[!0-9-]*) echo 0 ;;
    *) echo "$v" ;;
    esac
}

poller_stop() {
    [ -n "${POLLER_PID:-}" ] && { kill "$POLLER_PID" 2>/dev/null; wait "$POLLER_PID" 2>/dev/null; } || true
}

# devbroker_start BIN LOGFILE: starts cdc-devbroker; sets DEVBROKER_PID and
# DEVBROKER_ADDR. Its stdin is a FIFO kept open on fd 9.
devbroker_start() {
    local bin=$1 log=$2 fifo
    fifo=$(mktemp -u)
    mkfifo "$fifo"
    # A session of its own: a Ctrl-C on the terminal must not stop the broker
    # before the daemons have handed it their last events (cleanup stops it).
    setsid "$bin" <"$fifo" >"$log.out" 2>"$log" &
    DEVBROKER_PID=$!
    exec 9>"$fifo"
    rm -f "$fifo"
    for _ in $(seq 1 100); do
        DEVBROKER_ADDR=$(head -n 1 "$log.out" 2>/dev/null || true)
        [ -n "$DEVBROKER_ADDR" ] && return 0
        sleep 0.1
    done
    echo "cdc-devbroker did not start; see $log" >&2
    return 1
}

# For bench/: build, then a work directory $WORK (removed at exit unless KEEP
# is set), a free $PORT, and an EXIT trap that kills $CAP_PID, $APPLY_PID and
# $DEVBROKER_PID and stops the clusters in $WORK/pg*.
bench_prepare() {
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j"$(nproc)" >/dev/null
    WORK=$(mktemp -d /tmp/cdc-bench.XXXXXX)
    chmod 755 "$WORK"
    PORT=$(free_port)
    trap bench_cleanup EXIT
}

bench_cleanup() {
    poller_stop
    # pkill -P: a daemon started under /usr/bin/time is that process's child.
    for p in ${CAP_PID:-} ${APPLY_PID:-} ${DEVBROKER_PID:-}; do
        pkill -P "$p" 2>/dev/null || true
        kill "$p" 2>/dev/null || true
    done
    local d
    for d in "$WORK"/pg*; do [ -d "$d" ] && pg_stop "$d"; done
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
