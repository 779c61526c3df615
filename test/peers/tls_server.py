#!/usr/bin/env python3
"""TLS peer: usage tls_server.py PORT CERT KEY [BIND]  (BIND '::' = dual stack).

The echo_headers.py HTTP server behind TLS; its JSON also carries
"tls": {"sni": <server name the client sent or null>, "version": ..., "alpn": ...}.
Offers ALPN http/1.1 only. Prints 'listening ADDR PORT' on stderr when ready.
"""
import os
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import echo_headers  # noqa: E402

SNI = {}  # id(ssl socket) -> server name, filled during the handshake


def main():
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    bind = sys.argv[4] if len(sys.argv) > 4 else "0.0.0.0"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.sni_callback = lambda sock, name, _ctx: SNI.__setitem__(id(sock), name)

    class TlsHandler(echo_headers.Handler):
        def setup(self):
            # Handshake in the worker thread, so a slow client cannot block accept().
            self.request = ctx.wrap_socket(self.request, server_side=True)
            super().setup()

        def finish(self):
            try:
                super().finish()
            finally:
                SNI.pop(id(self.request), None)

        @staticmethod
        def tls_info(conn):
            return {"sni": SNI.get(id(conn)), "version": conn.version(), "alpn": conn.selected_alpn_protocol()}

    class SafeServer(echo_headers.Server):
        def handle_error(self, request, client_address):
            pass  # failed handshakes (e.g. probes) are not worth a traceback

    echo_headers.Server = SafeServer
    echo_headers.serve(TlsHandler, port, bind)


if __name__ == "__main__":
    main()
