// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {FlexTypes} from "../libraries/FlexTypes.sol";
import {IFlexRegistry} from "./IFlexRegistry.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title IFlexMarket
/// @notice FlexGrid's market: rounds, FlexRequests with escrowed budgets, EIP-712 signed FlexOffers
/// (open, or sealed by commit-reveal / encryption), P2P orders, k-of-n oracle clearing commits,
/// disputes, metering, settlement claims by Merkle proof and pull payments.
/// @dev Money never leaves the market except through `withdraw`. Every settlement step credits an
/// internal balance. Per round: pot = budgets + buy escrows; charges (payer leaves) move money from
/// a payer's escrow into the payout pool; payouts (payee leaves) come out of that pool; at close the
/// rest of the pool goes to the DSO and each payer's uncharged escrow goes back to it.
interface IFlexMarket {
    // ------------------------------------------------------------------ errors

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
    /// @notice A round was cancelled by `by`; deposits, budgets and bonds become releasable.
    event RoundCancelled(uint256 indexed roundId, address indexed by);
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
    /// @notice `amount` (deposit, uncharged escrow, bond) was credited to `account`.
    event Released(uint256 indexed roundId, address indexed account, uint256 amount);
    /// @notice `account` withdrew `amount` tokens.
    event Withdrawn(address indexed account, uint256 amount);

    // ------------------------------------------------------------------ operator

    /// @notice Creates a round (only OPERATOR_ROLE). The grid must have a DSO.
    /// @param config the round's configuration
    /// @return roundId the new round's id (sequential from 1)
    function createRound(FlexTypes.RoundConfig calldata config) external returns (uint256 roundId);

    /// @notice Cancels a round. The operator may cancel before a result is committed; anyone may
    /// cancel once the commit deadline passed without a result, or once a dispute stayed
    /// unresolved for `clearingSeconds` after the dispute window.
    /// @param roundId the round
    function cancelRound(uint256 roundId) external;

    /// @notice Resolves a dispute (only OPERATOR_ROLE). Upheld: the round is cancelled and the bond
    /// returned. Rejected: the result is final and the bond goes to the grid's DSO.
    /// @param roundId the round
    /// @param upheld whether the challenge is right
    function resolveDispute(uint256 roundId, bool upheld) external;

    /// @notice Pauses order intake, clearing and settlement (only OPERATOR_ROLE); withdraw stays open.
    function pause() external;

    /// @notice Ends the pause (only OPERATOR_ROLE).
    function unpause() external;

    // ------------------------------------------------------------------ DSO and metering

    /// @notice Submits a FlexRequest and escrows its budget from the caller (the round grid's DSO).
    /// @param request the need; budget = ceil(Σ powerW·slotSeconds·priceCap / 3.6e9)
    /// @return requestId the request's id (sequential from 1); its order hash is bytes32(requestId)
    function submitRequest(FlexTypes.FlexRequest calldata request) external returns (uint256 requestId);

    /// @notice Approves the committed result before the dispute window ends (only the grid's DSO).
    /// @param roundId the round
    function approveResult(uint256 roundId) external;

    /// @notice Commits the metering root of a final round (only the grid's metering agent, once,
    /// before `deliveryEnd + settlementSeconds`).
    /// @param roundId the round
    /// @param meteringRoot StandardMerkleTree root of the metering leaves
    /// @param uri where the metering data can be fetched
    function commitMetering(uint256 roundId, bytes32 meteringRoot, string calldata uri) external;

    // ------------------------------------------------------------------ providers, prosumers, relayers

    /// @notice Pays the round's bid deposit for the caller (an approved provider) in an OPEN round.
    /// @param roundId the round
    function depositBid(uint256 roundId) external;

    /// @notice Relays one signed FlexOffer into an OPEN round before gate closure (anyone).
    /// @param offer the offer
    /// @param signature the provider's EIP-712 signature (ECDSA, or ERC-1271 for contract accounts)
    /// @return orderHash the offer's EIP-712 digest
    function submitOffer(FlexTypes.FlexOffer calldata offer, bytes calldata signature) external returns (bytes32 orderHash);

    /// @notice Relays many signed FlexOffers (anyone); each is checked as in `submitOffer`.
    /// @param offers the offers (any rounds)
    /// @param signatures one signature per offer
    function submitOffers(FlexTypes.FlexOffer[] calldata offers, bytes[] calldata signatures) external;

    /// @notice Seals an offer in a COMMIT_REVEAL or ENCRYPTED round before gate closure, pulling the
    /// round's bid deposit from the caller (an approved provider).
    /// @param roundId the round
    /// @param commitment keccak256(abi.encode(orderHash, provider, salt))
    /// @param ciphertext the offer encrypted to the round key (ENCRYPTED), empty otherwise
    function commitOffer(uint256 roundId, bytes32 commitment, bytes calldata ciphertext) external;

    /// @notice Reveals sealed offers in the reveal window (anyone).
    /// @param offers the offers
    /// @param signatures one signature per offer
    /// @param salts one salt per offer
    function revealOffers(
        FlexTypes.FlexOffer[] calldata offers,
        bytes[] calldata signatures,
        bytes32[] calldata salts
    ) external;

    /// @notice Forfeits the deposit of a commitment not revealed in time to the grid's DSO (anyone,
    /// COMMIT_REVEAL rounds, after the reveal window).
    /// @param roundId the round
    /// @param commitment the unrevealed commitment
    function forfeitCommitment(uint256 roundId, bytes32 commitment) external;

