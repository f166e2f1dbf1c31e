#!/usr/bin/env bash
# End-to-end catch-up: cdc-capture + cdc-apply through cdc-devbroker against
# PostgreSQL's native logical replication, measured in the same run.
#
# With both pipelines stopped, loads about 1,000,000 row changes (inserts,
# then updates of a third of the rows, then deletes of a tenth) into the
# source, its slot created just before the load. Then times (a) a CREATE
# SUBSCRIPTION in a second database of the same server and (b) cdc-capture +
# cdc-apply into a target database, each until its target equals the source,
# and prints rows/s of both, the ratio, peak RSS and the CPU time of each
# path. Each path has its own identical cluster (source + target database,
# same load): a walsender decodes every record of its cluster's WAL, so in a
# shared cluster the path timed second would also decode all the WAL the
# first one's target wrote.
#
#   bench/pipeline.sh [--changes N] [--partitions P]
# --partitions: partitions of the table topic, created up front in
# cdc-devbroker (its mock keeps only ~5 MB per partition: enough partitions
# keep the backlog of a catch-up within that).
set -euo pipefail
cd "$(dirname "$0")/.."

CHANGES=1000000
PARTS=16
while [ $# -gt 0 ]; do
    case "$1" in
    --changes) CHANGES=$2; shift 2 ;;
    --partitions) PARTS=$2; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
# inserts + inserts/3 + inserts/10 = changes
INSERTS=$((CHANGES * 30 / 43))
UPDATES=$((INSERTS / 3))
DELETES=$((INSERTS / 10))
TOTAL=$((INSERTS + UPDATES + DELETES))

scripts/deps
. scripts/lib.sh # after deps: it looks for the PostgreSQL binaries
bench_prepare

# Two identical clusters, one per pipeline: a walsender reads all of its
# cluster's WAL, so with one cluster the slot timed second would also decode
# the WAL the first run's target wrote (hundreds of MB) and take CPU from its
# own run. Each cluster holds a source and a target, as the issue asks of the
# native run; the native one is stopped before the cdc run starts.
PORT2=$(free_port)
while [ "$PORT2" = "$PORT" ]; do PORT2=$(free_port); done
pg_start "$WORK/pg" "$PORT" "max_logical_replication_workers = 4"
pg_start "$WORK/pg2" "$PORT2"
PSQL=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres)
PSQL2=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT2" -U postgres)
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres bench
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres native
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT2" -U postgres bench
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT2" -U postgres pipe
DDL="CREATE TABLE payments (
    id bigint PRIMARY KEY, debit_account int NOT NULL, credit_account int NOT NULL,
    amount numeric(18,2) NOT NULL, currency char(3) NOT NULL,
    created_at timestamptz NOT NULL, memo text);
CREATE TABLE bench_done (id int PRIMARY KEY);"
"${PSQL[@]}" -d native -c "$DDL"
echo "loading $TOTAL row changes ($INSERTS inserts, $UPDATES updates, $DELETES deletes) into each cluster..."
load() { # slot name, then psql command
    local slot=$1
    shift
    "$@" -d bench -c "$DDL"
    "$@" -d bench <<SQL
CREATE PUBLICATION cdc FOR TABLE payments, bench_done;
SELECT 'slot' FROM pg_create_logical_replication_slot('$slot', 'pgoutput');
INSERT INTO payments
SELECT g, (g * 7) % 10000, (g * 13) % 10000, ((g * 7919) % 10000000) / 100.0, 'EUR',
       timestamptz '2026-01-01' + g * interval '1 second', 'invoice ' || g
FROM generate_series(1::bigint, $INSERTS) g;
UPDATE payments SET amount = amount + 0.01, memo = memo || ' paid' WHERE id % 3 = 0;
DELETE FROM payments WHERE id % 10 = 0;
INSERT INTO bench_done VALUES (1);
SQL
}
load native "${PSQL[@]}"
load cdc_bench "${PSQL2[@]}"
SUM_SQL="SELECT count(*) || '/' || coalesce(sum(amount), 0) || '/' || coalesce(sum(hashtext(memo)), 0) FROM payments"
SRC_SUM=$("${PSQL[@]}" -d bench -Atc "$SUM_SQL")
[ "$("${PSQL2[@]}" -d bench -Atc "$SUM_SQL")" = "$SRC_SUM" ] || { echo "the two sources differ" >&2; exit 1; }

