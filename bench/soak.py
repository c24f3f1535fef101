#!/usr/bin/env python3
"""A long run (issue 14.7): N nodes on loopback for M minutes. An upload every second (through
the CLI, signed), one node restarted every two minutes (SIGTERM, then started again), a burst of
junk datagrams at every node every five minutes. Every 30 s it records RSS, open descriptors and
threads per node. At the end: versions lost (every acknowledged upload must be superseded or
held everywhere), false deaths ("member declared dead" while nobody was killed), propagation
percentiles (upload acknowledged -> content visible on each other node).

    bench/soak.py --minutes 60                  # the full run
    bench/soak.py --minutes 3 --nodes 3         # a quick look

Prints one machine-readable line `soak: {...}` and writes samples to bench/out/soak-*.csv.
Not a test: it asserts nothing and runs only by hand.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "soak/data"


def http_get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read()
    except Exception:
        return None, b""


class Node:
    def __init__(self, binary, root, index, address, bootstrap, public_key):
        self.binary = binary
        self.index = index
        self.address = address
        self.dir = os.path.join(root, f"node{index}")
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "daemon.log")
        self.config = os.path.join(self.dir, "dm.toml")
        seed = f'bootstrap_nodes = ["{bootstrap}:7946"]\n' if bootstrap else ""
        with open(self.config, "w") as f:
            f.write(
                f'state_dir = "{self.dir}/state"\nnode_name = "node{index}"\nlog_level = "info"\n'
                f'[http]\nport = 7331\ninterfaces = ["{address}"]\n'
                f'[cluster]\ninterfaces = ["{address}"]\n{seed}join_interval = "2s"\npush_pull_interval = "10s"\n'
                f'[files]\n"{NAME}" = ["{public_key}"]\n'
            )
        self.process = None

    @property
    def url(self):
        return f"http://{self.address}:7331"

    def start(self):
        log = open(self.log, "a")
        self.process = subprocess.Popen(
            [self.binary, "server", "--config", self.config], stdout=log, stderr=log,
            preexec_fn=benchlib.die_with_parent)
        deadline = time.time() + 30
        while time.time() < deadline:
            if http_get(self.url + "/v1/info", 0.5)[0] == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(f"node{self.index} did not start")

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def sample(self):
        pid = self.process.pid if self.process else None
        if pid is None or self.process.poll() is not None:
            return None
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            fds = None
        return {
            "rss_kib": benchlib.proc_status(pid, "VmRSS"), "fds": fds,
            "threads": benchlib.proc_status(pid, "Threads"),
        }

    def holds(self, content):
        status, body = http_get(self.url + "/v1/files/" + NAME, 1.0)
        return status == 200 and body == content


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def junk_burst(nodes, count):
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.77.250", 0))
    for _ in range(count):
        data = bytes(random.getrandbits(8) for _ in range(random.randint(1, 300)))
        for node in nodes:
            sender.sendto(data, (node.address, 7946))
    sender.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.path.join(REPO, ".build/release/data-mesher"))
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--restart-every", type=float, default=120, help="seconds")
    parser.add_argument("--junk-every", type=float, default=300, help="seconds")
    parser.add_argument("--junk-count", type=int, default=2000, help="datagrams per node per burst")
    args = parser.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"soak: no binary at {args.bin} (swift build -c release, or --bin)")

    root = tempfile.mkdtemp(prefix="dm-soak-")
    out_dir = os.path.join(REPO, "bench", "out")
    os.makedirs(out_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    samples_path = os.path.join(out_dir, f"soak-{stamp}.csv")
    key = os.path.join(root, "owner.pem")
    public = subprocess.run(
        [args.bin, "generate", "keypair", "--private-key-path", key, "--public-key-path", key + ".pub"],
        check=True, capture_output=True, text=True).stdout.strip()
    addresses = [f"127.0.77.{10 + i}" for i in range(args.nodes)]
    nodes = [Node(args.bin, root, i, addresses[i], addresses[0] if i else None, public) for i in range(args.nodes)]
    latencies, lost, uploads, failed_uploads, restarts, bursts = [], 0, 0, 0, 0, 0
    acknowledged = []
    try:
        for node in nodes:
            node.start()
        time.sleep(5)
        start = time.time()
        end = start + args.minutes * 60
        next_restart = start + args.restart_every
        next_junk = start + args.junk_every
        next_sample = start
        victim = 1 % args.nodes
        content_file = os.path.join(root, "data")
        with open(samples_path, "w") as samples:
            samples.write("elapsed_s,node,rss_kib,fds,threads\n")
            sequence = 0
            while time.time() < end:
                tick = time.time()
                if tick >= next_sample:
                    next_sample += 30
                    for node in nodes:
                        sample = node.sample()
                        if sample:
                            samples.write(
                                f"{tick - start:.0f},{node.index},{sample['rss_kib']},{sample['fds']},{sample['threads']}\n")
                    samples.flush()
                if tick >= next_restart:
                    next_restart += args.restart_every
                    nodes[victim].stop()
                    nodes[victim].start()
                    restarts += 1
                    victim = victim % (args.nodes - 1) + 1 if args.nodes > 1 else 0
                if tick >= next_junk:
                    next_junk += args.junk_every
                    junk_burst(nodes, args.junk_count)
                    bursts += 1
                sequence += 1
                content = f"soak {sequence} {time.time()}\n".encode()
                with open(content_file, "wb") as f:
                    f.write(content)
                uploader = nodes[sequence % args.nodes]
                if uploader.process.poll() is not None:
                    uploader = nodes[0]
                sent = time.time()
                result = subprocess.run(
                    [args.bin, "file", "update", content_file, "--name", NAME, "--url", uploader.url, "--key", key],
                    capture_output=True, text=True)
                uploads += 1
                if result.returncode != 0:
                    failed_uploads += 1
                    continue
                acknowledged.append(content)
                pending = [n for n in nodes if n is not uploader and n.process.poll() is None]
                deadline = sent + 2
                while pending and time.time() < deadline:
                    for node in list(pending):
                        if node.holds(content):
                            latencies.append(time.time() - sent)
                            pending.remove(node)
                    time.sleep(0.005)
                time.sleep(max(0, sent + 1 - time.time()))
        # Versions lost: after a quiet minute every node holds the last acknowledged version.
        settle = time.time() + 60
        last = acknowledged[-1] if acknowledged else None
        while last and time.time() < settle and not all(n.holds(last) for n in nodes):
            time.sleep(0.5)
        lost = sum(1 for n in nodes if last and not n.holds(last))
        false_deaths = 0
        for node in nodes:
            with open(node.log, errors="replace") as f:
                false_deaths += sum(1 for line in f if "member declared dead" in line)
        final = [node.sample() or {} for node in nodes]
        report = {
            "nodes": args.nodes, "minutes": args.minutes, "uploads": uploads, "failed_uploads": failed_uploads,
            "restarts": restarts, "junk_bursts": bursts, "nodes_missing_last_version": lost,
            "false_deaths": false_deaths,
            "propagation_p50_ms": round((percentile(latencies, 0.5) or 0) * 1000, 1),
            "propagation_p99_ms": round((percentile(latencies, 0.99) or 0) * 1000, 1),
            "propagation_max_ms": round((max(latencies) if latencies else 0) * 1000, 1),
            "rss_kib_final": [s.get("rss_kib") for s in final], "fds_final": [s.get("fds") for s in final],
            "threads_final": [s.get("threads") for s in final], "samples": os.path.relpath(samples_path, REPO),
            "loadavg1": benchlib.loadavg1(),
        }
        print("soak: " + json.dumps(report))
    finally:
        for node in nodes:
            node.stop(signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
