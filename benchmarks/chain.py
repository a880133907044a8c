"""Chain-layer benchmark: prints a table and writes it to benchmarks/results/chain.md.

1. Trading language in Python: EIP-712 digests, signatures and recoveries per second; Merkle trees
   (build + every proof) for 1,000 and 10,000 trades.
2. On a managed anvil: relaying signed offers in batches of 1, 10 and 100 (gas per offer, offers
   per second of wall time), and indexing the resulting events into SQLite (events per second).

Usage: python benchmarks/chain.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from pathlib import Path

from flexgrid.chain import EventIndexer, MarketClient, connect, deploy
from flexgrid.chain.node import chain_time_s
from flexgrid.store import init_db, make_engine
from flexgrid.trading import Direction, FlexOffer, PricingRule, RoundConfig, SealMode, Trade
from flexgrid.trading.eip712 import Eip712Domain, recover_signer
from flexgrid.trading.merkle import TradeTree

RESULTS = Path(__file__).resolve().parent / "results" / "chain.md"


def _offer(provider: str, round_id: int, i: int, expiry_s: int) -> FlexOffer:
    return FlexOffer(
        provider=provider,
        round_id=round_id,
        bus=i % 33,
        asset_id="0x" + f"{i:064x}",
        direction=Direction.UP,
        slots=(0, 1, 2, 3),
        min_kw=(0.0,) * 4,
        max_kw=(10.0 + i % 7, 10.0, 10.0, 10.0),
        price_eur_per_mwh=50.0 + i % 100,
        nonce=(round_id << 64) | i,
        expiry_s=expiry_s,
    )


def bench_python(rows: list[tuple[str, str]], n: int) -> None:
    from eth_account import Account

    account = Account.create()
    domain = Eip712Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    offers = [_offer(account.address, 1, i, 2_000_000_000) for i in range(n)]
    t = time.perf_counter()
    for o in offers:
        o.digest(domain)
    rows.append(("EIP-712 digests (FlexOffer, 4 slots)", f"{n / (time.perf_counter() - t):,.0f} /s"))
    t = time.perf_counter()
    signed = [o.sign(account, domain) for o in offers]
    rows.append(("EIP-712 signatures", f"{n / (time.perf_counter() - t):,.0f} /s"))
    t = time.perf_counter()
    for s in signed:
        recover_signer(s.order, s.signature, domain)
    rows.append(("signature recoveries", f"{n / (time.perf_counter() - t):,.0f} /s"))
    rng = random.Random(1)
    for size in (1_000, 10_000):
        trades = [
            Trade(
                round_id=1,
                participant=account.address,
                order_id="0x" + rng.randbytes(32).hex(),
                slot=rng.randrange(96),
                kw=rng.randrange(1, 10**6) / 1000,
                price_eur_per_mwh=100.0,
                payment_eur=rng.randrange(1, 10**7) / 1e6,
            )
            for _ in range(size)
        ]
        t = time.perf_counter()
        tree = TradeTree(trades)
        for i in range(size):
            tree.proof(i)
        rows.append((f"Merkle tree + all proofs, {size:,} trades", f"{time.perf_counter() - t:.2f} s"))


def bench_chain(rows: list[tuple[str, str]], batches: tuple[int, ...]) -> None:
    with connect(rpc_url=None) as chain:
        accounts = chain.dev_accounts()
        operator, dso, oracle, relayer, provider = accounts[:5]
        deployment = deploy(chain.w3, operator)
        op = MarketClient(chain.w3, deployment, operator)
        op.set_dso("bench", dso.address)
        op.grant_oracle(oracle.address)
        op.approve_provider(provider.address)
        now = chain_time_s(chain.w3)
        cfg = op.create_round(
            RoundConfig(
                round_id=0,
                grid_id="bench",
                grid_model_hash="0x" + "11" * 32,
                slot_start_s=now + 7200,
                slot_seconds=900,
                slot_count=96,
                gate_closure_s=now + 3600,
                pricing_rule=PricingRule.UNIFORM,
                seal_mode=SealMode.OPEN,
                dispute_window_s=600,
                price_cap_eur_per_mwh=500.0,
                tolerance_bps=0,
                penalty_bps=0,
                bid_deposit_eur=0.0,
            )
        )
        relay = MarketClient(chain.w3, deployment, relayer)
        sequence = 0
        total = 0
        for size in batches:
            signed = []
            for _ in range(size):
                signed.append(
                    _offer(provider.address, cfg.round_id, sequence, now + 3000).sign(
                        provider, deployment.domain
                    )
                )
                sequence += 1
            t = time.perf_counter()
            result = relay.submit_offers(signed)
            elapsed = time.perf_counter() - t
            total += size
            rows.append(
                (
                    f"submitOffers, batch of {size}",
                    f"{result.gas_used / size:,.0f} gas/offer, {size / elapsed:,.0f} offers/s",
                )
            )
        with tempfile.TemporaryDirectory() as folder:
            engine = make_engine(f"sqlite:///{folder}/bench.db")
            init_db(engine)
            t = time.perf_counter()
            report = EventIndexer(chain.w3, deployment, engine).run_once()
            elapsed = time.perf_counter() - t
        rows.append(
            (
                f"indexer, {report.events_added} events ({report.orders_added} orders)",
                f"{report.events_added / elapsed:,.0f} events/s",
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer orders")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    bench_python(rows, 200 if args.quick else 1_000)
    bench_chain(rows, (1, 10) if args.quick else (1, 10, 100))
    width = max(len(r[0]) for r in rows)
    lines = [
        f"# Chain-layer benchmark ({platform.processor() or platform.machine()}, Python {platform.python_version()})",
        "",
        "| measure | result |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value} |" for name, value in rows]
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
