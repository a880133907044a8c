"""EIP-712 signing and recovery of offers and P2P orders (no chain; parity with Solidity is in tests/chain)."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from flexgrid.errors import InputError, SignatureError
from flexgrid.trading.eip712 import (
    Eip712Domain,
    digest,
    domain_separator,
    recover_signer,
    sign,
    typed_data,
    verify_signature,
)
from tests.trading.test_models import offer, p2p

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil account 1
ACCOUNT = Account.from_key(KEY)
DOMAIN = Eip712Domain(chain_id=31337, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")


def test_signed_offer_recovers_to_its_provider() -> None:
    signed = offer().sign(ACCOUNT, DOMAIN)
    assert recover_signer(signed.order, signed.signature, DOMAIN) == ACCOUNT.address
    assert signed.verify(DOMAIN) == offer().digest(DOMAIN)


def test_signed_p2p_order_recovers_to_its_trader() -> None:
    signed = sign(p2p(), ACCOUNT, DOMAIN)
    verify_signature(signed.order, signed.signature, DOMAIN)


def test_domain_separator_follows_eip712() -> None:
    # Written out by hand from EIP-712 to check the library call, not to replace it.
    type_hash = keccak(
        text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    encoded = (
        type_hash
        + keccak(text="FlexGrid")
        + keccak(text="1")
        + (31337).to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(DOMAIN.verifying_contract[2:])
    )
    assert domain_separator(DOMAIN) == "0x" + keccak(encoded).hex()


def test_every_signed_field_changes_the_digest() -> None:
    base = offer().digest(DOMAIN)
    changes = dict(
        round_id=8,
        bus=13,
        asset_id="0x" + "b2" * 32,
        direction=1,
        slots=(4, 5, 7),
        min_kw=(0.0, 10.0, 0.0),
        max_kw=(20.0, 20.0, 5.0),
        price_eur_per_mwh=120.0,
        exclusive_group="0x" + "01" * 32,
        min_activation=0.25,
        nonce=5,
        expiry_s=1,
        provider="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    )
    for name, value in changes.items():
        assert offer(**{name: value}).digest(DOMAIN) != base, name


def test_order_id_is_not_part_of_the_signed_message() -> None:
    assert offer(order_id="a").digest(DOMAIN) == offer(order_id="b").digest(DOMAIN)


def test_signature_for_another_chain_is_rejected_naming_the_chain() -> None:
    signed = offer().sign(ACCOUNT, Eip712Domain(1, DOMAIN.verifying_contract))
    with pytest.raises(SignatureError) as info:
        signed.verify(DOMAIN)
    assert info.value.field == "chain_id"
    assert "chain 1" in info.value.reason and "chain 31337" in info.value.reason
    # Without the domain it was signed for, the signature simply does not verify.
    with pytest.raises(SignatureError) as info:
        verify_signature(signed.order, signed.signature, DOMAIN)
    assert info.value.field == "signature"


def test_signature_for_another_contract_is_rejected() -> None:
    other = Eip712Domain(31337, "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512")
    with pytest.raises(SignatureError) as info:
        offer().sign(ACCOUNT, other).verify(DOMAIN)
    assert info.value.field == "verifying_contract"


def test_tampered_order_does_not_verify() -> None:
    signed = offer().sign(ACCOUNT, DOMAIN)
    with pytest.raises(SignatureError):
        verify_signature(offer(price_eur_per_mwh=1.0), signed.signature, DOMAIN)


def test_account_cannot_sign_for_another_provider() -> None:
    with pytest.raises(SignatureError) as info:
        offer().sign(Account.create(), DOMAIN)
    assert info.value.field == "provider"


def test_malformed_signature_is_a_signature_error() -> None:
    with pytest.raises(SignatureError) as info:
        recover_signer(offer(), "0x1234", DOMAIN)
    assert "65 bytes" in info.value.reason


def test_bad_domain_is_rejected() -> None:
    with pytest.raises(InputError) as info:
        Eip712Domain(chain_id=0, verifying_contract=DOMAIN.verifying_contract)
    assert info.value.field == "chain_id"
    with pytest.raises(InputError) as info:
        Eip712Domain(chain_id=1, verifying_contract="0x12")
    assert info.value.field == "verifying_contract"


def test_typed_data_names_the_struct_and_domain() -> None:
    data = typed_data(offer(), DOMAIN)
    assert data["primaryType"] == "FlexOffer"
    assert data["domain"] == {
        "name": "FlexGrid",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": DOMAIN.verifying_contract,
    }
    assert digest(offer(), DOMAIN).startswith("0x") and len(digest(offer(), DOMAIN)) == 66
