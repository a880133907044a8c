"""RFC 9457 problem details for every error: the field and the reason, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from flexgrid.errors import ChainError, ContractRevert, FlexGridError, InputError, SignatureError

log = logging.getLogger("flexgrid.api")
PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answered as a problem document."""

    def __init__(self, status: int, title: str, detail: str, *, field: str | None = None,
                 reason: str | None = None, type_: str = "about:blank", **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.reason = reason
        self.type_ = type_
        self.extra = extra


def problem_response(status: int, title: str, detail: str, *, field: str | None = None,
                     reason: str | None = None, type_: str = "about:blank", instance: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if field is not None:
        body["field"] = field
    if reason is not None:
        body["reason"] = reason
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_document(exc: Exception) -> dict[str, Any]:
    """The problem document (as a dict) of a refusal raised while checking one item of a bulk
    request: `Problem`, `SignatureError` or `InputError` (others are not per-item refusals)."""
    if isinstance(exc, Problem):
        status, title, detail, field, reason, extra = exc.status, exc.title, exc.detail, exc.field, exc.reason, exc.extra
    elif isinstance(exc, InputError):
        status, detail, field, reason = 422, str(exc), exc.field, exc.reason
        title = "Invalid signature" if isinstance(exc, SignatureError) else "Invalid input"
        extra = {"order_id": exc.order_id}
    else:
        raise TypeError(f"not a per-item refusal: {exc!r}")
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    if reason is not None:
        body["reason"] = reason
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def _loc_field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (("." if out else "") + p)
    return out or ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, field=exc.field, reason=exc.reason,
                                type_=exc.type_, instance=request.url.path, **exc.extra)

    @app.exception_handler(SignatureError)
    async def _signature(request: Request, exc: SignatureError) -> JSONResponse:
        return problem_response(422, "Invalid signature", str(exc), field=exc.field, reason=exc.reason,
                                instance=request.url.path, order_id=exc.order_id)

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError) -> JSONResponse:
        return problem_response(422, "Invalid input", str(exc), field=exc.field, reason=exc.reason,
                                instance=request.url.path, order_id=exc.order_id)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = _loc_field(tuple(first.get("loc", ())))
        reason = str(first.get("msg", "invalid"))
        if first.get("type") == "missing":
            reason = "is required"
        invalid = [{"field": _loc_field(tuple(e.get("loc", ()))), "reason": str(e.get("msg", ""))} for e in errors]
        return problem_response(422, "Invalid input", f"{field}: {reason}", field=field, reason=reason,
                                instance=request.url.path, errors=invalid)

    @app.exception_handler(ContractRevert)
    async def _revert(request: Request, exc: ContractRevert) -> JSONResponse:
        return problem_response(409, "Rejected by the contract", str(exc), field=None, reason=exc.error_name,
                                instance=request.url.path, error_name=exc.error_name)

    @app.exception_handler(ChainError)
    async def _chain(request: Request, exc: ChainError) -> JSONResponse:
        return problem_response(503, "Chain unavailable", str(exc), instance=request.url.path)

    @app.exception_handler(FlexGridError)
    async def _flexgrid(request: Request, exc: FlexGridError) -> JSONResponse:
        return problem_response(422, "Cannot be done", str(exc), instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {401: "Not signed in", 403: "Forbidden", 404: "Not found", 405: "Method not allowed"}
        return problem_response(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail),
                                instance=request.url.path, headers=dict(exc.headers or {}) or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal error", "the server failed; the error is logged",
                                instance=request.url.path)
