"""A real FlexGrid API: its own anvil with the demo market, the app served by uvicorn on a free
loopback port in this process (so tests can also look at the service's state)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from flexgrid.chain.node import AnvilNode
from flexgrid.store.db import make_engine
from frontend_api.core.config import Settings
from frontend_api.core.seed import DemoMarket, seed_demo_market
from frontend_api.core.service import FlexGridService
from frontend_api.main import create_app
from tests.api.wallet import sign_in


def wait_for(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Poll `check` until it returns something true; its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Api:
    url: str
    demo: DemoMarket
    service: FlexGridService
    node: AnvilNode
    _tokens: dict[str, str]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def token(self, account: object) -> str:
        address = account.address  # type: ignore[attr-defined]
        if address not in self._tokens:
            with self.client() as c:
                self._tokens[address] = sign_in(c, account)  # type: ignore[arg-type]
        return self._tokens[address]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with AnvilNode() as node:
        w3 = node.web3()
        demo = seed_demo_market(w3, node.dev_accounts())
        port = free_port()
        settings = Settings(public_url=f"http://127.0.0.1:{port}", role_cache_s=0.0, batch_interval_s=0.1,
                            index_interval_s=0.1, sse_poll_s=0.1)
        db = tmp_path_factory.mktemp("api") / "api.db"
        service = FlexGridService(settings=settings, w3=w3, deployment=demo.deployment,
                                  engine=make_engine(f"sqlite:///{db}"), relayer=demo.relayer,
                                  demo_round_id=demo.round_id)
        server = uvicorn.Server(uvicorn.Config(create_app(service=service), host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        try:
            yield Api(f"http://127.0.0.1:{port}", demo, service, node, {})
        finally:
            server.should_exit = True
            thread.join(timeout=15)


