#!/usr/bin/env python3
"""One held TCP connection for fault tests: usage fault_client.py HOST PORT

Prints 'connected' once connected (or 'closed KIND' if the connect fails). Each line read
on stdin is sent and its echo awaited, printed as 'echo: LINE'. Meanwhile the socket is
watched: when the peer ends the connection the client prints 'closed eof' (FIN),
'closed reset' (RST) or 'closed error:CODE' and exits 0. EOF on stdin closes it.
"""
import errno
import selectors
import socket
import sys


def closed(kind):
    print(f"closed {kind}", flush=True)
    sys.exit(0)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    try:
        s = socket.create_connection((host, port), timeout=60)
    except ConnectionRefusedError:
        closed("refused")
    except OSError as e:
        closed(f"error:{errno.errorcode.get(e.errno, e.errno)}")
    s.settimeout(None)
    print("connected", flush=True)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ, "sock")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    pending = b""
    while True:
        for key, _ in sel.select():
            if key.data == "stdin":
                line = sys.stdin.readline()
                if not line:
                    s.close()
                    return
                try:
                    s.sendall(line.encode())
                except ConnectionResetError:
                    closed("reset")
                except OSError as e:
                    closed(f"error:{errno.errorcode.get(e.errno, e.errno)}")
            else:
                try:
                    data = s.recv(1 << 16)
                except ConnectionResetError:
                    closed("reset")
                except OSError as e:
                    closed(f"error:{errno.errorcode.get(e.errno, e.errno)}")
                if not data:
                    closed("eof")
                pending += data
                while b"\n" in pending:
                    ln, pending = pending.split(b"\n", 1)
                    print("echo: " + ln.decode(), flush=True)


if __name__ == "__main__":
    main()
