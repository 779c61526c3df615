#!/usr/bin/env python3
"""Fault-injecting TCP echo peer: usage fault_server.py PORT [BIND]  (BIND '::' = dual stack).

Echoes every byte back, like tcp_echo.py, from one thread (a socket closed while another
thread sits in recv() on it would not be released, so no RST would go out). Commands on
stdin, one per line:
  rst   close every open connection with SO_LINGER 0, so the kernel sends a RST
Prints 'listening ADDR PORT' on stderr when ready, 'conn ADDR PORT' per accepted
connection and 'rst N' after a reset command (N connections reset).
"""
import selectors
import socket
import struct
import sys


def main():
    port = int(sys.argv[1])
    bind = sys.argv[2] if len(sys.argv) > 2 else "::"
    fam = socket.AF_INET6 if ":" in bind else socket.AF_INET
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind((bind, port))
    srv.listen(1024)
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    conns = set()
    print(f"listening {bind} {port}", file=sys.stderr, flush=True)

    def drop(c):
        sel.unregister(c)
        conns.discard(c)
        c.close()

    while True:
        for key, _ in sel.select():
            if key.data == "accept":
                try:
                    c, a = srv.accept()
                except BlockingIOError:
                    continue
                addr = a[0][7:] if a[0].startswith("::ffff:") else a[0]
                print(f"conn {addr} {a[1]}", flush=True)
                c.setblocking(True)  # small echoes: sendall may block briefly, that is fine
                conns.add(c)
                sel.register(c, selectors.EVENT_READ, "conn")
            elif key.data == "stdin":
                line = sys.stdin.readline()
                if not line:
                    sel.unregister(sys.stdin)
                elif line.strip() == "rst":
                    victims = list(conns)
                    for c in victims:
                        # Linger on with a zero timeout: close() aborts with a RST.
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        drop(c)
                    print(f"rst {len(victims)}", flush=True)
            else:
                c = key.fileobj
                try:
                    data = c.recv(1 << 16)
                    if data:
                        c.sendall(data)
                        continue
                except OSError:
                    pass
                drop(c)


if __name__ == "__main__":
    main()
