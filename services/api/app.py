"""The Litestar application: routes of SPEC §9, access rules, OpenAPI, problems, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import structlog
from litestar import Litestar, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import Parameter
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import REGISTRY, generate_latest

from contracts import commands as c
from contracts.envelope import CompanyMessage
from contracts.fields import normalize_instant
from contracts.status import Status
from services.api import operate, page, schemas
from services.api.auth import Caller, TokenCheck, Unauthorized
from services.api.commands import CommandBus
from services.api.live import LiveHub
from services.api.problems import Refused, Unavailable, http_problem, unexpected_problem
from services.api.reads import BadCursor, ReadModel
from services.api.responses import ApiResponse
from services.config import Settings
from services.expiry import Expiry
from services.runner import CONSUMER_STATS, stats_consumer
from services.signing import check_secret
from services.store.mongo import MongoStore, connect
from services.store.port import VERSION_FIELD
from services.topology import dead_queue_name, queue_name

ID = r"^[A-Za-z0-9_-]{1,64}$"
PERIOD = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
READY_TIMEOUT_S = 2.0
CompanyId = Annotated[str, Parameter(pattern=ID, description="the company's id")]
PeriodParam = Annotated[str, Parameter(pattern=PERIOD, description="a month, YYYY-MM")]
Limit = Annotated[int, Parameter(ge=1, le=200, description="items per page")]
Cursor = Annotated[str | None, Parameter(max_length=512, description="from next_cursor")]

MAX_BODY_BYTES = 64 * 1024
Read = TypeVar("Read")  # what a member's read finds
PENDING = "command_requests"  # commands whose caller got 202, for the poll to find


def utc_now() -> dt.datetime:
    return normalize_instant(dt.datetime.now(dt.UTC))


# ------------------------------------------------------------------ dependencies
async def provide_caller(request: Request[Any, Any, Any]) -> Caller:
    try:
        tokens: TokenCheck = request.app.state.tokens
        return tokens.caller(request.headers.get("authorization"))
    except Unauthorized as error:
        raise NotAuthorizedException(detail=str(error)) from None


def reads_of(state: State) -> ReadModel:
    reads: ReadModel = state.reads
    return reads


async def company_entry(
    state: State, caller: Caller, company_id: str, *, fresh: bool = False
) -> dict[str, Any]:
    """The company, if it is one of the caller's agency: another agency's is not revealed."""
    entry = await reads_of(state).company_entry(caller.agency_id, company_id, fresh=fresh)
    if entry is None:
        raise NotFoundException(detail=f"no company {company_id}")
    return entry


async def check_member(state: State, caller: Caller, company_id: str) -> None:
    """Lets the caller through if they have been added to the company: the tabs are for its
    users only. Users are only ever added to a company, never taken off it, so a caller once let
    in is let in again without a lookup (`ReadModel.members`). Otherwise the entry held in memory
    lets a member in; a refusal is read from the store, so that a company or a membership that
    came since is not refused."""
    reads = reads_of(state)
    if reads.members.knows(caller.agency_id, company_id, caller.user_id):
        return
    try:
        entry = await company_entry(state, caller, company_id)
        if _is_member(entry, caller):
            reads.members.admit(caller.agency_id, company_id, caller.user_id)
            return
    except NotFoundException:
        pass
    entry = await company_entry(state, caller, company_id, fresh=True)
    if not _is_member(entry, caller):
        raise PermissionDeniedException(
            detail=f"add yourself to company {company_id} to see and change its tabs"
        )
    reads.members.admit(caller.agency_id, company_id, caller.user_id)


def _is_member(entry: dict[str, Any], caller: Caller) -> bool:
    return any(u["user_id"] == caller.user_id for u in entry.get("users", []))


async def for_member(
    state: State, caller: Caller, company_id: str, read: Coroutine[Any, Any, Read]
) -> Read:
    """What ``read`` finds, for a member of the company only. The read starts while the
    membership is checked, so a request waits for one lookup of the store rather than two one
    after the other; what it found is handed out only once the check has passed, and a refused
    caller gets the check's answer, whatever became of the read. A member let in before needs
    no check, and the read runs as it is."""
    if reads_of(state).members.knows(caller.agency_id, company_id, caller.user_id):
        return await read
    reading = asyncio.ensure_future(read)
    try:
        await check_member(state, caller, company_id)
    except BaseException:
        # Left to finish rather than cancelled: a lookup cancelled halfway costs the client its
        # connection to the store. Its outcome is dropped.
        reading.add_done_callback(_dropped)
        raise
    return await reading


def _dropped(reading: asyncio.Future[Any]) -> None:
    if not reading.cancelled():
        reading.exception()  # retrieved, so that it is not reported as never retrieved


# ------------------------------------------------------------------ commands
def envelope(caller: Caller, company_id: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "version": 1,
        "occurred_at": utc_now(),
        "agency_id": caller.agency_id,
        "company_id": company_id,
    }


async def execute(
    state: State, command: CompanyMessage, answer: Callable[[], Any], status_code: int = 200
) -> Response[Any]:
    """Sends the command; answers with the new state, a refusal, or 202 to poll."""
    settings: Settings = state.settings
    bus: CommandBus = state.bus
    try:
        reply = await bus.send(command, settings.command_timeout_s)
    except Exception as error:  # the broker is away: nothing was sent
        raise Unavailable(detail=f"cannot send the command now: {error}") from None
    if reply is None:
        await (
            reads_of(state)
            .db[PENDING]
            .replace_one(
                {"_id": command.id},
                {
                    "_id": command.id,
                    "agency_id": command.agency_id,
                    "type": command.type,
                    "company_id": command.company_id,
                    "at": utc_now(),
                },
                upsert=True,
            )
        )
        location = f"/v1/commands/{command.id}"
        body = schemas.CommandOutcome(command_id=command.id, status="pending", location=location)
        return Response(body, status_code=202, headers={"Location": location})
    reads_of(state).forget(command.agency_id, command.company_id)
    if reply["status"] == "rejected":
        raise Refused(detail=reply.get("reason") or "refused")
    if reply["status"] != "applied":
        raise ValidationException(detail=reply.get("reason") or "invalid command")
    return Response(await answer(), status_code=status_code)


# ------------------------------------------------------------------ reads
@get("/v1/companies", summary="The overview of the agency's companies")
async def list_companies(
    state: State,
    caller: Caller,
    responsible: Annotated[
        str | None,
        Parameter(pattern=r"^(me|[A-Za-z0-9_-]{1,64})$", description="'me' or a user id"),
    ] = None,
    domain: schemas.Domain | None = None,
    status: Status | None = None,
    q: Annotated[str | None, Parameter(max_length=100, description="name or org number")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> schemas.Overview:
    if (domain is None) != (status is None):
        raise ValidationException(detail="domain and status filter together")
    try:
        return await reads_of(state).overview(
            caller.agency_id,
            responsible=caller.user_id if responsible == "me" else responsible,
            domain=domain,
            status=status,
            q=q,
            limit=limit,
            cursor=cursor,
        )
    except BadCursor as error:
        raise ValidationException(detail=str(error)) from None


@get("/v1/me/companies", summary="My companies: those the caller is responsible for")
async def my_companies(
    state: State, caller: Caller, limit: Limit = 50, cursor: Cursor = None
) -> schemas.Overview:
    try:
        return await reads_of(state).overview(
            caller.agency_id,
            responsible=caller.user_id,
            domain=None,
            status=None,
            q=None,
            limit=limit,
            cursor=cursor,
        )
    except BadCursor as error:
        raise ValidationException(detail=str(error)) from None


@get("/v1/companies/{company_id:str}", summary="The company's overview tab")
async def get_company(state: State, caller: Caller, company_id: CompanyId) -> schemas.Company:
    return await reads_of(state).company(await company_entry(state, caller, company_id))


async def _tab(state: State, caller: Caller, company_id: str, domain: str) -> Any:
    reading = reads_of(state).tab(domain, caller.agency_id, company_id, utc_now())
    return await for_member(state, caller, company_id, reading)


@get("/v1/companies/{company_id:str}/bookkeeping", summary="The bookkeeping tab")
async def bookkeeping_tab(
    state: State, caller: Caller, company_id: CompanyId
) -> schemas.BookkeepingTab:
    tab: schemas.BookkeepingTab = await _tab(state, caller, company_id, "bookkeeping")
    return tab


@get("/v1/companies/{company_id:str}/payroll", summary="The payroll tab")
async def payroll_tab(state: State, caller: Caller, company_id: CompanyId) -> schemas.PayrollTab:
    tab: schemas.PayrollTab = await _tab(state, caller, company_id, "payroll")
    return tab


@get("/v1/companies/{company_id:str}/vat", summary="The VAT tab")
async def vat_tab(state: State, caller: Caller, company_id: CompanyId) -> schemas.VatTab:
    tab: schemas.VatTab = await _tab(state, caller, company_id, "vat")
    return tab


@get("/v1/companies/{company_id:str}/closing", summary="The closing tab")
async def closing_tab(state: State, caller: Caller, company_id: CompanyId) -> schemas.ClosingTab:
    tab: schemas.ClosingTab = await _tab(state, caller, company_id, "closing")
    return tab


@get("/v1/companies/{company_id:str}/notes", summary="Comments and to-dos, newest first")
async def list_notes(state: State, caller: Caller, company_id: CompanyId) -> schemas.Notes:
    reading = reads_of(state).notes(caller.agency_id, company_id)
    return await for_member(state, caller, company_id, reading)


@get("/v1/companies/{company_id:str}/history", summary="Status history, newest first")
async def history(
    state: State,
    caller: Caller,
    company_id: CompanyId,
    domain: schemas.Domain | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> schemas.History:
    reading = reads_of(state).history(caller.agency_id, company_id, domain, limit, cursor)
    try:
        return await for_member(state, caller, company_id, reading)
    except BadCursor as error:
        raise ValidationException(detail=str(error)) from None


@get("/v1/commands/{command_id:str}", summary="What became of a command answered with 202")
async def command_outcome(
    state: State, caller: Caller, command_id: Annotated[str, Parameter(pattern=ID)]
) -> Response[schemas.CommandOutcome]:
    reads = reads_of(state)
    outcome = await reads.outcome(command_id)
    if outcome is not None and outcome.get("agency_id") == caller.agency_id:
        reads.forget(caller.agency_id, outcome["company_id"])
        return Response(
            schemas.CommandOutcome(
                command_id=command_id,
                status=outcome["status"],
                reason=outcome.get("reason") or None,
                location=f"/v1/companies/{outcome['company_id']}",
            )
        )
    pending = await reads.db[PENDING].find_one({"_id": command_id})
    if pending is None or pending.get("agency_id") != caller.agency_id:
        raise NotFoundException(detail=f"no command {command_id}")
    return Response(
        schemas.CommandOutcome(
            command_id=command_id, status="pending", location=f"/v1/commands/{command_id}"
        ),
        status_code=202,
        headers={"Retry-After": "1"},
    )


# ------------------------------------------------------------------ commands
def _row(tab: Any, period: str) -> Any:
    return next(row for row in tab.periods if row.period == period)


@put(
    "/v1/companies/{company_id:str}/bookkeeping/periods/{period:str}/status",
    summary="Set a bookkeeping period's status",
)
async def set_bookkeeping_status(
    state: State,
    caller: Caller,
    company_id: CompanyId,
    period: PeriodParam,
    data: schemas.BookkeepingStatusIn,
) -> Response[schemas.BookkeepingRow]:
    await check_member(state, caller, company_id)
    command = c.SetBookkeepingPeriodStatus(
        **envelope(caller, company_id),
        data=c.PeriodStatus(
            period=period, status=data.status, user_id=caller.user_id, deadline=data.deadline
        ),
    )

    async def row() -> Any:
        tab = await reads_of(state).tab("bookkeeping", caller.agency_id, company_id, utc_now())
        return _row(tab, period)

    return await execute(state, command, row)


@put(
    "/v1/companies/{company_id:str}/payroll/periods/{period:str}/status",
    summary="Set a payroll period's status",
)
async def set_payroll_status(
    state: State,
    caller: Caller,
    company_id: CompanyId,
    period: PeriodParam,
    data: schemas.PayrollStatusIn,
) -> Response[schemas.PayrollRow]:
    await check_member(state, caller, company_id)
    command = c.SetPayrollPeriodStatus(
        **envelope(caller, company_id),
        data=c.PayrollPeriodStatus(period=period, status=data.status, user_id=caller.user_id),
    )

    async def row() -> Any:
        tab = await reads_of(state).tab("payroll", caller.agency_id, company_id, utc_now())
        return _row(tab, period)

    return await execute(state, command, row)


async def _add_user(
    state: State, caller: Caller, company_id: str, email: str
) -> Response[schemas.Company]:
    await company_entry(state, caller, company_id)
    user = await reads_of(state).agency_user_by_email(caller.agency_id, email)
    if user is None:
        raise Refused(detail=f"{email} is no active user of the agency")
    command = c.AddCompanyUser(
        **envelope(caller, company_id),
        data=c.CompanyUser(user_id=user["user_id"], email=user["email"], added_by=caller.user_id),
    )

    async def company() -> Any:
        return await reads_of(state).company(await company_entry(state, caller, company_id))

    return await execute(state, command, company)


@post(
    "/v1/companies/{company_id:str}/users",
    summary="Add a user of the agency, by e-mail",
    status_code=200,
)
async def add_user(
    state: State, caller: Caller, company_id: CompanyId, data: schemas.AddUserIn
) -> Response[schemas.Company]:
    return await _add_user(state, caller, company_id, data.email)


@post("/v1/companies/{company_id:str}/users/me", summary="Add me", status_code=200)
async def add_me(state: State, caller: Caller, company_id: CompanyId) -> Response[schemas.Company]:
    me = await reads_of(state).agency_user(caller.agency_id, caller.user_id)
    if me is None or not me.get("active"):
        raise Refused(detail=f"user {caller.user_id} is no active user of the agency")
    return await _add_user(state, caller, company_id, me["email"])


@put(
    "/v1/companies/{company_id:str}/engagement",
    summary="Set the engagement's start month and responsible consultant",
)
async def set_engagement(
    state: State, caller: Caller, company_id: CompanyId, data: schemas.EngagementIn
) -> Response[schemas.Company]:
    await company_entry(state, caller, company_id)
    if not caller.manages_users:
        raise PermissionDeniedException(detail="setting the engagement needs manage_users")
    responsible = await reads_of(state).agency_user(caller.agency_id, data.responsible_user_id)
    if responsible is None or not responsible.get("active"):
        raise Refused(detail=f"user {data.responsible_user_id} is no active user of the agency")
    command = c.SetEngagement(
        **envelope(caller, company_id),
        data=c.Engagement(
            start_month=data.start_month,
            responsible_user_id=data.responsible_user_id,
            user_id=caller.user_id,
        ),
    )

    async def company() -> Any:
        return await reads_of(state).company(await company_entry(state, caller, company_id))

    return await execute(state, command, company)


@post("/v1/companies/{company_id:str}/notes", summary="Add a comment or a to-do")
async def add_note(
    state: State, caller: Caller, company_id: CompanyId, data: schemas.NoteIn
) -> Response[schemas.NoteOut]:
    await check_member(state, caller, company_id)
    note_id = uuid.uuid4().hex
    command = c.AddNote(
        **envelope(caller, company_id),
        data=c.NewNote(
            note_id=note_id,
            kind=data.kind,
            text=data.text,
            status=data.status,
            author_user_id=caller.user_id,
        ),
    )

    async def note() -> Any:
        return await reads_of(state).note(caller.agency_id, company_id, note_id)

    return await execute(state, command, note, status_code=201)


@put("/v1/companies/{company_id:str}/notes/{note_id:str}/status", summary="Move a to-do on")
async def set_note_status(
    state: State,
    caller: Caller,
    company_id: CompanyId,
    note_id: Annotated[str, Parameter(pattern=ID)],
    data: schemas.NoteStatusIn,
) -> Response[schemas.NoteOut]:
    await check_member(state, caller, company_id)
    if await reads_of(state).note(caller.agency_id, company_id, note_id) is None:
        raise NotFoundException(detail=f"no note {note_id}")
    command = c.SetNoteStatus(
        **envelope(caller, company_id),
        data=c.NoteStatus(note_id=note_id, status=data.status, user_id=caller.user_id),
    )

    async def note() -> Any:
        return await reads_of(state).note(caller.agency_id, company_id, note_id)

    return await execute(state, command, note)


# ------------------------------------------------------------------ operations
@get("/healthz", summary="Liveness", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Readiness: broker and database reachable")
async def readyz(state: State) -> dict[str, str]:
    try:
        # A store that is slow is as unready as one that is down: answer within seconds.
        await asyncio.wait_for(reads_of(state).db.command("ping"), READY_TIMEOUT_S)
        await asyncio.wait_for(state.bus.ping(), READY_TIMEOUT_S)
    except Exception as error:
        raise Unavailable(detail=f"not ready: {type(error).__name__}: {error}") from None
    return {"status": "ready"}


@get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics(state: State) -> bytes:
    lines = [generate_latest(REGISTRY).decode()]
    lines.append("# HELP backoffice_messages_total Messages handled per consumer and outcome.")
    lines.append("# TYPE backoffice_messages_total counter")
    totals: dict[tuple[str, str], int] = {}
    async for stats in reads_of(state).db[CONSUMER_STATS].find({}):
        consumer = stats_consumer(str(stats["_id"]))  # partitions add up to their consumer
        for outcome, count in stats.items():
            if outcome not in ("_id", VERSION_FIELD) and isinstance(count, int):
                totals[(consumer, outcome)] = totals.get((consumer, outcome), 0) + count
    for (consumer, outcome), count in sorted(totals.items()):
        lines.append(
            f'backoffice_messages_total{{consumer="{consumer}",outcome="{outcome}"}} {count}'
        )
    lines += await _queue_depths(state)
    return ("\n".join(lines) + "\n").encode()


async def _queue_depths(state: State) -> list[str]:
    from consumers.registry import CONSUMERS

    lines = [
        "# HELP backoffice_queue_messages Messages waiting in a queue.",
        "# TYPE backoffice_queue_messages gauge",
    ]
    bus: CommandBus = state.bus
    for name in [*CONSUMERS, "unrouted"]:
        for queue in (queue_name(name), dead_queue_name(name)):
            count = await bus.queue_depth(queue)
            if count is not None:
                lines.append(f'backoffice_queue_messages{{queue="{queue}"}} {count}')
    return lines


@get("/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
async def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi_schema.to_schema()
    return schema


# ------------------------------------------------------------------ the application
async def expire_pending(expiry: Expiry) -> None:
    """Deletes the records of commands whose caller got 202, once they are older than their
    TTL (MongoDB does it itself with a TTL index; FerretDB has none)."""
    log = structlog.get_logger().bind(component="api")
    while True:
        try:
            deleted = await expiry.purge_if_due()
            if deleted:
                log.info("deleted expired command requests", count=deleted)
        except Exception as error:  # the database may be away; try again later
            log.warning("could not delete expired command requests", error=str(error))
        await asyncio.sleep(60)


def create_app(settings: Settings) -> Litestar:
    check_secret("BACKOFFICE_JWT_SECRET", settings.jwt_secret)
    check_secret("BACKOFFICE_SERVICE_SECRET", settings.service_secret)

    @asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        client = connect(settings.mongo_url, settings.mongo_timeout_ms)
        app.state.reads = ReadModel(client[settings.mongo_db], settings.read_max_age_ms / 1000)
        app.state.bus = CommandBus(settings.amqp_url, settings.service_secret)
        app.state.live = LiveHub(settings.amqp_url)
        ttl = dt.timedelta(seconds=settings.command_records_ttl_s)
        expiry = Expiry(MongoStore(client[settings.mongo_db]), PENDING, "at", ttl, utc_now)
        expiring = asyncio.create_task(expire_pending(expiry))
        try:
            yield
        finally:
            expiring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await expiring
            await app.state.live.close()
            await app.state.bus.close()
            await client.close()

    protected = [
        list_companies,
        my_companies,
        get_company,
        bookkeeping_tab,
        payroll_tab,
        vat_tab,
        closing_tab,
        list_notes,
        history,
        command_outcome,
        set_bookkeeping_status,
        set_payroll_status,
        add_user,
        add_me,
        set_engagement,
        add_note,
        set_note_status,
        operate.queues,
        operate.replay,
    ]
    prometheus = PrometheusConfig(
        app_name="backoffice", prefix="backoffice_http", group_path=True, exclude=["/metrics"]
    )
    return Litestar(
        route_handlers=[
            *protected,
            operate.live_events,
            healthz,
            readyz,
            metrics,
            openapi_json,
            page.index,
            page.labels,
            page.static_files,
        ],
        dependencies={"caller": Provide(provide_caller)},
        lifespan=[resources],
        state=State(
            {
                "settings": settings,
                "tokens": TokenCheck(
                    settings.jwt_secret, settings.jwt_audience, settings.jwt_issuer
                ),
            }
        ),
        response_class=ApiResponse,
        # Logging is ours (services/logs.py): Litestar would install its own format.
        logging_config=None,
        # A request body is a small JSON object; anything larger is refused (413) unread.
        request_max_body_size=MAX_BODY_BYTES,
        middleware=[prometheus.middleware],
        exception_handlers={HTTPException: http_problem, Exception: unexpected_problem},
        openapi_config=OpenAPIConfig(
            title="backoffice",
            version="1.0.0",
            description="The status of every client's bookkeeping, payroll, VAT and closing.",
            path="/schema",
            security=[{"bearer": []}],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
        ),
        debug=False,
    )
