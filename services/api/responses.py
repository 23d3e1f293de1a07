"""The API's JSON responses: every instant in one text form (``contracts.fields.format_instant``).

msgspec writes a datetime with as many fractional digits as it has (`…24Z`, `…24.040000Z`), and
such strings do not sort as the instants do. Every handler's answer passes through here, so no
route can forget it.

Rewriting the instants walks the whole answer in Python, which was a third of an API process's
work for an overview page, where there are none to rewrite. So the walk is left out for answers
whose type cannot hold an instant, as msgspec describes the type; a type it cannot fully
describe (``Any``, a custom type) is walked.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import msgspec.inspect as mi
from litestar import Response
from litestar.serialization import default_serializer
from litestar.types import Serializer

from contracts.fields import instants_as_text

# Types msgspec writes as they are, without a datetime inside.
_PLAIN = (
    mi.NoneType,
    mi.BoolType,
    mi.IntType,
    mi.FloatType,
    mi.StrType,
    mi.DateType,
    mi.TimeType,
    mi.TimeDeltaType,
    mi.UUIDType,
    mi.DecimalType,
    mi.LiteralType,
    mi.EnumType,
    mi.BytesType,
    mi.ByteArrayType,
    mi.MemoryViewType,
)


class ApiResponse(Response[Any]):
    def render(
        self, content: Any, media_type: str, enc_hook: Serializer = default_serializer
    ) -> bytes:
        if (
            "json" in media_type
            and not isinstance(content, bytes | str)
            and may_hold_instants(type(content))
        ):
            builtins = msgspec.to_builtins(content, builtin_types=(dt.datetime,), enc_hook=enc_hook)
            content = instants_as_text(builtins)
        return super().render(content, media_type, enc_hook)


_HOLDS: dict[type, bool] = {}  # by the type of an answer: a few dozen at most


def may_hold_instants(cls: type) -> bool:
    """Whether a value of ``cls`` may have a datetime anywhere inside."""
    if cls not in _HOLDS:
        try:
            _HOLDS[cls] = _holds(mi.type_info(cls), set())
        except (TypeError, ValueError):  # not a type msgspec knows: walk it
            _HOLDS[cls] = True
    return _HOLDS[cls]


def _holds(described: mi.Type, seen: set[int]) -> bool:
    if isinstance(described, _PLAIN):
        return False
    if isinstance(described, mi.StructType | mi.DataclassType | mi.TypedDictType):
        if id(described) in seen:  # a type that holds itself: its fields are being looked at
            return False
        seen.add(id(described))
        return any(_holds(f.type, seen) for f in described.fields)
    if isinstance(described, mi.NamedTupleType):
        return any(_holds(f.type, seen) for f in described.fields)
    if isinstance(described, mi.UnionType | mi.TupleType):
        parts = described.types if isinstance(described, mi.UnionType) else described.item_types
        return any(_holds(t, seen) for t in parts)
    if isinstance(described, mi.DictType):
        return _holds(described.key_type, seen) or _holds(described.value_type, seen)
    if isinstance(described, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return _holds(described.item_type, seen)
    return True  # a datetime, Any, a custom type, or one this does not know
