"""Bearer tokens (SPEC §9): HS256 JWTs with the caller's id, agency and permissions."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import jwt

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MANAGE_USERS = "manage_users"
# The clocks of the identity provider and of this service may differ a little.
LEEWAY_S = 30
# Accepted tokens held by a TokenCheck: far more than the callers of one API process at once.
TOKENS_HELD: Final = 1024


class Unauthorized(Exception):
    """No token, or one we do not accept: 401."""


@dataclass(frozen=True)
class Caller:
    user_id: str
    agency_id: str
    permissions: frozenset[str]

    @property
    def manages_users(self) -> bool:
        return MANAGE_USERS in self.permissions


def caller_from_header(
    header: str | None, secret: str, audience: str = "", issuer: str = ""
) -> Caller:
    """The caller a bearer token names. ``audience`` and ``issuer``, when set, must be the
    token's ``aud`` and ``iss``. A refusal says what is wrong in the caller's terms, never in
    the library's (its messages name internals such as the padding or the segments)."""
    return _checked(header, secret, audience, issuer)[0]


class TokenCheck:
    """``caller_from_header`` for one API process's settings, holding the callers of the tokens
    it accepted until they expire. A dashboard sends the same token with every request, and
    checking its signature was about a thirtieth of the process's work per tab.

    A token once accepted stays acceptable until its ``exp`` (and the leeway) has passed: every
    other check is of the token itself (its signature, audience, issuer, claims) or of a time it
    must have reached (``nbf``, ``iat``), which stays reached. A refusal is not held: a token
    refused is checked again each time it comes."""

    def __init__(
        self,
        secret: str,
        audience: str = "",
        issuer: str = "",
        size: int = TOKENS_HELD,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret, self._audience, self._issuer = secret, audience, issuer
        self._size = size
        self._clock = clock
        self._held: dict[str, tuple[Caller, float]] = {}  # header -> caller, refused from then

    def __len__(self) -> int:
        return len(self._held)

    def caller(self, header: str | None) -> Caller:
        if not header:
            return caller_from_header(header, self._secret)  # refused: no token
        held = self._held.pop(header, None)
        if held is None or self._clock() >= held[1]:
            caller, expires_at = _checked(header, self._secret, self._audience, self._issuer)
            held = (caller, expires_at + LEEWAY_S)
            if len(self._held) >= self._size:
                self._held.clear()  # far more callers than expected: start again
        self._held[header] = held  # the last to go
        return held[0]


def _checked(header: str | None, secret: str, audience: str, issuer: str) -> tuple[Caller, float]:
    """The caller, and when the token expires (its ``exp``, as PyJWT checked it)."""
    if not header:
        raise Unauthorized("missing Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    required = (
        ["sub", "agency_id", "exp"] + (["aud"] if audience else []) + (["iss"] if issuer else [])
    )
    try:
        claims = jwt.decode(
            token.strip(),
            secret,
            algorithms=["HS256"],
            audience=audience or None,
            issuer=issuer or None,
            leeway=LEEWAY_S,
            options={"require": required, "verify_aud": bool(audience)},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthorized("the token is not valid yet") from None
    except jwt.MissingRequiredClaimError as error:
        raise Unauthorized(f"the token has no {error.claim} claim") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("the token is not meant for this service (aud)") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("the token was not issued by the expected issuer (iss)") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("invalid token: not an HS256 token signed for this service") from None
    user_id, agency_id = claims.get("sub"), claims.get("agency_id")
    permissions = claims.get("permissions", [])
    if not (isinstance(user_id, str) and _IDENTIFIER.match(user_id)):
        raise Unauthorized("the token's sub is not a user id")
    if not (isinstance(agency_id, str) and _IDENTIFIER.match(agency_id)):
        raise Unauthorized("the token's agency_id is not an agency id")
    if not (isinstance(permissions, list) and all(isinstance(p, str) for p in permissions)):
        raise Unauthorized("the token's permissions are not a list of strings")
    return Caller(user_id, agency_id, frozenset(permissions)), float(claims["exp"])


def issue_token(
    secret: str, user_id: str, agency_id: str, permissions: list[str], expires_at: int
) -> str:
    """A token as the Back-office's identity provider would issue it (demo and tests)."""
    claims = {"sub": user_id, "agency_id": agency_id, "permissions": permissions, "exp": expires_at}
    return jwt.encode(claims, secret, algorithm="HS256")
