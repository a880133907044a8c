"""Assets as the clearing engine's time-coupled devices (`flexgrid.opf.devices`).

For a grid owner or aggregator who lets the OPF schedule assets directly instead of trading
offers. Units change from kW/kWh to MW/MWh. What each device adds to the bus's withdrawal:

- battery: charging minus discharging around 0; the OPF's state of charge runs from 0 to the
  energy between `soc_min_pu` and `soc_max_pu`, so the asset's limits hold; by default the
  round must end at least as charged as it started (`keep_final_soc`);
- EV and shiftable load: their whole consumption (leave them out of the bus's load profile);
- curtailable PV: its whole forecast injection (leave it out of the bus's generation profile);
  curtailment costs the feed-in tariff;
- heat pump: the deviation from its baseline (keep the baseline in the load profile), as a
  lossless storage of the comfort band: it can draw up to `max_kw - baseline_kw` more, or up to
  `baseline_kw` less, while the temperature stays in the band (the model of `feasibility`).
"""

from __future__ import annotations

from collections.abc import Mapping

from flexgrid.assets.models import (
    AssetBase,
    BatteryAsset,
    CurtailablePVAsset,
    EVAsset,
    HeatPumpAsset,
    ShiftableLoadAsset,
)
from flexgrid.errors import InputError
from flexgrid.opf.devices import Battery, CurtailablePV, Devices, EVCharger, ShiftableLoad
from flexgrid.trading import RoundConfig

KW_PER_MW = 1000.0


def asset_devices(assets: Mapping[int, list[AssetBase]] | list[tuple[int, AssetBase]], round_config: RoundConfig,
                  *, keep_final_soc: bool = True) -> Devices:
    """`flexgrid.opf.Devices` for assets at buses: `{bus: [asset, ...]}` or `[(bus, asset), ...]`."""
    pairs = [(b, a) for b, lst in assets.items() for a in lst] if isinstance(assets, Mapping) else list(assets)
    batteries: list[Battery] = []
    shiftable: list[ShiftableLoad] = []
    pv: list[CurtailablePV] = []
    evs: list[EVCharger] = []
    for bus, a in pairs:
        a.check_for_round(round_config)
        if isinstance(a, BatteryAsset):
            initial = (a.soc_now_pu - a.soc_min_pu) * a.capacity_kwh / KW_PER_MW
            batteries.append(Battery(
                device_id=a.name, bus=bus, energy_mwh=(a.soc_max_pu - a.soc_min_pu) * a.capacity_kwh / KW_PER_MW,
                p_charge_mw=a.power_kw / KW_PER_MW, p_discharge_mw=a.power_kw / KW_PER_MW,
                soc_initial_mwh=initial, soc_final_min_mwh=initial if keep_final_soc else 0.0,
                eta_charge=a.charge_efficiency, eta_discharge=a.discharge_efficiency,
                cost_eur_per_mwh=a.degradation_cost_eur_per_mwh))
        elif isinstance(a, HeatPumpAsset):
            band_mwh = a.band_kwh / KW_PER_MW
            batteries.append(Battery(
                device_id=a.name, bus=bus, energy_mwh=2 * band_mwh,
                p_charge_mw=(a.max_kw - a.baseline_kw) / KW_PER_MW, p_discharge_mw=a.baseline_kw / KW_PER_MW,
                soc_initial_mwh=band_mwh, soc_final_min_mwh=0.0, eta_charge=1.0, eta_discharge=1.0,
                cost_eur_per_mwh=0.0))
        elif isinstance(a, EVAsset):
            evs.append(EVCharger(
                device_id=a.name, bus=bus, energy_mwh=a.energy_need_kwh / KW_PER_MW, p_max_mw=a.charger_kw / KW_PER_MW,
                arrival_slot=a.arrival_slot, departure_slot=a.departure_slot, eta=a.charge_efficiency))
        elif isinstance(a, ShiftableLoadAsset):
            shiftable.append(ShiftableLoad(
                device_id=a.name, bus=bus, energy_mwh=a.energy_kwh / KW_PER_MW, p_max_mw=a.power_kw / KW_PER_MW,
                start_slot=a.window_start_slot, end_slot=a.window_end_slot))
        elif isinstance(a, CurtailablePVAsset):
            pv.append(CurtailablePV(
                device_id=a.name, bus=bus, available_mw=tuple(kw / KW_PER_MW for kw in a.forecast_kw),
                cost_eur_per_mwh=a.feed_in_tariff_eur_per_mwh))
        else:
            raise InputError("asset", f"unsupported asset type {type(a).__name__}", order_id=a.name)
    devices = Devices(tuple(batteries), tuple(shiftable), tuple(pv), tuple(evs))
    devices.validate(round_config.slot_count, round_config.slot_seconds / 3600)
    return devices


__all__ = ["asset_devices"]
