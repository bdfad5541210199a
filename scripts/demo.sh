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

bash scripts/setup.sh
echo "== building and installing mfa (release)"
log=$(mktemp)
if ! cargo pgrx install --release --pg-config /usr/bin/pg_config >"$log" 2>&1; then
    tail -50 "$log"
    exit 1
fi
mkdir -p "$(dirname "$datadir")"
MFA_PRELOAD=mfa bash scripts/cluster.sh start "$datadir" "$port"
psql=(psql -X -h /tmp -p "$port" -U postgres)
"${psql[@]}" -q -c "DROP DATABASE IF EXISTS mfa_demo" -c "CREATE DATABASE mfa_demo"
"${psql[@]}" -q -d mfa_demo -c "ALTER DATABASE mfa_demo SET mfa.encryption_key = '$(head -c 32 /dev/urandom | base64)'"
echo "== walkthrough: examples/walkthrough.sql"
"${psql[@]}" -d mfa_demo -v ON_ERROR_STOP=1 -f examples/walkthrough.sql
cat <<MSG

The demo cluster is running (data: $datadir).
Connect:   psql -h /tmp -p $port -U postgres mfa_demo
Stop it:   make stop
MSG
