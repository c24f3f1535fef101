#!/usr/bin/env bash
# cluster_compare.sh -- data-mesher cluster vs the Serf anchor, one cluster size after another.
#
# Usage: bench/cluster_compare.sh [RUNS]          (default RUNS=5)
#
# For each N in NS (default "3 10 30") it runs, one after the other and never at the same time:
#   python3 bench/cluster_bench.py N RUNS --ip-prefix $DM_IP_PREFIX      (data-mesher)
#   IP_PREFIX=$SERF_IP_PREFIX bash $SERF_BENCH N RUNS                    (Serf; installs serf with apt-get if missing)
# then prints a table with both results and the dm/serf ratios, and one machine-readable
# `compare nodes=N ...` line per N.
#
# Env knobs: NS ("3 10 30")  RUNS (5)  IDLE_S (10, passed to both)  DM_IP_PREFIX (127.0.2)
#   SERF_IP_PREFIX (127.0.3)  PAUSE_S (5: quiet pause before each benchmark)
#   SERF_BENCH (../shared/anchors/serf_bench.sh, beside the repository)  DM_BENCH_ARGS (extra cluster_bench.py options)
#   DM_BIN (binary for cluster_bench.py; see bench/README.md)
# Loopback only. Only processes started here are stopped (by PID: SIGTERM, then SIGKILL after
# a bounded wait); each benchmark stops its own daemons/agents and removes its temp dir.
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUNS=${1:-${RUNS:-5}}
NS=${NS:-"3 10 30"}
IDLE_S=${IDLE_S:-10}
DM_IP_PREFIX=${DM_IP_PREFIX:-127.0.2}
SERF_IP_PREFIX=${SERF_IP_PREFIX:-127.0.3}
PAUSE_S=${PAUSE_S:-5}
SERF_BENCH=${SERF_BENCH:-$(cd "$(dirname "$0")/../.." && pwd)/shared/anchors/serf_bench.sh}
DM_BENCH_ARGS=${DM_BENCH_ARGS:-}
CHILD_STOP_WAIT_S=30   # serf_bench.sh may be inside `sleep IDLE_S` when it gets SIGTERM

[[ "$RUNS" =~ ^[0-9]+$ ]] && (( RUNS >= 1 )) || { echo "RUNS must be a positive integer" >&2; exit 2; }
for n in $NS; do
  [[ "$n" =~ ^[0-9]+$ ]] && (( n >= 2 && n <= 60 )) || { echo "every N in NS must be 2..60 (got '$n')" >&2; exit 2; }
