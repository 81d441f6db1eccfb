#!/usr/bin/env bash
# What a recipient costs the PostgreSQL server, by journal layout:
# - v4: one wide row per recipient with six indexes, `state` among them (brief's
#   schema up to version 4): every change of state adds entries to every index;
# - narrow: the columns a send changes in a narrow table with one index besides the
#   key, the rest in a table written once at freeze (a design not built);
# - v5: the wide row with no index on what a send changes, 30 % of each page free,
#   and the Message-ID in a table of its own (brief's schema version 5): the updates
#   are HOT (they stay on their page without new index entries).
#
# Each layout gets the write pattern of a send, on a private cluster: per 8 recipients
# a claim (one statement), then their in-doubt marks, then their outcomes, each its
# own transaction; pgbench with one client. Printed per recipient: the CPU of the
# cluster's processes (from /proc) and the WAL written (pg_stat_wal); the share of
# HOT updates; and the wall time.
#
#   scripts/bench-pg-layout.sh              # 48,000 recipients, 3 rounds
#   N=96000 ROUNDS=5 scripts/bench-pg-layout.sh
set -euo pipefail
N=${N:-48000}
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=scripts/pg-cluster.sh
. "$(dirname "$0")/pg-cluster.sh"
start_pg_cluster "$work" autovacuum=off
[ -x "$pgbin/pgbench" ] || { echo "needs pgbench (Debian package postgresql)"; exit 1; }
port=$pgport
psql() { "$pgbin/psql" -X -q -h 127.0.0.1 -p "$port" -U brief -d lab "$@"; }
"$pgbin/createdb" -h 127.0.0.1 -p "$port" -U brief lab

psql <<'SQL'
CREATE TABLE v4 (
    id BIGSERIAL PRIMARY KEY, edition TEXT NOT NULL, namespace TEXT NOT NULL,
    address_key TEXT NOT NULL, address TEXT NOT NULL, name TEXT NOT NULL, fields TEXT NOT NULL,
    state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, first_attempt_at TEXT,
    next_attempt_at TEXT, updated_at TEXT, reply TEXT, message_id TEXT,
    claimed_by BIGINT, claim BIGINT,
    UNIQUE (edition, namespace, address_key));
