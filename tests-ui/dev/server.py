#!/usr/bin/env python3
"""Development server for the status page (not used by the tests).

Serves GET / with the HTML extracted from Sources/DataMesherHTTP/StatusPage.swift (re-read on
every request, so edits show on reload, no rebuild needed) and proxies GET /v1/info,
/v1/members, /v1/files and the /v1/events stream to a real node. With --fake-events (for a node
without /v1/events) it serves instead a fake stream built by polling that node once a second and
turning the differences into events shaped like the real ones (accepted, deleted, expired,
member_joined, member_left, member_failed).

    python3 tests-ui/dev/server.py --upstream http://127.0.0.11:7331 --listen 127.0.0.1:8089
"""
import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import statuspage  # noqa: E402

UPSTREAM = ""
FAKE_EVENTS = False


def fetch(path):
    with urllib.request.urlopen(UPSTREAM + path, timeout=5) as r:
        return r.status, r.headers.get("Content-Type", "application/json"), r.read()


def fetch_json(path):
    return json.loads(fetch(path)[2])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("dev-server: " + (fmt % args) + "\n")

    def send(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/":
            with open(statuspage.SWIFT, encoding="utf-8") as f:
                html = statuspage.extract(f.read())
            self.send(200, "text/html; charset=utf-8", html.encode())
        elif path == "/v1/events" and FAKE_EVENTS:
            self.fake_events()
        elif path == "/v1/events":
            self.proxy_events()
        elif path in ("/v1/info", "/v1/members", "/v1/files"):
            try:
                status, ctype, body = fetch(path)
            except urllib.error.HTTPError as e:
                status, ctype, body = e.code, "application/json", e.read()
            except OSError as e:
                status, ctype, body = 502, "application/json", json.dumps({"error": str(e)}).encode()
            self.send(status, ctype, body)
        else:
            self.send(404, "application/json", b'{"error":"not found"}')

    def proxy_events(self):
        try:
            upstream = urllib.request.urlopen(UPSTREAM + self.path, timeout=60)
        except urllib.error.HTTPError as e:
            self.send(e.code, "application/json", e.read())
            return
        except OSError as e:
            self.send(502, "application/json", json.dumps({"error": str(e)}).encode())
            return
        with upstream:
            self.send_response(200)
            self.send_header("Content-Type", upstream.headers.get("Content-Type", "text/event-stream"))
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for line in upstream:  # ends when the node closes the stream or goes quiet for 60 s
                    self.wfile.write(line)
                    if line == b"\n":
                        self.wfile.flush()
            except OSError:
                return

    def fake_events(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(b": connected\n\n")
            self.wfile.flush()
            files = {f["name"]: f for f in fetch_json("/v1/files")}
            members = {m["id"]: m for m in fetch_json("/v1/members")}
            last_beat = time.time()
            for _ in range(3600):  # one hour at most, then the browser reconnects
                time.sleep(1)
                now = time.time_ns()
                out = []
                new_files = {f["name"]: f for f in fetch_json("/v1/files")}
                for name, f in new_files.items():
                    old = files.get(name)
                    if old and old["timestamp"] == f["timestamp"] and old["expired"] == f["expired"]:
                        continue
                    kind = "expired" if f["expired"] else "deleted" if f["deleted"] else "accepted"
                    ev = {"kind": kind, "time": now, "name": name, "timestamp": f["timestamp"], "origin": "peer"}
                    if kind != "expired":
                        ev.update(size=f["size"], sha256=f["sha256"], signer=f["signer"])
                    out.append(ev)
                files = new_files
                new_members = {m["id"]: m for m in fetch_json("/v1/members")}
                for mid, m in new_members.items():
                    old = members.get(mid)
                    if old is None or (old["state"] in ("dead", "left") and m["state"] == "alive"):
                        kind = "member_joined"
                    elif old["state"] != m["state"] and m["state"] in ("dead", "left"):
                        kind = "member_failed" if m["state"] == "dead" else "member_left"
                    else:
                        continue
                    out.append({"kind": kind, "time": now, "member": m})
                members = new_members
                for ev in out:
                    self.wfile.write(("event: %s\ndata: %s\n\n" % (ev["kind"], json.dumps(ev))).encode())
                if time.time() - last_beat >= 15:
                    self.wfile.write(b": keepalive\n\n")
                    last_beat = time.time()
                self.wfile.flush()
        except (OSError, ValueError):
            return


def main():
    global UPSTREAM, FAKE_EVENTS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--upstream", required=True, help="base URL of a real node, e.g. http://127.0.0.11:7331")
    p.add_argument("--listen", default="127.0.0.1:8089", help="ADDR:PORT to serve on")
    p.add_argument("--fake-events", action="store_true", help="make events by polling (node without /v1/events)")
    args = p.parse_args()
    UPSTREAM = args.upstream.rstrip("/")
    FAKE_EVENTS = args.fake_events
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    print("dev-server: http://%s/ -> %s" % (args.listen, UPSTREAM), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
