#!/usr/bin/env python3
"""A tiny authoritative DNS server for `brief doctor`'s tests (dnslib).

usage: dns_server.py PORT ZONE_FILE
Answers UDP and TCP on 127.0.0.1:PORT from the records of ZONE_FILE (zone-file
syntax, absolute names): the matching records; an empty NOERROR answer when the name
exists with other types only; NXDOMAIN when the name is not in the file at all.
Prints READY when listening; exits when its standard input closes (so a server the
test binary started never outlives it).
"""
import sys

from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSServer


class Zone(BaseResolver):
    def __init__(self, text):
        self.records = RR.fromZone(text)

    def resolve(self, request, handler):
        reply = request.reply()
        reply.header.aa = 1
        qname, qtype = request.q.qname, request.q.qtype
        named = [rr for rr in self.records if rr.rname == qname]
        for rr in named:
            if rr.rtype == qtype or qtype == QTYPE.ANY:
                reply.add_answer(rr)
        if not named:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def main():
    port, zone_file = int(sys.argv[1]), sys.argv[2]
    with open(zone_file) as f:
        resolver = Zone(f.read())
    servers = [
        DNSServer(resolver, address="127.0.0.1", port=port, tcp=tcp, logger=Quiet())
        for tcp in (False, True)
    ]
    for s in servers:
        s.start_thread()
    print("READY", flush=True)
    sys.stdin.read()


class Quiet:
    """dnslib logs every query by default; the tests need none of it."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


if __name__ == "__main__":
    main()
