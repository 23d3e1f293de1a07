"""SPEC §4: the directory entry, users on a company, the engagement, and their checks."""

from __future__ import annotations

from typing import Any

import pytest

from consumers import directory
from consumers.directory import AgencyUserEntry, CompanyEntry
from consumers.rulebook import Rejected
from contracts.envelope import Message
from tests import factories as f
from tests.unit.tabs import replay


def add_user(user: str, email: str, occurred_at: str = "2026-03-01T10:00") -> Message:
    return f.message(
        "company.add_user", {"user_id": user, "email": email, "added_by": "u-1"}, occurred_at
    )


def agency_users(*users: tuple[str, str, bool]) -> dict[tuple[str, str], Any]:
    entries = {}
    for user_id, email, active in users:
        entry = replay(
            directory.AGENCY_USERS,
            [f.user_changed(user_id, email, "2026-01-01T00:00", active=active)],
        )
        entries[("agency_users", f"{f.AGENCY}/{user_id}")] = entry
    return entries


def company(*messages: Message) -> CompanyEntry:
    entry = replay(directory.COMPANIES, [f.details(), *messages])
    assert isinstance(entry, CompanyEntry)
    return entry


def test_details_are_the_entry_and_a_disconnection_hides_it() -> None:
    entry = company()
    assert (entry.name, entry.org_number_digits, entry.connected) == (
        "Bageriet i Byn AB",
        "5566778899",
        True,
    )
    assert company(f.disconnected("2026-05-01T00:00")).connected is False


def test_users_are_added_once() -> None:
    entry = company(
        add_user("u-7", "anna@byran.se"), add_user("u-7", "anna@byran.se", "2026-03-02T10:00")
    )
    assert [u.user_id for u in entry.users] == ["u-7"]
    assert entry.users[0].added_at == f.at("2026-03-01T10:00")


def test_the_engagement_sets_start_month_and_responsible() -> None:
    entry = company(f.engagement("2026-02", "2026-03-01T10:00", responsible="u-7"))
    assert (entry.engagement_start, entry.responsible_user_id) == ("2026-02", "u-7")


def test_commands_on_an_unknown_company_are_refused() -> None:
    with pytest.raises(Rejected, match="not in the directory"):
        directory.apply_company(None, add_user("u-7", "a@b.se"), f.at("2026-03-01T10:00"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("users", "email"),
    [
        ((), "anna@byran.se"),  # nobody by that id
        ((("u-7", "anna@byran.se", False),), "anna@byran.se"),  # no longer active
        ((("u-7", "anna@byran.se", True),), "bo@byran.se"),  # another address
    ],
)
def test_only_active_agency_users_are_added(
    users: tuple[tuple[str, str, bool], ...], email: str
) -> None:
    command = add_user("u-7", email)
    assert directory.company_command_refs(command) == [("agency_users", f"{f.AGENCY}/u-7")]
    with pytest.raises(Rejected, match="no active user of the agency"):
        directory.validate_company_command(command, agency_users(*users))


def test_an_active_agency_user_is_accepted_whatever_the_case_of_the_address() -> None:
    refs = agency_users(("u-7", "Anna@Byran.se", True))
    directory.validate_company_command(add_user("u-7", "anna@BYRAN.se"), refs)


def test_the_responsible_consultant_is_an_active_agency_user() -> None:
    command = f.engagement("2026-02", "2026-03-01T10:00", responsible="u-8")
    with pytest.raises(Rejected, match="u-8"):
        directory.validate_company_command(command, agency_users(("u-8", "c@d.se", False)))
    directory.validate_company_command(command, agency_users(("u-8", "c@d.se", True)))


def test_an_agency_user_is_the_latest_report() -> None:
    entry = replay(
        directory.AGENCY_USERS,
        [
            f.user_changed("u-7", "anna@byran.se", "2026-02-01T00:00", active=False),
            f.user_changed("u-7", "Anna@New.se", "2026-01-01T00:00"),
        ],
    )
    assert isinstance(entry, AgencyUserEntry)
    assert (entry.email_key, entry.active) == ("anna@byran.se", False)
