#!/usr/bin/env bash
# The clan deployment without NixOS VMs: what clan-core's data-mesher VM test does, run from
# the files our clan service and NixOS module produce.
#
#   1. Evaluate nix/clan-service.nix's 'default' role for three machines alpha, beta, gamma
#      (tests-nix/clan-eval.nix), with the VM test's settings: interfaces = [ "eth1" ],
#      extraBootstrapNodes = [2001:db8:1::1]:7946 and [2001:db8:1::2]:7946, join 2s and
#      push/pull 5s (the VM test's mkForce), a role file and one more from a clan export.
#   2. Run the generators' scripts exactly as evaluated, with our CLI and openssl on PATH,
#      the way clan vars runs them ($out, $in): data-mesher-ca and data-mesher-node-keyring
#      once (shared), data-mesher-node-identity once per machine. Secret files are deployed
#      as clan vars does: 0400, owned by the service's user (here uid/gid 65534).
#   3. Render each machine's settings through nix/module.nix (tests-nix/module-eval.nix) to
#      dm.toml, and check it with `server --check-config` in the machine's namespace.
#   4. Start the three daemons as that unprivileged user, each in its own network namespace
#      (eth1 with 2001:db8:1::N/64, IPv6 only; HTTP API on lo, http://[::1]:7331), and run the
#      VM test's steps: the cluster forms, `file update ... --url http://[::1]:7331 --key`
#      on alpha, the file appears under <state_dir>/files/NAME on all three, `file delete` on
#      beta, it is gone from all three.
#   5. Renew beta's certificate as DEPLOY.md says (its generator again, with the CA from the
#      vars store; a restart of beta alone): beta's /v1/info shows the new end, the update
#      made on alpha while beta was down reaches beta, and one made on beta after its restart
#      reaches the others.
#
# Every process started here is killed by PID on exit, and every namespace removed. Needs
# root and ip netns (installs nix-bin, jq, curl, openssl, util-linux when missing); prints "clan_netns: skipped (...)" and
# exits 77 where it cannot run.
#
#   DM_BIN=/path/to/data-mesher bash tests-nix/clan_netns_test.sh
set -u
TEST=clan_netns
API_URL="http://[::1]:7331"
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
DM_BIN=${DM_BIN:-$ROOT/.build/debug/data-mesher}
# shellcheck source=tests-net/lib.sh
. "$ROOT/tests-net/lib.sh"

need=()
command -v nix-instantiate >/dev/null 2>&1 || need+=(nix-bin)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
    echo "$TEST: installing ${need[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >/dev/null 2>&1
fi
for tool in nix-instantiate jq openssl setpriv; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed (as root this script installs nix-bin, jq, openssl, util-linux)"
done
preflight
chmod 755 "$WORK" # the daemons run as uid 65534 and must reach their files
START=$(date +%s)
export NIX_REMOTE="local?root=$WORK/nix-root" XDG_CACHE_HOME="$WORK/cache" NIX_PATH=""
nix_eval() { nix-instantiate --eval --strict --json "$@"; }
DUID=65534
MACHINES=(alpha beta gamma)

# The unprivileged user must be able to run the binary where it is; else use a copy.
BIN=$DM_BIN
if ! setpriv --reuid $DUID --regid $DUID --clear-groups test -x "$BIN"; then
    mkdir -p "$WORK/bin"
    cp "$DM_BIN" "$WORK/bin/data-mesher" && chmod 755 "$WORK/bin/data-mesher"
    BIN=$WORK/bin/data-mesher
fi
# What the generators find on PATH: the package's data-mesher, and openssl.
mkdir -p "$WORK/path"
ln -sf "$DM_BIN" "$WORK/path/data-mesher"
ln -sf "$(command -v openssl)" "$WORK/path/openssl"

STEP="signing key"
out=$("$DM_BIN" generate keypair --private-key-path "$WORK/owner.key" --public-key-path "$WORK/owner.pub" 2>&1) ||
    fail "generate keypair: $out"
PUB=$("$DM_BIN" key public "$WORK/owner.key" 2>&1) || fail "key public: $PUB"

