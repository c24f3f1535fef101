"""Checks the start of a /v1/events stream against docs/openapi.yaml.

Usage: python check_events.py OPENAPI FILE KIND[,KIND...]
FILE holds what `curl -N --max-time T URL/v1/events?recent=100` received. It must begin with
the comment `: connected`; every complete event must be exactly an `event: KIND` and a
`data: JSON` line whose JSON matches the documented `Event` schema and whose `kind` is KIND;
at least one event of each KIND given must be there. Run with the Python of the schemathesis
venv (PyYAML and jsonschema_rs come with schemathesis). Exit 1 on any problem.
"""

import json
import sys

import jsonschema_rs
import yaml

spec = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))


def validator(name):
    schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": spec["components"]["schemas"]}}
    return jsonschema_rs.Draft4Validator(schema)


event = validator("Event")
# The variant each kind should match, for a readable message when `Event` (a oneOf) fails.
variants = {"accepted": "FileChangeEvent", "deleted": "FileChangeEvent", "refused": "RefusedEvent",
            "expired": "ExpiredEvent", "member_joined": "MemberEvent", "member_left": "MemberEvent",
            "member_failed": "MemberEvent"}
text = open(sys.argv[2], encoding="utf-8").read()
expected = sys.argv[3].split(",")
blocks = text.split("\n\n")
blocks.pop()  # after the last empty line: nothing, or an event cut off by the time limit
problems, kinds = [], {}
if not blocks or blocks[0] != ": connected":
    problems.append(f"the stream does not start with ': connected' (got {text[:60]!r})")
for block in blocks[1:]:
    lines = [line for line in block.split("\n") if not line.startswith(":")]
    if not lines:
        continue
    fields = dict(line.split(": ", 1) if ": " in line else (line, "") for line in lines)
    if sorted(fields) != ["data", "event"] or len(lines) != 2:
        problems.append(f"not an 'event:' and a 'data:' line: {block[:200]!r}")
        continue
    try:
        data = json.loads(fields["data"])
    except ValueError as error:
        problems.append(f"data is not JSON ({error}): {fields['data'][:200]!r}")
        continue
    if not event.is_valid(data):
        variant = variants.get(fields["event"])
        errors = [e.message for e in validator(variant).iter_errors(data)] if variant else []
        why = "; ".join(m[:200] for m in errors) or "matches no variant, or more than one"
        problems.append(f"{fields['event']} event does not match the Event schema ({variant}): {why}")
        problems.append(f"  data: {fields['data'][:300]}")
    if isinstance(data, dict) and data.get("kind") != fields["event"]:
        problems.append(f"event: {fields['event']} carries kind {data.get('kind')!r}")
    kinds[fields["event"]] = kinds.get(fields["event"], 0) + 1
for kind in expected:
    if kind not in kinds:
        problems.append(f"no {kind} event among the latest ones")
for problem in problems[:20]:
    print("schemathesis_test: events: " + problem)
print("schemathesis_test: events: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + " (from ?recent=100)")
sys.exit(1 if problems else 0)
