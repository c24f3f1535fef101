#!/usr/bin/env bash
# Status page (GET /) in a real browser against a real 3-node cluster on loopback
# (127.0.0.41-43, HTTP on port 7331 of each, gossip on 7946).
#
# Checks, in headless Chromium driven by Selenium (tests-ui/status_page_driver.py):
#   - node 1's page shows its name and all three members as alive (one name holds HTML
#     markup, which must show as text);
#   - the event stream connects (#live reads "live");
#   - after a CLI `file update` on node 2, without reloading, the file appears in #files and
#     an `accepted` event for it in #events; its age cell ticks.
# Saves a screenshot to tests-ui/artifacts/status-page.png (also on failure).
#
# Installs Debian's chromium and chromium-driver and PyPI's selenium when missing (root).
# Env: DM_BIN (default .build/debug/data-mesher of this repository), DM_KEEP=1 keeps the temp dir.
# Last line: "status_page_test: passed" or "status_page_test: failed" (exit status 1).
set -u
TEST=status_page_test
HERE=$(cd "$(dirname "$0")" && pwd)
DM_BIN=${DM_BIN:-$HERE/../.build/debug/data-mesher}
ADDRS=(127.0.0.41 127.0.0.42 127.0.0.43)
NAMES=(ui-node1 'ui-node2 <b>&amp;</b>' ui-node3)
SCREENSHOT="$HERE/artifacts/status-page.png"
WORK=""
PIDS=()
DRIVER_PID=""
RESULT=failed
STEP=setup

say() { echo "$TEST: $*"; }
fail() {
    say "FAILED at $STEP: $*"
    exit 1
}

stop_pid() { # pid: TERM, then KILL after 5 s
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM HUP PIPE
    # The driver quits the browser when it gets SIGTERM.
    [ -n "$DRIVER_PID" ] && stop_pid "$DRIVER_PID"
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ "$RESULT" != passed ] && [ -n "$WORK" ]; then
        for i in 1 2 3; do
            [ -f "$WORK/node$i.log" ] || continue
            say "last lines of node$i.log:"
            tail -n 5 "$WORK/node$i.log" | sed 's/^/    /'
        done
    fi
    if [ -n "$WORK" ]; then
        if [ "${DM_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    [ "$rc" = 0 ] || RESULT=failed
    echo "$TEST: $RESULT"
    [ "$RESULT" = passed ] && exit 0
    exit 1
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

# --- tools -------------------------------------------------------------------------------

STEP="tools"
[ -x "$DM_BIN" ] || fail "$DM_BIN is not an executable (build first, or set DM_BIN)"
for tool in curl python3 timeout; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done
WORK=$(mktemp -d /tmp/dm-status-page.XXXXXX)
if ! command -v chromium >/dev/null 2>&1 || ! [ -x /usr/bin/chromedriver ]; then
    say "installing chromium and chromium-driver"
    [ "$(id -u)" = 0 ] || fail "chromium is missing and installing it needs root"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium chromium-driver; } >"$WORK/apt.log" 2>&1 ||
        fail "apt-get install chromium chromium-driver failed: $(tail -n 3 "$WORK/apt.log")"
fi
# selenium in a venv of this test's own (.venv-tests/, ignored by git), never the system Python.
VENV=${UI_VENV:-$HERE/../.venv-tests/selenium}
PY="$VENV/bin/python"
if ! "$PY" -c 'import selenium' 2>/dev/null; then
    say "installing selenium (PyPI) into $VENV"
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        [ "$(id -u)" = 0 ] || fail "python3-venv is missing"
        { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-venv; } >"$WORK/apt-venv.log" 2>&1 ||
            fail "apt-get install python3-venv failed: $(tail -n 3 "$WORK/apt-venv.log")"
    fi
    rm -rf "$VENV"
    python3 -m venv "$VENV" || fail "python3 -m venv $VENV"
    "$PY" -m pip install -q --disable-pip-version-check 'selenium>=4.11' >"$WORK/pip.log" 2>&1 ||
        fail "pip install selenium failed: $(tail -n 3 "$WORK/pip.log")"
fi

# --- cluster -----------------------------------------------------------------------------

STEP="keys and configs"
key="$WORK/owner.key"
"$DM_BIN" generate keypair --private-key-path "$key" --public-key-path "$WORK/owner.pub" >"$WORK/keygen.log" 2>&1 ||
    fail "generate keypair: $(cat "$WORK/keygen.log")"
