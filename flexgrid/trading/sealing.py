"""Offers sealed by encryption to a round key (the ENCRYPTED seal mode).

Each ENCRYPTED round has an X25519 key pair; its public key is the round's `encryptionKey` on
chain. A bidder seals its signed offer:

1. plaintext = canonical JSON `{"offer": <EIP-712 message, on-chain encoding>, "salt", "signature"}`;
2. an ephemeral X25519 key pair; `shared = X25519(ephemeral secret, round public key)`;
3. `HKDF-SHA256(shared, salt = ephemeral public ‖ round public, info = "FlexGrid sealed offer v1")`
   gives a 32-byte ChaCha20-Poly1305 key and a 12-byte nonce (one key per ephemeral key pair);
4. associated data = `uint256(roundId) ‖ market address (20 bytes)`, so a ciphertext sealed for
   one round or market does not open as another's;
5. ciphertext = `0x01 ‖ ephemeral public (32) ‖ AEAD ciphertext with its 16-byte tag`.

The commitment sent with it by `commitOffer(roundId, commitment, ciphertext)` is the contract's
sealed-bid commitment `keccak256(abi.encode(orderHash, provider, salt))` (trading-language.md),
so that the oracle can reveal the decrypted offer with `revealOffers` in the reveal window. After
the result is committed the oracle publishes the round's secret key (`publishRoundKey`), and
anyone can open every ciphertext (`open_commitments`) and check that the revealed offers are
exactly the sealed ones (`check_sealed_round`). A ciphertext that does not decrypt, or decrypts
to an offer whose commitment or provider differ from what was committed, is reported with its
commitment, never dropped.

Pure computation: no chain, no files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils import is_address, to_checksum_address

from flexgrid.chain.market import commitment as sealed_commitment
from flexgrid.chain.market import offer_from_struct
from flexgrid.errors import FlexGridError, InputError, SignatureError
from flexgrid.trading.eip712 import Eip712Domain, SignedOrder, digest
from flexgrid.trading.models import FlexOffer

SEAL_VERSION = 1
HKDF_INFO = b"FlexGrid sealed offer v1"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER_BYTES = 1 + _KEY_BYTES


class SealError(FlexGridError):
    """A sealed offer cannot be opened or does not match its commitment; `reason` says which."""

    def __init__(self, reason: str, *, commitment: str | None = None) -> None:
        self.reason = reason
        self.commitment = commitment
        where = f"commitment {commitment}: " if commitment else ""
        super().__init__(f"{where}{reason}")


# ---------------------------------------------------------------------------------------------
# Keys


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _raw_secret(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def _bytes32(value: str | bytes, field_name: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    else:
        try:
            raw = bytes.fromhex(value.removeprefix("0x"))
        except ValueError as exc:
            raise InputError(field_name, f"{value!r} is not hex") from exc
    if len(raw) != _KEY_BYTES:
        raise InputError(field_name, f"must be 32 bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class RoundKeyPair:
    """A round's X25519 key pair, both halves as `0x` hex of 32 bytes (bytes32 on chain)."""

    secret_key: str
    public_key: str

    @classmethod
    def generate(cls) -> RoundKeyPair:
        """A fresh key pair from the operating system's random source."""
        return cls.from_secret(_raw_secret(X25519PrivateKey.generate()))

    @classmethod
    def from_secret(cls, secret_key: str | bytes) -> RoundKeyPair:
        """The pair of a secret key (for example the one a round published on chain)."""
        raw = _bytes32(secret_key, "secret_key")
        private = X25519PrivateKey.from_private_bytes(raw)
        return cls(secret_key="0x" + raw.hex(), public_key="0x" + _raw_public(private.public_key()).hex())


def public_key_of(secret_key: str | bytes) -> str:
    """The X25519 public key (`0x` hex) belonging to `secret_key`."""
    return RoundKeyPair.from_secret(secret_key).public_key


# ---------------------------------------------------------------------------------------------
# Sealing and opening one offer


def associated_data(round_id: int, market: str) -> bytes:
    """`uint256(roundId) ‖ market address`: binds a ciphertext to one round of one market."""
    if isinstance(round_id, bool) or not isinstance(round_id, int) or not 0 <= round_id < 2**256:
        raise InputError("round_id", f"must be a uint256, got {round_id!r}")
    if not isinstance(market, str) or not is_address(market):
        raise InputError("market", f"{market!r} is not an Ethereum address")
    return round_id.to_bytes(32, "big") + bytes.fromhex(str(to_checksum_address(market))[2:])


