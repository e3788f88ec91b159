#!/usr/bin/env bash
# Sets up every dependency the tests use and runs all of them: format, lints, unit and integration
# tests with real etcd, containerd, runc, CNI plugins and kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-packages.sh
export K0X_STRICT_TESTS=1   # tests needing root or packages fail instead of skipping

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
