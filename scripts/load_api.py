"""Load test of the HTTP API on loopback, bounded in time and count.

Starts an anvil, deploys and seeds the demo market, approves many providers, starts
`flexgrid serve --rpc-url ... --deployment ...` in a subprocess, then:

1. write path: concurrent clients submit pre-signed offers (EIP-712, as wallets would); it
   prints accepted offers per second at the API and end to end (API -> chain event -> database,
   observed through GET /auditor/rounds/{id}/orders), p50/p99 latency of both, and how many were
   lost;
2. the naive path in the same run: the same kind of offers sent one transaction per offer;
3. read path: 200 concurrent clients on read endpoints, p50/p99 latency.

    .venv/bin/python scripts/load_api.py [--offers 3000] [--clients 64] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from eth_account import Account

from flexgrid.chain.market import MarketClient
from flexgrid.chain.node import AnvilNode
from flexgrid.trading import Direction, FlexOffer
from frontend_api.core.seed import seed_demo_market
from frontend_api.wallet import sign_in, signed_offer_body

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_offer(account: object, round_id: int, seq: int, gate_s: int, bus: int) -> FlexOffer:
    return FlexOffer(provider=account.address, round_id=round_id, bus=bus,  # type: ignore[attr-defined]
                     asset_id="0x" + "cd" * 32, direction=Direction.UP, slots=(0, 1), min_kw=(0.0, 0.0),
                     max_kw=(5.0, 5.0), price_eur_per_mwh=100.0 + seq % 50, nonce=(round_id << 64) | seq,
                     expiry_s=gate_s)


async def write_load(url: str, jobs: dict[str, list[dict]], tokens: dict[str, str], clients: int,
                     round_id: int, max_seconds: float) -> dict[str, float]:
    total = sum(len(v) for v in jobs.values())
    submitted: dict[str, float] = {}
    api_latency: list[float] = []
    accepted = 0
    errors: dict[int, int] = {}
    providers = list(jobs)
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker(mine: list[str]) -> None:
            nonlocal accepted
            for address in mine:
                for body in jobs[address]:
                    if time.perf_counter() > deadline:
                        return
                    start = time.perf_counter()
                    try:
                        r = await client.post("/prosumer/offers", json=body,
                                              headers={"Authorization": f"Bearer {tokens[address]}",
                                                       "Idempotency-Key": body["signature"][:40]})
                    except httpx.TransportError:  # retried once with the same key: never doubled
                        r = await client.post("/prosumer/offers", json=body,
                                              headers={"Authorization": f"Bearer {tokens[address]}",
                                                       "Idempotency-Key": body["signature"][:40]})
                    api_latency.append(time.perf_counter() - start)
                    if r.status_code == 202:
                        accepted += 1
                        submitted[r.json()["order_hash"]] = start
                    else:
                        errors[r.status_code] = errors.get(r.status_code, 0) + 1

        seen: dict[str, float] = {}

        async def watcher() -> None:
            offset = 0
            while time.perf_counter() < deadline + 30:
                r = await client.get(f"/auditor/rounds/{round_id}/orders",
                                     params={"kind": "offer", "offset": offset, "limit": 500})
                items = r.json()["items"]
                now = time.perf_counter()
                for item in items:
                    seen.setdefault(item["order_hash"], now)
                offset += len(items)
                if writers_done.is_set() and submitted and all(h in seen for h in submitted):
                    return
                if not items:
                    await asyncio.sleep(0.05)

        writers_done = asyncio.Event()
        groups = [providers[i::clients] for i in range(clients)]
        watch = asyncio.create_task(watcher())
        await asyncio.gather(*(worker(g) for g in groups if g))
        t_api = time.perf_counter() - t0
        writers_done.set()
        await watch
        t_e2e = max(seen.values()) - t0 if seen else float("nan")
    e2e = [seen[h] - s for h, s in submitted.items() if h in seen]
    lost = sum(1 for h in submitted if h not in seen)
    return {"offered": total, "accepted": accepted, "errors": sum(errors.values()), "lost": lost,
            "api_offers_per_s": accepted / t_api, "e2e_offers_per_s": len(e2e) / t_e2e if e2e else 0.0,
            "api_p50_ms": 1000 * pct(api_latency, 0.5), "api_p99_ms": 1000 * pct(api_latency, 0.99),
            "e2e_p50_ms": 1000 * pct(e2e, 0.5), "e2e_p99_ms": 1000 * pct(e2e, 0.99), "seconds": t_e2e}


async def read_load(url: str, clients: int, seconds: float, round_id: int) -> dict[str, float]:
    paths = ["/health", f"/auditor/rounds/{round_id}", "/auditor/rounds?limit=10",
             f"/auditor/rounds/{round_id}/orders?limit=20"]
    latency: dict[str, list[float]] = {p: [] for p in paths}
    failures = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        stop = time.perf_counter() + seconds

        async def worker(i: int) -> None:
            nonlocal failures
            k = i
            while time.perf_counter() < stop:
                p = paths[k % len(paths)]
                k += 1
                start = time.perf_counter()
                try:
                    r = await client.get(p)
                except httpx.TransportError:
                    failures += 1
                    continue
                latency[p].append(time.perf_counter() - start)
                if r.status_code != 200:
                    failures += 1

        await asyncio.gather(*(worker(i) for i in range(clients)))
    every = [x for v in latency.values() for x in v]
    out = {"requests": len(every), "failures": failures, "req_per_s": len(every) / seconds,
           "p50_ms": 1000 * pct(every, 0.5), "p99_ms": 1000 * pct(every, 0.99)}
    for p, v in latency.items():
        out[f"p99_ms {p}"] = 1000 * pct(v, 0.99)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offers", type=int, default=3000, help="offers on the batched API path")
    parser.add_argument("--providers", type=int, default=100, help="approved provider wallets")
    parser.add_argument("--clients", type=int, default=64, help="concurrent HTTP clients submitting")
    parser.add_argument("--naive-offers", type=int, default=200, help="offers on the one-tx-per-offer path")
    parser.add_argument("--read-clients", type=int, default=200)
    parser.add_argument("--read-seconds", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="bound on the write phase")
    args = parser.parse_args()

    with AnvilNode() as node, tempfile.TemporaryDirectory(prefix="flexgrid-load-") as tmp:
        w3 = node.web3()
        demo = seed_demo_market(w3, node.dev_accounts())
        deployment_file = Path(tmp) / "deployment.json"
        demo.deployment.save(deployment_file)
        op = MarketClient(w3, demo.deployment, demo.operator)
        wallets = [Account.create() for _ in range(args.providers + 1)]
        print(f"approving {len(wallets)} provider wallets ...", flush=True)
        for wallet in wallets:
            op.approve_provider(wallet.address)
        naive_wallet, wallets = wallets[0], wallets[1:]
        config = op.round_config(demo.round_id)
        per_provider = max(1, args.offers // len(wallets))
        print(f"signing {per_provider * len(wallets)} offers ...", flush=True)
        jobs = {w.address: [signed_offer_body(w, demo.deployment, make_offer(w, demo.round_id, s,
                                                                              config.gate_closure_s, 2 + i % 30))
                            for s in range(per_provider)] for i, w in enumerate(wallets)}
        port = free_port()
        env = {**os.environ, "FLEXGRID_RELAYER_KEY": "0x" + bytes(demo.relayer.key).hex(),
               "FLEXGRID_DATABASE_URL": f"sqlite:///{tmp}/api.db", "FLEXGRID_HOME": tmp}
        server = subprocess.Popen(
            [sys.executable, "-m", "flexgrid.cli.main", "serve", "--port", str(port), "--rpc-url", node.url,
             "--deployment", str(deployment_file)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=30) as c:
                for _ in range(600):
                    try:
                        if c.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                else:
                    raise SystemExit("the API did not start")
                tokens = {w.address: sign_in(c, w) for w in wallets}
            print(f"write path: {per_provider * len(wallets)} offers from {len(wallets)} wallets, "
                  f"{args.clients} clients, at most {args.max_seconds:.0f} s", flush=True)
            batched = asyncio.run(write_load(url, jobs, tokens, args.clients, demo.round_id, args.max_seconds))
            print(f"  {batched}", flush=True)

            print(f"naive path: {args.naive_offers} offers, one transaction each", flush=True)
            relayer = MarketClient(w3, demo.deployment, demo.relayer)
            naive_lat = []
            t0 = time.perf_counter()
            for s in range(args.naive_offers):
                signed = make_offer(naive_wallet, demo.round_id, s, config.gate_closure_s, 5).sign(
                    naive_wallet, demo.deployment.domain)
                start = time.perf_counter()
                relayer.submit_offer(signed)
                naive_lat.append(time.perf_counter() - start)
            naive_s = time.perf_counter() - t0

            print(f"read path: {args.read_clients} concurrent clients for {args.read_seconds:.0f} s", flush=True)
            reads = asyncio.run(read_load(url, args.read_clients, args.read_seconds, demo.round_id))
        finally:
            server.terminate()
            server.wait(timeout=30)

    print()
    print("| path | offers | accepted | lost | offers/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| API accept (batched relayer) | {batched['offered']:.0f} | {batched['accepted']:.0f} | - | "
          f"{batched['api_offers_per_s']:.0f} | {batched['api_p50_ms']:.0f} | {batched['api_p99_ms']:.0f} |")
    print(f"| API -> chain event -> DB (batched) | {batched['offered']:.0f} | {batched['accepted']:.0f} | "
          f"{batched['lost']:.0f} | {batched['e2e_offers_per_s']:.0f} | {batched['e2e_p50_ms']:.0f} | "
          f"{batched['e2e_p99_ms']:.0f} |")
    print(f"| naive: one tx per offer | {args.naive_offers} | {args.naive_offers} | 0 | "
          f"{args.naive_offers / naive_s:.0f} | {1000 * statistics.median(naive_lat):.0f} | "
          f"{1000 * pct(naive_lat, 0.99):.0f} |")
    print()
    print(f"read endpoints, {args.read_clients} concurrent clients: {reads['requests']:.0f} requests, "
          f"{reads['failures']:.0f} failed, {reads['req_per_s']:.0f} req/s, p50 {reads['p50_ms']:.1f} ms, "
          f"p99 {reads['p99_ms']:.1f} ms")
    for k, v in reads.items():
        if k.startswith("p99_ms "):
            print(f"  {k[7:]}: p99 {v:.1f} ms")
    if batched["errors"]:
        print(f"write path: {batched['errors']:.0f} offers refused by the API")


if __name__ == "__main__":
    main()
