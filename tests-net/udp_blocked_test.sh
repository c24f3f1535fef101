#!/usr/bin/env bash
# Three daemons in three network namespaces on one bridge (10.214.0.1..3/24). Then every UDP
# datagram between n3 and the others is dropped (a policy-routing rule `ipproto udp ...
# blackhole` in each namespace), while TCP still passes: the pings and acks across are lost.
#
# Checks: TCP still connects across, and n3 receives no datagram during the block (its
# dm_gossip_packets_in_total stands still) while n1 and n2 still do (a failed send must not
# close the socket, as SwiftNIO does on most send errors); for DM_UDP_BLOCK_HOLD seconds (default 20, many
# probe rounds, and longer than a suspicion lasts at 3 nodes) no node suspects another: each
# probe that got no ack falls back to a stream ping (docs/PROTOCOL.md, "Stream ping"), whose
# handshake proves the member's key, and the nodes log that the member answered over TCP but
# not over UDP, and which send to n3 closed their UDP socket. All three stay alive everywhere. Without the fallback, n3 is suspected within a
# few probe rounds.
#
# Needs root and `ip netns` (with `ip rule ... ipproto`, iproute2 4.17 or later); prints
# "udp_blocked: skipped (...)" and exits 77 otherwise.
# Env: DM_BIN, DM_KEEP=1, DM_LOG_LEVEL, DM_LOG_LINES, DM_UDP_BLOCK_HOLD (s).
set -u
TEST=udp_blocked
API_URL="http://127.0.0.1:7331"
# shellcheck source=tests-net/lib.sh
. "$(dirname "$0")/lib.sh"

preflight
HOLD=${DM_UDP_BLOCK_HOLD:-20}
ALL=(n1 n2 n3)

addr() { echo "10.214.0.$1"; }

STEP="network setup"
make_bridge_ns br0
for i in 1 2 3; do add_node "$i" br0 "$(addr "$i")/24"; done

STEP="configs"
for i in 1 2 3; do write_config "$i" "\"$(addr 1):7946\"" '"127.0.0.1"' ""; done

STEP="start daemons"
for i in 1 2 3; do start_daemon "$i"; done
for i in 1 2 3; do wait_until 30 api_up "$i"; done

STEP="cluster forms (every node lists 3 alive members)"
for i in 1 2 3; do wait_until 60 all_states "$i" alive "${ALL[@]}"; done

# The datagrams node i has received so far.
packets_in() {
    in_ns "$1" curl -sS -g --max-time 3 "$API_URL/metrics" | grep -E '^dm_gossip_packets_in_total' | awk '{print $NF}'
}
# Log lines of node i from line $2 on that match $3.
lines_since() { tail -n "+$2" "$WORK/n$1/log" | grep -c -- "$3"; }

STEP="drop every datagram between n3 and the others"
declare -A FROM
for i in 1 2 3; do FROM[$i]=$(($(wc -l <"$WORK/n$i/log") + 1)); done
for i in 1 2; do in_ns "$i" ip rule add ipproto udp to "$(addr 3)" blackhole || fail "ip rule on n$i"; done
in_ns 3 ip rule add ipproto udp to "$(addr 0)/24" blackhole || fail "ip rule on n3"
BLOCKED=$(date +%s)
reaches 1 3 || fail "TCP from n1 no longer reaches n3"
reaches 3 1 || fail "TCP from n3 no longer reaches n1"
sleep 1 # datagrams already on their way
before=$(packets_in 3)
[ -n "$before" ] || fail "no dm_gossip_packets_in_total on n3's /metrics"
before1=$(packets_in 1)
before2=$(packets_in 2)

STEP="holding the block ${HOLD}s"
until_time=$((BLOCKED + HOLD))
while [ "$(date +%s)" -lt "$until_time" ]; do
    daemons_running || fail "a daemon died while datagrams were dropped"
    sleep 0.5
done
after=$(packets_in 3)
[ "$after" = "$before" ] || fail "n3 still received datagrams ($before, then $after): the block does not hold"
# n1 and n2 still talk over UDP: a send that fails (to n3, through the blackhole) must not
# close the socket that every other datagram uses.
after1=$(packets_in 1)
after2=$(packets_in 2)
[ "$after1" -gt $((before1 + HOLD)) ] && [ "$after2" -gt $((before2 + HOLD)) ] ||
    fail "n1 and n2 stopped receiving datagrams (n1: $before1, then $after1; n2: $before2, then $after2)"

STEP="nobody was suspected, and the fallback said why"
for i in 1 2 3; do
    suspected=$(lines_since "$i" "${FROM[$i]}" "member suspected")
    [ "$suspected" = 0 ] || fail "n$i suspected a member while datagrams were dropped: $(tail -n "+${FROM[$i]}" "$WORK/n$i/log" | grep -- "member suspected" | head -n 3)"
done
for i in 1 2 3; do
    answered=$(tail -n "+${FROM[$i]}" "$WORK/n$i/log" | grep -- "member answered over TCP but not over UDP" | grep -c "dm.peer_id=")
    [ "$answered" -gt 0 ] || fail "n$i never logged a member answering over TCP only"
done
for i in 1 2; do
    closed=$(tail -n "+${FROM[$i]}" "$WORK/n$i/log" | grep -- "UDP socket closed after a failed send" | grep -c "dm.peer=$(addr 3):7946")
    [ "$closed" -gt 0 ] || fail "n$i did not log which send closed its UDP socket"
done
for i in 1 2 3; do all_states "$i" alive "${ALL[@]}" || fail "n$i does not see all three alive: $(member_json "$i")"; done

say "${HOLD}s without datagrams between n3 and the others, and nobody was suspected"
say "1 passed, 0 failed"