# evaluate MACHINE -> $WORK/MACHINE.json (clan-eval output)
evaluate() {
    local m=$1 i=$2 out
    out=$(nix_eval "$ROOT/tests-nix/clan-eval.nix" --argstr machine "$m" --argstr domain clan \
        --argstr varsDir "$WORK/vars-$m" \
        --arg settings '{ interfaces = [ "eth1" ];
                          extraBootstrapNodes = [ "[2001:db8:1::1]:7946" "[2001:db8:1::2]:7946" ];
                          files."config:app" = [ "'"$PUB"'" ]; }' \
        --arg roles '{ default.machines = { alpha = { }; beta = { }; gamma = { }; }; }' \
        --arg exports '{ "dm-dns:::" = { dataMesher.files."dns/cnames" = [ "'"$PUB"'" ]; }; }' \
        --arg overrides '{ state_dir = "'"$WORK/n$i/state"'"; cluster.join_interval = "2s"; cluster.push_pull_interval = "5s"; }' 2>&1) ||
        fail "clan service evaluation for $m: $out"
    printf '%s' "$out" >"$WORK/$m.json"
    jq -e '.failedAssertions == []' "$WORK/$m.json" >/dev/null || fail "$m: failed assertions: $(jq -c .failedAssertions "$WORK/$m.json")"
}

# run_generator MACHINE GENERATOR  — the script as evaluated, with $out and $in as clan sets them.
run_generator() {
    local m=$1 gen=$2 script out
    script=$(jq -r --arg g "$gen" '.generators[$g].script' "$WORK/$m.json")
    [ -n "$script" ] && [ "$script" != null ] || fail "$m has no generator $gen"
    mkdir -p "$WORK/vars-$m/$gen"
    out=$(cd "$WORK" && PATH="$WORK/path:/usr/bin:/bin" out="$WORK/vars-$m/$gen" in="$WORK/vars-$m" \
        timeout 120 bash -euo pipefail -c "$script" 2>&1) || fail "generator $gen for $m failed: $out"$'\n'"$script"
    local file
    while read -r file; do
        [ -s "$WORK/vars-$m/$gen/$file" ] || fail "generator $gen for $m did not write $file"
    done < <(jq -r --arg g "$gen" '.generators[$g].files[]' "$WORK/$m.json")
}

STEP="evaluate the clan service for alpha, beta, gamma"
i=0
for m in "${MACHINES[@]}"; do
    i=$((i + 1))
    mkdir -p "$WORK/n$i/state"
    evaluate "$m" "$i"
done
jq -e '.settings.files == { "config:app": ["'"$PUB"'"], "dns/cnames": ["'"$PUB"'"] }' "$WORK/alpha.json" >/dev/null ||
    fail "files are not the role's merged with the export's: $(jq -c .settings.files "$WORK/alpha.json")"

STEP="run the vars generators (shared once, identity per machine)"
run_generator alpha data-mesher-ca
run_generator alpha data-mesher-node-keyring
for m in beta gamma; do
    cp -r "$WORK/vars-alpha/data-mesher-ca" "$WORK/vars-alpha/data-mesher-node-keyring" "$WORK/vars-$m/" 2>/dev/null ||
        { mkdir -p "$WORK/vars-$m" && cp -r "$WORK/vars-alpha/data-mesher-ca" "$WORK/vars-alpha/data-mesher-node-keyring" "$WORK/vars-$m/"; } ||
        fail "copy shared vars to $m"
