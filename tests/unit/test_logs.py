"""One format per process: the libraries' log lines are rendered like ours."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from services import logs


@pytest.fixture(autouse=True)
def restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


def test_uvicorn_and_our_lines_are_the_same_json(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "info")
    structlog.get_logger().info("consuming", consumer="bookkeeping")
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://127.0.0.1:8000")
    logging.getLogger("aio_pika").info("a library's chatter at info is dropped")
    logging.getLogger("pymongo").warning("a library's warning is kept")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == [
        "consuming",
        "Uvicorn running on http://127.0.0.1:8000",
        "a library's warning is kept",
    ]
    uvicorn = lines[1]
    assert (uvicorn["level"], uvicorn["logger"]) == ("info", "uvicorn.error")
    assert all("timestamp" in line for line in lines)
