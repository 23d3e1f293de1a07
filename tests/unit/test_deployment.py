"""docker-compose.yml runs every process the runtime knows, with the command that starts it."""

from __future__ import annotations

from pathlib import Path

import yaml

from services.__main__ import ALL_NAMES

ROOT = Path(__file__).resolve().parents[2]


def test_compose_has_a_service_per_consumer_and_the_clock() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ALL_NAMES:
        assert services[name]["command"] == ["consumer", name]
    assert services["clock"]["command"] == ["clock"]
    assert services["api"]["command"] == ["api"]
    assert "BACKOFFICE_JWT_SECRET" in services["api"]["environment"]
    for server in ("rabbitmq", "mongo"):
        assert "healthcheck" in services[server]
