#!/usr/bin/env python3
"""Cluster benchmark for data-mesher: propagation, failure detection and idle cost of N nodes.

Usage: cluster_bench.py N [RUNS]        (N nodes, 2..60; RUNS propagation trials, default 5)

Starts N daemons on loopback, node i on IP_PREFIX.i (HTTP :7331, cluster UDP+TCP :7946),
all bootstrapping through node 1, in a new temporary directory, and measures the same things
as the anchor ../shared/anchors/serf_bench.sh does for Serf:

  (c) idle cost: VmRSS per node and CPU% per node (utime+stime from /proc/PID/stat) over an
      IDLE_S second idle window, averaged over the nodes;
  (a) propagation: RUNS times, a fresh small file (inlined in gossip) and, as a second
      series, a fresh 64 KiB file (announced by gossip, fetched over TCP) is uploaded through
      node 1 with `data-mesher file update`. This one process polls every node's
      <state_dir>/files/bench/prop every 1 ms until every node holds exactly that content.
      Latency = last appearance - the moment the CLI exited successfully (prop_ms_*), and
      last appearance - just before the CLI was started (prop_from_cli_start_ms_*, which is
      what serf_bench measures: its send timestamp is taken before `serf event` is exec'd);
  (b) failure detection: SIGKILL of node N; sequential sweeps over the survivors'
      GET /v1/members until every survivor reports it "dead".

The last line of output is machine-readable:
  dm nodes=N runs=R prop_ms_p50=.. prop_ms_max=.. prop_from_cli_start_ms_p50=.. \
     prop64k_ms_p50=.. prop64k_ms_max=.. fail_detect_ms=.. rss_kib_avg=.. cpu_pct_avg=.. \
     converge_ms=.. wall_s=.. [diagnostic fields]
NA means the measurement did not complete within its deadline.

Python standard library only. Only loopback is used, and only processes this script started
are stopped (by PID: SIGTERM, then SIGKILL after a bounded wait). See bench/README.md.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import die_with_parent, loadavg1, proc_status, proc_ticks, shield_cleanup, stop_processes

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(SCRIPT_DIR)

FILE_NAME = "bench/prop"
INLINE_LIMIT = 512  # WireCodec.maxInlineContent: larger files are fetched over TCP
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 5.0
POLL_S = 0.001
CLI_TIMEOUT_S = 30.0

T_SCRIPT = time.perf_counter()


def log(msg):
    print(f"[cluster_bench +{(time.perf_counter() - T_SCRIPT) * 1000:.0f}ms] {msg}", file=sys.stderr, flush=True)


def env_float(name, default):
    v = os.environ.get(name)
    return float(v) if v not in (None, "") else default


# --------------------------------------------------------------------------- HTTP


def http_get_json(ip, port, path, timeout=HTTP_TIMEOUT_S):
    """GET a JSON document with http.client (no proxies); None on any failure."""
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        return json.loads(body)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


# --------------------------------------------------------------------------- cluster


class Node:
    def __init__(self, idx, ip, workdir):
        self.idx = idx
        self.ip = ip
        self.name = f"n{idx}"
        self.dir = os.path.join(workdir, self.name)
        self.state_dir = os.path.join(self.dir, "state")
        self.config_path = os.path.join(self.dir, "dm.toml")
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.file_path = os.path.join(self.state_dir, "files", *FILE_NAME.split("/"))
        self.proc = None
        self.log_file = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"


class Cluster:
    """N daemons on ip_prefix.1..N. stop() (called from finally) stops every one by PID."""

    def __init__(self, binary, workdir, n, ip_prefix, cluster_port, http_port, pubkey, log_level):
        self.binary = binary
        self.n = n
        self.cluster_port = cluster_port
        self.http_port = http_port
        self.nodes = [Node(i, f"{ip_prefix}.{i}", workdir) for i in range(1, n + 1)]
        seed = f"{self.nodes[0].ip}:{cluster_port}"
        for node in self.nodes:
            os.makedirs(node.dir, exist_ok=True)
            with open(node.config_path, "w") as f:
                f.write(
                    "\n".join(
                        [
                            f'state_dir = "{node.state_dir}"',
                            f'node_name = "{node.name}"',
                            f'log_level = "{log_level}"',
                            "[cluster]",
                            f"port = {cluster_port}",
                            f'interfaces = ["{node.ip}"]',
                            f'bootstrap_nodes = ["{seed}"]',
                            'push_pull_interval = "30s"',
                            'join_interval = "1s"',
                            "[http]",
                            f"port = {http_port}",
                            f'interfaces = ["{node.ip}"]',
                            "[files]",
                            f'"{FILE_NAME}" = ["{pubkey}"]',
                        ]
                    )
                    + "\n"
                )

    def url(self, node):
        return f"http://{node.ip}:{self.http_port}"

    def start_node(self, node):
        node.log_file = open(node.log_path, "wb")
        node.proc = subprocess.Popen(
            [self.binary, "server", "--config", node.config_path],
            stdin=subprocess.DEVNULL,
            stdout=node.log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )

    def wait_http(self, node, timeout):
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 10):
            if not node.alive():
                raise RuntimeError(f"{node.name} exited with {node.proc.returncode} during start-up:\n{node.log_tail()}")
            if http_get_json(node.ip, self.http_port, "/v1/info", timeout=2) is not None:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{node.name}: HTTP API not up in {timeout:.0f}s:\n{node.log_tail()}")

    def members(self, node):
        return http_get_json(node.ip, self.http_port, "/v1/members")

    def start_and_converge(self, timeout):
        """Start node 1, wait for its API, start the rest; return ms until every node lists N alive."""
        t_start = time.perf_counter()
        self.start_node(self.nodes[0])
        self.wait_http(self.nodes[0], 20)
        for node in self.nodes[1:]:
            self.start_node(node)
        converged = set()
        deadline = time.monotonic() + timeout
        last_counts = {}
        for _ in range(int(timeout / 0.2) + 10):
            for node in self.nodes:
                if node.idx in converged:
                    continue
                if not node.alive():
                    raise RuntimeError(f"{node.name} exited during start-up:\n{node.log_tail()}")
                m = self.members(node)
                if m is None:
                    continue
                alive = sum(1 for e in m if e.get("state") == "alive")
                last_counts[node.name] = alive
                if alive == self.n:
                    converged.add(node.idx)
            if len(converged) == self.n:
                return (time.perf_counter() - t_start) * 1000
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        missing = [f"{n.name}:{last_counts.get(n.name, '?')}" for n in self.nodes if n.idx not in converged]
        raise RuntimeError(
            f"convergence timeout: {len(converged)}/{self.n} nodes list {self.n} alive members after "
            f"{timeout:.0f}s (alive counts of the rest: {' '.join(missing[:20])})"
        )

    def cluster_counters(self):
        """Sum of the /v1/info cluster counters over the live nodes (None if unavailable)."""
        total = {}
        for node in self.nodes:
            if not node.alive():
                continue
            info = http_get_json(node.ip, self.http_port, "/v1/info")
            c = (info or {}).get("cluster")
            if not isinstance(c, dict):
                return None
            for k, v in c.items():
                if isinstance(v, (int, float)):
                    total[k] = total.get(k, 0) + v
        return total

    def stop(self):
        stop_processes([n.proc for n in self.nodes])
        for node in self.nodes:
            if node.log_file is not None:
                node.log_file.close()
                node.log_file = None


# --------------------------------------------------------------------------- binary


def default_binary():
    """(path, kind): $DM_BIN, else release if it exists and is newer than debug, else debug."""
    env = os.environ.get("DM_BIN")
    if env:
        return env, "custom"
    release = os.path.join(REPO_ROOT, ".build", "release", "data-mesher")
    debug = os.path.join(REPO_ROOT, ".build", "debug", "data-mesher")
    if os.path.isfile(release) and os.access(release, os.X_OK):
        if not os.path.isfile(debug) or os.path.getmtime(release) > os.path.getmtime(debug):
            return release, "release"
    return debug, "debug"


def preflight(binary, workdir, args, pubkey):
    """None if `server --help` works and a 2-node cluster forms, else the reason."""
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        return "not found or not executable"
    try:
        out = subprocess.run([binary, "server", "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`server --help` failed: {e}"
    if out.returncode != 0 or "server" not in out.stdout:
        return f"`server --help` exited {out.returncode}"
    d = os.path.join(workdir, "preflight-" + os.path.basename(os.path.dirname(binary)))
    os.makedirs(d, exist_ok=True)
    c = Cluster(binary, d, 2, args.ip_prefix, args.cluster_port, args.http_port, pubkey, args.log_level)
    try:
        c.start_and_converge(args.preflight_timeout)
        return None
    except RuntimeError as e:
        return str(e).splitlines()[0]
    finally:
        c.stop()
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- measurements


def fmt(x, nd=1):
    if x is None or x != x:
        return "NA"
    s = f"{x:.{nd}f}"
    return s.lstrip("-") if float(s) == 0 else s  # no "-0.0"


def median(xs):
    return statistics.median(xs) if xs else None


def idle_cost(cluster, seconds):
    hz = os.sysconf("SC_CLK_TCK")
    pids = [n.pid for n in cluster.nodes]
    t0 = [proc_ticks(p) for p in pids]
    w0 = time.perf_counter()
    time.sleep(seconds)
    w1 = time.perf_counter()
    t1 = [proc_ticks(p) for p in pids]
    rss = [proc_status(p, "VmRSS") for p in pids]
    if any(x is None for x in t0 + t1 + rss):
        raise RuntimeError("a node exited during the idle window")
    pct = [100.0 * ((b - a) / hz) / (w1 - w0) for a, b in zip(t0, t1)]
    return {
        "rss_kib_avg": sum(rss) // len(rss),
        "rss_kib_max": max(rss),
        "cpu_pct_avg": sum(pct) / len(pct),
        "cpu_pct_max": max(pct),
        "idle_ticks": sum(b - a for a, b in zip(t0, t1)),
        "hz": hz,
    }


class CliRegistry:
    """Upload CLI processes, so the finally block can stop one that is still running."""

    def __init__(self):
        self.procs = []


def propagate_once(cluster, binary, key_path, workdir, size, label, run, prop_timeout, clis):
    """Upload fresh content of `size` bytes through node 1 and wait until every node holds it.

    Returns a dict of latencies in ms (None where not reached) and diagnostics."""
    content = os.urandom(size)
    src = os.path.join(workdir, f"upload-{label}-{run}")
    with open(src, "wb") as f:
        f.write(content)
    nodes = cluster.nodes
    n = len(nodes)
    seen = [None] * n  # perf_counter of the poll that first saw the exact content
    checked = [None] * n  # (ino, mtime_ns) of a same-size file already read and found different
    pending = list(range(n))
    cmd = [binary, "file", "update", src, "--url", cluster.url(nodes[0]), "--key", key_path, "--name", FILE_NAME]
    t_start = time.perf_counter()
    # No preexec_fn here: with one, Python must fork its whole process instead of spawning, about
    # 6 ms on the test machine, all of it charged to the CLI's time (Serf's anchor forks a shell).
    # The CLI is stopped by PID on failure like every other process, and its own timeouts bound
    # it if this script is killed outright.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    clis.procs.append(proc)
    t_exit = None
    cli_error = None
    pc = time.perf_counter
    deadline = t_start + prop_timeout
    max_polls = int(prop_timeout / POLL_S) + 1000
    polls = 0
    for polls in range(1, max_polls + 1):
        still = []
        for i in pending:
            try:
                st = os.stat(nodes[i].file_path)
            except OSError:
                still.append(i)
                continue
            if st.st_size == size:
                sig = (st.st_ino, st.st_mtime_ns)
                if sig != checked[i]:
                    try:
                        with open(nodes[i].file_path, "rb") as f:
                            data = f.read(size + 1)
                    except OSError:
                        data = None
                    if data == content:
                        seen[i] = pc()
                        continue
                    checked[i] = sig
            still.append(i)
        pending = still
        if t_exit is None:
            rc = proc.poll()
            if rc is not None:
                t_exit = pc()
                out, err = proc.communicate(timeout=5)
                if rc != 0 or not out.startswith(b"stored"):
                    cli_error = f"CLI exited {rc}: {(out + err).decode('utf-8', 'replace').strip()[:300]}"
                    break
        if t_exit is not None and not pending:
            break
        if pc() >= deadline:
            break
        time.sleep(POLL_S)
    if t_exit is None:
        cli_error = cli_error or f"CLI still running after {prop_timeout:.0f}s"
        stop_processes([proc], timeout=2)
    res = {
        "cli_ms": (t_exit - t_start) * 1000 if t_exit else None,
        "got": n - len(pending),
        "polls": polls,
        "error": cli_error,
        "prop_ms": None,
        "from_start_ms": None,
        "origin_ms": (seen[0] - t_start) * 1000 if seen[0] else None,
        "from_origin_ms": None,
        "before_exit": False,
    }
    if cli_error is None and not pending:
        last = max(seen)
        res["prop_ms"] = (last - t_exit) * 1000
        res["from_start_ms"] = (last - t_start) * 1000
        res["before_exit"] = last < t_exit
        res["from_origin_ms"] = (last - seen[0]) * 1000
        # the slowest node, for the log
        res["last_node"] = nodes[seen.index(last)].name
    os.unlink(src)
    return res


def propagation_series(cluster, binary, key_path, workdir, size, label, runs, args, clis):
    prop, from_start, cli, origin, from_origin = [], [], [], [], []
    fails = 0
    before_exit = 0
    for r in range(1, runs + 1):
        res = propagate_once(cluster, binary, key_path, workdir, size, label, r, args.prop_timeout, clis)
        if res["prop_ms"] is not None:
            prop.append(res["prop_ms"])
            from_start.append(res["from_start_ms"])
            cli.append(res["cli_ms"])
            origin.append(res["origin_ms"])
            from_origin.append(res["from_origin_ms"])
            before_exit += res["before_exit"]
            log(f"{label} run {r}: all {cluster.n} nodes {fmt(res['prop_ms'])} ms after the CLI exited, "
                f"{fmt(res['from_start_ms'])} ms after CLI start (CLI took {fmt(res['cli_ms'])} ms, origin file "
                f"after {fmt(res['origin_ms'])} ms, last node {res['last_node']} {fmt(res['from_origin_ms'])} ms after the origin, "
                f"{res['polls']} polls)")
        else:
            fails += 1
            why = res["error"] or f"only {res['got']}/{cluster.n} nodes held the content after {args.prop_timeout:.0f}s"
            log(f"{label} run {r}: FAILED: {why}")
        dead = [n.name for n in cluster.nodes if not n.alive()]
        if dead:
            raise RuntimeError(f"nodes exited during propagation: {' '.join(dead)}")
        time.sleep(args.prop_gap + random.uniform(0, 0.4))  # jitter against the 200 ms gossip tick
    return {
        "p50": median(prop), "max": max(prop) if prop else None,
        "start_p50": median(from_start), "start_max": max(from_start) if from_start else None,
        "cli_p50": median(cli), "origin_p50": median(origin), "fails": fails, "before_exit": before_exit,
        "from_origin_p50": median(from_origin), "from_origin_max": max(from_origin) if from_origin else None,
    }


def failure_detection(cluster, timeout):
    victim = cluster.nodes[-1]
    survivors = cluster.nodes[:-1]
    detected = {}
    first_suspect = None
    sweeps = 0
    sweep_ms_max = 0.0
    t_kill = time.perf_counter()
    victim.proc.kill()  # SIGKILL, by PID
    victim.proc.wait(timeout=STOP_TIMEOUT_S)
    deadline = time.monotonic() + timeout
    for sweeps in range(1, int(timeout / 0.05) + 10):
        ts = time.perf_counter()
        for node in survivors:
            if node.idx in detected:
                continue
            m = cluster.members(node) or []
            state = next((e.get("state") for e in m if e.get("name") == victim.name), None)
            now = time.perf_counter()
            if state == "dead":
                detected[node.idx] = now
            elif state == "suspect" and first_suspect is None:
                first_suspect = now
        sweep_ms_max = max(sweep_ms_max, (time.perf_counter() - ts) * 1000)
        if len(detected) == len(survivors) or time.monotonic() >= deadline:
            break
        dead = [n.name for n in survivors if not n.alive()]
        if dead:
            raise RuntimeError(f"survivors exited during failure detection: {' '.join(dead)}")
        time.sleep(0.05)
    res = {
        "ms": None, "first_ms": None, "sweeps": sweeps, "sweep_ms_max": sweep_ms_max,
        "suspect_ms": (first_suspect - t_kill) * 1000 if first_suspect else None,
        "seen": len(detected),
    }
    if detected:
        res["first_ms"] = (min(detected.values()) - t_kill) * 1000
    if len(detected) == len(survivors):
        res["ms"] = (max(detected.values()) - t_kill) * 1000
    return res


LEVELS = ("trace", "debug", "info", "notice", "warning", "error", "critical")


def scan_logs(cluster, victim_name):
    """Count warning/error lines in the node logs, apart from the expected death of the victim."""
    warn = err = 0
    samples = {}
    for node in cluster.nodes:
        try:
            with open(node.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split(" ", 2)
            level = parts[1] if len(parts) > 2 and parts[1] in LEVELS else None
            if level is None:
                if line.strip():  # not a swift-log line (e.g. a crash message): count as an error
                    err += 1
                    key = "(unformatted) " + line.strip()[:160]
                    samples[key] = samples.get(key, 0) + 1
                continue
            if level in ("warning",) and "member declared dead" in line and f"dm.peer={victim_name} " in line:
                continue
            if level == "warning":
                warn += 1
            elif level in ("error", "critical"):
                err += 1
            else:
                continue
            # strip the timestamp and per-node fields so equal messages group together
            key = re.sub(r"dm\.node=\S+ ", "", parts[1] + " " + parts[2])
            key = re.sub(r"\b\d{5,}\b", "#", key)[:200]
            samples[key] = samples.get(key, 0) + 1
    return warn, err, sorted(samples.items(), key=lambda kv: -kv[1])


# --------------------------------------------------------------------------- main


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("nodes", type=int, help="number of nodes, 2..60")
    p.add_argument("runs", type=int, nargs="?", default=5, help="propagation trials per series (default 5)")
    p.add_argument("--bin", default=None, help="data-mesher binary (default: $DM_BIN, else release if newer than debug, else debug)")
    p.add_argument("--ip-prefix", default=os.environ.get("DM_IP_PREFIX", "127.0.2"),
                   help="node i listens on PREFIX.i; must be 127.x.y (default 127.0.2, env DM_IP_PREFIX)")
    p.add_argument("--cluster-port", type=int, default=7946, help="cluster UDP+TCP port on every IP (default 7946)")
    p.add_argument("--http-port", type=int, default=7331, help="HTTP port on every IP (default 7331)")
    p.add_argument("--idle-s", type=float, default=env_float("IDLE_S", 10.0), help="idle window in s (default 10, env IDLE_S)")
    p.add_argument("--small-size", type=int, default=256, help=f"small file size in bytes, inlined in gossip up to {INLINE_LIMIT} (default 256)")
    p.add_argument("--large-size", type=int, default=65536, help="second series' file size (default 65536, fetched over TCP)")
    p.add_argument("--prop-timeout", type=float, default=env_float("PROP_TIMEOUT_S", 30.0), help="per trial (default 30, env PROP_TIMEOUT_S)")
    p.add_argument("--prop-gap", type=float, default=env_float("PROP_GAP_S", 1.0), help="pause between trials, plus 0-0.4 s jitter (default 1, env PROP_GAP_S)")
    p.add_argument("--fail-timeout", type=float, default=env_float("FAIL_TIMEOUT_S", 90.0), help="failure detection deadline (default 90, env FAIL_TIMEOUT_S)")
    p.add_argument("--converge-timeout", type=float, default=None, help="default 60+2N s (env CONVERGE_TIMEOUT_S), as serf_bench.sh")
    p.add_argument("--preflight-timeout", type=float, default=20.0, help="2-node binary check deadline (default 20)")
    p.add_argument("--skip-preflight", action="store_true", help="do not run the 2-node binary check")
    p.add_argument("--log-level", default=os.environ.get("DM_LOG_LEVEL", "warn"), help="daemon log_level (default warn)")
    p.add_argument("--tmpdir", default=os.environ.get("BENCH_TMPDIR") or None, help="parent of the temporary directory")
    p.add_argument("--keep-tmp", action="store_true", default=os.environ.get("KEEP_TMP") == "1", help="keep the temporary directory (env KEEP_TMP=1)")
    a = p.parse_args()
    if not (2 <= a.nodes <= 60):
        p.error("N must be 2..60")
    if not (1 <= a.runs <= 1000):
        p.error("RUNS must be 1..1000")
    m = re.fullmatch(r"127\.(\d{1,3})\.(\d{1,3})", a.ip_prefix)
    if not m or int(m.group(1)) > 255 or int(m.group(2)) > 255:
        p.error("--ip-prefix must be loopback, 127.x.y")
    for name in ("cluster_port", "http_port"):
        if not (1 <= getattr(a, name) <= 65535):
            p.error(f"--{name.replace('_', '-')} must be 1..65535")
    if a.cluster_port == a.http_port:
        p.error("--cluster-port and --http-port must differ")
    if not (0.1 <= a.idle_s <= 3600):
        p.error("--idle-s must be 0.1..3600")
    if not (1 <= a.small_size <= 1 << 20) or not (1 <= a.large_size <= 64 << 20):
        p.error("sizes must be 1..1 MiB (small) and 1..64 MiB (large)")
    if a.converge_timeout is None:
        a.converge_timeout = env_float("CONVERGE_TIMEOUT_S", 60.0 + 2 * a.nodes)
    for name in ("prop_timeout", "fail_timeout", "converge_timeout", "preflight_timeout"):
        if not (1 <= getattr(a, name) <= 3600):
            p.error(f"--{name.replace('_', '-')} must be 1..3600")
    if not (0 <= a.prop_gap <= 60):
        p.error("--prop-gap must be 0..60")
    return a


def ports_free(ips, cluster_port, http_port):
    """None if every (ip, port) we need can be bound, else the first conflict."""
    for ip in ips:
        for port, kind in ((cluster_port, socket.SOCK_STREAM), (cluster_port, socket.SOCK_DGRAM), (http_port, socket.SOCK_STREAM)):
            s = socket.socket(socket.AF_INET, kind)
            if kind == socket.SOCK_STREAM:
                # as the daemon's listeners: TIME_WAIT leftovers of an earlier run are no conflict
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
                if kind == socket.SOCK_STREAM:
                    s.listen(1)
            except OSError as e:
                return f"{ip}:{port}/{'tcp' if kind == socket.SOCK_STREAM else 'udp'}: {e.strerror}"
            finally:
                s.close()
    return None


def main():
    args = parse_args()
    N = args.nodes
    load_start = loadavg1()
    log(f"load average (1 min) at start: {load_start:.2f} on {os.cpu_count()} CPUs")
    if args.small_size > INLINE_LIMIT:
        log(f"note: --small-size {args.small_size} > {INLINE_LIMIT}: the small series is fetched over TCP too")
    if args.large_size <= INLINE_LIMIT:
        log(f"note: --large-size {args.large_size} <= {INLINE_LIMIT}: the second series is inlined in gossip too")
    ips = [f"{args.ip_prefix}.{i}" for i in range(1, N + 1)]
    conflict = ports_free(ips, args.cluster_port, args.http_port)
    if conflict:
        raise SystemExit(f"cluster_bench: {conflict}; pick another --ip-prefix or ports")

    if args.bin:
        binary, kind = args.bin, "custom"
    else:
        binary, kind = default_binary()

    workdir = tempfile.mkdtemp(prefix="dm-cluster-bench-", dir=args.tmpdir)
    cluster = None
    clis = CliRegistry()
    r = {}
    ok = False
    try:
        key_path = os.path.join(workdir, "signer.key")
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise RuntimeError(f"data-mesher binary not found or not executable: {binary} (set DM_BIN)")
        out = subprocess.run(
            [binary, "generate", "keypair", "--private-key-path", key_path, "--public-key-path", key_path + ".pub"],
            capture_output=True, text=True, timeout=60,
        )
        if out.returncode != 0 or not out.stdout.strip():
            raise RuntimeError(f"generate keypair failed (exit {out.returncode}): {out.stderr.strip()}")
        pubkey = out.stdout.strip().splitlines()[-1].strip()

        if not args.skip_preflight:
            why = preflight(binary, workdir, args, pubkey)
            if why and kind == "release":
                debug = os.path.join(REPO_ROOT, ".build", "debug", "data-mesher")
                log(f"NOTE: release binary {binary} failed the 2-node cluster check ({why}); "
                    f"it was probably built before the cluster feature. Using the DEBUG binary {debug} instead.")
                binary, kind = debug, "debug-fallback"
                why = preflight(binary, workdir, args, pubkey)
            if why:
                raise RuntimeError(f"binary {binary} failed the 2-node cluster check: {why}")
            log(f"preflight: `server --help` works and 2 nodes form a cluster with {binary}")
        if kind.startswith("debug") or "/debug/" in binary:
            log("note: debug build; judge the daemon only with release numbers")
        log(f"binary: {binary} ({kind})")

        cluster = Cluster(binary, workdir, N, args.ip_prefix, args.cluster_port, args.http_port, pubkey, args.log_level)
        log(f"starting {N} nodes on {ips[0]}..{ips[-1]} (HTTP :{args.http_port}, cluster :{args.cluster_port}) in {workdir}")
        r["converge_ms"] = cluster.start_and_converge(args.converge_timeout)
        log(f"all {N} nodes list {N} alive members after {r['converge_ms']:.0f} ms (start -> converged, incl. polling)")
        time.sleep(2)  # let join broadcasts drain, as serf_bench.sh

        idle = idle_cost(cluster, args.idle_s)
        r.update(idle)
        log(f"idle {args.idle_s:g}s: rss_kib_avg={idle['rss_kib_avg']} (max {idle['rss_kib_max']}) "
            f"cpu_pct_avg={idle['cpu_pct_avg']:.3f} (max {idle['cpu_pct_max']:.3f}; {idle['idle_ticks']} ticks @{idle['hz']}Hz)")

        c0 = cluster.cluster_counters()
        cpu0, w0 = time.process_time(), time.perf_counter()
        r["small"] = propagation_series(cluster, binary, key_path, workdir, args.small_size, "small", args.runs, args, clis)
        c1 = cluster.cluster_counters()
        r["large"] = propagation_series(cluster, binary, key_path, workdir, args.large_size, "64k", args.runs, args, clis)
        c2 = cluster.cluster_counters()
        cpu1, w1 = time.process_time(), time.perf_counter()
        r["poll_cpu_pct"] = 100 * (cpu1 - cpu0) / (w1 - w0)
        if c0 is not None and c1 is not None and c2 is not None:
            r["fetches_small"] = c1.get("fetches", 0) - c0.get("fetches", 0)
            r["fetches_64k"] = c2.get("fetches", 0) - c1.get("fetches", 0)
            r["packets_dropped"] = c2.get("packetsDropped", 0)
        for label in ("small", "large"):
            s = r[label]
            log(f"{label}: p50 {fmt(s['p50'])} ms, max {fmt(s['max'])} ms after CLI exit; from CLI start p50 "
                f"{fmt(s['start_p50'])} max {fmt(s['start_max'])}; CLI p50 {fmt(s['cli_p50'])} ms; failed runs {s['fails']}")
        log(f"propagation: TCP fetches (all nodes) small series {r.get('fetches_small', 'NA')}, 64k series "
            f"{r.get('fetches_64k', 'NA')}; bench poll loop used {r['poll_cpu_pct']:.1f}% of one core")

        f = failure_detection(cluster, args.fail_timeout)
        r["fail"] = f
        if f["ms"] is not None:
            log(f"failure of {cluster.nodes[-1].name} seen as dead by all {N - 1} survivors after {f['ms']:.0f} ms "
                f"(first observer {fmt(f['first_ms'], 0)} ms, first 'suspect' seen {fmt(f['suspect_ms'], 0)} ms; "
                f"{f['sweeps']} sweeps, slowest sweep {f['sweep_ms_max']:.0f} ms)")
        else:
            log(f"failure detection timeout: {f['seen']}/{N - 1} survivors report {cluster.nodes[-1].name} dead "
                f"after {args.fail_timeout:.0f}s")
        ok = f["ms"] is not None and r["small"]["fails"] == 0 and r["large"]["fails"] == 0
        return 0 if ok else 1
    except RuntimeError as e:
        log(f"ERROR: {e}")
        return 1
    except (KeyboardInterrupt, SystemExit):
        log("interrupted: stopping every process this script started")
        raise
    finally:
        shield_cleanup()
        stop_processes(clis.procs, timeout=2)
        if cluster is not None:
            cluster.stop()
            warn, err, samples = scan_logs(cluster, cluster.nodes[-1].name)
            r["log_warn"], r["log_err"] = warn, err
            if samples:
                log(f"node logs: {warn} warning and {err} error lines besides the victim's expected death; most frequent:")
                for msg, count in samples[:10]:
                    log(f"  {count}x {msg}")
            else:
                log("node logs: no warnings or errors besides the victim's expected death")
        if args.keep_tmp:
            log(f"kept temp dir: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        if cluster is not None:
            print_final(args, r, kind, load_start)


def print_final(args, r, kind, load_start):
    s = r.get("small", {})
    g = r.get("large", {})
    f = r.get("fail", {})
    fields = [
        f"nodes={args.nodes}",
        f"runs={args.runs}",
        f"prop_ms_p50={fmt(s.get('p50'))}",
        f"prop_ms_max={fmt(s.get('max'))}",
        f"prop_from_cli_start_ms_p50={fmt(s.get('start_p50'))}",
        f"prop64k_ms_p50={fmt(g.get('p50'))}",
        f"prop64k_ms_max={fmt(g.get('max'))}",
        f"fail_detect_ms={fmt(f.get('ms'), 0)}",
        f"rss_kib_avg={r.get('rss_kib_avg', 'NA')}",
        f"cpu_pct_avg={fmt(r.get('cpu_pct_avg'), 3)}",
        f"converge_ms={fmt(r.get('converge_ms'), 0)}",
        f"wall_s={time.perf_counter() - T_SCRIPT:.1f}",
        # diagnostics
        f"prop_from_cli_start_ms_max={fmt(s.get('start_max'))}",
        f"prop64k_from_cli_start_ms_p50={fmt(g.get('start_p50'))}",
        f"prop64k_from_cli_start_ms_max={fmt(g.get('start_max'))}",
        f"prop_from_origin_ms_p50={fmt(s.get('from_origin_p50'))}",
        f"prop_from_origin_ms_max={fmt(s.get('from_origin_max'))}",
        f"prop64k_from_origin_ms_p50={fmt(g.get('from_origin_p50'))}",
        f"prop64k_from_origin_ms_max={fmt(g.get('from_origin_max'))}",
        f"cli_ms_p50={fmt(s.get('cli_p50'))}",
        f"cli64k_ms_p50={fmt(g.get('cli_p50'))}",
        f"origin_local_ms_p50={fmt(s.get('origin_p50'))}",
        f"prop_fail_runs={s.get('fails', 'NA')}",
        f"prop64k_fail_runs={g.get('fails', 'NA')}",
        f"done_before_cli_exit_runs={s.get('before_exit', 0) + g.get('before_exit', 0) if s or g else 'NA'}",
        f"fail_first_ms={fmt(f.get('first_ms'), 0)}",
        f"fail_suspect_first_ms={fmt(f.get('suspect_ms'), 0)}",
        f"fail_poll_ms={fmt(f.get('sweep_ms_max'), 0)}",
        f"fail_sweeps={f.get('sweeps', 'NA')}",
        f"rss_kib_max={r.get('rss_kib_max', 'NA')}",
        f"cpu_pct_max={fmt(r.get('cpu_pct_max'), 3)}",
        f"fetches_small={r.get('fetches_small', 'NA')}",
        f"fetches_64k={r.get('fetches_64k', 'NA')}",
        f"packets_dropped={r.get('packets_dropped', 'NA')}",
        f"poll_cpu_pct={fmt(r.get('poll_cpu_pct'))}",
        f"log_warn={r.get('log_warn', 'NA')}",
        f"log_err={r.get('log_err', 'NA')}",
        f"small_size={args.small_size}",
        f"large_size={args.large_size}",
        f"bin={kind}",
        f"load1_start={fmt(load_start, 2)}",
        f"load1_end={fmt(loadavg1(), 2)}",
    ]
    print("dm " + " ".join(fields), flush=True)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    sys.exit(main())
