"""SPEC §9 tokens: HS256 with sub, agency_id, permissions and exp; anything else is refused."""

from __future__ import annotations

import time

import jwt
import pytest

from services.api.auth import Unauthorized, caller_from_header, issue_token

SECRET = "unit-test-secret-" + "0123456789abcdef" * 4


def header(**claims: object) -> str:
    base = {
        "sub": "u-1",
        "agency_id": "a-1",
        "permissions": ["manage_users"],
        "exp": int(time.time()) + 86400,
    }
    base.update(claims)
    return "Bearer " + jwt.encode(
        {k: v for k, v in base.items() if v is not None}, SECRET, algorithm="HS256"
    )


def test_a_valid_token_names_the_caller() -> None:
    caller = caller_from_header(header(), SECRET)
    assert (caller.user_id, caller.agency_id, caller.manages_users) == ("u-1", "a-1", True)
    assert not caller_from_header(header(permissions=[]), SECRET).manages_users
    token = issue_token(SECRET, "u-2", "a-2", [], int(time.time()) + 60)
    assert caller_from_header(f"bearer {token}", SECRET).user_id == "u-2"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Basic dTpw", "Bearer"),
        ("Bearer ", "Bearer"),
        ("Bearer not-a-jwt", "invalid"),
        (header(exp=int(time.time()) - 100), "expired"),
        (header(exp=None), "exp"),
        (header(sub=None), "sub"),
        (header(agency_id=None), "agency_id"),
        (header(sub="u 1; drop"), "sub"),
        (header(agency_id={"$ne": None}), "agency_id"),
        (header(permissions="manage_users"), "permissions"),
        (
            "Bearer "
            + jwt.encode(
                {"sub": "u-1", "agency_id": "a-1", "exp": int(time.time()) + 86400},
                "another-secret-0123456789abcdef0123456789",
                algorithm="HS256",
            ),
            "invalid",
        ),
        (
            "Bearer "
            + jwt.encode(
                {"sub": "u-1", "agency_id": "a-1", "exp": int(time.time()) + 86400},
                SECRET,
                algorithm="HS512",
            ),
            "invalid",
        ),
    ],
)
def test_refused_tokens(value: str | None, words: str) -> None:
    with pytest.raises(Unauthorized, match=words):
        caller_from_header(value, SECRET)


@pytest.mark.parametrize(
    ("claim", "offset_s", "accepted"),
    [
        ("exp", -20, True),  # within the 30 s of leeway
        ("exp", -40, False),
        ("nbf", 20, True),
        ("nbf", 40, False),
        ("iat", 20, True),
    ],
)
def test_time_claims_have_30_seconds_of_leeway(claim: str, offset_s: int, accepted: bool) -> None:
    claims = {claim: int(time.time()) + offset_s}
    if accepted:
        assert caller_from_header(header(**claims), SECRET).user_id == "u-1"
    else:
        with pytest.raises(Unauthorized, match=r"expired|not valid yet"):
            caller_from_header(header(**claims), SECRET)


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({}, "aud"),
        ({"aud": "another-service", "iss": "https://idp.example"}, "aud"),
        ({"aud": "backoffice"}, "iss"),
        ({"aud": "backoffice", "iss": "https://evil.example"}, "iss"),
    ],
)
def test_audience_and_issuer_are_checked_when_configured(
    claims: dict[str, str], words: str
) -> None:
    expected = {"audience": "backoffice", "issuer": "https://idp.example"}
    with pytest.raises(Unauthorized, match=words):
        caller_from_header(header(**claims), SECRET, **expected)
    good = header(aud="backoffice", iss="https://idp.example")
    assert caller_from_header(good, SECRET, **expected).agency_id == "a-1"
    # Not configured: neither claim is needed, and an `aud` present is not held against it.
    assert caller_from_header(header(aud="anything"), SECRET).user_id == "u-1"


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.", "x" * 300],
)
def test_a_refusal_does_not_repeat_the_librarys_internals(token: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        caller_from_header(f"Bearer {token}", SECRET)
    detail = str(refused.value)
    assert detail == "invalid token: not an HS256 token signed for this service"
