#!/usr/bin/env bash
# The whole test suite on each PostgreSQL major version given (default 15 17 18): plain Rust tests
# and #[pg_test]s (cargo pgrx test), then the SQL regression tests (pg_regress), the Rust
# integration tests (real concurrent connections) and the SMS worker's tests against a fresh cluster
# of that version with the extension installed; on the first version, the browser tests of the
# reference web application (examples/webapp). Run as root: clusters run as the `postgres` user.
# Usage: test.sh [MAJOR ...]
set -euo pipefail
cd "$(dirname "$0")/.."
majors=("${@:-15 17 18}")
# "15 17 18" as one argument (make's $(PG) unquoted gives three; a caller's quoted list, one).
read -r -a majors <<<"${majors[*]}"
echo "== Released scripts are unchanged (sql/released.sha256)"
bash scripts/released.sh
bash scripts/setup.sh "${majors[@]}"

# The postgresql-15 package creates /var/lib/postgresql owned by postgres: clusters live below it.
state=/var/lib/postgresql
port=${MFA_TEST_PORT:-28815}

suite() {
    local major=$1
    local pg_config pgrx_data data bindir out schedule started=$SECONDS
    pg_config=$(bash scripts/postgres.sh "$major")
    bindir=$("$pg_config" --bindir)
    pgrx_data=$state/mfa-pgrx-test-$major
    data=$state/mfa-test-cluster-$major
    # The tests find the server's programs (pg_ctl, pg_dump, initdb) through pg_config on the PATH.
    export PATH="$bindir:$PATH" PG_CONFIG=$pg_config

    echo "== PostgreSQL $major: cargo pgrx test: plain Rust tests and #[pg_test]s"
    rm -rf "$pgrx_data"
    cargo pgrx test "pg$major" --runas postgres --pgdata "$pgrx_data"

    echo "== PostgreSQL $major: installing the extension"
    cargo pgrx install --pg-config "$pg_config" >/dev/null
    # The previous version's install script, for the upgrade test (ALTER EXTENSION mfa UPDATE).
    cp tests/upgrade/mfa--*.sql "$("$pg_config" --sharedir)/extension/"

    echo "== PostgreSQL $major: starting a test cluster on port $port"
    bash scripts/cluster.sh stop "$data" "$port" || true
    rm -rf "$data"
    trap "bash scripts/cluster.sh stop '$data' '$port'" EXIT
    bash scripts/cluster.sh start "$data" "$port"

    echo "== PostgreSQL $major: pg_regress: tests/pg_regress"
    out=$(mktemp -d)
    # setup (CREATE EXTENSION) first, then every other file in name order.
    schedule="setup $(ls tests/pg_regress/sql | sed -n 's/\.sql$//p' | grep -vx setup | sort | tr '\n' ' ')"
    if ! "$(dirname "$("$pg_config" --pgxs)")/../test/regress/pg_regress" \
            --bindir="$bindir" --inputdir=tests/pg_regress --outputdir="$out" --host=/tmp --port="$port" \
            --user=postgres --dbname=mfa_regress $schedule; then
        cat "$out/regression.diffs" 2>/dev/null | head -200
        exit 1
    fi

    echo "== PostgreSQL $major: integration tests: tests/integration (races, hostile input, crashes, secrets, dumps, upgrade, memory)"
    psql -X -q -h /tmp -p "$port" -U postgres -c "DROP DATABASE IF EXISTS mfa_integration" -c "CREATE DATABASE mfa_integration"
    psql -X -q -h /tmp -p "$port" -U postgres -d mfa_integration -c "SET client_min_messages = error" -c "CREATE EXTENSION mfa"
    # The crash and secrets tests start clusters of their own (ports 28818, 28819). `make soak` runs
    # the long variants (MFA_HOSTILE_CALLS, MFA_CRASH_CYCLES).
    # Tests that wait out a real window (the lockout's 5 minutes) run on the first version only.
    MFA_LONG_TESTS=${MFA_LONG_TESTS:-$long_tests} \
    MFA_TEST_DATABASE_URL="host=127.0.0.1 port=$port user=postgres dbname=mfa_integration" \
        cargo test --manifest-path tests/integration/Cargo.toml -- --test-threads=4 --nocapture

    echo "== PostgreSQL $major: SMS worker: unit tests, then the worker against a fake provider (worker/tests)"
    psql -X -q -h /tmp -p "$port" -U postgres -c "DROP DATABASE IF EXISTS mfa_worker" -c "CREATE DATABASE mfa_worker"
    psql -X -q -h /tmp -p "$port" -U postgres -d mfa_worker -c "SET client_min_messages = error" -c "CREATE EXTENSION mfa"
    # Every worker test drains the whole outbox of its database: one at a time.
    MFA_WORKER_TEST_DATABASE_URL="host=127.0.0.1 port=$port user=postgres dbname=mfa_worker" MFA_TEST_PGDATA="$data" \
        cargo test -p mfa-sms-worker -- --test-threads=1

    if [[ -n $browser_tests ]]; then
        echo "== PostgreSQL $major: browser tests of the reference web application (examples/webapp, headless Chromium)"
        bash examples/webapp/tests/run-browser-tests.sh "$port" "$data"
    fi

    bash scripts/cluster.sh stop "$data" "$port"
    trap - EXIT
    echo "== PostgreSQL $major: passed in $((SECONDS - started)) s"
}

long_tests=1
# The web application's browser tests run once, on the first version (MFA_BROWSER_TESTS=0: never).
browser_tests=1
[[ ${MFA_BROWSER_TESTS:-1} == 0 ]] && browser_tests=
for major in "${majors[@]}"; do
    # A subshell each: one version's PATH and trap do not reach the next.
    (suite "$major")
    long_tests=
    browser_tests=
done
echo "== passed on PostgreSQL ${majors[*]} in $SECONDS s"