now() { date +%s.%N; }
wal_lsn() { "$@" -d postgres -Atc "SELECT pg_current_wal_insert_lsn()"; }
wal_mb_since() { # lsn, then psql command
    local lsn=$1
    shift
    "$@" -d postgres -Atc "SELECT round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn') / 1048576)"
}
# Both runs poll through one open psql session (poller_start): a new psql
# five times a second would take CPU from the pipeline being timed.
wait_equal() { # the poller's database
    until [ "$(poller_num "SELECT count(*) FROM bench_done")" = "1" ] &&
          [ "$(poller_sql "$SUM_SQL")" = "$SRC_SUM" ]; do
        sleep 0.2
    done
}

# (a) native logical replication
poller_start "$PG_BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d native
WAL0=$(wal_lsn "${PSQL[@]}")
T0=$(now)
"${PSQL[@]}" -d native -c "CREATE SUBSCRIPTION native CONNECTION 'host=127.0.0.1 port=$PORT user=postgres dbname=bench' PUBLICATION cdc WITH (create_slot = false, slot_name = 'native', copy_data = false)"
wait_equal
T1=$(now)
poller_stop
NATIVE_WAL_MB=$(wal_mb_since "$WAL0" "${PSQL[@]}")
NATIVE_S=$(echo "$T1 - $T0" | bc -l)
NATIVE_WALSENDER_CPU=$(cpu_s $(pids_of "backend_type = 'walsender' AND application_name = 'native'" "${PSQL[@]}"))
NATIVE_WORKER_CPU=$(cpu_s $(pids_of "backend_type = 'logical replication worker'" "${PSQL[@]}"))
"${PSQL[@]}" -d native -c "ALTER SUBSCRIPTION native DISABLE" -c "ALTER SUBSCRIPTION native SET (slot_name = NONE)" -c "DROP SUBSCRIPTION native"
# Row-by-row check (not timed), then the native cluster stops.
SRC_FP=$(payments_fingerprint bench "${PSQL[@]}")
[ "$(payments_fingerprint native "${PSQL[@]}")" = "$SRC_FP" ] || { echo "native target differs from the source" >&2; exit 1; }
pg_stop "$WORK/pg"

# (b) cdc-capture + cdc-apply through cdc-devbroker
devbroker_start build/bin/cdc-devbroker "$WORK/devbroker.log"
echo "create cdc.public.payments $PARTS" >&9
# bench_done too: topics of a running pipeline exist; created by its first
# event, it would cost cdc-apply a group rebalance at the very end.
echo "create cdc.public.bench_done 1" >&9
poller_start "$PG_BIN/psql" -h 127.0.0.1 -p "$PORT2" -U postgres -d pipe
WAL0=$(wal_lsn "${PSQL2[@]}")
T0=$(now)
build/bin/cdc-capture -s "source.conninfo=host=127.0.0.1 port=$PORT2 user=postgres dbname=bench" \
    -s "kafka.bootstrap.servers=$DEVBROKER_ADDR" -s slot.name=cdc_bench -s publication.name=cdc \
    -s log.level=warn ${CAPTURE_ARGS:-} 2>"$WORK/capture.log" &
CAP_PID=$!
if [ -n "${PHASED:-}" ]; then
    # Diagnostics: drain the slot into Kafka first, then time cdc-apply alone.
    END_LSN=$("${PSQL2[@]}" -d bench -Atc "SELECT pg_current_wal_insert_lsn()")
    until [ "$("${PSQL2[@]}" -d bench -Atc "SELECT confirmed_flush_lsn >= '$END_LSN' FROM pg_replication_slots WHERE slot_name = 'cdc_bench'")" = "t" ]; do sleep 0.1; done
    echo "capture alone: $(echo "$(now) - $T0" | bc -l) s"
    T0=$(now)
fi
build/bin/cdc-apply -s "target.conninfo=host=127.0.0.1 port=$PORT2 user=postgres dbname=pipe" \
    -s "kafka.bootstrap.servers=$DEVBROKER_ADDR" -s kafka.session.timeout.ms=6000 \
    -s log.level=${APPLY_LOG_LEVEL:-warn} ${APPLY_ARGS:-} 2>"$WORK/apply.log" &
