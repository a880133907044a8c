"""`flexgrid audit contracts`: the deployed code is checked against the published sources by
recompiling them with py-solc-x (through the project's solc shim) — both ways: the real
deployment verifies, altered code or an altered source is flagged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from web3 import Web3

from flexgrid.audit.source import (
    audit_deployment,
    compile_runtime,
    repo_root,
    standard_input_from_metadata,
    verify_contract,
)
from flexgrid.chain.artifacts import ARTIFACTS_DIR
from flexgrid.chain.deploy import Deployment
from flexgrid.chain.node import revert_to, snapshot
from flexgrid.cli.audit import deployment_addresses
from flexgrid.cli.main import app

pytestmark = [pytest.mark.chain, pytest.mark.xdist_group("audit")]

ROOT = repo_root()
SOLC = ROOT / "tools" / "solc"


def _artifacts() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in ARTIFACTS_DIR.glob("*.json")}


def test_real_deployment_matches_the_published_sources(w3: Web3, deployment: Deployment) -> None:
    addresses = deployment_addresses(w3, deployment)
    code_at = {a: bytes(w3.eth.get_code(Web3.to_checksum_address(a))) for a in addresses.values()}
    checks = audit_deployment(code_at, addresses, _artifacts(), ROOT, SOLC)
    assert {c.contract for c in checks} == {"FlexToken", "FlexRegistry", "FlexMarket", "FlexMarketSettlement"}
    for check in checks:
        assert check.verified, check.to_dict()
        assert check.changed_sources == ()


def test_deployed_code_compiled_from_altered_source_is_flagged(w3: Web3, deployment: Deployment) -> None:
    artifact = _artifacts()["FlexToken"]
    std_input, unit, name, changed, missing = standard_input_from_metadata(artifact, ROOT)
    assert not changed and not missing
    source = std_input["sources"][unit]["content"]
    assert "return 6;" in source
    std_input["sources"][unit]["content"] = source.replace("return 6;", "return 18;")
    altered_code, _ = compile_runtime(std_input, unit, name, SOLC, ROOT)

    snap = snapshot(w3)
    try:
        w3.provider.make_request("anvil_setCode", [deployment.token, "0x" + altered_code.hex()])  # type: ignore[arg-type]
        deployed = bytes(w3.eth.get_code(Web3.to_checksum_address(deployment.token)))
        check = verify_contract("FlexToken", deployment.token, deployed, artifact, ROOT, SOLC)
    finally:
        revert_to(w3, snap)
    assert not check.verified
    assert not check.code_matches
    assert "differs" in check.detail


def test_source_changed_only_in_a_comment_is_named(tmp_path: Path, w3: Web3, deployment: Deployment) -> None:
    artifact = _artifacts()["FlexToken"]
    meta = json.loads(artifact["rawMetadata"]) if isinstance(artifact.get("rawMetadata"), str) else artifact["metadata"]
    for rel in meta["sources"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, tmp_path / rel)
    token_source = tmp_path / "contracts/src/FlexToken.sol"
    token_source.write_text(token_source.read_text() + "\n// an auditor's edit\n")

    deployed = bytes(w3.eth.get_code(Web3.to_checksum_address(deployment.token)))
    check = verify_contract("FlexToken", deployment.token, deployed, artifact, tmp_path, SOLC)
    assert check.code_matches  # a comment does not change the executable code...
    assert not check.metadata_matches  # ...but it changes the metadata hash
    assert check.changed_sources == ("contracts/src/FlexToken.sol",)
    assert not check.verified


def test_missing_source_is_reported_not_crashing(tmp_path: Path, w3: Web3, deployment: Deployment) -> None:
    deployed = bytes(w3.eth.get_code(Web3.to_checksum_address(deployment.registry)))
    check = verify_contract("FlexRegistry", deployment.registry, deployed, _artifacts()["FlexRegistry"], tmp_path, SOLC)
    assert not check.verified
    assert "contracts/src/FlexRegistry.sol" in check.missing_sources


def test_cli_audit_contracts_verifies_a_deployment(tmp_path: Path, anvil: Any, deployment: Deployment) -> None:
    path = tmp_path / "deployment.json"
    deployment.save(path)
    result = CliRunner().invoke(app, ["audit", "contracts", "--deployment", str(path), "--rpc-url", anvil.url, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert all(entry["verified"] for entry in report)
    assert {entry["contract"] for entry in report} == {"FlexToken", "FlexRegistry", "FlexMarket", "FlexMarketSettlement"}
