"""Risk turned into FlexRequests: how much flexibility, where, when, and at what price cap.

For every slot of a round, Monte Carlo scenarios of the forecast errors give the probability
that some voltage or thermal limit is violated. Where it exceeds the DSO's risk appetite ε, the
violated constraints are grouped into zones (a zone is relieved by flexibility at one bus), and
each zone gets the volume at its most effective bus that keeps the linearised violation
probability within ε / (number of zones). The volumes are then checked with the AC power flow of
the same scenarios (and raised by 10 % steps until the AC check passes), and again on fresh
scenarios (out of sample).

Price cap of a request = avoided risk cost per MWh requested:
  VoLL × (EENS without − with the flexibility) + cvar_cost × (CVaR without − with),
where EENS is the expected shortfall energy (load that would have to be shed) and CVaR the
mean shortfall energy in the worst ε of scenarios. The CVaR part, per MWh, is the risk premium,
reported with each request so that the price can be explained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flexgrid.errors import InputError
from flexgrid.monitoring.network import FloatArray, NetworkModel
from flexgrid.monitoring.powerflow import solve_batch
from flexgrid.monitoring.simulation import sample_injections
from flexgrid.monitoring.threads import single_blas_thread
from flexgrid.risk.probabilistic import (
    Uncertainty,
    candidate_buses,
    sensitivities,
    shortfall_kw,
    split_problems,
    var_cvar,
    violations,
    wilson_interval,
    zones,
)
from flexgrid.trading import Direction, FlexRequest


@dataclass(frozen=True)
class RiskPricing:
    """How avoided risk is valued. Stated defaults: VoLL 10,000 EUR/MWh; each MWh of CVaR
    (tail shortfall) removed is worth a further 2,000 EUR; price caps at most 10,000 EUR/MWh."""

    voll_eur_per_mwh: float = 10_000.0
    cvar_cost_eur_per_mwh: float = 2_000.0
    max_price_eur_per_mwh: float = 10_000.0

    def __post_init__(self) -> None:
        for name in ("voll_eur_per_mwh", "cvar_cost_eur_per_mwh", "max_price_eur_per_mwh"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise InputError(f"pricing.{name}", f"must be a non-negative number, got {value!r}")


@dataclass(frozen=True)
class SlotRisk:
    slot: int
    violation_prob_before: float
    violation_prob_after: float  # AC check on the same scenarios, flexibility applied
    violation_prob_out_of_sample: float  # fresh scenarios, flexibility applied
    out_of_sample_ci: tuple[float, float]
    flex_kw: dict[tuple[int, int], float]  # (pandapower bus, direction) -> kW
    eens_before_mwh: float
    eens_after_mwh: float
    cvar_before_mwh: float
    cvar_after_mwh: float
    avoided_cost_eur: float
    risk_premium_eur: float  # the CVaR part of the avoided cost
    unresolved: bool = False  # the AC check could not bring the probability within ε


@dataclass(frozen=True)
class RiskFlexRequest:
    request: FlexRequest
    energy_mwh: float
    avoided_cost_eur: float
    expected_value_eur_per_mwh: float  # VoLL × EENS part per MWh
    risk_premium_eur_per_mwh: float  # CVaR part per MWh


@dataclass(frozen=True)
class RiskRequestPlan:
    epsilon: float
    n_scenarios: int
    slots: tuple[SlotRisk, ...]
    requests: tuple[RiskFlexRequest, ...]

    def flex_requests(self) -> list[FlexRequest]:
        return [r.request for r in self.requests]

    def max_out_of_sample_violation(self) -> float:
        return max((s.violation_prob_out_of_sample for s in self.slots), default=0.0)


def slot_scales(slot_start_s: int, slot_seconds: int, slot_count: int) -> tuple[FloatArray, FloatArray]:
    """Load and PV scale per slot from the shipped daily shapes (`flexgrid.grid`)."""
    from flexgrid.grid import daily_shapes, shape_for_slots

    load_shape, pv_shape = daily_shapes()
    return (
        shape_for_slots(load_shape, slot_start_s, slot_seconds, slot_count),
        shape_for_slots(pv_shape, slot_start_s, slot_seconds, slot_count),
    )


def _flex_injection(model: NetworkModel, flex: dict[tuple[int, int], float]) -> np.ndarray:
    s = np.zeros(model.n_bus, dtype=np.complex128)
    for (pos, direction), mw in flex.items():
        s[pos] += mw / model.base_mva * (1.0 if direction == Direction.UP else -1.0)
    return s


def _plan_slot(
    model: NetworkModel,
    slot: int,
    load_scale: float,
    gen_scale: float,
    *,
    epsilon: float,
    n_scenarios: int,
    n_out_of_sample: int,
    seed: int,
    unc: Uncertainty,
    pricing: RiskPricing,
    slot_hours: float,
    max_loading: float,
    cands: np.ndarray,
    zone_threshold: float = 0.05,
) -> tuple[SlotRisk, dict[tuple[int, int], float]]:
    rng = np.random.default_rng([seed, slot])
    kwargs: dict[str, float] = dict(
        load_sigma_rel=unc.load_sigma_rel, gen_sigma_rel=unc.gen_sigma_rel,
        load_scale=load_scale, gen_scale=gen_scale, correlation=unc.correlation,
    )
    s = sample_injections(model, n_scenarios, rng, **kwargs)
    flow = solve_batch(model, s)
    viol = violations(model, flow.v, flow.converged, max_loading)
    p_before = float(viol.any().mean())
    forecast = model.s_injection_pu(load_scale, gen_scale)
    sens = sensitivities(model, forecast, cands)
    short_before = shortfall_kw(viol, sens)
    alpha = 1.0 - epsilon
    flex: dict[tuple[int, int], float] = {}
    unresolved = False
    viol_after = viol
    if p_before > epsilon:
        zs = zones(split_problems(viol, sens), rel_threshold=zone_threshold)
        eps_z = epsilon / max(len(zs), 1)
        for z in zs:
            need = z.need_mw()  # (B_z, K)
            q = np.quantile(need, 1.0 - eps_z, axis=1, method="higher")
            j = int(np.argmin(q))
            if not np.isfinite(q[j]):
                unresolved = True
                continue
            if q[j] <= 0:
                continue
            pos = int(sens.buses[z.buses[j]])
            key = (pos, int(z.direction))
            flex[key] = max(flex.get(key, 0.0), float(q[j]))
        best: tuple[float, dict[tuple[int, int], float], object] | None = None
        for _ in range(15):
            s_flex = s + _flex_injection(model, flex)[:, None]
            f2 = solve_batch(model, s_flex)
            v_try = violations(model, f2.v, f2.converged, max_loading)
            p_try = float(v_try.any().mean())
            if best is None or p_try < best[0]:
                best = (p_try, dict(flex), v_try)
            elif p_try > best[0]:
                break  # more flexibility makes it worse (e.g. overvoltage): keep the best
            if p_try <= epsilon or not flex:
                break
            flex = {k: 1.1 * v for k, v in flex.items()}
        if best is None or best[0] >= p_before:
            flex, unresolved = {}, True  # flexibility at these buses does not help
        else:
            p_best, flex, v_best = best
            viol_after = v_best  # type: ignore[assignment]
            unresolved = unresolved or p_best > epsilon
    p_after = float(viol_after.any().mean())
    short_after = shortfall_kw(viol_after, sens)
    # Out of sample: fresh scenarios, the same flexibility.
    rng_oos = np.random.default_rng([seed, slot, 1])
    s_oos = sample_injections(model, n_out_of_sample, rng_oos, **kwargs)
    s_oos = s_oos + _flex_injection(model, flex)[:, None]
    f3 = solve_batch(model, s_oos)
    hits = int(violations(model, f3.v, f3.converged, max_loading).any().sum())
    lo, hi = wilson_interval(hits, n_out_of_sample)
    eens_b = float(short_before.mean()) / 1000 * slot_hours
    eens_a = float(short_after.mean()) / 1000 * slot_hours
    cvar_b = var_cvar(short_before, alpha)[1] / 1000 * slot_hours
    cvar_a = var_cvar(short_after, alpha)[1] / 1000 * slot_hours
    expected_part = pricing.voll_eur_per_mwh * max(eens_b - eens_a, 0.0)
    premium = pricing.cvar_cost_eur_per_mwh * max(cvar_b - cvar_a, 0.0)
    return SlotRisk(
        slot=slot,
        violation_prob_before=p_before,
        violation_prob_after=p_after,
        violation_prob_out_of_sample=hits / n_out_of_sample,
        out_of_sample_ci=(float(lo), float(hi)),
        flex_kw={(int(model.bus_ids[p]), d): 1000 * mw for (p, d), mw in flex.items()},
        eens_before_mwh=eens_b,
        eens_after_mwh=eens_a,
        cvar_before_mwh=cvar_b,
        cvar_after_mwh=cvar_a,
        avoided_cost_eur=expected_part + premium,
        risk_premium_eur=premium,
        unresolved=unresolved,
    ), flex


@single_blas_thread
def risk_flex_requests(
    model: NetworkModel,
    *,
    round_id: int,
    load_scale: Sequence[float] | FloatArray,
    gen_scale: Sequence[float] | FloatArray | None = None,
    slots: Sequence[int] | None = None,
    slot_seconds: int = 900,
    epsilon: float = 0.05,
    n_scenarios: int = 2000,
    n_out_of_sample: int = 4000,
    seed: int = 0,
    uncertainty: Uncertainty | None = None,
    pricing: RiskPricing | None = None,
    dso: str | None = None,
    max_loading: float = 1.0,
    zone_threshold: float = 0.05,
) -> RiskRequestPlan:
    """FlexRequests that bring every slot's violation probability within ε.

    `load_scale[i]`/`gen_scale[i]` scale the net's loads and generation in slot `slots[i]`
    (default slots 0..n-1); `slot_scales` gives them from the shipped daily profiles. One
    request per bus and direction, covering the slots where that bus is needed. A bus serves a
    zone's constraint if its effect is at least `zone_threshold` of the best bus's (`zones`); a
    higher threshold splits far-apart problems (two feeder ends) into one request each.
    """
    if not 0.0 < epsilon < 0.5:
        raise InputError("epsilon", f"must be in (0, 0.5), got {epsilon!r}")
    ls = np.asarray(load_scale, dtype=float)
    gs = np.ones_like(ls) if gen_scale is None else np.asarray(gen_scale, dtype=float)
    sl = list(range(ls.size)) if slots is None else [int(x) for x in slots]
    if ls.ndim != 1 or ls.size == 0:
        raise InputError("load_scale", "must be a non-empty sequence, one value per slot")
    if gs.shape != ls.shape or len(sl) != ls.size:
        raise InputError("gen_scale", f"needs one value per slot ({ls.size})")
    for name, arr in (("load_scale", ls), ("gen_scale", gs)):
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise InputError(name, "values must be finite and non-negative")
    if any(x < 0 for x in sl) or len(set(sl)) != len(sl):
        raise InputError("slots", "must be distinct non-negative slot indices")
    if n_scenarios < 100 or n_out_of_sample < 100:
        raise InputError("n_scenarios", "at least 100 scenarios are needed in and out of sample")
    if not 0.0 < zone_threshold <= 1.0:
        raise InputError("zone_threshold", f"must be in (0, 1], got {zone_threshold!r}")
    if slot_seconds <= 0:
        raise InputError("slot_seconds", f"must be positive, got {slot_seconds}")
    unc = uncertainty or Uncertainty()
    price = pricing or RiskPricing()
    hours = slot_seconds / 3600.0
    cands = candidate_buses(model)
    slot_results: list[SlotRisk] = []
    for i, slot in enumerate(sl):
        res, _ = _plan_slot(
            model, slot, float(ls[i]), float(gs[i]), epsilon=epsilon, n_scenarios=n_scenarios,
            n_out_of_sample=n_out_of_sample, seed=seed, unc=unc, pricing=price, slot_hours=hours,
            max_loading=max_loading, cands=cands, zone_threshold=zone_threshold,
        )
        slot_results.append(res)
    # One request per (bus, direction); avoided cost shared in proportion to the volumes.
    per_key: dict[tuple[int, int], dict[str, list[float]]] = {}
    for res in slot_results:
        total_kw = sum(res.flex_kw.values())
        for key, kw in res.flex_kw.items():
            share = kw / total_kw if total_kw > 0 else 0.0
            acc = per_key.setdefault(key, {"slot": [], "kw": [], "cost": [], "premium": []})
            acc["slot"].append(res.slot)
            acc["kw"].append(kw)
            acc["cost"].append(share * res.avoided_cost_eur)
            acc["premium"].append(share * res.risk_premium_eur)
    requests: list[RiskFlexRequest] = []
    for (bus, direction), acc in sorted(per_key.items()):
        kws = tuple(float(np.ceil(k * 1000) / 1000) for k in acc["kw"])
        energy = sum(kws) / 1000 * hours
        cost = float(sum(acc["cost"]))
        prem = float(sum(acc["premium"]))
        cap = min(cost / energy, price.max_price_eur_per_mwh) if energy > 0 else 0.0
        cap = max(float(np.floor(cap * 100) / 100), 0.01)
        req = FlexRequest(
            order_id=f"risk-r{round_id}-b{bus}-{'up' if direction == Direction.UP else 'down'}",
            dso=dso,
            round_id=round_id,
            bus=bus,
            direction=Direction(direction),
            slots=tuple(int(x) for x in acc["slot"]),
            kw=kws,
            price_cap_eur_per_mwh=cap,
        )
        requests.append(RiskFlexRequest(
            request=req,
            energy_mwh=energy,
            avoided_cost_eur=cost,
            expected_value_eur_per_mwh=(cost - prem) / energy if energy > 0 else 0.0,
            risk_premium_eur_per_mwh=prem / energy if energy > 0 else 0.0,
        ))
    return RiskRequestPlan(epsilon, n_scenarios, tuple(slot_results), tuple(requests))
