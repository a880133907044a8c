// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {FlexTypes} from "../libraries/FlexTypes.sol";

/// @title IFlexMarketEvents
/// @notice The custom errors and events of FlexMarket (shared by the market and its settlement module).
interface IFlexMarketEvents {
    // ------------------------------------------------------------------ errors

    /// @notice The settlement module was called directly instead of through the market.
    error DirectCallToModule();
    /// @notice A constructor argument is the zero address.
    error MarketZeroAddress(string what);
    /// @notice `account` lacks the role the call needs (`role` is the registry role or "DSO"/"METERING").
    error Unauthorized(address account, bytes32 role);
    /// @notice A RoundConfig field is out of range.
    error InvalidRoundConfig(string field, uint256 value);
    /// @notice No round has id `roundId`.
    error UnknownRound(uint256 roundId);
    /// @notice The round is in `state`, which does not allow this call.
    error WrongRoundState(uint256 roundId, FlexTypes.RoundState state);
    /// @notice The round's seal mode `sealMode` does not allow this call.
    error WrongSealMode(uint256 roundId, uint8 sealMode);
    /// @notice Too early: allowed from `notBefore` (unix s); it is `nowS`.
    error TooEarly(uint256 roundId, uint256 notBefore, uint256 nowS);
    /// @notice Too late: allowed before `deadline` (unix s); it is `nowS`.
    error TooLate(uint256 roundId, uint256 deadline, uint256 nowS);
    /// @notice A FlexRequest field is invalid (`field` names it, `value` is the offending value).
    error InvalidRequest(string field, uint256 value);
    /// @notice An order's field is invalid (`field` names it, `value` is the offending value).
    error InvalidOrder(bytes32 orderHash, string field, uint256 value);
    /// @notice The order expired at `expiry`; it is `nowS`.
    error OrderExpired(bytes32 orderHash, uint256 expiry, uint256 nowS);
    /// @notice The signature is not `signer`'s signature of `orderHash`.
    error InvalidSignature(bytes32 orderHash, address signer);
    /// @notice Two parallel arrays differ in length.
    error LengthMismatch(uint256 expected, uint256 actual);
    /// @notice A batch is empty.
    error EmptyBatch();
    /// @notice `provider` has `deposited` of the `required` bid deposit of the round.
    error MissingDeposit(uint256 roundId, address provider, uint256 deposited, uint256 required);
    /// @notice `provider` already paid the bid deposit of the round.
    error AlreadyDeposited(uint256 roundId, address provider);
    /// @notice The commitment is zero or unknown in the round.
    error UnknownCommitment(uint256 roundId, bytes32 commitment);
    /// @notice The commitment was already made in the round.
    error CommitmentExists(uint256 roundId, bytes32 commitment);
    /// @notice The commitment was already revealed or forfeited.
    error CommitmentClosed(uint256 roundId, bytes32 commitment);
    /// @notice `oracle` already voted in the round.
    error AlreadyVoted(uint256 roundId, address oracle);
    /// @notice The committed total payout exceeds the round's pot.
    error PayoutExceedsPot(uint256 roundId, uint256 totalPayout, uint256 pot);
    /// @notice A root or hash argument (`what`) is zero.
    error ZeroValue(string what);
    /// @notice The metering root of the round was already committed.
    error MeteringAlreadyCommitted(uint256 roundId);
    /// @notice No metering root yet and the metering window has not lapsed (at `meteringDeadline`).
    error MeteringMissing(uint256 roundId, uint256 meteringDeadline);
    /// @notice The leaf was already claimed.
    error AlreadyClaimed(uint256 roundId, bytes32 leaf);
    /// @notice The trade proof does not verify against the round's trade root.
    error InvalidTradeProof(uint256 roundId, bytes32 leaf);
    /// @notice The metering proof does not verify against the round's metering root.
    error InvalidMeteringProof(uint256 roundId, bytes32 leaf);
    /// @notice The leaf's payment has the wrong sign for this claim.
    error WrongPaymentSign(uint256 roundId, int256 paymentMicro);
    /// @notice The payer's escrow left (`available`) is below the charge (`needed`).
    error InsufficientEscrow(uint256 roundId, address payer, uint256 available, uint256 needed);
    /// @notice The round's payout pool (`available`) is below the payout (`needed`): settle payer
    /// leaves first, or the payout would exceed the committed total.
    error RoundUnderfunded(uint256 roundId, uint256 available, uint256 needed);
    /// @notice Nothing to release for `account` in the round.
    error NothingToRelease(uint256 roundId, address account);
    /// @notice `account` has no balance to withdraw.
    error NothingToWithdraw(address account);

