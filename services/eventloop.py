"""The event loop each of our processes runs on.

Every request and every message passes through the loop many times (socket reads and writes to
the broker, the store and the client, tasks, timers), and uvloop does that work in C. Measured
on an API process, it and uvicorn's C parser (httptools) took a tenth to a sixth off the
process's CPU per request (docs/benchmarks.md (10)). asyncio's own loop stays one setting away:
``BACKOFFICE_EVENT_LOOP=asyncio``.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")
# auto: uvloop where it is installed (the project installs it on Linux and macOS), else asyncio's.
CHOICES: Final = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What creates the loop for ``choice``; None for asyncio's own."""
    if choice not in CHOICES:
        raise ValueError(f"expected one of {', '.join(CHOICES)}")
    if choice == "asyncio" or (choice == "auto" and importlib.util.find_spec("uvloop") is None):
        return None
    import uvloop  # Settings refuse "uvloop" where it is not installed

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run`` on the loop ``choice`` names."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


def name(loop: asyncio.AbstractEventLoop) -> str:
    """Which loop runs, for the log: "uvloop" or "asyncio"."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
