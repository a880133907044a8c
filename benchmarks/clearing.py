"""Clearing benchmark (`make bench`): prints a table and writes it to benchmarks/results/clearing.md.

1. case33bw, 96 x 15-minute slots, 200+ offers and batteries: FlexGrid's SOCP clearing against
   pandapower's own OPF (`runopp`) looped over the 96 slots with the same costs (the batteries
   fixed to FlexGrid's schedule for the comparison): time, objective, AC voltage error.
2. Scaling from 33 to 1,000+ buses (real feeders, and 32 copies of case33bw joined at one
   substation), 96 slots, up to 10,000 offers: clearing time, peak memory, and as the yardstick
   the time pandapower needs for 96 plain `runpp` on the same net.
3. LinDistFlow and copper plate on the same cases: time and the AC violations they leave.

Every case runs in its own process so that its peak memory (max RSS) is its own.
Usage: python benchmarks/clearing.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import platform
import resource
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

warnings.filterwarnings("ignore")
OUT = Path(__file__).resolve().parent / "results" / "clearing.md"
SLOT_S = 900
SLOTS = 96
DAY_START_S = 1_796_083_200  # 2026-12-01 00:00 UTC


def _wholesale() -> np.ndarray:
    h = (np.arange(SLOTS) + 0.5) / 4
    return np.round(55 + 35 * np.exp(-((h - 19) / 2.5) ** 2) + 15 * np.exp(-((h - 8) / 1.5) ** 2), 3)


def _net(name: str) -> Any:
    import pandapower as pp

    from flexgrid.grid import load_net

    if "_x" not in name:
        return load_net(name)
    # `<net>_x<N>`: N copies of a real feeder joined at one substation: the first copy's slack bus (the
    # head of case33bw, the MV side of ieee_european_lv's MV/LV transformer) is the substation's
    # busbar, every other copy's slack bus joins it by a closed bus-bus switch
    base_name, copies_s = name.rsplit("_x", 1)
    copies = int(copies_s)
    base = load_net(base_name)
    head = int(base.ext_grid.bus.iloc[0])
    head_pos = sorted(base.bus.index).index(head)
    net = copy.deepcopy(base)
    sub = head
    for _ in range(copies - 1):
        part = copy.deepcopy(base)
        part.ext_grid.drop(part.ext_grid.index, inplace=True)
        before = set(net.bus.index)
        net = pp.toolbox.merge_nets(net, part, validate=False, std_prio_on_net1=True)
        new_buses = sorted(set(net.bus.index) - before)
        pp.create_switch(net, sub, new_buses[head_pos], et="b", closed=True)  # the copy's head joins the substation
    return net


def _round(view: Any, grid_id: str, cap: float = 3000.0, slots: int = SLOTS) -> Any:
    from flexgrid.trading import PricingRule, RoundConfig, SealMode

    return RoundConfig(round_id=1, grid_id=grid_id, grid_model_hash=view.model_hash(), slot_start_s=DAY_START_S,
                       slot_seconds=SLOT_S, slot_count=slots, gate_closure_s=DAY_START_S - 900,
                       pricing_rule=PricingRule.DLMP, seal_mode=SealMode.OPEN, dispute_window_s=3600,
                       price_cap_eur_per_mwh=cap, tolerance_bps=500, penalty_bps=1000, bid_deposit_eur=10.0)


def _offers(view: Any, n_offers: int, slots_each: int, kw_range: tuple[float, float], seed: int,
            at_buses: Any = None) -> list[Any]:
    """`n_offers` UP offers on buses drawn from `at_buses` (default: every operated bus), slack excluded."""
    from flexgrid.trading import Direction, FlexOffer

    rng = np.random.default_rng(seed)
    buses = np.array(sorted(view.node_of_bus if at_buses is None else
                            {int(b) for b in at_buses if int(b) in view.node_of_bus}))
    buses = buses[[view.node_of_bus[b] not in set(view.slack_nodes.tolist()) for b in buses]]
    out = []
    for i in range(n_offers):
        start = 0 if slots_each >= SLOTS else int(rng.integers(0, SLOTS - slots_each + 1))
        slots = tuple(range(start, start + slots_each))
        kw = round(float(rng.uniform(*kw_range)), 3)
        out.append(FlexOffer(order_id=f"offer-{i:05d}", provider="0x" + f"{(i % 200) + 1:040x}", round_id=1,
                             bus=int(rng.choice(buses)), asset_id="0x" + f"{i + 1:064x}", direction=Direction.UP,
                             slots=slots, min_kw=(0.0,) * len(slots), max_kw=(kw,) * len(slots),
                             price_eur_per_mwh=round(float(rng.uniform(90, 400)), 2), nonce=i, expiry_s=2**40))
    return out


# ------------------------------------------------------------------------------------- case 1
def case_vs_runopp(q: Any) -> None:
    import pandapower as pp

    from flexgrid.grid import build_view, synthetic_profiles
    from flexgrid.market import clear_market
    from flexgrid.opf import Battery, Devices

    net = _net("case33bw")
    view = build_view(net, "case33bw")
    rc = _round(view, "case33bw")
    prof = synthetic_profiles(net, view, slot_start_s=DAY_START_S, slot_seconds=SLOT_S, slot_count=SLOTS,
                              load_scale=1.25)
    offers = _offers(view, 200, SLOTS, (5.0, 40.0), seed=1)
    batteries = tuple(Battery(f"bat-{b}", b, 0.5, 0.15, 0.15, 0.25, 0.25) for b in (6, 13, 17, 24, 29, 32))
    price = _wholesale()
    t0, c0 = time.perf_counter(), time.process_time()
    out = clear_market(net, prof, rc, offers, wholesale_eur_per_mwh=price, devices=Devices(batteries=batteries),
                       view=view, ac_validation=False, certificate=False)
    t_fg, cpu_fg = time.perf_counter() - t0, time.process_time() - c0
    res = out.dispatch
    assert res is not None
    t_ac = time.perf_counter()
    from flexgrid.opf import validate_ac

    ac = validate_ac(net, view, res.withdrawal_p_mw, res.withdrawal_q_mvar, res.v_pu)
    t_ac = time.perf_counter() - t_ac
    h = SLOT_S / 3600
    # FlexGrid's cost without battery wear: energy at the substation + accepted offers
    fg_cost = float((res.slack_p_mw.sum(axis=0) * price * h).sum())
    fg_cost += sum(a.mw * h * next(o.price_eur_per_mwh for o in offers if o.order_id == a.order_id)
                   for a in out.accepted)

    # pandapower runopp, one slot at a time, batteries fixed to FlexGrid's schedule
    pnet = copy.deepcopy(net)
    pnet.bus["min_vm_pu"] = 0.90
    pnet.bus["max_vm_pu"] = 1.10
    pnet.line["max_loading_percent"] = 100.0
    pnet.ext_grid["max_p_mw"] = 1e3
    pnet.ext_grid["min_p_mw"] = -1e3
    pnet.ext_grid["max_q_mvar"] = 1e3
    pnet.ext_grid["min_q_mvar"] = -1e3
    pnet.load["in_service"] = False
    pnet.poly_cost.drop(pnet.poly_cost.index, inplace=True)  # case33bw ships a cost for its ext_grid
    node_loads = [pp.create_load(pnet, int(view.bus_of_node[n]), 0.0, 0.0) for n in range(view.n_node)]
    sg = []
    for o in offers:
        idx = pp.create_sgen(pnet, o.bus, p_mw=0.0, q_mvar=0.0, controllable=True, min_p_mw=0.0,
                             max_p_mw=o.max_kw[0] / 1e3, min_q_mvar=0.0, max_q_mvar=0.0)
        pp.create_poly_cost(pnet, idx, "sgen", cp1_eur_per_mw=o.price_eur_per_mwh)
        sg.append(idx)
    eg_cost = pp.create_poly_cost(pnet, pnet.ext_grid.index[0], "ext_grid", cp1_eur_per_mw=float(price[0]))
    # base withdrawal including the batteries' schedule (FlexGrid's), without the offers
    bat_w = np.zeros((view.n_node, SLOTS))
    for i, b in enumerate(batteries):
        bat_w[view.node(b.bus)] += res.devices_mw["bat_ch"][i] - res.devices_mw["bat_dis"][i]
    w_p = prof.load_p_mw - prof.pv_p_mw + bat_w
    w_q = prof.load_q_mvar
    t1, c1 = time.perf_counter(), time.process_time()
    pp_cost = 0.0
    failed = 0
    for t in range(SLOTS):
        pnet.load.loc[node_loads, "p_mw"] = w_p[:, t]
        pnet.load.loc[node_loads, "q_mvar"] = w_q[:, t]
        pnet.poly_cost.loc[eg_cost, "cp1_eur_per_mw"] = float(price[t])
        try:
            pp.runopp(pnet, verbose=False)
            pp_cost += float(pnet.res_cost) * h
        except Exception:  # a failed slot is counted; the table shows it
            failed += 1
    t_pp, cpu_pp = time.perf_counter() - t1, time.process_time() - c1
    q.put({
        "flexgrid_s": t_fg, "runopp_s": t_pp, "flexgrid_cpu_s": cpu_fg, "runopp_cpu_s": cpu_pp, "speedup": t_pp / t_fg, "fg_cost": fg_cost, "pp_cost": pp_cost,
        "rel_diff": abs(fg_cost - pp_cost) / abs(pp_cost) if pp_cost else float("nan"), "runopp_failed": failed,
        "ac_v_err": ac.max_v_error_pu, "ac_s": t_ac, "offers": len(offers), "accepted": len(out.accepted),
        "relax_mw": out.relaxation_gap_mw, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })


# ------------------------------------------------------------------------------------- case 2/3
def case_scaling(q: Any, name: str, n_offers: int, formulation: str, runpp_yardstick: bool,
                 reduce_network: bool = True) -> None:
    import pandapower as pp

    from flexgrid.grid import build_view, synthetic_profiles
    from flexgrid.market import clear_market
    from flexgrid.opf import validate_ac

    net = _net(name)
    view = build_view(net, name)
    rc = _round(view, name)
    prof = synthetic_profiles(net, view, slot_start_s=DAY_START_S, slot_seconds=SLOT_S, slot_count=SLOTS,
                              load_scale=1.2)
    lv = float(np.median(view.vn_kv)) < 1.0
    # flexibility sits at the customers: offers on the buses that have a load
    offers = _offers(view, n_offers, 8, (1.0, 10.0) if lv else (5.0, 50.0), seed=2,
                     at_buses=net.load.bus[net.load.in_service])
    # one warm-up clearing of a single slot without orders (imports, first calls), as the yardstick's
    # timed runpp loop follows one untimed runpp on the same net
    clear_market(net, synthetic_profiles(net, view, slot_start_s=DAY_START_S, slot_seconds=SLOT_S, slot_count=1),
                 _round(view, name, slots=1), [], wholesale_eur_per_mwh=_wholesale()[:1], formulation=formulation,
                 view=view, ac_validation=False, certificate=False, reduce_network=reduce_network)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), time.process_time()
    out = clear_market(net, prof, rc, offers, wholesale_eur_per_mwh=_wholesale(), formulation=formulation, view=view,
                       ac_validation=False, certificate=False, reduce_network=reduce_network)
    t_clear, cpu_clear = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = out.dispatch
    assert res is not None
    ac = validate_ac(net, view, res.withdrawal_p_mw, res.withdrawal_q_mvar, res.v_pu)
    runpp: dict[str, float] = {}
    if runpp_yardstick:
        # the yardstick: 96 power flows of the same net, the loads scaled slot by slot; "plain" is
        # pandapower's runpp with its defaults (the issue's yardstick: a flat start each time),
        # "warm" starts each from the previous slot's result (init="results"), the faster of the two
        for label, init in (("plain", None), ("warm", "results")):
            work = copy.deepcopy(net)
            pp.runpp(work)
            scale = work.load.scaling.to_numpy().copy()
            t2, c2 = time.perf_counter(), time.process_time()
            for t in range(SLOTS):
                work.load["scaling"] = scale * (0.5 + 0.5 * t / SLOTS)
                if init is None:
                    pp.runpp(work)
                else:
                    pp.runpp(work, init=init)
            runpp[f"{label}_s"], runpp[f"{label}_cpu_s"] = time.perf_counter() - t2, time.process_time() - c2
    q.put({
        "net": name, "buses": len(net.bus), "nodes": view.n_node,
        "solved_nodes": view.n_node if out.reduced_nodes is None else out.reduced_nodes,
        "solves": next((n.split("(")[1].split(" ")[0] for n in out.notes if n.startswith("network reduced")), "1"),
        "offers": n_offers, "formulation": formulation, "clear_s": t_clear,
        "solve_s": out.timings_s.get("solve_s", float("nan")), "peak_mb": peak, "rss_before_mb": rss_before,
        "runpp": runpp, "cpu_s": cpu_clear, "ac_v_err": ac.max_v_error_pu, "ac_flags": len(ac.flags),
        "ac_max_loading": ac.max_loading_percent, "ac_v_min": ac.v_min_pu, "accepted": len(out.accepted),
        "opf_violations": len(out.violations), "components": res.solution.components,
        "certified": res.solution.certified,
    })


def case_vcg(q: Any, n_offers: int) -> None:
    """What VCG costs: one extra clearing per accepted offer."""
    from flexgrid.grid import build_view, synthetic_profiles
    from flexgrid.market import clear_market
    from flexgrid.trading import PricingRule

    net = _net("case33bw")
    view = build_view(net, "case33bw")
    rc = _round(view, "case33bw")
    prof = synthetic_profiles(net, view, slot_start_s=DAY_START_S, slot_seconds=SLOT_S, slot_count=SLOTS,
                              load_scale=1.3)
    offers = _offers(view, n_offers, 8, (20.0, 80.0), seed=3)
    out = {}
    for rule in (PricingRule.DLMP, PricingRule.VCG):
        t0 = time.perf_counter()
        res = clear_market(net, prof, rc, offers, wholesale_eur_per_mwh=_wholesale(), pricing=rule, view=view,
                           ac_validation=False, certificate=False)
        out[rule.name] = time.perf_counter() - t0
        out["winners"] = len({a.order_id for a in res.accepted})
        out[f"{rule.name}_paid"] = sum(t.payment_eur for t in res.trades if t.payment_eur > 0)
    q.put(out)


def _child(q: Any, target: Any, *args: Any) -> None:
    try:
        target(q, *args)
    except Exception as exc:  # the table shows the case's failure instead of the run hanging on it
        q.put({"error": f"{type(exc).__name__}: {exc}"})


def _run(target: Any, *args: Any) -> dict[str, Any]:
    """Run one case in a fresh process (its own peak memory); a failure comes back as {"error": ...}."""
    import queue

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, target, *args))
    p.start()
    try:
        deadline = time.monotonic() + 3600
        while True:
            try:
                result: dict[str, Any] = q.get(timeout=1.0)
                break
            except queue.Empty:
                if not p.is_alive() or time.monotonic() > deadline:
                    result = {"error": f"the case's process ended without a result (exit code {p.exitcode})"}
                    break
    finally:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer and smaller scaling cases")
    parser.add_argument("--sections", default="1,2,4", help="which sections to run (1: vs runopp, 2: scaling, 4: VCG)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the table (default {OUT})")
    args = parser.parse_args()
    out_path: Path = args.out
    sections = set(args.sections.split(","))
    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text("\n".join(lines) + "\n")  # partial results survive a crash

    emit("# FlexGrid clearing benchmark")
    emit(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python {platform.python_version()}, "
         f"{platform.machine()}, {mp.cpu_count()} cores (shared); 96 x 15-min slots")
    emit()
    if "1" in sections:
        _section1(emit)
    if "2" in sections:
        _section2(emit, args.quick)
    if "4" in sections:
        emit()
        emit("## 4. What VCG costs (case33bw, 96 slots, 40 offers of 8 slots, SOCP)")
        v = _run(case_vcg, 40)
        emit("| winners | DLMP clearing [s] | VCG clearing [s] | paid under DLMP [EUR] | paid under VCG [EUR] |")
        emit("|---|---|---|---|---|")
        emit(f"| {v['winners']} | {v['DLMP']:.2f} | {v['VCG']:.2f} | {v['DLMP_paid']:.2f} | {v['VCG_paid']:.2f} |")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {out_path}")


def _section1(emit: Any) -> None:
    emit("## 1. case33bw, 200 offers and 6 batteries: FlexGrid SOCP vs pandapower runopp x 96")
    r = _run(case_vs_runopp)
    if "error" in r:
        emit(f"failed: {r['error']}")
        return
    emit("| FlexGrid SOCP clear [s] | runopp x 96 [s] | speed-up | CPU: clear / runopp [s] | CPU speed-up | "
         "FlexGrid cost [EUR] | runopp cost [EUR] | difference | runopp failures | max AC |V| error [pu] | "
         "SOC relaxation [MW] |")
    emit("|---|---|---|---|---|---|---|---|---|---|---|")
    emit(f"| {r['flexgrid_s']:.2f} | {r['runopp_s']:.1f} | {r['speedup']:.0f}x | "
         f"{r['flexgrid_cpu_s']:.2f} / {r['runopp_cpu_s']:.1f} | {r['runopp_cpu_s'] / r['flexgrid_cpu_s']:.0f}x | "
         f"{r['fg_cost']:.2f} | "
         f"{r['pp_cost']:.2f} | {100 * r['rel_diff']:.3f}% | {r['runopp_failed']} | {r['ac_v_err']:.1e} | "
         f"{r['relax_mw']:.1e} |")
    emit(f"Goals: >= 100x faster, cost within 0.5%, AC error <= 1e-4 pu. ({r['accepted']} offer-slots accepted)")


def _section2(emit: Any, quick: bool) -> None:
    emit()
    emit("## 2-3. Scaling (96 slots, offers of 8 slots each on buses drawn from the buses with a load; "
         "AC = pandapower runpp on the cleared set-points, full network)")
    emit("(wall-clock times on a shared machine; the CPU columns are the process's own CPU time, which other "
         "users' load does not inflate. buses: pandapower buses; nodes: the operated network (buses joined by "
         "closed switches are one node); solved: the nodes of the network the clearing solved on after the exact "
         "reduction (buses with nothing connected dropped or merged, flexgrid.grid.reduction; 'full network' = "
         "reduce_network=False), with the number of solves (a bus whose limit binds is re-included). "
         "ieee_european_lv_x2: two copies of ieee_european_lv joined at their MV/LV substation's 11 kV busbar; "
         "case33bw_x32: 32 copies of case33bw joined at the substation, a load at every bus, so nothing to reduce)")
    emit("(slots certified: independent components (here the slots) whose optimum is the AC power flow of the "
         "base load with the flexibility idle, certified by their KKT conditions without Clarabel, "
         "flexgrid.opf.certify; the others go to Clarabel on a thread pool. 96 x runpp: pandapower's power flow "
         "once per slot on the same net, 'plain' with runpp's defaults (flat start), 'warm' from the previous "
         "slot's result; wall / CPU seconds. Each side has one untimed warm-up call first: runpp once on the "
         "net, the clearing once for one slot without orders)")
    emit("| net | buses | nodes | solved (solves) | offers | formulation | slots certified | clear [s] | "
         "of which solve [s] | clear CPU [s] | peak RSS [MB] | 96 x runpp plain [s] (CPU) | "
         "96 x runpp warm [s] (CPU) | AC max |V| error [pu] | AC min V [pu] | AC max loading [%] | "
         "AC flagged slots | OPF soft violations |")
    emit("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    cases = [("case33bw", 1000), ("kerber_dorfnetz", 2000), ("mv_oberrhein", 5000), ("ieee_european_lv", 5000),
             ("ieee_european_lv_x2", 10000), ("case33bw_x32", 10000)]
    if quick:
        cases = [("case33bw", 500), ("kerber_dorfnetz", 1000)]
    verdicts: list[str] = []
    for name, n_off in cases:
        runs = [("socp", True), ("lindistflow", True), ("copperplate", True)]
        if name.startswith("ieee_european_lv"):  # before/after the reduction
            runs.insert(1, ("socp", False))
        for formulation, reduce_network in runs:
            s = _run(case_scaling, name, n_off, formulation, formulation == "socp" and reduce_network, reduce_network)
            label = formulation if reduce_network else f"{formulation} (full network)"
            if "error" in s:
                emit(f"| {name} | | | | {n_off} | {label} | failed: {s['error']} |" + " |" * 11)
                continue
            err = "n/a" if s["ac_v_err"] is None else f"{s['ac_v_err']:.1e}"
            rp = s["runpp"]
            plain = f"{rp['plain_s']:.2f} ({rp['plain_cpu_s']:.2f})" if rp else ""
            warm = f"{rp['warm_s']:.2f} ({rp['warm_cpu_s']:.2f})" if rp else ""
            solved = "" if formulation == "copperplate" else f"{s['solved_nodes']} ({s['solves']})"
            cert = f"{s['certified']} of {s['components']}" if formulation == "socp" else ""
            emit(f"| {name} | {s['buses']} | {s['nodes']} | {solved} | {s['offers']} | {label} | {cert} | "
                 f"{s['clear_s']:.2f} | {s['solve_s']:.2f} | {s['cpu_s']:.2f} | {s['peak_mb']:.0f} | {plain} | {warm} | "
                 f"{err} | {s['ac_v_min']:.4f} | {s['ac_max_loading']:.1f} | {s['ac_flags']} | {s['opf_violations']} |")
            if rp:
                def beat(kind: str, s: dict[str, Any] = s, rp: dict[str, float] = rp) -> str:
                    wall, cpu = s["clear_s"] < rp[f"{kind}_s"], s["cpu_s"] < rp[f"{kind}_cpu_s"]
                    return "yes" if wall and cpu else "wall only" if wall else "CPU only" if cpu else "no"
                verdicts.append(f"- {name} ({s['buses']} buses): faster than 96 plain runpp: {beat('plain')}; "
                                f"than 96 warm-started runpp: {beat('warm')}")
    emit()
    emit("Goal: clearing a day faster than 96 runpp on the same net, <= 2 GB (SOCP, the default):")
    for v in verdicts:
        emit(v)

if __name__ == "__main__":
    main()