def _derive(shared: bytes, ephemeral_public: bytes, round_public: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=_KEY_BYTES + _NONCE_BYTES,
        salt=ephemeral_public + round_public,
        info=HKDF_INFO,
    ).derive(shared)
    return okm[:_KEY_BYTES], okm[_KEY_BYTES:]


def _jsonable_message(offer: FlexOffer) -> dict[str, Any]:
    return {k: ("0x" + v.hex()) if isinstance(v, bytes) else v for k, v in offer.message().items()}


def sealed_plaintext(signed: SignedOrder, salt: str) -> bytes:
    """The canonical bytes that are encrypted: the signed offer in its on-chain encoding and the salt."""
    if not isinstance(signed.order, FlexOffer):
        raise InputError("order", "only FlexOffers are sealed", order_id=signed.order.order_id)
    doc = {
        "offer": _jsonable_message(signed.order),
        "salt": "0x" + _bytes32(salt, "salt").hex(),
        "signature": signed.signature.lower(),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class SealedOffer:
    """A signed offer sealed to a round key: what `commitOffer` sends, and what its sender keeps."""

    signed: SignedOrder
    salt: str
    commitment: str
    ciphertext: bytes

    @property
    def order_hash(self) -> str:
        return self.signed.order_hash


def seal_offer(
    signed: SignedOrder, round_public_key: str | bytes, *, salt: str | None = None
) -> SealedOffer:
    """Encrypt a signed offer to its round's public key (round id and market from the offer and
    its signing domain). The signature is checked first, so a bidder never seals a bad offer."""
    offer = signed.order
    if not isinstance(offer, FlexOffer):
        raise InputError("order", "only FlexOffers are sealed", order_id=offer.order_id)
    signed.verify()
    salt_hex = "0x" + (_bytes32(salt, "salt") if salt is not None else os.urandom(_KEY_BYTES)).hex()
    round_public = _bytes32(round_public_key, "round_public_key")
    if round_public == bytes(_KEY_BYTES):
        raise InputError("round_public_key", "the round has no encryption key (not an ENCRYPTED round)")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = _raw_public(ephemeral.public_key())
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(round_public))
    key, nonce = _derive(shared, ephemeral_public, round_public)
    aad = associated_data(offer.round_id, signed.domain.verifying_contract)
    body = ChaCha20Poly1305(key).encrypt(nonce, sealed_plaintext(signed, salt_hex), aad)
    ciphertext = bytes([SEAL_VERSION]) + ephemeral_public + body
    return SealedOffer(
        signed=signed,
        salt=salt_hex,
        commitment=sealed_commitment(signed.order_hash, offer.provider, salt_hex),
        ciphertext=ciphertext,
    )


def decrypt_sealed(ciphertext: bytes, round_secret_key: str | bytes, *, round_id: int, market: str) -> bytes:
    """The plaintext of a sealed offer; `SealError` if it does not decrypt with this key and round."""
    if len(ciphertext) < _HEADER_BYTES + _TAG_BYTES:
        raise SealError(f"ciphertext of {len(ciphertext)} bytes is too short to be a sealed offer")
    if ciphertext[0] != SEAL_VERSION:
        raise SealError(f"unknown sealing version {ciphertext[0]} (expected {SEAL_VERSION})")
    private = X25519PrivateKey.from_private_bytes(_bytes32(round_secret_key, "round_secret_key"))
    round_public = _raw_public(private.public_key())
    ephemeral_public = ciphertext[1:_HEADER_BYTES]
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError as exc:  # an all-zero shared secret: a malformed ephemeral key
        raise SealError(f"the ephemeral key is invalid: {exc}") from exc
    key, nonce = _derive(shared, ephemeral_public, round_public)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext[_HEADER_BYTES:], associated_data(round_id, market))
    except InvalidTag as exc:
        raise SealError(
            "does not decrypt with the round key (tampered, or sealed to another key, round or market)"
        ) from exc


