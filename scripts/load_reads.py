"""Read phase of the API load test (imported by scripts/load_api.py; `make load` runs it), also
runnable alone against a demo API it starts (`flexgrid serve`, its own anvil) or a running one:

    .venv/bin/python scripts/load_reads.py [--url http://127.0.0.1:8000] [--read-clients 200]
        [--generators 2] [--read-seconds 10] [--paced-rate 2] [--serve-args "--workers 1"]

Read endpoints under many concurrent clients, each holding its own keep-alive connection, in two
runs:

After a 1 s warm-up (not counted: the first requests find every answer cold), for `--read-seconds`:

(a) paced: each client sends `--paced-rate` requests/s on a fixed schedule, as dashboards and
    wallets poll; latency counted from the scheduled send time, so a stalled server (or a stalled
    load generator) is not hidden (no coordinated omission);
(b) saturation: closed loop, each client sends its next request as soon as the last one answered;
    by Little's law its latency is clients / throughput.

The clients are spread over `--generators` processes (one asyncio loop each, uvloop if installed):
one Python loop driving 200 connections adds its own queueing to every measured latency. The
paced run also reports the generators' own lag (actual send time minus scheduled time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

READ_PATHS = ("/health", "/auditor/rounds/{rid}", "/auditor/rounds?limit=10", "/auditor/rounds/{rid}/orders?limit=20")
ROOT = Path(__file__).resolve().parents[1]


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Connection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection on asyncio's protocol layer: 33-35 us of generator CPU per
    request against 35-38 us with asyncio streams (measured on uvloop, 50 clients), CPU the server
    under test shares."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[:end + 4 + length]
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result((int(head[9:12]), b"x-cache: hit" in head))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))


class ReadClient:
    """One client's own keep-alive HTTP/1.1 connection, as a browser or a dashboard holds one."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.connection: _Connection | None = None
        self.requests: dict[str, bytes] = {}

    async def get(self, path: str) -> tuple[int, bool]:
        """(status, answered from the server's read cache)."""
        loop = asyncio.get_running_loop()
        if self.connection is None:
            _, self.connection = await loop.create_connection(_Connection, self.host, self.port)
        request = self.requests.get(path)
        if request is None:
            request = self.requests[path] = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        self.connection.waiter = loop.create_future()
        assert self.connection.transport is not None
        self.connection.transport.write(request)
        return await self.connection.waiter

    async def close(self) -> None:
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.close()


async def _read_load(url: str, clients: range, total_clients: int, connected: list[ReadClient], start_wall: float,
                     warmup_s: float, seconds: float, round_id: int, rate_per_client: float | None) -> dict[str, Any]:
    """Clients `clients` (of `total_clients`) from wall-clock time `start_wall`: `warmup_s` not
    counted, then `seconds` measured."""
    paths = [p.format(rid=round_id) for p in READ_PATHS]
    latency: dict[str, list[float]] = {p: [] for p in paths}
    lag: list[float] = []
    computed: list[float] = []  # latency of the answers the server computed while the client waited
    failures = 0
    host, port = url.removeprefix("http://").split(":")
    t0 = time.perf_counter() + (start_wall - time.time())
    if t0 > time.perf_counter():
        await asyncio.sleep(t0 - time.perf_counter())
    measured_from = t0 + warmup_s  # the first requests find every answer cold: not the steady state
    stop = measured_from + seconds

    async def worker(i: int, client: ReadClient) -> None:
        nonlocal failures
        k = i
        period = 1.0 / rate_per_client if rate_per_client else 0.0
        scheduled = t0 + (i / total_clients) * period  # spread the clients over one period
        try:
            while True:
                if rate_per_client:
                    if scheduled >= stop:
                        return
                    wait = scheduled - time.perf_counter()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    start = scheduled  # latency from the scheduled time (no coordinated omission)
                    if start >= measured_from:
                        lag.append(time.perf_counter() - scheduled)
                    scheduled += period
                else:
                    if time.perf_counter() >= stop:
                        return
                    start = time.perf_counter()
                p = paths[k % len(paths)]
                k += 1
                try:
                    status, hit = await client.get(p)
                except (OSError, ValueError):
                    failures += 1
                    await client.close()
                    client = ReadClient(host, int(port))
                    continue
                if start < measured_from:
                    continue
                latency[p].append(time.perf_counter() - start)
                if not hit:
                    computed.append(latency[p][-1])
                if status != 200:
                    failures += 1
        finally:
            await client.close()

    await asyncio.gather(*(worker(i, c) for i, c in zip(clients, connected, strict=True)))
    return {"latency": latency, "lag": lag, "computed": computed, "failures": failures,
            "elapsed": time.perf_counter() - measured_from}


def _generator(job: tuple[Any, ...], ready: Any = None, go: Any = None, start: Any = None,
               results: Any = None) -> dict[str, Any]:
    """One generator (in its own process when `results` is given: reports to the parent that its
    clients are connected, waits for the common start time, puts its figures on `results`)."""
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run

    async def synchronised() -> dict[str, Any]:
        url, clients, total, *rest = job
        host, port = url.removeprefix("http://").split(":")
        connected = [ReadClient(host, int(port)) for _ in clients]
        for c in connected:  # connect before the measured window (a dashboard keeps its connection)
            await c.get("/health")
        if ready is not None:
            ready.put(1)
            await asyncio.get_running_loop().run_in_executor(None, go.wait)
            start_wall = start.value
        else:
            start_wall = time.time()
        return await _read_load(url, clients, total, connected, start_wall, *rest)

    out: dict[str, Any] = run(synchronised())
    if results is not None:
        results.put(out)
    return out


