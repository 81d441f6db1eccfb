"""Prints the decoded text/plain and text/html parts of a message file as JSON,
as a receiving mail program reads them (Python's email package, default policy)."""
import email
import email.policy
import json
import sys

with open(sys.argv[1], "rb") as f:
    msg = email.message_from_binary_file(f, policy=email.policy.default)
parts = {}
for part in msg.walk():
    kind = part.get_content_type()
    if kind in ("text/plain", "text/html"):
        parts["text" if kind == "text/plain" else "html"] = part.get_content()
print(json.dumps(parts))
