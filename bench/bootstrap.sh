#!/usr/bin/env bash
# Full load: cdc bootstrap against a plain COPY pipe, measured in the same run.
#
# Loads N rows (default 2,000,000) of a payments-shaped table, then times
# (a) psql -c "COPY t TO STDOUT" | psql -c "COPY t FROM STDIN" into a second
#     database, and
# (b) cdc-capture bootstrap.mode=only + cdc-apply through cdc-devbroker into a
#     third database, until the target has every row (checked row by row),
# and prints rows/s of both, the ratio and each daemon's peak RSS.
#
#   bench/bootstrap.sh [--rows N] [--workers N] [--partitions P]
# --partitions: partitions of the table topic, created up front in
# cdc-devbroker, whose mock keeps only ~5 MB per partition.
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
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
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
"${PSQL[@]}" -d bench -c "COPY payments TO STDOUT" | "${PSQL[@]}" -d copy -c "COPY payments FROM STDIN"
T1=$(now)
COPY_S=$(echo "$T1 - $T0" | bc -l)

# (b) bootstrap through cdc-devbroker, applied as it arrives
devbroker_start build/bin/cdc-devbroker "$WORK/devbroker.log"
echo "create cdc.public.payments $PARTS" >&9
T0=$(now)
build/bin/cdc-apply -s "target.conninfo=host=127.0.0.1 port=$PORT user=postgres dbname=pipe" \
    -s "kafka.bootstrap.servers=$DEVBROKER_ADDR" -s kafka.session.timeout.ms=6000 \
    -s log.level=${APPLY_LOG_LEVEL:-warn} ${APPLY_ARGS:-} 2>"$WORK/apply.log" &
APPLY_PID=$!
build/bin/cdc-capture -s "source.conninfo=host=127.0.0.1 port=$PORT user=postgres dbname=bench" \
    -s "kafka.bootstrap.servers=$DEVBROKER_ADDR" -s bootstrap.mode=only \
    -s "bootstrap.workers=$WORKERS" -s log.level=info 2>"$WORK/capture.log" &
CAP_PID=$!
CAP_RSS=0
# Done when cdc-apply's positions, saved in the same transactions as the
# rows, cover every event of the topic (cheap to poll: counting the table
# five times a second took a good part of a core from the pipeline under
# test), then the row count is checked.
applied() {
    "${PSQL[@]}" -d pipe -Atc "SELECT coalesce(sum(next_offset), 0) FROM cdc.apply_positions WHERE topic = 'cdc.public.payments'" 2>/dev/null || echo 0
}
until [ "$(applied)" -ge "$ROWS" ] &&
      [ "$("${PSQL[@]}" -d pipe -Atc "SELECT count(*) FROM payments" 2>/dev/null || echo 0)" = "$ROWS" ]; do
    kill -0 "$APPLY_PID" 2>/dev/null || { echo "cdc-apply exited:" >&2; cat "$WORK/apply.log" >&2; exit 1; }
    if [ -n "$CAP_PID" ]; then
        r=$(peak_rss_mib "$CAP_PID")
        [ "$r" != "?" ] && CAP_RSS=$r
        if ! kill -0 "$CAP_PID" 2>/dev/null; then
            wait "$CAP_PID" || { echo "cdc-capture failed:" >&2; cat "$WORK/capture.log" >&2; exit 1; }
            CAP_PID=
        fi
    fi
    sleep 0.2
done
T1=$(now)
APPLY_RSS=$(peak_rss_mib "$APPLY_PID")
PIPE_S=$(echo "$T1 - $T0" | bc -l)
kill -TERM "$APPLY_PID"; wait "$APPLY_PID" || true; APPLY_PID=
[ -n "$CAP_PID" ] && { wait "$CAP_PID" || true; CAP_PID=; }

SRC=$(payments_fingerprint bench "${PSQL[@]}")
[ "$(payments_fingerprint copy "${PSQL[@]}")" = "$SRC" ] || { echo "COPY target differs" >&2; exit 1; }
[ "$(payments_fingerprint pipe "${PSQL[@]}")" = "$SRC" ] || { echo "cdc target differs" >&2; exit 1; }
grep "bootstrap done" "$WORK/capture.log" | sed 's/.*cdc-capture: /capture: /'

printf '\nrows: %d (both targets equal to the source, row by row)\n' "$ROWS"
printf '%-40s %8.2f s %10.0f rows/s\n' "COPY TO STDOUT | COPY FROM STDIN" "$COPY_S" "$(echo "$ROWS / $COPY_S" | bc -l)"
printf '%-40s %8.2f s %10.0f rows/s   peak RSS capture %s MiB, apply %s MiB\n' \
    "cdc bootstrap + cdc-apply (devbroker)" "$PIPE_S" "$(echo "$ROWS / $PIPE_S" | bc -l)" "$CAP_RSS" "$APPLY_RSS"
printf 'ratio cdc / COPY pipe: %.2f (target >= 0.60)\n' "$(echo "$COPY_S / $PIPE_S" | bc -l)"
