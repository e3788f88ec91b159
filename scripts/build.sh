#!/usr/bin/env bash
# Builds the release k0x with its components attached, ready to run:
#   1. cargo build --release (k0x, static, and the k0x-payload tool)
#   2. embedded-bins/stage: every component of components.lock built from its upstream Go module
#      (cached outside the work tree, so an unchanged lock takes seconds), packed as one tar.zst
#      with zstd long-distance matching
#   3. k0x-payload attach: append the payload (with its trailer) to the binary
# Result: target/release/k0x. K0X_PAYLOAD_LEVEL sets the zstd level (default 19).
# Alternatives, labelled as such in `k0x version --components`:
#   scripts/build.sh --from-system [DIR...]  Debian's etcd, containerd, runc, CNI plugins, kubectl
#   scripts/build.sh --from-dir DIR          binaries you supply
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
# Static (crt-static on the gnu target, no musl toolchain needed), so k0x runs on old
# distributions; an explicit --target keeps build scripts and proc macros dynamic.
triple=$(rustc -vV | sed -n 's/^host: //p')
# K0X_EXPECT_PAYLOAD lets a copy that later loses its payload (strip, re-link) say exactly that.
K0X_EXPECT_PAYLOAD=1 RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$triple" -p k0x -p k0x-assets --bins
release="$target_dir/$triple/release"
# Proof that k0x needs nothing from the OS: it runs in a chroot holding only itself.
proof=$(mktemp -d)
trap 'rm -rf "$proof"' EXIT
cp "$release/k0x" "$proof/k0x"
file "$proof/k0x" | grep -q 'static' || { echo "scripts/build.sh: $release/k0x is not statically linked" >&2; exit 1; }
chroot "$proof" /k0x version >/dev/null && chroot "$proof" /k0x config create >/dev/null ||
  { echo "scripts/build.sh: k0x does not run in an empty chroot (it needs something from the OS)" >&2; exit 1; }

source_args=("$@")
[ ${#source_args[@]} -gt 0 ] || source_args=(--from-source)
payload="$target_dir/payload/payload.tar.zst"
embedded-bins/stage --out "$payload" --level "${K0X_PAYLOAD_LEVEL:-19}" --long "${source_args[@]}" >/dev/null

mkdir -p target/release
"$release/k0x-payload" attach "$release/k0x" "$payload" target/release/k0x >&2
echo "built target/release/k0x ($(du -m target/release/k0x | cut -f1) MiB with its component payload); see: target/release/k0x version --components" >&2
