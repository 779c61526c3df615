#!/usr/bin/env python3
"""TCP echo peer: usage tcp_echo.py PORT [BIND]  (BIND '::' = dual stack).

Echoes every byte back. When the client half-closes, it sends what is left, then
half-closes too (shutdown SHUT_WR) so the client sees EOF after all its data.
Prints each client's 'ADDR PORT' on stdout, one line per connection, and
'listening ADDR PORT' on stderr when ready.
"""
import socket
import socketserver
import sys


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        addr, port = self.client_address[:2]
        if addr.startswith("::ffff:") and "." in addr:
            addr = addr[7:]
        print(f"{addr} {port}", flush=True)
        sock = self.request
        try:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    break
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            # Drain until the client closes, so close() does not turn into a RST.
            while sock.recv(1 << 16):
                pass
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


if __name__ == "__main__":
    port = int(sys.argv[1])
    bind = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
    Server.address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    srv = Server((bind, port), Handler)
    a = srv.socket.getsockname()
    print(f"listening {a[0]} {a[1]}", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
