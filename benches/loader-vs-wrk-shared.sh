#!/usr/bin/env bash
# The loader against wrk in the shape the comparison runs them: each client
# with a thread per core (`wrk -t2`), 256 connections, both cores shared with
# the server. The server is either the flash-sale bench's noop (the machine's
# HTTP ceiling: two runtime threads answering `GET /v1/orders` with an empty
# 404, nothing else) or one flashstock's `/healthz` (SQLite; HTTP served on its
# one arbiter, whose core is then the ceiling).
#
# PAIRS pairs of DURATION seconds, the loader first in odd pairs and wrk first
# in even ones (the machine's speed drifts from minute to minute); then both
# means and the mean of the pairs' ratios (loader / wrk) with its standard error.
#
#   benches/loader-vs-wrk-shared.sh [PAIRS] [DURATION] [noop|healthz]    (defaults 20 5 noop)
#
# Needs wrk; builds the release binary and the bench if needed.
set -euo pipefail
cd "$(dirname "$0")/.."

pairs=${1:-20}
duration=${2:-5}
server_kind=${3:-noop}
case $server_kind in noop | healthz) ;; *)
  echo "the server is noop or healthz, not $server_kind" >&2
  exit 1
  ;;
esac
[ "$pairs" -ge 1 ] && [ "$duration" -ge 1 ] || { echo "PAIRS and DURATION are at least 1" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

cargo build --release --quiet --bin flashstock
bin=${CARGO_TARGET_DIR:-target}/release/flashstock
work=$(mktemp -d)
if [ "$server_kind" = noop ]; then
  bench=$(cargo bench --bench flash_sale --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*flash_sale[^"]*"' | cut -d'"' -f4 | tail -1)
  [ -x "$bench" ] || { echo "the flash_sale bench did not build" >&2; exit 1; }
  # The bench's own server process, as the comparison starts it for noop
  # (which needs no store), on every core.
  FLASH_SALE_SERVE=noop RUST_LOG=warn "$bench" >"$work/server.log" 2>&1 &
  path=/v1/orders
else
  "$bin" serve --listen 127.0.0.1:18098 --database-url "sqlite://$work/db" \
    --jwt-secret loader-vs-wrk >"$work/server.log" 2>&1 &
  path=/healthz
fi
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
url=
for _ in $(seq 1 100); do
  url=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$work/server.log" | head -1 || true)
  [ -n "$url" ] && curl -s -o /dev/null "$url$path" && break
  url=
  sleep 0.1
done
[ -n "$url" ] || { echo "the server does not answer; its log:" >&2; cat "$work/server.log" >&2; exit 1; }

# Each client's rate as its own report prints it (as benches/loader-vs-wrk.sh
# reads it). Against noop's 404 the loader's verdict fails and it exits
# non-zero; only a run that printed no rate is a failure here.
rate_of() {
  local out rate
  out=$("$@" 2>&1 || true)
  rate=$(echo "$out" | grep -oE '(requests/s|Requests/sec:) +[0-9.]+' | head -1 | awk '{print int($2)}')
  [ -n "$rate" ] || { printf '%s printed no rate:\n%s\n' "$1" "$out" >&2; exit 1; }
  echo "$rate"
}
loader() { rate_of "$bin" loadtest --url "$url" get --path "$path" --duration "${duration}s"; }
wrk_rate() { rate_of wrk -t2 -c256 -d"${duration}s" "$url$path"; }

echo "server: $server_kind ($url$path), $pairs pairs of ${duration} s"
printf '%-5s %12s %12s %8s\n' pair loader wrk ratio
results=$work/pairs
for pair in $(seq 1 "$pairs"); do
  if [ $((pair % 2)) = 1 ]; then
    l=$(loader); w=$(wrk_rate)
  else
    w=$(wrk_rate); l=$(loader)
  fi
  echo "$l $w" >>"$results"
  awk -v p="$pair" -v l="$l" -v w="$w" 'BEGIN { printf "%-5s %12d %12d %8.3f\n", p, l, w, l / w }'
done
awk '{ l += $1; w += $2; r[NR] = $1 / $2; sum += r[NR]; if ($1 >= $2) ahead++ }
  END {
    mean = sum / NR; for (i = 1; i <= NR; i++) ss += (r[i] - mean) ^ 2
    se = NR > 1 ? sprintf("%.3f", sqrt(ss / (NR - 1) / NR)) : "n/a"
    printf "loader %d req/s, wrk %d; loader / wrk %.3f (standard error %s), ahead in %d of %d\n",
      l / NR, w / NR, mean, se, ahead, NR
  }' "$results"
