"""A managed anvil node, and `connect()` to the configured chain or to a fresh anvil.

When `FLEXGRID_RPC_URL` is not set, FlexGrid starts its own anvil on a free loopback port (anvil
binds port 0 itself, so two nodes never race for a port) and stops it on exit, also when the
interpreter exits without closing it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from flexgrid.errors import ChainError

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
DEFAULT_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_CHAIN_ID = 31337
_LISTENING = re.compile(r"Listening on ([0-9.]+):(\d+)")
_RUNNING: set[AnvilNode] = set()


def find_anvil() -> str:
    """Path of the anvil binary: `FLEXGRID_ANVIL`, else the npm package near the repo, else PATH."""
    env = os.environ.get("FLEXGRID_ANVIL")
    if env:
        if not Path(env).is_file():
            raise ChainError(f"FLEXGRID_ANVIL={env} is not a file")
        return env
    starts = [Path(__file__).resolve().parents[2], Path.cwd()]
    for start in starts:
        for folder in [start, *start.parents]:
            modules = folder / "node_modules"
            if not modules.is_dir():
                continue
            # The platform package holds the real binary; the .bin entry is a node wrapper.
            for binary in sorted(modules.glob("@foundry-rs/anvil-*/bin/anvil")):
                if os.access(binary, os.X_OK):
                    return str(binary)
            wrapper = modules / ".bin" / "anvil"
            if wrapper.exists():
                return str(wrapper)
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    raise ChainError("anvil not found: run `npm ci` in the repository, or set FLEXGRID_ANVIL")


def dev_accounts(count: int = 10, mnemonic: str = DEFAULT_MNEMONIC) -> list[LocalAccount]:
    """The first `count` accounts anvil funds from `mnemonic` (BIP-44 path m/44'/60'/0'/0/i)."""
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)]


