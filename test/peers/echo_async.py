#!/usr/bin/env python3
"""Many-connection TCP echo peer (asyncio, one thread): usage echo_async.py PORT [BIND]

For load tests: raises its own RLIMIT_NOFILE to the hard limit, echoes every byte back,
prints 'listening ADDR PORT' on stderr when ready and nothing per connection.
"""
import asyncio
import resource
import socket
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data):
        self.t.write(data)

    def eof_received(self):
        return False  # close our side too


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = int(sys.argv[1])
    bind = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
    fam = socket.AF_INET6 if ":" in bind else socket.AF_INET
    srv = await asyncio.get_running_loop().create_server(Echo, bind, port, family=fam, backlog=4096, reuse_address=True)
    print(f"listening {bind} {port}", file=sys.stderr, flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
