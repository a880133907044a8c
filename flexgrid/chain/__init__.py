"""The chain layer: a managed anvil, deployment from shipped artifacts, typed market calls, event indexing."""

from flexgrid.chain.deploy import Deployment, deploy
from flexgrid.chain.indexer import (
    EventIndexer,
    IndexerReport,
    RoundOrders,
    accepted_order_hashes,
    read_round_orders,
    round_events,
    round_orders,
)
from flexgrid.chain.market import MarketClient, RoundStatus, commitment
from flexgrid.chain.node import AnvilNode, ChainConnection, connect, dev_accounts
from flexgrid.chain.transact import TxResult, TxSender

__all__ = [
    "AnvilNode",
    "ChainConnection",
    "Deployment",
    "EventIndexer",
    "IndexerReport",
    "MarketClient",
    "RoundOrders",
    "RoundStatus",
    "TxResult",
    "TxSender",
    "accepted_order_hashes",
    "commitment",
    "connect",
    "deploy",
    "dev_accounts",
    "read_round_orders",
    "round_events",
    "round_orders",
]
