#!/usr/bin/env python3
"""Verifies DKIM signatures with dkimpy, independently of brief's signer.

usage: dkim_verify.py QNAME KEY_TYPE PUBKEY_DER MESSAGE...
QNAME is the only DNS name answered (e.g. brief._domainkey.news.example.org); KEY_TYPE
is rsa or ed25519; PUBKEY_DER is the public key as SubjectPublicKeyInfo DER (from
`openssl pkey -pubout -outform DER`). Prints one JSON object: {message path: true/false}.
"""
import base64
import json
import sys

import dkim


def main():
    qname, key_type, der_path, *messages = sys.argv[1:]
    der = open(der_path, "rb").read()
    if key_type == "ed25519":
        # RFC 8463: p= is the raw 32-byte public key, the end of the SPKI.
        public = der[-32:]
    else:
        public = der
    record = b"v=DKIM1; k=%s; p=%s" % (key_type.encode(), base64.b64encode(public))
    asked = []

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        asked.append(name)
        return record if name.rstrip(".") == qname else None

    results = {}
    for path in messages:
        with open(path, "rb") as f:
            results[path] = bool(dkim.verify(f.read(), dnsfunc=dnsfunc))
    print(json.dumps({"results": results, "asked": asked}))


if __name__ == "__main__":
    main()
