"""Crash safety with real process kills: `flexgrid oracle run` is killed (SIGKILL, through the
FLEXGRID_ORACLE_CRASH_AT test hook) at each checkpoint, restarted, and must finish the round with
the root a clean clearing gives, with exactly one commit transaction ever.

Each run of the command is a separate process. Starting Python with pandapower costs 5-15 s
here, so most runs are forked from the test process (modules already imported) and call the same
Typer command (`flexgrid.cli.main.app`) in the child; the `before_send` kill runs the command in a
fresh interpreter (`python -m flexgrid.cli.main oracle run ...`), as a user types it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select
from web3 import Web3

from flexgrid.chain.market import MarketClient
from flexgrid.chain.node import AnvilNode
from flexgrid.cli.main import app
from flexgrid.grid import build_view, load_net, synthetic_profiles
from flexgrid.market import clear_market
from flexgrid.oracle.publication import load_publication, publication_path, published_round
from flexgrid.oracle.service import CHECKPOINTS, CRASH_ENV, OracleCheckpoint, Stage
from flexgrid.store import make_engine
from flexgrid.trading import RoundState
from tests.conftest import MarketEnv
from tests.oracle.helpers import GRID, OracleRound, close_round, open_round

pytestmark = pytest.mark.chain

_REFERENCE: dict[tuple[str, ...], str] = {}


def _reference_root(r: OracleRound) -> str:
    """The root of a clean in-process clearing of the round's orders (cached: the `market` fixture
    reverts the chain, so every test opens the same round with the same signed orders)."""
    assert r.request is not None
    offers = [s.order.model_copy(update={"order_id": s.order_hash}) for s in r.offers]
    key = (str(r.request.order_id), *(str(o.order_id) for o in offers))
    if key not in _REFERENCE:
        net = load_net(GRID)
        view = build_view(net, GRID)
        cfg = r.config.model_copy(update={"grid_id": GRID})
        profiles = synthetic_profiles(net, view, slot_start_s=cfg.slot_start_s, slot_seconds=cfg.slot_seconds,
                                      slot_count=cfg.slot_count)
        _REFERENCE[key] = clear_market(net, profiles, cfg, [r.request, *offers], view=view, funded_only=True).merkle_root
    return _REFERENCE[key]


def _cli_child(argv: list[str], env: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(env)
    app(argv, prog_name="flexgrid")  # exits the child with the command's status


def _run_oracle(
    env: MarketEnv, rpc_url: str, tmp_path: Path, round_id: int, crash_at: str | None, *, fresh: bool = False
) -> int:
    """Run `flexgrid oracle run --round N ...` in another process; returns its exit code
    (negative: killed by that signal)."""
    deployment_file = tmp_path / "deployment.json"
    if not deployment_file.exists():
        env.deployment.save(deployment_file)
    proc_env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    proc_env.update(FLEXGRID_ORACLE_KEY="0x" + bytes(env.oracle.key).hex(), FLEXGRID_HOME=str(tmp_path / "home"))
    if crash_at is not None:
        proc_env[CRASH_ENV] = crash_at
    argv = ["oracle", "run", "--round", str(round_id), "--rpc-url", rpc_url, "--deployment", str(deployment_file),
            "--database-url", f"sqlite:///{tmp_path / 'oracle.db'}", "--results-dir", str(tmp_path / "results")]
    if fresh:
        done = subprocess.run([sys.executable, "-m", "flexgrid.cli.main", *argv], env=proc_env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode not in (0, -signal.SIGKILL):
            print(done.stdout, done.stderr)
        return done.returncode
    child = multiprocessing.get_context("fork").Process(target=_cli_child, args=(argv, proc_env))
    child.start()
    child.join(timeout=300)
    assert child.exitcode is not None, "the oracle process did not finish"
    return child.exitcode


def _commit_events(env: MarketEnv, round_id: int) -> int:
    market = env.w3.eth.contract(address=Web3.to_checksum_address(env.deployment.market),
                                 abi=MarketClient(env.w3, env.deployment).market.abi)
    logs = market.events.ClearingCommitted().get_logs(from_block=env.deployment.block_number)
    return sum(1 for log in logs if int(log["args"]["roundId"]) == round_id)


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_killed_oracle_restarts_and_commits_once_with_the_same_root(
    market: MarketEnv, anvil: AnvilNode, tmp_path: Path, checkpoint: str
) -> None:
    r = open_round(market)
    close_round(market, r)
    expected_root = _reference_root(r)
    client = MarketClient(market.w3, market.deployment)
    sent_before = market.w3.eth.get_transaction_count(market.oracle.address)

    killed = _run_oracle(market, anvil.url, tmp_path, r.round_id, crash_at=checkpoint, fresh=checkpoint == "before_send")

    assert killed == -signal.SIGKILL
    engine = make_engine(f"sqlite:///{tmp_path / 'oracle.db'}")
    with Session(engine) as session:
        [cp] = session.exec(select(OracleCheckpoint)).all()
    state_after_kill = client.round_state(r.round_id)
    if checkpoint in ("after_read", "after_solve", "before_send"):
        assert state_after_kill == RoundState.CLOSED  # nothing was sent
    else:
        assert state_after_kill == RoundState.COMMITTED
    if checkpoint != "after_read":
        assert cp.trade_root == expected_root  # solved once; the restart must not solve again

    assert _run_oracle(market, anvil.url, tmp_path, r.round_id, crash_at=None) == 0

    with Session(engine) as session:
        assert session.exec(select(OracleCheckpoint)).one().stage == Stage.PUBLISHED
    status = client.round_status(r.round_id)
    assert status.state == RoundState.COMMITTED
    assert status["tradeRoot"] == expected_root
    assert _commit_events(market, r.round_id) == 1
    assert market.w3.eth.get_transaction_count(market.oracle.address) == sent_before + 1  # one commit, ever
    doc = load_publication(publication_path(tmp_path / "results", market.deployment.chain_id,
                                            market.deployment.market, r.round_id))
    assert doc["tradeRoot"] == expected_root
    row = published_round(engine, market.deployment.chain_id, market.deployment.market, r.round_id)
    assert row is not None and row.trade_root == expected_root
