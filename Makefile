# mfa: `make demo` and `make test` set up everything they need on a fresh Debian 12 machine.
.PHONY: setup build install test soak bench demo walkthrough stop lint fmt clean package package-test

DEMO_PORT ?= 28816
# The PostgreSQL major versions `make test` runs the suite on (`make test PG=17`: one).
PG ?= 15 17 18

setup:
	@bash scripts/setup.sh

build: setup
	cargo build --release

install: setup
	cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config

test:
	@bash scripts/test.sh $(PG)

# The test suite with the long variants: 200,000 hostile calls, 20 kill -9 cycles.
soak:
	@MFA_HOSTILE_CALLS=200000 MFA_CRASH_CYCLES=20 MFA_LONG_TESTS=1 bash scripts/test.sh $(PG)

# Debian packages into target/packages/ (docs/packages.md): postgresql-N-mfa for each version of
# PG (`make package PG=15`: one) and mfa-sms-worker.
package:
	@bash scripts/package.sh build $(PG)

# Installs them into a fresh Debian 12 root (debootstrap) and logs in (default: PostgreSQL 15).
package-test:
	@bash scripts/package.sh test $(if $(filter command line environment,$(origin PG)),$(PG),15)

bench:
	@bash scripts/bench.sh

# The reference web application on http://127.0.0.1:8080 (MFA_WEB_PORT), its SMS worker and a cluster.
demo:
	@bash scripts/demo.sh start $(DEMO_PORT)

# The terminal walkthrough of a login in SQL (examples/walkthrough.sql).
walkthrough:
	@bash scripts/demo.sh walkthrough $(DEMO_PORT)

stop:
	@bash scripts/demo.sh stop $(DEMO_PORT)

lint: setup
	bash scripts/released.sh
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean: stop
	cargo clean
	rm -rf .demo
