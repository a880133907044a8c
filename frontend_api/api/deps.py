"""Shared dependencies: the service, the signed-in session, role checks, paging."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlmodel import Session as DbSession

from frontend_api.core.auth import Session, SiweAuth
from frontend_api.core.problems import Problem
from frontend_api.core.service import FlexGridService, Roles

T = TypeVar("T")
bearer = HTTPBearer(auto_error=False, description="the session token from POST /auth/login")


def get_service(request: Request) -> FlexGridService:
    service: FlexGridService = request.app.state.service
    return service


def get_auth(request: Request) -> SiweAuth:
    auth: SiweAuth = request.app.state.auth
    return auth


ServiceDep = Annotated[FlexGridService, Depends(get_service)]
AuthDep = Annotated[SiweAuth, Depends(get_auth)]


def get_db(service: ServiceDep):  # type: ignore[no-untyped-def]
    with DbSession(service.engine, expire_on_commit=False) as session:
        yield session


DbDep = Annotated[DbSession, Depends(get_db)]


def current_session(auth: AuthDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Session:
    if creds is None:
        raise Problem(401, "Not signed in", "Authorization: a Bearer session token is required (POST /auth/login)",
                      field="Authorization", reason="missing")
    session = auth.session(creds.credentials)
    if session is None:
        raise Problem(401, "Not signed in", "Authorization: the session token is unknown or has expired",
                      field="Authorization", reason="unknown or expired session")
    return session


SessionDep = Annotated[Session, Depends(current_session)]


def current_roles(session: SessionDep, service: ServiceDep) -> Roles:
    return service.roles(session.address)


RolesDep = Annotated[Roles, Depends(current_roles)]


def _forbid(role: str, roles: Roles) -> Problem:
    return Problem(403, "Forbidden", f"{roles.address} is not {role} in the registry (roles: "
                   f"{', '.join(roles.names()) or 'none'})", field="Authorization", reason=f"needs the {role} role")


def require_provider(session: SessionDep, service: ServiceDep) -> Roles:
    if not service.is_provider(session.address):
        raise _forbid("an approved provider", service.roles(session.address))
    return Roles(address=session.address, provider=True)


def require_operator(roles: RolesDep) -> Roles:
    if not roles.operator:
        raise _forbid("the market operator", roles)
    return roles


def require_dso(roles: RolesDep) -> Roles:
    if not roles.dso_grids:
        raise _forbid("the DSO of any grid", roles)
    return roles


ProviderDep = Annotated[Roles, Depends(require_provider)]
OperatorDep = Annotated[Roles, Depends(require_operator)]
DsoDep = Annotated[Roles, Depends(require_dso)]


class PageParams(BaseModel):
    limit: int
    offset: int


def page_params(limit: Annotated[int, Query(ge=1, le=500, description="at most this many items")] = 50,
                offset: Annotated[int, Query(ge=0, le=10**9, description="skip this many items")] = 0) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(page_params)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def page_rows(db: DbSession, query: Any, page: PageParams) -> tuple[list[Any], int]:
    """One page of a select, and the total count, both in SQL."""
    from sqlalchemy import func, select

    total = int(db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)
    rows = list(db.exec(query.offset(page.offset).limit(page.limit)).all())
    return rows, total


def paginate(items: list[T], page: PageParams) -> Page[T]:
    return Page[T](items=items[page.offset: page.offset + page.limit], total=len(items), limit=page.limit,
                   offset=page.offset)
