#!/usr/bin/env bash
# Starts or stops a throw-away PostgreSQL cluster run by the `postgres` user (PostgreSQL refuses
# to run as root), of the installation PG_CONFIG names (default: Debian's PostgreSQL 15).
# Usage: [PG_CONFIG=…] cluster.sh start|stop DATADIR PORT
set -euo pipefail
action=$1 datadir=$2 port=$3
bindir=$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
as_postgres() { runuser -u postgres -- "$@"; }

case "$action" in
start)
    if [[ ! -s "$datadir/PG_VERSION" ]]; then
        mkdir -p "$datadir"
        chown postgres:postgres "$datadir"
        chmod 700 "$datadir"
        as_postgres "$bindir/initdb" -D "$datadir" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
        # The master key, readable by the server's user only (production keeps it outside the data
        # directory, so that a copy of the data is not a copy of the key).
        (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$datadir/mfa_keys" && echo >>"$datadir/mfa_keys")
        chown postgres:postgres "$datadir/mfa_keys"
        cat >>"$datadir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '/tmp'
max_connections = 100
shared_preload_libraries = '${MFA_PRELOAD-mfa}'
mfa.encryption_key_file = '$datadir/mfa_keys'
CONF
    fi
    if ! as_postgres "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        as_postgres "$bindir/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w -t 60 start >/dev/null
    fi
    ;;
stop)
    if [[ -s "$datadir/PG_VERSION" ]] && as_postgres "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        as_postgres "$bindir/pg_ctl" -D "$datadir" -m fast -w stop >/dev/null
    fi
    ;;
*)
    echo "usage: $0 start|stop DATADIR PORT" >&2
    exit 2
    ;;
esac
