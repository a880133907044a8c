// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Proxy} from "@openzeppelin/contracts/proxy/Proxy.sol";

import {IFlexRegistry} from "./interfaces/IFlexRegistry.sol";
import {FlexTypes} from "./libraries/FlexTypes.sol";
import {FlexMarketBase} from "./FlexMarketBase.sol";
import {FlexMarketSettlement} from "./FlexMarketSettlement.sol";

/// @title FlexMarket
/// @notice FlexGrid's market contract; see IFlexMarket and docs/contracts.md.
/// @dev Orders are not stored: each accepted order is emitted whole and folded into the round's
/// order accumulator. Tokens move in by transferFrom and out only through `withdraw`.
/// To stay under the 24 KB code-size limit, the settlement half of IFlexMarket (disputes, metering,
/// claims, close, release and their views) lives in FlexMarketSettlement, which this constructor
/// deploys and the fallback reaches by delegatecall (OpenZeppelin `Proxy`). The module inherits the
/// same FlexMarketBase, so both share one storage layout; the module address is immutable.
/// The full ABI is IFlexMarket (the exported artifact merges both).
contract FlexMarket is FlexMarketBase, Proxy {
    using SafeERC20 for IERC20;

    address private immutable _settlementModule;

    /// @param registry_ the FlexRegistry
    /// @param token_ the settlement token (e.g. FlexToken)
    constructor(IFlexRegistry registry_, IERC20 token_) FlexMarketBase(registry_, token_) {
        _settlementModule = address(new FlexMarketSettlement(registry_, token_));
    }

    /// @notice The settlement module this market delegates to.
    /// @return the module's address
    function settlementModule() external view returns (address) {
        return _settlementModule;
    }

    function _implementation() internal view override returns (address) {
        return _settlementModule;
    }

    // ================================================================== operator

    /// @notice See IFlexMarket.createRound.
    function createRound(FlexTypes.RoundConfig calldata config) external whenNotPaused returns (uint256 roundId) {
        _onlyOperator();
        address dso = _validateConfig(config);
        roundId = ++_roundCount;
        _configs[roundId] = config;
        Round storage r = _rounds[roundId];
        r.dso = dso;
        r.state = FlexTypes.RoundState.OPEN;
        r.gateClosure = config.gateClosure;
        r.slotCount = config.slotCount;
        r.sealMode = config.sealMode;
        r.priceCap = config.priceCapMicroPerMwh;
        r.bidDeposit = uint64(config.bidDeposit); // checked in _validateConfig
        r.toleranceBps = config.toleranceBps;
        r.penaltyBps = config.penaltyBps;
        r.claimDeadline = SafeCast.toUint40(_claimDeadline(_configs[roundId]));
        r.accumulator = bytes32(roundId);
        emit RoundCreated(roundId, config.gridId, config);
    }



    /// @notice See IFlexMarket.pause.
    function pause() external {
        _onlyOperator();
        _pause();
    }

    /// @notice See IFlexMarket.unpause.
    function unpause() external {
        _onlyOperator();
        _unpause();
    }

    // ================================================================== DSO and metering

    /// @notice See IFlexMarket.submitRequest.
    function submitRequest(FlexTypes.FlexRequest calldata request)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 requestId)
    {
        uint256 roundId = request.roundId;
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(roundId);
        if (msg.sender != r.dso) revert Unauthorized(msg.sender, DSO_ROLE_ID);
        _requireOpen(roundId, r);
        uint256 budget = _requestBudget(request, c);
        if (budget > type(uint128).max) revert InvalidRequest("budget", budget);

        requestId = ++_requestCount;
        _requests[requestId] = FlexTypes.RequestInfo({roundId: roundId, dso: msg.sender, budget: SafeCast.toUint128(budget)});
        _escrows[roundId][msg.sender].escrow += SafeCast.toUint128(budget);
        r.pot += SafeCast.toUint96(budget);
        _accept(r, bytes32(requestId));
        emit FlexRequestSubmitted(roundId, requestId, msg.sender, request, budget);

        _token.safeTransferFrom(msg.sender, address(this), budget);
    }



    // ================================================================== providers, prosumers, relayers

    /// @notice See IFlexMarket.depositBid.
    function depositBid(uint256 roundId) external whenNotPaused nonReentrant {
        (, Round storage r) = _round(roundId);
        _requireOpen(roundId, r);
        if (r.sealMode != FlexTypes.SEAL_OPEN) revert WrongSealMode(roundId, r.sealMode);
        uint256 amount = r.bidDeposit;
        if (amount == 0) revert ZeroValue("bidDeposit");
        _requireProvider(msg.sender);
        if (_deposits[roundId][msg.sender] != 0) revert AlreadyDeposited(roundId, msg.sender);
        _deposits[roundId][msg.sender] = amount;
        emit BidDeposited(roundId, msg.sender, amount);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice See IFlexMarket.submitOffer.
    function submitOffer(FlexTypes.FlexOffer calldata offer, bytes calldata signature)
        external
        whenNotPaused
        returns (bytes32 orderHash)
    {
        (orderHash,,) = _submitOffer(offer, signature, 0, address(0));
    }

    /// @notice See IFlexMarket.submitOffers.
    /// @dev Consecutive offers of one provider in one round (an aggregator's batch) skip the repeated
    /// round, registry and deposit look-ups, which cannot change within the transaction.
    function submitOffers(FlexTypes.FlexOffer[] calldata offers, bytes[] calldata signatures) external whenNotPaused {
        uint256 n = offers.length;
        if (n == 0) revert EmptyBatch();
        if (signatures.length != n) revert LengthMismatch(n, signatures.length);
        uint256 checkedRound;
        address checkedProvider;
        uint256 freeMemory;
        assembly ("memory-safe") {
            freeMemory := mload(0x40)
        }
        for (uint256 i; i < n; ++i) {
            (, checkedRound, checkedProvider) = _submitOffer(offers[i], signatures[i], checkedRound, checkedProvider);
            // nothing allocated for one offer outlives it: reuse the memory (no quadratic growth)
            assembly ("memory-safe") {
                mstore(0x40, freeMemory)
            }
        }
    }

    /// @notice See IFlexMarket.commitOffer.
    function commitOffer(uint256 roundId, bytes32 commitment_, bytes calldata ciphertext)
        external
        whenNotPaused
        nonReentrant
    {
        (, Round storage r) = _round(roundId);
        _requireOpen(roundId, r);
        if (r.sealMode == FlexTypes.SEAL_OPEN) revert WrongSealMode(roundId, r.sealMode);
        if (commitment_ == bytes32(0)) revert UnknownCommitment(roundId, commitment_);
        _requireProvider(msg.sender);
        Commitment storage cm = _commitments[roundId][commitment_];
        if (cm.provider != address(0)) revert CommitmentExists(roundId, commitment_);
        uint256 amount = r.bidDeposit;
        cm.provider = msg.sender;
        _deposits[roundId][msg.sender] += amount;
        emit OfferCommitted(roundId, commitment_, msg.sender, amount, ciphertext);
        if (amount != 0) _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice See IFlexMarket.revealOffers.
    function revealOffers(
        FlexTypes.FlexOffer[] calldata offers,
        bytes[] calldata signatures,
        bytes32[] calldata salts
    ) external whenNotPaused {
        uint256 n = offers.length;
        if (n == 0) revert EmptyBatch();
        if (signatures.length != n) revert LengthMismatch(n, signatures.length);
        if (salts.length != n) revert LengthMismatch(n, salts.length);
        for (uint256 i; i < n; ++i) {
            _revealOffer(offers[i], signatures[i], salts[i]);
        }
    }


    /// @notice See IFlexMarket.submitP2POrders.
    function submitP2POrders(FlexTypes.P2POrder[] calldata orders, bytes[] calldata signatures)
        external
        whenNotPaused
        nonReentrant
    {
        uint256 n = orders.length;
        if (n == 0) revert EmptyBatch();
        if (signatures.length != n) revert LengthMismatch(n, signatures.length);
        uint256[] memory escrows = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            escrows[i] = _submitP2POrder(orders[i], signatures[i]);
        }
        for (uint256 i; i < n; ++i) {
            // The trader signed this order (EIP-712, nonce, expiry checked above): see contracts/SLITHER.md.
            // slither-disable-next-line arbitrary-send-erc20
            if (escrows[i] != 0) _token.safeTransferFrom(orders[i].trader, address(this), escrows[i]);
        }
    }

    // ================================================================== oracles

    /// @notice See IFlexMarket.commitClearing.
    function commitClearing(uint256 roundId, FlexTypes.ClearingResult calldata result) external whenNotPaused {
        if (!_registry.isOracle(msg.sender)) revert Unauthorized(msg.sender, _registry.ORACLE_ROLE());
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(roundId);
        FlexTypes.RoundState s = _state(r);
        uint256 revealEnd = uint256(r.gateClosure) + c.revealSeconds;
        if (s == FlexTypes.RoundState.OPEN) revert TooEarly(roundId, revealEnd, block.timestamp);
        if (s != FlexTypes.RoundState.CLOSED) revert WrongRoundState(roundId, s);
        if (block.timestamp < revealEnd) revert TooEarly(roundId, revealEnd, block.timestamp);
        uint256 deadline = revealEnd + c.clearingSeconds;
        if (block.timestamp >= deadline) revert TooLate(roundId, deadline, block.timestamp);
        if (result.tradeRoot == bytes32(0)) revert ZeroValue("tradeRoot");
        if (result.inputHash == bytes32(0)) revert ZeroValue("inputHash");
        if (result.totalPayout > r.pot) revert PayoutExceedsPot(roundId, result.totalPayout, r.pot);
        uint256 votes = 1;
        uint256 quorum = c.oracleQuorum;
        if (quorum > 1) {
            // k-of-n: count equal results; a quorum-1 round needs no vote bookkeeping, since the
            // first valid vote commits the result and ends the voting window.
            if (_voted[roundId][msg.sender]) revert AlreadyVoted(roundId, msg.sender);
            _voted[roundId][msg.sender] = true;
            bytes32 resultHash = keccak256(
                abi.encode(result.tradeRoot, result.inputHash, result.certificateHash, result.totalPayout)
            );
            votes = ++_votes[roundId][resultHash];
            if (votes > r.votes) r.votes = SafeCast.toUint8(votes);
            emit ClearingVoted(roundId, msg.sender, resultHash, votes);
            if (votes < quorum) return;
        }
        r.votes = SafeCast.toUint8(votes);
        r.state = FlexTypes.RoundState.COMMITTED;
        r.finalAt = SafeCast.toUint40(block.timestamp + c.disputeWindow);
        r.tradeRoot = result.tradeRoot;
        r.totalPayout = uint96(result.totalPayout); // <= pot, a uint96
        emit ClearingCommitted(
            roundId,
            result.tradeRoot,
            result.inputHash,
            result.certificateHash,
            result.totalPayout,
            r.accumulator,
            r.orderCount,
            result.uri
        );
    }


    // ================================================================== anyone






    /// @notice See IFlexMarket.withdraw.
    function withdraw() external nonReentrant returns (uint256 amount) {
        amount = _balances[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        _balances[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // ================================================================== views

    /// @notice See IFlexMarket.registry.
    function registry() external view returns (IFlexRegistry) {
        return _registry;
    }

    /// @notice See IFlexMarket.token.
    function token() external view returns (IERC20) {
        return _token;
    }

    /// @notice See IFlexMarket.roundCount.
    function roundCount() external view returns (uint256) {
        return _roundCount;
    }

    /// @notice See IFlexMarket.requestCount.
    function requestCount() external view returns (uint256) {
        return _requestCount;
    }

    /// @notice See IFlexMarket.roundConfig.
    function roundConfig(uint256 roundId) external view returns (FlexTypes.RoundConfig memory) {
        (FlexTypes.RoundConfig storage c,) = _round(roundId);
        return c;
    }

    /// @notice See IFlexMarket.roundState.
    function roundState(uint256 roundId) external view returns (FlexTypes.RoundState) {
        if (roundId == 0 || roundId > _roundCount) return FlexTypes.RoundState.NONE;
        return _state(_rounds[roundId]);
    }



    /// @notice See IFlexMarket.hashOffer.
    function hashOffer(FlexTypes.FlexOffer calldata offer) external view returns (bytes32) {
        return _hashTypedDataV4(FlexTypes.hashFlexOffer(offer));
    }

    /// @notice See IFlexMarket.hashP2POrder.
    function hashP2POrder(FlexTypes.P2POrder calldata order) external view returns (bytes32) {
        return _hashTypedDataV4(FlexTypes.hashP2POrder(order));
    }

    /// @notice See IFlexMarket.domainSeparator.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }




    /// @notice See IFlexMarket.balanceOf.
    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }




    // ================================================================== internal: orders

    /// @dev Accepts one offer into an OPEN round. `checkedRound` / `checkedProvider`: the round and
    /// provider of the previous offer of the batch, already checked (0 for none).
    function _submitOffer(
        FlexTypes.FlexOffer calldata o,
        bytes calldata signature,
        uint256 checkedRound,
        address checkedProvider
    ) private returns (bytes32 orderHash, uint256 roundId, address provider) {
        roundId = o.roundId;
        provider = o.provider;
        Round storage r = _rounds[roundId];
        if (checkedRound == 0 || roundId != checkedRound) {
            if (r.state == FlexTypes.RoundState.NONE) revert UnknownRound(roundId);
            _requireOpen(roundId, r);
            if (r.sealMode != FlexTypes.SEAL_OPEN) revert WrongSealMode(roundId, r.sealMode);
            checkedProvider = address(0);
        }
        orderHash = _hashTypedDataV4(FlexTypes.hashFlexOffer(o));
        _checkOfferFields(o, orderHash, r);
        if (checkedProvider == address(0) || provider != checkedProvider) {
            _requireProvider(provider);
            uint256 required = r.bidDeposit;
            if (required != 0) {
                uint256 deposited = _deposits[roundId][provider];
                if (deposited < required) revert MissingDeposit(roundId, provider, deposited, required);
            }
        }
        _checkSignature(provider, orderHash, signature);
        _useCheckedNonce(provider, o.nonce);
        _accept(r, orderHash);
        emit FlexOfferSubmitted(roundId, orderHash, provider, o);
    }

    function _revealOffer(FlexTypes.FlexOffer calldata o, bytes calldata signature, bytes32 salt) private {
        uint256 roundId = o.roundId;
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(roundId);
        if (r.sealMode == FlexTypes.SEAL_OPEN) revert WrongSealMode(roundId, r.sealMode);
        FlexTypes.RoundState s = _state(r);
        if (s == FlexTypes.RoundState.OPEN) revert TooEarly(roundId, r.gateClosure, block.timestamp);
        if (s != FlexTypes.RoundState.CLOSED) revert WrongRoundState(roundId, s);
        uint256 revealEnd = uint256(r.gateClosure) + c.revealSeconds;
        if (block.timestamp >= revealEnd) revert TooLate(roundId, revealEnd, block.timestamp);
        bytes32 orderHash = _hashTypedDataV4(FlexTypes.hashFlexOffer(o));
        bytes32 commitment_ = FlexTypes.commitment(orderHash, o.provider, salt);
        Commitment storage cm = _commitments[roundId][commitment_];
        if (cm.provider == address(0)) revert UnknownCommitment(roundId, commitment_);
        if (cm.closed) revert CommitmentClosed(roundId, commitment_);
        _checkOfferFields(o, orderHash, r);
        _requireProvider(o.provider);
        _checkSignature(o.provider, orderHash, signature);
        _useCheckedNonce(o.provider, o.nonce);
        cm.closed = true;
        _accept(r, orderHash);
        emit OfferRevealed(roundId, commitment_, orderHash);
        emit FlexOfferSubmitted(roundId, orderHash, o.provider, o);
    }

    /// @dev Field checks and expiry of an offer (every value read through Solidity, which rejects
    /// dirty calldata, so the assembly struct hash equals the canonical one).
    function _checkOfferFields(FlexTypes.FlexOffer calldata o, bytes32 orderHash, Round storage r) private view {
        uint16[] calldata slots = o.slots;
        uint64[] calldata minPowerW = o.minPowerW;
        uint64[] calldata maxPowerW = o.maxPowerW;
        uint256 n = slots.length;
        if (n == 0) revert InvalidOrder(orderHash, "slots", 0);
        if (minPowerW.length != n) revert InvalidOrder(orderHash, "minPowerW", minPowerW.length);
        if (maxPowerW.length != n) revert InvalidOrder(orderHash, "maxPowerW", maxPowerW.length);
        if (o.direction > FlexTypes.DIRECTION_DOWN) revert InvalidOrder(orderHash, "direction", o.direction);
        uint256 price = o.priceMicroPerMwh;
        if (price > r.priceCap) revert InvalidOrder(orderHash, "priceMicroPerMwh", price);
        if (o.minActivationBps > FlexTypes.BPS) revert InvalidOrder(orderHash, "minActivationBps", o.minActivationBps);
        uint256 slotCount = r.slotCount;
        uint256 previous = 0;
        for (uint256 i; i < n; ++i) {
            uint256 slot = slots[i];
            if (slot >= slotCount || (i != 0 && slot <= previous)) revert InvalidOrder(orderHash, "slots", slot);
            previous = slot;
            uint256 maxW = maxPowerW[i];
            if (maxW == 0) revert InvalidOrder(orderHash, "maxPowerW", 0);
            uint256 minW = minPowerW[i];
            if (minW > maxW) revert InvalidOrder(orderHash, "minPowerW", minW);
        }
        uint256 expiry = o.expiry;
        if (block.timestamp > expiry) revert OrderExpired(orderHash, expiry, block.timestamp);
    }

    function _submitP2POrder(FlexTypes.P2POrder calldata o, bytes calldata signature) private returns (uint256 escrow) {
        uint256 roundId = o.roundId;
        (FlexTypes.RoundConfig storage c, Round storage r) = _round(roundId);
        _requireOpen(roundId, r);
        bytes32 orderHash = _hashTypedDataV4(FlexTypes.hashP2POrder(o));
        if (o.side > FlexTypes.SIDE_SELL) revert InvalidOrder(orderHash, "side", o.side);
        if (o.slot >= r.slotCount) revert InvalidOrder(orderHash, "slot", o.slot);
        if (o.powerW == 0) revert InvalidOrder(orderHash, "powerW", 0);
        if (o.limitPriceMicroPerMwh > r.priceCap) {
            revert InvalidOrder(orderHash, "limitPriceMicroPerMwh", o.limitPriceMicroPerMwh);
        }
        if (block.timestamp > o.expiry) revert OrderExpired(orderHash, o.expiry, block.timestamp);
        _requireProvider(o.trader);
        _checkSignature(o.trader, orderHash, signature);
        _useCheckedNonce(o.trader, o.nonce);
        if (o.side == FlexTypes.SIDE_BUY) {
            escrow = FlexTypes.valueUp(o.powerW, c.slotSeconds, o.limitPriceMicroPerMwh);
            _escrows[roundId][o.trader].escrow += SafeCast.toUint128(escrow);
            r.pot += SafeCast.toUint96(escrow);
        }
        _accept(r, orderHash);
        emit P2POrderSubmitted(roundId, orderHash, o.trader, o, escrow);
    }




    /// @dev ECDSA first (no EXTCODESIZE for the common EOA case), then ERC-1271 for contract accounts.
    function _checkSignature(address signer, bytes32 orderHash, bytes calldata signature) private view {
        // slither-disable-next-line unused-return
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(orderHash, signature);
        if (err == ECDSA.RecoverError.NoError && recovered == signer) return;
        if (signer.code.length != 0 && SignatureChecker.isValidERC1271SignatureNowCalldata(signer, orderHash, signature)) {
            return;
        }
        revert InvalidSignature(orderHash, signer);
    }

    function _requestBudget(FlexTypes.FlexRequest calldata q, FlexTypes.RoundConfig storage c)
        private
        view
        returns (uint256)
    {
        uint256 n = q.slots.length;
        if (n == 0) revert InvalidRequest("slots", 0);
        if (q.powerW.length != n) revert InvalidRequest("powerW", q.powerW.length);
        if (q.direction > FlexTypes.DIRECTION_DOWN) revert InvalidRequest("direction", q.direction);
        uint256 cap = q.priceCapMicroPerMwh;
        if (cap == 0 || cap > c.priceCapMicroPerMwh) revert InvalidRequest("priceCapMicroPerMwh", cap);
        uint256 slotCount = c.slotCount;
        uint256 previous = 0;
        uint256 totalW = 0;
        for (uint256 i; i < n; ++i) {
            uint256 slot = q.slots[i];
            if (slot >= slotCount || (i != 0 && slot <= previous)) revert InvalidRequest("slots", slot);
            previous = slot;
            uint256 powerW = q.powerW[i];
            if (powerW == 0) revert InvalidRequest("powerW", 0);
            totalW += powerW;
        }
        return FlexTypes.valueUp(totalW, c.slotSeconds, cap);
    }

    // ================================================================== internal: rounds

    function _validateConfig(FlexTypes.RoundConfig calldata c) private view returns (address dso) {
        if (c.gridId == bytes32(0)) revert InvalidRoundConfig("gridId", 0);
        dso = _registry.dsoOf(c.gridId);
        if (dso == address(0)) revert InvalidRoundConfig("dso", 0);
        if (c.slotSeconds == 0) revert InvalidRoundConfig("slotSeconds", 0);
        if (c.slotCount == 0) revert InvalidRoundConfig("slotCount", 0);
        if (c.gateClosure <= block.timestamp) revert InvalidRoundConfig("gateClosure", c.gateClosure);
        if (c.slotStart < c.gateClosure) revert InvalidRoundConfig("slotStart", c.slotStart);
        if (c.pricingRule > FlexTypes.PRICING_RULE_MAX) revert InvalidRoundConfig("pricingRule", c.pricingRule);
        if (c.sealMode > FlexTypes.SEAL_ENCRYPTED) revert InvalidRoundConfig("sealMode", c.sealMode);
        if (c.sealMode != FlexTypes.SEAL_OPEN && c.revealSeconds == 0) revert InvalidRoundConfig("revealSeconds", 0);
        if (c.sealMode == FlexTypes.SEAL_ENCRYPTED && c.encryptionKey == bytes32(0)) {
            revert InvalidRoundConfig("encryptionKey", 0);
        }
        if (c.clearingSeconds == 0) revert InvalidRoundConfig("clearingSeconds", 0);
        if (c.settlementSeconds == 0) revert InvalidRoundConfig("settlementSeconds", 0);
        if (c.priceCapMicroPerMwh == 0) revert InvalidRoundConfig("priceCapMicroPerMwh", 0);
        if (c.toleranceBps > FlexTypes.BPS) revert InvalidRoundConfig("toleranceBps", c.toleranceBps);
        if (c.penaltyBps > FlexTypes.BPS) revert InvalidRoundConfig("penaltyBps", c.penaltyBps);
        if (c.bidDeposit > type(uint64).max) revert InvalidRoundConfig("bidDeposit", c.bidDeposit);
        if (c.oracleQuorum == 0 || c.oracleQuorum > _registry.oracleCount()) {
            revert InvalidRoundConfig("oracleQuorum", c.oracleQuorum);
        }
    }
}
