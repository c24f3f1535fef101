#!/usr/bin/env bash
# Four daemons in four network namespaces on one bridge (IPv4, 10.213.0.1..4/24 on eth1,
# all bootstrapping through n1). The partition {n1,n2} | {n3,n4} moves the bridge ports of
# n3 and n4 onto a second, unconnected bridge: every frame between the sides is dropped, in
# both directions, while each side still reaches its own half (like a cut between two switches).
#
# Checks: the partition really drops traffic across (TCP connects fail) but not within a side;
# each side declares the other side dead; during the partition name A is uploaded on side 1,
# B on side 2, and C on both sides with different contents (side 2's later, so it wins); each
# side replicates its own uploads; the partition is then held DM_PARTITION_HOLD seconds more;
# after healing (ports back on the first bridge), within DM_HEAL_TIMEOUT (default 60 s) every
# node holds A, B and side 2's C, and sees all four members alive.
#
# Needs root and `ip netns`; prints "partition: skipped (...)" and exits 77 otherwise.
# Env: DM_BIN, DM_KEEP=1, DM_LOG_LEVEL, DM_LOG_LINES, DM_HEAL_TIMEOUT (s),
#      DM_PARTITION_HOLD (seconds the partition is kept after the uploads; default 35, so the
#      sides have been dead to each other for longer than the 30 s they still gossip to the dead).
set -u
TEST=partition
API_URL="http://127.0.0.1:7331"
# shellcheck source=tests-net/lib.sh
. "$(dirname "$0")/lib.sh"

preflight
START=$(date +%s)
ALL=(n1 n2 n3 n4)
HEAL_TIMEOUT=${DM_HEAL_TIMEOUT:-60}
# Dead members keep receiving gossip for 30 s (CoreSettings.gossipToTheDead), so a partition
# healed sooner can merge through that alone; hold it longer so the heal must come from
# the daemon retrying its dead members.
HOLD=${DM_PARTITION_HOLD:-35}

addr() { echo "10.213.0.$1"; }

STEP="network setup"
make_bridge_ns br0 br1
for i in 1 2 3 4; do add_node "$i" br0 "$(addr "$i")/24"; done

STEP="keys and configs"
key="$WORK/owner.key"
out=$("$DM_BIN" generate keypair --private-key-path "$key" --public-key-path "$WORK/owner.pub" 2>&1) ||
    fail "generate keypair: $out"
pub=$(tail -n 1 <<<"$out")
files=$(printf '"part:a" = ["%s"]\n"part:b" = ["%s"]\n"part:c" = ["%s"]' "$pub" "$pub" "$pub")
for i in 1 2 3 4; do write_config "$i" "\"$(addr 1):7946\"" '"127.0.0.1"' "$files"; done

STEP="start daemons"
for i in 1 2 3 4; do start_daemon "$i"; done
for i in 1 2 3 4; do wait_until 30 api_up "$i"; done

STEP="cluster forms (every node lists 4 alive members)"
for i in 1 2 3 4; do wait_until 60 all_states "$i" alive "${ALL[@]}"; done
say "cluster formed after $(($(date +%s) - START))s"

STEP="partition {n1,n2} | {n3,n4}"
ip -n "$BRNS" link set v3 master br1 || fail "moving v3 to br1"
ip -n "$BRNS" link set v4 master br1 || fail "moving v4 to br1"
PARTED=$(date +%s)
reaches 1 2 || fail "n1 cannot reach n2 inside side 1"
reaches 3 4 || fail "n3 cannot reach n4 inside side 2"
for pair in "1 3" "1 4" "2 3" "2 4" "3 1" "4 2"; do
    # shellcheck disable=SC2086
    if reaches $pair; then fail "traffic still crosses the partition (${pair/ / -> })"; fi
done

STEP="each side declares the other side dead"
for i in 1 2; do wait_until 120 all_states "$i" dead n3 n4; done
for i in 3 4; do wait_until 120 all_states "$i" dead n1 n2; done
for i in 1 2; do all_states "$i" alive n1 n2 || fail "n$i does not see its own side alive"; done
for i in 3 4; do all_states "$i" alive n3 n4 || fail "n$i does not see its own side alive"; done
say "sides declared each other dead $(($(date +%s) - PARTED))s after the partition"

STEP="uploads on both sides during the partition"
printf 'A from side 1 (%s)\n' "$PREFIX" >"$WORK/a"
printf 'B from side 2 (%s)\n' "$PREFIX" >"$WORK/b"
printf 'C, the older version, from side 1\n' >"$WORK/c1"
printf 'C, the newer version, from side 2 -- this one wins\n' >"$WORK/c2"
upload 1 "$WORK/a" part:a "$key"
upload 3 "$WORK/b" part:b "$key"
upload 2 "$WORK/c1" part:c "$key"
sleep 1 # side 2's C gets a clearly larger timestamp
upload 4 "$WORK/c2" part:c "$key"

STEP="each side replicates its own uploads while partitioned"
for i in 1 2; do
    wait_until 30 has_content "$i" part:a "$WORK/a"
    wait_until 30 has_content "$i" part:c "$WORK/c1"
done
for i in 3 4; do
    wait_until 30 has_content "$i" part:b "$WORK/b"
    wait_until 30 has_content "$i" part:c "$WORK/c2"
done
for i in 1 2; do is_gone "$i" part:b || fail "n$i has part:b although partitioned"; done
for i in 3 4; do is_gone "$i" part:a || fail "n$i has part:a although partitioned"; done
if [ "$HOLD" -gt 0 ]; then
    say "holding the partition ${HOLD}s more (DM_PARTITION_HOLD)"
    STEP="holding the partition"
    hold_until=$(($(date +%s) + HOLD))
    while [ "$(date +%s)" -lt "$hold_until" ]; do
        daemons_running || fail "a daemon died during the partition"
        sleep 0.5
    done
fi

STEP="heal"
ip -n "$BRNS" link set v3 master br0 || fail "moving v3 back to br0"
ip -n "$BRNS" link set v4 master br0 || fail "moving v4 back to br0"
HEALED=$(date +%s)
say "healed after a partition of $((HEALED - PARTED))s"
for pair in "1 3" "2 4" "3 1" "4 2"; do
    # shellcheck disable=SC2086
    wait_until 10 reaches $pair
done

STEP="after healing, every node holds A, B and side 2's C, and sees 4 alive members (${HEAL_TIMEOUT}s)"
converged() {
    local i
    for i in 1 2 3 4; do
        has_content "$i" part:a "$WORK/a" || return 1
        has_content "$i" part:b "$WORK/b" || return 1
        has_content "$i" part:c "$WORK/c2" || return 1
        all_states "$i" alive "${ALL[@]}" || return 1
    done
}
wait_until "$HEAL_TIMEOUT" converged
say "converged $(($(date +%s) - HEALED))s after healing"

STEP="daemons still running"
daemons_running || fail "a daemon exited"

say "done in $(($(date +%s) - START))s"
echo "$TEST: 1 passed, 0 failed"
exit 0
