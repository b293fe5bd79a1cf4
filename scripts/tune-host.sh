#!/usr/bin/env bash
# Raises the kernel's UDP socket buffer ceilings so each shard's socket can get the
# SO_RCVBUF/SO_SNDBUF it asks for (8 MiB by default; `serve --socket-buffer`).
# Without this, Linux silently caps buffers at net.core.rmem_max/wmem_max (often
# 208 KiB), and bursts (video keyframes, many subscribers) overflow as drops.
#   sudo scripts/tune-host.sh            # apply now
#   sudo scripts/tune-host.sh --persist  # also write /etc/sysctl.d/90-blindfold.conf
set -euo pipefail
settings=(
  "net.core.rmem_max=33554432"
  "net.core.wmem_max=33554432"
  "net.core.rmem_default=8388608"
  "net.core.wmem_default=8388608"
  "net.core.netdev_max_backlog=30000"
  "net.ipv4.udp_mem=262144 524288 1048576"
)
for s in "${settings[@]}"; do
  sysctl -w "$s"
done
if [ "${1:-}" = "--persist" ]; then
  printf '%s\n' "${settings[@]}" > /etc/sysctl.d/90-blindfold.conf
  echo "written /etc/sysctl.d/90-blindfold.conf"
fi
