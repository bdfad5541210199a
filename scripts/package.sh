#!/usr/bin/env bash
# Debian packages of mfa: `make package` (build) and `make package-test` (test). Run as root on
# Debian 12, like the rest of the scripts. See docs/packages.md.
#
# Usage: package.sh build [MAJOR ...]   postgresql-MAJOR-mfa for each major (default 15 17 18) and
#                                       mfa-sms-worker, into target/packages/
#        package.sh test [MAJOR ...]    installs them into a fresh Debian 12 root that never saw
#                                       the source build (default 15) and logs in; see below
#
# postgresql-15-mfa depends on Debian's postgresql-15 and installs into its paths. 17 and 18 are
# in no Debian 12 suite: this project builds them from source into /opt/mfa-postgresql/MAJOR
# (scripts/postgres.sh), so postgresql-17-mfa and postgresql-18-mfa install into that tree and
# depend on no PostgreSQL package (none provides it); their description says so.
set -euo pipefail
# ${text//@NAME@/value} inserts the value as it is (bash 5.2 would make & in it the match).
shopt -u patsub_replacement 2>/dev/null || true
cd "$(dirname "$0")/.."
repo=$PWD
action=${1:?usage: package.sh build|test [MAJOR ...]}
shift
out=${MFA_PACKAGE_DIR:-$repo/target/packages}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
worker_version=$(sed -n 's/^version = "\(.*\)"/\1/p' worker/Cargo.toml | head -1)
arch=$(dpkg --print-architecture)

