#!/usr/bin/env bash
# Big-file benchmark for data-mesher: `data-mesher file update` of one large random file
# against SHA-256 + `cp` + fsync of the same file on the same filesystem (the goal's
# baseline: the CLI must hash before it signs, the daemon must copy and fsync), and
# `data-mesher file get` of it against `cp` + fsync.
#
# Environment:
#   DM_BIN            data-mesher binary (default: .build/release if built, else .build/debug)
#   SIZE_MIB          file size in MiB (default 1024)
#   PORT              HTTP port on 127.0.0.1 (default 17400; cluster port = PORT+1)
#   BENCH_TMPDIR      parent of the temporary directory (default: $TMPDIR or /tmp)
#   UPLOAD_TIMEOUT_S  upper bound for the upload and the fetch, seconds (default 1800)
#   RUNS              repetitions of each timed step; medians are reported (default 3)
#
# The last line of output is machine-readable:
#   big_upload size_mib=.. sha_cp_s=.. dm_upload_s=.. upload_ratio=.. cp_s=.. get_s=.. get_ratio=..
#              rss_idle_kib=.. rss_peak_kib=.. ...
# See bench/README.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
if [[ -z "${DM_BIN:-}" ]]; then
    if [[ -x "$REPO_ROOT/.build/release/data-mesher" ]]; then
        DM_BIN="$REPO_ROOT/.build/release/data-mesher"
    else
        DM_BIN="$REPO_ROOT/.build/debug/data-mesher"
    fi
fi
SIZE_MIB=${SIZE_MIB:-1024}
PORT=${PORT:-17400}
BENCH_TMPDIR=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}
UPLOAD_TIMEOUT_S=${UPLOAD_TIMEOUT_S:-1800}
RUNS=${RUNS:-3}

die() { echo "big_upload_bench: $*" >&2; exit 1; }
[[ -x "$DM_BIN" ]] || die "data-mesher binary not found or not executable: $DM_BIN (set DM_BIN)"
[[ "$SIZE_MIB" =~ ^[0-9]+$ ]] && (( SIZE_MIB >= 1 && SIZE_MIB <= 65536 )) || die "SIZE_MIB must be 1..65536"
[[ "$PORT" =~ ^[0-9]+$ ]] && (( PORT >= 1 && PORT <= 65534 )) || die "PORT must be 1..65534"
[[ "$UPLOAD_TIMEOUT_S" =~ ^[0-9]+$ ]] && (( UPLOAD_TIMEOUT_S >= 1 && UPLOAD_TIMEOUT_S <= 86400 )) \
    || die "UPLOAD_TIMEOUT_S must be 1..86400"
