#!/usr/bin/env python3
"""Reads messages with Python's strict email parser, independently of brief's code.

usage: parse_strict.py MESSAGE...
A leading "X-Rcpt:" / "X-TLS:" line (added by tests/support/smtp_server.py) is skipped.
Prints one JSON object: {path: {"defects": [...], "long_lines": [header lines over 78 bytes],
"headers": {name: [decoded values]}, "to_rfc2047": To decoded by RFC 2047}}; a parse error is reported as a defect.
"""
import email
import email.header
import email.policy
import json
import sys


def main():
    out = {}
    for path in sys.argv[1:]:
        raw = open(path, "rb").read()
        while raw.startswith((b"X-Rcpt:", b"X-TLS:")):
            raw = raw.split(b"\r\n", 1)[1]
        head = raw.split(b"\r\n\r\n", 1)[0]
        long_lines = [l.decode("ascii", "replace") for l in head.split(b"\r\n") if len(l) > 78]
        result = {"defects": [], "long_lines": long_lines, "headers": {}}
        try:
            msg = email.message_from_bytes(raw, policy=email.policy.strict)
            for part in msg.walk():
                result["defects"] += [repr(d) for d in part.defects]
            for name in set(msg.keys()):
                values = []
                for value in msg.get_all(name):
                    values.append(str(value))
                    result["defects"] += [repr(d) for d in getattr(value, "defects", ())]
                result["headers"][name] = values
            # The RFC 2047 reading (adjacent encoded words join without a space; the
            # strict policy's address parser puts one between them in a display name).
            raw_to = email.message_from_bytes(raw, policy=email.policy.compat32)["To"]
            result["to_rfc2047"] = str(email.header.make_header(email.header.decode_header(raw_to)))
        except Exception as e:  # the strict policy raises on a defect
            result["defects"].append("%s: %s" % (type(e).__name__, e))
        out[path] = result
    print(json.dumps(out))


if __name__ == "__main__":
    main()
