"""Writes docs/asyncapi.yaml, the AsyncAPI 3 document of the service's channels, from the
contracts; or checks that the committed one is current.

python -m contracts.asyncapi           # write
python -m contracts.asyncapi --check   # exit 1 when docs/asyncapi.yaml is stale

Payloads refer to the JSON Schemas that ``contracts.schemas`` writes into docs/events/, so each
message's shape is stated once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from contracts.outbound import EVENTS_EXCHANGE, OUTBOUND
from contracts.registry import INBOUND_EVENTS

DOCS = Path(__file__).resolve().parent.parent / "docs"
DEFAULT_PATH = DOCS / "asyncapi.yaml"
SCHEMA_FORMAT = "application/schema+json;version=draft-07"
INBOUND_EXCHANGE = "accounting.events"


def _tag(message_type: type[Any]) -> str:
    return str(message_type.__struct_config__.tag)


def _key(name: str) -> str:
    """A component name: letters and digits only."""
    return "".join(part.capitalize() for part in name.replace(".", "_").split("_"))


def _message(message_type: type[Any], routing_key: str) -> dict[str, Any]:
    name = _tag(message_type)
    summary = (message_type.__doc__ or name).strip().splitlines()[0]
    return {
        "name": name,
        "title": name,
        "summary": summary,
        "contentType": "application/json",
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"events/{name}.json"}},
        "bindings": {"amqp": {"messageType": name, "bindingVersion": "0.3.0"}},
        "x-routing-key": routing_key,
    }


def _exchange(name: str) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": {
                "name": name,
                "type": "topic",
                "durable": True,
                "autoDelete": False,
                "vhost": "/",
            },
            "bindingVersion": "0.3.0",
        }
    }


def document() -> dict[str, Any]:
    inbound = {_key(_tag(t)): _message(t, _tag(t)) for t in INBOUND_EVENTS}
    routing = {
        "status.changed": "status.<domain>.<new status>",
        "client.action_required": "client.action_required",
    }
    outbound = {_key(_tag(t)): _message(t, routing[_tag(t)]) for t in OUTBOUND}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "backoffice",
            "version": "1.0.0",
            "description": (
                "The status service of an accounting firm's Back-office. Upstream accounting"
                " systems publish events to accounting.events (routing key = event type); the"
                " service publishes status changes to backoffice.events. Every outbound message"
                " has a stable id: subscribers drop repeats by it (delivery is at least once)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "RabbitMQ; see the README for users and permissions.",
            }
        },
        "channels": {
            "accountingEvents": {
                "address": INBOUND_EXCHANGE,
                "description": "SPEC §7: what upstream systems tell the service.",
                "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in inbound},
                "bindings": _exchange(INBOUND_EXCHANGE),
            },
            "backofficeEvents": {
                "address": EVENTS_EXCHANGE,
                "description": "SPEC §8: what the service tells subscribers.",
                "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in outbound},
                "bindings": _exchange(EVENTS_EXCHANGE),
            },
        },
        "operations": {
            "receiveAccountingEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/accountingEvents"},
                "summary": "Consumers take upstream events, one queue per consumer.",
                "messages": [
                    {"$ref": f"#/channels/accountingEvents/messages/{k}"} for k in inbound
                ],
            },
            "sendBackofficeEvents": {
                "action": "send",
                "channel": {"$ref": "#/channels/backofficeEvents"},
                "summary": "Each change of a period's status, and each period sent back.",
                "messages": [
                    {"$ref": f"#/channels/backofficeEvents/messages/{k}"} for k in outbound
                ],
            },
        },
        "components": {"messages": {**inbound, **outbound}},
    }


def render() -> str:
    import yaml  # type: ignore[import-untyped]  # a development tool: PyYAML is a test extra

    header = "# Written by `python -m contracts.asyncapi` from the contracts: do not edit.\n"
    return header + str(yaml.safe_dump(document(), sort_keys=False, allow_unicode=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only check; write nothing")
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.path.is_file() or args.path.read_text() != text:
            print(f"stale: {args.path}; run: python -m contracts.asyncapi", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
