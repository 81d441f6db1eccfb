#!/usr/bin/env bash
# Installs what the tests need (Debian packages: Postfix's smtp-sink, aiosmtpd, Chromium,
# openssl for the TLS certificates, SpamAssassin, rspamd, PostgreSQL; pip: dkimpy, dnslib) and runs
# every check and test.
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need+=(postfix)
python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need+=(python3-aiosmtpd)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-liberation)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# SpamAssassin and rspamd judge outbox messages in tests/testsuite/inbox.rs (rspamd
# runs as a private instance started by the test).
command -v spamassassin >/dev/null 2>&1 || need+=(spamassassin)
command -v rspamd >/dev/null 2>&1 || need+=(rspamd)
# PostgreSQL: tests/testsuite/pg.rs and pg_more.rs start private clusters (initdb +
# postgres in a temp dir), never the system service.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's aiosmtpd is for the system python; make sure the python3 on PATH has it too.
python3 -c 'import aiosmtpd' >/dev/null 2>&1 || python3 -m pip install -q aiosmtpd
# dkimpy (with PyNaCl for Ed25519) verifies brief's DKIM signatures in tests/testsuite/dkim.rs.
python3 -c 'import dkim, nacl' >/dev/null 2>&1 || python3 -m pip install -q 'dkimpy[ed25519]'
# dnslib: the small authoritative DNS server `brief doctor`'s tests ask (tests/testsuite/doctor.rs).
python3 -c 'import dnslib' >/dev/null 2>&1 || python3 -m pip install -q dnslib

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