done
for m in "${MACHINES[@]}"; do run_generator "$m" data-mesher-node-identity; done
# The vars store keeps the CA's private key (deploy = false), for renewals later.
mkdir -p "$WORK/store"
cp -r "$WORK/vars-alpha/data-mesher-ca" "$WORK/store/"
# What `openssl rand -base64 32` wrote is what the keyring reader takes (checked by
# --check-config below); it is 44 characters of base64 and a newline.
psk="$WORK/vars-alpha/data-mesher-node-keyring/pre_shared_key"
[ "$(wc -c <"$psk")" = 45 ] && [ "$(base64 -d <"$psk" | wc -c)" = 32 ] || fail "pre_shared_key is not base64 of 32 bytes: $(cat "$psk")"
# Deploy as clan vars does: secret files 0400 owned by the service's user and group;
# public files world-readable; ca.key (deploy = false) is not deployed at all.
for m in "${MACHINES[@]}"; do
    while IFS=$'\t' read -r gen file secret deploy; do
        path="$WORK/vars-$m/$gen/$file"
        if [ "$deploy" = false ]; then
            rm -f "$path"
        elif [ "$secret" = true ]; then
            chown "$DUID:$DUID" "$path" && chmod 0400 "$path" || fail "chown $path"
        else
            chmod 0444 "$path"
        fi
    done < <(jq -r '.generators | to_entries[] | .key as $g | .value.fileAttrs | to_entries[]
                    | [$g, .key, (if .value | has("secret") then .value.secret else true end | tostring),
                       (if .value | has("deploy") then .value.deploy else true end | tostring)] | @tsv' "$WORK/$m.json")
    [ ! -e "$WORK/vars-$m/data-mesher-ca/ca.key" ] || fail "ca.key was deployed to $m"
    chmod 755 "$WORK/vars-$m" "$WORK/vars-$m"/*
done

STEP="render dm.toml through nix/module.nix"
i=0
for m in "${MACHINES[@]}"; do
    i=$((i + 1))
    jq '.settings' "$WORK/$m.json" >"$WORK/$m.settings.json"
    out=$(nix_eval "$ROOT/tests-nix/module-eval.nix" --arg settings "builtins.fromJSON (builtins.readFile $WORK/$m.settings.json)" 2>&1) ||
        fail "module.nix for $m: $out"
    jq -e '.failedAssertions == [] and .config.systemd.services["data-mesher"].serviceConfig.User == "data-mesher"
           and .config.networking.firewall.allowedTCPPorts == [7946]' <<<"$out" >/dev/null ||
        fail "module.nix for $m: unexpected unit, firewall or assertions: $(head -c 600 <<<"$out")"
    jq -j .etcText <<<"$out" >"$WORK/n$i/dm.toml"
    chmod 644 "$WORK/n$i/dm.toml"
    chown "$DUID:$DUID" "$WORK/n$i/state" && chmod 750 "$WORK/n$i/state"
    grep -qF 'join_interval = "2s"' "$WORK/n$i/dm.toml" && grep -qF "vars-$m/data-mesher-node-keyring/pre_shared_key" "$WORK/n$i/dm.toml" ||
        fail "rendered dm.toml for $m lacks the VM test's join_interval or the keyring path:"$'\n'"$(cat "$WORK/n$i/dm.toml")"
done

STEP="network: three namespaces, eth1 IPv6 only"
make_bridge_ns br0
for i in 1 2 3; do add_node "$i" br0 "2001:db8:1::$i/64" nodad; done
for i in 1 2 3; do
    if in_ns "$i" ip -4 addr show dev eth1 | grep -q inet; then fail "eth1 of n$i has an IPv4 address"; fi
done

STEP="server --check-config with the rendered files, as the daemon's user"
i=0
for m in "${MACHINES[@]}"; do
    i=$((i + 1))
    out=$(in_ns "$i" setpriv --reuid $DUID --regid $DUID --clear-groups timeout 60 "$BIN" server --check-config --config "$WORK/n$i/dm.toml" 2>&1) ||
        fail "--check-config for $m refused its config: $out"$'\n'"$(cat "$WORK/n$i/dm.toml")"
    grep -qE '^encryption: .*keyring of 1 key' <<<"$out" && grep -q '1 CA key' <<<"$out" ||
        fail "--check-config for $m does not report the keyring and CA: $out"
done

STEP="start the daemons as uid $DUID"
i=0
for m in "${MACHINES[@]}"; do
    i=$((i + 1))
    ip netns exec "${NODES[$i]}" setpriv --reuid $DUID --regid $DUID --clear-groups \
        "$BIN" server --config "$WORK/n$i/dm.toml" >"$WORK/n$i/log" 2>&1 </dev/null &
    PIDS[$i]=$!
done
for i in 1 2 3; do wait_until 30 api_up "$i"; done

STEP="cluster forms (every node lists alpha, beta, gamma alive)"
for i in 1 2 3; do wait_until 90 all_states "$i" alive "${MACHINES[@]}"; done
say "cluster formed after $(($(date +%s) - START))s"

STEP="upload on alpha (file update --url http://[::1]:7331 --key) reaches every node"
mkdir -p "$WORK/upload"
content="$WORK/upload/config:app"
printf 'clan drop-in %s\n' "$PREFIX" >"$content"
out=$(in_ns 1 timeout 30 "$DM_BIN" file update "$content" --url "$API_URL" --key "$WORK/owner.key" 2>&1) ||
    fail "file update on alpha: $out"
files_on_disk() { # index name expected
    cmp -s "$WORK/n$1/state/files/$2" "$3"
}
for i in 1 2 3; do wait_until 60 files_on_disk "$i" config:app "$content"; done

STEP="a file registered only through an export is accepted too"
printf 'cname www alpha\n' >"$WORK/upload/cnames"
out=$(in_ns 3 timeout 30 "$DM_BIN" file update "$WORK/upload/cnames" --name dns/cnames --url "$API_URL" --key "$WORK/owner.key" 2>&1) ||
    fail "file update dns/cnames on gamma: $out"
for i in 1 2 3; do wait_until 60 has_content "$i" dns/cnames "$WORK/upload/cnames"; done

STEP="delete on beta removes it from every node"
out=$(in_ns 2 timeout 30 "$DM_BIN" file delete config:app --url "$API_URL" --key "$WORK/owner.key" 2>&1) ||
    fail "file delete on beta: $out"
gone_on_disk() { [ ! -e "$WORK/n$1/state/files/$2" ]; }
for i in 1 2 3; do wait_until 60 gone_on_disk "$i" config:app; done
for i in 1 2 3; do wait_until 30 is_gone "$i" config:app; done

STEP="renew beta's certificate: regenerate its identity, restart beta alone"
info_field() { # index field
    in_ns "$1" curl -sS -g --max-time 3 "$API_URL/v1/info" 2>/dev/null | jq -r --arg f "$2" '.[$f] // empty'
}
old_end=$(info_field 2 certificate_expires_at)
[ -n "$old_end" ] || fail "beta's /v1/info has no certificate_expires_at"
left=$(info_field 2 certificate_expires_in_seconds)
[ -n "$left" ] && [ "$left" -gt $((2160 * 3600 - 600)) ] && [ "$left" -le $((2160 * 3600)) ] ||
    fail "beta's certificate has $left seconds left, not about 2160h"
# The generator again, as `clan vars generate beta --generator data-mesher-node-identity
# --regenerate` runs it: a fresh $out, $in with the CA from the vars store.
sleep 1 # so the new certificate's end differs from the old one by at least a second
script=$(jq -r '.generators["data-mesher-node-identity"].script' "$WORK/beta.json")
renew="$WORK/renew/data-mesher-node-identity"
mkdir -p "$renew"
out=$(cd "$WORK" && PATH="$WORK/path:/usr/bin:/bin" out="$renew" in="$WORK/store" timeout 120 bash -euo pipefail -c "$script" 2>&1) ||
    fail "regenerating beta's identity: $out"
for f in identity.key identity.cert identity.pub; do
    [ -s "$renew/$f" ] || fail "regenerating beta's identity did not write $f"
done
# Updates keep flowing while beta restarts: one on alpha while beta is down.
stop_daemon 2
for f in identity.key identity.cert identity.pub; do
    install -m 0400 -o "$DUID" -g "$DUID" "$renew/$f" "$WORK/vars-beta/data-mesher-node-identity/$f" || fail "deploy $f"
done
chmod 0444 "$WORK/vars-beta/data-mesher-node-identity/identity.pub"
printf 'while beta restarts %s\n' "$PREFIX" >"$WORK/upload/config:app"
out=$(in_ns 1 timeout 30 "$DM_BIN" file update "$WORK/upload/config:app" --url "$API_URL" --key "$WORK/owner.key" 2>&1) ||
    fail "file update on alpha while beta is down: $out"
out=$(in_ns 2 setpriv --reuid $DUID --regid $DUID --clear-groups timeout 60 "$BIN" server --check-config --config "$WORK/n2/dm.toml" 2>&1) ||
    fail "--check-config for beta with the new identity: $out"
ip netns exec "${NODES[2]}" setpriv --reuid $DUID --regid $DUID --clear-groups \
    "$BIN" server --config "$WORK/n2/dm.toml" >>"$WORK/n2/log" 2>&1 </dev/null &
PIDS[2]=$!
wait_until 30 api_up 2
new_end=$(info_field 2 certificate_expires_at)
[ -n "$new_end" ] && [ "$new_end" != "$old_end" ] || fail "beta's certificate end did not change ($old_end -> $new_end)"
say "beta's certificate renewed: $old_end -> $new_end"
# No update lost, in either direction: beta gets the one it missed, and one made on beta
# after the restart reaches alpha and gamma (which shows they accept its new certificate).
for i in 1 2 3; do wait_until 90 files_on_disk "$i" config:app "$WORK/upload/config:app"; done
printf 'cname www beta (renewed)\n' >"$WORK/upload/cnames"
out=$(in_ns 2 timeout 30 "$DM_BIN" file update "$WORK/upload/cnames" --name dns/cnames --url "$API_URL" --key "$WORK/owner.key" 2>&1) ||
    fail "file update dns/cnames on beta after the renewal: $out"
for i in 1 2 3; do wait_until 90 has_content "$i" dns/cnames "$WORK/upload/cnames"; done

STEP="daemons still running"
daemons_running || fail "a daemon exited"

say "done in $(($(date +%s) - START))s"
echo "$TEST: 1 passed, 0 failed"
exit 0
