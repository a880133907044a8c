"""A compact, array-based view of a pandapower net for fast estimation and risk computations.

pandapower builds the admittances (`to_ppc` + `makeYbus`); this module keeps them as dense
numpy arrays with one row per branch, so that the admittance matrix of any switching state
(an outage, a closed tie switch) is a cheap sum of branch stamps. Tie switches (lines out of
service or behind an open line switch) are part of the model with status 0.

Conventions: per unit on the net's `sn_mva`; injections positive into the bus (generation
minus load); bus and branch positions are the model's, `bus_ids`/`branch_element` map back to
pandapower indices.

Several external grids are supported (e.g. mv_oberrhein's two HV/MV substations): each is a slack
bus with its set voltage magnitude and angle (as in pandapower's power flow and state estimation);
the first in-service one is `slack`, the angle reference, and `slacks` lists them all.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandapower as pp
from pandapower.auxiliary import _add_ppc_options
from pandapower.powerflow import _pd2ppc
from pandapower.pypower import idx_brch, idx_bus
from pandapower.pypower.makeYbus import makeYbus

from flexgrid.errors import InputError

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SQRT3 = float(np.sqrt(3.0))


@dataclass(frozen=True)
class NetworkModel:
    """Arrays describing one pandapower net (all tie switches included, with status 0)."""

    name: str
    base_mva: float
    bus_ids: IntArray  # pandapower bus index of each model bus (one representative)
    bus_of_pd: dict[int, int]  # pandapower bus index -> model bus position
    vn_kv: FloatArray
    vm_min_pu: FloatArray
    vm_max_pu: FloatArray
    slack: int  # the first external grid's bus: the angle reference
    v_slack: complex
    slacks: IntArray  # every external grid's bus (slack first), voltages held at `v_slacks`
    v_slacks: ComplexArray
    f: IntArray  # from bus of each branch
    t: IntArray  # to bus of each branch
    yff: ComplexArray
    yft: ComplexArray
    ytf: ComplexArray
    ytt: ComplexArray
    y_shunt: ComplexArray  # per bus
    base_status: BoolArray  # in operation in the net as given
    is_tie: BoolArray  # normally open, may be closed for restoration
    branch_kind: tuple[Literal["line", "trafo"], ...]
    branch_element: IntArray  # pandapower line / trafo index
    length_km: FloatArray  # 0 for transformers
    i_rated_f_pu: FloatArray  # rated current at the from end, pu of the from bus base
    i_rated_t_pu: FloatArray
    load_p_pu: FloatArray  # forecast (as in the net) load per bus, consumption positive
    load_q_pu: FloatArray
    gen_p_pu: FloatArray  # static generation (sgen) per bus, injection positive
    gen_q_pu: FloatArray
    load_ids_per_bus: dict[int, list[int]] = field(default_factory=dict)

    @property
    def n_bus(self) -> int:
        return int(self.bus_ids.size)

    @property
    def n_branch(self) -> int:
        return int(self.f.size)

    @property
    def is_slack(self) -> BoolArray:
        out = np.zeros(self.n_bus, dtype=bool)
        out[self.slacks] = True
        return out

    def s_injection_pu(self, load_scale: float = 1.0, gen_scale: float = 1.0) -> ComplexArray:
        """Net complex injection per bus (generation minus load) for uniform scalings."""
        p = gen_scale * self.gen_p_pu - load_scale * self.load_p_pu
        q = gen_scale * self.gen_q_pu - load_scale * self.load_q_pu
        return (p + 1j * q).astype(np.complex128)

    def ybus(self, status: BoolArray | None = None) -> ComplexArray:
        """Dense bus admittance matrix for a branch status vector (default: the base state)."""
        st = self.base_status if status is None else status
        n = self.n_bus
        y = np.zeros((n, n), dtype=np.complex128)
        on = np.flatnonzero(st)
        f, t = self.f[on], self.t[on]
        np.add.at(y, (f, f), self.yff[on])
        np.add.at(y, (f, t), self.yft[on])
        np.add.at(y, (t, f), self.ytf[on])
        np.add.at(y, (t, t), self.ytt[on])
        y[np.diag_indices(n)] += self.y_shunt
        return y

    def branch_matrices(self, status: BoolArray | None = None) -> tuple[ComplexArray, ComplexArray]:
        """Dense Yf, Yt (branch x bus), with rows of open branches set to zero."""
        st = self.base_status if status is None else status
        m, n = self.n_branch, self.n_bus
        yf = np.zeros((m, n), dtype=np.complex128)
        yt = np.zeros((m, n), dtype=np.complex128)
        rows = np.arange(m)
        s = st.astype(np.float64)
        yf[rows, self.f] += self.yff * s
        yf[rows, self.t] += self.yft * s
        yt[rows, self.f] += self.ytf * s
        yt[rows, self.t] += self.ytt * s
        return yf, yt

    def energised(self, status: BoolArray | None = None) -> BoolArray:
        """Buses connected to a slack bus (an external grid) through branches in operation."""
        st = self.base_status if status is None else status
        n = self.n_bus
        adj: list[list[int]] = [[] for _ in range(n)]
        for k in np.flatnonzero(st):
            a, b = int(self.f[k]), int(self.t[k])
            adj[a].append(b)
            adj[b].append(a)
        seen = np.zeros(n, dtype=bool)
        seen[self.slacks] = True
        stack = [int(b) for b in self.slacks]
        while stack:
            a = stack.pop()
            for b in adj[a]:
                if not seen[b]:
                    seen[b] = True
                    stack.append(b)
        return seen

    def bus_position(self, bus: int, field_name: str = "bus") -> int:
        """Model position of a pandapower bus index; an unknown bus is an InputError."""
        try:
            return self.bus_of_pd[int(bus)]
        except (KeyError, ValueError, TypeError):
            raise InputError(field_name, f"bus {bus!r} is not an in-service bus of net {self.name}") from None

    def line_position(self, line: int, field_name: str = "line") -> int:
        """Model branch position of a pandapower line index."""
        hits = np.flatnonzero((self.branch_element == int(line)) & (np.array(self.branch_kind) == "line"))
        if hits.size == 0:
            raise InputError(field_name, f"line {line!r} is not a line of net {self.name}")
        return int(hits[0])

    def feeding_branch(self, bus_pos: int) -> int | None:
        """The in-operation branch that feeds a bus from the slack side (radial view), if any."""
        parent = self.parents()
        return parent[bus_pos]

    def parents(self, status: BoolArray | None = None) -> list[int | None]:
        """For each bus, the branch through which a breadth-first search from the slack buses reached it."""
        st = self.base_status if status is None else status
        n = self.n_bus
        adj: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for kk in np.flatnonzero(st):
            a, b = int(self.f[kk]), int(self.t[kk])
            adj[a].append((b, int(kk)))
            adj[b].append((a, int(kk)))
        parent: list[int | None] = [None] * n
        seen = np.zeros(n, dtype=bool)
        seen[self.slacks] = True
        queue = [int(b) for b in self.slacks]
        while queue:
            nxt: list[int] = []
            for a in queue:
                for b, k in adj[a]:
                    if not seen[b]:
                        seen[b] = True
                        parent[b] = k
                        nxt.append(b)
            queue = nxt
        return parent

    def loading_fraction(self, v: ComplexArray, status: BoolArray | None = None) -> FloatArray:
        """Branch loading (1.0 = rated) for voltages `v` of shape (n_bus,) or (n_bus, K)."""
        yf, yt = self.branch_matrices(status)
        i_f = np.abs(yf @ v)
        i_t = np.abs(yt @ v)
        if v.ndim == 1:
            return np.maximum(i_f / self.i_rated_f_pu, i_t / self.i_rated_t_pu)
        return np.maximum(i_f / self.i_rated_f_pu[:, None], i_t / self.i_rated_t_pu[:, None])


def _close_ties(net: pp.pandapowerNet) -> tuple[pp.pandapowerNet, set[int], set[int]]:
    """A copy of `net` with every normally-open line closed; returns the copy and tie lines."""
    closed = copy.deepcopy(net)
    bus_in = set(closed.bus.index[closed.bus.in_service])
    ties: set[int] = set()
    for li, row in closed.line.iterrows():
        if not row.in_service and row.from_bus in bus_in and row.to_bus in bus_in:
            ties.add(int(li))
            closed.line.at[li, "in_service"] = True
    sw = closed.switch
    if len(sw):
        open_line_sw = sw[(sw.et == "l") & (~sw.closed.astype(bool))]
        for si, row in open_line_sw.iterrows():
            ties.add(int(row.element))
            closed.switch.at[si, "closed"] = True
    open_trafo: set[int] = set()
    if len(sw):
        for si, row in sw[(sw.et == "t") & (~sw.closed.astype(bool))].iterrows():
            open_trafo.add(int(row.element))
            closed.switch.at[si, "closed"] = True
    return closed, ties, open_trafo


def build_model(net: pp.pandapowerNet, name: str = "net") -> NetworkModel:
    """Build the array model of a pandapower net (balanced, PQ injections, one or more external
    grids: each a slack bus at its set voltage, the first the angle reference)."""
    eg = net.ext_grid[net.ext_grid.in_service.astype(bool)]
    if len(eg) == 0:
        raise InputError("net.ext_grid", "no in-service external grid: the net needs at least one (the substation)")
    if len(net.gen) and net.gen.in_service.any():
        raise InputError("net.gen", "voltage-controlled generators are not supported; model them as sgen")
    if len(net.line) == 0 and len(net.trafo) == 0:
        raise InputError("net.line", "the net has no lines or transformers")

    closed, ties, open_trafos = _close_ties(net)
    closed["_options"] = {}
    _add_ppc_options(
        closed,
        calculate_voltage_angles=True,
        trafo_model="t",
        check_connectivity=False,
        mode="pf",
        switch_rx_ratio=2,
        init_vm_pu="flat",
        init_va_degree="flat",
        enforce_q_lims=False,
        enforce_p_lims=False,
        recycle=None,
        voltage_depend_loads=False,
    )
    ppc, _ = _pd2ppc(closed)
    lookups = closed._pd2ppc_lookups
    bus_lookup = np.asarray(lookups["bus"])
    base_mva = float(ppc["baseMVA"])
    branch = ppc["branch"].copy()
    branch[:, idx_brch.BR_STATUS] = 1.0
    bus = ppc["bus"]
    _, yf_sp, yt_sp = makeYbus(base_mva, bus, branch)
    yf = yf_sp.tocsr()
    yt = yt_sp.tocsr()

    # Model buses: ppc buses that belong to in-service pandapower buses.
    pd_in = [int(b) for b in net.bus.index[net.bus.in_service.astype(bool)]]
    ppc_of_pd = {b: int(bus_lookup[b]) for b in pd_in}
    used_ppc = sorted(set(ppc_of_pd.values()))
    pos_of_ppc = {p: i for i, p in enumerate(used_ppc)}
    bus_of_pd = {b: pos_of_ppc[p] for b, p in ppc_of_pd.items()}
    rep: dict[int, int] = {}
    for b, p in ppc_of_pd.items():
        rep.setdefault(pos_of_ppc[p], b)
    n = len(used_ppc)
    bus_ids = np.array([rep[i] for i in range(n)], dtype=np.int64)

    # Branches: lines and transformers in the ppc, in pandapower order.
    kinds: list[Literal["line", "trafo"]] = []
    elements: list[int] = []
    rows: list[int] = []
    is_tie: list[bool] = []
    status: list[bool] = []
    length: list[float] = []
    rated_f: list[float] = []
    rated_t: list[float] = []
    br_lookup = lookups["branch"]
    if "line" in br_lookup:
        start, _ = br_lookup["line"]
        for pos, (li, row) in enumerate(closed.line.iterrows()):
            if not row.in_service:
                continue
            if row.from_bus not in bus_of_pd or row.to_bus not in bus_of_pd:
                continue
            kinds.append("line")
            elements.append(int(li))
            rows.append(start + pos)
            tie = int(li) in ties
            is_tie.append(tie)
            status.append(not tie)
            length.append(float(row.length_km))
            i_rated_ka = float(row.max_i_ka) * float(row.df) * float(row.parallel)
            vn = float(net.bus.at[row.from_bus, "vn_kv"])
            i_pu = i_rated_ka * SQRT3 * vn / base_mva
            rated_f.append(i_pu)
            rated_t.append(i_pu)
    if "trafo" in br_lookup:
        start, _ = br_lookup["trafo"]
        for pos, (ti, row) in enumerate(closed.trafo.iterrows()):
            if not row.in_service:
                continue
            kinds.append("trafo")
            elements.append(int(ti))
            rows.append(start + pos)
            is_tie.append(False)
            status.append(int(ti) not in open_trafos)
            length.append(0.0)
            vn_hv_bus = float(net.bus.at[row.hv_bus, "vn_kv"])
            vn_lv_bus = float(net.bus.at[row.lv_bus, "vn_kv"])
            rated_f.append(float(row.sn_mva) * vn_hv_bus / (base_mva * float(row.vn_hv_kv)))
            rated_t.append(float(row.sn_mva) * vn_lv_bus / (base_mva * float(row.vn_lv_kv)))
    if not rows:
        raise InputError("net", "no in-service branches")
    r = np.array(rows)
    f_ppc = branch[r, idx_brch.F_BUS].real.astype(int)
    t_ppc = branch[r, idx_brch.T_BUS].real.astype(int)
    f = np.array([pos_of_ppc[int(p)] for p in f_ppc], dtype=np.int64)
    t = np.array([pos_of_ppc[int(p)] for p in t_ppc], dtype=np.int64)
    yff = np.asarray(yf[r, f_ppc]).ravel().astype(np.complex128)
    yft = np.asarray(yf[r, t_ppc]).ravel().astype(np.complex128)
    ytf = np.asarray(yt[r, f_ppc]).ravel().astype(np.complex128)
    ytt = np.asarray(yt[r, t_ppc]).ravel().astype(np.complex128)
    # Bus shunts, as makeYbus adds them (GS, BS in MW/MVAr at 1 pu).
    y_sh_ppc = np.asarray(bus[:, idx_bus.GS] + 1j * bus[:, idx_bus.BS]) / base_mva
    y_shunt = np.array([y_sh_ppc[p] for p in used_ppc], dtype=np.complex128)

    vn_kv = np.array([float(net.bus.at[b, "vn_kv"]) for b in bus_ids])
    vm_min = np.full(n, 0.95)
    vm_max = np.full(n, 1.05)
    if "min_vm_pu" in net.bus.columns:
        vals = net.bus.loc[bus_ids, "min_vm_pu"].to_numpy(dtype=float)
        vm_min = np.where(np.isfinite(vals), vals, vm_min)
    if "max_vm_pu" in net.bus.columns:
        vals = net.bus.loc[bus_ids, "max_vm_pu"].to_numpy(dtype=float)
        vm_max = np.where(np.isfinite(vals), vals, vm_max)

    load_p = np.zeros(n)
    load_q = np.zeros(n)
    gen_p = np.zeros(n)
    gen_q = np.zeros(n)
    load_ids: dict[int, list[int]] = {}
    for li, row in net.load.iterrows():
        if not row.in_service or row.bus not in bus_of_pd:
            continue
        k = bus_of_pd[int(row.bus)]
        load_p[k] += float(row.p_mw) * float(row.scaling) / base_mva
        load_q[k] += float(row.q_mvar) * float(row.scaling) / base_mva
        load_ids.setdefault(k, []).append(int(li))
    for _, row in net.sgen.iterrows():
        if not row.in_service or row.bus not in bus_of_pd:
            continue
        k = bus_of_pd[int(row.bus)]
        gen_p[k] += float(row.p_mw) * float(row.scaling) / base_mva
        gen_q[k] += float(row.q_mvar) * float(row.scaling) / base_mva
    if "storage" in net and len(net.storage):
        for _, row in net.storage.iterrows():
            if row.in_service and row.bus in bus_of_pd:
                k = bus_of_pd[int(row.bus)]
                load_p[k] += float(row.p_mw) * float(row.scaling) / base_mva
                load_q[k] += float(row.q_mvar) * float(row.scaling) / base_mva

    slack_list: list[int] = []
    v_list: list[complex] = []
    for _, e in eg.iterrows():
        if int(e.bus) not in bus_of_pd:
            raise InputError("net.ext_grid", f"external grid {e['name']!r} is at bus {int(e.bus)}, which is out of service")
        pos = bus_of_pd[int(e.bus)]
        v_e = complex(float(e.vm_pu) * np.exp(1j * np.deg2rad(float(e.va_degree))))
        if pos in slack_list:  # two external grids on one bus: pandapower needs them equal too
            if abs(v_list[slack_list.index(pos)] - v_e) > 1e-9:
                raise InputError("net.ext_grid", f"two external grids at bus {int(e.bus)} set different voltages")
            continue
        slack_list.append(pos)
        v_list.append(v_e)
        vm_min[pos] = min(vm_min[pos], float(e.vm_pu))
        vm_max[pos] = max(vm_max[pos], float(e.vm_pu))
    slack = slack_list[0]
    v_slack = v_list[0]

    return NetworkModel(
        name=name,
        base_mva=base_mva,
        bus_ids=bus_ids,
        bus_of_pd=bus_of_pd,
        vn_kv=vn_kv,
        vm_min_pu=vm_min,
        vm_max_pu=vm_max,
        slack=slack,
        v_slack=complex(v_slack),
        slacks=np.array(slack_list, dtype=np.int64),
        v_slacks=np.array(v_list, dtype=np.complex128),
        f=f,
        t=t,
        yff=yff,
        yft=yft,
        ytf=ytf,
        ytt=ytt,
        y_shunt=y_shunt,
        base_status=np.array(status, dtype=bool),
        is_tie=np.array(is_tie, dtype=bool),
        branch_kind=tuple(kinds),
        branch_element=np.array(elements, dtype=np.int64),
        length_km=np.array(length),
        i_rated_f_pu=np.array(rated_f),
        i_rated_t_pu=np.array(rated_t),
        load_p_pu=load_p,
        load_q_pu=load_q,
        gen_p_pu=gen_p,
        gen_q_pu=gen_q,
        load_ids_per_bus=load_ids,
    )
