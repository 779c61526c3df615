#!/usr/bin/env python3
"""generate_204-style HTTP peer: usage http_204.py PORT [BIND]

Answers every GET/HEAD with 204 No Content (what the anchors' delay test requests) and
prints the client's address on stdout, one line per request; 'listening ADDR PORT' on
stderr when ready. Stdlib only.
"""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        print(self.client_address[0], flush=True)
        self.send_response(204)
        self.send_header("Connection", "close")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1])
    bind = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
    server = http.server.ThreadingHTTPServer((bind, port), Handler)
    print(f"listening {bind} {port}", file=sys.stderr, flush=True)
    server.serve_forever()
