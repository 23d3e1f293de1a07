"""Where aggregates live: one port, a MongoDB implementation and an in-memory one for tests."""

from services.store.port import Store, Stored, StoreUnavailable, Write, is_unavailable

__all__ = ["Store", "StoreUnavailable", "Stored", "Write", "is_unavailable"]
