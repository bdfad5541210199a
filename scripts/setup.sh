#!/usr/bin/env bash
# Installs what building and testing mfa needs on a fresh Debian 12 machine, for the PostgreSQL
# major versions given (default 15; scripts/postgres.sh builds 17 and 18). Idempotent: a second run
# only checks, in about a second. Usage: setup.sh [MAJOR ...]
set -euo pipefail

# chromium: the web application's browser tests (driven by playwright-core, which downloads no browser).
packages=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang pkg-config sudo
          zbar-tools oathtool chromium curl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "0.18.0"; then
    echo "setup: installing cargo-pgrx 0.18.0 (a few minutes, once)"
    cargo install cargo-pgrx --version 0.18.0 --locked
fi

# cargo-pgrx knows every version built here, not only those asked for now (init rewrites its list).
for major in "${@:-15}"; do
    bash "$(dirname "$0")/postgres.sh" "$major" >/dev/null
done
init=() config="${PGRX_HOME:-$HOME/.pgrx}/config.toml" stale=false
for major in 15 17 18; do
    pg_config=$(bash "$(dirname "$0")/postgres.sh" --if-built "$major") || continue
    init+=("--pg$major" "$pg_config")
    grep -qs "^pg$major *= *\"$pg_config\"" "$config" || stale=true
done
if $stale; then
    cargo pgrx init "${init[@]}"
fi

# playwright-core for the browser tests, at the version examples/webapp/tests/package-lock.json pins
# (it drives Debian's chromium; it downloads no browser).
webtests=$(dirname "$0")/../examples/webapp/tests
pinned=$(sed -n 's/.*"playwright-core": "\([0-9.]*\)".*/\1/p' "$webtests/package.json")
installed=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$webtests/node_modules/playwright-core/package.json" 2>/dev/null || true)
if [[ $installed != "$pinned" ]]; then
    echo "setup: installing playwright-core $pinned (npm ci in examples/webapp/tests)"
    (cd "$webtests" && npm ci --no-audit --no-fund >/dev/null)
fi
