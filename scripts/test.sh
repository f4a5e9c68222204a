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

# ---------------------------------------------------------------------------------------------
# FUZZ SMOKE: added by the fuzz task (bounded cargo-fuzz runs of fuzz/ over its seed corpora).
# ---------------------------------------------------------------------------------------------

step "all checks passed"
