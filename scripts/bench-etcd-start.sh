#!/usr/bin/env bash
# Time from starting etcd to healthy: k0x's generated arguments and mutual TLS versus bare etcd,
# same machine, same run. Prints per-round samples, medians, minimums and the ratios.
# K0X_BENCH_ROUNDS sets the number of rounds (default 9).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p k0x-node --bench etcd_start "$@"
