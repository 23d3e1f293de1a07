"""A living Back-office in a minute: publishes a realistic agency and prints a token to try it.

Dozens of client companies across legal forms, VAT frequencies and fiscal years; submissions,
payroll, VAT reports and closings in every state (some late, some new, some done); consultants
added to companies, engagements and notes. Deterministic for a given seed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
import uuid
from typing import Any

import aio_pika

from consumers import months
from consumers.registry import consumers
from contracts.fields import luhn_valid
from contracts.registry import decode
from services.api.auth import issue_token
from services.config import Settings
from services.signing import SIGNATURE_HEADER, signature
from services.store.mongo import connect
from services.topology import ACCOUNTING_EXCHANGE, COMMANDS_EXCHANGE, declare_consumer

AGENCY = "a-demo"
USERS = [
    ("u-anna", "anna@demobyran.se", "Anna Andersson"),
    ("u-bo", "bo@demobyran.se", "Bo Berg"),
    ("u-cia", "cia@demobyran.se", "Cia Carlsson"),
]
NAMES = [
    "Bageriet i Byn",
    "Cykelverkstan",
    "Allt i Trä",
    "Fiskehamnen",
    "Glasmästarna",
    "Hälsokällan",
    "Isbolaget",
    "Järnhandeln",
    "Kaffekoppen",
    "Ljusgården",
    "Målerifirman",
    "Norrskenet",
    "Ostboden",
    "Pappersbruket",
    "Rörläggarna",
    "Sjöboden",
    "Takläggarna",
    "Uppsala Data",
    "Vävstugan",
    "Ängens Gård",
    "Örtagården",
    "Bergsgruvan",
    "Dalahästen",
    "Ekdalens Sågverk",
    "Fjällstugan",
    "Granskogen",
    "Havsbadet",
    "Idrottsbutiken",
    "Kustlinjen",
    "Lantbruket",
    "Mälarhamnen",
    "Nybygget",
    "Solpanelen",
    "Trädgårdsmästarna",
    "Vinkällaren",
    "Zoobutiken",
]
FORMS = ["AB", "AB", "AB", "EF", "HB", "KB", "EK", "other"]
SUFFIX = {"AB": " AB", "EF": "", "HB": " HB", "KB": " KB", "EK": " ek. för.", "other": ""}


def org_number(rng: random.Random) -> str:
    while True:
        digits = f"{rng.randint(55, 96)}{rng.randint(0, 9999999):07d}"
        for check in range(10):
            if luhn_valid(digits + str(check)):
                number = digits + str(check)
                return f"{number[:6]}-{number[6:]}"


class Demo:
    def __init__(self, seed: int, now: dt.datetime) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.events: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []

    def _message(
        self, type_: str, at: dt.datetime, data: dict[str, Any], company: str | None = None
    ) -> dict[str, Any]:
        message = {
            "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": type_,
            "version": 1,
            "occurred_at": at.isoformat(),
            "agency_id": AGENCY,
            "data": data,
        }
        if company:
            message["company_id"] = company
        return message

    def event(self, *args: Any, **kw: Any) -> None:
        self.events.append(self._message(*args, **kw))

    def command(self, *args: Any, **kw: Any) -> None:
        self.commands.append(self._message(*args, **kw))

    def past(self, earliest: dt.datetime) -> dt.datetime:
        span = max(1, int((self.now - earliest).total_seconds()))
        return earliest + dt.timedelta(seconds=self.rng.randint(0, span))

    def build(self, companies: int) -> None:
        start = dt.datetime(self.now.year, 1, 2, 8, tzinfo=dt.UTC)
        for user_id, email, name in USERS:
            self.event(
                "agency.user_changed",
                start,
                {"user_id": user_id, "email": email, "name": name, "active": True},
            )
        for index in range(companies):
            self.company(index, start)

    def company(self, index: int, start: dt.datetime) -> None:
        rng = self.rng
        company = f"c-{index + 1:03d}"
        form = FORMS[index % len(FORMS)]
        year = self.now.year
        fiscal_start = dt.date(year, 1, 1) if index % 5 else dt.date(year - 1, 7, 1)
        fiscal_end = dt.date(fiscal_start.year + 1, fiscal_start.month, 1) - dt.timedelta(days=1)
        frequency = ["quarterly", "monthly", "yearly", "none", "quarterly"][index % 5]
        self.event(
            "company.details_changed",
            start,
            company=company,
            data={
                "name": NAMES[index % len(NAMES)] + SUFFIX[form],
                "org_number": org_number(rng),
                "legal_form": form,
                "accounting_method": rng.choice(["invoice", "cash"]),
                "vat_frequency": frequency,
                "fiscal_year_start": fiscal_start.isoformat(),
                "fiscal_year_end": fiscal_end.isoformat(),
                "submission_day": rng.choice([5, 5, 5, 10, 12]),
                "large_vat_payer": index % 11 == 0,
                "eu_trade": index % 7 == 0,
            },
        )
        first = months.month_of(fiscal_start)
        current = months.month_of(self.now.date())
        for period in months.months_between(first, months.shift(current, -1)):
            month_start = dt.datetime.combine(
                months.first_day(months.shift(period, 1)), dt.time(9), dt.UTC
            )
            chance = rng.random()
            if chance < 0.75:  # most clients send their material; some never do (late)
                self.event(
                    "bookkeeping.period_submitted",
                    self.past_or(month_start, 3),
                    company=company,
                    data={"period": period},
                )
            if chance < 0.5:
                self.command(
                    "bookkeeping.set_period_status",
                    self.past_or(month_start, 6),
                    company=company,
                    data={
                        "period": period,
                        "user_id": "u-anna",
                        "status": rng.choice(["done", "done", "in_progress"]),
                    },
                )
            if rng.random() < 0.8:
                self.event(
                    "payroll.month_completed",
                    self.past_or(month_start, -3),
                    company=company,
                    data={"period": period, "employees": rng.randint(1, 25)},
                )
                self.command(
                    "payroll.set_period_status",
                    self.past_or(month_start, 2),
                    company=company,
                    data={
                        "period": period,
                        "user_id": "u-bo",
                        "status": rng.choice(["done", "new"]),
                    },
                )
        self.vat(company, frequency, fiscal_start, fiscal_end)
        self.closing(company, fiscal_start)
        self.event(
            "bookkeeping.document_uploaded",
            self.past(start),
            company=company,
            data={"document_id": f"doc-{index}"},
        )
        self.event(
            "bookkeeping.entry_created",
            self.past(start),
            company=company,
            data={"entry_id": f"v-{index}", "entry_date": self.now.date().isoformat()},
        )
        # The consultants' side: everyone works on every company; a third are Anna's own.
        for user_id, email, _ in USERS:
            self.command(
                "company.add_user",
                start + dt.timedelta(hours=1),
                company=company,
                data={"user_id": user_id, "email": email, "added_by": "u-anna"},
            )
        responsible = USERS[index % 3][0]
        self.command(
            "company.set_engagement",
            start + dt.timedelta(hours=2),
            company=company,
            data={"start_month": first, "responsible_user_id": responsible, "user_id": "u-anna"},
        )
        if index % 4 == 0:
            self.command(
                "notes.add",
                self.past(start),
                company=company,
                data={
                    "note_id": f"n-{index}",
                    "kind": "todo",
                    "text": "Påminn om kvitton",
                    "status": "waiting",
                    "author_user_id": "u-anna",
                },
            )

    def past_or(self, month_start: dt.datetime, days: int) -> dt.datetime:
        return min(self.now - dt.timedelta(minutes=5), month_start + dt.timedelta(days=days))

    def vat(self, company: str, frequency: str, start: dt.date, end: dt.date) -> None:
        if frequency in ("none", "yearly"):
            return
        step = 1 if frequency == "monthly" else 3
        period = months.month_of(dt.date(self.now.year, 1, 1))
        while months.first_day(months.shift(period, step)) <= self.now.date():
            period_start = months.first_day(period)
            period_end = months.last_day(months.shift(period, step - 1))
            done_at = dt.datetime.combine(period_end, dt.time(12), dt.UTC) + dt.timedelta(days=8)
            progress = self.rng.choice([0, 1, 2, 3, 3, 3])
            for n in range(1, progress + 1):
                self.event(
                    "vat.report_step_changed",
                    min(done_at, self.now),
                    company=company,
                    data={
                        "period_start": period_start.isoformat(),
                        "period_end": period_end.isoformat(),
                        "step": n,
                        "completed": True,
                    },
                )
            if progress == 3 and self.rng.random() < 0.7:
                self.event(
                    "vat.report_reported_changed",
                    min(done_at, self.now),
                    company=company,
                    data={
                        "period_start": period_start.isoformat(),
                        "period_end": period_end.isoformat(),
                        "reported": True,
                    },
                )
            period = months.shift(period, step)

    def closing(self, company: str, fiscal_start: dt.date) -> None:
        previous_start = dt.date(fiscal_start.year - 1, fiscal_start.month, 1)
        previous_end = fiscal_start - dt.timedelta(days=1)
        total = 6
        done = self.rng.choice([0, 2, 4, 6])
        if done:
            self.event(
                "closing.progress_changed",
                dt.datetime.combine(previous_end, dt.time(12), dt.UTC) + dt.timedelta(days=40),
                company=company,
                data={
                    "fiscal_year_start": previous_start.isoformat(),
                    "fiscal_year_end": previous_end.isoformat(),
                    "steps_completed": done,
                    "steps_total": total,
                },
            )


async def publish_all(settings: Settings, messages: list[dict[str, Any]], exchange: str) -> None:
    async with await aio_pika.connect(settings.amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        # The consumers' queues, as they declare them: what is published now is kept for them
        # even when the main job has only just started.
        for definition in consumers(settings.closing_url).values():
            await declare_consumer(channel, definition, settings)
        target = await channel.get_exchange(exchange)
        for message in messages:
            body = json.dumps(message).encode()
            decode(body)  # the demo publishes only what the contract accepts
            await target.publish(
                aio_pika.Message(
                    body,
                    # The demo stands in for the API here, so it signs what it sends.
                    headers={SIGNATURE_HEADER: signature(settings.service_secret, body)}
                    if exchange == COMMANDS_EXCHANGE
                    else None,
                    content_type="application/json",
                    message_id=message["id"],
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=message["type"],
            )


async def wait_for_directory(settings: Settings, companies: int) -> None:
    """Commands are checked against the directory: it must know the companies and users."""
    timeout = 60 + companies * 0.2  # the directory shares the machine with four busy tabs
    client = connect(settings.mongo_url, settings.mongo_timeout_ms)
    try:
        database = client[settings.mongo_db]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            known = await database["companies"].count_documents({"agency_id": AGENCY})
            users = await database["agency_users"].count_documents({"agency_id": AGENCY})
            if known >= companies and users >= len(USERS):
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(
            "the directory consumer did not take the demo companies in time;"
            " is the main job running?"
        )
    finally:
        await client.close()


async def run(settings: Settings, companies: int, seed: int) -> str:
    demo = Demo(seed, dt.datetime.now(dt.UTC))
    demo.build(companies)
    await publish_all(settings, demo.events, ACCOUNTING_EXCHANGE)
    await wait_for_directory(settings, companies)
    await publish_all(settings, demo.commands, COMMANDS_EXCHANGE)
    token = issue_token(
        settings.jwt_secret, "u-anna", AGENCY, ["manage_users"], int(time.time()) + 12 * 3600
    )
    operator = issue_token(
        settings.jwt_secret, "u-ops", AGENCY, ["operate"], int(time.time()) + 12 * 3600
    )
    base = f"http://{settings.api_host}:{settings.api_port}"
    return "\n".join(
        [
            f"Published {len(demo.events)} events and {len(demo.commands)} consultant actions "
            f"for {companies} companies of agency {AGENCY}.",
            "",
            "Open the Back-office in a browser (the link signs you in; development only):",
            f"  as Anna, a consultant:  {base}/#token={token}",
            f"  as an operator:         {base}/#token={operator}",
            "",
            "A token for Anna (manage_users), valid 12 hours:",
            f"  export TOKEN={token}",
            "",
            "Try:",
            f'  curl -s -H "Authorization: Bearer $TOKEN" {base}/v1/companies?limit=5',
            f'  curl -s -H "Authorization: Bearer $TOKEN" {base}/v1/me/companies',
            f'  curl -s -H "Authorization: Bearer $TOKEN" '
            f'"{base}/v1/companies?domain=bookkeeping&status=late"',
            f'  curl -s -H "Authorization: Bearer $TOKEN" {base}/v1/companies/c-001/bookkeeping',
            f"  the API's description: {base}/openapi.json (browse it at {base}/schema)",
        ]
    )
