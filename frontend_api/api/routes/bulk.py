"""Bulk intake: an aggregator (a USEF aggregator, or a wallet app with many assets) posts many
signed offers in one request. Each offer is checked exactly as on POST /prosumer/offers and gets
its own answer; the accepted ones are stored in one transaction and relayed in batches."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from flexgrid.errors import FlexGridError
from flexgrid.trading.eip712 import SignedOrder
from frontend_api.api.deps import ProviderDep, ServiceDep
from frontend_api.api.routes.prosumer import OrderOut, SignedOrderIn, _order_out, _parse_signed
from frontend_api.core.problems import Problem, problem_document
from frontend_api.models import ApiOrder

router = APIRouter(prefix="/prosumer", tags=["prosumer"])
MAX_BULK = 1000


class BulkOffersIn(BaseModel):
    offers: list[SignedOrderIn] = Field(min_length=1, max_length=MAX_BULK,
                                        description="EIP-712 signed FlexOffers, each signed by the signed-in wallet")


class BulkItemOut(BaseModel):
    index: int
    status: int = Field(description="202 accepted, else the status a single POST /prosumer/offers would get")
    order: OrderOut | None = None
    problem: dict[str, Any] | None = Field(default=None, description="RFC 9457 problem document of a refusal")


class BulkOffersOut(BaseModel):
    accepted: int
    refused: int
    results: list[BulkItemOut]


@router.post("/offers/bulk", response_model=BulkOffersOut,
             summary="Submit many EIP-712 signed FlexOffers at once (each accepted or refused on its own)")
def submit_offers_bulk(body: BulkOffersIn, roles: ProviderDep, service: ServiceDep) -> BulkOffersOut:
    parsed: list[tuple[int, SignedOrder]] = []
    results: dict[int, BulkItemOut] = {}
    for i, item in enumerate(body.offers):
        try:
            parsed.append((i, _parse_signed(item, "offer")))
        except (Problem, FlexGridError) as exc:
            results[i] = _refused(i, exc)
    answers = service.accept_orders([s for _, s in parsed], roles.address)
    for (i, _), answer in zip(parsed, answers, strict=True):
        if isinstance(answer, ApiOrder):
            results[i] = BulkItemOut(index=i, status=202, order=_order_out(answer, set()))
        else:
            results[i] = _refused(i, answer)
    out = [results[i] for i in range(len(body.offers))]
    accepted = sum(1 for r in out if r.status == 202)
    return BulkOffersOut(accepted=accepted, refused=len(out) - accepted, results=out)


def _refused(index: int, exc: Exception) -> BulkItemOut:
    if isinstance(exc, FlexGridError) and not isinstance(exc, Problem | ValueError):
        raise exc  # a chain failure is the whole request's: answered 503 by the handlers
    problem = problem_document(exc)
    problem["field"] = f"offers[{index}].{problem['field']}" if problem.get("field") else f"offers[{index}]"
    return BulkItemOut(index=index, status=int(problem["status"]), problem=problem)
