#!/usr/bin/env bash
# API conformance and robustness test: runs schemathesis against ONE real data-mesher node,
# with docs/openapi.yaml as the contract, then checks that nothing it sent changed the store.
#
#   1. starts a node on a 127.x.y.z loopback address (temp state_dir, two configured names,
#      signing keys from `generate keypair`, no peers);
#   2. uploads one valid file with the CLI (so GETs find data); sends signed PUT/GET/HEAD/
#      DELETE requests (signed_roundtrip.py) and checks their answers against the document,
#      since schemathesis cannot sign; checks the start of /v1/events (check_events.py);
#   3. snapshots every path under state_dir (type, mode, owner; for files size and SHA-256);
#   4. runs schemathesis (examples, coverage, fuzzing, stateful phases) with every check that
#      applies, bounded by ST_MAX_EXAMPLES per operation and ST_MAX_TIME seconds;
#      /v1/events (an endless stream) is never generated for, and `/` is left out (with a
#      warning) while the binary answers it with 404;
#   5. checks: schemathesis found nothing; the snapshot is unchanged (every write it tried was
#      unsigned and must have been refused without a trace); the node is alive and serves the
#      same list and bytes; the events the run caused match the document; the node's log has
#      no internal error.
# Last line: "schemathesis_test: passed" (exit 0) or "schemathesis_test: failed" (exit 1).
#
# Environment: DM_BIN (default .build/debug/data-mesher of this repository), DM_KEEP=1 keeps the temp
# dir, ST_MAX_EXAMPLES (default 50), ST_MAX_TIME (default 120 s), ST_SEED (default: random,
# printed), ST_WORKERS (default 2), DM_OPENAPI (default docs/openapi.yaml of this checkout),
# ST_VENV (default ~/.cache/data-mesher/schemathesis-VERSION).
set -uo pipefail

TEST=schemathesis_test
ST_VERSION=4.32.5
HERE=$(cd "$(dirname "$0")" && pwd)
DM_BIN=${DM_BIN:-$HERE/../.build/debug/data-mesher}
DM_OPENAPI=${DM_OPENAPI:-$HERE/../docs/openapi.yaml}
ST_MAX_EXAMPLES=${ST_MAX_EXAMPLES:-50}
ST_MAX_TIME=${ST_MAX_TIME:-120}
ST_WORKERS=${ST_WORKERS:-2}
ST_SEED=${ST_SEED:-}

WORK=""
NODE_PID=""
ST_PID=""
STEP="setup"
CLEANED=0

say() { echo "$TEST: $*"; }

cleanup() {
    local status=$?
    [ "$CLEANED" = 1 ] && return
    CLEANED=1
    trap - EXIT INT TERM HUP
    trap '' PIPE
    [ "$status" -gt 128 ] && say "interrupted at step: $STEP (signal $((status - 128))); cleaning up"
    if [ -n "$ST_PID" ] && kill -0 "$ST_PID" 2>/dev/null; then
        kill -TERM "$ST_PID" 2>/dev/null
        wait "$ST_PID" 2>/dev/null
    fi
    if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
        kill -TERM "$NODE_PID" 2>/dev/null
        local _
        for _ in $(seq 1 50); do
            kill -0 "$NODE_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$NODE_PID" 2>/dev/null && kill -KILL "$NODE_PID" 2>/dev/null
        wait "$NODE_PID" 2>/dev/null
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "${DM_KEEP:-0}" = 1 ]; then
            echo "$TEST: kept $WORK" >&2
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}

