#!/usr/bin/env python3
"""A scripted SMTP server for brief's delivery tests (aiosmtpd).

usage: smtp_server.py PORT DIR RULES_JSON
RULES_JSON keys (all optional):
  "reject":     {"addr": "550 5.1.1 text"}   permanent refusal at RCPT for addr
  "reject_all": "550 5.7.1 text"             permanent refusal at RCPT for everyone
  "defer_once": ["addr", ...]                451 at RCPT the first time addr is seen
  "close_after": N                           after N accepted messages, answer the next
                                             MAIL with 421 and close the connection
  "auth": {"user": "password"}               require AUTH (PLAIN or LOGIN; only after
                                             STARTTLS when "tls" is set)
  "tls": {"cert": PEM, "key": PEM}           offer STARTTLS and require it before MAIL
                                             and AUTH; with "implicit": true, speak TLS
                                             from the first byte instead (port 465 style)
Every accepted message is written to DIR/<n>.eml, its first line "X-Rcpt: <addr>";
with "tls", a second line "X-TLS: <protocol version>" (or "X-TLS: none").
Prints READY when listening.
"""
import asyncio
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Handler:
    def __init__(self, directory, rules):
        self.dir = directory
        self.rules = rules
        self.seen = set()
        self.accepted = 0
        self.closed_once = False

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        limit = self.rules.get("close_after")
        if limit is not None and self.accepted >= limit and not self.closed_once:
            self.closed_once = True
            asyncio.get_event_loop().call_later(0.05, server.transport.close)
            return "421 4.3.2 closing connection"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        key = address.lower()
        if "reject_all" in self.rules:
            return self.rules["reject_all"]
        reject = {k.lower(): v for k, v in self.rules.get("reject", {}).items()}
        if key in reject:
            return reject[key]
        if key in [a.lower() for a in self.rules.get("defer_once", [])] and key not in self.seen:
            self.seen.add(key)
            return "451 4.7.1 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.accepted += 1
        name = os.path.join(self.dir, "%d-%d.eml" % (time.time_ns(), self.accepted))
        with open(name + ".tmp", "wb") as f:
            f.write(("X-Rcpt: %s\r\n" % envelope.rcpt_tos[0]).encode())
            if "tls" in self.rules:
                tls = server.transport.get_extra_info("ssl_object")
                f.write(("X-TLS: %s\r\n" % (tls.version() if tls else "none")).encode())
            f.write(envelope.original_content)
        os.rename(name + ".tmp", name)
        return "250 2.0.0 queued as %d" % self.accepted


def authenticator(users):
    def check(server, session, envelope, mechanism, auth_data):
        user = auth_data.login.decode()
        if users.get(user) == auth_data.password.decode():
            return AuthResult(success=True)
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Authentication credentials invalid"
        )

    return check


def main():
    port, directory, rules = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    extra = {}
    tls = rules.get("tls")
    if "auth" in rules:
        extra = dict(
            auth_required=True,
            # With implicit TLS the whole session is encrypted, but aiosmtpd only
            # counts STARTTLS as encryption.
            auth_require_tls=bool(tls) and not tls.get("implicit"),
            authenticator=authenticator(rules["auth"]),
        )
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls["cert"], tls["key"])
        if tls.get("implicit"):
            extra["ssl_context"] = context
        else:
            extra.update(tls_context=context, require_starttls=True)
    controller = Controller(
        Handler(directory, rules), hostname="127.0.0.1", port=port, **extra
    )
    controller.start()
    print("READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
