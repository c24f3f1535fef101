#!/usr/bin/env bash
# Builds the libFuzzer targets (release, --sanitize=fuzzer) and runs each for FUZZ_SECONDS on a
# copy of its committed seed corpus. Fails when any target reports a crash, an invariant
# violation, an out-of-memory or a timeout. See docs/FUZZING.md.
#
#   fuzz/run.sh                      # every target, 20 s each
#   FUZZ_SECONDS=300 fuzz/run.sh fuzz-wire fuzz-sync
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 20)
#   FUZZ_KEEP_DIR   where crash/timeout/oom inputs and logs are kept (default .build-fuzz/findings)
#   FUZZ_SKIP_BUILD set to 1 to reuse the last build
#   FUZZ_NICE       niceness of build and fuzzers (default 10)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
scratch="$repo/.build-fuzz"
seconds=${FUZZ_SECONDS:-20}
keep=${FUZZ_KEEP_DIR:-$scratch/findings}
niceness=${FUZZ_NICE:-10}
all_targets=(fuzz-wire fuzz-sync fuzz-seal fuzz-handshake fuzz-config fuzz-pem fuzz-cert fuzz-names fuzz-headers)

if [[ $# -gt 0 ]]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
for target in "${targets[@]}"; do
    if [[ ! " ${all_targets[*]} " =~ " $target " ]]; then
        echo "fuzz: unknown target $target (known: ${all_targets[*]})" >&2
        exit 2
    fi
done
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { echo "fuzz: FUZZ_SECONDS must be a positive integer" >&2; exit 2; }
command -v swift >/dev/null || { echo "fuzz: swift is not on PATH" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/dm-fuzz.XXXXXX")
fuzzer_pid=""
cleanup() {
    if [[ -n $fuzzer_pid ]] && kill -0 "$fuzzer_pid" 2>/dev/null; then
        kill "$fuzzer_pid" 2>/dev/null || true
        wait "$fuzzer_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ ${FUZZ_SKIP_BUILD:-0} != 1 ]]; then
    echo "fuzz: building (release, --sanitize=fuzzer) in $scratch"
    if ! (cd "$here" && nice -n "$niceness" swift build -c release --sanitize=fuzzer --scratch-path "$scratch") \
        >"$work/build.log" 2>&1; then
        tail -n 60 "$work/build.log"
        echo "fuzz: build failed"
        exit 1
    fi
fi
bin=$(cd "$here" && swift build -c release --sanitize=fuzzer --scratch-path "$scratch" --show-bin-path)

mkdir -p "$keep"
failed=0
for target in "${targets[@]}"; do
    corpus="$work/corpus-$target"
    artifacts="$keep/$target"
    mkdir -p "$corpus" "$artifacts"
    # A copy: new inputs found during the run never land in the committed corpus.
    cp -R "$here/corpus/$target/." "$corpus/"
    rm -f "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-* "$artifacts"/leak-* "$artifacts"/slow-unit-*
    options=(
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=8192 -print_final_stats=1
        -artifact_prefix="$artifacts/"
    )
    [[ -f "$here/dict/$target.dict" ]] && options+=(-dict="$here/dict/$target.dict")
    log="$artifacts/last-run.log"
    status=0
    # Reproducers of past findings (fuzz/crashes/<target>/) must no longer crash.
    replay_failed=0
    if [[ -d "$here/crashes/$target" ]]; then
        for file in "$here/crashes/$target"/*; do
            [[ -f $file ]] || continue
            if ! SWIFT_BACKTRACE=enable=no timeout 120 "$bin/$target" "$file" >"$artifacts/replay.log" 2>&1; then
                replay_failed=$((replay_failed + 1))
                echo "     $target: committed reproducer ${file#"$repo"/} still fails:"
                grep -E 'fuzz invariant broken|Fatal error|ERROR: libFuzzer' "$artifacts/replay.log" | head -n 2 | sed 's/^/       /'
            fi
        done
    fi
    # The fuzzer stops itself after max_total_time; the outer timeout only guards a hang.
    # Swift's own crash backtracer would take the signal from libFuzzer, which then saves no input.
    SWIFT_BACKTRACE=enable=no nice -n "$niceness" timeout --kill-after=30 $((seconds + 300)) "$bin/$target" "${options[@]}" "$corpus" \
        >"$log" 2>&1 &
    fuzzer_pid=$!
    wait "$fuzzer_pid" || status=$?
    fuzzer_pid=""

    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    coverage=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
    findings=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)
    if [[ $replay_failed -ne 0 || $status -ne 0 || -n $findings ]]; then
        failed=$((failed + 1))
        echo "FAIL $target: exit status $status after ${executions:-?} executions (${coverage:-no coverage line})," \
            "$replay_failed committed reproducer(s) still failing"
        grep -E 'ERROR: libFuzzer|fuzz invariant broken|Fatal error|deadly signal|out-of-memory|Timeout' "$log" | head -n 5 || true
        for file in $findings; do
            echo "  input: $file ($(wc -c <"$file") bytes)"
            od -A d -t x1z -v "$file" | head -n 8 | sed 's/^/    /'
            # Run it once more with Swift's backtracer for a symbolized stack.
            (
                SWIFT_BACKTRACE=enable=yes,interactive=no,color=no timeout 120 "$bin/$target" "$file"
                exit 0
            ) >"$file.stack" 2>&1
            grep -E 'Fatal error|crashed:|^ *[0-9]+ .* in (fuzz-|libswiftCore)' "$file.stack" | head -n 12 | sed 's/^/    /'
            echo "  stack: $file.stack"
        done
        echo "  log: $log"
    else
        echo "ok   $target: ${executions:-?} executions in ${seconds}s, ${coverage:-no coverage line}"
    fi
done

echo "fuzz: ${#targets[@]} targets, $failed failed"
[[ $failed -eq 0 ]]
