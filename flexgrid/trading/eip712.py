"""EIP-712 typed data, digests (order hashes), signing and recovery for FlexGrid orders.

The struct types are defined once here, as in docs/trading-language.md; hashing is done by
eth-account's `encode_typed_data`, which follows EIP-712 exactly like OpenZeppelin's
`EIP712._hashTypedDataV4`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import is_address, keccak, to_checksum_address

from flexgrid.errors import InputError, SignatureError
from flexgrid.trading.models import FlexOffer, P2POrder

DOMAIN_NAME = "FlexGrid"
DOMAIN_VERSION = "1"

EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

FLEX_OFFER_TYPE = [
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

P2P_ORDER_TYPE = [
    {"name": "trader", "type": "address"},
    {"name": "roundId", "type": "uint256"},
    {"name": "bus", "type": "uint32"},
    {"name": "side", "type": "uint8"},
    {"name": "slot", "type": "uint16"},
    {"name": "powerW", "type": "uint64"},
    {"name": "limitPriceMicroPerMwh", "type": "uint64"},
    {"name": "nonce", "type": "uint256"},
    {"name": "expiry", "type": "uint64"},
]

SignableOrder = FlexOffer | P2POrder


@lru_cache(maxsize=1024)
def _checksummed(address: str) -> str | None:
    """EIP-55 form of `address`, None if it is not one (cached: a domain is parsed with every order)."""
    return str(to_checksum_address(address)) if is_address(address) else None


@dataclass(frozen=True)
class Eip712Domain:
    """The FlexGrid EIP-712 domain: one FlexMarket contract on one chain."""

    chain_id: int
    verifying_contract: str
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.chain_id, bool) or not isinstance(self.chain_id, int) or self.chain_id <= 0:
            raise InputError("chain_id", f"must be a positive integer, got {self.chain_id!r}")
        checksummed = _checksummed(self.verifying_contract) if isinstance(self.verifying_contract, str) else None
        if checksummed is None:
            raise InputError("verifying_contract", f"{self.verifying_contract!r} is not an Ethereum address")
        object.__setattr__(self, "verifying_contract", checksummed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }

    def check_matches(self, expected: Eip712Domain) -> None:
        """Raise `SignatureError` naming what differs when this domain is not `expected`."""
        if self.chain_id != expected.chain_id:
            raise SignatureError(
                "chain_id",
                f"signed for chain {self.chain_id}, but the market is on chain {expected.chain_id}",
            )
        if self.verifying_contract != expected.verifying_contract:
            raise SignatureError(
                "verifying_contract",
                f"signed for contract {self.verifying_contract}, but the market is {expected.verifying_contract}",
            )
        if (self.name, self.version) != (expected.name, expected.version):
            raise SignatureError(
                "domain",
                f"signed for {self.name!r} version {self.version!r}, "
                f"the market is {expected.name!r} version {expected.version!r}",
            )


@dataclass(frozen=True)
class SignedOrder:
    """An order, the domain it was signed for and its 65-byte signature (`0x` hex)."""

    order: SignableOrder
    domain: Eip712Domain
    signature: str

    @property
    def order_hash(self) -> str:
        return digest(self.order, self.domain)

    @property
    def signature_bytes(self) -> bytes:
        return bytes.fromhex(self.signature[2:])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: `{"kind", "order", "domain", "signature"}` (order in user units)."""
        return {
            "kind": "offer" if isinstance(self.order, FlexOffer) else "p2p",
            "order": self.order.model_dump(mode="json"),
            "domain": self.domain.as_dict(),
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignedOrder:
        """Parse `to_dict`'s form; bad input raises `InputError` naming the field."""
        if not isinstance(data, dict):
            raise InputError("signed_order", "must be an object with kind, order, domain and signature")
        kind = data.get("kind")
        model: type[FlexOffer] | type[P2POrder]
        if kind == "offer":
            model = FlexOffer
        elif kind == "p2p":
            model = P2POrder
        else:
            raise InputError("kind", f"must be 'offer' or 'p2p', got {kind!r}")
        order = model.model_validate(data.get("order"))
        domain_data = data.get("domain")
        if not isinstance(domain_data, dict):
            raise InputError("domain", "must be an object with name, version, chainId and verifyingContract")
        domain = Eip712Domain(
            chain_id=domain_data.get("chainId"),  # type: ignore[arg-type]
            verifying_contract=domain_data.get("verifyingContract"),  # type: ignore[arg-type]
            name=str(domain_data.get("name", DOMAIN_NAME)),
            version=str(domain_data.get("version", DOMAIN_VERSION)),
        )
        signature = data.get("signature")
        if not (isinstance(signature, str) and signature.startswith("0x") and len(signature) == 132):
            raise SignatureError("signature", "must be 65 bytes as 0x hex", order_id=order.order_id)
        _hex_bytes(signature)
        return cls(order=order, domain=domain, signature=signature.lower())

    def verify(self, expected_domain: Eip712Domain | None = None) -> str:
        """Check domain (if given) and signer; return the order hash. Raises `SignatureError`."""
        if expected_domain is not None:
            self.domain.check_matches(expected_domain)
        verify_signature(self.order, self.signature, self.domain)
        return self.order_hash


def _primary(order: SignableOrder) -> tuple[str, list[dict[str, str]]]:
    if isinstance(order, FlexOffer):
        return "FlexOffer", FLEX_OFFER_TYPE
    if isinstance(order, P2POrder):
        return "P2POrder", P2P_ORDER_TYPE
    raise InputError("order", f"cannot sign a {type(order).__name__}; only FlexOffer and P2POrder are signed")


def typed_data(order: SignableOrder, domain: Eip712Domain) -> dict[str, Any]:
    """The full EIP-712 typed data (as `eth_signTypedData_v4` takes it)."""
    primary, fields = _primary(order)
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, primary: fields},
        "primaryType": primary,
        "domain": domain.as_dict(),
        "message": order.message(),
    }


