"""The `flexgrid monitor` and `flexgrid risk` commands, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flexgrid.cli.main import app

runner = CliRunner()


def _run(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.output)
    return out


def test_monitor_estimate_json_and_plot(tmp_path: Path) -> None:
    out = _run("monitor", "estimate", "case33bw", "--meters", "5,12,29", "--json", "--plots", str(tmp_path))
    assert out["converged"] and out["observable"]
    assert out["meters"] == [0, 5, 12, 29]
    assert out["max_error_pu"] < 0.01
    assert len(out["buses"]) == 33
    assert Path(out["plots"][0]).stat().st_size > 10_000


def test_monitor_estimate_removes_a_gross_error() -> None:
    out = _run("monitor", "estimate", "case33bw", "--meters", "5,12,29", "--gross-error", "15", "--json")
    assert out["removed_bad_data"] == ["bus 5: V"]


def test_monitor_place_meters_table_and_curve(tmp_path: Path) -> None:
    out = _run("monitor", "place-meters", "cigre_mv", "--json", "--plots", str(tmp_path))
    assert out["meets_target"] and out["cost_eur"] > 0
    assert [p["cost_eur"] for p in out["curve"]] == sorted(p["cost_eur"] for p in out["curve"])
    assert Path(out["plots"][0]).exists()
    table = runner.invoke(app, ["monitor", "place-meters", "case33bw"])
    assert table.exit_code == 0 and "Meter placement on case33bw" in table.output
    milp = _run("monitor", "place-meters", "case33bw", "--method", "milp", "--tolerance", "0.005", "--json")
    assert milp["method"] == "milp" and milp["meets_target"] and milp["error_bound_pu"] <= 0.005


def test_risk_n1_probabilistic_and_requests(tmp_path: Path) -> None:
    n1 = _run("risk", "n1", "case33bw", "--json", "--plots", str(tmp_path))
    assert len(n1["outages"]) == 32 and n1["eens_mwh_per_yr"] > 0
    pr = _run("risk", "probabilistic", "case33bw", "--scenarios", "500", "--json", "--plots", str(tmp_path))
    assert 0 < pr["any_violation_prob"] < 1 and pr["cvar_kw"] >= pr["var_kw"]
    rq = _run("risk", "requests", "case33bw", "--slot-start-s", str(18 * 3600), "--slot-count", "2",
              "--scenarios", "500", "--json", "--plots", str(tmp_path))
    assert rq["requests"] and rq["requests"][0]["direction"] in (0, "UP")
    assert all(s["violation_prob_out_of_sample"] <= 0.05 + 0.03 for s in rq["slots"])
    assert len(list(tmp_path.glob("*.png"))) == 4


def test_unknown_net_is_reported_with_the_field() -> None:
    result = runner.invoke(app, ["risk", "n1", "no_such_net"])
    assert result.exit_code == 2
    assert "net" in result.output and "no_such_net" in result.output


def test_monitor_names_the_channels_where_a_gross_error_cannot_be_found() -> None:
    out = _run("monitor", "estimate", "case33bw", "--meters", "5,12,29", "--json")
    rows = {r["channel"]: r for r in out["bad_data_channels"]}
    assert rows["bus 12: V"]["status"] == "detectable"
    assert rows["bus 12: P line 11"]["status"] == "undetectable"
    assert "cannot" in rows["bus 12: P line 11"]["message"] or "too weakly checked" in rows["bus 12: P line 11"]["message"]
    assert out["bad_data_detectable"] is False
    table = runner.invoke(app, ["monitor", "estimate", "case33bw", "--meters", "5,12,29"])
    assert "channel bus 12: P line 11 is too weakly checked" in " ".join(table.output.split())


def test_monitor_bad_data_detectable_placement_then_estimate_finds_a_flow_error() -> None:
    placed = _run("monitor", "place-meters", "case33bw", "--pseudo-sigma", "0.3", "--bad-data-detectable", "--json")
    assert placed["bad_data_detectable"] is True
    assert all(r["status"] == "detectable" for r in placed["bad_data_channels"])
    spec = ",".join(f"{m['bus']}:{m['type']}" for m in placed["meters"])
    out = _run("monitor", "estimate", "case33bw", "--meters", spec, "--gross-error", "15",
               "--gross-error-channel", "substation: P line 0", "--json")
    assert out["bad_data_detectable"] is True
    assert out["removed_bad_data"] == ["substation: P line 0"]
    bad = runner.invoke(app, ["monitor", "estimate", "case33bw", "--meters", "5:golden"])
    assert bad.exit_code != 0 and "--meters" in bad.output


def test_monitor_and_risk_on_a_net_file_with_two_external_grids(tmp_path: Path) -> None:
    import pandapower as pp

    from tests.netmodels import cigre_mv_two_grids_net

    path = tmp_path / "two_grids.json"
    pp.to_json(cigre_mv_two_grids_net(), str(path))
    out = _run("monitor", "estimate", str(path), "--meters", "5,10", "--json")
    assert out["meters"] == [0, 15, 5, 10] and out["converged"] and out["observable"]
    assert {r["channel"].split(":")[0] for r in out["bad_data_channels"]} >= {"substation@0", "substation@15"}
    n1 = _run("risk", "n1", str(path), "--json")
    assert any(o["branch"] == "trafo 1" for o in n1["outages"])
