"""A short-lived cache of public read answers (pure ASGI, on the event loop).

Anonymous GETs of the auditor's routes and of /health answer the same for everyone; under many
clients each one used to take a worker thread, a database session and the interpreter lock.
Their answers are kept for `ttl_s` (a fraction of a second, like the half-second cache of chain
views behind them) keyed by path and query; concurrent misses of one key wait for one computation.
Requests with credentials, other methods and the event stream pass straight through."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHED_PREFIXES = ("/auditor/", "/health")
NOT_CACHED = ("/verify",)  # runs an audit on request: never answered from the cache


@dataclass
class _Answer:
    at: float
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class ReadCache:
    def __init__(self, app: ASGIApp, ttl_s: float = 0.25, max_entries: int = 10_000) -> None:
        self.app = app
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._answers: dict[tuple[str, bytes], _Answer] = {}
        self._inflight: dict[tuple[str, bytes], asyncio.Future[_Answer | None]] = {}

    def _cacheable(self, scope: Scope) -> bool:
        if self.ttl_s <= 0 or scope["type"] != "http" or scope["method"] != "GET":
            return False
        path: str = scope["path"]
        if not path.startswith(CACHED_PREFIXES) or path.endswith(NOT_CACHED):
            return False
        return not any(k.lower() in (b"authorization", b"cookie") for k, _ in scope.get("headers", []))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._cacheable(scope):
            await self.app(scope, receive, send)
            return
        key = (scope["path"], scope.get("query_string", b""))
        answer = self._answers.get(key)
        if answer is None or time.monotonic() - answer.at > self.ttl_s:
            waiting = self._inflight.get(key)
            if waiting is not None:
                answer = await asyncio.shield(waiting)
            else:
                answer = await self._compute(key, scope, receive, send)
                if answer is None:  # not cacheable (an error): already sent
                    return
        if answer is None:  # the computation we waited for was not cacheable: ask ourselves
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": [*answer.headers, (b"x-cache", b"hit")]})
        await send({"type": "http.response.body", "body": answer.body})

    async def _compute(self, key: tuple[str, bytes], scope: Scope, receive: Receive, send: Send) -> _Answer | None:
        future: asyncio.Future[_Answer | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        answer: _Answer | None = None
        try:
            await self.app(scope, receive, capture)
            if status == 200:
                answer = _Answer(time.monotonic(), status, headers, b"".join(chunks))
                if len(self._answers) >= self.max_entries:
                    self._answers.clear()
                self._answers[key] = answer
        finally:
            del self._inflight[key]
            future.set_result(answer)
        return None  # this request's answer was sent while it was computed


__all__ = ["ReadCache"]
