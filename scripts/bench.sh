#!/usr/bin/env bash
# Forwarder against the kernel ceiling, same machine, same run, same harness.
#
# For fan-out F in 1 4 16 (one conference of F+1 participants, every one publishing a
# constant-rate stream of PKT-byte packets to all others), alternating ceiling and
# forwarder ROUNDS times, `blindfold plan --sweep rate` raises the rate until loss passes
# 0.1 % and reports the highest lossless output (copies/s). Then, at one fixed offered
# rate per F (half the ceiling's best), `blindfold load` measures CPU µs per forwarded
# copy (user + system of the target process from /proc ÷ copies received) and p99.
# Finally one shard against two (pinned to both cores), at F=4 over 4 conferences.
#
# Pinning on a 2-core machine: the target (ceiling or `serve --shards 1 --pin false`)
# runs under `taskset -c 1`, the load generator under `taskset -c 0`. For the two-shard
# comparison the shards pin themselves to cores 0 and 1 (`--pin true`) and the generator
# is left unpinned, so it competes with them: the ratio is what such a box really gives.
#
# Bounded: with the defaults it takes 4-6 minutes. Env: ROUNDS (2), STEP (1 s measured
# per step), PKT (500), OUT (target/bench).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2}
STEP=${STEP:-1}
PKT=${PKT:-500}
OUT=${OUT:-target/bench}
TOKEN=bench-$$
BIN=target/release/blindfold
CEIL=target/release/ceiling

cargo build --release --bins --quiet
mkdir -p "$OUT"
ulimit -n 20000 2>/dev/null || true

NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
    GEN=(taskset -c 0)
    TGT=(taskset -c 1)
    echo "pinning: target on core 1, generator on core 0 (taskset); $NCPU cores"
else
    GEN=()
    TGT=()
    echo "pinning: none (1 core)"
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

port=20000
start_target() { # kind shards pin -> sets TPID, MEDIA, CONTROL
    port=$((port + 2))
    MEDIA=127.0.0.1:$port
    CONTROL=127.0.0.1:$((port + 1))
    local log="$OUT/target-$port.log"
    if [ "$1" = ceiling ]; then
        "${TGT[@]}" "$CEIL" --media "$MEDIA" >"$log" 2>&1 &
    elif [ "$3" = true ]; then
        "$BIN" serve --shards "$2" --pin true --media "$MEDIA" --control "$CONTROL" \
            --control-token "$TOKEN" --ingress-pps 0 --ingress-bps 0 >"$log" 2>&1 &
    else
        "${TGT[@]}" "$BIN" serve --shards "$2" --pin false --media "$MEDIA" --control "$CONTROL" \
            --control-token "$TOKEN" --ingress-pps 0 --ingress-bps 0 >"$log" 2>&1 &
    fi
    TPID=$!
    PIDS+=("$TPID")
    for _ in $(seq 100); do grep -q "^media" "$log" 2>/dev/null && return 0; sleep 0.05; done
    echo "target did not start: $(cat "$log")" >&2
    exit 1
}
stop_target() { kill "$TPID" 2>/dev/null || true; wait "$TPID" 2>/dev/null || true; }

