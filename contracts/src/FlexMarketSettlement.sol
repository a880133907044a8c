// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {IFlexRegistry} from "./interfaces/IFlexRegistry.sol";
import {FlexTypes} from "./libraries/FlexTypes.sol";
import {FlexMarketBase} from "./FlexMarketBase.sol";

/// @title FlexMarketSettlement
/// @notice The settlement half of FlexMarket: cancel, disputes, approval, metering, charge and payment
/// claims, close, release and their views. Deployed by FlexMarket's constructor and only run by
/// delegatecall from it, on the market's storage (see IFlexMarket for the NatSpec of each function).
/// @dev Called directly (not through the market) every function reverts with `DirectCallToModule`.
contract FlexMarketSettlement is FlexMarketBase {
    using SafeERC20 for IERC20;

    address private immutable _self;

    /// @param registry_ the FlexRegistry (same as the market's)
    /// @param token_ the settlement token (same as the market's)
    constructor(IFlexRegistry registry_, IERC20 token_) FlexMarketBase(registry_, token_) {
        _self = address(this);
    }

    modifier onlyDelegated() {
        if (address(this) == _self) revert DirectCallToModule();
        _;
    }

    /// @notice See IFlexMarket.cancelRound.
    function cancelRound(uint256 roundId) external onlyDelegated {
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(roundId);
        FlexTypes.RoundState s = _state(r);
        if (s == FlexTypes.RoundState.OPEN || s == FlexTypes.RoundState.CLOSED) {
            if (!_registry.isOperator(msg.sender)) {
                if (s == FlexTypes.RoundState.OPEN) revert Unauthorized(msg.sender, _registry.OPERATOR_ROLE());
                uint256 deadline = _commitDeadline(c);
                if (block.timestamp < deadline) revert TooEarly(roundId, deadline, block.timestamp);
            }
        } else if (s == FlexTypes.RoundState.DISPUTED) {
            uint256 deadline = uint256(r.finalAt) + c.clearingSeconds;
            if (block.timestamp < deadline) revert TooEarly(roundId, deadline, block.timestamp);
        } else {
            revert WrongRoundState(roundId, s);
        }
        uint256 bond = 0;
        if (s == FlexTypes.RoundState.DISPUTED) {
            bond = c.disputeBond;
            _balances[r.disputer] += bond;
        }
        r.state = FlexTypes.RoundState.CANCELLED;
        emit RoundCancelled(roundId, msg.sender, bond);
    }

    /// @notice See IFlexMarket.resolveDispute.
    function resolveDispute(uint256 roundId, bool upheld) external onlyDelegated {
        _onlyOperator();
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(roundId);
        if (r.state != FlexTypes.RoundState.DISPUTED) revert WrongRoundState(roundId, _state(r));
        address bondTo = upheld ? r.disputer : r.dso;
        _balances[bondTo] += c.disputeBond;
        r.state = upheld ? FlexTypes.RoundState.CANCELLED : FlexTypes.RoundState.FINAL;
        emit DisputeResolved(roundId, upheld, msg.sender, bondTo);
        if (upheld) emit RoundCancelled(roundId, msg.sender, c.disputeBond);
    }

    /// @notice See IFlexMarket.approveResult.
    function approveResult(uint256 roundId) external onlyDelegated {
        (, Round storage r) = _round(roundId);
        if (msg.sender != r.dso) revert Unauthorized(msg.sender, DSO_ROLE_ID);
        FlexTypes.RoundState s = _state(r);
        if (s != FlexTypes.RoundState.COMMITTED) revert WrongRoundState(roundId, s);
        r.state = FlexTypes.RoundState.FINAL;
        emit ResultApproved(roundId, msg.sender);
    }

    /// @notice See IFlexMarket.commitMetering.
    function commitMetering(uint256 roundId, bytes32 meteringRoot, string calldata uri) external onlyDelegated whenNotPaused {
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(roundId);
        address agent = _registry.meteringAgentOf(c.gridId);
        if (agent == address(0) || msg.sender != agent) revert Unauthorized(msg.sender, METERING_ROLE_ID);
        FlexTypes.RoundState s = _state(r);
        if (s != FlexTypes.RoundState.FINAL) revert WrongRoundState(roundId, s);
        if (r.meteringRoot != bytes32(0)) revert MeteringAlreadyCommitted(roundId);
        uint256 deadline = _meteringDeadline(c);
        if (block.timestamp >= deadline) revert TooLate(roundId, deadline, block.timestamp);
        if (meteringRoot == bytes32(0)) revert ZeroValue("meteringRoot");
        r.meteringRoot = meteringRoot;
        r.meteringAt = SafeCast.toUint40(block.timestamp);
        emit MeteringCommitted(roundId, meteringRoot, msg.sender, uri);
    }

    /// @notice See IFlexMarket.forfeitCommitment.
    function forfeitCommitment(uint256 roundId, bytes32 commitment_) external onlyDelegated {
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(roundId);
        if (r.sealMode != FlexTypes.SEAL_COMMIT_REVEAL) revert WrongSealMode(roundId, r.sealMode);
        FlexTypes.RoundState s = _state(r);
        if (s == FlexTypes.RoundState.CANCELLED) revert WrongRoundState(roundId, s);
        uint256 revealEnd = uint256(r.gateClosure) + c.revealSeconds;
        if (block.timestamp < revealEnd) revert TooEarly(roundId, revealEnd, block.timestamp);
        Commitment storage cm = _commitments[roundId][commitment_];
        address provider = cm.provider;
        if (provider == address(0)) revert UnknownCommitment(roundId, commitment_);
        if (cm.closed) revert CommitmentClosed(roundId, commitment_);
        uint256 deposit = _deposits[roundId][provider];
        uint256 amount = r.bidDeposit < deposit ? r.bidDeposit : deposit;
        cm.closed = true;
        _deposits[roundId][provider] = deposit - amount;
        _balances[r.dso] += amount;
        emit CommitmentForfeited(roundId, commitment_, provider, r.dso, amount);
    }

    /// @notice See IFlexMarket.publishRoundKey.
    function publishRoundKey(uint256 roundId, bytes32 secretKey) external onlyDelegated whenNotPaused {
        if (!_registry.isOracle(msg.sender)) revert Unauthorized(msg.sender, _registry.ORACLE_ROLE());
        (, Round storage r) = _round(roundId);
        if (r.sealMode != FlexTypes.SEAL_ENCRYPTED) revert WrongSealMode(roundId, r.sealMode);
        FlexTypes.RoundState s = _state(r);
        if (r.finalAt == 0 || s == FlexTypes.RoundState.CANCELLED) revert WrongRoundState(roundId, s);
        emit RoundKeyPublished(roundId, msg.sender, secretKey);
    }

    /// @notice See IFlexMarket.dispute.
    function dispute(uint256 roundId, bytes32 reasonHash) external onlyDelegated nonReentrant {
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(roundId);
        FlexTypes.RoundState s = _state(r);
        if (s != FlexTypes.RoundState.COMMITTED) revert WrongRoundState(roundId, s);
        uint256 bond = c.disputeBond;
        r.state = FlexTypes.RoundState.DISPUTED;
        r.disputer = msg.sender;
        emit ResultDisputed(roundId, msg.sender, bond, reasonHash);
        if (bond != 0) _token.safeTransferFrom(msg.sender, address(this), bond);
    }

    /// @notice See IFlexMarket.claimCharge.
    function claimCharge(FlexTypes.Trade calldata trade, bytes32[] calldata proof) external onlyDelegated {
        uint256 roundId = trade.roundId;
        (, Round storage r) = _round(roundId);
        _requireClaimable(roundId, r);
        if (trade.paymentMicro >= 0) revert WrongPaymentSign(roundId, trade.paymentMicro);
        bytes32 leaf = _verifyTrade(trade, proof, r);

        uint256 amount = uint256(-trade.paymentMicro);
        Escrow storage e = _escrows[roundId][trade.participant];
        uint256 available = uint256(e.escrow) - e.charged;
        if (amount > available) revert InsufficientEscrow(roundId, trade.participant, available, amount);
        _claimed[leaf] = true;
        e.charged += SafeCast.toUint128(amount);
        r.charged += SafeCast.toUint128(amount);
        emit ChargeSettled(roundId, trade.participant, trade.orderHash, trade.slot, amount);
    }

    /// @notice See IFlexMarket.claimPayment.
    function claimPayment(
        FlexTypes.Trade calldata trade,
        bytes32[] calldata proof,
        uint64 deliveredPowerW,
        bytes32[] calldata meteringProof
    ) external onlyDelegated {
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(trade.roundId);
        _requireClaimable(trade.roundId, r);
        if (trade.paymentMicro <= 0) revert WrongPaymentSign(trade.roundId, trade.paymentMicro);
        _claimed[_verifyTrade(trade, proof, r)] = true;
        uint64 delivered = _delivered(c, r, trade, deliveredPowerW, meteringProof);
        _settlePayment(r, trade, delivered);
    }

    /// @notice See IFlexMarket.closeRound.
    function closeRound(uint256 roundId) external onlyDelegated {
        (, Round storage r) = _round(roundId);
        FlexTypes.RoundState s = _state(r);
        if (s != FlexTypes.RoundState.FINAL) revert WrongRoundState(roundId, s);
        uint256 deadline = r.claimDeadline;
        if (block.timestamp < deadline) revert TooEarly(roundId, deadline, block.timestamp);
        uint256 toDso = uint256(r.charged) - r.paid;
        r.state = FlexTypes.RoundState.SETTLED;
        _balances[r.dso] += toDso;
        emit RoundSettled(roundId, r.dso, toDso);
    }

    /// @notice See IFlexMarket.release.
    function release(uint256 roundId, address account) external onlyDelegated returns (uint256 amount) {
        (, Round storage r) = _round(roundId);
        FlexTypes.RoundState s = r.state;
        if (s != FlexTypes.RoundState.SETTLED && s != FlexTypes.RoundState.CANCELLED) {
            revert WrongRoundState(roundId, _state(r));
        }
        Escrow memory e = _escrows[roundId][account];
        amount = _deposits[roundId][account] + (uint256(e.escrow) - e.charged);
        if (amount == 0) revert NothingToRelease(roundId, account);
        delete _deposits[roundId][account];
        _escrows[roundId][account].escrow = e.charged;
        _balances[account] += amount;
        emit Released(roundId, account, amount);
    }

    /// @notice See IFlexMarket.roundStatus.
    function roundStatus(uint256 roundId) external view returns (FlexTypes.RoundStatus memory status) {
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(roundId);
        status.state = _state(r);
        status.orderCount = r.orderCount;
        status.votes = r.votes;
        status.committedAt = r.finalAt == 0 ? 0 : r.finalAt - c.disputeWindow;
        status.meteringAt = r.meteringAt;
        status.orderAccumulator = r.accumulator;
        status.pot = r.pot;
        status.charged = r.charged;
        status.totalPayout = r.totalPayout;
        status.paid = r.paid;
        status.tradeRoot = r.tradeRoot;
        status.meteringRoot = r.meteringRoot;
        status.dso = r.dso;
        status.disputer = r.disputer;
    }

    /// @notice See IFlexMarket.hashOffers.
    function hashOffers(FlexTypes.FlexOffer[] calldata offers) external view returns (bytes32[] memory hashes) {
        hashes = new bytes32[](offers.length);
        for (uint256 i; i < offers.length; ++i) {
            hashes[i] = _hashTypedDataV4(FlexTypes.hashFlexOffer(offers[i]));
        }
    }

    /// @notice See IFlexMarket.hashP2POrders.
    function hashP2POrders(FlexTypes.P2POrder[] calldata orders) external view returns (bytes32[] memory hashes) {
        hashes = new bytes32[](orders.length);
        for (uint256 i; i < orders.length; ++i) {
            hashes[i] = _hashTypedDataV4(FlexTypes.hashP2POrder(orders[i]));
        }
    }

    /// @notice See IFlexMarket.requestInfo.
    function requestInfo(uint256 requestId) external view returns (FlexTypes.RequestInfo memory) {
        return _requests[requestId];
    }

    /// @notice See IFlexMarket.commitmentInfo.
    function commitmentInfo(uint256 roundId, bytes32 commitment_) external view returns (address provider, bool closed) {
        Commitment storage cm = _commitments[roundId][commitment_];
        return (cm.provider, cm.closed);
    }

    /// @notice See IFlexMarket.depositOf.
    function depositOf(uint256 roundId, address account) external view returns (uint256) {
        return _deposits[roundId][account];
    }

    /// @notice See IFlexMarket.escrowOf.
    function escrowOf(uint256 roundId, address account) external view returns (uint256 escrow, uint256 charged) {
        Escrow storage e = _escrows[roundId][account];
        return (e.escrow, e.charged);
    }

    /// @notice See IFlexMarket.isClaimed.
    function isClaimed(bytes32 leaf) external view returns (bool) {
        return _claimed[leaf];
    }

    /// @notice See IFlexMarket.hasVoted.
    function hasVoted(uint256 roundId, address oracle) external view returns (bool) {
        return _voted[roundId][oracle];
    }

    /// @notice See IFlexMarket.deadlines.
    function deadlines(uint256 roundId)
        external
        view
        returns (
            uint256 revealEnd,
            uint256 commitDeadline,
            uint256 disputeDeadline,
            uint256 meteringDeadline,
            uint256 claimDeadline
        )
    {
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(roundId);
        revealEnd = uint256(c.gateClosure) + c.revealSeconds;
        commitDeadline = revealEnd + c.clearingSeconds;
        disputeDeadline = r.finalAt;
        meteringDeadline = _meteringDeadline(c);
        claimDeadline = r.claimDeadline;
    }

    /// @dev The metered delivery of a payee leaf, or its accepted power when metering lapsed.
    function _delivered(
        FlexTypes.RoundConfig storage c,
        Round storage r,
        FlexTypes.Trade calldata trade,
        uint64 deliveredPowerW,
        bytes32[] calldata meteringProof
    ) private view returns (uint64) {
        uint256 roundId = trade.roundId;
        bytes32 meteringRoot = r.meteringRoot;
        if (meteringRoot == bytes32(0)) {
            uint256 mDeadline = _meteringDeadline(c);
            if (block.timestamp < mDeadline) revert MeteringMissing(roundId, mDeadline);
            return trade.powerW;
        }
        bytes32 mLeaf = FlexTypes.meteringLeaf(roundId, trade.participant, trade.orderHash, trade.slot, deliveredPowerW);
        if (!MerkleProof.verifyCalldata(meteringProof, meteringRoot, mLeaf)) revert InvalidMeteringProof(roundId, mLeaf);
        return deliveredPowerW;
    }

    /// @dev Credits the settlement of a payee leaf and moves the penalty beyond it from the deposit.
    function _settlePayment(
        Round storage r,
        FlexTypes.Trade calldata trade,
        uint64 delivered
    ) private {
        uint256 roundId = trade.roundId;
        (uint256 payout, uint256 penaltyExcess) =
            FlexTypes.settle(uint256(trade.paymentMicro), trade.powerW, delivered, r.toleranceBps, r.penaltyBps);
        uint256 paid = r.paid;
        uint256 charged = r.charged;
        uint256 limit = charged < r.totalPayout ? charged : r.totalPayout;
        if (paid + payout > limit) revert RoundUnderfunded(roundId, limit - paid, payout);
        r.paid = SafeCast.toUint128(paid + payout);
        if (payout != 0) _balances[trade.participant] += payout;
        uint256 fromDeposit = 0;
        if (penaltyExcess != 0) {
            uint256 deposit = _deposits[roundId][trade.participant];
            fromDeposit = penaltyExcess < deposit ? penaltyExcess : deposit;
            if (fromDeposit != 0) {
                _deposits[roundId][trade.participant] = deposit - fromDeposit;
                _balances[r.dso] += fromDeposit;
            }
        }
        emit PaymentSettled(roundId, trade.participant, trade.orderHash, trade.slot, delivered, payout, fromDeposit);
    }

    function _requireClaimable(uint256 roundId, Round storage r) private view {
        FlexTypes.RoundState s = _state(r);
        if (s != FlexTypes.RoundState.FINAL) revert WrongRoundState(roundId, s);
        uint256 deadline = r.claimDeadline;
        if (block.timestamp >= deadline) revert TooLate(roundId, deadline, block.timestamp);
    }

    function _verifyTrade(FlexTypes.Trade calldata trade, bytes32[] calldata proof, Round storage r)
        private
        view
        returns (bytes32 leaf)
    {
        leaf = FlexTypes.tradeLeaf(trade);
        if (_claimed[leaf]) revert AlreadyClaimed(trade.roundId, leaf);
        if (!MerkleProof.verifyCalldata(proof, r.tradeRoot, leaf)) revert InvalidTradeProof(trade.roundId, leaf);
    }
}