def read_load(url: str, clients: int, seconds: float, round_id: int, rate_per_client: float | None,
              generators: int = 1, warmup_s: float = 1.0) -> dict[str, Any]:
    """Closed loop (`rate_per_client` None) or paced, the clients spread over `generators` processes
    that start together once all their clients are connected."""
    jobs = [(url, range(g, clients, generators), clients, warmup_s, seconds, round_id, rate_per_client)
            for g in range(generators)]
    if generators == 1:
        parts = [_generator(jobs[0])]
    else:
        ctx = multiprocessing.get_context("spawn")
        ready, results, go, start = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
        procs = [ctx.Process(target=_generator, args=(job, ready, go, start, results), daemon=True) for job in jobs]
        for proc in procs:
            proc.start()
        try:
            for _ in procs:
                ready.get(timeout=300)
            start.value = time.time() + 0.1
            go.set()
            parts = [results.get(timeout=300 + seconds) for _ in procs]
        finally:
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
    latency: dict[str, list[float]] = {}
    for part in parts:
        for p, v in part["latency"].items():
            latency.setdefault(p, []).extend(v)
    every = [x for v in latency.values() for x in v]
    lag = [x for part in parts for x in part["lag"]]
    computed = [x for part in parts for x in part["computed"]]
    elapsed = max(part["elapsed"] for part in parts)
    return {"requests": len(every), "failures": sum(part["failures"] for part in parts),
            "req_per_s": len(every) / elapsed, "p50_ms": 1000 * pct(every, 0.5), "p99_ms": 1000 * pct(every, 0.99),
            "max_ms": 1000 * max(every, default=float("nan")),
            "lag_p99_ms": 1000 * pct(lag, 0.99) if lag else None,
            "computed": len(computed), "computed_p50_ms": 1000 * pct(computed, 0.5),
            "per_path_ms": {p: (1000 * pct(v, 0.5), 1000 * pct(v, 0.99)) for p, v in latency.items()},
            "load_average": os.getloadavg()[0]}


def add_read_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--read-clients", type=int, default=200)
    parser.add_argument("--read-seconds", type=float, default=10.0)
    parser.add_argument("--paced-rate", type=float, default=2.0, help="requests/s per client on the paced read run")
    parser.add_argument("--generators", type=int, default=2, help="load generator processes for the read runs")


def run_reads(url: str, round_id: int, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The read phase against a running API: (a) paced, then (b) saturation."""
    print(f"read path: {args.read_clients} clients in {args.generators} generator processes, "
          f"{args.paced_rate:g} req/s each then closed loop, {args.read_seconds:.0f} s each after 1 s not counted",
          flush=True)
    paced = read_load(url, args.read_clients, args.read_seconds, round_id, args.paced_rate, args.generators)
    saturated = read_load(url, args.read_clients, args.read_seconds, round_id, None, args.generators)
    return {"paced": paced, "saturation": saturated}


def print_reads(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    paced, saturated = results["paced"], results["saturation"]
    print(f"| read endpoints, {args.read_clients} clients ({args.generators} generator processes) | requests | "
          "failed | req/s | p50 ms | p99 ms | max ms | load average |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in ((f"(a) paced: {args.paced_rate:g} req/s per client", paced),
                    ("(b) saturation: closed loop, back to back", saturated)):
        print(f"| {name} | {r['requests']} | {r['failures']} | {r['req_per_s']:.0f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['max_ms']:.0f} | {r['load_average']:.1f} |")
    for name, r in (("(a) paced", paced), ("(b) saturation", saturated)):
        print(f"{name} p50 / p99 by path: "
              + ", ".join(f"{p} {a:.1f} / {b:.1f} ms" for p, (a, b) in r["per_path_ms"].items()))
    if paced["lag_p99_ms"] is not None:
        print(f"(a) paced: the generators' own send lag p99 {paced['lag_p99_ms']:.1f} ms (included above)")
    for name, r in (("(a) paced", paced), ("(b) saturation", saturated)):
        print(f"{name}: {r['computed']} answers computed while the client waited (not from the read cache), "
              f"p50 {r['computed_p50_ms']:.1f} ms")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running API (default: start `flexgrid serve` with its demo market)")
    parser.add_argument("--serve-args", default="", help="extra arguments of `flexgrid serve`")
    add_read_args(parser)
    args = parser.parse_args()
    server = None
    url = args.url
    with tempfile.TemporaryDirectory(prefix="flexgrid-reads-") as tmp:
        if url is None:
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            server = subprocess.Popen(
                [sys.executable, "-m", "flexgrid.cli.main", "serve", "--port", str(port), *shlex.split(args.serve_args)],
                env={**os.environ, "FLEXGRID_HOME": tmp}, cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            for _ in range(1200):
                try:
                    health = _get_json(url + "/health")
                    if health["indexed_block"] >= 0:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            else:
                raise SystemExit("the API did not start")
            round_id = health["demo_round_id"] or 1
            results = run_reads(url, round_id, args)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
    print()
    print(f"machine: {os.cpu_count()} cores shared with other work; the load generators and the API run on it "
          "together")
    print_reads(results, args)


if __name__ == "__main__":
    main()
