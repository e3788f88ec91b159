#!/usr/bin/env bash
# The README's run command: install packages, build k0x with its embedded payload, run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-packages.sh && bash scripts/build.sh && exec target/release/k0x server --enable-worker "$@"
