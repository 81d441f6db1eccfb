#!/usr/bin/env bash
# `brief bounces` on a large bounce mailbox, the real binary end to end: the sample
# edition is sent to its 3,000 readers (outbox), then an mbox of N Postfix DSNs for
# (half hard 5.1.1 headers-only reports for those readers, half "delayed" warnings for
# an address never mailed, which are classified and printed but never applied; each
# with its own Message-Id) is read, classified, attributed and applied. Prints
# messages/s and the peak memory for N/10 and N messages: the same rate and the same
# peak memory show the work is linear and the mailbox is streamed.
#
#   scripts/bench-bounces.sh            # N=100000
#   N=20000 scripts/bench-bounces.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}

cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/brief
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r brief.toml editions templates subscribers "$work/"
export BRIEF_SECRET=$(openssl rand -base64 32)
(cd "$work" && "$BIN" -q send --edition 2026-11-20 >/dev/null)

make_mbox() { # count file
  python3 - "$1" "$2" tests/fixtures/bounces/postfix <<'EOF'
import csv, sys
count, out, fixtures = int(sys.argv[1]), sys.argv[2], sys.argv[3]
readers = [r["email"] for r in csv.DictReader(open("subscribers/readers.csv", encoding="utf-8-sig"))]
kinds = [open(f"{fixtures}/{name}", encoding="utf-8").read().replace("\r\n", "\n")
         for name in ("04-hard-5.1.1-RET-HDRS-ENVID-headers-only.eml", "06-delayed-4.7.1-warning.eml")]
with open(out, "w", encoding="utf-8") as f:
    for i in range(count):
        text = kinds[i % 2].replace("nouser2@example.org", readers[i % len(readers)])
        text = text.replace("Message-Id: <2026", f"Message-Id: <{i}.2026", 1)
        f.write("From MAILER-DAEMON Tue Dec  1 07:47:01 2026\n" + text.rstrip("\n") + "\n\n")
EOF
}

for n in $((N / 10)) "$N"; do
  make_mbox "$n" "$work/bounces-$n.mbox"
  size=$(du -m "$work/bounces-$n.mbox" | cut -f1)
  cp "$work/state/brief.db" "$work/state/before.db"
  /usr/bin/time -f '%e %M' -o "$work/time" \
    "$BIN" --config "$work/brief.toml" -q bounces --from-mbox "$work/bounces-$n.mbox" --json >"$work/out.jsonl"
  read -r secs kb <"$work/time"
  lines=$(wc -l <"$work/out.jsonl")
  applied=$(grep -c '"applied":true' "$work/out.jsonl" || true)
  python3 -c "import sys; n,s,kb,mb,l,a=map(float,sys.argv[1:]); print(f'{int(n)} DSNs ({int(mb)} MB): {s:.1f} s, {n/s:.0f} msg/s, peak {kb/1024:.0f} MB, {int(l)} findings, {int(a)} applied')" \
    "$n" "$secs" "$kb" "$size" "$lines" "$applied"
  mv "$work/state/before.db" "$work/state/brief.db"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
