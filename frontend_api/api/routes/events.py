"""Round state changes as a server-sent event stream (`text/event-stream`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from flexgrid.trading import RoundState
from frontend_api.api.deps import ServiceDep
from frontend_api.core.service import FlexGridService

router = APIRouter(prefix="/events", tags=["events"])


def _states(service: FlexGridService, round_id: int | None) -> dict[int, RoundState]:
    count = service.client.round_count()
    ids = [round_id] if round_id is not None and 1 <= round_id <= count else ([] if round_id else range(1, count + 1))
    return {i: service.client.round_state(i) for i in ids}


async def _stream(service: FlexGridService, round_id: int | None, max_events: int | None) -> AsyncIterator[str]:
    known: dict[int, RoundState] = {}
    sent = 0
    event_id = 0
    yield "retry: 1000\n\n"
    while True:
        states = await asyncio.to_thread(_states, service, round_id)
        for rid, state in states.items():
            if known.get(rid) != state:
                event_id += 1
                data = {"round_id": rid, "state": state.name, "previous": known[rid].name if rid in known else None}
                known[rid] = state
                yield f"id: {event_id}\nevent: round_state\ndata: {json.dumps(data)}\n\n"
                sent += 1
                if max_events is not None and sent >= max_events:
                    return
        await asyncio.sleep(service.settings.sse_poll_s)


@router.get("/rounds", summary="Server-sent events: each round's state, then every change",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "event: round_state, "
                             "data: {round_id, state, previous}"}})
def round_events(service: ServiceDep,
                 round_id: Annotated[int | None, Query(ge=1, le=2**63)] = None,
                 max_events: Annotated[int | None, Query(ge=1, le=10_000,
                                                         description="end the stream after this many events")] = None
                 ) -> StreamingResponse:
    return StreamingResponse(_stream(service, round_id, max_events), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
