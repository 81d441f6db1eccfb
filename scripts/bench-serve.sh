#!/usr/bin/env bash
# Benchmark of brief serve on loopback: one-click unsubscribe POSTs (durable: each
# answer waits for its SQLite commit, WAL + synchronous=FULL) over many distinct
# tokens, then GETs of the confirmation page. Uses wrk (Debian package `wrk`).
#
#   scripts/bench-serve.sh [DURATION] [TOKENS] [CONNECTIONS…]
#   (defaults: 10s 600000 16 64)
#
# Each POST pass starts where the previous one stopped in the token list, so every
# POST is a new suppression as long as TOKENS exceeds the requests made.
#
# The state store lives in a temp folder on the same disk as /tmp (set TMPDIR to
# measure another disk). The per-client rate limit is turned off (client_rate = 0)
# because every request comes from 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10s}"
count="${2:-600000}"
shift $(( $# > 2 ? 2 : $# ))
if [[ $# -gt 0 ]]; then connections=("$@"); else connections=(16 64); fi
threads="${WRK_THREADS:-2}"

command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
cargo build -q --release --bin brief --example tokens
bin="$PWD/target/release/brief"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/brief.toml" <<'TOML'
[newsletter]
name = "The Brief"
from = "The Brief <brief@news.example.org>"
list_id = "the-brief.news.example.org"
base_url = "https://news.example.org/brief"
postal_address = "1 Example Street"

[unsubscribe]
client_rate = 0
TOML
export BRIEF_SECRET="RcMKzVLyhnbql3yFuQbDMJIUgrv1qAx6qM4Vvx8pR3U="

echo "generating $count tokens…"
target/release/examples/tokens the-brief.news.example.org "$count" > "$work/tokens.txt"

cat > "$work/bench.lua" <<'LUA'
-- args: TOKENS_FILE MODE (post | get). Thread n of N takes tokens n, n+N, n+2N…
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  tokens = {}
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  mode = args[2]
  nthreads = tonumber(os.getenv("WRK_THREADS") or "2")
  offset = tonumber(os.getenv("WRK_OFFSET") or "0")
  index = offset + id
end
function request()
  local token = tokens[index]
  index = index + nthreads
  if index > #tokens then index = id end -- wrapped: repeats are idempotent
  if mode == "post" then
    return wrk.format("POST", "/brief/u/" .. token,
      { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "List-Unsubscribe=One-Click")
  end
  return wrk.format("GET", "/brief/u/" .. token)
end
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("non-2xx or failed: %d (status %d, connect %d, read %d, write %d, timeout %d)\n",
    errors.status + errors.connect + errors.read + errors.write + errors.timeout,
    errors.status, errors.connect, errors.read, errors.write, errors.timeout))
end
LUA

(cd "$work" && exec "$bin" serve --listen 127.0.0.1:0 2>"$work/serve.log") &
server_pid=$!
addr=""
for _ in $(seq 1 100); do
  addr="$(grep -o 'listening on http://[0-9.:]*' "$work/serve.log" 2>/dev/null | sed 's|.*http://||' || true)"
  [[ -n "$addr" ]] && break
  sleep 0.1
done
[[ -n "$addr" ]] || { echo "brief serve did not start" >&2; cat "$work/serve.log" >&2; exit 1; }

echo "== machine: $(nproc) cores; $(uname -sr); load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
offset=0
for c in "${connections[@]}"; do
  echo
  echo "== one-click POST (durable), $c connections, $duration, tokens from #$offset"
  WRK_THREADS="$threads" WRK_OFFSET="$offset" wrk -t"$threads" -c"$c" -d"$duration" --latency -s "$work/bench.lua" "http://$addr" -- "$work/tokens.txt" post
  offset="$(cd "$work" && "$bin" suppressions --csv | tail -n +2 | wc -l)"
  echo "== suppressions recorded so far: $offset"
done
for c in "${connections[@]}"; do
  echo
  echo "== GET confirmation page, $c connections, $duration"
  WRK_THREADS="$threads" WRK_OFFSET=0 wrk -t"$threads" -c"$c" -d"$duration" --latency -s "$work/bench.lua" "http://$addr" -- "$work/tokens.txt" get
done
