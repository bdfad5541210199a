#!/usr/bin/env bash
# `make demo`: builds in release mode, installs, starts a local cluster (run by the postgres user)
# with the extension, then the reference web application (examples/webapp) on localhost:8080
# (MFA_WEB_PORT) and the SMS worker posting to its development inbox, with seeded organizations.
# `make walkthrough`: the same cluster, and a terminal walkthrough of real MFA logins in SQL.
# `make stop` stops all of it.
# Usage: demo.sh start|walkthrough|stop PORT
set -euo pipefail
cd "$(dirname "$0")/.."
action=$1 port=$2
web_port=${MFA_WEB_PORT:-8080}
target=${CARGO_TARGET_DIR:-target}

# The data lives in the git-ignored .demo/ when the postgres user can reach this checkout;
# otherwise (a checkout under /root, say) beside the other clusters.
datadir=$PWD/.demo/data
if ! runuser -u postgres -- test -x "$PWD"; then
    datadir=/var/lib/postgresql/mfa-demo
fi
web_state=$PWD/.demo/web

if [[ $action == stop ]]; then
    bash examples/webapp/run.sh stop "$web_state"
    bash scripts/cluster.sh stop "$datadir" "$port"
    echo "demo stopped (web application, SMS worker, cluster)"
    exit 0
fi

bash scripts/install-release.sh
log=$(mktemp)
mkdir -p "$(dirname "$datadir")"
MFA_PRELOAD=mfa bash scripts/cluster.sh start "$datadir" "$port"
psql=(psql -X -h /tmp -p "$port" -U postgres)

if [[ $action == walkthrough ]]; then
    "${psql[@]}" -q -c "DROP DATABASE IF EXISTS mfa_walkthrough" -c "CREATE DATABASE mfa_walkthrough"
    # The master key comes from the key file scripts/cluster.sh wrote (mfa.encryption_key_file).
    echo "== walkthrough: examples/walkthrough.sql"
    "${psql[@]}" -d mfa_walkthrough -v ON_ERROR_STOP=1 -f examples/walkthrough.sql
    echo
    echo "== the SMS delivery worker (console provider) drains the outbox"
    if ! cargo build --release -p mfa-sms-worker >"$log" 2>&1; then
        tail -50 "$log"
        exit 1
    fi
    "${psql[@]}" -q -d mfa_walkthrough -At -c "SELECT mfa.member_upsert('acme', 'carol@acme.example', '+1 416 555 0123') ->> 'member_id'" \
        -c "SELECT 'queued a code for carol: ' || (mfa.otp_sms_send('acme', 'carol@acme.example', locale => 'fr') ->> 'status_code')"
    MFA_SMS_LOG=warn "$target/release/mfa-sms-worker" --provider console --exit-when-idle \
        --database-url "host=/tmp port=$port user=postgres dbname=mfa_walkthrough"
    "${psql[@]}" -d mfa_walkthrough -c "SELECT message_id, status, provider_message_id, body FROM mfa.sms_outbox ORDER BY message_id"
    cat <<MSG

The demo cluster is running (data: $datadir).
Connect:   psql -h /tmp -p $port -U postgres mfa_walkthrough
Stop it:   make stop
Worker:    $target/release/mfa-sms-worker --help
MSG
    exit 0
fi

echo "== building the web application and the SMS worker (release)"
if ! cargo build --release -p mfa-webapp -p mfa-sms-worker >"$log" 2>&1; then
    tail -50 "$log"
    exit 1
fi
echo "== starting the web application on localhost:$web_port and the SMS worker (webhook to its inbox)"
bash examples/webapp/run.sh start "$port" mfa_demo "$web_port" "$web_state" "$target/release"

cat <<MSG

  Open  http://localhost:$web_port/  and sign in (password demo-password for everyone):

    organization acme    (MFA required for all; remembers devices 30 days)
      ann@acme.example   no factor yet: scan the QR code with your authenticator app
      dana@acme.example  no factor yet: "Use a passkey instead" (your device's screen lock)
      bob@acme.example   a phone: the text message arrives in the SMS inbox
    organization globex  (MFA optional)
      carol@globex.example   administrator: the Organization page sets the policy

  SMS inbox (development only):  http://localhost:$web_port/dev/sms
  The database:  psql -h /tmp -p $port -U postgres mfa_demo
  Logs:          $web_state/webapp.log, $web_state/worker.log
  Stop it all:   make stop
MSG
