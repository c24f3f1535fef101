#!/usr/bin/env bash
# Big file across a cluster (issue 12, goal 5): how long one SIZE_MIB file uploaded on node 1
# takes to reach all NODES nodes when every node's link is limited to RATE, beside the time to
# send the same bytes once over one such link with a plain TCP sender and receiver.
#
# Topology (tests-net/lib.sh): a bridge namespace, one namespace per node with a veth whose
# inside end is eth1 (10.77.0.N/24) and whose outside end vN is a bridge port. Each node's link
# is shaped in both directions with tbf (egress of eth1 = the node's uplink, egress of vN = its
# downlink). The daemons' HTTP API is on the namespace's loopback (unshaped: only the local
# upload uses it); all cluster traffic crosses the shaped veths.
#
# Environment:
#   NODES        nodes (default 10, 2..200)
#   SIZE_MIB     file size in MiB (default 256)
#   RATE         tc rate of each link, each direction (default 200mbit)
#   RUNS         repetitions of the baseline and of the cluster run; medians reported (default 1)
#   DM_BIN       data-mesher binary (default .build/release/data-mesher)
#   DEADLINE_S   how long to wait for every node to hold a version, per run (default 600)
#   PUSH_PULL    [cluster] push_pull_interval of every node (default "30s", the shipped default)
#   TBF_BURST    tbf burst (default 256kb), TBF_LATENCY tbf latency (default 50ms)
#   TIMELINE_S   print MiB received by each node every TIMELINE_S seconds of a run (default 5; 0: off)
#   DM_KEEP=1    keep the temporary directory (configs, logs) for inspection
#
# Needs root, ip, tc, curl, python3 (exits 77 with "big_cluster: skipped (why)" otherwise).
# The last line of output is machine-readable (see bench/README.md, section 8):
#   big_cluster nodes=.. size_mib=.. rate=.. one_link_s=.. upload_s=.. first_s=.. p50_s=..
#               last_s=.. ratio_last=.. all_arrived=0|1 ... load1_start=.. load1_end=..
# Everything it starts is stopped by PID and its namespaces and temporary directory are removed
# on exit, also on failure or Ctrl-C.

TEST=big_cluster
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
DM_BIN=${DM_BIN:-$REPO_ROOT/.build/release/data-mesher}
N=${NODES:-10}
SIZE_MIB=${SIZE_MIB:-256}
RATE=${RATE:-200mbit}
RUNS=${RUNS:-1}
DEADLINE_S=${DEADLINE_S:-600}
PUSH_PULL=${PUSH_PULL:-30s}
TBF_BURST=${TBF_BURST:-256kb}
TBF_LATENCY=${TBF_LATENCY:-50ms}
TIMELINE_S=${TIMELINE_S:-5}
API_URL="http://127.0.0.1:7331"
FILE_PREFIX="big/file"

# shellcheck source=../tests-net/lib.sh
source "$REPO_ROOT/tests-net/lib.sh"

