# Shared helpers for the real-network tests in tests-net/ (sourced, not run).
#
# Topology: one namespace holds the bridge(s) ("<prefix>-br"); every node gets its own
# namespace ("<prefix>-nN") with a veth end renamed to eth1 whose other end (vN) is a port
# of a bridge. Nothing is created in the root namespace, so deleting the namespaces removes
# every link. Daemons are started with `ip netns exec`, which execs, so $! is the daemon.
#
# The caller sets TEST (name printed in the summary line) before sourcing.

DM_BIN=${DM_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.build/debug/data-mesher}
PREFIX="dm$$"
BRNS="$PREFIX-br"
WORK=""
NODES=()          # namespace per node index (1-based; index 0 unused)
PIDS=()           # daemon PID per node index
NSLIST=()         # every namespace we created, in creation order
STEP="setup"
CLEANED=0

say() { echo "$TEST: $*"; }
skip() {
    echo "$TEST: skipped ($1)"
    exit 77 # scripts/test counts this as skipped, not passed
}

# --- preconditions -------------------------------------------------------------------

preflight() {
    [ "$(id -u)" = 0 ] || skip "needs root for network namespaces"
    command -v ip >/dev/null 2>&1 || skip "ip (iproute2) is not installed"
    command -v curl >/dev/null 2>&1 || skip "curl is not installed"
    command -v timeout >/dev/null 2>&1 || skip "timeout (coreutils) is not installed"
    if [ ! -x "$DM_BIN" ]; then
        echo "$TEST: FAILED at setup: $DM_BIN is not an executable (build first, or set DM_BIN)"
        exit 1
    fi
    # Can we make a namespace at all (containers without CAP_SYS_ADMIN cannot)?
    if ! ip netns add "$PREFIX-probe" 2>/dev/null; then
        skip "ip netns add failed"
    fi
    ip netns del "$PREFIX-probe" 2>/dev/null
    WORK=$(mktemp -d "/tmp/dm-$TEST.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    trap 'exit 141' PIPE # stdout closed (e.g. piped into head): still clean up
}

# --- cleanup -------------------------------------------------------------------------

stop_daemon() { # index
    local pid=${PIDS[$1]:-}
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        local i
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    wait "$pid" 2>/dev/null
    PIDS[$1]=""
}

cleanup() {
    local status=$?
    [ "$CLEANED" = 1 ] && return
    CLEANED=1
    trap - EXIT INT TERM HUP
    trap '' PIPE # the cleanup must finish even when nobody reads our output any more
    [ "$status" -gt 128 ] && echo "$TEST: interrupted at step: $STEP (signal $((status - 128))); cleaning up"
    local i ns pid
    for i in "${!PIDS[@]}"; do stop_daemon "$i"; done
    # Anything else still running inside our namespaces was started by this script
    # (a CLI call or curl cut short); end it by PID before removing the namespace.
    for ns in "${NSLIST[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    for ns in "${NSLIST[@]}"; do ip netns del "$ns" 2>/dev/null; done
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
    echo "$TEST: FAILED at step: $STEP"
    [ $# -gt 0 ] && echo "$TEST: $*"
    local i
    for i in "${!NODES[@]}"; do
        [ -n "${NODES[$i]}" ] || continue
        # curl rather than the CLI here: the CLI takes 10 s to report a refused connection.
        echo "----- n$i (${NODES[$i]}, daemon PID ${PIDS[$i]:-none}) GET /v1/members -----"
        in_ns "$i" curl -sS -g --max-time 3 "$API_URL/v1/members" 2>&1 | head -c 4000
        echo
        echo "----- n$i GET /v1/files -----"
        in_ns "$i" curl -sS -g --max-time 3 "$API_URL/v1/files" 2>&1 | head -c 4000
        echo
        echo "----- n$i log (last ${DM_LOG_LINES:-40} lines) -----"
        tail -n "${DM_LOG_LINES:-40}" "$WORK/n$i/log" 2>/dev/null
    done
    echo "$TEST: 0 passed, 1 failed"
    exit 1
}

# --- topology ------------------------------------------------------------------------

make_bridge_ns() { # bridge names...
    ip netns add "$BRNS" || fail "ip netns add $BRNS"
    NSLIST+=("$BRNS")
    ip -n "$BRNS" link set lo up
    local br
    for br in "$@"; do
        # No STP (ports forward at once) and no multicast snooping (ND/ARP flood plainly).
        ip -n "$BRNS" link add "$br" type bridge stp_state 0 mcast_snooping 0 || fail "bridge $br"
        ip -n "$BRNS" link set "$br" up || fail "bridge $br up"
    done
}

# add_node INDEX BRIDGE ADDRESS/PREFIX [nodad]  — namespace, veth (eth1 inside), address, lo up.
add_node() {
    local i=$1 br=$2 cidr=$3 flags=${4:-}
    local ns="$PREFIX-n$i"
    ip netns add "$ns" || fail "ip netns add $ns"
    NSLIST+=("$ns")
    NODES[$i]=$ns
    ip -n "$ns" link set lo up || fail "lo up in $ns"
    ip -n "$BRNS" link add "v$i" type veth peer name eth1 netns "$ns" || fail "veth for $ns"
    ip -n "$BRNS" link set "v$i" master "$br" up || fail "v$i to $br"
    if [[ $cidr == *:* ]]; then
        # shellcheck disable=SC2086
        ip -n "$ns" -6 addr add "$cidr" dev eth1 $flags || fail "address $cidr in $ns"
    else
        ip -n "$ns" addr add "$cidr" dev eth1 || fail "address $cidr in $ns"
    fi
    ip -n "$ns" link set eth1 up || fail "eth1 up in $ns"
    mkdir -p "$WORK/n$i/state"
}

in_ns() { # index command...
    local i=$1
    shift
    ip netns exec "${NODES[$i]}" "$@"
}

# --- daemons -------------------------------------------------------------------------

# write_config INDEX BOOTSTRAP HTTP_INTERFACES_TOML FILES_TOML
write_config() {
    cat >"$WORK/n$1/dm.toml" <<EOF
state_dir = "$WORK/n$1/state"
node_name = "n$1"
log_level = "${DM_LOG_LEVEL:-info}"

[cluster]
port = 7946
interfaces = ["eth1"]
bootstrap_nodes = [$2]
push_pull_interval = "2s"
join_interval = "1s"

[http]
port = 7331
interfaces = [$3]

[files]
$4
EOF
}

start_daemon() { # index
    local i=$1
    ip netns exec "${NODES[$i]}" "$DM_BIN" server --config "$WORK/n$i/dm.toml" \
        >"$WORK/n$i/log" 2>&1 </dev/null &
    PIDS[$i]=$!
}

# The HTTP API of node i, as seen inside its namespace (API_URL is set by the test).
member_json() { # index
    in_ns "$1" timeout 5 "$DM_BIN" members --url "$API_URL" --json 2>&1
}

# State ("alive", "dead", ...) of member NAME as node INDEX sees it; empty when unknown.
member_state() { # index name
    member_json "$1" | tr '}' '\n' | grep -E "\"name\" *: *\"$2\"" |
        sed -nE 's/.*"state" *: *"([a-z]+)".*/\1/p' | head -n 1
}

daemons_running() {
    local i
    for i in "${!PIDS[@]}"; do
        [ -n "${PIDS[$i]}" ] || continue
        kill -0 "${PIDS[$i]}" 2>/dev/null || {
            echo "daemon n$i (PID ${PIDS[$i]}) exited"
            return 1
        }
    done
}

# --- waiting -------------------------------------------------------------------------

# wait_until SECONDS command...  — polls every 0.5 s; fails the step on timeout or a dead daemon.
wait_until() {
    local limit=$1
    shift
    local deadline=$(($(date +%s) + limit))
    while true; do
        "$@" && return 0
        daemons_running || fail "a daemon died while waiting"
        [ "$(date +%s)" -ge "$deadline" ] && fail "timed out after ${limit}s waiting for: $*"
        sleep 0.5
    done
}

# all_states INDEX STATE NAME...  — node INDEX sees every NAME in STATE.
all_states() {
    local i=$1 want=$2
    shift 2
    local name
    for name in "$@"; do
        [ "$(member_state "$i" "$name")" = "$want" ] || return 1
    done
}

# --- files ---------------------------------------------------------------------------

upload() { # index local-path name key
    local out
    out=$(in_ns "$1" timeout 20 "$DM_BIN" file update "$2" --url "$API_URL" --key "$4" --name "$3" 2>&1) ||
        fail "file update $3 on n$1 failed: $out"
}

delete() { # index name key
    local out
    out=$(in_ns "$1" timeout 20 "$DM_BIN" file delete "$2" --url "$API_URL" --key "$3" 2>&1) ||
        fail "file delete $2 on n$1 failed: $out"
}

# has_content INDEX NAME EXPECTED-FILE  — GET returns 200 and exactly those bytes.
has_content() {
    local got="$WORK/get.$1"
    local code
    code=$(in_ns "$1" curl -sS -g --max-time 3 -o "$got" -w '%{http_code}' "$API_URL/v1/files/$2" 2>/dev/null) ||
        return 1
    [ "$code" = 200 ] && cmp -s "$got" "$3"
}

# is_gone INDEX NAME  — GET answers 404.
is_gone() {
    local code
    code=$(in_ns "$1" curl -sS -g --max-time 3 -o /dev/null -w '%{http_code}' "$API_URL/v1/files/$2" 2>/dev/null) ||
        return 1
    [ "$code" = 404 ]
}

# reaches I J  — a TCP connect from node I to node J's cluster port (the test's `addr J`), 2 s at most.
reaches() { in_ns "$1" timeout 2 bash -c ": <>/dev/tcp/$(addr "$2")/7946" 2>/dev/null; }

api_up() { # index
    in_ns "$1" curl -sS -g --max-time 2 -o /dev/null "$API_URL/v1/info" 2>/dev/null
}
