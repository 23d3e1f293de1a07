"""The passage of time, as a message.

Statuses change when deadlines pass, with no event from upstream. A clock process publishes a
tick every minute and consumers handle it like any other message; ``occurred_at`` is the time the
tick speaks for, so tests drive time by publishing ticks of their choosing.
"""

from __future__ import annotations

from contracts.envelope import Message


class ClockTick(Message, tag="clock.tick", kw_only=True):
    pass
