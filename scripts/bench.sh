#!/usr/bin/env bash
# `make bench`: builds and installs the extension in release mode, starts a benchmark cluster (run
# by the postgres user) and runs bench/run.py, which writes bench/results/<date>.md.
# Options go through the environment: BENCH_MEMBERS (1000000), BENCH_SECONDS (12, per script and configuration, over 3 interleaved rounds), BENCH_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${BENCH_PORT:-28817}
datadir=/var/lib/postgresql/mfa-bench
bash scripts/install-release.sh
bash scripts/cluster.sh stop "$datadir" "$port" || true
rm -rf "$datadir"
bash scripts/cluster.sh start "$datadir" "$port"
# Enough memory for the whole data set, checkpoints that do not land in the middle of a run, a lock
# threshold the failure runs' pool of members does not reach (the success runs walk them too), and
# room for those runs' bursts: at 8 clients with sync off on 2 cores they outrun the attempt
# ledger's worker, and with the default queue some checks wait 5 s and are refused.
psql -X -q -h /tmp -p "$port" -U postgres -c "ALTER SYSTEM SET shared_buffers = '4GB'" \
    -c "ALTER SYSTEM SET max_wal_size = '16GB'" -c "ALTER SYSTEM SET checkpoint_timeout = '30min'" \
    -c "ALTER SYSTEM SET max_connections = 50" \
    -c "ALTER SYSTEM SET mfa.lock_threshold = 100" \
    -c "ALTER SYSTEM SET mfa.attempt_queue_records = 65536"
runuser -u postgres -- "$(pg_config --bindir)/pg_ctl" -D "$datadir" -w -m fast restart -l "$datadir/server.log" >/dev/null
trap 'bash scripts/cluster.sh stop "$datadir" "$port"' EXIT
mkdir -p bench/results
python3 bench/run.py --port "$port" --datadir "$datadir" \
    --members "${BENCH_MEMBERS:-1000000}" --seconds "${BENCH_SECONDS:-12}" \
    --output "bench/results/$(date -u +%Y-%m-%d-%H%M).md" "$@"
