#!/usr/bin/env bash
# The loader against wrk with the same CPU: which one drives a server harder.
#
# One flashstock (SQLite) serves /healthz alone on core 0. Each client in turn
# runs on core 1 inside a cgroup (v1 `cpu` controller) capped at QUOTA% of one
# core, with one thread (the loader takes one thread per core it may run on),
# 256 connections, for DURATION seconds. With the cap the client, not the
# server, sets the rate: requests/s is the client's CPU budget over its cost per
# request. Both clients' CPU is read from /usr/bin/time (the loader's includes
# its start), the server's from /proc.
#
#   benches/loader-vs-wrk.sh [ROUNDS] [QUOTA] [DURATION]    (defaults 8 40 5)
#
# QUOTA 0 leaves the client uncapped: then the server's one core is the ceiling
# both clients meet.
#
# Needs root (to make the cgroup), wrk, and `cargo build --release` first.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-8}
quota=${2:-40}
duration=${3:-5}
bin=${CARGO_TARGET_DIR:-target}/release/flashstock
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ "$(nproc --all)" -ge 2 ] || { echo "needs two cores" >&2; exit 1; }

group=/sys/fs/cgroup/cpu/flashstock-loader-vs-wrk
mkdir -p "$group" || { echo "needs the cgroup v1 cpu controller, writable" >&2; exit 1; }
echo 10000 >"$group/cpu.cfs_period_us"
if [ "$quota" -gt 0 ]; then
  echo $((quota * 100)) >"$group/cpu.cfs_quota_us"
else
  echo -1 >"$group/cpu.cfs_quota_us"
fi

work=$(mktemp -d)
port=18097
taskset -c 0 "$bin" serve --listen "127.0.0.1:$port" --database-url "sqlite://$work/db" \
  --jwt-secret loader-vs-wrk >"$work/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rmdir "$group" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null ||
  { echo "the server does not answer; its log:" >&2; cat "$work/server.log" >&2; exit 1; }

server_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
ticks=$(getconf CLK_TCK)

printf '%-5s %-6s %12s %14s %12s\n' round client 'requests/s' 'client us/req' 'server busy'
for round in $(seq 1 "$rounds"); do
  for client in loader wrk; do
    case $client in
      loader) cmd="$bin loadtest --url http://127.0.0.1:$port --connections 256 get --path /healthz --duration ${duration}s" ;;
      wrk) cmd="wrk -t1 -c256 -d${duration}s http://127.0.0.1:$port/healthz" ;;
    esac
    before=$(server_ticks)
    # The shell joins the cgroup, then becomes the client.
    if ! out=$(sh -c "echo \$\$ >$group/cgroup.procs; exec taskset -c 1 /usr/bin/time -f 'CPU %U %S' $cmd" 2>&1); then
      printf '%s failed:\n%s\n' "$client" "$out" >&2
      exit 1
    fi
    after=$(server_ticks)
    rate=$(echo "$out" | grep -oE '(requests/s|Requests/sec:) +[0-9.]+' | head -1 | awk '{print int($2)}')
    cpu=$(echo "$out" | awk '/^CPU/ {print $2 + $3}')
    if [ -z "$rate" ] || [ -z "$cpu" ]; then
      printf '%s printed no rate:\n%s\n' "$client" "$out" >&2
      exit 1
    fi
    awk -v r="$round" -v c="$client" -v rate="$rate" -v cpu="$cpu" -v d="$duration" \
      -v busy=$((after - before)) -v hz="$ticks" \
      'BEGIN { printf "%-5s %-6s %12d %14.2f %11.0f%%\n", r, c, rate, cpu * 1e6 / (rate * d), busy * 100 / (hz * d) }'
  done
done
