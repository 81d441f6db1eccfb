#!/usr/bin/env bash
# Send throughput of `brief send` (journal on, durable) against Postfix's own load
# generator `smtp-source`, both into `smtp-sink` on loopback in the same run, at 8 and
# 16 connections: by default 6,000 readers and an edition of about 40 KB (issue 14's
# goal), ROUNDS rounds alternating smtp-source and brief, each round's ratio and the
# median printed; then a 1,000,000-address list: peak memory and time to the first
# message.
#
# Then cost against list size: a SMALL-reader and a LARGE-reader send, whole, in the
# same run (messages/s and CPU per message of the brief process); with FULL_BIG=1 also
# a whole BIG-reader send against smtp-source's time for BIG messages.
#
#   scripts/bench-send.sh            # N=6000 messages per measurement, BIG=1000000
#   N=20000 PARAGRAPHS=90 scripts/bench-send.sh   # the older 20,000 × 50 KB setting
#   PARTS=throughput ROUNDS=5 scripts/bench-send.sh              # only the comparison
#   BRIEF_BIN=/tmp/brief-old PARTS=throughput scripts/bench-send.sh  # another binary
#   PARTS=scale SMALL=20000 LARGE=300000 scripts/bench-send.sh   # only the scale part
#   PARTS=scale FULL_BIG=1 scripts/bench-send.sh                 # and the whole 1M send
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-6000}
# Paragraphs of the bench edition: 66 make a message of about 40 KB, 90 about 50 KB.
PARAGRAPHS=${PARAGRAPHS:-66}
ROUNDS=${ROUNDS:-3}
BIG=${BIG:-1000000}
PARTS=${PARTS:-"throughput big scale"}
SMALL=${SMALL:-20000}
LARGE=${LARGE:-300000}
FULL_BIG=${FULL_BIG:-0}
has() { [[ " $PARTS " == *" $1 "* ]]; }
SINK=/usr/sbin/smtp-sink
SOURCE=/usr/sbin/smtp-source
[ -x "$SINK" ] && [ -x "$SOURCE" ] || { echo "needs Postfix's smtp-sink and smtp-source (Debian package postfix)"; exit 1; }

# BRIEF_BIN: measure that binary instead of building this tree (e.g. a copy of an
# older build, to compare before and after in the same conditions).
if [ -z "${BRIEF_BIN:-}" ]; then
  cargo build --release --quiet
fi
BIN=${BRIEF_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/brief}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=(); [ "$(id -u)" -eq 0 ] && user=(-u nobody)
"$SINK" "${user[@]}" "127.0.0.1:$port" 1024 >/dev/null 2>&1 &
pids+=($!)
sleep 0.5

# A newsletter folder: N readers, an edition of PARAGRAPHS paragraphs.
make_newsletter() { # dir readers transport concurrency
  local dir=$1 readers=$2 transport=$3 conc=$4
  mkdir -p "$dir/editions" "$dir/subscribers"
  cat > "$dir/brief.toml" <<TOML
[newsletter]
name = "Bench Brief"
from = "Bench Brief <brief@news.example.org>"
list_id = "bench.news.example.org"
base_url = "https://news.example.org/brief"
postal_address = "1 Example Street"
[delivery]
transport = "$transport"
concurrency = $conc
[smtp]
host = "127.0.0.1"
port = $port
tls = "none"
hello_name = "bench.example.org"
[unsubscribe]
mailto = "unsubscribe@news.example.org"
TOML
  {
    printf '+++\ntitle = "Benchmark edition"\ndate = 2026-11-20\n+++\n\n'
    for i in $(seq 1 "$PARAGRAPHS"); do
      printf 'Paragraph %d. Night trains are back on the map, and the question is no longer whether people want them but whether the network has room for them at night, when freight and maintenance crews need it most.\n\n' "$i"
    done
  } > "$dir/editions/bench.md"
  python3 - "$dir/subscribers/readers.csv" "$readers" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("email,name,city\n")
    for i in range(n):
        f.write("reader%07d@example.org,Reader %d,City %d\n" % (i, i, i % 97))
PY
}

