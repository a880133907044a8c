"""`flexgrid clear`: run a grid-aware clearing from files, without a chain."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from flexgrid.errors import FlexGridError


class Formulation(StrEnum):
    socp = "socp"
    lindistflow = "lindistflow"
    sensitivity = "sensitivity"
    dc = "dc"
    copperplate = "copperplate"


class Pricing(StrEnum):
    dlmp = "dlmp"
    uniform = "uniform"
    pay_as_bid = "pay-as-bid"
    vcg = "vcg"


PRICING_RULE = {"dlmp": 2, "uniform": 1, "pay-as-bid": 0, "vcg": 3}


def _summary(out: Any, before: Any, orders_count: int) -> list[str]:
    lines = [f"formulation {out.formulation}, pricing {out.pricing.name}, {orders_count} orders"]
    acc: dict[str, float] = {}
    for a in out.accepted:
        acc[a.kind] = acc.get(a.kind, 0.0) + a.mw
    lines.append("accepted: " + (", ".join(f"{k} {v * 1e3:.1f} kW-slots" for k, v in sorted(acc.items())) or "nothing"))
    paid = sum(t.payment_eur for t in out.trades if t.payment_eur > 0)
    taken = -sum(t.payment_eur for t in out.trades if t.payment_eur < 0)
    lines.append(f"payments: {paid:.2f} EUR to participants, {taken:.2f} EUR from participants; "
                 f"objective {out.objective_eur:.2f} EUR")
    d = out.dlmp_eur_per_mwh
    lines.append(f"DLMP: min {d.min():.2f}, mean {d.mean():.2f}, max {d.max():.2f} EUR/MWh "
                 f"(largest congestion part {np.abs(out.components['congestion']).max():.2f}, "
                 f"voltage {np.abs(out.components['voltage']).max():.2f}, losses {np.abs(out.components['losses']).max():.2f})")
    if out.mip_gap is not None:
        lines.append(f"MILP gap {out.mip_gap:.2e}" + (f" ({'; '.join(out.notes)})" if out.notes else ""))
    if out.relaxation_gap_mw is not None:
        lines.append(f"SOC relaxation: fictitious losses up to {out.relaxation_gap_mw * 1e3:.4f} kW "
                     f"({'exact' if out.relaxation_gap_mw < 1e-5 else 'NOT exact'})")
    if before is not None:
        lines.append(f"before (AC, no flexibility): min V {before.v_min_pu:.4f} pu, max loading "
                     f"{before.max_loading_percent:.1f}%, {len(before.flags)} violations")
    if out.ac is not None:
        err = "n/a" if out.ac.max_v_error_pu is None else f"{out.ac.max_v_error_pu:.2e} pu"
        lines.append(f"after (AC): min V {out.ac.v_min_pu:.4f} pu, max loading {out.ac.max_loading_percent:.1f}%, "
                     f"{len(out.ac.flags)} violations; |V_opf - V_ac| max {err}")
        lines += [f"  ! {f}" for f in out.ac.flags[:10]]
    if out.violations:
        lines.append(f"soft limits violated in the OPF ({len(out.violations)}):")
        lines += [f"  {v.kind} {v.element} slot {v.slot}: {v.amount:.4f} {v.unit}" for v in out.violations[:10]]
    lines.append("trades:")
    for t in sorted(out.trades, key=lambda t: (out.leaf_order_ids[t.order_id], t.slot)):
        oid = out.leaf_order_ids[t.order_id]
        lines.append(f"  {oid:<16} slot {t.slot:>3} {t.kw:>10.3f} kW at {t.price_eur_per_mwh:>10.4f} EUR/MWh "
                     f"-> {t.payment_eur:>+10.4f} EUR")
    lines.append(f"merkle root {out.merkle_root}")
    if out.certificate_hash:
        lines.append(f"certificate {out.certificate_hash}")
    return lines


def _plots(directory: Path, out: Any, before: Any, view: Any) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(8, 6))
    im = ax.imshow(out.dlmp_eur_per_mwh, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel("slot")
    ax.set_ylabel("node (pandapower bus of each node in the y labels)")
    ticks = np.arange(0, view.n_node, max(1, view.n_node // 20))
    ax.set_yticks(ticks, [str(int(view.bus_of_node[i])) for i in ticks])
    fig.colorbar(im, ax=ax, label="DLMP [EUR/MWh]")
    ax.set_title("DLMP per bus and slot")
    path = directory / "dlmp_heatmap.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append(path)
    if before is not None and out.ac is not None and before.loading_percent is not None \
            and out.ac.loading_percent is not None:
        fig, ax = plt.subplots(figsize=(9, 4))
        b = before.loading_percent.max(axis=1)
        a = out.ac.loading_percent.max(axis=1)
        idx = np.arange(len(b))
        ax.bar(idx - 0.2, b, width=0.4, label="before")
        ax.bar(idx + 0.2, a, width=0.4, label="after")
        ax.axhline(100, color="red", lw=1)
        ax.set_xlabel("branch (lines, then transformers)")
        ax.set_ylabel("largest loading over the slots [%]")
        ax.legend()
        path = directory / "line_loading.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _as_json(out: Any) -> dict[str, Any]:
    def clean(values: Any) -> Any:
        return np.round(np.asarray(values, dtype=float), 6).tolist()

    return {
        "formulation": out.formulation,
        "pricing": out.pricing.name,
        "merkle_root": out.merkle_root,
        "certificate_hash": out.certificate_hash,
        "objective_eur": out.objective_eur,
        "mip_gap": out.mip_gap,
        "relaxation_gap_mw": out.relaxation_gap_mw,
        "budget_balance_eur": out.budget_balance_eur,
        "trades": [{**json.loads(t.model_dump_json()), "order": out.leaf_order_ids[t.order_id]} for t in out.trades],
        "buses": [int(b) for b in out.bus_of_node],
        "dlmp_eur_per_mwh": clean(out.dlmp_eur_per_mwh),
        "dlmp_components": {k: clean(v) for k, v in out.components.items()},
        "p2p_price_eur_per_mwh": clean(out.p2p_price_eur_per_mwh),
        "violations": [vars(v) for v in out.violations],
        "ac": None if out.ac is None else {
            "max_v_error_pu": out.ac.max_v_error_pu, "max_loading_percent": out.ac.max_loading_percent,
            "v_min_pu": out.ac.v_min_pu, "v_max_pu": out.ac.v_max_pu, "flags": list(out.ac.flags)},
        "timings_s": out.timings_s,
        "notes": out.notes,
    }


def register(app: typer.Typer) -> None:
    @app.command("clear")
    def clear(
        net: Annotated[str, typer.Option(help="built-in net name, pandapower JSON file or MATPOWER case")] = "case33bw",
        orders: Annotated[Path, typer.Option(help="orders file (round, wholesale prices, requests, offers, p2p)")] = Path(
            "examples/orders.json"),
        formulation: Annotated[Formulation, typer.Option(help="network physics")] = Formulation.socp,
        pricing: Annotated[Pricing | None, typer.Option(help="pricing rule (default: the round's)")] = None,
        profiles: Annotated[Path | None, typer.Option(help="CSV slot,bus,load_kw,pv_kw[,load_kvar]")] = None,
        load_scale: Annotated[float, typer.Option(help="scale the synthetic load profile")] = 1.0,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
        plots: Annotated[Path | None, typer.Option(help="write a DLMP heatmap and line loadings here")] = None,
        ac: Annotated[bool, typer.Option(help="validate the result with an AC power flow")] = True,
    ) -> None:
        """Clear one round from files: grid-aware OPF, prices, AC check, certificate."""
        from flexgrid.grid import build_view, load_net, profiles_from_csv, synthetic_profiles
        from flexgrid.market import clear_market, parse_orders_file
        from flexgrid.opf import validate_ac
        from flexgrid.trading import PricingRule

        try:
            try:
                doc = json.loads(orders.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise typer.BadParameter(f"cannot read {orders}: {exc}", param_hint="--orders") from exc
            parsed = parse_orders_file(doc)
            rc = parsed.round
            pnet = load_net(net)
            view = build_view(pnet, rc.grid_id)
            if profiles is not None:
                prof = profiles_from_csv(profiles, view, slot_count=rc.slot_count)
            else:
                prof = synthetic_profiles(pnet, view, slot_start_s=rc.slot_start_s, slot_seconds=rc.slot_seconds,
                                          slot_count=rc.slot_count, load_scale=load_scale)
            rule = None if pricing is None else PricingRule(PRICING_RULE[pricing.value])
            out = clear_market(pnet, prof, rc, parsed.orders, wholesale_eur_per_mwh=parsed.wholesale_eur_per_mwh,
                               formulation=formulation.value, pricing=rule, devices=parsed.devices, view=view,
                               ac_validation=ac)
            before = None
            if ac and not as_json:
                before = validate_ac(pnet, view, prof.load_p_mw - prof.pv_p_mw, prof.load_q_mvar)
        except FlexGridError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        if as_json:
            typer.echo(json.dumps(_as_json(out), indent=1))
            return
        for line in _summary(out, before, len(parsed.orders)):
            typer.echo(line)
        if plots is not None:
            for path in _plots(plots, out, before, view):
                typer.echo(f"wrote {path}")
