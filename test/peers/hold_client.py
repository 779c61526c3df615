#!/usr/bin/env python3
"""hold_client.py HOST PORT: opens one TCP connection and keeps it; each line read on stdin
is sent, and the echoed reply printed as `echo: LINE`. EOF on stdin closes the connection."""
import socket
import sys

s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print("connected", flush=True)
for line in sys.stdin:
    s.sendall(line.encode())
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            print("closed", flush=True)
            sys.exit(1)
        got += chunk
    print("echo: " + got.decode().strip(), flush=True)
s.close()
