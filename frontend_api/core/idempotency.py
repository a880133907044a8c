"""`Idempotency-Key` on POST: the same key and body get the first answer again; the same key
with another body gets 422; a duplicate while the first is still running gets 409.

Keys are scoped by the caller's credentials and the path. Answers with a server error (5xx) are
not kept, so the client can retry them with the same key."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

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


class IdempotencyMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, store: IdempotencyStore) -> None:
        super().__init__(app)
        self.store = store

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        key_value = request.headers.get(HEADER)
        if request.method != "POST" or key_value is None:
            return await call_next(request)
        if not key_value or len(key_value) > MAX_KEY_LENGTH:
            return problem_response(422, "Invalid input", f"Idempotency-Key: must be 1..{MAX_KEY_LENGTH} characters",
                                    field="Idempotency-Key", reason=f"must be 1..{MAX_KEY_LENGTH} characters")
        body = await request.body()
        scope = request.headers.get("authorization", "")
        key = (hashlib.sha256(scope.encode()).hexdigest(), request.url.path, key_value)
        state = self.store.begin(key, hashlib.sha256(body).hexdigest())
        if state == "mismatch":
            return problem_response(422, "Idempotency-Key reused", "this Idempotency-Key was used with another body",
                                    field="Idempotency-Key", reason="was used with another request body")
        if state == "busy":
            return problem_response(409, "Request in progress",
                                    "a request with this Idempotency-Key is still being processed",
                                    field="Idempotency-Key", reason="a request with this key is in progress")
        if not isinstance(state, str):
            headers = dict(state.headers or [])
            headers["idempotent-replayed"] = "true"
            return Response(state.content, status_code=state.status or 200, headers=headers)
        try:
            response = await call_next(request)
            chunks = [chunk async for chunk in response.body_iterator]  # type: ignore[attr-defined]
        except BaseException:
            self.store.forget(key)
            raise
        content = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
        kept = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        if response.status_code >= 500:
            self.store.forget(key)
        else:
            self.store.finish(key, response.status_code, kept, content)
        return Response(content, status_code=response.status_code, headers=dict(kept))
