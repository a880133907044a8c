"""Sign-In with Ethereum: nonce, login, who am I, logout."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from frontend_api.api.deps import AuthDep, ServiceDep, SessionDep

router = APIRouter(prefix="/auth", tags=["auth"])


class NonceOut(BaseModel):
    nonce: str
    expires_at: datetime
    domain: str = Field(description="the `domain` line the message must carry")
    uri: str = Field(description="the `URI` the message must carry")
    chain_id: int


class LoginIn(BaseModel):
    message: str = Field(description="the EIP-4361 message exactly as the wallet signed it", max_length=4096)
    signature: str = Field(description="the wallet's personal_sign signature, 0x hex", max_length=200)


class SessionOut(BaseModel):
    token: str
    address: str
    roles: list[str]
    dso_grids: list[str]
    expires_at: datetime


class MeOut(BaseModel):
    address: str
    roles: list[str]
    dso_grids: list[str]
    expires_at: datetime


@router.get("/nonce", response_model=NonceOut, summary="A single-use sign-in nonce")
def nonce(auth: AuthDep) -> NonceOut:
    value, expires = auth.issue_nonce()
    return NonceOut(nonce=value, expires_at=datetime.fromtimestamp(expires, UTC), domain=auth.domain,
                    uri=auth.uri, chain_id=auth.chain_id)


@router.post("/login", response_model=SessionOut, summary="Sign in with a signed EIP-4361 message")
def login(body: LoginIn, auth: AuthDep, service: ServiceDep) -> SessionOut:
    session = auth.sign_in(body.message, body.signature)
    roles = service.roles(session.address)
    return SessionOut(token=session.token, address=session.address, roles=roles.names(),
                      dso_grids=list(roles.dso_grids), expires_at=datetime.fromtimestamp(session.expires_s, UTC))


@router.get("/me", response_model=MeOut, summary="The signed-in address and its roles on chain")
def me(session: SessionDep, service: ServiceDep) -> MeOut:
    roles = service.roles(session.address)
    return MeOut(address=session.address, roles=roles.names(), dso_grids=list(roles.dso_grids),
                 expires_at=datetime.fromtimestamp(session.expires_s, UTC))


@router.post("/logout", status_code=204, summary="End the session")
def logout(session: SessionDep, auth: AuthDep) -> None:
    auth.sign_out(session.token)