def digest_bytes(order: SignableOrder, domain: Eip712Domain) -> bytes:
    """The EIP-712 digest `keccak256(0x1901 ‖ domainSeparator ‖ structHash)`."""
    return _signable_digest(signable_message(order, domain))


def signable_message(order: SignableOrder, domain: Eip712Domain) -> SignableMessage:
    """eth-account's EIP-191 version 0x01 message for `order` (what a wallet signs)."""
    return encode_typed_data(full_message=typed_data(order, domain))


def _signable_digest(message: SignableMessage) -> bytes:
    return bytes(keccak(b"\x19" + message.version + message.header + message.body))


def digest(order: SignableOrder, domain: Eip712Domain) -> str:
    """The order hash (EIP-712 digest) as `0x` hex; FlexGrid's identifier of a signed order."""
    return "0x" + digest_bytes(order, domain).hex()


def domain_separator(domain: Eip712Domain) -> str:
    """The EIP-712 domain separator as `0x` hex (compare with the contract's)."""
    signable = encode_typed_data(
        full_message={
            "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "X": []},
            "primaryType": "X",
            "domain": domain.as_dict(),
            "message": {},
        }
    )
    return "0x" + bytes(signable.header).hex()


def sign(order: SignableOrder, account: Any, domain: Eip712Domain) -> SignedOrder:
    """Sign `order` with an eth-account `LocalAccount` that must be the order's signer."""
    if str(account.address) != order.signer:
        raise SignatureError(
            order.signer_field, f"the account {account.address} cannot sign for {order.signer}", order_id=order.order_id
        )
    signed = account.sign_message(signable_message(order, domain))
    return SignedOrder(order=order, domain=domain, signature="0x" + bytes(signed.signature).hex())


def recover_signer(order: SignableOrder, signature: str | bytes, domain: Eip712Domain) -> str:
    """The address that signed `order` for `domain` (checksummed)."""
    sig = signature if isinstance(signature, bytes) else _hex_bytes(signature)
    if len(sig) != 65:
        raise SignatureError("signature", f"must be 65 bytes, got {len(sig)}", order_id=order.order_id)
    try:
        return str(Account.recover_message(signable_message(order, domain), signature=sig))
    except Exception as exc:  # eth-keys raises several types for malformed signatures
        raise SignatureError("signature", f"cannot recover a signer: {exc}", order_id=order.order_id) from exc


def verify_signature(order: SignableOrder, signature: str | bytes, domain: Eip712Domain) -> None:
    """Raise `SignatureError` unless `signature` is the order signer's signature for `domain`."""
    signer = recover_signer(order, signature, domain)
    if signer != order.signer:
        raise SignatureError(
            "signature",
            f"signed by {signer}, not by {order.signer} (or signed for another chain id, contract or content)",
            order_id=order.order_id,
        )


def _hex_bytes(value: str) -> bytes:
    try:
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    except ValueError as exc:
        raise SignatureError("signature", f"{value!r} is not hex") from exc


__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "FLEX_OFFER_TYPE",
    "P2P_ORDER_TYPE",
    "Eip712Domain",
    "SignedOrder",
    "digest",
    "digest_bytes",
    "domain_separator",
    "recover_signer",
    "sign",
    "typed_data",
    "verify_signature",
]
