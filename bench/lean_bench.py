#!/usr/bin/env python3
"""Lean daemon benchmark (issue 12.1): one idle data-mesher node beside one idle Serf agent.

Usage: lean_bench.py [--variant LABEL=BIN[,ENV=VALUE...]]... [--runs N] [--idle-s S]

For each variant (default: one, the binary chosen as in bench/README.md), one after the other,
while one Serf agent runs idle for the whole run:

  * starts one idle daemon (temporary state dir, HTTP and cluster on 127.0.4.1, no peers),
    waits --idle-s (default 5) seconds after its API answers, then reads VmRSS and the thread
    count of the daemon and of the Serf agent (/proc/PID/status) in the same moment;
  * lists which Swift/Foundation/ICU libraries the daemon has mapped (/proc/PID/maps) and the
    largest resident mappings (/proc/PID/smaps, summed per file);
  * times `data-mesher --version` and `serf version` (--runs times each, alternating; best and
    median wall time of fork+exec+exit, measured with a Python loop);
  * times `data-mesher file update` of 1 KiB of fresh content against the running daemon
    (--runs times; best and median; only "stored" counts).

ENV=VALUE pairs are set for that variant's daemon and CLI runs (e.g.
NIO_SINGLETON_GROUP_LOOP_COUNT=1). The last lines are machine-readable, one per variant:

  lean variant=.. dm_rss_kib=.. serf_rss_kib=.. rss_ratio=.. dm_threads=.. serf_threads=.. \
       dm_version_ms_best=.. dm_version_ms_p50=.. serf_version_ms_best=.. serf_version_ms_p50=.. \
       version_ratio=.. update_1k_ms_best=.. update_1k_ms_p50=.. foundation=0|1 icu=0|1 ...

Python standard library only (and openssl, for the signing key). `--cache cold` (root) drops
the page cache before Serf and each daemon start, as after a reboot; the default reads each
binary whole first. Loopback only; only processes this script started are stopped
(by PID: SIGTERM, then SIGKILL after a bounded wait), also on failure or Ctrl-C. Installs
`serf` with apt-get if it is missing, as ../shared/anchors/serf_bench.sh does.
"""

import argparse
import base64
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import default_binary, die_with_parent, loadavg1, proc_status, shield_cleanup, stop_processes

IP = "127.0.4.1"
FILE_NAME = "bench/lean"
T_SCRIPT = time.perf_counter()


def log(msg):
    print(f"[lean_bench +{(time.perf_counter() - T_SCRIPT) * 1000:.0f}ms] {msg}", file=sys.stderr, flush=True)


