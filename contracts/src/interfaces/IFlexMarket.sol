// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {FlexTypes} from "../libraries/FlexTypes.sol";
import {IFlexRegistry} from "./IFlexRegistry.sol";
import {IFlexMarketEvents} from "./IFlexMarketEvents.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title IFlexMarket
/// @notice FlexGrid's market: rounds, FlexRequests with escrowed budgets, EIP-712 signed FlexOffers
/// (open, or sealed by commit-reveal / encryption), P2P orders, k-of-n oracle clearing commits,
/// disputes, metering, settlement claims by Merkle proof and pull payments.
/// @dev Money never leaves the market except through `withdraw`. Every settlement step credits an
/// internal balance. Per round: pot = budgets + buy escrows; charges (payer leaves) move money from
/// a payer's escrow into the payout pool; payouts (payee leaves) come out of that pool; at close the
/// rest of the pool goes to the DSO and each payer's uncharged escrow goes back to it.
/// The settlement half of these functions runs in FlexMarketSettlement, a module the market creates
/// in its constructor and reaches by delegatecall (OpenZeppelin `Proxy`): one address, one ABI.
interface IFlexMarket is IFlexMarketEvents {
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

    /// @notice Credits `account`'s remaining deposit and uncharged escrow of a settled or cancelled
    /// round to its balance (anyone).
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
    /// @notice The settlement module the market delegates its settlement functions to.
    function settlementModule() external view returns (address);
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
    /// @notice The order hashes of many FlexOffers (for parity checks and tools).
    function hashOffers(FlexTypes.FlexOffer[] calldata offers) external view returns (bytes32[] memory);
    /// @notice The order hashes of many P2P orders.
    function hashP2POrders(FlexTypes.P2POrder[] calldata orders) external view returns (bytes32[] memory);
    /// @notice Whether the market is paused (OpenZeppelin Pausable).
    function paused() external view returns (bool);
    /// @notice The next nonce of `owner` under `key` (OpenZeppelin NoncesKeyed: `key << 64 | sequence`).
    function nonces(address owner, uint192 key) external view returns (uint256);
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
    /// @notice Whether `oracle` voted in the round (tracked when oracleQuorum > 1; in a quorum-1
    /// round the single vote is the ClearingCommitted transaction).
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
