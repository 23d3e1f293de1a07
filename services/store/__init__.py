"""Where aggregates live: one port, a MongoDB implementation and an in-memory one for tests."""

from services.store.port import Store, Stored, Write

__all__ = ["Store", "Stored", "Write"]
