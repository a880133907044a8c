"""Rounds over a grid model that is not a built-in network: case33bw with one line's impedance
changed, uploaded by a DSO (the API's `api_grid_model` table) or given as a pandapower JSON file.
The real oracle clears and commits on a real anvil, publishes the model beside the result, and the
real auditor (`flexgrid audit verify`) verifies the round from the publication; a tampered
published model is caught; a hash that matches no model refuses the round without a commit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandapower as pp
import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from flexgrid.chain.market import MarketClient
from flexgrid.chain.node import AnvilNode
from flexgrid.cli.main import app
from flexgrid.grid import load_net
from flexgrid.oracle.publication import grid_model_path, load_publication, publication_path
from flexgrid.oracle.service import Oracle, OracleSettings, Stage
from flexgrid.store import init_db, make_engine
from flexgrid.store.grid_models import GridModelMismatch, model_from_json, resolve_grid_model
from flexgrid.trading import RoundState
from frontend_api.api.grid_models import check_upload
from frontend_api.models import UploadedGridModel
from tests.conftest import MarketEnv
from tests.oracle.helpers import GRID, close_round, grid_hash, mine, open_round

pytestmark = pytest.mark.chain


def _modified_case33bw(line: int, factor: float) -> str:
    """case33bw with line `line`'s resistance and reactance scaled by `factor`, as pandapower JSON."""
    net = load_net(GRID)
    net.line.loc[line, ["r_ohm_per_km", "x_ohm_per_km"]] *= factor
    return str(pp.to_json(net))


def _upload(engine_url: str, text: str, dso: str) -> str:
    """Store `text` as the API's POST /dso/grid-models does (its checks, its row); the hash."""
    checked = check_upload("feeder-7 (reinforced line 20)", "pandapower", text)
    engine = make_engine(engine_url)
    init_db(engine)
    with Session(engine) as session:
        session.add(UploadedGridModel(
            grid_model_hash=checked.grid_model_hash, name="feeder-7", source_format="pandapower", uploaded_by=dso,
            buses=len(checked.net.bus), nodes=checked.view.n_node, branches=checked.view.n_branch,
            radial=checked.view.is_radial, radial_reason=checked.view.radial_reason, net_json=checked.net_json,
            content_sha256="-"))
        session.commit()
    engine.dispose()
    return checked.grid_model_hash


def _audit(market: MarketEnv, anvil: AnvilNode, tmp_path: Path, round_id: int, *extra: str) -> tuple[int, str]:
    market.deployment.save(tmp_path / "deployment.json")
    result = CliRunner().invoke(app, ["audit", "verify", "--round", str(round_id), "--deployment",
                                      str(tmp_path / "deployment.json"), "--rpc-url", anvil.url, "--fresh-index",
                                      *extra])
    return result.exit_code, result.output


def test_a_round_on_an_uploaded_grid_model_is_cleared_published_and_verified_and_tampering_is_caught(
    market: MarketEnv, anvil: AnvilNode, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'shared.db'}"  # the oracle and the API share the database
    model_hash = _upload(db_url, _modified_case33bw(20, 0.5), market.dso.address)
    assert model_hash != grid_hash()  # not the built-in case33bw
    r = open_round(market, grid_model_hash=model_hash)
    close_round(market, r)
    oracle = Oracle(market.w3, market.deployment, market.oracle, make_engine(db_url),
                    OracleSettings(results_dir=tmp_path / "results"))

    [outcome] = mine(oracle.run_once(), r.round_id)

    assert outcome.stage == Stage.PUBLISHED, outcome.detail
    assert MarketClient(market.w3, market.deployment).round_state(r.round_id) == RoundState.COMMITTED
    path = publication_path(tmp_path / "results", market.deployment.chain_id, market.deployment.market, r.round_id)
    doc = load_publication(path)
    assert doc["gridModelHash"] == model_hash
    assert doc["gridModel"] == {"file": f"grid-model-{model_hash}.json", "gridModelHash": model_hash}
    published = grid_model_path(path.parent, model_hash)
    assert model_from_json(published.read_text(), "published", "published").grid_model_hash == model_hash

    # the auditor needs nothing but the chain and the publication folder (the URI committed on chain)
    code, out = _audit(market, anvil, tmp_path, r.round_id, "--resolve")
    assert code == 0, out
    assert f"round {r.round_id}: VERIFIED" in out
    assert f"published grid model grid-model-{model_hash}.json" in out

    # a copy of the publication whose grid model was swapped for another net
    tampered = tmp_path / "tampered"
    shutil.copytree(path.parent, tampered)
    grid_model_path(tampered, model_hash).write_text(_modified_case33bw(20, 0.4))
    code, out = _audit(market, anvil, tmp_path, r.round_id, "--publication", str(tampered / path.name))
    assert code == 1, out
    assert f"round {r.round_id}: NOT VERIFIED" in out
    assert any(line.startswith("  - grid-model: the published grid model") and "hashes to" in line
               and model_hash in line for line in out.splitlines()), out


def test_a_model_found_by_hash_in_a_folder_and_an_unknown_hash_refused_without_a_commit(
    market: MarketEnv, tmp_path: Path
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "feeder.json").write_text(_modified_case33bw(20, 0.5))  # any name: matched by its hash
    (folder / "notes.json").write_text(json.dumps({"not": "a net"}))
    known = model_from_json((folder / "feeder.json").read_text(), "feeder", "directory").grid_model_hash
    found = resolve_grid_model(known, directory=folder)
    assert (found.source, found.name, found.grid_model_hash) == ("directory", "feeder.json", known)
    # a file named by a hash it does not have is refused, not used
    unknown = model_from_json(_modified_case33bw(7, 2.0), "other", "directory").grid_model_hash
    (folder / f"{unknown}.json").write_text(_modified_case33bw(7, 2.5))
    with pytest.raises(GridModelMismatch, match="hashes to"):
        resolve_grid_model(unknown, directory=folder)
    (folder / f"{unknown}.json").unlink()

    r = open_round(market, grid_model_hash=unknown)
    close_round(market, r)
    oracle = Oracle(market.w3, market.deployment, market.oracle, make_engine(f"sqlite:///{tmp_path / 'o.db'}"),
                    OracleSettings(results_dir=tmp_path / "results", grid_models_dir=folder))

    [outcome] = mine(oracle.run_once(), r.round_id)

    assert outcome.stage == Stage.REFUSED
    assert f"round {r.round_id}" in outcome.detail and unknown in outcome.detail, outcome.detail
    assert str(folder) in outcome.detail  # where it looked
    assert MarketClient(market.w3, market.deployment).round_state(r.round_id) == RoundState.CLOSED
    assert not publication_path(tmp_path / "results", market.deployment.chain_id, market.deployment.market,
                                r.round_id).exists()
