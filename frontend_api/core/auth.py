"""Sign-In with Ethereum (EIP-4361): single-use nonces with an expiry, sessions as bearer tokens.

The server checks the message's scheme, domain, URI, chain id, nonce (issued here, unused,
unexpired), its expiry and not-before, and the signature; the session holds only the address:
roles are read from the registry on each request."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

import siwe
from siwe import SiweMessage
from web3 import Web3

from frontend_api.core.problems import Problem

NONCE_BYTES = 12


@dataclass(frozen=True)
class Session:
    token: str
    address: str
    expires_s: float  # wall-clock unix seconds


class SiweAuth:
    """Nonces and sessions, in memory (one API process)."""

    def __init__(self, public_url: str, chain_id: int, *, nonce_ttl_s: float, session_ttl_s: float) -> None:
        parsed = urlparse(public_url)
        self.scheme = parsed.scheme or "http"
        self.domain = parsed.netloc
        self.uri = public_url.rstrip("/")
        self.chain_id = chain_id
        self.nonce_ttl_s = nonce_ttl_s
        self.session_ttl_s = session_ttl_s
        self._nonces: dict[str, float] = {}
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def issue_nonce(self) -> tuple[str, float]:
        nonce = secrets.token_hex(NONCE_BYTES)  # alphanumeric, as EIP-4361 requires
        expires = time.time() + self.nonce_ttl_s
        with self._lock:
            now = time.time()
            for n in [n for n, e in self._nonces.items() if e < now]:
                del self._nonces[n]
            self._nonces[nonce] = expires
        return nonce, expires

    def _consume_nonce(self, nonce: str) -> None:
        with self._lock:
            expires = self._nonces.pop(nonce, None)  # single use: gone even if the rest fails
        if expires is None:
            raise Problem(401, "Sign-in refused", "nonce: was not issued by this server or was already used",
                          field="nonce", reason="unknown or already used")
        if expires < time.time():
            raise Problem(401, "Sign-in refused", "nonce: has expired; ask for a new one",
                          field="nonce", reason="expired")

    def sign_in(self, message_text: str, signature: str) -> Session:
        try:
            message = SiweMessage.from_message(message=message_text)
        except Exception as exc:  # any parse failure is the client's input
            raise Problem(422, "Invalid input", f"message: is not an EIP-4361 message ({type(exc).__name__})",
                          field="message", reason="not an EIP-4361 message") from None
        checks = (("domain", message.domain, self.domain), ("uri", str(message.uri).rstrip("/"), self.uri),
                  ("chain_id", int(message.chain_id), self.chain_id))
        for name, got, want in checks:
            if got != want:
                raise Problem(401, "Sign-in refused", f"{name}: the message is for {got!r}, this server is {want!r}",
                              field=name, reason=f"must be {want!r}")
        self._consume_nonce(message.nonce)
        try:
            message.verify(signature, scheme=message.scheme or None, domain=self.domain, nonce=message.nonce,
                           uri=message.uri, chain_id=self.chain_id, strict=False)
        except siwe.ExpiredMessage:
            raise Problem(401, "Sign-in refused", "expiration_time: the message has expired",
                          field="expiration_time", reason="expired") from None
        except siwe.NotYetValidMessage:
            raise Problem(401, "Sign-in refused", "not_before: the message is not valid yet",
                          field="not_before", reason="not valid yet") from None
        except siwe.InvalidSignature:
            raise Problem(401, "Sign-in refused", "signature: does not match the message's address",
                          field="signature", reason="not signed by the message's address") from None
        except siwe.VerificationError as exc:
            raise Problem(401, "Sign-in refused", f"message: {type(exc).__name__}",
                          field="message", reason=type(exc).__name__) from None
        expires = time.time() + self.session_ttl_s
        if message.expiration_time:
            exp = datetime.fromisoformat(str(message.expiration_time).replace("Z", "+00:00"))
            expires = min(expires, exp.astimezone(UTC).timestamp())
        session = Session(secrets.token_urlsafe(32), Web3.to_checksum_address(message.address), expires)
        with self._lock:
            self._sessions[session.token] = session
        return session

    def session(self, token: str) -> Session | None:
        with self._lock:
            session = self._sessions.get(token)
            if session is not None and session.expires_s < time.time():
                del self._sessions[token]
                return None
            return session

    def sign_out(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)
