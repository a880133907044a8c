"""The operated network as branches and nodes in per unit, its radiality, and its hash.

pandapower builds the branch model (`_pd2ppc`, run through a DC power flow): buses joined by
closed bus-bus switches are fused into one node, lines behind an open switch end at an
auxiliary node, out-of-service elements are dropped, transformers become pi branches. We keep
its per-unit impedances (on `base_mva`) so that our OPF and pandapower's AC power flow see the
same network, including off-nominal transformer tap ratios (an ideal transformer at the
from end). Phase shifts do not matter to the radial branch-flow models and are ignored.

Which formulations apply: a network is *radial* when every connected component of the
operated network holds exactly one slack (external grid) and is a tree. Branch-flow models
(`socp`, `lindistflow`) need a radial network; `dc` (linearised bus-injection model) and
`copperplate` work on any network.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandapower as pp
from eth_utils import keccak
from pandapower.pypower import idx_brch, idx_bus

from flexgrid.errors import InputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SQRT3 = math.sqrt(3.0)
DEFAULT_V_MIN_PU = 0.90
DEFAULT_V_MAX_PU = 1.10
RADIAL_FORMULATIONS = ("socp", "lindistflow", "sensitivity", "dc", "copperplate")
MESHED_FORMULATIONS = ("dc", "copperplate")


@dataclass(frozen=True)
class GridView:
    """Nodes and branches of the operated network, per unit on `base_mva`.

    Node positions are 0..n_node-1. `node_of_bus` maps every operated pandapower bus to its
    node; `bus_of_node` gives one representative pandapower bus (or -1 for pandapower's
    auxiliary nodes behind open switches). Branches run `from_node -> to_node`; for a radial
    network they are oriented away from the slack (`to_node` is the child).
    """

    name: str
    base_mva: float
    n_node: int
    bus_of_node: IntArray
    node_of_bus: dict[int, int]
    vn_kv: FloatArray
    v_min_pu: FloatArray
    v_max_pu: FloatArray
    slack_nodes: IntArray
    slack_v_pu: FloatArray
    from_node: IntArray
    to_node: IntArray
    r_pu: FloatArray
    x_pu: FloatArray
    g_shunt_pu: FloatArray  # total shunt conductance of the pi model (half at each end)
    b_shunt_pu: FloatArray  # total shunt susceptance of the pi model (half at each end)
    i_max_pu: FloatArray  # current limit (inf when none)
    tap_ratio: FloatArray  # off-nominal ratio of an ideal transformer at the from end (1 for lines)
    branch_kind: tuple[str, ...]  # "line" or "trafo"
    branch_element: IntArray  # pandapower line / trafo index
    node_g_pu: FloatArray  # bus shunts
    node_b_pu: FloatArray
    is_radial: bool
    radial_reason: str
    formulations: tuple[str, ...] = field(default=())

    @property
    def n_branch(self) -> int:
        return len(self.from_node)

    def node(self, bus: int, *, field_name: str = "bus", order_id: str | None = None) -> int:
        """The node of pandapower bus `bus`; `InputError` naming `field_name` if it is not operated."""
        try:
            return self.node_of_bus[int(bus)]
        except (KeyError, ValueError, TypeError):
            raise InputError(
                field_name, f"bus {bus} is not an operated bus of grid {self.name!r}", order_id=order_id
            ) from None

    def incidence(self) -> npt.NDArray[np.float64]:
        """Dense node x branch incidence (+1 at from, -1 at to); small nets only (use `incidence_sparse`)."""
        return np.asarray(self.incidence_sparse().todense())

    def incidence_sparse(self):  # type: ignore[no-untyped-def]
        import scipy.sparse as sp

        b = self.n_branch
        rows = np.concatenate([self.from_node, self.to_node])
        cols = np.concatenate([np.arange(b), np.arange(b)])
        vals = np.concatenate([np.ones(b), -np.ones(b)])
        return sp.csr_matrix((vals, (rows, cols)), shape=(self.n_node, b))

    def path_matrix(self) -> npt.NDArray[np.float64]:
        """Radial only: `M[k, n] = 1` when branch k lies on the path from the slack to node n."""
        if not self.is_radial:
            raise InputError("formulation", f"grid {self.name!r} is not radial: {self.radial_reason}")
        parent_branch = np.full(self.n_node, -1)
        parent_branch[self.to_node] = np.arange(self.n_branch)
        m = np.zeros((self.n_branch, self.n_node))
        for n in range(self.n_node):
            k = parent_branch[n]
            while k >= 0:
                m[k, n] = 1.0
                k = parent_branch[self.from_node[k]]
        return m

    def rebased(self, base_mva: float) -> GridView:
        """The same network in per unit on another power base: impedances scale with the base,
        admittances and current ratings against it. The optimisation models use it to keep their
        numbers near 1 (an LV feeder stored on a 100 MVA base has loads of 1e-4 pu, which costs an
        interior point solver many iterations); the grid-model hash stays the original view's."""
        k = float(base_mva) / self.base_mva
        if k == 1.0:
            return self
        return dataclasses.replace(
            self, base_mva=float(base_mva), r_pu=self.r_pu * k, x_pu=self.x_pu * k, g_shunt_pu=self.g_shunt_pu / k,
            b_shunt_pu=self.b_shunt_pu / k, i_max_pu=self.i_max_pu / k, node_g_pu=self.node_g_pu / k,
            node_b_pu=self.node_b_pu / k)

    def model_hash(self) -> str:
        """`0x` keccak256 of the canonical JSON of this view (impedances rounded to 1e-9 pu)."""
        return grid_model_hash(self)


