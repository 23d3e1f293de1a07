"""docker-compose.yml runs every process the runtime knows, with the command that starts it, and
the broker it runs holds the policies the code derives."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from services.__main__ import ALL_NAMES, broker_definitions
from services.config import Settings
from services.topology import policies

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


def test_compose_keeps_the_database_and_the_management_ui_off_other_interfaces() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert "ports" not in services["mongo"]
    assert "MONGO_INITDB_ROOT_PASSWORD" in services["mongo"]["environment"]
    for name in ALL_NAMES:
        assert "@mongo:27017" in services[name]["environment"]["BACKOFFICE_MONGO_URL"]
    management = [p for p in services["rabbitmq"]["ports"] if p.endswith(":15672")]
    assert management == ["127.0.0.1:15672:15672"]


def test_the_compose_broker_loads_the_definitions_the_code_makes() -> None:
    """deploy/rabbitmq/definitions.json is what `broker-definitions` writes with the defaults;
    regenerate it with the command in the README when this fails."""
    committed = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())
    made = json.loads(
        broker_definitions(
            Settings(),
            "/",
            ["backoffice=service", "upstream=upstream"],
            ["backoffice=backoffice", "upstream=upstream"],
        )
    )
    assert committed == made
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = " ".join(services["rabbitmq"]["volumes"])
    assert "definitions.json:/etc/rabbitmq/definitions.json" in mounts


def test_every_policy_has_its_own_name_and_the_contract_exchange_gets_no_argument() -> None:
    found = policies(ALL_NAMES, Settings(delivery_limit=7))
    assert len({p.name for p in found}) == len(found)  # a name shared would replace a policy
    by_name = {p.name: p for p in found}
    assert by_name["backoffice.accounting-events"].definition == {
        "alternate-exchange": "accounting.unrouted"
    }
    assert by_name["backoffice.bookkeeping"].definition["delivery-limit"] == 7
    assert re.fullmatch(
        by_name["backoffice.bookkeeping.retry"].pattern, "backoffice.bookkeeping.retry.1500ms"
    )
    assert not re.fullmatch(
        by_name["backoffice.bookkeeping"].pattern, "backoffice.bookkeeping.dead"
    )
