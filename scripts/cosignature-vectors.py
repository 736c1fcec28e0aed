#!/usr/bin/env python3
"""Writes tests/vectors/cosignature/vectors.json: c2sp.org/tlog-cosignature (Ed25519
cosignature/v1) lines made from fixed seeds by an implementation independent of the crate's:
Python's hashlib and the `cryptography` package (OpenSSL's Ed25519), following the spec's text.

    scripts/cosignature-vectors.py           rewrite the file
    scripts/cosignature-vectors.py --check   exit 1 if the committed file is not what this writes

tests/witness.rs checks that the crate signs exactly these lines and verifies them, and
tests/browser.rs that the explorer's verify.js verifies them. The file also carries the spec's
own example line, whose key is not published: only its layout (key ID, timestamp) is checked.
"""
import base64
import hashlib
import json
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "vectors" / "cosignature" / "vectors.json"

CASES = [
    # (witness name, seed byte, checkpoint body, timestamp)
    ("witness.example/w1", 1, "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", 1679315147),
    ("w.pointsledger.test/a", 2, "test.pointsledger.local\n1\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\n", 1),
    ("w.pointsledger.test/b", 3, "test.pointsledger.local\n5\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\nextension line\n", 9223372036854775807),
]


def raw_public(key):
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def vector(name, seed_byte, body, time):
    seed = bytes([seed_byte]) * 32
    key = Ed25519PrivateKey.from_private_bytes(seed)
    encoded = b"\x04" + raw_public(key)
    key_id = hashlib.sha256(name.encode() + b"\n" + encoded).digest()[:4]
    vkey = f"{name}+{key_id.hex()}+{base64.b64encode(encoded).decode()}"
    message = f"cosignature/v1\ntime {time}\n".encode() + body.encode()
    signature = key.sign(message)
    line = f"\u2014 {name} " + base64.b64encode(key_id + struct.pack(">Q", time) + signature).decode()
    return {
        "name": name,
        "seed": seed.hex(),
        "vkey": vkey,
        "body": body,
        "time": time,
        "signed_message": message.decode(),
        "line": line,
    }


def build():
    return {
        "about": "c2sp.org/tlog-cosignature Ed25519 cosignature/v1 vectors, made by "
        "scripts/cosignature-vectors.py with Python's cryptography (OpenSSL). Each: the witness "
        "name and 32-byte seed, its witness key, the checkpoint body, the timestamp, the signed "
        "message and the signature line. `spec_example` is the line of the spec's own example "
        "(its key is not published): key ID and timestamp only.",
        "vectors": [vector(*case) for case in CASES],
        "spec_example": {
            "line": "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==",
            "key_id": "8d66cf3f",
            "time": 1679315147,
        },
    }


def main():
    text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is not what scripts/cosignature-vectors.py writes", file=sys.stderr)
            sys.exit(1)
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
