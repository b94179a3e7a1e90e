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
# Needs wrk and python3; builds the release binary and the bench if needed.
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

loader() {
  rm -f "$work/loader.json"
  # Against noop's 404 the `get` verdict fails and the loader exits non-zero;
  # only a run that wrote no report is a failure here.
  "$bin" loadtest --url "$url" --jwt-secret loader-vs-wrk --json "$work/loader.json" \
    get --path "$path" --duration "${duration}s" >"$work/loader.out" 2>&1 || true
  [ -s "$work/loader.json" ] || { echo "the loader wrote no report:" >&2; cat "$work/loader.out" >&2; exit 1; }
  python3 -c "import json, sys; print(round(json.load(open(sys.argv[1]))['requests_per_s']))" "$work/loader.json"
}
wrk_rate() {
  local rate
  rate=$(wrk -t2 -c256 -d"${duration}s" "$url$path" | awk '/Requests\/sec/ { printf "%d\n", $2 }')
  [ -n "$rate" ] || { echo "wrk printed no rate" >&2; exit 1; }
  echo "$rate"
}

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
python3 - "$results" <<'EOF'
import statistics, sys
pairs = [tuple(map(int, line.split())) for line in open(sys.argv[1])]
ratios = [l / w for l, w in pairs]
mean = statistics.mean(ratios)
se = statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else float("nan")
print(f"loader {statistics.mean(l for l, _ in pairs):,.0f} req/s, wrk {statistics.mean(w for _, w in pairs):,.0f};"
      f" loader / wrk {mean:.3f} (standard error {se:.3f}), ahead in {sum(r >= 1 for r in ratios)} of {len(ratios)}")
EOF