    /// @notice Relays signed P2P orders before gate closure (anyone). A buy order escrows
    /// ceil(powerW·slotSeconds·limitPrice / 3.6e9) from the trader (allowance needed).
    /// @param orders the orders
    /// @param signatures one signature per order
    function submitP2POrders(FlexTypes.P2POrder[] calldata orders, bytes[] calldata signatures) external;

    // ------------------------------------------------------------------ oracles

    /// @notice Votes for a clearing result (only ORACLE_ROLE, once per round, after the reveal
    /// window and before the commit deadline). With `oracleQuorum` equal votes the result is
    /// committed; `totalPayout` must not exceed the round's pot.
    /// @param roundId the round
    /// @param result the trade root, input hash, certificate hash, total payout and URI
    function commitClearing(uint256 roundId, FlexTypes.ClearingResult calldata result) external;

    /// @notice Publishes the round's X25519 secret key after the commit (only ORACLE_ROLE, ENCRYPTED
    /// rounds), so that anyone can decrypt the sealed orders and check the inputs.
    /// @param roundId the round
    /// @param secretKey the secret key
    function publishRoundKey(uint256 roundId, bytes32 secretKey) external;

    // ------------------------------------------------------------------ anyone

    /// @notice Challenges the committed result during the dispute window, locking the round's
    /// dispute bond from the caller.
    /// @param roundId the round
    /// @param reasonHash hash of the off-chain reason (e.g. of the auditor's report)
    function dispute(uint256 roundId, bytes32 reasonHash) external;

    /// @notice Settles a payer leaf (paymentMicro < 0) of a final round: moves |paymentMicro| from the
    /// payer's escrow into the payout pool (anyone).
    /// @param trade the leaf
    /// @param proof its proof against the trade root
    function claimCharge(FlexTypes.Trade calldata trade, bytes32[] calldata proof) external;

    /// @notice Settles a payee leaf (paymentMicro > 0) of a final round against metering and credits
    /// the payout to the participant (anyone). Without a metering root after the metering window
    /// the leaf is paid in full.
    /// @param trade the leaf
    /// @param proof its proof against the trade root
    /// @param deliveredPowerW the metered delivery of this participant, order and slot
    /// @param meteringProof its proof against the metering root (empty when metering lapsed)
    function claimPayment(
        FlexTypes.Trade calldata trade,
        bytes32[] calldata proof,
        uint64 deliveredPowerW,
        bytes32[] calldata meteringProof
    ) external;

    /// @notice Closes a final round after the claim window (anyone): the unpaid pool goes to the DSO.
    /// @param roundId the round
    function closeRound(uint256 roundId) external;

    /// @notice Credits `account`'s remaining deposit, uncharged escrow and dispute bond of a settled
    /// or cancelled round to its balance (anyone).
    /// @param roundId the round
    /// @param account the participant
    /// @return amount the amount credited
    function release(uint256 roundId, address account) external returns (uint256 amount);

    /// @notice Transfers the caller's whole balance to it.
    /// @return amount the amount transferred
    function withdraw() external returns (uint256 amount);

    // ------------------------------------------------------------------ views

    /// @notice The participant registry.
    function registry() external view returns (IFlexRegistry);
    /// @notice The settlement token.
    function token() external view returns (IERC20);
    /// @notice Number of rounds created (ids run from 1).
    function roundCount() external view returns (uint256);
    /// @notice Number of requests submitted (ids run from 1).
    function requestCount() external view returns (uint256);
    /// @notice A round's configuration.
    function roundConfig(uint256 roundId) external view returns (FlexTypes.RoundConfig memory);
    /// @notice A round's effective state.
    function roundState(uint256 roundId) external view returns (FlexTypes.RoundState);
    /// @notice A round's mutable state.
    function roundStatus(uint256 roundId) external view returns (FlexTypes.RoundStatus memory);
    /// @notice A request's round, DSO and budget.
    function requestInfo(uint256 requestId) external view returns (FlexTypes.RequestInfo memory);
    /// @notice The EIP-712 digest (order hash) of a FlexOffer.
    function hashOffer(FlexTypes.FlexOffer calldata offer) external view returns (bytes32);
    /// @notice The EIP-712 digest (order hash) of a P2P order.
    function hashP2POrder(FlexTypes.P2POrder calldata order) external view returns (bytes32);
    /// @notice The EIP-712 domain separator.
    function domainSeparator() external view returns (bytes32);
    /// @notice A commitment's provider and whether it is closed (revealed or forfeited).
    function commitmentInfo(uint256 roundId, bytes32 commitment) external view returns (address provider, bool closed);
    /// @notice `account`'s remaining bid deposit in the round.
    function depositOf(uint256 roundId, address account) external view returns (uint256);
    /// @notice `account`'s escrow (budgets, buy escrow) and the part already charged in the round.
    function escrowOf(uint256 roundId, address account) external view returns (uint256 escrow, uint256 charged);
    /// @notice `account`'s withdrawable balance.
    function balanceOf(address account) external view returns (uint256);
    /// @notice Whether a trade leaf was settled.
    function isClaimed(bytes32 leaf) external view returns (bool);
    /// @notice Whether `oracle` voted in the round.
    function hasVoted(uint256 roundId, address oracle) external view returns (bool);
    /// @notice The round's deadlines (unix s).
    function deadlines(uint256 roundId)
        external
        view
        returns (
            uint256 revealEnd,
            uint256 commitDeadline,
            uint256 disputeDeadline,
            uint256 meteringDeadline,
            uint256 claimDeadline
        );
}