pub=$("$DM_BIN" key public "$key") || fail "key public failed"
FILE_NAME="ui:status-$$-$(date +%s)"
# Encrypted cluster traffic with node certificates of 10 days: the status page shows the end of
# node 1's certificate, highlighted (less than 14 days left).
"$DM_BIN" generate ca --public-key-path "$WORK/ca.pub" --private-key-path "$WORK/ca.key" >"$WORK/ca.log" 2>&1 ||
    fail "generate ca: $(cat "$WORK/ca.log")"
"$DM_BIN" generate keyring-key --output "$WORK/keyring" >"$WORK/keyring.log" 2>&1 ||
    fail "generate keyring-key: $(cat "$WORK/keyring.log")"
for i in 1 2 3; do
    { "$DM_BIN" generate node-key --public-key-path "$WORK/node$i.pub" --private-key-path "$WORK/node$i.key" &&
        "$DM_BIN" certificate sign --ca-key "$WORK/ca.key" --node-key "$WORK/node$i.pub" --output "$WORK/node$i.cert" \
            --validity 240h; } >"$WORK/cert$i.log" 2>&1 || fail "node $i identity: $(cat "$WORK/cert$i.log")"
done
verified=$("$DM_BIN" certificate verify --ca "$WORK/ca.pub" "$WORK/node1.cert" 2>&1) || fail "certificate verify: $verified"
for i in 1 2 3; do
    cat >"$WORK/node$i.toml" <<TOML
log_level = "info"
state_dir = "$WORK/node$i"
node_name = "${NAMES[$((i - 1))]}"

[cluster]
interfaces = ["${ADDRS[$((i - 1))]}"]
bootstrap_nodes = ["${ADDRS[0]}:7946"]
join_interval = "1s"
push_pull_interval = "5s"

[cluster.encryption]
enable = true
keyring = ["$WORK/keyring"]
identity_key = "$WORK/node$i.key"
identity_cert = "$WORK/node$i.cert"
certificate_authorities = ["$WORK/ca.pub"]

[http]
port = 7331
interfaces = ["${ADDRS[$((i - 1))]}"]

[files]
"$FILE_NAME" = ["$pub"]
TOML
done

STEP="start daemons"
for i in 1 2 3; do
    "$DM_BIN" server --config "$WORK/node$i.toml" >"$WORK/node$i.log" 2>&1 &
    PIDS+=($!)
done
URL1="http://${ADDRS[0]}:7331"
URL2="http://${ADDRS[1]}:7331"

members_alive() { # url: prints "ok" when the member list holds every name in NAMES as alive
    curl -fsS -m 5 "$1/v1/members" 2>/dev/null | python3 -c '
import json, sys
want = set(sys.argv[1:])
try:
    members = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
alive = {m["name"] for m in members if m.get("state") == "alive"}
print("ok" if want <= alive and len(members) == len(want) else "no")
' "${NAMES[@]}"
}

STEP="cluster forms (node 1 lists 3 alive members)"
ok=""
for _ in $(seq 1 120); do
    for i in 0 1 2; do kill -0 "${PIDS[$i]}" 2>/dev/null || fail "node$((i + 1)) exited"; done
    [ "$(members_alive "$URL1")" = ok ] && ok=1 && break
    sleep 0.5
done
[ -n "$ok" ] || fail "no 3 alive members on node 1 after 60 s: $(curl -sS -m 5 "$URL1/v1/members")"
say "cluster formed"

STEP="status page is served"
ctype=$(curl -fsS -m 10 -o "$WORK/index.html" -w '%{content_type}' "$URL1/" 2>"$WORK/curl.err") ||
    fail "GET $URL1/ failed: $(cat "$WORK/curl.err")"
case "$ctype" in text/html*) ;; *) fail "GET / has Content-Type '$ctype'" ;; esac
grep -q 'id="members"' "$WORK/index.html" || fail "GET / is not the status page"
CERT_AT=$(curl -fsS -m 10 "$URL1/v1/info" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("certificate_expires_at", ""))')
[ -n "$CERT_AT" ] || fail "GET /v1/info has no certificate_expires_at"

# --- browser -----------------------------------------------------------------------------

STEP="browser checks"
printf 'status page test %s\n' "$FILE_NAME" >"$WORK/upload.txt"
timeout -s TERM 600 "$PY" "$HERE/status_page_driver.py" --url "$URL1/" --names "${NAMES[@]}" --file-name "$FILE_NAME" \
    --certificate-until "$CERT_AT" --screenshot "$SCREENSHOT" -- \
    timeout 60 "$DM_BIN" file update "$WORK/upload.txt" --url "$URL2" --key "$key" --name "$FILE_NAME" &
DRIVER_PID=$!
wait "$DRIVER_PID"
rc=$?
DRIVER_PID=""
[ "$rc" = 0 ] || fail "browser checks failed (driver exit $rc)"
RESULT=passed
