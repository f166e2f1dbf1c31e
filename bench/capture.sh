#!/usr/bin/env bash
# Capture throughput against pg_recvlogical, measured in the same run.
#
# Loads N rows (default 1,000,000) of a payments-shaped table in 1,000-row
# transactions, with two pgoutput slots created at the same LSN before the
# load. Then drains slot A with pg_recvlogical (output to /dev/null) and
# slot B with cdc-capture into cdc-devbroker, each until it has confirmed
# the WAL position reached by the load, and prints rows/s of both, the ratio
# and the peak RSS of each.
#
#   bench/capture.sh [--rows N] [--txn-rows N]
#   --txn-rows 10000000 --rows 10000000 measures one huge transaction.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=1000000
TXN=1000
while [ $# -gt 0 ]; do
    case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --txn-rows) TXN=$2; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

scripts/deps
. scripts/lib.sh # after deps: it looks for the PostgreSQL binaries
bench_prepare

pg_start "$WORK/pg" "$PORT"
PSQL=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d bench)
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres bench
"${PSQL[@]}" <<SQL
CREATE TABLE payments (
    id bigint PRIMARY KEY, debit_account int NOT NULL, credit_account int NOT NULL,
    amount numeric(18,2) NOT NULL, currency char(3) NOT NULL,
    created_at timestamptz NOT NULL, memo text);
CREATE PUBLICATION cdc FOR TABLE payments;
SELECT pg_create_logical_replication_slot('bench_recvlogical', 'pgoutput');
SELECT pg_create_logical_replication_slot('bench_capture', 'pgoutput');
CREATE PROCEDURE load(total bigint, per_txn bigint) LANGUAGE plpgsql AS \$\$
DECLARE i bigint := 0;
BEGIN
  WHILE i < total LOOP
    INSERT INTO payments
    SELECT g, (g * 7) % 10000, (g * 13) % 10000, ((g * 7919) % 10000000) / 100.0, 'EUR',
           timestamptz '2026-01-01' + g * interval '1 second', 'invoice ' || g
    FROM generate_series(i + 1, least(i + per_txn, total)) g;
    COMMIT;
    i := i + per_txn;
  END LOOP;
END \$\$;
SQL
echo "loading $ROWS rows in transactions of $TXN rows..."
"${PSQL[@]}" -c "CALL load($ROWS, $TXN)"
END_LSN=$("${PSQL[@]}" -Atc "SELECT pg_current_wal_insert_lsn()")
echo "load done, WAL end $END_LSN"

now() { date +%s.%N; }

# (a) pg_recvlogical
T0=$(now)
command -v /usr/bin/time >/dev/null && TIMER=(/usr/bin/time -f "%M" -o "$WORK/recv.rss") || TIMER=()
"${TIMER[@]}" "$PG_BIN/pg_recvlogical" -h 127.0.0.1 -p "$PORT" -U postgres -d bench \
    --slot bench_recvlogical --start -o proto_version=1 -o publication_names=cdc \
    --endpos "$END_LSN" -f /dev/null --no-loop
T1=$(now)
RECV_S=$(echo "$T1 - $T0" | bc -l)
RECV_RSS="?"
[ -f "$WORK/recv.rss" ] && RECV_RSS=$(awk '{ printf "%.1f", $1 / 1024 }' "$WORK/recv.rss")

# (b) cdc-capture into cdc-devbroker
devbroker_start build/bin/cdc-devbroker "$WORK/devbroker.log"
T0=$(now)
build/bin/cdc-capture -s "source.conninfo=host=127.0.0.1 port=$PORT user=postgres dbname=bench" \
    -s "kafka.bootstrap.servers=$DEVBROKER_ADDR" -s slot.name=bench_capture \
    -s publication.name=cdc -s log.level=warn 2>"$WORK/capture.log" &
CAP_PID=$!
CAP_RSS=0
while :; do
    done_=$("${PSQL[@]}" -Atc "SELECT confirmed_flush_lsn >= '$END_LSN' FROM pg_replication_slots WHERE slot_name = 'bench_capture'")
    r=$(peak_rss_mib "$CAP_PID")
    [ "$r" != "?" ] && CAP_RSS=$r
    [ "$done_" = "t" ] && break
    kill -0 "$CAP_PID" 2>/dev/null || { echo "cdc-capture exited; log:" >&2; cat "$WORK/capture.log" >&2; exit 1; }
    sleep 0.05
done
T1=$(now)
CAP_RSS=$(peak_rss_mib "$CAP_PID")
kill -TERM "$CAP_PID"
wait "$CAP_PID" || true
CAP_PID=
CAP_S=$(echo "$T1 - $T0" | bc -l)

printf '\nrows: %d in transactions of %d rows\n' "$ROWS" "$TXN"
printf '%-28s %10.2f s %12.0f rows/s   peak RSS %s MiB\n' "pg_recvlogical (pgoutput)" "$RECV_S" "$(echo "$ROWS / $RECV_S" | bc -l)" "$RECV_RSS"
printf '%-28s %10.2f s %12.0f rows/s   peak RSS %s MiB\n' "cdc-capture -> devbroker" "$CAP_S" "$(echo "$ROWS / $CAP_S" | bc -l)" "$CAP_RSS"
printf 'ratio cdc-capture / pg_recvlogical: %.2f (target >= 0.80)\n' "$(echo "$RECV_S / $CAP_S" | bc -l)"
