"""The clearing's leaves and root are what the library path gives for its trades (murky-tree's
StandardMerkleTree.of over each Trade's leaf_values(): eth_abi, eth-hash's automatic backend)."""

from __future__ import annotations

import random

from murky_tree import StandardMerkleTree

from flexgrid.market import clear_market
from flexgrid.trading import Direction, FlexOffer, FlexRequest, Order, P2POrder, PricingRule, Side
from flexgrid.trading.models import TRADE_LEAF_TYPES
from tests.market.helpers import DSO, OTHER, PROVIDER, grid, offer, p2p, profiles, request, round_config


def _orders(seed: int) -> list[Order]:
    rng = random.Random(seed)
    out: list[Order] = []
    for i in range(60):
        k = rng.randint(1, 4)
        s0 = rng.randint(0, 4 - k)
        out.append(offer(f"o{i}", rng.randint(1, 32), round(rng.uniform(20, 300), rng.choice([0, 2, 6])),
                         round(rng.uniform(1, 200), rng.choice([0, 3])), tuple(range(s0, s0 + k)),
                         direction=rng.choice([Direction.UP, Direction.DOWN]),
                         provider=rng.choice([PROVIDER, OTHER])))
    for i in range(8):
        out.append(request(str(100 + i) if i % 2 else f"r{i}", rng.randint(1, 32), round(rng.uniform(10, 300), 3),
                           round(rng.uniform(50, 600), 2), (rng.randrange(4),),
                           direction=rng.choice([Direction.UP, Direction.DOWN])))
    for i in range(12):
        out.append(p2p(f"p{i}", rng.randint(1, 32), rng.choice([Side.BUY, Side.SELL]), round(rng.uniform(1, 50), 3),
                       round(rng.uniform(20, 200), 2), slot=rng.randrange(4)))
    return out


def test_clearing_root_and_leaves_are_the_librarys() -> None:
    net, _ = grid()
    orders = _orders(1)
    by_id = {str(o.order_id): o for o in orders}
    for rule, funded in ((PricingRule.DLMP, False), (PricingRule.PAY_AS_BID, False), (PricingRule.UNIFORM, True)):
        rc = round_config(slots=4, rule=rule)
        out = clear_market(net, profiles(rc, load=1.4), rc, orders, wholesale_eur_per_mwh=[50.0, 80.0, 120.0, 60.0],
                           formulation="lindistflow", ac_validation=False, certificate=False, funded_only=funded)
        assert len(out.trades) > 10
        ref = StandardMerkleTree.of([t.leaf_values() for t in out.trades], TRADE_LEAF_TYPES)
        assert out.merkle_root == ref.root
        assert [(t.order_id, t.slot) for t in out.trades] == sorted((t.order_id, t.slot) for t in out.trades)
        balance = 0
        for t in out.trades:
            order = by_id[out.leaf_order_ids[t.order_id]]
            who = (order.provider if isinstance(order, FlexOffer) else order.trader if isinstance(order, P2POrder)
                   else order.dso if isinstance(order, FlexRequest) else None)
            assert t.participant == who and t.round_id == rc.round_id and t.slot in order.slots
            balance -= t.payment_micro
        assert round(out.budget_balance_eur * 1e6) == balance
        assert DSO in {t.participant for t in out.trades}
