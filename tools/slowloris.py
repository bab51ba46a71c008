#!/usr/bin/env python3
"""Slow clients against a writ server on loopback: what holding many of them costs the
server, and whether a new client is still served.

    tools/slowloris.py --url http://127.0.0.1:18080 --pid PID [--connections 2000]
                       [--requests 200] [--seconds-max 120]

Opens CONNECTIONS connections that each stall: a third send half a request head, a third
promise a 4 KiB body and send 13 bytes of it, a third trickle a body one byte every 0.5 s.
Once all are open it reads the server's open descriptors and resident memory from
/proc/PID, times REQUESTS sequential `GET /healthz` from new connections (p50, p99, max),
then waits until the server has closed every slow connection, and prints what it found
as RESULT lines. Loopback only; everything it opens is closed within SECONDS_MAX.
"""

import argparse
import asyncio
import ipaddress
import resource
import statistics
import time
import urllib.parse


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the server, http://127.0.0.1:PORT")
    parser.add_argument("--pid", type=int, required=True, help="the server's process id")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds-max", type=float, default=120.0)
    args = parser.parse_args()
    if not 1 <= args.connections <= 10000:
        parser.error("--connections must be 1 to 10000")
    if not 1 <= args.requests <= 10000:
        parser.error("--requests must be 1 to 10000")
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.hostname or not ipaddress.ip_address(url.hostname).is_loopback:
        parser.error("--url must be http:// on a loopback address")
    args.host, args.port = url.hostname, url.port or 80
    return args


def server_figures(pid):
    """The server's open descriptors and resident memory (KiB)."""
    import os

    descriptors = len(os.listdir(f"/proc/{pid}/fd"))
    rss_kib = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    return descriptors, rss_kib


async def slow(args, n, opened, closed):
    """One stalled connection; returns when the server closed it (or at the bound)."""
    kind = n % 3
    reader, writer = await asyncio.open_connection(args.host, args.port)
    host = f"{args.host}:{args.port}"
    head = (
        f"POST /oauth/token HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4096\r\n\r\n"
    )
    if kind == 0:
        writer.write(f"POST /oauth/token HTTP/1.1\r\nHost: {host}\r\nContent-Ty".encode())
    elif kind == 1:
        writer.write((head + "grant_type=cl").encode())
    else:
        writer.write(head.encode())
    await writer.drain()
    opened.append(time.monotonic())
    answer = b""
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(4096), 0.5)
            except asyncio.TimeoutError:
                if kind == 2:
                    writer.write(b"a")
                    await writer.drain()
                continue
            if not chunk:
                break
            answer += chunk
    except (ConnectionError, OSError):
        pass
    closed.append((time.monotonic(), answer.split(b"\r\n", 1)[0].decode(errors="replace")))
    writer.close()


async def healthz(args):
    """One `GET /healthz` on a new connection; its latency in seconds."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(args.host, args.port)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: {args.host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    elapsed = time.monotonic() - started
    writer.close()
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"/healthz answered {answer[:60]!r}")
    return elapsed


async def run(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    opened, closed = [], []
    base_descriptors, base_rss = server_figures(args.pid)
    tasks = []
    for n in range(args.connections):
        tasks.append(asyncio.create_task(slow(args, n, opened, closed)))
        if n % 100 == 99:
            await asyncio.sleep(0)  # let the connects go out in batches
    started = time.monotonic()
    while len(opened) < args.connections and time.monotonic() - started < args.seconds_max:
        if all(task.done() for task in tasks):
            break
        await asyncio.sleep(0.01)
    all_open = time.monotonic()
    descriptors, rss = server_figures(args.pid)
    still_open = args.connections - len(closed)
    latencies = [await healthz(args) for _ in range(args.requests)]
    latencies.sort()
    done, pending = await asyncio.wait(tasks, timeout=args.seconds_max)
    for task in pending:
        task.cancel()
    last_closed = max((at for at, _ in closed), default=all_open)
    statuses = {}
    for _, status in closed:
        statuses[status or "(closed without an answer)"] = statuses.get(status or "(closed without an answer)", 0) + 1
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(f"RESULT slow_connections_opened={len(opened)} held_when_measured={still_open} of {args.connections}")
    print(f"RESULT server_descriptors_open={descriptors} (idle: {base_descriptors})")
    print(f"RESULT server_rss_kib={rss} (idle: {base_rss}; {(rss - base_rss) / max(1, still_open):.1f} KiB per held connection)")
    print(
        f"RESULT healthz_latency_ms p50={p(0.50):.2f} p99={p(0.99):.2f} max={latencies[-1] * 1000:.2f} "
        f"mean={statistics.mean(latencies) * 1000:.2f} over {len(latencies)} requests"
    )
    print(f"RESULT all_let_go_after_seconds={last_closed - all_open:.2f} (from the last one opened)")
    print(f"RESULT still_open_at_the_bound={len(pending)}")
    print(f"RESULT answers={statuses}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


if __name__ == "__main__":
    asyncio.run(run(parse_args()))
