#!/usr/bin/env bash
# Checks the Nix side of data-mesher without nixpkgs (Debian's nix-bin has none, so nothing
# here may import <nixpkgs>), plus the plain systemd unit:
#
#   - every .nix file of the repository parses (nix-instantiate --parse);
#   - the Nix pins: Package.resolved and nix/swiftpm2nix/ are tracked, and
#     scripts/update-nix-pins --check (every hash recomputed from SwiftPM's checkouts, and
#     Package.swift / Package.resolved / pins in agreement) passes, and fails on a drifted
#     hash, a disagreeing revision and an unmet version requirement; nix/package.nix fetches
#     exactly the pinned sources (tests-nix/package-eval.nix);
#   - nix/lib.nix evaluates on its own; its toTOML writes the expected text for a tricky
#     [files] map and for strings that need escaping;
#   - the seed's example inventory (tests-nix/seed-inventory.nix) maps to the expected
#     dm.toml, and `data-mesher server --check-config` accepts it, run in a network namespace
#     of our own with a dummy eth1 (the seed names eth1); a broken config is refused;
#   - the clan service: bootstrap-role machines are merged into bootstrap_nodes with
#     bootstrapNodes/extraBootstrapNodes; the v1 roles admin, peer and signer fail with the
#     migration message; the vars generators' scripts run with the real binary, and the
#     dm.toml that uses their files passes --check-config with encryption on;
#   - nix/module.nix, evaluated with a small stub lib (tests-nix/module-eval.nix): the unit it
#     makes has the same directives as contrib/systemd/data-mesher.service, dm.toml is
#     toTOML of the settings, the firewall opens the cluster port for UDP and TCP;
#   - contrib/systemd/data-mesher.service passes `systemd-analyze verify`.
#
# Installs nix-bin, jq and iproute2 when they are missing (as root). The namespace parts need
# root and print "nix_test: skipped (...)" without it. Last line: "nix_test: N passed, M failed,
# K skipped"; exit 0 (all ran and passed), 1 (a failure) or 77 (no failure, K > 0).
#
#   DM_BIN=/path/to/data-mesher bash tests-nix/nix_test.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
DM_BIN=${DM_BIN:-$ROOT/.build/debug/data-mesher}
T=nix_test

passed=0
failed=0
skipped=0
WORK=""
NS=""
DAEMON_PID=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [ -n "$DAEMON_PID" ]; then
        kill -KILL "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
    fi
    if [ -n "$NS" ]; then
        local pid
        for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$NS" 2>/dev/null
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        # the private Nix store is read-only by design; make it removable first
        chmod -R u+w "$WORK" 2>/dev/null
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

ok() {
    echo "$T: ok   $1"
    passed=$((passed + 1))
}
bad() { # name [details]
    echo "$T: FAIL $1"
    if [ $# -gt 1 ] && [ -n "$2" ]; then printf '%s\n' "$2" | head -n 60 | sed 's/^/    /'; fi
    failed=$((failed + 1))
}
skip() {
    echo "$T: skipped ($1)"
    skipped=$((skipped + 1))
}

# Exit 0 when everything ran and passed, 1 on a failure, 77 (scripts/test: "skipped") when
# nothing failed but a part could not run here.
finish() {
    echo "$T: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" = 0 ] || exit 1
    [ "$skipped" = 0 ] || exit 77
    exit 0
}

# --- tools -------------------------------------------------------------------------------

need=()
command -v nix-instantiate >/dev/null 2>&1 || need+=(nix-bin)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
/usr/bin/python3 -c 'import seccomp' >/dev/null 2>&1 || need+=(python3-seccomp)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "$T: installing ${need[*]}"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >/dev/null 2>&1
    fi
fi
for tool in nix-instantiate jq; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        bad "setup: $tool is missing and could not be installed (run as root, or install ${need[*]})"
        finish
    fi
done

WORK=$(mktemp -d /tmp/dm-nix-test.XXXXXX)
chmod 755 "$WORK"
# A private, empty Nix store: evaluation never touches the machine's /nix, works without
# root, and fails loudly if anything tries to copy a path into the store.
export NIX_REMOTE="local?root=$WORK/nix-root"
export XDG_CACHE_HOME="$WORK/cache"
export NIX_PATH=""

# eval FILE-OR-EXPR-ARGS... : nix-instantiate --eval --strict --json; stdout JSON, stderr kept
nix_eval() { nix-instantiate --eval --strict --json "$@"; }
# A Nix string value (JSON on stdout) written out raw.
json_raw() { jq -j .; }

# --- 1. every .nix file parses ---------------------------------------------------------

mapfile -t nixfiles < <(find . \( -name '.build*' -o -name .git -o -name .demo \) -prune -o -name '*.nix' -type f -print | sort)
parse_errors=""
for f in "${nixfiles[@]}"; do
    if ! out=$(nix-instantiate --parse "$f" 2>&1 >/dev/null); then
        parse_errors+="$f: $out"$'\n'
    fi
