#!/usr/bin/env python3
"""Verifies every DKIM signature of each message with dkimpy (not brief's code).

usage: dkim_verify_each.py KEYS_JSON MESSAGE...
KEYS_JSON maps each DNS name answered to [KEY_TYPE, PUBKEY_DER_PATH], e.g.
{"rsa._domainkey.news.example.org": ["rsa", "keys/rsa.der"]}; KEY_TYPE is rsa or
ed25519, the DER file is SubjectPublicKeyInfo (`openssl pkey -pubout -outform DER`).
Prints one JSON object: {message path: [verdict of signature 1, 2, ...]}.
"""
import base64
import json
import sys

import dkim


def record(key_type, der_path):
    der = open(der_path, "rb").read()
    # RFC 8463: an Ed25519 p= is the raw 32-byte key, the end of the SPKI.
    public = der[-32:] if key_type == "ed25519" else der
    return b"v=DKIM1; k=%s; p=%s" % (key_type.encode(), base64.b64encode(public))


def main():
    keys = json.loads(sys.argv[1])
    records = {name.rstrip("."): record(*spec) for name, spec in keys.items()}

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return records.get(name.rstrip("."))

    results = {}
    for path in sys.argv[2:]:
        message = open(path, "rb").read()
        headers, _ = dkim.rfc822_parse(message)
        count = sum(1 for name, _ in headers if name.lower() == b"dkim-signature")
        d = dkim.DKIM(message)
        results[path] = [bool(d.verify(idx=i, dnsfunc=dnsfunc)) for i in range(count)]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
