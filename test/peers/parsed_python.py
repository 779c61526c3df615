#!/usr/bin/env python3
"""Differential-fuzz peer: python3's own http.server parser. usage parsed_python.py PORT [BIND]

Every request http.server parses is printed to stdout as one JSON line
{"server":"python","method","target","headers":[[name,value],...]} before it is answered
(200, keep-alive). Any method but CONNECT is accepted (CONNECT gets http.server's own 501:
a 2xx would tell the proxy a tunnel is open); Content-Length and chunked bodies are read
(http.server leaves bodies to the handler). Prints 'listening ADDR PORT' on stderr.
"""
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __getattr__(self, name):
        if name.startswith("do_") and name != "do_CONNECT":
            return self.echo
        raise AttributeError(name)

    def log_message(self, *args):
        pass

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                self.rfile.read(size + 2)
        n = int(self.headers.get("Content-Length", "0") or "0")
        if n > 0:
            self.rfile.read(n)

    def echo(self):
        rec = {"server": "python", "method": self.command, "target": self.path,
               "headers": [[k, v] for k, v in self.headers.items()]}
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()
        try:
            self.read_body()
        except ValueError:
            self.close_connection = True
        body = b"parsed\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


if __name__ == "__main__":
    port = int(sys.argv[1])
    bind = sys.argv[2] if len(sys.argv) > 2 else "::"
    srv = Server((bind, port), Handler)
    sys.stderr.write(f"listening {bind} {port}\n")
    sys.stderr.flush()
    srv.serve_forever()
