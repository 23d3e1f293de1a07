"""The Back-office page: one HTML document and its script and style, served by the API itself
(no CDN, no build step), speaking the same JSON API with the caller's token."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from litestar import Response, get
from litestar.static_files import create_static_files_router

from contracts.status import LABELS

STATIC: Final = Path(__file__).resolve().parent / "static"


@get("/", include_in_schema=False, media_type="text/html")
async def index() -> Response[bytes]:
    return Response(
        (STATIC / "index.html").read_bytes(),
        media_type="text/html; charset=utf-8",
        headers={
            # Everything the page loads comes from here; the token never leaves for elsewhere.
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
            "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


static_files = create_static_files_router(
    path="/static", directories=[STATIC], include_in_schema=False
)


@get("/v1/labels", summary="The statuses' labels in Swedish and English (SPEC §3)")
async def labels() -> dict[str, dict[str, str]]:
    return LABELS
