#!/usr/bin/env python3
"""HTTP/1.1 echo peer: usage echo_headers.py PORT [BIND]  (BIND '::' = dual stack).

Answers every request with JSON: method, path, version, headers exactly as received
(names as sent, order and duplicates kept), client and local address, body length+sha256
(Content-Length or chunked). Keep-alive; Expect: 100-continue; `Upgrade: websocket` gets
a 101 with the right Sec-WebSocket-Accept, then raw bytes are echoed back.
Prints 'listening ADDR PORT' on stderr when ready. Stdlib only.
"""
import base64
import hashlib
import json
import socket
import socketserver
import sys

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def plain(addr):
    # Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d; tests want a.b.c.d.
    return addr[7:] if addr.startswith("::ffff:") and "." in addr else addr


class BadRequest(Exception):
    pass


def read_line(rfile):
    line = rfile.readline(65537)
    if len(line) > 65536:
        raise BadRequest("line too long")
    return line


def read_body(rfile, headers, digest):
    """Read the request body into `digest`; return its length."""
    te = [v for n, v in headers if n.lower() == "transfer-encoding"]
    if te and "chunked" in te[-1].lower():
        total = 0
        while True:
            size_line = read_line(rfile)
            if not size_line:
                raise BadRequest("eof in chunked body")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while read_line(rfile) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return total
            total += copy(rfile, size, digest)
            rfile.readline()  # CRLF after the chunk
    cl = [v for n, v in headers if n.lower() == "content-length"]
    return copy(rfile, int(cl[-1]), digest) if cl else 0


def copy(rfile, n, digest):
    left = n
    while left:
        chunk = rfile.read(min(left, 1 << 16))
        if not chunk:
            raise BadRequest("eof in body")
        digest.update(chunk)
        left -= len(chunk)
    return n


class Handler(socketserver.StreamRequestHandler):
    tls_info = None  # set by tls_server.py: callable(connection) -> dict

    def handle(self):
        try:
            while self.one_request():
                pass
        except (BadRequest, ValueError, ConnectionError, OSError):
            pass

    def one_request(self):
        request_line = read_line(self.rfile)
        if not request_line:
            return False
        parts = request_line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3:
            raise BadRequest("bad request line")
        method, path, version = parts
        headers = []
        while True:
            line = read_line(self.rfile)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
            headers.append([name, value.strip(" \t")])
        get = lambda n: next((v for k, v in headers if k.lower() == n), None)

        if (get("upgrade") or "").lower() == "websocket":
            return self.websocket(get("sec-websocket-key") or "", headers)
        if (get("expect") or "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

        digest = hashlib.sha256()
        length = read_body(self.rfile, headers, digest)
        conn_hdr = (get("connection") or "").lower()
        keep = "keep-alive" in conn_hdr if version == "HTTP/1.0" else "close" not in conn_hdr
        client = self.client_address
        local = self.connection.getsockname()
        doc = {
            "method": method,
            "path": path,
            "version": version,
            "headers": headers,
            "client": {"address": plain(client[0]), "port": client[1]},
            "local": {"address": plain(local[0]), "port": local[1]},
            "body": {"length": length, "sha256": digest.hexdigest()},
        }
        if self.tls_info:
            doc["tls"] = self.tls_info(self.connection)
        body = (json.dumps(doc) + "\n").encode()
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        ).encode()
        self.wfile.write(head if method == "HEAD" else head + body)
        self.wfile.flush()
        return keep

    def websocket(self, key, headers):
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        # The handshake's request headers, so tests can see what was injected into it.
        seen = base64.b64encode(json.dumps(headers).encode()).decode()
        self.wfile.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\nX-Request-Headers: {seen}\r\n\r\n"
            ).encode()
        )
        self.wfile.flush()
        # Raw echo: bytes already buffered by rfile first, then whatever arrives.
        while True:
            data = self.rfile.read1(1 << 16)
            if not data:
                break
            self.wfile.write(data)
            self.wfile.flush()
        return False


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def serve(handler, port, bind):
    Server.address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    srv = Server((bind, port), handler)
    addr = srv.socket.getsockname()
    print(f"listening {addr[0]} {addr[1]}", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    serve(Handler, int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0")