fail() {
    say "FAILED at step: $STEP"
    [ $# -gt 0 ] && say "$*"
    if [ -n "$WORK" ] && [ -f "$WORK/node.log" ]; then
        echo "----- node log (last 40 lines) -----"
        tail -n 40 "$WORK/node.log"
    fi
    say "failed"
    exit 1
}

# --- preconditions ---------------------------------------------------------------------

need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v timeout >/dev/null 2>&1 || need+=(coreutils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || fail "please install ${need[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }; then
        fail "apt-get install ${need[*]}"
    fi
fi
[ -x "$DM_BIN" ] || fail "$DM_BIN is not an executable (build first, or set DM_BIN)"
[ -f "$DM_OPENAPI" ] || fail "no OpenAPI document at $DM_OPENAPI"

# schemathesis, pinned, in a venv of our own (reused while it has that version); its Python
# (with PyYAML and jsonschema_rs, both schemathesis dependencies) also checks /v1/events.
VENV=${ST_VENV:-$HERE/../.venv-tests/schemathesis-$ST_VERSION}
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $ST_VERSION" ]; then
    STEP="install schemathesis $ST_VERSION"
    say "installing schemathesis $ST_VERSION into $VENV"
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        [ "$(id -u)" = 0 ] || fail "python3-venv is missing"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }; then
            fail "apt-get install python3-venv"
        fi
    fi
    rm -rf "$VENV"
    python3 -m venv "$VENV" || fail "python3 -m venv $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$ST_VERSION" ||
        fail "pip install schemathesis==$ST_VERSION"
fi
ST="$VENV/bin/schemathesis"
PY="$VENV/bin/python"

WORK=$(mktemp -d "/tmp/dm-$TEST.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

# --- the node --------------------------------------------------------------------------

STEP="keys and config"
STATE="$WORK/state"
"$DM_BIN" generate keypair --private-key-path "$WORK/signing.key" --public-key-path "$WORK/signing.pub" \
    >/dev/null || fail "generate keypair"
"$DM_BIN" generate keypair --private-key-path "$WORK/other.key" --public-key-path "$WORK/other.pub" \
    >/dev/null || fail "generate keypair (second key)"
PUB=$("$DM_BIN" key public "$WORK/signing.key") || fail "key public"
OTHER=$("$DM_BIN" key public "$WORK/other.key") || fail "key public (second key)"

# A loopback address of our own (127.0.0.0/8 all reaches lo on Linux), so ports 7331/7946
# do not clash with another node or test on this machine.
ADDR="127.$((20 + $$ % 200)).$((($$ / 200) % 250 + 1)).$((RANDOM % 250 + 2))"
URL="http://$ADDR:7331"
cat >"$WORK/dm.toml" <<EOF
log_level = "info"
state_dir = "$STATE"
node_name = "st-node"
max_file_size = "1MiB"

[cluster]
port = 7946
interfaces = ["$ADDR"]
bootstrap_nodes = []

[http]
port = 7331
interfaces = ["$ADDR"]

[files]
"config:app" = ["$PUB"]
"dns/cnames" = ["$PUB", "$OTHER"]
EOF

STEP="start the node"
"$DM_BIN" server --config "$WORK/dm.toml" >"$WORK/node.log" 2>&1 </dev/null &
NODE_PID=$!
up=0
for _ in $(seq 1 120); do
    kill -0 "$NODE_PID" 2>/dev/null || fail "the node exited at start"
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL/v1/info")" = 200 ]; then
        up=1
        break
    fi
    sleep 0.5
done
[ "$up" = 1 ] || fail "the node did not answer $URL/v1/info within 60 s"
say "node PID $NODE_PID at $URL, state_dir $STATE"

STEP="upload one file with the CLI"
printf 'www  CNAME  web.example.\nmail CNAME  mx.example.\n' >"$WORK/cnames.txt"
timeout 30 "$DM_BIN" file update "$WORK/cnames.txt" --url "$URL" --key "$WORK/signing.key" --name dns/cnames ||
    fail "data-mesher file update"
curl -sS --max-time 5 -o "$WORK/cnames.got" "$URL/v1/files/dns%2Fcnames" || fail "GET dns/cnames"
cmp -s "$WORK/cnames.txt" "$WORK/cnames.got" || fail "GET dns/cnames does not return the uploaded bytes"

STEP="signed requests"
# What schemathesis cannot reach (it cannot sign): 201/200 answers to signed PUT/DELETE, and
# 409/403 for signed but stale or altered versions, each checked against the document.
"$PY" "$HERE/signed_roundtrip.py" "$DM_OPENAPI" "$URL" "$WORK/signing.key" "$PUB" config:app ||
    fail "signed requests: answers differ from the document or from the expected statuses"

STEP="optional endpoints"
EXCLUDE=(--exclude-path /v1/events)
root_status=$(curl -s -o "$WORK/root.html" -w '%{http_code}' --max-time 5 "$URL/")
if [ "$root_status" = 404 ]; then
    say "WARNING: GET / answers 404 on this binary; '/' is left out of the run"
    EXCLUDE+=(--exclude-path /)
fi
check_events() { "$PY" "$HERE/check_events.py" "$DM_OPENAPI" "$@"; }
# /v1/events never ends, so schemathesis does not touch it; its start is checked here and
# the events the run caused are checked against the Event schema afterwards.
EVENTS=0
events_status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/v1/events?recent=x")
if [ "$events_status" = 404 ]; then
    say "WARNING: GET /v1/events answers 404 on this binary; not checked"
elif [ "$events_status" = 400 ]; then
    EVENTS=1
    curl -s -N --max-time 2 -D "$WORK/events.headers" -o "$WORK/events.start" "$URL/v1/events?recent=100"
    grep -qi '^content-type: *text/event-stream' "$WORK/events.headers" ||
        fail "GET /v1/events: Content-Type is not text/event-stream: $(tr -d '\r' <"$WORK/events.headers")"
    printf ': connected\n\n' | cmp -s -n 13 - "$WORK/events.start" ||
        fail "GET /v1/events: the stream does not start with ': connected' and an empty line"
    check_events "$WORK/events.start" accepted,deleted || fail "GET /v1/events: bad stream after the upload"
else
    fail "GET /v1/events?recent=x: status '$events_status' (expected 400, or 404 while not implemented)"
fi

STEP="snapshot the store"
snapshot() { # state_dir -> sorted lines: path type mode uid:gid [size sha256 | -> target]
    python3 - "$1" <<'PY'
import hashlib, os, stat, sys
root = sys.argv[1]
st = os.lstat(root)
out = [f"'.' mode={stat.filemode(st.st_mode)}({st.st_mode & 0o7777:o}) owner={st.st_uid}:{st.st_gid}"]
for dirpath, dirnames, filenames in os.walk(root):
    for entry in sorted(dirnames + filenames):
        path = os.path.join(dirpath, entry)
        st = os.lstat(path)
        rel = os.path.relpath(path, root)
        head = f"{rel!r} mode={stat.filemode(st.st_mode)}({st.st_mode & 0o7777:o}) owner={st.st_uid}:{st.st_gid}"
        if stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            out.append(f"{head} size={st.st_size} sha256={digest.hexdigest()}")
        elif stat.S_ISLNK(st.st_mode):
            out.append(f"{head} -> {os.readlink(path)!r}")
        else:
            # A directory's st_size is file-system bookkeeping (ext4 never shrinks it after a
            # temporary file came and went), not content: its entries are listed on their own.
            out.append(head)
for line in sorted(out):
    print(line)
PY
}
snapshot "$STATE" >"$WORK/before.snapshot" || fail "snapshot"
curl -sS --max-time 5 "$URL/v1/files" >"$WORK/before.files" || fail "GET /v1/files"
say "snapshot: $(wc -l <"$WORK/before.snapshot") paths under state_dir"

# --- schemathesis ----------------------------------------------------------------------

STEP="schemathesis"
# Values that get past the first checks, so the run also reaches the body upload and the
# signature check: the configured names and the keys allowed for them. The checks' expected
# statuses are the codes SPEC §6 allows for bad input (negative data) and for well-formed
# but unsigned data (positive data: 403 not allowed/bad signature, 404 absent, 409 stale).
cat >"$WORK/schemathesis.toml" <<EOF
[dictionaries.names]
values = ["config:app", "dns/cnames"]

[dictionaries.signers]
values = ["$PUB", "$OTHER"]

[parameters]
"path.name" = { dictionary = "names", probability = 0.3 }
"header.DM-Signer" = { dictionary = "signers", probability = 0.3 }

[checks.negative_data_rejection]
expected-statuses = ["400", "403", "404", "409", "413"]

[checks.positive_data_acceptance]
expected-statuses = ["200", "201", "403", "404", "409"]

[checks.missing_required_header]
expected-statuses = ["400"]
EOF
seed_args=()
[ -n "$ST_SEED" ] && seed_args=(--seed "$ST_SEED")
# Every check, but unsupported_method: the router answers an unknown method on a known path
# with 404 "no such endpoint" (documented in openapi.yaml), never 405.
ST_CMD=("$ST" --config-file "$WORK/schemathesis.toml" run "$DM_OPENAPI" --url "$URL"
    --checks all --exclude-checks unsupported_method
    --max-examples "$ST_MAX_EXAMPLES" --max-time "$ST_MAX_TIME" --workers "$ST_WORKERS"
    --request-timeout 10 --generation-database none --no-color
    "${EXCLUDE[@]}" "${seed_args[@]}")
say "running: ${ST_CMD[*]}"
(cd "$WORK" && exec timeout --kill-after=10 $((ST_MAX_TIME + 300)) "${ST_CMD[@]}") >"$WORK/schemathesis.out" 2>&1 &
ST_PID=$!
wait "$ST_PID"
st_status=$?
ST_PID=""
cat "$WORK/schemathesis.out"

# --- after -----------------------------------------------------------------------------

problems=()
[ "$st_status" = 0 ] || problems+=("schemathesis exited with status $st_status")

STEP="node alive"
if ! kill -0 "$NODE_PID" 2>/dev/null; then
    problems+=("the node (PID $NODE_PID) is no longer running")
else
    info_status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/v1/info")
    [ "$info_status" = 200 ] || problems+=("GET /v1/info after the run: status $info_status")
    curl -s --max-time 5 -o "$WORK/cnames.after" "$URL/v1/files/dns%2Fcnames"
    cmp -s "$WORK/cnames.txt" "$WORK/cnames.after" || problems+=("GET dns/cnames no longer returns the uploaded bytes")
    curl -s --max-time 5 "$URL/v1/files" >"$WORK/after.files"
    cmp -s "$WORK/before.files" "$WORK/after.files" ||
        problems+=("GET /v1/files changed: before $(cat "$WORK/before.files") after $(cat "$WORK/after.files")")
fi

STEP="events"
if [ "$EVENTS" = 1 ]; then
    # The latest 100 events: schemathesis made hundreds of refusals, each one an event.
    curl -s -N --max-time 3 -o "$WORK/events.after" "$URL/v1/events?recent=100"
    if ! check_events "$WORK/events.after" refused; then
        problems+=("/v1/events sent events that do not match the documented Event schema")
    fi
fi

STEP="store unchanged"
snapshot "$STATE" >"$WORK/after.snapshot" || problems+=("snapshot after the run failed")
if ! cmp -s "$WORK/before.snapshot" "$WORK/after.snapshot"; then
    echo "----- state_dir changed (- before, + after) -----"
    diff -u "$WORK/before.snapshot" "$WORK/after.snapshot" | tail -n +3 | head -n 60
    problems+=("state_dir changed during the run although nothing sent was signed")
fi

STEP="node log"
# The API logs "request failed" only for an error it did not expect (and answers 500 then).
internal=$(grep -c 'request failed' "$WORK/node.log")
if [ "$internal" != 0 ]; then
    echo "----- internal errors in the node log -----"
    grep 'request failed' "$WORK/node.log" | head -n 20
    problems+=("$internal internal error(s) in the node log")
fi
say "node log: $(grep -c 'refused version' "$WORK/node.log") refusals; by reason:" \
    "$(grep -o 'dm.reason=[a-z_]*' "$WORK/node.log" | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}' | sed 's/dm.reason=//g; s/, $//')"

if [ ${#problems[@]} -gt 0 ]; then
    for p in "${problems[@]}"; do say "problem: $p"; done
    say "failed"
    exit 1
fi
say "passed"
