"""Structured logs: JSON lines in production, readable lines on a terminal.

Our own lines come from structlog; the libraries' (uvicorn, aio-pika, PyMongo) from the standard
library's logging, which is routed through the same processors and renderer, so a process
prints one format only.
"""

from __future__ import annotations

import logging
import sys

import structlog

# Libraries whose informational lines an operator wants (uvicorn says where it listens); the
# others speak from WARNING up.
CHATTY_AT_INFO = ("uvicorn", "uvicorn.error")


def configure(log_format: str = "auto", level: str = "info") -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    threshold = logging.getLevelNamesMapping()[level.upper()]
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(logging.WARNING, threshold))
    for name in CHATTY_AT_INFO:
        library = logging.getLogger(name)
        library.handlers = []  # uvicorn's own handlers would print its format beside ours
        library.propagate = True
        library.setLevel(threshold)
