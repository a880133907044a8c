// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title FlexTypes
/// @notice The trading language of FlexGrid on chain: the order and leaf types, the EIP-712 type
/// hashes and struct hashing, the Merkle leaves and the money arithmetic. It follows
/// docs/trading-language.md exactly; the Python side (`flexgrid.trading`) implements the same page
/// and a property test proves that both agree.
library FlexTypes {
    // ------------------------------------------------------------------ enumerations (uint8 on chain)

    /// @dev Direction: 0 = UP (more injection / less consumption), 1 = DOWN.
    uint8 internal constant DIRECTION_UP = 0;
    uint8 internal constant DIRECTION_DOWN = 1;
    /// @dev Side of a P2P order: 0 = BUY, 1 = SELL.
    uint8 internal constant SIDE_BUY = 0;
    uint8 internal constant SIDE_SELL = 1;
    /// @dev Pricing rule: 0 = PAY_AS_BID, 1 = UNIFORM, 2 = DLMP, 3 = VCG.
    uint8 internal constant PRICING_RULE_MAX = 3;
    /// @dev Seal mode: 0 = OPEN, 1 = COMMIT_REVEAL, 2 = ENCRYPTED.
    uint8 internal constant SEAL_OPEN = 0;
    uint8 internal constant SEAL_COMMIT_REVEAL = 1;
    uint8 internal constant SEAL_ENCRYPTED = 2;

    /// @dev 10000 basis points = 100 %.
    uint256 internal constant BPS = 10_000;
    /// @dev watts × seconds × micro-units per MWh / 3.6e9 = micro-units (token base units).
    uint256 internal constant WATT_SECONDS_PER_MWH = 3_600_000_000;

    /// @notice A market round's lifecycle. CLOSED and the lapse of COMMITTED into FINAL are derived
    /// from time; the other states are stored.
    enum RoundState {
        NONE,
        OPEN,
        CLOSED,
        COMMITTED,
        DISPUTED,
        FINAL,
        SETTLED,
        CANCELLED
    }

    // ------------------------------------------------------------------ structs

    /// @notice The configuration of one market round, fixed at creation by the operator.
    /// @dev Times are unix seconds. Windows follow one another:
    /// orders until `gateClosure`; reveals (sealed rounds) in `[gateClosure, gateClosure + revealSeconds)`;
    /// clearing commits in `[gateClosure + revealSeconds, commitDeadline)` with
    /// `commitDeadline = gateClosure + revealSeconds + clearingSeconds`; disputes for `disputeWindow`
    /// seconds after the commit; metering until `deliveryEnd + settlementSeconds` and claims until
    /// `deliveryEnd + 2 * settlementSeconds`, where `deliveryEnd = slotStart + slotCount * slotSeconds`.
    struct RoundConfig {
        bytes32 gridId; // keccak256(utf8(grid_id))
        bytes32 gridModelHash; // hash of the grid model the oracle clears against
        bytes32 encryptionKey; // X25519 public key of the round (ENCRYPTED mode), else 0
        uint64 slotStart; // unix seconds of the start of slot 0
        uint64 gateClosure; // orders accepted while block.timestamp < gateClosure
        uint32 slotSeconds; // length of one slot (e.g. 900)
        uint16 slotCount; // number of slots (e.g. 96)
        uint32 revealSeconds; // length of the reveal window after gate closure (0 for OPEN)
        uint32 clearingSeconds; // time after the reveal window for the oracles to reach quorum
        uint8 pricingRule; // PricingRule
        uint8 sealMode; // SealMode
        uint32 disputeWindow; // seconds after the commit during which anyone may dispute
        uint32 settlementSeconds; // metering window after delivery end, and again the claim window
        uint64 priceCapMicroPerMwh; // highest price of any order in the round
        uint16 toleranceBps; // under-delivery tolerated without reduction
        uint16 penaltyBps; // penalty on the undelivered part of a payment
        uint8 oracleQuorum; // k of k-of-n (>= 1)
        uint128 bidDeposit; // token base units per provider (OPEN) or per sealed commitment
        uint128 disputeBond; // token base units a challenger locks
    }

    /// @notice A DSO's flexibility need (not signed; the DSO sends it itself).
    struct FlexRequest {
        uint256 roundId;
        uint32 bus;
        uint8 direction;
        uint16[] slots;
        uint64[] powerW;
        uint64 priceCapMicroPerMwh;
    }

    /// @notice A provider's flexibility offer, signed off chain with EIP-712.
    struct FlexOffer {
        address provider;
        uint256 roundId;
        uint32 bus;
        bytes32 assetId;
        uint8 direction;
        uint16[] slots;
        uint64[] minPowerW;
        uint64[] maxPowerW;
        uint64 priceMicroPerMwh;
        bytes32 exclusiveGroup;
        uint16 minActivationBps;
        uint256 nonce;
        uint64 expiry;
    }

    /// @notice A prosumer's peer-to-peer energy order, signed off chain with EIP-712.
    struct P2POrder {
        address trader;
        uint256 roundId;
        uint32 bus;
        uint8 side;
        uint16 slot;
        uint64 powerW;
        uint64 limitPriceMicroPerMwh;
        uint256 nonce;
        uint64 expiry;
    }

    /// @notice One accepted quantity: one leaf of a round's clearing (trade) root.
    struct Trade {
        uint256 roundId;
        address participant;
        bytes32 orderHash; // EIP-712 digest, or bytes32(requestId) for a FlexRequest
        uint16 slot;
        uint64 powerW;
        uint64 priceMicroPerMwh;
        int256 paymentMicro; // > 0 the market pays the participant, < 0 the participant pays
    }

    /// @notice What the oracle commits for a round.
    struct ClearingResult {
        bytes32 tradeRoot; // StandardMerkleTree root of the Trade leaves
        bytes32 inputHash; // keccak256 of the canonical JSON of the inputs
        bytes32 certificateHash; // keccak256 of the optimality certificate
        uint128 totalPayout; // sum of the positive paymentMicro of all leaves
        string uri; // where the full result can be fetched
    }

    /// @notice The mutable state of a round, as returned by `IFlexMarket.roundStatus`.
    struct RoundStatus {
        RoundState state; // the effective state (CLOSED and FINAL derived from time)
        uint32 orderCount; // requests, offers and P2P orders accepted
        uint8 votes; // oracle votes for the leading result (quorum reached once committed)
        uint64 committedAt; // time the result reached quorum (0 before)
        uint64 meteringAt; // time the metering root was committed (0 before)
        bytes32 orderAccumulator; // rolling keccak256 of the accepted order hashes
        uint128 pot; // budgets and buy escrows paid in
        uint128 charged; // charges settled from payer leaves
        uint128 totalPayout; // committed sum of positive payments
        uint128 paid; // payouts credited so far
        bytes32 tradeRoot;
        bytes32 meteringRoot;
        address dso; // the DSO of the round's grid when the round was created
        address disputer;
    }

    /// @notice What the market keeps of a FlexRequest (the full request is in its event).
    struct RequestInfo {
        uint256 roundId;
        address dso;
        uint128 budget;
    }

    // ------------------------------------------------------------------ EIP-712

    /// @dev keccak256 of the exact type strings of docs/trading-language.md.
    bytes32 internal constant FLEX_OFFER_TYPEHASH = keccak256(
        "FlexOffer(address provider,uint256 roundId,uint32 bus,bytes32 assetId,uint8 direction,uint16[] slots,uint64[] minPowerW,uint64[] maxPowerW,uint64 priceMicroPerMwh,bytes32 exclusiveGroup,uint16 minActivationBps,uint256 nonce,uint64 expiry)"
    );
    bytes32 internal constant P2P_ORDER_TYPEHASH = keccak256(
        "P2POrder(address trader,uint256 roundId,uint32 bus,uint8 side,uint16 slot,uint64 powerW,uint64 limitPriceMicroPerMwh,uint256 nonce,uint64 expiry)"
    );

    /// @notice EIP-712 struct hash of a FlexOffer (arrays hashed as keccak256 of their 32-byte words).
    /// @dev Equal to keccak256(abi.encode(FLEX_OFFER_TYPEHASH, provider, roundId, bus, assetId,
    /// direction, keccak256(abi.encodePacked(slots)), keccak256(abi.encodePacked(minPowerW)),
    /// keccak256(abi.encodePacked(maxPowerW)), priceMicroPerMwh, exclusiveGroup, minActivationBps,
    /// nonce, expiry)), written in assembly because offers are hashed in batches of hundreds.
    /// Calldata words of the arrays are hashed as they are: the ABI encodes every element in a
    /// 32-byte word, and callers read every element through Solidity (which rejects dirty values)
    /// before accepting an offer. Narrow static fields are read through Solidity here for the same reason.
    function hashFlexOffer(FlexOffer calldata o) internal pure returns (bytes32 h) {
        bytes32 slotsHash = _hashWords(o.slots);
        bytes32 minHash = _hashWords(o.minPowerW);
        bytes32 maxHash = _hashWords(o.maxPowerW);
        bytes32 typehash = FLEX_OFFER_TYPEHASH;
        address provider = o.provider;
        uint256 bus = o.bus;
        uint256 direction = o.direction;
        uint256 price = o.priceMicroPerMwh;
        uint256 bps = o.minActivationBps;
        uint256 expiry = o.expiry;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            mstore(add(ptr, 0x20), provider)
            mstore(add(ptr, 0x40), calldataload(add(o, 0x20))) // roundId
            mstore(add(ptr, 0x60), bus)
            mstore(add(ptr, 0x80), calldataload(add(o, 0x60))) // assetId
            mstore(add(ptr, 0xa0), direction)
            mstore(add(ptr, 0xc0), slotsHash)
            mstore(add(ptr, 0xe0), minHash)
            mstore(add(ptr, 0x100), maxHash)
            mstore(add(ptr, 0x120), price)
            mstore(add(ptr, 0x140), calldataload(add(o, 0x120))) // exclusiveGroup
            mstore(add(ptr, 0x160), bps)
            mstore(add(ptr, 0x180), calldataload(add(o, 0x160))) // nonce
            mstore(add(ptr, 0x1a0), expiry)
            h := keccak256(ptr, 0x1c0)
        }
    }

    function _hashWords(uint16[] calldata a) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            let len := shl(5, a.length)
            calldatacopy(ptr, a.offset, len)
            h := keccak256(ptr, len)
        }
    }

    function _hashWords(uint64[] calldata a) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            let len := shl(5, a.length)
            calldatacopy(ptr, a.offset, len)
            h := keccak256(ptr, len)
        }
    }

    /// @notice EIP-712 struct hash of a P2POrder.
    function hashP2POrder(P2POrder calldata o) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                P2P_ORDER_TYPEHASH,
                o.trader,
                o.roundId,
                o.bus,
                o.side,
                o.slot,
                o.powerW,
                o.limitPriceMicroPerMwh,
                o.nonce,
                o.expiry
            )
        );
    }

    // ------------------------------------------------------------------ commitments and leaves

    /// @notice Sealed-bid commitment: keccak256(abi.encode(orderHash, provider, salt)).
    function commitment(bytes32 orderHash, address provider, bytes32 salt) internal pure returns (bytes32) {
        return keccak256(abi.encode(orderHash, provider, salt));
    }

    /// @notice StandardMerkleTree leaf of a trade: keccak256(bytes.concat(keccak256(abi.encode(values)))).
    function tradeLeaf(Trade calldata t) internal pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(t.roundId, t.participant, t.orderHash, t.slot, t.powerW, t.priceMicroPerMwh, t.paymentMicro)
                )
            )
        );
    }

    /// @notice StandardMerkleTree leaf of a metering value (roundId, participant, orderHash, slot,
    /// deliveredPowerW).
    function meteringLeaf(uint256 roundId, address participant, bytes32 orderHash, uint16 slot, uint64 deliveredPowerW)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(bytes.concat(keccak256(abi.encode(roundId, participant, orderHash, slot, deliveredPowerW))));
    }

    // ------------------------------------------------------------------ money

    /// @notice Value of `powerW` during `slotSeconds` at `priceMicroPerMwh`, rounded up (money in).
    function valueUp(uint256 powerW, uint256 slotSeconds, uint256 priceMicroPerMwh) internal pure returns (uint256) {
        uint256 num = powerW * slotSeconds * priceMicroPerMwh;
        return (num + WATT_SECONDS_PER_MWH - 1) / WATT_SECONDS_PER_MWH;
    }

    /// @notice Settlement of one trade leaf with a positive payment (docs/trading-language.md).
    /// @return payout what the provider is credited
    /// @return penaltyExcess the part of the penalty larger than the reduced payment, to be taken
    /// from the provider's bid deposit
    function settle(uint256 paymentMicro, uint256 acceptedW, uint256 deliveredW, uint256 toleranceBps, uint256 penaltyBps)
        internal
        pure
        returns (uint256 payout, uint256 penaltyExcess)
    {
        if (deliveredW > acceptedW) deliveredW = acceptedW;
        if (acceptedW == 0 || deliveredW * BPS >= acceptedW * (BPS - toleranceBps)) return (paymentMicro, 0);
        uint256 reduced = paymentMicro * deliveredW / acceptedW;
        // the integer steps of docs/trading-language.md, in that order (see contracts/SLITHER.md)
        // slither-disable-next-line divide-before-multiply
        uint256 penalty = paymentMicro * (acceptedW - deliveredW) / acceptedW * penaltyBps / BPS;
        if (penalty <= reduced) return (reduced - penalty, 0);
        return (0, penalty - reduced);
    }
}
