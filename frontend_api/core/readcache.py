"""A short-lived cache of public read answers (pure ASGI, on the event loop).

Anonymous GETs of the auditor's routes and of /health answer the same for everyone; under many
clients each one used to take a worker thread, a database session and the interpreter lock.
Their answers are kept keyed by path and query and served as the bytes first sent (no new
serialisation), with an ETag (`If-None-Match` gets a 304 without a body).

Age: an answer is served at most `ttl_s` after its computation *started* (the data it shows was
read after that instant). A key asked for after `refresh_after` of that age (earlier if its last
computation was slow: three times its duration before expiry) is recomputed in the background
while the current answer is still served, so a client polling a busy key normally never waits
for a recomputation; one asked for after `ttl_s` is recomputed while the request
waits, and concurrent misses of one key wait for one computation.

Requests with credentials (Authorization, Cookie), other methods, /verify and the event stream
pass straight through: role-specific answers are never stored here."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHED_PREFIXES = ("/auditor/", "/health")
NOT_CACHED = ("/verify",)  # runs an audit on request: never answered from the cache
CREDENTIALS = (b"authorization", b"cookie")

log = logging.getLogger("flexgrid.api.readcache")


@dataclass
class _Answer:
    at: float  # when its computation started
    duration: float  # how long it took
    status: int
    headers: list[tuple[bytes, bytes]]  # as sent, with the ETag and x-cache: hit
    body: bytes
    etag: bytes
    not_modified_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _etag(body: bytes) -> bytes:
    return b'"' + hashlib.blake2b(body, digest_size=12).hexdigest().encode() + b'"'


class ReadCache:
    def __init__(self, app: ASGIApp, ttl_s: float = 0.25, refresh_after: float = 0.4,
                 max_entries: int = 10_000) -> None:
        """`refresh_after`: fraction of `ttl_s` after which a requested answer is recomputed in the
        background."""
        self.app = app
        self.ttl_s = ttl_s
        self.refresh_s = ttl_s * refresh_after
        self.max_entries = max_entries
        self._answers: dict[tuple[str, bytes], _Answer] = {}
        self._inflight: dict[tuple[str, bytes], asyncio.Future[_Answer | None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def _cacheable(self, scope: Scope) -> bool:
        if self.ttl_s <= 0 or scope["type"] != "http" or scope["method"] != "GET":
            return False
        path: str = scope["path"]
        if not path.startswith(CACHED_PREFIXES) or path.endswith(NOT_CACHED):
            return False
        return not any(k.lower() in CREDENTIALS for k, _ in scope.get("headers", []))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._cacheable(scope):
            await self.app(scope, receive, send)
            return
        key = (scope["path"], scope.get("query_string", b""))
        answer = self._answers.get(key)
        now = time.monotonic()
        if answer is not None and now - answer.at <= self.ttl_s:
            # recompute ahead: after refresh_s, and early enough that a slow computation is done in time
            if now - answer.at > min(self.refresh_s, self.ttl_s - 3 * answer.duration) and key not in self._inflight:
                task = asyncio.create_task(self._compute(key, self._begin(key), scope, None))
                self._background.add(task)  # keep a reference until done
                task.add_done_callback(self._background.discard)
            await self._send(answer, scope, send)
            return
        waiting = self._inflight.get(key)
        if waiting is None:
            await self._compute(key, self._begin(key), scope, send, receive)
            return  # this request's answer was sent while it was computed
        answer = await asyncio.shield(waiting)
        if answer is None:  # the computation we waited for was not cacheable: ask ourselves
            await self.app(scope, receive, send)
        else:
            await self._send(answer, scope, send)

    @staticmethod
    async def _send(answer: _Answer, scope: Scope, send: Send) -> None:
        for k, v in scope.get("headers", []):
            if k.lower() == b"if-none-match" and answer.etag in (t.strip() for t in v.split(b",")):
                await send({"type": "http.response.start", "status": 304, "headers": answer.not_modified_headers})
                await send({"type": "http.response.body", "body": b""})
                return
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})

    def _begin(self, key: tuple[str, bytes]) -> asyncio.Future[_Answer | None]:
        """Mark `key` as being computed (before any await, so that no second computation starts)."""
        future: asyncio.Future[_Answer | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        return future

    async def _compute(self, key: tuple[str, bytes], future: asyncio.Future[_Answer | None], scope: Scope,
                       send: Send | None, receive: Receive | None = None) -> None:
        """Run the app for `key`, store a 200 answer; send it to `send` too (None: background)."""
        started = time.monotonic()
        start: Message | None = None
        chunks: list[bytes] = []
        passed_through = False
        done = asyncio.Event()
        requested = False

        async def background_receive() -> Message:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def capture(message: Message) -> None:
            nonlocal start, passed_through
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                return
            chunks.append(message.get("body", b""))
            if passed_through or (message.get("more_body", False) or start["status"] != 200):
                # streamed or not a 200: not stored, passed on as it comes
                if send is not None:
                    if not passed_through:
                        await send(start)
                        for chunk in chunks[:-1]:
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send(message)
                passed_through = True

        answer: _Answer | None = None
        try:
            request_scope = dict(scope) if send is None else scope
            await self.app(request_scope, receive if receive is not None else background_receive, capture)
            if start is not None and not passed_through:
                body = b"".join(chunks)
                etag = _etag(body)
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"etag"]
                hit = [(b"etag", etag), (b"x-cache", b"hit")]
                answer = _Answer(started, time.monotonic() - started, int(start["status"]), [*headers, *hit], body,
                                 etag, hit)
                if len(self._answers) >= self.max_entries:
                    self._answers.clear()
                self._answers[key] = answer
                if send is not None:
                    await send({**start, "headers": [*headers, (b"etag", etag)]})
                    await send({"type": "http.response.body", "body": body})
        except Exception:
            if send is not None:
                raise
            log.exception("background refresh of %s failed", key[0])
        finally:
            done.set()
            del self._inflight[key]
            future.set_result(answer)


__all__ = ["ReadCache"]
