#!/usr/bin/env bash
# Counts the user-space instructions `tokenmint serve` executes per exchange, under valgrind's callgrind: a figure that does not depend on the host's speed or noise.
#
# Usage: bench/callgrind.sh [TOKENMINT_BIN] [OUT_FILE]
#   TOKENMINT_BIN  the tokenmint binary to profile (default target/release/tokenmint)
#   OUT_FILE       where the callgrind profile goes (default callgrind.tokenmint.out)
# Needs: valgrind (Debian package `valgrind`), curl, ss, and a release build of
# tokenmint-bench (`cargo build --release -p tokenmint-cli -p tokenmint-bench`).
# Set BENCH_BIN to use another tokenmint-bench binary.
#
# What it does: runs the HTTP bench at 1 client, paced at 25 exchanges/s (valgrind
# runs the service about 50 times slower), with tokenmint under callgrind and
# instrumentation off. Once the level runs, it switches instrumentation on for
# WINDOW seconds (default 20), reads tokenmint_exchanges_total from /metrics before
# and after, and prints instructions per exchange. Read the profile with
# `callgrind_annotate --inclusive=yes OUT_FILE`.
#
# Caveat: valgrind's CPU lacks SHA-NI and runs ring's RSA on another code path, so
# crypto counts more instructions here than it costs natively (RSA-2048 verify is
# about 430,000 instructions here and 21 us natively). Compare builds with this
# figure; do not read it as CPU time.
set -euo pipefail

bin=${1:-target/release/tokenmint}
out=${2:-callgrind.tokenmint.out}
bench=${BENCH_BIN:-$(dirname "$bin")/tokenmint-bench}
window=${WINDOW:-20}
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
[ -x "$bin" ] || { echo "callgrind.sh: $bin is not an executable tokenmint binary" >&2; exit 1; }
[ -x "$bench" ] || { echo "callgrind.sh: $bench is not an executable tokenmint-bench binary" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin_abs=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
cat > "$work/tokenmint" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/cg.%p.out "$bin_abs" "\$@"
EOF
chmod +x "$work/tokenmint"

"$bench" --tokenmint-bin "$work/tokenmint" --concurrency 1 --rate 25 \
    --duration $((window + 20)) --warmup 4 > "$work/bench.log" 2>&1 &
bench_pid=$!

pid=
for _ in $(seq 1 120); do
    pid=$(pgrep -f "callgrind-out-file=$work/.* serve --config" | head -1 || true)
    [ -n "$pid" ] && break
    sleep 0.5
done
[ -n "$pid" ] || { echo "callgrind.sh: tokenmint did not start; see the bench log:" >&2; cat "$work/bench.log" >&2; exit 1; }
for _ in $(seq 1 240); do
    grep -q '^level:' "$work/bench.log" && break
    sleep 0.5
done
sleep 5
port=$(ss -ltnpH | grep "pid=$pid," | awk '{print $4}' | sed 's/.*://' | head -1)
exchanges() {
    curl -sf "http://127.0.0.1:$port/metrics" | awk '/^tokenmint_exchanges_total/ {s += $2} END {print s + 0}'
}

before=$(exchanges)
callgrind_control --instr=on "$pid" >/dev/null 2>&1
sleep "$window"
callgrind_control --instr=off "$pid" >/dev/null 2>&1
after=$(exchanges)
callgrind_control --dump "$pid" >/dev/null 2>&1
wait "$bench_pid" || { echo "callgrind.sh: the bench failed:" >&2; cat "$work/bench.log" >&2; exit 1; }

profile=$(ls -S "$work"/cg.*.out* | head -1)
cp "$profile" "$out"
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); if (!t) t = $1} END {print t}')
n=$((after - before))
[ "$n" -gt 0 ] || { echo "callgrind.sh: no exchanges in the window" >&2; exit 1; }
echo "exchanges: $n; instructions: $total; per exchange: $((total / n)); profile: $out"
