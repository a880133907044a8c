"""The managed anvil node, connect() and the deployment file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from web3 import Web3

from flexgrid.chain.artifacts import decode_revert, load_artifact
from flexgrid.chain.deploy import Deployment
from flexgrid.chain.node import AnvilNode, connect
from flexgrid.errors import ChainError, InputError

pytestmark = pytest.mark.chain


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_connect_without_url_starts_and_stops_its_own_anvil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEXGRID_RPC_URL", raising=False)
    with connect() as chain:
        assert chain.managed and chain.node is not None
        assert chain.url.startswith("http://127.0.0.1:")
        assert chain.w3.eth.chain_id == 31337
        assert chain.w3.eth.get_balance(chain.dev_accounts()[0].address) > 0
        pid = chain.node._process.pid if chain.node._process else -1
    assert not _alive(pid)


def test_connect_uses_flexgrid_rpc_url(monkeypatch: pytest.MonkeyPatch, anvil: AnvilNode) -> None:
    monkeypatch.setenv("FLEXGRID_RPC_URL", anvil.url)
    with connect() as chain:
        assert not chain.managed
        assert chain.url == anvil.url
        # an external dev node: its unlocked accounts of the default mnemonic, with their keys
        assert [a.address for a in chain.dev_accounts()] == [a.address for a in anvil.dev_accounts()]
    assert anvil.running  # closing a connection to an external chain leaves the chain alone


def test_flexgrid_mnemonic_gives_the_accounts_of_an_external_chain(
    monkeypatch: pytest.MonkeyPatch, anvil: AnvilNode
) -> None:
    mnemonic = "legal winner thank year wave sausage worth useful legal winner thank yellow"
    monkeypatch.setenv("FLEXGRID_MNEMONIC", mnemonic)
    monkeypatch.setenv("FLEXGRID_ACCOUNTS", "3")
    with connect(anvil.url) as chain:
        accounts = chain.dev_accounts()
    assert len(accounts) == 3
    assert accounts[0].address not in {a.address for a in anvil.dev_accounts()}


def test_connect_to_a_dead_url_is_a_chain_error() -> None:
    with pytest.raises(ChainError, match="does not answer"):
        connect("http://127.0.0.1:9", timeout_s=2)


def test_two_nodes_get_different_ports() -> None:
    with AnvilNode(chain_id=1337) as a, AnvilNode() as b:
        assert a.port != b.port
        assert Web3(Web3.HTTPProvider(a.url)).eth.chain_id == 1337
    assert not a.running and not b.running


def test_missing_anvil_binary_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLEXGRID_ANVIL", str(tmp_path / "no-anvil"))
    with pytest.raises(ChainError, match="FLEXGRID_ANVIL"):
        AnvilNode().start()


def test_deployment_round_trips_through_json(deployment: Deployment, w3: Web3, tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    deployment.save(path)
    loaded = Deployment.load(path)
    assert loaded == deployment
    loaded.check_code(w3)
    assert loaded.domain.verifying_contract == deployment.market


def test_deployment_on_another_chain_is_refused(deployment: Deployment, w3: Web3) -> None:
    with pytest.raises(ChainError, match="chain 5"):
        deployment.model_copy(update={"chain_id": 5}).check_code(w3)
    with pytest.raises(ChainError, match="no contract code"):
        deployment.model_copy(update={"market": "0x" + "12" * 20}).check_code(w3)


def test_missing_deployment_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        Deployment.load(tmp_path / "nope.json")
    assert info.value.field == "deployment"


def test_unknown_revert_data_is_kept_as_hex() -> None:
    revert = decode_revert("0xdeadbeef01")
    assert revert.error_name == "UnknownRevert"
    assert revert.args_ == ("0xdeadbeef01",)


def test_shipped_artifacts_have_bytecode() -> None:
    for name in ("FlexToken", "FlexRegistry", "FlexMarket"):
        artifact = load_artifact(name)
        assert len(artifact.bytecode) > 1000 and artifact.abi


def test_anvil_is_stopped_when_the_interpreter_exits_without_closing(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "from flexgrid.chain import connect\nchain = connect()\nprint(chain.node._process.pid, flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "FLEXGRID_RPC_URL"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env, check=True
    )
    pid = int(out.stdout.split()[0])
    assert not _alive(pid)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed anvil whose parent died waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux (prctl parent-death signal)")
def test_anvil_does_not_outlive_a_killed_process() -> None:
    """SIGKILL skips atexit: the kernel's parent-death signal must stop anvil anyway."""
    import signal
    import subprocess
    import sys
    import time

    script = "import time\nfrom flexgrid.chain import connect\nchain = connect()\nprint(chain.node._process.pid, flush=True)\ntime.sleep(120)\n"
    env = {k: v for k, v in os.environ.items() if k != "FLEXGRID_RPC_URL"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline().split()[0])
        assert _running(pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid)