# Fills a template of packaging/: every @NAME@ by the value given as NAME=value.
fill() {
    local text
    text=$(<"$1")
    shift
    for pair in "$@"; do
        text=${text//@${pair%%=*}@/${pair#*=}}
    done
    if [[ $text == *@[A-Z_]*@* ]]; then
        echo "package.sh: $1 has a placeholder left: $(grep -o '@[A-Z_]*@' <<<"$text" | head -1)" >&2
        return 1
    fi
    printf '%s\n' "$text"
}

# The shared libraries' packages of the ELF files given (dpkg-shlibdeps, from dpkg-dev), from
# a package directory laid out as dpkg-shlibdeps expects (debian/NAME/...).
shlib_depends() {
    local work=$1 found
    shift
    found=$(cd "$work" && dpkg-shlibdeps -O "$@" 2>"$work/shlibdeps.log" | sed -n 's/^shlibs:Depends=//p') || true
    if [[ -z $found ]]; then
        cat "$work/shlibdeps.log" >&2
        echo "package.sh: dpkg-shlibdeps found no dependency of $*" >&2
        return 1
    fi
    printf '%s\n' "$found"
}

# DEBIAN/control and DEBIAN/md5sums of a staged tree, then the .deb.
build_deb() {
    local stage=$1 control=$2 deb=$3
    mkdir -p "$stage/DEBIAN"
    printf '%s\n' "$control" >"$stage/DEBIAN/control"
    (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
        xargs -0 md5sum >DEBIAN/md5sums)
    # Files are root's in the package, whoever builds it; modes are the staged ones.
    dpkg-deb --build --root-owner-group -Zxz "$stage" "$deb" >/dev/null
    echo "package.sh: $deb ($(du -k "$deb" | cut -f1) kB)"
}

installed_size() { du -sk --exclude=DEBIAN "$1" | cut -f1; }

build_extension() {
    local major=$1 work=$2
    local pkg=postgresql-$major-mfa pg_config pkglibdir sharedir stage log depends target target_short
    pg_config=$(bash scripts/postgres.sh "$major")
    pkglibdir=$("$pg_config" --pkglibdir)
    sharedir=$("$pg_config" --sharedir)
    stage=$work/debian/$pkg
    log=$work/$pkg.log
    echo "== package.sh: $pkg $version: cargo pgrx package --pg-config $pg_config (release: minutes)"
    if ! cargo pgrx package --pg-config "$pg_config" --out-dir "$stage" >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "package.sh: cargo pgrx package failed for PostgreSQL $major" >&2
        exit 1
    fi
    # What a server needs: the library, the control file, the install script and the update script
    # of every release (cargo pgrx package copies sql/mfa--*--*.sql; checked here, not assumed).
    for f in "$pkglibdir/mfa.so" "$sharedir/extension/mfa.control" "$sharedir/extension/mfa--$version.sql"; do
        [[ -s $stage$f ]] || { echo "package.sh: cargo pgrx package made no $f" >&2; exit 1; }
    done
    for script in sql/mfa--*--*.sql; do
        cmp -s "$script" "$stage$sharedir/extension/${script#sql/}" ||
            install -m 644 "$script" "$stage$sharedir/extension/"
    done
    grep -q "^default_version = '$version'" "$stage$sharedir/extension/mfa.control" ||
        { echo "package.sh: mfa.control does not say default_version = '$version'" >&2; exit 1; }
    strip --strip-unneeded "$stage$pkglibdir/mfa.so"
    chmod 644 "$stage$pkglibdir/mfa.so"

    if [[ $major == 15 ]]; then
        # Debian's own server package: its paths are the ones built for.
        depends="postgresql-15"
        target=" Built for Debian 12's postgresql-15: it installs into /usr/lib/postgresql/15/lib
 and /usr/share/postgresql/15/extension."
        target_short="Debian 12's postgresql-15 ($pkglibdir, $sharedir/extension)"
    else
        depends=""
        target=" Built for the PostgreSQL $major that mfa's scripts/postgres.sh builds from source
 into $("$pg_config" --bindir | sed 's|/bin$||') (PostgreSQL $("$pg_config" --version | awk '{print $2}')): it installs into that
 tree ($pkglibdir, $sharedir/extension). No Debian
 package provides that installation, so this package depends on none: install
 it only where that tree exists. It does not work with another PostgreSQL
 $major (PGDG's postgresql-$major lives in /usr/lib/postgresql/$major)."
        target_short="the PostgreSQL $major built from source by mfa's scripts/postgres.sh
($pkglibdir, $sharedir/extension);
no Debian package provides it, so this package depends on none"
    fi
    local libs
    libs=$(shlib_depends "$work" "$stage$pkglibdir/mfa.so")
    depends=${depends:+$depends, }$libs

    local doc=$stage/usr/share/doc/$pkg
    install -d "$doc"
    fill packaging/README.extension.in MAJOR="$major" VERSION="$version" TARGET_SHORT="$target_short" \
        PKGLIBDIR="$pkglibdir" SHAREDIR="$sharedir" >"$doc/README"
    install -m 644 packaging/copyright "$doc/copyright"
    chmod 644 "$doc/README"

    # Assigned first: a failure inside an argument's $(…) would not stop the script.
    local control
    control=$(fill packaging/control.extension.in MAJOR="$major" VERSION="$version" ARCH="$arch" \
        INSTALLED_SIZE="$(installed_size "$stage")" DEPENDS="$depends" TARGET="$target")
    build_deb "$stage" "$control" "$out/${pkg}_${version}_$arch.deb"
}

build_worker() {
    local work=$1
    local pkg=mfa-sms-worker stage=$work/debian/mfa-sms-worker log=$work/worker.log
    echo "== package.sh: $pkg $worker_version: cargo build --release -p mfa-sms-worker"
    if ! cargo build --release -p mfa-sms-worker >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "package.sh: building the worker failed" >&2
        exit 1
    fi
    install -D -m 755 "$target_dir/release/mfa-sms-worker" "$stage/usr/bin/mfa-sms-worker"
    strip --strip-unneeded "$stage/usr/bin/mfa-sms-worker"
    install -D -m 644 packaging/mfa-sms-worker.service "$stage/lib/systemd/system/mfa-sms-worker.service"
    # Connection string and provider credentials: root's only (systemd reads it before the start).
    install -D -m 600 packaging/mfa-sms-worker.env "$stage/etc/mfa-sms-worker/env"
    local help doc=$stage/usr/share/doc/mfa-sms-worker
    help=$("$stage/usr/bin/mfa-sms-worker" --help)
    install -d "$doc" "$stage/usr/share/man/man8"
    install -m 644 packaging/copyright "$doc/copyright"
    {
        cat packaging/README.worker
        echo
        echo "mfa-sms-worker --help"
        echo "---------------------"
        echo
        printf '%s\n' "$help"
    } >"$doc/README"
    chmod 644 "$doc/README"
    # The man page is the --help text, so that it never disagrees with the binary.
    {
        echo ".TH MFA-SMS-WORKER 8 \"\" \"mfa-sms-worker $worker_version\" \"System Administration\""
        echo ".SH NAME"
        echo "mfa-sms-worker \\- delivers the SMS messages of the mfa PostgreSQL extension's outbox"
        echo ".SH SYNOPSIS"
        echo ".B mfa-sms-worker"
        echo "[\\fIOPTIONS\\fR]"
        echo ".br"
        echo ".B systemctl enable --now mfa-sms-worker"
        echo ".SH DESCRIPTION"
        echo "Every option can also be given as the environment variable shown in brackets; the"
        echo "systemd unit mfa-sms-worker.service reads them from /etc/mfa-sms-worker/env."
        echo ".SH OPTIONS"
        echo ".nf"
        # Roff: a backslash is written \e, and a line may not begin with . or '.
        printf '%s\n' "$help" | sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"
        echo ".fi"
        echo ".SH FILES"
        echo ".TP"
        echo "/etc/mfa-sms-worker/env"
        echo "the environment of the unit: connection string, provider, credentials (mode 0600)"
        echo ".TP"
        echo "/lib/systemd/system/mfa-sms-worker.service"
        echo "the hardened unit (a dynamic user, a read-only system)"
        echo ".SH SEE ALSO"
        echo "/usr/share/doc/mfa-sms-worker/README, systemd.exec(5)"
    } | gzip -9n >"$stage/usr/share/man/man8/mfa-sms-worker.8.gz"
    chmod 644 "$stage/usr/share/man/man8/mfa-sms-worker.8.gz"
    mkdir -p "$stage/DEBIAN"
    echo /etc/mfa-sms-worker/env >"$stage/DEBIAN/conffiles"

    local depends control
    depends=$(shlib_depends "$work" "$stage/usr/bin/mfa-sms-worker")
    control=$(fill packaging/control.worker.in VERSION="$worker_version" ARCH="$arch" \
        INSTALLED_SIZE="$(installed_size "$stage")" DEPENDS="$depends")
    build_deb "$stage" "$control" "$out/${pkg}_${worker_version}_$arch.deb"
}

build() {
    local majors=("$@") started=$SECONDS work
    bash scripts/setup.sh "${majors[@]}"
    # dpkg-deb is dpkg's; dpkg-shlibdeps (the libraries' dependencies) is dpkg-dev's.
    if ! dpkg-query -W -f='${Status}' dpkg-dev 2>/dev/null | grep -q "install ok installed"; then
        echo "package.sh: installing dpkg-dev"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null
    fi
    work=$(mktemp -d)
    trap "rm -rf '$work'" EXIT
    # dpkg-shlibdeps reads debian/control to know it is in a source package.
    mkdir -p "$work/debian" "$out"
    printf 'Source: mfa\n\nPackage: mfa\nArchitecture: any\n' >"$work/debian/control"
    umask 022
    for major in "${majors[@]}"; do
        build_extension "$major" "$work"
    done
    build_worker "$work"
    echo "== package.sh: built in $((SECONDS - started)) s:"
    ls -l "$out"/*.deb
}


# Removes a test root, unless something is still mounted below it (or MFA_PACKAGE_TEST_KEEP=1).
remove_root() {
    if grep -q " $1/" /proc/self/mountinfo; then
        echo "package.sh: $1 still has mounts: not removed" >&2
        return 1
    elif [[ -n ${MFA_PACKAGE_TEST_KEEP:-} ]]; then
        echo "package.sh: kept $1"
    else
        rm -rf "$1"
    fi
}

# The test: a Debian 12 root made afresh by debootstrap (half a minute; nothing of this checkout,
# its build or this machine's PostgreSQL installations is in it), then, chrooted into it
# (packaging/test-in-root.sh): for 15, Debian's postgresql-15 from the archive (for 17 and 18, a
# copy of scripts/postgres.sh's /opt/mfa-postgresql/MAJOR without its mfa files), the packages
# with apt-get install ./*.deb, a server set up as the package's README says, CREATE EXTENSION
# mfa, a TOTP login, an SMS login delivered by the packaged worker, ALTER EXTENSION mfa UPDATE,
# the worker's unit checked by the root's own systemd-analyze (verify, security), removal.
# Scratch roots /var/tmp/mfa-package-test-*, port 29950 (MFA_PACKAGE_TEST_PORT);
# MFA_PACKAGE_TEST_KEEP=1 keeps the root, MFA_DEBIAN_MIRROR names another mirror.
test_packages() {
    local started=$SECONDS port=${MFA_PACKAGE_TEST_PORT:-29950} mirror=${MFA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
    local worker_deb=$out/mfa-sms-worker_${worker_version}_$arch.deb t major
    [[ $(id -u) == 0 ]] || { echo "package.sh test: run as root (debootstrap, chroot)" >&2; exit 1; }
    for major in "$@"; do
        # 17 and 18: the root gets a copy of this machine's /opt/mfa-postgresql/MAJOR
        # (scripts/postgres.sh), without its mfa files.
        if [[ $major != 15 ]] && ! bash scripts/postgres.sh --if-built "$major" >/dev/null; then
            echo "package.sh test: PostgreSQL $major is not built here: bash scripts/postgres.sh $major" >&2
            exit 1
        fi
        [[ -s $out/postgresql-${major}-mfa_${version}_$arch.deb ]] ||
            { echo "package.sh test: no $out/postgresql-${major}-mfa_${version}_$arch.deb: make package PG=$major first" >&2; exit 1; }
    done
    [[ -s $worker_deb ]] || { echo "package.sh test: no $worker_deb: make package first" >&2; exit 1; }
    if ! command -v debootstrap >/dev/null; then
        echo "package.sh test: installing debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    echo "== package sizes"
    for deb in "$out"/postgresql-*-mfa_"${version}"_"$arch".deb "$worker_deb"; do
        printf '%8s kB  %s (installed: %s kB)\n' "$(du -k "$deb" | cut -f1)" "${deb##*/}" \
            "$(dpkg-deb -f "$deb" Installed-Size)"
    done
    for major in "$@"; do
        root=$(mktemp -d /var/tmp/mfa-package-test-XXXXXX)
        # The root's /: mktemp made it 0700, which neither postgres nor apt's _apt could cross.
        chmod 755 "$root"
        # The root's /proc and /dev are mounted in a mount namespace of the test's own, gone when
        # it ends; nothing is deleted while anything is still mounted below the root.
        trap 'remove_root "$root"' EXIT
        echo "== PostgreSQL $major: a fresh Debian 12 root (debootstrap --variant=minbase bookworm) in $root"
        t=$SECONDS
        if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1; then
            tail -20 "$root.debootstrap.log" >&2
            exit 1
        fi
        rm -f "$root.debootstrap.log"
        echo "figure: debootstrap in $((SECONDS - t)) s"
        # As a Debian 12 server's: the point releases and the security updates.
        printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
            "$mirror" "$mirror" >"$root/etc/apt/sources.list"
        # A chroot starts no services, and the server package makes no cluster of its own (the
        # test makes its own, on its own port).
        printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
        chmod 755 "$root/usr/sbin/policy-rc.d"
        mkdir -p "$root/etc/postgresql-common"
        echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
        if [[ $major != 15 ]]; then
            # The server the package targets, as scripts/postgres.sh installs it, and nothing of mfa
            # (test runs here install mfa into it: those files stay behind).
            tar -C / --exclude="opt/mfa-postgresql/$major/lib/mfa.so" \
                --exclude="opt/mfa-postgresql/$major/share/extension/mfa.control" \
                --exclude="opt/mfa-postgresql/$major/share/extension/mfa--*" \
                -cf - "opt/mfa-postgresql/$major" | tar -C "$root" -xf -
        fi
        mkdir -p "$root/tmp/mfa-package-test"
        cp "$out/postgresql-${major}-mfa_${version}_$arch.deb" "$worker_deb" packaging/test-in-root.sh \
            tests/upgrade/mfa--0.1.0.sql "$root/tmp/mfa-package-test/"
        echo "== PostgreSQL $major: chrooted into it: packaging/test-in-root.sh"
        t=$SECONDS
        unshare --mount --propagation private --fork bash -c '
            set -e
            mount -t proc proc "$1/proc"
            mount --rbind /dev "$1/dev"
            exec chroot "$1" /bin/bash /tmp/mfa-package-test/test-in-root.sh "$2" "$3"' _ "$root" "$major" "$port"
        echo "figure: inside the root (server, install, tests, purge): $((SECONDS - t)) s"

        remove_root "$root"
        trap - EXIT
    done
    echo "figure: package test: $((SECONDS - started)) s"
    echo "package test: passed"
}

case "$action" in
build)
    majors=("${@:-15 17 18}")
    read -r -a majors <<<"${majors[*]}"
    build "${majors[@]}"
    ;;
test)
    majors=("${@:-15}")
    read -r -a majors <<<"${majors[*]}"
    test_packages "${majors[@]}"
    ;;
*)
    echo "usage: package.sh build|test [MAJOR ...]" >&2
    exit 2
    ;;
esac
