"""The event loop each process runs on (services/eventloop.py): uvloop by default where it is
installed, asyncio's when the setting says so, and a clear error for anything else."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
import uvloop

from services import eventloop
from services.__main__ import main
from services.config import Settings


async def running_loop() -> str:
    return eventloop.name(asyncio.get_running_loop())


@pytest.mark.parametrize(
    ("choice", "expected"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_the_choice_names_the_loop_that_runs(choice: str, expected: str) -> None:
    assert eventloop.run(running_loop(), choice) == expected


def test_the_uvloop_choice_runs_uvloops_own_loop() -> None:
    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert eventloop.run(loop_type(), "uvloop") is uvloop.Loop
    assert not issubclass(eventloop.run(loop_type(), "asyncio"), uvloop.Loop)


def test_auto_is_the_default_and_takes_uvloop_where_installed() -> None:
    assert Settings().event_loop == "auto"
    assert eventloop.loop_factory("auto") is uvloop.new_event_loop
    assert eventloop.loop_factory("asyncio") is None


def test_auto_falls_back_to_asyncio_where_uvloop_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eventloop.importlib.util, "find_spec", lambda name: None)
    assert eventloop.loop_factory("auto") is None


@pytest.mark.parametrize("value", ["fast", "UVLOOP", ""])
def test_an_unknown_loop_is_refused_by_name(value: str) -> None:
    with pytest.raises(ValueError, match=r"BACKOFFICE_EVENT_LOOP.*auto, uvloop, asyncio"):
        Settings.from_env({"BACKOFFICE_EVENT_LOOP": value})


def test_uvloop_is_refused_where_it_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import services.config

    monkeypatch.setattr(services.config.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="uvloop is not installed"):
        Settings.from_env({"BACKOFFICE_EVENT_LOOP": "uvloop"})


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_a_command_runs_on_the_loop_the_setting_names(
    monkeypatch: pytest.MonkeyPatch, choice: str
) -> None:
    ran: list[str] = []

    def run(work: Coroutine[Any, Any, Any], chosen: str = "auto") -> bool:
        work.close()
        ran.append(chosen)
        return True

    monkeypatch.setattr(eventloop, "run", run)
    monkeypatch.setenv("BACKOFFICE_EVENT_LOOP", choice)
    assert main(["health"]) == 0
    assert ran == [choice]