bad() { echo "$TEST: $*" >&2; exit 2; }
[[ "$N" =~ ^[0-9]+$ ]] && ((N >= 2 && N <= 200)) || bad "NODES must be 2..200"
[[ "$SIZE_MIB" =~ ^[0-9]+$ ]] && ((SIZE_MIB >= 1 && SIZE_MIB <= 16384)) || bad "SIZE_MIB must be 1..16384"
[[ "$RUNS" =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 20)) || bad "RUNS must be 1..20"
[[ "$TIMELINE_S" =~ ^[0-9]+$ ]] && ((TIMELINE_S <= 3600)) || bad "TIMELINE_S must be 0..3600"
[[ "$DEADLINE_S" =~ ^[0-9]+$ ]] && ((DEADLINE_S >= 10 && DEADLINE_S <= 7200)) || bad "DEADLINE_S must be 10..7200"
RATE_BPS=$(awk -v r="$RATE" 'BEGIN {
    if (match(r, /^[0-9]+(\.[0-9]+)?/) == 0) { print 0; exit }
    v = substr(r, 1, RLENGTH); u = tolower(substr(r, RLENGTH + 1))
    m = (u == "bit") ? 1 : (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : (u == "gbit") ? 1e9 : 0
    printf "%.0f", v * m }')
((RATE_BPS > 0)) || bad "RATE must be a number with bit, kbit, mbit or gbit (e.g. 200mbit)"

preflight # root, ip, curl, timeout, DM_BIN, a probe namespace; makes WORK and the cleanup trap
command -v tc >/dev/null 2>&1 || skip "tc (iproute2) is not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || skip "python3 does not run"
need_kib=$(((N * RUNS + 2) * SIZE_MIB * 1024 + 262144))
avail_kib=$(df -Pk "$WORK" | awk 'NR==2 {print $4}')
((avail_kib > need_kib)) || bad "not enough space in $WORK: need ~$((need_kib / 1024)) MiB, have $((avail_kib / 1024)) MiB"

# Processes this script starts besides the daemons (lib.sh stops those): stopped by PID first.
EXTRA_PIDS=()
bench_cleanup() {
    local status=$? pid
    for pid in "${EXTRA_PIDS[@]}"; do
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    (exit "$status")
    cleanup
}
trap bench_cleanup EXIT

now() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "NA"; exit } printf "%.3f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b <= 0) print "NA"; else printf "%.2f", a / b }'; }
load1() { cut -d ' ' -f 1 /proc/loadavg; }
addr() { echo "10.77.0.$1"; }
# CPU seconds (user + system) of a process, from /proc/PID/stat (fields 14 and 15).
cpu_s() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    stat=${stat##*) }
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($12 + $13) / hz }' <<<"$stat"
}
tx_bytes() { in_ns "$1" cat /sys/class/net/eth1/statistics/tx_bytes 2>/dev/null || echo 0; }
# Bytes delivered to every node (tx of its bridge port vN), one fork for all: "b1 b2 ...".
rx_all() {
    local i paths=()
    for ((i = 1; i <= N; i++)); do paths+=("/sys/class/net/v$i/statistics/tx_bytes"); done
    ip netns exec "$BRNS" cat "${paths[@]}" 2>/dev/null | tr '\n' ' '
}

LOAD_START=$(load1)
echo "$TEST: load average (1 min) at start: $LOAD_START on $(nproc) CPUs"
echo "$TEST: binary: $DM_BIN ($("$DM_BIN" --version 2>/dev/null))"
echo "$TEST: $N nodes, $SIZE_MIB MiB, every link $RATE each way (tbf burst $TBF_BURST latency $TBF_LATENCY), $RUNS run(s)"

# --- topology ------------------------------------------------------------------------
STEP="topology"
make_bridge_ns br0
for ((i = 1; i <= N; i++)); do
    add_node "$i" br0 "$(addr "$i")/24"
    # tbf on both ends: eth1's egress is the node's uplink, vN's egress (in the bridge
    # namespace) its downlink. One token bucket per direction is all a plain link rate needs
    # (no classes, unlike htb); the burst covers a 64 KiB GSO packet, latency bounds the queue.
    tc -n "${NODES[$i]}" qdisc add dev eth1 root tbf rate "$RATE" burst "$TBF_BURST" latency "$TBF_LATENCY" ||
        fail "tc on eth1 of n$i"
    tc -n "$BRNS" qdisc add dev "v$i" root tbf rate "$RATE" burst "$TBF_BURST" latency "$TBF_LATENCY" ||
        fail "tc on v$i"
done

# --- the content ---------------------------------------------------------------------
STEP="making the file"
SRC="$WORK/src.bin"
echo "$TEST: making $SIZE_MIB MiB of random data ..."
dd if=/dev/urandom of="$SRC" bs=1M count="$SIZE_MIB" iflag=fullblock status=none || fail "dd"
SRC_SHA=$(sha256sum "$SRC" | awk '{print $1}')
IDEAL_S=$(awk -v m="$SIZE_MIB" -v r="$RATE_BPS" 'BEGIN { printf "%.3f", m * 1048576 * 8 / r }')

