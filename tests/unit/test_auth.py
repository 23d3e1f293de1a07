"""SPEC §9 tokens: HS256 with sub, agency_id, permissions and exp; anything else is refused."""

from __future__ import annotations

import datetime as dt
import time

import jwt
import pytest

from services.api import auth
from services.api.auth import LEEWAY_S, TokenCheck, Unauthorized, caller_from_header, issue_token

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
    check = TokenCheck(SECRET)
    for _ in range(2):  # the same refusal the second time: none is held
        with pytest.raises(Unauthorized, match=words):
            check.caller(value)
    assert len(check) == 0


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
    check = TokenCheck(SECRET, **expected)
    assert check.caller(good).agency_id == "a-1"
    with pytest.raises(Unauthorized, match=words):
        check.caller(header(**claims))


class CountedDecode:
    """jwt.decode, counting its calls: a held token is not decoded again."""

    def __init__(self) -> None:
        self.calls = 0
        self.decode = jwt.decode

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        return self.decode(*args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> CountedDecode:
    counted = CountedDecode()
    monkeypatch.setattr(auth.jwt, "decode", counted)
    return counted


def test_an_accepted_token_is_held_and_not_checked_again(decoded: CountedDecode) -> None:
    check = TokenCheck(SECRET)
    token = header()
    first = check.caller(token)
    assert check.caller(token) == first
    assert decoded.calls == 1
    other = header(sub="u-2")
    assert check.caller(other).user_id == "u-2"
    assert check.caller(token).user_id == "u-1"
    assert decoded.calls == 2


def test_a_held_token_is_checked_again_once_it_expired(decoded: CountedDecode) -> None:
    now = [time.time()]
    check = TokenCheck(SECRET, clock=lambda: now[0])
    expires = int(now[0]) + 60
    token = header(exp=expires)
    check.caller(token)
    now[0] = expires + LEEWAY_S - 1  # within the leeway: still held
    check.caller(token)
    assert decoded.calls == 1
    now[0] = expires + LEEWAY_S
    check.caller(token)  # checked again (the library's clock has not reached it)
    assert decoded.calls == 2


def test_an_expired_token_is_refused_although_it_was_held(monkeypatch: pytest.MonkeyPatch) -> None:
    check = TokenCheck(SECRET)
    expires = int(time.time()) + 60
    token = header(exp=expires)
    check.caller(token)
    later = expires + LEEWAY_S + 1

    class Later(dt.datetime):  # PyJWT's clock
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Later:
            return cls.fromtimestamp(later, tz)

    monkeypatch.setattr(jwt.api_jwt, "datetime", Later)
    monkeypatch.setattr(check, "_clock", lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        check.caller(token)
    assert len(check) == 0


def test_a_check_holds_a_bounded_number_of_tokens() -> None:
    check = TokenCheck(SECRET, size=3)
    for n in range(10):
        assert check.caller(header(sub=f"u-{n}")).user_id == f"u-{n}"
        assert len(check) <= 3


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.", "x" * 300],
)
def test_a_refusal_does_not_repeat_the_librarys_internals(token: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        caller_from_header(f"Bearer {token}", SECRET)
    detail = str(refused.value)
    assert detail == "invalid token: not an HS256 token signed for this service"
