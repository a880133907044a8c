"""AC validation of a dispatch with pandapower's Newton-Raphson power flow.

The net's own loads and generators are replaced by one load per node carrying the dispatched
withdrawal of the slot (base load, PV, devices and accepted orders), and `runpp` is run for
every slot. We report the largest difference between the OPF's voltage magnitudes and the AC
ones, the largest line/transformer loading, the extreme voltages, and flag the slots where a
limit is violated beyond a tolerance.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandapower as pp

from flexgrid.errors import SolverError
from flexgrid.grid.topology import GridView

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ACReport:
    slots: tuple[int, ...]
    max_v_error_pu: float | None  # largest |V_opf - V_ac| (None when the formulation has no voltages)
    max_loading_percent: float
    v_min_pu: float
    v_max_pu: float
    flags: tuple[str, ...] = field(default=())
    loading_percent: FloatArray | None = None  # branch x slot (lines then trafos, AC)

    @property
    def ok(self) -> bool:
        return not self.flags


def _prepared(net: pp.pandapowerNet, view: GridView) -> tuple[pp.pandapowerNet, npt.NDArray[np.int64]]:
    work = copy.deepcopy(net)
    for table in ("load", "sgen", "gen", "storage"):
        df = getattr(work, table)
        if len(df):
            df["in_service"] = False
    nodes = np.flatnonzero(view.bus_of_node >= 0)
    idx = [pp.create_load(work, bus=int(view.bus_of_node[n]), p_mw=0.0, q_mvar=0.0, name=f"flexgrid node {n}")
           for n in nodes]
    return work, np.asarray(idx, dtype=np.int64)


def validate_ac(net: pp.pandapowerNet, view: GridView, withdrawal_p_mw: FloatArray, withdrawal_q_mvar: FloatArray,
                v_opf_pu: FloatArray | None = None, *, slots: Sequence[int] | None = None, v_tol_pu: float = 0.005,
                loading_tol_percent: float = 1.0) -> ACReport:
    """Run `runpp` on each slot's withdrawal and compare (see the module docstring)."""
    work, load_idx = _prepared(net, view)
    nodes = np.flatnonzero(view.bus_of_node >= 0)
    buses = view.bus_of_node[nodes]
    t_all = withdrawal_p_mw.shape[1]
    chosen = tuple(range(t_all)) if slots is None else tuple(int(s) for s in slots)
    max_err = 0.0
    max_load = 0.0
    vmin, vmax = np.inf, -np.inf
    flags: list[str] = []
    loads: list[FloatArray] = []
    lim_lo = view.v_min_pu[nodes] - v_tol_pu
    lim_hi = view.v_max_pu[nodes] + v_tol_pu
    for s in chosen:
        work.load.loc[load_idx, "p_mw"] = withdrawal_p_mw[nodes, s]
        work.load.loc[load_idx, "q_mvar"] = withdrawal_q_mvar[nodes, s]
        try:
            # numba's first compilation costs seconds: worth it only for large nets
            pp.runpp(work, init="results" if s != chosen[0] else "auto", numba=view.n_node > 400)
        except pp.LoadflowNotConverged as exc:
            raise SolverError("ac_not_converged", f"pandapower runpp did not converge in slot {s}") from exc
        vm = work.res_bus.vm_pu.loc[buses].to_numpy()
        if v_opf_pu is not None:
            max_err = max(max_err, float(np.max(np.abs(vm - v_opf_pu[nodes, s]))))
        line_l = work.res_line.loading_percent.to_numpy() if len(work.line) else np.zeros(0)
        trafo_l = work.res_trafo.loading_percent.to_numpy() if len(work.trafo) else np.zeros(0)
        ld = np.nan_to_num(np.concatenate([line_l, trafo_l]))
        loads.append(ld)
        worst = float(ld.max(initial=0.0))
        max_load = max(max_load, worst)
        vmin, vmax = min(vmin, float(vm.min())), max(vmax, float(vm.max()))
        low = np.flatnonzero(vm < lim_lo)
        high = np.flatnonzero(vm > lim_hi)
        if len(low):
            flags.append(f"slot {s}: voltage {vm[low].min():.4f} pu at bus {int(buses[low[np.argmin(vm[low])]])} "
                         f"below its limit")
        if len(high):
            flags.append(f"slot {s}: voltage {vm[high].max():.4f} pu at bus {int(buses[high[np.argmax(vm[high])]])} "
                         f"above its limit")
        max_pct = _max_loading_limits(work)
        over = np.flatnonzero(ld > max_pct + loading_tol_percent)
        if len(over):
            k = over[np.argmax(ld[over])]
            n_line = len(line_l)
            what = f"line {int(work.line.index[k])}" if k < n_line else f"trafo {int(work.trafo.index[k - n_line])}"
            flags.append(f"slot {s}: {what} loaded {ld[k]:.1f}%")
    return ACReport(chosen, max_err if v_opf_pu is not None else None, max_load, vmin, vmax, tuple(flags),
                    np.column_stack(loads) if loads else None)


def _max_loading_limits(net: pp.pandapowerNet) -> FloatArray:
    parts = []
    for table in ("line", "trafo"):
        df = getattr(net, table)
        if len(df) == 0:
            continue
        if "max_loading_percent" in df:
            parts.append(np.nan_to_num(df.max_loading_percent.to_numpy(dtype=float), nan=100.0))
        else:
            parts.append(np.full(len(df), 100.0))
    return np.concatenate(parts) if parts else np.zeros(0)
