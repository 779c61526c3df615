#!/usr/bin/env python3
"""Tiny authoritative DNS peer: dns_server.py PORT BIND NAME=IP [NAME=IP ...]

Answers A queries for the given names over UDP and TCP (NXDOMAIN otherwise) and prints
`query NAME from ADDR` for each query on stdout. Stdlib only.
"""
import socket
import socketserver
import struct
import sys
import threading

PORT, BIND = int(sys.argv[1]), sys.argv[2]
ZONE = dict(arg.split("=", 1) for arg in sys.argv[3:])


def answer(q):
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1 : i + 1 + q[i]].decode())
        i += q[i] + 1
    qtype = struct.unpack("!H", q[i + 1 : i + 3])[0]
    name = ".".join(labels).lower()
    question = q[12 : i + 5]
    ip = ZONE.get(name) if qtype == 1 else None
    rcode = 0 if name in ZONE else 3
    head = q[:2] + struct.pack("!HHHHH", 0x8400 | rcode, 1, 1 if ip else 0, 0, 0)
    body = b""
    if ip:
        body = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
    return name, head + question + body


class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        name, resp = answer(data)
        print(f"query {name} from {self.client_address[0]} udp", flush=True)
        sock.sendto(resp, self.client_address)


class Tcp(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            hdr = self.rfile.read(2)
            if len(hdr) < 2:
                return
            q = self.rfile.read(struct.unpack("!H", hdr)[0])
            name, resp = answer(q)
            print(f"query {name} from {self.client_address[0]} tcp", flush=True)
            self.wfile.write(struct.pack("!H", len(resp)) + resp)


socketserver.ThreadingUDPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.allow_reuse_address = True
u = socketserver.ThreadingUDPServer((BIND, PORT), Udp)
t = socketserver.ThreadingTCPServer((BIND, PORT), Tcp)
t.daemon_threads = True
threading.Thread(target=u.serve_forever, daemon=True).start()
print(f"listening {BIND} {PORT}", file=sys.stderr, flush=True)
t.serve_forever()