[[ "$RUNS" =~ ^[0-9]+$ ]] && (( RUNS >= 1 && RUNS <= 20 )) || die "RUNS must be 1..20"
for p in "$PORT" $((PORT + 1)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "127.0.0.1:$p is already in use; set PORT to another value"
    fi
done
need_kib=$(( SIZE_MIB * 1024 * 4 + 65536 ))  # source, cp copy, daemon copy + its temp, fetched copy
avail_kib=$(df -Pk "$BENCH_TMPDIR" | awk 'NR==2 {print $4}')
(( avail_kib > need_kib )) || die "not enough space in $BENCH_TMPDIR: need ~$((need_kib / 1024)) MiB, have $((avail_kib / 1024)) MiB"

WORK=$(mktemp -d "$BENCH_TMPDIR/dm-big-bench.XXXXXX")
DAEMON_PID=""
SAMPLER_PID=""
CLIENT_PID=""

stop_pid() {  # stop_pid PID: SIGTERM, bounded wait, then SIGKILL
    local pid=$1 i
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    stop_pid "$CLIENT_PID"
    stop_pid "$SAMPLER_PID"
    stop_pid "$DAEMON_PID"
    if (( rc != 0 )) && [[ -s "$WORK/daemon.log" ]]; then
        echo "--- last lines of the daemon log ---" >&2
        tail -n 20 "$WORK/daemon.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

now() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.3f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
kib_field() {  # kib_field PID FIELD: e.g. VmRSS, VmHWM in kB, without forking
    local key val _
    while read -r key val _; do
        if [[ "$key" == "$2:" ]]; then echo "$val"; return 0; fi
    done < "/proc/$1/status"
    return 1
}

LOAD_START=$(cut -d ' ' -f 1 /proc/loadavg)
SRC="$WORK/src.bin"
echo "load average (1 min) at start: $LOAD_START on $(nproc) CPUs"
echo "binary: $DM_BIN"
echo "workdir: $WORK"
echo "making ${SIZE_MIB} MiB of random data ..."
dd if=/dev/urandom of="$SRC" bs=1M count="$SIZE_MIB" iflag=fullblock status=none
sync
SIZE_BYTES=$(stat -c %s "$SRC")
(( SIZE_BYTES == SIZE_MIB * 1048576 )) || die "made $SIZE_BYTES bytes, expected $((SIZE_MIB * 1048576))"

# sha256sum alone (the CLI hashes the file once before it streams it).
sha_runs=()
for ((r = 0; r < RUNS; r++)); do
    t0=$(now)
    SRC_SHA=$(sha256sum "$SRC" | awk '{print $1}')
    t1=$(now)
    sha_runs+=("$(secs "$t0" "$t1")")
done
SHA_S=$(median "${sha_runs[@]}")
echo "sha256sum: median ${SHA_S}s (runs: ${sha_runs[*]})"

# cp + fsync of the copy: the fair comparison (the daemon fsyncs its copy once).
# `sync FILE` (coreutils) calls fsync(2) on FILE only. Each run starts clean.
# Also cp + global `sync` (flushes every dirty page of the machine).
# One untimed cp + fsync first: the first write of this much data to fresh disk blocks
# (e.g. a growing VM image) is often several times slower than later ones.
cp "$SRC" "$WORK/cp_warmup.bin"
sync "$WORK/cp_warmup.bin"
rm -f "$WORK/cp_warmup.bin"
cp_runs=()
cpg_runs=()
for ((r = 0; r < RUNS; r++)); do
    sync
    t0=$(now)
    cp "$SRC" "$WORK/cp_fsync.bin"
    sync "$WORK/cp_fsync.bin"
    t1=$(now)
    cp_runs+=("$(secs "$t0" "$t1")")
    rm -f "$WORK/cp_fsync.bin"
    sync
    t0=$(now)
    cp "$SRC" "$WORK/cp_sync.bin"
    sync
    t1=$(now)
    cpg_runs+=("$(secs "$t0" "$t1")")
    rm -f "$WORK/cp_sync.bin"
done
sync
CP_S=$(median "${cp_runs[@]}")
CP_GLOBAL_S=$(median "${cpg_runs[@]}")
echo "cp + fsync(copy): median ${CP_S}s (runs: ${cp_runs[*]})"
echo "cp + sync (global): median ${CP_GLOBAL_S}s (runs: ${cpg_runs[*]})"

# The upload baseline: SHA-256 of the file, then cp + fsync of the copy, one after the
# other (what a client that hashes before it sends and a server that copies and fsyncs
# must do at least). openssl uses the CPU's SHA instructions where it has them; coreutils'
# sha256sum often does not, so it is the fallback only.
if command -v openssl >/dev/null 2>&1; then
    SHA_TOOL=openssl
    sha_of() { openssl dgst -sha256 -r "$1" | awk '{print $1}'; }
else
    SHA_TOOL=sha256sum
    sha_of() { sha256sum "$1" | awk '{print $1}'; }
fi
[[ "$(sha_of "$SRC")" == "$SRC_SHA" ]] || die "$SHA_TOOL and sha256sum disagree about $SRC"
shacp_runs=()
for ((r = 0; r < RUNS; r++)); do
    sync
    t0=$(now)
    sha_of "$SRC" >/dev/null
    cp "$SRC" "$WORK/sha_cp.bin"
    sync "$WORK/sha_cp.bin"
    t1=$(now)
    shacp_runs+=("$(secs "$t0" "$t1")")
    rm -f "$WORK/sha_cp.bin"
done
sync
SHA_CP_S=$(median "${shacp_runs[@]}")
echo "$SHA_TOOL sha256 + cp + fsync(copy): median ${SHA_CP_S}s (runs: ${shacp_runs[*]})"

# Daemon.
PUB=$("$DM_BIN" generate keypair --private-key-path "$WORK/signer.key" --public-key-path "$WORK/signer.pub" | tail -n 1)
[[ "$PUB" =~ ^[A-Za-z0-9+/]{43}=$ ]] || die "generate keypair printed an unexpected public key: '$PUB'"
MAX_MIB=$(( SIZE_MIB + 64 > 2048 ? SIZE_MIB + 64 : 2048 ))
cat > "$WORK/dm.toml" <<EOF
state_dir = "$WORK/state"
node_name = "bench"
max_file_size = "${MAX_MIB}MiB"

[cluster]
port = $((PORT + 1))
interfaces = ["127.0.0.1"]

[http]
port = $PORT
interfaces = ["127.0.0.1"]

[files]
"bench/big" = ["$PUB"]
EOF
URL="http://127.0.0.1:$PORT"
"$DM_BIN" server --config "$WORK/dm.toml" </dev/null >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
ready=0
for ((i = 0; i < 600; i++)); do  # at most ~60 s
    kill -0 "$DAEMON_PID" 2>/dev/null || die "daemon exited before it was ready"
    if curl -sf -o /dev/null --max-time 2 "$URL/v1/info"; then ready=1; break; fi
    sleep 0.1
done
(( ready )) || die "daemon not ready after 60 s"
sleep 0.2
RSS_IDLE=$(kib_field "$DAEMON_PID" VmRSS)
echo "daemon pid $DAEMON_PID ready on $URL; idle VmRSS ${RSS_IDLE} KiB"

# Sample VmRSS every 50 ms while uploading and fetching; the running maximum goes to a file.
MAX_SAMPLES=$(( (UPLOAD_TIMEOUT_S * RUNS * 2 + 60) * 20 ))
(
    max=0
    for ((n = 0; n < MAX_SAMPLES; n++)); do
        [[ -e "$WORK/sampler.stop" ]] && break
        v=$(kib_field "$DAEMON_PID" VmRSS 2>/dev/null) || break
        (( v > max )) && { max=$v; echo "$max" > "$WORK/rss_max"; }
        sleep 0.05
    done
) &
SAMPLER_PID=$!

# Each run uploads a new version of the same name (the CLI signs with the current time).
dm_runs=()
for ((r = 0; r < RUNS; r++)); do
    sync
    t0=$(now)
    timeout "$UPLOAD_TIMEOUT_S" "$DM_BIN" file update "$SRC" --url "$URL" --key "$WORK/signer.key" --name bench/big \
        >"$WORK/update.out" 2>&1 &
    CLIENT_PID=$!
    upload_rc=0
    wait "$CLIENT_PID" || upload_rc=$?
    t1=$(now)
    CLIENT_PID=""
    if (( upload_rc != 0 )); then
        cat "$WORK/update.out" >&2
        die "file update failed with exit code $upload_rc"
    fi
    dm_runs+=("$(secs "$t0" "$t1")")
    echo "data-mesher file update run $((r + 1)): ${dm_runs[-1]}s ($(tr '\n' ' ' < "$WORK/update.out"))"
done
DM_S=$(median "${dm_runs[@]}")
echo "data-mesher file update: median ${DM_S}s (runs: ${dm_runs[*]})"
cmp "$SRC" "$WORK/state/files/bench/big" || die "stored file differs from the uploaded file"

# Fetch it back RUNS times (the CLI writes a temporary file, fsyncs it and renames it) and
# compare byte for byte.
get_runs=()
for ((r = 0; r < RUNS; r++)); do
    sync
    t0=$(now)
    timeout "$UPLOAD_TIMEOUT_S" "$DM_BIN" file get bench/big --url "$URL" --output "$WORK/fetched.bin" &
    CLIENT_PID=$!
    get_rc=0
    wait "$CLIENT_PID" || get_rc=$?
    t1=$(now)
    CLIENT_PID=""
    (( get_rc == 0 )) || die "file get failed with exit code $get_rc"
    get_runs+=("$(secs "$t0" "$t1")")
    cmp "$SRC" "$WORK/fetched.bin" || die "fetched content differs from the uploaded file"
    rm -f "$WORK/fetched.bin"
done
GET_S=$(median "${get_runs[@]}")
echo "data-mesher file get: median ${GET_S}s (runs: ${get_runs[*]}), content identical (sha256 $SRC_SHA)"

touch "$WORK/sampler.stop"
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
RSS_SAMPLED=$(cat "$WORK/rss_max" 2>/dev/null || echo 0)
RSS_HWM=$(kib_field "$DAEMON_PID" VmHWM)
echo "daemon VmRSS sampled max during the uploads and fetches ${RSS_SAMPLED} KiB; VmHWM after them ${RSS_HWM} KiB"
# The kernel updates VmRSS/VmHWM from per-thread counters lazily, so a sample can
# exceed VmHWM by a few pages; the peak is the larger of the two.
RSS_PEAK=$(( RSS_SAMPLED > RSS_HWM ? RSS_SAMPLED : RSS_HWM ))
kill -0 "$DAEMON_PID" 2>/dev/null || die "daemon died"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "big_upload size_mib=$SIZE_MIB sha_cp_s=$SHA_CP_S dm_upload_s=$DM_S upload_ratio=$(ratio "$DM_S" "$SHA_CP_S")" \
    "cp_s=$CP_S get_s=$GET_S get_ratio=$(ratio "$GET_S" "$CP_S")" \
    "rss_idle_kib=$RSS_IDLE rss_peak_kib=$RSS_PEAK rss_hwm_kib=$RSS_HWM rss_sampled_max_kib=$RSS_SAMPLED" \
    "ratio=$(ratio "$DM_S" "$CP_S") sha_tool=$SHA_TOOL sha256sum_s=$SHA_S cp_global_sync_s=$CP_GLOBAL_S" \
    "runs=$RUNS roundtrip=ok load1_start=$LOAD_START load1_end=$(cut -d ' ' -f 1 /proc/loadavg)"
