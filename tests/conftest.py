"""Fixtures for every test layer; the servers start only for tests that ask for them."""

from tests.harness import (
    amqp_url,
    answering_later_system,
    mongo,
    mongo_db,
    running_system,
    servers,
    settings,
    system,
    time_travelling_system,
)

__all__ = [
    "amqp_url",
    "answering_later_system",
    "mongo",
    "mongo_db",
    "running_system",
    "servers",
    "settings",
    "system",
    "time_travelling_system",
]
