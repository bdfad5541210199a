#!/bin/bash
# The package test's inside: run by scripts/package.sh (`make package-test`) as root, chrooted into
# a fresh Debian 12 root made by debootstrap, with the .deb files and this script in
# /tmp/mfa-package-test. It installs Debian's PostgreSQL from the archive, then the packages, sets
# a server up as packages' README says, and logs in. Usage: test-in-root.sh MAJOR PORT
set -euo pipefail
major=$1 port=$2
cd /tmp/mfa-package-test
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
started=$EPOCHREALTIME
step() { echo "-- $*"; }
# Seconds since $1 (an $EPOCHREALTIME), to the hundredth.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
fail() {
    echo "package test FAILED: $*" >&2
    exit 1
}
figure() { echo "figure: $*"; }

if [[ $major == 15 ]]; then
    step "without postgresql-15, dpkg leaves postgresql-15-mfa unconfigured (its Depends)"
    if dpkg -i ./postgresql-15-mfa_*.deb >/tmp/dpkg.out 2>&1; then
        fail "dpkg installed postgresql-15-mfa without postgresql-15"
    fi
    grep -q "depends on postgresql-15; however" /tmp/dpkg.out || { cat /tmp/dpkg.out; fail "dpkg failed otherwise"; }
    echo "  ok: $(grep -m1 -A1 'depends on postgresql-15' /tmp/dpkg.out | tr -s ' \n' ' ')"
    dpkg --purge postgresql-15-mfa >/dev/null
    step "Debian's postgresql-$major from the archive; systemd and man-db as on a server; oathtool (the test's TOTP codes)"
    t=$EPOCHREALTIME
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "postgresql-$major" systemd man-db oathtool >/dev/null
    figure "postgresql-$major $(dpkg-query -W -f='${Version}' "postgresql-$major"), systemd, man-db installed from the archive in $(since "$t") s"
    bindir=/usr/lib/postgresql/$major/bin
else
    # No Debian 12 package: the host copied its /opt/mfa-postgresql/MAJOR (scripts/postgres.sh's
    # build) here without a single mfa file; what it links to comes from the archive.
    step "PostgreSQL $major in /opt/mfa-postgresql/$major (scripts/postgres.sh's build, copied without mfa); its libraries, systemd, man-db, oathtool from the archive"
    t=$EPOCHREALTIME
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends libssl3 zlib1g systemd man-db oathtool >/dev/null
    id postgres >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/postgresql --create-home --shell /bin/bash postgres
    bindir=/opt/mfa-postgresql/$major/bin
    figure "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}')'s libraries, systemd, man-db installed from the archive in $(since "$t") s"
fi
libdir=$("$bindir/pg_config" --pkglibdir)
extdir=$("$bindir/pg_config" --sharedir)/extension
if compgen -G "$libdir/mfa*" >/dev/null || compgen -G "$extdir/mfa*" >/dev/null; then
    fail "an mfa file exists before the package is installed"
fi

step "apt-get install ./postgresql-$major-mfa_*.deb ./mfa-sms-worker_*.deb (dependencies resolved by apt)"
t=$EPOCHREALTIME
apt-get install -y -qq --no-install-recommends ./postgresql-"$major"-mfa_*.deb ./mfa-sms-worker_*.deb >/dev/null
figure "both packages installed in $(since "$t") s"
dpkg-query -W -f='${Package} ${Version} ${Architecture}: Depends: ${Depends}\n' "postgresql-$major-mfa" mfa-sms-worker
echo "files of postgresql-$major-mfa:"
dpkg -L "postgresql-$major-mfa" | while read -r f; do [[ -f $f ]] && echo "  $f"; done
for f in "$libdir/mfa.so" "$extdir/mfa.control" "$extdir"/mfa--*--*.sql; do
    [[ $(dpkg -S "$f") == "postgresql-$major-mfa: $f" ]] || fail "$f is not postgresql-$major-mfa's"
done
echo "  $(ls "$extdir"/mfa--*--*.sql | wc -l) update scripts"

