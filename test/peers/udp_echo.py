#!/usr/bin/env python3
"""UDP echo peer: usage udp_echo.py PORT [BIND]  (BIND '::' = dual stack).

Sends every datagram back to its source and prints the source 'ADDR PORT' on stdout,
one line per datagram; 'listening ADDR PORT' on stderr when ready.
"""
import socket
import sys

if __name__ == "__main__":
    port = int(sys.argv[1])
    bind = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
    fam = socket.AF_INET6 if ":" in bind else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((bind, port))
    a = s.getsockname()
    print(f"listening {a[0]} {a[1]}", file=sys.stderr, flush=True)
    try:
        while True:
            data, src = s.recvfrom(65535)
            s.sendto(data, src)
            addr = src[0][7:] if src[0].startswith("::ffff:") and "." in src[0] else src[0]
            print(f"{addr} {src[1]}", flush=True)
    except KeyboardInterrupt:
        pass
