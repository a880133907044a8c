"""Test helpers: the client-side wallet functions and an offer builder."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from flexgrid.trading import Direction, FlexOffer
from frontend_api.wallet import bearer, personal_sign, sign_in, signed_offer_body, siwe_message

__all__ = ["bearer", "offer", "personal_sign", "sign_in", "signed_offer_body", "siwe_message"]


def offer(account: LocalAccount, round_id: int, seq: int, expiry_s: int, *, bus: int = 15, kw: float = 10.0,
          price: float = 120.0, slots: tuple[int, ...] = (0, 1)) -> FlexOffer:
    return FlexOffer(provider=account.address, round_id=round_id, bus=bus, asset_id="0x" + "ab" * 32,
                     direction=Direction.UP, slots=slots, min_kw=(0.0,) * len(slots), max_kw=(kw,) * len(slots),
                     price_eur_per_mwh=price, nonce=(round_id << 64) | seq, expiry_s=expiry_s)