step "mfa-sms-worker: the binary, its conffile, its documentation"
[[ $(stat -c '%a %U:%G' /etc/mfa-sms-worker/env) == "600 root:root" ]] ||
    fail "/etc/mfa-sms-worker/env is $(stat -c '%a %U:%G' /etc/mfa-sms-worker/env), not 600 root:root"
[[ $(dpkg-query -W -f='${Conffiles}' mfa-sms-worker) == *"/etc/mfa-sms-worker/env "* ]] ||
    fail "/etc/mfa-sms-worker/env is not a conffile"
mfa-sms-worker --version
mfa-sms-worker --help >/tmp/help.txt
grep -q -- "--database-url" /tmp/help.txt || fail "mfa-sms-worker --help does not describe --database-url"
echo "  --help: $(wc -l </tmp/help.txt) lines"
zcat /usr/share/man/man8/mfa-sms-worker.8.gz | grep -q -- "database-url" || fail "the man page lacks the options"
grep -q -- "--database-url" /usr/share/doc/mfa-sms-worker/README || fail "the README lacks the --help text"
# Every variable the env template names is one the worker reads (its --help lists them).
for name in $(sed -n 's/^#\{0,1\}\([A-Z][A-Z0-9_]*\)=.*/\1/p' /etc/mfa-sms-worker/env); do
    [[ $name == MFA_SMS_LOG ]] && continue # read by the log filter, not a flag
    grep -q "env: $name=\|\[env: $name\]" /tmp/help.txt || fail "the env file names $name, which the worker does not read"
done
echo "  every variable of /etc/mfa-sms-worker/env is one the worker reads"
man 8 mfa-sms-worker 2>/dev/null | grep -q -- "--database-url" || fail "man 8 mfa-sms-worker does not show the options"
echo "  man 8 mfa-sms-worker: $(man 8 mfa-sms-worker 2>/dev/null | wc -l) lines"

step "the unit: systemd-analyze verify and security (offline: no systemd runs in the test root)"
unit=/lib/systemd/system/mfa-sms-worker.service
verify=$(systemd-analyze verify "$unit" 2>&1) || { printf '%s\n' "$verify"; fail "systemd-analyze verify $unit"; }
[[ -z $verify ]] || { printf '%s\n' "$verify"; fail "systemd-analyze verify $unit complained"; }
echo "  ok: systemd-analyze verify: no complaint"
for setting in DynamicUser=yes ProtectSystem=strict ProtectHome=yes NoNewPrivileges=yes PrivateTmp=yes \
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" CapabilityBoundingSet= SystemCallFilter=@system-service \
    EnvironmentFile=/etc/mfa-sms-worker/env Restart=on-failure ExecStart=/usr/bin/mfa-sms-worker; do
    grep -qx "$setting" "$unit" || fail "$unit lacks $setting"
done
security=$(systemd-analyze security --offline=yes "$unit" 2>&1) || true
figure "systemd-analyze security: $(tail -1 <<<"$security" | sed -e 's/^→ //' -e 's/^-> //')"

step "a reinstall keeps the operator's edits of the env file (a conffile)"
echo "# edited by the operator" >>/etc/mfa-sms-worker/env
# No --force-conf* option: dpkg keeps an edited conffile on its own when the package's is unchanged.
dpkg -i ./mfa-sms-worker_*.deb </dev/null >/dev/null
grep -qx "# edited by the operator" /etc/mfa-sms-worker/env || fail "dpkg -i replaced the edited /etc/mfa-sms-worker/env"
[[ $(stat -c '%a %U:%G' /etc/mfa-sms-worker/env) == "600 root:root" ]] || fail "the env file's mode changed"
echo "  ok: kept, still 600 root:root"