    // ------------------------------------------------------------------ events

    /// @notice A round was created.
    event RoundCreated(uint256 indexed roundId, bytes32 indexed gridId, FlexTypes.RoundConfig config);
    /// @notice A round was cancelled by `by`; deposits and budgets become releasable, a dispute
    /// bond (`bondReturned`) goes back to the disputer.
    event RoundCancelled(uint256 indexed roundId, address indexed by, uint256 bondReturned);
    /// @notice The DSO escrowed `budget` for a FlexRequest.
    event FlexRequestSubmitted(
        uint256 indexed roundId, uint256 indexed requestId, address indexed dso, FlexTypes.FlexRequest request, uint256 budget
    );
    /// @notice `provider` paid `amount` as bid deposit in the round.
    event BidDeposited(uint256 indexed roundId, address indexed provider, uint256 amount);
    /// @notice A signed FlexOffer was accepted (directly in an OPEN round, or by reveal).
    event FlexOfferSubmitted(
        uint256 indexed roundId, bytes32 indexed orderHash, address indexed provider, FlexTypes.FlexOffer offer
    );
    /// @notice `provider` sealed an offer with a deposit; `ciphertext` is empty unless ENCRYPTED.
    event OfferCommitted(
        uint256 indexed roundId, bytes32 indexed commitment, address indexed provider, uint256 deposit, bytes ciphertext
    );
    /// @notice The sealed offer `commitment` was revealed as `orderHash`.
    event OfferRevealed(uint256 indexed roundId, bytes32 indexed commitment, bytes32 indexed orderHash);
    /// @notice An unrevealed commitment forfeited `amount` of `provider`'s deposit to `dso`.
    event CommitmentForfeited(
        uint256 indexed roundId, bytes32 indexed commitment, address indexed provider, address dso, uint256 amount
    );
    /// @notice A signed P2P order was accepted; `escrow` was pulled from a buyer.
    event P2POrderSubmitted(
        uint256 indexed roundId, bytes32 indexed orderHash, address indexed trader, FlexTypes.P2POrder order, uint256 escrow
    );
    /// @notice `oracle` voted for `resultHash`; `votes` is its vote count.
    event ClearingVoted(uint256 indexed roundId, address indexed oracle, bytes32 indexed resultHash, uint256 votes);
    /// @notice The result reached quorum and is committed.
    event ClearingCommitted(
        uint256 indexed roundId,
        bytes32 indexed tradeRoot,
        bytes32 inputHash,
        bytes32 certificateHash,
        uint256 totalPayout,
        bytes32 orderAccumulator,
        uint256 orderCount,
        string uri
    );
    /// @notice An oracle published the round's X25519 secret key (ENCRYPTED rounds).
    event RoundKeyPublished(uint256 indexed roundId, address indexed oracle, bytes32 secretKey);
    /// @notice `disputer` challenged the committed result with `bond`.
    event ResultDisputed(uint256 indexed roundId, address indexed disputer, uint256 bond, bytes32 reasonHash);
    /// @notice The operator resolved a dispute; upheld cancels the round, rejected makes it final.
    event DisputeResolved(uint256 indexed roundId, bool upheld, address indexed operator, address indexed bondTo);
    /// @notice The DSO approved the committed result; the round is final.
    event ResultApproved(uint256 indexed roundId, address indexed dso);
    /// @notice The grid's metering agent committed the metering root.
    event MeteringCommitted(uint256 indexed roundId, bytes32 indexed meteringRoot, address indexed agent, string uri);
    /// @notice A payer leaf was settled: `amount` moved from the payer's escrow into the payout pool.
    event ChargeSettled(uint256 indexed roundId, address indexed payer, bytes32 indexed orderHash, uint16 slot, uint256 amount);
    /// @notice A payee leaf was settled: `payout` credited, `penaltyFromDeposit` moved to the DSO.
    event PaymentSettled(
        uint256 indexed roundId,
        address indexed payee,
        bytes32 indexed orderHash,
        uint16 slot,
        uint64 deliveredPowerW,
        uint256 payout,
        uint256 penaltyFromDeposit
    );
    /// @notice The round closed; `toDso` (pool not paid out) was credited to the DSO.
    event RoundSettled(uint256 indexed roundId, address indexed dso, uint256 toDso);
    /// @notice `amount` (deposit and uncharged escrow) was credited to `account`.
    event Released(uint256 indexed roundId, address indexed account, uint256 amount);
    /// @notice `account` withdrew `amount` tokens.
    event Withdrawn(address indexed account, uint256 amount);
}
