"""The API's JSON responses: every instant in one text form (``contracts.fields.format_instant``).

msgspec writes a datetime with as many fractional digits as it has (`…24Z`, `…24.040000Z`), and
such strings do not sort as the instants do. Every handler's answer passes through here, so no
route can forget it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from litestar import Response
from litestar.serialization import default_serializer
from litestar.types import Serializer

from contracts.fields import instants_as_text


class ApiResponse(Response[Any]):
    def render(
        self, content: Any, media_type: str, enc_hook: Serializer = default_serializer
    ) -> bytes:
        if "json" in media_type and not isinstance(content, bytes | str):
            builtins = msgspec.to_builtins(content, builtin_types=(dt.datetime,), enc_hook=enc_hook)
            content = instants_as_text(builtins)
        return super().render(content, media_type, enc_hook)
