"""What an operator does from the Back-office page: watch each consumer's queue and dead letters,
and replay the dead letters once the cause is fixed (the `operate` permission)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.response import ServerSentEvent

from consumers.registry import CONSUMERS
from services import operations
from services.api import schemas
from services.api.auth import Caller, TokenCheck, Unauthorized
from services.api.commands import CommandBus
from services.api.live import LiveHub, stream
from services.config import Settings
from services.topology import UNROUTED, dead_queue_name, queue_name

OPERATE = "operate"
OPERATED = (*CONSUMERS, UNROUTED)  # every consumer and the catch-all
PEEK_LIMIT = 1000  # dead letters read to count them by reason


def require_operator(caller: Caller) -> None:
    if OPERATE not in caller.permissions:
        raise PermissionDeniedException(detail=f"needs the {OPERATE!r} permission")


@get("/v1/operations/queues", summary="Each consumer's queue and dead letters (operators)")
async def queues(state: State, caller: Caller) -> schemas.Queues:
    require_operator(caller)
    settings: Settings = state.settings
    bus: CommandBus = state.bus
    items = []
    for name in OPERATED:
        ready = await bus.queue_depth(queue_name(name))
        try:
            total, letters = await operations.peek(settings, name, PEEK_LIMIT)
        except Exception:  # the queue does not exist yet, or the broker is away
            total, letters = 0, []
        items.append(
            schemas.QueueState(
                consumer=name,
                queue=queue_name(name),
                ready=ready or 0,
                dead_queue=dead_queue_name(name),
                dead=total,
                dead_by_reason=dict(operations.summary(letters).most_common()),
            )
        )
    return schemas.Queues(items=items)


@post(
    "/v1/operations/queues/{consumer:str}/replay",
    summary="Move a consumer's dead letters back to be applied again (operators)",
    status_code=200,
)
async def replay(state: State, caller: Caller, consumer: str) -> schemas.Replayed:
    require_operator(caller)
    if consumer not in OPERATED:
        raise NotFoundException(detail=f"no consumer {consumer}")
    moved = await operations.replay(state.settings, consumer, 1_000_000)
    return schemas.Replayed(consumer=consumer, replayed=moved)


@get(
    "/v1/events/stream",
    summary="The agency's outbound events, live (server-sent events)",
    # A stream never ends: a generated client would only time out on it (README, "The page").
    include_in_schema=False,
)
async def live_events(request: Request[Any, Any, Any], state: State) -> ServerSentEvent:
    """A browser's EventSource cannot send a header, so the token may come as `access_token`."""
    tokens: TokenCheck = state.tokens
    token = request.query_params.get("access_token")
    header = f"Bearer {token}" if token else request.headers.get("authorization")
    try:
        caller = tokens.caller(header)
    except Unauthorized as error:
        raise NotAuthorizedException(detail=str(error)) from None
    hub: LiveHub = state.live
    return ServerSentEvent(stream(hub, caller.agency_id))
