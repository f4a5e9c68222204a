#!/usr/bin/env bash
# The project's test command (see README): formatting, lints, every test.
# Each step fails the script on failure. The network-namespace tests (netboot/tests/dhcp_netns.rs)
# need root and the packages .ci/run installs (iproute2, isc-dhcp-client, udhcpc, isc-dhcp-relay,
# tftp-hpa, atftp, curl); the control plane's tests need PostgreSQL (started below), and its web
# UI test needs node, npm and chromium.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

# PostgreSQL for the control plane's `postgres` tests (each test creates and drops its own
# database). With IMS_TEST_PG_URL set, that server is used as is. Otherwise the Debian cluster
# (package postgresql) is started if it is down and a role `ims_test` that may create databases
# is added.
setup_postgres() {
    if [ -n "${IMS_TEST_PG_URL:-}" ]; then return; fi
    if ! command -v pg_lsclusters >/dev/null 2>&1; then
        echo "PostgreSQL is needed for the control-plane tests: apt-get install postgresql," \
             "or set IMS_TEST_PG_URL=postgres://USER:PASSWORD@HOST:PORT/postgres" >&2
        exit 1
    fi
    local version cluster port status
    read -r version cluster port status _ < <(pg_lsclusters -h | head -n 1) || true
    if [ -z "${version:-}" ]; then
        version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
        pg_createcluster "$version" main >/dev/null
        read -r version cluster port status _ < <(pg_lsclusters -h | head -n 1)
    fi
    if [ "$status" != online ]; then pg_ctlcluster "$version" "$cluster" start; fi
    runuser -u postgres -- psql -q -p "$port" -v ON_ERROR_STOP=1 -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ims_test') THEN
            CREATE ROLE ims_test LOGIN CREATEDB PASSWORD 'ims_test';
        END IF; END \$\$; GRANT pg_signal_backend TO ims_test;" >/dev/null
    export IMS_TEST_PG_URL="postgres://ims_test:ims_test@127.0.0.1:$port/postgres"
    echo "PostgreSQL $version/$cluster on port $port (IMS_TEST_PG_URL=$IMS_TEST_PG_URL)"
}

# Licences, duplicate crate versions and sources of the dependency graph (deny.toml). Offline:
# the advisory database cannot be fetched here. CI installs cargo-deny and sets DENY_REQUIRED=1.
if command -v cargo-deny >/dev/null 2>&1; then
    step "cargo deny --offline check licenses bans sources"
    # cargo-deny reads the whole lock file (every platform's crates): fetch them first, since
    # --offline also keeps its `cargo metadata` from downloading.
    cargo fetch --locked --quiet
    cargo deny --offline check licenses bans sources
elif [ "${DENY_REQUIRED:-0}" = 1 ]; then
    echo "cargo-deny is required (DENY_REQUIRED=1) but not installed: cargo install --locked cargo-deny" >&2
    exit 1
else
    step "cargo deny SKIPPED: cargo-deny not installed (cargo install --locked cargo-deny)"
fi

step "PostgreSQL for the control-plane tests"
setup_postgres

# The web UI's browser test (control/tests/ui_browser.rs) runs Playwright from npm with
# Debian's Chromium; it fails (never skips) when node, chromium or these packages are missing.
step "npm ci (the web UI's browser test)"
command -v npm >/dev/null 2>&1 || { echo "npm is needed for the web UI test: apt-get install nodejs npm" >&2; exit 1; }
npm ci --prefix control/tests/ui --no-audit --no-fund

step "cargo test"
cargo test --workspace

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --document-private-items --quiet

# Fuzz smoke: every cargo-fuzz target built and run from its seed corpus for a bounded time.
# CI installs cargo-fuzz and sets FUZZ_REQUIRED=1; elsewhere the step is skipped (with a notice)
# when cargo-fuzz is missing.
if command -v cargo-fuzz >/dev/null 2>&1; then
    # A dev build (debug assertions, no optimisation): 320 instead of 830 CPU-seconds cold;
    # FUZZ_PROFILE=release fuzzes faster for longer runs.
    step "fuzz smoke (${FUZZ_SECONDS:-15} s per target, ${FUZZ_PROFILE:-dev} build)"
    FUZZ_PROFILE="${FUZZ_PROFILE:-dev}" bash fuzz/smoke.sh "${FUZZ_SECONDS:-15}"
elif [ "${FUZZ_REQUIRED:-0}" = 1 ]; then
    echo "cargo-fuzz is required (FUZZ_REQUIRED=1) but not installed: cargo install cargo-fuzz" >&2
    exit 1
else
    step "fuzz smoke SKIPPED: cargo-fuzz not installed (cargo install cargo-fuzz)"
fi

step "all checks passed"
