#!/usr/bin/env bash
# Runs every fuzz target for a short while (default 60 s each).
#   scripts/fuzz.sh [seconds] [target...]
# cargo-fuzz needs a nightly toolchain; where it (or cargo-fuzz) is missing this script
# says so and exits 0, so nothing in CI depends on it. Crashes land in
# fuzz/artifacts/<target>/; copy each into fuzz/regressions/<target>/ so that
# `cargo test` (tests/fuzz_regressions.rs) replays it forever after.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(classify stun route control_json)

if ! rustup toolchain list 2>/dev/null | grep -q nightly; then
  echo "fuzz.sh: no nightly toolchain (rustup toolchain install nightly); skipping fuzzing"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz missing; installing it (cargo install cargo-fuzz)"
  cargo install cargo-fuzz --locked || { echo "fuzz.sh: could not install cargo-fuzz; skipping"; exit 0; }
fi
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== fuzzing $t for ${secs}s"
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
    -max_total_time="$secs" -max_len=4096
done
