#!/usr/bin/env bash
# Captures the cluster traffic (port 7946, UDP and TCP) on loopback while a file holding a
# unique marker string replicates between two nodes: with [cluster.encryption] the marker must
# appear nowhere in the capture; with encryption off it must appear (so the check can fail).
# Two files: a small one (travels inline in UDP gossip) and a 4 KiB one (fetched over TCP).
# Needs root for tcpdump on lo; installs tcpdump when missing. Last line: "capture_test: ...".
set -uo pipefail
TEST=capture_test
DM_BIN=${DM_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.build/debug/data-mesher}
say() { echo "$TEST: $*"; }
[ "$(id -u)" = 0 ] || { say "skipped (needs root to capture on lo)"; exit 77; }
if ! command -v tcpdump >/dev/null 2>&1; then
    apt-get install -y -qq tcpdump >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq tcpdump >/dev/null; }
fi
command -v tcpdump >/dev/null 2>&1 || { say "FAILED: tcpdump is not installed"; exit 1; }

WORK=$(mktemp -d /tmp/dm-capture.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null; kill -KILL "$pid" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

"$DM_BIN" generate keypair --private-key-path "$WORK/signer.key" --public-key-path "$WORK/signer.pub" >/dev/null
"$DM_BIN" generate keyring-key --output "$WORK/ring"
PUB=$("$DM_BIN" key public "$WORK/signer.key")

# run ENCRYPT(0|1) ROUND: writes "PACKETS HITS" (packets captured, marker occurrences) to $WORK/result-ROUND.
# Runs in this shell (not a subshell), so the EXIT trap knows every PID it started.
run() {
    local encrypt=$1 round=$2 marker i
    marker="MARKER-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"
    local a=127.0.0.$((70 + round * 2)) b=127.0.0.$((71 + round * 2))
    local encryption=""
    [ "$encrypt" = 1 ] && encryption=$'[cluster.encryption]\nenable = true\nkeyring = ["'"$WORK/ring"'"]'
    for node in 1 2; do
        local address=$a; [ "$node" = 2 ] && address=$b
        cat >"$WORK/node$node-$round.toml" <<TOML
state_dir = "$WORK/state$node-$round"
node_name = "node$node"
[cluster]
interfaces = ["$address"]
bootstrap_nodes = ["$a:7946"]
join_interval = "1s"
push_pull_interval = "2s"
$encryption
[http]
interfaces = ["$address"]
[files]
"small" = ["$PUB"]
"large" = ["$PUB"]
TOML
    done
    local pcap="$WORK/capture-$round.pcap"
    tcpdump -i lo -U -s 0 -w "$pcap" "port 7946 and (host $a or host $b)" >/dev/null 2>&1 &
    local dump=$!
    PIDS+=("$dump")
    sleep 1
    for node in 1 2; do
        "$DM_BIN" server --config "$WORK/node$node-$round.toml" >"$WORK/node$node-$round.log" 2>&1 &
        PIDS+=("$!")
    done
    for i in $(seq 1 100); do
        [ "$(curl -s "http://$a:7331/v1/members" | grep -o '"alive"' | wc -l)" = 2 ] && break
        sleep 0.2
    done
    printf '%s\n' "$marker" >"$WORK/small"
    { printf '%s\n' "$marker"; head -c 4096 /dev/zero | tr '\0' 'x'; printf '%s\n' "$marker"; } >"$WORK/large"
    "$DM_BIN" file update "$WORK/small" --url "http://$a:7331" --key "$WORK/signer.key" >/dev/null || say "upload failed"
    "$DM_BIN" file update "$WORK/large" --url "http://$a:7331" --key "$WORK/signer.key" >/dev/null || say "upload failed"
    local ok=0
    for i in $(seq 1 150); do
        if curl -sf "http://$b:7331/v1/files/small" | grep -q "$marker" && curl -sf "http://$b:7331/v1/files/large" | grep -q "$marker"; then
            ok=1
            break
        fi
        sleep 0.2
    done
    if [ "$ok" != 1 ]; then
        say "FAILED: the files did not replicate (encrypt=$encrypt)"
        tail -5 "$WORK"/node*-"$round".log
        say "0 passed, 1 failed"
        exit 1
    fi
    sleep 1
    kill -INT "$dump"
    timeout 10 tail --pid="$dump" -f /dev/null
    local packets hits
    packets=$(tcpdump -r "$pcap" 2>/dev/null | wc -l)
    hits=$(grep -a -o "$marker" "$pcap" | wc -l)
    echo "$packets $hits" >"$WORK/result-$round"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
}

run 1 0
run 0 1
read -r packets_on hits_on <"$WORK/result-0"
read -r packets_off hits_off <"$WORK/result-1"
say "encrypted: $packets_on packets captured, marker seen $hits_on times; plain: $packets_off packets, marker seen $hits_off times"
if [ "${packets_on:-0}" -gt 0 ] && [ "${hits_on:-1}" = 0 ] && [ "${hits_off:-0}" -gt 0 ]; then
    say "1 passed, 0 failed"
else
    say "0 passed, 1 failed"
    exit 1
fi
