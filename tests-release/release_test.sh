#!/usr/bin/env bash
# The build operators install (contrib/systemd/data-mesher.service): `swift build -c release`, with
# the link settings of Package.swift (static Swift runtime, Foundation and libstdc++, the function
# order of scripts/link-order.txt). The other suites run the debug build, which links plainly, so
# this one checks that the release link still works: the binary needs none of the shared Swift,
# Foundation, ICU or libstdc++ libraries, and a node built so stores a signed file and serves it
# back byte for byte. Loopback only (127.0.89.x); the node is stopped by its PID, also on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/dm-release-test.XXXXXX")
node_pid=""
cleanup() {
  if [ -n "$node_pid" ]; then
    kill -KILL "$node_pid" 2>/dev/null
    wait "$node_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
passed=0
failed=0
fail() { echo "release_test: FAILED: $*"; failed=$((failed + 1)); }
finish() {
  echo "release_test: $passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit
}

if ! swift build -c release --product data-mesher >"$work/build.log" 2>&1; then
  fail "swift build -c release --product data-mesher: $(tail -n 30 "$work/build.log")"
  finish
fi
bin=$(swift build -c release --show-bin-path)/data-mesher
passed=$((passed + 1))

# libstdc++ is linked in by the rule of Package.swift's `staticLibstdcxx`: where every GCC folder
# with libstdc++.so has libstdc++.a too.
static_libstdcxx() {
  local so found=1
  for so in /usr/lib/gcc/*/*/libstdc++.so; do
    [ -e "$so" ] || continue
    [ -e "${so%.so}.a" ] || return 1
    found=0
  done
  return $found
}
linked_in='libswift|libFoundation|libicu|lib_FoundationICU|libdispatch|libBlocksRuntime'
if static_libstdcxx; then linked_in="$linked_in|libstdc\+\+"; fi
if ! libraries=$(ldd "$bin" 2>&1) || ! grep -q 'libc\.so' <<<"$libraries"; then
  fail "ldd $bin: $libraries"
elif shared=$(grep -E "$linked_in" <<<"$libraries"); then
  fail "the release binary loads shared libraries it should link in: $shared"
else
  passed=$((passed + 1))
fi

version=$("$bin" --version 2>&1)
if [[ "$version" =~ ^[0-9]+\.[0-9]+ ]]; then passed=$((passed + 1)); else fail "--version printed: $version"; fi

public=$("$bin" generate keypair --private-key-path "$work/signer.key" --public-key-path "$work/signer.pub" | tail -n 1)
# A loopback address of its own per run (127.0.89.2-251), so that two runs cannot meet.
host=127.0.89.$((2 + ($$ + RANDOM) % 250))
cat >"$work/dm.toml" <<EOF
state_dir = "$work/state"
node_name = "release"
[cluster]
port = 17891
interfaces = ["$host"]
[http]
port = 17890
interfaces = ["$host"]
[files]
"release/check" = ["$public"]
EOF
url=http://$host:17890
"$bin" server --config "$work/dm.toml" >"$work/node.log" 2>&1 &
node_pid=$!
up=0
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  if curl -fsS -m 2 "$url/v1/info" >/dev/null 2>&1; then up=1 && break; fi
  kill -0 "$node_pid" 2>/dev/null || break
  sleep 0.5
done
if [ "$up" != 1 ]; then
  if kill -0 "$node_pid" 2>/dev/null; then why="did not answer on $url within 60 s"; else why="exited"; fi
  fail "the node $why: $(tail -n 20 "$work/node.log")"
  finish
fi
passed=$((passed + 1))

head -c $((3 << 20)) /dev/urandom >"$work/content"
if "$bin" file update "$work/content" --name release/check --key "$work/signer.key" --url "$url" >"$work/update.out" 2>&1 &&
  "$bin" file get release/check --output "$work/fetched" --url "$url" >"$work/get.out" 2>&1 &&
  cmp -s "$work/content" "$work/fetched"; then
  passed=$((passed + 1))
else
  fail "upload and fetch of 3 MiB: $(cat "$work/update.out" "$work/get.out") $(tail -n 20 "$work/node.log")"
fi

kill -TERM "$node_pid"
status=0
for _ in $(seq 1 60); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$node_pid" 2>/dev/null; then
  fail "the node did not stop within 30 s of SIGTERM"
else
  wait "$node_pid"
  status=$?
  node_pid=""
  if [ "$status" = 0 ]; then passed=$((passed + 1)); else fail "the node exited $status on SIGTERM: $(tail -n 20 "$work/node.log")"; fi
fi
finish
