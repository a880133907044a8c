"""Load test of the HTTP API on loopback, bounded in time and count.

Starts an anvil, deploys and seeds the demo market, approves provider wallets, starts
`flexgrid serve --rpc-url ... --deployment ...` in a subprocess (one uvicorn worker), then:

1. per-offer path: many clients POST /prosumer/offers, one signed offer per request;
2. bulk path, the sustained test: aggregator clients POST /prosumer/offers/bulk, many signed
   offers per request, 60,000 offers in at most 60 s by default; it prints whether >= 1,000
   offers/s end to end held for 60 s with zero lost, and the CPU per offer of each process
   (the API: intake and relayer; its indexer process; anvil; this generator); for both it prints offers accepted per second at the API and end to end (API -> relayer's
   batch transaction -> chain event -> indexer -> database, observed in the server's database),
   p50/p99 latency of both, and the zero-lost check (every accepted order in the database once,
   every wallet's on-chain nonce advanced by exactly its accepted orders);
3. the naive path in the same run: the same kind of offers sent one transaction per offer;
4. read endpoints, 200 clients: saturation (closed loop, each client sends its next request as
   soon as the last one answered) and paced (each client sends N requests/s on a fixed schedule;
   latency counted from the scheduled time, so a stalled server is not hidden).

Wallet signatures are EIP-712 (the same digest and signature as eth_signTypedData_v4; signed
with coincurve before the measured window, as wallets sign on their own devices, so the
generator's signing does not take CPU from the server during the run).

    .venv/bin/python scripts/load_api.py [--offers 3000] [--bulk-offers 80000] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from coincurve import PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount
from load_reads import add_read_args, print_reads, run_reads

from flexgrid.chain.deploy import Deployment
from flexgrid.chain.market import MarketClient
from flexgrid.chain.node import AnvilNode
from flexgrid.trading import Direction, FlexOffer
from flexgrid.trading.eip712 import SignedOrder
from frontend_api.core.intake import order_digest
from frontend_api.core.seed import seed_demo_market
from frontend_api.wallet import sign_in

ROOT = Path(__file__).resolve().parents[1]
MASK = (1 << 64) - 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes `pids` have used so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def descendants(pid: int) -> list[int]:
    """The child processes of `pid`, their children and so on (Linux /proc)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [d for c in children for d in (c, *descendants(c))]


def anvil_pids(node: AnvilNode) -> list[int]:
    process = node._process  # its pid is not public
    return [] if process is None else [process.pid, *descendants(process.pid)]


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_offer(address: str, round_id: int, seq: int, gate_s: int, bus: int) -> FlexOffer:
    return FlexOffer(provider=address, round_id=round_id, bus=bus, asset_id="0x" + "cd" * 32, direction=Direction.UP,
                     slots=(0, 1), min_kw=(0.0, 0.0), max_kw=(5.0, 5.0), price_eur_per_mwh=100.0 + seq % 50,
                     nonce=(round_id << 64) | seq, expiry_s=gate_s)


def signed_body(account: LocalAccount, order: FlexOffer, deployment: Deployment) -> dict[str, Any]:
    """What a wallet's eth_signTypedData_v4 gives (r, s, v = 27 + recovery id)."""
    digest = order_digest(order, deployment.domain)
    sig = PrivateKey(bytes(account.key)).sign_recoverable(digest, hasher=None)
    signature = "0x" + (sig[:64] + bytes([27 + sig[64]])).hex()
    return SignedOrder(order=order, domain=deployment.domain, signature=signature).to_dict()