def parse_plaintext(plaintext: bytes, domain: Eip712Domain) -> tuple[SignedOrder, str]:
    """(signed offer with its order hash as `order_id`, salt) from a decrypted plaintext."""
    try:
        doc = json.loads(plaintext.decode("utf-8"))
        message = dict(doc["offer"])
        salt = "0x" + _bytes32(str(doc["salt"]), "salt").hex()
        signature = str(doc["signature"])
        struct = {
            k: bytes.fromhex(v[2:]) if k in ("assetId", "exclusiveGroup") else v for k, v in message.items()
        }
        offer = offer_from_struct(struct)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SealError(f"decrypts, but not to a signed offer: {exc}") from exc
    order_hash = digest(offer, domain)
    offer = offer.model_copy(update={"order_id": order_hash})
    return SignedOrder(order=offer, domain=domain, signature=signature), salt


# ---------------------------------------------------------------------------------------------
# A round's commitments


@dataclass(frozen=True)
class SealedCommitment:
    """One `OfferCommitted` event of an ENCRYPTED round."""

    commitment: str
    provider: str
    ciphertext: bytes
    block_number: int = 0
    tx_hash: str = ""


@dataclass(frozen=True)
class OpenedCommitment:
    """A commitment after opening: the signed offer and salt, or the problem that stops it."""

    commitment: str
    provider: str
    signed: SignedOrder | None = None
    salt: str | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.signed is not None

    @property
    def order_hash(self) -> str | None:
        return self.signed.order_hash if self.signed is not None else None


def open_commitment(
    sealed: SealedCommitment, round_secret_key: str | bytes, *, round_id: int, domain: Eip712Domain
) -> OpenedCommitment:
    """Decrypt one commitment and check it: decrypts, is a signed offer of this round whose
    signer is the committing provider, and whose commitment is the one on chain."""
    base = OpenedCommitment(commitment=sealed.commitment, provider=sealed.provider)
    if not sealed.ciphertext:
        return _problem(base, "no ciphertext was sent with the commitment")
    try:
        plaintext = decrypt_sealed(
            sealed.ciphertext, round_secret_key, round_id=round_id, market=domain.verifying_contract
        )
        signed, salt = parse_plaintext(plaintext, domain)
    except SealError as exc:
        return _problem(base, exc.reason)
    offer = signed.order
    opened = OpenedCommitment(sealed.commitment, sealed.provider, signed, salt)
    if offer.round_id != round_id:
        return _problem(opened, f"the sealed offer is for round {offer.round_id}, not {round_id}")
    if offer.signer.lower() != sealed.provider.lower():
        return _problem(opened, f"the sealed offer's provider {offer.signer} is not the committer {sealed.provider}")
    try:
        signed.verify()
    except SignatureError as exc:
        return _problem(opened, f"the sealed offer's signature does not verify: {exc}")
    expected = sealed_commitment(signed.order_hash, offer.signer, salt)
    if expected.lower() != sealed.commitment.lower():
        return _problem(opened, f"decrypts to an offer whose commitment is {expected}, not the committed hash")
    return opened


def commitments_from_events(
    events: Iterable[Mapping[str, Any]], off_chain: Mapping[str, bytes | str] | None = None
) -> list[SealedCommitment]:
    """`OfferCommitted` events (as `flexgrid.chain.round_events` gives them, or their `args`) as
    sealed commitments, in chain order.

    A ciphertext sent through the API instead of calldata (the event's is empty) is taken from
    `off_chain` (commitment -> ciphertext); it is authenticated by opening it, since the commitment
    on chain binds the order hash, the provider and the salt inside it.
    """
    extra = {c.lower(): v for c, v in (off_chain or {}).items()}
    out: list[SealedCommitment] = []
    for e in events:
        args = e.get("args", e)
        if "event" in e and e["event"] != "OfferCommitted":
            continue
        commitment = args["commitment"]
        commitment = commitment if isinstance(commitment, str) else "0x" + bytes(commitment).hex()
        raw = args.get("ciphertext") or "0x"
        if raw in ("0x", b"") and commitment.lower() in extra:
            raw = extra[commitment.lower()]
        ciphertext = bytes.fromhex(raw.removeprefix("0x")) if isinstance(raw, str) else bytes(raw)
        out.append(
            SealedCommitment(
                commitment=commitment,
                provider=str(args["provider"]),
                ciphertext=ciphertext,
                block_number=int(e.get("block_number", 0)),
                tx_hash=str(e.get("tx_hash", "")),
            )
        )
    return out