def _rounded(values: npt.NDArray[np.float64], digits: int = 9) -> list[float | None]:
    return [None if not math.isfinite(v) else round(float(v), digits) for v in values]


def grid_model_hash(view: GridView) -> str:
    """The grid-model hash the chain records: keccak256 over the canonical JSON of the operated
    network (node/bus map, slack, limits, branch impedances and ratings)."""
    buses_of_node: list[list[int]] = [[] for _ in range(view.n_node)]
    for b, n in view.node_of_bus.items():  # one pass (a scan per node costs seconds on 1,000+ buses)
        buses_of_node[n].append(int(b))
    doc = {
        "base_mva": round(view.base_mva, 9),
        "nodes": [sorted(bs) for bs in buses_of_node],
        "vn_kv": _rounded(view.vn_kv),
        "v_min_pu": _rounded(view.v_min_pu),
        "v_max_pu": _rounded(view.v_max_pu),
        "slack": [int(s) for s in view.slack_nodes],
        "slack_v_pu": _rounded(view.slack_v_pu),
        "branches": [
            [
                int(view.from_node[k]),
                int(view.to_node[k]),
                view.branch_kind[k],
                int(view.branch_element[k]),
                *_rounded(
                    np.array(
                        [view.r_pu[k], view.x_pu[k], view.g_shunt_pu[k], view.b_shunt_pu[k], view.i_max_pu[k],
                         view.tap_ratio[k]]
                    )
                ),
            ]
            for k in range(view.n_branch)
        ],
        "shunts": [_rounded(view.node_g_pu), _rounded(view.node_b_pu)],
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return "0x" + keccak(blob).hex()


def _branch_ratings(net: pp.pandapowerNet, kinds: list[str], elements: list[int], base_mva: float,
                    vn_from_kv: FloatArray) -> FloatArray:
    i_max = np.full(len(kinds), np.inf)
    for k, (kind, el) in enumerate(zip(kinds, elements, strict=True)):
        if kind == "line":
            row = net.line.loc[el]
            ka = float(row.max_i_ka) * float(row.get("df", 1.0)) * float(row.get("parallel", 1))
            max_loading = float(row.get("max_loading_percent", 100.0))
            if not math.isfinite(max_loading):
                max_loading = 100.0
            if ka < 1e3:  # pandapower uses 99999 kA for "no limit"
                i_base_ka = base_mva / (SQRT3 * vn_from_kv[k])
                i_max[k] = ka * max_loading / 100.0 / i_base_ka
        else:
            row = net.trafo.loc[el]
            max_loading = float(row.get("max_loading_percent", 100.0))
            if not math.isfinite(max_loading):
                max_loading = 100.0
            sn = float(row.sn_mva) * float(row.get("parallel", 1)) * float(row.get("df", 1.0))
            i_max[k] = sn * max_loading / 100.0 / base_mva
    return i_max


def build_view(net: pp.pandapowerNet, name: str = "net", *, v_min_pu: float | None = None,
               v_max_pu: float | None = None) -> GridView:
    """The operated network of `net` (see the module docstring). Voltage limits come from the
    buses' `min_vm_pu`/`max_vm_pu` where set, else `v_min_pu`/`v_max_pu` (default 0.90/1.10)."""
    work = copy.deepcopy(net)
    if len(work.ext_grid[work.ext_grid.in_service]) == 0:
        raise InputError("net", f"grid {name!r} has no in-service external grid (slack)")
    try:
        pp.rundcpp(work)
    except Exception as exc:
        raise InputError("net", f"pandapower cannot build the branch model of {name!r}: {exc}") from exc
    ppc = work._ppc
    lookups = work._pd2ppc_lookups
    bus_ppc = np.asarray(ppc["bus"].real)
    br = np.asarray(ppc["branch"])
    base_mva = float(ppc["baseMVA"])
    n_ppc = bus_ppc.shape[0]

    # Operated nodes: ppc buses not isolated (type 4).
    active = bus_ppc[:, idx_bus.BUS_TYPE].astype(int) != 4
    node_of_ppc = np.full(n_ppc, -1)
    node_of_ppc[active] = np.arange(int(active.sum()))
    n_node = int(active.sum())

    bus_lookup = lookups["bus"]
    node_of_bus: dict[int, int] = {}
    bus_of_node = np.full(n_node, -1, dtype=np.int64)
    for bus in sorted(int(b) for b in work.bus.index[work.bus.in_service]):
        p = int(bus_lookup[bus])
        if p < 0 or p >= n_ppc or node_of_ppc[p] < 0:
            continue
        n = int(node_of_ppc[p])
        node_of_bus[bus] = n
        if bus_of_node[n] < 0:
            bus_of_node[n] = bus
    vn_kv = bus_ppc[active, idx_bus.BASE_KV].astype(float)

    # Branch element of each ppc row.
    kinds: list[str] = []
    elements: list[int] = []
    rows: list[int] = []
    for kind, table in (("line", work.line), ("trafo", work.trafo)):
        if kind not in lookups["branch"]:
            continue
        start, end = lookups["branch"][kind]
        for offset, el in enumerate(table.index):
            r = start + offset
            if r >= end:
                break
            if br[r, idx_brch.BR_STATUS].real < 0.5:
                continue
            f, t = int(br[r, idx_brch.F_BUS].real), int(br[r, idx_brch.T_BUS].real)
            if node_of_ppc[f] < 0 or node_of_ppc[t] < 0:
                continue
            kinds.append(kind)
            elements.append(int(el))
            rows.append(r)
    if len(lookups["branch"]) > 0 and any(k not in ("line", "trafo") for k in lookups["branch"]):
        others = sorted(k for k in lookups["branch"] if k not in ("line", "trafo"))
        raise InputError("net", f"grid {name!r} has branch kinds the OPF does not model: {others}")
    rows_a = np.array(rows, dtype=np.int64)
    f_node = node_of_ppc[br[rows_a, idx_brch.F_BUS].real.astype(int)].astype(np.int64)
    t_node = node_of_ppc[br[rows_a, idx_brch.T_BUS].real.astype(int)].astype(np.int64)
    r_pu = br[rows_a, idx_brch.BR_R].real.astype(float)
    x_pu = br[rows_a, idx_brch.BR_X].real.astype(float)
    b_sh = br[rows_a, idx_brch.BR_B].real.astype(float)
    g_sh = br[rows_a, idx_brch.BR_G].real.astype(float) if br.shape[1] > idx_brch.BR_G else np.zeros(len(rows))
    tap = br[rows_a, idx_brch.TAP].real.astype(float) if len(rows) else np.zeros(0)
    tap = np.where(tap == 0.0, 1.0, tap)
    i_max = _branch_ratings(work, kinds, elements, base_mva, vn_kv[f_node] if len(rows) else np.zeros(0))

    # Slack nodes and their voltage set-points.
    ref = np.flatnonzero(bus_ppc[:, idx_bus.BUS_TYPE].astype(int) == 3)
    slack_nodes = node_of_ppc[ref].astype(np.int64)
    slack_v = bus_ppc[ref, idx_bus.VM].astype(float)
    for i, p in enumerate(ref.tolist()):
        eg = work.ext_grid[(work.ext_grid.in_service) & (work.ext_grid.bus.map(lambda b: int(bus_lookup[b])) == p)]
        if len(eg):
            slack_v[i] = float(eg.vm_pu.iloc[0])

    vmin = np.full(n_node, DEFAULT_V_MIN_PU if v_min_pu is None else v_min_pu)
    vmax = np.full(n_node, DEFAULT_V_MAX_PU if v_max_pu is None else v_max_pu)
    if v_min_pu is None and "min_vm_pu" in work.bus:
        for bus, n in node_of_bus.items():
            v = work.bus.at[bus, "min_vm_pu"]
            if v == v:  # not NaN
                vmin[n] = max(vmin[n], float(v)) if vmin[n] != DEFAULT_V_MIN_PU else float(v)
    if v_max_pu is None and "max_vm_pu" in work.bus:
        for bus, n in node_of_bus.items():
            v = work.bus.at[bus, "max_vm_pu"]
            if v == v:
                vmax[n] = float(v)

    gs = bus_ppc[active, idx_bus.GS].astype(float) / base_mva
    bs = bus_ppc[active, idx_bus.BS].astype(float) / base_mva

    radial, reason, f_or, t_or = _orient(n_node, f_node, t_node, slack_nodes)
    flipped = (f_or != f_node) & (np.abs(tap - 1.0) > 1e-12)
    if np.any(flipped):  # a transformer fed from its low side: keep pandapower's ratio at the new from end
        tap = np.where(flipped, 1.0 / tap, tap)
    return GridView(
        name=name,
        base_mva=base_mva,
        n_node=n_node,
        bus_of_node=bus_of_node,
        node_of_bus=node_of_bus,
        vn_kv=vn_kv,
        v_min_pu=vmin,
        v_max_pu=vmax,
        slack_nodes=slack_nodes,
        slack_v_pu=slack_v,
        from_node=f_or,
        to_node=t_or,
        r_pu=r_pu,
        x_pu=x_pu,
        g_shunt_pu=g_sh,
        b_shunt_pu=b_sh,
        i_max_pu=i_max,
        tap_ratio=tap,
        branch_kind=tuple(kinds),
        branch_element=np.array(elements, dtype=np.int64),
        node_g_pu=gs,
        node_b_pu=bs,
        is_radial=radial,
        radial_reason=reason,
        formulations=RADIAL_FORMULATIONS if radial else MESHED_FORMULATIONS,
    )


def _orient(n_node: int, f: IntArray, t: IntArray, slack: IntArray) -> tuple[bool, str, IntArray, IntArray]:
    """Radiality check by breadth-first search from the slacks; orient branches away from them."""
    adj: list[list[tuple[int, int]]] = [[] for _ in range(n_node)]
    for k in range(len(f)):
        adj[int(f[k])].append((k, int(t[k])))
        adj[int(t[k])].append((k, int(f[k])))
    seen = np.full(n_node, -1)
    f_new, t_new = f.copy(), t.copy()
    used = np.zeros(len(f), dtype=bool)
    reason = "every component is a tree fed by one slack"
    radial = True
    for root_i, root in enumerate(slack):
        if seen[root] >= 0:
            radial = False
            reason = f"slack nodes {int(slack[seen[root]])} and {int(root)} are connected (meshed operation)"
            continue
        seen[root] = root_i
        queue = [int(root)]
        while queue:
            u = queue.pop(0)
            for k, v in adj[u]:
                if used[k]:
                    continue
                used[k] = True
                if seen[v] >= 0:
                    if radial:
                        reason = f"branch {k} closes a loop between nodes {u} and {v}"
                    radial = False
                    continue
                seen[v] = root_i
                f_new[k], t_new[k] = u, v
                queue.append(v)
    unfed = np.flatnonzero(seen < 0)
    if len(unfed):
        raise InputError("net", f"nodes {unfed[:10].tolist()} are energised but not connected to a slack")
    return radial, reason, f_new, t_new
