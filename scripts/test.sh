#!/usr/bin/env bash
# The project's test command (see README): formatting, lints, every test.
# Each step fails the script on failure. The network-namespace tests (netboot/tests/dhcp_netns.rs)
# need root and the packages .ci/run installs (iproute2, isc-dhcp-client, udhcpc, isc-dhcp-relay).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --document-private-items --quiet

# Fuzz smoke: every cargo-fuzz target built and run from its seed corpus for a bounded time.
# CI installs cargo-fuzz and sets FUZZ_REQUIRED=1; elsewhere the step is skipped (with a notice)
# when cargo-fuzz is missing.
if command -v cargo-fuzz >/dev/null 2>&1; then
    step "fuzz smoke (${FUZZ_SECONDS:-15} s per target)"
    bash fuzz/smoke.sh "${FUZZ_SECONDS:-15}"
elif [ "${FUZZ_REQUIRED:-0}" = 1 ]; then
    echo "cargo-fuzz is required (FUZZ_REQUIRED=1) but not installed: cargo install cargo-fuzz" >&2
    exit 1
else
    step "fuzz smoke SKIPPED: cargo-fuzz not installed (cargo install cargo-fuzz)"
fi

step "all checks passed"
