"""One round without a chain: meta-service offers -> grid-aware clearing -> assets stay feasible ->
simulated metering with an under-delivering provider -> settlement preview that conserves the escrow."""

from __future__ import annotations

from eth_utils import keccak

from flexgrid.assets import (
    Activation,
    AssetBase,
    BatteryAsset,
    EVAsset,
    HeatPumpAsset,
    ShiftableLoadAsset,
    propose_offers,
    simulate_asset,
)
from flexgrid.market import clear_market
from flexgrid.market.clearing import leaf_order_id
from flexgrid.settlement import (
    SameSlotAverage,
    check_conservation,
    escrow_micro,
    meter_readings,
    preview_settlement,
    simulate_metering,
)
from flexgrid.trading import ZERO_BYTES32, Direction, FlexOffer, FlexRequest, PricingRule
from tests.market.helpers import DSO, grid, profiles, round_config

TARGET = (2, 3, 4, 5)
ASSETS: list[tuple[int, str, AssetBase]] = [
    (17, "0x" + "a1" * 20, BatteryAsset(name="battery-17", capacity_kwh=100.0, power_kw=50.0, soc_now_pu=0.8,
                                        degradation_cost_eur_per_mwh=40.0)),
    (16, "0x" + "a2" * 20, EVAsset(name="ev-16", arrival_slot=0, departure_slot=8, energy_need_kwh=40.0,
                                   charger_kw=50.0, value_of_lateness_eur_per_mwh=60.0)),
    (15, "0x" + "a3" * 20, HeatPumpAsset(name="hp-15", max_kw=30.0, baseline_kw=15.0, cop=3.0,
                                         thermal_capacity_kwh_per_k=50.0, comfort_band_k=1.0,
                                         comfort_cost_eur_per_kh=2.0)),
    (14, "0x" + "a4" * 20, ShiftableLoadAsset(name="dryer-14", energy_kwh=10.0, power_kw=10.0, window_start_slot=2,
                                              window_end_slot=8, shift_cost_eur_per_mwh=30.0)),
]


def test_a_cleared_round_of_meta_service_offers_is_feasible_metered_and_conserves_the_escrow() -> None:
    rc = round_config(slots=8, slot_s=900, rule=PricingRule.PAY_AS_BID, cap=1000.0)
    net, view = grid()
    request = FlexRequest(order_id="1", dso=DSO, round_id=rc.round_id, bus=14, direction=Direction.UP, slots=TARGET,
                          kw=(150.0,) * len(TARGET), price_cap_eur_per_mwh=300.0)
    offers: list[FlexOffer] = []
    for bus, provider, asset in ASSETS:
        for o in propose_offers(asset, rc, provider=provider, bus=bus, nonce_start=rc.round_id << 64,
                                expiry_s=rc.gate_closure_s, direction=Direction.UP, slots=TARGET):
            offers.append(o.model_copy(update={"order_id": "0x" + keccak(text=f"{asset.name}/{o.nonce}").hex()}))
    assert any(o.exclusive_group != ZERO_BYTES32 for o in offers) and any(o.min_activation > 0 for o in offers)

    out = clear_market(net, profiles(rc), rc, [request, *offers], formulation="lindistflow", view=view,
                       ac_validation=False, certificate=False, now_s=rc.gate_closure_s)
    by_leaf = {leaf_order_id(o): o for o in offers}
    accepted = {t.order_id for t in out.trades if t.order_id in by_leaf}
    groups = [by_leaf[oid].exclusive_group for oid in accepted if by_leaf[oid].exclusive_group != ZERO_BYTES32]
    assert len(groups) == len(set(groups)), "two options of one exclusive group were accepted"
    acts = Activation.from_trades(rc, offers, out.trades)
    assert len(acts) >= 3, f"only {len(acts)} assets were activated"
    for _, _, asset in ASSETS:
        run = simulate_asset(asset, rc, acts.get(asset.asset_id, Activation.none(rc.slot_count)))
        assert run.feasible, (asset.name, run.violations)

    lazy = ASSETS[1][1]  # the EV's owner delivers half
    meters = simulate_metering(rc, out.trades, offers, seed=11, noise_pu=0.001, delivery_factor={lazy: 0.5})
    readings = meter_readings(rc, out.trades, offers, meters, SameSlotAverage(days=5))
    assert {r.order_id for r in readings} == accepted
    preview = preview_settlement(rc, out.trades, readings, dso=DSO, escrow=escrow_micro(rc, [request]),
                                 deposits={p: 10_000_000 for _, p, _ in ASSETS})
    check_conservation(preview)
    for s in preview.settlements:
        if s.participant.lower() == lazy.lower():
            assert s.paid_eur < s.payment_eur and s.penalty_eur > 0
        else:
            assert s.paid_eur == s.payment_eur, (s.participant, s.delivered_kw, s.accepted_kw)
    assert preview.paid_micro + preview.to_dso_micro + preview.released_micro == request.budget_micro(rc.slot_seconds)
