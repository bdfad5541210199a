#!/usr/bin/env bash
# The reference web application's browser tests (make test runs them once, on the first PostgreSQL
# version): builds the app and the SMS worker, starts them against the running test cluster on
# PG_PORT (a fresh database, seeded), drives Debian's headless Chromium through every flow with
# playwright-core (tests/browser.mjs) and saves a screenshot of every page under
# target/webapp-screenshots/. scripts/setup.sh installed chromium and playwright-core.
# Afterwards no secret the browser saw (TOTP key, recovery or SMS code, cookie) may be in the app's
# or the worker's log, nor in the server's (PGDATA/server.log, when given).
# Usage: run-browser-tests.sh PG_PORT [PGDATA]
set -euo pipefail
cd "$(dirname "$0")"
pg_port=$1 pgdata=${2-}
root=$(cd ../../.. && pwd)
web_port=${MFA_WEB_TEST_PORT:-28860}
bin=${CARGO_TARGET_DIR:-$root/target}/debug
state=$(mktemp -d)
shots=$root/target/webapp-screenshots

log=$state/build.log
if ! cargo build -p mfa-webapp -p mfa-sms-worker >"$log" 2>&1; then
    tail -50 "$log"
    exit 1
fi
# The app's own unit tests (cookies, messages, the inbox's signature check against the worker's).
if ! cargo test -p mfa-webapp >"$log" 2>&1; then
    tail -50 "$log"
    exit 1
fi
grep "^test result" "$log"
[[ -d node_modules/playwright-core ]] || npm ci --no-audit --no-fund >/dev/null

trap 'bash ../run.sh stop "$state"' EXIT
# A 5-second freshness window for /billing, so that the test sees it lapse.
MFA_WEB_STEP_UP_SECONDS=5 bash ../run.sh start "$pg_port" mfa_webapp_test "$web_port" "$state" "$bin"
rm -rf "$shots"
if ! WEB_URL=http://127.0.0.1:$web_port PGPORT=$pg_port PGDATABASE=mfa_webapp_test SCREENSHOTS=$shots \
        SECRETS_FILE=$state/secrets timeout 900 node browser.mjs; then
    echo "-- web application log" && tail -30 "$state/webapp.log"
    echo "-- SMS worker log" && tail -30 "$state/worker.log"
    exit 1
fi
# Keys, recovery codes and cookies everywhere; SMS codes (six digits, like many a number in a
# server's log) as whole words in the app's and the worker's logs.
logs=("$state/webapp.log" "$state/worker.log")
all_logs=("${logs[@]}")
[[ -n $pgdata && -r $pgdata/server.log ]] && all_logs+=("$pgdata/server.log")
grep -E '^.{12,}$' "$state/secrets" | sort -u >"$state/long" || true
grep -E '^[0-9]{6}$' "$state/secrets" | sort -u >"$state/codes" || true
if { [[ -s $state/long ]] && grep -F -q -f "$state/long" "${all_logs[@]}"; } ||
   { [[ -s $state/codes ]] && grep -F -w -q -f "$state/codes" "${logs[@]}"; }; then
    echo "a secret the browser saw is in a log"
    exit 1
fi
echo "no secret the browser saw ($(cat "$state/long" "$state/codes" | wc -l)) is in ${all_logs[*]##*/}"
