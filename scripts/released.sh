#!/usr/bin/env bash
# Released scripts never change: every upgrade script to a released version (any version but the
# one Cargo.toml is building) must be listed in sql/released.sha256, and match it byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
current=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
status=0
for script in sql/mfa--*--*.sql; do
    target=${script##*--}
    target=${target%.sql}
    if [[ $target != "$current" ]] && ! grep -q "  $script\$" sql/released.sha256; then
        echo "released.sh: $script upgrades to released version $target but is not in sql/released.sha256" >&2
        status=1
    fi
done
if ! grep -v '^#' sql/released.sha256 | sha256sum --check --quiet --strict; then
    echo "released.sh: a released script changed (sql/released.sha256); write a new upgrade script instead" >&2
    status=1
fi
exit $status
