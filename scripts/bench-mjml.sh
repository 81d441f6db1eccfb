#!/usr/bin/env bash
# Compares brief's compose + compile with the official MJML compiler (npm `mjml`), on
# the same document: the sample edition editions/2026-11-20.md.
#
#   scripts/bench-mjml.sh            # MJML_VERSION=5.4.1 by default
#
# 1. in process: brief's compose+compile (criterion) vs mjml's JavaScript API in a
#    warm loop, on the MJML brief composes;
# 2. whole process: `brief build` vs the `mjml` command line (hyperfine).
# Needs node + npm, hyperfine, and a Rust toolchain. Installs mjml into a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${MJML_VERSION:-5.4.1}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== building brief (release)"
cargo build -q --release
brief="$PWD/target/release/brief"
"$brief" build --edition 2026-11-20 --out "$work/out" >/dev/null
mjml_file="$work/out/email.mjml"
echo "MJML: $(wc -c <"$mjml_file") bytes"

echo "== installing mjml@$version into $work/node"
npm install --prefix "$work/node" --no-audit --no-fund --silent "mjml@$version" >/dev/null
cat >"$work/warm.js" <<'JS'
const mjml2html = require(process.argv[2]);
const src = require('fs').readFileSync(process.argv[3], 'utf8');
(async () => {
  const once = async () => {
    const r = await mjml2html(src, { validationLevel: 'soft' });
    if (!r.html) throw new Error('no html');
  };
  for (let i = 0; i < 50; i++) await once();
  const n = 300;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await once();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / n;
  console.log(ms.toFixed(3));
})();
JS
mjml_warm_ms="$(node "$work/warm.js" "$work/node/node_modules/mjml" "$mjml_file")"
echo "mjml $version JS API, warm: $mjml_warm_ms ms per document"

echo "== brief in process (criterion): compose+compile, and mrml alone for reference"
bench_out="$(cargo bench -q --bench compose -- --warm-up-time 2 --measurement-time 5 'compose\+compile|mrml only' 2>/dev/null)"
# "time:   [1.0 ms 1.1 ms 1.2 ms]" after the bench name -> the middle estimate, in ms
estimate() {
  echo "$bench_out" | grep -A1 "$1" | grep -o 'time: *\[[^]]*\]' | awk '{
    v=$4; u=$5; if (u=="µs"||u=="us") v/=1000; else if (u=="ns") v/=1e6; else if (u=="s") v*=1000; printf "%.4f", v }'
}
brief_ms="$(estimate 'compose+compile')"
mrml_ms="$(estimate 'mrml only')"
echo "brief compose+compile: $brief_ms ms per edition; mrml parse+render alone: $mrml_ms ms"
awk -v a="$mjml_warm_ms" -v b="$brief_ms" -v m="$mrml_ms" 'BEGIN {
  printf "in process: brief compose+compile is %.1fx faster than mjml warm (goal: 25x); mrml alone %.1fx\n", a / b, a / m }'

echo "== whole process: brief build vs mjml CLI (hyperfine)"
hyperfine -N --warmup 3 --runs 20 --export-json "$work/hf.json" \
  -n "brief build" "$brief build --edition 2026-11-20 --out $work/b" \
  -n "mjml CLI" "$work/node/node_modules/.bin/mjml $mjml_file -o $work/m.html"
node -e '
const r = require(process.argv[1]).results;
const b = r.find(x => x.command === "brief build").mean, m = r.find(x => x.command === "mjml CLI").mean;
console.log(`whole process: brief build ${(b*1000).toFixed(2)} ms, mjml CLI ${(m*1000).toFixed(1)} ms: brief is ${(m/b).toFixed(0)}x faster (goal: 50x)`);
' "$work/hf.json"
