#!/usr/bin/env python3
"""Small-upload throughput benchmark for data-mesher, against the physical limit.

Starts its own daemon (127.0.0.1 only) in a temporary directory, pre-signs every
request before timing, then lets C client threads (one keep-alive HTTP connection
each, each on its own set of names) PUT 1 KiB files for a fixed duration or count.
In the same run it measures what the filesystem can do with a plain Python loop
(write 1 KiB to a temp file, fsync, rename into place, with and without an fsync
of the directory), single-threaded and with C threads, in a directory next to the
daemon's state_dir.

The last line of output is machine-readable:
  upload_bench clients=8 dm_uploads_per_s=.. plain_fsync_rename_per_s=.. ...

Only the Python standard library and `cryptography` are used. See bench/README.md.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import default_binary, die_with_parent, loadavg1, proc_status, proc_cpu_seconds

from cryptography.hazmat.primitives import serialization

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(SCRIPT_DIR)

MAX_SECONDS = 3600.0
MAX_CLIENTS = 256
MAX_PER_CLIENT = 200_000  # pre-signed requests per client, hard cap
MAX_TOTAL_PRESIGNED = 1_000_000  # across all clients (about 1 GiB of bodies at 1 KiB)
MAX_PLAIN_OPS = 10_000_000  # per plain-loop thread
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------- signing


def signed_message(kind, network_id, name, timestamp_ns, valid_for_ns, content):
    """The byte string of SPEC section 5 (big-endian integers)."""
    net = network_id.encode("utf-8")
    nm = name.encode("utf-8")
    return b"".join(
        [
            b"data-mesher/file/v1\x00",
            struct.pack(">B", kind),
            struct.pack(">H", len(net)),
            net,
            struct.pack(">H", len(nm)),
            nm,
            struct.pack(">qQ", timestamp_ns, valid_for_ns),
            hashlib.sha256(content).digest(),
            struct.pack(">Q", len(content)),
        ]
    )


def load_private_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def raw_public_key_b64(key):
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def find_vectors(explicit):
    if explicit:
        return explicit
    for candidate in (
        os.environ.get("DM_SIGNATURE_VECTORS", ""),
        os.path.join(REPO_ROOT, "Tests", "testdata", "signature-vectors.json"),
        os.path.join(os.path.dirname(REPO_ROOT), "shared", "testdata", "signature-vectors.json"),
    ):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def verify_signing_against_vectors(path):
    """Check this script's message encoding and signing against the test vectors."""
    with open(path) as f:
        doc = json.load(f)
    key = load_private_key(os.path.join(os.path.dirname(path), doc["signer_private_key_file"]))
    if raw_public_key_b64(key) != doc["signer_public_key_base64"]:
        raise SystemExit(f"signature self-test: public key mismatch for {path}")
    kinds = {"content": 1, "tombstone": 2}
    for i, v in enumerate(doc["vectors"]):
        content = base64.b64decode(v["content_base64"])
        msg = signed_message(
            kinds[v["kind"]], v["network"], v["name"], v["timestamp_ns"], v["valid_for_ns"], content
        )
        if msg.hex() != v["message_hex"]:
            raise SystemExit(f"signature self-test: message {i} differs from {path}")
        if base64.b64encode(key.sign(msg)).decode("ascii") != v["signature_base64"]:
            raise SystemExit(f"signature self-test: signature {i} differs from {path}")
    return len(doc["vectors"])


class Timestamps:
    """Strictly increasing nanosecond timestamps, never behind the wall clock."""

    def __init__(self):
        self.last = 0

    def next(self):
        now = time.time_ns()
        self.last = now if now > self.last else self.last + 1
        return self.last


def presign(key, signer_b64, client_names, count, ts, size, seed):
    """Return `count` ready-to-send requests (path, headers, body), round-robin over names.

    Timestamps come from one strictly increasing source, so every name sees
    increasing timestamps in the order the client sends them."""
    out = []
    n_names = len(client_names)
    for i in range(count):
        name = client_names[i % n_names]
        body = struct.pack(">Q", i) + seed[: size - 8] if size >= 8 else seed[:size]
        t = ts.next()
        sig = key.sign(signed_message(1, "", name, t, 0, body))
        headers = {
            "DM-Signer": signer_b64,
            "DM-Signature": base64.b64encode(sig).decode("ascii"),
            "DM-Timestamp": str(t),
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(body)),
        }
        out.append(("/v1/files/" + name, headers, body))
    return out


