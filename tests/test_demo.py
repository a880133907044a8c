"""`flexgrid demo` as a user runs it: its own anvil, the contracts, one round end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flexgrid.demo import PROVIDERS

pytestmark = [pytest.mark.chain, pytest.mark.slow]


def test_demo_runs_a_round_end_to_end_and_escrow_is_conserved(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "flexgrid.cli.main", "demo", "--json", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)

    # the deployment and the published result are written where the user asked
    assert (out / "deployment.json").is_file()
    result = json.loads((out / f"round-{report['round_id']}-result.json").read_text())
    assert result["merkle_root"] == report["merkle_root"]
    assert len(result["trades"]) == report["trades"] > 0

    # flexibility was bought, from the providers that can relieve the request's subtree
    accepted = {a["provider"] for a in report["accepted"]}
    assert accepted and accepted <= {p.name for p in PROVIDERS}
    assert report["ac_max_voltage_error_pu"] is not None and report["ac_max_voltage_error_pu"] < 1e-4

    # every micro-euro escrowed was paid out or returned, and the market holds nothing after
    assert report["escrowed_micro"] > 0
    assert report["escrowed_micro"] == report["paid_out_micro"] + report["returned_micro"]
    assert report["market_balance_after_micro"] == 0

    # the provider that under-delivered was paid less than its accepted value
    settled = {s["who"]: s for s in report["settlement"]}
    under = next(p for p in PROVIDERS if p.delivery_factor < 1.0)
    full_value = settled[under.name]["accepted_kwh"] / 1000 * under.price_eur_per_mwh
    assert settled[under.name]["accepted_kwh"] > 0
    assert settled[under.name]["withdrawn_eur"] < under.delivery_factor * full_value