class DbWatcher:
    """Sees when orders reach the server's database (read-only SQLite, WAL: no lock on the writer)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self.last = 0
        self.seen: dict[str, float] = {}
        self.rows = 0

    def poll(self) -> None:
        now = time.perf_counter()
        rows = self.db.execute("SELECT id, order_hash FROM order_record WHERE id > ? ORDER BY id", (self.last,)).fetchall()
        for row_id, order_hash in rows:
            self.seen.setdefault(order_hash, now)
            self.last = max(self.last, row_id)
        self.rows += len(rows)


async def write_load(url: str, jobs: dict[str, list[dict[str, Any]]], tokens: dict[str, str], clients: int,
                     bulk: int, max_seconds: float, watcher: DbWatcher, drain_seconds: float = 240.0
                     ) -> dict[str, Any]:
    """`bulk` = 0: one offer per POST /prosumer/offers; else POST /prosumer/offers/bulk with `bulk` offers."""
    submitted: dict[str, float] = {}
    api_latency: list[float] = []  # per offer: from its request's start to the answer
    errors: dict[int, int] = {}
    providers = list(jobs)
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    host, port = url.removeprefix("http://").split(":")
    # one keep-alive connection per client (httpx's shared pool spent more CPU than the server)

    async def post(conn: KeepAliveClient, path: str, body: Any, address: str, key: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {tokens[address]}", "Idempotency-Key": key}
        data = json.dumps(body).encode()
        try:
            status, raw = await conn.request("POST", path, data, headers)
        except (OSError, asyncio.IncompleteReadError):  # retried with the same key: never doubled
            await conn.close()
            conn.writer = None
            status, raw = await conn.request("POST", path, data, headers)
        return status, json.loads(raw) if raw else None

    async def worker(mine: list[str]) -> None:
        conn = KeepAliveClient(host, int(port))
        try:
            for address in mine:
                bodies = jobs[address]
                step = bulk or 1
                for k in range(0, len(bodies), step):
                    if time.perf_counter() > deadline:
                        return
                    chunk = bodies[k: k + step]
                    start = time.perf_counter()
                    if bulk:
                        status, doc = await post(conn, "/prosumer/offers/bulk", {"offers": chunk}, address,
                                                 chunk[0]["signature"][:40])
                        answers: list[dict[str, Any]] = (doc["results"] if status == 200
                                                         else [{"status": status}] * len(chunk))
                    else:
                        status, doc = await post(conn, "/prosumer/offers", chunk[0], address,
                                                 chunk[0]["signature"][:40])
                        answers = [{"status": status, "order": doc if status == 202 else {}}]
                    end = time.perf_counter()
                    for a in answers:
                        api_latency.append(end - start)
                        if a["status"] == 202:
                            submitted[a["order"]["order_hash"]] = start
                        else:
                            errors[a["status"]] = errors.get(a["status"], 0) + 1
        finally:
            await conn.close()

    writers_done = asyncio.Event()

    async def watch() -> None:
        while True:
            watcher.poll()  # a small indexed query on the WAL file: microseconds
            if writers_done.is_set() and all(h in watcher.seen for h in submitted):
                return
            if time.perf_counter() > deadline + drain_seconds:  # what has not arrived by now counts as lost
                return
            await asyncio.sleep(0.05)

    groups = [providers[i::clients] for i in range(clients)]
    watching = asyncio.create_task(watch())
    await asyncio.gather(*(worker(g) for g in groups if g))
    t_api = time.perf_counter() - t0
    writers_done.set()
    await watching
    seen = [watcher.seen[h] for h in submitted if h in watcher.seen]
    t_e2e = (max(seen) - t0) if seen else float("nan")
    e2e = [watcher.seen[h] - s for h, s in submitted.items() if h in watcher.seen]
    return {"offered": sum(len(v) for v in jobs.values()), "accepted": len(submitted), "errors": dict(errors),
            "lost": sum(1 for h in submitted if h not in watcher.seen), "api_seconds": t_api, "e2e_seconds": t_e2e,
            "api_offers_per_s": len(submitted) / t_api, "e2e_offers_per_s": len(e2e) / t_e2e if e2e else 0.0,
            "api_p50_ms": 1000 * pct(api_latency, 0.5), "api_p99_ms": 1000 * pct(api_latency, 0.99),
            "e2e_p50_ms": 1000 * pct(e2e, 0.5), "e2e_p99_ms": 1000 * pct(e2e, 0.99),
            "submitted": submitted}


class KeepAliveClient:
    """One client's own keep-alive HTTP/1.1 connection, as a browser or a dashboard holds one.
    (httpx's shared pool spends more CPU per request than the server at 200 connections.)"""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
                      ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        if method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        answer = await self.reader.readuntil(b"\r\n\r\n")
        lines = answer.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:"))
        return status, await self.reader.readexactly(length)

    async def get(self, path: str) -> int:
        return (await self.request("GET", path))[0]

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def lost_check(w3: Any, deployment: Deployment, round_id: int, wallets: Sequence[LocalAccount],
               result: dict[str, Any], db_path: Path) -> str:
    """Every accepted order is in the database once and on chain once: each wallet's keyed nonce
    advanced by exactly its accepted orders (the contract refuses a reused nonce)."""
    client = MarketClient(w3, deployment)
    accepted_by: dict[str, int] = {}
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    hashes = list(result["submitted"])
    stored: dict[str, int] = {}
    for i in range(0, len(hashes), 900):
        part = hashes[i: i + 900]
        q = f"SELECT order_hash, participant FROM order_record WHERE order_hash IN ({','.join('?' * len(part))})"
        for order_hash, participant in db.execute(q, part).fetchall():
            stored[order_hash] = stored.get(order_hash, 0) + 1
            accepted_by[participant] = accepted_by.get(participant, 0) + 1
    missing = sum(1 for h in hashes if h not in stored)
    doubled = sum(1 for n in stored.values() if n > 1)
    nonce_mismatch = sum(1 for w in wallets
                         if client.nonce(w.address, round_id) & MASK != accepted_by.get(w.address, 0))
    ok = missing == 0 and doubled == 0 and nonce_mismatch == 0
    return (f"{'PASS' if ok else 'FAIL'}: {len(hashes)} accepted, {missing} missing from the database, {doubled} "
            f"stored twice, {nonce_mismatch} of {len(wallets)} wallets whose on-chain nonce != accepted orders")


def batch_gas(w3: Any, db_path: Path) -> str:
    """Gas per offer of the relayer's batch transactions (receipts' gasUsed / orders carried)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    per_tx = db.execute("SELECT tx_hash, COUNT(*) FROM api_order WHERE status = 'relayed' GROUP BY tx_hash "
                        "ORDER BY COUNT(*) DESC LIMIT 20").fetchall()
    gas = offers = 0
    for tx_hash, n in per_tx:
        gas += int(w3.eth.get_transaction_receipt(tx_hash)["gasUsed"])
        offers += n
    limit = int(w3.eth.get_block("latest")["gasLimit"])
    if not offers:
        return f"no batch transaction found (block gas limit {limit:,})"
    return (f"gas per offer in the {len(per_tx)} largest batch transactions: {gas / offers:,.0f} "
            f"({offers / len(per_tx):.0f} offers per transaction, block gas limit {limit:,})")


def _brief(r: dict[str, Any]) -> str:
    return (f"{r['accepted']} accepted, {r['api_offers_per_s']:.0f}/s at the API, {r['e2e_offers_per_s']:.0f}/s end to "
            f"end, API p99 {r['api_p99_ms']:.0f} ms, end-to-end p99 {r['e2e_p99_ms']:.0f} ms, lost {r['lost']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offers", type=int, default=3000, help="offers on the per-offer endpoint")
    parser.add_argument("--clients", type=int, default=64, help="concurrent HTTP clients on the per-offer endpoint")
    parser.add_argument("--bulk-offers", type=int, default=80000,
                        help="offers on the bulk endpoint (the sustained test: enough to keep >= 1,000/s busy for "
                             "the whole --max-seconds)")
    parser.add_argument("--bulk-size", type=int, default=250, help="offers per bulk request")
    parser.add_argument("--bulk-clients", type=int, default=8, help="concurrent aggregator clients")
    parser.add_argument("--providers", type=int, default=100, help="provider wallets per write path")
    parser.add_argument("--naive-offers", type=int, default=100, help="offers on the one-tx-per-offer path")
    add_read_args(parser)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="bound on each write phase")
    args = parser.parse_args()

    with AnvilNode() as node, tempfile.TemporaryDirectory(prefix="flexgrid-load-") as tmp:
        w3 = node.web3()
        demo = seed_demo_market(w3, node.dev_accounts())
        deployment_file = Path(tmp) / "deployment.json"
        demo.deployment.save(deployment_file)
        op = MarketClient(w3, demo.deployment, demo.operator)
        single = [Account.create() for _ in range(args.providers)]
        bulkers = [Account.create() for _ in range(args.providers)]
        naive_wallet = Account.create()
        print(f"approving {2 * args.providers + 1} provider wallets ...", flush=True)
        for wallet in (*single, *bulkers, naive_wallet):
            op.approve_provider(wallet.address)
        config = op.round_config(demo.round_id)
        rid, gate = demo.round_id, config.gate_closure_s

        def jobs_for(wallets: list[LocalAccount], total: int) -> dict[str, list[dict[str, Any]]]:
            per = max(1, total // len(wallets))
            return {w.address: [signed_body(w, make_offer(w.address, rid, s, gate, 2 + i % 30), demo.deployment)
                                for s in range(per)] for i, w in enumerate(wallets)}

        print(f"signing {args.offers} + {args.bulk_offers} offers (as the wallets would, before the timed phases) ...",
              end=" ", flush=True)
        t_sign = time.perf_counter()
        single_jobs, bulk_jobs = jobs_for(single, args.offers), jobs_for(bulkers, args.bulk_offers)
        print(f"{time.perf_counter() - t_sign:.0f} s", flush=True)
        port = free_port()
        db_path = Path(tmp) / "api.db"
        env = {**os.environ, "FLEXGRID_RELAYER_KEY": "0x" + bytes(demo.relayer.key).hex(),
               "FLEXGRID_DATABASE_URL": f"sqlite:///{db_path}", "FLEXGRID_HOME": tmp}
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
                tokens = {w.address: sign_in(c, w) for w in (*single, *bulkers)}
            watcher = DbWatcher(db_path)
            print(f"per-offer path: {sum(map(len, single_jobs.values()))} offers, {args.clients} clients, "
                  f"at most {args.max_seconds:.0f} s", flush=True)
            per_offer = asyncio.run(write_load(url, single_jobs, tokens, args.clients, 0, args.max_seconds, watcher))
            per_offer_check = lost_check(w3, demo.deployment, rid, single, per_offer, db_path)
            print(f"  {_brief(per_offer)}; {per_offer_check}", flush=True)
            print(f"bulk path: {sum(map(len, bulk_jobs.values()))} offers, {args.bulk_size} per request, "
                  f"{args.bulk_clients} clients, at most {args.max_seconds:.0f} s", flush=True)
            # CPU per stage: anvil, the API process (intake, relayer), its indexer child, this generator
            stages = {"API (intake + relayer)": [server.pid], "indexer": descendants(server.pid),
                      "anvil": anvil_pids(node), "load generator": [os.getpid()]}
            cpu0 = {k: cpu_seconds(v) for k, v in stages.items()}
            bulk = asyncio.run(write_load(url, bulk_jobs, tokens, args.bulk_clients, args.bulk_size, args.max_seconds,
                                          watcher))
            bulk["cpu_ms_per_offer"] = {k: 1000 * (cpu_seconds(v) - cpu0[k]) / max(1, bulk["accepted"])
                                        for k, v in stages.items()}
            print("  CPU ms per offer: " + ", ".join(f"{k} {v:.2f}" for k, v in bulk["cpu_ms_per_offer"].items()),
                  flush=True)
            bulk_check = lost_check(w3, demo.deployment, rid, bulkers, bulk, db_path)
            print(f"  {_brief(bulk)}; {bulk_check}", flush=True)
            bulk["gas"] = batch_gas(w3, db_path)
            print(f"  {bulk['gas']}", flush=True)

            print(f"naive path: {args.naive_offers} offers, one transaction each", flush=True)
            # another funded account relays here: the server's relayer may still be sending
            relayer = MarketClient(w3, demo.deployment, demo.metering)
            naive_lat = []
            t0 = time.perf_counter()
            for s in range(args.naive_offers):
                signed = make_offer(naive_wallet.address, rid, s, gate, 5).sign(naive_wallet, demo.deployment.domain)
                start = time.perf_counter()
                relayer.submit_offer(signed)
                naive_lat.append(time.perf_counter() - start)
            naive_s = time.perf_counter() - t0

            reads = run_reads(url, rid, args)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:  # never leave a server (and its indexer) running
                for pid in descendants(server.pid):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                server.kill()
                server.wait(timeout=30)

    print()
    print(f"machine: {os.cpu_count()} cores shared with other work (load average {os.getloadavg()[0]:.1f} at the end); "
          "the load generator, anvil and the API (one uvicorn worker) run on it together")
    print()
    print("| path | offers | accepted | lost | offers/s at the API | offers/s end to end | API p50 / p99 ms | "
          "end-to-end p50 / p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in (("per-offer POST /prosumer/offers", per_offer),
                    (f"bulk POST /prosumer/offers/bulk ({args.bulk_size}/request)", bulk)):
        print(f"| {name} | {r['offered']} | {r['accepted']} | {r['lost']} | {r['api_offers_per_s']:.0f} | "
              f"{r['e2e_offers_per_s']:.0f} | {r['api_p50_ms']:.0f} / {r['api_p99_ms']:.0f} | "
              f"{r['e2e_p50_ms']:.0f} / {r['e2e_p99_ms']:.0f} |")
    if naive_lat:  # --naive-offers 0 skips the naive path
        print(f"| naive: one transaction per offer | {args.naive_offers} | {args.naive_offers} | 0 | - | "
              f"{args.naive_offers / naive_s:.0f} | - | {1000 * statistics.median(naive_lat):.0f} / "
              f"{1000 * pct(naive_lat, 0.99):.0f} |")
    print()
    print(f"zero lost, per-offer path: {per_offer_check}")
    print(f"zero lost, bulk path: {bulk_check}")
    for name, r in (("per-offer", per_offer), ("bulk", bulk)):
        if r["errors"]:
            print(f"{name} path: offers refused by the API, by status: {r['errors']}")
        print(f"{name} path: {r['api_seconds']:.1f} s of submission, last offer in the database after "
              f"{r['e2e_seconds']:.1f} s")
    met = (bulk["e2e_offers_per_s"] >= 1000 and bulk["e2e_seconds"] >= 60 and bulk["accepted"] >= 60000
           and bulk["lost"] == 0)
    print(f"goal (>= 1,000 offers/s end to end, the phase lasting >= 60 s, zero lost): "
          f"{'MET' if met else 'NOT MET'} ({bulk['accepted']} offers in {bulk['e2e_seconds']:.1f} s, "
          f"{bulk['e2e_offers_per_s']:.0f}/s end to end, "
          f"lost {bulk['lost']})")
    print("CPU per offer on the bulk path (ms, all processes on this machine): "
          + ", ".join(f"{k} {v:.2f}" for k, v in bulk["cpu_ms_per_offer"].items())
          + f"; total {sum(bulk['cpu_ms_per_offer'].values()):.2f}")
    print(f"bulk path: {bulk['gas']}")
    print()
    print_reads(reads, args)

if __name__ == "__main__":
    main()
