"""`flexgrid chain deploy | index | round` against a real anvil."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexgrid.chain.deploy import Deployment
from flexgrid.chain.market import MarketClient
from flexgrid.chain.node import AnvilNode, chain_time_s
from flexgrid.cli.main import app
from flexgrid.trading import PricingRule, RoundConfig, SealMode

pytestmark = pytest.mark.chain


def test_deploy_index_and_show_a_round(anvil: AnvilNode, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "deployment.json"
    env = {"FLEXGRID_RPC_URL": anvil.url, "FLEXGRID_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    result = runner.invoke(app, ["chain", "deploy", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    deployment = Deployment.load(out)
    assert deployment.chain_id == 31337

    result = runner.invoke(app, ["chain", "index", "--deployment", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert "events" in result.output
    result = runner.invoke(app, ["chain", "index", "--deployment", str(out)], env=env)
    assert "0 events, 0 orders added" in result.output

    result = runner.invoke(app, ["chain", "round", "1", "--deployment", str(out), "--json"], env=env)
    assert result.exit_code != 0  # no round yet: the typed revert surfaces
    assert "UnknownRound" in repr(result.exception)

    operator, dso, oracle = anvil.dev_accounts()[:3]
    op = MarketClient(anvil.web3(), deployment, operator)
    op.set_dso("cli-grid", dso.address)
    op.grant_oracle(oracle.address)
    now = chain_time_s(anvil.web3())
    cfg = op.create_round(
        RoundConfig(
            round_id=0,
            grid_id="cli-grid",
            grid_model_hash="0x" + "44" * 32,
            slot_start_s=now + 7200,
            slot_seconds=900,
            slot_count=96,
            gate_closure_s=now + 3600,
            pricing_rule=PricingRule.DLMP,
            seal_mode=SealMode.OPEN,
            dispute_window_s=600,
            price_cap_eur_per_mwh=300.0,
            tolerance_bps=0,
            penalty_bps=0,
            bid_deposit_eur=0.0,
        )
    )
    result = runner.invoke(
        app, ["chain", "round", str(cfg.round_id), "--deployment", str(out), "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["state"] == "OPEN"
    assert shown["config"]["slot_count"] == 96 and shown["config"]["pricing_rule"] == int(PricingRule.DLMP)


def test_deploy_without_rpc_url_explains_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEXGRID_RPC_URL", raising=False)
    result = CliRunner().invoke(app, ["chain", "deploy"])
    assert result.exit_code == 2
    assert "would vanish" in result.output
