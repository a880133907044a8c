"""`flexgrid clear` from the shipped sample orders file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flexgrid.cli.main import app
from flexgrid.market import verify

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "orders.json"


def test_clear_prints_json_with_trades_prices_and_hashes() -> None:
    result = CliRunner().invoke(app, ["clear", "--net", "case33bw", "--orders", str(SAMPLE), "--json",
                                      "--formulation", "lindistflow", "--pricing", "uniform", "--no-ac"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["pricing"] == "UNIFORM" and doc["formulation"] == "lindistflow"
    assert doc["merkle_root"].startswith("0x") and len(doc["certificate_hash"]) == 66
    assert {t["order"] for t in doc["trades"]} >= {"1", "heatpumps-15"}
    assert len(doc["dlmp_eur_per_mwh"]) == 33 and len(doc["dlmp_eur_per_mwh"][0]) == 4


def test_clear_summary_shows_before_and_after_and_writes_plots(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["clear", "--orders", str(SAMPLE), "--plots", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "before (AC, no flexibility)" in result.stdout and "after (AC)" in result.stdout
    assert (tmp_path / "dlmp_heatmap.png").stat().st_size > 1000


def test_clear_names_the_bad_field(tmp_path: Path) -> None:
    doc = json.loads(SAMPLE.read_text())
    doc["offers"][0]["bus"] = 4242
    bad = tmp_path / "orders.json"
    bad.write_text(json.dumps(doc))
    result = CliRunner().invoke(app, ["clear", "--orders", str(bad), "--no-ac"])
    assert result.exit_code == 2
    assert "battery-17" in result.output and "bus 4242" in result.output


def test_sample_certificate_verifies() -> None:
    from flexgrid.grid import build_view, load_net, synthetic_profiles
    from flexgrid.market import clear_market, parse_orders_file

    parsed = parse_orders_file(json.loads(SAMPLE.read_text()))
    net = load_net("case33bw")
    view = build_view(net, "case33bw")
    rc = parsed.round
    prof = synthetic_profiles(net, view, slot_start_s=rc.slot_start_s, slot_seconds=rc.slot_seconds,
                              slot_count=rc.slot_count)
    out = clear_market(net, prof, rc, parsed.orders, wholesale_eur_per_mwh=parsed.wholesale_eur_per_mwh,
                       devices=parsed.devices, view=view, ac_validation=False)
    assert verify(out.certificate).ok  # type: ignore[arg-type]
