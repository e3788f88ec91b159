#!/usr/bin/env bash
# Builds the static pause binary of k0x's pause image (the image holds nothing else, so the binary
# must need no dynamic loader or libc) and prints its path:
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile pause -p k0x-pause --target <host triple>
# The explicit --target keeps these flags away from build scripts and from the ordinary builds in
# target/debug and target/release. Result: <target-dir>/<host triple>/pause/pause.
set -euo pipefail
cd "$(dirname "$0")/.."

target=$("${RUSTC:-rustc}" -vV | sed -n 's/^host: //p')
unset CARGO_ENCODED_RUSTFLAGS   # it would take precedence over RUSTFLAGS
RUSTFLAGS='-C target-feature=+crt-static' "${CARGO:-cargo}" build --quiet --locked \
  --profile pause -p k0x-pause --target "$target"
echo "${CARGO_TARGET_DIR:-target}/$target/pause/pause"
