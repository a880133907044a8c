"""`Idempotency-Key` on POST: the same key and body get the first answer again; the same key
with another body gets 422; a duplicate while the first is still running gets 409.

Keys are scoped by the caller's credentials and the path. Answers with a server error (5xx) are
not kept, so the client can retry them with the same key."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from frontend_api.core.problems import problem_response

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 255


@dataclass
class _Entry:
    body_sha256: str
    created_s: float
    status: int | None = None
    headers: list[tuple[str, str]] | None = None
    content: bytes = b""


class IdempotencyStore:
    """Answers by (credentials, path, key), kept for `ttl_s`."""

    def __init__(self, ttl_s: float = 86_400.0, max_entries: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._lock = threading.Lock()

    def _evict(self, now_s: float) -> None:
        if len(self._entries) < self.max_entries:
            return
        for k in [k for k, e in self._entries.items() if now_s - e.created_s > self.ttl_s]:
            del self._entries[k]
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]

    def begin(self, key: tuple[str, str, str], body_sha256: str) -> _Entry | str:
        """The stored entry to replay, 'new' (the caller runs the request) or 'busy' / 'mismatch'."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry.created_s > self.ttl_s:
                entry = None
            if entry is None:
                self._evict(now)
                self._entries[key] = _Entry(body_sha256, now)
                return "new"
            if entry.body_sha256 != body_sha256:
                return "mismatch"
            if entry.status is None:
                return "busy"
            return entry

    def finish(self, key: tuple[str, str, str], status: int, headers: list[tuple[str, str]], content: bytes) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.status, entry.headers, entry.content = status, headers, content

    def forget(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._entries.pop(key, None)


class IdempotencyMiddleware:
    """Pure ASGI: requests other than POST with the header pass straight through."""

    def __init__(self, app: ASGIApp, store: IdempotencyStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key_value = headers.get(HEADER)
        if key_value is None:
            await self.app(scope, receive, send)
            return
        if not key_value or len(key_value) > MAX_KEY_LENGTH:
            await problem_response(422, "Invalid input", f"Idempotency-Key: must be 1..{MAX_KEY_LENGTH} characters",
                                   field="Idempotency-Key",
                                   reason=f"must be 1..{MAX_KEY_LENGTH} characters")(scope, receive, send)
            return
        body = await Request(scope, receive).body()
        key = (hashlib.sha256(headers.get("authorization", "").encode()).hexdigest(), scope["path"], key_value)
        state = self.store.begin(key, hashlib.sha256(body).hexdigest())
        if state == "mismatch":
            await problem_response(422, "Idempotency-Key reused", "this Idempotency-Key was used with another body",
                                   field="Idempotency-Key",
                                   reason="was used with another request body")(scope, receive, send)
            return
        if state == "busy":
            await problem_response(409, "Request in progress",
                                   "a request with this Idempotency-Key is still being processed",
                                   field="Idempotency-Key",
                                   reason="a request with this key is in progress")(scope, receive, send)
            return
        if not isinstance(state, str):
            replay = dict(state.headers or [])
            replay["idempotent-replayed"] = "true"
            await Response(state.content, status_code=state.status or 200, headers=replay)(scope, receive, send)
            return

        sent_body = False

        async def replay_body() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 500
        kept: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, kept
            if message["type"] == "http.response.start":
                status = int(message["status"])
                kept = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])
                        if k.lower() != b"content-length"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and status < 500:
                    # kept before the client has the last byte: its retry must find the answer
                    self.store.finish(key, status, kept, b"".join(chunks))
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            self.store.forget(key)
            raise
        if status >= 500:
            self.store.forget(key)
        else:
            self.store.finish(key, status, kept, b"".join(chunks))
