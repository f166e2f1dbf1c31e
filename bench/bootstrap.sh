#!/usr/bin/env bash
# Full load: cdc bootstrap against a plain COPY pipe, measured in the same run.
#
# Loads N rows (default 2,000,000) of a payments-shaped table, then times
# (a) psql -c "COPY t TO STDOUT" | psql -c "COPY t FROM STDIN" into a second
#     database, and
# (b) cdc-capture bootstrap.mode=only + cdc-apply through cdc-devbroker into a
#     third database, until the target has every row (checked row by row),
# and prints rows/s of both, the ratio, each daemon's peak RSS and the CPU
# time each run took (the whole machine's, and each cdc process's).
#
#   bench/bootstrap.sh [--rows N] [--workers N] [--partitions P]
# --partitions: partitions of the table topic, created up front in
# cdc-devbroker, whose mock keeps only ~5 MB per partition.
# JOINED=1 (diagnostics): start cdc-apply first and start the clock once it
# has joined its consumer group (cdc-devbroker's mock takes 3 s to form a
# new group), so the time left is the load itself.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=2000000
WORKERS=2
PARTS=64
while [ $# -gt 0 ]; do
    case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --partitions) PARTS=$2; shift 2 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

scripts/deps
. scripts/lib.sh # after deps: it looks for the PostgreSQL binaries
bench_prepare

pg_start "$WORK/pg" "$PORT"
PSQL=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres)
for db in bench copy pipe; do "$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres $db; done
DDL="CREATE TABLE payments (
    id bigint PRIMARY KEY, debit_account int NOT NULL, credit_account int NOT NULL,
    amount numeric(18,2) NOT NULL, currency char(3) NOT NULL,
    created_at timestamptz NOT NULL, memo text);"
"${PSQL[@]}" -d bench -c "$DDL"
"${PSQL[@]}" -d copy -c "$DDL"
echo "loading $ROWS rows..."
"${PSQL[@]}" -d bench <<SQL
INSERT INTO payments
SELECT g, (g * 7) % 10000, (g * 13) % 10000, ((g * 7919) % 10000000) / 100.0, 'EUR',
       timestamptz '2026-01-01' + g * interval '1 second', 'invoice ' || g
FROM generate_series(1::bigint, $ROWS) g;
CREATE PUBLICATION cdc FOR TABLE payments;
ANALYZE payments;
SQL

now() { date +%s.%N; }

# (a) COPY pipe
T0=$(now)
B0=$(busy_s)
"${PSQL[@]}" -d bench -c "COPY payments TO STDOUT" | "${PSQL[@]}" -d copy -c "COPY payments FROM STDIN"
T1=$(now)
COPY_S=$(echo "$T1 - $T0" | bc -l)
COPY_CPU=$(echo "$(busy_s) - $B0" | bc -l)

# (b) bootstrap through cdc-devbroker, applied as it arrives
devbroker_start build/bin/cdc-devbroker "$WORK/devbroker.log"
echo "create cdc.public.payments $PARTS" >&9
T0=$(now)
B0=$(busy_s)
APPLY_LOG_LEVEL=${APPLY_LOG_LEVEL:-warn}
[ -n "${JOINED:-}" ] && [ "$APPLY_LOG_LEVEL" != debug ] && APPLY_LOG_LEVEL=info # logs "assigned"
build/bin/cdc-apply -s "target.conninfo=host=127.0.0.1 port=$PORT user=postgres dbname=pipe" \
    -s "kafka.bootstrap.servers=$DEVBROKER_ADDR" -s kafka.session.timeout.ms=6000 \
    -s log.level=$APPLY_LOG_LEVEL ${APPLY_ARGS:-} 2>"$WORK/apply.log" &
APPLY_PID=$!
if [ -n "${JOINED:-}" ]; then
    until grep -q "assigned" "$WORK/apply.log"; do
        kill -0 "$APPLY_PID" 2>/dev/null || { echo "cdc-apply exited:" >&2; cat "$WORK/apply.log" >&2; exit 1; }
        sleep 0.05
    done
    echo "cdc-apply joined its group in $(echo "$(now) - $T0" | bc -l | cut -c1-4) s; the clock starts now"
    T0=$(now)
    B0=$(busy_s)
    APPLY_CPU0=$(cpu_s "$APPLY_PID")
    BROKER_CPU0=$(cpu_s "$DEVBROKER_PID")
fi
# Under /usr/bin/time (Debian package time, which scripts/deps installs):
# cdc-capture exits after the load and its CPU time and peak RSS are
# read from there.
/usr/bin/time -f "%M %U %S" -o "$WORK/capture.time" \
    build/bin/cdc-capture -s "source.conninfo=host=127.0.0.1 port=$PORT user=postgres dbname=bench" \
    -s "kafka.bootstrap.servers=$DEVBROKER_ADDR" -s bootstrap.mode=only \
    -s "bootstrap.workers=$WORKERS" -s log.level=info ${CAPTURE_ARGS:-} 2>"$WORK/capture.log" &
