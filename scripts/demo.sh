#!/usr/bin/env bash
# `make demo`: builds in release mode, installs, starts a local cluster (run by the postgres user)
# with the extension, and walks through real MFA logins. `make stop` stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
action=$1 port=$2

# The data lives in the git-ignored .demo/ when the postgres user can reach this checkout;
# otherwise (a checkout under /root, say) beside the other clusters.
datadir=$PWD/.demo/data
if ! runuser -u postgres -- test -x "$PWD"; then
    datadir=/var/lib/postgresql/mfa-demo
fi

if [[ $action == stop ]]; then
    bash scripts/cluster.sh stop "$datadir" "$port"
    echo "demo cluster stopped"
    exit 0
fi

bash scripts/install-release.sh
log=$(mktemp)
mkdir -p "$(dirname "$datadir")"
MFA_PRELOAD=mfa bash scripts/cluster.sh start "$datadir" "$port"
psql=(psql -X -h /tmp -p "$port" -U postgres)
"${psql[@]}" -q -c "DROP DATABASE IF EXISTS mfa_demo" -c "CREATE DATABASE mfa_demo"
# The master key comes from the key file scripts/cluster.sh wrote (mfa.encryption_key_file).
echo "== walkthrough: examples/walkthrough.sql"
"${psql[@]}" -d mfa_demo -v ON_ERROR_STOP=1 -f examples/walkthrough.sql
echo
echo "== the SMS delivery worker (console provider) drains the outbox"
if ! cargo build --release -p mfa-sms-worker >"$log" 2>&1; then
    tail -50 "$log"
    exit 1
fi
"${psql[@]}" -q -d mfa_demo -At -c "SELECT mfa.member_upsert('acme', 'carol@acme.example', '+1 416 555 0123') ->> 'member_id'" \
    -c "SELECT 'queued a code for carol: ' || (mfa.otp_sms_send('acme', 'carol@acme.example', locale => 'fr') ->> 'status_code')"
MFA_SMS_LOG=warn target/release/mfa-sms-worker --provider console --exit-when-idle \
    --database-url "host=/tmp port=$port user=postgres dbname=mfa_demo"
"${psql[@]}" -d mfa_demo -c "SELECT message_id, status, provider_message_id, body FROM mfa.sms_outbox ORDER BY message_id"

cat <<MSG

The demo cluster is running (data: $datadir).
Connect:   psql -h /tmp -p $port -U postgres mfa_demo
Stop it:   make stop
Worker:    target/release/mfa-sms-worker --help
MSG
