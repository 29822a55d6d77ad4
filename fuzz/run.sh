#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for a bounded time.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; TARGET defaults to every target.
# The committed corpora under fuzz/corpus/ are read but never written: new
# inputs go to a scratch directory. A crash leaves its input under
# fuzz/artifacts/<target>/ and makes this script exit non-zero.
#
# Only the stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets stable rustc
# take the -Z sanitizer flags cargo-fuzz passes. cargo-fuzz itself is
# installed from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version '^0.13'
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

start=$(date +%s)
if [ "$#" -gt 0 ]; then
  for t in "${targets[@]}"; do cargo fuzz build "$t"; done
else
  cargo fuzz build
fi
echo "fuzz: built ${#targets[@]} targets in $(( $(date +%s) - start )) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# config_parse needs a valid App key; making one in-process under the
# sanitizer takes over a minute, so hand it a throwaway one when openssl is here.
if command -v openssl >/dev/null 2>&1; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$scratch/app.pem" 2>/dev/null
  export TOKENMINT_FUZZ_APP_KEY_FILE="$scratch/app.pem"
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "$scratch/$t"
  echo "fuzz: $t for ${seconds} s"
  t0=$(date +%s)
  log="$scratch/$t.log"
  set +e
  cargo fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  tail -n 25 "$log"
  if [ "$rc" -ne 0 ]; then
    # The tail is mostly libFuzzer's dictionary: show why it failed.
    echo "fuzz: $t FAILED (exit $rc); the failure:" >&2
    grep -m 1 -A 12 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY:" "$log" >&2 || true
    echo "fuzz: the input is in fuzz/artifacts/$t/" >&2
    exit "$rc"
  fi
  echo "fuzz: $t ok ($(( $(date +%s) - t0 )) s)"
done
echo "fuzz: all ${#targets[@]} targets ran ${seconds} s each; total $(( $(date +%s) - start )) s"
