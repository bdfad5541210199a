#!/usr/bin/env bash
# Makes PostgreSQL MAJOR available on this Debian 12 machine and prints the path of its pg_config.
# Usage: postgres.sh [--if-built] MAJOR   (15, 17 or 18; --if-built: never build, fail if absent)
#
# 15 is Debian 12's own package. 17 and 18 are in no Debian 12 suite, and Debian 13/testing's
# binaries need a newer C library, so they are built from the upstream tarball that Debian ships
# as its source (the package registry is the only network here), pinned by SHA-256, into
# /opt/mfa-postgresql/MAJOR: about 4 minutes each on 2 cores, once; a second run only checks.
set -euo pipefail
build=true
if [[ ${1-} == --if-built ]]; then
    build=false
    shift
fi
major=${1:?usage: postgres.sh [--if-built] MAJOR}

case "$major" in
15)
    # Installed by setup.sh with the rest of Debian's packages.
    [[ -x /usr/lib/postgresql/15/bin/pg_config ]] || $build
    echo /usr/lib/postgresql/15/bin/pg_config
    exit 0
    ;;
17) version=17.11 sha256=dd27f2b3c59e73ed14aa3324901242bf69a032a6347805f274e6260322d42979 ;;
18) version=18.6 sha256=555610c24d53e4316da5b7d3fc25c279d96856d5e0e23ee308c328c5fa881d9f ;;
*)
    echo "postgres.sh: PostgreSQL $major is not one this project tests (15, 17, 18)" >&2
    exit 2
    ;;
esac

prefix=/opt/mfa-postgresql/$major
pg_config=$prefix/bin/pg_config
# The stamp is written last: a build that was interrupted is done again.
stamp=$prefix/.mfa-built-$version
if [[ -e $stamp ]]; then
    echo "$pg_config"
    exit 0
fi
$build || exit 1

# Release tarballs from 17 on no longer carry the generated parsers: bison and flex build them.
build_packages=(bison flex libssl-dev zlib1g-dev pkg-config make gcc curl)
missing=()
for p in "${build_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "postgres.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=postgresql-${major}_$version.orig.tar.bz2
echo "postgres.sh: building PostgreSQL $version into $prefix (a few minutes, once)" >&2
curl -fsS -o "$work/$tarball" "http://deb.debian.org/debian/pool/main/p/postgresql-$major/$tarball"
echo "$sha256  $work/$tarball" | sha256sum --check --quiet
tar -xjf "$work/$tarball" -C "$work"
cd "$work/postgresql-$version"
log=$work/build.log
# A build of its own, as from a shell: run under `make test PG=17`, the make variables of our
# Makefile reached PostgreSQL's (and its generated headers were not made).
unset MAKEFLAGS MFLAGS MAKELEVEL
# What the tests use: the server and its tools, pg_regress, TLS (the worker's tests), and the
# contrib modules amcheck (hostile-input test) and pgcrypto (the bench's baselines).
if ! { ./configure --prefix="$prefix" --with-openssl --without-icu --without-readline &&
       make -j"$(nproc)" &&
       make install &&
       make -C contrib/amcheck install &&
       make -C contrib/pgcrypto install; } >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "postgres.sh: building PostgreSQL $version failed" >&2
    exit 1
fi
chmod -R a+rX "$prefix"
touch "$stamp"
echo "$pg_config"