step "a server set up as /usr/share/doc/postgresql-$major-mfa/README says"
data=/var/lib/postgresql/mfa-package-test
install -d -o postgres -g postgres -m 700 "$data"
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
runuser -u postgres -- "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
install -d /etc/postgresql
(umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >/etc/postgresql/mfa_keys && echo >>/etc/postgresql/mfa_keys)
chown postgres:postgres /etc/postgresql/mfa_keys
cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '/var/run/postgresql'
shared_preload_libraries = 'mfa'
mfa.encryption_key_file = '/etc/postgresql/mfa_keys'
CONF
stop() { runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; }
trap stop EXIT
t=$EPOCHREALTIME
runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null ||
    { tail -20 "$data/server.log"; fail "the server did not start with shared_preload_libraries = 'mfa'"; }
figure "server started with mfa preloaded in $(since "$t") s"
postmaster=$(head -1 "$data/postmaster.pid")
loaded=$(awk '$6 ~ /mfa\.so$/ {print $6}' "/proc/$postmaster/maps" | sort -u)
[[ $loaded == "$libdir/mfa.so" ]] || fail "the postmaster has not loaded $libdir/mfa.so (maps: $loaded)"
echo "  the postmaster (pid $postmaster) mapped $loaded, which is $(dpkg -S "$loaded" | cut -d: -f1)'s"