# --------------------------------------------------------------------------- daemon


def port_in_use(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Daemon:
    def __init__(self, binary, workdir, port, names, pubkey_b64, log_level, clients):
        self.binary = binary
        self.port = port
        self.state_dir = os.path.join(workdir, "state")
        self.config_path = os.path.join(workdir, "dm.toml")
        self.log_path = os.path.join(workdir, "daemon.log")
        self.proc = None
        self.log_file = None
        lines = [
            f'log_level = "{log_level}"',
            f'state_dir = "{self.state_dir}"',
            'node_name = "bench"',
            'max_file_size = "2GiB"',
            "",
            "[cluster]",
            f"port = {port + 1}",
            'interfaces = ["127.0.0.1"]',
            "",
            "[http]",
            f"port = {port}",
            'interfaces = ["127.0.0.1"]',
        ]
        # All clients come from 127.0.0.1, and one source address may take half of the upload
        # slots (16 by default): more than 8 clients get room beyond the shipped default.
        if clients > 8:
            lines.append(f"max_concurrent_uploads = {2 * clients}")
        lines += [
            "",
            "[files]",
        ]
        lines += [f'"{n}" = ["{pubkey_b64}"]' for n in names]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self):
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "server", "--config", self.config_path],
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode} before it was ready:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v1/info")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def stop(self):
        """Stop our daemon by PID: SIGTERM, then SIGKILL after a bounded wait."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except ProcessLookupError:
                pass
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"


# --------------------------------------------------------------------------- HTTP clients


class ClientResult:
    def __init__(self):
        self.ok = 0
        self.errors = 0
        self.error_samples = []
        self.latencies = []  # seconds, successful requests only
        self.exhausted = False
        self.last_ok = {}  # path -> timestamp of the last accepted upload


def run_clients(port, pools, deadline_s, safety_timeout_s):
    """Run one thread per pool of pre-signed requests; return (results, elapsed_s).

    All clients start together (barrier) and stop at the deadline, or all stop as
    soon as any client has sent its whole pool, so elapsed time covers the same
    window for everyone."""
    n = len(pools)
    results = [ClientResult() for _ in range(n)]
    barrier = threading.Barrier(n + 1)
    stop = threading.Event()
    t0_box = [0.0]
    end_box = [None]
    end_lock = threading.Lock()

    def mark_end():
        with end_lock:
            if end_box[0] is None:
                end_box[0] = time.perf_counter()
        stop.set()

    def worker(idx):
        res = results[idx]
        pool = pools[idx]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.connect()
        except OSError as e:
            res.errors += 1
            res.error_samples.append(f"connect: {e}")
        barrier.wait()
        hard_stop = t0_box[0] + safety_timeout_s
        pc = time.perf_counter
        lat = res.latencies
        for path, headers, body in pool:
            if stop.is_set():
                break
            now = pc()
            if (deadline_s is not None and now >= t0_box[0] + deadline_s) or now >= hard_stop:
                break
            try:
                conn.request("PUT", path, body=body, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                done = pc()
                if resp.status == 201:
                    res.ok += 1
                    lat.append(done - now)
                    res.last_ok[path] = headers["DM-Timestamp"]
                else:
                    res.errors += 1
                    if len(res.error_samples) < 3:
                        res.error_samples.append(f"{path}: HTTP {resp.status} {payload[:200]!r}")
            except (OSError, http.client.HTTPException) as e:
                res.errors += 1
                if len(res.error_samples) < 3:
                    res.error_samples.append(f"{path}: {type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if res.errors > 100:
                break
        else:
            res.exhausted = True
        conn.close()
        # Count mode: the window ends when the last client is done. Duration mode:
        # a client that ran out of pre-signed requests ends the window for all.
        if res.exhausted and deadline_s is not None:
            mark_end()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    t0_box[0] = time.perf_counter()
    barrier.wait()
    t0 = t0_box[0]
    for t in threads:
        t.join(timeout=safety_timeout_s + 60)
    end = end_box[0] if end_box[0] is not None else time.perf_counter()
    return results, max(end - t0, 1e-9)


def verify_stored(port, results, size):
    """Check GET /v1/files: every name holds the last version a client got 201 for."""
    expected = {}
    for r in results:
        for path, t in r.last_ok.items():
            expected[path[len("/v1/files/"):]] = int(t)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/v1/files")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        return f"GET /v1/files answered {resp.status}"
    listed = {e["name"]: e for e in json.loads(body)}
    for name, t in expected.items():
        e = listed.get(name)
        if e is None:
            return f"{name} missing from GET /v1/files"
        if e.get("timestamp") != t or e.get("size") != size:
            return f"{name}: listed timestamp {e.get('timestamp')} size {e.get('size')}, expected {t} size {size}"
    return None


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


# --------------------------------------------------------------------------- plain filesystem loop


def plain_loop(directory, threads, seconds, dir_fsync, size):
    """Ops/s of write+fsync+rename(+fsync dir) of `size` bytes, with `threads` threads, and the
    CPU seconds (user+sys) the worker threads used for them."""
    os.makedirs(directory, exist_ok=True)
    counts = [0] * threads
    cpu = [0.0] * threads
    errors = []
    barrier = threading.Barrier(threads + 1)
    start_box = [0.0]
    seed = os.urandom(max(size, 8))

    def worker(idx):
        tmp = os.path.join(directory, f".t{idx}.tmp")
        dst = os.path.join(directory, f"t{idx}")
        barrier.wait()
        deadline = start_box[0] + seconds
        n = 0
        r0 = resource.getrusage(resource.RUSAGE_THREAD)
        try:
            while n < MAX_PLAIN_OPS and time.perf_counter() < deadline:
                data = struct.pack(">Q", n) + seed[: size - 8] if size >= 8 else seed[:size]
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, dst)
                if dir_fsync:
                    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
                n += 1
        except OSError as e:
            errors.append(e)
        r1 = resource.getrusage(resource.RUSAGE_THREAD)
        cpu[idx] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        counts[idx] = n

    ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    start_box[0] = time.perf_counter()
    barrier.wait()
    for t in ts:
        t.join(timeout=seconds + 120)
    elapsed = time.perf_counter() - start_box[0]
    if errors:
        raise RuntimeError(f"plain loop failed: {errors[0]}")
    return sum(counts) / elapsed, sum(cpu) / max(1, sum(counts))


# --------------------------------------------------------------------------- main


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=None, help="data-mesher binary (default: $DM_BIN, else release if built, else debug)")
    p.add_argument("--port", type=int, default=17400, help="HTTP port on 127.0.0.1 (cluster port = PORT+1); default 17400")
    p.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    p.add_argument("--seconds", type=float, default=10.0, help="measurement duration (default 10)")
    p.add_argument("--count", type=int, default=None, help="fixed number of uploads per client instead of a duration")
    p.add_argument("--names-per-client", type=int, default=4, help="names each client cycles through (default 4)")
    p.add_argument("--size", type=int, default=1024, help="upload size in bytes (default 1024)")
    p.add_argument("--plain-seconds", type=float, default=None, help="duration of each plain fsync loop (default: --seconds)")
    p.add_argument("--warmup-seconds", type=float, default=2.0, help="warm-up duration, also sizes the pre-signed pool (default 2)")
    p.add_argument("--log-level", default="info", help="daemon log_level (default info, the shipped default)")
    p.add_argument("--tmpdir", default=None, help="parent of the temporary directory (default: $TMPDIR or /tmp)")
    p.add_argument("--vectors", default=None, help="signature-vectors.json for the signing self-test")
    p.add_argument("--skip-plain", action="store_true", help="do not run the plain filesystem loops")
    a = p.parse_args()
    if not (1 <= a.clients <= MAX_CLIENTS):
        p.error(f"--clients must be 1..{MAX_CLIENTS}")
    if not (0.2 <= a.seconds <= MAX_SECONDS):
        p.error(f"--seconds must be 0.2..{MAX_SECONDS:.0f}")
    if a.count is not None and not (1 <= a.count <= MAX_PER_CLIENT):
        p.error(f"--count must be 1..{MAX_PER_CLIENT}")
    if not (1 <= a.names_per_client <= 1000):
        p.error("--names-per-client must be 1..1000")
    if not (1 <= a.size <= 1 << 20):
        p.error("--size must be 1..1048576")
    if not (1 <= a.port <= 65534):
        p.error("--port must be 1..65534")
    if a.plain_seconds is None:
        a.plain_seconds = a.seconds
    if not (0.2 <= a.plain_seconds <= MAX_SECONDS):
        p.error(f"--plain-seconds must be 0.2..{MAX_SECONDS:.0f}")
    if not (0.0 <= a.warmup_seconds <= 60.0):
        p.error("--warmup-seconds must be 0..60")
    return a


def main():
    args = parse_args()
    binary = args.bin or default_binary()
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise SystemExit(f"data-mesher binary not found or not executable: {binary} (set DM_BIN)")
    for port in (args.port, args.port + 1):
        if port_in_use(port):
            raise SystemExit(f"127.0.0.1:{port} is already in use; pick another --port")

    load_start = loadavg1()
    log(f"load average (1 min) at start: {load_start:.2f} on {os.cpu_count()} CPUs")
    vectors = find_vectors(args.vectors)
    if vectors:
        n = verify_signing_against_vectors(vectors)
        log(f"signing self-test: {n} vectors OK ({vectors})")
    else:
        log("signing self-test: no signature-vectors.json found, skipped (the daemon still checks every signature)")

    C = args.clients
    names = [f"bench/f{i}" for i in range(C * args.names_per_client)]
    client_names = [names[k::C] for k in range(C)]

    workdir = tempfile.mkdtemp(prefix="dm-upload-bench-", dir=args.tmpdir)
    daemon = None
    try:
        key_path = os.path.join(workdir, "signer.key")
        out = subprocess.run(
            [binary, "generate", "keypair", "--private-key-path", key_path, "--public-key-path", key_path + ".pub"],
            capture_output=True, text=True, timeout=60,
        )
        if out.returncode != 0:
            raise SystemExit(f"generate keypair failed (exit {out.returncode}): {out.stderr.strip()}")
        key = load_private_key(key_path)
        signer_b64 = raw_public_key_b64(key)
        printed = out.stdout.strip().splitlines()[-1].strip() if out.stdout.strip() else ""
        if printed != signer_b64:
            raise SystemExit(f"generate keypair printed {printed!r}, key file holds {signer_b64!r}")

        daemon = Daemon(binary, workdir, args.port, names, signer_b64, args.log_level, args.clients)
        log(f"binary: {binary}")
        log(f"workdir: {workdir} (state_dir {daemon.state_dir})")
        t = time.perf_counter()
        daemon.start()
        log(f"daemon pid {daemon.pid} ready in {time.perf_counter() - t:.2f}s on 127.0.0.1:{args.port}")
        time.sleep(0.2)
        rss_idle = proc_status(daemon.pid, "VmRSS")

        ts = Timestamps()
        seed = os.urandom(max(args.size, 8))

        # Warm-up: opens connections, warms the daemon, and estimates the rate so that
        # the timed pool can be sized (duration mode). Signed before it is sent.
        est_rate = None
        if args.warmup_seconds > 0:
            wpools = [presign(key, signer_b64, client_names[k], 300, ts, args.size, seed) for k in range(C)]
            wres, welapsed = run_clients(args.port, wpools, args.warmup_seconds, args.warmup_seconds + 60)
            wok = sum(r.ok for r in wres)
            werr = sum(r.errors for r in wres)
            if werr:
                samples = [s for r in wres for s in r.error_samples][:5]
                raise SystemExit("warm-up uploads failed:\n  " + "\n  ".join(samples) + "\n" + daemon.log_tail())
            est_rate = wok / welapsed
            log(f"warm-up: {wok} uploads in {welapsed:.2f}s ({est_rate:.0f}/s)")
            del wpools

        if args.count is not None:
            per_client = args.count
            deadline = None
        else:
            guess = (est_rate if est_rate else 2000.0) * args.seconds / C
            per_client = int(min(MAX_PER_CLIENT, MAX_TOTAL_PRESIGNED // C, max(200, guess * 3 + 100)))
            deadline = args.seconds

        t = time.perf_counter()
        pools = [presign(key, signer_b64, client_names[k], per_client, ts, args.size, seed) for k in range(C)]
        log(f"pre-signed {per_client * C} requests ({per_client} per client) in {time.perf_counter() - t:.2f}s")

        cpu_d0 = proc_cpu_seconds(daemon.pid)
        cpu_c0 = time.process_time()
        results, elapsed = run_clients(args.port, pools, deadline, (deadline or MAX_SECONDS) + 60)
        cpu_c1 = time.process_time()
        cpu_d1 = proc_cpu_seconds(daemon.pid)
        del pools

        ok = sum(r.ok for r in results)
        errors = sum(r.errors for r in results)
        exhausted = any(r.exhausted for r in results)
        lat = sorted(x for r in results for x in r.latencies)
        dm_rate = ok / elapsed
        p50 = percentile(lat, 50) * 1000
        p99 = percentile(lat, 99) * 1000
        rss_peak = proc_status(daemon.pid, "VmHWM")
        rss_after = proc_status(daemon.pid, "VmRSS")
        daemon_cpu = (cpu_d1 - cpu_d0) if cpu_d0 is not None and cpu_d1 is not None else float("nan")
        client_cpu = cpu_c1 - cpu_c0
        alive = daemon.proc.poll() is None
        problem = verify_stored(args.port, results, args.size) if alive else "daemon died"
        verified = problem is None

        log(f"data-mesher: {ok} uploads of {args.size} B in {elapsed:.2f}s with {C} clients = {dm_rate:.1f} uploads/s; "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, errors {errors}")
        if exhausted and deadline is not None:
            log("note: a client used up its pre-signed pool; the window ended early (rate is still ok/elapsed)")
        for s in [s for r in results for s in r.error_samples][:5]:
            log(f"  error: {s}")
        log(f"cpu during the window: daemon {daemon_cpu:.2f}s ({daemon_cpu / elapsed:.2f} cores), "
            f"bench client {client_cpu:.2f}s ({client_cpu / elapsed:.2f} cores)")
        log(f"daemon RSS: idle {rss_idle} KiB, after {rss_after} KiB, peak (VmHWM) {rss_peak} KiB")
        log("stored state check (GET /v1/files): " + ("every name holds its last accepted upload" if verified else problem))
        if not alive:
            log(f"daemon died during the run:\n{daemon.log_tail()}")

        daemon.stop()

        # Plain filesystem loops, in a directory next to state_dir (same filesystem),
        # with the daemon stopped so it does not compete for the disk or CPU.
        plain = {}
        plain_cpu = {}
        if not args.skip_plain:
            pdir = os.path.join(workdir, "plain")
            for label, threads, dsync in (
                ("single_dirsync", 1, True),
                ("single_nodirsync", 1, False),
                ("parallel_dirsync", C, True),
                ("parallel_nodirsync", C, False),
            ):
                rate, cpu_per_op = plain_loop(os.path.join(pdir, label), threads, args.plain_seconds, dsync, args.size)
                plain[label] = rate
                plain_cpu[label] = cpu_per_op
                log(f"plain write+fsync+rename{'+fsync(dir)' if dsync else ''}, {threads} thread(s): {rate:.1f}/s, "
                    f"{cpu_per_op * 1e6:.0f} us CPU each")

        def r(x, nd=1):
            return "nan" if x is None or x != x else f"{x:.{nd}f}"

        p1 = plain.get("single_dirsync")
        pp = plain.get("parallel_dirsync")
        ratio = dm_rate / p1 if p1 else None
        ratio_par = dm_rate / pp if pp else None
        fields = [
            f"clients={C}",
            f"dm_uploads_per_s={r(dm_rate)}",
            f"plain_fsync_rename_per_s={r(p1)}",
            f"plain_parallel_per_s={r(pp)}",
            f"ratio={r(ratio, 3)}",
            f"ratio_parallel={r(ratio_par, 3)}",
            f"p50_ms={r(p50, 2)}",
            f"p99_ms={r(p99, 2)}",
            f"plain_fsync_rename_nodirsync_per_s={r(plain.get('single_nodirsync'))}",
            f"plain_parallel_nodirsync_per_s={r(plain.get('parallel_nodirsync'))}",
            f"uploads={ok}",
            f"errors={errors}",
            f"verified={int(verified)}",
            f"seconds={r(elapsed, 2)}",
            f"size={args.size}",
            f"names={len(names)}",
            f"rss_idle_kib={rss_idle}",
            f"rss_peak_kib={rss_peak}",
            f"daemon_cpu_s={r(daemon_cpu, 2)}",
            f"client_cpu_s={r(client_cpu, 2)}",
            f"daemon_cpu_us_per_upload={r(daemon_cpu / ok * 1e6 if ok else None, 0)}",
            f"plain_cpu_us_per_op={r(plain_cpu['single_dirsync'] * 1e6 if 'single_dirsync' in plain_cpu else None, 0)}",
            f"load1_start={r(load_start, 2)}",
            f"load1_end={r(loadavg1(), 2)}",
        ]
        log("upload_bench " + " ".join(fields))
        return 0 if errors == 0 and alive and verified else 1
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f"upload_bench: {e}", file=sys.stderr)
        sys.exit(1)
