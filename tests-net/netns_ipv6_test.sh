#!/usr/bin/env bash
# Three daemons in three network namespaces on one bridge, IPv6 only on the cluster link
# (fd00:dd::1..3/64 on eth1, no IPv4), each binding `interfaces = ["eth1"]` and bootstrapping
# through [fd00:dd::1]:7946; the HTTP API is on lo (http://[::1]:7331 inside each namespace).
# Checks: the cluster forms (every node sees 3 alive members), a CLI upload on n1 reaches
# all three, a CLI delete on n2 removes it from all three.
#
# Needs root and `ip netns`; prints "netns_ipv6: skipped (...)" and exits 77 otherwise.
# Env: DM_BIN (daemon binary), DM_KEEP=1 (keep the temp dir), DM_LOG_LEVEL, DM_LOG_LINES.
set -u
TEST=netns_ipv6
API_URL="http://[::1]:7331"
# shellcheck source=tests-net/lib.sh
. "$(dirname "$0")/lib.sh"

preflight
START=$(date +%s)
NAMES=(n1 n2 n3)

STEP="network setup"
make_bridge_ns br0
for i in 1 2 3; do add_node "$i" br0 "fd00:dd::$i/64" nodad; done
for i in 1 2 3; do
    if in_ns "$i" ip -4 addr show dev eth1 | grep -q inet; then fail "eth1 in n$i has an IPv4 address"; fi
done

STEP="keys and configs"
key="$WORK/owner.key"
out=$("$DM_BIN" generate keypair --private-key-path "$key" --public-key-path "$WORK/owner.pub" 2>&1) ||
    fail "generate keypair: $out"
pub=$(tail -n 1 <<<"$out")
for i in 1 2 3; do
    write_config "$i" '"[fd00:dd::1]:7946"' '"lo"' "\"config:app\" = [\"$pub\"]"
done

STEP="start daemons"
for i in 1 2 3; do start_daemon "$i"; done
for i in 1 2 3; do wait_until 30 api_up "$i"; done

STEP="cluster forms (every node lists 3 alive members)"
for i in 1 2 3; do wait_until 60 all_states "$i" alive "${NAMES[@]}"; done
# Each member is known by its eth1 address only (global IPv6; no link-local, no IPv4).
for i in 1 2 3; do
    for j in 1 2 3; do
        entry=$(member_json "$i" | tr '}' '\n' | grep -E "\"name\" *: *\"n$j\"")
        grep -q "\"\[fd00:dd::$j\]:7946\"" <<<"$entry" || fail "n$i does not list [fd00:dd::$j]:7946 for n$j: $entry"
        if grep -Eq 'fe80|[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+' <<<"$entry"; then
            fail "n$i lists a link-local or IPv4 address for n$j: $entry"
        fi
    done
done
say "cluster formed after $(($(date +%s) - START))s"

STEP="upload with the CLI on n1 reaches every node"
content="$WORK/config-app"
printf 'hello over IPv6 from %s\n' "$PREFIX" >"$content"
upload 1 "$content" config:app "$key"
for i in 1 2 3; do wait_until 30 has_content "$i" config:app "$content"; done
for i in 1 2 3; do
    cmp -s "$WORK/n$i/state/files/config:app" "$content" || fail "n$i has no config:app on disk"
done

STEP="delete with the CLI on n2 removes it everywhere"
delete 2 config:app "$key"
for i in 1 2 3; do wait_until 30 is_gone "$i" config:app; done
for i in 1 2 3; do
    [ ! -e "$WORK/n$i/state/files/config:app" ] || fail "n$i still has config:app on disk"
done

STEP="daemons still running"
daemons_running || fail "a daemon exited"

say "done in $(($(date +%s) - START))s"
echo "$TEST: 1 passed, 0 failed"
exit 0
