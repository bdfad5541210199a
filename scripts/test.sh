#!/usr/bin/env bash
# The whole test suite: plain Rust tests and #[pg_test]s (cargo pgrx test), then the SQL regression
# tests (pg_regress) and the Rust integration tests (real concurrent connections) against a fresh
# cluster with the extension installed. Run as root: clusters run as the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# The postgresql-15 package creates /var/lib/postgresql owned by postgres: clusters live below it.
state=/var/lib/postgresql
pgrx_data=$state/mfa-pgrx-test
data=$state/mfa-test-cluster
port=${MFA_TEST_PORT:-28815}

echo "== cargo pgrx test: plain Rust tests and #[pg_test]s"
rm -rf "$pgrx_data"
cargo pgrx test pg15 --runas postgres --pgdata "$pgrx_data"

echo "== installing the extension"
cargo pgrx install --pg-config /usr/bin/pg_config >/dev/null
# The previous version's install script, for the upgrade test (ALTER EXTENSION mfa UPDATE).
cp tests/upgrade/mfa--*.sql "$(/usr/bin/pg_config --sharedir)/extension/"

echo "== starting a test cluster on port $port"
bash scripts/cluster.sh stop "$data" "$port" || true
rm -rf "$data"
trap 'bash scripts/cluster.sh stop "$data" "$port"' EXIT
bash scripts/cluster.sh start "$data" "$port"

echo "== pg_regress: tests/pg_regress"
out=$(mktemp -d)
# setup (CREATE EXTENSION) first, then every other file in name order.
schedule="setup $(ls tests/pg_regress/sql | sed -n 's/\.sql$//p' | grep -vx setup | sort | tr '\n' ' ')"
if ! /usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
        --inputdir=tests/pg_regress --outputdir="$out" --host=/tmp --port="$port" \
        --user=postgres --dbname=mfa_regress $schedule; then
    cat "$out/regression.diffs" 2>/dev/null | head -200
    exit 1
fi

echo "== integration tests: tests/integration (races, hostile input, crashes, secrets, dumps, upgrade, memory)"
psql -X -q -h /tmp -p "$port" -U postgres -c "DROP DATABASE IF EXISTS mfa_integration" -c "CREATE DATABASE mfa_integration"
psql -X -q -h /tmp -p "$port" -U postgres -d mfa_integration -c "SET client_min_messages = error" -c "CREATE EXTENSION mfa"
# The crash and secrets tests start clusters of their own (ports 28818, 28819). `make soak` runs
# the long variants (MFA_HOSTILE_CALLS, MFA_CRASH_CYCLES).
MFA_TEST_DATABASE_URL="host=127.0.0.1 port=$port user=postgres dbname=mfa_integration" \
    cargo test --manifest-path tests/integration/Cargo.toml -- --test-threads=4 --nocapture

echo "== SMS worker: unit tests, then the worker against a fake provider (worker/tests)"
psql -X -q -h /tmp -p "$port" -U postgres -c "DROP DATABASE IF EXISTS mfa_worker" -c "CREATE DATABASE mfa_worker"
psql -X -q -h /tmp -p "$port" -U postgres -d mfa_worker -c "SET client_min_messages = error" -c "CREATE EXTENSION mfa"
# Every worker test drains the whole outbox of its database: one at a time.
MFA_WORKER_TEST_DATABASE_URL="host=127.0.0.1 port=$port user=postgres dbname=mfa_worker" MFA_TEST_PGDATA="$data" \
    cargo test -p mfa-sms-worker -- --test-threads=1