def _problem(opened: OpenedCommitment, reason: str) -> OpenedCommitment:
    return OpenedCommitment(opened.commitment, opened.provider, opened.signed, opened.salt, reason)


def open_commitments(
    sealed: Iterable[SealedCommitment], round_secret_key: str | bytes, *, round_id: int, domain: Eip712Domain
) -> list[OpenedCommitment]:
    """Open every commitment of a round (one entry per commitment, problems included)."""
    return [open_commitment(s, round_secret_key, round_id=round_id, domain=domain) for s in sealed]


def revealable(opened: Sequence[OpenedCommitment]) -> tuple[list[SignedOrder], list[str]]:
    """The offers and salts to pass to `MarketClient.reveal_offers` (opened commitments only)."""
    good = [o for o in opened if o.ok and o.signed is not None and o.salt is not None]
    return [o.signed for o in good if o.signed is not None], [str(o.salt) for o in good]


@dataclass(frozen=True)
class SealedRoundCheck:
    """Whether the offers used in a round are exactly the ones sealed before gate closure.

    `problems`: mismatches between the sealed offers, the reveals and the clearing's inputs (what
    an oracle answers for). `rejected`: commitments whose ciphertext does not open or does not
    match (a bidder's fault), each named by its commitment: reported, never dropped silently.
    """

    opened: tuple[OpenedCommitment, ...]
    problems: tuple[str, ...] = field(default_factory=tuple)
    rejected: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_sealed_round(
    opened: Sequence[OpenedCommitment],
    revealed: Mapping[str, str],
    used_offer_hashes: Iterable[str],
) -> SealedRoundCheck:
    """Compare the opened commitments with the chain.

    `revealed` maps each revealed commitment to its order hash (`OfferRevealed` events);
    `used_offer_hashes` are the offers the round's clearing took as inputs (or dropped with a
    reason). Problems: a valid sealed offer that was not revealed or not used; a revealed
    commitment whose order hash is not what it decrypts to; an offer used that was not sealed.
    Rejected: each commitment that does not open or match, with its commitment.
    """
    problems: list[str] = []
    rejected: list[str] = []
    revealed_l = {c.lower(): h.lower() for c, h in revealed.items()}
    used = {h.lower() for h in used_offer_hashes}
    sealed_hashes: set[str] = set()
    for o in opened:
        c = o.commitment.lower()
        if not o.ok:
            note = " (revealed by its salt all the same)" if c in revealed_l else ""
            rejected.append(f"commitment {o.commitment} of {o.provider}: {o.problem}{note}")
            continue
        h = str(o.order_hash).lower()
        sealed_hashes.add(h)
        if c not in revealed_l:
            problems.append(f"commitment {o.commitment} ({o.provider}) decrypts to valid offer {h} that was never revealed")
        elif revealed_l[c] != h:
            problems.append(f"commitment {o.commitment} was revealed as {revealed_l[c]}, but decrypts to {h}")
        if h not in used:
            problems.append(f"sealed offer {h} ({o.provider}) is not among the orders used by the clearing")
    known = {o.commitment.lower() for o in opened}
    for c, h in revealed_l.items():
        if c not in known:
            problems.append(f"commitment {c} was revealed as {h} but no sealed ciphertext was committed")
    for h in sorted(used - sealed_hashes - set(revealed_l.values())):
        problems.append(f"offer {h} was used by the clearing but was not sealed before gate closure")
    return SealedRoundCheck(opened=tuple(opened), problems=tuple(problems), rejected=tuple(rejected))


__all__ = [
    "HKDF_INFO",
    "SEAL_VERSION",
    "OpenedCommitment",
    "RoundKeyPair",
    "SealError",
    "SealedCommitment",
    "SealedOffer",
    "SealedRoundCheck",
    "associated_data",
    "check_sealed_round",
    "commitments_from_events",
    "decrypt_sealed",
    "open_commitment",
    "open_commitments",
    "parse_plaintext",
    "public_key_of",
    "revealable",
    "seal_offer",
    "sealed_commitment",
    "sealed_plaintext",
]