done
if [ ${#nixfiles[@]} -lt 7 ]; then
    bad "parse: expected at least 7 .nix files, found ${#nixfiles[@]}: ${nixfiles[*]}"
elif [ -n "$parse_errors" ]; then
    bad "parse: nix-instantiate --parse failed" "$parse_errors"
else
    ok "parse: ${#nixfiles[@]} .nix files (${nixfiles[*]})"
fi

# --- 1b. Nix pins of the Swift dependencies ------------------------------------------------
#
# Package.resolved is tracked; nix/swiftpm2nix/ has one hash per dependency; the package uses
# them. scripts/update-nix-pins --check recomputes every hash from SwiftPM's checkouts (in the
# scratch folder the binary was built in: DM_BIN=<scratch>/debug/data-mesher, or
# DM_SCRATCH=<folder>) and fails on drift or when Package.swift, Package.resolved and the pins
# disagree.

if git ls-files --error-unmatch Package.resolved nix/swiftpm2nix/default.nix nix/swiftpm2nix/workspace-state.json >/dev/null 2>&1; then
    ok "pins: Package.resolved and nix/swiftpm2nix/ are tracked by git"
elif [ ! -d .git ] && [ ! -f .git ]; then
    skip "pins: not a git checkout; cannot tell whether Package.resolved is tracked"
else
    bad "pins: Package.resolved or nix/swiftpm2nix/ is not tracked by git" "$(git status --short --ignored Package.resolved nix/swiftpm2nix 2>&1)"
fi

scratch=${DM_SCRATCH:-}
if [ -z "$scratch" ]; then
    d=$(dirname "$DM_BIN")
    for _ in 1 2 3; do
        d=$(dirname "$d")
        if [ -f "$d/workspace-state.json" ] && [ -d "$d/checkouts" ]; then
            scratch=$d
            break
        fi
    done
fi
if [ -z "$scratch" ]; then
    bad "pins: no SwiftPM scratch folder (workspace-state.json, checkouts/) above DM_BIN=$DM_BIN; set DM_SCRATCH"
elif out=$(bash scripts/update-nix-pins --check --scratch-path "$scratch" 2>&1); then
    ok "pins: $(tail -n 1 <<<"$out" | sed 's/^update-nix-pins: --check: //')"
else
    bad "pins: scripts/update-nix-pins --check --scratch-path $scratch" "$out"
fi

# The check must be able to fail: a changed hash, a revision that disagrees with
# Package.resolved, and a Package.swift that needs a newer version are each reported.
pins_copy="$WORK/pins-repo"
if [ -n "$scratch" ]; then
    mkdir -p "$pins_copy/scripts" "$pins_copy/nix"
    cp scripts/update-nix-pins "$pins_copy/scripts/"
    cp Package.swift Package.resolved "$pins_copy/"
    cp -r nix/swiftpm2nix "$pins_copy/nix/"
    chmod -R u+w "$pins_copy"
    abs_scratch=$(realpath "$scratch")
    # pins_mutation NAME FILE SED-EXPR EXPECTED-TEXT
    pins_mutation() {
        local name=$1 file=$2 expr=$3 text=$4 out
        cp "$file" "$WORK/pins-saved"
        sed -i -E "$expr" "$pins_copy/$file"
        if cmp -s "$file" "$pins_copy/$file"; then
            bad "pins: mutation '$name' changed nothing ($expr)"
        elif out=$(bash "$pins_copy/scripts/update-nix-pins" --check --scratch-path "$abs_scratch" 2>&1); then
            bad "pins: --check passed although $name" "$out"
        elif grep -qF -- "$text" <<<"$out"; then
            ok "pins: --check fails when $name"
        else
            bad "pins: --check failed without saying '$text' when $name" "$out"
        fi
        cp "$WORK/pins-saved" "$pins_copy/$file"
    }
    pins_mutation "a hash drifts" nix/swiftpm2nix/default.nix \
        '0,/"swift-log" = "sha256-[^"]{4}/s//"swift-log" = "sha256-AAAA/' "hash of swift-log at"
    pins_mutation "the Nix pins name another revision than Package.resolved" nix/swiftpm2nix/workspace-state.json \
        '0,/"revision": "[0-9a-f]{40}"/s//"revision": "0000000000000000000000000000000000000000"/' "disagree"
    pins_mutation "Package.swift needs a newer version than is pinned" Package.swift \
        's|(swift-log.git", from: )"[^"]*"|\1"9.0.0"|' "Package.resolved pins"
fi

# The package takes its sources from the pins: one fetchgit per dependency with the pinned
# url, revision and hash, each linked into .build/checkouts by the configure phase.
if out=$(nix_eval "$ROOT/tests-nix/package-eval.nix" 2>&1) &&
    [ "$(jq '.sources | length' <<<"$out")" = "$(jq '.object.dependencies | length' nix/swiftpm2nix/workspace-state.json)" ] &&
    gen=$(nix_eval -E "(import $ROOT/nix/swiftpm2nix).hashes" 2>&1) &&
    jq -e --slurpfile ws nix/swiftpm2nix/workspace-state.json --argjson hashes "$gen" '
        . as $pkg | all($ws[0].object.dependencies[]; . as $d
          | $pkg.sources[$d.subpath] == { url: $d.packageRef.location, rev: $d.state.checkoutState.revision, hash: $hashes[$d.subpath] }
          and ($pkg.configurePhase | contains("ln -s \u0027/nix/store/fetched-" + $d.state.checkoutState.revision + "\u0027 \u0027.build/checkouts/" + $d.subpath + "\u0027")))
        and ($pkg.configurePhase | contains("./.build/workspace-state.json"))' <<<"$out" >/dev/null; then
    ok "package.nix: fetches every pinned dependency (url, revision, hash from nix/swiftpm2nix) and links it into .build/checkouts"
else
    bad "package.nix: sources from the pins" "$out"
fi

# --- 2. lib.nix on its own ---------------------------------------------------------------

if out=$(nix_eval -E "builtins.attrNames (import $ROOT/nix/lib.nix)" 2>&1) &&
    jq -e 'contains(["toTOML", "roleSettingsToDmSettings", "renderDmToml", "v1RoleMessage"])' <<<"$out" >/dev/null 2>&1; then
    ok "lib.nix evaluates on its own and exports toTOML, roleSettingsToDmSettings, renderDmToml, v1RoleMessage"
else
    bad "lib.nix evaluates on its own" "$out"
fi

# expect_eval NAME EXPECTED-FILE NIX-ARGS...  — the string the expression yields is exactly the file.
expect_eval() {
    local name=$1 expected=$2
    shift 2
    local out
    if ! out=$(nix_eval "$@" 2>&1); then
        bad "$name" "$out"
        return
    fi
    json_raw <<<"$out" >"$WORK/got"
    if cmp -s "$WORK/got" "$expected"; then
        ok "$name"
    else
        bad "$name" "$(diff -u "$expected" "$WORK/got")"
    fi
}

# expect_throw NAME TEXT NIX-ARGS...  — evaluation fails, and its error has TEXT.
expect_throw() {
    local name=$1 text=$2
    shift 2
    local out
    if out=$(nix_eval "$@" 2>&1); then
        bad "$name" "evaluation succeeded where it should fail: $out"
    elif grep -qF -- "$text" <<<"$out"; then
        ok "$name"
    else
        bad "$name" "error without the expected text ($text): $out"
    fi
}

K1=azwT+VhTxA+BF73Hwq0uqdXHG8XvHU2BknoVXgmEjww=
K2=Mdtz9s2DEyEk0DL8ZzW7WqwAehoQ97PFHVbJJdskkGo=

# --- 3. toTOML: a tricky [files] map, escaping -------------------------------------------

cat >"$WORK/files.expected" <<EOF
[files]
"deploy:web/target.json" = ["$K1", "$K2"]
"dns/cnames" = ["$K2"]
EOF
expect_eval "toTOML: [files] keys with ':' and '/' are quoted, lists in order" "$WORK/files.expected" \
    -E "(import $ROOT/nix/lib.nix).toTOML { files = { \"dns/cnames\" = [ \"$K2\" ]; \"deploy:web/target.json\" = [ \"$K1\" \"$K2\" ]; }; }"

cat >"$WORK/escape.expected" <<'EOF'
"a b" = true
count = -3
empty = []
nested = [[1, 2], ["x"], { "k:1" = "v" }]
ratio = 1.5
s = "q\"b\\n\nt\tc\u0001\u007Fé ${x} $y"
whole = 2.0

[cluster]
port = 7946

[cluster.encryption]
enable = false

[empty_table]

[http]
interfaces = ["lo"]
EOF
expect_eval "toTOML: escapes, numbers, booleans, nested arrays, inline tables, empty tables, nulls left out" \
    "$WORK/escape.expected" -E "
      let c = builtins.fromJSON ''\"\\u0001\\u007f\"''; in
      (import $ROOT/nix/lib.nix).toTOML {
        s = \"q\\\"b\\\\n\\nt\\tc\${c}é \\\${x} \$y\";
        \"a b\" = true; count = -3; ratio = 1.5; whole = 2.0; empty = [ ]; gone = null;
        nested = [ [ 1 2 ] [ \"x\" ] { \"k:1\" = \"v\"; skip = null; } ];
        cluster = { port = 7946; encryption = { enable = false; keyring = null; }; };
        empty_table = { };
        http.interfaces = [ \"lo\" ];
      }"

expect_throw "toTOML: a function is refused with the key named" "toTOML: a.b: a lambda cannot be written" \
    -E "(import $ROOT/nix/lib.nix).toTOML { a.b = x: x; }"

# --- 4. the seed inventory -> dm.toml ------------------------------------------------------

STATE="$WORK/state"
mkdir -p "$STATE"
cat >"$WORK/seed.expected" <<EOF
log_level = "info"
state_dir = "$STATE"

[cluster]
bootstrap_nodes = ["192.168.1.1:7946", "192.168.1.2:7946"]
interfaces = ["eth1"]
join_interval = "30s"
port = 7946
push_pull_interval = "30s"

[files]
"config:app" = ["$K1"]
"shared:data" = ["$K1", "$K2"]

[http]
interfaces = ["lo"]
port = 7331
EOF
SEED_EXPR="{ stateDir }: (import $ROOT/nix/lib.nix).renderDmToml {
  settings = (import $ROOT/tests-nix/seed-inventory.nix).data-mesher.roles.default.settings;
  inherit stateDir;
}"
expect_eval "seed inventory: roles.default.settings -> dm.toml text" "$WORK/seed.expected" \
    -E "$SEED_EXPR" --argstr stateDir "$STATE"
cp "$WORK/got" "$WORK/seed.toml"

# --- 5. clan service: bootstrap role, v1 roles, removed settings ---------------------------

# Bootstrap machines (reached as <name>.<domain>) merged with bootstrapNodes and
# extraBootstrapNodes: own name left out, duplicates dropped, order kept.
out=$(nix_eval "$ROOT/tests-nix/clan-eval.nix" --argstr machine alpha --argstr domain clan \
    --arg settings '{ interfaces = [ "eth1" ]; bootstrapNodes = [ "192.168.1.1:7946" ]; extraBootstrapNodes = [ "[fd00::9]:7946" "192.168.1.1:7946" ]; }' \
    --arg roles '{ default.machines = { alpha = { }; beta = { }; gamma = { }; delta = { }; }; bootstrap.machines = { alpha = { }; beta = { }; gamma = { }; }; }' 2>&1)
want='["192.168.1.1:7946","beta.clan:7946","gamma.clan:7946","[fd00::9]:7946"]'
if [ "$(jq -c .bootstrapNodes <<<"$out" 2>/dev/null)" = "$want" ]; then
    ok "clan service: bootstrap-role machines merged with bootstrapNodes and extraBootstrapNodes ($want)"
else
    bad "clan service: bootstrap-role machines merged into bootstrap_nodes" "want $want; got: $out"
fi
if jq -e '.enable == true and .openFirewall == true and .failedAssertions == [] and (.imports | length == 1) and (.imports[0] | endswith("/nix/module.nix"))' <<<"$out" >/dev/null 2>&1 &&
    jq -e '.settings.node_name == "alpha" and .settings.cluster.encryption.enable == true' <<<"$out" >/dev/null 2>&1; then
    ok "clan service: default role imports module.nix, enables it with the firewall open, node_name = machine, encryption on"
else
    bad "clan service: default role's NixOS module" "$out"
fi

# Literal addresses (pure lib): IPv6 gets brackets, a given port stays.
expect_eval "lib: bootstrap machine addresses -> host:port (IPv4, IPv6 in brackets, own port kept, self left out)" \
    <(printf '%s' '["10.0.0.1:7000","[fd00::2]:7000","[fd00::3]:7946","b4.example:9"]') \
    -E "builtins.toJSON ((import $ROOT/nix/lib.nix).roleSettingsToDmSettings {
          settings = { interfaces = [ ]; port = 7000; };
          machineName = \"self\";
          bootstrapMachines = { b1 = \"10.0.0.1\"; b2 = \"fd00::2\"; b3 = \"[fd00::3]:7946\"; b4 = \"b4.example:9\"; self = \"10.0.0.5\"; };
        }).cluster.bootstrap_nodes"

out=$(nix_eval "$ROOT/tests-nix/clan-eval.nix" --argstr machine gamma \
    --arg settings '{ interfaces = [ "eth1" ]; }' --arg roles '{ default.machines.gamma = { }; }' 2>&1)
if jq -e '.failedAssertions | length == 1 and (.[0] | contains("no bootstrap node"))' <<<"$out" >/dev/null 2>&1; then
    ok "clan service: a machine with no bootstrap node at all fails an assertion (as clan-core's)"
else
    bad "clan service: assertion when nothing to join through" "$out"
fi
out=$(nix_eval "$ROOT/tests-nix/clan-eval.nix" --argstr machine solo \
    --arg settings '{ interfaces = [ "eth1" ]; }' --arg roles '{ default.machines.solo = { }; bootstrap.machines.solo = { }; }' 2>&1)
if jq -e '.failedAssertions == [] and .bootstrapNodes == []' <<<"$out" >/dev/null 2>&1; then
    ok "clan service: a lone bootstrap machine may start with nothing to join"
else
    bad "clan service: lone bootstrap machine" "$out"
fi

# Exports: every export's dataMesher.files merged with the role's files; lists of the same
# name concatenated (a key already listed is not repeated); exports without dataMesher skipped.
out=$(nix_eval "$ROOT/tests-nix/clan-eval.nix" --argstr machine alpha \
    --arg settings '{ interfaces = [ "eth1" ]; extraBootstrapNodes = [ "b:7946" ]; files = { "config:app" = [ "'$K1'" ]; }; }' \
    --arg roles '{ default.machines.alpha = { }; }' \
    --arg exports '{ "dm-dns:::" = { dataMesher.files = { "dns/cnames" = [ "'$K2'" ]; "config:app" = [ "'$K2'" "'$K1'" ]; }; };
                     "other:::" = { networking.priority = 900; };
                     "dm-deploy:::" = { dataMesher = null; }; }' 2>&1)
want='{"config:app":["'$K1'","'$K2'"],"dns/cnames":["'$K2'"]}'
if [ "$(jq -c '.settings.files' <<<"$out" 2>/dev/null)" = "$want" ]; then
    ok "clan service: exports' dataMesher.files merged with the role's files (lists of one name concatenated)"
else
    bad "clan service: exports merged into files" "want $want; got: $out"
fi

# The facts clan-core's data-mesher service has, which a clan keeps when it moves between the
# two: description, generator names, files, ownership, scripts.
out=$(nix_eval "$ROOT/tests-nix/clan-eval.nix" --argstr machine alpha --argstr domain clan \
    --arg settings '{ interfaces = [ "eth1" ]; }' --arg roles '{ default.machines = { alpha = { }; beta = { }; }; bootstrap.machines.beta = { }; }' 2>&1)
jq -n --arg v 2160h '{
  "data-mesher-ca": { share: true, dependencies: [], files: ["ca.key", "ca.pub"],
    fileAttrs: { "ca.key": { deploy: false }, "ca.pub": { secret: false } },
    script: "data-mesher generate ca --public-key-path \"$out/ca.pub\" --private-key-path \"$out/ca.key\"\n" },
  "data-mesher-node-identity": { share: false, dependencies: ["data-mesher-ca"], files: ["identity.cert", "identity.key", "identity.pub"],
    fileAttrs: { "identity.key": { owner: "data-mesher", group: "data-mesher" }, "identity.cert": { owner: "data-mesher", group: "data-mesher" }, "identity.pub": { secret: false } },
    script: ("data-mesher generate node-key --public-key-path \"$out/identity.pub\" --private-key-path \"$out/identity.key\"\n"
      + "data-mesher certificate sign --ca-key \"$in/data-mesher-ca/ca.key\" --node-key \"$out/identity.pub\" --output \"$out/identity.cert\" --validity " + $v + "\n") },
  "data-mesher-node-keyring": { share: true, dependencies: [], files: ["pre_shared_key"],
    fileAttrs: { "pre_shared_key": { owner: "data-mesher", group: "data-mesher" } },
    script: "openssl rand -base64 32 > \"$out/pre_shared_key\"\n" }
}' >"$WORK/gens.expected"
if jq -S '.generators | map_values({ share, dependencies, files, fileAttrs, script })' <<<"$out" >"$WORK/gens.got" 2>&1 &&
    diff -u <(jq -S . "$WORK/gens.expected") "$WORK/gens.got" >"$WORK/gens.diff"; then
    ok "clan service: generators data-mesher-ca, data-mesher-node-identity, data-mesher-node-keyring: files, ownership and scripts as clan-core's"
else
    bad "clan service: generators as clan-core's (- expected, + ours)" "$(cat "$WORK/gens.diff") $(head -c 400 <<<"$out")"
fi
if jq -e '.description == "Set up data-mesher"
          and .generators["data-mesher-node-keyring"].runtimeInputs == ["/nix/store/00000000000000000000000000000000-openssl"]
          and .generators["data-mesher-ca"].runtimeInputs == ["/nix/store/00000000000000000000000000000000-data-mesher"]
          and .settings.cluster.join_interval == "30s" and .settings.cluster.push_pull_interval == "30s"
          and .settings.http == { port: 7331, interfaces: ["lo"] }
          and .settings.cluster.encryption.keyring == [ "/run/vars/data-mesher-node-keyring/pre_shared_key" ]
          and .bootstrapNodes == ["beta.clan:7946"]' <<<"$out" >/dev/null 2>&1; then
    ok "clan service: description \"Set up data-mesher\", openssl for the keyring, 30s intervals, http on lo:7331, keyring = pre_shared_key"
else
    bad "clan service: description, runtime inputs, settings" "$out"
fi
out=$(nix_eval "$ROOT/tests-nix/clan-eval.nix" --argstr machine alpha \
    --arg settings '{ interfaces = [ "eth1" ]; certificateValidity = "720h"; extraBootstrapNodes = [ "b:1" ]; }' --arg roles '{ default.machines.alpha = { }; }' 2>&1)
if jq -e '.generators["data-mesher-node-identity"].script | endswith("--validity 720h\n")' <<<"$out" >/dev/null 2>&1 &&
    jq -e '.settings | has("certificateValidity") | not' <<<"$out" >/dev/null 2>&1; then
    ok "clan service: certificateValidity is what the identity generator signs for"
else
    bad "clan service: certificateValidity" "$out"
fi

out=$(nix_eval -E "let s = import $ROOT/nix/clan-service.nix { }; m = (s.roles.bootstrap.perInstance {
        roles = { bootstrap.machines.b = { }; default.machines.a = { }; }; machine.name = \"b\"; }).nixosModule;
      in map (a: a.message) (builtins.filter (a: !a.assertion) m.assertions)" 2>&1)
if jq -e 'length == 1 and (.[0] | contains("not in role '"'"'default'"'"'"))' <<<"$out" >/dev/null 2>&1; then
    ok "clan service: a bootstrap machine outside role 'default' fails an assertion that says so"
else
    bad "clan service: bootstrap machine must be in role default" "$out"
fi

for role in admin peer signer; do
    out=$(nix_eval -E "let r = (import $ROOT/nix/clan-service.nix { }).roles.$role; m = (r.perInstance { settings = { }; roles = { }; machine.name = \"m\"; }).nixosModule;
          in { interface = r.interface; failed = map (a: a.message) (builtins.filter (a: !a.assertion) m.assertions); }" 2>&1)
    if jq -e --arg r "$role" '.interface == {} and (.failed | length == 1)
            and (.failed[0] | startswith("data-mesher v2: role \u0027" + $r + "\u0027 was removed; use role \u0027default\u0027 (and \u0027bootstrap\u0027"))' <<<"$out" >/dev/null 2>&1; then
        ok "clan service: v1 role '$role' takes no settings and fails with the migration message"
    else
        bad "clan service: v1 role '$role'" "$out"
    fi
done
expect_throw "lib: checkRoles names a v1 role that has machines" "data-mesher v2: role 'peer' was removed" \
    -E "(import $ROOT/nix/lib.nix).checkRoles { default.machines.a = { }; admin.machines = { }; peer.machines.b = { }; }"
expect_throw "lib: v1 setting network.interface fails with what replaces it" "use 'interfaces' (a list) instead of 'network.interface'" \
    -E "(import $ROOT/nix/lib.nix).renderDmToml { settings = { interfaces = [ ]; network.interface = \"eth0\"; }; }"
expect_throw "lib: a logLevel outside fatal|error|warn|info|debug is refused" 'logLevel "verbose" is not one of' \
    -E "(import $ROOT/nix/lib.nix).renderDmToml { settings = { interfaces = [ ]; logLevel = \"verbose\"; }; }"
expect_throw "lib: interfaces is required" "setting 'interfaces' is required" \
    -E "(import $ROOT/nix/lib.nix).renderDmToml { settings = { }; }"
expect_throw "lib: half an identity (key without cert) is refused" "must be set together" \
    -E "(import $ROOT/nix/lib.nix).renderDmToml { settings = { interfaces = [ ]; }; encryption = { keyring = [ \"/k\" ]; identityKey = \"/i\"; }; }"

# --- 6. module.nix (stub lib) against contrib/systemd --------------------------------------

MOD_SETTINGS='{ log_level = "info"; state_dir = "/var/lib/data-mesher"; cluster = { port = 7000; interfaces = [ "eth1" ]; bootstrap_nodes = [ "192.168.1.1:7946" ]; }; files = { "config:app" = [ "'$K1'" ]; }; }'
if out=$(nix_eval "$ROOT/tests-nix/module-eval.nix" --arg settings "$MOD_SETTINGS" 2>&1); then
    jq -j .unitLines <<<"$out" >"$WORK/module.lines"
    grep -E '^[A-Za-z]+=' contrib/systemd/data-mesher.service | sort >"$WORK/contrib.lines"
    if cmp -s "$WORK/module.lines" "$WORK/contrib.lines"; then
        ok "module.nix: the unit's directives equal contrib/systemd/data-mesher.service's ($(wc -l <"$WORK/module.lines") lines)"
    else
        bad "module.nix: unit directives differ from contrib/systemd/data-mesher.service (- module, + contrib)" \
            "$(diff -u "$WORK/module.lines" "$WORK/contrib.lines")"
    fi
    missing=""
    for line in 'User=data-mesher' 'Group=data-mesher' 'StateDirectory=data-mesher' 'StateDirectoryMode=0750' \
        'Restart=on-failure' 'NoNewPrivileges=true' 'ProtectSystem=strict' 'ProtectHome=true' 'PrivateTmp=true' \
        'PrivateDevices=true' 'CapabilityBoundingSet=' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK' \
        'SystemCallFilter=@system-service' 'LockPersonality=true' \
        'ExecStart=/usr/local/bin/data-mesher server --config /etc/data-mesher/dm.toml' \
        'ExecStartPre=/usr/local/bin/data-mesher server --check-config --config /etc/data-mesher/dm.toml'; do
        grep -qxF -- "$line" "$WORK/module.lines" || missing+="$line"$'\n'
    done
    grep -q '^MemoryDenyWriteExecute=' "$WORK/module.lines" && missing+="MemoryDenyWriteExecute must stay off"$'\n'
    if [ -z "$missing" ]; then
        ok "module.nix: user/group, state directory 0750, restart, hardening, check-config before start"
    else
        bad "module.nix: unit directives" "$missing"
    fi
    want=$(nix_eval -E "(import $ROOT/nix/lib.nix).toTOML ($MOD_SETTINGS)" 2>&1 | json_raw)
    if [ "$(jq -j .etcText <<<"$out")" = "$want" ] &&
        jq -e '.config.networking.firewall == { allowedTCPPorts: [7000], allowedUDPPorts: [7000] }
               and .config.users.users["data-mesher"].isSystemUser == true
               and .config.users.groups["data-mesher"] == {}
               and .failedAssertions == []
               and .optionDefaults.openFirewall == false
               and .optionDefaults.configFile == "/etc/data-mesher/dm.toml"' <<<"$out" >/dev/null; then
        ok "module.nix: /etc/data-mesher/dm.toml is toTOML of settings; firewall opens the cluster port (UDP+TCP); static user and group"
    else
        bad "module.nix: etc file, firewall, users" "$out"
    fi
else
    bad "module.nix evaluates with the stub lib" "$out"
fi
out=$(nix_eval "$ROOT/tests-nix/module-eval.nix" --arg openFirewall false \
    --arg settings '{ log_level = "info"; state_dir = "/srv/dm"; cluster.port = 7946; files = { }; }' 2>&1)
if jq -e '.config.systemd.services["data-mesher"].serviceConfig | (has("StateDirectory") | not) and .ReadWritePaths == ["/srv/dm"]' <<<"$out" >/dev/null 2>&1 &&
    jq -e '.tmpfiles == ["d /srv/dm 0750 data-mesher data-mesher -"] and (.config.networking.firewall // null) == null' <<<"$out" >/dev/null 2>&1; then
    ok "module.nix: a state_dir outside /var/lib becomes ReadWritePaths plus a tmpfiles rule; openFirewall = false opens nothing"
else
    bad "module.nix: state_dir outside /var/lib, firewall closed" "$out"
fi

# --- 7. contrib/systemd: systemd-analyze verify -------------------------------------------

if command -v systemd-analyze >/dev/null 2>&1; then
    # verify wants the ExecStart binary to exist: point it at a stand-in.
    mkdir -p "$WORK/unit"
    printf '#!/bin/sh\nexit 0\n' >"$WORK/unit/data-mesher"
    chmod 755 "$WORK/unit/data-mesher"
    sed "s|/usr/local/bin/data-mesher|$WORK/unit/data-mesher|g" contrib/systemd/data-mesher.service >"$WORK/unit/data-mesher.service"
    if out=$(systemd-analyze verify "$WORK/unit/data-mesher.service" 2>&1) && [ -z "$out" ]; then
        ok "contrib/systemd/data-mesher.service: systemd-analyze verify is silent"
    elif grep -qiE 'Failed to (initialize|connect|setup)|System has not been booted|Operation not permitted' <<<"$out"; then
        skip "systemd-analyze verify cannot run here: $(head -n 1 <<<"$out")"
    else
        bad "contrib/systemd/data-mesher.service: systemd-analyze verify" "$out"
    fi
    if out=$(systemd-analyze security --offline=true "$WORK/unit/data-mesher.service" 2>&1); then
        level=$(sed -nE 's/.*Overall exposure level for [^:]*: ([0-9.]+).*/\1/p' <<<"$out")
        if [ -n "$level" ] && awk -v l="$level" 'BEGIN { exit !(l <= 2.5) }'; then
            ok "contrib/systemd/data-mesher.service: systemd-analyze security exposure $level (at most 2.5)"
        else
            bad "contrib/systemd/data-mesher.service: exposure level ${level:-unknown} above 2.5" "$(tail -n 30 <<<"$out")"
        fi
    else
        skip "systemd-analyze security --offline is not supported here"
    fi
else
    skip "systemd-analyze is not installed; contrib/systemd/data-mesher.service not verified"
fi

# --- 8. the real binary: vars generators; --check-config in a namespace with eth1 ---------

netns_part() {
    if [ "$(id -u)" != 0 ]; then
        skip "check-config in a network namespace needs root"
        return
    fi
    NS="dmnix$$"
    if ! ip netns add "$NS" 2>/dev/null; then
        NS=""
        skip "ip netns add failed; check-config with eth1 not run"
        return
    fi
    # eth1: a dummy interface where the kernel has the module, else one end of a veth pair
    # whose other end stays in the same namespace.
    if ! { ip -n "$NS" link set lo up &&
        { ip -n "$NS" link add eth1 type dummy 2>/dev/null ||
            { ip -n "$NS" link add eth1 type veth peer name eth1peer && ip -n "$NS" link set eth1peer up; }; } &&
        ip -n "$NS" addr add 192.168.1.5/24 dev eth1 && ip -n "$NS" link set eth1 up; } 2>"$WORK/ns.err"; then
        bad "check-config: could not set up eth1 in namespace $NS" "$(cat "$WORK/ns.err")"
        return
    fi

    # check NAME CONFIG WANT-STATUS [GREP-PATTERN...]
    check() {
        local name=$1 config=$2 want=$3
        shift 3
        local out status pattern
        out=$(ip netns exec "$NS" timeout 60 "$DM_BIN" server --check-config --config "$config" 2>&1)
        status=$?
        if [ "$status" != "$want" ]; then
            bad "$name" "exit $status (want $want); output:"$'\n'"$out"$'\n'"config:"$'\n'"$(cat "$config")"
            return
        fi
        for pattern in "$@"; do
            if ! grep -qE -- "$pattern" <<<"$out"; then
                bad "$name" "output lacks /$pattern/:"$'\n'"$out"
                return
            fi
        done
        ok "$name"
    }

    check "check-config: the seed's dm.toml is valid (eth1 in a namespace)" "$WORK/seed.toml" 0 \
        '^config .*: valid' '192\.168\.1\.1:7946' '192\.168\.1\.2:7946' 'files: 2 names' 'config:app' 'shared:data'

    # It can fail: an unknown interface, and a bad key, are refused.
    sed 's/interfaces = \["eth1"\]/interfaces = ["eth9"]/' "$WORK/seed.toml" >"$WORK/bad-if.toml"
    check "check-config: the same config naming a missing interface (eth9) is refused" "$WORK/bad-if.toml" 1 'interfaces.*eth9'
    sed 's/"config:app" = \[".*"\]/"config:app" = ["not-base64!"]/' "$WORK/seed.toml" >"$WORK/bad-key.toml"
    check "check-config: the same config with a bad public key is refused" "$WORK/bad-key.toml" 1 'files\."config:app".*base64'

    # Tricky names and an escaped node name survive toTOML -> the daemon's TOML reader.
    if out=$(nix_eval -E "{ stateDir }: (import $ROOT/nix/lib.nix).toTOML {
            state_dir = stateDir; node_name = \"q\\\"b\\\\s é\";
            cluster.interfaces = [ \"eth1\" ];
            files = { \"dns/cnames\" = [ \"$K2\" ]; \"deploy:web/target.json\" = [ \"$K1\" \"$K2\" ]; };
          }" --argstr stateDir "$STATE" 2>&1); then
        json_raw <<<"$out" >"$WORK/tricky.toml"
        check "check-config: names with ':' and '/' and an escaped node name read back as written" "$WORK/tricky.toml" 0 \
            'files: 2 names' 'deploy:web/target\.json' 'dns/cnames' 'node: q"b\\s é'
    else
        bad "toTOML for the tricky config" "$out"
    fi

    if [ "$VARS_OK" = 1 ]; then
        check "check-config: the clan service's dm.toml with the generated keyring, identity and CA" "$WORK/clan.toml" 0 \
            '^config .*: valid' '^node: alpha' '^encryption: .*keyring of 1 key' 'identity "identity" valid until' '1 CA key'
        check_config_refusals
    fi

    hardened_run
}

# --check-config refuses, with one line naming the key: a state_dir the daemon's user cannot
# write, and a certificate that has expired.
check_config_refusals() {
    local dir="$WORK/refusals" out status
    mkdir -p "$dir/state-root"
    chmod 755 "$dir" "$dir/state-root" # owned by root: uid 65534 may enter but not write
    sed "s|^state_dir = .*|state_dir = \"$dir/state-root\"|" "$WORK/clan.toml" >"$dir/dm.toml"
    chmod 644 "$dir/dm.toml"
    # the unprivileged user must be able to read the key files the config names: copies
    mkdir -p "$dir/vars"
    cp -r "$WORK/vars/." "$dir/vars/"
    chmod -R a+rX "$dir/vars"
    sed -i "s|$WORK/vars/|$dir/vars/|g" "$dir/dm.toml"
    local bin=$DM_BIN
    if ! setpriv --reuid 65534 --regid 65534 --clear-groups test -x "$bin"; then
        cp "$DM_BIN" "$dir/data-mesher" && chmod 755 "$dir/data-mesher"
        bin="$dir/data-mesher"
    fi
    out=$(ip netns exec "$NS" setpriv --reuid 65534 --regid 65534 --clear-groups timeout 60 "$bin" server --check-config --config "$dir/dm.toml" 2>&1)
    status=$?
    if [ "$status" = 1 ] && [ "$(wc -l <<<"$out")" = 1 ] && grep -qE "^data-mesher: state_dir: $dir/state-root is not writable by this user \(uid 65534\)" <<<"$out"; then
        ok "check-config: a state_dir the daemon's user cannot write is refused in one line naming state_dir"
    else
        bad "check-config: unwritable state_dir (exit $status)" "$out"
    fi
    # The same user with a state_dir it owns: valid (so the refusal above was about the folder).
    chown 65534:65534 "$dir/state-root"
    if out=$(ip netns exec "$NS" setpriv --reuid 65534 --regid 65534 --clear-groups timeout 60 "$bin" server --check-config --config "$dir/dm.toml" 2>&1) &&
        [ -z "$(find "$dir/state-root" -mindepth 1)" ]; then
        ok "check-config: the same state_dir owned by the daemon's user is valid, and the probe file is gone"
    else
        bad "check-config: writable state_dir" "$out $(ls -la "$dir/state-root")"
    fi
    # A certificate that has ended: signed for 1s, checked 2s later.
    "$DM_BIN" certificate sign --ca-key "$WORK/vars/data-mesher-ca/ca.key" --node-key "$dir/vars/data-mesher-node-identity/identity.pub" \
        --output "$dir/short.cert" --validity 1s >/dev/null 2>&1
    sleep 2
    sed "s|$dir/vars/data-mesher-node-identity/identity.cert|$dir/short.cert|" "$dir/dm.toml" >"$dir/expired.toml"
    out=$(ip netns exec "$NS" timeout 60 "$DM_BIN" server --check-config --config "$dir/expired.toml" 2>&1)
    status=$?
    if [ "$status" = 1 ] && [ "$(wc -l <<<"$out")" = 1 ] &&
        grep -qE "^data-mesher: cluster.encryption.identity_cert: $dir/short.cert: certificate expired at" <<<"$out"; then
        ok "check-config: an expired own certificate is refused in one line naming identity_cert"
    else
        bad "check-config: expired certificate (exit $status)" "$out"
    fi
}

# The daemon under the unit's sandbox, as far as it can be rebuilt without systemd: an
# unprivileged user with no capabilities and no_new_privs (User=, CapabilityBoundingSet=,
# NoNewPrivileges=), and the unit's system-call and address-family filters
# (tests-nix/seccomp_exec.py). It must start, serve, take an upload, write the file 0640,
# and stop on SIGTERM.
hardened_run() {
    local name="hardened: the daemon runs as an unprivileged user under the unit's seccomp filters"
    if ! /usr/bin/python3 -c 'import seccomp' >/dev/null 2>&1 || ! command -v setpriv >/dev/null 2>&1 ||
        ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
        skip "hardened run needs python3-seccomp, setpriv, systemd-analyze and curl"
        return
    fi
    local dir="$WORK/hard" bin="$DM_BIN" out pub code
    mkdir -p "$dir/state"
    chown 65534:65534 "$dir/state"
    chmod 750 "$dir/state"
    # the unprivileged user must be able to run the binary where it is; else use a copy
    if ! setpriv --reuid 65534 --regid 65534 --clear-groups test -x "$bin"; then
        cp "$DM_BIN" "$dir/data-mesher" && chmod 755 "$dir/data-mesher"
        bin="$dir/data-mesher"
    fi
    # ... and read the seccomp wrapper: the clone may sit in a folder only its owner can enter
    # (a home folder of mode 0700), so it gets a copy in the test's world-readable folder.
    cp "$ROOT/tests-nix/seccomp_exec.py" "$dir/seccomp_exec.py" && chmod 644 "$dir/seccomp_exec.py"
    if ! out=$("$DM_BIN" generate keypair --private-key-path "$dir/signing.key" --public-key-path "$dir/signing.pub" 2>&1) ||
        ! pub=$("$DM_BIN" key public "$dir/signing.key" 2>&1); then
        bad "$name" "generate keypair / key public: $out $pub"
        return
    fi
    if ! out=$(nix_eval -E "{ stateDir, pub }: (import $ROOT/nix/lib.nix).renderDmToml {
            settings = { interfaces = [ \"eth1\" ]; bootstrapNodes = [ \"192.168.1.1:7946\" ]; files.\"config:app\" = [ pub ]; logLevel = \"debug\"; };
            inherit stateDir; machineName = \"hardened\";
          }" --argstr stateDir "$dir/state" --argstr pub "$pub" 2>&1); then
        bad "$name" "render: $out"
        return
    fi
    json_raw <<<"$out" >"$dir/dm.toml"
    chmod 644 "$dir/dm.toml"
    ip netns exec "$NS" setpriv --reuid 65534 --regid 65534 --clear-groups --bounding-set -all --inh-caps -all \
        --no-new-privs /usr/bin/python3 "$dir/seccomp_exec.py" -- "$bin" server --config "$dir/dm.toml" \
        >"$dir/log" 2>&1 </dev/null &
    DAEMON_PID=$!
    code=""
    for _ in $(seq 1 120); do
        code=$(ip netns exec "$NS" curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://127.0.0.1:7331/v1/info 2>/dev/null)
        [ "$code" = 200 ] && break
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.5
    done
    if [ "$code" != 200 ]; then
        bad "$name" "the API did not answer (last HTTP code '${code}'); daemon log:"$'\n'"$(tail -n 40 "$dir/log")"
        return
    fi
    printf 'hardened payload %s\n' "$$" >"$dir/payload"
    if ! out=$(ip netns exec "$NS" timeout 30 "$DM_BIN" file update "$dir/payload" --name config:app \
        --key "$dir/signing.key" --url http://127.0.0.1:7331 2>&1); then
        bad "$name" "upload refused: $out"$'\n'"$(tail -n 40 "$dir/log")"
        return
    fi
    # The seed's example uploads /tmp/myfile, whose name defaults to "myfile": the refusal says
    # which names the node takes and how to choose one.
    printf 'x\n' >"$dir/myfile"
    if out=$(ip netns exec "$NS" timeout 30 "$DM_BIN" file update "$dir/myfile" --key "$dir/signing.key" \
        --url http://127.0.0.1:7331 2>&1); then
        bad "file update of a name not in [files] was accepted" "$out"
    elif grep -qF 'configured names: "config:app" (the name defaults to the file'"'"'s base name; choose one with --name NAME)' <<<"$out" &&
        [ "$(wc -l <<<"$out")" = 1 ]; then
        ok "file update of a name not in [files]: one line listing the configured names and suggesting --name"
    else
        bad "file update of a name not in [files]: refusal without the names or --name" "$out"
    fi
    ip netns exec "$NS" curl -s --max-time 5 -o "$dir/fetched" http://127.0.0.1:7331/v1/files/config:app
    if ! cmp -s "$dir/payload" "$dir/fetched"; then
        bad "$name" "GET /v1/files/config:app did not return the upload"$'\n'"$(tail -n 40 "$dir/log")"
        return
    fi
    local mode owner
    mode=$(stat -c %a "$dir/state/files/config:app" 2>/dev/null)
    owner=$(stat -c %u "$dir/state/files/config:app" 2>/dev/null)
    if [ "$mode" != 640 ] || [ "$owner" != 65534 ]; then
        bad "$name" "stored file mode '$mode' owner '$owner' (want 640, 65534)"
        return
    fi
    kill -TERM "$DAEMON_PID"
    local status=""
    for _ in $(seq 1 60); do
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        bad "$name" "the daemon did not stop within 30 s of SIGTERM"$'\n'"$(tail -n 20 "$dir/log")"
        return
    fi
    wait "$DAEMON_PID"
    status=$?
    DAEMON_PID=""
    if [ "$status" != 0 ]; then
        bad "$name" "exit status $status after SIGTERM"$'\n'"$(tail -n 20 "$dir/log")"
        return
    fi
    if grep -qiE 'operation not permitted|EPERM|address family not supported' "$dir/log"; then
        bad "$name" "the log mentions a refused system call:"$'\n'"$(grep -iE 'operation not permitted|EPERM|address family' "$dir/log" | head)"
        return
    fi
    ok "$name (served, stored an upload 0640, stopped cleanly on SIGTERM)"
}

# The clan service's vars generators, run the way clan runs them ($out, $in), with the real
# binary (no root needed); netns_part then checks the dm.toml that points at their files.
VARS_OK=0
vars_part() {
    local gens out
    if ! out=$(nix_eval "$ROOT/tests-nix/clan-eval.nix" --argstr machine alpha \
        --argstr varsDir "$WORK/vars" --arg overrides "{ state_dir = \"$STATE\"; }" \
        --arg settings "(import $ROOT/tests-nix/seed-inventory.nix).data-mesher.roles.default.settings" \
        --arg roles '{ default.machines.alpha = { }; bootstrap.machines.alpha = { }; }' 2>&1); then
        bad "vars: clan service evaluation" "$out"
        return
    fi
    jq -j .toml <<<"$out" >"$WORK/clan.toml"
    printf '%s' "$out" >"$WORK/clan.json"
    jq -c .generators <<<"$out" >"$WORK/generators.json"
    local ca cert
    ca=$(jq -r '.settings.cluster.encryption.certificate_authorities[0]' <<<"$out")
    cert=$(jq -r '.settings.cluster.encryption.identity_cert' <<<"$out")
    mkdir -p "$WORK/bin" "$WORK/vars"
    ln -sf "$DM_BIN" "$WORK/bin/data-mesher"
    mapfile -t gens < <(jq -r 'keys[]' "$WORK/generators.json")
    # dependencies first: at most as many rounds as there are generators
    local done_list=" " gen deps dep ready script file missing
    for _ in $(seq 1 ${#gens[@]}); do
        for gen in "${gens[@]}"; do
            [[ $done_list == *" $gen "* ]] && continue
            ready=1
            mapfile -t deps < <(jq -r --arg g "$gen" '.[$g].dependencies[]' "$WORK/generators.json")
            for dep in "${deps[@]}"; do [[ $done_list == *" $dep "* ]] || ready=0; done
            [ "$ready" = 1 ] || continue
            script=$(jq -r --arg g "$gen" '.[$g].script' "$WORK/generators.json")
            mkdir -p "$WORK/vars/$gen"
            if ! out=$(cd "$WORK" && PATH="$WORK/bin:$PATH" out="$WORK/vars/$gen" in="$WORK/vars" \
                timeout 120 bash -euo pipefail -c "$script" 2>&1); then
                bad "vars: generator $gen's script failed" "$out"$'\n'"script:"$'\n'"$script"
                return
            fi
            missing=""
            while read -r file; do
                [ -s "$WORK/vars/$gen/$file" ] || missing+=" $file"
            done < <(jq -r --arg g "$gen" '.[$g].files[]' "$WORK/generators.json")
            if [ -n "$missing" ]; then
                bad "vars: generator $gen did not write:$missing"
                return
            fi
            done_list+="$gen "
        done
    done
    if [ "$(wc -w <<<"$done_list")" != "${#gens[@]}" ]; then
        bad "vars: generators left unrun (a dependency cycle or unknown dependency): have$done_list of ${gens[*]}"
        return
    fi
    ok "vars: the ${#gens[@]} generators' scripts (${gens[*]}) run with the real binary and write every declared file"
    local keyring bytes
    keyring=$(jq -r '.settings.cluster.encryption.keyring[0]' "$WORK/clan.json")
    bytes=$(base64 -d <"$keyring" 2>/dev/null | wc -c)
    if [ "$bytes" = 32 ]; then
        ok "vars: the keyring file holds the base64 of 32 bytes"
    else
        bad "vars: keyring file $keyring decodes to $bytes bytes, not 32" "$(head -c 200 "$keyring")"
    fi
    if out=$(timeout 60 "$DM_BIN" certificate verify --ca "$ca" "$cert" 2>&1); then
        ok "vars: the node certificate verifies against the generated CA ($(head -n 1 <<<"$out"))"
        VARS_OK=1
    else
        bad "vars: certificate verify --ca $ca $cert" "$out"
    fi
}

if [ ! -x "$DM_BIN" ]; then
    bad "binary: $DM_BIN is not an executable (build first, or set DM_BIN)"
elif ! "$DM_BIN" server --help 2>&1 | grep -q -- '--check-config'; then
    bad "binary: $DM_BIN server has no --check-config option"
else
    vars_part
    netns_part
fi
finish
