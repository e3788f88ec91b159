#!/usr/bin/env bash
# Payload benchmarks, all on one payload in one run (medians of N runs, ratios against a baseline
# measured in the same run):
#   cold extraction time / `zstd -dc payload | tar -x` time    goal <= 1.10
#     (k0x fsyncs every file before it renames it; tar does not, so the same ratio is also given
#      against `zstd -dc | tar -x && sync -f`, the durable equivalent)
#   warm start (payload unchanged, whole process)               goal <= 50 ms
#   compressed payload / raw bytes                              goal <= 0.30
#   peak RSS while extracting                                   goal <= 16 MiB
# Extraction runs through k0x-payload, which calls the same k0x_assets::extract as k0x.
# Usage: scripts/bench-assets.sh [WORK_DIR]   (K0X_BENCH_PAYLOAD=FILE reuses a staged payload,
#        K0X_BENCH_RUNS=N sets the number of runs, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
work=${1:-target/bench-assets}
runs=${K0X_BENCH_RUNS:-5}
command -v /usr/bin/time >/dev/null || { echo "bench-assets: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }

cargo build --release --locked -p k0x-assets --bins >&2
tool="$target_dir/release/k0x-payload"
rm -rf "$work" && mkdir -p "$work"
payload=${K0X_BENCH_PAYLOAD:-}
if [ -z "$payload" ]; then
  payload=$(embedded-bins/stage --from-system --out "$work/payload.tar.zst" 2>/dev/null)
fi
cp /bin/true "$work/stub"
"$tool" attach "$work/stub" "$payload" "$work/k0x-with-payload" >/dev/null

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

base=() durable=() cold=() warm=() rss=()
for _ in $(seq "$runs"); do
  rm -rf "$work/tar" && mkdir "$work/tar" && sync
  t0=$(now_ms); zstd -dc "$payload" | tar -x -C "$work/tar"; t1=$(now_ms)
  base+=($((t1 - t0)))
  rm -rf "$work/tar" && mkdir "$work/tar" && sync
  t0=$(now_ms); zstd -dc "$payload" | tar -x -C "$work/tar" && sync -f "$work/tar"; t1=$(now_ms)
  durable+=($((t1 - t0)))
  rm -rf "$work/data" && sync
  t0=$(now_ms)
  /usr/bin/time -f %M -o "$work/rss" "$tool" extract "$work/data" "$work/k0x-with-payload" >/dev/null 2>&1
  t1=$(now_ms)
  cold+=($((t1 - t0)))
  rss+=("$(cat "$work/rss")")
  t0=$(now_ms); "$tool" extract "$work/data" "$work/k0x-with-payload" >/dev/null 2>&1; t1=$(now_ms)
  warm+=($((t1 - t0)))
done

raw=$(du -cb "$work/tar" | tail -n1 | cut -f1)
packed=$(stat -c %s "$payload")
b=$(printf '%s\n' "${base[@]}" | median)
d=$(printf '%s\n' "${durable[@]}" | median)
c=$(printf '%s\n' "${cold[@]}" | median)
w=$(printf '%s\n' "${warm[@]}" | median)
r=$(printf '%s\n' "${rss[@]}" | sort -n | tail -n1)
files=$(ls "$work/tar" | grep -cvx manifest.json)
rm -rf "$work/tar" "$work/data"
awk -v b="$b" -v d="$d" -v c="$c" -v w="$w" -v r="$r" -v raw="$raw" -v packed="$packed" -v runs="$runs" -v files="$files" 'BEGIN {
  printf "payload: %d files, %.1f MiB raw, %.1f MiB compressed; median of %d runs\n", files, raw / 1048576, packed / 1048576, runs
  printf "cold extraction        %6d ms   baseline zstd -dc | tar -x %d ms   ratio %.2f (goal <= 1.10)\n", c, b, c / b
  printf "                                 with sync -f %d ms                ratio %.2f\n", d, c / d
  printf "warm start             %6d ms   (goal <= 50 ms)\n", w
  printf "compressed / raw        %.3f      (goal <= 0.30)\n", packed / raw
  printf "peak RSS extracting    %6.1f MiB (goal <= 16 MiB)\n", r / 1024
}'