APPLY_PID=$!
# Done when cdc-apply's positions, saved in the same transactions as the
# rows, cover every event of the payments topic (cheap to poll; summing the
# table five times a second took up to half a core from the pipeline under
# test, while the native run polls nothing but bench_done, which arrives
# last), then the target is checked against the source.
applied() {
    poller_num "SELECT coalesce(sum(next_offset), 0) FROM cdc.apply_positions WHERE topic = 'cdc.public.payments'"
}
until [ "$(applied)" -ge $((TOTAL + DELETES)) ] && # deletes add a tombstone each
      [ "$(poller_num "SELECT count(*) FROM bench_done")" = "1" ] &&
      [ "$(poller_sql "$SUM_SQL")" = "$SRC_SUM" ]; do
    for p in $CAP_PID $APPLY_PID; do
        kill -0 "$p" 2>/dev/null || { echo "a daemon exited:" >&2; cat "$WORK/capture.log" "$WORK/apply.log" >&2; exit 1; }
    done
    sleep 0.2
done
T1=$(now)
poller_stop
CDC_WAL_MB=$(wal_mb_since "$WAL0" "${PSQL2[@]}")
CDC_WALSENDER_CPU=$(cpu_s $(pids_of "backend_type = 'walsender' AND application_name = 'cdc-capture'" "${PSQL2[@]}"))
CAPTURE_CPU=$(cpu_s "$CAP_PID")
BROKER_CPU=$(cpu_s "$DEVBROKER_PID")
APPLY_CPU=$(cpu_s "$APPLY_PID")
APPLY_BACKENDS_CPU=$(cpu_s $(pids_of "application_name = 'cdc-apply'" "${PSQL2[@]}"))
CAP_RSS=$(peak_rss_mib "$CAP_PID")
APPLY_RSS=$(peak_rss_mib "$APPLY_PID")
PIPE_S=$(echo "$T1 - $T0" | bc -l)
kill -TERM "$CAP_PID" "$APPLY_PID"
wait "$CAP_PID" "$APPLY_PID" || true
CAP_PID= APPLY_PID=

[ "$(payments_fingerprint bench "${PSQL2[@]}")" = "$SRC_FP" ] || { echo "the two sources differ" >&2; exit 1; }
[ "$(payments_fingerprint pipe "${PSQL2[@]}")" = "$SRC_FP" ] || { echo "cdc target differs from the source" >&2; exit 1; }

printf '\nrow changes: %d (both targets equal to the source, row by row)\n' "$TOTAL"
printf '%-34s %8.2f s %10.0f rows/s\n' "native logical replication" "$NATIVE_S" "$(echo "$TOTAL / $NATIVE_S" | bc -l)"
printf '%-34s %8.2f s %10.0f rows/s   peak RSS capture %s MiB, apply %s MiB\n' \
    "cdc-capture + cdc-apply (devbroker)" "$PIPE_S" "$(echo "$TOTAL / $PIPE_S" | bc -l)" "$CAP_RSS" "$APPLY_RSS"
printf 'ratio cdc / native: %.2f (target >= 1.0)\n' "$(echo "$NATIVE_S / $PIPE_S" | bc -l)"
# CPU of each path (a walsender also decodes its target's WAL: one cluster).
# On a machine with few cores the ratio above follows these sums.
cpu_line() { # label total parts...
    local label=$1 total=$2
    shift 2
    printf '%-34s %8.2f s %10.2f us per change   (%s)\n' "$label" "$total" \
        "$(echo "$total * 1000000 / $TOTAL" | bc -l)" "$*"
}
printf '\nCPU time (user + system):\n'
cpu_line "native logical replication" "$(echo "$NATIVE_WALSENDER_CPU + $NATIVE_WORKER_CPU" | bc -l)" \
    "walsender $NATIVE_WALSENDER_CPU s, apply worker $NATIVE_WORKER_CPU s; its target wrote $NATIVE_WAL_MB MB of WAL"
cpu_line "cdc-capture + cdc-apply (devbroker)" \
    "$(echo "$CDC_WALSENDER_CPU + $CAPTURE_CPU + $BROKER_CPU + $APPLY_CPU + $APPLY_BACKENDS_CPU" | bc -l)" \
    "walsender $CDC_WALSENDER_CPU s, cdc-capture $CAPTURE_CPU s, cdc-devbroker $BROKER_CPU s, cdc-apply $APPLY_CPU s, its target backends $APPLY_BACKENDS_CPU s; they wrote $CDC_WAL_MB MB of WAL"