sql() { "$bindir/psql" -X -q -At -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$port" -U postgres -d "$db" -c "$1"; }
expect() { # expect WHAT EXPECTED ACTUAL
    [[ $3 == "$2" ]] || fail "$1: expected '$2', got '$3'"
    echo "  ok: $1: $3"
}

# A whole login: the organization requires MFA; the application's password check passed; the
# member proves an authenticator app (imported with totp_migrate, its code computed by oathtool);
# the guarded sessions table accepts the session.
login() {
    local org=$1 member=$2 token code
    expect "organization_upsert" REQUIRED_FOR_ALL "$(sql "SELECT mfa.organization_upsert('$org', 'REQUIRED_FOR_ALL') ->> 'mfa_policy'")"
    expect "member_upsert" "$member" "$(sql "SELECT mfa.member_upsert('$org', '$member') ->> 'member_id'")"
    token=$(sql "SELECT mfa.primary_authenticate('$org', '$member', 'password') ->> 'intermediate_session_token'")
    [[ -n $token ]] || fail "primary_authenticate gave no intermediate session token"
    expect "totp_migrate" 200 "$(sql "SELECT mfa.totp_migrate('$org', '$member', 'JBSWY3DPEHPK3PXP') ->> 'status_code'")"
    expect "a wrong code" invalid_totp_code "$(sql "SELECT mfa.totp_authenticate('$org', '$member', 'abc123', '$token') ->> 'error_type'")"
    code=$(oathtool --totp -b JBSWY3DPEHPK3PXP)
    expect "totp_authenticate with the code" "200 [\"password\", \"totp\"]" \
        "$(sql "SELECT (r ->> 'status_code') || ' ' || jsonb_path_query_array(r, '\$.authentication_factors[*].type')::text
                  FROM mfa.totp_authenticate('$org', '$member', '$code', '$token') AS r")"
    sql "CREATE SCHEMA IF NOT EXISTS app;
         CREATE TABLE IF NOT EXISTS app.sessions (session_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             organization_id text NOT NULL, member_id text NOT NULL, intermediate_session_token text,
             authentication_factors jsonb)" >/dev/null
    sql "SELECT mfa.session_table_guard('app.sessions')" >/dev/null
    sql "INSERT INTO app.sessions (organization_id, member_id, intermediate_session_token) VALUES ('$org', '$member', '$token')"
    expect "the guarded session, its assurance" aal2 \
        "$(sql "SELECT mfa.session_aal(authentication_factors) FROM app.sessions WHERE member_id = '$member'")"
}

step "CREATE EXTENSION mfa and a TOTP login"
db=postgres
sql "CREATE DATABASE mfa_package_test"
db=mfa_package_test
t=$EPOCHREALTIME
sql "SET client_min_messages = warning; CREATE EXTENSION mfa"
expect "extension version" "$(dpkg-query -W -f='${Version}' "postgresql-$major-mfa")" \
    "$(sql "SELECT extversion FROM pg_extension WHERE extname = 'mfa'")"
login acme ann@acme.example
figure "CREATE EXTENSION and the TOTP login in $(since "$t") s"

step "an SMS login, its code delivered by the packaged worker (console provider) as an unprivileged user"
expect "member with a phone" "+14155552671" \
    "$(sql "SELECT mfa.member_upsert('acme', 'bob@acme.example', '+1 415 555 2671') ->> 'mfa_phone_number'")"
token=$(sql "SELECT mfa.primary_authenticate('acme', 'bob@acme.example', 'password') ->> 'intermediate_session_token'")
expect "otp_sms_send" 200 "$(sql "SELECT mfa.otp_sms_send('acme', 'bob@acme.example', intermediate_session_token => '$token') ->> 'status_code'")"
sql 'CREATE ROLE "mfa-sms-worker" LOGIN IN ROLE mfa_sms_worker'
# The installed env file, with the connection string of this test (socket, port, database).
sed "s|^MFA_DATABASE_URL=.*|MFA_DATABASE_URL=\"host=/var/run/postgresql port=$port dbname=$db user=mfa-sms-worker\"|" \
    /etc/mfa-sms-worker/env >/tmp/worker.env
t=$EPOCHREALTIME
delivered=$(set -a && . /tmp/worker.env && set +a &&
    MFA_SMS_LOG=warn setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs \
        mfa-sms-worker --exit-when-idle)
figure "worker drained the outbox in $(since "$t") s"
# "[sms] to +14155552671 (US, en): <text with the code>": the code is in the text.
body=$(sed -n 's/^\[sms\] to [^:]*: //p' <<<"$delivered")
echo "  worker printed: $(sed -E 's/\<[0-9]{6}\>/NNNNNN/g' <<<"$delivered")"
sms_code=$(grep -oE '\<[0-9]{6}\>' <<<"$body" | head -1)
[[ -n $sms_code ]] || fail "the worker delivered no code"
expect "outbox" "sent 1" "$(sql "SELECT status || ' ' || count(*) FROM mfa.sms_outbox GROUP BY status")"
expect "otp_sms_authenticate with the delivered code" 200 \
    "$(sql "SELECT mfa.otp_sms_authenticate('acme', 'bob@acme.example', '$sms_code', '$token') ->> 'status_code'")"

step "ALTER EXTENSION mfa UPDATE: 0.1.0 (tests/upgrade's install script, a test fixture, not packaged) to 0.9.0, then from 0.9.0"
db=postgres
sql "CREATE DATABASE mfa_package_upgrade"
db=mfa_package_upgrade
install -m 644 mfa--0.1.0.sql "$extdir/"
t=$EPOCHREALTIME
sql "SET client_min_messages = warning; CREATE EXTENSION mfa VERSION '0.1.0'"
sql "SET client_min_messages = warning; ALTER EXTENSION mfa UPDATE TO '0.9.0'"
expect "version before" 0.9.0 "$(sql "SELECT extversion FROM pg_extension WHERE extname = 'mfa'")"
sql "SET client_min_messages = warning; ALTER EXTENSION mfa UPDATE"
expect "version after ALTER EXTENSION mfa UPDATE" "$(dpkg-query -W -f='${Version}' "postgresql-$major-mfa")" \
    "$(sql "SELECT extversion FROM pg_extension WHERE extname = 'mfa'")"
login globex hank@globex.example
figure "0.1.0 -> 0.9.0 -> current and a login in $(since "$t") s"
rm "$extdir/mfa--0.1.0.sql"

step "removal: the server stopped, both packages purged, nothing of them left"
stop
trap - EXIT
dpkg --purge "postgresql-$major-mfa" mfa-sms-worker >/dev/null
left=$(ls -d "$libdir"/mfa* "$extdir"/mfa* /usr/bin/mfa-sms-worker /etc/mfa-sms-worker \
    /lib/systemd/system/mfa-sms-worker.service /usr/share/doc/mfa-sms-worker 2>/dev/null || true)
[[ -z $left ]] || fail "left after purge: $left"
echo "  ok: nothing left"
figure "inside the root: $(since "$started") s"
echo "package test inside the root: passed"
