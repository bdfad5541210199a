#!/usr/bin/env bash
# Starts or stops the reference web application and its SMS worker against a running cluster that
# has the mfa extension installed (scripts/demo.sh and the browser tests use it).
#   run.sh start PG_PORT DATABASE WEB_PORT STATE_DIR BIN_DIR   (recreates DATABASE, seeds it)
#   run.sh stop STATE_DIR
# The app runs in demo mode (plain http on localhost, the /dev/sms inbox); extra MFA_WEB_* settings
# pass through the environment (MFA_WEB_STEP_UP_SECONDS, say).
set -euo pipefail
cd "$(dirname "$0")"
action=$1

stop() {
    local state=$1 pid
    for name in webapp worker; do
        if [[ -s $state/$name.pid ]]; then
            pid=$(cat "$state/$name.pid")
            if kill "$pid" 2>/dev/null; then
                for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            fi
            rm -f "$state/$name.pid"
        fi
    done
}

if [[ $action == stop ]]; then
    stop "$2"
    exit 0
fi

pg_port=$2 database=$3 web_port=$4 state=$5 bin=$6
mkdir -p "$state"
stop "$state"
psql=(psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$pg_port" -U postgres)
"${psql[@]}" -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database"
"${psql[@]}" -d "$database" -f sql/schema.sql >/dev/null
# Passkeys work on the app's localhost origin (browsers refuse an IP address as the relying party).
MFA_WEB_SEED_ORIGINS="http://localhost:$web_port${MFA_WEB_EXTRA_ORIGINS:+,$MFA_WEB_EXTRA_ORIGINS}" \
MFA_WEB_SEED_DATABASE_URL="host=/tmp port=$pg_port user=postgres dbname=$database" "$bin/mfa-webapp" seed-demo

# The webhook's shared secret: made here, given to both sides, never printed.
secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
MFA_WEB_DEMO=1 MFA_WEB_PORT=$web_port MFA_WEB_WEBHOOK_SECRET=$secret \
MFA_WEB_DATABASE_URL="host=/tmp port=$pg_port user=mfa_webapp dbname=$database" \
MFA_WEB_ADMIN_DATABASE_URL="host=/tmp port=$pg_port user=mfa_webapp_admin dbname=$database" \
    setsid "$bin/mfa-webapp" >"$state/webapp.log" 2>&1 </dev/null &
echo $! >"$state/webapp.pid"
MFA_SMS_LOG=info MFA_SMS_WEBHOOK_SECRET=$secret \
    setsid "$bin/mfa-sms-worker" --provider webhook --allow-insecure-webhook \
    --webhook-url "http://127.0.0.1:$web_port/dev/sms/webhook" --poll-interval 1 \
    --database-url "host=/tmp port=$pg_port user=mfa_webapp_sms dbname=$database" >"$state/worker.log" 2>&1 </dev/null &
echo $! >"$state/worker.pid"

for _ in $(seq 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$web_port/login" 2>/dev/null; then
        exit 0
    fi
    if ! kill -0 "$(cat "$state/webapp.pid")" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
echo "the web application did not start:" >&2
tail -20 "$state/webapp.log" >&2
stop "$state"
exit 1