CREATE INDEX v4_state ON v4 (edition, namespace, state, id);
CREATE INDEX v4_tried ON v4 (address_key) WHERE state <> 'pending';
CREATE INDEX v4_message_id ON v4 (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX v4_sent ON v4 (address_key, updated_at) WHERE message_id IS NOT NULL;
CREATE TABLE v5 (LIKE v4 INCLUDING DEFAULTS, PRIMARY KEY (id), UNIQUE (edition, namespace, address_key))
    WITH (fillfactor = 70);
CREATE INDEX v5_order ON v5 (edition, namespace, id);
CREATE INDEX v5_address ON v5 (address_key);
CREATE INDEX v5_retry ON v5 (edition, namespace, id) WHERE next_attempt_at IS NOT NULL;
CREATE TABLE v5_message_ids (message_id TEXT COLLATE "C" PRIMARY KEY, journal_id BIGINT NOT NULL);
-- Narrow: what a send changes, apart from what the freeze writes once (the
-- Message-ID is a keyed hash of the edition and the address, so it is known then).
CREATE TABLE fixed (
    id BIGSERIAL PRIMARY KEY, edition TEXT NOT NULL, namespace TEXT NOT NULL,
    address_key TEXT NOT NULL, address TEXT NOT NULL, name TEXT NOT NULL, fields TEXT NOT NULL,
    message_id TEXT,
    UNIQUE (edition, namespace, address_key));
CREATE INDEX fixed_address ON fixed (address_key);
CREATE INDEX fixed_message_id ON fixed (message_id);
CREATE TABLE narrow (
    id BIGINT PRIMARY KEY, edition TEXT NOT NULL, namespace TEXT NOT NULL, state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0, first_attempt_at TEXT, next_attempt_at TEXT,
    updated_at TEXT, reply TEXT, claimed_by BIGINT, claim BIGINT);
CREATE INDEX narrow_state ON narrow (edition, namespace, state, id);
SQL

# One pgbench transaction: 8 recipients, claimed, marked, then sent.
cat > "$work/v4.sql" <<'SQL'
SELECT nextval('batch') - 1 AS b \gset
\set lo :b * 8 + 1
\set hi :b * 8 + 8
UPDATE v4 SET claimed_by = 1, claim = :b WHERE id BETWEEN :lo AND :hi AND state = 'pending';
UPDATE v4 SET state = 'in_doubt', updated_at = '2026-12-01T06:00:00Z', attempts = attempts + 1,
    first_attempt_at = coalesce(first_attempt_at, '2026-12-01T06:00:00Z'), message_id = 'm' || id
  WHERE id BETWEEN :lo AND :hi;
UPDATE v4 SET state = 'sent', updated_at = '2026-12-01T06:00:01Z', reply = '250 2.0.0 Ok: queued as 4F2A1B'
  WHERE id BETWEEN :lo AND :hi;
SQL
sed -e 's/UPDATE v4/UPDATE narrow/' -e "s/, message_id = 'm' || id//" "$work/v4.sql" > "$work/narrow.sql"
# v5: the mark also files the Message-ID, in the same statement (as brief's commit does).
cat > "$work/v5.sql" <<'SQL'
SELECT nextval('batch') - 1 AS b \gset
\set lo :b * 8 + 1
\set hi :b * 8 + 8
UPDATE v5 SET claimed_by = 1, claim = :b WHERE id BETWEEN :lo AND :hi AND state = 'pending';
WITH m AS (
  UPDATE v5 SET state = 'in_doubt', updated_at = '2026-12-01T06:00:00Z', attempts = attempts + 1,
      first_attempt_at = coalesce(first_attempt_at, '2026-12-01T06:00:00Z'), message_id = 'm' || id
    WHERE id BETWEEN :lo AND :hi RETURNING id, message_id)
INSERT INTO v5_message_ids SELECT message_id, id FROM m ON CONFLICT DO NOTHING;
UPDATE v5 SET state = 'sent', updated_at = '2026-12-01T06:00:01Z', reply = '250 2.0.0 Ok: queued as 4F2A1B'
  WHERE id BETWEEN :lo AND :hi;
SQL

reset() {
  psql <<SQL
SET client_min_messages TO warning;
TRUNCATE v4, v5, v5_message_ids, fixed, narrow RESTART IDENTITY;
DROP SEQUENCE IF EXISTS batch; CREATE SEQUENCE batch;
INSERT INTO v4 (edition, namespace, address_key, address, name, fields, state)
  SELECT 'bench', 'send', md5(i::text), 'reader' || lpad(i::text, 7, '0') || '@example.org',
         'Reader ' || i, '{"city":"City ' || (i % 97) || '"}', 'pending'
  FROM generate_series(1, $N) i;
INSERT INTO v5 SELECT * FROM v4;
INSERT INTO fixed (edition, namespace, address_key, address, name, fields, message_id)
  SELECT edition, namespace, address_key, address, name, fields, 'm' || id FROM v4;
INSERT INTO narrow (id, edition, namespace, state) SELECT id, edition, namespace, state FROM v4;
VACUUM ANALYZE v4; VACUUM ANALYZE v5; VACUUM ANALYZE fixed; VACUUM ANALYZE narrow;
CHECKPOINT;
SQL
}

# CPU ticks of this cluster's processes: the postmaster (whose children's times hold
# the exited backends) and its children.
postmaster=$(head -1 "$work/data/postmaster.pid")
server_ticks() {
  local t=0 p
  for p in "$postmaster" $(pgrep -P "$postmaster"); do
    t=$((t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)

echo "$N recipients per round, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  for layout in v4 narrow v5; do
    reset
    psql -c "SELECT pg_stat_reset_shared('wal'), pg_stat_reset()" >/dev/null
    a=$(server_ticks)
    t0=$(date +%s.%N)
    "$pgbin/pgbench" -n -h 127.0.0.1 -p "$port" -U brief -c 1 -t $((N / 8)) -f "$work/$layout.sql" lab >"$work/pgbench.out" 2>&1 \
      || { cat "$work/pgbench.out"; exit 1; }
    t1=$(date +%s.%N)
    sleep 0.5 # the backend's exit, so that its time is counted
    b=$(server_ticks)
    wal=$(psql -A -t -c "SELECT round(wal_bytes / $N) || ' bytes of WAL in ' || round(wal_records::numeric / $N, 1) || ' records' FROM pg_stat_wal")
    hot=$(psql -A -t -c "SELECT round(100.0 * n_tup_hot_upd / greatest(n_tup_upd, 1)) FROM pg_stat_user_tables WHERE relname = '$layout'")
    echo "round $round, $layout: per recipient server CPU $(python3 -c "print(round(($b - $a) * 1e6 / $hz / $N))") µs, $wal, $hot % of updates HOT; $(python3 -c "print(round($t1 - $t0, 2))") s"
  done
done
