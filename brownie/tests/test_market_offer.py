"""A brownie user's view of FlexGrid: deploy the market on anvil and place a signed offer.

Runs in brownie's own throw-away venv (`make brownie`), never in FlexGrid's: brownie pins its own
web3 and eth-account. The EIP-712 message is built here from docs/trading-language.md, so this
test also checks that a third-party client following the spec is accepted by the contract.
"""

import brownie
from brownie import FlexMarket, FlexRegistry, FlexToken, accounts, chain
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

OFFER_TYPES = {
    "FlexOffer": [
        {"name": "provider", "type": "address"},
        {"name": "roundId", "type": "uint256"},
        {"name": "bus", "type": "uint32"},
        {"name": "assetId", "type": "bytes32"},
        {"name": "direction", "type": "uint8"},
        {"name": "slots", "type": "uint16[]"},
        {"name": "minPowerW", "type": "uint64[]"},
        {"name": "maxPowerW", "type": "uint64[]"},
        {"name": "priceMicroPerMwh", "type": "uint64"},
        {"name": "exclusiveGroup", "type": "bytes32"},
        {"name": "minActivationBps", "type": "uint16"},
        {"name": "nonce", "type": "uint256"},
        {"name": "expiry", "type": "uint64"},
    ]
}


def _deploy():
    operator, dso, oracle = accounts[0], accounts[1], accounts[2]
    token = FlexToken.deploy(operator, {"from": operator})
    registry = FlexRegistry.deploy(operator, {"from": operator})
    market = FlexMarket.deploy(registry, token, {"from": operator})
    grid_id = keccak(text="brownie-grid")
    registry.setDso(grid_id, dso, {"from": operator})
    registry.grantRole(registry.ORACLE_ROLE(), oracle, {"from": operator})
    return operator, dso, token, registry, market, grid_id


def _round_config(grid_id):
    now = chain.time()
    return (
        grid_id, b"\x11" * 32, b"\x00" * 32,  # gridId, gridModelHash, encryptionKey
        now + 7200, now + 3600,  # slotStart, gateClosure
        900, 4, 0, 1800,  # slotSeconds, slotCount, revealSeconds, clearingSeconds
        1, 0, 600, 3600,  # pricingRule UNIFORM, sealMode OPEN, disputeWindow, settlementSeconds
        500_000_000, 500, 2000, 1,  # priceCap 500 EUR/MWh, toleranceBps, penaltyBps, quorum
        0, 5_000_000,  # bidDeposit, disputeBond
    )


def test_deploy_and_place_a_signed_offer():
    operator, dso, token, registry, market, grid_id = _deploy()
    provider = accounts.add()  # a key we hold, to sign EIP-712 off chain
    registry.approveProvider(provider, b"\x00" * 32, {"from": operator})
    tx = market.createRound(_round_config(grid_id), {"from": operator})
    round_id = tx.return_value

    offer = {
        "provider": provider.address, "roundId": round_id, "bus": 18, "assetId": b"\x01" * 32,
        "direction": 0, "slots": [1, 2], "minPowerW": [0, 0], "maxPowerW": [50_000, 40_000],
        "priceMicroPerMwh": 120_000_000, "exclusiveGroup": b"\x00" * 32, "minActivationBps": 0,
        "nonce": round_id << 64, "expiry": chain.time() + 3000,
    }
    domain = {"name": "FlexGrid", "version": "1", "chainId": chain.id, "verifyingContract": market.address}
    signable = encode_typed_data(domain_data=domain, message_types=OFFER_TYPES, message_data=offer)
    signature = Account.sign_message(signable, provider.private_key).signature
    as_tuple = tuple(offer[f["name"]] for f in OFFER_TYPES["FlexOffer"])

    digest = market.hashOffer(as_tuple)
    relayer = accounts[5]  # anyone may relay a signed offer
    tx = market.submitOffer(as_tuple, signature, {"from": relayer})
    assert tx.return_value == digest
    assert tx.events["FlexOfferSubmitted"]["orderHash"] == digest

    with brownie.reverts():  # the same signed offer cannot be replayed (its nonce is used)
        market.submitOffer(as_tuple, signature, {"from": relayer})
