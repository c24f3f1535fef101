#!/usr/bin/env bash
# scripts/demo as a newcomer runs it: three nodes come up on the addresses given in the
# environment and it prints what to try; stopped, it leaves no daemon behind. With an address that
# is not on this machine it exits non-zero with the nodes' log lines and never prints "Try".
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${DM_BIN:-$(swift build --show-bin-path)/data-mesher}
work=$(mktemp -d "${TMPDIR:-/tmp}/dm-demo-test.XXXXXX")
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ]; then
    kill -TERM "$demo_pid" 2>/dev/null
    wait "$demo_pid" 2>/dev/null
  fi
  pkill -KILL -f "$work/" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
passed=0
failed=0
fail() { echo "demo_test: FAILED: $*"; failed=$((failed + 1)); }

DM_BIN=$bin DM_DEMO_DIR=$work/ok DM_DEMO_ADDRS="127.0.88.1 127.0.88.2 127.0.88.3" DM_DEMO_PORT=7946 \
  DM_DEMO_WAIT=60 bash scripts/demo >"$work/ok.out" 2>&1 &
demo_pid=$!
for _ in $(seq 1 180); do
  grep -q "^Try" "$work/ok.out" && break
  kill -0 "$demo_pid" 2>/dev/null || break
  sleep 0.5
done
if grep -q "3 nodes up" "$work/ok.out" && grep -q "^Try" "$work/ok.out"; then
  passed=$((passed + 1))
else
  fail "the demo did not report 3 nodes up: $(tail -n 20 "$work/ok.out")"
fi
kill -TERM "$demo_pid" 2>/dev/null
wait "$demo_pid" 2>/dev/null
demo_pid=""
if pgrep -f "$work/ok/node" >/dev/null; then fail "daemons left running after the demo stopped"; else passed=$((passed + 1)); fi

# 192.0.2.1 (TEST-NET-1) is on no interface here: that node cannot start.
DM_BIN=$bin DM_DEMO_DIR=$work/bad DM_DEMO_ADDRS="127.0.88.4 127.0.88.5 192.0.2.1" DM_DEMO_WAIT=15 \
  timeout 120 bash scripts/demo >"$work/bad.out" 2>&1
status=$?
if [ "$status" != 0 ] && ! grep -q "^Try" "$work/bad.out" && grep -q "node3" "$work/bad.out"; then
  passed=$((passed + 1))
else
  fail "exit $status with a node that cannot start: $(tail -n 20 "$work/bad.out")"
fi
echo "demo_test: $passed passed, $failed failed"
[ "$failed" = 0 ]