CAP_PID=$!
# Done when cdc-apply's positions, saved in the same transactions as the
# rows, cover every event of the topic (cheap to poll: counting the table
# five times a second took a good part of a core from the pipeline under
# test) and the table has its primary key (cdc-apply adds it once the load
# is applied), then the row count is checked. One psql session polls
# (poller_start: a new psql per poll cost CPU the COPY pipe does not pay).
poller_start "$PG_BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d pipe
applied() {
    poller_num "SELECT coalesce(sum(next_offset), 0) FROM cdc.apply_positions WHERE topic = 'cdc.public.payments'"
}
has_key() {
    poller_num "SELECT count(*) FROM pg_index WHERE indrelid = to_regclass('public.payments') AND indisprimary"
}
until [ "$(applied)" -ge "$ROWS" ] && [ "$(has_key)" = 1 ] &&
      [ "$(poller_num "SELECT count(*) FROM payments")" = "$ROWS" ]; do
    kill -0 "$APPLY_PID" 2>/dev/null || { echo "cdc-apply exited:" >&2; cat "$WORK/apply.log" >&2; exit 1; }
    if [ -n "$CAP_PID" ] && ! kill -0 "$CAP_PID" 2>/dev/null; then
        wait "$CAP_PID" || { echo "cdc-capture failed:" >&2; cat "$WORK/capture.log" >&2; exit 1; }
        CAP_PID=
    fi
    sleep 0.2
done
T1=$(now)
PIPE_S=$(echo "$T1 - $T0" | bc -l)
PIPE_CPU=$(echo "$(busy_s) - $B0" | bc -l)
poller_stop
APPLY_RSS=$(peak_rss_mib "$APPLY_PID")
APPLY_CPU=$(echo "$(cpu_s "$APPLY_PID") - ${APPLY_CPU0:-0}" | bc -l)
APPLY_BACKENDS_CPU=$(cpu_s $(pids_of "application_name = 'cdc-apply'" "${PSQL[@]}"))
BROKER_CPU=$(echo "$(cpu_s "$DEVBROKER_PID") - ${BROKER_CPU0:-0}" | bc -l)
kill -TERM "$APPLY_PID"; wait "$APPLY_PID" || true; APPLY_PID=
[ -n "$CAP_PID" ] && { wait "$CAP_PID" || true; CAP_PID=; }
read -r CAP_RSS_KB CAP_USER CAP_SYS <"$WORK/capture.time"
CAP_RSS=$(echo "$CAP_RSS_KB / 1024" | bc -l)
CAP_CPU=$(echo "$CAP_USER + $CAP_SYS" | bc -l)

SRC=$(payments_fingerprint bench "${PSQL[@]}")
[ "$(payments_fingerprint copy "${PSQL[@]}")" = "$SRC" ] || { echo "COPY target differs" >&2; exit 1; }
[ "$(payments_fingerprint pipe "${PSQL[@]}")" = "$SRC" ] || { echo "cdc target differs" >&2; exit 1; }
grep "bootstrap done" "$WORK/capture.log" | sed 's/.*cdc-capture: /capture: /'

printf '\nrows: %d (both targets equal to the source, row by row)\n' "$ROWS"
printf '%-40s %8.2f s %10.0f rows/s\n' "COPY TO STDOUT | COPY FROM STDIN" "$COPY_S" "$(echo "$ROWS / $COPY_S" | bc -l)"
printf '%-40s %8.2f s %10.0f rows/s   peak RSS capture %.1f MiB, apply %s MiB\n' \
    "cdc bootstrap + cdc-apply (devbroker)" "$PIPE_S" "$(echo "$ROWS / $PIPE_S" | bc -l)" "$CAP_RSS" "$APPLY_RSS"
printf 'ratio cdc / COPY pipe: %.2f (target >= 0.60)%s\n' "$(echo "$COPY_S / $PIPE_S" | bc -l)" \
    "${JOINED:+, cdc-apply had joined its group before the clock started}"
# Both runs use every core they can get: with few cores the ratio follows
# the CPU time each needs. The machine's figure also counts the source's
# COPY backends, the bench's polling and anything else running.
printf '\nCPU time (user + system) used by the whole machine during each run:\n'
printf '%-40s %8.2f s\n' "COPY TO STDOUT | COPY FROM STDIN" "$COPY_CPU"
printf '%-40s %8.2f s   (cdc-capture %.2f s, cdc-devbroker %.2f s, cdc-apply %.2f s, its target backends %s s)\n' \
    "cdc bootstrap + cdc-apply (devbroker)" "$PIPE_CPU" "$CAP_CPU" "$BROKER_CPU" "$APPLY_CPU" "$APPLY_BACKENDS_CPU"