# --- one-link baseline ---------------------------------------------------------------
# A python3 receiver in n2 reads until EOF into a reused buffer (discarded) and answers the
# byte count; the sender in n1 sendfile()s the same file (page cache) and stops its clock when
# the count arrives. TCP payload only, no hashing, no disk writes on the receiving side.
cat >"$WORK/recv.py" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
open(sys.argv[3], "w").close()  # listening
s.settimeout(60)
c, _ = s.accept()
c.settimeout(600)
buf = bytearray(1 << 20)
n = 0
while True:
    k = c.recv_into(buf)
    if not k:
        break
    n += k
c.sendall(str(n).encode())
c.close()
EOF
cat >"$WORK/send.py" <<'EOF'
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=600)
t0 = time.monotonic()
with open(sys.argv[3], "rb") as f:
    s.sendfile(f)
s.shutdown(socket.SHUT_WR)
ack = b""
while True:
    part = s.recv(64)
    if not part:
        break
    ack += part
t1 = time.monotonic()
print("%.3f %s" % (t1 - t0, ack.decode() or "0"))
EOF

STEP="one-link baseline"
one_runs=()
for ((r = 1; r <= RUNS; r++)); do
    rm -f "$WORK/recv.ready"
    in_ns 2 timeout 700 "$PY" "$WORK/recv.py" "$(addr 2)" 5001 "$WORK/recv.ready" &
    RECV_PID=$!
    EXTRA_PIDS+=("$RECV_PID")
    for ((k = 0; k < 100; k++)); do # at most ~10 s
        [ -e "$WORK/recv.ready" ] && break
        kill -0 "$RECV_PID" 2>/dev/null || fail "the baseline receiver exited"
        sleep 0.1
    done
    [ -e "$WORK/recv.ready" ] || fail "the baseline receiver did not listen within 10 s"
    out=$(in_ns 1 timeout 700 "$PY" "$WORK/send.py" "$(addr 2)" 5001 "$SRC") || fail "baseline sender: $out"
    wait "$RECV_PID" 2>/dev/null
    read -r t got <<<"$out"
    [ "$got" = $((SIZE_MIB * 1048576)) ] || fail "baseline receiver counted $got bytes"
    one_runs+=("$t")
    echo "$TEST: one link, n1 -> n2, $SIZE_MIB MiB: ${t}s ($(awk -v m="$SIZE_MIB" -v t="$t" 'BEGIN { printf "%.1f", m * 8.388608 / t }') Mbit/s; line rate alone ${IDEAL_S}s)"
done
ONE_LINK_S=$(median "${one_runs[@]}")

# --- the cluster ---------------------------------------------------------------------
STEP="key and configs"
PUB=$("$DM_BIN" generate keypair --private-key-path "$WORK/signer.key" --public-key-path "$WORK/signer.pub" | tail -n 1)
[[ "$PUB" =~ ^[A-Za-z0-9+/]{43}=$ ]] || fail "generate keypair printed an unexpected public key: '$PUB'"
files_toml=""
for ((r = 1; r <= RUNS; r++)); do files_toml+="\"$FILE_PREFIX$r\" = [\"$PUB\"]"$'\n'; done
max_mib=$((SIZE_MIB + 64 > 4096 ? SIZE_MIB + 64 : 4096))
for ((i = 1; i <= N; i++)); do
    cat >"$WORK/n$i/dm.toml" <<EOF
state_dir = "$WORK/n$i/state"
node_name = "n$i"
log_level = "${DM_LOG_LEVEL:-info}"
max_file_size = "${max_mib}MiB"

[cluster]
port = 7946
interfaces = ["eth1"]
bootstrap_nodes = ["$(addr 1):7946"]
join_interval = "1s"
push_pull_interval = "$PUSH_PULL"

[http]
port = 7331
interfaces = ["lo"]

[files]
$files_toml
EOF
done

