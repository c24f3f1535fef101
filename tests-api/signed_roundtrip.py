"""Signed requests against a live node, each response checked against docs/openapi.yaml.

schemathesis cannot sign, so it never sees a 201 from PUT or a 200 from DELETE. This sends
correctly signed versions (ED25519 over the SPEC §5 message, signed with `openssl pkeyutl`)
and validates every answer with schemathesis' own checks, then asserts the statuses:

  PUT NAME (signed)            -> 201, FileEntry, DM-* headers
  GET NAME                     -> 200, the same bytes, DM-* headers equal to the PUT's
  HEAD NAME                    -> 200, no body
  PUT NAME (same version)      -> 409 stale
  PUT NAME (newer, other data, signature of the first content) -> 403 bad signature
  DELETE NAME (signed, newer)  -> 200, FileEntry with deleted = true
  GET NAME                     -> 404
  DELETE NAME (same tombstone) -> 409 stale

Usage: python signed_roundtrip.py OPENAPI URL PRIVATE_KEY_PEM PUBLIC_KEY_BASE64 NAME
Run with the Python of the schemathesis venv. Prints one line per request; exit 1 on any
problem.
"""

import base64
import hashlib
import struct
import subprocess
import sys
import tempfile
import time

import schemathesis
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def message(kind: int, network: str, name: str, timestamp: int, valid_for: int, content: bytes) -> bytes:
    """The signed message of SPEC §5 (integers big-endian)."""
    net = network.encode()
    raw = name.encode()
    return (
        b"data-mesher/file/v1\x00"
        + struct.pack(">B", kind)
        + struct.pack(">H", len(net))
        + net
        + struct.pack(">H", len(raw))
        + raw
        + struct.pack(">q", timestamp)
        + struct.pack(">Q", valid_for)
        + hashlib.sha256(content).digest()
        + struct.pack(">Q", len(content))
    )


def sign(key: str, data: bytes) -> str:
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        out = subprocess.run(
            ["openssl", "pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", f.name],
            check=True,
            capture_output=True,
        ).stdout

    return base64.b64encode(out).decode()


def main() -> int:
    spec, url, key, pub, name = sys.argv[1:6]
    schema = schemathesis.openapi.from_path(spec)
    ops = schema["/v1/files/{name}"]
    problems = []

    def call(method, expected, headers=None, body=None, what=""):
        kwargs = {"path_parameters": {"name": name}, "headers": headers or {}}
        if body is not None:
            kwargs["body"] = body
            kwargs["media_type"] = "application/octet-stream"
        case = ops[method].Case(**kwargs)
        response = case.call(base_url=url, timeout=10)
        try:
            case.validate_response(response, checks=CHECKS)
            verdict = "conforms"
        except FailureGroup as error:
            verdict = "DOES NOT CONFORM"
            problems.append(f"{method} {name} {what}: response does not match the document:\n{error}")
        if response.status_code != expected:
            problems.append(f"{method} {name} {what}: status {response.status_code}, expected {expected}: "
                            f"{response.content[:300]!r}")
        print(f"schemathesis_test: signed: {method} {name} {what} -> {response.status_code} ({verdict})")
        return response

    def signed(kind, timestamp, content, signed_content=None):
        signature = sign(key, message(kind, "", name, timestamp, 0, content if signed_content is None else signed_content))
        return {"DM-Signer": pub, "DM-Signature": signature, "DM-Timestamp": str(timestamp)}

    content = b"app = 1\n"
    t1 = time.time_ns()
    put = call("PUT", 201, signed(1, t1, content), content, "(signed)")
    get = call("GET", 200, what="(after the upload)")
    if get.status_code == 200 and get.content != content:
        problems.append(f"GET {name}: got {get.content!r}, uploaded {content!r}")
    for header in ("DM-Signer", "DM-Signature", "DM-Timestamp", "DM-Valid-For", "DM-SHA256"):
        if put.headers.get(header) != get.headers.get(header):
            problems.append(f"{header}: PUT answered {put.headers.get(header)!r}, GET {get.headers.get(header)!r}")
    head = call("HEAD", 200, what="(after the upload)")
    if head.content:
        problems.append(f"HEAD {name} has a body: {head.content[:100]!r}")
    call("PUT", 409, signed(1, t1, content), content, "(the same version again)")
    call("PUT", 403, signed(1, t1 + 1000, content, b"other"), content, "(signature over other content)")
    t2 = t1 + 1_000_000
    deleted = call("DELETE", 200, signed(2, t2, b""), what="(signed tombstone)")
    if deleted.status_code == 200 and deleted.json().get("deleted") is not True:
        problems.append(f"DELETE {name}: answer does not say deleted: {deleted.content!r}")
    call("GET", 404, what="(after the deletion)")
    call("DELETE", 409, signed(2, t2, b""), what="(the same tombstone again)")
    for problem in problems:
        print("schemathesis_test: signed: problem: " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
