"""Read phase of the API load test (imported by scripts/load_api.py; `make load` runs it).

Read endpoints under many concurrent clients, each holding its own keep-alive connection:
saturation (closed loop: each client sends its next request as soon as the last one answered) and
paced (each client sends N requests/s on a fixed schedule; latency counted from the scheduled
time, so a stalled server is not hidden).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

READ_PATHS = ("/health", "/auditor/rounds/{rid}", "/auditor/rounds?limit=10", "/auditor/rounds/{rid}/orders?limit=20")


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ReadClient:
    """One client's own keep-alive HTTP/1.1 connection, as a browser or a dashboard holds one."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        await self.writer.drain()
        answer = await self.reader.readuntil(b"\r\n\r\n")
        lines = answer.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:"))
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def read_load(url: str, clients: int, seconds: float, round_id: int, rate_per_client: float | None
                    ) -> dict[str, Any]:
    """Closed loop (`rate_per_client` None) or paced: each client sends `rate_per_client` req/s."""
    paths = [p.format(rid=round_id) for p in READ_PATHS]
    latency: dict[str, list[float]] = {p: [] for p in paths}
    failures = 0
    host, port = url.removeprefix("http://").split(":")
    t0 = time.perf_counter()
    stop = t0 + seconds

    async def worker(i: int) -> None:
        nonlocal failures
        client = ReadClient(host, int(port))
        k = i
        period = 1.0 / rate_per_client if rate_per_client else 0.0
        scheduled = t0 + (i / clients) * period  # spread the clients over one period
        try:
            while True:
                if rate_per_client:
                    if scheduled >= stop:
                        return
                    wait = scheduled - time.perf_counter()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    start = scheduled  # latency from the scheduled time (no coordinated omission)
                    scheduled += period
                else:
                    if time.perf_counter() >= stop:
                        return
                    start = time.perf_counter()
                p = paths[k % len(paths)]
                k += 1
                try:
                    status = await client.get(p)
                except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
                    failures += 1
                    await client.close()
                    client = ReadClient(host, int(port))
                    continue
                latency[p].append(time.perf_counter() - start)
                if status != 200:
                    failures += 1
        finally:
            await client.close()

    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.perf_counter() - t0
    every = [x for v in latency.values() for x in v]
    return {"requests": len(every), "failures": failures, "req_per_s": len(every) / elapsed,
            "p50_ms": 1000 * pct(every, 0.5), "p99_ms": 1000 * pct(every, 0.99),
            "per_path_p99_ms": {p: 1000 * pct(v, 0.99) for p, v in latency.items()}}


def add_read_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--read-clients", type=int, default=200)
    parser.add_argument("--read-seconds", type=float, default=10.0)
    parser.add_argument("--paced-rate", type=float, default=2.0, help="requests/s per client on the paced read run")


def run_reads(url: str, round_id: int, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The read phase against a running API: saturation, then paced."""
    print(f"read path: {args.read_clients} clients, closed loop then {args.paced_rate:g} req/s each, "
          f"{args.read_seconds:.0f} s each", flush=True)
    saturated = asyncio.run(read_load(url, args.read_clients, args.read_seconds, round_id, None))
    paced = asyncio.run(read_load(url, args.read_clients, args.read_seconds, round_id, args.paced_rate))
    return {"saturation": saturated, "paced": paced}


def print_reads(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    saturated, paced = results["saturation"], results["paced"]
    print(f"| read endpoints, {args.read_clients} clients | requests | failed | req/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in (("saturation: closed loop, back to back", saturated),
                    (f"paced: {args.paced_rate:g} req/s per client", paced)):
        print(f"| {name} | {r['requests']} | {r['failures']} | {r['req_per_s']:.0f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} |")
    for name, r in (("saturation", saturated), ("paced", paced)):
        print(f"{name} p99 by path: " + ", ".join(f"{p} {v:.1f} ms" for p, v in r["per_path_p99_ms"].items()))
