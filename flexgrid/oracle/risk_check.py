"""The oracle's risk check: a cleared result must not create a grid violation that did not exist
without it, nor make an existing one worse; the margins left are reported.

Pure computation on two AC validation reports of the same slots (`flexgrid.opf.validate`):
`before` (the round's base load and PV, no flexibility) and `after` (with the cleared result).

- Thermal: per branch and slot from the reports' loading tables; a branch above 100 % + 1 %
  (the validation's tolerance) after clearing is new if it was not above before, worsened if it was
  and rose by more than 1 %.
- Voltage: the validation reports the worst bus per slot and side (low/high) beyond its limit
  + 0.005 pu; a slot flagged after and not before is a new violation, flagged in both and worse by
  more than 0.001 pu is worsened.
- Margins (after clearing): `voltageLowPu` = lowest voltage − the tightest lower limit,
  `voltageHighPu` = the tightest upper limit − highest voltage, `thermalPercent` = 100 − the
  largest loading. Negative means a limit is exceeded.
- Forecast-error margin (`load_margin_percent`, computed by the oracle for the most loaded slot,
  before and after): the largest uniform increase of the base load the AC power flow takes without
  a violation, the cleared flexibility held fixed.
- N-1 margin (`n1_summary`, same slot, before and after): single outages of lines and transformers
  with tie-switch restoration (`flexgrid.risk.n_minus_1`); outages that still leave a violation,
  the flexibility they would need, and EENS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flexgrid.errors import SolverError
from flexgrid.grid.topology import GridView
from flexgrid.monitoring.network import NetworkModel
from flexgrid.opf.validate import ACReport, validate_ac
from flexgrid.risk.contingency import n_minus_1

THERMAL_LIMIT_PERCENT = 100.0
THERMAL_TOL_PERCENT = 1.0
VOLTAGE_WORSE_TOL_PU = 0.001

_VOLTAGE_FLAG = re.compile(r"slot (\d+): voltage ([0-9.]+) pu at bus (\d+) (below|above)")

METHOD = (
    "AC power flow (pandapower runpp) per slot without and with the cleared result; thermal per "
    "branch and slot beyond 101 %, voltage per slot and side beyond the bus limits + 0.005 pu"
)


@dataclass(frozen=True)
class RiskCheck:
    ok: bool
    new_violations: list[str] = field(default_factory=list)
    worsened: list[str] = field(default_factory=list)
    margins: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "newViolations": self.new_violations,
            "worsened": self.worsened,
            "margins": self.margins,
            "method": METHOD,
        }


def _voltage_flags(report: ACReport) -> dict[tuple[int, str], tuple[float, int]]:
    out: dict[tuple[int, str], tuple[float, int]] = {}
    for flag in report.flags:
        m = _VOLTAGE_FLAG.match(flag)
        if m:
            out[(int(m.group(1)), m.group(4))] = (float(m.group(2)), int(m.group(3)))
    return out


def risk_check(before: ACReport, after: ACReport, view: GridView) -> RiskCheck:
    """Compare `after` with `before` (see the module docstring)."""
    if tuple(before.slots) != tuple(after.slots):
        raise ValueError(f"the reports cover different slots: {before.slots} and {after.slots}")
    new: list[str] = []
    worse: list[str] = []
    if before.loading_percent is not None and after.loading_percent is not None:
        limit = THERMAL_LIMIT_PERCENT + THERMAL_TOL_PERCENT
        b, a = before.loading_percent, after.loading_percent
        for branch, col in zip(*np.nonzero(a > limit), strict=True):
            slot = after.slots[int(col)]
            if b[branch, col] <= limit:
                new.append(f"slot {slot}: branch {int(branch)} loaded {a[branch, col]:.1f}% (was {b[branch, col]:.1f}%)")
            elif a[branch, col] > b[branch, col] + THERMAL_TOL_PERCENT:
                worse.append(f"slot {slot}: branch {int(branch)} loaded {a[branch, col]:.1f}% (was {b[branch, col]:.1f}%)")
    vb, va = _voltage_flags(before), _voltage_flags(after)
    for (slot, side), (v_after, bus) in sorted(va.items()):
        what = f"slot {slot}: voltage {v_after:.4f} pu at bus {bus} {side} its limit"
        if (slot, side) not in vb:
            new.append(what)
            continue
        v_before = vb[(slot, side)][0]
        if (side == "below" and v_after < v_before - VOLTAGE_WORSE_TOL_PU) or (
            side == "above" and v_after > v_before + VOLTAGE_WORSE_TOL_PU
        ):
            worse.append(f"{what} (was {v_before:.4f} pu)")
    nodes = view.bus_of_node >= 0
    margins = {
        "voltageLowPu": round(float(after.v_min_pu - np.min(view.v_min_pu[nodes])), 6),
        "voltageHighPu": round(float(np.max(view.v_max_pu[nodes]) - after.v_max_pu), 6),
        "thermalPercent": round(float(THERMAL_LIMIT_PERCENT - after.max_loading_percent), 4),
    }
    return RiskCheck(ok=not new and not worse, new_violations=new, worsened=worse, margins=margins)


def ac_json(report: ACReport | None) -> dict[str, Any] | None:
    """An AC report as publication JSON."""
    if report is None:
        return None
    return {
        "slots": list(report.slots),
        "vMinPu": round(float(report.v_min_pu), 6),
        "vMaxPu": round(float(report.v_max_pu), 6),
        "maxLoadingPercent": round(float(report.max_loading_percent), 4),
        "maxVErrorPu": None if report.max_v_error_pu is None else round(float(report.max_v_error_pu), 9),
        "flags": list(report.flags),
    }




LOAD_MARGIN_MAX = 1.0  # search up to +100 % load
LOAD_MARGIN_STEP = 0.05  # in steps of 5 %
_SLOT_FLAG = re.compile(r"slot (\d+):")


def load_margin_percent(
    net: Any,
    view: GridView,
    withdrawal_p_mw: np.ndarray,
    withdrawal_q_mvar: np.ndarray,
    load_p_mw: np.ndarray,
    load_q_mvar: np.ndarray,
    slot: int,
) -> float:
    """Forecast-error margin of one slot: the largest uniform increase of the base load (percent,
    in steps of 5, at most 100) on top of `withdrawal` (node × slot) for which the AC power flow
    shows no voltage or thermal violation at that step and every smaller one; 0 when the slot is
    violated already. One `validate_ac` run whose columns are the load steps."""
    top = LOAD_MARGIN_MAX
    for _ in range(4):
        steps = np.arange(0.0, top + 1e-9, LOAD_MARGIN_STEP * top / LOAD_MARGIN_MAX)
        p = withdrawal_p_mw[:, [slot]] + load_p_mw[:, [slot]] * steps[None, :]
        q = withdrawal_q_mvar[:, [slot]] + load_q_mvar[:, [slot]] * steps[None, :]
        try:
            report = validate_ac(net, view, p, q)
        except SolverError:  # no AC solution at the largest steps: search a smaller range
            top /= 2
            continue
        flagged = {int(m.group(1)) for f in report.flags if (m := _SLOT_FLAG.match(f))}
        ok_steps = 0
        while ok_steps < len(steps) and ok_steps not in flagged:
            ok_steps += 1
        return 0.0 if ok_steps == 0 else round(100.0 * float(steps[ok_steps - 1]), 2)
    return 0.0


def stressed_slot(report: ACReport) -> int:
    """The slot with the most loaded branch in an AC report (its first slot without a table)."""
    if report.loading_percent is None or report.loading_percent.size == 0:
        return int(report.slots[0])
    return int(report.slots[int(np.argmax(report.loading_percent.max(axis=0)))])




def n1_summary(
    model: NetworkModel, view: GridView, withdrawal_p_mw: np.ndarray, withdrawal_q_mvar: np.ndarray, slot: int
) -> dict[str, Any]:
    """N-1 of one slot's operating point (`flexgrid.risk.n_minus_1` with tie-switch restoration):
    how many single outages leave a violation after restoration, the flexibility they would need
    and the expected energy not served (from the net's nominal loads)."""
    nodes = np.flatnonzero(view.bus_of_node >= 0)
    index = np.array([model.bus_of_pd[int(view.bus_of_node[n])] for n in nodes], dtype=np.int64)
    s = np.zeros(model.n_bus, dtype=np.complex128)
    np.add.at(s, index, -(withdrawal_p_mw[nodes, slot] + 1j * withdrawal_q_mvar[nodes, slot]) / model.base_mva)
    report = n_minus_1(model, s, keep_options=False)
    violating = [o for o in report.outages if o.violations]
    return {
        "outages": len(report.outages),
        "outagesWithViolations": len(violating),
        "flexNeededKw": round(float(sum(o.flex_needed_kw for o in violating)), 3),
        "eensMwhPerYr": round(float(report.eens_mwh_per_yr), 6),
    }


__all__ = ["METHOD", "RiskCheck", "ac_json", "load_margin_percent", "n1_summary", "risk_check", "stressed_slot"]
