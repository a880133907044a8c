// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {NoncesKeyed} from "@openzeppelin/contracts/utils/NoncesKeyed.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IFlexMarketEvents} from "./interfaces/IFlexMarketEvents.sol";
import {IFlexRegistry} from "./interfaces/IFlexRegistry.sol";
import {FlexTypes} from "./libraries/FlexTypes.sol";

/// @title FlexMarketBase
/// @notice The storage, constructor and shared internal logic of FlexMarket and of its settlement
/// module. Both inherit exactly this contract, so their storage layouts are identical and the
/// module can run on the market's storage by delegatecall.
abstract contract FlexMarketBase is IFlexMarketEvents, EIP712, NoncesKeyed, Pausable, ReentrancyGuardTransient {
    /// @dev Pseudo-role ids used in `Unauthorized` for the per-grid roles.
    bytes32 internal constant DSO_ROLE_ID = keccak256("DSO");
    bytes32 internal constant METERING_ROLE_ID = keccak256("METERING");

    /// @dev Mutable state of a round. Slot 0 holds everything an order needs (state, counters and
    /// a copy of the hot config fields), so that an offer reads one round slot and writes two
    /// (slot 0 and the accumulator).
    struct Round {
        // slot 0
        FlexTypes.RoundState state; // stored state (CLOSED and lapsed FINAL are derived)
        uint32 orderCount;
        uint64 gateClosure;
        uint16 slotCount;
        uint8 sealMode;
        uint64 priceCap; // priceCapMicroPerMwh
        uint64 bidDeposit;
        // slot 1
        bytes32 accumulator;
        // slot 2
        uint96 pot; // budgets and buy escrows paid in
        uint96 totalPayout; // committed sum of positive payments
        uint16 toleranceBps; // copies of the config, read by every payment claim
        uint16 penaltyBps;
        uint8 votes;
        // slot 3
        uint128 charged;
        uint128 paid;
        // slot 4
        address dso; // the grid's DSO at creation
        uint40 finalAt; // commit time + disputeWindow (0 before the commit)
        uint40 claimDeadline; // deliveryEnd + 2 * settlementSeconds
        // slots 5-7
        bytes32 tradeRoot;
        bytes32 meteringRoot;
        address disputer;
        uint40 meteringAt;
    }

    struct Commitment {
        address provider;
        bool closed;
    }

    struct Escrow {
        uint128 escrow;
        uint128 charged;
    }

    IFlexRegistry internal immutable _registry;
    IERC20 internal immutable _token;

    // written by the market, read through the shared storage by the module (see contracts/SLITHER.md)
    uint256 internal _roundCount;
    uint256 internal _requestCount;
    // slither-disable-next-line uninitialized-state
    mapping(uint256 roundId => FlexTypes.RoundConfig) internal _configs;
    // slither-disable-next-line uninitialized-state
    mapping(uint256 roundId => Round) internal _rounds;
    // slither-disable-next-line uninitialized-state
    mapping(uint256 requestId => FlexTypes.RequestInfo) internal _requests;
    // slither-disable-next-line uninitialized-state
    mapping(uint256 roundId => mapping(bytes32 commitment => Commitment)) internal _commitments;
    // slither-disable-next-line uninitialized-state
    mapping(uint256 roundId => mapping(address account => uint256)) internal _deposits;
    // slither-disable-next-line uninitialized-state
    mapping(uint256 roundId => mapping(address account => Escrow)) internal _escrows;
    // slither-disable-next-line uninitialized-state
    mapping(uint256 roundId => mapping(address oracle => bool)) internal _voted;
    // slither-disable-next-line uninitialized-state
    mapping(uint256 roundId => mapping(bytes32 resultHash => uint256)) internal _votes;
    // slither-disable-next-line uninitialized-state
    mapping(bytes32 leaf => bool) internal _claimed;
    // slither-disable-next-line uninitialized-state
    mapping(address account => uint256) internal _balances;

    /// @param registry_ the FlexRegistry
    /// @param token_ the settlement token (e.g. FlexToken)
    constructor(IFlexRegistry registry_, IERC20 token_) EIP712("FlexGrid", "1") {
        if (address(registry_) == address(0)) revert MarketZeroAddress("registry");
        if (address(token_) == address(0)) revert MarketZeroAddress("token");
        _registry = registry_;
        _token = token_;
    }

    // ================================================================== internal: rounds

    /// @dev Folds an accepted order into the round's accumulator: acc = keccak256(abi.encode(acc, orderHash)).
    function _accept(Round storage r, bytes32 orderHash) internal {
        bytes32 acc = r.accumulator;
        assembly ("memory-safe") {
            mstore(0x00, acc)
            mstore(0x20, orderHash)
            acc := keccak256(0x00, 0x40)
        }
        r.accumulator = acc;
        r.orderCount += 1;
    }

    function _round(uint256 roundId) internal view returns (FlexTypes.RoundConfig storage c, Round storage r) {
        r = _rounds[roundId];
        if (r.state == FlexTypes.RoundState.NONE) revert UnknownRound(roundId);
        c = _configs[roundId];
    }

    function _state(Round storage r) internal view returns (FlexTypes.RoundState s) {
        s = r.state;
        if (s == FlexTypes.RoundState.OPEN) {
            if (block.timestamp >= r.gateClosure) return FlexTypes.RoundState.CLOSED;
        } else if (s == FlexTypes.RoundState.COMMITTED) {
            if (block.timestamp >= r.finalAt) return FlexTypes.RoundState.FINAL;
        }
    }

    function _requireOpen(uint256 roundId, Round storage r) internal view {
        if (r.state != FlexTypes.RoundState.OPEN) revert WrongRoundState(roundId, r.state);
        if (block.timestamp >= r.gateClosure) revert TooLate(roundId, r.gateClosure, block.timestamp);
    }

    function _requireProvider(address account) internal view {
        if (!_registry.isProvider(account)) revert Unauthorized(account, _registry.PROVIDER_ROLE());
    }

    function _onlyOperator() internal view {
        if (!_registry.isOperator(msg.sender)) revert Unauthorized(msg.sender, _registry.OPERATOR_ROLE());
    }

    function _commitDeadline(FlexTypes.RoundConfig storage c) internal view returns (uint256) {
        return uint256(c.gateClosure) + c.revealSeconds + c.clearingSeconds;
    }

    function _deliveryEnd(FlexTypes.RoundConfig storage c) internal view returns (uint256) {
        return uint256(c.slotStart) + uint256(c.slotCount) * c.slotSeconds;
    }

    function _meteringDeadline(FlexTypes.RoundConfig storage c) internal view returns (uint256) {
        return _deliveryEnd(c) + c.settlementSeconds;
    }

    function _claimDeadline(FlexTypes.RoundConfig storage c) internal view returns (uint256) {
        return _deliveryEnd(c) + 2 * uint256(c.settlementSeconds);
    }
}
