#!/usr/bin/env python3
"""Hold many TCP connections with periodic echoes: usage
    load_client.py HOST PORT N HOLD_S INTERVAL_S [RAMP_CONCURRENCY]

Raises its own RLIMIT_NOFILE to the hard limit. Phase 1 opens N connections (at most
RAMP_CONCURRENCY connecting at once) and does one echo on each; a connection whose first
echo fails counts as refused. Then it prints 'ramped OK REFUSED SECONDS'. Phase 2 keeps the
established ones for HOLD_S seconds, each sending a unique line every ~INTERVAL_S seconds
(jittered) and checking that exactly that line comes back. Then it closes them all and
prints 'summary {json}': opened, refused, refused_kinds, echoes, bad (wrong bytes),
errors (established connections that failed), error_kinds, ramp_s, hold_s.
"""
import asyncio
import json
import random
import resource
import sys
import time

stats = {"opened": 0, "refused": 0, "refused_kinds": {}, "echoes": 0, "bad": 0, "errors": 0, "error_kinds": {}}


def kind(e):
    return type(e).__name__ if not isinstance(e, OSError) or not e.errno else f"{type(e).__name__}:{e.errno}"


def count(field, e):
    k = kind(e)
    stats[field][k] = stats[field].get(k, 0) + 1


async def echo(r, w, line):
    w.write(line)
    await w.drain()
    got = await asyncio.wait_for(r.readline(), 30)
    if not got:
        raise EOFError("closed")
    return got


async def open_one(i, host, port, sem):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
        except Exception as e:  # noqa: BLE001 - every failure is counted by kind
            stats["refused"] += 1
            count("refused_kinds", e)
            return None
        try:
            line = f"hello {i}\n".encode()
            if await echo(r, w, line) != line:
                raise ValueError("wrong first echo")
        except Exception as e:  # noqa: BLE001
            stats["refused"] += 1
            count("refused_kinds", e)
            w.close()
            return None
        stats["opened"] += 1
        return (r, w)


async def hold(i, conn, until, interval):
    r, w = conn
    seq = 0
    try:
        await asyncio.sleep(random.uniform(0, interval))
        while time.monotonic() < until:
            line = f"c{i} s{seq} {'x' * (i % 50)}\n".encode()
            got = await echo(r, w, line)
            if got != line:
                stats["bad"] += 1
            else:
                stats["echoes"] += 1
            seq += 1
            await asyncio.sleep(min(interval * random.uniform(0.8, 1.2), max(0, until - time.monotonic())))
    except Exception as e:  # noqa: BLE001
        stats["errors"] += 1
        count("error_kinds", e)
    finally:
        w.close()


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port, n, hold_s, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    sem = asyncio.Semaphore(int(sys.argv[6]) if len(sys.argv) > 6 else 200)
    t0 = time.monotonic()
    conns = await asyncio.gather(*(open_one(i, host, port, sem) for i in range(n)))
    ramp = time.monotonic() - t0
    print(f"ramped {stats['opened']} {stats['refused']} {ramp:.1f}", flush=True)
    t1 = time.monotonic()
    until = t1 + hold_s
    await asyncio.gather(*(hold(i, c, until, interval) for i, c in enumerate(conns) if c))
    await asyncio.sleep(0.2)  # let the closes go out
    stats["ramp_s"] = round(ramp, 1)
    stats["hold_s"] = round(time.monotonic() - t1, 1)
    print("summary " + json.dumps(stats), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
