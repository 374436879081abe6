#!/usr/bin/env bash
# Agent cost beside prometheus-node-exporter (issue 6, benchmark 3): both run
# for DURATION on this machine; the agent collects every INTERVAL (all areas,
# default config) and node-exporter is scraped at the same interval. Prints
# CPU time per cycle and resident memory (steady VmRSS at the end, peak
# VmHWM) of each process, read from /proc.
#
# Needs: release binaries (cargo build --release --bin xunjian --bin
# xunjian-agent) and the Debian package prometheus-node-exporter.
# Run: bash tests/bench-scripts/agent_vs_node_exporter.sh   (DURATION=600 INTERVAL=30)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-30}
BIN=${BIN:-target/release}
NE=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}
[ -x "$BIN/xunjian" ] && [ -x "$BIN/xunjian-agent" ] || { echo "build first: cargo build --release --bin xunjian --bin xunjian-agent" >&2; exit 1; }
[ -x "$NE" ] || { echo "install prometheus-node-exporter (apt-get install prometheus-node-exporter)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port=$((20000 + RANDOM % 20000))
cat > "$work/collector.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[storage]
data_dir = "$work/collector"
TOML
"$BIN/xunjian" --config "$work/collector.toml" --log-level warn serve > "$work/collector.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
token=$("$BIN/xunjian" --config "$work/collector.toml" token create 2>/dev/null)
"$BIN/xunjian-agent" enroll --collector "https://127.0.0.1:$port" --token "$token" --data-dir "$work/agent" > /dev/null
cat > "$work/agent.toml" <<TOML
collector = "https://127.0.0.1:$port"
data_dir = "$work/agent"
[collect]
metrics_interval = "${INTERVAL}s"
TOML
"$BIN/xunjian-agent" run --config "$work/agent.toml" --log-level warn > "$work/agent.log" 2>&1 &
agent=$!; pids+=($agent)
ne_port=$((ne_base=port + 1))
"$NE" --web.listen-address="127.0.0.1:$ne_port" --log.level=warn > "$work/ne.log" 2>&1 &
ne=$!; pids+=($ne)
sleep 2

ticks=$(getconf CLK_TCK)
# Own CPU plus that of finished children (the tools the agent runs).
cpu() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
field() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# Warm up one interval (first collection, inventory, package query), then measure.
curl -s "http://127.0.0.1:$ne_port/metrics" > /dev/null
sleep "$INTERVAL"
a0=$(cpu $agent); n0=$(cpu $ne)
cycles=$((DURATION / INTERVAL))
for _ in $(seq "$cycles"); do
  curl -s "http://127.0.0.1:$ne_port/metrics" > /dev/null
  sleep "$INTERVAL"
done
a1=$(cpu $agent); n1=$(cpu $ne)
printf "%-28s %16s %14s %12s\n" "process ($cycles cycles of ${INTERVAL}s)" "CPU ms per cycle" "steady VmRSS" "peak VmHWM"
printf "%-28s %16.1f %11s kB %9s kB\n" "xunjian-agent (all areas)" "$(echo "($a1 - $a0) * 1000 / $ticks / $cycles" | bc -l)" "$(field $agent VmRSS)" "$(field $agent VmHWM)"
printf "%-28s %16.1f %11s kB %9s kB\n" "prometheus-node-exporter" "$(echo "($n1 - $n0) * 1000 / $ticks / $cycles" | bc -l)" "$(field $ne VmRSS)" "$(field $ne VmHWM)"
echo "agent reports stored: $("$BIN/xunjian" --config "$work/collector.toml" hosts --json | grep -o '"last_sequence": *[0-9]*' | head -1)"
