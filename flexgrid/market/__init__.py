"""Market clearing: network-constrained clearing of FlexRequests, FlexOffers and P2P orders,
locational prices and pricing rules, optimality certificates."""

from flexgrid.market.certificate import Certificate, Verification, verify
from flexgrid.market.clearing import (
    Accepted,
    ClearingOutcome,
    check_orders,
    clear_market,
    inputs_hash,
    leaf_order_id,
)
from flexgrid.market.orders_file import OrdersFile, parse_orders_file

__all__ = [
    "Accepted",
    "Certificate",
    "ClearingOutcome",
    "OrdersFile",
    "Verification",
    "check_orders",
    "clear_market",
    "inputs_hash",
    "leaf_order_id",
    "parse_orders_file",
    "verify",
]
