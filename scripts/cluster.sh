#!/usr/bin/env bash
# A blindfold cluster on one machine: one Redis (its own, on a unix socket in a temp dir;
# never the system one on 6379) and N forwarders registered in it. Prints what each
# process listens on, shows the registry, and stops everything on Ctrl-C or when any
# process dies.
#
#   scripts/cluster.sh                 # 3 forwarders
#   FORWARDERS=5 scripts/cluster.sh
#   BLINDFOLD=target/debug/blindfold scripts/cluster.sh
#
# Each forwarder gets media port MEDIA_BASE+i (10000) and control port CONTROL_BASE+i
# (8480) on 127.0.0.1, node id fwd-i, and the control token in $BLINDFOLD_CONTROL_TOKEN
# (generated when unset). A relay endpoint publishes every remote member's tracks that
# members here want, hence --max-tracks-per-endpoint 512 (the default 16 fits a
# participant, not a relay).
set -euo pipefail
cd "$(dirname "$0")/.."

FORWARDERS=${FORWARDERS:-3}
MEDIA_BASE=${MEDIA_BASE:-10000}
CONTROL_BASE=${CONTROL_BASE:-8480}
BLINDFOLD=${BLINDFOLD:-target/release/blindfold}
export BLINDFOLD_CONTROL_TOKEN=${BLINDFOLD_CONTROL_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}

command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 1; }
if [ ! -x "$BLINDFOLD" ]; then
  echo "building $BLINDFOLD" >&2
  cargo build --release --bin blindfold >&2
fi

DIR=$(mktemp -d /tmp/blindfold-cluster.XXXXXX)
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

SOCK="$DIR/redis.sock"
redis-server --port 0 --unixsocket "$SOCK" --unixsocketperm 700 --save '' --appendonly no \
  --dir "$DIR" >"$DIR/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "redis-server did not start:" >&2; cat "$DIR/redis.log" >&2; exit 1; }
REDIS="redis+unix://$SOCK"
echo "redis    $REDIS"

for i in $(seq 0 $((FORWARDERS - 1))); do
  "$BLINDFOLD" serve --redis "$REDIS" --node-id "fwd-$i" \
    --media "127.0.0.1:$((MEDIA_BASE + i))" --control "127.0.0.1:$((CONTROL_BASE + i))" \
    --shards 1 --pin false --max-tracks-per-endpoint 512 \
    >"$DIR/fwd-$i.out" 2>"$DIR/fwd-$i.log" &
  PIDS+=($!)
  echo "fwd-$i    media 127.0.0.1:$((MEDIA_BASE + i))  control http://127.0.0.1:$((CONTROL_BASE + i))  log $DIR/fwd-$i.log"
done

echo "token    \$BLINDFOLD_CONTROL_TOKEN=$BLINDFOLD_CONTROL_TOKEN"
# The registry as placement sees it, once every forwarder has registered.
for _ in $(seq 50); do
  [ "$(redis-cli -s "$SOCK" SCARD bf:nodes 2>/dev/null || echo 0)" -ge "$FORWARDERS" ] && break
  sleep 0.2
done
for i in $(seq 0 $((FORWARDERS - 1))); do
  echo "registry bf:node:fwd-$i: $(redis-cli -s "$SOCK" HGETALL "bf:node:fwd-$i" | paste -sd' ')"
done
echo "running; Ctrl-C stops everything"
# Stop as soon as any process exits.
wait -n "${PIDS[@]}"
echo "a process exited; stopping the cluster" >&2
