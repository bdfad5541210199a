#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh), then builds and installs the extension in release mode,
# printing the build's log only when it fails. Used by `make demo` and `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== building and installing mfa (release)"
log=$(mktemp)
if ! cargo pgrx install --release --pg-config "$(bash scripts/postgres.sh 15)" >"$log" 2>&1; then
    tail -50 "$log"
    exit 1
fi
