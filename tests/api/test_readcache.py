"""The public read cache (frontend_api/core/readcache.py) behind real uvicorn: answers are never
older than the stated age, credentials bypass it, ETags give 304, errors are not stored."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from frontend_api.core.readcache import ReadCache
from tests.api.conftest import free_port

TTL = 0.2


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    async def value(self, request: Request) -> JSONResponse:
        self.calls += 1
        return JSONResponse({"n": self.calls, "computed_at": time.monotonic(),
                             "auth": request.headers.get("authorization")})

    async def missing(self, request: Request) -> JSONResponse:
        self.calls += 1
        return JSONResponse({"title": "Not found"}, status_code=404)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Counter]]:
    counter = Counter()
    app = ReadCache(Starlette(routes=[Route("/auditor/value", counter.value),
                                      Route("/auditor/missing", counter.missing)]), ttl_s=TTL)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", counter
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_answers_are_never_older_than_the_stated_age_and_are_refreshed(served: tuple[str, Counter]) -> None:
    url, counter = served
    before = counter.calls
    ages, seen = [], set()
    with httpx.Client(base_url=url) as c:
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            r = c.get("/auditor/value")
            assert r.status_code == 200
            ages.append(time.monotonic() - r.json()["computed_at"])
            seen.add(r.json()["n"])
    assert max(ages) <= TTL + 0.05  # + the answer's way back to this client
    assert len(ages) > 3 * (counter.calls - before)  # served from the cache ...
    assert len(seen) >= 1.5 / TTL - 1  # ... and recomputed as it ages


def test_requests_with_credentials_are_never_answered_from_the_cache(served: tuple[str, Counter]) -> None:
    url, counter = served
    with httpx.Client(base_url=url) as c:
        c.get("/auditor/value")  # an anonymous answer is in the cache
        for who in ("Bearer alice", "Bearer bob"):
            before = counter.calls
            r = c.get("/auditor/value", headers={"Authorization": who})
            assert r.json()["auth"] == who and counter.calls == before + 1
            assert "x-cache" not in r.headers
        r = c.get("/auditor/value", headers={"Cookie": "session=1"})
        assert "x-cache" not in r.headers


def test_etag_gives_304_until_the_answer_changes(served: tuple[str, Counter]) -> None:
    url, _ = served
    with httpx.Client(base_url=url) as c:
        first = c.get("/auditor/value")
        etag = first.headers["etag"]
        again = c.get("/auditor/value", headers={"If-None-Match": etag})
        if again.status_code == 304:  # same answer still cached
            assert again.content == b"" and again.headers["etag"] == etag
        time.sleep(TTL + 0.05)
        later = c.get("/auditor/value", headers={"If-None-Match": etag})
        assert later.status_code == 200 and later.headers["etag"] != etag and later.json() != first.json()


def test_errors_are_not_stored(served: tuple[str, Counter]) -> None:
    url, counter = served
    with httpx.Client(base_url=url) as c:
        before = counter.calls
        for _ in range(3):
            assert c.get("/auditor/missing").status_code == 404
        assert counter.calls == before + 3


def test_concurrent_clients_share_one_computation_per_refresh(served: tuple[str, Counter]) -> None:
    url, counter = served

    async def hammer() -> list[int]:
        async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=50)) as c:
            statuses: list[int] = []
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                answers = await asyncio.gather(*(c.get("/auditor/value") for _ in range(50)))
                statuses += [r.status_code for r in answers]
            return statuses

    before = counter.calls
    statuses = asyncio.run(hammer())
    assert set(statuses) == {200}
    assert counter.calls - before <= 2 * 1.0 / (0.4 * TTL) + 2  # one computation per refresh at most
