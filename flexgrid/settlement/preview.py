"""What a round's settlement will pay, before anyone claims on chain, and the check that no
token is created or lost.

It follows the FlexMarket's money flows (docs/contracts.md, "Money flows") with the trading
language's rule (`flexgrid.trading.settle`, the round's tolerance and penalty):

- escrow in: each request's budget (its DSO) and each P2P buy's value at its limit (its trader);
- charges: every payer leaf (payment < 0) moves |payment| from its payer's escrow into the pool;
- payouts: every payee leaf with a meter reading is settled against it (without a metering root
  every payee is paid in full, as the contract does after the metering deadline); a payee leaf
  with no reading under a metering root cannot be claimed and pays nothing;
- close: the pool not paid out goes to the round's DSO; release: each payer's uncharged escrow
  returns to it. The part of a penalty above the reduced payment comes from the provider's bid
  deposit (up to what is left of it) and goes to the DSO.

Conservation: paid out + returned (to the DSO at close, and released to the payers) equals
what was escrowed, to the token base unit, with no flow negative; deposits likewise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flexgrid.errors import FlexGridError, InputError
from flexgrid.trading import FlexRequest, MeterReading, P2POrder, RoundConfig, Settlement, Side, Trade, settle
from flexgrid.trading.units import value_micro_up


class SettlementError(FlexGridError):
    """The round cannot be settled as given (a payer's escrow or the pool does not cover a leaf)."""


@dataclass(frozen=True)
class SettlementPreview:
    """Every flow of a round's settlement in token base units (micro-EUR)."""

    round_id: int
    dso: str
    settlements: tuple[Settlement, ...]  # payee leaves that are claimed
    unclaimed: tuple[Trade, ...]  # payee leaves without a reading under a metering root
    escrowed_micro: int
    charged_micro: int
    paid_micro: int  # to payees
    to_dso_micro: int  # the pool's remainder at close
    released_micro: int  # uncharged escrow back to the payers
    deposits_micro: int
    deposit_penalties_micro: int  # from bid deposits to the DSO
    deposits_released_micro: int
    credits_micro: dict[str, int] = field(default_factory=dict)  # account -> all it is credited

    @property
    def returned_micro(self) -> int:
        return self.to_dso_micro + self.released_micro

    @property
    def conserved(self) -> bool:
        flows = (self.charged_micro, self.paid_micro, self.to_dso_micro, self.released_micro,
                 self.deposit_penalties_micro, self.deposits_released_micro)
        return (
            all(v >= 0 for v in flows)
            and self.paid_micro + self.returned_micro == self.escrowed_micro
            and self.deposit_penalties_micro + self.deposits_released_micro == self.deposits_micro
            and sum(self.credits_micro.values()) == self.escrowed_micro + self.deposits_micro
        )


def escrow_micro(round_config: RoundConfig, requests: Sequence[FlexRequest], p2p: Sequence[P2POrder] = ()
                 ) -> dict[str, int]:
    """What each payer escrowed in the round: request budgets (by DSO) and P2P buy values (by trader)."""
    out: dict[str, int] = {}
    for r in requests:
        if r.dso is None:
            raise InputError("dso", "a request needs its DSO to know whose escrow it is", order_id=r.order_id)
        out[r.dso] = out.get(r.dso, 0) + r.budget_micro(round_config.slot_seconds)
    for o in p2p:
        if o.side == Side.BUY:
            value = value_micro_up(o.power_w, round_config.slot_seconds, o.limit_price_micro_per_mwh)
            out[o.trader] = out.get(o.trader, 0) + value
    return out


def preview_settlement(
    round_config: RoundConfig,
    trades: Sequence[Trade],
    readings: Sequence[MeterReading] | None,
    *,
    dso: str,
    escrow: Mapping[str, int],
    deposits: Mapping[str, int] | None = None,
) -> SettlementPreview:
    """Settle every leaf of a round as the contract would; `readings=None` means no metering root.

    `escrow` and `deposits` map accounts to token base units (`escrow_micro` builds the former).
    Raises `SettlementError` when a payer's escrow or the pool does not cover its leaves (the
    contract would revert), `InputError` for readings that match no payee leaf."""
    rid = round_config.round_id
    escrow_left = {k.lower(): int(v) for k, v in escrow.items()}
    deposit_left = {k.lower(): int(v) for k, v in (deposits or {}).items()}
    for name, table in (("escrow", escrow_left), ("deposits", deposit_left)):
        for who, v in table.items():
            if v < 0:
                raise InputError(name, f"{who}: must not be negative, got {v}")
    escrowed = sum(escrow_left.values())
    deposited = sum(deposit_left.values())
    dso_key = dso.lower()
    credits: dict[str, int] = {}

    def credit(who: str, amount: int) -> None:
        credits[who] = credits.get(who, 0) + amount

    for t in trades:
        if t.round_id != rid:
            raise InputError("round_id", f"trade is for round {t.round_id}, not {rid}", order_id=t.order_id)
    payers = [t for t in trades if t.payment_micro < 0]
    payees = [t for t in trades if t.payment_micro > 0]
    total_payout = sum(t.payment_micro for t in payees)

    charged = 0
    for t in payers:
        amount = -t.payment_micro
        who = t.participant.lower()
        if amount > escrow_left.get(who, 0):
            raise SettlementError(f"round {rid}: {t.participant} has {escrow_left.get(who, 0)} escrowed left, "
                                  f"leaf {t.order_id} slot {t.slot} charges {amount}")
        escrow_left[who] -= amount
        charged += amount

    by_leaf: dict[tuple[str, str, int], MeterReading] = {}
    if readings is not None:
        # a zero-payment leaf may be metered too; it is never claimed
        payee_keys = {(t.participant.lower(), t.order_id, t.slot) for t in trades if t.payment_micro >= 0}
        for r in readings:
            key = (r.participant.lower(), r.order_id, r.slot)
            if r.round_id != rid or key not in payee_keys:
                raise InputError("readings", f"no payee leaf for participant {r.participant}, slot {r.slot}",
                                 order_id=r.order_id)
            by_leaf[key] = r
    limit = min(charged, total_payout)
    paid = penalties = 0
    settled: list[Settlement] = []
    unclaimed: list[Trade] = []
    for t in payees:
        if readings is None:
            delivered = t.kw
        else:
            reading = by_leaf.get((t.participant.lower(), t.order_id, t.slot))
            if reading is None:
                unclaimed.append(t)
                continue
            delivered = reading.delivered_kw
        s = settle(t, delivered, tolerance_bps=round_config.tolerance_bps, penalty_bps=round_config.penalty_bps)
        if paid + s.paid_micro > limit:
            raise SettlementError(f"round {rid}: the pool has {limit - paid} left, leaf {t.order_id} slot {t.slot} "
                                  f"pays {s.paid_micro}; settle the payer leaves first")
        paid += s.paid_micro
        credit(t.participant.lower(), s.paid_micro)
        who = t.participant.lower()
        taken = min(s.deposit_penalty_micro, deposit_left.get(who, 0))
        if taken:
            deposit_left[who] -= taken
            penalties += taken
            credit(dso_key, taken)
        settled.append(s)
    to_dso = charged - paid
    credit(dso_key, to_dso)
    released = sum(escrow_left.values())
    for who, v in escrow_left.items():
        credit(who, v)
    for who, v in deposit_left.items():
        credit(who, v)
    return SettlementPreview(
        round_id=rid, dso=dso, settlements=tuple(settled), unclaimed=tuple(unclaimed), escrowed_micro=escrowed,
        charged_micro=charged, paid_micro=paid, to_dso_micro=to_dso, released_micro=released,
        deposits_micro=deposited, deposit_penalties_micro=penalties,
        deposits_released_micro=sum(deposit_left.values()),
        credits_micro={k: v for k, v in sorted(credits.items()) if v},
    )


def check_conservation(preview: SettlementPreview) -> None:
    """Raise `SettlementError` naming the imbalance if the preview creates or loses tokens."""
    if preview.conserved:
        return
    raise SettlementError(
        f"round {preview.round_id}: paid {preview.paid_micro} + returned {preview.returned_micro} "
        f"(to the DSO {preview.to_dso_micro}, released {preview.released_micro}) != escrowed "
        f"{preview.escrowed_micro}; deposits {preview.deposits_micro} -> penalties "
        f"{preview.deposit_penalties_micro} + released {preview.deposits_released_micro}"
    )


__all__ = ["SettlementError", "SettlementPreview", "check_conservation", "escrow_micro", "preview_settlement"]
