#!/usr/bin/env bash
# `k0x server` versus bare etcd: time to etcd healthy (fresh and restarted, same etcd binary,
# same run, median and ratio) and k0x's own memory while supervising etcd and containerd.
# Needs root and the packages of scripts/setup-packages.sh. K0X_BENCH_ROUNDS sets the rounds
# (default 7).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p k0x --bench server "$@"
