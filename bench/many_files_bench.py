#!/usr/bin/env python3
"""Many files stay cheap (issue 14.6): config load and restart with N configured names.

Starts its own daemon (127.0.0.1 only) in a temporary directory and prints:
  check_config_s    `server --check-config` with N names (best of 3)
  upload_s          N signed uploads of --size bytes (--clients keep-alive connections)
  restart_http_s    from spawning the stopped daemon to its first answer on /v1/info
  restart_files     how many of the N files it lists at that moment
  join_fill_s       from spawning a second, empty node (bootstrap: the first) until it
                    lists all N files (join_files: how many it held when the wait ended)
It stops every process it started (by PID) and removes the directory, also on failure.
Not a test: it asserts nothing; compare the figures with the issue's (1.5 s, 3 s).

    python3 bench/many_files_bench.py                 # 20000 names
    python3 bench/many_files_bench.py --files 2000    # quick
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchlib import die_with_parent, loadavg1

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(SCRIPT_DIR)
READY_TIMEOUT_S = 120.0


def rss_kib(pid):
    """VmRSS of a running process in KiB, or -1."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def binary():
    if os.environ.get("DM_BIN"):
        return os.environ["DM_BIN"]
    for kind in ("release", "debug"):
        path = os.path.join(REPO_ROOT, ".build", kind, "data-mesher")
        if os.path.exists(path):
            return path
    raise SystemExit("no data-mesher binary: set DM_BIN or build first")


def signed_message(name, timestamp_ns, content):
    nm = name.encode()
    return b"".join(
        [
            b"data-mesher/file/v1\x00",
            struct.pack(">B", 1),
            struct.pack(">H", 0),
            struct.pack(">H", len(nm)),
            nm,
            struct.pack(">qQ", timestamp_ns, 0),
            hashlib.sha256(content).digest(),
            struct.pack(">Q", len(content)),
        ]
    )


def wait_ready(port, proc, deadline_s):
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/info")
            if conn.getresponse().status == 200:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit("daemon did not answer in time")


def listed(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/v1/files")
    return len(json.loads(conn.getresponse().read()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--port", type=int, default=17600)
    parser.add_argument("--join-timeout", type=float, default=300.0, help="seconds to wait for the empty node")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (state, config, log)")
    args = parser.parse_args()
    if not 1 <= args.files <= 200_000 or not 1 <= args.clients <= 64:
        raise SystemExit("--files must be 1-200000 and --clients 1-64")
    dm = binary()
    print(f"binary {dm}\nload1_start {loadavg1()}", flush=True)
    work = tempfile.mkdtemp(prefix="dm-many-")
    procs = []
    try:
        key = Ed25519PrivateKey.generate()
        public = base64.b64encode(
            key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ).decode()
        names = [f"d{i % 200}/f{i}" for i in range(args.files)]
        config = os.path.join(work, "dm.toml")
        with open(config, "w") as f:
            f.write(
                f'state_dir = "{work}/state"\nlog_level = "warn"\n'
                f'[http]\nport = {args.port}\ninterfaces = ["127.0.0.1"]\n'
                # every client is 127.0.0.1, which may take half of the upload slots
                f"max_concurrent_uploads = {max(16, 2 * args.clients)}\n"
                f'[cluster]\nport = {args.port + 1}\ninterfaces = ["127.0.0.1"]\n[files]\n'
            )
            for name in names:
                f.write(f'"{name}" = ["{public}"]\n')

        best = None
        for _ in range(3):
            start = time.monotonic()
            out = subprocess.run([dm, "server", "--config", config, "--check-config"], capture_output=True, timeout=600)
            took = time.monotonic() - start
            if out.returncode != 0:
                raise SystemExit(f"--check-config failed: {out.stderr.decode()[:500]}")
            best = took if best is None else min(best, took)
        print(f"check_config_s {best:.3f}", flush=True)

        log = open(os.path.join(work, "daemon.log"), "ab")

        def spawn(config=config):
            proc = subprocess.Popen(
                [dm, "server", "--config", config], stdout=log, stderr=log, preexec_fn=die_with_parent
            )
            procs.append(proc)
            return proc

        def stop(proc):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        proc = spawn()
        print(f"first_start_http_s {wait_ready(args.port, proc, READY_TIMEOUT_S):.3f}", flush=True)
        base = time.time_ns() - 10**9
        failures = []

        def upload(part):
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
            for i in range(part, args.files, args.clients):
                content = os.urandom(args.size)
                ts = base + i
                sig = key.sign(signed_message(names[i], ts, content))
                conn.request(
                    "PUT",
                    "/v1/files/" + names[i],
                    body=content,
                    headers={
                        "DM-Signer": public,
                        "DM-Signature": base64.b64encode(sig).decode(),
                        "DM-Timestamp": str(ts),
                    },
                )
                reply = conn.getresponse()
                reply.read()
                if reply.status != 201:
                    failures.append(reply.status)
                    return

        start = time.monotonic()
        threads = [threading.Thread(target=upload, args=(c,)) for c in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise SystemExit(f"uploads failed: {failures[:5]}")
        print(f"upload_s {time.monotonic() - start:.3f}", flush=True)

        for run in (1, 2):
            stop(proc)
            proc = spawn()
            took = wait_ready(args.port, proc, READY_TIMEOUT_S)
            print(f"restart{run}_http_s {took:.3f}", flush=True)
            print(f"restart{run}_files {listed(args.port)}", flush=True)
        print(f"rss_kib {rss_kib(proc.pid)}", flush=True)

        # An empty node joins and fetches everything from the first.
        with open(config) as f:
            text = f.read()
        joiner_port = args.port + 2
        joiner_config = os.path.join(work, "joiner.toml")
        with open(joiner_config, "w") as f:
            f.write(
                text.replace(f'state_dir = "{work}/state"', f'state_dir = "{work}/joiner"')
                .replace(f"[http]\nport = {args.port}", f"[http]\nport = {joiner_port}")
                .replace(
                    f"[cluster]\nport = {args.port + 1}",
                    f'[cluster]\nport = {joiner_port + 1}\nbootstrap_nodes = ["127.0.0.1:{args.port + 1}"]',
                )
            )
        start = time.monotonic()
        joiner = spawn(joiner_config)
        wait_ready(joiner_port, joiner, READY_TIMEOUT_S)
        held = 0
        while time.monotonic() - start < args.join_timeout:
            held = listed(joiner_port)
            if held >= args.files:
                break
            time.sleep(0.2)
        print(f"join_fill_s {time.monotonic() - start:.3f}\njoin_files {held}", flush=True)
        stop(joiner)
        stop(proc)
        print(f"load1_end {loadavg1()}", flush=True)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if args.keep:
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
