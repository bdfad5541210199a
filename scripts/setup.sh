#!/usr/bin/env bash
# Installs what building and testing mfa needs on a fresh Debian 12 machine. Idempotent: a second
# run only checks, in about a second.
set -euo pipefail

packages=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang pkg-config sudo
          zbar-tools oathtool)
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

if ! grep -qs '^pg15 *= *"/usr/bin/pg_config"' "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init --pg15 /usr/bin/pg_config
fi