export BRIEF_SECRET='TQDqrsVCLZbeRz/+hjdqjABOO9XyJos0dsJd1vCusuc='

# The size of one brief message (outbox, one reader).
make_newsletter "$work/size" 1 outbox 1
(cd "$work/size" && "$BIN" -q send --edition bench >/dev/null)
size=$(stat -c %s "$work"/size/outbox/bench/*.eml)
echo "brief message size: $size bytes; smtp-source payload: $size bytes"

now() { date +%s.%N; }
rate() { python3 -c "print(round($1/($3-$2)))"; }

# Wall time and CPU (user + system) of one command, as "wall cpu" in seconds.
timed() { python3 -c '
import resource, subprocess, sys, time
t = time.time()
subprocess.run(sys.argv[1:], check=False, stdout=subprocess.DEVNULL)
w = time.time() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(round(w, 2), round(r.ru_utime + r.ru_stime, 2))' "$@"; }

median() { python3 -c 'import statistics, sys; print(round(statistics.median(map(float, sys.argv[1:])), 2))' "$@"; }

if has throughput; then
  echo "load average before the throughput runs: $(cut -d' ' -f1-3 /proc/loadavg)"
  for conc in 8 16; do
    ratios=()
    for round in $(seq 1 "$ROUNDS"); do
      t0=$(now)
      "$SOURCE" -s "$conc" -m "$N" -l "$size" -d -f brief@news.example.org -t reader@example.org "127.0.0.1:$port"
      t1=$(now)
      src=$(rate "$N" "$t0" "$t1")
      rm -rf "$work/c$conc"
      make_newsletter "$work/c$conc" "$N" smtp "$conc"
      t0=$(now)
      (cd "$work/c$conc" && "$BIN" -vv send --edition bench >/dev/null 2>"$work/send.log")
      t1=$(now)
      br=$(rate "$N" "$t0" "$t1")
      ratio=$(python3 -c "print(round($br/$src, 2))")
      ratios+=("$ratio")
      # brief -vv: the share of the connections' time spent waiting for in-doubt marks.
      waited=$(grep -o '([0-9]* %) waiting' "$work/send.log" | tr -dc '0-9' || true)
      echo "concurrency $conc round $round: smtp-source $src msg/s, brief send $br msg/s (ratio $ratio), $N messages, ${waited:-?} % of connection time waiting for in-doubt marks (load $(cut -d' ' -f1 /proc/loadavg))"
    done
    echo "concurrency $conc: median ratio $(median "${ratios[@]}") over $ROUNDS rounds"
  done
fi

# 1,000,000 addresses: peak memory (VmHWM of the brief process) and time to the first
# message (the first `sent`/`in_doubt` row in the journal, polled every 0.1 s), against
# smtp-sink at concurrency 8. The send is stopped (SIGKILL) after BIG_SECONDS: memory is
# flat once sending runs.
BIG_SECONDS=${BIG_SECONDS:-60}
if has big; then
make_newsletter "$work/big" "$BIG" smtp 8
cd "$work/big"
t0=$(now)
"$BIN" -q send --edition bench >/dev/null 2>&1 &
bpid=$!
first=""; hwm=0
while kill -0 "$bpid" 2>/dev/null; do
  h=$(awk '/VmHWM/ {print $2}' "/proc/$bpid/status" 2>/dev/null || echo 0)
  [ "${h:-0}" -gt "$hwm" ] && hwm=$h
  if [ -z "$first" ] && [ -f state/brief.db ]; then
    sent=$(python3 -c "import sqlite3; c=sqlite3.connect('file:state/brief.db?mode=ro', uri=True); print(c.execute(\"select count(*) from journal where state in ('sent','in_doubt')\").fetchone()[0])" 2>/dev/null || echo 0)
    if [ "${sent:-0}" -gt 0 ]; then first=$(python3 -c "print(round($(now)-$t0, 2))"); fi
  fi
  if python3 -c "import sys; sys.exit(0 if $(now)-$t0 > $BIG_SECONDS else 1)"; then kill -9 "$bpid"; fi
  sleep 0.1
done
wait "$bpid" 2>/dev/null || true
t1=$(now)
done_n=$(python3 -c "import sqlite3; c=sqlite3.connect('file:state/brief.db?mode=ro', uri=True); print(c.execute(\"select count(*) from journal where state = 'sent'\").fetchone()[0])")
rows=$(python3 -c "import sqlite3; c=sqlite3.connect('file:state/brief.db?mode=ro', uri=True); print(c.execute('select count(*) from journal').fetchone()[0])")
echo "$BIG addresses: first message after ${first:-?} s, peak RSS $((hwm/1024)) MB, $rows rows frozen, $done_n sent in $(python3 -c "print(round($t1-$t0,1))") s (stopped after ${BIG_SECONDS} s)"
cd - >/dev/null
fi

# Cost against list size: whole sends, concurrency 8, same sink, same run.
if has scale; then
  echo "load average before the scale runs: $(cut -d' ' -f1-3 /proc/loadavg)"
  sizes=("$SMALL" "$LARGE")
  [ "$FULL_BIG" = 1 ] && sizes+=("$BIG")
  for n in "${sizes[@]}"; do
    make_newsletter "$work/s$n" "$n" smtp 8
    read -r wall cpu < <(cd "$work/s$n" && timed "$BIN" -q send --edition bench)
    sent=$(python3 -c "import sqlite3; c=sqlite3.connect('file:$work/s$n/state/brief.db?mode=ro', uri=True); print(c.execute(\"select count(*) from journal where state = 'sent'\").fetchone()[0])")
    echo "$n readers: $sent sent in $wall s: $(rate "$sent" 0 "$wall") msg/s, $(python3 -c "print(round($cpu*1e6/max($sent,1)))") µs CPU per message (load $(cut -d' ' -f1 /proc/loadavg))"
    rm -rf "$work/s$n"
  done
  if [ "$FULL_BIG" = 1 ]; then
    t0=$(now)
    "$SOURCE" -s 8 -m "$BIG" -l "$size" -d -f brief@news.example.org -t reader@example.org "127.0.0.1:$port"
    t1=$(now)
    echo "smtp-source: $BIG messages in $(python3 -c "print(round($t1-$t0,1))") s at 8 connections"
  fi
fi

# PARTS=pg: the PostgreSQL store (a private cluster: initdb + postgres in the work dir,
# as nobody when run as root). One sender on PostgreSQL against one on SQLite, same
# sink, PG_N readers at concurrency 8, PG_ROUNDS rounds, with the database time of the
# claims and of the journal commits per recipient (pg_stat_statements); then one
# sender against two on one edition with a relay that waits 1 s before every DATA
# reply (PG_LAT readers at concurrency 16), where the relay's latency, not brief, is
# the limit. The one-sender rounds run twice: with the database sharing the machine's
# CPUs with the sink and brief, then with the database on a CPU of its own.
#
#   PARTS=pg scripts/bench-send.sh
#   PARTS=pg PG_N=20000 PG_LAT=960 PG_ROUNDS=5 scripts/bench-send.sh
if has pg; then
  PG_N=${PG_N:-6000}
  PG_LAT=${PG_LAT:-480}
  PG_ROUNDS=${PG_ROUNDS:-3}
  # shellcheck source=scripts/pg-cluster.sh
  . scripts/pg-cluster.sh
  chmod 755 "$work"
  start_pg_cluster "$work/pg" shared_preload_libraries=pg_stat_statements
  pgdb() { # name -> url of a new database
    "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U brief "$1"
    echo "postgres://brief@127.0.0.1:$pgport/$1"
  }
  on_pg() { printf '[state]\nurl = "%s"\n' "$2" >> "$1/brief.toml"; }
  wall() { python3 -c 'import subprocess, sys, time
t = time.time(); subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); print(round(time.time() - t, 2))' "$@"; }

  # PG_ROUNDS rounds, each a SQLite send then a PostgreSQL send (a new database each),
  # so both see the same share of the machine; each round's ratio and the median.
  # With a `taskset -c CPUS` prefix as its last arguments, brief runs on those CPUs only.
  pg_rounds() { # label dir-prefix [taskset -c CPUS]
    local label=$1 prefix=$2 round w_sqlite w_pg url sent ratio ratios=()
    shift 2
    for round in $(seq 1 "$PG_ROUNDS"); do
      make_newsletter "$work/$prefix-sqlite$round" "$PG_N" smtp 8
      w_sqlite=$(cd "$work/$prefix-sqlite$round" && wall "$@" "$BIN" -q send --edition bench)
      make_newsletter "$work/$prefix-one$round" "$PG_N" smtp 8
      url=$(pgdb "$prefix$round"); on_pg "$work/$prefix-one$round" "$url"
      "$pgbin/psql" -X -q -d "$url" -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()' >/dev/null
      w_pg=$(cd "$work/$prefix-one$round" && wall "$@" "$BIN" -q send --edition bench)
      sent=$("$pgbin/psql" -X -A -t -d "$url" -c "select count(*) from journal where state = 'sent'")
      # Database time per recipient of the claims and of the journal commits.
      per() { "$pgbin/psql" -X -A -t -d "$url" -c "select coalesce(round((sum(total_exec_time) * 1000 / $PG_N)::numeric, 1), 0) || ' µs in ' || coalesce(sum(calls), 0) || ' statements' from pg_stat_statements where query like '$1%'"; }
      ratio=$(python3 -c "print(round($w_sqlite/$w_pg, 2))")
      ratios+=("$ratio")
      echo "$label, round $round: one sender, $PG_N readers, concurrency 8: SQLite $(rate "$PG_N" 0 "$w_sqlite") msg/s, PostgreSQL $(rate "$sent" 0 "$w_pg") msg/s (ratio $ratio); per recipient: claim $(per 'UPDATE journal j SET claimed_by'), commit $(per 'WITH u AS')"
    done
    echo "$label: one sender: median ratio PostgreSQL/SQLite $(median "${ratios[@]}") over $PG_ROUNDS rounds (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  }
  pg_rounds "database sharing the CPUs" one

  # The same rounds with the database on a CPU of its own, as on a database host: the
  # server (its processes now and the backends it starts) on the last CPU, the sink
  # and brief on the others, for both stores. This measures brief's PostgreSQL path
  # apart from the server's CPU, which on a machine of two shares one core with the
  # sink and the sender.
  cpus=$(nproc)
  if [ "$cpus" -ge 2 ] && command -v taskset >/dev/null; then
    server=$(pgrep -f -- "-D $work/pg/data" | head -1)
    others="0-$((cpus - 2))"
    for p in "$server" $(pgrep -P "$server"); do taskset -a -c -p "$((cpus - 1))" "$p" >/dev/null; done
    taskset -a -c -p "$others" "${pids[0]}" >/dev/null
    pg_rounds "database on a CPU of its own" own taskset -c "$others"
    for p in "$server" $(pgrep -P "$server") "${pids[0]}"; do taskset -a -c -p "0-$((cpus - 1))" "$p" >/dev/null; done
  else
    echo "database on a CPU of its own: not measured (needs 2 CPUs and taskset, this machine has $cpus)"
  fi

  lport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$SINK" "${user[@]}" -w 1 "127.0.0.1:$lport" 1024 >/dev/null 2>&1 &
  pids+=($!)
  sleep 0.5
  for senders in 1 2; do
    make_newsletter "$work/pg-lat$senders" "$PG_LAT" smtp 16
    sed -i "s/^port = $port/port = $lport/" "$work/pg-lat$senders/brief.toml"
    on_pg "$work/pg-lat$senders" "$(pgdb "lat$senders")"
    t0=$(now)
    for _ in $(seq 1 "$senders"); do
      (cd "$work/pg-lat$senders" && "$BIN" -q send --edition bench >/dev/null) &
    done
    # A sender that ends incomplete (exit 3) still ends the measurement.
    wait $(jobs -p | tail -n "$senders") || true
    t1=$(now)
    eval "lat$senders=$(rate "$PG_LAT" "$t0" "$t1")"
  done
  echo "relay with 1 s per DATA reply, $PG_LAT readers, concurrency 16: one sender $lat1 msg/s, two senders $lat2 msg/s (ratio $(python3 -c "print(round($lat2/$lat1, 2))"))"
fi
