#!/usr/bin/env python3
"""The HTTP server each lab VM runs (python3 standard library only).

    vm_http_server.py --name vm1 --port 8080

GET /                         answers "<name>\\n"
GET /stream?bytes=N&rate=R    streams N bytes at about R bytes/s (long downloads for the
                              mux-failure test); the body is lines naming the VM.
GET /health                   answers "ok\\n" (the agents' health checks: not logged, and a
                              prober that hangs up after the status line is no error)
GET /peer                     answers "<name> <client address>:<client port>\\n" (what the
                              server saw: the SNAT test checks the VIP and leased port)

One thread per connection; one log line per request on stderr.
"""

import argparse
import http.server
import socketserver
import sys
import time
import urllib.parse

CHUNK = 4096


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "sluice-lab-vm/1"
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server naming)
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/":
            self._reply(200, f"{self.server.vm_name}\n")
        elif url.path == "/health":
            self._reply(200, "ok\n")
        elif url.path == "/peer":
            host, port = self.client_address[:2]
            self._reply(200, f"{self.server.vm_name} {host}:{port}\n")
        elif url.path == "/stream":
            self._stream(urllib.parse.parse_qs(url.query))
        else:
            self._reply(404, "not found\n")

    def _reply(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-By", self.server.vm_name)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client had what it wanted (a health check reads the status line only)

    def _stream(self, query):
        try:
            total = int(query.get("bytes", ["1048576"])[0])
            rate = float(query.get("rate", ["0"])[0])  # 0 = as fast as possible
            if total < 0 or rate < 0:
                raise ValueError
        except ValueError:
            self._reply(400, "bytes and rate must be non-negative numbers\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(total))
        self.send_header("X-Served-By", self.server.vm_name)
        self.end_headers()
        line = f"{self.server.vm_name} sluice lab stream\n".encode()
        pattern = line * (CHUNK // len(line) + 1)
        start = time.monotonic()
        sent = 0
        try:
            while sent < total:
                n = min(CHUNK, total - sent)
                self.wfile.write(pattern[:n])
                sent += n
                if rate > 0:
                    # Sleep until the schedule says the bytes sent so far are due.
                    ahead = sent / rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.log_message("stream aborted by peer after %d of %d bytes", sent, total)
            return
        self.log_message("stream of %d bytes done in %.1f s", total, time.monotonic() - start)

    def log_request(self, code="-", size="-"):
        if urllib.parse.urlsplit(self.path).path != "/health":
            super().log_request(code, size)

    def log_message(self, fmt, *args):
        sys.stderr.write(
            f"{time.strftime('%H:%M:%S')} {self.server.vm_name} {self.client_address[0]}:"
            f"{self.client_address[1]} {fmt % args}\n")
        sys.stderr.flush()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # the chaos run opens 500 connections at once

    def __init__(self, address, vm_name):
        super().__init__(address, Handler)
        self.vm_name = vm_name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="VM name to answer with")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--bind", default="0.0.0.0")
    args = parser.parse_args()
    server = Server((args.bind, args.port), args.name)
    sys.stderr.write(f"{args.name}: serving HTTP on {args.bind}:{args.port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