target_args() { # kind
    if [ "$1" = ceiling ]; then echo "--ceiling --media $MEDIA --pid $TPID"
    else echo "--control http://$CONTROL --token $TOKEN --media $MEDIA --pid $TPID"; fi
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" | head -1; }

declare -A BEST
sweep() { # kind F round [gen-prefix...]
    local kind=$1 f=$2 r=$3
    local size=$((f + 1))
    local start=$((60000 / (f * size)))
    start_target "$kind" 1 false
    # shellcheck disable=SC2046
    local line
    line=$("${GEN[@]}" "$BIN" plan $(target_args "$kind") --conferences 1 --size "$size" \
        --profile "cbr:$start:$PKT" --sweep rate --factor 1.6 --max-steps 8 --refine 2 \
        --duration "$STEP" --warmup 0.5 --drain-ms 200 --slo-p99-us 0 --quiet \
        --out "$OUT/F$f-$kind-r$r" 2>>"$OUT/plan.log" | grep '^CAPACITY')
    stop_target
    local v
    v=$(echo "$line" | field max_out_pps)
    local lim
    lim=$(echo "$line" | field generator_limited)
    printf "  F=%-2s %-9s round %s: %8s copies/s lossless%s\n" "$f" "$kind" "$r" "$v" \
        "$([ "$lim" = true ] && echo ' (GENERATOR LIMITED)')"
    local key="$kind-$f"
    if [ -z "${BEST[$key]:-}" ] || [ "${v%.*}" -gt "${BEST[$key]%.*}" ]; then BEST[$key]=$v; fi
}

echo "== highest lossless output (loss < 0.1 %), alternating ceiling / forwarder"
for r in $(seq "$ROUNDS"); do
    for f in 1 4 16; do
        sweep ceiling "$f" "$r"
        sweep forwarder "$f" "$r"
    done
done

declare -A CPU P99 P50
fixed() { # kind F rate
    local kind=$1 f=$2 rate=$3
    start_target "$kind" 1 false
    # shellcheck disable=SC2046
    local line
    line=$("${GEN[@]}" "$BIN" load $(target_args "$kind") --conferences 1 --size $((f + 1)) \
        --profile "cbr:$rate:$PKT" --duration 4 --warmup 0.5 --quiet \
        --json "$OUT/fixed-F$f-$kind.json" --hgrm "$OUT/fixed-F$f-$kind.hgrm" 2>>"$OUT/load.log" | grep '^RESULT')
    stop_target
    CPU[$kind-$f]=$(echo "$line" | field cpu_us_per_copy)
    P99[$kind-$f]=$(echo "$line" | field p99_us)
    P50[$kind-$f]=$(echo "$line" | field p50_us)
    printf "  F=%-2s %-9s at %s pps/stream: %s\n" "$f" "$kind" "$rate" "$line"
}

echo "== CPU per copy and latency at a fixed offered rate (half the ceiling's best)"
declare -A RATE
for f in 1 4 16; do
    RATE[$f]=$(awk -v b="${BEST[ceiling-$f]}" -v f="$f" 'BEGIN { r = int(b / 2 / (f * (f + 1))); print (r < 1 ? 1 : r) }')
    for kind in ceiling forwarder ceiling forwarder; do
        fixed "$kind" "$f" "${RATE[$f]}"
        # Keep the second (alternated) reading of each: the first warms caches and
        # page tables of a freshly started process.
    done
done

echo "== two shards against one (F=4, 4 conferences of 5; shards pinned to cores 0 and 1, generator unpinned)"
declare -A SH
for shards in 1 2; do
    start_target forwarder "$shards" true
    # shellcheck disable=SC2046
    line=$("$BIN" plan $(target_args forwarder) --conferences 4 --size 5 --profile "cbr:600:$PKT" \
        --sweep rate --factor 1.6 --max-steps 8 --refine 2 --duration "$STEP" --warmup 0.5 \
        --drain-ms 200 --slo-p99-us 0 --quiet --out "$OUT/shards-$shards" 2>>"$OUT/plan.log" | grep '^CAPACITY')
    stop_target
    SH[$shards]=$(echo "$line" | field max_out_pps)
    echo "  $shards shard(s): ${SH[$shards]} copies/s lossless ($line)"
done

echo
echo "| fan-out | ceiling copies/s | forwarder copies/s | ratio | fixed rate pps/stream | ceiling CPU µs/copy | forwarder CPU µs/copy | CPU ratio | ceiling p50/p99 µs | forwarder p50/p99 µs |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for f in 1 4 16; do
    c=${BEST[ceiling-$f]}; w=${BEST[forwarder-$f]}
    awk -v f="$f" -v c="$c" -v w="$w" -v rate="${RATE[$f]}" -v cc="${CPU[ceiling-$f]}" -v fc="${CPU[forwarder-$f]}" \
        -v c50="${P50[ceiling-$f]}" -v c99="${P99[ceiling-$f]}" -v f50="${P50[forwarder-$f]}" -v f99="${P99[forwarder-$f]}" \
        'BEGIN { printf "| %d | %.0f | %.0f | %.2f | %d | %s | %s | %.2f | %s / %s | %s / %s |\n", f, c, w, (c > 0 ? w / c : 0), rate, cc, fc, (cc > 0 ? fc / cc : 0), c50, c99, f50, f99 }'
done
echo
for f in 1 4 16; do
    awk -v f="$f" -v c="${BEST[ceiling-$f]}" -v w="${BEST[forwarder-$f]}" 'BEGIN { printf "F=%d ratio %.2f\n", f, (c > 0 ? w / c : 0) }'
done
for f in 1 4 16; do
    awk -v f="$f" -v c="${CPU[ceiling-$f]}" -v w="${CPU[forwarder-$f]}" 'BEGIN { printf "F=%d cpu per copy: ceiling %s µs, forwarder %s µs, ratio %.2f\n", f, c, w, (c > 0 ? w / c : 0) }'
done
awk -v a="${SH[1]}" -v b="${SH[2]}" 'BEGIN { printf "shards 2/1 ratio %.2f\n", (a > 0 ? b / a : 0) }'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "reports: $OUT"
