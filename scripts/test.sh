#!/usr/bin/env bash
# Sets up every dependency the tests use, builds the components from source, and runs all tests:
# format, lints, unit and integration tests with real etcd, containerd, runc, CNI plugins and kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-packages.sh
# Every component from its upstream Go module (cached outside the work tree: seconds when the lock
# is unchanged) into target/components/<arch>, where the tests find the real binaries.
bash embedded-bins/build >/dev/null
export K0X_STRICT_TESTS=1   # tests needing root or packages fail instead of skipping

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
