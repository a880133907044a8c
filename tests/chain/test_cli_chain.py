"""`flexgrid chain deploy | index | round` against a real anvil."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexgrid.chain.deploy import Deployment
from flexgrid.chain.node import AnvilNode
from flexgrid.cli.main import app
from flexgrid.trading import PricingRule
from tests.conftest import MarketEnv

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
    market = MarketEnv(
        w3=anvil.web3(),
        deployment=deployment,
        operator=operator,
        dso=dso,
        metering=dso,
        oracle=oracle,
        providers=[],
        grid_id="cli-grid",
        grid_model_hash="0x" + "44" * 32,
    )
    op = market.client()
    op.set_dso(market.grid_id, dso.address)
    op.grant_oracle(oracle.address)
    cfg = op.create_round(
        market.round_config(
            slot_count=96,
            pricing_rule=PricingRule.DLMP,
            price_cap_eur_per_mwh=300.0,
            tolerance_bps=0,
            penalty_bps=0,
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
