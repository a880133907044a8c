"""`flexgrid demo` as a user runs it: its own anvil, the contracts, the market day on a small
scenario (8 slots up to 20:00, the evening peak that congests case33bw's feeder head and takes its
feeder ends below 0.95 pu, 10 prosumers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.chain, pytest.mark.slow]


def test_demo_runs_the_market_day_and_the_audit_verifies(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "flexgrid.cli.main", "demo", "--json", "--out", str(out), "--prosumers", "10", "--slots", "8",
         "--seed", "3"],
        capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(proc.stdout)

    # the DSO's requests came from the risk service, and flexibility was bought from sealed offers
    assert s["requests_source"] == "flexgrid.risk.risk_flex_requests"
    assert s["requests"] and all(r["risk_id"].startswith(f"risk-r{s['round_id']}-") for r in s["requests"])
    assert s["orders"]["encrypted"] > 0 and s["orders"]["commit_reveal"] > 0
    assert s["accepted_offers"] > 0 and s["accepted_kwh"] > 0 and s["cost_eur"] > 0
    # before the flexibility (pandapower AC of every slot) the feeder head is congested and the end of
    # the feeder is below 0.95 pu; the flexibility bought relieves both: no line above its rating
    # after, and the lowest voltage is higher in every slot where it was low
    b, a = s["before"], s["after"]
    assert b["max_loading_percent"] > 100.0 and b["congested_slots"] > 0
    assert b["v_min_pu"] < 0.95 and b["worst_bus"] in (17, 32)
    assert a["max_loading_percent"] <= 100.0 and a["congested_slots"] == 0
    assert a["max_loading_percent_slot"] < b["max_loading_percent_slot"] - 5.0  # the most congested slot
    assert a["v_min_pu"] > b["v_min_pu"] + 0.01
    assert a["low_voltage_slots"] <= b["low_voltage_slots"]

    # the auditor re-verified the round from the chain alone
    assert s["audit_ok"], s["audit_problems"]

    # every micro-euro escrowed was paid out or returned, and the market holds nothing after
    assert s["escrowed_micro"] > 0
    assert s["escrowed_micro"] == s["paid_out_micro"] + s["returned_micro"]
    assert s["market_balance_after_micro"] == 0

    # the provider that delivered half was paid about half or less of its accepted value; the others,
    # metered with noise against a baseline, were paid most of theirs
    u = s["under_deliverer"]
    assert u and u["withdrawn_eur"] < 0.6 * u["accepted_value_eur"]
    others = [r for r in s["settlement"] if not r["under_delivers"]]
    assert others
    assert sum(r["withdrawn_eur"] for r in others) > 0.8 * sum(r["accepted_value_eur"] for r in others), others

    # a P2P round between prosumers cleared with network charges (buyers pay more than sellers get,
    # the DLMP difference), verified by the auditor, and its escrow was paid out or returned too
    p2p = s["p2p"]
    assert p2p.get("ok"), p2p
    assert p2p["traded_kwh"] > 0 and p2p["network_charges_micro"] > 0 and p2p["audit_ok"]
    assert p2p["market_balance_after_micro"] == 0

    # the summary and the plots are in the output folder
    assert json.loads((out / "summary.json").read_text())["round_id"] == s["round_id"]
    assert set(s["plots"]) == {"dlmp_heatmap.png", "network_loading.png", "supply_curve.png", "battery_soc.png"}
    for name in s["plots"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 5_000