done
for p in "$DM_IP_PREFIX" "$SERF_IP_PREFIX"; do
  [[ "$p" =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || { echo "IP prefixes must be loopback 127.x.y (got '$p')" >&2; exit 2; }
done
[[ "$DM_IP_PREFIX" != "$SERF_IP_PREFIX" ]] || { echo "DM_IP_PREFIX and SERF_IP_PREFIX must differ" >&2; exit 2; }
[[ -f "$SERF_BENCH" ]] || { echo "serf benchmark not found: $SERF_BENCH" >&2; exit 2; }

TMP=$(mktemp -d /tmp/cluster_compare.XXXXXX)
CHILD=""

stop_child() {
  local i
  [[ -n "$CHILD" ]] || return 0
  if kill -0 "$CHILD" 2>/dev/null; then
    kill -TERM "$CHILD" 2>/dev/null || true
    for ((i = 0; i < CHILD_STOP_WAIT_S * 10; i++)); do
      kill -0 "$CHILD" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$CHILD" 2>/dev/null || true
  fi
  wait "$CHILD" 2>/dev/null || true
  CHILD=""
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  stop_child
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# run_bg OUTFILE CMD...: run a benchmark in the background (so a signal to this script reaches
# it by PID), stdout to OUTFILE, stderr to ours; returns its exit status.
run_bg() {
  local out=$1 rc; shift
  "$@" >"$out" &
  CHILD=$!
  wait "$CHILD"; rc=$?
  CHILD=""
  return "$rc"
}

# field KEY LINE: the value of KEY=... in a `name k=v k=v` line, or NA.
field() { local v; v=$(tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2; exit }'); echo "${v:-NA}"; }
# ratio A B: A/B with 2 decimals, NA if either is NA or B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b + 0 == 0) print "NA"; else printf "%.2f\n", a / b }'; }

declare -A DM_LINE SERF_LINE
STATUS=0
for n in $NS; do
  echo "=== N=$n: data-mesher (cluster_bench.py, $DM_IP_PREFIX.x) ===" >&2
  sleep "$PAUSE_S"
  # shellcheck disable=SC2086
  run_bg "$TMP/dm_$n.out" python3 "$SCRIPT_DIR/cluster_bench.py" "$n" "$RUNS" --idle-s "$IDLE_S" \
    --ip-prefix "$DM_IP_PREFIX" $DM_BENCH_ARGS || { echo "cluster_bench.py N=$n exited $?" >&2; STATUS=1; }
  DM_LINE[$n]=$(grep '^dm nodes=' "$TMP/dm_$n.out" | tail -1 || true)
  [[ -n "${DM_LINE[$n]}" ]] && echo "${DM_LINE[$n]}"

  echo "=== N=$n: serf (serf_bench.sh, $SERF_IP_PREFIX.x) ===" >&2
  sleep "$PAUSE_S"
  run_bg "$TMP/serf_$n.out" env IP_PREFIX="$SERF_IP_PREFIX" IDLE_S="$IDLE_S" bash "$SERF_BENCH" "$n" "$RUNS" \
    || { echo "serf_bench.sh N=$n exited $?" >&2; STATUS=1; }
  SERF_LINE[$n]=$(grep '^serf nodes=' "$TMP/serf_$n.out" | tail -1 || true)
  [[ -n "${SERF_LINE[$n]}" ]] && echo "${SERF_LINE[$n]}"
done

echo
printf '%-4s %-34s %12s %12s %9s\n' N metric dm serf dm/serf
# row N LABEL DMKEY SERFKEY [noratio]
row() {
  local n=$1 label=$2 dk=$3 sk=$4 d s r
  d=$(field "$dk" "${DM_LINE[$n]:-}")
  if [[ "$sk" == "-" ]]; then s="-"; r="-"; else s=$(field "$sk" "${SERF_LINE[$n]:-}"); r=$(ratio "$d" "$s"); fi
  printf '%-4s %-34s %12s %12s %9s\n' "$n" "$label" "$d" "$s" "$r"
}
for n in $NS; do
  row "$n" "prop p50 ms (from CLI start)"      prop_from_cli_start_ms_p50 prop_ms_p50
  row "$n" "prop max ms (from CLI start)"      prop_from_cli_start_ms_max prop_ms_max
  row "$n" "prop p50 ms (after CLI exit)"      prop_ms_p50 -
  row "$n" "prop max ms (after CLI exit)"      prop_ms_max -
  row "$n" "prop 64KiB p50 ms (after CLI exit)" prop64k_ms_p50 -
  row "$n" "prop 64KiB max ms (after CLI exit)" prop64k_ms_max -
  row "$n" "failure detection ms (all)"        fail_detect_ms fail_detect_ms
  row "$n" "failure detection ms (first)"      fail_first_ms fail_first_ms
  row "$n" "failure poll sweep ms (slowest)"   fail_poll_ms fail_poll_ms
  row "$n" "idle RSS KiB per node"             rss_kib_avg rss_kib_avg
  row "$n" "idle CPU % per node"               cpu_pct_avg cpu_pct_avg
  row "$n" "converge ms (incl. polling)"       converge_ms converge_ms
  row "$n" "wall s"                            wall_s wall_s
done
echo
for n in $NS; do
  d=${DM_LINE[$n]:-}; s=${SERF_LINE[$n]:-}
  echo "compare nodes=$n runs=$RUNS" \
    "prop_p50_ratio=$(ratio "$(field prop_from_cli_start_ms_p50 "$d")" "$(field prop_ms_p50 "$s")")" \
    "prop_max_ratio=$(ratio "$(field prop_from_cli_start_ms_max "$d")" "$(field prop_ms_max "$s")")" \
    "fail_detect_ratio=$(ratio "$(field fail_detect_ms "$d")" "$(field fail_detect_ms "$s")")" \
    "rss_ratio=$(ratio "$(field rss_kib_avg "$d")" "$(field rss_kib_avg "$s")")" \
    "cpu_ratio=$(ratio "$(field cpu_pct_avg "$d")" "$(field cpu_pct_avg "$s")")" \
    "dm_bin=$(field bin "$d")" "dm_ok=$([[ -n "$d" ]] && echo 1 || echo 0)" "serf_ok=$([[ -n "$s" ]] && echo 1 || echo 0)"
done
exit "$STATUS"
