"""Property: any combination of an asset's offers that the market rules allow is physically feasible.

For random assets, rounds and target slots, offers are proposed in both directions (UP and DOWN
for the same target), then a random accepted combination is drawn: at most one offer per
exclusive group, and in each slot of an accepted offer an activation between its minimum
activation and 1 of its maximum (0 allowed when the offer is divisible), rounded to whole watts as
the clearing does. The independent simulation (`simulate_asset`) must find no violation.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from flexgrid.assets import (
    Activation,
    AssetBase,
    BatteryAsset,
    CurtailablePVAsset,
    EVAsset,
    HeatPumpAsset,
    ShiftableLoadAsset,
    propose_offers,
    simulate_asset,
)
from flexgrid.trading import ZERO_BYTES32, Direction, FlexOffer, PricingRule, RoundConfig, SealMode

PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
GATE_S = 1_799_990_000
EXAMPLES = 300


def _num(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def scenario(draw: Any) -> tuple[AssetBase, RoundConfig, list[int]]:
    n = draw(st.integers(2, 16))
    slot_s = draw(st.sampled_from([900, 1800, 3600]))
    h = slot_s / 3600
    rc = RoundConfig(round_id=draw(st.integers(0, 50)), grid_id="g", grid_model_hash="0x" + "11" * 32,
                     slot_start_s=1_800_000_000, slot_seconds=slot_s, slot_count=n, gate_closure_s=GATE_S,
                     pricing_rule=PricingRule.PAY_AS_BID, seal_mode=SealMode.OPEN, dispute_window_s=60,
                     price_cap_eur_per_mwh=100_000.0, tolerance_bps=0, penalty_bps=0, bid_deposit_eur=0.0)
    kind = draw(st.sampled_from(["battery", "ev", "shiftable", "pv", "heat_pump"]))
    asset: AssetBase
    if kind == "battery":
        lo, now, hi = sorted(draw(st.lists(_num(0, 1), min_size=3, max_size=3)))
        asset = BatteryAsset(name="b", capacity_kwh=draw(_num(0.5, 200)), power_kw=draw(_num(0.2, 100)),
                             charge_efficiency=draw(_num(0.7, 1)), discharge_efficiency=draw(_num(0.7, 1)),
                             soc_now_pu=now, soc_min_pu=lo, soc_max_pu=hi,
                             degradation_cost_eur_per_mwh=draw(_num(0, 300)))
    elif kind in ("ev", "shiftable"):
        start = draw(st.integers(0, n - 1))
        end = draw(st.integers(start + 1, n))
        power = draw(_num(0.5, 50))
        eta = draw(_num(0.7, 1)) if kind == "ev" else 1.0
        energy = power * (end - start) * h * eta * draw(st.sampled_from([1.0, 0.75, 0.5]) | _num(0.01, 1))
        if kind == "ev":
            asset = EVAsset(name="e", arrival_slot=start, departure_slot=end, energy_need_kwh=energy,
                            charger_kw=power, charge_efficiency=eta, value_of_lateness_eur_per_mwh=draw(_num(0, 300)))
        else:
            asset = ShiftableLoadAsset(name="s", energy_kwh=energy, power_kw=power, window_start_slot=start,
                                       window_end_slot=end, shift_cost_eur_per_mwh=draw(_num(0, 300)),
                                       interruptible=draw(st.booleans()))
    elif kind == "pv":
        asset = CurtailablePVAsset(name="p", forecast_kw=tuple(draw(st.lists(_num(0, 80), min_size=n, max_size=n))),
                                   feed_in_tariff_eur_per_mwh=draw(_num(0, 200)))
    else:
        top = draw(_num(0.5, 15))
        asset = HeatPumpAsset(name="h", max_kw=top, baseline_kw=top * draw(_num(0, 1)), cop=draw(_num(1.5, 5)),
                              thermal_capacity_kwh_per_k=draw(_num(0.2, 30)), comfort_band_k=draw(_num(0.1, 3)),
                              comfort_cost_eur_per_kh=draw(_num(0, 5)))
    first = draw(st.integers(0, n - 1))
    contiguous = st.integers(first + 1, n).map(lambda last: set(range(first, last)))
    target = sorted(draw(contiguous | st.sets(st.integers(0, n - 1), min_size=1)))
    return asset, rc, target


def _accept(draw: Any, offer: FlexOffer) -> list[float]:
    lo = offer.min_activation
    full = draw(st.booleans())  # the binding case, every slot at its maximum, half of the time
    out = []
    for max_kw in offer.max_kw:
        a = 1.0 if full else draw(st.sampled_from([lo, 1.0]) | _num(lo, 1.0))
        out.append(min(round(a * max_kw, 3), max_kw))
    return out


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario(), st.data())
def test_any_allowed_combination_of_an_assets_offers_is_feasible(
    case: tuple[AssetBase, RoundConfig, list[int]], data: st.DataObject
) -> None:
    asset, rc, target = case
    offers: list[FlexOffer] = []
    for i, d in enumerate((Direction.UP, Direction.DOWN)):
        if isinstance(asset, CurtailablePVAsset) and d == Direction.UP:
            continue
        offers += propose_offers(asset, rc, provider=PROVIDER, bus=1, nonce_start=10 * i, expiry_s=GATE_S,
                                 direction=d, slots=target)
    groups: dict[str, list[FlexOffer]] = {}
    for k, o in enumerate(offers):
        groups.setdefault(o.exclusive_group if o.exclusive_group != ZERO_BYTES32 else f"alone-{k}", []).append(o)
    accepted: list[tuple[FlexOffer, list[float]]] = []
    for key in sorted(groups):
        options = groups[key]
        pick = data.draw(st.integers(-1, len(options) - 1), label=f"option of {key[:10]}")
        if pick >= 0:
            accepted.append((options[pick], _accept(data.draw, options[pick])))
    note(f"asset={asset!r} target={target} accepted={[(o.direction.name, o.slots, o.max_kw, kw) for o, kw in accepted]}")
    run = simulate_asset(asset, rc, Activation.from_offers(rc.slot_count, accepted))
    assert run.feasible, run.violations


def test_the_property_is_not_vacuous_every_kind_offers_in_both_directions() -> None:
    rc = RoundConfig(round_id=1, grid_id="g", grid_model_hash="0x" + "11" * 32, slot_start_s=1_800_000_000,
                     slot_seconds=900, slot_count=8, gate_closure_s=GATE_S, pricing_rule=PricingRule.PAY_AS_BID,
                     seal_mode=SealMode.OPEN, dispute_window_s=60, price_cap_eur_per_mwh=1000.0, tolerance_bps=0,
                     penalty_bps=0, bid_deposit_eur=0.0)
    assets: list[tuple[AssetBase, tuple[Direction, ...]]] = [
        (BatteryAsset(name="b", capacity_kwh=20, power_kw=10, soc_now_pu=0.5, degradation_cost_eur_per_mwh=40),
         (Direction.UP, Direction.DOWN)),
        (EVAsset(name="e", arrival_slot=0, departure_slot=8, energy_need_kwh=8, charger_kw=11,
                 value_of_lateness_eur_per_mwh=60), (Direction.UP, Direction.DOWN)),
        (ShiftableLoadAsset(name="s", energy_kwh=2, power_kw=2, window_start_slot=0, window_end_slot=8,
                            shift_cost_eur_per_mwh=20), (Direction.UP, Direction.DOWN)),
        (CurtailablePVAsset(name="p", forecast_kw=(0, 2, 4, 6, 6, 4, 2, 0), feed_in_tariff_eur_per_mwh=70),
         (Direction.DOWN,)),
        (HeatPumpAsset(name="h", max_kw=4, baseline_kw=2, cop=3, thermal_capacity_kwh_per_k=5, comfort_band_k=1,
                       comfort_cost_eur_per_kh=0.5), (Direction.UP, Direction.DOWN)),
    ]
    for asset, directions in assets:
        for d in directions:
            offers = propose_offers(asset, rc, provider=PROVIDER, bus=1, nonce_start=0, expiry_s=GATE_S,
                                    direction=d, slots=range(2, 6))
            assert offers, (asset.name, d)
            # full activation of every option is feasible on its own, and strictly moves the asset
            for o in offers:
                act = Activation.from_offers(8, [(o, list(o.max_kw))])
                run = simulate_asset(asset, rc, act)
                assert run.feasible, (asset.name, d, run.violations)
                assert run.power_kw != simulate_asset(asset, rc, Activation.none(8)).power_kw