def port_free(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((IP, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def tcp_up(port):
    try:
        with socket.create_connection((IP, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(proc, port, timeout, what, log_path):
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 10):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during start-up:\n{tail(log_path)}")
        if tcp_up(port):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{what}: port {port} not up in {timeout:.0f}s:\n{tail(log_path)}")


def tail(path, n=20):
    try:
        with open(path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def mapped_libraries(pid):
    """Set of basenames of the shared objects mapped into PID."""
    libs = set()
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    libs.add(os.path.basename(parts[5].strip()))
    except OSError:
        pass
    return libs


def rss_by_mapping(pid):
    """[(kib, name)] resident KiB per mapped file ([anon], [heap], ... for the rest), largest first."""
    sums = {}
    name = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    parts = line.split(None, 5)
                    path = parts[5].strip() if len(parts) == 6 else ""
                    name = os.path.basename(path) if path.startswith("/") else (path or "[anon]")
                elif first == "Rss:" and name is not None:
                    sums[name] = sums.get(name, 0) + int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return sorted(((v, k) for k, v in sums.items()), reverse=True)


def time_cmd(cmd, env, timeout=30):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=timeout)
    return (time.perf_counter() - t0) * 1000, out


def fmt(x, nd=1):
    return "NA" if x is None else f"{x:.{nd}f}"


def ratio(a, b):
    return "NA" if a is None or not b else f"{a / b:.2f}"


def stats(xs):
    return (min(xs), statistics.median(xs)) if xs else (None, None)


def parse_variant(spec):
    label, _, rest = spec.partition("=")
    if not label or not rest:
        raise argparse.ArgumentTypeError("--variant is LABEL=BIN[,ENV=VALUE...]")
    parts = rest.split(",")
    env = {}
    for kv in parts[1:]:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise argparse.ArgumentTypeError(f"bad ENV=VALUE in --variant: {kv!r}")
        env[k] = v
    return label, parts[0], env


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", type=parse_variant, default=[],
                   help="LABEL=BIN[,ENV=VALUE...]; repeatable (default: one variant, the default binary)")
    p.add_argument("--runs", type=int, default=20, help="timed runs of each command (default 20)")
    p.add_argument("--idle-s", type=float, default=5.0, help="idle wait before reading RSS (default 5)")
    p.add_argument("--http-port", type=int, default=17600, help="daemon HTTP port; +1 is its cluster port (default 17600)")
    p.add_argument("--serf-port", type=int, default=17610, help="Serf bind port; +1 is its RPC port (default 17610)")
    p.add_argument("--tmpdir", default=os.environ.get("BENCH_TMPDIR") or None, help="parent of the temporary directory")
    p.add_argument("--cache", choices=["read", "cold"], default="read",
                   help="how each binary is in the page cache when it starts: 'read' (default) reads it whole "
                        "first; 'cold' drops the page cache first (root), as after a reboot")
    a = p.parse_args()
    if not (1 <= a.runs <= 1000):
        p.error("--runs must be 1..1000")
    if not (0.5 <= a.idle_s <= 600):
        p.error("--idle-s must be 0.5..600")
    if not a.variant:
        a.variant = [("default", default_binary(), {})]
    return a


def read_whole_file(path):
    """Brings all of `path` into the page cache, as installing or copying a binary does. The
    kernel maps the cached neighbours of each page a process touches (fault-around), so a
    program's resident size depends on how much of its binary is cached: every binary is measured
    fully cached, the same for all. How the pages came into the cache matters too (the size of
    the folios they were read or written in): the same binary measured 22, 24.5 and 28 MiB idle
    when long cached, freshly copied and read whole after a drop (bench/README.md, section 7);
    `--cache cold` is the state that is the same every time."""
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def prepare_cache(args, path):
    """Puts `path` in the page-cache state `--cache` asks for before it is started."""
    if args.cache == "read":
        read_whole_file(path)
        return
    subprocess.run(["sync"], check=False, timeout=120)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def measure_variant(args, label, binary, extra_env, workdir, serf_pid, serf_port_rpc, procs):
    env = dict(os.environ, **extra_env)
    vdir = os.path.join(workdir, label)
    os.makedirs(vdir)
    key = os.path.join(vdir, "signer.key")
    # The signing key is made with openssl, so that no run of the binary brings it into the page
    # cache before the daemon starts (`--cache cold`).
    made = subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], capture_output=True, timeout=60)
    der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"], capture_output=True, timeout=60)
    if made.returncode != 0 or der.returncode != 0 or len(der.stdout) < 32:
        raise RuntimeError(f"{label}: openssl could not make a key: {(made.stderr + der.stderr).decode()[:200]}")
    pubkey = base64.b64encode(der.stdout[-32:]).decode()
    config = os.path.join(vdir, "dm.toml")
    with open(config, "w") as f:
        f.write("\n".join([
            f'state_dir = "{os.path.join(vdir, "state")}"',
            'node_name = "lean"',
            'log_level = "warn"',
            "[cluster]",
            f"port = {args.http_port + 1}",
            f'interfaces = ["{IP}"]',
            "[http]",
            f"port = {args.http_port}",
            f'interfaces = ["{IP}"]',
            "[files]",
            f'"{FILE_NAME}" = ["{pubkey}"]',
        ]) + "\n")
    log_path = os.path.join(vdir, "daemon.log")
    prepare_cache(args, binary)
    with open(log_path, "wb") as lf:
        proc = subprocess.Popen([binary, "server", "--config", config], stdin=subprocess.DEVNULL, stdout=lf,
                                stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent)
    procs.append(proc)
    try:
        wait_port(proc, args.http_port, 20, f"{label} daemon", log_path)
        time.sleep(args.idle_s)
        if proc.poll() is not None:
            raise RuntimeError(f"{label} daemon exited:\n{tail(log_path)}")
        r = {
            "dm_rss": proc_status(proc.pid, "VmRSS"),
            "serf_rss": proc_status(serf_pid, "VmRSS"),
            "dm_threads": proc_status(proc.pid, "Threads"),
            "serf_threads": proc_status(serf_pid, "Threads"),
        }
        libs = mapped_libraries(proc.pid)
        r["foundation"] = int(any(l.startswith("libFoundation.") for l in libs))
        r["essentials"] = int(any(l.startswith("libFoundationEssentials") for l in libs))
        r["icu"] = int(any("ICU" in l or "icu" in l for l in libs))
        r["swift_libs"] = sorted(l for l in libs if l.startswith(("libswift", "libFoundation", "lib_Foundation", "libdispatch")))
        r["top"] = rss_by_mapping(proc.pid)[:8]

        dm_v, serf_v = [], []
        for _ in range(args.runs):
            ms, o = time_cmd([binary, "--version"], env)
            if o.returncode == 0:
                dm_v.append(ms)
            ms, o = time_cmd(["serf", "version"], None)
            if o.returncode == 0:
                serf_v.append(ms)
        r["dm_version"], r["serf_version"] = stats(dm_v), stats(serf_v)

        src = os.path.join(vdir, "upload")
        upd, errors = [], 0
        url = f"http://{IP}:{args.http_port}"
        for _ in range(args.runs):
            with open(src, "wb") as f:
                f.write(os.urandom(1024))
            ms, o = time_cmd([binary, "file", "update", src, "--url", url, "--key", key, "--name", FILE_NAME], env)
            if o.returncode == 0 and o.stdout.startswith(b"stored"):
                upd.append(ms)
            else:
                errors += 1
                log(f"{label}: file update exited {o.returncode}: {(o.stdout + o.stderr).decode('utf-8', 'replace')[:200]}")
        r["update"], r["update_errors"] = stats(upd), errors
        r["dm_rss_after"] = proc_status(proc.pid, "VmRSS")
        return r
    finally:
        stop_processes([proc])


def main():
    args = parse_args()
    load_start = loadavg1()
    log(f"load average (1 min) at start: {load_start:.2f} on {os.cpu_count()} CPUs")
    if shutil.which("serf") is None:
        log("serf not found; installing it with apt-get (as ../shared/anchors/serf_bench.sh)")
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq serf",
                       shell=True, stdout=sys.stderr, timeout=600)
    if shutil.which("serf") is None:
        log("ERROR: serf not available")
        return 1
    for port in (args.http_port, args.http_port + 1, args.serf_port, args.serf_port + 1):
        if not port_free(port):
            log(f"ERROR: {IP}:{port} is in use; pick other --http-port/--serf-port")
            return 1
    for label, binary, _ in args.variant:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            log(f"ERROR: {label}: binary not found or not executable: {binary}")
            return 1

    workdir = tempfile.mkdtemp(prefix="dm-lean-bench-", dir=args.tmpdir)
    procs = []
    lines = []
    status = 0
    try:
        serf_log = os.path.join(workdir, "serf.log")
        with open(serf_log, "wb") as lf:
            prepare_cache(args, shutil.which("serf"))
            serf = subprocess.Popen(["serf", "agent", "-node=lean-serf", f"-bind={IP}:{args.serf_port}",
                                     f"-rpc-addr={IP}:{args.serf_port + 1}", "-log-level=warn"],
                                    stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                                    preexec_fn=die_with_parent)
        procs.append(serf)
        wait_port(serf, args.serf_port + 1, 20, "serf agent", serf_log)
        log(f"serf agent {serf.pid} up on {IP}:{args.serf_port}")
        for label, binary, extra_env in args.variant:
            log(f"variant {label}: {binary} {' '.join(f'{k}={v}' for k, v in extra_env.items())}")
            r = measure_variant(args, label, binary, extra_env, workdir, serf.pid, args.serf_port + 1, procs)
            dv, sv, up = r["dm_version"], r["serf_version"], r["update"]
            log(f"{label}: idle RSS {r['dm_rss']} KiB ({r['dm_threads']} threads) vs serf {r['serf_rss']} KiB "
                f"({r['serf_threads']} threads); --version best {fmt(dv[0])} p50 {fmt(dv[1])} ms vs serf version "
                f"best {fmt(sv[0])} p50 {fmt(sv[1])} ms; file update 1 KiB best {fmt(up[0])} p50 {fmt(up[1])} ms")
            log(f"{label}: mapped Swift/Foundation libraries: {' '.join(r['swift_libs']) or 'none'}")
            log(f"{label}: largest resident mappings (KiB): "
                + ", ".join(f"{n} {k}" for k, n in r["top"]))
            if r["update_errors"]:
                status = 1
            lines.append("lean " + " ".join([
                f"variant={label}",
                f"dm_rss_kib={r['dm_rss']}",
                f"serf_rss_kib={r['serf_rss']}",
                f"rss_ratio={ratio(r['dm_rss'], r['serf_rss'])}",
                f"dm_threads={r['dm_threads']}",
                f"serf_threads={r['serf_threads']}",
                f"dm_version_ms_best={fmt(dv[0])}",
                f"dm_version_ms_p50={fmt(dv[1])}",
                f"serf_version_ms_best={fmt(sv[0])}",
                f"serf_version_ms_p50={fmt(sv[1])}",
                f"version_ratio={ratio(dv[1], sv[1])}",
                f"update_1k_ms_best={fmt(up[0])}",
                f"update_1k_ms_p50={fmt(up[1])}",
                f"update_errors={r['update_errors']}",
                f"dm_rss_after_kib={r['dm_rss_after']}",
                f"foundation={r['foundation']}",
                f"essentials={r['essentials']}",
                f"icu={r['icu']}",
                f"runs={args.runs}",
                f"idle_s={args.idle_s:g}",
                f"cache={args.cache}",
                f"env={','.join(f'{k}={v}' for k, v in extra_env.items()) or '-'}",
            ]))
        return status
    except RuntimeError as e:
        log(f"ERROR: {e}")
        return 1
    except (KeyboardInterrupt, SystemExit):
        log("interrupted: stopping every process this script started")
        raise
    finally:
        shield_cleanup()
        stop_processes(procs)
        shutil.rmtree(workdir, ignore_errors=True)
        load_end = loadavg1()
        for line in lines:
            print(f"{line} load1_start={load_start:.2f} load1_end={load_end:.2f}", flush=True)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    sys.exit(main())
