#!/usr/bin/env python3
"""An application backend answering Centrifugo's shared_poll_refresh proxy (HTTP, JSON), for the
SDK suites: what a Python backend behind Spindle looks like. Standard library only.

    python3 shared_poll.py            prints "listening <port>" on stdout, serves until killed

Endpoints:
    POST /refresh   the proxy: {"channel", "items": [{"key", "version"}]} ->
                    {"result": {"items": [{"key", "data", "version", "removed"}], "epoch"}}
                    with the values set for the channel (keys without one are left out: unchanged)
    POST /set       test control: {"channel", "key", "data", "version"?, "removed"?}
    POST /epoch     test control: {"channel", "epoch"}
    GET  /calls     test control: every refresh so far, [{"channel", "keys"}]
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
VALUES = {}  # channel -> key -> {"data", "version", "removed"}
EPOCHS = {}  # channel -> epoch
CALLS = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _json(self, status, body):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self):
        length = int(self.headers.get("Content-Length", "0"))
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self):
        if self.path == "/calls":
            with LOCK:
                return self._json(200, list(CALLS))
        self._json(404, {})

    def do_POST(self):
        body = self._body()
        channel = body.get("channel", "")
        with LOCK:
            if self.path == "/refresh":
                keys = [item["key"] for item in body.get("items", [])]
                CALLS.append({"channel": channel, "keys": keys})
                values = VALUES.get(channel, {})
                items = []
                for key in keys:
                    value = values.get(key)
                    if value is None:
                        continue
                    item = {"key": key, "data": value["data"], "version": value["version"]}
                    if value["removed"]:
                        item = {"key": key, "removed": True}
                    items.append(item)
                result = {"items": items, "epoch": EPOCHS.get(channel, "")}
                return self._json(200, {"result": result})
            if self.path == "/set":
                VALUES.setdefault(channel, {})[body["key"]] = {
                    "data": body.get("data"),
                    "version": body.get("version", 0),
                    "removed": body.get("removed", False),
                }
                return self._json(200, {})
            if self.path == "/epoch":
                EPOCHS[channel] = body["epoch"]
                return self._json(200, {})
        self._json(404, {})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
