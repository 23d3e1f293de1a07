"""Commands and clock ticks carry an HMAC of their body made with the service's secret.

The broker's permissions keep upstream publishers to `accounting.events`, where a command or a
tick is refused anyway (``ACCEPTED_FROM`` in the pipeline). The signature closes the other door:
anyone who can write to a consumer's queue (through the default exchange, or a retry queue)
still cannot act as a consultant or move time without the secret, which only the API, the clock
and the consumers hold.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

SIGNATURE_HEADER: Final = "x-backoffice-signature"
MIN_SECRET_BYTES: Final = 32


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_signed(secret: str, body: bytes, claimed: object) -> bool:
    """True when ``claimed`` is the signature of ``body``; never with an empty secret."""
    if not secret or not isinstance(claimed, str | bytes):
        return False
    if isinstance(claimed, bytes):
        claimed = claimed.decode("ascii", "replace")
    return hmac.compare_digest(signature(secret, body), claimed)


def check_secret(name: str, value: str) -> None:
    """A shared secret shorter than SHA-256's block of safety is refused at start."""
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{name} must be set to at least {MIN_SECRET_BYTES} bytes"
            f" (it has {len(value.encode())}); for example: openssl rand -hex 32"
        )