@dataclass(eq=False)
class AnvilNode:
    """An anvil process on a free loopback port; use as a context manager.

    `accounts` funded accounts come from `mnemonic`; `block_time_s` (None = mine on every
    transaction) and `extra_args` go to anvil unchanged.
    """

    chain_id: int = ANVIL_CHAIN_ID
    accounts: int = 10
    balance_eth: int = 10_000
    mnemonic: str = DEFAULT_MNEMONIC
    block_time_s: float | None = None
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: float = 30.0
    binary: str | None = None
    host: str = field(default="127.0.0.1", init=False)
    port: int = field(default=0, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log_path: Path | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        if self._process is None:
            raise ChainError("anvil is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path | None:
        """File holding anvil's output (kept while the node runs)."""
        return self._log_path

    def start(self) -> Self:
        """Start anvil and wait until it answers JSON-RPC; raises `ChainError` if it does not."""
        if self._process is not None:
            return self
        binary = self.binary or find_anvil()
        args = [
            binary,
            "--host",
            self.host,
            "--port",
            "0",
            "--chain-id",
            str(self.chain_id),
            "--accounts",
            str(self.accounts),
            "--balance",
            str(self.balance_eth),
            "--mnemonic",
            self.mnemonic,
        ]
        if self.block_time_s is not None:
            args += ["--block-time", str(self.block_time_s)]
        args += list(self.extra_args)
        fd, log_name = tempfile.mkstemp(prefix="flexgrid-anvil-", suffix=".log")
        self._log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log:
            # A new session so that stopping it also stops any child (the npm wrapper spawns one).
            self._process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        _RUNNING.add(self)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None and self._log_path is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ChainError(f"anvil exited with code {self._process.returncode}: {self._log_tail()}")
            match = _LISTENING.search(self._log_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(2))
                break
            time.sleep(0.02)
        else:
            raise ChainError(f"anvil did not start within {self.startup_timeout_s} s: {self._log_tail()}")
        w3 = Web3(HTTPProvider(self.url, request_kwargs={"timeout": 5}))
        while time.monotonic() < deadline:
            try:
                if w3.eth.chain_id == self.chain_id:
                    return
            except Exception:  # not answering yet
                time.sleep(0.02)
        raise ChainError(f"anvil at {self.url} did not answer within {self.startup_timeout_s} s")

    def _log_tail(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """Stop anvil (and its children) and remove its log file; safe to call twice."""
        process, self._process = self._process, None
        _RUNNING.discard(self)
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None
        self.port = 0

    def web3(self, timeout_s: float = 30.0) -> Web3:
        """A web3 client for this node."""
        return Web3(HTTPProvider(self.url, request_kwargs={"timeout": timeout_s}))

    def dev_accounts(self) -> list[LocalAccount]:
        """The funded accounts of this node, with their private keys."""
        return dev_accounts(self.accounts, self.mnemonic)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a `preexec_fn` that has the kernel send anvil SIGTERM when the process that started
    it dies, so that a SIGKILLed FlexGrid (where `atexit` cannot run) leaves no anvil behind.

    The kernel sends the signal when the starting *thread* ends, so it is only armed when anvil is
    started from the main thread (whose end is the process's)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, before the fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


@atexit.register
def _stop_all() -> None:
    for node in list(_RUNNING):
        node.stop()


@dataclass(eq=False)
class ChainConnection:
    """A web3 client to the configured chain, and the anvil node FlexGrid started, if any."""

    w3: Web3
    url: str
    chain_id: int
    node: AnvilNode | None = None

    @property
    def managed(self) -> bool:
        """True when FlexGrid started the node itself (and stops it on `close`)."""
        return self.node is not None

    def dev_accounts(self) -> list[LocalAccount]:
        """Funded accounts with their keys, for development chains.

        The managed anvil's accounts; on an external chain, the accounts of `FLEXGRID_MNEMONIC`
        (`FLEXGRID_ACCOUNTS` of them, default 10), else those of anvil's/hardhat's default
        mnemonic that the node reports as its own (`eth_accounts`), else none.
        """
        if self.node is not None:
            return self.node.dev_accounts()
        mnemonic = os.environ.get("FLEXGRID_MNEMONIC")
        if mnemonic:
            return dev_accounts(int(os.environ.get("FLEXGRID_ACCOUNTS", "10")), mnemonic)
        try:
            unlocked = {str(a) for a in self.w3.eth.accounts}
        except Exception:  # nodes without eth_accounts
            return []
        if not unlocked:
            return []
        derived = dev_accounts(min(len(unlocked), 50))
        return [a for a in derived if a.address in unlocked]

    def close(self) -> None:
        if self.node is not None:
            self.node.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def connect(rpc_url: str | None = None, *, timeout_s: float = 30.0, **anvil_options: Any) -> ChainConnection:
    """Connect to `rpc_url`, else to `FLEXGRID_RPC_URL`, else to a new anvil FlexGrid manages.

    `anvil_options` are `AnvilNode` fields (chain_id, accounts, block_time_s, …) used only when
    an anvil is started. Raises `ChainError` when the chain does not answer.
    """
    url = rpc_url or os.environ.get("FLEXGRID_RPC_URL") or None
    if url is None:
        node = AnvilNode(**anvil_options).start()
        w3 = node.web3(timeout_s)
        return ChainConnection(w3=w3, url=node.url, chain_id=node.chain_id, node=node)
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout_s}))
    try:
        chain_id = int(w3.eth.chain_id)
    except Exception as exc:
        raise ChainError(f"the chain at {url} does not answer: {exc}") from exc
    return ChainConnection(w3=w3, url=url, chain_id=chain_id)


# ---------------------------------------------------------------------------------------------
# Development-chain controls (anvil/hardhat JSON-RPC methods): time, mining, snapshots, reorgs.


def chain_time_s(w3: Web3) -> int:
    """Timestamp of the latest block."""
    return int(w3.eth.get_block("latest")["timestamp"])


def mine(w3: Web3, blocks: int = 1) -> None:
    """Mine `blocks` empty blocks."""
    for _ in range(blocks):
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def time_travel(w3: Web3, to_s: int) -> None:
    """Mine a block with timestamp `to_s` (must be later than the latest block)."""
    w3.provider.make_request("evm_mine", [to_s])  # type: ignore[arg-type]


def snapshot(w3: Web3) -> str:
    """Take a snapshot of the chain state; `revert_to` returns to it."""
    return str(w3.provider.make_request("evm_snapshot", [])["result"])  # type: ignore[arg-type]


def revert_to(w3: Web3, snapshot_id: str) -> None:
    """Return to a snapshot (which is used up)."""
    response = w3.provider.make_request("evm_revert", [snapshot_id])  # type: ignore[arg-type]
    if not response.get("result"):
        raise ChainError(f"could not revert to snapshot {snapshot_id}: {response}")


__all__ = [
    "ANVIL_CHAIN_ID",
    "DEFAULT_MNEMONIC",
    "AnvilNode",
    "ChainConnection",
    "chain_time_s",
    "connect",
    "dev_accounts",
    "find_anvil",
    "mine",
    "revert_to",
    "snapshot",
    "time_travel",
]
