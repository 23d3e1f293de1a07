"""Fixtures for every test layer; the servers start only for tests that ask for them."""

from tests.harness import amqp_url, mongo, mongo_db, running_system, servers, settings, system

__all__ = ["amqp_url", "mongo", "mongo_db", "running_system", "servers", "settings", "system"]