STEP="starting $N daemons"
for ((i = 1; i <= N; i++)); do start_daemon "$i"; done
for ((i = 1; i <= N; i++)); do wait_until 30 api_up "$i"; done
alive_count() { # index: members node INDEX sees alive
    in_ns "$1" curl -sS -g --max-time 3 "$API_URL/v1/members" 2>/dev/null | grep -o -E '"state" *: *"alive"' | wc -l
}
all_see_all() {
    local i
    for ((i = 1; i <= N; i++)); do
        [ "$(alive_count "$i")" -eq "$N" ] || return 1
    done
}
STEP="waiting until every node sees $N alive members"
t_join=$(now)
wait_until 120 all_see_all
echo "$TEST: every node sees $N alive members after $(secs "$t_join" "$(now)")s"
sleep 2 # let the join's push/pulls and broadcasts settle

upload_runs=()
first_runs=()
p50_runs=()
last_runs=()
ALL_ARRIVED=1
ARRIVED_TOTAL=0
VERIFIED_TOTAL=0
CPU_TOTAL=0
ORIGIN_SENT_MIB=()
RECV_MIB=0
for ((r = 1; r <= RUNS; r++)); do
    name="$FILE_PREFIX$r"
    STEP="run $r: upload of $name on n1 and its spread"
    declare -a tx0=() cpu0=() arrival=() rx0=() rxs=() rx_start=() timeline=()
    for ((i = 1; i <= N; i++)); do
        tx0[$i]=$(tx_bytes "$i")
        cpu0[$i]=$(cpu_s "${PIDS[$i]}")
    done
    read -r -a rxs <<<"$(rx_all)"
    for ((i = 1; i <= N; i++)); do rx0[$i]=${rxs[$((i - 1))]:-0}; done
    t0=$(now)
    t0_us=${t0/./}
    next_sample_us=$t0_us
    next_row_s=$TIMELINE_S
    in_ns 1 timeout "$DEADLINE_S" "$DM_BIN" file update "$SRC" --url "$API_URL" --key "$WORK/signer.key" \
        --name "$name" >"$WORK/update.$r.out" 2>&1 &
    CLI_PID=$!
    EXTRA_PIDS+=("$CLI_PID")
    upload_s=""
    deadline=$(awk -v a="$t0" -v d="$DEADLINE_S" 'BEGIN { printf "%.0f", a + d }')
    left=$N
    # Poll every node's <state_dir>/files/NAME (replaced atomically when a version commits)
    # every 20 ms, without forking; at most DEADLINE_S seconds.
    max_polls=$((DEADLINE_S * 50))
    for ((p = 0; p < max_polls && left > 0; p++)); do
        if [ -z "$upload_s" ] && ! kill -0 "$CLI_PID" 2>/dev/null; then
            t=$(now)
            cli_rc=0
            wait "$CLI_PID" || cli_rc=$?
            ((cli_rc == 0)) || fail "file update failed ($cli_rc): $(cat "$WORK/update.$r.out")"
            upload_s=$(secs "$t0" "$t")
            echo "$TEST: run $r: upload (file update on n1) done after ${upload_s}s"
        fi
        for ((i = 1; i <= N; i++)); do
            if [ -z "${arrival[$i]:-}" ] && [ -e "$WORK/n$i/state/files/$name" ]; then
                arrival[$i]=$(secs "$t0" "$(now)")
                left=$((left - 1))
            fi
        done
        ((left > 0)) || break
        ((${EPOCHREALTIME%.*} < deadline)) || break
        # Every 0.5 s: bytes received by each node since t0; a node "starts" when it has
        # received 1 MiB (gossip and push/pull stay far below that).
        now_us=${EPOCHREALTIME/./}
        if ((now_us >= next_sample_us)); then
            next_sample_us=$((now_us + 500000))
            read -r -a rxs <<<"$(rx_all)"
            t_s=$(secs "$t0" "$(now)")
            row=""
            for ((i = 2; i <= N; i++)); do
                got=$((${rxs[$((i - 1))]:-0} - ${rx0[$i]}))
                ((got > 1048576)) && [ -z "${rx_start[$i]:-}" ] && rx_start[$i]=$t_s
                row+=" $((got / 1048576))"
            done
            if ((TIMELINE_S > 0)) && awk -v t="$t_s" -v n="$next_row_s" 'BEGIN { exit !(t >= n) }'; then
                timeline+=("$(printf '%7.1f' "$t_s")$row")
                next_row_s=$((next_row_s + TIMELINE_S))
            fi
        fi
        sleep 0.02
    done
    if [ -z "$upload_s" ]; then # every node held it before the CLI was seen to exit
        cli_rc=0
        wait "$CLI_PID" || cli_rc=$?
        ((cli_rc == 0)) || fail "file update failed ($cli_rc): $(cat "$WORK/update.$r.out")"
        upload_s=$(secs "$t0" "$(now)")
    fi
    cpu_run=0
    for ((i = 1; i <= N; i++)); do
        cpu_run=$(awk -v a="$cpu_run" -v b="$(cpu_s "${PIDS[$i]}")" -v c="${cpu0[$i]}" 'BEGIN { printf "%.2f", a + b - c }')
    done
    CPU_TOTAL=$(awk -v a="$CPU_TOTAL" -v b="$cpu_run" 'BEGIN { printf "%.2f", a + b }')
    ((left == 0)) || ALL_ARRIVED=0

    # Per node: arrival, what it holds (GET /v1/files has the SHA-256), whom its log says it
    # stored the version from ("stored version" ... dm.peer=ADDRESS:PORT), and what it sent.
    if ((TIMELINE_S > 0)) && ((${#timeline[@]} > 0)); then
        header="      s"
        for ((i = 2; i <= N; i++)); do header+=" n$i"; done
        echo "$TEST: run $r: MiB received so far by each node (bytes on its link, headers included):"
        printf '%s\n' "$header" "${timeline[@]}" | column -t | sed "s/^/$TEST:   /"
    fi
    read -r -a rxs <<<"$(rx_all)"
    echo "$TEST: run $r: per node, seconds from the start of the upload: began receiving (>1 MiB on its link), held the version; whom it stored it from (daemon log); MiB it sent and received on its link during the run"
    fetched=()
    for ((i = 1; i <= N; i++)); do
        held="no"
        if in_ns "$i" curl -sS -g --max-time 5 "$API_URL/v1/files" 2>/dev/null | grep -q "$SRC_SHA"; then
            held="sha256 ok"
            VERIFIED_TOTAL=$((VERIFIED_TOTAL + 1))
        fi
        line=$(grep "stored version" "$WORK/n$i/log" 2>/dev/null | grep -F "$name" | tail -n 1)
        peer=$(sed -nE 's/.*dm\.peer=([0-9.]+):[0-9]+.*/\1/p' <<<"$line")
        if [ -n "$peer" ]; then
            from="from n${peer##*.}"
        elif [ -n "$line" ]; then
            from="local upload"
        else
            from="not stored"
        fi
        sent=$(awk -v a="${tx0[$i]}" -v b="$(tx_bytes "$i")" 'BEGIN { printf "%.1f", (b - a) / 1048576 }')
        recv=$(awk -v a="${rx0[$i]}" -v b="${rxs[$((i - 1))]:-0}" 'BEGIN { printf "%.1f", (b - a) / 1048576 }')
        ((i == 1)) && ORIGIN_SENT_MIB+=("$sent")
        ((i > 1)) && RECV_MIB=$(awk -v a="$RECV_MIB" -v b="$recv" 'BEGIN { printf "%.1f", a + b }')
        started=${rx_start[$i]:-NA}
        ((i == 1)) && started="-"
        printf '%s:   n%-3s began %7s s  held %8s s  %-12s %s, sent %s MiB, received %s MiB\n' "$TEST" "$i" \
            "$started" "${arrival[$i]:-NA}" "$from" "$held" "$sent" "$recv"
        if [ -n "${arrival[$i]:-}" ]; then
            ARRIVED_TOTAL=$((ARRIVED_TOTAL + 1))
            ((i > 1)) && fetched+=("${arrival[$i]}")
        fi
    done
    first=NA p50=NA last=NA
    if ((${#fetched[@]} > 0)); then
        first=$(printf '%s\n' "${fetched[@]}" | sort -g | head -n 1)
        p50=$(median "${fetched[@]}")
        last=$(printf '%s\n' "${fetched[@]}" | sort -g | tail -n 1)
    fi
    ((left == 0)) || last=NA
    echo "$TEST: run $r: upload_s=$upload_s first_s=$first p50_s=$p50 last_s=$last arrived=$((N - left))/$N dm_cpu_s=$cpu_run (all daemons)"
    upload_runs+=("$upload_s")
    [ "$first" != NA ] && first_runs+=("$first")
    [ "$p50" != NA ] && p50_runs+=("$p50")
    [ "$last" != NA ] && last_runs+=("$last")
done

STEP="daemon logs"
log_warn=0
log_err=0
# A log line is "TIME LEVEL LABEL: metadata [module] message".
for ((i = 1; i <= N; i++)); do
    log_warn=$((log_warn + $(awk '$2 == "warning"' "$WORK/n$i/log" 2>/dev/null | wc -l)))
    log_err=$((log_err + $(awk '$2 == "error" || $2 == "critical"' "$WORK/n$i/log" 2>/dev/null | wc -l)))
done
if ((log_warn + log_err > 0)); then
    echo "$TEST: warnings and errors in the daemon logs (most frequent first, node and time left out):"
    cat "$WORK"/n*/log | awk '$2 == "warning" || $2 == "error" || $2 == "critical"' |
        sed -E 's/^[^ ]+ //; s/dm\.node=[^ ]+ //' | sort | uniq -c | sort -rn | head -n 10
fi
suspected=$(cat "$WORK"/n*/log | grep -c -E 'member suspected|member declared dead' || true)
fetch_notes=$(cat "$WORK"/n*/log | grep -c -E 'fetch (from|of) ' || true)
if ((fetch_notes > 0)); then
    echo "$TEST: fetches that ended early (daemon logs, most frequent first):"
    cat "$WORK"/n*/log | grep -E 'fetch (from|of) ' | sed -E 's/^[^ ]+ //; s/dm\.node=[^ ]+ //' |
        sort | uniq -c | sort -rn | head -n 10
fi
daemons_running || ALL_ARRIVED=0

UPLOAD_S=$(median "${upload_runs[@]}")
FIRST_S=$(median "${first_runs[@]}")
P50_S=$(median "${p50_runs[@]}")
# Copies of the file n1 sent (median over runs), and MiB received by the other nodes over what
# they needed (1.00: each received the file once; more: duplicate or abandoned fetches).
ORIGIN_COPIES=$(awk -v m="$(median "${ORIGIN_SENT_MIB[@]}")" -v s="$SIZE_MIB" 'BEGIN { printf "%.2f", m / s }')
RX_COPIES=$(awk -v m="$RECV_MIB" -v s="$SIZE_MIB" -v k="$(((N - 1) * RUNS))" 'BEGIN { printf "%.2f", m / (s * k) }')
if ((ALL_ARRIVED)); then LAST_S=$(median "${last_runs[@]}"); else LAST_S=NA; fi
STEP="done"
echo "big_cluster nodes=$N size_mib=$SIZE_MIB rate=$RATE one_link_s=$ONE_LINK_S upload_s=$UPLOAD_S" \
    "first_s=$FIRST_S p50_s=$P50_S last_s=$LAST_S ratio_last=$(ratio "$LAST_S" "$ONE_LINK_S")" \
    "all_arrived=$ALL_ARRIVED ideal_link_s=$IDEAL_S arrived=$ARRIVED_TOTAL/$((N * RUNS)) verified=$VERIFIED_TOTAL" \
    "origin_copies=$ORIGIN_COPIES rx_copies=$RX_COPIES dm_cpu_s=$CPU_TOTAL suspected=$suspected fetch_log_lines=$fetch_notes log_warn=$log_warn log_err=$log_err runs=$RUNS" \
    "push_pull=$PUSH_PULL load1_start=$LOAD_START load1_end=$(load1)"
((ALL_ARRIVED)) || exit 1
exit 0
