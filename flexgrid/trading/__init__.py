"""The trading language of FlexGrid: typed orders, EIP-712 signing, Merkle leaves, canonical hashing.

The single source of truth is docs/trading-language.md; `contracts/src/libraries/FlexTypes.sol`
implements the same definitions in Solidity.
"""

from flexgrid.trading.models import (
    METERING_LEAF_TYPES,
    TRADE_LEAF_TYPES,
    ZERO_BYTES32,
    ClearingResult,
    Direction,
    FlexModel,
    FlexOffer,
    FlexRequest,
    MeterReading,
    Order,
    P2POrder,
    PricingRule,
    RoundConfig,
    RoundState,
    SealMode,
    Settlement,
    Side,
    Trade,
    request_order_hash,
    settle,
    validate_for_round,
    validate_orders,
)

__all__ = [
    "METERING_LEAF_TYPES",
    "TRADE_LEAF_TYPES",
    "ZERO_BYTES32",
    "ClearingResult",
    "Direction",
    "FlexModel",
    "FlexOffer",
    "FlexRequest",
    "MeterReading",
    "Order",
    "P2POrder",
    "PricingRule",
    "RoundConfig",
    "RoundState",
    "SealMode",
    "Settlement",
    "Side",
    "Trade",
    "request_order_hash",
    "settle",
    "validate_for_round",
    "validate_orders",
]
