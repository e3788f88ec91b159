#!/usr/bin/env bash
# Builds the release k0x with its components attached, ready to run:
#   1. cargo build --release (k0x and the k0x-payload tool)
#   2. embedded-bins/stage --from-system [DIR...]: etcd, containerd, runc, CNI plugins and kubectl
#      from this host's packages, plus any kube-* binaries found in the DIRs given to this script
#   3. k0x-payload attach: append the payload (with its trailer) to the binary
# Result: target/release/k0x. K0X_PAYLOAD_LEVEL sets the zstd level (default 19).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
# K0X_EXPECT_PAYLOAD lets a copy that later loses its payload (strip, re-link) say exactly that.
K0X_EXPECT_PAYLOAD=1 cargo build --release --locked -p k0x -p k0x-assets --bins

payload="$target_dir/payload/payload-from-system.tar.zst"
embedded-bins/stage --out "$payload" --level "${K0X_PAYLOAD_LEVEL:-19}" --from-system "$@" >/dev/null

mkdir -p target/release
"$target_dir/release/k0x-payload" attach "$target_dir/release/k0x" "$payload" target/release/k0x >&2
echo "built target/release/k0x with its component payload; see: target/release/k0x version --components" >&2
